"""Even load across workers (issue 18, item 4): `serve --workers 2`, 32 connections opened
at once by one client, then requests on all of them.

While the workers shared the master's listening socket, a worker that was busy or not
scheduled when a client's connections arrived got none: the other accepted every
connection waiting. The test makes that case certain by stopping one worker (SIGSTOP)
while the connections open. With a socket per worker (`SO_REUSEPORT`, bound after the
fork) the kernel assigns each connection to a worker's queue as it arrives, so the
stopped worker serves its share once it runs again. Who served what is read from /proc:
the connections each worker holds, and each worker's CPU time.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.support import PROJECT_ROOT, make_event, served, unique_source

CONNECTIONS = 32
MAX_SHARE = 0.6
TICKS = os.sysconf("SC_CLK_TCK")
_LISTEN, _ESTABLISHED = "0A", "01"


def _workers(master: int) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if len(children) == 2:
            return sorted(int(pid) for pid in children)
        time.sleep(0.2)
    raise TimeoutError("gunicorn did not start 2 workers")


def _until_sockets_closed(pid: int) -> None:
    """A killed process's sockets are closed by the kernel as it dies (before it is reaped)."""
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/fd").exists() and _socket_inodes(pid):
        assert time.monotonic() < deadline, f"process {pid} kept its sockets"
        time.sleep(0.01)


def _cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if match := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(match.group(1))
    return inodes


def _tcp_inodes(port: int, state: str) -> set[str]:
    """Sockets on local `port` in `state` (/proc/net/tcp: IPv4, what 127.0.0.1 uses)."""
    inodes = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
            inodes.add(fields[9])
    return inodes


def _held(pids: list[int], port: int, state: str) -> dict[int, int]:
    sockets = _tcp_inodes(port, state)
    return {pid: len(_socket_inodes(pid) & sockets) for pid in pids}


def _request(source: str, n: int) -> bytes:
    body = orjson.dumps([make_event(source, f"{n}-{i}") for i in range(10)])
    head = (
        "POST /ingest HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Send one request on a keep-alive connection; its status code."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
    assert length is not None, head
    await reader.readexactly(int(length.group(1)))
    return int(head.split(b" ", 2)[1])


async def _keep_sending(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    source: str,
    until: float,
) -> list[int]:
    reader, writer = connection
    statuses, n = [], 0
    while time.monotonic() < until:
        statuses.append(await _exchange(reader, writer, _request(source, n)))
        n += 1
    writer.close()
    return statuses


async def test_connections_opened_at_once_spread_over_the_workers(database_url: str) -> None:
    env = {"DATABASE_URL": database_url, "SLUICE_LOG_LEVEL": "WARNING"}
    with served(env, "--workers", "2") as (base_url, master):
        port = int(base_url.rsplit(":", 1)[1])
        workers = _workers(master.pid)
        # Each worker listens on a socket of its own; the master on none, so no
        # connection can wait in a queue that no worker accepts from.
        assert _held(workers, port, _LISTEN) == dict.fromkeys(workers, 1)
        assert _held([master.pid], port, _LISTEN) == {master.pid: 0}

        os.kill(workers[0], signal.SIGSTOP)  # busy, or not scheduled: accepts nothing now
        try:
            connections = await asyncio.gather(
                *(asyncio.open_connection("127.0.0.1", port) for _ in range(CONNECTIONS))
            )
        finally:
            os.kill(workers[0], signal.SIGCONT)
        sources = [unique_source("balance") for _ in connections]
        first = await asyncio.gather(
            *(_exchange(*c, _request(s, -1)) for c, s in zip(connections, sources, strict=True))
        )
        held = _held(workers, port, _ESTABLISHED)  # each one answered: accepted by now
        cpu_before = {pid: _cpu_s(pid) for pid in workers}
        until = time.monotonic() + 4
        statuses = await asyncio.gather(
            *(_keep_sending(c, s, until) for c, s in zip(connections, sources, strict=True))
        )
        used = {pid: _cpu_s(pid) - cpu_before[pid] for pid in workers}

    statuses.append(first)
    assert all(status == 200 for each in statuses for status in each)
    assert sum(held.values()) == CONNECTIONS, held
    # Shared socket: {stopped: 0, other: 32}. Per-worker sockets: a share each.
    assert min(held.values()) > 0, held
    shares = [cpu / sum(used.values()) for cpu in used.values()]
    assert max(shares) <= MAX_SHARE, (held, shares)


async def test_a_killed_worker_leaves_the_port_served(database_url: str) -> None:
    """Its socket goes with it; new connections go to the sockets that remain (and to
    the replacement's, once it is up)."""
    env = {"DATABASE_URL": database_url, "SLUICE_LOG_LEVEL": "WARNING"}
    with served(env, "--workers", "2") as (base_url, master):
        port = int(base_url.rsplit(":", 1)[1])
        victim = _workers(master.pid)[0]
        os.kill(victim, signal.SIGKILL)
        _until_sockets_closed(victim)
        source = unique_source("killed")
        statuses = []
        for n in range(CONNECTIONS):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            statuses.append(await _exchange(reader, writer, _request(source, n)))
            writer.close()
    assert statuses == [200] * CONNECTIONS


def test_a_second_server_on_a_port_in_use_refuses_to_start(database_url: str) -> None:
    """`SO_REUSEPORT` would let it share the port with the first, each taking some of the
    connections: the master checks that the port is free before any worker binds."""
    env = {"DATABASE_URL": database_url, "SLUICE_LOG_LEVEL": "WARNING"}
    with served(env, "--workers", "2") as (base_url, _):
        port = base_url.rsplit(":", 1)[1]
        second = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "app", "serve", "--workers", "2", "--port", port],
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert second.returncode != 0
    assert "Connection in use" in second.stdout + second.stderr
