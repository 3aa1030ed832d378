"""What a policy rule does to a value: the actions, as data and as small pure functions.

Each action is a frozen dataclass holding its validated parameters (what `policy.py`
builds from the file) and a pure function on one JSON scalar (what `engine.py` applies).
The functions never raise on a JSON value: input an action cannot make sense of is
*dropped* (they return `DROPPED`), never passed through, because passing through is how
personal data would leak.

Shared conventions:

- `null` passes every value action unchanged: it carries nothing.
- A non-string scalar is read through its canonical JSON text (`42`, `4.5`, `true`)
  where an action works on text (`pseudonymize`, `mask`).
- `keep` and `drop` take a container whole; the engine applies every other action to
  each scalar leaf under a container, which is why they are defined on scalars only.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from enum import Enum
from typing import Any, ClassVar, Final, Literal

import orjson

from app.privacy.detectors import redact


class Dropped(Enum):
    """The one value an action returns for "remove this leaf/member"."""

    DROPPED = "dropped"


DROPPED: Final = Dropped.DROPPED

TimeUnit = Literal["year", "month", "day", "hour"]
TIME_UNITS: Final[tuple[TimeUnit, ...]] = ("year", "month", "day", "hour")


@dataclass(frozen=True, slots=True)
class Keep:
    """Store the value as it is (a container whole, rules below it are not consulted)."""

    name: ClassVar[str] = "keep"


@dataclass(frozen=True, slots=True)
class Drop:
    """Remove the member (or array element) entirely (a container whole)."""

    name: ClassVar[str] = "drop"


@dataclass(frozen=True, slots=True)
class Pseudonymize:
    """Replace the value by `<key id>:<HMAC-SHA256 hex>` of its text under the active key."""

    name: ClassVar[str] = "pseudonymize"


@dataclass(frozen=True, slots=True)
class Mask:
    """Keep the last `keep_last` characters, replace the others by `*`."""

    keep_last: int = 4
    name: ClassVar[str] = "mask"


@dataclass(frozen=True, slots=True)
class TruncateIp:
    """Zero the host bits of an IP address: keep the first `ipv4_prefix`/`ipv6_prefix` bits."""

    ipv4_prefix: int = 24
    ipv6_prefix: int = 48
    name: ClassVar[str] = "truncate_ip"


@dataclass(frozen=True, slots=True)
class GeneralizeTime:
    """Truncate an RFC 3339 timestamp or date to the start of its year/month/day/hour."""

    to: TimeUnit = "day"
    name: ClassVar[str] = "generalize_time"


@dataclass(frozen=True, slots=True)
class GeneralizeNumber:
    """Replace a number by the lower bound of its bucket: given `buckets` (ascending
    lower bounds) or every `width` from zero. Exactly one of the two is set."""

    buckets: tuple[int | float, ...] | None = None
    width: int | float | None = None
    name: ClassVar[str] = "generalize_number"


@dataclass(frozen=True, slots=True)
class RedactText:
    """Replace e-mail addresses, phone numbers, IPs, valid card numbers and IBANs in
    free text by `<EMAIL>`, `<PHONE>`, `<IP>`, `<CARD>`, `<IBAN>`; non-strings unchanged."""

    name: ClassVar[str] = "redact_text"


Action = (
    Keep | Drop | Pseudonymize | Mask | TruncateIp | GeneralizeTime | GeneralizeNumber | RedactText
)
ACTION_NAMES: Final = (
    "keep",
    "drop",
    "pseudonymize",
    "mask",
    "truncate_ip",
    "generalize_time",
    "generalize_number",
    "redact_text",
)

# --- the pure functions, one per action, on one JSON scalar --------------------------


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


def redact_text(value: Any) -> Any:
    """`detectors.redact` of a string; every other scalar unchanged."""
    if isinstance(value, str):
        return redact(value)
    return value
