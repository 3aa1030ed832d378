"""The backfill pipeline: archived files → the service's steps → PostgreSQL, resumable.

    Match files → Split into chunks → Skip committed chunks → Spread chunks (Reshuffle)
      → Read and decode → Validate, anonymize, check contract ─┬→ Write events
                                                                └→ Write quarantine (tagged)

Reading, preparing and writing a chunk run fused on one worker, so a chunk's rows are
committed while the job runs (not after a shuffle of everything), and a killed job
leaves whole chunks behind it that a restart skips.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.options.pipeline_options import PipelineOptions

from app.clock import utc_now
from sluice_beam.chunks import chunks_of
from sluice_beam.commits import SkipCommitted, WriteChunk
from sluice_beam.prepare import EVENTS, QUARANTINE, Prepare, ReadChunk
from sluice_beam.runtime import SluiceOptions, environment_of


class BackfillOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument(
            "--input",
            help="(required) file pattern: a local path or gs://bucket/path, globs allowed",
        )
        parser.add_argument(
            "--backfill_name",
            help="(required) the name committed chunks are recorded under; rerun it to resume",
        )
        parser.add_argument(
            "--as_of",
            default=None,
            help="RFC 3339 instant the time checks judge events against (default: now, "
            "fixed once for the whole job)",
        )
        parser.add_argument(
            "--chunk_bytes", type=int, default=1 << 20, help="bytes per chunk of a JSON-lines file"
        )
        parser.add_argument(
            "--batch_size", type=int, default=500, help="writables per write statement"
        )


def as_of_instant(text: str | None) -> datetime:
    return datetime.fromisoformat(text) if text else utc_now()


def build(pipeline: beam.Pipeline, options: PipelineOptions) -> None:
    """Adds the backfill's transforms to `pipeline`."""
    sluice = options.view_as(SluiceOptions)
    environment = environment_of(sluice.sluice_env)
    options = options.view_as(BackfillOptions)
    # Not argparse's `required`: every PipelineOptions class shares one parser, and the
    # reprocess command must not be asked for a backfill's input.
    if not options.input or not options.backfill_name:
        raise ValueError("backfill needs --input and --backfill_name")
    chunk_bytes = options.chunk_bytes
    chunks = (
        pipeline
        | "Match files" >> fileio.MatchFiles(options.input)
        | "Split into chunks"
        >> beam.FlatMap(lambda found: chunks_of(found.path, found.size_in_bytes, chunk_bytes))
        | "Skip committed chunks" >> beam.ParDo(SkipCommitted(options.backfill_name, environment))
        | "Spread chunks" >> beam.Reshuffle()
    )
    prepared = (
        chunks
        | "Read and decode" >> beam.ParDo(ReadChunk())
        | "Validate, anonymize, check contract"
        >> beam.ParDo(Prepare(as_of_instant(options.as_of), environment)).with_outputs(
            QUARANTINE, main=EVENTS
        )
    )
    for side, label in ((EVENTS, "Write events"), (QUARANTINE, "Write quarantine")):
        _ = prepared[side] | label >> beam.ParDo(
            WriteChunk(
                options.backfill_name,
                side,
                batch_size=options.batch_size,
                write_timeout_s=sluice.write_timeout_s,
                environment=environment,
            )
        )
