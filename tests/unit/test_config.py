"""Settings from the environment: defaults, grouped prefixes, and the production guard."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import (
    DEVELOPMENT_PSEUDONYM_KEY,
    BatchSettings,
    Environment,
    LimitSettings,
    Settings,
)
from app.privacy.keyring import Keyring


def _active_key(settings: Settings) -> bytes:
    return Keyring.from_settings(settings.privacy).keys[settings.privacy.pseudonym_key_id]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SLUICE_* or DATABASE_URL from the outside, and no `.env` in the working directory."""
    for name in list(os.environ):
        if name.upper().startswith("SLUICE_") or name.upper() == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    settings = Settings()
    assert settings.env is Environment.DEVELOPMENT
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.log_level == "INFO"
    assert settings.database_url is None

    assert settings.limits.max_body_bytes == 1024 * 1024
    assert settings.limits.max_events_per_request == 1000
    assert settings.limits.max_event_bytes == 64 * 1024
    assert settings.limits.max_attribute_chars == 1024

    assert settings.batch.max_size == 500
    assert settings.batch.max_delay_ms == 0.0
    assert settings.batch.max_delay == timedelta(0)
    assert settings.batch.write_concurrency == 2
    assert settings.batch.buffer_max_events == 20_000
    assert settings.batch.buffer_max_bytes == 64 * 1024 * 1024
    assert settings.batch.ack_timeout_s == 10.0
    assert settings.batch.retry_after_s == 1

    assert settings.db.pool_min_size == 2
    assert settings.db.pool_max_size == 10
    assert settings.db.partition_width == "day"
    assert settings.db.partitions_ahead == 3
    assert settings.db.dedup_window_days == 31

    assert settings.privacy.pseudonym_key is None
    assert settings.privacy.pseudonym_key_id == "k1"
    # Outside production the public development key stands in.
    assert (
        Keyring.from_settings(settings.privacy).keys[settings.privacy.pseudonym_key_id]
        == DEVELOPMENT_PSEUDONYM_KEY.encode()
    )


def test_production_without_a_pseudonym_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.example/sluice")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "SLUICE_PRIVACY_PSEUDONYM_KEY" in str(caught.value)


def test_production_with_a_blank_pseudonym_key_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `SLUICE_PRIVACY_PSEUDONYM_KEY=` copied from .env.example means unset, not an empty key.
    monkeypatch.setenv("SLUICE_ENV", "production")
    monkeypatch.setenv("SLUICE_PRIVACY_PSEUDONYM_KEY", "")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "SLUICE_PRIVACY_PSEUDONYM_KEY" in str(caught.value)


def test_production_with_a_pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_ENV", "production")
    monkeypatch.setenv("SLUICE_PRIVACY_PSEUDONYM_KEY", "s3cret-key-material")
    monkeypatch.setenv("SLUICE_PRIVACY_PSEUDONYM_KEY_ID", "k2024")
    monkeypatch.setenv("SLUICE_PUBSUB_OIDC_AUDIENCE", "https://sluice.example/pubsub/push")
    settings = Settings()
    assert settings.env is Environment.PRODUCTION
    assert (
        Keyring.from_settings(settings.privacy).keys[settings.privacy.pseudonym_key_id]
        == b"s3cret-key-material"
    )
    assert settings.privacy.pseudonym_key_id == "k2024"
    assert "s3cret-key-material" not in repr(settings)
    assert "s3cret-key-material" not in str(settings.model_dump())


def test_invalid_pseudonym_key_id_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_PRIVACY_PSEUDONYM_KEY_ID", "not a valid id!")
    with pytest.raises(ValidationError):
        Settings()


def test_development_key_is_used_only_when_none_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_PRIVACY_PSEUDONYM_KEY", "dev-override")
    assert Keyring.from_settings(Settings().privacy).keys["k1"] == b"dev-override"


@pytest.mark.parametrize(
    ("variable", "value", "path", "expected"),
    [
        ("SLUICE_BATCH_MAX_SIZE", "123", ("batch", "max_size"), 123),
        ("SLUICE_BATCH_MAX_DELAY_MS", "2.5", ("batch", "max_delay_ms"), 2.5),
        ("SLUICE_BATCH_ACK_TIMEOUT_S", "3", ("batch", "ack_timeout_s"), 3.0),
        ("SLUICE_LIMIT_MAX_EVENT_BYTES", "4096", ("limits", "max_event_bytes"), 4096),
        ("SLUICE_LIMIT_MAX_ATTRIBUTE_CHARS", "256", ("limits", "max_attribute_chars"), 256),
        ("SLUICE_DB_PARTITION_WIDTH", "week", ("db", "partition_width"), "week"),
        ("SLUICE_DB_POOL_MAX_SIZE", "20", ("db", "pool_max_size"), 20),
        ("SLUICE_PRIVACY_PSEUDONYM_KEY_ID", "k_2", ("privacy", "pseudonym_key_id"), "k_2"),
        ("SLUICE_PORT", "9000", ("port",), 9000),
        ("SLUICE_LOG_LEVEL", "DEBUG", ("log_level",), "DEBUG"),
        ("SLUICE_ENV", "test", ("env",), Environment.TEST),
    ],
)
def test_grouped_environment_names(
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    path: tuple[str, ...],
    expected: object,
) -> None:
    monkeypatch.setenv(variable, value)
    found: object = Settings()
    for part in path:
        found = getattr(found, part)
    assert found == expected


def test_batch_max_delay_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_BATCH_MAX_DELAY_MS", "250")
    assert Settings().batch.max_delay == timedelta(milliseconds=250)


def test_ungrouped_name_does_not_reach_a_group(monkeypatch: pytest.MonkeyPatch) -> None:
    # The group prefix is required: SLUICE_MAX_SIZE is not SLUICE_BATCH_MAX_SIZE.
    monkeypatch.setenv("SLUICE_MAX_SIZE", "7")
    assert Settings().batch.max_size == 500


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SLUICE_BATCH_MAX_SIZE", "0"),
        ("SLUICE_BATCH_MAX_SIZE", "many"),
        ("SLUICE_LIMIT_MAX_ATTRIBUTE_CHARS", "4096"),
        ("SLUICE_LIMIT_MAX_EVENT_BYTES", "10"),
        ("SLUICE_DB_PARTITION_WIDTH", "year"),
        ("SLUICE_PORT", "70000"),
        ("SLUICE_ENV", "staging"),
    ],
)
def test_out_of_range_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings()


def test_database_url_is_read_without_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.example:5432/sluice")
    assert Settings().database_url == "postgresql://db.example:5432/sluice"


def test_blank_database_url_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "")
    assert Settings().database_url is None


def test_database_url_can_be_passed_by_name() -> None:
    assert Settings(database_url="postgresql://x/y").database_url == "postgresql://x/y"


def test_database_url_in_the_environment_wins_over_the_prefixed_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://plain/db")
    monkeypatch.setenv("SLUICE_DATABASE_URL", "postgresql://prefixed/db")
    assert Settings().database_url == "postgresql://plain/db"


def test_prefixed_database_url_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_DATABASE_URL", "postgresql://prefixed/db")
    assert Settings().database_url is None


def test_dotenv_in_the_working_directory_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "SLUICE_PORT=9001\nSLUICE_BATCH_MAX_SIZE=42\nDATABASE_URL=postgresql://dotenv/db\n"
    )
    settings = Settings()
    assert settings.port == 9001
    assert settings.batch.max_size == 42
    assert settings.database_url == "postgresql://dotenv/db"
    monkeypatch.setenv("SLUICE_BATCH_MAX_SIZE", "43")  # the environment beats the file
    assert Settings().batch.max_size == 43


def test_groups_can_be_built_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_LIMIT_MAX_EVENTS_PER_REQUEST", "10")
    assert LimitSettings().max_events_per_request == 10
    assert BatchSettings(max_size=3).max_size == 3


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.port = 1
    with pytest.raises(ValidationError):
        settings.batch.max_size = 1


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        (
            {"SLUICE_BATCH_BUFFER_MAX_EVENTS": "10", "SLUICE_LIMIT_MAX_EVENTS_PER_REQUEST": "11"},
            "SLUICE_BATCH_BUFFER_MAX_EVENTS",
        ),
        (
            {"SLUICE_BATCH_BUFFER_MAX_BYTES": "2048", "SLUICE_LIMIT_MAX_BODY_BYTES": "4096"},
            "SLUICE_BATCH_BUFFER_MAX_BYTES",
        ),
        (
            {"SLUICE_DB_POOL_MAX_SIZE": "2", "SLUICE_BATCH_WRITE_CONCURRENCY": "2"},
            "SLUICE_DB_POOL_MAX_SIZE",
        ),
    ],
)
def test_limits_that_do_not_fit_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert named in str(caught.value)


def test_limits_that_just_fit_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_BATCH_BUFFER_MAX_EVENTS", "11")
    monkeypatch.setenv("SLUICE_LIMIT_MAX_EVENTS_PER_REQUEST", "11")
    monkeypatch.setenv("SLUICE_BATCH_BUFFER_MAX_BYTES", "4096")
    monkeypatch.setenv("SLUICE_LIMIT_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("SLUICE_DB_POOL_MAX_SIZE", "3")
    monkeypatch.setenv("SLUICE_BATCH_WRITE_CONCURRENCY", "2")
    settings = Settings()
    assert settings.batch.buffer_max_events == settings.limits.max_events_per_request == 11
    assert settings.db.pool_max_size == 3


def test_production_needs_push_verification_or_no_push_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLUICE_ENV", "production")
    monkeypatch.setenv("SLUICE_PRIVACY_PSEUDONYM_KEY", "k")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "SLUICE_PUBSUB_OIDC_AUDIENCE" in str(caught.value)
    monkeypatch.setenv("SLUICE_PUBSUB_ENABLED", "false")
    assert Settings().pubsub.enabled is False
