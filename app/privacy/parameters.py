"""How an action declares a parameter: its default, and the kind of value it takes.

An action's parameters are the fields of its dataclass, each declared with
`parameter(default, kind)`. The kind reads the value from the policy file and checks it
(type, range, order), raising an error at the value's line; the default applies when the
file leaves the parameter out. `declared_parameters` lists them for the policy compiler.

Messages name the action and the parameter (``mask: keep_last must be an integer``).
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

from app.kit.yaml_reader import Node, YamlReader

Value = TypeVar("Value")
Default = TypeVar("Default")
Choice = TypeVar("Choice", bound=str)

_KIND = "sluice.privacy.parameter"  # the dataclass field metadata key


class Kind(ABC, Generic[Value]):
    """A kind of parameter value: how to read it from its node, and what is valid."""

    @abstractmethod
    def read(self, reader: YamlReader, node: Node, action: str, parameter: str) -> Value:
        """The value at `node`, or raises `reader.error` at the offending node."""


def parameter(default: Default, kind: Kind[Value]) -> Default | Value:
    """A dataclass field of an action: a parameter of `kind`, `default` when not given."""
    declared: Default | Value = field(default=default, metadata={_KIND: kind})
    return declared


def declared_parameters(action_type: type) -> Mapping[str, Kind[Any]]:
    """The parameters an action's dataclass declares, by name, in declaration order."""
    return {
        declared.name: declared.metadata[_KIND]
        for declared in fields(action_type)
        if _KIND in declared.metadata
    }


@dataclass(frozen=True, slots=True)
class Integer(Kind[int]):
    """An integer from `low` to `high` inclusive."""

    low: int
    high: int

    def read(self, reader: YamlReader, node: Node, action: str, parameter: str) -> int:
        return reader.integer(node, f"{action}: {parameter}", self.low, self.high)


@dataclass(frozen=True, slots=True)
class OneOf(Kind[Choice]):
    """One of `choices`, written as is; an unknown one is named with the `noun`
    (``generalize_time: unknown unit 'week'``)."""

    choices: tuple[Choice, ...]
    noun: str

    def read(self, reader: YamlReader, node: Node, action: str, parameter: str) -> Choice:
        return reader.one_of(
            node,
            self.choices,
            what=f"{action}: {parameter}",
            unknown=f"{action}: unknown {self.noun}",
        )


@dataclass(frozen=True, slots=True)
class PositiveNumber(Kind[int | float]):
    """A finite number greater than zero."""

    def read(self, reader: YamlReader, node: Node, action: str, parameter: str) -> int | float:
        what = f"{action}: {parameter}"
        number = reader.number(node, what)
        if number <= 0:
            raise reader.error(node, f"{what} must be greater than 0")
        return number


@dataclass(frozen=True, slots=True)
class AscendingNumbers(Kind[tuple[int | float, ...]]):
    """A non-empty list of finite numbers, strictly ascending; `element` names one of
    them in messages (``a bucket bound must be a number``)."""

    element: str

    def read(
        self, reader: YamlReader, node: Node, action: str, parameter: str
    ) -> tuple[int | float, ...]:
        what = f"{action}: {parameter}"
        items = reader.sequence(node, what)
        if not items:
            raise reader.error(node, f"{what} must not be empty")
        numbers = tuple(reader.number(item, self.element) for item in items)
        if any(later <= earlier for earlier, later in itertools.pairwise(numbers)):
            raise reader.error(node, f"{what} must be strictly ascending")
        return numbers
