"""Addresses and names in free text: the labelled sample's precision and recall, and cases.

The sample (`address_sample.py`) is measured through `detectors.redact`, the function the
policy applies, so the other detectors' interplay counts too. An address counts as found
when `<ADDRESS>` appears and none of its tokens holding a digit (house number, postcode)
is left; a look-alike counts as a false positive when anything of it changes.
"""

from __future__ import annotations

import time

import pytest

from app.privacy.detectors import redact
from app.privacy.postal import redact_addresses, redact_names
from tests.unit.privacy.address_sample import ADDRESSES, LOOK_ALIKES

MIN_RECALL = 0.9
MIN_PRECISION = 0.95


def _found(text: str, address: str) -> bool:
    out = redact(text)
    numbers = [token.strip(",.") for token in address.split() if any(c.isdigit() for c in token)]
    return "<ADDRESS>" in out and not any(number in out for number in numbers)


def test_the_sample_is_labelled_consistently() -> None:
    assert all(address in text for text, address in ADDRESSES)
    assert len(ADDRESSES) >= 50
    assert len(LOOK_ALIKES) >= 40


def test_precision_and_recall_on_the_labelled_sample() -> None:
    true_positives = sum(_found(text, address) for text, address in ADDRESSES)
    false_positives = sum(redact(text) != text for text in LOOK_ALIKES)
    recall = true_positives / len(ADDRESSES)
    precision = true_positives / (true_positives + false_positives)
    print(
        f"\naddress detector on the labelled sample: recall {recall:.3f} "
        f"({true_positives}/{len(ADDRESSES)}), precision {precision:.3f} "
        f"({false_positives} false positives in {len(LOOK_ALIKES)} look-alikes)"
    )
    assert recall >= MIN_RECALL
    assert precision >= MIN_PRECISION


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ship to 12 Main Street today", "ship to <ADDRESS> today"),
        (
            "to 1600 Pennsylvania Avenue NW, Washington, DC 20500, call +44 20 7946 0958",
            "to <ADDRESS>, call <PHONE>",
        ),
        ("Hauptstraße 5, 10115 Berlin", "<ADDRESS>"),
        ("Livrer au 12 rue de la Paix, 75002 Paris", "Livrer au <ADDRESS>"),
        ("postcode SW1A 1AA", "postcode <ADDRESS>"),
        ("eircode D02 X285", "eircode <ADDRESS>"),
        (
            "5 items, 2nd floor, v2.3.1 at 10:30 for $12.50",
            "5 items, 2nd floor, v2.3.1 at 10:30 for $12.50",
        ),
    ],
)
def test_addresses_in_text(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dear Ada Lovelace, thank you", "Dear <NAME>, thank you"),
        ("Hi Ada, your parcel", "Hi <NAME>, your parcel"),
        ("Kind regards,\nAda Lovelace", "Kind regards,\n<NAME>"),
        ("Thanks,\nBob", "Thanks,\n<NAME>"),
        ("Name: Ada Lovelace", "Name: <NAME>"),
        ("customer: Mrs Ada Byron", "customer: Mrs <NAME>"),
        ("spoke to Mr Smith today", "spoke to Mr <NAME> today"),
        # Not names, and left alone.
        ("Hi team, see below", "Hi team, see below"),
        ("status: Shipped", "status: Shipped"),
        ("Name: order 5", "Name: order 5"),
        ("Ada Lovelace ordered twice", "Ada Lovelace ordered twice"),  # no context: missed
    ],
)
def test_names_in_context(text: str, expected: str) -> None:
    assert redact_names(text) == expected


def test_text_without_a_digit_or_trigger_costs_little() -> None:
    """The gates: a typical string without a candidate is left after the C-level checks,
    in a few microseconds, far below a parse by usaddress (about a millisecond)."""
    plain = "Customer asked for gift wrapping and a handwritten card for the recipient."
    numbers = "Deliver after 5pm, leave with the neighbour if nobody answers the door."
    for text in (plain, numbers):
        started = time.perf_counter()
        for _ in range(2000):
            redact_addresses(text)
            redact_names(text)
        per_call_us = (time.perf_counter() - started) / 2000 * 1e6
        assert redact_addresses(text) == text
        assert per_call_us < 50, f"{per_call_us:.1f} µs for {text!r}"
