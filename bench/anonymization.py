"""The anonymization stage alone: mean CPU µs per event for `PolicyAnonymizer.anonymize`.

`python -m bench.anonymization [--events N] [--policy PATH]` prints the figure. The
budget it answers to: anonymization may cost at most 10 % of an event's end-to-end CPU
(about 50-100 µs on the reference machine), so 5-10 µs.

Two kinds of events. The *realistic* ones are realistic rather than kind: about 1 KB of
nested JSON each, with a subject, a handful of fields whose names say personal data
(e-mail, name, phone, IP, card, birth date, a token), arrays of objects, and free text,
some of it holding a phone number or an e-mail address for the detectors to find. They
are built, and the anonymizer warmed up (its per-type and per-name caches filled),
before the clock starts.
The *load* ones are the small order events `python -m bench` sends (a subject and four
fields), for comparison with that benchmark's end-to-end figure.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from app.config import DEFAULT_POLICY_FILE
from app.model.events import CloudEvent, Transport
from app.privacy import detectors, postal
from app.privacy.engine import PolicyAnonymizer
from app.privacy.keyring import Keyring
from app.privacy.policy import load_policy
from bench.events import batch_body

_TYPES = ("com.example.order.created", "com.example.order.shipped", "com.example.user.updated")
_NOTES = (
    "Customer asked for gift wrapping and a handwritten card for the recipient.",
    "Deliver after 5pm, leave with the neighbour if nobody answers the door.",
    "Please call me on +44 20 7946 0958 before delivery, the bell is broken.",
    "Invoice copy to accounts.payable@example.com, reference on every page please.",
    "Repeat order of last month, same sizes and colours as before, thank you.",
    "Second attempt: first parcel came back damaged, photos were sent to support.",
    "",
    "Express shipping requested; customer will pay the difference on delivery.",
)
_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_SKUS = tuple(f"SKU-{n:05d}" for n in range(500))


def _data(rng: random.Random, n: int) -> dict[str, Any]:
    lines = [
        {
            "sku": rng.choice(_SKUS),
            "title": "Organic cotton t-shirt, relaxed fit",
            "qty": rng.randint(1, 5),
            "unit_price": round(rng.uniform(5, 120), 2),
            "discount": rng.choice((0, 5, 10)),
        }
        for _ in range(rng.randint(2, 4))
    ]
    return {
        "order_id": f"ORD-{n:08d}",
        "status": rng.choice(("created", "paid", "shipped")),
        "created_at": "2026-11-25T12:34:56.789Z",
        "currency": "EUR",
        "total": round(sum(float(line["unit_price"]) * int(line["qty"]) for line in lines), 2),
        "customer": {
            "id": f"c-{n % 5000}",
            "email": f"customer{n % 5000}@example.com",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "phone": "+44 20 7946 0958",
            "birth_date": "1987-03-14",
            "loyalty_tier": rng.choice(("bronze", "silver", "gold")),
            "marketing_opt_in": rng.random() < 0.5,
        },
        "payment": {
            "method": "card",
            "card_number": "4111 1111 1111 1111",
            "brand": "visa",
            "access_token": "tok_5f1e2d9c8b7a",
            "captured": True,
        },
        "shipping": {
            "method": rng.choice(("standard", "express")),
            "carrier": "DHL",
            "country": "DE",
            "city": "Berlin",
            "address": {"line1": "Hauptstraße 1", "postcode": "10115"},
        },
        "lines": lines,
        "client": {
            "ip": f"203.0.113.{n % 250}",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "locale": "de-DE",
        },
        "note": rng.choice(_NOTES),
        "tags": ["web", rng.choice(("promo", "organic", "referral"))],
    }


def realistic_events(count: int, *, seed: int = 7) -> list[CloudEvent]:
    """`count` events of about 1 KB each, as validation would hand them on."""
    rng = random.Random(seed)
    events = []
    for n in range(count):
        data = _data(rng, n)
        events.append(
            CloudEvent(
                specversion="1.0",
                id=str(n),
                source="/bench/anonymization",
                type=_TYPES[n % len(_TYPES)],
                time=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
                subject=f"customer{n % 5000}@example.com",
                datacontenttype="application/json",
                dataschema=None,
                data=data,
                data_is_base64=False,
                extensions={
                    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                },
                size=len(orjson.dumps(data)),
                transport=Transport.HTTP,
            )
        )
    return events


def load_events(count: int) -> list[CloudEvent]:
    """The small order events `python -m bench` sends (bench/events.py), as validated."""
    return [
        CloudEvent(
            specversion=raw["specversion"],
            id=raw["id"],
            source=raw["source"],
            type=raw["type"],
            time=datetime.fromisoformat(raw["time"]),
            subject=raw["subject"],
            datacontenttype=raw["datacontenttype"],
            dataschema=None,
            data=raw["data"],
            data_is_base64=False,
            extensions={},
            size=len(orjson.dumps(raw["data"])),
            transport=Transport.HTTP,
        )
        for raw in orjson.loads(batch_body("/bench/anonymization", 0, count))
    ]


def anonymization_cost_us(
    policy_path: Path | None = None,
    events: int = 20_000,
    *,
    shape: Literal["realistic", "load"] = "realistic",
) -> float:
    """Mean µs of CPU per `anonymize` call over `events` events (one core, process CPU
    time, so other processes on the machine do not count). `shape`: the ~1 KB realistic
    events of this module, or the small ones of the load benchmark."""
    policy = load_policy(policy_path or DEFAULT_POLICY_FILE)
    anonymizer = PolicyAnonymizer(policy, Keyring(active_id="k1", keys={"k1": b"bench-key"}))
    batch = realistic_events(events) if shape == "realistic" else load_events(events)
    for event in batch[:1000]:
        anonymizer.anonymize(event)
    anonymize = anonymizer.anonymize
    started = time.process_time_ns()
    for event in batch:
        anonymize(event)
    elapsed = time.process_time_ns() - started
    return elapsed / events / 1000


_ADDRESS_NOTES = (
    "Please ship to 1600 Pennsylvania Avenue NW, Washington, DC 20500 before Friday.",
    "Deliver to 221B Baker Street, London NW1 6XE, ring twice.",
    "Bitte an Hauptstraße 5, 10115 Berlin liefern.",
    "Livrer au 12 rue de la Paix, 75002 Paris, au deuxième étage.",
)


def address_detector_cost(events: int = 5000) -> tuple[float, float, float]:
    """(µs per realistic event the address and name detectors cost, µs per free-text
    address string, µs per string without one).

    The per-event figure: the strings `redact` is handed while the realistic events are
    anonymized (after the warm-up, so strings the memo spares are not counted) are
    redacted again with the two detectors and with them replaced by the identity,
    interleaved, best of five each; the difference over the events. Timing `redact` on
    a fixed list, rather than two whole anonymization runs, keeps the noise of a shared
    machine out of a difference of a few microseconds.
    """
    handed: list[str] = []
    find_names = postal.redact_names

    def record(text: str) -> str:  # names see every string addresses see, and more
        handed.append(text)
        return find_names(text)

    policy = load_policy(DEFAULT_POLICY_FILE)
    anonymizer = PolicyAnonymizer(policy, Keyring(active_id="k1", keys={"k1": b"bench-key"}))
    batch = realistic_events(events)
    for event in batch[:1000]:
        anonymizer.anonymize(event)
    with _detectors_replaced(redact_names=record):
        for event in batch:
            anonymizer.anonymize(event)
    # `redact` on those strings with the detectors and without them, interleaved.
    with_them, without = [], []
    for _ in range(5):
        with_them.append(_redact_ns(handed))
        with _detectors_replaced(redact_addresses=_identity, redact_names=_identity):
            without.append(_redact_ns(handed))
    per_event = (min(with_them) - min(without)) / events / 1000
    return per_event, _per_string_us(_ADDRESS_NOTES), _per_string_us(_NOTES)


@contextmanager
def _detectors_replaced(**functions: Callable[[str], str]) -> Iterator[None]:
    """`detectors` calling `functions` instead of the postal detectors it imported (by
    name: `redact` looks them up in its module), restored afterwards."""
    saved = {name: getattr(detectors, name) for name in functions}
    for name, function in functions.items():
        setattr(detectors, name, function)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(detectors, name, function)


def _identity(text: str) -> str:
    return text


def _redact_ns(texts: list[str]) -> int:
    started = time.process_time_ns()
    for text in texts:
        detectors.redact(text)
    return time.process_time_ns() - started


def _per_string_us(texts: tuple[str, ...], rounds: int = 200) -> float:
    started = time.process_time_ns()
    for _ in range(rounds):
        for text in texts:
            postal.redact_addresses(text)
            postal.redact_names(text)
    return (time.process_time_ns() - started) / rounds / len(texts) / 1000


def address_line() -> str:
    per_event, address, plain = address_detector_cost()
    return (
        f"addresses      {per_event:5.1f} µs/event added to anonymization (realistic events);"
        f" {address:.0f} µs per string holding an address, {plain:.1f} µs per string without"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.anonymization", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events to anonymize")
    parser.add_argument("--policy", type=Path, default=None, help="policy file (default: shipped)")
    args = parser.parse_args()
    shapes: tuple[tuple[Literal["realistic", "load"], CloudEvent], ...] = (
        ("realistic", realistic_events(1)[0]),
        ("load", load_events(1)[0]),
    )
    for shape, sample in shapes:
        size = len(orjson.dumps(sample.data))
        cost = anonymization_cost_us(args.policy, args.events, shape=shape)
        print(f"anonymization  {cost:5.1f} µs/event  {shape:9s} events, ~{size} B of data")
    print(address_line())


if __name__ == "__main__":
    main()
