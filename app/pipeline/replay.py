"""Replay: quarantined events re-checked against today's contracts, stored if they pass.

The rows hold the event as it was anonymized when it arrived (`event` envelope + `data`),
so nothing is anonymized twice. Each passing event goes through the same write as live
traffic (`BatchWriter.write`: dedup key, suppression check, one statement), which makes
replay idempotent: an event stored before, by a replay or by a resend, is a `duplicate`.
Rows whose events were stored or found stored are marked `replayed_at` and left out of
later replays. Time checks judge the event as of its first arrival, not as of today:
replaying last month's quarantine must not fail everything as `quality.too_old`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from app.clock import MonotonicClock, WallClock, monotonic, utc_now
from app.contracts.checker import ContractChecker
from app.model.events import AnonymizedEvent, Transport, event_from_envelope
from app.model.outcomes import Outcome
from app.pipeline.writer import BatchWriter
from app.storage.quarantine import QuarantineFilter, QuarantineRepository, ReplayRow

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ReplayReport:
    examined: int
    passed: int  # pass the current contracts (stored now, or already stored)
    stored: int
    duplicates: int
    suppressed: int
    still_failing: int
    not_replayable: int  # rejected before they were valid CloudEvents: nothing to rebuild
    dry_run: bool


class Replayer:
    def __init__(
        self,
        quarantine: QuarantineRepository,
        checker: ContractChecker,
        writer: BatchWriter,
        *,
        write_timeout_s: float,
        clock: MonotonicClock = monotonic,
        wall_clock: WallClock = utc_now,
    ) -> None:
        self._quarantine = quarantine
        self._checker = checker
        self._writer = writer
        self._write_timeout_s = write_timeout_s
        self._clock = clock
        self._wall_clock = wall_clock

    async def replay(
        self, where: QuarantineFilter, *, dry_run: bool, max_rows: int
    ) -> ReplayReport:
        tally: Counter[str] = Counter()
        after_id = 0
        while tally["examined"] < max_rows:
            limit = min(_CHUNK, max_rows - tally["examined"])
            rows = await self._quarantine.replayable(where, after_id=after_id, limit=limit)
            if not rows:
                break
            after_id = rows[-1].quarantine_id
            await self._replay_chunk(rows, dry_run, tally)
        return ReplayReport(
            examined=tally["examined"],
            passed=tally["passed"],
            stored=tally[Outcome.STORED],
            duplicates=tally[Outcome.DUPLICATE],
            suppressed=tally[Outcome.SUPPRESSED],
            still_failing=tally["still_failing"],
            not_replayable=tally["not_replayable"],
            dry_run=dry_run,
        )

    async def _replay_chunk(
        self, rows: list[ReplayRow], dry_run: bool, tally: Counter[str]
    ) -> None:
        tally["examined"] += len(rows)
        passing: list[tuple[int, AnonymizedEvent]] = []
        for row in rows:
            event = _rebuilt(row)
            if event is None:
                tally["not_replayable"] += 1
            elif self._checker.check(event, row.received_at).rejection is not None:
                tally["still_failing"] += 1
            else:
                passing.append((row.quarantine_id, event))
        tally["passed"] += len(passing)
        if dry_run or not passing:
            return
        outcomes = await self._writer.write(
            [event for _, event in passing], self._clock() + self._write_timeout_s
        )
        tally.update(outcomes)
        await self._quarantine.mark_replayed(
            [quarantine_id for quarantine_id, _ in passing], self._wall_clock()
        )


def _rebuilt(row: ReplayRow) -> AnonymizedEvent | None:
    if row.event is None:
        return None
    return event_from_envelope(
        row.event, data_json=row.data_json, transport=Transport(row.transport)
    )
