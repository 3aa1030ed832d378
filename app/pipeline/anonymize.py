"""The privacy stage between validation and the write: the `Anonymizer` protocol.

The implementation is `app.privacy.engine.PolicyAnonymizer`, which applies the
declarative policy file (docs/privacy.md): the subject pseudonymized or dropped, `data`
and extension values pseudonymized, generalized, masked, redacted or dropped per the
rules for the event's `type`. Nothing downstream of this stage sees a raw subject: the
output type has no field that could hold one.
"""

from __future__ import annotations

from typing import Any, Protocol

from app.model.events import AnonymizedEvent, CloudEvent


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

    def subject_pseudonym(self, subject: str) -> str | None:
        """The subject's pseudonym under the active key (hex), or None when the policy
        drops subjects; for rejected events, which never reach `anonymize`."""
        ...

    def data_rule(self, event_type: str, *, opaque: bool) -> str:
        """The policy rule that decides whether this type's `data` is stored, as the policy
        file names it (`binary_data: drop`, with the type rule's `match` when a type rule
        decides): what an answer cites when the data was dropped."""
        ...

    def quarantine_data(self, event_type: str | None, data: Any) -> str | None:
        """JSON text of a refused event's `data` after the policy (the type's rules when
        `event_type` is a usable string, else the defaults), or None when the policy
        cannot apply and the data must not be kept. Never raises, whatever `data` is."""
        ...
