"""The policy as data: what `policy.load_policy` returns and `engine.py` compiles.

Plain frozen values with no behaviour beyond rule lookup. The file format they come
from is documented in docs/privacy.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

from app.privacy.actions import Action, Drop, Keep, Pseudonymize, RedactText
from app.privacy.grammar import Segment

Mode = Literal["allowlist", "denylist"]
MODES: Final[tuple[Mode, ...]] = ("allowlist", "denylist")
SubjectAction = Pseudonymize | Drop
BinaryAction = Keep | Drop
UnnamedTextAction = Keep | RedactText


@dataclass(frozen=True, slots=True)
class NameRule:
    """An action for every key (at any depth of `data`) and extension attribute whose
    name matches one of `patterns`: case-insensitive globs, stored lower-case."""

    patterns: tuple[str, ...]
    action: Action
    line: int

    def matches(self, lower_name: str) -> bool:
        return any(fnmatchcase(lower_name, pattern) for pattern in self.patterns)


@dataclass(frozen=True, slots=True)
class FieldRule:
    """An action for one exact path into `data` (`user.email`, `items[*].card`)."""

    path: tuple[Segment, ...]
    text: str
    action: Action
    line: int


@dataclass(frozen=True, slots=True)
class TypeRule:
    """Rules for events whose `type` matches one of `patterns` (case-sensitive globs).

    `None` for `mode`, `unnamed_text` and `binary_data` means "as at the top level".
    """

    patterns: tuple[str, ...]
    mode: Mode | None
    unnamed_text: UnnamedTextAction | None
    binary_data: BinaryAction | None
    names: tuple[NameRule, ...]
    fields: tuple[FieldRule, ...]
    extensions: Mapping[str, Action]
    line: int

    def matches(self, event_type: str) -> bool:
        return any(fnmatchcase(event_type, pattern) for pattern in self.patterns)


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything that applies to one event type, precedence already resolved: `names`
    holds the type's name rules before the top-level ones, `extensions` the type's exact
    extension rules over the top-level ones."""

    mode: Mode
    unnamed_text: UnnamedTextAction
    binary_data: BinaryAction
    names: tuple[NameRule, ...]
    fields: tuple[FieldRule, ...]
    extensions: Mapping[str, Action]

    def name_action(self, name: str) -> Action | None:
        """The action of the first name rule matching `name` (case-insensitive), if any."""
        lower = name.lower()
        for rule in self.names:
            if rule.matches(lower):
                return rule.action
        return None


@dataclass(frozen=True, slots=True)
class Policy:
    """A whole policy file: the top-level rules, and the type rules in file order."""

    path: Path
    version: str  # first 16 hex digits of the SHA-256 of the file's bytes
    mode: Mode
    subject: SubjectAction
    binary_data: BinaryAction
    unnamed_text: UnnamedTextAction
    names: tuple[NameRule, ...]
    extensions: Mapping[str, Action]
    types: tuple[TypeRule, ...]

    def type_rule(self, event_type: str) -> TypeRule | None:
        """The first type rule whose glob matches `event_type`, if any."""
        for rule in self.types:
            if rule.matches(event_type):
                return rule
        return None

    def rules(self, rule: TypeRule | None = None) -> Rules:
        """The effective rules under a type rule; `None`: the top-level rules, which apply
        to every event type no type rule matches."""
        if rule is None:
            return Rules(
                mode=self.mode,
                unnamed_text=self.unnamed_text,
                binary_data=self.binary_data,
                names=self.names,
                fields=(),
                extensions=self.extensions,
            )
        return Rules(
            mode=rule.mode or self.mode,
            unnamed_text=rule.unnamed_text or self.unnamed_text,
            binary_data=rule.binary_data or self.binary_data,
            names=rule.names + self.names,
            fields=rule.fields,
            extensions=MappingProxyType({**self.extensions, **rule.extensions}),
        )
