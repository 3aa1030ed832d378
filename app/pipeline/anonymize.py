"""The privacy stage between validation and the write: the `Anonymizer` protocol.

The implementation is `app.privacy.engine.PolicyAnonymizer`, which applies the
declarative policy file (docs/privacy.md): the subject pseudonymized or dropped, `data`
and extension values pseudonymized, generalized, masked, redacted or dropped per the
rules for the event's `type`. Nothing downstream of this stage sees a raw subject: the
output type has no field that could hold one.

`SubjectPseudonymizer` is the interim stage the policy engine replaced (subject only,
`data` stored as sent); it stays until nothing refers to it.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from app.pipeline.events import AnonymizedEvent, CloudEvent
from app.privacy.keyring import Keyring


class Anonymizer(Protocol):
    @property
    def policy_version(self) -> str:
        """Identifies the rules (a hash of the policy file); stored with every row."""
        ...

    def anonymize(self, event: CloudEvent) -> AnonymizedEvent:
        """The event as it may be stored: subject pseudonymized (or dropped), `data` and
        extension values transformed by the policy for its `type`. Does not raise on an
        event that passed validation."""
        ...

    def pseudonym(self, value: str) -> str:
        """The subject pseudonym under the active key (hex)."""
        ...

    def quarantine_data(self, event_type: str | None, data: Any) -> str | None:
        """JSON text of a refused event's `data` after the policy (the type's rules when
        `event_type` is a usable string, else the defaults), or None when the policy
        cannot apply and the data must not be kept. Never raises, whatever `data` is."""
        ...


class SubjectPseudonymizer:
    """Interim, replaced by `PolicyAnonymizer`: stores `data` and extensions as sent.

    HMAC-SHA256 of the subject under a secret key; the key id is stored beside it.

    A keyed MAC, not a (salted) hash: without the key nobody can test a guessed e-mail
    address against the stored value, yet equal subjects still join.
    """

    policy_version = "subject-only"

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self.key_id = keyring.active_id

    def quarantine_data(self, event_type: str | None, data: Any) -> str | None:
        return None  # no policy for `data` here: never keep it

    def pseudonym(self, value: str) -> str:
        return self._keyring.pseudonym(value)

    def anonymize(self, event: CloudEvent) -> AnonymizedEvent:
        subject = event.subject
        return AnonymizedEvent(
            specversion=event.specversion,
            id=event.id,
            source=event.source,
            type=event.type,
            time=event.time,
            subject_pseudonym=self.pseudonym(subject) if subject is not None else None,
            pseudonym_key_id=self.key_id if subject is not None else None,
            datacontenttype=event.datacontenttype,
            dataschema=event.dataschema,
            data_json=orjson.dumps(event.data).decode() if event.data is not None else None,
            data_is_base64=event.data_is_base64,
            extensions_json=orjson.dumps(event.extensions).decode(),
            size=event.size,
            transport=event.transport,
            policy_version=self.policy_version,
            subject_lookup=self._keyring.lookup(subject) if subject is not None else None,
        )
