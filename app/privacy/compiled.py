"""The rules of one event type compiled for speed, and the one walk over `data`.

`CompiledRules` is built once per type rule (and once for the top-level rules) when the
engine starts: exact `fields` paths become a trie walked alongside `data`, every action
becomes a function (`ActionFunctions`). Which key names and extension attributes turn
up is learnt on first sight and remembered in a `BoundedCache`, so the per-event cost
is one walk over `data` with one dict lookup per key.

The walk (precedence, first that applies, for each member of an object):

1. the type's exact `fields` path for this key;
2. an action inherited from an enclosing container (below);
3. the type's `names` rules, then the top-level `names` rules, by key name;
4. no rule: a container is walked into; a scalar leaf is dropped in allowlist mode, and
   in denylist mode a string goes through `unnamed_text`, any other scalar is kept.

Array elements have no name: only a `[*]` path or an inherited action applies to them.
`keep` and `drop` take a container whole; any other action applies to every scalar leaf
under it. When a `fields` path reaches *inside* a container that an action takes, the
walk goes on into it with the action *inherited*: the path's own rule wins for what it
names, every other member still gets the container's action.

The walk copies on write: an object or array is copied at its first change only, and
one that nothing changes is returned as it came (the engine then reuses the bytes the
edge received). The input is never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, Final

from app.model.events import ExtensionValue
from app.privacy.actions import (
    DROPPED,
    Action,
    ActionContext,
    Apply,
    Keep,
    canonical_text,
    dropped,
    unchanged,
)
from app.privacy.cache import BoundedCache
from app.privacy.detectors import redact
from app.privacy.grammar import EACH
from app.privacy.keyring import Keyring
from app.privacy.rules import FieldRule, Rules

# Key names come from the sender: a scope remembers at most this many (see BoundedCache).
NAME_CACHE_LIMIT: Final = 4096
# Free text that `redact` found nothing in, remembered when short (`memoized_redact`).
_CLEAN_TEXT_LIMIT: Final = 8192
_CLEAN_TEXT_MAX_CHARS: Final = 256
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_JSON_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


class ActionFunctions:
    """The function the walk applies for each action, made once per distinct action.

    `keep` and `drop` take their value whole; every other action's scalar function is
    applied to each scalar leaf under a container (`_leafwise`).
    """

    def __init__(self, keyring: Keyring) -> None:
        self.redact: Callable[[str], str] = memoized_redact()
        self._context = ActionContext(tagged_pseudonym=keyring.tagged_pseudonym, redact=self.redact)
        self.of: Callable[[Action], Apply] = cache(self._make)

    def _make(self, action: Action) -> Apply:
        function = action.function(self._context)
        return function if action.takes_containers_whole else _leafwise(function)


def memoized_redact() -> Callable[[str], str]:
    """`detectors.redact`, remembering (boundedly) short strings it found nothing in.

    Enumerations, SKUs, user agents and the like repeat from event to event; a lookup
    spares them the scan. Only strings that come back unchanged are remembered, and those
    are stored as they are anyway, so the cache holds nothing that is not bound for disk.
    """
    memo: BoundedCache[str, str] = BoundedCache(_CLEAN_TEXT_LIMIT)
    clean = memo.entries

    def redact_memo(text: str) -> str:
        if text in clean:
            return text
        result = redact(text)
        if len(text) <= _CLEAN_TEXT_MAX_CHARS and result == text:
            memo.remember(text, text)
        return result

    return redact_memo


def _leafwise(scalar: Apply) -> Apply:
    """`scalar` applied to a scalar, or to every scalar leaf under a container (dropped
    leaves leave their container; the containers themselves stay, maybe empty)."""

    def apply(value: Any) -> Any:
        if type(value) in _JSON_SCALARS:
            return scalar(value)
        if isinstance(value, dict):
            members = {}
            for key, member in value.items():
                result = apply(member)
                if result is not DROPPED:
                    members[key] = result
            return members
        if isinstance(value, list):
            return [result for item in value if (result := apply(item)) is not DROPPED]
        return scalar(value)

    return apply


class _PathNode:
    """One step of the `fields` trie: the function at this exact path, and what follows."""

    __slots__ = ("apply", "deep", "each", "keys")

    def __init__(self) -> None:
        self.apply: Apply | None = None
        self.keys: dict[str, _PathNode] = {}
        self.each: _PathNode | None = None
        self.deep = False  # whether any path continues below this node

    def seal(self) -> None:
        self.deep = bool(self.keys) or self.each is not None
        for child in self.keys.values():
            child.seal()
        if self.each is not None:
            self.each.seal()


def _trie(fields: tuple[FieldRule, ...], functions: ActionFunctions) -> _PathNode:
    root = _PathNode()
    for rule in fields:
        node = root
        for segment in rule.path:
            if segment is EACH:
                if node.each is None:
                    node.each = _PathNode()
                node = node.each
            else:
                node = node.keys.setdefault(segment, _PathNode())
        node.apply = functions.of(rule.action)
    root.seal()
    return root


_NO_KEYS: Final[dict[str, _PathNode]] = {}


class CompiledRules:
    """The `Rules` of one type rule (or of the top level), ready to walk events with.

    Safe to share between tasks of one event loop: its only mutable state is its caches.
    """

    __slots__ = (
        "_extension_cache",
        "_functions",
        "_keep_unnamed",
        "_name_cache",
        "_root",
        "_rules",
        "_unnamed_text",
        "keep_binary",
    )

    def __init__(self, rules: Rules, functions: ActionFunctions) -> None:
        self._rules = rules
        self._functions = functions
        root = _trie(rules.fields, functions)
        self._root = root if root.deep else None
        self._name_cache: BoundedCache[str, Apply | None] = BoundedCache(NAME_CACHE_LIMIT)
        self._extension_cache: BoundedCache[str, Apply | None] = BoundedCache(NAME_CACHE_LIMIT)
        allowlist = rules.mode == "allowlist"
        self._keep_unnamed = not allowlist
        self._unnamed_text: Apply = dropped
        if not allowlist:
            keep_text = isinstance(rules.unnamed_text, Keep)
            self._unnamed_text = unchanged if keep_text else functions.redact
        self.keep_binary = isinstance(rules.binary_data, Keep)

    def data(self, value: Any) -> Any:
        """`value` after the rules, or DROPPED when nothing of it may be stored."""
        return self._unnamed(value, self._root)

    def extensions(self, extensions: dict[str, ExtensionValue]) -> dict[str, ExtensionValue]:
        """The extension attributes after the rules (exact `extensions` rules first, then
        the `names` globs, then the mode), each still a valid CloudEvents value."""
        kept: dict[str, ExtensionValue] = {}
        known = self._extension_cache.entries
        for name, value in extensions.items():
            try:
                function = known[name]
            except KeyError:
                function = self._extension_cache.remember(name, self._extension_function(name))
            if function is not None:
                result = function(value)
            elif isinstance(value, str):
                result = self._unnamed_text(value)
            elif self._keep_unnamed:
                result = value
            else:
                continue
            if result is not DROPPED:
                kept[name] = _extension_value(result)
        return kept

    # -- the walk ---------------------------------------------------------------------
    # `node` is the trie node at this place of `data` (None where no path reaches);
    # `inherited` the function of an enclosing container's action (None when none).

    def _object(  # noqa: PLR0912 - the hot loop, inlined on purpose (see the comments)
        self, value: dict[str, Any], node: _PathNode | None, inherited: Apply | None
    ) -> dict[str, Any]:
        out = value
        keys = node.keys if node is not None else _NO_KEYS
        known = self._name_cache.entries
        unnamed_text = self._unnamed_text
        result: Any
        for key, member in value.items():
            if keys and (child := keys.get(key)) is not None:
                function = child.apply
            else:
                child = function = None
            if function is None:
                # No path names the key: an inherited function, or its name rule's.
                function = inherited
                if function is None:
                    try:
                        function = known[key]
                    except KeyError:
                        function = self._name_cache.remember(key, self._name_function(key))
            if function is None:
                # Dispatch on the exact type inline: most members are plain strings.
                kind = type(member)
                if kind is str:
                    result = unnamed_text(member)
                elif kind is dict:
                    result = self._object(member, child, None)
                elif kind is list:
                    result = self._array(member, child, None)
                elif kind in _JSON_SCALARS:
                    result = member if self._keep_unnamed else DROPPED
                else:
                    result = self._unnamed(member, child)
            elif child is not None and child.deep and isinstance(member, dict | list):
                result = self._inside(member, child, function)
            else:
                result = function(member)
            if result is not member:
                if out is value:
                    out = value.copy()
                if result is DROPPED:
                    del out[key]
                else:
                    out[key] = result
        return out

    def _array(
        self, value: list[Any], node: _PathNode | None, inherited: Apply | None
    ) -> list[Any]:
        each = node.each if node is not None else None
        function = each.apply if each is not None else None
        if function is None:
            function = inherited
        deep = each if each is not None and each.deep else None
        out: list[Any] | None = None
        result: Any
        for index, item in enumerate(value):
            if function is None:
                # The common elements inline: objects (as in `lines`) and strings.
                kind = type(item)
                if kind is dict:
                    result = self._object(item, each, None)
                elif kind is str:
                    result = self._unnamed_text(item)
                else:
                    result = self._unnamed(item, each)
            elif deep is not None and isinstance(item, dict | list):
                result = self._inside(item, deep, function)
            else:
                result = function(item)
            if out is None:
                if result is item:
                    continue
                out = value[:index]
            if result is not DROPPED:
                out.append(result)
        return value if out is None else out

    def _unnamed(self, value: Any, node: _PathNode | None) -> Any:
        """A value no rule takes: a container is walked into, a scalar handled by mode."""
        if isinstance(value, dict):
            return self._object(value, node, None)
        if isinstance(value, list):
            return self._array(value, node, None)
        if isinstance(value, str):
            return self._unnamed_text(value)
        return value if self._keep_unnamed else DROPPED

    def _inside(self, value: dict[str, Any] | list[Any], node: _PathNode, action: Apply) -> Any:
        """A container an action takes, with paths reaching inside it: carve-outs."""
        if isinstance(value, dict):
            return self._object(value, node, action)
        return self._array(value, node, action)

    # -- what the caches learn ----------------------------------------------------------

    def _name_function(self, key: str) -> Apply | None:
        action = self._rules.name_action(key)
        return None if action is None else self._functions.of(action)

    def _extension_function(self, name: str) -> Apply | None:
        action = self._rules.extensions.get(name)
        if action is None:
            return self._name_function(name)
        return self._functions.of(action)


def _extension_value(value: Any) -> ExtensionValue:
    """A CloudEvents extension value: a string, a boolean or a 32-bit integer."""
    if isinstance(value, str | bool):
        return value
    if isinstance(value, int) and _INT32_MIN <= value <= _INT32_MAX:
        return value
    return canonical_text(value)
