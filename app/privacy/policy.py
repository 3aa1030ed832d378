"""The anonymization policy: a YAML file, read and validated once at start-up.

`load_policy(path)` returns a `Policy` (plain frozen data, no behaviour beyond rule
lookup) or raises `PolicyError` with a message that names the file and, when the problem
is in it, the line: ``policy.yaml:14: unknown action 'pseudonymise' (did you mean
'pseudonymize'? expected one of keep, drop, …)``. A service must not start on a policy
it only half understood, so everything is checked: unknown keys, unknown actions and
parameters, out-of-range parameters, path and glob syntax, duplicate keys.

The file is read through PyYAML's *composition* tree (`yaml.compose`) rather than
`safe_load`: every node keeps its line, so an error found while validating still points
at the line that caused it, and a duplicate key (which `safe_load` silently resolves to
the last one) is an error.

The file format is documented in docs/privacy.md; `engine.py` applies it.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from fnmatch import fnmatchcase
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from app.privacy.actions import (
    ACTION_NAMES,
    TIME_UNITS,
    Action,
    Drop,
    GeneralizeNumber,
    GeneralizeTime,
    Keep,
    Mask,
    Pseudonymize,
    RedactText,
    TimeUnit,
    TruncateIp,
)

FORMAT_VERSION: Final = 1
Mode = Literal["allowlist", "denylist"]
MODES: Final[tuple[Mode, ...]] = ("allowlist", "denylist")
SubjectAction = Pseudonymize | Drop
BinaryAction = Keep | Drop
UnnamedTextAction = Keep | RedactText

_EXTENSION_NAME = re.compile(r"[a-z0-9]+")  # CloudEvents 1.0 attribute naming
_PATH_TOKEN = re.compile(r"\.|\[[^\]]*\]|[^.\[\]]+|[\[\]]")


class PolicyError(Exception):
    """The policy file is missing, unreadable or invalid; the message says where and why."""


class Each(Enum):
    """The `[*]` path segment: every element of an array."""

    EACH = "[*]"


EACH: Final = Each.EACH
Segment = str | Each


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


def load_policy(path: Path) -> Policy:
    """Read, parse and validate the policy file at `path`.

    Raises `PolicyError` naming the file (and the line, when the problem is in the file):
    the file is missing or unreadable, not YAML, or not a valid policy.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror or exc}") from exc
    return parse_policy(raw, path)


def parse_policy(raw: bytes, path: Path) -> Policy:
    """`load_policy` on bytes already read; `path` names the file in messages."""
    try:
        root = yaml.compose(raw, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{mark.line + 1}:" if mark is not None else ""
        problem = exc.problem or exc.context or "syntax error"
        raise PolicyError(f"{path}:{line} invalid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: invalid YAML: {exc}") from exc
    if root is None:
        raise PolicyError(f"{path}:1: the policy is empty; expected at least version and mode")
    reader = _Reader(path)
    return reader.policy(root, version=hashlib.sha256(raw).hexdigest()[:16])


def parse_path(text: str) -> tuple[Segment, ...]:
    """`user.email` → ("user", "email"); `items[*].card` → ("items", EACH, "card").

    Keys are separated by dots and cannot contain `.`, `[` or `]`; `[*]` stands for every
    element of an array and may follow a key, another `[*]`, or start the path (data that
    is itself an array). Raises ValueError saying what is wrong.
    """
    if not text:
        raise ValueError("empty path")
    segments: list[Segment] = []
    after_dot = False
    for piece in _PATH_TOKEN.findall(text):
        if piece == ".":
            if not segments or after_dot:
                raise ValueError("empty key (a path cannot start with '.' or hold '..')")
            after_dot = True
            continue
        segment = _segment(piece)
        if segment is EACH and after_dot:
            raise ValueError("'[*]' must follow a key directly, as in 'items[*]'")
        if segment is not EACH and segments and not after_dot:
            raise ValueError("a key must follow '.'")
        segments.append(segment)
        after_dot = False
    if after_dot:
        raise ValueError("empty key (a path cannot end with '.')")
    return tuple(segments)


def _segment(piece: str) -> Segment:
    if piece == "[*]":
        return EACH
    if piece in ("[", "]"):
        raise ValueError(f"unbalanced '{piece}'")
    if piece.startswith("["):
        raise ValueError(f"only '[*]' selects array elements, not '{piece}'")
    if piece != piece.strip():
        raise ValueError(f"key '{piece}' has leading or trailing spaces")
    return piece


def check_glob(pattern: str) -> None:
    """Raises ValueError for a glob that cannot mean what it says: empty, or a `[` set
    that never closes (fnmatch would silently take the `[` literally)."""
    if not pattern:
        raise ValueError("empty pattern")
    position = 0
    while (start := pattern.find("[", position)) != -1:
        # fnmatch: `]` right after `[` (or `[!`) is a member, not the end of the set.
        first = start + 2 if pattern[start + 1 : start + 2] == "!" else start + 1
        end = pattern.find("]", first + 1)
        if end == -1:
            raise ValueError(f"'[' at {start} is never closed")
        position = end + 1


# --- reading the composition tree ------------------------------------------------------

_TOP_LEVEL_KEYS = (
    "version",
    "mode",
    "subject",
    "binary_data",
    "unnamed_text",
    "names",
    "types",
    "extensions",
)
_TYPE_KEYS = ("match", "mode", "unnamed_text", "binary_data", "names", "fields", "extensions")
_NAME_RULE_KEYS = ("match", "action")
_PARAMETERS: Mapping[str, tuple[str, ...]] = {
    "keep": (),
    "drop": (),
    "pseudonymize": (),
    "redact_text": (),
    "mask": ("keep_last",),
    "truncate_ip": ("ipv4_prefix", "ipv6_prefix"),
    "generalize_time": ("to",),
    "generalize_number": ("buckets", "width"),
}


def _suggest(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}expected one of {', '.join(choices)}"


def _line(node: Node) -> int:
    return node.start_mark.line + 1 if node.start_mark is not None else 0


class _Reader:
    """Turns composition nodes into policy values; every error names the node's line."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._constructor = SafeConstructor()

    def error(self, node: Node, message: str) -> PolicyError:
        return PolicyError(f"{self._path}:{_line(node)}: {message}")

    # -- the document ---------------------------------------------------------------

    def policy(self, root: Node, *, version: str) -> Policy:
        members = self.mapping(root, "the policy", _TOP_LEVEL_KEYS)
        for required in ("version", "mode"):
            if required not in members:
                raise self.error(root, f"the policy needs '{required}'")
        version_node = members["version"][1]
        format_version = self.scalar(version_node) if isinstance(version_node, ScalarNode) else None
        if type(format_version) is not int or format_version != FORMAT_VERSION:
            raise self.error(
                version_node,
                f"unsupported format version {version_node.value!r}; expected {FORMAT_VERSION}",
            )
        mode = self.mode(members["mode"][1])
        subject: SubjectAction = Pseudonymize()
        if "subject" in members:
            subject = self.subject(members["subject"][1])
        binary: BinaryAction = Drop()
        if "binary_data" in members:
            binary = self.binary_data(members["binary_data"][1])
        unnamed: UnnamedTextAction = RedactText()
        if "unnamed_text" in members:
            unnamed = self.unnamed_text(members["unnamed_text"][1])
        names = self.name_rules(members["names"][1]) if "names" in members else ()
        extensions = self.extensions(members["extensions"][1]) if "extensions" in members else {}
        types = self.type_rules(members["types"][1]) if "types" in members else ()
        return Policy(
            path=self._path,
            version=version,
            mode=mode,
            subject=subject,
            binary_data=binary,
            unnamed_text=unnamed,
            names=names,
            extensions=MappingProxyType(extensions),
            types=types,
        )

    def mode(self, node: Node) -> Mode:
        text = self.text(node, "mode")
        for mode in MODES:
            if text == mode:
                return mode
        raise self.error(node, f"unknown mode '{text}' ({_suggest(text, MODES)})")

    def subject(self, node: Node) -> SubjectAction:
        action = self.action(node)
        if isinstance(action, Pseudonymize | Drop):
            return action
        if isinstance(action, Keep):
            raise self.error(
                node,
                "subject: keep is not allowed: a raw subject is never stored "
                "(expected pseudonymize or drop)",
            )
        raise self.error(node, f"subject: '{action.name}' is not allowed (pseudonymize or drop)")

    def binary_data(self, node: Node) -> BinaryAction:
        action = self.action(node)
        if isinstance(action, Keep | Drop):
            return action
        raise self.error(node, f"binary_data: '{action.name}' is not allowed (keep or drop)")

    def unnamed_text(self, node: Node) -> UnnamedTextAction:
        action = self.action(node)
        if isinstance(action, Keep | RedactText):
            return action
        raise self.error(
            node, f"unnamed_text: '{action.name}' is not allowed (keep or redact_text)"
        )

    def name_rules(self, node: Node) -> tuple[NameRule, ...]:
        rules = []
        for item in self.sequence(node, "names"):
            members = self.mapping(item, "a names rule", _NAME_RULE_KEYS)
            if "match" not in members or "action" not in members:
                raise self.error(item, "a names rule needs 'match' and 'action'")
            patterns = self.patterns(members["match"][1], lower=True)
            rules.append(NameRule(patterns, self.action(members["action"][1]), _line(item)))
        return tuple(rules)

    def type_rules(self, node: Node) -> tuple[TypeRule, ...]:
        rules = []
        for item in self.sequence(node, "types"):
            members = self.mapping(item, "a types rule", _TYPE_KEYS)
            if "match" not in members:
                raise self.error(item, "a types rule needs 'match'")
            mode, unnamed, binary, names, fields, extensions = (
                members[key][1] if key in members else None
                for key in ("mode", "unnamed_text", "binary_data", "names", "fields", "extensions")
            )
            rules.append(
                TypeRule(
                    patterns=self.patterns(members["match"][1], lower=False),
                    mode=self.mode(mode) if mode is not None else None,
                    unnamed_text=self.unnamed_text(unnamed) if unnamed is not None else None,
                    binary_data=self.binary_data(binary) if binary is not None else None,
                    names=self.name_rules(names) if names is not None else (),
                    fields=self.fields(fields) if fields is not None else (),
                    extensions=MappingProxyType(
                        self.extensions(extensions) if extensions is not None else {}
                    ),
                    line=_line(item),
                )
            )
        return tuple(rules)

    def fields(self, node: Node) -> tuple[FieldRule, ...]:
        rules = []
        for text, key, value in self.entries(node, "fields"):
            try:
                path = parse_path(text)
            except ValueError as exc:
                raise self.error(key, f"invalid path '{text}': {exc}") from None
            rules.append(FieldRule(path, text, self.action(value), _line(key)))
        return tuple(rules)

    def extensions(self, node: Node) -> dict[str, Action]:
        rules: dict[str, Action] = {}
        for name, key, value in self.entries(node, "extensions"):
            if not _EXTENSION_NAME.fullmatch(name):
                raise self.error(
                    key,
                    f"invalid extension attribute name '{name}': "
                    "CloudEvents names are lower-case letters and digits",
                )
            rules[name] = self.action(value)
        return rules

    def patterns(self, node: Node, *, lower: bool) -> tuple[str, ...]:
        items = self.sequence(node, "match") if isinstance(node, SequenceNode) else [node]
        if not items:
            raise self.error(node, "match needs at least one pattern")
        patterns = []
        for item in items:
            pattern = self.text(item, "a match pattern")
            try:
                check_glob(pattern)
            except ValueError as exc:
                raise self.error(item, f"invalid pattern '{pattern}': {exc}") from None
            patterns.append(pattern.lower() if lower else pattern)
        return tuple(patterns)

    # -- actions --------------------------------------------------------------------

    def action(self, node: Node) -> Action:
        """`keep`, or `{mask: {keep_last: 2}}`, or `{mask: {}}` / `{mask: null}`."""
        if isinstance(node, ScalarNode):
            name, params_node = self.text(node, "an action"), None
        elif isinstance(node, MappingNode):
            if len(node.value) != 1:
                raise self.error(
                    node, "an action is one name, or a mapping of one name to its parameters"
                )
            key_node, params_node = node.value[0]
            name = self.text(key_node, "an action")
        else:
            raise self.error(node, "an action is a name such as 'keep', not a list")
        if name not in _PARAMETERS:
            raise self.error(node, f"unknown action '{name}' ({_suggest(name, ACTION_NAMES)})")
        params: dict[str, tuple[Node, Node]] = {}
        if params_node is not None and not _is_null(params_node):
            params = self.mapping(params_node, f"the parameters of {name}", _PARAMETERS[name])
        return self.build(name, params, node)

    def build(self, name: str, params: dict[str, tuple[Node, Node]], node: Node) -> Action:
        def value(key: str) -> Node | None:
            return params[key][1] if key in params else None

        simple: dict[str, Action] = {
            "keep": Keep(),
            "drop": Drop(),
            "pseudonymize": Pseudonymize(),
            "redact_text": RedactText(),
        }
        if name in simple:
            return simple[name]
        if name == "mask":
            keep_last = value("keep_last")
            if keep_last is None:
                return Mask()
            return Mask(keep_last=self.integer(keep_last, "mask: keep_last", 0, 1_000))
        if name == "truncate_ip":
            v4, v6 = value("ipv4_prefix"), value("ipv6_prefix")
            return TruncateIp(
                ipv4_prefix=24 if v4 is None else self.integer(v4, "ipv4_prefix", 0, 32),
                ipv6_prefix=48 if v6 is None else self.integer(v6, "ipv6_prefix", 0, 128),
            )
        if name == "generalize_time":
            to = value("to")
            return GeneralizeTime() if to is None else GeneralizeTime(to=self.time_unit(to))
        return self.generalize_number(value("buckets"), value("width"), node)

    def time_unit(self, node: Node) -> TimeUnit:
        unit = self.text(node, "generalize_time: to")
        for candidate in TIME_UNITS:
            if unit == candidate:
                return candidate
        raise self.error(
            node, f"generalize_time: unknown unit '{unit}' ({_suggest(unit, TIME_UNITS)})"
        )

    def generalize_number(
        self, buckets_node: Node | None, width_node: Node | None, node: Node
    ) -> GeneralizeNumber:
        if buckets_node is None and width_node is not None:
            width = self.number(width_node, "generalize_number: width")
            if width <= 0:
                raise self.error(width_node, "generalize_number: width must be greater than 0")
            return GeneralizeNumber(width=width)
        if buckets_node is None or width_node is not None:
            raise self.error(node, "generalize_number needs exactly one of buckets and width")
        items = self.sequence(buckets_node, "generalize_number: buckets")
        if not items:
            raise self.error(buckets_node, "generalize_number: buckets must not be empty")
        bounds = tuple(self.number(item, "a bucket bound") for item in items)
        if any(later <= earlier for earlier, later in itertools.pairwise(bounds)):
            raise self.error(buckets_node, "generalize_number: buckets must be strictly ascending")
        return GeneralizeNumber(buckets=bounds)

    # -- scalars and collections ------------------------------------------------------

    def mapping(
        self, node: Node, what: str, allowed: tuple[str, ...]
    ) -> dict[str, tuple[Node, Node]]:
        """Members by key, with their key and value nodes; unknown and duplicate keys are
        errors at their own line."""
        members: dict[str, tuple[Node, Node]] = {}
        for name, key, value in self.entries(node, what):
            if name not in allowed:
                raise self.error(key, f"unknown key '{name}' in {what} ({_suggest(name, allowed)})")
            members[name] = (key, value)
        return members

    def entries(self, node: Node, what: str) -> list[tuple[str, Node, Node]]:
        """(key text, key node, value node) in file order; keys are plain strings, unique."""
        if not isinstance(node, MappingNode):
            raise self.error(node, f"{what} must be a mapping")
        seen: dict[str, int] = {}
        entries: list[tuple[str, Node, Node]] = []
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                raise self.error(key, f"keys in {what} must be plain strings")
            if key.value in seen:
                raise self.error(
                    key, f"duplicate key '{key.value}' in {what} (first at line {seen[key.value]})"
                )
            seen[key.value] = _line(key)
            entries.append((str(key.value), key, value))
        return entries

    def sequence(self, node: Node, what: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            raise self.error(node, f"{what} must be a list")
        return list(node.value)

    def text(self, node: Node, what: str) -> str:
        # The raw scalar text, whatever YAML 1.1 would resolve it to: `on` stays "on".
        if not isinstance(node, ScalarNode):
            raise self.error(node, f"{what} must be a string")
        if node.value == "" and _is_null(node):
            raise self.error(node, f"{what} is missing")
        return str(node.value)

    def number(self, node: Node, what: str) -> int | float:
        value = self.scalar(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(node, f"{what} must be a number")
        if not math.isfinite(value):
            raise self.error(node, f"{what} must be a finite number")
        return value

    def integer(self, node: Node, what: str, low: int, high: int) -> int:
        value = self.scalar(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(node, f"{what} must be an integer")
        if not low <= value <= high:
            raise self.error(node, f"{what} must be between {low} and {high}, not {value}")
        return value

    def scalar(self, node: ScalarNode) -> Any:
        try:
            return self._constructor.construct_object(node)
        except yaml.YAMLError:
            return None


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"
