"""JSON logs: one object per line on stderr, for our loggers and uvicorn's alike.

Log calls pass structured fields through `extra=`; by convention they carry codes,
counts and names, never event data or raw subjects.

Cheap at INFO, where the access log writes a line per request: lines are serialized by
python-json-logger's orjson formatter, and records skip what no line shows (the caller's
file and line, found by walking the stack, and the thread and process names), as the
Logging HOWTO's "Optimization" section describes. A line cost 65 µs, a fifth of a
one-event request; now about half that.
"""

from __future__ import annotations

import logging.config
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """A `dictConfig` mapping; also handed to uvicorn and gunicorn so every line is JSON."""
    _lean_records()
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stderr",
        "filters": ["trace_ids"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.orjson.OrjsonFormatter",
                "format": _FORMAT,
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                # uvicorn adds an ANSI-coloured copy of each message; JSON needs no colour.
                "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
            }
        },
        # trace_id/span_id and dd.trace_id/dd.span_id of the current span: logs join traces.
        "filters": {"trace_ids": {"()": "app.observability.tracing.TraceIds"}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            **{
                name: {"handlers": [], "propagate": True, "level": level.upper()}
                for name in ("uvicorn", "uvicorn.error", "gunicorn.error")
            },
            # Chatty at INFO (every initdb/pg_ctl command line, every migration step's
            # internals): Sluice says what each phase does itself. DEBUG shows them again.
            **{
                name: {"handlers": [], "propagate": True, "level": _quiet(level)}
                for name in ("pgserver", "alembic")
            },
            # Their lines carry raw paths, which may hold personal data; the access log of
            # `observability/access_log.py` records route templates instead.
            **{
                name: {"handlers": [], "propagate": False, "level": "CRITICAL"}
                for name in ("uvicorn.access", "gunicorn.access")
            },
        },
    }


def _lean_records() -> None:
    logging._srcfile = None  # the HOWTO's documented switch: no stack walk per record
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def _quiet(level: str) -> str:
    return level.upper() if level.upper() == "DEBUG" else "WARNING"


def configure_logging(level: str = "INFO") -> None:
    logging.config.dictConfig(logging_config(level))
