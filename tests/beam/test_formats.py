"""Issue 19: besides JSON lines, a backfill reads CloudEvents batch files (`.json`, one
array) and compressed files, and skips blank lines."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import orjson

from tests.beam.archive import valid_event
from tests.beam.conftest import run_beam, stored_of
from tests.support import unique_source


async def test_batch_files_and_compressed_lines_are_backfilled(
    beam_python: Path, beam_database: str, tmp_path: Path
) -> None:
    source = unique_source("formats")
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "batch.json").write_bytes(orjson.dumps([valid_event(source, n) for n in range(50)]))
    lines = b"\n\n".join(orjson.dumps(valid_event(source, n)) for n in range(50, 100))
    (archive / "lines.jsonl.gz").write_bytes(gzip.compress(lines + b"\n"))

    done = await asyncio.to_thread(
        run_beam,
        beam_python,
        "backfill",
        [f"--input={archive / '*'}", "--backfill_name=formats"],
        {"DATABASE_URL": beam_database},
    )
    assert done.returncode == 0, done.output[-4000:]
    stored = await stored_of(beam_database, source)
    assert stored.events == stored.distinct_ids == 100
    assert stored.codes == {}
    assert done.counters["chunks_read"] == 2  # neither file can be cut: one chunk each
