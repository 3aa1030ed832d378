"""The reprocess pipeline: quarantine rows of a time range, in parallel by partition,
re-checked against the current contracts and stored if they pass.

    Time range → Plan partitions → Spread partitions (Reshuffle) → Replay partition

Each partition is a slice of the range by `last_seen_at`, replayed by the service's own
`Replayer` (`app/pipeline/replay.py`): rebuilt from the anonymized envelope, checked as
of its first arrival, written through `BatchWriter` (idempotent by `event_keys`), marked
`replayed_at` so no later run takes it again. The HTTP endpoint does the same in one
process; this runs the slices on as many workers as the runner gives it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from app.clock import utc_now
from app.contracts.checker import ContractChecker
from app.pipeline.replay import Replayer
from app.pipeline.writer import BatchWriter
from app.storage.quarantine import QuarantineFilter, QuarantineRepository
from app.storage.repository import EventRepository
from sluice_beam.runtime import Resources, SluiceOptions, environment_of

_NAMESPACE = "sluice"
_EVERY_ROW = 2**62
_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)
_RANGE = """
SELECT min(last_seen_at), max(last_seen_at) FROM quarantine
WHERE ($1::text IS NULL OR error_code = $1) AND ($2::text IS NULL OR type = $2)
  AND ($3::text IS NULL OR source = $3) AND last_seen_at >= $4 AND last_seen_at < $5
  AND replayed_at IS NULL AND event IS NOT NULL
"""


class ReprocessOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument("--since", default=None, help="RFC 3339; rows last seen from then")
        parser.add_argument("--until", default=None, help="RFC 3339; rows last seen before then")
        parser.add_argument("--quarantine_code", default=None, help="only rows of this code")
        parser.add_argument("--quarantine_type", default=None, help="only rows of this type")
        parser.add_argument("--quarantine_source", default=None, help="only this source")
        parser.add_argument("--partitions", type=int, default=8, help="slices of the range")
        parser.add_argument("--check_only", action="store_true", help="check, store nothing")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which quarantine rows to reprocess: a time range and the listing's filters."""

    since: datetime
    until: datetime
    code: str | None = None
    type: str | None = None
    source: str | None = None

    def where(self, since: datetime, until: datetime) -> QuarantineFilter:
        return QuarantineFilter(
            code=self.code, type=self.type, source=self.source, since=since, until=until
        )


class PlanPartitions(beam.DoFn):
    """A selection → up to `partitions` equal slices of the time its rows span."""

    def __init__(self, partitions: int, environment: Mapping[str, str]) -> None:
        self._partitions = partitions
        self._environment = dict(environment)

    def setup(self) -> None:
        self._resources = Resources(self._environment)

    def process(self, selection: Selection) -> Iterator[tuple[datetime, datetime]]:
        first, last = self._resources.run(
            self._resources.pool.fetchrow(
                _RANGE,
                selection.code,
                selection.type,
                selection.source,
                selection.since,
                selection.until,
            )
        )
        if first is None:
            return
        end = last + timedelta(microseconds=1)  # slices are half-open; the last row counts
        width = (end - first) / self._partitions
        bounds = [first + width * i for i in range(self._partitions)] + [end]
        for since, until in pairwise(bounds):
            if until > since:
                yield since, until

    def teardown(self) -> None:
        self._resources.close()


class ReplayPartition(beam.DoFn):
    """One slice replayed by the service's `Replayer`; its report added to Beam metrics
    (`examined`, `passed`, `stored`, `duplicates`, `still_failing`, ...)."""

    def __init__(
        self,
        selection: Selection,
        *,
        dry_run: bool,
        write_timeout_s: float,
        environment: Mapping[str, str],
    ) -> None:
        self._selection = selection
        self._dry_run = dry_run
        self._write_timeout_s = write_timeout_s
        self._environment = dict(environment)

    def setup(self) -> None:
        self._resources = Resources(self._environment)
        settings, pool = self._resources.settings, self._resources.pool
        writer = BatchWriter(
            EventRepository(pool), settings.db, max_backoff_s=settings.batch.retry_max_backoff_s
        )
        self._replayer = Replayer(
            QuarantineRepository(pool),
            ContractChecker.from_settings(settings.contracts, settings.quality),
            writer,
            write_timeout_s=self._write_timeout_s,
        )

    def process(self, bounds: tuple[datetime, datetime]) -> Iterator[None]:
        report = self._resources.run(
            self._replayer.replay(
                self._selection.where(*bounds), dry_run=self._dry_run, max_rows=_EVERY_ROW
            )
        )
        for field in fields(report):
            value = getattr(report, field.name)
            if isinstance(value, int) and not isinstance(value, bool):
                Metrics.counter(_NAMESPACE, f"replay_{field.name}").inc(value)
        Metrics.counter(_NAMESPACE, "partitions_replayed").inc()
        yield from ()

    def teardown(self) -> None:
        self._resources.close()


def selection_of(options: ReprocessOptions) -> Selection:
    return Selection(
        since=datetime.fromisoformat(options.since) if options.since else _BEGINNING,
        until=datetime.fromisoformat(options.until) if options.until else utc_now(),
        code=options.quarantine_code,
        type=options.quarantine_type,
        source=options.quarantine_source,
    )


def build(pipeline: beam.Pipeline, options: PipelineOptions) -> None:
    """Adds the reprocessing transforms to `pipeline`."""
    sluice = options.view_as(SluiceOptions)
    environment = environment_of(sluice.sluice_env)
    options = options.view_as(ReprocessOptions)
    selection = selection_of(options)
    _ = (
        pipeline
        | "Time range" >> beam.Create([selection])
        | "Plan partitions" >> beam.ParDo(PlanPartitions(options.partitions, environment))
        | "Spread partitions" >> beam.Reshuffle()
        | "Replay partition"
        >> beam.ParDo(
            ReplayPartition(
                selection,
                dry_run=options.check_only,
                write_timeout_s=sluice.write_timeout_s,
                environment=environment,
            )
        )
    )
