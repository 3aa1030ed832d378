"""Where the CPU went during the measured window, read from /proc (Linux; else nothing).

The machine's cores are shared by PostgreSQL, the service's workers and the clients, so
"who was busy" tells whether a low figure is the service's, the database's or the
benchmark's own doing. Figures are percent of one core (2 busy cores = 200 %).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class CpuSample:
    machine_busy: float  # seconds of CPU, all cores, since boot
    machine_total: float
    service: float  # the service's master and workers
    workers: dict[int, float]  # each worker alone: are they evenly loaded?
    postgres: float  # every process named postgres (the server this run uses, normally)


def _stat(pid: str) -> tuple[str, int, float] | None:
    """(comm, ppid, utime+stime seconds) of a process, or None if it is gone."""
    try:
        text = (PROC / pid / "stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def sample(service_pid: int) -> CpuSample | None:
    try:
        cpu = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(value) for value in cpu[:8]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    service = postgres = 0.0
    workers: dict[int, float] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(entry.name)
        if stat is None:
            continue
        comm, ppid, seconds = stat
        if service_pid in (int(entry.name), ppid):
            service += seconds
            if ppid == service_pid:
                workers[int(entry.name)] = seconds
        elif comm == "postgres" or comm.startswith("postgres:"):
            postgres += seconds
    return CpuSample(
        machine_busy=(sum(ticks) - idle) / TICKS,
        machine_total=sum(ticks) / TICKS,
        service=service,
        workers=workers,
        postgres=postgres,
    )


@dataclass(frozen=True, slots=True)
class CpuUse:
    """Percent of one core over the window."""

    machine_busy: float
    machine_capacity: float
    service: float
    workers: list[float]  # busiest first
    postgres: float


def usage(before: CpuSample | None, after: CpuSample | None, seconds: float) -> CpuUse | None:
    if before is None or after is None or seconds <= 0:
        return None

    def pct(delta: float) -> float:
        return 100.0 * delta / seconds

    return CpuUse(
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
        postgres=pct(after.postgres - before.postgres),
    )
