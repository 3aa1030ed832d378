"""Open-loop load: requests sent on a fixed schedule, whatever the answers do.

A closed loop (bench/load.py) only ever measures latency at saturation: each client waits
for its answer before sending again, so a slow answer slows the load down with it. Here
request k is due at `start + k / rate` and is sent then; its latency runs from that due
time to its answer, so time spent waiting for a free connection counts too (no
coordinated omission). Requests share up to `connections` keep-alive connections. Beyond
`max_outstanding` unanswered requests the generator sheds a due request instead of
sending it, and counts it: the offered rate it really sent is reported beside the plan's.

Runs in `processes` load-generator processes (`bench/processes.py`), each sending its
share of the rate over its share of the connections, the schedules interleaved: one
aiohttp process spends most of a core at a few thousand requests per second, and its own
lag would count as the service's latency. The `on_start`/`on_end` hooks run in the calling
process when the measured window opens and closes (CPU probes, memory samples).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import aiohttp
import orjson
import uvloop

from bench.events import batch_body
from bench.load import CONTENT_TYPE
from bench.processes import ClientProcesses, cpu_between

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
    processes: int = 1
    offset_s: float = 0.0  # this process's schedule starts this much after the start

    def share(self, index: int) -> RatePlan:
        """Process `index`'s part: every `processes`-th request of the whole schedule."""
        return replace(
            self,
            rate=self.rate / self.processes,
            connections=max(1, self.connections // self.processes),
            max_outstanding=max(1, self.max_outstanding // self.processes),
            source=f"{self.source}/p{index}" if self.processes > 1 else self.source,
            processes=1,
            offset_s=index / self.rate,
        )


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

    def add(self, other: RateTally) -> None:
        """Another process's tally over the same window."""
        self.latencies_s.extend(other.latencies_s)
        self.statuses.update(other.statuses)
        self.due += other.due
        self.shed += other.shed
        self.stored_events += other.stored_events
        self.cpu_s += other.cpu_s


Hook = Callable[[], object]


def run_open_loop(plan: RatePlan, *, on_start: Hook, on_end: Hook) -> RateTally:
    with ClientProcesses(
        _process_main,
        plan,
        processes=plan.processes,
        timeout_s=plan.warmup_s + plan.duration_s + REQUEST_TIMEOUT_S + 120,
    ) as processes:
        start = processes.start()
        window = _window(plan, start)
        time.sleep(max(0.0, window[0] - time.monotonic()))
        on_start()
        time.sleep(max(0.0, window[1] - time.monotonic()))
        on_end()
        total = RateTally(seconds=plan.duration_s)
        for tally in processes.collect():
            total.add(tally)
    return total


def _window(plan: RatePlan, start: float) -> tuple[float, float]:
    return start + plan.warmup_s, start + plan.warmup_s + plan.duration_s


def _process_main(plan: RatePlan, index: int, start: float) -> RateTally:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_run(plan.share(index), start))


async def _run(plan: RatePlan, start: float) -> RateTally:
    tally = RateTally(seconds=plan.duration_s)
    async with aiohttp.ClientSession(
        base_url=plan.base_url,
        headers={"content-type": CONTENT_TYPE},
        connector=aiohttp.TCPConnector(limit=plan.connections),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    ) as http:
        window = _window(plan, start)
        cpu = asyncio.create_task(cpu_between(*window))
        await _schedule(plan, http, start + plan.offset_s, window, tally)
        tally.cpu_s = await cpu
    return tally


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
