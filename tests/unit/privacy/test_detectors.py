"""Free-text detectors: what `redact` must replace, and what it must leave alone."""

from __future__ import annotations

import pytest

from app.privacy.detectors import iban_valid, is_phone, luhn_valid, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bob@example.org", "<EMAIL>"),
        ("mail bob.planted+tag@mail.example.co.uk now", "mail <EMAIL> now"),
        ("<alice_o'hara@example.io>", "<<EMAIL>>"),
        ("jörg.müller@exämple.de", "<EMAIL>"),
        ("a@b.c and c@d.e", "<EMAIL> and <EMAIL>"),
        ("mailto:x@y.zz", "mailto:<EMAIL>"),
    ],
)
def test_email_addresses(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", ["@handle", "user@", "a@b", "email me @ home", "x@.com"])
def test_at_signs_that_are_not_addresses(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "555 123 4567",
        "+1 (555) 867-5309",
        "+1-555-867-5309",
        "+4915123456789",
        "+33 (0)1 23 45 67 89",
        "020 7946 0958",
        "01 23 45 67 89",
    ],
)
def test_phone_numbers(phone: str) -> None:
    assert redact(phone) == "<PHONE>"
    assert redact(f"call {phone} today") == "call <PHONE> today"
    assert redact(f"tel:{phone}.") == "tel:<PHONE>."


@pytest.mark.parametrize(
    "text",
    [
        "order 12345",
        "order #123456789",  # a bare digit run: an order number as much as a phone number
        "5558675309",
        "2026-11-25",
        "on 2026-11-25 at 10:30",
        "2026-11-25T10:30:00Z",
        "2026-11-25T10:30:00.123+01:00",
        "2026-11-25 10:30:00",
        "25.11.2026 10:30",
        "11/25/2026",
        "version 1.2.3",
        "v10.15.7",
        "costs 42.50",
        "EUR 1,234,567.89",
        "10:30:00",
        "SKU-00123",
        "ORD-00001234",
        "id 123e4567-e89b-12d3-a456-426614174000",
        "pi is 3.14159265358979",
        "867-5309",  # seven digits: too short without a country code
        "+1 555",
        "",
        "no digits at all",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "1.2.3.4.5",
        "999.1.1.1",
    ],
)
def test_things_that_are_not_personal_data_are_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.77", "<IP>"),
        ("from 198.51.100.23, then", "from <IP>, then"),
        ("192.168.0.1:8080", "<IP>:8080"),
        ("255.255.255.255", "<IP>"),
        ("2001:db8:85a3::8a2e:370:7334", "<IP>"),
        ("2001:0db8:0000:0000:0000:ff00:0042:8329", "<IP>"),
        ("ip 2001:db8::1.", "ip <IP>."),
        ("::1", "<IP>"),
        ("::ffff:198.51.100.23", "<IP>"),
        ("fe80::1ff:fe23:4567:890a%eth0 up", "<IP> up"),
        ("[2001:db8::7]:443", "[<IP>]:443"),
    ],
)
def test_ip_addresses(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "card",
    [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5500-0000-0000-0004",
        "3782 822463 10005",  # American Express, 4-6-5
        "6011000990139424",
        "4222222222222",  # 13 digits
    ],
)
def test_card_numbers_that_pass_luhn(card: str) -> None:
    assert redact(card) == "<CARD>"
    assert redact(f"paid with {card}, thanks") == "paid with <CARD>, thanks"


@pytest.mark.parametrize(
    "text", ["4111111111111112", "4111 1111 1111 1112", "4111-1111-1111-1113", "1234567890123"]
)
def test_card_shaped_numbers_that_fail_luhn_are_kept(text: str) -> None:
    assert redact(text) == text


def test_a_card_followed_by_another_number_keeps_the_other_number() -> None:
    assert redact("4111 1111 1111 1111 43 times") == "<CARD> 43 times"
    assert redact("4111 1111 1111 1111 and 555-123-4567") == "<CARD> and <PHONE>"


@pytest.mark.parametrize(
    "iban",
    [
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "DE89 3704 0044 0532 0130 00",
        "NL91ABNA0417164300",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NO9386011117947",  # the shortest: 15 characters
    ],
)
def test_ibans_that_pass_mod_97(iban: str) -> None:
    assert redact(iban) == "<IBAN>"
    assert redact(f"refund to {iban}.") == "refund to <IBAN>."


def test_a_printed_iban_followed_by_an_unrelated_group() -> None:
    assert redact("GB82 WEST 1234 5698 7654 32 ABCD") == "<IBAN> ABCD"


@pytest.mark.parametrize(
    "text", ["GB82 WEST 1234 5698 7654 33", "GB00WEST12345698765432", "XX82 TEST 1234"]
)
def test_iban_shaped_text_that_fails_mod_97_is_not_an_iban(text: str) -> None:
    assert "<IBAN>" not in redact(text)


def test_everything_at_once() -> None:
    text = (
        "Please contact bob.planted@example.org or call +1 (555) 867-5309 / 555-867-5309; "
        "logged in from 198.51.100.23 and 2001:db8:85a3::8a2e:370:7334, paid with "
        "4111111111111111, refund to GB82 WEST 1234 5698 7654 32. Order 12345 on 2026-11-25."
    )
    assert redact(text) == (
        "Please contact <EMAIL> or call <PHONE> / <PHONE>; logged in from <IP> and <IP>, "
        "paid with <CARD>, refund to <IBAN>. Order 12345 on 2026-11-25."
    )


def test_unicode_text_around_personal_data_is_untouched() -> None:
    assert redact("Grüße ☃ an jörg@example.de 👋") == "Grüße ☃ an <EMAIL> 👋"


def test_long_and_adversarial_text_stays_fast() -> None:
    # Runs that make naive patterns backtrack: each must be linear.
    for text in ("1 " * 20_000, "a" * 50_000 + "@", "1." * 20_000, ":" * 20_000, "A1" * 20_000):
        assert isinstance(redact(text), str)


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("4111111111111111", True),
        ("79927398713", True),
        ("79927398710", False),
        ("0", True),
        ("", False),
        ("12a4", False),
        ("٤١١١", False),  # Arabic-Indic digits are not card digits
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("GB82WEST12345698765432", True),
        ("GB82 WEST 1234 5698 7654 32", True),
        ("gb82west12345698765432", False),  # printed IBANs are upper case
        ("GB82WEST1234569876543", False),
        ("GB82", False),
        ("1282WEST12345698765432", False),
        ("GBX2WEST12345698765432", False),
        ("GB82WEST1234569876543Ä", False),
    ],
)
def test_iban_check(text: str, valid: bool) -> None:
    assert iban_valid(text) is valid


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("+44 20 7946 0958", True),
        ("+4915123456789", True),
        ("+1234567", False),  # 7 digits
        ("555-123-4567", True),
        ("5551234567", False),  # no separator: could be anything
        ("555-1234", False),
        ("+1234567890123456", False),  # 16 digits: beyond E.164
    ],
)
def test_phone_digit_rules(text: str, phone: bool) -> None:
    assert is_phone(text) is phone
