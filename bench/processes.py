"""Load-generator processes started, ready and released together on one clock.

One Python process cannot generate every load the bench needs: at thousands of requests
per second an aiohttp client spends most of a core, and its own event-loop lag would be
measured as the service's latency. So a load runs in `processes` processes: each gets ready
(interpreter up, modules imported), then all wait for one start signal and share its start
time on the machine's monotonic clock (`CLOCK_MONOTONIC` is system-wide on Linux). Each
runs `main(plan, index, start)` and sends back what it counted; the caller adds them up.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import signal
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from queue import Empty
from typing import Generic, TypeVar

_P = TypeVar("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")
READY_TIMEOUT_S = 60.0

#: What one process runs: its plan, its index, the shared start time → what it counted.
#: A module-level function: the processes are spawned, so it is pickled by name.
ProcessMain = Callable[[_P, int, float], _R]


async def cpu_between(start: float, end: float) -> float:
    """This process's CPU time from `start` to `end` (monotonic readings), measured while
    the load runs beside it on the same event loop."""
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    before = time.process_time()
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    return time.process_time() - before


def _process_main(
    main: ProcessMain[_P, _R],
    plan: _P,
    index: int,
    *,
    ready: Queue[int],
    go: Event,
    start_at: Synchronized[float],
    results: Queue[_R],
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends us
    ready.put(index)
    go.wait()
    results.put(main(plan, index, start_at.value))


class ClientProcesses(Generic[_P, _R]):
    """`processes` processes each running `main`; `start()` releases them, `collect()`
    waits for every result (at most `timeout_s` after the start)."""

    def __init__(
        self, main: ProcessMain[_P, _R], plan: _P, *, processes: int, timeout_s: float
    ) -> None:
        context = mp.get_context("spawn")
        self._timeout_s = timeout_s
        self._ready: Queue[int] = context.Queue()
        self._results: Queue[_R] = context.Queue()
        self._go = context.Event()
        self._start_at = context.Value("d", 0.0)
        self._workers = [
            context.Process(
                target=_process_main,
                args=(main, plan, index),
                kwargs={
                    "ready": self._ready,
                    "go": self._go,
                    "start_at": self._start_at,
                    "results": self._results,
                },
                name=f"bench-client-{index}",
            )
            for index in range(processes)
        ]

    def __enter__(self) -> ClientProcesses[_P, _R]:
        return self

    def __exit__(self, *_: object) -> None:
        for worker in self._workers:
            if worker.pid is None:  # never started
                continue
            if worker.is_alive():
                worker.terminate()
            worker.join()

    def start(self) -> float:
        """Start every process, wait until all are ready, release them: the start time."""
        for worker in self._workers:
            worker.start()
        for _ in self._workers:
            self._get(self._ready, READY_TIMEOUT_S)
        start = time.monotonic() + 0.05
        self._start_at.value = start
        self._go.set()
        return start

    def collect(self) -> list[_R]:
        """Every process's result (each waits for its last answers)."""
        results = [self._get(self._results, self._timeout_s) for _ in self._workers]
        for worker in self._workers:
            worker.join(timeout=10)
        return results

    def _get(self, queue: Queue[_T], timeout_s: float) -> _T:
        """The next item, failing fast when a client process died instead of sending it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Empty):
                return queue.get(timeout=0.5)
            dead = [w.name for w in self._workers if w.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"client process failed: {', '.join(dead)}")
        raise TimeoutError(f"no word from the client processes in {timeout_s:.0f} s")
