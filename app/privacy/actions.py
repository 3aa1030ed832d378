"""What a policy rule does to a value: the registry of actions.

Each action is declared once, here, as a frozen dataclass registered under its name
(`@registered`): its parameters are its fields, each with a default and a kind that
reads and checks it (`parameters.parameter`), and `function` gives the function the
engine applies. The policy compiler (`policy.py`) finds an action by name in `ACTIONS`
and builds it from the file; the engine (`engine.py`) asks it for its function. Adding
an action is adding one class to this module.

The functions are pure, on one JSON scalar, and never raise on a JSON value: input an
action cannot make sense of is *dropped* (they return `DROPPED`), never passed through,
because passing through is how personal data would leak.

Shared conventions:

- `null` passes every value action unchanged: it carries nothing.
- A non-string scalar is read through its canonical JSON text (`42`, `4.5`, `true`)
  where an action works on text (`pseudonymize`, `mask`).
- `keep` and `drop` take a container whole (`takes_containers_whole`); the engine
  applies every other action to each scalar leaf under a container, which is why their
  functions are defined on scalars only.
"""

from __future__ import annotations

import ipaddress
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from enum import Enum
from functools import partial
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal, TypeVar

import orjson

from app.privacy import detectors
from app.privacy.parameters import AscendingNumbers, Integer, OneOf, PositiveNumber, parameter


class Dropped(Enum):
    """The one value an action returns for "remove this leaf/member"."""

    DROPPED = "dropped"


DROPPED: Final = Dropped.DROPPED

TimeUnit = Literal["year", "month", "day", "hour"]
TIME_UNITS: Final[tuple[TimeUnit, ...]] = ("year", "month", "day", "hour")

Apply = Callable[[Any], Any]  # a value in, the value to store or DROPPED out


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What an action's function may use beyond its own parameters."""

    tagged_pseudonym: Callable[[str], str]  # `Keyring.tagged_pseudonym` of the active key
    redact: Callable[[str], str]  # `detectors.redact`, or a memoized equivalent


@dataclass(frozen=True, slots=True)
class Action(ABC):
    """One action of a policy rule, with its parameters' values (equal if they are equal)."""

    name: ClassVar[str]
    takes_containers_whole: ClassVar[bool] = False

    @abstractmethod
    def function(self, context: ActionContext) -> Apply:
        """The function on a value: on a whole container when `takes_containers_whole`,
        else on one JSON scalar."""

    def problem(self) -> str | None:
        """What is wrong with this combination of parameters, if anything (each
        parameter's own value is checked by its kind)."""
        return None


_REGISTRY: dict[str, type[Action]] = {}
ACTIONS: Final[Mapping[str, type[Action]]] = MappingProxyType(_REGISTRY)  # in declaration order
_ActionType = TypeVar("_ActionType", bound=type[Action])


def registered(action_type: _ActionType) -> _ActionType:
    """Adds the action class to `ACTIONS` under its `name`."""
    if action_type.name in _REGISTRY:
        raise ValueError(f"two actions are named {action_type.name!r}")
    _REGISTRY[action_type.name] = action_type
    return action_type


def unchanged(value: Any) -> Any:
    return value


def dropped(value: Any) -> Dropped:
    return DROPPED


@registered
@dataclass(frozen=True, slots=True)
class Keep(Action):
    """Store the value as it is (a container whole, rules below it are not consulted)."""

    name: ClassVar[str] = "keep"
    takes_containers_whole: ClassVar[bool] = True

    def function(self, context: ActionContext) -> Apply:
        return unchanged


@registered
@dataclass(frozen=True, slots=True)
class Drop(Action):
    """Remove the member (or array element) entirely (a container whole)."""

    name: ClassVar[str] = "drop"
    takes_containers_whole: ClassVar[bool] = True

    def function(self, context: ActionContext) -> Apply:
        return dropped


@registered
@dataclass(frozen=True, slots=True)
class Pseudonymize(Action):
    """Replace the value by `<key id>:<HMAC-SHA256 hex>` of its text under the active key."""

    name: ClassVar[str] = "pseudonymize"

    def function(self, context: ActionContext) -> Apply:
        tagged = context.tagged_pseudonym

        def pseudonymize_scalar(value: Any) -> Any:
            if type(value) is str:  # the common case, one call shorter
                return tagged(value)
            return pseudonymize(value, tagged)

        return pseudonymize_scalar


@registered
@dataclass(frozen=True, slots=True)
class Mask(Action):
    """Keep the last `keep_last` characters, replace the others by `*`."""

    name: ClassVar[str] = "mask"
    keep_last: int = parameter(4, Integer(0, 1_000))

    def function(self, context: ActionContext) -> Apply:
        return partial(mask, keep_last=self.keep_last)


@registered
@dataclass(frozen=True, slots=True)
class TruncateIp(Action):
    """Zero the host bits of an IP address: keep the first `ipv4_prefix`/`ipv6_prefix` bits."""

    name: ClassVar[str] = "truncate_ip"
    ipv4_prefix: int = parameter(24, Integer(0, 32))
    ipv6_prefix: int = parameter(48, Integer(0, 128))

    def function(self, context: ActionContext) -> Apply:
        return partial(truncate_ip, ipv4_prefix=self.ipv4_prefix, ipv6_prefix=self.ipv6_prefix)


@registered
@dataclass(frozen=True, slots=True)
class GeneralizeTime(Action):
    """Truncate an RFC 3339 timestamp or date to the start of its year/month/day/hour."""

    name: ClassVar[str] = "generalize_time"
    # `parameter` returns a `dataclasses.field`, which ruff cannot see through.
    to: TimeUnit = parameter("day", OneOf(TIME_UNITS, noun="unit"))  # noqa: RUF009

    def function(self, context: ActionContext) -> Apply:
        return partial(generalize_time, to=self.to)


@registered
@dataclass(frozen=True, slots=True)
class GeneralizeNumber(Action):
    """Replace a number by the lower bound of its bucket: given `buckets` (ascending
    lower bounds) or every `width` from zero. Exactly one of the two is set."""

    name: ClassVar[str] = "generalize_number"
    buckets: tuple[int | float, ...] | None = parameter(
        None, AscendingNumbers(element="a bucket bound")
    )
    width: int | float | None = parameter(None, PositiveNumber())

    def function(self, context: ActionContext) -> Apply:
        return partial(generalize_number, buckets=self.buckets, width=self.width)

    def problem(self) -> str | None:
        if (self.buckets is None) == (self.width is None):
            return f"{self.name} needs exactly one of buckets and width"
        return None


@registered
@dataclass(frozen=True, slots=True)
class RedactText(Action):
    """Replace e-mail addresses, phone numbers, IPs, valid card numbers, IBANs, postal
    addresses and names in context in free text by `<EMAIL>`, `<PHONE>`, `<IP>`, `<CARD>`,
    `<IBAN>`, `<ADDRESS>`, `<NAME>` (`detectors.redact`); non-strings unchanged."""

    name: ClassVar[str] = "redact_text"

    def function(self, context: ActionContext) -> Apply:
        return partial(redact_text, redact=context.redact)


# --- the pure functions, one per value action, on one JSON scalar ---------------------


def canonical_text(value: Any) -> str:
    """The text an action reads from a scalar: a string itself, anything else as JSON."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def pseudonymize(value: Any, tagged_pseudonym: Callable[[str], str]) -> Any:
    """`tagged_pseudonym` of the value's canonical text; `null` unchanged."""
    if value is None:
        return None
    return tagged_pseudonym(canonical_text(value))


def mask(value: Any, keep_last: int = 4) -> Any:
    """The canonical text with all but the last `keep_last` characters replaced by `*`.

    A value of `keep_last` characters or fewer is masked entirely: a mask that would show
    the whole value hides nothing. Characters are code points, so `é` counts as one.
    """
    if value is None:
        return None
    text = canonical_text(value)
    if keep_last == 0 or len(text) <= keep_last:
        return "*" * len(text)
    return "*" * (len(text) - keep_last) + text[-keep_last:]


def truncate_ip(value: Any, ipv4_prefix: int = 24, ipv6_prefix: int = 48) -> Any:
    """The network address of the value's /`ipv4_prefix` or /`ipv6_prefix` block, as text.

    IPv4-mapped IPv6 (`::ffff:192.0.2.7`) is an IPv4 address: truncated by `ipv4_prefix`
    and written back in the mapped form. A zone (`%eth0`) is removed. Anything that is not
    an IP address in text form as `ipaddress` reads it (a number, a CIDR block, an octet
    with a leading zero, surrounding spaces) is dropped.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        return DROPPED
    v4 = _ipv4_int(value)  # the common case, without ipaddress's object overhead
    if v4 is not None:
        return _ipv4_text(_network(v4, ipv4_prefix, 32))
    return _truncated_v6(value, ipv4_prefix, ipv6_prefix)


def _truncated_v6(value: str, ipv4_prefix: int, ipv6_prefix: int) -> str | Dropped:
    if ":" not in value:
        return DROPPED
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        return DROPPED
    mapped = address.ipv4_mapped
    if mapped is not None:
        return "::ffff:" + _ipv4_text(_network(int(mapped), ipv4_prefix, 32))
    return str(ipaddress.IPv6Address(_network(int(address), ipv6_prefix, 128)))


def _ipv4_int(text: str) -> int | None:
    """Dotted-quad IPv4 as an integer; None unless `ipaddress` would accept it too."""
    octets = text.split(".")
    if len(octets) != 4:
        return None
    number = 0
    for octet in octets:
        if not (octet.isascii() and octet.isdigit()) or len(octet) > 3:
            return None
        if len(octet) > 1 and octet[0] == "0":
            return None  # ambiguous (octal?): ipaddress refuses it, and so do we
        value = int(octet)
        if value > 255:
            return None
        number = number << 8 | value
    return number


def _ipv4_text(number: int) -> str:
    return f"{number >> 24}.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"


def _network(address: int, prefix: int, bits: int) -> int:
    host_bits = bits - prefix
    return address >> host_bits << host_bits


# RFC 3339 `full-date` and `date-time` (a space for the `T` is accepted, as RFC 3339
# allows); a date-time must carry its offset, or its instant would be a guess.
_RFC3339_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RFC3339_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def generalize_time(value: Any, to: TimeUnit = "day") -> Any:
    """The start of the `to` period holding the value, as RFC 3339 text.

    A date-time is converted to UTC, truncated, and written `YYYY-MM-DDTHH:00:00Z`; a
    date (`1987-03-14`) stays a date (`1987-03-01` for `month`; `hour` leaves it as is).
    Anything else (another format, a number, an impossible date) is dropped.
    """
    if value is None:
        return None
    moment = _parse_moment(value)
    if moment is None:
        return DROPPED
    day, hour = moment
    month = 1 if to == "year" else day.month
    day_of_month = 1 if to in ("year", "month") else day.day
    text = f"{day.year:04d}-{month:02d}-{day_of_month:02d}"
    if hour is None:
        return text
    return f"{text}T{hour if to == 'hour' else 0:02d}:00:00Z"


def _parse_moment(value: Any) -> tuple[date, int | None] | None:
    """(UTC date, UTC hour) of an RFC 3339 date-time, (date, None) of a full-date, or
    None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        if _RFC3339_DATE.fullmatch(value):
            return date.fromisoformat(value), None
        if _RFC3339_DATE_TIME.fullmatch(value):
            instant = datetime.fromisoformat(value.replace("z", "Z")).astimezone(UTC)
            return instant.date(), instant.hour
    except (ValueError, OverflowError):
        return None  # 2026-02-30, or an offset that leaves the representable range
    return None


def generalize_number(
    value: Any,
    buckets: tuple[int | float, ...] | None = None,
    width: int | float | None = None,
) -> Any:
    """The lower bound of the bucket the number falls in.

    With `buckets` (ascending lower bounds): the greatest bound not above the value; a
    value below the first bound fits no bucket and is dropped. With `width`: the multiple
    of `width` at or below the value (so `-1` with width 10 is `-10`), computed in decimal
    so that `0.3` with width `0.1` is `0.3`, not `0.2`. Booleans, strings and anything
    else that is not a finite JSON number are dropped.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return DROPPED
    if buckets is not None:
        return _bucket_floor(value, buckets)
    if width is not None:
        return _width_floor(value, width)
    return DROPPED


def _bucket_floor(value: int | float, buckets: tuple[int | float, ...]) -> int | float | Dropped:
    lower: int | float | Dropped = DROPPED
    for bound in buckets:
        if value < bound:
            break
        lower = bound
    return lower


def _width_floor(value: int | float, width: int | float) -> int | float | Dropped:
    if isinstance(value, int) and isinstance(width, int):
        return (value // width) * width
    try:
        step = Decimal(repr(width))
        steps = (Decimal(repr(value)) / step).to_integral_value(rounding=ROUND_FLOOR)
    except InvalidOperation:  # pragma: no cover - finite inputs, checked by the caller
        return DROPPED
    return float(steps * step)


def redact_text(value: Any, redact: Callable[[str], str] = detectors.redact) -> Any:
    """`redact` (by default `detectors.redact`) of a string; every other scalar unchanged."""
    if isinstance(value, str):
        return redact(value)
    return value
