"""The verdict's arithmetic: the formula for a database on its own cores, the knee of a
sweep, and the rows that must fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import scaling
from bench.consumer import ConsumerRun
from bench.copy_ceiling import CopyResult
from bench.measure import OpenLoop, Throughput
from bench.report import Run, Verdict, dedicated_ratio, overload_row, rows


def _throughput(events_per_s: float, service: float, postgres: float, clients: float) -> Throughput:
    """`service` etc.: CPU µs per event; stored as percent of a core, as measured."""
    pct = {
        name: us * events_per_s / 1e4
        for name, us in (("service", service), ("postgres", postgres), ("clients", clients))
    }
    return Throughput(
        events_per_s=events_per_s,
        requests_per_s=events_per_s / 50,
        p50_ms=1.0,
        p99_ms=2.0,
        acked_events=100,
        errors={},
        cpu={
            **pct,
            "service_workers": [pct["service"] / 2] * 2,
            "other": 0.0,
            "machine_busy": 200.0,
            "machine_capacity": 200.0,
        },
    )


def test_dedicated_cores_divide_the_slowest_party_of_each_side() -> None:
    http = _throughput(20_000, service=55, postgres=36, clients=7)
    copy = CopyResult(rows=100_000, seconds=1.0, postgres_cpu_s=0.75, client_cpu_s=0.5)
    assert copy.postgres_us_per_row == pytest.approx(7.5)
    # max(7.5, 5) ÷ max(36, 55 + 7)
    assert dedicated_ratio(http, copy) == pytest.approx(7.5 / 62)


def test_rows_pass_and_fail_on_their_targets() -> None:
    run = Run(
        settings={},
        copy=CopyResult(rows=100_000, seconds=1.0, postgres_cpu_s=0.75, client_cpu_s=0.2),
        sluice=_throughput(40_000, service=18, postgres=16, clients=3),
        competent=_throughput(25_000, service=20, postgres=20, clients=3),
    )
    run.verified["sluice"] = (100, 99)
    table = rows(run)

    def verdict(number: str, word: str) -> Verdict:
        (row,) = (row for row in table if row.number == number and word in row.figure)
        return row.verdict

    assert verdict("1", "÷ raw COPY") is Verdict.PASS  # 0.4 ≥ 0.35
    assert verdict("2", "service CPU") is Verdict.PASS  # 18 ≤ 20
    assert verdict("2", "PostgreSQL CPU") is Verdict.FAIL  # 16 ÷ 7.5 > 2
    assert verdict("3", "competent") is Verdict.FAIL  # 1.6 < 2
    assert verdict("3", "naive") is Verdict.SKIP  # not measured
    assert verdict("✓", "exactly-once") is Verdict.FAIL  # one acknowledged event missing


def _consumer(events_per_s: float, per_message: int, *, stored_all: bool = True) -> ConsumerRun:
    events = 1_000 * per_message
    return ConsumerRun(
        processes=2,
        messages=1_000,
        events_per_message=per_message,
        stored=events if stored_all else events - 1,
        measured=events,
        seconds=events / events_per_s,
        cpu_s=events * 40e-6,
        acked=events,
    )


def test_row_5_is_judged_on_batch_messages_and_prints_both_figures() -> None:
    run = Run(settings={}, sluice=_throughput(40_000, service=18, postgres=16, clients=3))
    run.consumer = _consumer(12_000, 1)  # 0.3: would fail, but carries no target
    run.consumer_batch = _consumer(44_000, 50)
    fives = [row for row in rows(run) if row.number == "5"]
    assert [(row.verdict, row.target) for row in fives] == [
        (Verdict.PASS, "≥ 1.0"),
        (Verdict.INFO, "—"),
    ]
    batch, single = (row.value for row in fives)
    assert batch.startswith("1.10 (44,000 ÷ 40,000")
    assert "50-event batch messages" in batch
    assert "40.0 µs CPU per event" in batch
    assert single.startswith("0.30 (12,000 ÷ 40,000")
    assert "one-event messages" in single

    run.consumer_batch = _consumer(44_000, 50, stored_all=False)
    assert next(r for r in rows(run) if r.number == "5").verdict is Verdict.FAIL
    run.consumer_batch = None
    assert next(r for r in rows(run) if r.number == "5").verdict is Verdict.SKIP


def test_overload_fails_when_the_client_had_to_shed() -> None:
    run = Run(settings={}, overload_s=60.0)
    run.overload = OpenLoop(
        planned_per_s=1000,
        sent_per_s=900,
        p50_ms=1,
        p99_ms=2,
        statuses={"200": 10, "429": 5},
        shed=0,
        acked_events=500,
        cpu={},
        rss_peak_mib={"1": 120.0, "2": 130.0},
    )
    assert overload_row(run).verdict is Verdict.PASS
    run.overload = OpenLoop(
        planned_per_s=1000,
        sent_per_s=900,
        p50_ms=1,
        p99_ms=2,
        statuses={"200": 10},
        shed=3,
        acked_events=500,
        cpu={},
        rss_peak_mib={"1": 120.0},
    )
    assert overload_row(run).verdict is Verdict.FAIL


def _points(knob: str, rates: dict[float, float]) -> list[scaling.Point]:
    return [scaling.Point(knob, value, rate, 1.0, 2.0, None, None) for value, rate in rates.items()]


def test_the_knee_is_the_smallest_value_near_the_best() -> None:
    points = _points("max_size", {50: 5_000, 100: 9_000, 250: 9_700, 500: 10_000, 1000: 9_900})
    assert scaling.knee(points) == 250
    assert scaling.at_knee([50, 100, 250, 500, 1000], 250, 500)  # one step of slack
    assert not scaling.at_knee([50, 100, 250, 500, 1000], 250, 1000)


def test_the_sweep_makes_a_table_and_a_chart(tmp_path: Path) -> None:
    points = {
        "workers": _points("workers", {1: 8_000, 2: 15_000, 4: 14_000}),
        "max_size": _points("max_size", {100: 9_000, 500: 15_000}),
        "max_delay_ms": _points("max_delay_ms", {0: 12_000, 10: 15_000}),
    }
    data = scaling.summarize(points, {"workers": 2, "max_size": 500, "max_delay_ms": 10})
    assert data["knees"]["max_size"] == {"knee": 500, "default": 500, "at_knee": True}
    assert "| max_size | 500 (knee) (default) | 15,000 |" in scaling.table(data)
    assert scaling.chart(data, tmp_path / "chart.png").stat().st_size > 1000
