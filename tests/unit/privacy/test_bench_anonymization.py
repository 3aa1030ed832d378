"""`python -m bench.anonymization` runs, on events shaped as it says."""

from __future__ import annotations

from typing import Literal

import orjson
import pytest

from bench.anonymization import anonymization_cost_us, load_events, realistic_events


def test_realistic_events_are_about_a_kilobyte_with_personal_data() -> None:
    events = realistic_events(50)
    sizes = [len(orjson.dumps(event.data)) for event in events]
    assert 800 <= sum(sizes) / len(sizes) <= 1300
    assert all(event.subject for event in events)
    assert len({event.id for event in events}) == 50


@pytest.mark.parametrize("shape", ["realistic", "load"])
def test_the_cost_is_a_positive_figure(shape: Literal["realistic", "load"]) -> None:
    assert anonymization_cost_us(events=200, shape=shape) > 0


def test_load_events_are_the_load_benchmarks() -> None:
    event = load_events(1)[0]
    assert event.type == "com.example.order.created"
    assert event.subject == "customer-0"
