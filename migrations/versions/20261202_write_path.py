"""The batch write's cost: a row type for the batch, byte-order keys, one (source, id) index.

Measured by `python -m bench.statements` (docs/benchmarks.md, *PostgreSQL write path*):

- `event_batch_row_v1`: the composite type the batch travels as (`unnest($1::…[])`),
  binary-encoded by asyncpg, instead of one JSON document `json_to_recordset` lexes and
  the payload parsed twice. Versioned by name: a later change creates `_v2` beside it, so
  processes of the previous release keep writing while a rolling upgrade runs.
- `COLLATE "C"` on the text columns the write path's B-trees compare (`source`, `id`,
  `type`, `subject_pseudonym`): byte comparisons instead of `strcoll` per comparison, and
  indexes a C library upgrade cannot silently reorder. Nothing sorts these for people.
- No primary key on `events`: `(source, id, received_at)` was a second B-tree over the keys
  `event_keys` already holds unique, and weaker than it (a resend in another partition
  differs in `received_at`). No query reads events by key.

Changing a column's collation rebuilds the indexes on it: on a large deployment this
upgrade holds `ACCESS EXCLUSIVE` on `events`, `event_keys` and `suppressed_subjects` for
as long as those index builds take, and batch writes wait behind it: run it in a quiet hour.

Revision ID: 20261202_write_path
Revises: 20261201_access_control
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261202_write_path"
down_revision: str | None = "20261201_access_control"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The order is the client's (`app.storage.repository.BATCH_ROW_FIELDS`): never reorder,
# make a new version instead.
_BATCH_ROW = """
CREATE TYPE event_batch_row_v1 AS (
    source text, id text, type text, specversion text, time timestamptz,
    subject_pseudonym text, pseudonym_key_id text, datacontenttype text, dataschema text,
    data_json text, data_is_base64 boolean, extensions_json text, policy_version text,
    subject_lookup text, contract_version text, violations_json text
)
"""
_KEY_COLUMNS = {
    "events": ("source", "id", "type", "subject_pseudonym"),
    "event_keys": ("source", "id"),
    "suppressed_subjects": ("subject_pseudonym",),
}


def _collate(collation: str) -> None:
    for table, columns in _KEY_COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {c} TYPE text COLLATE {collation}" for c in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    op.execute(_BATCH_ROW)
    op.drop_constraint("pk_events", "events", type_="primary")
    _collate('"C"')


def downgrade() -> None:
    _collate("pg_catalog.default")
    op.create_primary_key("pk_events", "events", ["source", "id", "received_at"])
    op.execute("DROP TYPE event_batch_row_v1")
