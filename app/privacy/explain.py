"""Which rule decides each value of an event, and what of it would be stored: the policy
explained leaf by leaf, for the preview (`preview.py`) and for people writing policies.

`Explainer.leaves(event_type, data)` yields one `Leaf` per scalar of `data`: its path in
the policy's own syntax (`items[*].card`), the action that applies, the rule it comes
from (`fields: items[*].card, line 14`, `names: line 40`, `mode: allowlist`), and the
value the engine stores (or `DROPPED`). It follows the precedence `compiled.py` states
(exact `fields` path, an enclosing container's action, `names` rules, then the mode) and
applies the engine's own action functions (`ActionFunctions`), so the stored values are
the engine's; a unit test holds its stored leaves to `PolicyAnonymizer.anonymize`'s.

It is not on the hot path: it builds a `Leaf` per value and does no caching.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from app.model.events import ExtensionValue
from app.privacy.actions import DROPPED, Action, Drop, Keep
from app.privacy.compiled import ActionFunctions
from app.privacy.grammar import EACH, Segment
from app.privacy.keyring import Keyring
from app.privacy.rules import FieldRule, Policy, Rules

_DATA: Final = "(data)"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    rule: str  # where it comes from, with the policy's line where there is one


@dataclass(frozen=True, slots=True)
class Leaf:
    path: str
    value: Any
    decision: Decision
    stored: Any  # the value stored, or DROPPED

    @property
    def unchanged(self) -> bool:
        return self.stored is not DROPPED and self.stored == self.value


class Explainer:
    """The policy's decision for every value of an event; safe to reuse."""

    def __init__(self, policy: Policy, keyring: Keyring) -> None:
        self._policy = policy
        self._functions = ActionFunctions(keyring)

    def subject(self) -> Decision:
        return Decision(self._policy.subject, "subject")

    def leaves(self, event_type: str, data: Any) -> Iterator[Leaf]:
        """Every scalar of `data`, with its decision and what is stored of it."""
        walk = _Walk(self._policy, event_type, self._functions)
        return walk.value(data, (), _DATA, None)

    def extensions(self, event_type: str, extensions: dict[str, ExtensionValue]) -> Iterator[Leaf]:
        """Every extension attribute, with its decision and what is stored of it."""
        walk = _Walk(self._policy, event_type, self._functions)
        for name, value in extensions.items():
            decision = walk.extension_rule(name)
            path = f"extensions.{name}"
            if decision is None:
                yield walk.by_mode(path, value)
            else:
                yield from walk.taken(value, path, decision)

    def binary(self, event_type: str) -> Decision:
        rule = self._policy.type_rule(event_type)
        rules = self._policy.rules(rule)
        where = f"types line {rule.line}" if rule and rule.binary_data else "top level"
        return Decision(rules.binary_data, f"binary_data ({where})")


class _Walk:
    """The walk of `compiled.CompiledRules`, yielding decisions instead of values."""

    def __init__(self, policy: Policy, event_type: str, functions: ActionFunctions) -> None:
        self._rules: Rules = policy.rules(policy.type_rule(event_type))
        self._functions = functions
        self._fields: dict[tuple[Segment, ...], FieldRule] = {
            rule.path: rule for rule in self._rules.fields
        }
        self._prefixes = {
            rule.path[:n] for rule in self._rules.fields for n in range(len(rule.path))
        }

    def value(
        self, value: Any, segments: tuple[Segment, ...], path: str, inherited: Decision | None
    ) -> Iterator[Leaf]:
        if isinstance(value, dict):
            for key, member in value.items():
                child = (*segments, key)
                name = key if path == _DATA else f"{path}.{key}"
                yield from self._member(member, child, name, inherited, key)
        elif isinstance(value, list):
            child = (*segments, EACH)
            name = "[*]" if path == _DATA else f"{path}[*]"
            for item in value:
                yield from self._member(item, child, name, inherited, None)
        elif inherited is not None:
            yield from self.taken(value, path, inherited)
        else:
            yield self.by_mode(path, value)

    def _member(
        self,
        member: Any,
        segments: tuple[Segment, ...],
        path: str,
        inherited: Decision | None,
        key: str | None,
    ) -> Iterator[Leaf]:
        field = self._fields.get(segments)
        decision = (
            Decision(field.action, f"fields: {field.text}, line {field.line}")
            if field is not None
            else inherited
        )
        if decision is None and key is not None:
            decision = self._name_rule(key)
        container = isinstance(member, dict | list)
        if decision is None:
            if container:
                yield from self.value(member, segments, path, None)
            else:
                yield self.by_mode(path, member)
        elif container and segments in self._prefixes:
            yield from self.value(member, segments, path, decision)  # carve-outs inside
        else:
            yield from self.taken(member, path, decision)

    def _name_rule(self, key: str) -> Decision | None:
        lower = key.lower()
        for rule in self._rules.names:
            if rule.matches(lower):
                return Decision(rule.action, f"names: line {rule.line}")
        return None

    def extension_rule(self, name: str) -> Decision | None:
        action = self._rules.extensions.get(name)
        if action is not None:
            return Decision(action, f"extensions: {name}")
        return self._name_rule(name)

    def taken(self, value: Any, path: str, decision: Decision) -> Iterator[Leaf]:
        """`value` (maybe a container) under one action: keep and drop take it whole,
        any other action applies to each scalar under it."""
        if isinstance(value, dict):
            for key, member in value.items():
                yield from self.taken(member, f"{path}.{key}", decision)
            return
        if isinstance(value, list):
            for item in value:
                yield from self.taken(item, f"{path}[*]", decision)
            return
        if isinstance(decision.action, Keep):
            stored = value
        elif isinstance(decision.action, Drop):
            stored = DROPPED
        else:
            stored = self._functions.of(decision.action)(value)
        yield Leaf(path, value, decision, stored)

    def by_mode(self, path: str, value: Any) -> Leaf:
        """A scalar no rule takes: allowlist drops it; denylist keeps it, strings after
        `unnamed_text`."""
        if self._rules.mode == "allowlist":
            return Leaf(path, value, Decision(Drop(), "mode: allowlist, no rule"), DROPPED)
        if isinstance(value, str):
            action = self._rules.unnamed_text
            stored = value if isinstance(action, Keep) else self._functions.redact(value)
            return Leaf(path, value, Decision(action, "unnamed_text (denylist)"), stored)
        return Leaf(path, value, Decision(Keep(), "mode: denylist, no rule"), value)
