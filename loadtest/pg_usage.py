"""What the Postgres server spent during a piece of a benchmark: CPU seconds and WAL written.

These are the cost model's Aurora inputs (`topup cost`): CPU turns into ACU-hours, WAL into
write I/Os. CPU is read from the server's processes, so only for a server on this machine
(the embedded one); parallel workers that ended during the piece count through the
postmaster's reaped-children times. WAL is the server's insert position moving (every backend's
WAL, at once; `pg_stat_wal` lags by up to 10 s for other backends). It includes full-page
images, which Aurora's storage never writes, so as Aurora's log volume it is an upper bound.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
import psutil


class Usage(msgspec.Struct):
    cpu_s: float | None  # None: the server is not on this machine
    wal_bytes: int


def _postmaster(backend_pid: int) -> psutil.Process | None:
    try:
        backend = psutil.Process(backend_pid)
        parent = backend.parent()
    except psutil.Error:
        return None
    if parent is None or "postgres" not in parent.name():
        return None
    return parent


def _server_cpu_s(postmaster: psutil.Process) -> float:
    times = postmaster.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in postmaster.children():
        try:
            child_times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue  # ended between listing and reading: counted once reaped
        total += child_times.user + child_times.system
    return total


async def _point(conn: asyncpg.Connection, postmaster: psutil.Process | None) -> Usage:
    wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')")
    cpu = _server_cpu_s(postmaster) if postmaster is not None else None
    return Usage(cpu, int(wal))


class Meter:
    """`async with Meter(conn) as meter: …` then `meter.usage`."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.usage = Usage(None, 0)
        self._postmaster: psutil.Process | None = None
        self._start: Usage | None = None

    async def __aenter__(self) -> Meter:
        self._postmaster = _postmaster(await self.conn.fetchval("SELECT pg_backend_pid()"))
        self._start = await _point(self.conn, self._postmaster)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        end = await _point(self.conn, self._postmaster)
        assert self._start is not None
        cpu = None
        if end.cpu_s is not None and self._start.cpu_s is not None:
            cpu = end.cpu_s - self._start.cpu_s
        self.usage = Usage(cpu, end.wal_bytes - self._start.wal_bytes)
