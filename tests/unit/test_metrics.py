"""The bulk time-skew observation adds exactly what one `observe` per event would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from app.observability import metrics


def _samples(histogram: Histogram) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in histogram.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def _delta(
    after: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    before: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        key: round(value - before.get(key, 0.0), 6)
        for key, value in after.items()
        if value != before.get(key, 0.0)
    }


def test_bulk_skews_match_one_observe_per_event() -> None:
    skews = [0.0, -0.5, 3.0, -3.0, 10.0, -10.0, 59.9, -86400.0, 7e6, -4e9, 1e-9, 300.0]
    reference = Histogram(
        metrics.TIME_SKEW._name,
        "reference",
        ["direction"],
        buckets=metrics.TIME_SKEW._kwargs["buckets"],
        registry=CollectorRegistry(),
    )
    for ahead in skews:
        reference.labels(direction="future" if ahead > 0 else "past").observe(abs(ahead))

    before = _samples(metrics.TIME_SKEW)
    metrics.observe_time_skews(skews)
    assert _delta(_samples(metrics.TIME_SKEW), before) == _delta(_samples(reference), {})
