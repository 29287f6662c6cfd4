"""What local processes use, read from /proc (Linux): CPU time of a process tree, peak RSS. Elsewhere
(or for a database on another machine) the readers return None."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg

from bench.queries import BQ

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 on), or None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _parents() -> dict[int, int]:
    parents = {}
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    return parents


def tree_cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a process and its descendants, the exited ones it waited for
    included (a process's cutime/cstime hold its reaped children's), so a postmaster's count keeps the
    backends that have come and gone."""
    if _stat(pid) is None:
        return None
    parents = _parents()
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, p in parents.items() if p == parent and child not in tree]
        tree.update(children)
        frontier.extend(children)
    ticks = 0
    for member in tree:
        fields = _stat(member)
        if fields is not None:
            ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / CLOCK_TICKS


def _command(pid: int) -> str:
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


async def postmaster_pid(conn: asyncpg.Connection) -> int | None:
    """The local postmaster behind `conn` (the parent of its backend), or None if Postgres is not a
    process of this machine."""
    backend = int(await conn.fetchval(BQ["backend_pid"]))
    fields = _stat(backend)
    if fields is None or _command(backend) != "postgres":
        return None
    parent = int(fields[1])
    return parent if _command(parent) == "postgres" else None


def peak_rss_mib(pid: int) -> float:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")
