"""Privacy: policy version per row, anonymized quarantine data, suppression, audit.

Revision ID: 20261125_privacy
Revises: 20261125_ingest_spine
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261125_privacy"
down_revision: str | None = "20261125_ingest_spine"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added to the partitioned parent, the column reaches every partition.
    op.add_column("events", sa.Column("policy_version", sa.Text(), nullable=True))
    op.add_column("quarantine", sa.Column("data", postgresql.JSONB(), nullable=True))
    op.add_column("quarantine", sa.Column("policy_version", sa.Text(), nullable=True))
    op.create_index(
        "ix_quarantine_subject_pseudonym",
        "quarantine",
        ["subject_pseudonym"],
        postgresql_where=sa.text("subject_pseudonym IS NOT NULL"),
    )
    op.create_table(
        "suppressed_subjects",
        sa.Column("subject_pseudonym", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("suppressed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject_pseudonym", name=op.f("pk_suppressed_subjects")),
    )
    op.create_table(
        "subject_audit",
        sa.Column("audit_id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("requester", sa.Text(), nullable=False),
        sa.Column("subject_pseudonym", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("events_deleted", sa.BigInteger(), nullable=False),
        sa.Column("quarantine_deleted", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("audit_id", name=op.f("pk_subject_audit")),
    )
    op.create_index("ix_subject_audit_requested_at", "subject_audit", ["requested_at"])


def downgrade() -> None:
    op.drop_table("subject_audit")
    op.drop_table("suppressed_subjects")
    op.drop_index("ix_quarantine_subject_pseudonym", table_name="quarantine")
    op.drop_column("quarantine", "policy_version")
    op.drop_column("quarantine", "data")
    op.drop_column("events", "policy_version")
