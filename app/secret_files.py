"""Secrets from mounted files: `NAME_FILE=/path` for every secret setting `NAME`.

Kubernetes Secrets (mounted as volumes, or synced by External Secrets / the Secret Manager
CSI driver), Docker secrets and the VM role's vault-encrypted files all hand a secret over
as a file. `SecretFilesSource` reads `<NAME>_FILE` for each setting named in
`SECRET_SETTINGS` and gives its content (one trailing newline stripped) to the setting, as if
it had been `NAME` itself; complex values (`SLUICE_PRIVACY_PREVIOUS_KEYS`) are JSON, as in
the environment.

Precedence: values passed in code, then the environment, then these files, then `.env`,
then defaults: a non-empty `NAME` wins over `NAME_FILE` (`serve` exports the resolved
`DATABASE_URL` to its gunicorn workers, which must not read the file again). A `_FILE`
naming a missing or unreadable file is refused (`ValueError`), naming the variable and the
path, never the content.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

#: Every setting that holds a secret. Each one also has a `<NAME>_FILE` variant.
SECRET_SETTINGS = frozenset(
    {
        "DATABASE_URL",
        "SLUICE_DB_PASSWORD",
        "SLUICE_DB_OWNER_URL",
        "SLUICE_DB_MAINTAINER_URL",
        "SLUICE_DB_ERASER_URL",
        "AMQP_URL",
        "SLUICE_ADMIN_TOKEN",
        "SLUICE_PRIVACY_PSEUDONYM_KEY",
        "SLUICE_PRIVACY_PREVIOUS_KEYS",
    }
)


def env_names(settings_cls: type[BaseSettings], name: str, field: FieldInfo) -> list[str]:
    """The environment variable names a field is read from (upper case)."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [choice.upper() for choice in alias.choices if isinstance(choice, str)]
    if isinstance(alias, str):
        return [alias.upper()]
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    return [f"{prefix}{name}".upper()]


class SecretFilesSource(PydanticBaseSettingsSource):
    """A pydantic-settings source: the secret settings whose `<NAME>_FILE` is set."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ reads every field at once (the base class demands the method).
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            for env in env_names(self.settings_cls, name, field):
                if (
                    env in SECRET_SETTINGS
                    and os.environ.get(f"{env}_FILE")
                    and not os.environ.get(env)
                ):
                    content = _read_secret(env)
                    values[name] = (
                        self.decode_complex_value(name, field, content)
                        if self.field_is_complex(field)
                        else content
                    )
        return values


def _read_secret(env: str) -> str:
    path = Path(os.environ[f"{env}_FILE"])
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{env}_FILE: cannot read {path}: {exc.strerror}") from exc
    return content.removesuffix("\n").removesuffix("\r")


def with_password(url: str, password: str) -> str:
    """`url` with `password` in its user info, unless it already has one. Works for libpq
    multi-host URLs and Unix-socket URLs (`postgresql://user@/db?host=/run`)."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    user, at, hosts = netloc.rpartition("@")
    if not sep or not at:
        raise ValueError("DATABASE_URL needs a user name to go with SLUICE_DB_PASSWORD")
    if ":" in user:
        return url
    return f"{scheme}://{user}:{quote(password, safe='')}@{hosts}{slash}{tail}"
