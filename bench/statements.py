"""Write statements side by side: PostgreSQL's and the client's CPU per row, one run.

`python -m bench.statements` answers item 3 of issue 18: what does one batch write cost
the database (and the process that sends it), per event, next to raw COPY into a plain
table with the columns and primary key of `events`?

- A scratch database migrated to head (as `make bench` makes one). Every alternative gets
  a schema of its own, cloned from the migrated tables (columns, defaults, primary keys,
  indexes, partitions of `events`), so each writes into tables of the same size and
  shape; a *schema variant* changes its clone (an index dropped, `json` for `jsonb`...).
- Each alternative has its own connection; its backend's CPU is read from
  `/proc/<pid>/stat` (the server must run on this machine), the client's is this
  process's CPU time around the write call: building the parameters from the writer's
  `AnonymizedEvent`s, the round trips, decoding the answer into a `BatchResult`.
- Rounds interleave the alternatives (A B C … A B C …) so a checkpoint or a neighbour's
  load falls on all of them alike; the first round is a warm-up.
- Afterwards each alternative must answer like the service does: a batch sent again is
  all duplicates, a suppressed subject's event is neither stored nor claimed, and the
  number of stored rows is the number of events answered new.

Run it under `flock /work/wt/notes/bench.lock` on a shared machine. `--explain` prints
`EXPLAIN (ANALYZE, BUFFERS, WAL)` of each statement on one batch instead of measuring.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import operator
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson

from app.model.events import AnonymizedEvent, Transport
from app.storage.partitions import partitions_ahead
from app.storage.repository import (
    BATCH_ROW_FIELDS,
    WRITE_BATCH,
    BatchResult,
    EventRepository,
)
from bench.database import admin_url, scratch_database
from bench.events import EVENT_TIME, EVENT_TYPE, SUBJECTS

TICKS = os.sysconf("SC_CLK_TCK")
SEARCH_PATH_TABLES = ("event_keys", "quarantine", "suppressed_subjects")

# ---------------------------------------------------------------------------------------
# The rows: what the privacy stage hands the writer for the bench's order events.

_PSEUDONYMS = [hashlib.sha256(f"customer-{n}".encode()).hexdigest() for n in range(SUBJECTS)]
_TIME = datetime.fromisoformat(EVENT_TIME)


def anonymized_batch(source: str, first: int, count: int) -> list[AnonymizedEvent]:
    """`count` events as `BatchWriter` passes them on: unique keys, sorted by them."""
    events = [
        AnonymizedEvent(
            specversion="1.0",
            id=str(n),
            source=source,
            type=EVENT_TYPE,
            time=_TIME,
            subject_pseudonym=_PSEUDONYMS[n % SUBJECTS],
            pseudonym_key_id="k1",
            datacontenttype="application/json",
            dataschema=None,
            data_json=orjson.dumps(
                {
                    "order": n,
                    "amount": n % 997,
                    "currency": "EUR",
                    "lines": [{"sku": f"SKU-{n % 211}", "qty": 1 + n % 5}],
                }
            ).decode(),
            data_is_base64=False,
            extensions_json="{}",
            size=300,
            transport=Transport.HTTP,
            policy_version="default@9f2c41d0",
            subject_lookup=_PSEUDONYMS[n % SUBJECTS],
            contract_version=f"{EVENT_TYPE}@1",
        )
        for n in range(first, first + count)
    ]
    events.sort(key=operator.attrgetter("source", "id"))
    return events


# ---------------------------------------------------------------------------------------
# The statements. All but today's share one tail: claim the keys, store the new events,
# upsert the quarantine rows, answer.

INPUT_COLUMNS = BATCH_ROW_FIELDS  # the row type's fields, in its order
INPUT_TYPES = (
    "text",
    "text",
    "text",
    "text",
    "timestamptz",
    "text",
    "text",
    "text",
    "text",
    "text",
    "boolean",
    "text",
    "text",
    "text",
    "text",
    "text",
)
_ROW = operator.attrgetter(*INPUT_COLUMNS)
_COLUMN_LIST = ", ".join(INPUT_COLUMNS)
_QUARANTINE_TAIL = WRITE_BATCH[
    WRITE_BATCH.index("quarantined AS (") : WRITE_BATCH.index(")\nSELECT")
]


def _unnest_input() -> str:
    arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(INPUT_TYPES, start=1))
    return f"SELECT * FROM unnest({arrays}) AS t({_COLUMN_LIST})"  # noqa: S608 - fixed names


def claim_and_store(incoming: str, *, received: str, quarantine: str, payload: str) -> str:
    """Today's statement with another input: `incoming` yields INPUT_COLUMNS."""
    tail = _QUARANTINE_TAIL.replace("$2", received).replace("$3::json", f"{quarantine}::json")
    return f"""
WITH incoming AS ({incoming}),
suppressed AS (
    SELECT i.source, i.id FROM incoming i
    WHERE i.subject_lookup IS NOT NULL AND EXISTS (
        SELECT 1 FROM suppressed_subjects s
        WHERE s.subject_pseudonym = ANY(string_to_array(i.subject_lookup, ','))
    )
),
new_keys AS (
    INSERT INTO event_keys (source, id, first_seen_at)
    SELECT i.source, i.id, {received} FROM incoming i
    WHERE NOT EXISTS (SELECT 1 FROM suppressed x WHERE x.source = i.source AND x.id = i.id)
    ON CONFLICT DO NOTHING
    RETURNING source, id
),
stored AS (
    INSERT INTO events (source, id, type, specversion, time, subject_pseudonym,
                        pseudonym_key_id, datacontenttype, dataschema, data,
                        data_is_base64, extensions, received_at, policy_version,
                        contract_version, violations)
    SELECT i.source, i.id, i.type, i.specversion, i.time, i.subject_pseudonym,
           i.pseudonym_key_id, i.datacontenttype, i.dataschema, i.data_json::{payload},
           i.data_is_base64, i.extensions_json::jsonb, {received}, i.policy_version,
           i.contract_version, i.violations_json::jsonb
    FROM incoming i JOIN new_keys k ON k.source = i.source AND k.id = i.id
),
{tail})
SELECT source, id, false AS suppressed FROM new_keys
UNION ALL
SELECT source, id, true FROM suppressed
"""  # noqa: S608 - statement text from fixed parts, no input


def result_of(rows: Sequence[asyncpg.Record]) -> BatchResult:
    result = BatchResult(new=set(), suppressed=set())
    for row in rows:
        (result.suppressed if row["suppressed"] else result.new).add((row["source"], row["id"]))
    return result


Writer = Callable[[asyncpg.Connection, list[AnonymizedEvent], datetime], Awaitable[BatchResult]]
Setup = Callable[[asyncpg.Connection], Awaitable[Writer]]


_FIELDS = ", ".join(f"{name} {kind}" for name, kind in zip(INPUT_COLUMNS, INPUT_TYPES, strict=True))
_JSON_INPUT = f"SELECT * FROM json_to_recordset($1::json) AS t({_FIELDS})"  # noqa: S608 - fixed


async def json_recordset(connection: asyncpg.Connection) -> Writer:
    """Before: the dataclasses as one JSON document, `json_to_recordset` in the statement."""
    sql = claim_and_store(_JSON_INPUT, received="$2", quarantine="$3", payload="jsonb")
    statement = await connection.prepare(sql)

    async def write(
        _: asyncpg.Connection, events: list[AnonymizedEvent], at: datetime
    ) -> BatchResult:
        return result_of(await statement.fetch(orjson.dumps(events).decode(), at, "[]"))

    return write


def unnest_arrays(payload: str = "jsonb") -> Setup:
    """One typed array per column, `unnest` in the statement, asyncpg's binary codecs."""

    async def setup(connection: asyncpg.Connection) -> Writer:
        sql = claim_and_store(_unnest_input(), received="$17", quarantine="$18", payload=payload)
        statement = await connection.prepare(sql)

        async def write(
            _: asyncpg.Connection, events: list[AnonymizedEvent], at: datetime
        ) -> BatchResult:
            columns = zip(*map(_ROW, events), strict=True)
            return result_of(await statement.fetch(*columns, at, "[]"))

        return write

    return setup


async def copy_staging(connection: asyncpg.Connection) -> Writer:
    """Binary COPY into a temporary table (emptied at commit), then the one statement
    reading it: a transaction of four round trips (BEGIN, COPY, statement, COMMIT)."""
    await connection.execute(f"CREATE TEMP TABLE batch_in ({_FIELDS}) ON COMMIT DELETE ROWS")
    sql = claim_and_store("SELECT * FROM batch_in", received="$1", quarantine="$2", payload="jsonb")
    statement = await connection.prepare(sql)

    async def write(
        conn: asyncpg.Connection, events: list[AnonymizedEvent], at: datetime
    ) -> BatchResult:
        async with conn.transaction():
            await conn.copy_records_to_table("batch_in", records=list(map(_ROW, events)))
            return result_of(await statement.fetch(at, "[]"))

    return write


def composite_array(payload: str = "jsonb") -> Setup:
    """One parameter: an array of the migrations' row type (a tuple per event), unnested."""

    async def setup(connection: asyncpg.Connection) -> Writer:
        incoming = "SELECT * FROM unnest($1::event_batch_row_v1[])"
        sql = claim_and_store(incoming, received="$2", quarantine="$3", payload=payload)
        statement = await connection.prepare(sql)

        async def write(
            _: asyncpg.Connection, events: list[AnonymizedEvent], at: datetime
        ) -> BatchResult:
            return result_of(await statement.fetch(list(map(_ROW, events)), at, "[]"))

        return write

    return setup


_CLAIM = """
WITH incoming AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS k(source, id, subject_lookup)
),
suppressed AS (
    SELECT i.source, i.id FROM incoming i
    WHERE i.subject_lookup IS NOT NULL AND EXISTS (
        SELECT 1 FROM suppressed_subjects s
        WHERE s.subject_pseudonym = ANY(string_to_array(i.subject_lookup, ','))
    )
),
new_keys AS (
    INSERT INTO event_keys (source, id, first_seen_at)
    SELECT i.source, i.id, $4 FROM incoming i
    WHERE NOT EXISTS (SELECT 1 FROM suppressed x WHERE x.source = i.source AND x.id = i.id)
    ON CONFLICT DO NOTHING
    RETURNING source, id
)
SELECT source, id, false AS suppressed FROM new_keys
UNION ALL
SELECT source, id, true FROM suppressed
"""
_STORE = f"""
INSERT INTO events (source, id, type, specversion, time, subject_pseudonym, pseudonym_key_id,
                    datacontenttype, dataschema, data, data_is_base64, extensions, received_at,
                    policy_version, contract_version, violations)
SELECT source, id, type, specversion, time, subject_pseudonym, pseudonym_key_id,
       datacontenttype, dataschema, data_json::jsonb, data_is_base64, extensions_json::jsonb,
       $17, policy_version, contract_version, violations_json::jsonb
FROM ({_unnest_input()}) AS i
"""  # noqa: S608 - fixed names
_KEYS = operator.attrgetter("source", "id", "subject_lookup")


async def two_statements(connection: asyncpg.Connection) -> Writer:
    """Keys claimed by one statement, the new events stored by a second, one transaction:
    no join in SQL, but four round trips, and the client picks the new events."""
    claim, store = await connection.prepare(_CLAIM), await connection.prepare(_STORE)

    async def write(
        conn: asyncpg.Connection, events: list[AnonymizedEvent], at: datetime
    ) -> BatchResult:
        async with conn.transaction():
            result = result_of(await claim.fetch(*zip(*map(_KEYS, events), strict=True), at))
            fresh = [e for e in events if e.key in result.new]
            if fresh:
                await store.fetch(*zip(*map(_ROW, fresh), strict=True), at)
        return result

    return write


_COPIED = (
    *INPUT_COLUMNS[:9],
    "data",
    "data_is_base64",
    "extensions",
    "policy_version",
    "contract_version",
    "violations",
    "received_at",
)
_COPIED_ROW = operator.attrgetter(*INPUT_COLUMNS[:13], "contract_version", "violations_json")
_CLAIM_NOT_EXISTS = _CLAIM.replace(
    "WHERE NOT EXISTS (SELECT 1 FROM suppressed x WHERE x.source = i.source AND x.id = i.id)\n"
    "    ON CONFLICT DO NOTHING",
    "WHERE NOT EXISTS (SELECT 1 FROM suppressed x WHERE x.source = i.source AND x.id = i.id)\n"
    "      AND NOT EXISTS (SELECT 1 FROM event_keys k WHERE k.source = i.source AND k.id = i.id)",
)


def claim_then_copy(claim_sql: str = _CLAIM) -> Setup:
    """Keys claimed by one statement (three arrays in, the new keys out), then the new
    events by binary COPY into `events` itself: one transaction, four round trips."""

    async def setup(connection: asyncpg.Connection) -> Writer:
        claim = await connection.prepare(claim_sql)

        async def write(
            conn: asyncpg.Connection, events: list[AnonymizedEvent], at: datetime
        ) -> BatchResult:
            async with conn.transaction():
                result = result_of(await claim.fetch(*zip(*map(_KEYS, events), strict=True), at))
                records = [(*_COPIED_ROW(e), at) for e in events if e.key in result.new]
                if records:
                    await conn.copy_records_to_table("events", records=records, columns=_COPIED)
            return result

        return write

    return setup


async def production(connection: asyncpg.Connection) -> Writer:
    """Whatever `EventRepository.write_batch` runs now, through its own code (a connection
    stands in for the pool: both have `fetch`)."""
    del connection

    async def write(
        conn: asyncpg.Connection, events: list[AnonymizedEvent], at: datetime
    ) -> BatchResult:
        repository = EventRepository(conn)  # type: ignore[arg-type]
        return await repository.write_batch(events, [], received_at=at)

    return write


async def copy_reference(connection: asyncpg.Connection) -> Writer:
    """The ceiling: binary COPY into a plain table with the columns and primary key of
    `events` (as `bench/copy_ceiling.py`), nothing answered."""
    await connection.execute("CREATE TABLE copy_ref (LIKE events INCLUDING DEFAULTS)")
    await connection.execute("ALTER TABLE copy_ref ADD PRIMARY KEY (source, id, received_at)")

    async def write(
        conn: asyncpg.Connection, events: list[AnonymizedEvent], at: datetime
    ) -> BatchResult:
        records = [(*_REFERENCE_ROW(e), at) for e in events]
        await conn.copy_records_to_table("copy_ref", records=records, columns=_REFERENCE)
        return BatchResult(new=set(), suppressed=set())

    return write


_REFERENCE = (*INPUT_COLUMNS[:9], "data", "data_is_base64", "extensions", "received_at")
_REFERENCE_ROW = operator.attrgetter(*INPUT_COLUMNS[:12])


# ---------------------------------------------------------------------------------------
# Schemas: one clone of the migrated tables per alternative, optionally changed.


@dataclass(frozen=True, slots=True)
class Variant:
    """How an alternative's clone differs from the migrated schema."""

    drop: frozenset[str] = frozenset()  # index or constraint names left out
    payload: str = "jsonb"  # type of events.data
    fillfactor: int | None = None  # of every B-tree index of the clone
    collation: str | None = None  # of the key columns (KEY_COLUMNS)
    hashed: frozenset[str] = frozenset()  # B-tree indexes built as hash indexes instead
    extra: tuple[str, ...] = ()  # more DDL on the clone; `{schema}` is its name

    def keeps(self, name: str) -> bool:
        return name not in self.drop


BASELINE = Variant()
# The text columns B-trees compare: keys, event type, subject pseudonyms.
KEY_COLUMNS = {
    "events": ("source", "id", "type", "subject_pseudonym"),
    "event_keys": ("source", "id"),
    "suppressed_subjects": ("subject_pseudonym",),
}
CLONED = ("events", "event_keys", "quarantine", "suppressed_subjects")
_TABLE_IN_DDL = re.compile(r" ON (ONLY )?public\.(\w+) ")


async def clone_schema(admin: asyncpg.Connection, schema: str, variant: Variant) -> None:
    await admin.execute(f"CREATE SCHEMA {schema}")
    for table in CLONED:
        partitioned = " PARTITION BY RANGE (received_at)" if table == "events" else ""
        await admin.execute(
            f"CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL"
            f" EXCLUDING INDEXES){partitioned}"
        )
    if variant.payload != "jsonb":
        await admin.execute(f"ALTER TABLE {schema}.events ALTER COLUMN data TYPE {variant.payload}")
    if variant.collation is not None:
        for table, columns in KEY_COLUMNS.items():
            changes = ", ".join(
                f'ALTER COLUMN {c} TYPE text COLLATE "{variant.collation}"' for c in columns
            )
            await admin.execute(f"ALTER TABLE {schema}.{table} {changes}")
    for statement in await _index_ddl(admin, schema, variant):
        await admin.execute(statement)
    for statement in variant.extra:
        await admin.execute(statement.format(schema=schema))
    for partition in partitions_ahead(datetime.now(UTC), "day", 1):
        await admin.execute(
            f"CREATE TABLE {schema}.{partition.name} PARTITION OF {schema}.events"
            f" FOR VALUES FROM ('{partition.start.isoformat()}') TO ('{partition.end.isoformat()}')"
        )


async def _index_ddl(admin: asyncpg.Connection, schema: str, variant: Variant) -> list[str]:
    """The migrated tables' primary keys, unique constraints and indexes, for the clone."""
    rows = await admin.fetch(
        """
        SELECT c.relname AS name, t.relname AS tab, con.contype,
               pg_get_constraintdef(con.oid) AS constraint_def,
               pg_get_indexdef(i.indexrelid) AS index_def,
               am.amname
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_am am ON am.oid = c.relam
        LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = t.oid
        WHERE t.relnamespace = 'public'::regnamespace AND t.relname = ANY($1::text[])
        ORDER BY t.relname, c.relname
        """,
        list(CLONED),
    )
    statements = []
    for row in rows:
        if not variant.keeps(row["name"]):
            continue
        storage = (
            f" WITH (fillfactor = {variant.fillfactor})"
            if variant.fillfactor is not None and row["amname"] == "btree"
            else ""
        )
        if row["contype"] is not None:
            statements.append(
                f"ALTER TABLE {schema}.{row['tab']} ADD CONSTRAINT {row['name']}"
                f" {row['constraint_def']}{storage}"
            )
        else:
            ddl = _TABLE_IN_DDL.sub(rf" ON \g<1>{schema}.\g<2> ", row["index_def"])
            if row["name"] in variant.hashed:
                ddl = ddl.replace(" USING btree ", " USING hash ")
            where = ddl.find(" WHERE ")
            ddl = ddl + storage if where < 0 else ddl[:where] + storage + ddl[where:]
            statements.append(ddl)
    return statements


# ---------------------------------------------------------------------------------------
# Measuring.


@dataclass(frozen=True, slots=True)
class Alternative:
    name: str
    setup: Callable[[asyncpg.Connection], Awaitable[Writer]]
    variant: Variant = BASELINE
    answers: bool = True  # False for the COPY reference: it says nothing per event
    reference: bool = False


@dataclass(slots=True)
class Tally:
    rows: int = 0
    new: int = 0
    server_s: float = 0.0
    client_s: float = 0.0

    @property
    def server_us(self) -> float:
        return 1e6 * self.server_s / self.rows if self.rows else 0.0

    @property
    def client_us(self) -> float:
        return 1e6 * self.client_s / self.rows if self.rows else 0.0


@dataclass(slots=True)
class Lane:
    """One alternative's connection, schema, key counter and tally."""

    alternative: Alternative
    schema: str
    connection: asyncpg.Connection
    write: Writer
    pid: int
    next_id: int = 0
    answered_new: int = 0  # every write's, warm-up included: what must be stored
    tally: Tally = field(default_factory=Tally)

    def batch(self, size: int) -> list[AnonymizedEvent]:
        events = anonymized_batch(f"/bench/{self.schema}", self.next_id, size)
        self.next_id += size
        return events


def backend_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a server process (the backend serving a connection)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields_after_comm = text[text.rindex(")") + 2 :].split()
    return (int(fields_after_comm[11]) + int(fields_after_comm[12])) / TICKS


async def run_round(lane: Lane, *, batches: int, size: int, measured: bool) -> None:
    server_before = backend_cpu_s(lane.pid)
    client = 0.0
    new = 0
    for _ in range(batches):
        events = lane.batch(size)  # built outside the clock: the writer's input
        started = time.process_time()
        result = await lane.write(lane.connection, events, datetime.now(UTC))
        client += time.process_time() - started
        new += len(result.new)
    lane.answered_new += new
    if measured:
        lane.tally.rows += batches * size
        lane.tally.new += new
        lane.tally.server_s += backend_cpu_s(lane.pid) - server_before
        lane.tally.client_s += client


async def open_lane(url: str, alternative: Alternative, index: int) -> Lane:
    schema = f"alt{index}"
    connection = await asyncpg.connect(
        url, server_settings={"search_path": f"{schema}, public", "timezone": "UTC"}
    )
    write = await alternative.setup(connection)
    pid = await connection.fetchval("SELECT pg_backend_pid()")
    return Lane(alternative, schema, connection, write, pid)


async def verify(lane: Lane, admin: asyncpg.Connection) -> list[str]:
    """What the service relies on: exactly once, and the right answer per event."""
    problems: list[str] = []
    table = "copy_ref" if lane.alternative.reference else "events"
    stored = await lane.connection.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
    expected = lane.next_id if lane.alternative.reference else lane.answered_new
    if stored != expected:
        problems.append(f"{stored} rows stored, {expected} answered new")
    if not lane.alternative.answers:
        return problems
    again = anonymized_batch(f"/bench/{lane.schema}", lane.next_id - 50, 50)
    if (result := await lane.write(lane.connection, again, datetime.now(UTC))).new:
        problems.append(f"{len(result.new)} of 50 re-sent events answered new")
    fresh = lane.batch(10)
    victim = fresh[3]
    await admin.execute(
        f"INSERT INTO {lane.schema}.suppressed_subjects VALUES ($1, 'k1', now())",  # noqa: S608 - our schema
        victim.subject_pseudonym,
    )
    result = await lane.write(lane.connection, fresh, datetime.now(UTC))
    if result.suppressed != {victim.key} or victim.key in result.new or len(result.new) != 9:
        problems.append("a suppressed subject's event was not answered suppressed")
    claimed = await lane.connection.fetchval(
        "SELECT count(*) FROM event_keys WHERE source = $1 AND id = $2", *victim.key
    )
    if claimed:
        problems.append("a suppressed subject's event claimed its key")
    return problems


# The schema before migration 20261202_write_path: default collation, events' own key.
BEFORE = Variant(
    collation="default",
    extra=("ALTER TABLE {schema}.events ADD PRIMARY KEY (source, id, received_at)",),
)
NOW = BASELINE
_C_KEYED_BEFORE = Variant(extra=BEFORE.extra)

ALTERNATIVES = (
    # The statements, on the schema as it was.
    Alternative("before: json_to_recordset", json_recordset, BEFORE),
    Alternative("unnest, typed arrays", unnest_arrays(), BEFORE),
    Alternative("COPY to temp table + INSERT…SELECT", copy_staging, BEFORE),
    Alternative("unnest, composite-type array", composite_array(), BEFORE),
    Alternative("two statements: claim, then store", two_statements, BEFORE),
    Alternative("claim, then COPY into events", claim_then_copy(), BEFORE),
    # The schema, one change at a time, under the composite-type statement.
    Alternative("composite + C collation", composite_array(), _C_KEYED_BEFORE),
    Alternative("composite - pk_events", composite_array(), Variant(collation="default")),
    Alternative("now: write_batch (composite, C, - pk_events)", production, NOW),
    Alternative(
        "now - ix_events_type_received_at",
        production,
        Variant(drop=frozenset({"ix_events_type_received_at"})),
    ),
    Alternative(
        "now - event_keys BRIN",
        production,
        Variant(drop=frozenset({"ix_event_keys_first_seen_at"})),
    ),
    Alternative("now, B-tree fillfactor 100", production, Variant(fillfactor=100)),
    Alternative(
        "now, hash index on subject_pseudonym",
        production,
        Variant(hashed=frozenset({"ix_events_subject_pseudonym"})),
    ),
    Alternative("now, data json not jsonb", composite_array("json"), Variant(payload="json")),
    Alternative("now, claim NOT EXISTS, then COPY", claim_then_copy(_CLAIM_NOT_EXISTS), NOW),
    # The ceilings: COPY into a plain table like `events`, before and after.
    Alternative("COPY reference, before", copy_reference, BEFORE, answers=False, reference=True),
    Alternative("COPY reference, now", copy_reference, NOW, answers=False, reference=True),
)


# ---------------------------------------------------------------------------------------
# Running and reporting.


async def explain(lane: Lane, size: int) -> list[str]:
    """The plan of each statement one batch runs, from auto_explain (ANALYZE, BUFFERS,
    WAL) sent to this client as LOG messages: works for every alternative alike."""
    lines: list[str] = []
    lane.connection.add_log_listener(lambda _, message: lines.append(message.message))
    for setting in (
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_analyze = on",
        "SET auto_explain.log_buffers = on",
        "SET auto_explain.log_wal = on",
        "SET auto_explain.log_timing = off",
        "SET auto_explain.log_nested_statements = on",
        "SET client_min_messages = log",
    ):
        await lane.connection.execute(setting)
    await lane.write(lane.connection, lane.batch(size), datetime.now(UTC))
    await lane.connection.execute("SET auto_explain.log_min_duration = -1")
    return lines


def render(lanes: Sequence[Lane]) -> str:
    """One line per alternative; ratios to the COPY reference on the same schema
    generation (before or now) when both ran, else to whichever did."""
    references = [lane for lane in lanes if lane.alternative.reference]
    header = f"{'alternative':46} {'PG µs/row':>9} {'client µs':>9} {'sum':>6}" + "".join(
        f" {'PG÷' + _short(r):>10}" for r in references
    )
    lines = [header, "-" * len(header)]
    for lane in lanes:
        tally = lane.tally
        ratios = "".join(f" {_ratio(tally.server_us, r.tally.server_us):>10}" for r in references)
        lines.append(
            f"{lane.alternative.name:46} {tally.server_us:9.2f} {tally.client_us:9.2f}"
            f" {tally.server_us + tally.client_us:6.1f}{ratios}"
        )
    return "\n".join(lines)


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}" if reference else "-"  # too few rows for one tick


def _short(reference: Lane) -> str:
    return reference.alternative.name.rsplit(" ", 1)[-1]


async def run(url: str, args: argparse.Namespace) -> None:
    chosen = [a for i, a in enumerate(ALTERNATIVES) if not args.only or i in args.only]
    if not any(a.reference for a in chosen):
        chosen.append(ALTERNATIVES[-1])  # ratios need a reference
    admin = await asyncpg.connect(url)
    lanes: list[Lane] = []
    try:
        for index, alternative in enumerate(chosen):
            await clone_schema(admin, f"alt{index}", alternative.variant)
            lanes.append(await open_lane(url, alternative, index))
        if args.explain:
            for lane in lanes:
                await run_round(lane, batches=args.batches, size=args.batch, measured=False)
                print(f"===== {lane.alternative.name}")
                print("\n".join(await explain(lane, args.batch)))
            return
        for round_number in range(args.rounds + 1):
            for lane in lanes:
                await run_round(
                    lane, batches=args.batches, size=args.batch, measured=round_number > 0
                )
        print(render(lanes))
        failures = {lane.alternative.name: await verify(lane, admin) for lane in lanes}
        for name, problems in failures.items():
            for problem in problems:
                print(f"FAIL {name}: {problem}")
        write_json(lanes, args)
        if any(failures.values()):
            raise SystemExit(1)
    finally:
        for lane in lanes:
            await lane.connection.close()
        await admin.close()


def write_json(lanes: Sequence[Lane], args: argparse.Namespace) -> None:
    out = Path(__file__).parent / "results" / "statements.json"
    document = {
        "batch": args.batch,
        "rows_per_alternative": args.rounds * args.batches * args.batch,
        "alternatives": [
            {
                "name": lane.alternative.name,
                "postgres_us_per_row": round(lane.tally.server_us, 3),
                "client_us_per_row": round(lane.tally.client_us, 3),
            }
            for lane in lanes
        ],
    }
    out.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.statements", description=__doc__)
    parser.add_argument("--batch", type=int, default=500, help="events per batch")
    parser.add_argument("--batches", type=int, default=20, help="batches per alternative per round")
    parser.add_argument(
        "--rounds", type=int, default=10, help="measured rounds (one more warms up)"
    )
    parser.add_argument("--only", type=int, nargs="*", help="alternatives by position (0-based)")
    parser.add_argument("--list", action="store_true", help="list the alternatives and exit")
    parser.add_argument("--explain", action="store_true", help="print the plans, measure nothing")
    args = parser.parse_args()
    if args.list:
        for index, alternative in enumerate(ALTERNATIVES):
            print(f"{index:2} {alternative.name}")
        return
    admin, _ = admin_url()
    with scratch_database(admin) as url:
        asyncio.run(run(url, args))


if __name__ == "__main__":
    main()
