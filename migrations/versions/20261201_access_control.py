"""Access control: API keys, the admin audit, and least-privilege database roles.

Roles are group roles (NOLOGIN): the operator creates login users and grants them one of
these (docs/security.md). Their names come from `SLUICE_DB_ROLE_*` (or the Alembic
config's `roles` attribute, which the tests set); `SLUICE_DB_ROLE_MANAGE=false` skips
roles and grants. Roles are cluster-wide in PostgreSQL, so creating them tolerates roles
that exist already (another database of the cluster, or a concurrent migration), and the
downgrade revokes this database's grants but leaves the roles to other databases.

Revision ID: 20261201_access_control
Revises: 20261201_backfill_commits
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from app.config import DatabaseRoleSettings

revision: str = "20261201_access_control"
down_revision: str | None = "20261201_backfill_commits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = (
    "events",
    "event_keys",
    "quarantine",
    "quality_counts",
    "suppressed_subjects",
    "subject_audit",
    "api_keys",
    "admin_audit",
    "alembic_version",
)
# What the ingest path's statements need, and nothing else: the batch write (INSERT with
# RETURNING on the keys, the quarantine upsert), suppression lookups, quality counts,
# quarantine listing and replay marks, the key cache and its last-used times, the audit.
_QUARANTINE_UPSERT = (
    "occurrences, last_seen_at, error_message, subject_pseudonym, attributes, data, "
    "policy_version, contract_version, violations, event, replayed_at"
)
_WRITER = (
    "GRANT INSERT ON events TO {writer}",
    "GRANT SELECT, INSERT ON event_keys TO {writer}",
    f"GRANT SELECT, INSERT, UPDATE ({_QUARANTINE_UPSERT}) ON quarantine TO {{writer}}",
    "GRANT SELECT ON suppressed_subjects TO {writer}",
    "GRANT SELECT, INSERT, UPDATE (events) ON quality_counts TO {writer}",
    "GRANT SELECT, UPDATE (last_used_at) ON api_keys TO {writer}",
    "GRANT INSERT ON admin_audit TO {writer}",
    "GRANT SELECT ON alembic_version TO {writer}",
)
_ERASER = (
    "GRANT SELECT, DELETE ON events, quarantine TO {eraser}",
    "GRANT SELECT, INSERT, DELETE ON suppressed_subjects TO {eraser}",
    "GRANT SELECT, INSERT ON subject_audit TO {eraser}",
    "GRANT INSERT ON admin_audit TO {eraser}",
)
_ANALYST = ("GRANT SELECT ON events TO {analyst}",)


def _roles() -> DatabaseRoleSettings:
    configured = context.config.attributes.get("roles")
    return configured if isinstance(configured, DatabaseRoleSettings) else DatabaseRoleSettings()


def _create_role(name: str) -> None:
    # duplicate_object also covers a concurrent migration creating it first.
    op.execute(
        f"DO $$ BEGIN CREATE ROLE {name} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )


def _grant_roles(roles: DatabaseRoleSettings) -> None:
    names = roles.model_dump(exclude={"manage"})
    for name in names.values():
        _create_role(name)
    op.execute(f"GRANT USAGE ON SCHEMA public TO {', '.join(names.values())}")
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} OWNER TO {roles.owner}")
    # Partitions made at run time belong to whoever made them: hand the existing ones over.
    # Role names are checked against a strict pattern by their settings.
    op.execute(
        f"DO $$ DECLARE p regclass; BEGIN FOR p IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'events'::regclass LOOP EXECUTE format('ALTER TABLE %s OWNER TO {roles.owner}', p); END LOOP; END $$"  # noqa: S608 - DDL of a validated role name, no input
    )
    # PostgreSQL lets only a partitioned table's owner create and drop its partitions,
    # which are tables of the schema.
    op.execute(f"GRANT CREATE ON SCHEMA public TO {roles.owner}")
    op.execute(f"GRANT {roles.owner} TO {roles.maintainer}")
    for statement in (*_WRITER, *_ERASER, *_ANALYST):
        op.execute(statement.format(**names))
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {roles.writer}, {roles.eraser}")


def _revoke_roles(roles: DatabaseRoleSettings) -> None:
    names = roles.model_dump(exclude={"manage", "owner"})
    for name in names.values():
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {name}")
        op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {name}")
        op.execute(f"REVOKE USAGE ON SCHEMA public FROM {name}")
    op.execute(f"REVOKE {roles.owner} FROM {roles.maintainer}")
    op.execute(f"REVOKE CREATE ON SCHEMA public FROM {roles.owner}")
    # The owner's tables go back to whoever runs the downgrade (their older migrations
    # expect to own them); the owner role itself stays, as it may serve other databases.
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} OWNER TO CURRENT_USER")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("secret_sha256", sa.Text(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("sources", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
    )
    op.create_index("ix_api_keys_name", "api_keys", ["name"])
    op.create_table(
        "admin_audit",
        sa.Column("audit_id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("audit_id", name=op.f("pk_admin_audit")),
    )
    op.create_index("ix_admin_audit_at", "admin_audit", ["at"])
    roles = _roles()
    if roles.manage:
        _grant_roles(roles)


def downgrade() -> None:
    roles = _roles()
    if roles.manage:
        _revoke_roles(roles)
    op.drop_table("admin_audit")
    op.drop_table("api_keys")
