"""The in-memory batcher, driven by a plain async flush function standing in for the writer.

Real (millisecond) delays keep these honest about timing while staying fast.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client import REGISTRY

from app.errors import BufferFull, ErrorCode, Retryable, ShuttingDown, StorageUnavailable
from app.model.events import AnonymizedEvent, QuarantineRecord, Transport, Writable
from app.model.outcomes import Outcome
from app.pipeline.batcher import Batcher, Submission
from tests.support import anonymized_event

LONG = 5.0  # a max_delay that no test should ever wait out


def anonymized(name: str, *, size: int = 100, source: str = "/test") -> AnonymizedEvent:
    return anonymized_event(source, name, data_json=None, size=size)


def quarantined(*, size: int = 256) -> QuarantineRecord:
    return QuarantineRecord(
        transport=Transport.HTTP,
        code=ErrorCode.MISSING_ATTRIBUTE,
        field="id",
        message="required attribute 'id' is missing",
        source="/test",
        event_id=None,
        type=None,
        subject_pseudonym=None,
        attributes_json="{}",
        size=size,
    )


def events(prefix: str, count: int, *, size: int = 100) -> list[AnonymizedEvent]:
    return [anonymized(f"{prefix}-{i}", size=size) for i in range(count)]


def label(payload: Writable) -> str:
    return payload.id if isinstance(payload, AnonymizedEvent) else "quarantine"


class Recorder:
    """A flush function that records its batches and stores every payload.

    `gate`, when set up, holds every flush until it is opened; `fail_on` raises a fresh
    exception made by `error` from any flush whose batch holds a payload with that id;
    payloads whose id starts with "dup" come back as DUPLICATE.
    """

    def __init__(
        self,
        *,
        gated: bool = False,
        fail_on: str | None = None,
        error: Callable[[], BaseException] | None = None,
    ) -> None:
        self.batches: list[list[str]] = []
        self.deadlines: list[float] = []
        self.active = 0
        self.max_active = 0
        self.completed = 0
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.fail_on = fail_on
        self.error = error

    async def __call__(self, payloads: Sequence[Writable], deadline: float) -> list[Outcome]:
        self.batches.append([label(payload) for payload in payloads])
        self.deadlines.append(deadline)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await self.gate.wait()
            if self.fail_on is not None and self.fail_on in self.batches[-1]:
                assert self.error is not None
                raise self.error()
            return [
                Outcome.DUPLICATE if label(p).startswith("dup") else Outcome.STORED
                for p in payloads
            ]
        finally:
            self.active -= 1
            self.completed += 1

    @property
    def sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]


def deadline() -> float:
    return time.monotonic() + 10


async def wait_until(predicate: Any, within_s: float = 1.0) -> None:
    end = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


@asynccontextmanager
async def running(recorder: Recorder, **options: Any) -> AsyncIterator[Batcher]:
    settings: dict[str, Any] = {
        "max_size": 100,
        "max_delay_s": 0.01,
        "write_concurrency": 2,
        "max_events": 10_000,
        "max_bytes": 10_000_000,
        "retry_after_s": 3,
    }
    settings.update(options)
    batcher = Batcher(recorder, **settings)
    batcher.start()
    try:
        yield batcher
    finally:
        recorder.gate.set()  # never leave a test's flush hanging
        await asyncio.wait_for(batcher.close(), 2)


# --- cutting batches -----------------------------------------------------------------------


async def test_batch_is_cut_at_max_size_without_waiting_for_the_delay() -> None:
    recorder = Recorder()
    async with running(recorder, max_size=3, max_delay_s=LONG) as batcher:
        started = time.monotonic()
        submissions = [
            batcher.submit([anonymized(f"e{i}")], Transport.HTTP, deadline=deadline())
            for i in range(6)
        ]
        results = await asyncio.gather(*(s.wait(1) for s in submissions))
        assert time.monotonic() - started < 0.5
        assert results == [[Outcome.STORED]] * 6
        assert recorder.sizes == [3, 3]
        assert recorder.batches == [["e0", "e1", "e2"], ["e3", "e4", "e5"]]


async def test_remainder_below_max_size_waits_for_the_delay() -> None:
    recorder = Recorder()
    async with running(recorder, max_size=3, max_delay_s=0.05) as batcher:
        started = time.monotonic()
        submission = batcher.submit(events("e", 7), Transport.HTTP, deadline=deadline())
        await wait_until(lambda: recorder.completed == 2)
        assert recorder.sizes == [3, 3]
        assert await submission.wait(1) == [Outcome.STORED] * 7
        assert recorder.sizes == [3, 3, 1]
        assert time.monotonic() - started >= 0.045


async def test_lone_event_is_flushed_after_max_delay() -> None:
    recorder = Recorder()
    async with running(recorder, max_size=100, max_delay_s=0.05) as batcher:
        started = time.monotonic()
        submission = batcher.submit([anonymized("only")], Transport.HTTP, deadline=deadline())
        await asyncio.sleep(0.02)
        assert recorder.batches == []  # still waiting for company
        assert await submission.wait(1) == [Outcome.STORED]
        elapsed = time.monotonic() - started
        assert 0.045 <= elapsed < 0.5
        assert recorder.batches == [["only"]]


async def test_concurrent_submissions_share_one_flush() -> None:
    recorder = Recorder()
    async with running(recorder, max_size=100, max_delay_s=0.05) as batcher:

        async def request(number: int) -> list[Outcome]:
            await asyncio.sleep(number * 0.002)
            submission = batcher.submit(
                events(f"r{number}", 5), Transport.HTTP, deadline=deadline()
            )
            return await submission.wait(1)

        results = await asyncio.gather(*(request(n) for n in range(10)))
        assert results == [[Outcome.STORED] * 5] * 10
        assert recorder.sizes == [50]


async def test_events_arriving_while_slots_are_busy_join_the_next_batch() -> None:
    recorder = Recorder(gated=True)
    async with running(recorder, max_size=100, max_delay_s=0, write_concurrency=1) as batcher:
        first = batcher.submit([anonymized("a")], Transport.HTTP, deadline=deadline())
        await wait_until(lambda: recorder.active == 1)
        later = [
            batcher.submit([anonymized(name)], Transport.HTTP, deadline=deadline())
            for name in ("b", "c", "d")
        ]
        await asyncio.sleep(0.02)
        assert recorder.batches == [["a"]]
        recorder.gate.set()
        await first.wait(1)
        await asyncio.gather(*(s.wait(1) for s in later))
        assert recorder.batches == [["a"], ["b", "c", "d"]]


async def test_at_most_write_concurrency_flushes_run_at_once() -> None:
    recorder = Recorder(gated=True)
    async with running(recorder, max_size=1, max_delay_s=0, write_concurrency=2) as batcher:
        submissions = [
            batcher.submit([anonymized(f"e{i}")], Transport.HTTP, deadline=deadline())
            for i in range(6)
        ]
        await wait_until(lambda: recorder.active == 2)
        await asyncio.sleep(0.03)
        assert recorder.active == 2
        assert len(recorder.batches) == 2
        recorder.gate.set()
        results = await asyncio.gather(*(s.wait(1) for s in submissions))
        assert results == [[Outcome.STORED]] * 6
        assert recorder.max_active == 2
        assert recorder.sizes == [1] * 6


async def test_write_concurrency_one_serializes_flushes() -> None:
    recorder = Recorder()
    async with running(recorder, max_size=2, max_delay_s=0, write_concurrency=1) as batcher:
        submission = batcher.submit(events("e", 10), Transport.HTTP, deadline=deadline())
        assert await submission.wait(1) == [Outcome.STORED] * 10
        assert recorder.max_active == 1
        assert recorder.sizes == [2] * 5


# --- submissions ---------------------------------------------------------------------------


async def test_submission_split_over_two_batches_resolves_after_both() -> None:
    recorder = Recorder()
    second_gate = asyncio.Event()
    calls = 0

    async def flush(payloads: Sequence[Writable], deadline_: float) -> list[Outcome]:
        nonlocal calls
        calls += 1
        if calls == 2:
            await second_gate.wait()
        return await recorder(payloads, deadline_)

    async with running(recorder, max_size=3, max_delay_s=0) as batcher:
        batcher._flush = flush  # route through the two-stage gate
        payloads = [anonymized(name) for name in ("a", "dup-b", "c", "d", "dup-e")]
        submission = batcher.submit(payloads, Transport.HTTP, deadline=deadline())
        waiter = asyncio.create_task(submission.wait(2))
        await wait_until(lambda: recorder.completed == 1)
        await asyncio.sleep(0.02)
        assert not waiter.done()  # half the events are committed, not all
        assert recorder.batches == [["a", "dup-b", "c"]]
        second_gate.set()
        assert await waiter == [
            Outcome.STORED,
            Outcome.DUPLICATE,
            Outcome.STORED,
            Outcome.STORED,
            Outcome.DUPLICATE,
        ]
        assert recorder.batches == [["a", "dup-b", "c"], ["d", "dup-e"]]


async def test_empty_submission_resolves_at_once() -> None:
    recorder = Recorder()
    async with running(recorder) as batcher:
        submission = batcher.submit([], Transport.HTTP, deadline=deadline())
        assert await submission.wait(0.1) == []
        await asyncio.sleep(0.03)
        assert recorder.batches == []


async def test_mixed_payload_kinds_are_flushed_together() -> None:
    recorder = Recorder()
    async with running(recorder, max_delay_s=0.005) as batcher:
        submission = batcher.submit(
            [anonymized("a"), quarantined(), anonymized("b")], Transport.HTTP, deadline=deadline()
        )
        assert await submission.wait(1) == [Outcome.STORED] * 3
        assert recorder.batches == [["a", "quarantine", "b"]]


async def test_flush_gets_the_earliest_deadline_of_its_batch() -> None:
    recorder = Recorder()
    async with running(recorder, max_delay_s=0.01) as batcher:
        now = time.monotonic()
        first = batcher.submit([anonymized("a")], Transport.HTTP, deadline=now + 9)
        second = batcher.submit([anonymized("b")], Transport.HTTP, deadline=now + 4)
        await first.wait(1)
        await second.wait(1)
        assert recorder.deadlines == [now + 4]


async def test_submit_before_start_is_refused() -> None:
    batcher = Batcher(
        Recorder(),
        max_size=10,
        max_delay_s=0.01,
        write_concurrency=1,
        max_events=10,
        max_bytes=10_000,
    )
    assert not batcher.alive
    assert not batcher.accepting
    with pytest.raises(ShuttingDown):
        batcher.submit([anonymized("a")], Transport.HTTP, deadline=deadline())


# --- backpressure --------------------------------------------------------------------------


async def test_buffer_full_on_events_and_release_after_the_flush_finishes() -> None:
    recorder = Recorder(gated=True)
    async with running(recorder, max_size=100, max_delay_s=0, max_events=10) as batcher:
        first = batcher.submit(events("a", 6), Transport.HTTP, deadline=deadline())
        assert batcher.held_events == 6
        await wait_until(lambda: recorder.active == 1)  # taken by a flush, still held
        assert batcher.held_events == 6

        with pytest.raises(BufferFull) as caught:
            batcher.submit(events("b", 5), Transport.HTTP, deadline=deadline())
        assert caught.value.code is ErrorCode.BUFFER_FULL
        assert caught.value.retry_after_s == 3
        assert caught.value.code.http_status == 429
        assert batcher.held_events == 6  # refused whole: nothing was taken

        batcher.refuse_if_full(Transport.HTTP)  # room for 4 more: a source may read on
        second = batcher.submit(events("c", 4), Transport.HTTP, deadline=deadline())
        assert batcher.held_events == 10
        with pytest.raises(BufferFull):
            batcher.submit([anonymized("d")], Transport.HTTP, deadline=deadline())
        with pytest.raises(BufferFull) as early:  # full: refused before a body is read
            batcher.refuse_if_full(Transport.HTTP)
        assert early.value.retry_after_s == 3

        recorder.gate.set()
        await first.wait(1)
        await second.wait(1)
        await wait_until(lambda: batcher.held_events == 0)
        third = batcher.submit(events("e", 10), Transport.HTTP, deadline=deadline())
        assert await third.wait(1) == [Outcome.STORED] * 10


async def test_buffer_full_on_bytes_uses_payload_size() -> None:
    recorder = Recorder(gated=True)
    async with running(recorder, max_size=100, max_delay_s=0, max_bytes=1000) as batcher:
        first = batcher.submit(
            [anonymized("a", size=400), quarantined(size=256)], Transport.HTTP, deadline=deadline()
        )
        await wait_until(lambda: recorder.active == 1)
        with pytest.raises(BufferFull):  # 656 + 345 > 1000
            batcher.submit([anonymized("b", size=345)], Transport.HTTP, deadline=deadline())
        with pytest.raises(BufferFull):  # the default QuarantineRecord size counts too
            batcher.submit(
                [quarantined(), anonymized("c", size=100)], Transport.HTTP, deadline=deadline()
            )
        second = batcher.submit([anonymized("d", size=344)], Transport.HTTP, deadline=deadline())
        with pytest.raises(BufferFull):
            batcher.submit([anonymized("e", size=1)], Transport.HTTP, deadline=deadline())

        recorder.gate.set()
        await first.wait(1)
        await second.wait(1)
        await wait_until(lambda: batcher.held_events == 0)
        third = batcher.submit([anonymized("f", size=1000)], Transport.HTTP, deadline=deadline())
        assert await third.wait(1) == [Outcome.STORED]


async def test_submission_larger_than_the_whole_buffer_is_refused() -> None:
    recorder = Recorder()
    async with running(recorder, max_events=3) as batcher:
        with pytest.raises(BufferFull):
            batcher.submit(events("a", 4), Transport.HTTP, deadline=deadline())
        assert batcher.held_events == 0
        assert recorder.batches == []


async def test_capacity_is_released_after_a_failed_flush_too() -> None:
    recorder = Recorder(fail_on="bad", error=StorageUnavailable)
    async with running(recorder, max_delay_s=0, max_events=2) as batcher:
        submission = batcher.submit(
            [anonymized("bad"), anonymized("x")], Transport.HTTP, deadline=deadline()
        )
        with pytest.raises(StorageUnavailable):
            await submission.wait(1)
        await wait_until(lambda: batcher.held_events == 0)
        again = batcher.submit(events("ok", 2), Transport.HTTP, deadline=deadline())
        assert await again.wait(1) == [Outcome.STORED] * 2


# --- shutting down -------------------------------------------------------------------------


async def test_close_flushes_what_is_buffered_then_refuses() -> None:
    recorder = Recorder()
    batcher = Batcher(
        recorder,
        max_size=100,
        max_delay_s=LONG,
        write_concurrency=2,
        max_events=1000,
        max_bytes=1_000_000,
        retry_after_s=4,
    )
    batcher.start()
    assert batcher.alive
    assert batcher.accepting
    submissions = [
        batcher.submit(events(f"s{i}", 2), Transport.HTTP, deadline=deadline()) for i in range(3)
    ]
    started = time.monotonic()
    await asyncio.wait_for(batcher.close(), 1)
    assert time.monotonic() - started < 0.5  # did not wait out max_delay
    assert recorder.sizes == [6]
    for submission in submissions:
        assert await submission.wait(0.01) == [Outcome.STORED] * 2
    assert batcher.held_events == 0
    assert not batcher.alive
    assert not batcher.accepting
    with pytest.raises(ShuttingDown) as caught:
        batcher.submit([anonymized("late")], Transport.HTTP, deadline=deadline())
    assert caught.value.code is ErrorCode.SHUTTING_DOWN
    assert caught.value.retry_after_s == 4
    assert caught.value.code.http_status == 503


async def test_close_waits_for_flushes_in_flight() -> None:
    recorder = Recorder(gated=True)
    batcher = Batcher(
        recorder,
        max_size=2,
        max_delay_s=0,
        write_concurrency=1,
        max_events=100,
        max_bytes=1_000_000,
    )
    batcher.start()
    submission = batcher.submit(events("e", 5), Transport.HTTP, deadline=deadline())
    await wait_until(lambda: recorder.active == 1)
    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0.02)
    assert not closing.done()
    assert not batcher.accepting
    with pytest.raises(ShuttingDown):
        batcher.submit([anonymized("late")], Transport.HTTP, deadline=deadline())
    recorder.gate.set()
    await asyncio.wait_for(closing, 1)
    assert recorder.sizes == [2, 2, 1]
    assert await submission.wait(0.01) == [Outcome.STORED] * 5


async def test_close_of_an_idle_batcher_returns_promptly() -> None:
    recorder = Recorder()
    batcher = Batcher(
        recorder,
        max_size=10,
        max_delay_s=LONG,
        write_concurrency=1,
        max_events=10,
        max_bytes=10_000,
    )
    batcher.start()
    await asyncio.wait_for(batcher.close(), 0.5)
    assert recorder.batches == []
    assert not batcher.alive


# --- failures ------------------------------------------------------------------------------


async def test_storage_unavailable_fails_exactly_the_submissions_in_that_batch() -> None:
    recorder = Recorder(fail_on="poison", error=lambda: StorageUnavailable("pool exhausted"))
    async with running(recorder, max_size=2, max_delay_s=LONG, retry_after_s=7) as batcher:
        doomed = batcher.submit(
            [anonymized("ok-1"), anonymized("poison")], Transport.HTTP, deadline=deadline()
        )
        spared = batcher.submit(
            [anonymized("ok-2"), anonymized("ok-3")], Transport.HTTP, deadline=deadline()
        )
        with pytest.raises(StorageUnavailable) as caught:
            await doomed.wait(1)
        assert caught.value.retry_after_s == 7
        assert caught.value.code is ErrorCode.DATABASE_UNAVAILABLE
        assert await spared.wait(1) == [Outcome.STORED, Outcome.STORED]
        assert recorder.batches == [["ok-1", "poison"], ["ok-2", "ok-3"]]
        # The batcher keeps going after a failed flush.
        after = batcher.submit(events("next", 2), Transport.HTTP, deadline=deadline())
        assert await after.wait(1) == [Outcome.STORED] * 2


async def test_failed_batch_fails_every_submission_sharing_it() -> None:
    recorder = Recorder(fail_on="poison", error=StorageUnavailable)
    async with running(recorder, max_size=100, max_delay_s=0.02) as batcher:
        first = batcher.submit([anonymized("poison")], Transport.HTTP, deadline=deadline())
        second = batcher.submit([anonymized("innocent")], Transport.HTTP, deadline=deadline())
        for submission in (first, second):
            with pytest.raises(StorageUnavailable):
                await submission.wait(1)
        assert recorder.sizes == [2]


async def test_unexpected_error_fails_submissions_with_a_retryable_error() -> None:
    recorder = Recorder(fail_on="boom", error=lambda: RuntimeError("a bug in the writer"))
    async with running(recorder, max_size=100, max_delay_s=0) as batcher:
        submission = batcher.submit([anonymized("boom")], Transport.HTTP, deadline=deadline())
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as caught:
            await submission.wait(2)
        assert time.monotonic() - started < 0.5  # failed promptly, not by timing out
        assert isinstance(caught.value, Retryable)
        assert "not committed in time" not in caught.value.message
        assert caught.value.retry_after_s == 3
        assert "a bug in the writer" not in caught.value.message  # no internals leak
        after = batcher.submit([anonymized("fine")], Transport.HTTP, deadline=deadline())
        assert await after.wait(1) == [Outcome.STORED]
        await wait_until(lambda: batcher.held_events == 0)


async def test_flush_returning_too_few_outcomes_does_not_strand_waiters() -> None:
    async def short_flush(payloads: Sequence[Writable], deadline_: float) -> list[Outcome]:
        return [Outcome.STORED] * (len(payloads) - 1)

    batcher = Batcher(
        short_flush,
        max_size=10,
        max_delay_s=0,
        write_concurrency=1,
        max_events=100,
        max_bytes=100_000,
    )
    batcher.start()
    try:
        first = batcher.submit([anonymized("a")], Transport.HTTP, deadline=deadline())
        second = batcher.submit([anonymized("b")], Transport.HTTP, deadline=deadline())
        results = await asyncio.gather(first.wait(0.3), second.wait(0.3), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures, results
        for failure in failures:
            assert isinstance(failure, StorageUnavailable)
            assert "not committed in time" not in failure.message
    finally:
        await asyncio.wait_for(batcher.close(), 1)


async def test_wait_times_out_with_storage_unavailable_and_the_write_goes_on() -> None:
    recorder = Recorder(gated=True)
    async with running(recorder, max_size=100, max_delay_s=0) as batcher:
        submission = batcher.submit([anonymized("slow")], Transport.HTTP, deadline=deadline())
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as caught:
            await submission.wait(0.05)
        assert 0.045 <= time.monotonic() - started < 0.5
        assert caught.value.code is ErrorCode.DATABASE_UNAVAILABLE
        assert "not committed in time" in caught.value.message
        # The timed-out waiter did not cancel the write: it still commits and resolves.
        recorder.gate.set()
        assert await submission.wait(1) == [Outcome.STORED]
        assert recorder.completed == 1


def _lost(transport: Transport = Transport.HTTP) -> float:
    return REGISTRY.get_sample_value("sluice_events_lost_total", {"source": str(transport)}) or 0.0


async def test_detached_submissions_never_raise() -> None:
    gc.collect()  # reports about earlier tests' garbage must not land in this test's handler
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        recorder = Recorder(fail_on="poison", error=StorageUnavailable)
        async with running(recorder, max_size=100, max_delay_s=0.01) as batcher:
            lost_before = _lost()
            detached = batcher.submit(
                [anonymized("poison"), anonymized("x"), anonymized("y")],
                Transport.HTTP,
                deadline=deadline(),
                detached=True,
            )
            assert detached.detached
            await wait_until(lambda: recorder.completed == 1)
            await wait_until(lambda: batcher.held_events == 0)
            assert _lost() - lost_before == 3
            # A detached success resolves normally for anyone who does look.
            fine = batcher.submit(
                [anonymized("ok")], Transport.HTTP, deadline=deadline(), detached=True
            )
            assert await fine.wait(1) == [Outcome.STORED]
            del detached
            gc.collect()
            await asyncio.sleep(0)
        assert [c for c in reported if "exception" in c or "never retrieved" in c["message"]] == []
    finally:
        loop.set_exception_handler(previous)


async def test_detached_submission_in_a_failed_split_counts_only_unwritten_events() -> None:
    recorder = Recorder(fail_on="poison", error=StorageUnavailable)
    async with running(recorder, max_size=2, max_delay_s=0, write_concurrency=1) as batcher:
        lost_before = _lost()
        payloads = [anonymized("a"), anonymized("b"), anonymized("poison"), anonymized("c")]
        batcher.submit(payloads, Transport.HTTP, deadline=deadline(), detached=True)
        await wait_until(lambda: recorder.completed == 2)
        await wait_until(lambda: batcher.held_events == 0)
        assert recorder.batches == [["a", "b"], ["poison", "c"]]
        assert _lost() - lost_before == 2  # the first batch committed


def test_submission_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        Submission(Transport.HTTP, 1, deadline(), detached=False)
