"""The RabbitMQ settings: what broker mode needs, and a prefetch that fits the buffer."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import BatchSettings, HttpAck, Settings


def test_broker_mode_needs_a_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_HTTP_ACK", "broker")
    with pytest.raises(ValidationError, match="needs AMQP_URL"):
        Settings()
    monkeypatch.setenv("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    assert Settings().http_ack is HttpAck.BROKER


def test_a_blank_broker_url_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "")
    assert Settings().amqp_url is None


def test_prefetch_defaults_to_two_batches_within_the_buffer() -> None:
    settings = Settings()
    assert settings.amqp.prefetch_for(settings.batch) == 2 * settings.batch.max_size
    small = BatchSettings(max_size=500, buffer_max_events=600)
    assert settings.amqp.prefetch_for(small) == 600


def test_a_prefetch_larger_than_the_buffer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_AMQP_PREFETCH", "30000")
    with pytest.raises(ValidationError, match="SLUICE_AMQP_PREFETCH"):
        Settings()
