"""The policy applied to events: `PolicyAnonymizer`, the pipeline's `Anonymizer`.

A `Policy` is compiled once, at construction, into one `_Scope` per type rule plus one
for the top-level rules: exact field paths become a trie walked alongside `data`, every
action becomes a bound function. What cannot be compiled ahead (which key names and
event types will turn up) is resolved on first sight and cached in bounded dicts, so the
per-event cost is one walk over `data` with a dict lookup per key, a regex pre-filter
per unnamed string, and one `orjson.dumps`.

Walking `data` (precedence, first that applies):

1. the type's exact `fields` path for this key;
2. an action inherited from an enclosing container (see below);
3. the type's `names` rules, then the top-level `names` rules, by key name;
4. no rule: a container is walked into; a scalar leaf is dropped in allowlist mode, and
   in denylist mode a string goes through `unnamed_text`, any other scalar is kept.

`keep` and `drop` take a container whole; any other action applies to every scalar leaf
under it. When a `fields` path reaches *inside* a container that an action takes (its own
path rule or a name rule), the path rule wins for what it names, and every other member
of that container still gets the container's action: a path carves an exception out of
a rule, it never opens a hole beside it.

Extension attributes go through the same rules by name (the type's exact `extensions`,
the top-level `extensions`, the `names` globs, then the mode). Their results stay valid
CloudEvents values: anything but a string, a boolean or a 32-bit integer becomes its
JSON text.

Failure behaviour: `anonymize` expects an event that passed validation (JSON values, no
NUL) and does not raise on one; data too deep for the walk or for `orjson` is not stored
(`data_json` None). `quarantine_data` takes anything and never raises: it drops strings
and keys holding NUL and values that are not JSON, and returns None when `data` is
absent, nests deeper than `QUARANTINE_MAX_DEPTH`, or leaves nothing to serialize.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Final

import orjson

from app.config import PrivacySettings
from app.model.events import AnonymizedEvent, CloudEvent, ExtensionValue
from app.privacy import actions
from app.privacy.actions import DROPPED, Action, Drop, Keep, Pseudonymize
from app.privacy.detectors import redact
from app.privacy.keyring import Keyring
from app.privacy.policy import EACH, FieldRule, Policy, Rules, load_policy

Apply = Callable[[Any], Any]  # a value in, the value to store or DROPPED out

QUARANTINE_MAX_DEPTH: Final = 128
# Bounds on the lookup caches: key names and event types come from the sender, so the
# caches must not grow with them. A full cache is simply emptied; the hot names return.
_NAME_CACHE_LIMIT: Final = 4096
_TYPE_CACHE_LIMIT: Final = 1024
_TYPE_CACHE_MAX_CHARS: Final = 256
_MEMO_LIMIT: Final = 8192
_SUBJECT_CACHE_LIMIT: Final = 16384
_MEMO_MAX_CHARS: Final = 256
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1


class PolicyAnonymizer:
    """Applies a `Policy` to events, pseudonymizing with a `Keyring`.

    Implements `app.pipeline.anonymize.Anonymizer`. Safe to share between tasks of one
    event loop: its only mutable state is its lookup caches.
    """

    def __init__(self, policy: Policy, keyring: Keyring) -> None:
        self._policy = policy
        self._keyring = keyring
        binder = _Binder(keyring)
        self._default = _Scope(policy.rules(), binder)
        self._type_scopes = tuple(
            (rule, _Scope(policy.rules(rule), binder)) for rule in policy.types
        )
        self._by_type: dict[str, _Scope] = {}
        self._pseudonymize_subject = isinstance(policy.subject, Pseudonymize)
        self._single_key = len(keyring.keys) == 1
        self._subjects: dict[str, tuple[str, str]] = {}

    @classmethod
    def from_settings(cls, privacy: PrivacySettings) -> PolicyAnonymizer:
        """Loads `privacy.policy_path` (raises `PolicyError`) and the keys it names."""
        return cls(load_policy(privacy.policy_path), Keyring.from_settings(privacy))

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def policy_version(self) -> str:
        return self._policy.version

    def subject_pseudonym(self, subject: str) -> str | None:
        """The subject's pseudonym under the active key (hex, no key id), or None when
        the policy drops subjects."""
        return self._keyring.pseudonym(subject) if self._pseudonymize_subject else None

    def anonymize(self, event: CloudEvent) -> AnonymizedEvent:
        """The event as it may be stored; see the module docstring for the rules."""
        scope = self._scope(event.type)
        data = event.data
        data_json: str | None = None
        is_base64 = False
        if data is not None:
            if event.data_is_base64:
                if scope.keep_binary:
                    data_json, is_base64 = orjson.dumps(data).decode(), True
            else:
                data_json = _dumps(scope, data, event.data_serialized)
        subject = event.subject
        pseudonym = lookup = key_id = None
        if subject is not None and self._pseudonymize_subject:
            pseudonym, lookup = self._subject_pseudonyms(subject)
            key_id = self._keyring.active_id
        return AnonymizedEvent(
            specversion=event.specversion,
            id=event.id,
            source=event.source,
            type=event.type,
            time=event.time,
            subject_pseudonym=pseudonym,
            pseudonym_key_id=key_id,
            datacontenttype=event.datacontenttype,
            dataschema=event.dataschema,
            data_json=data_json,
            data_is_base64=is_base64,
            extensions_json=(
                orjson.dumps(scope.extensions(event.extensions)).decode()
                if event.extensions
                else "{}"
            ),
            size=event.size,
            transport=event.transport,
            policy_version=self._policy.version,
            subject_lookup=lookup,
        )

    def data_rule(self, event_type: str, *, opaque: bool) -> str:
        """The rule that decided this type's `data`: `binary_data` for opaque payloads,
        else the walk's depth limit; with the type rule's line when one decides."""
        rule = self._policy.type_rule(event_type)
        if not opaque:
            return "nesting deeper than the policy walks"
        if rule is not None and rule.binary_data is not None:
            return f"binary_data: drop (types {', '.join(rule.patterns)}, line {rule.line})"
        return "binary_data: drop (top level)"

    def quarantine_data(self, event_type: str | None, data: Any) -> str | None:
        """JSON text of a refused event's `data` after the policy, or None; never raises."""
        if data is None:
            return None
        try:
            clean = _sanitized(data, 0)
        except _TooDeep:
            return None
        if clean is DROPPED:
            return None
        scope = self._default
        if isinstance(event_type, str) and event_type:
            scope = self._scope(event_type)
        return _dumps(scope, clean)

    def _subject_pseudonyms(self, subject: str) -> tuple[str, str]:
        """(pseudonym under the active key, lookup under every key), remembered for the
        most recent subjects: one subject sends many events, and two HMACs per event
        were a third of this stage's cost."""
        known = self._subjects.get(subject)
        if known is not None:
            return known
        pseudonym = self._keyring.pseudonym(subject)
        known = (pseudonym, pseudonym if self._single_key else self._keyring.lookup(subject))
        if len(self._subjects) >= _SUBJECT_CACHE_LIMIT:
            self._subjects.clear()
        self._subjects[subject] = known
        return known

    def _scope(self, event_type: str) -> _Scope:
        scope = self._by_type.get(event_type)
        if scope is not None:
            return scope
        scope = next(
            (scope for rule, scope in self._type_scopes if rule.matches(event_type)), self._default
        )
        if len(event_type) <= _TYPE_CACHE_MAX_CHARS:
            if len(self._by_type) >= _TYPE_CACHE_LIMIT:
                self._by_type.clear()
            self._by_type[event_type] = scope
        return scope


def _dumps(scope: _Scope, data: Any, serialized: bytes | None = None) -> str | None:
    try:
        result = scope.data(data)
        if result is DROPPED:
            return None
        if result is data and serialized is not None:
            return serialized.decode()  # untouched (copy on write): reuse the edge's bytes
        return orjson.dumps(result).decode()
    except (RecursionError, orjson.JSONEncodeError):
        return None  # deeper than the walk or orjson allow: not stored rather than unvetted


class _TooDeep(Exception):
    pass


def _sanitized(value: Any, depth: int) -> Any:
    """A copy of `value` holding only JSON values PostgreSQL can store: no NUL in strings
    or keys, integers within 64 bits, no other types (all dropped). Raises `_TooDeep`."""
    if isinstance(value, str):
        return DROPPED if "\x00" in value else value
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _UINT64_MAX else DROPPED
    if isinstance(value, dict | list):
        if depth >= QUARANTINE_MAX_DEPTH:
            raise _TooDeep
        return _sanitized_container(value, depth + 1)
    return DROPPED


def _sanitized_container(value: dict[Any, Any] | list[Any], depth: int) -> Any:
    if isinstance(value, list):
        return [clean for item in value if (clean := _sanitized(item, depth)) is not DROPPED]
    members = {}
    for key, member in value.items():
        if isinstance(key, str) and "\x00" not in key:
            clean = _sanitized(member, depth)
            if clean is not DROPPED:
                members[key] = clean
    return members


# --- compiling ---------------------------------------------------------------------------


def _keep(value: Any) -> Any:
    return value


def _drop(value: Any) -> Any:
    return DROPPED


def _unresolved(value: Any) -> Any:  # pragma: no cover - a cache sentinel, never called
    raise AssertionError("not an action")


class _Binder:
    """Turns actions into functions on values, one function per distinct action."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._bound: dict[Action, Apply] = {}
        self.redact = _memoized_redact()

    def __call__(self, action: Action) -> Apply:
        bound = self._bound.get(action)
        if bound is None:
            bound = self._bind(action)
            self._bound[action] = bound
        return bound

    def _bind(self, action: Action) -> Apply:
        if isinstance(action, Keep):
            return _keep
        if isinstance(action, Drop):
            return _drop
        return _leafwise(self._scalar(action))

    def _scalar(self, action: Action) -> Apply:
        if isinstance(action, actions.Pseudonymize):
            tagged = self._keyring.tagged_pseudonym

            def pseudonymize(value: Any) -> Any:
                if type(value) is str:  # the common case, one call shorter
                    return tagged(value)
                return actions.pseudonymize(value, tagged)

            return pseudonymize
        if isinstance(action, actions.Mask):
            return partial(actions.mask, keep_last=action.keep_last)
        if isinstance(action, actions.TruncateIp):
            return partial(
                actions.truncate_ip,
                ipv4_prefix=action.ipv4_prefix,
                ipv6_prefix=action.ipv6_prefix,
            )
        if isinstance(action, actions.GeneralizeTime):
            return partial(actions.generalize_time, to=action.to)
        if isinstance(action, actions.GeneralizeNumber):
            return partial(actions.generalize_number, buckets=action.buckets, width=action.width)
        redact_strings = self.redact

        def redact_text(value: Any) -> Any:
            return redact_strings(value) if isinstance(value, str) else value

        return redact_text


def _memoized_redact() -> Callable[[str], str]:
    """`detectors.redact`, remembering (boundedly) short strings it found nothing in.

    Enumerations, SKUs, user agents and the like repeat from event to event; a set lookup
    spares them the scan. Only strings that come back unchanged are remembered, and those
    are stored as they are anyway, so the set holds nothing that is not bound for disk.
    """
    clean: set[str] = set()

    def redact_memo(text: str) -> str:
        if text in clean:
            return text
        result = redact(text)
        if len(text) <= _MEMO_MAX_CHARS and result == text:
            if len(clean) >= _MEMO_LIMIT:
                clean.clear()
            clean.add(text)
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
    """One step of the `fields` trie: the action at this exact path, and what follows."""

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


def _trie(fields: tuple[FieldRule, ...], bind: _Binder) -> _PathNode:
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
        node.apply = bind(rule.action)
    root.seal()
    return root


_NO_KEYS: Final[dict[str, _PathNode]] = {}
_JSON_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


# --- walking -----------------------------------------------------------------------------


class _Scope:
    """The compiled rules of one type rule (or of the top level).

    The walk comes in two versions: `_plain_*` for the common case, where no `fields`
    path reaches this part of the data and no action is inherited, and `_object` /
    `_array` for the rest. The split keeps the per-key work of the common case to one
    cached dict lookup and one type test.
    """

    __slots__ = (
        "_bind",
        "_extension_cache",
        "_keep_unnamed",
        "_name_cache",
        "_root",
        "_rules",
        "_unnamed_text",
        "keep_binary",
    )

    def __init__(self, rules: Rules, bind: _Binder) -> None:
        self._rules = rules
        self._bind = bind
        root = _trie(rules.fields, bind)
        self._root = root if root.deep else None
        self._name_cache: dict[str, Apply | None] = {}
        self._extension_cache: dict[str, Apply | None] = {}
        allowlist = rules.mode == "allowlist"
        self._keep_unnamed = not allowlist
        self._unnamed_text: Apply = _drop
        if not allowlist:
            keep_text = isinstance(rules.unnamed_text, Keep)
            self._unnamed_text = _keep if keep_text else bind.redact
        self.keep_binary = isinstance(rules.binary_data, Keep)

    def data(self, value: Any) -> Any:
        """`value` after the rules, or DROPPED when nothing of it may be stored."""
        if isinstance(value, dict):
            return self._object(value, self._root, None)
        if isinstance(value, list):
            return self._array(value, self._root, None)
        if isinstance(value, str):
            return self._unnamed_text(value)
        return value if self._keep_unnamed else DROPPED

    def extensions(self, extensions: dict[str, ExtensionValue]) -> dict[str, ExtensionValue]:
        kept: dict[str, ExtensionValue] = {}
        cache = self._extension_cache
        for name, value in extensions.items():
            action = cache.get(name, _unresolved)
            if action is _unresolved:
                action = self._resolve_extension(name)
            if action is not None:
                result = action(value)
            elif isinstance(value, str):
                result = self._unnamed_text(value)
            elif self._keep_unnamed:
                result = value
            else:
                continue
            if result is not DROPPED:
                kept[name] = _extension_value(result)
        return kept

    def _plain_object(self, value: dict[str, Any]) -> dict[str, Any]:
        # Copy on write: most members come through unchanged, so the copy is made at the
        # first change only, and an object with no change is returned as it came.
        out = value
        cache = self._name_cache
        unnamed_text = self._unnamed_text
        for key, member in value.items():
            action = cache.get(key, _unresolved)
            if action is _unresolved:
                action = self._resolve_name(key)
            kind = type(member)
            if action is not None:
                result = action(member)
            elif kind is str:
                result = unnamed_text(member)
            elif kind is dict:
                result = self._plain_object(member)
            elif kind is list:
                result = self._plain_array(member)
            elif kind in _JSON_SCALARS:
                result = member if self._keep_unnamed else DROPPED
            else:
                result = self._unnamed(member)
            if result is not member:
                if out is value:
                    out = value.copy()
                if result is DROPPED:
                    del out[key]
                else:
                    out[key] = result
        return out

    def _plain_array(self, value: list[Any]) -> list[Any]:
        out: list[Any] | None = None  # copy on write, as for objects
        unnamed_text = self._unnamed_text
        for index, item in enumerate(value):
            kind = type(item)
            if kind is str:
                result = unnamed_text(item)
            elif kind is dict:
                result = self._plain_object(item)
            elif kind is list:
                result = self._plain_array(item)
            else:
                result = self._unnamed(item)
            if out is None:
                if result is item:
                    continue
                out = value[:index]
            if result is not DROPPED:
                out.append(result)
        return value if out is None else out

    def _unnamed(self, value: Any) -> Any:
        """A value no rule names that is not an exact str, dict or list."""
        if isinstance(value, dict):  # a subclass: walked like any object
            return self._plain_object(value)
        if isinstance(value, list):
            return self._plain_array(value)
        if isinstance(value, str):
            return self._unnamed_text(value)
        return value if self._keep_unnamed else DROPPED

    def _object(
        self, value: dict[str, Any], node: _PathNode | None, inherited: Apply | None
    ) -> dict[str, Any]:
        """An object that `fields` paths reach into (`node`), or inside a container an
        action takes (`inherited`), or both."""
        if inherited is None and (node is None or not node.deep):
            return self._plain_object(value)
        keys = node.keys if node is not None else _NO_KEYS
        members: dict[str, Any] = {}
        for key, member in value.items():
            child = keys.get(key)
            action = child.apply if child is not None else None
            if action is None:
                action = inherited if inherited is not None else self._name_action(key)
            if action is None:
                result = self._descend(member, child)
            elif child is not None and child.deep and isinstance(member, dict | list):
                result = self._within(member, child, action)
            else:
                result = action(member)
            if result is not DROPPED:
                members[key] = result
        return members

    def _array(
        self, value: list[Any], node: _PathNode | None, inherited: Apply | None
    ) -> list[Any]:
        each = node.each if node is not None else None
        if inherited is None and each is None:
            return self._plain_array(value)
        action = each.apply if each is not None else None
        if action is None:
            action = inherited
        deep = each if each is not None and each.deep else None
        items: list[Any] = []
        for item in value:
            if action is None:
                result = self._descend(item, each)
            elif deep is not None and isinstance(item, dict | list):
                result = self._within(item, deep, action)
            else:
                result = action(item)
            if result is not DROPPED:
                items.append(result)
        return items

    def _descend(self, value: Any, node: _PathNode | None) -> Any:
        """A value no rule takes, below a path node: walked, or handled as unnamed."""
        if isinstance(value, dict):
            return self._object(value, node, None)
        if isinstance(value, list):
            return self._array(value, node, None)
        return self._unnamed(value)

    def _within(self, value: dict[str, Any] | list[Any], node: _PathNode, action: Apply) -> Any:
        """A container an action takes, with paths reaching inside it: carve-outs."""
        if isinstance(value, dict):
            return self._object(value, node, action)
        return self._array(value, node, action)

    def _name_action(self, key: str) -> Apply | None:
        action = self._name_cache.get(key, _unresolved)
        return self._resolve_name(key) if action is _unresolved else action

    def _resolve_name(self, key: str) -> Apply | None:
        rule = self._rules.name_action(key)
        action = self._bind(rule) if rule is not None else None
        _remember(self._name_cache, key, action)
        return action

    def _resolve_extension(self, name: str) -> Apply | None:
        rule = self._rules.extensions.get(name)
        if rule is None:
            rule = self._rules.name_action(name)
        action = self._bind(rule) if rule is not None else None
        _remember(self._extension_cache, name, action)
        return action


def _remember(cache: dict[str, Apply | None], key: str, action: Apply | None) -> None:
    if len(cache) >= _NAME_CACHE_LIMIT:
        cache.clear()
    cache[key] = action


def _extension_value(value: Any) -> ExtensionValue:
    """A CloudEvents extension value: a string, a boolean or a 32-bit integer."""
    if isinstance(value, str | bool):
        return value
    if isinstance(value, int) and _INT32_MIN <= value <= _INT32_MAX:
        return value
    return actions.canonical_text(value)
