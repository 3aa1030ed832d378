"""Settings, read once from the environment (and `.env`) by pydantic-settings.

`DATABASE_URL` keeps its conventional name; everything else is `SLUICE_*`. Settings are
grouped by concern, each group with its own prefix, so the environment stays flat
(`SLUICE_BATCH_MAX_SIZE`) while the code reads `settings.batch.max_size`.
`.env.example` lists every variable with a comment; a test keeps the two in step.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.secret_files import SecretFilesSource, with_password

#: Used only outside production, so `make run` works with no secrets; the service logs a
#: warning when it falls back to it and refuses to start in production.
DEVELOPMENT_PSEUDONYM_KEY = "sluice-development-key-not-secret"
DEFAULT_POLICY_FILE = Path(__file__).resolve().parent / "privacy" / "default_policy.yaml"


def _blank_is_unset(value: object) -> object:
    # `NAME=` copied from .env.example must mean "not set", never "an empty key or URL".
    return None if value == "" else value


T = TypeVar("T")
#: An optional setting whose blank value means unset.
Unsettable = Annotated[T | None, BeforeValidator(_blank_is_unset)]


_ROLE_NAME = r"^[a-z_][a-z0-9_]{0,62}$"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class _Group(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # `<NAME>_FILE` for every secret setting (app/secret_files.py), after the environment.
        secret_files = SecretFilesSource(settings_cls)
        return init_settings, env_settings, secret_files, dotenv_settings, file_secret_settings


class LimitSettings(_Group):
    """What one request may carry; beyond it the request or the event is refused."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_LIMIT_")

    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    max_events_per_request: int = Field(1000, ge=1)
    max_event_bytes: int = Field(64 * 1024, ge=256)
    max_attribute_chars: int = Field(1024, ge=64, le=2048)
    # Members of one JSON object. Nesting is bounded per event: `data` deeper than 254
    # levels (what orjson can serialize) is rejected as `envelope.invalid_attribute`.
    max_json_object_keys: int = Field(1000, ge=16)
    # Bytes of all request headers (names and values) and their number; beyond: 431.
    max_header_bytes: int = Field(16 * 1024, ge=1024)
    max_headers: int = Field(100, ge=16)
    # Seconds a request body may take to arrive in full: a trickled body gets 408.
    body_timeout_s: float = Field(30.0, gt=0)
    # Per process: `POST /ingest` and Pub/Sub pushes whose body is in and whose answer is
    # not yet sent; beyond it `503 transient.overloaded` (`api/admission.py`).
    max_requests_in_flight: int = Field(64, ge=1)


class BatchSettings(_Group):
    """The in-memory buffer and the batching loop that drains it into PostgreSQL."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_BATCH_")

    max_size: int = Field(500, ge=1)
    # 0: a batch goes as soon as a write slot is free, and grows while every slot is busy
    # (group commit clocked by the database itself). A positive delay only adds latency:
    # it made single-event requests wait for it (docs/benchmarks.md, "Group commit").
    max_delay_ms: float = Field(0.0, ge=0)
    write_concurrency: int = Field(2, ge=1)
    buffer_max_events: int = Field(20_000, ge=1)
    buffer_max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    ack_timeout_s: float = Field(10.0, gt=0)
    retry_after_s: int = Field(1, ge=1)
    retry_max_backoff_s: float = Field(2.0, gt=0)

    @property
    def max_delay(self) -> timedelta:
        return timedelta(milliseconds=self.max_delay_ms)


class DatabaseSettings(_Group):
    """Connection pool and table upkeep; the URL itself is `DATABASE_URL`."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_DB_")

    pool_min_size: int = Field(2, ge=1)
    pool_max_size: int = Field(10, ge=1)
    command_timeout_s: float = Field(30.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    partition_width: Literal["day", "week", "month"] = "day"
    partitions_ahead: int = Field(3, ge=1)
    dedup_window_days: int = Field(31, ge=1)
    maintenance_interval_s: float = Field(3600.0, gt=0)
    # False: no process runs upkeep on its own; `python -m app maintain` (a CronJob) does.
    maintenance_in_process: bool = True
    embedded_dir: str = ".data/postgres"
    # The circuit breaker: failed database calls in a row that open it, and seconds it stays
    # open (calls answered 503 unasked) before the next call is let through as a probe.
    breaker_failures: int = Field(5, ge=1)
    breaker_reset_s: float = Field(5.0, gt=0)
    # The password, when DATABASE_URL carries none (a secret of its own, e.g. from Secret
    # Manager); a password in the URL wins.
    password: Unsettable[SecretStr] = None
    # The database roles' connections (docs/security.md); each unset one falls back to
    # DATABASE_URL, the writer's. Owner: migrations. Maintainer: partitions, retention.
    # Eraser: the subject-rights endpoints.
    owner_url: Unsettable[SecretStr] = None
    maintainer_url: Unsettable[SecretStr] = None
    eraser_url: Unsettable[SecretStr] = None


class DatabaseRoleSettings(_Group):
    """Names of the group roles the migrations create and grant (cluster-wide in
    PostgreSQL); `manage=false` leaves roles and grants to the operator."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_DB_ROLE_")

    manage: bool = True
    owner: str = Field("sluice_owner", pattern=_ROLE_NAME)
    writer: str = Field("sluice_writer", pattern=_ROLE_NAME)
    maintainer: str = Field("sluice_maintainer", pattern=_ROLE_NAME)
    eraser: str = Field("sluice_eraser", pattern=_ROLE_NAME)
    analyst: str = Field("sluice_analyst", pattern=_ROLE_NAME)


class PrivacySettings(_Group):
    """The anonymization policy and the pseudonymization keys."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_PRIVACY_")

    policy_file: Unsettable[Path] = None  # None: the policy shipped in app/privacy/
    pseudonym_key: Unsettable[SecretStr] = None
    pseudonym_key_id: str = Field("k1", pattern=r"^[A-Za-z0-9_-]{1,16}$")
    # Retired keys, still used to find (and erase) rows they wrote: JSON {"k0": "secret"}.
    previous_keys: dict[str, SecretStr] = Field(default_factory=dict)
    # True: refuse to start with a policy in denylist mode (app/privacy/posture.py).
    require_allowlist: bool = False

    @property
    def policy_path(self) -> Path:
        return self.policy_file or DEFAULT_POLICY_FILE


class PubSubSettings(_Group):
    """The Pub/Sub push endpoint and how it names messages that are not CloudEvents."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_PUBSUB_")

    push_path: str = Field("/pubsub/push", pattern=r"^/[A-Za-z0-9/_.-]*$")
    source: Unsettable[str] = None  # None: the subscription, as //pubsub.googleapis.com/<name>
    type_attribute: str = "type"
    default_type: str = "com.google.cloud.pubsub.message"
    enabled: bool = True
    # OIDC verification of push requests; unset audience = off (the emulator sends none).
    oidc_audience: Unsettable[str] = None
    oidc_emails: list[str] = Field(default_factory=list)  # JSON list of service accounts
    oidc_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"


class UnknownTypePolicy(StrEnum):
    ACCEPT = "accept"  # stored unchecked (quality checks still apply)
    QUARANTINE = "quarantine"  # kept in quarantine for replay; the sender is told `quarantined`
    REJECT = "reject"  # the sender is told `rejected` (and it is quarantined too)


class ContractMode(StrEnum):
    STRICT = "strict"  # a violation rejects the event
    LENIENT = "lenient"  # the violating fields are dropped, the violation recorded with the row


class ContractSettings(_Group):
    """Data contracts: a JSON Schema per event type and version (docs/contracts.md)."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_CONTRACTS_")

    dir: Unsettable[Path] = None  # None: no contracts, every type is unknown
    unknown_type: UnknownTypePolicy = UnknownTypePolicy.ACCEPT
    default_mode: ContractMode = ContractMode.STRICT  # per type: `contracts.yaml` in `dir`


class QualitySettings(_Group):
    """Checks beyond the schema, each with its own code (`quality.*`), and the quality
    summary behind `GET /admin/quality`."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_QUALITY_")

    # `time` further ahead of the receiving clock than this is `quality.time_skew`.
    max_future_skew_s: float = Field(300.0, ge=0)
    # Older than this is `quality.too_old`; the default matches the dedup window, past which
    # a redelivered event could no longer be recognised as a duplicate.
    max_age_days: float = Field(31.0, gt=0)
    # A string in `data` longer than this is `quality.field_too_large`.
    max_field_chars: int = Field(8192, ge=1)
    # How often each process adds its outcome counts to the `quality_counts` table.
    flush_interval_s: float = Field(10.0, gt=0)

    @property
    def max_future_skew(self) -> timedelta:
        return timedelta(seconds=self.max_future_skew_s)

    @property
    def max_age(self) -> timedelta:
        return timedelta(days=self.max_age_days)


class AmqpSettings(_Group):
    """The RabbitMQ consumer (`python -m app consume`) and the broker-backed HTTP mode; the
    broker URL itself is `AMQP_URL`."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_AMQP_")

    queue: str = Field("sluice.events", min_length=1, max_length=200)
    # Where refused deliveries and those past the delivery limit go; empty: nowhere, and a
    # quorum queue then drops what passes the limit.
    dead_letter_exchange: str = "sluice.events.dlx"
    delivery_limit: int = Field(5, ge=1)
    # Unacked deliveries the broker may hand this consumer; 0: twice SLUICE_BATCH_MAX_SIZE
    # (so one micro-batch fills while the previous one commits), within the buffer.
    prefetch: int = Field(0, ge=0, le=65535)
    # Milliseconds a group of deliveries gathers (up to SLUICE_BATCH_MAX_SIZE) before it
    # enters the pipeline: one socket read holds few deliveries, and each group pays the
    # pipeline's fixed costs once. 0: only the deliveries of one turn of the event loop.
    group_window_ms: float = Field(2.0, ge=0, le=1000)
    # `source` and `type` of messages that are not CloudEvents (raw JSON); an empty source
    # means /amqp/<queue>; the message's own `type` property wins over the default type.
    source: Unsettable[str] = None
    default_type: str = "com.rabbitmq.message"
    # Seconds to wait before a batch that failed transiently is nacked back to the queue;
    # doubled per consecutive failure, up to the ceiling.
    retry_backoff_s: float = Field(1.0, ge=0)
    retry_max_backoff_s: float = Field(30.0, ge=0)
    # Seconds between reconnection attempts after the broker went away.
    reconnect_interval_s: float = Field(1.0, gt=0)
    # Seconds broker-backed HTTP mode waits for publisher confirms before answering 503.
    publish_timeout_s: float = Field(5.0, gt=0)
    # The consumer process's own probes and metrics (/health/live, /health/ready, /metrics).
    health_port: int = Field(8001, ge=0, le=65535)

    def prefetch_for(self, batch: BatchSettings) -> int:
        return self.prefetch or min(2 * batch.max_size, batch.buffer_max_events, 65535)

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead"


class HttpAck(StrEnum):
    """When `POST /ingest` answers: after the commit, or once RabbitMQ confirmed the events."""

    COMMIT = "commit"
    BROKER = "broker"


class RetentionSettings(_Group):
    """How long rows are kept; `python -m app maintain` enforces it (idempotency keys: see
    `SLUICE_DB_DEDUP_WINDOW_DAYS`)."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_RETENTION_")

    events_days: int = Field(90, ge=1)
    quarantine_days: int = Field(30, ge=1)
    audit_days: int = Field(1095, ge=1)
    quality_days: int = Field(14, ge=1)


class IngestAccess(StrEnum):
    OPEN = "open"  # anyone who reaches POST /ingest may write, as any source
    KEYS = "keys"  # an API key with the `ingest` scope, and only its allowed sources


class MetricsAccess(StrEnum):
    OPEN = "open"  # for a scraper inside the trust boundary
    KEY = "key"  # an API key with the `metrics` scope


class AuthSettings(_Group):
    """API keys (docs/security.md): who may ingest, read and change what."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_AUTH_")

    # Unset: open outside production (with a loud warning), keys in production.
    ingest: IngestAccess | None = None
    metrics: MetricsAccess = MetricsAccess.OPEN
    # Keys kept outside the database (a mounted secret): YAML, entries as
    # `python -m app keys create --file-entry` prints them. Read with the database's keys.
    keys_file: Unsettable[Path] = None
    # How often each process reloads the keys: the bound on a revocation taking effect.
    cache_ttl_s: float = Field(10.0, gt=0, le=300)
    # How often each process writes its keys' last-used times (one statement).
    last_used_flush_s: float = Field(60.0, gt=0)
    # Per key and process: a token bucket of `rate_limit_burst` requests refilled at
    # `rate_limit_per_s`; 0 turns it off.
    rate_limit_per_s: float = Field(100.0, ge=0)
    rate_limit_burst: int = Field(200, ge=1)

    def ingest_access(self, env: Environment) -> IngestAccess:
        if self.ingest is not None:
            return self.ingest
        return IngestAccess.KEYS if env is Environment.PRODUCTION else IngestAccess.OPEN


class Settings(_Group):
    model_config = SettingsConfigDict(env_prefix="SLUICE_")

    env: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "INFO"
    admin_token: Unsettable[SecretStr] = None
    database_url: Unsettable[str] = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )
    amqp_url: Unsettable[str] = Field(None, validation_alias=AliasChoices("AMQP_URL", "amqp_url"))
    http_ack: HttpAck = HttpAck.COMMIT
    # Seconds between SIGTERM and the server's stop, while readiness already fails and
    # requests are still served (a load balancer's time to stop sending): see app/drain.py.
    drain_delay_s: float = Field(0.0, ge=0, le=300)

    limits: LimitSettings = Field(default_factory=LimitSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    pubsub: PubSubSettings = Field(default_factory=PubSubSettings)
    contracts: ContractSettings = Field(default_factory=ContractSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    amqp: AmqpSettings = Field(default_factory=AmqpSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    db_roles: DatabaseRoleSettings = Field(default_factory=DatabaseRoleSettings)

    @model_validator(mode="after")
    def _password_into_url(self) -> Settings:
        if self.database_url is not None and self.db.password is not None:
            url = with_password(self.database_url, self.db.password.get_secret_value())
            object.__setattr__(self, "database_url", url)  # frozen: set once, while validating
        return self

    @model_validator(mode="after")
    def _limits_fit_together(self) -> Settings:
        # A request larger than the whole buffer could never be accepted: 429 forever.
        if self.batch.buffer_max_events < self.limits.max_events_per_request:
            raise ValueError(
                "SLUICE_BATCH_BUFFER_MAX_EVENTS must be at least "
                "SLUICE_LIMIT_MAX_EVENTS_PER_REQUEST"
            )
        if self.batch.buffer_max_bytes < self.limits.max_body_bytes:
            raise ValueError(
                "SLUICE_BATCH_BUFFER_MAX_BYTES must be at least SLUICE_LIMIT_MAX_BODY_BYTES"
            )
        # Each concurrent flush holds a connection; probes and upkeep need one more.
        if self.db.pool_max_size <= self.batch.write_concurrency:
            raise ValueError("SLUICE_DB_POOL_MAX_SIZE must exceed SLUICE_BATCH_WRITE_CONCURRENCY")
        return self

    @model_validator(mode="after")
    def _broker_settings_fit(self) -> Settings:
        if self.http_ack is HttpAck.BROKER and self.amqp_url is None:
            raise ValueError("SLUICE_HTTP_ACK=broker needs AMQP_URL")
        # The consumer's unacked deliveries live in the buffer: more could never fit.
        if self.amqp.prefetch_for(self.batch) > self.batch.buffer_max_events:
            raise ValueError("SLUICE_AMQP_PREFETCH must not exceed SLUICE_BATCH_BUFFER_MAX_EVENTS")
        return self

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.env is Environment.PRODUCTION and self.privacy.pseudonym_key is None:
            raise ValueError(
                "SLUICE_PRIVACY_PSEUDONYM_KEY must be set when SLUICE_ENV=production: "
                "without it subjects would be pseudonymized with a public key"
            )
        if (
            self.env is Environment.PRODUCTION
            and self.pubsub.enabled
            and self.pubsub.oidc_audience is None
        ):
            raise ValueError(
                "SLUICE_PUBSUB_OIDC_AUDIENCE must be set when SLUICE_ENV=production, or the "
                "push endpoint disabled with SLUICE_PUBSUB_ENABLED=false: it would take "
                "events from anyone"
            )
        if self.env is Environment.PRODUCTION:
            _no_default_secrets(self)
        return self


#: Shortest admin token production accepts: shorter ones are guessable or placeholders.
MIN_ADMIN_TOKEN_CHARS = 32


def _no_default_secrets(settings: Settings) -> None:
    key = settings.privacy.pseudonym_key
    if key is not None and key.get_secret_value() == DEVELOPMENT_PSEUDONYM_KEY:
        raise ValueError("SLUICE_PRIVACY_PSEUDONYM_KEY is the public development key")
    token = settings.admin_token
    if token is not None and len(token.get_secret_value()) < MIN_ADMIN_TOKEN_CHARS:
        raise ValueError(
            f"SLUICE_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters "
            "when SLUICE_ENV=production"
        )
