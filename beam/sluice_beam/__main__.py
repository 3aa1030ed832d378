"""`python -m sluice_beam backfill|reprocess [options]`: build the pipeline and run it.

Options are Beam's (`--runner`, `--direct_num_workers`, Dataflow's `--project` ...)
plus the pipeline's own (`--help` lists them). On the DirectRunner, and whenever the
runner is not Dataflow, it waits for the job and prints its counters as one JSON line
(`{"chunks_read": ..., "events_stored": ...}`); exit status 1 if the job failed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import apache_beam as beam
import orjson
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult, PipelineState

from sluice_beam import backfill, reprocess

_COMMANDS: dict[str, Callable[[beam.Pipeline, PipelineOptions], None]] = {
    "backfill": backfill.build,
    "reprocess": reprocess.build,
}
_DETACHED_RUNNERS = ("DataflowRunner", "RenderRunner")


def counters(result: PipelineResult) -> dict[str, int]:
    """The job's counters by name, summed over steps (committed where the runner says)."""
    totals: dict[str, int] = {}
    for counter in result.metrics().query()["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        name = counter.key.metric.name
        totals[name] = totals.get(name, 0) + int(value or 0)
    return dict(sorted(totals.items()))


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in _COMMANDS:
        print(f"usage: python -m sluice_beam {{{'|'.join(_COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    options = PipelineOptions(list(argv[1:]))
    pipeline = beam.Pipeline(options=options)
    _COMMANDS[argv[0]](pipeline, options)
    result = pipeline.run()
    runner = str(options.view_as(StandardOptions).runner or "DirectRunner")
    if any(runner.endswith(name) for name in _DETACHED_RUNNERS):
        return 0
    state = result.wait_until_finish()
    print(orjson.dumps({"state": str(state), **counters(result)}).decode(), flush=True)
    return 0 if state == PipelineState.DONE else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
