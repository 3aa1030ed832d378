"""What a DoFn instance holds from `setup` to `teardown`: the settings, an event loop and,
for the steps that read or write PostgreSQL, one small asyncpg pool.

Settings are the service's own (`app.config.Settings`), read from the worker's
environment. `--sluice_env NAME=VALUE` options are copied into it first, for runners
whose workers do not inherit the launcher's environment (Dataflow); the DirectRunner's
workers inherit it anyway. The service's code is async (asyncpg); a DoFn is called
synchronously, so each instance runs its coroutines on a loop of its own.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, TypeVar

import asyncpg
from apache_beam.options.pipeline_options import PipelineOptions

from app.config import Settings
from app.storage.database import create_pool

T = TypeVar("T")

# One connection per DoFn instance is enough: its writes run one after another. The
# job's connections are then (workers x threads x writing steps), which the README's
# Dataflow settings bound.
_POOL_SIZE = 1


class SluiceOptions(PipelineOptions):
    """Options both pipelines take."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument(
            "--sluice_env",
            action="append",
            default=[],
            help="NAME=VALUE set in the workers' environment before the settings are read",
        )
        parser.add_argument(
            "--write_timeout_s",
            type=float,
            default=120.0,
            help="how long one batch may retry transient database errors",
        )


def environment_of(pairs: Iterable[str]) -> dict[str, str]:
    """`NAME=VALUE` pairs (the `--sluice_env` option) as a mapping; raises on a bad one."""
    environment: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--sluice_env takes NAME=VALUE, not {pair!r}")
        environment[name] = value
    return environment


class Resources:
    def __init__(self, environment: Mapping[str, str]) -> None:
        os.environ.update(environment)
        self.settings = Settings()
        self.loop = asyncio.new_event_loop()
        self._pool: asyncpg.Pool | None = None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    @property
    def pool(self) -> asyncpg.Pool:
        """The instance's pool, connected on first use."""
        if self._pool is None:
            url = self.settings.database_url
            if url is None:
                raise RuntimeError("DATABASE_URL is not set for the Beam workers")
            small = self.settings.db.model_copy(
                update={"pool_min_size": _POOL_SIZE, "pool_max_size": _POOL_SIZE}
            )
            self._pool = self.run(create_pool(url, small))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self.run(self._pool.close())
            self._pool = None
        self.loop.close()
