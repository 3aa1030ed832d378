"""Input files cut into chunks: the unit a backfill reads, writes and records as done.

A chunk is a byte range `[start, end)` of one file and owns the lines that *start*
inside it, so neighbouring chunks never share or lose a line, whatever the chunk size
(the rule Beam's own text source splits by). Files that cannot be cut are one chunk
each: compressed files (no seeking) and `.json` files, which hold one CloudEvents batch
(a JSON array) or one event. Every other file is JSON lines: one event (or one batch
array) per line.

A chunk's key, `path@start-end`, names it in the `backfill_commits` table: rerunning a
backfill with the same chunk size finds the same chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

WHOLE = -1  # `end` of a chunk that is its whole file


@dataclass(frozen=True, slots=True)
class Chunk:
    path: str
    start: int
    end: int  # exclusive; WHOLE: up to the end of the file

    @property
    def key(self) -> str:
        return f"{self.path}@{self.start}-{'end' if self.end == WHOLE else self.end}"

    @property
    def is_document(self) -> bool:
        """The chunk is a whole `.json` file: one JSON document, not lines."""
        return _base_name(self.path).endswith(".json")


def chunks_of(path: str, size: int, chunk_bytes: int) -> list[Chunk]:
    """The chunks of a file of `size` bytes (none for an empty one)."""
    if size == 0:
        return []
    if _base_name(path).endswith(".json") or _compressed(path):
        return [Chunk(path, 0, WHOLE)]
    return [
        Chunk(path, start, min(start + chunk_bytes, size)) for start in range(0, size, chunk_bytes)
    ]


def read_chunk(chunk: Chunk) -> Iterator[tuple[int, bytes]]:
    """`(offset, text)` of each line the chunk owns (a document chunk: one, at 0)."""
    if chunk.end == WHOLE:
        with FileSystems.open(chunk.path) as stream:  # decompresses by the file's suffix
            body = stream.read()
        if chunk.is_document:
            yield 0, body
        else:
            yield from _lines(body)
        return
    with FileSystems.open(chunk.path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
        yield from _lines_in_range(stream, chunk.start, chunk.end)


def _lines_in_range(stream: IO[bytes], start: int, end: int) -> Iterator[tuple[int, bytes]]:
    position = 0
    if start > 0:
        # The line holding byte start-1 belongs to the chunk before; ours begin after it.
        stream.seek(start - 1)
        position = start - 1 + len(stream.readline())
    while position < end:
        line = stream.readline()
        if not line:
            return
        yield position, line
        position += len(line)


def _lines(body: bytes) -> Iterator[tuple[int, bytes]]:
    position = 0
    for line in body.splitlines(keepends=True):
        yield position, line
        position += len(line)


def _compressed(path: str) -> bool:
    return CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED


def _base_name(path: str) -> str:
    """The name without a compression suffix, lower-case: `x.json.gz` → `x.json`."""
    name = path.rsplit("/", 1)[-1].lower()
    for suffix in (".gz", ".bz2", ".zst", ".zstd", ".deflate", ".lzma", ".xz"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name
