"""The policy applied to events: `PolicyAnonymizer`, the pipeline's `Anonymizer`.

A `Policy` is compiled once, at construction, into one `CompiledRules` per type rule
plus one for the top-level rules (`compiled.py`, which also says in what order rules
apply to `data`). Which rules an event type falls under is learnt on first sight and
remembered, boundedly; so is the pseudonym of a subject.

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

from typing import Any, Final

import orjson

from app.config import PrivacySettings
from app.model.events import AnonymizedEvent, CloudEvent
from app.privacy.actions import DROPPED, Pseudonymize
from app.privacy.cache import BoundedCache
from app.privacy.compiled import NAME_CACHE_LIMIT, ActionFunctions, CompiledRules
from app.privacy.keyring import Keyring
from app.privacy.policy import load_policy
from app.privacy.rules import Policy

QUARANTINE_MAX_DEPTH: Final = 128
# Event types and subjects come from the sender: at most this many are remembered.
_TYPE_CACHE_LIMIT: Final = 1024
_TYPE_CACHE_MAX_CHARS: Final = 256  # a longer type is matched anew each time
_SUBJECT_CACHE_LIMIT: Final = 16384
_NAME_CACHE_LIMIT: Final = NAME_CACHE_LIMIT  # per CompiledRules, for key names
_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1


class PolicyAnonymizer:
    """Applies a `Policy` to events, pseudonymizing with a `Keyring`.

    Implements `app.pipeline.anonymize.Anonymizer`. Safe to share between tasks of one
    event loop: its only mutable state is its bounded caches.
    """

    def __init__(self, policy: Policy, keyring: Keyring) -> None:
        self._policy = policy
        self._keyring = keyring
        functions = ActionFunctions(keyring)
        self._default = CompiledRules(policy.rules(), functions)
        self._type_scopes = tuple(
            (rule, CompiledRules(policy.rules(rule), functions)) for rule in policy.types
        )
        self._by_type: BoundedCache[str, CompiledRules] = BoundedCache(_TYPE_CACHE_LIMIT)
        self._pseudonymize_subject = isinstance(policy.subject, Pseudonymize)
        self._single_key = len(keyring.keys) == 1
        self._subjects: BoundedCache[str, tuple[str, str]] = BoundedCache(_SUBJECT_CACHE_LIMIT)

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
        """The event as it may be stored; see `compiled.py` for the rules."""
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
            # One subject sends many events, and two HMACs per event were a third of
            # this stage's cost: the pair is remembered for the most recent subjects.
            try:
                pseudonym, lookup = self._subjects.entries[subject]
            except KeyError:
                pseudonym, lookup = self._subjects.remember(
                    subject, self._derive_subject_pseudonyms(subject)
                )
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

    def _derive_subject_pseudonyms(self, subject: str) -> tuple[str, str]:
        """(pseudonym under the active key, lookup under every key)."""
        pseudonym = self._keyring.pseudonym(subject)
        return pseudonym, pseudonym if self._single_key else self._keyring.lookup(subject)

    def _scope(self, event_type: str) -> CompiledRules:
        try:
            return self._by_type.entries[event_type]
        except KeyError:
            scope = self._match_type(event_type)
        if len(event_type) <= _TYPE_CACHE_MAX_CHARS:
            self._by_type.remember(event_type, scope)
        return scope

    def _match_type(self, event_type: str) -> CompiledRules:
        """The rules of the first type rule matching `event_type`, else the top level's."""
        return next(
            (scope for rule, scope in self._type_scopes if rule.matches(event_type)), self._default
        )


def _dumps(scope: CompiledRules, data: Any, serialized: bytes | None = None) -> str | None:
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
