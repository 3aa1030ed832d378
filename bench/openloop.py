"""Open-loop load: requests sent on a fixed schedule, whatever the answers do.

A closed loop (bench/load.py) only ever measures latency at saturation: each client waits
for its answer before sending again, so a slow answer slows the load down with it. Here
request k is due at `start + k / rate` and is sent then; its latency runs from that due
time to its answer, so time spent waiting for a free connection counts too (no
coordinated omission). Requests share up to `connections` keep-alive connections. Beyond
`max_outstanding` unanswered requests the generator sheds a due request instead of
sending it, and counts it: the offered rate it really sent is reported beside the plan's.

Runs in the calling process (one uvloop); `on_window` hooks run, in a thread, when the
measured window opens and closes (CPU probes, memory samples).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson
import uvloop

from bench.events import batch_body
from bench.load import CONTENT_TYPE

REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class RatePlan:
    base_url: str
    rate: float  # requests per second
    batch: int  # events per request
    connections: int
    max_outstanding: int
    warmup_s: float
    duration_s: float
    source: str  # every event's source; ids count up


@dataclass(slots=True)
class RateTally:
    latencies_s: list[float] = field(default_factory=list)  # due → 200, due in the window
    statuses: Counter[str] = field(default_factory=Counter)  # due in the window, by answer
    due: int = 0  # requests due in the window
    shed: int = 0  # of those, not sent: `max_outstanding` were unanswered
    stored_events: int = 0  # answered `stored`, whole run
    cpu_s: float = 0.0  # this process's CPU in the window
    seconds: float = 0.0  # the window

    @property
    def sent_per_s(self) -> float:
        return (self.due - self.shed) / self.seconds if self.seconds else 0.0

    def count(self, *statuses: str) -> int:
        return sum(self.statuses[status] for status in statuses)


Hook = Callable[[], object]


def run_open_loop(plan: RatePlan, *, on_start: Hook, on_end: Hook) -> RateTally:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_run(plan, on_start, on_end))


async def _run(plan: RatePlan, on_start: Hook, on_end: Hook) -> RateTally:
    tally = RateTally(seconds=plan.duration_s)
    async with aiohttp.ClientSession(
        base_url=plan.base_url,
        headers={"content-type": CONTENT_TYPE},
        connector=aiohttp.TCPConnector(limit=plan.connections),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    ) as http:
        start = time.monotonic() + 0.05
        window = (start + plan.warmup_s, start + plan.warmup_s + plan.duration_s)
        await asyncio.gather(
            _schedule(plan, http, start, window, tally), _window(window, tally, on_start, on_end)
        )
    return tally


async def _window(
    window: tuple[float, float], tally: RateTally, on_start: Hook, on_end: Hook
) -> None:
    await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
    await asyncio.to_thread(on_start)
    before = time.process_time()
    await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
    tally.cpu_s = time.process_time() - before
    await asyncio.to_thread(on_end)


async def _schedule(
    plan: RatePlan,
    http: aiohttp.ClientSession,
    start: float,
    window: tuple[float, float],
    tally: RateTally,
) -> None:
    pending: set[asyncio.Task[None]] = set()
    k = 0
    while (due := start + k / plan.rate) < window[1]:
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        measured = due >= window[0]
        tally.due += measured
        if len(pending) >= plan.max_outstanding:
            tally.shed += measured
        else:
            body = batch_body(plan.source, k * plan.batch, plan.batch)
            task = asyncio.create_task(_send(http, body, due, measured, tally))
            pending.add(task)
            task.add_done_callback(pending.discard)
        k += 1
    await asyncio.gather(*pending)


async def _send(
    http: aiohttp.ClientSession, body: bytes, due: float, measured: bool, tally: RateTally
) -> None:
    try:
        async with http.post("/ingest", data=body) as response:
            status, content = response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.statuses[type(exc).__name__] += measured
        return
    answered = time.monotonic()
    if status == 200:
        tally.stored_events += int(orjson.loads(content)["stored"])
        if measured:
            tally.latencies_s.append(answered - due)
    tally.statuses[str(status)] += measured
