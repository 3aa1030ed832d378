"""The ingest spine: partitioned events, idempotency keys, quarantine.

Revision ID: 20261125_ingest_spine
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261125_ingest_spine"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("specversion", sa.Text(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("subject_pseudonym", sa.Text(), nullable=True),
        sa.Column("pseudonym_key_id", sa.Text(), nullable=True),
        sa.Column("datacontenttype", sa.Text(), nullable=True),
        sa.Column("dataschema", sa.Text(), nullable=True),
        sa.Column("data", postgresql.JSONB(), nullable=True),
        sa.Column("data_is_base64", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "extensions", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "id", "received_at", name=op.f("pk_events")),
        postgresql_partition_by="RANGE (received_at)",
    )
    op.create_index("ix_events_type_received_at", "events", ["type", "received_at"])
    op.create_index(
        "ix_events_subject_pseudonym",
        "events",
        ["subject_pseudonym"],
        postgresql_where=sa.text("subject_pseudonym IS NOT NULL"),
    )
    op.create_table(
        "event_keys",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "id", name=op.f("pk_event_keys")),
    )
    op.create_index(
        "ix_event_keys_first_seen_at", "event_keys", ["first_seen_at"], postgresql_using="brin"
    )
    op.create_table(
        "quarantine",
        sa.Column("quarantine_id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("transport", sa.Text(), nullable=False),
        sa.Column("error_code", sa.Text(), nullable=False),
        sa.Column("error_field", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("event_id", sa.Text(), nullable=True),
        sa.Column("type", sa.Text(), nullable=True),
        sa.Column("subject_pseudonym", sa.Text(), nullable=True),
        sa.Column(
            "attributes", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.PrimaryKeyConstraint("quarantine_id", name=op.f("pk_quarantine")),
    )
    op.create_index("ix_quarantine_received_at", "quarantine", ["received_at"])
    op.create_index(
        "ix_quarantine_error_code_received_at", "quarantine", ["error_code", "received_at"]
    )


def downgrade() -> None:
    op.drop_table("quarantine")
    op.drop_table("event_keys")
    # Dropping the partitioned parent drops every partition with it.
    op.drop_table("events")
