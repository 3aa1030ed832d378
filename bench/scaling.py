"""`python -m bench.scaling` (`make bench-scaling`): throughput as the workers, the batch
size and the batch delay change. Long (about 4 minutes), so not part of `make bench`,
whose row 9 reads the latest result.

Points: 1, 2 and 4 workers at the default batch settings; `SLUICE_BATCH_MAX_SIZE` and
`SLUICE_BATCH_MAX_DELAY_MS` swept one at a time at `--workers`, the other at its default.
Each point is a fresh `python -m app serve` on one scratch database, loaded as `make
bench` loads it (closed loop, staggered connections) for `--duration` seconds.

The *knee* of a sweep is the smallest value whose throughput reaches 95 % of the sweep's
best: beyond it a larger batch or a longer delay buys latency, not throughput. A default
is "at the knee" when it is the knee or the next swept value above it (one step of
slack: points are noisy).

Writes `bench/results/scaling.json` and `docs/images/scaling.png`, prints the Markdown
table; `--write-docs` also puts that table into docs/benchmarks.md between its markers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from app.config import BatchSettings
from bench import database
from bench.load import plan_from
from bench.measure import closed_loop
from bench.server import running_service

RESULTS = Path(__file__).resolve().parent / "results" / "scaling.json"
DOCS = Path(__file__).resolve().parents[1] / "docs"
CHART = DOCS / "images" / "scaling.png"
MARKERS = ("<!-- scaling:start -->", "<!-- scaling:end -->")
KNEE_FRACTION = 0.95
SWEEPS = {
    "workers": (1, 2, 4),
    "max_size": (50, 100, 250, 500, 1000, 2000),
    "max_delay_ms": (0, 2, 5, 10, 20, 50),
}
ENV = {"max_size": "SLUICE_BATCH_MAX_SIZE", "max_delay_ms": "SLUICE_BATCH_MAX_DELAY_MS"}


@dataclass(frozen=True, slots=True)
class Point:
    knob: str  # workers, max_size or max_delay_ms
    value: float
    events_per_s: float
    p50_ms: float
    p99_ms: float
    service_us: float | None
    postgres_us: float | None
    other_pct: float | None = None  # busy CPU of nobody here: another job's, noise


def knee(points: Sequence[Point]) -> float:
    best = max(point.events_per_s for point in points)
    ordered = sorted(points, key=lambda point: point.value)
    return next(p.value for p in ordered if p.events_per_s >= KNEE_FRACTION * best)


def at_knee(values: Sequence[float], knee_value: float, default: float) -> bool:
    ordered = sorted(values)
    index = ordered.index(knee_value)
    return default in ordered[index : index + 2]


def _measure(args: argparse.Namespace, url: str, knob: str, value: float) -> Point:
    workers = int(value) if knob == "workers" else args.workers
    env = {ENV[knob]: f"{value:g}"} if knob in ENV else {}
    with running_service(url, workers=workers, extra_env=env) as service:
        figures = closed_loop(
            service, plan_from(args, service.base_url, args.duration), postgres_url=url
        )
    print(f"bench.scaling: {knob}={value:g}: {figures.events_per_s:,.0f} events/s", flush=True)
    return Point(
        knob=knob,
        value=value,
        events_per_s=figures.events_per_s,
        p50_ms=figures.p50_ms,
        p99_ms=figures.p99_ms,
        service_us=figures.us_per_event("service"),
        postgres_us=figures.us_per_event("postgres"),
        other_pct=figures.cpu.get("other"),
    )


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    defaults = {"workers": args.workers, **_batch_defaults()}
    admin, _ = database.admin_url()
    points: dict[str, list[Point]] = {}
    with database.scratch_database(admin) as url:
        for knob, values in SWEEPS.items():
            points[knob] = [_measure(args, url, knob, float(value)) for value in values]
    return summarize(points, defaults)


def _batch_defaults() -> dict[str, float]:
    batch = BatchSettings()
    return {"max_size": float(batch.max_size), "max_delay_ms": float(batch.max_delay_ms)}


def summarize(points: dict[str, list[Point]], defaults: dict[str, float]) -> dict[str, Any]:
    knees = {}
    for knob in ENV:
        values = [point.value for point in points[knob]]
        knee_value = knee(points[knob])
        knees[knob] = {
            "knee": knee_value,
            "default": defaults[knob],
            "at_knee": defaults[knob] in values and at_knee(values, knee_value, defaults[knob]),
        }
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "workers": [asdict(point) for point in points["workers"]],
        "points": {knob: [asdict(point) for point in sweep] for knob, sweep in points.items()},
        "knees": knees,
    }


def latest() -> dict[str, Any] | None:
    """The last `python -m bench.scaling` result on this machine, if any."""
    if not RESULTS.exists():
        return None
    data: dict[str, Any] = orjson.loads(RESULTS.read_bytes())
    return data


def table(data: dict[str, Any]) -> str:
    lines = [
        f"Measured {data['when']}; knee = smallest value reaching "
        f"{KNEE_FRACTION:.0%} of the sweep's best.",
        "",
        "| knob | value | events/s | p50 ms | p99 ms | service µs/event | PostgreSQL µs/event "
        "| other % core |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for knob, sweep_points in data["points"].items():
        for point in sweep_points:
            marks = _marks(data, knob, point["value"])
            lines.append(
                f"| {knob} | {point['value']:g}{marks} | {point['events_per_s']:,.0f} | "
                f"{point['p50_ms']:.1f} | {point['p99_ms']:.1f} | {_num(point['service_us'])} | "
                f"{_num(point['postgres_us'])} | {_num(point.get('other_pct'))} |"
            )
    return "\n".join(lines)


def _marks(data: dict[str, Any], knob: str, value: float) -> str:
    found = data["knees"].get(knob)
    if found is None:
        return ""
    return (" (knee)" if value == found["knee"] else "") + (
        " (default)" if value == found["default"] else ""
    )


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def chart(data: dict[str, Any], path: Path = CHART) -> Path:
    import matplotlib  # noqa: PLC0415 - heavy; only for the chart

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415

    knobs = list(data["points"])
    figure, axes = plt.subplots(1, len(knobs), figsize=(4.2 * len(knobs), 3.6), squeeze=False)
    for axis, knob in zip(axes[0], knobs, strict=True):
        values = [p["value"] for p in data["points"][knob]]
        axis.plot(values, [p["events_per_s"] for p in data["points"][knob]], "o-", color="C0")
        axis.set_xlabel(knob)
        axis.set_ylabel("committed events/s", color="C0")
        axis.set_ylim(bottom=0)
        latency = axis.twinx()
        latency.plot(values, [p["p99_ms"] for p in data["points"][knob]], "s--", color="C1")
        latency.set_ylabel("p99 ms (closed loop)", color="C1")
        latency.set_ylim(bottom=0)
        if knob in data["knees"]:
            axis.axvline(data["knees"][knob]["knee"], color="grey", linestyle=":")
        if knob == "max_size":
            axis.set_xscale("log")
    figure.suptitle(f"Sluice scaling ({data['when']})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_docs(
    markdown: str, markers: tuple[str, str] = MARKERS, docs: Path = DOCS / "benchmarks.md"
) -> None:
    """Replace what stands between `markers` in docs/benchmarks.md with `markdown`."""
    text = docs.read_text()
    start, end = (text.index(marker) for marker in markers)
    docs.write_text(text[: start + len(markers[0])] + "\n" + markdown + "\n" + text[end:])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds a point")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--batch", type=int, default=50, help="events per request")
    parser.add_argument("--workers", type=int, default=2, help="workers for the batch sweeps")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    data = sweep(args)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    markdown = table(data) + f"\n\n![scaling](images/{CHART.name})"
    print(markdown)
    print(f"bench.scaling: chart {chart(data)}, figures {RESULTS}")
    if args.write_docs:
        write_docs(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
