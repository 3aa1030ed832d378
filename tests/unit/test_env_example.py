"""`.env.example` lists every setting, and only settings that exist, with its default."""

from __future__ import annotations

import re

import orjson
from pydantic_settings import BaseSettings

from app.config import Settings
from tests.support import PROJECT_ROOT

_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


def _documented() -> dict[str, str]:
    text = (PROJECT_ROOT / ".env.example").read_text()
    return {m.group(1): m.group(2) for m in map(_LINE.match, text.splitlines()) if m}


def _declared() -> dict[str, object]:
    names: dict[str, object] = {"DATABASE_URL": None, "AMQP_URL": None}
    for name, field in Settings.model_fields.items():
        group = field.default_factory
        if isinstance(group, type) and issubclass(group, BaseSettings):
            prefix = group.model_config.get("env_prefix", "")
            for member, member_field in group.model_fields.items():
                names[f"{prefix}{member}".upper()] = member_field.get_default(
                    call_default_factory=True
                )
        elif name not in {"database_url", "amqp_url"}:
            names[f"SLUICE_{name}".upper()] = field.default
    return names


def test_every_setting_is_documented_and_nothing_else() -> None:
    assert set(_documented()) == set(_declared())


def test_documented_values_are_the_defaults() -> None:
    documented = _documented()
    for name, default in _declared().items():
        shown = documented[name]
        if default is None:
            assert shown == "", name
        elif isinstance(default, bool):  # bool("false") is True: compare the words
            assert shown.lower() == str(default).lower(), name
        elif isinstance(default, dict | list):
            assert orjson.loads(shown) == default, name
        else:
            assert type(default)(shown) == default, name
