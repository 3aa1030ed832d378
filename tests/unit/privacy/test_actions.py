"""The actions as pure functions on one JSON scalar: every edge the policy can meet."""

from __future__ import annotations

from typing import Any

import pytest

from app.privacy.actions import (
    DROPPED,
    TIME_UNITS,
    TimeUnit,
    canonical_text,
    generalize_number,
    generalize_time,
    mask,
    pseudonymize,
    redact_text,
    truncate_ip,
)
from tests.unit.privacy.builders import keyring


def _tag(value: str) -> str:
    return f"t:{value}"


# --- canonical text -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [("abc", "abc"), ("", ""), (42, "42"), (-1.5, "-1.5"), (True, "true"), (False, "false")],
)
def test_canonical_text(value: Any, text: str) -> None:
    assert canonical_text(value) == text


# --- pseudonymize ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "read_as"),
    [
        ("a@b.co", "a@b.co"),
        ("", ""),
        ("café ☃", "café ☃"),
        (42, "42"),
        (4.5, "4.5"),
        (True, "true"),
    ],
)
def test_pseudonymize_reads_the_canonical_text(value: Any, read_as: str) -> None:
    assert pseudonymize(value, _tag) == f"t:{read_as}"


def test_pseudonymize_leaves_null() -> None:
    assert pseudonymize(None, _tag) is None


def test_pseudonyms_are_stable_per_key_and_differ_across_keys() -> None:
    first, again = keyring(b"key-one"), keyring(b"key-one")
    other = keyring(b"key-two")
    value = "alice@example.com"
    assert pseudonymize(value, first.tagged_pseudonym) == pseudonymize(
        value, again.tagged_pseudonym
    )
    assert pseudonymize(value, first.tagged_pseudonym) != pseudonymize(
        value, other.tagged_pseudonym
    )
    assert pseudonymize(value, first.tagged_pseudonym).startswith("k1:")
    assert value not in pseudonymize(value, first.tagged_pseudonym)


def test_the_number_and_its_text_share_a_pseudonym() -> None:
    # Canonical JSON text: 42 and "42" are the same identifier written two ways.
    assert pseudonymize(42, _tag) == pseudonymize("42", _tag)


# --- mask -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "keep_last", "masked"),
    [
        ("4111111111111111", 4, "************1111"),
        ("4111 1111 1111 1111", 4, "***************1111"),
        ("secret", 0, "******"),
        ("abcd", 4, "****"),  # no longer than what it would show: all hidden
        ("abc", 4, "***"),
        ("", 4, ""),
        ("ñandú€", 2, "****ú€"),
        ("👍👍👍👍👍", 1, "****👍"),
        (4111111111111111, 4, "************1111"),
        (12.5, 1, "***5"),
        (True, 1, "***e"),
    ],
)
def test_mask(value: Any, keep_last: int, masked: str) -> None:
    assert mask(value, keep_last) == masked


def test_mask_defaults_to_four_and_leaves_null() -> None:
    assert mask("1234567890") == "******7890"
    assert mask(None) is None


# --- truncate_ip ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "truncated"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("0.0.0.0", "0.0.0.0"),  # noqa: S104 - an address to truncate, not to bind
        ("255.255.255.255", "255.255.255.0"),
        ("2001:db8:85a3::8a2e:370:7334", "2001:db8:85a3::"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:db8:85a3::"),
        ("::1", "::"),
        ("fe80::1ff:fe23:4567:890a%eth0", "fe80::"),
        ("::ffff:198.51.100.23", "::ffff:198.51.100.0"),  # IPv4-mapped: an IPv4 address
    ],
)
def test_truncate_ip_defaults(value: str, truncated: str) -> None:
    assert truncate_ip(value) == truncated


@pytest.mark.parametrize(
    ("value", "v4", "v6", "truncated"),
    [
        ("203.0.113.77", 16, 48, "203.0.0.0"),
        ("203.0.113.77", 32, 48, "203.0.113.77"),
        ("203.0.113.77", 0, 48, "0.0.0.0"),  # noqa: S104 - a result, not a bind address
        ("203.0.113.77", 20, 48, "203.0.112.0"),
        ("2001:db8:85a3::8a2e:370:7334", 24, 32, "2001:db8::"),
        ("2001:db8:85a3::8a2e:370:7334", 24, 128, "2001:db8:85a3::8a2e:370:7334"),
        ("2001:db8:85a3::8a2e:370:7334", 24, 0, "::"),
        ("::ffff:198.51.100.23", 16, 0, "::ffff:198.51.0.0"),
    ],
)
def test_truncate_ip_prefixes(value: str, v4: int, v6: int, truncated: str) -> None:
    assert truncate_ip(value, ipv4_prefix=v4, ipv6_prefix=v6) == truncated


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not an ip",
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "01.2.3.4",  # leading zero: ambiguous, refused as ipaddress refuses it
        " 1.2.3.4",
        "1.2.3.4/24",
        "\uff11.\uff12.\uff13.\uff14",  # full-width digits
        "2001:db8::g",
        ":::",
        "1.2.3.-4",
        3405803853,
        1.5,
        True,
        "example.com",
    ],
)
def test_truncate_ip_drops_what_is_not_an_ip(value: Any) -> None:
    assert truncate_ip(value) is DROPPED


def test_truncate_ip_leaves_null() -> None:
    assert truncate_ip(None) is None


# --- generalize_time ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "2026-11-25T23:34:56.789+02:00",
            {
                "year": "2026-01-01T00:00:00Z",
                "month": "2026-11-01T00:00:00Z",
                "day": "2026-11-25T00:00:00Z",
                "hour": "2026-11-25T21:00:00Z",
            },
        ),
        (
            "2026-12-31T23:30:00-01:00",  # already next year in UTC
            {
                "year": "2027-01-01T00:00:00Z",
                "month": "2027-01-01T00:00:00Z",
                "day": "2027-01-01T00:00:00Z",
                "hour": "2027-01-01T00:00:00Z",
            },
        ),
        (
            "2026-11-25t10:11:12z",
            {
                "year": "2026-01-01T00:00:00Z",
                "month": "2026-11-01T00:00:00Z",
                "day": "2026-11-25T00:00:00Z",
                "hour": "2026-11-25T10:00:00Z",
            },
        ),
        (
            "2026-11-25 10:11:12Z",
            {
                "year": "2026-01-01T00:00:00Z",
                "month": "2026-11-01T00:00:00Z",
                "day": "2026-11-25T00:00:00Z",
                "hour": "2026-11-25T10:00:00Z",
            },
        ),
        (
            "1987-03-14",
            {
                "year": "1987-01-01",
                "month": "1987-03-01",
                "day": "1987-03-14",
                "hour": "1987-03-14",
            },
        ),
        (
            "2024-02-29",
            {
                "year": "2024-01-01",
                "month": "2024-02-01",
                "day": "2024-02-29",
                "hour": "2024-02-29",
            },
        ),
    ],
)
def test_generalize_time(value: str, expected: dict[str, str]) -> None:
    assert {unit: generalize_time(value, unit) for unit in TIME_UNITS} == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "2026-11-25T10:11:12",  # no offset: the instant is a guess
        "2026-02-30",
        "2026-13-01",
        "2026-11-25T25:00:00Z",
        "25.11.2026",
        "11/25/2026",
        "0001-01-01T00:30:00+01:00",  # before year 1 in UTC
        "2026-11-25T10:11:12Z ",
        1732530000,
        1.5,
        True,
    ],
)
@pytest.mark.parametrize("unit", TIME_UNITS)
def test_generalize_time_drops_what_it_cannot_read(value: Any, unit: TimeUnit) -> None:
    assert generalize_time(value, unit) is DROPPED


def test_generalize_time_leaves_null_and_defaults_to_day() -> None:
    assert generalize_time(None) is None
    assert generalize_time("2026-11-25T10:11:12Z") == "2026-11-25T00:00:00Z"


# --- generalize_number ----------------------------------------------------------------

AGES = (0, 18, 30, 50, 65)


@pytest.mark.parametrize(
    ("value", "bucket"),
    [(0, 0), (17, 0), (18, 18), (29.9, 18), (30, 30), (64, 50), (65, 65), (120, 65), (1e300, 65)],
)
def test_generalize_number_buckets(value: float, bucket: int) -> None:
    assert generalize_number(value, buckets=AGES) == bucket


def test_generalize_number_below_the_first_bucket_is_dropped() -> None:
    assert generalize_number(-1, buckets=AGES) is DROPPED
    assert generalize_number(0.5, buckets=(1, 2)) is DROPPED


@pytest.mark.parametrize(
    ("value", "width", "expected"),
    [
        (37, 10, 30),
        (40, 10, 40),
        (-1, 10, -10),
        (0, 10, 0),
        (51.5074, 0.1, 51.5),
        (-0.1278, 0.1, -0.2),
        (0.3, 0.1, 0.3),  # decimal arithmetic: not 0.2
        (7.5, 2.5, 7.5),
        (12, 2.5, 10.0),
        (12.9, 5, 10.0),
        (2**62 + 1, 1000, (2**62 + 1) // 1000 * 1000),
    ],
)
def test_generalize_number_width(value: float, width: float, expected: float) -> None:
    result = generalize_number(value, width=width)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "value", ["42", "", True, False, [1], {"a": 1}, float("nan"), float("inf")]
)
def test_generalize_number_drops_what_is_not_a_number(value: Any) -> None:
    assert generalize_number(value, buckets=AGES) is DROPPED
    assert generalize_number(value, width=10) is DROPPED


def test_generalize_number_leaves_null() -> None:
    assert generalize_number(None, width=10) is None


# --- redact_text ----------------------------------------------------------------------


def test_redact_text_scans_strings_only() -> None:
    assert redact_text("mail a@b.co") == "mail <EMAIL>"
    assert redact_text(4111111111111111) == 4111111111111111
    assert redact_text(None) is None
    assert redact_text(True) is True
