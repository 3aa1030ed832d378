"""The residual-PII scan: personal data that is on disk although the policy ran.

`scan(rows)` runs the free-text detectors (`detectors.redact`) over every string, key
names included, of each stored JSON document of the sampled rows (an event's `data` and
`extensions`; a quarantine row's `attributes`, `data` and anonymized `event`), and
reports, per table, event type and field path, how many strings a detector flagged, with
which tags and one masked example: never a value. What it finds was stored by a policy
(or a policy version) that let it through: a `keep` on a free-text field, an
`unnamed_text: keep`, a rule written before a field started carrying personal data.

`python -m app privacy scan` and `GET /admin/privacy/scan` run it; each run sets
`sluice_residual_pii_findings` (observability/metrics.py), so an alert can fire.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from app.observability.metrics import record_residual_findings
from app.privacy.findings import masked, tags_in
from app.storage.residual import StoredRow


@dataclass(slots=True)
class Finding:
    table: str
    type: str | None
    path: str
    count: int = 0
    tags: Counter[str] = field(default_factory=Counter)  # strings holding each tag
    example: str = ""  # masked


@dataclass(slots=True)
class ScanReport:
    rows: int = 0
    strings: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def flagged(self) -> int:
        return sum(finding.count for finding in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "strings": self.strings,
            "flagged": self.flagged,
            "findings": [
                {
                    "table": f.table,
                    "type": f.type,
                    "path": f.path,
                    "count": f.count,
                    "tags": dict(sorted(f.tags.items())),
                    "example": f.example,
                }
                for f in self.findings
            ],
        }


def scan(rows: Iterable[StoredRow]) -> ScanReport:
    """The findings in `rows`, most flagged first; sets the findings metric."""
    report = ScanReport()
    found: dict[tuple[str, str | None, str], Finding] = {}
    for row in rows:
        report.rows += 1
        for name, document in row.documents.items():
            for path, text in _strings(document, name):
                report.strings += 1
                tags = tags_in(text)
                if not tags:
                    continue
                key = (row.table, row.type, path)
                finding = found.get(key)
                if finding is None:
                    finding = found[key] = Finding(row.table, row.type, path, example=masked(text))
                finding.count += 1
                finding.tags.update(tags)
    report.findings = sorted(found.values(), key=lambda f: (-f.count, f.table, f.path))
    record_residual_findings(
        (f.table, tag, count) for f in report.findings for tag, count in f.tags.items()
    )
    return report


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, string) for every string under `value`, key names included (as `path.{}`)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, member in value.items():
            yield f"{path}.{{key}}", key
            yield from _strings(member, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, f"{path}[*]")
