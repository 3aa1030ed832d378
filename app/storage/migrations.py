"""Alembic, driven from code: `python -m app migrate`, the tests and readiness use these."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from app.config import DatabaseRoleSettings

_SOURCE_TREE = Path(__file__).resolve().parents[2]
# In the source tree (and the image) alembic.ini, migrations/ and gunicorn.conf.py sit beside
# app/; an installed wheel carries them as data files under <prefix>/share/sluice.
PROJECT_ROOT = (
    _SOURCE_TREE
    if (_SOURCE_TREE / "alembic.ini").is_file()
    else Path(sys.prefix) / "share" / "sluice"
)
MIGRATIONS = PROJECT_ROOT / "migrations"
# Partitions are created at run time by the service, not by migrations.
_PARTITION = re.compile(r"^events_p\d{8}$")
DATABASE_URL_ATTRIBUTE = "database_url"


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic filter: leave the service-made partitions out of schema comparisons."""
    return not (type_ == "table" and name is not None and _PARTITION.match(name))


def alembic_config(database_url: str | None = None) -> Config:
    """Alembic's configuration; the libpq URL travels whole in its `attributes` (never
    through `sqlalchemy.url`, whose parser drops all hosts but one), and `migrations/env.py`
    connects with it through asyncpg."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    if database_url is not None:
        config.attributes[DATABASE_URL_ATTRIBUTE] = database_url
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _with_roles(config: Config, roles: DatabaseRoleSettings | None) -> Config:
    if roles is not None:  # otherwise the migration reads SLUICE_DB_ROLE_*
        config.attributes["roles"] = roles
    return config


def upgrade(
    database_url: str, revision: str = "head", *, roles: DatabaseRoleSettings | None = None
) -> None:
    """Blocking (Alembic runs its own event loop): call it from a thread in async code."""
    command.upgrade(_with_roles(alembic_config(database_url), roles), revision)


def downgrade(
    database_url: str, revision: str, *, roles: DatabaseRoleSettings | None = None
) -> None:
    command.downgrade(_with_roles(alembic_config(database_url), roles), revision)
