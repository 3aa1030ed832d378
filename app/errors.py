"""Every failure Sluice reports, with the code a machine can branch on.

The tree (every exception class of the project; where it is raised in brackets)::

    SluiceError                      raised while serving: carries an `ErrorCode`
    ├── InvalidInput                 the input is wrong; retrying it cannot help
    │   ├── RequestRejected          the request as a whole is unusable (400/413/415/422)
    │   │                            [sources/, api/]
    │   ├── Unauthorized             401: no valid credential (API key, admin token, push
    │   │                            OIDC token); answered with `WWW-Authenticate`
    │   ├── Forbidden                403: a valid credential that is not allowed here
    │   └── StorageRefusedValue      PostgreSQL refused a value (SQLSTATE 22, 23, 54); the
    │                                batch writer splits the batch to find the event
    │                                [storage/repository.py]
    └── Retryable                    the service cannot take it *now*; try again later
        ├── BufferFull               429: the in-memory buffer is at capacity
        ├── RateLimited              429: this API key spent its request budget [auth/]
        ├── ShuttingDown             503: the process is draining for exit
        ├── StorageUnavailable       503: PostgreSQL failed past the retry budget, or with
        │   │                        an error no retry fixes (a missing table)
        │   ├── TransientStorageError  the same statement may succeed if retried
        │   │   │                    (connection lost, a read-only server, deadlock,
        │   │   │                    timeout: `storage/retry.py` judges) [storage/]
        │   │   └── PartitionMissing   no partition holds the batch's time: create, retry
        │   └── CircuitOpen          the database was not asked: the breaker is open
        │       └── DatabaseCircuitOpen  [storage/breaker.py]
        └── BrokerUnavailable        503: RabbitMQ did not confirm (broker-backed HTTP mode)

    ConfigurationError               raised at start-up: the deployment's files are unusable
    ├── PolicyError                  the privacy policy file [privacy/]
    └── ContractError                a data contract or `contracts.yaml` [contracts/]

A process refuses to start on a `ConfigurationError` (the CLI prints it and exits 2), so
it never meets a request; that is why it has no `ErrorCode` and sits outside `SluiceError`.

A single event that is rejected is not an exception: it is a `Rejection` value
(`app.model.outcomes`) in the per-event results and a quarantine row, so one bad event
never fails its batch.

`ErrorCode` is the shared taxonomy of every source and every outcome: each code knows its
HTTP status, whether a retry can succeed, and so what a message source answers its broker
(`delivery`): acknowledge (the event is quarantined or deliberately dropped) or redeliver.
Foreign errors (asyncpg, orjson, pydantic) are mapped to these at the edge that meets
them, with `raise ... from exc`, and never leave that module unmapped.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class ErrorCode(StrEnum):
    MALFORMED_JSON = "request.malformed_json"
    UNSUPPORTED_MEDIA_TYPE = "request.unsupported_media_type"
    BODY_TOO_LARGE = "request.body_too_large"
    TOO_MANY_EVENTS = "request.too_many_events"
    NOT_AN_EVENT = "request.not_an_event"
    NOT_A_PUBSUB_DELIVERY = "request.not_a_pubsub_delivery"
    INVALID_PARAMETER = "request.invalid_parameter"
    NOT_FOUND = "request.not_found"
    JSON_TOO_COMPLEX = "request.json_too_complex"
    REQUEST_TIMEOUT = "request.timeout"
    HEADERS_TOO_LARGE = "request.headers_too_large"
    METHOD_NOT_ALLOWED = "request.method_not_allowed"
    UNAUTHORIZED = "auth.unauthorized"
    FORBIDDEN = "auth.forbidden"
    SOURCE_NOT_ALLOWED = "auth.source_not_allowed"
    MISSING_ATTRIBUTE = "envelope.missing_attribute"
    BAD_SPECVERSION = "envelope.bad_specversion"
    INVALID_ATTRIBUTE = "envelope.invalid_attribute"
    INVALID_ATTRIBUTE_NAME = "envelope.invalid_attribute_name"
    NUL_CHARACTER = "envelope.nul_character"
    EVENT_TOO_LARGE = "size.event_too_large"
    ATTRIBUTE_TOO_LONG = "size.attribute_too_long"
    UNKNOWN_TYPE = "contract.unknown_type"
    UNKNOWN_SCHEMA = "contract.unknown_schema"
    CONTRACT_VIOLATION = "contract.violation"
    TIME_SKEW = "quality.time_skew"
    TOO_OLD = "quality.too_old"
    EMPTY_DATA = "quality.empty_data"
    FIELD_TOO_LARGE = "quality.field_too_large"
    SUPPRESSED = "privacy.suppressed"
    STORAGE_REFUSED_VALUE = "storage.refused_value"
    BAD_FORWARD_SIGNATURE = "envelope.bad_forward_signature"
    BUFFER_FULL = "transient.buffer_full"
    RATE_LIMITED = "transient.rate_limited"
    DATABASE_UNAVAILABLE = "transient.database"
    SHUTTING_DOWN = "transient.shutting_down"
    OVERLOADED = "transient.overloaded"
    BROKER_UNAVAILABLE = "transient.broker"

    @property
    def http_status(self) -> int:
        return _STATUS[self]

    @property
    def retryable(self) -> bool:
        return self.value.startswith("transient.")

    @property
    def scope(self) -> Scope:
        if self.retryable:
            return Scope.TRANSIENT
        if self.value.startswith(_REQUEST_PREFIXES) and self not in _PER_EVENT_AUTH:
            return Scope.REQUEST
        return Scope.EVENT

    @property
    def delivery(self) -> Delivery | None:
        """What a message source (Pub/Sub push, RabbitMQ) does with a message this code
        refused: a transient refusal is redelivered later; a bad message is acknowledged
        once its quarantine row (or its deliberate drop) is committed, since delivering
        it again could only fail the same way. None: only an HTTP request can meet it."""
        if self.retryable:
            return Delivery.REDELIVER
        if self.scope is Scope.EVENT or self in _MESSAGE_LEVEL:
            return Delivery.ACKNOWLEDGE
        return None


class Scope(StrEnum):
    REQUEST = "request"  # the request as a whole is rejected: nothing of it is taken
    EVENT = "event"  # one event's outcome; the rest of its request goes on
    TRANSIENT = "transient"  # nothing is taken now; the same input can succeed later


class Delivery(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    REDELIVER = "redeliver"


_REQUEST_PREFIXES = ("request.", "auth.")
# Request-level codes that a message source meets per message, quarantining that message.
_MESSAGE_LEVEL = frozenset(
    {ErrorCode.MALFORMED_JSON, ErrorCode.NOT_AN_EVENT, ErrorCode.JSON_TOO_COMPLEX}
)
# An API key may write some sources and not others: judged event by event.
_PER_EVENT_AUTH = frozenset({ErrorCode.SOURCE_NOT_ALLOWED})


# Per-event codes map to 422: the status of a request whose every event was rejected.
_STATUS: dict[ErrorCode, int] = {
    ErrorCode.MALFORMED_JSON: 400,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.BODY_TOO_LARGE: 413,
    ErrorCode.TOO_MANY_EVENTS: 413,
    ErrorCode.NOT_AN_EVENT: 422,
    ErrorCode.NOT_A_PUBSUB_DELIVERY: 400,
    ErrorCode.INVALID_PARAMETER: 422,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.JSON_TOO_COMPLEX: 422,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.HEADERS_TOO_LARGE: 431,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.SOURCE_NOT_ALLOWED: 403,
    ErrorCode.MISSING_ATTRIBUTE: 422,
    ErrorCode.BAD_SPECVERSION: 422,
    ErrorCode.INVALID_ATTRIBUTE: 422,
    ErrorCode.INVALID_ATTRIBUTE_NAME: 422,
    ErrorCode.NUL_CHARACTER: 422,
    ErrorCode.EVENT_TOO_LARGE: 422,
    ErrorCode.ATTRIBUTE_TOO_LONG: 422,
    ErrorCode.STORAGE_REFUSED_VALUE: 422,
    ErrorCode.UNKNOWN_TYPE: 422,
    ErrorCode.UNKNOWN_SCHEMA: 422,
    ErrorCode.CONTRACT_VIOLATION: 422,
    ErrorCode.TIME_SKEW: 422,
    ErrorCode.TOO_OLD: 422,
    ErrorCode.EMPTY_DATA: 422,
    ErrorCode.FIELD_TOO_LARGE: 422,
    ErrorCode.SUPPRESSED: 200,  # acknowledged and deliberately not stored: not a failure
    ErrorCode.BAD_FORWARD_SIGNATURE: 422,
    ErrorCode.BUFFER_FULL: 429,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.DATABASE_UNAVAILABLE: 503,
    ErrorCode.SHUTTING_DOWN: 503,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.BROKER_UNAVAILABLE: 503,
}


class SluiceError(Exception):
    code: ErrorCode
    #: Headers the HTTP answer must carry (`WWW-Authenticate`, the rate-limit fields).
    headers: Mapping[str, str] = MappingProxyType({})

    def __init__(self, message: str, *, code: ErrorCode, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field


class InvalidInput(SluiceError):
    pass


class RequestRejected(InvalidInput):
    pass


class Unauthorized(InvalidInput):
    # RFC 9110: a 401 names the scheme it wants. The same answer for a missing, unknown,
    # expired or revoked credential: none reveals which keys exist.
    headers = MappingProxyType({"WWW-Authenticate": 'Bearer realm="sluice"'})

    def __init__(self, message: str = "a valid API key or bearer token is required") -> None:
        super().__init__(message, code=ErrorCode.UNAUTHORIZED)


class Forbidden(InvalidInput):
    def __init__(self, message: str = "this credential is not allowed here") -> None:
        super().__init__(message, code=ErrorCode.FORBIDDEN)


class Retryable(SluiceError):
    def __init__(self, message: str, *, code: ErrorCode, retry_after_s: int = 1) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class BufferFull(Retryable):
    def __init__(self, message: str = "ingest buffer is full", *, retry_after_s: int = 1) -> None:
        super().__init__(message, code=ErrorCode.BUFFER_FULL, retry_after_s=retry_after_s)


class RateLimited(Retryable):
    """The key's token bucket is empty; `headers` carry `Retry-After`'s companions, the
    IETF `RateLimit-*` fields."""

    def __init__(self, *, retry_after_s: int, headers: Mapping[str, str]) -> None:
        super().__init__(
            "request rate limit of this API key exceeded",
            code=ErrorCode.RATE_LIMITED,
            retry_after_s=retry_after_s,
        )
        self.headers = MappingProxyType(dict(headers))


class ShuttingDown(Retryable):
    def __init__(
        self, message: str = "service is shutting down", *, retry_after_s: int = 1
    ) -> None:
        super().__init__(message, code=ErrorCode.SHUTTING_DOWN, retry_after_s=retry_after_s)


class StorageUnavailable(Retryable):
    def __init__(self, message: str = "database unavailable", *, retry_after_s: int = 1) -> None:
        super().__init__(message, code=ErrorCode.DATABASE_UNAVAILABLE, retry_after_s=retry_after_s)


class TransientStorageError(StorageUnavailable):
    """A database error that the same statement may overcome if retried."""


class PartitionMissing(TransientStorageError):
    """No partition holds the batch's `received_at` (dropped by hand, or the clock stepped
    back): create the partitions and retry. The tables have no CHECK constraints, so
    SQLSTATE 23514 from a write can only mean this."""


class CircuitOpen(StorageUnavailable):
    """The circuit breaker refused the call unasked; never retried by the policy."""


class StorageRefusedValue(InvalidInput):
    """PostgreSQL refused a value (SQLSTATE class 22, 23 or 54); nothing was written.

    The batch writer splits the batch to isolate the value; anywhere else it reaches the
    edge as a 422, since the input, not the service, is at fault."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=ErrorCode.STORAGE_REFUSED_VALUE)


class BrokerUnavailable(Retryable):
    def __init__(
        self, message: str = "message broker unavailable", *, retry_after_s: int = 1
    ) -> None:
        super().__init__(message, code=ErrorCode.BROKER_UNAVAILABLE, retry_after_s=retry_after_s)


class ConfigurationError(Exception):
    """A file or setting the process needs is unusable; the message says where and why."""
