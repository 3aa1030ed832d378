"""The load: client processes, each running concurrent keep-alive clients on one loop.

Every client POSTs a batch, waits for the answer, and repeats, so `clients` requests are
in flight at any moment (a closed loop: latency and throughput are two views of one
queue). Processes start together: each gets ready (interpreter up, modules imported),
then all wait for one start signal and share the timeline `start → warm-up end → end`,
on the machine's monotonic clock. A request counts in the window when its answer arrives
inside it; any answer but 200 counts as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import orjson
import uvloop

from bench.events import batch_body, client_source
from bench.processes import ClientProcesses, cpu_between

CONTENT_TYPE = "application/cloudevents-batch+json"


@dataclass(frozen=True, slots=True)
class LoadPlan:
    base_url: str
    clients: int
    processes: int
    batch: int
    warmup_s: float
    duration_s: float
    run_tag: str
    # False: every client connects at the start, as one producer restarting would.
    stagger: bool = True

    def clients_of(self, process: int) -> range:
        return range(process, self.clients, self.processes)

    def connect_at(self, start: float, client: int) -> float:
        """When `client` opens its connection: spread over the first half of the warm-up.

        The service's workers share one listening socket, and a worker that wakes up to
        accept takes every connection pending; a burst of simultaneous connects lands on
        one worker and stays there (keep-alive). Connecting one at a time lets the least
        busy worker take each, as a stream of producers connecting over time would.
        Without `stagger`, all at `start`: the burst itself is what is measured.
        """
        if not self.stagger:
            return start
        return start + client * self.warmup_s / 2 / self.clients


def plan_from(
    args: argparse.Namespace, base_url: str, duration_s: float, *, stagger: bool = True
) -> LoadPlan:
    """The closed loop the command line asks for (`--clients`, `--client-processes`,
    `--batch`, `--warmup`), under a fresh run tag: every run's (source, id) are new."""
    return LoadPlan(
        base_url=base_url,
        clients=args.clients,
        processes=min(args.client_processes, args.clients),
        batch=args.batch,
        warmup_s=args.warmup,
        duration_s=duration_s,
        run_tag=uuid.uuid4().hex[:8],
        stagger=stagger,
    )


@dataclass(slots=True)
class Tally:
    """What one process saw; processes' tallies add up."""

    latencies_s: list[float] = field(default_factory=list)  # answers inside the window
    window_events: int = 0  # events answered `stored` inside the window
    stored_events: int = 0  # events answered `stored` at any time (warm-up and tail too)
    requests: int = 0  # requests answered at any time
    errors: Counter[str] = field(default_factory=Counter)  # by status or exception
    cpu_s: float = 0.0  # the process's CPU time inside the window

    def add(self, other: Tally) -> None:
        self.latencies_s.extend(other.latencies_s)
        self.window_events += other.window_events
        self.stored_events += other.stored_events
        self.requests += other.requests
        self.errors.update(other.errors)
        self.cpu_s += other.cpu_s


@dataclass(frozen=True, slots=True)
class Timeline:
    start: float
    warmup_end: float
    end: float

    @classmethod
    def starting(cls, start: float, plan: LoadPlan) -> Timeline:
        warmup_end = start + plan.warmup_s
        return cls(start, warmup_end, warmup_end + plan.duration_s)


async def _client(
    plan: LoadPlan, timeline: Timeline, client: int, source: str, tally: Tally
) -> None:
    await asyncio.sleep(max(0.0, plan.connect_at(timeline.start, client) - time.monotonic()))
    # aiohttp, not httpx: the load generator shares the machine with what it measures, and
    # httpx spent ~0.9 ms of CPU per request (19 µs per event, a fifth of the machine) where
    # aiohttp's C parser spends a fraction of it. One keep-alive connection per client.
    async with aiohttp.ClientSession(
        base_url=plan.base_url,
        headers={"content-type": CONTENT_TYPE},
        connector=aiohttp.TCPConnector(limit=1),
        timeout=aiohttp.ClientTimeout(total=30.0),
    ) as http:
        next_id = 0
        while time.monotonic() < timeline.end:
            body = batch_body(source, next_id, plan.batch)
            next_id += plan.batch
            await _post(http, body, timeline, tally)


async def _post(http: aiohttp.ClientSession, body: bytes, timeline: Timeline, tally: Tally) -> None:
    sent = time.monotonic()
    try:
        async with http.post("/ingest", data=body) as response:
            status, content = response.status, await response.read()
            retry_after = response.headers.get("retry-after", "")
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.errors[type(exc).__name__] += 1
        await asyncio.sleep(0.1)
        return
    answered = time.monotonic()
    tally.requests += 1
    if status != 200:
        tally.errors[f"HTTP {status}"] += 1
        await asyncio.sleep(min(float(retry_after), 1.0) if retry_after.isdigit() else 0.1)
        return
    stored: int = orjson.loads(content)["stored"]
    tally.stored_events += stored
    if timeline.warmup_end <= answered < timeline.end:
        tally.window_events += stored
        tally.latencies_s.append(answered - sent)


async def _run(plan: LoadPlan, process: int, timeline: Timeline) -> Tally:
    tally = Tally()
    cpu = asyncio.create_task(cpu_between(timeline.warmup_end, timeline.end))
    await asyncio.gather(
        *(
            _client(plan, timeline, c, client_source(plan.run_tag, process, c), tally)
            for c in plan.clients_of(process)
        )
    )
    tally.cpu_s = await cpu
    return tally


def _process_main(plan: LoadPlan, process: int, start: float) -> Tally:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_run(plan, process, Timeline.starting(start, plan)))


class LoadRun:
    """The closed loop's client processes (`bench/processes.py`), released together;
    `collect()` adds up their tallies."""

    def __init__(self, plan: LoadPlan) -> None:
        self._plan = plan
        self._processes = ClientProcesses(
            _process_main,
            plan,
            processes=plan.processes,
            timeout_s=plan.warmup_s + plan.duration_s + 120,
        )

    def __enter__(self) -> LoadRun:
        self._processes.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._processes.__exit__(*exc)

    def start(self) -> Timeline:
        return Timeline.starting(self._processes.start(), self._plan)

    def collect(self) -> Tally:
        total = Tally()
        for tally in self._processes.collect():
            total.add(tally)
        return total
