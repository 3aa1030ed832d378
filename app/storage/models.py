"""The schema's source of truth: SQLAlchemy 2.0 models that Alembic migrations mirror.

A test runs Alembic's autogenerate comparison against a migrated database and fails on
any difference, so a model change without a migration (or the reverse) cannot land.
The hot path does not use the ORM: the repository writes with one set-based statement.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Identity,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Text that B-trees of the write path compare: bytewise, no `strcoll` per comparison, and no
# index order a C library upgrade can change (migration 20261202_write_path).
KEY_TEXT = Text(collation="C")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Event(Base):
    """Stored events, range-partitioned by `received_at` (partitions: `events_pYYYYMMDD`).

    Uniqueness of `(source, id)` across partitions is `EventKey`'s job: a partitioned
    table's unique constraints must include the partition key. The table has no primary
    key of its own: `(source, id, received_at)` would be a second B-tree over the keys
    `event_keys` already holds unique, paid on every insert and read by no query (the
    ORM's identity below is for mapping only). Key columns compare bytes (`C`).
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_type_received_at", "type", "received_at"),
        Index(
            "ix_events_subject_pseudonym",
            "subject_pseudonym",
            postgresql_where=text("subject_pseudonym IS NOT NULL"),
        ),
        {"postgresql_partition_by": "RANGE (received_at)"},
    )
    __mapper_args__ = {"primary_key": ["source", "id", "received_at"]}  # noqa: RUF012 - SQLAlchemy's declaration

    source: Mapped[str] = mapped_column(KEY_TEXT)
    id: Mapped[str] = mapped_column(KEY_TEXT)
    type: Mapped[str] = mapped_column(KEY_TEXT)
    specversion: Mapped[str] = mapped_column(Text)
    time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    subject_pseudonym: Mapped[str | None] = mapped_column(KEY_TEXT)
    pseudonym_key_id: Mapped[str | None] = mapped_column(Text)
    datacontenttype: Mapped[str | None] = mapped_column(Text)
    dataschema: Mapped[str | None] = mapped_column(Text)
    data: Mapped[Any | None] = mapped_column(JSONB)
    data_is_base64: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    extensions: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    policy_version: Mapped[str | None] = mapped_column(Text)
    contract_version: Mapped[str | None] = mapped_column(Text)  # `type@version` that checked it
    violations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)  # lenient mode


class EventKey(Base):
    """The idempotency keys: one row per `(source, id)` ever stored inside the dedup window.

    The database's primary key makes deduplication hold across partitions, processes and
    replicas; `python -m app maintain` trims keys older than the window (BRIN-indexed:
    keys arrive in time order).
    """

    __tablename__ = "event_keys"
    __table_args__ = (
        PrimaryKeyConstraint("source", "id"),
        Index("ix_event_keys_first_seen_at", "first_seen_at", postgresql_using="brin"),
    )

    source: Mapped[str] = mapped_column(KEY_TEXT)
    id: Mapped[str] = mapped_column(KEY_TEXT)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class QuarantinedEvent(Base):
    """Events refused at ingest, with the reason; never their raw `data` or subject.

    One row per distinct refusal (`fingerprint`): the same bad event sent again raises
    `occurrences` and `last_seen_at` instead of adding a row. `received_at` is when it was
    first seen. Rows with an `event` envelope can be replayed; `replayed_at` marks those
    a replay stored (or found already stored)."""

    __tablename__ = "quarantine"
    __table_args__ = (
        Index("ix_quarantine_fingerprint", "fingerprint", unique=True),
        Index("ix_quarantine_last_seen_at", "last_seen_at"),
        Index("ix_quarantine_error_code_last_seen_at", "error_code", "last_seen_at"),
        Index(
            "ix_quarantine_subject_pseudonym",
            "subject_pseudonym",
            postgresql_where=text("subject_pseudonym IS NOT NULL"),
        ),
    )

    quarantine_id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    transport: Mapped[str] = mapped_column(Text)
    error_code: Mapped[str] = mapped_column(Text)
    error_field: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    event_id: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str | None] = mapped_column(Text)
    subject_pseudonym: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    data: Mapped[Any | None] = mapped_column(JSONB)  # after the anonymization policy
    policy_version: Mapped[str | None] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(Text)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    occurrences: Mapped[int] = mapped_column(BigInteger, server_default=text("1"))
    contract_version: Mapped[str | None] = mapped_column(Text)
    violations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    event: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # anonymized envelope, replay
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class QualityCount(Base):
    """Events per minute, type, outcome and code, added to by every process every few
    seconds: the data behind `GET /admin/quality`. Types without a contract share the
    label `_other`, so the table stays as small as the set of contracts."""

    __tablename__ = "quality_counts"
    __table_args__ = (PrimaryKeyConstraint("bucket_start", "type", "outcome", "code"),)

    bucket_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    type: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)
    code: Mapped[str] = mapped_column(Text)  # "" for outcomes without one
    events: Mapped[int] = mapped_column(BigInteger)


class SuppressedSubject(Base):
    """Erased subjects, by pseudonym under every key known at erasure: their later events
    are dropped at ingest (by the write statement itself) until they are unsuppressed."""

    __tablename__ = "suppressed_subjects"

    subject_pseudonym: Mapped[str] = mapped_column(KEY_TEXT, primary_key=True)
    key_id: Mapped[str] = mapped_column(Text)
    suppressed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SubjectAudit(Base):
    """One row per data-subject request carried out: who asked, when, what it removed.
    Never the raw identifier: the pseudonym under the active key stands for it."""

    __tablename__ = "subject_audit"
    __table_args__ = (Index("ix_subject_audit_requested_at", "requested_at"),)

    audit_id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    action: Mapped[str] = mapped_column(Text)  # erase | unsuppress
    requester: Mapped[str] = mapped_column(Text)
    subject_pseudonym: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(Text)
    events_deleted: Mapped[int] = mapped_column(BigInteger)
    quarantine_deleted: Mapped[int] = mapped_column(BigInteger)


class BackfillCommit(Base):
    """What a Beam backfill (`beam/`) has committed, so a restarted job skips it.

    One row per batch a job wrote, claimed in the batch's own transaction (`part` names
    the batch within its chunk and side), and one `part = 'done'` row per chunk and side
    once all of it is written. `chunk` is an input file's byte range, `path@start-end`;
    `side` is `events` or `quarantine`. Written only by the Beam pipeline; no personal data.
    """

    __tablename__ = "backfill_commits"

    job: Mapped[str] = mapped_column(Text, primary_key=True)
    chunk: Mapped[str] = mapped_column(Text, primary_key=True)
    side: Mapped[str] = mapped_column(Text, primary_key=True)
    part: Mapped[str] = mapped_column(Text, primary_key=True)
    writables: Mapped[int] = mapped_column(BigInteger)
    committed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKeyRow(Base):
    """API keys, stored only as the SHA-256 of the key (`docs/security.md`): `key_id` is
    the public part of the key, by which a request's key is found; `scopes` what it may
    do; `sources` the CloudEvents `source` patterns it may write (NULL: any)."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_name", "name"),)

    key_id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    secret_sha256: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    sources: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AdminAudit(Base):
    """One row per admin action (erasure, unsuppress, replay, key changes): who did it
    (the key's name, or `cli:<user>`), never the key; what, and on what."""

    __tablename__ = "admin_audit"
    __table_args__ = (Index("ix_admin_audit_at", "at"),)

    audit_id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(Text)
