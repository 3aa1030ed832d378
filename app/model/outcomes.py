"""What Sluice answers about each event: its outcome and, when it was not taken, why.

Words used throughout (code, docs and error codes alike):

- **rejected**: an event that will not be stored as sent. Its `Rejection` names the code
  and the attribute or path at fault, never a value. A rejected event is still written,
  as a quarantine row, in the same batch as its neighbours: "rejected" is as durable an
  answer as "stored".
- **quarantined**: rejected, but held for replay, and the sender need do nothing (a 2xx):
  an unknown type under `SLUICE_CONTRACTS_UNKNOWN_TYPE=quarantine`.
- **refused value** (`storage.refused_value`): PostgreSQL itself turned a value down; the
  event is then rejected like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import orjson

from app.errors import ErrorCode


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    ACCEPTED = "accepted"  # buffered or published, not yet committed (`?ack=enqueued`)
    SUPPRESSED = "suppressed"  # the subject was erased and is suppressed: dropped, not stored
    # Unknown type under `SLUICE_CONTRACTS_UNKNOWN_TYPE=quarantine`: kept for replay, and the
    # sender need not do anything (a 2xx), unlike `rejected`.
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed contract or quality check: where (`data.items[2].price`) and which
    schema keyword, never the offending value."""

    code: ErrorCode
    field: str
    keyword: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """As rows store it and answers show it."""
        return {"code": self.code.value, "field": self.field, "keyword": self.keyword}


def violations_json(violations: Sequence[Violation]) -> str:
    """How violations are stored (events and quarantine rows): code, path, keyword."""
    return orjson.dumps([violation.as_dict() for violation in violations]).decode()


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one event was rejected. `field` names an attribute or path, never a value.

    A contract or quality check that rejects also says which contract judged
    (`contract_version`), every check that failed (`violations`), and whether the event is
    held for replay and answered `quarantined` rather than `rejected` (`held`)."""

    code: ErrorCode
    field: str | None
    message: str
    violations: tuple[Violation, ...] = ()
    contract_version: str | None = None
    held: bool = False

    @property
    def outcome(self) -> Outcome:
        return Outcome.QUARANTINED if self.held else Outcome.REJECTED


STORAGE_REFUSED = Rejection(
    code=ErrorCode.STORAGE_REFUSED_VALUE,
    field=None,
    message="the database refused a value of this event",
)


class PayloadDropped(StrEnum):
    """Why an event was stored without its `data` (the answer says so, a counter counts)."""

    OPAQUE = "opaque"  # base64 bytes no rule can look into, under `binary_data: drop`
    TOO_DEEP = "too_deep"  # nests deeper than the policy walk or JSON serialization goes


@dataclass(frozen=True, slots=True)
class DataDrop:
    reason: PayloadDropped
    rule: str  # the policy rule that dropped it, as the policy file names it


@dataclass(frozen=True, slots=True)
class EventResult:
    """The answer for one event, in the order the events came."""

    status: Outcome
    id: str | None
    source: str | None
    rejection: Rejection | None = None
    violations: tuple[Violation, ...] = ()  # rejecting, or recorded with a lenient store
    dropped: DataDrop | None = None  # taken, but without its `data`


@dataclass(frozen=True, slots=True)
class IngestReport:
    results: list[EventResult]

    def count(self, status: Outcome) -> int:
        return sum(1 for result in self.results if result.status is status)
