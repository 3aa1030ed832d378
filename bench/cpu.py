"""Where the CPU went during a measured window, read from /proc (Linux; else nothing).

The machine's cores are shared by PostgreSQL, the service's workers and the clients, so
"who was busy" tells whether a low figure is the service's, the database's or the
benchmark's own doing. Figures are percent of one core (2 busy cores = 200 %).

PostgreSQL's share is counted per process: the backends connected to the database the
run uses plus the server's WAL writer, checkpointer and background writer (see
`database.server_pids`), so other databases' work on a shared server lands in `other`
instead of inflating the figure. Without that list, every `postgres` process counts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CpuSample:
    machine_busy: float  # seconds of CPU, all cores, since boot
    machine_total: float
    service: float  # the service's master and workers
    workers: dict[int, float]  # each worker alone: are they evenly loaded?
    postgres: dict[int, float]  # seconds by PostgreSQL process


def _stat(pid: str) -> tuple[str, int, float] | None:
    """(comm, ppid, utime+stime seconds) of a process, or None if it is gone."""
    try:
        text = (PROC / pid / "stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def _is_postgres(comm: str, pid: int, postgres_pids: Collection[int] | None) -> bool:
    if postgres_pids is not None:
        return pid in postgres_pids
    return comm == "postgres" or comm.startswith("postgres:")


def sample(
    service_pid: int | None, postgres_pids: Collection[int] | None = None
) -> CpuSample | None:
    """CPU seconds so far of the machine, the service (master `service_pid` and its
    children) and PostgreSQL (`postgres_pids`, or every `postgres` process)."""
    try:
        cpu = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(value) for value in cpu[:8]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    service = 0.0
    workers: dict[int, float] = {}
    postgres: dict[int, float] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or (stat := _stat(entry.name)) is None:
            continue
        comm, ppid, seconds = stat
        pid = int(entry.name)
        if service_pid is not None and service_pid in (pid, ppid):
            service += seconds
            if ppid == service_pid:
                workers[pid] = seconds
        elif _is_postgres(comm, pid, postgres_pids):
            postgres[pid] = seconds
    return CpuSample(
        machine_busy=(sum(ticks) - idle) / TICKS,
        machine_total=sum(ticks) / TICKS,
        service=service,
        workers=workers,
        postgres=postgres,
    )


def process_seconds(pids: Collection[int]) -> float:
    """CPU seconds (user + system) so far of the processes `pids` (gone ones count 0)."""
    return sum(stat[2] for pid in pids if (stat := _stat(str(pid))) is not None)


@dataclass(frozen=True, slots=True)
class CpuUse:
    """Percent of one core over the window."""

    seconds: float  # the window's length
    machine_busy: float
    machine_capacity: float
    service: float
    workers: list[float]  # busiest first
    postgres: float


def us_per_unit(pct: float, rate: float) -> float:
    """CPU µs per unit of `rate` (events/s, rows/s) of a party busy `pct` % of a core."""
    return 1e4 * pct / rate if rate > 0 else float("nan")


def usage(before: CpuSample | None, after: CpuSample | None, seconds: float) -> CpuUse | None:
    if before is None or after is None or seconds <= 0:
        return None

    def pct(delta: float) -> float:
        return 100.0 * delta / seconds

    # A process first seen at the end started inside the window: all its time counts.
    postgres = sum(spent - before.postgres.get(pid, 0.0) for pid, spent in after.postgres.items())
    return CpuUse(
        seconds=seconds,
        machine_busy=pct(after.machine_busy - before.machine_busy),
        machine_capacity=pct(after.machine_total - before.machine_total),
        service=pct(after.service - before.service),
        workers=sorted(
            (
                pct(after.workers[pid] - spent)
                for pid, spent in before.workers.items()
                if pid in after.workers
            ),
            reverse=True,
        ),
        postgres=pct(postgres),
    )


class CpuProbe:
    """`start()` … `stop()`: the CPU used in between by the service and PostgreSQL, and by
    this process (the load generator, when it runs here).

    `postgres_pids` is called at both ends (a pool may open a connection in between);
    None counts every `postgres` process on the machine.
    """

    def __init__(
        self,
        service_pid: int | None,
        postgres_pids: Callable[[], set[int]] | None = None,
    ) -> None:
        self._service_pid = service_pid
        self._postgres_pids = postgres_pids
        self._pids: set[int] | None = None
        self._before: CpuSample | None = None
        self._started = 0.0
        self._own_cpu = 0.0
        self.own_cpu_s = 0.0  # this process's CPU seconds in the window

    def _pids_now(self) -> set[int] | None:
        return None if self._postgres_pids is None else self._postgres_pids()

    def start(self) -> None:
        self._pids = self._pids_now()
        self._own_cpu = time.process_time()
        self._started = time.monotonic()
        self._before = sample(self._service_pid, self._pids)

    def stop(self) -> CpuUse | None:
        seconds = time.monotonic() - self._started
        now = self._pids_now()
        pids = None if now is None else now | (self._pids or set())
        after = sample(self._service_pid, pids)
        self.own_cpu_s = time.process_time() - self._own_cpu
        return usage(self._before, after, seconds)


def workers_rss_mib(master_pid: int) -> dict[int, float]:
    """Resident memory (MiB) of each child of `master_pid` (the service's workers)."""
    rss: dict[int, float] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or (stat := _stat(entry.name)) is None:
            continue
        if stat[1] != master_pid:
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss[int(entry.name)] = int(line.split()[1]) * 1024 / MIB
    return rss
