"""Archived events written by the tests: JSON-lines files with a known mix of valid,
invalid and repeated events, and what a backfill of them must store and quarantine."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.support import make_event, unique_source

ORDER = "com.example.order.created"
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://schemas.example.com/order.created/1",
    "type": "object",
    "properties": {
        "order": {"type": "string"},
        "amount": {"type": "integer", "minimum": 0},
        "email": {"type": "string"},
    },
    "required": ["order", "amount"],
}
RELAXED: dict[str, Any] = {
    **SCHEMA,
    "properties": {**SCHEMA["properties"], "amount": {"type": ["integer", "string"]}},
}
SUBJECTS = [f"customer-{n}@example.com" for n in range(40)]


def write_contracts(directory: Path, schema: dict[str, Any]) -> Path:
    (directory / ORDER).mkdir(parents=True, exist_ok=True)
    (directory / ORDER / "1.json").write_bytes(orjson.dumps(schema))
    return directory


def valid_event(source: str, n: int) -> dict[str, Any]:
    """Event `n`: a subject from a small pool, and an e-mail in `data` the policy
    pseudonymizes; the pseudonym test compares both with the live service's."""
    subject = SUBJECTS[n % len(SUBJECTS)]
    return make_event(
        source, n, subject=subject, data={"order": f"o-{n}", "amount": n % 97, "email": subject}
    )


@dataclass
class Archive:
    source: str
    files: list[Path] = field(default_factory=list)
    stored: int = 0  # distinct valid events
    lines: int = 0
    codes: Counter[str] = field(default_factory=Counter)  # quarantine rows per code
    repeats: int = 0  # lines repeating an earlier event: duplicates, never stored twice
    relaxable: int = 0  # contract violations the relaxed contract accepts
    hopeless: int = 0  # contract violations no contract here accepts

    @property
    def quarantined(self) -> int:
        return sum(self.codes.values())


def _line(source: str, n: int, archive: Archive) -> bytes:
    """Every 100 events: one malformed line, one without `id`, one of another spec
    version, one with a NUL, two breaking only the strict contract, one breaking the
    relaxed one too, one repeat."""
    kind = n % 100
    event = valid_event(source, n)
    if kind == 7:
        archive.codes["request.malformed_json"] += 1
        return orjson.dumps(event)[:-9]
    if kind == 13:
        del event["id"]
        archive.codes["envelope.missing_attribute"] += 1
    elif kind == 21:
        event["specversion"] = "0.3"
        archive.codes["envelope.bad_specversion"] += 1
    elif kind == 33:
        event["data"]["order"] = "o\x00"
        archive.codes["envelope.nul_character"] += 1
    elif kind in (47, 48):
        event["data"]["amount"] = f"{n} EUR"
        archive.codes["contract.violation"] += 1
        archive.relaxable += 1
    elif kind == 71:
        event["data"]["order"] = n
        archive.codes["contract.violation"] += 1
        archive.hopeless += 1
    elif kind == 59:
        event = valid_event(source, n - 1)  # the event just before, archived twice
        archive.repeats += 1
    else:
        archive.stored += 1
    return orjson.dumps(event)


def write_archive(directory: Path, events: int, files: int) -> Archive:
    """`events` lines spread over `files` JSON-lines files."""
    directory.mkdir(parents=True, exist_ok=True)
    archive = Archive(source=unique_source("backfill"))
    per_file = -(-events // files)
    for index in range(files):
        numbers = range(index * per_file, min(events, (index + 1) * per_file))
        path = directory / f"events-{index:03d}.jsonl"
        path.write_bytes(b"".join(_line(archive.source, n, archive) + b"\n" for n in numbers))
        archive.files.append(path)
        archive.lines += len(numbers)
    return archive
