"""Data contracts: contract version and violations per row; quarantine deduplicated and
replayable; per-minute quality counts.

Revision ID: 20261126_contracts
Revises: 20261125_privacy
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261126_contracts"
down_revision: str | None = "20261125_privacy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("contract_version", sa.Text(), nullable=True))
    op.add_column("events", sa.Column("violations", postgresql.JSONB(), nullable=True))

    op.add_column("quarantine", sa.Column("fingerprint", sa.Text(), nullable=True))
    op.add_column(
        "quarantine", sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "quarantine",
        sa.Column("occurrences", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
    )
    op.add_column("quarantine", sa.Column("contract_version", sa.Text(), nullable=True))
    op.add_column("quarantine", sa.Column("violations", postgresql.JSONB(), nullable=True))
    op.add_column("quarantine", sa.Column("event", postgresql.JSONB(), nullable=True))
    op.add_column("quarantine", sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True))
    # Rows from before deduplication each stand for themselves.
    op.execute(
        "UPDATE quarantine SET fingerprint = 'legacy:' || quarantine_id, last_seen_at = received_at"
    )
    op.alter_column("quarantine", "fingerprint", nullable=False)
    op.alter_column("quarantine", "last_seen_at", nullable=False)
    op.create_index("ix_quarantine_fingerprint", "quarantine", ["fingerprint"], unique=True)
    op.drop_index("ix_quarantine_received_at", table_name="quarantine")
    op.drop_index("ix_quarantine_error_code_received_at", table_name="quarantine")
    op.create_index("ix_quarantine_last_seen_at", "quarantine", ["last_seen_at"])
    op.create_index(
        "ix_quarantine_error_code_last_seen_at", "quarantine", ["error_code", "last_seen_at"]
    )

    op.create_table(
        "quality_counts",
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "bucket_start", "type", "outcome", "code", name=op.f("pk_quality_counts")
        ),
    )


def downgrade() -> None:
    op.drop_table("quality_counts")
    op.drop_index("ix_quarantine_error_code_last_seen_at", table_name="quarantine")
    op.drop_index("ix_quarantine_last_seen_at", table_name="quarantine")
    op.create_index(
        "ix_quarantine_error_code_received_at", "quarantine", ["error_code", "received_at"]
    )
    op.create_index("ix_quarantine_received_at", "quarantine", ["received_at"])
    op.drop_index("ix_quarantine_fingerprint", table_name="quarantine")
    for column in (
        "replayed_at",
        "event",
        "violations",
        "contract_version",
        "occurrences",
        "last_seen_at",
        "fingerprint",
    ):
        op.drop_column("quarantine", column)
    op.drop_column("events", "violations")
    op.drop_column("events", "contract_version")
