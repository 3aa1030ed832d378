"""Reading the policy file: `load_policy(path)` returns a `rules.Policy` or raises.

The file is read once at start-up. A service must not start on a policy it only half
understood, so everything is checked: unknown keys, unknown actions and parameters,
out-of-range parameters, path and glob syntax, duplicate keys. `PolicyError` names the
file and, when the problem is in it, the line (the file is read with
`app.kit.yaml_reader`): ``policy.yaml:14: unknown action 'pseudonymise' (did you mean
'pseudonymize'? expected one of keep, drop, …)``.

This module is the schema of the document; what an action is and which parameters it
takes is the actions registry's (`actions.ACTIONS`), and the rules' path and glob
syntax is `grammar.py`'s. The format is documented in docs/privacy.md.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from app.kit.yaml_reader import (
    MappingNode,
    Node,
    ScalarNode,
    SequenceNode,
    YamlReader,
    is_null,
    line,
    suggest,
)
from app.privacy.actions import ACTIONS, Action, Drop, Keep, Pseudonymize, RedactText
from app.privacy.grammar import check_glob, parse_path
from app.privacy.parameters import declared_parameters
from app.privacy.rules import (
    MODES,
    BinaryAction,
    FieldRule,
    Mode,
    NameRule,
    Policy,
    SubjectAction,
    TypeRule,
    UnnamedTextAction,
)

FORMAT_VERSION: Final = 1

_EXTENSION_NAME = re.compile(r"[a-z0-9]+")  # CloudEvents 1.0 attribute naming
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


class PolicyError(Exception):
    """The policy file is missing, unreadable or invalid; the message says where and why."""


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
    reader = YamlReader(path, PolicyError)
    root = reader.compose(raw)
    if root is None:
        raise PolicyError(f"{path}:1: the policy is empty; expected at least version and mode")
    return _PolicyCompiler(reader).policy(root, path, version=hashlib.sha256(raw).hexdigest()[:16])


class _PolicyCompiler:
    """Turns the document's nodes into policy values; every error names the node's line."""

    def __init__(self, reader: YamlReader) -> None:
        self._read = reader

    # -- the document ---------------------------------------------------------------

    def policy(self, root: Node, path: Path, *, version: str) -> Policy:
        members = self._read.mapping(root, "the policy", _TOP_LEVEL_KEYS)
        for required in ("version", "mode"):
            if required not in members:
                raise self._read.error(root, f"the policy needs '{required}'")
        self.format_version(members["version"][1])

        def optional(key: str) -> Node | None:
            return members[key][1] if key in members else None

        subject, binary, unnamed, names, extensions, types = (
            optional(key)
            for key in ("subject", "binary_data", "unnamed_text", "names", "extensions", "types")
        )
        return Policy(
            path=path,
            version=version,
            mode=self.mode(members["mode"][1]),
            subject=Pseudonymize() if subject is None else self.subject(subject),
            binary_data=Drop() if binary is None else self.binary_data(binary),
            unnamed_text=RedactText() if unnamed is None else self.unnamed_text(unnamed),
            names=() if names is None else self.name_rules(names),
            extensions=MappingProxyType({} if extensions is None else self.extensions(extensions)),
            types=() if types is None else self.type_rules(types),
        )

    def format_version(self, node: Node) -> None:
        value = self._read.scalar(node) if isinstance(node, ScalarNode) else None
        if type(value) is not int or value != FORMAT_VERSION:
            raise self._read.error(
                node, f"unsupported format version {node.value!r}; expected {FORMAT_VERSION}"
            )

    def mode(self, node: Node) -> Mode:
        return self._read.one_of(node, MODES, what="mode", unknown="unknown mode")

    def subject(self, node: Node) -> SubjectAction:
        action = self.action(node)
        if isinstance(action, Pseudonymize | Drop):
            return action
        if isinstance(action, Keep):
            raise self._read.error(
                node,
                "subject: keep is not allowed: a raw subject is never stored "
                "(expected pseudonymize or drop)",
            )
        raise self._read.error(
            node, f"subject: '{action.name}' is not allowed (pseudonymize or drop)"
        )

    def binary_data(self, node: Node) -> BinaryAction:
        action = self.action(node)
        if isinstance(action, Keep | Drop):
            return action
        raise self._read.error(node, f"binary_data: '{action.name}' is not allowed (keep or drop)")

    def unnamed_text(self, node: Node) -> UnnamedTextAction:
        action = self.action(node)
        if isinstance(action, Keep | RedactText):
            return action
        raise self._read.error(
            node, f"unnamed_text: '{action.name}' is not allowed (keep or redact_text)"
        )

    def name_rules(self, node: Node) -> tuple[NameRule, ...]:
        rules = []
        for item in self._read.sequence(node, "names"):
            members = self._read.mapping(item, "a names rule", _NAME_RULE_KEYS)
            if "match" not in members or "action" not in members:
                raise self._read.error(item, "a names rule needs 'match' and 'action'")
            patterns = self.patterns(members["match"][1], lower=True)
            rules.append(NameRule(patterns, self.action(members["action"][1]), line(item)))
        return tuple(rules)

    def type_rules(self, node: Node) -> tuple[TypeRule, ...]:
        return tuple(self.type_rule(item) for item in self._read.sequence(node, "types"))

    def type_rule(self, item: Node) -> TypeRule:
        members = self._read.mapping(item, "a types rule", _TYPE_KEYS)
        if "match" not in members:
            raise self._read.error(item, "a types rule needs 'match'")
        mode, unnamed, binary, names, fields, extensions = (
            members[key][1] if key in members else None
            for key in ("mode", "unnamed_text", "binary_data", "names", "fields", "extensions")
        )
        return TypeRule(
            patterns=self.patterns(members["match"][1], lower=False),
            mode=None if mode is None else self.mode(mode),
            unnamed_text=None if unnamed is None else self.unnamed_text(unnamed),
            binary_data=None if binary is None else self.binary_data(binary),
            names=() if names is None else self.name_rules(names),
            fields=() if fields is None else self.fields(fields),
            extensions=MappingProxyType({} if extensions is None else self.extensions(extensions)),
            line=line(item),
        )

    def fields(self, node: Node) -> tuple[FieldRule, ...]:
        rules = []
        for text, key, value in self._read.entries(node, "fields"):
            try:
                path = parse_path(text)
            except ValueError as exc:
                raise self._read.error(key, f"invalid path '{text}': {exc}") from None
            rules.append(FieldRule(path, text, self.action(value), line(key)))
        return tuple(rules)

    def extensions(self, node: Node) -> dict[str, Action]:
        rules: dict[str, Action] = {}
        for name, key, value in self._read.entries(node, "extensions"):
            if not _EXTENSION_NAME.fullmatch(name):
                raise self._read.error(
                    key,
                    f"invalid extension attribute name '{name}': "
                    "CloudEvents names are lower-case letters and digits",
                )
            rules[name] = self.action(value)
        return rules

    def patterns(self, node: Node, *, lower: bool) -> tuple[str, ...]:
        items = self._read.sequence(node, "match") if isinstance(node, SequenceNode) else [node]
        if not items:
            raise self._read.error(node, "match needs at least one pattern")
        patterns = []
        for item in items:
            pattern = self._read.text(item, "a match pattern")
            try:
                check_glob(pattern)
            except ValueError as exc:
                raise self._read.error(item, f"invalid pattern '{pattern}': {exc}") from None
            patterns.append(pattern.lower() if lower else pattern)
        return tuple(patterns)

    # -- actions, from the registry ---------------------------------------------------

    def action(self, node: Node) -> Action:
        """`keep`, or `{mask: {keep_last: 2}}`, or `{mask: {}}` / `{mask: null}`."""
        if isinstance(node, ScalarNode):
            name, parameters_node = self._read.text(node, "an action"), None
        elif isinstance(node, MappingNode):
            if len(node.value) != 1:
                raise self._read.error(
                    node, "an action is one name, or a mapping of one name to its parameters"
                )
            key_node, parameters_node = node.value[0]
            name = self._read.text(key_node, "an action")
        else:
            raise self._read.error(node, "an action is a name such as 'keep', not a list")
        action_type = ACTIONS.get(name)
        if action_type is None:
            raise self._read.error(
                node, f"unknown action '{name}' ({suggest(name, tuple(ACTIONS))})"
            )
        declared = declared_parameters(action_type)
        values: dict[str, Any] = {}
        if parameters_node is not None and not is_null(parameters_node):
            given = self._read.mapping(
                parameters_node, f"the parameters of {name}", tuple(declared)
            )
            for parameter, (_, value) in given.items():
                values[parameter] = declared[parameter].read(self._read, value, name, parameter)
        action = action_type(**values)
        problem = action.problem()
        if problem is not None:
            raise self._read.error(node, problem)
        return action
