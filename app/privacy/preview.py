"""`python -m app privacy preview FILE.jsonl [--policy P]`: what a policy would store of
sample events, per event type and field path, with every value masked.

Each line of the file is one CloudEvent in structured JSON (`type`, `data` or
`data_base64`, extension attributes beside them). For each type and path the report
gives the action and the rule it comes from, how many values were seen and how many
would be stored unchanged, and, for values stored unchanged that a detector flags (an
e-mail, a phone number, an address…), the tags and one masked example. Those rows come
first: they are where the policy lets personal data through. Lines that are not JSON
objects with a string `type` are counted and named by line number, never printed.

This is how a team writes its allowlist: preview real events under the shipped policy,
then under a draft allowlist, until nothing it needs is dropped and nothing flagged is
kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from app.privacy.explain import Explainer, Leaf
from app.privacy.findings import masked, tags_in
from app.privacy.keyring import Keyring
from app.privacy.rules import Policy

_CONTEXT: Final = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}
)
_MAX_SKIPPED_LINES: Final = 20  # line numbers named in the report


@dataclass(slots=True)
class PathSummary:
    action: str
    rule: str
    values: int = 0
    unchanged: int = 0
    flagged: int = 0  # stored unchanged and flagged by a detector
    tags: set[str] = field(default_factory=set)
    example: str | None = None  # masked


@dataclass(slots=True)
class TypeSummary:
    events: int = 0
    paths: dict[str, PathSummary] = field(default_factory=dict)

    def add(self, leaf: Leaf) -> None:
        summary = self.paths.get(leaf.path)
        if summary is None:
            summary = self.paths[leaf.path] = PathSummary(
                leaf.decision.action.name, leaf.decision.rule
            )
        summary.values += 1
        if not leaf.unchanged:
            return
        summary.unchanged += 1
        if isinstance(leaf.value, str) and (tags := tags_in(leaf.value)):
            summary.flagged += 1
            summary.tags.update(tags)
            if summary.example is None:
                summary.example = masked(leaf.value)

    def ordered(self) -> list[tuple[str, PathSummary]]:
        """Flagged paths first (most flagged first), then the rest by path."""
        return sorted(self.paths.items(), key=lambda item: (-item[1].flagged, item[0]))


@dataclass(slots=True)
class Preview:
    policy: Policy
    types: dict[str, TypeSummary] = field(default_factory=dict)
    events: int = 0
    skipped: list[int] = field(default_factory=list)  # line numbers

    @property
    def flagged(self) -> int:
        return sum(p.flagged for t in self.types.values() for p in t.paths.values())


def preview_file(path: Path, policy: Policy, keyring: Keyring) -> Preview:
    """Reads `path` (raises OSError) and explains every event in it under `policy`."""
    with path.open("rb") as lines:
        return preview_lines(lines, policy, keyring)


def preview_lines(lines: Iterable[bytes], policy: Policy, keyring: Keyring) -> Preview:
    explainer = Explainer(policy, keyring)
    report = Preview(policy)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            report.skipped.append(number)
            continue
        report.events += 1
        _explain(explainer, event, report.types.setdefault(event["type"], TypeSummary()))
    return report


def _explain(explainer: Explainer, event: dict[str, Any], summary: TypeSummary) -> None:
    event_type = event["type"]
    summary.events += 1
    if event.get("subject") is not None:
        decision = explainer.subject()
        summary.add(Leaf("subject", event["subject"], decision, "(pseudonym)"))
    if "data_base64" in event:
        decision = explainer.binary(event_type)
        summary.add(Leaf("(data_base64)", "", decision, "(binary)"))
    elif "data" in event:
        for leaf in explainer.leaves(event_type, event["data"]):
            summary.add(leaf)
    extensions = {
        name: value
        for name, value in event.items()
        if name not in _CONTEXT and name not in ("data", "data_base64")
    }
    for leaf in explainer.extensions(event_type, extensions):
        summary.add(leaf)


def render(report: Preview, source: str) -> str:
    """The report as text: a heading, then one table per event type."""
    policy = report.policy
    lines = [
        f"policy {policy.path} (version {policy.version}, mode {policy.mode}): "
        f"{report.events} events from {source}; "
        f"{report.flagged} values flagged by a detector would be stored unchanged",
    ]
    if report.skipped:
        named = ", ".join(str(n) for n in report.skipped[:_MAX_SKIPPED_LINES])
        more = "…" if len(report.skipped) > _MAX_SKIPPED_LINES else ""
        lines.append(f"skipped {len(report.skipped)} lines (not a CloudEvent): {named}{more}")
    for event_type, summary in sorted(report.types.items()):
        lines += ["", f"{event_type}  ({summary.events} events)"]
        rows: list[tuple[str, ...]] = [
            ("", "path", "action", "rule", "values", "unchanged", "flagged", "example")
        ]
        for path, p in summary.ordered():
            rows.append(
                (
                    "!" if p.flagged else "",
                    path,
                    p.action,
                    p.rule,
                    str(p.values),
                    str(p.unchanged),
                    f"{p.flagged} {','.join(sorted(p.tags))}" if p.flagged else "",
                    p.example or "",
                )
            )
        lines += _table(rows)
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
