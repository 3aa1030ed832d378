"""`python -m app <command>`: serve | consume | migrate | downgrade | maintain | replay |
contracts | backup | restore | smoke | keys | privacy.

`serve` runs uvicorn (one process, for development) or, with `--workers N`, gunicorn with
uvicorn workers and `gunicorn.conf.py` (production). With no `DATABASE_URL` outside
production it starts the embedded PostgreSQL first.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import orjson
import uvicorn

from app.auth import admin as key_admin
from app.clock import utc_now
from app.config import Environment, Settings
from app.contracts.checker import ContractChecker
from app.contracts.registry import ContractError, ContractRegistry
from app.observability.logging import configure_logging, logging_config
from app.pipeline.replay import Replayer, ReplayReport
from app.pipeline.writer import BatchWriter
from app.privacy.keyring import Keyring
from app.privacy.policy import PolicyError, load_policy
from app.privacy.posture import check_posture
from app.privacy.preview import preview_file, render
from app.privacy.residual import scan
from app.smoke import add_smoke_parser, smoke_command
from app.storage import backup, migrations
from app.storage.database import create_pool, database_guard
from app.storage.embedded import ensure_database, start_embedded
from app.storage.keys import KeyRepository
from app.storage.maintenance import maintain
from app.storage.quarantine import QuarantineFilter, QuarantineRepository
from app.storage.repository import EventRepository
from app.storage.residual import ResidualRepository

GUNICORN_CONF = migrations.PROJECT_ROOT / "gunicorn.conf.py"
log = logging.getLogger("app.cli")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level)
    handler = {
        "serve": _serve,
        "consume": _consume,
        "migrate": _migrate,
        "downgrade": _downgrade,
        "maintain": _maintain,
        "replay": _replay,
        "contracts": _check_contracts,
        "backup": _backup,
        "restore": _restore,
        "smoke": smoke_command,
        "keys": _keys,
        "privacy": _privacy,
    }[args.command]
    return handler(args, settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app", description=__doc__, formatter_class=_Formatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = _command(commands, "serve", "serve the HTTP API (POST /ingest, Pub/Sub push, admin)")
    serve.add_argument("--host", help="bind address (default: SLUICE_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: SLUICE_PORT, 8000)")
    serve.add_argument(
        "--workers", type=int, default=0, metavar="N", help="N > 0: gunicorn with N workers"
    )
    serve.add_argument("--migrate", action="store_true", help="apply migrations before serving")
    consume = _command(
        commands, "consume", "consume the RabbitMQ queue (AMQP_URL) into the database"
    )
    consume.add_argument("--port", type=int, help="probe port (default: SLUICE_AMQP_HEALTH_PORT)")
    migrate = _command(commands, "migrate", "upgrade the schema (default: to head)")
    migrate.add_argument(
        "revision",
        nargs="?",
        default="head",
        metavar="REVISION",
        help="Alembic revision to upgrade to (default: head, the newest)",
    )
    downgrade = _command(commands, "downgrade", "downgrade the schema")
    downgrade.add_argument(
        "revision", metavar="REVISION", help="target revision, or 'base' for an empty schema"
    )
    _command(
        commands,
        "maintain",
        "create partitions ahead; drop expired ones; trim keys, quarantine and audit "
        "(every replica also does this hourly; one at a time)",
    )
    replay = _command(
        commands, "replay", "store quarantined events that pass the contracts on disk now"
    )
    for name in ("code", "type", "source"):
        replay.add_argument(f"--{name}", help=f"only rows with this {name}")
    replay.add_argument(
        "--since", type=moment, metavar="WHEN", help=f"last seen at or after WHEN ({_WHEN})"
    )
    replay.add_argument(
        "--until", type=moment, metavar="WHEN", help=f"last seen before WHEN ({_WHEN})"
    )
    replay.add_argument("--dry-run", action="store_true", help="count only; store nothing")
    replay.add_argument(
        "--max-rows",
        type=int,
        default=1_000_000,
        metavar="N",
        help="examine at most N quarantine rows (default: 1,000,000)",
    )
    contracts = _command(commands, "contracts", "data contracts: check them before deploying")
    contracts.add_argument(
        "action", choices=["check"], help="check: load and compile every contract"
    )
    contracts.add_argument(
        "--dir", type=Path, help="the contracts directory (default: SLUICE_CONTRACTS_DIR)"
    )
    backup = _command(
        commands,
        "backup",
        "pg_dump -Fc the database to PATH; schema revision and checksum in PATH.meta.json",
    )
    backup.add_argument("path", type=Path, metavar="PATH", help="the archive to write")
    restore = _command(
        commands,
        "restore",
        "pg_restore PATH into the (empty) database; refuses an archive of a newer schema",
    )
    restore.add_argument(
        "path", type=Path, metavar="PATH", help="an archive `backup` wrote (with its .meta.json)"
    )
    add_smoke_parser(commands)
    _keys_parser(_command(commands, "keys", "API keys: create, list, revoke, rotate"))
    _privacy_commands(commands)
    return parser


def _privacy_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    privacy = _command(commands, "privacy", "privacy: preview a policy, scan what is stored")
    actions = privacy.add_subparsers(
        dest="privacy_command", required=True, metavar="ACTION", help="preview or scan"
    )
    preview = _command(
        actions,
        "preview",
        "what a policy would store of sample events, per type and field path (values masked)",
    )
    preview.add_argument(
        "file", type=Path, metavar="FILE.jsonl", help="sample events, one CloudEvent per line"
    )
    preview.add_argument(
        "--policy", type=Path, metavar="P", help="policy file (default: SLUICE_PRIVACY_POLICY_FILE)"
    )
    scan = _command(
        actions,
        "scan",
        "look for personal data in stored events and quarantine rows (exit 1 when found)",
    )
    scan.add_argument(
        "--since",
        type=moment,
        metavar="WHEN",
        help=f"rows received (quarantine: last seen) at or after WHEN; default 1d ({_WHEN})",
    )
    scan.add_argument(
        "--sample",
        type=int,
        default=1000,
        metavar="N",
        help="the newest N events and N quarantine rows (default: 1000)",
    )


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the module docstring's line breaks in `python -m app --help`."""


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    """A subcommand whose `--help` repeats the one line `python -m app --help` lists."""
    return commands.add_parser(name, help=summary, description=summary)


_WHEN = "ISO 8601 such as 2026-11-30T08:00:00Z, or relative: 90s, 15m, 2h, 3d, today, yesterday"
_RELATIVE = re.compile(r"(\d+)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def moment(text: str, *, now: datetime | None = None) -> datetime:
    """An instant from the command line: ISO 8601 (naive means UTC), or how long ago
    (`2h`: two hours before now), or `today` / `yesterday` (their midnight, UTC)."""
    now = now or utc_now()
    word = text.strip().lower()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if word in ("today", "yesterday"):
        return midnight - timedelta(days=1 if word == "yesterday" else 0)
    relative = _RELATIVE.fullmatch(word)
    if relative is not None:
        return now - timedelta(seconds=int(relative[1]) * _UNIT_SECONDS[relative[2]])
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a time: use {_WHEN}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _keys_parser(keys: argparse.ArgumentParser) -> None:
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = _command(actions, "create", "a new key, printed once")
    create.add_argument("name", metavar="NAME", help="what the key is for; shown in audits")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        metavar="S",
        help="ingest, admin:read, admin:write or metrics; repeatable",
    )
    create.add_argument(
        "--source",
        action="append",
        metavar="PATTERN",
        help="a CloudEvents source pattern the key may write; repeatable (default: any)",
    )
    create.add_argument("--expires", type=moment, metavar="WHEN", help=f"expiry ({_WHEN})")
    create.add_argument(
        "--file-entry", action="store_true", help="print an entry for the keys file instead"
    )
    _command(actions, "list", "every key, without secrets, as JSON lines")
    revoke = _command(actions, "revoke", "revoke every live key of a name, or one key id")
    revoke.add_argument("name_or_id", metavar="NAME_OR_ID", help="a key's name or id")
    rotate = _command(actions, "rotate", "a new key; the old ones expire after --grace")
    rotate.add_argument("name", metavar="NAME", help="the name of the keys to rotate")
    rotate.add_argument(
        "--grace",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="hours the old keys stay valid (default 24)",
    )


def _database_url(settings: Settings, *, keep_running: bool) -> str:
    if settings.database_url is not None:
        return settings.database_url
    if settings.env is Environment.PRODUCTION:
        raise SystemExit("DATABASE_URL must be set when SLUICE_ENV=production")
    url = start_embedded(settings.db.embedded_dir, keep_running=keep_running)
    asyncio.run(ensure_database(url))
    return url


def _configuration_is_valid(settings: Settings) -> bool:
    """The policy and the contracts, checked before anything starts: a defect is one clear
    line here, not a worker's traceback."""
    try:
        check_posture(load_policy(settings.privacy.policy_path), settings)
    except PolicyError as exc:
        print(f"sluice: invalid anonymization policy: {exc}", file=sys.stderr)
        return False
    return _checker_or_none(settings) is not None


def _checker_or_none(settings: Settings) -> ContractChecker | None:
    """The compiled contracts, or None after saying which file is wrong and why."""
    try:
        return ContractChecker.from_settings(settings.contracts, settings.quality)
    except ContractError as exc:
        _say_invalid_contract(exc)
        return None


def _say_invalid_contract(exc: ContractError) -> None:
    print(f"sluice: invalid contract: {exc}", file=sys.stderr)


def _run_on_pool(
    url: str, settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[Any]]
) -> None:
    """Run `work` on a pool of its own and print its report (a dataclass, if it returns
    one) as one JSON line."""

    async def run() -> None:
        pool = await create_pool(url, settings.db)
        try:
            report = await work(pool)
        finally:
            await pool.close()
        if report is not None:
            print(orjson.dumps(asdict(report), default=str).decode())

    asyncio.run(run())


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    if not _configuration_is_valid(settings):
        return 2
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    # gunicorn replaces this process, so nothing would stop the embedded server on exit.
    url = _database_url(settings, keep_running=args.workers > 0)
    if args.migrate:
        log.info("migrating the schema to the newest revision")
        migrations.upgrade(url)
    os.environ["DATABASE_URL"] = url
    log.info("serving", extra={"url": f"http://{host}:{port}", "workers": args.workers or 1})
    if args.workers > 0:
        os.environ.update(
            SLUICE_HOST=host, SLUICE_PORT=str(port), WEB_CONCURRENCY=str(args.workers)
        )
        gunicorn = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF)]
        os.execv(sys.executable, [*gunicorn, "app.main:create_app_from_environment()"])  # noqa: S606 - our interpreter # nosec B606
    _run_uvicorn("app.main:create_app_from_environment", settings, host, port)
    return 0


def _consume(args: argparse.Namespace, settings: Settings) -> int:
    if settings.amqp_url is None:
        print("sluice: AMQP_URL must be set to consume", file=sys.stderr)
        return 2
    if not _configuration_is_valid(settings):
        return 2
    os.environ["DATABASE_URL"] = _database_url(settings, keep_running=False)
    port = args.port if args.port is not None else settings.amqp.health_port
    _run_uvicorn("app.main:create_consumer_app_from_environment", settings, settings.host, port)
    return 0


def _run_uvicorn(factory: str, settings: Settings, host: str, port: int) -> None:
    # uvicorn re-raises SIGTERM once it has shut down; exiting through Python instead lets
    # atexit handlers run (they stop the embedded PostgreSQL) and reports a clean exit.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    uvicorn.run(
        factory,
        factory=True,
        host=host,
        port=port,
        log_config=logging_config(settings.log_level),
        timeout_graceful_shutdown=int(settings.batch.ack_timeout_s) + 5,
    )


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _owner_url(settings: Settings) -> str:
    """Migrations and key management run as the owner role when its URL is set."""
    owner = settings.db.owner_url
    return owner.get_secret_value() if owner else _database_url(settings, keep_running=False)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    migrations.upgrade(_owner_url(settings), args.revision)
    return 0


def _downgrade(args: argparse.Namespace, settings: Settings) -> int:
    migrations.downgrade(_owner_url(settings), args.revision)
    return 0


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "create" and args.file_entry:
        return _key_file_entry(args)
    try:
        _run_on_pool(_owner_url(settings), settings, lambda pool: _key_action(args, pool))
    except (ValueError, LookupError) as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 2
    return 0


def _key_file_entry(args: argparse.Namespace) -> int:
    try:
        key, record = key_admin.new_record(args.name, args.scope, args.source, _aware(args.expires))
    except ValueError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 2
    print(key)
    print(key_admin.file_entry(record), end="")
    return 0


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


async def _key_action(args: argparse.Namespace, pool: asyncpg.Pool) -> None:
    """One key action; prints its result (a new key once, on its own line)."""
    repository = KeyRepository(pool)
    if args.action == "create":
        key, record = key_admin.new_record(args.name, args.scope, args.source, _aware(args.expires))
        await repository.insert(record, actor=key_admin.actor())
        print(key)
    elif args.action == "rotate":
        key, _ = await key_admin.rotate(repository, args.name, timedelta(hours=args.grace))
        print(key)
    elif args.action == "revoke":
        revoked = await repository.revoke(args.name_or_id, at=utc_now(), actor=key_admin.actor())
        if not revoked:
            raise LookupError(f"no live key named or numbered {args.name_or_id!r}")
        print(orjson.dumps({"revoked": revoked}).decode())
    else:
        for row in key_admin.listing(await repository.all()):
            print(orjson.dumps(row, default=str).decode())


def _maintain(_: argparse.Namespace, settings: Settings) -> int:
    maintainer = settings.db.maintainer_url
    # The embedded server starts its own loop, so it is started here, before ours.
    url = (
        maintainer.get_secret_value() if maintainer else _database_url(settings, keep_running=False)
    )
    _run_on_pool(
        url,
        settings,
        lambda pool: maintain(EventRepository(pool), settings.db, settings.retention, utc_now()),
    )
    return 0


def _check_contracts(args: argparse.Namespace, settings: Settings) -> int:
    directory = args.dir or settings.contracts.dir
    if directory is None:
        # What `serve` runs with too: every type is unknown, and SLUICE_CONTRACTS_UNKNOWN_TYPE
        # says what happens to it. Nothing is wrong, so nothing fails.
        print("no contracts configured (--dir or SLUICE_CONTRACTS_DIR): nothing to check")
        return 0
    if not directory.is_dir():
        print(f"sluice: contracts directory {directory} does not exist", file=sys.stderr)
        return 2
    try:
        registry = ContractRegistry.load(directory, default_mode=settings.contracts.default_mode)
    except ContractError as exc:
        _say_invalid_contract(exc)
        return 2
    print(f"{len(registry)} contracts for {len(registry.types)} types: OK")
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    checker = _checker_or_none(settings)
    if checker is None:
        return 2
    url = _database_url(settings, keep_running=False)
    where = QuarantineFilter(args.code, args.type, args.source, args.since, args.until)

    def replay(pool: asyncpg.Pool) -> Awaitable[ReplayReport]:
        writer = BatchWriter(
            EventRepository(pool),
            settings.db,
            max_backoff_s=settings.batch.retry_max_backoff_s,
            policy=database_guard(pool, settings)[1],
        )
        replayer = Replayer(
            QuarantineRepository(pool),
            checker,
            writer,
            write_timeout_s=settings.batch.ack_timeout_s,
        )
        return replayer.replay(where, dry_run=args.dry_run, max_rows=args.max_rows)

    _run_on_pool(url, settings, replay)
    return 0


def _backup(args: argparse.Namespace, settings: Settings) -> int:
    url = _database_url(settings, keep_running=False)
    return _report_or_fail(lambda: backup.backup(url, args.path))


def _restore(args: argparse.Namespace, settings: Settings) -> int:
    url = _database_url(settings, keep_running=False)
    return _report_or_fail(lambda: backup.restore(url, args.path))


def _report_or_fail(work: Callable[[], Any]) -> int:
    """Run `work`, print its report as one JSON line; a `BackupError` is one line, exit 1."""
    try:
        report = work()
    except backup.BackupError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps(asdict(report), default=str).decode())
    return 0


def _privacy(args: argparse.Namespace, settings: Settings) -> int:
    if args.privacy_command == "preview":
        return _preview(args.file, args.policy or settings.privacy.policy_path, settings)
    since = args.since or moment("1d")
    url = _database_url(settings, keep_running=False)
    found = []

    async def run() -> None:
        pool = await create_pool(url, settings.db)
        try:
            rows = await ResidualRepository(pool).sample(since, args.sample)
        finally:
            await pool.close()
        report = scan(rows)
        found.append(report.flagged)
        print(orjson.dumps({"since": since.isoformat(), **report.as_dict()}).decode())

    asyncio.run(run())
    return 1 if found[0] else 0


def _preview(file: Path, policy_path: Path, settings: Settings) -> int:
    try:
        policy = load_policy(policy_path)
    except PolicyError as exc:
        print(f"sluice: invalid anonymization policy: {exc}", file=sys.stderr)
        return 2
    try:
        report = preview_file(file, policy, Keyring.from_settings(settings.privacy))
    except OSError as exc:
        print(f"sluice: cannot read {file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(render(report, str(file)))
    return 0
