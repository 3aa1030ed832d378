"""Graceful drain: on SIGTERM readiness fails first, the server stops only afterwards.

A load balancer (a Kubernetes Service) keeps sending requests to a pod for a few seconds
after it was told to stop; a server that stopped listening at once would refuse them.
So the first SIGTERM only marks the process as draining: `/health/ready` answers 503
(`drain` component) while requests are still served, and after `SLUICE_DRAIN_DELAY_S`
the server's own SIGTERM handling begins (uvicorn: stop accepting, finish in-flight
requests, then the lifespan flushes the buffer). A second SIGTERM (or SIGINT) stops at
once, as it would without this module.

Installed from the lifespan, i.e. inside uvicorn's signal capture (standalone and under
gunicorn's uvicorn workers alike); where no server handler is in place (in-process tests)
it leaves signals alone.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

_Handler = Callable[[int, FrameType | None], Any]


class Drain:
    def __init__(self, delay_s: float) -> None:
        self._delay_s = delay_s
        self._previous: _Handler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.draining = False

    def status(self) -> dict[str, object]:
        """The `/health` component: not ok once draining."""
        return {"ok": not self.draining, "draining": self.draining}

    def install(self) -> None:
        """Take over SIGTERM from the server's handler, which it calls after the delay."""
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return  # no server is listening for signals here
        self._previous = previous
        self._loop = asyncio.get_running_loop()
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self._previous is None or self._loop is None:
            return
        if self.draining:  # asked twice: stop now
            self._previous(signum, frame)
            return
        self.draining = True
        log.info("SIGTERM: draining; readiness fails, serving for %.1f s more", self._delay_s)
        self._loop.call_soon_threadsafe(
            self._loop.call_later, self._delay_s, self._previous, signum, frame
        )
