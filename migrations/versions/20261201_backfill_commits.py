"""The Beam backfill's record of committed input chunks (beam/README.md, *Resuming*).

Revision ID: 20261201_backfill_commits
Revises: 20261126_contracts
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261201_backfill_commits"
down_revision: str | None = "20261126_contracts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "backfill_commits",
        sa.Column("job", sa.Text(), nullable=False),
        sa.Column("chunk", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("part", sa.Text(), nullable=False),
        sa.Column("writables", sa.BigInteger(), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job", "chunk", "side", "part", name=op.f("pk_backfill_commits")),
    )


def downgrade() -> None:
    op.drop_table("backfill_commits")
