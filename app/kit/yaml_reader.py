"""Configuration files in YAML, read so that every error names its `file:line`.

A file is read through PyYAML's *composition* tree (`yaml.compose`) rather than
`safe_load`: every node keeps its line, so a problem found while validating the content
still points at the line that caused it, and a duplicate key (which `safe_load`
silently resolves to the last one) is an error at the second one's line.

`YamlReader` is the toolkit a schema is written with: `compose` the text, then take
nodes apart with `mapping`, `sequence`, `text`, `number`, … ; each raises the caller's
own exception type with a message ``<file>:<line>: <reason>``, and unknown names come
with the closest known one (``did you mean 'mode'? expected one of …``). A schema that
would rather validate plain values (a pydantic model) takes them from `plain` and maps
an error's location back to its line with `line_at`.

Conventions, the same for every file read this way:

- mapping keys are plain scalars, taken as written (`on` is the string "on", never the
  YAML 1.1 boolean), and unique;
- one document per file: a second one (`---`) is invalid YAML;
- an empty file composes to None; what that means is the caller's to say.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "MappingNode",
    "Node",
    "ScalarNode",
    "SequenceNode",
    "YamlReader",
    "is_null",
    "line",
    "suggest",
]

Choice = TypeVar("Choice", bound=str)
_NULL_TAG = "tag:yaml.org,2002:null"


def line(node: Node) -> int:
    """The 1-based line a node starts on (0 if PyYAML did not mark it)."""
    return node.start_mark.line + 1 if node.start_mark is not None else 0


def is_null(node: Node) -> bool:
    """Whether the node is YAML null: `null`, `~`, or nothing at all (`key:`)."""
    return isinstance(node, ScalarNode) and node.tag == _NULL_TAG


def suggest(word: str, choices: Sequence[str]) -> str:
    """`did you mean 'x'? expected one of a, b, c`: the hint for an unknown name."""
    close = difflib.get_close_matches(word, choices, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}expected one of {', '.join(choices)}"


class YamlReader:
    """Reads one file's composition tree; every error is `error_type("<path>:<line>: …")`.

    `error_type` is the caller's exception class (or any callable making one from the
    message), so a policy file raises `PolicyError` and a manifest `ContractError`.
    """

    def __init__(self, path: Path, error_type: Callable[[str], Exception]) -> None:
        self._path = path
        self._error_type = error_type
        self._constructor = SafeConstructor()

    def compose(self, raw: bytes | str) -> Node | None:
        """The root node of the file's one document, or None when it holds none.

        Raises for text that is not YAML, naming the line of the problem when PyYAML
        knows it: ``<path>:<line>: invalid YAML: <problem>``.
        """
        try:
            return yaml.compose(raw, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{mark.line + 1}:" if mark is not None else ""
            problem = exc.problem or exc.context or "syntax error"
            raise self._error_type(f"{self._path}:{where} invalid YAML: {problem}") from exc
        except yaml.YAMLError as exc:
            raise self._error_type(f"{self._path}: invalid YAML: {exc}") from exc

    def error(self, node: Node, message: str) -> Exception:
        """The caller's exception for a problem at `node`, to be raised by the caller."""
        return self.error_at(line(node), message)

    def error_at(self, line_number: int, message: str) -> Exception:
        return self._error_type(f"{self._path}:{line_number}: {message}")

    # -- collections ------------------------------------------------------------------

    def mapping(
        self, node: Node, what: str, allowed: Sequence[str]
    ) -> dict[str, tuple[Node, Node]]:
        """Members by key, with their key and value nodes; a key not in `allowed` and a
        duplicate key are errors at their own line."""
        members: dict[str, tuple[Node, Node]] = {}
        for name, key, value in self.entries(node, what):
            if name not in allowed:
                raise self.error(key, f"unknown key '{name}' in {what} ({suggest(name, allowed)})")
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
            name = str(key.value)
            if name in seen:
                raise self.error(
                    key, f"duplicate key '{name}' in {what} (first at line {seen[name]})"
                )
            seen[name] = line(key)
            entries.append((name, key, value))
        return entries

    def sequence(self, node: Node, what: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            raise self.error(node, f"{what} must be a list")
        return list(node.value)

    # -- scalars ----------------------------------------------------------------------

    def text(self, node: Node, what: str) -> str:
        """The scalar's raw text, whatever YAML 1.1 would resolve it to: `on` stays "on"."""
        if not isinstance(node, ScalarNode):
            raise self.error(node, f"{what} must be a string")
        if node.value == "" and is_null(node):
            raise self.error(node, f"{what} is missing")
        return str(node.value)

    def one_of(self, node: Node, choices: tuple[Choice, ...], *, what: str, unknown: str) -> Choice:
        """The scalar's text when it is one of `choices`; else ``<unknown> '<text>'
        (did you mean …)``, e.g. with `unknown="unknown mode"`."""
        text = self.text(node, what)
        for choice in choices:
            if text == choice:
                return choice
        raise self.error(node, f"{unknown} '{text}' ({suggest(text, choices)})")

    def number(self, node: Node, what: str) -> int | float:
        """A finite integer or float (a boolean is not a number)."""
        value = self.scalar(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(node, f"{what} must be a number")
        if not math.isfinite(value):
            raise self.error(node, f"{what} must be a finite number")
        return value

    def integer(self, node: Node, what: str, low: int, high: int) -> int:
        """An integer from `low` to `high` inclusive (a boolean is not an integer)."""
        value = self.scalar(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(node, f"{what} must be an integer")
        if not low <= value <= high:
            raise self.error(node, f"{what} must be between {low} and {high}, not {value}")
        return value

    def scalar(self, node: ScalarNode) -> Any:
        """The scalar as `safe_load` resolves it, or None when it cannot be resolved."""
        try:
            return self._constructor.construct_object(node)
        except yaml.YAMLError:
            return None

    # -- plain values, for schemas that validate Python values ------------------------

    def plain(self, node: Node | None, what: str) -> Any:
        """The node as Python values, as `safe_load` would give them, except that keys
        follow this module's conventions (plain strings as written, unique).

        `what` names the root in messages; nested mappings are named by their dotted
        key path. A scalar `safe_load` would refuse (an unknown tag) is an error here.
        """
        if node is None:
            return None
        try:
            return self._plain(node, what, "")
        except RecursionError:
            raise self.error(node, f"{what} nests too deeply (a recursive alias?)") from None

    def _plain(self, node: Node, what: str, path: str) -> Any:
        if isinstance(node, MappingNode):
            return {
                name: self._plain(value, what, f"{path}.{name}" if path else name)
                for name, _, value in self.entries(node, path or what)
            }
        if isinstance(node, SequenceNode):
            return [self._plain(item, what, path) for item in node.value]
        try:
            return self._constructor.construct_object(node)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or exc
            raise self.error(node, f"invalid YAML: {problem}") from None

    def line_at(self, root: Node | None, path: Sequence[str | int]) -> int:
        """The line of the value at `path` (keys and list indexes) below `root`: of the
        deepest part of the path that exists, a mapping member counting from its key."""
        found = 1 if root is None else line(root)
        node = root
        for part in path:
            if isinstance(node, MappingNode):
                member = next(
                    (
                        (k, v)
                        for k, v in node.value
                        if isinstance(k, ScalarNode) and k.value == part
                    ),
                    None,
                )
                if member is None:
                    break
                found, node = line(member[0]), member[1]
            elif (
                isinstance(node, SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                node = node.value[part]
                found = line(node)
            else:
                break
        return found
