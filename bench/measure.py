"""The measurements, in one run on one database: the Postgres ceiling and ingest overhead, storage,
the catch-up of a backlog (with CPU time and connections), steady-load latency by rate and wake-up,
and catch-up by batch size and readers. `measure_all` runs them in order and returns the results
(the shape bench/results/latest.json keeps)."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.database import (
    bench_database,
    index_sizes,
    pipeline_tables,
    processed_rows,
    seed_users,
    service_connections,
)
from bench.database import table_sizes as sizes_of
from bench.processes import postmaster_pid, tree_cpu_seconds
from bench.queries import BQ
from bench.service import Replicas, quantile, start_replicas
from bench.workload import (
    APPS,
    RAW,
    STREAM,
    EventClock,
    backlog_span,
    batched_insert,
    copy_insert,
    cursor_read_raw,
    insert_backlog,
    paced_insert,
    paced_span,
    synthetic_rows,
)
from floyo_pipeline.config import Settings
from floyo_pipeline.connections import connect
from floyo_pipeline.target import Target

TARGET_RATES = (1000, 10_000)
"""The steady rates the latency targets are stated at (docs/benchmark.md)."""
WAKEUP_RATE = 1000
"""The rate the poll-only wake-up is measured at, beside NOTIFY."""
PIPELINE_INDEX = "telemetry_events_pipeline_idx"
"""The stream's one index that is the pipeline's (pipeline_txid, id)."""
STEADY_WAIT_SECONDS = 60.0
"""How long a steady phase waits for the last rows' effects before it reads the histogram."""


@dataclass(frozen=True)
class Options:
    rows: int = 1_000_000
    users: int = 2000
    ceiling_rows: int = 200_000
    batch_size: int = 5000
    readers: int = 4
    replicas: tuple[int, ...] = (1,)
    """Replica counts of the main catch-up; the first one also carries the steady load."""
    steady_seconds: float = 10.0
    rates: tuple[int, ...] = (500, 1000, 2000, 5000, 10_000)
    poll_wakeup: bool = True
    """Measure the poll-only wake-up beside NOTIFY at WAKEUP_RATE."""
    sweep_rows: int = 100_000
    batch_sizes: tuple[int, ...] = (500, 1000, 2000, 5000, 10_000)
    readers_sweep: tuple[int, ...] = (1, 2, 4, 8)


@dataclass(frozen=True)
class Mark:
    """A point of a measurement window: time, rows processed, CPU-seconds used so far."""

    at: float
    rows: int
    service_cpu: float | None
    postgres_cpu: float | None


def per_million(table: dict[str, Any]) -> dict[str, Any]:
    """A table's size as MiB per million rows (table with TOAST, indexes, both)."""
    rows = int(table["rows"])
    scale = 1e6 / max(rows, 1) / 2**20
    return {
        "rows": rows,
        "table_mib_per_million": round(table["table_bytes"] * scale, 1),
        "index_mib_per_million": round(table["index_bytes"] * scale, 1),
        "total_mib_per_million": round((table["table_bytes"] + table["index_bytes"]) * scale, 1),
    }


def cpu_figures(first: Mark, last: Mark) -> dict[str, Any]:
    """CPU-seconds per 1,000 rows and cores busy, for the service and for Postgres, over a window."""
    rows, seconds = last.rows - first.rows, last.at - first.at
    figures: dict[str, Any] = {"cpu_window_rows": rows}
    for name, a, b in (
        ("service", first.service_cpu, last.service_cpu),
        ("postgres", first.postgres_cpu, last.postgres_cpu),
    ):
        known = a is not None and b is not None and rows > 0 and seconds > 0
        used = (b or 0.0) - (a or 0.0)
        figures[f"{name}_cpu_s_per_1k_rows"] = round(used / rows * 1000, 4) if known else None
        figures[f"{name}_cores"] = round(used / seconds, 2) if known else None
    return figures


@dataclass
class Run:
    """The state of one run: the database, its users, the rows inserted into the stream so far."""

    db: Target
    conn: asyncpg.Connection
    users: list[uuid.UUID]
    options: Options
    postmaster: int | None
    insert_ceiling: float = 0.0
    inserted: int = 0
    clock: EventClock = field(default_factory=lambda: EventClock(datetime(2026, 2, 1, tzinfo=UTC)))
    exit_codes: list[int] = field(default_factory=list)

    async def caught_up(self) -> bool:
        return await processed_rows(self.conn) >= self.inserted

    async def wait_caught_up(self, interval: float, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not await self.caught_up():
            if deadline is not None and time.perf_counter() > deadline:
                return False
            await asyncio.sleep(interval)
        return True

    def postgres_cpu(self) -> float | None:
        return None if self.postmaster is None else tree_cpu_seconds(self.postmaster)

    async def mark(self, group: Replicas) -> Mark:
        at = time.perf_counter()
        rows = await processed_rows(self.conn)
        return Mark(at, rows, group.cpu_seconds(), self.postgres_cpu())

    def start(self, count: int, batch_size: int, readers: int, wakeup: str = "notify") -> Replicas:
        url = self.db.service_url
        return start_replicas(url, count, batch_size=batch_size, readers=readers, wakeup=wakeup)

    def stopped(self, group: Replicas) -> None:
        self.exit_codes.extend(group.stop())

    async def insert(self, rows: int, seed: int, *, one_transaction: bool) -> None:
        backlog = synthetic_rows(self.users, rows, seed, self.clock.take(backlog_span(rows, len(self.users))))
        await insert_backlog(self.conn, backlog, one_transaction=one_transaction)
        self.inserted += rows


async def ceiling_and_ingest(run: Run) -> dict[str, Any]:
    """The Postgres ceiling (batched insert, COPY, cursor read) and the ingest overhead of the
    pipeline's column, index and trigger; leaves the stream empty."""
    conn = run.conn
    await conn.execute(BQ["create_raw_table"])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    sample = synthetic_rows(run.users, run.options.ceiling_rows, seed=1, start=start)
    raw: list[float] = []
    piped: list[float] = []
    postgres_cpu: dict[str, float | None] = {RAW: 0.0, STREAM: 0.0}

    async def insert(table: str) -> float:
        before = run.postgres_cpu()
        rate = await batched_insert(conn, table, sample)
        after, spent = run.postgres_cpu(), postgres_cpu[table]
        known = before is not None and after is not None and spent is not None
        postgres_cpu[table] = (spent or 0.0) + (after or 0.0) - (before or 0.0) if known else None
        return rate

    # Alternate (and swap the order each round) so drift on a shared machine hits both alike; the
    # overhead is the median of the paired rounds.
    rounds = 6
    for round_ in range(rounds):
        first, second = (RAW, STREAM)[:: 1 if round_ % 2 == 0 else -1]
        a = await insert(first)
        b = await insert(second)
        raw.append(a if first == RAW else b)
        piped.append(b if first == RAW else a)
    per_1k = {
        table: None if spent is None else round(spent / (rounds * len(sample)) * 1000, 4)
        for table, spent in postgres_cpu.items()
    }
    copy_rate = await copy_insert(run.db.admin_url, RAW, sample)
    read_rate = await cursor_read_raw(conn)
    raw_table = next(t for t in await sizes_of(conn, ["public"]) if t["name"] == RAW)
    await conn.execute(BQ["drop_raw_table"])
    await conn.execute(BQ["truncate_stream"])
    run.insert_ceiling = max(raw)
    return {
        "ceiling": {
            "batched_insert_rows_per_s": round(max(raw)),
            "copy_rows_per_s": round(copy_rate),
            "cursor_read_rows_per_s": round(read_rate),
        },
        "ingest": {
            "plain_rows_per_s": round(max(raw)),
            "pipeline_rows_per_s": round(max(piped)),
            "overhead_percent": round(
                (1 - statistics.median(p / r for p, r in zip(piped, raw, strict=True))) * 100, 1
            ),
            "plain_postgres_cpu_s_per_1k_rows": per_1k[RAW],
            "pipeline_postgres_cpu_s_per_1k_rows": per_1k[STREAM],
        },
        "raw_table": per_million(raw_table),
    }


async def catch_up(run: Run, count: int) -> tuple[dict[str, Any], Replicas]:
    """A fresh backlog of `rows`, vacuumed, then `count` replicas started on it: rows per second from
    their start to the last row's effects (start-up included), peak RSS, connections, and CPU per row
    from all being ready to the end. Returns the replicas still running (the caller stops them)."""
    await run.insert(run.options.rows, seed=2, one_transaction=False)
    await run.conn.execute(BQ["vacuum_stream"])
    group = run.start(count, run.options.batch_size, run.options.readers)
    try:
        started = time.perf_counter()
        await group.ready()
        first = await run.mark(group)
        connections = await service_connections(run.conn)
        while not await run.caught_up():
            await asyncio.sleep(0.25)
            connections = max(connections, await service_connections(run.conn))
        elapsed = time.perf_counter() - started
        last = await run.mark(group)
    except BaseException:
        run.stopped(group)
        raise
    rate = run.options.rows / elapsed
    return {
        "replicas": count,
        "seconds": round(elapsed, 1),
        "rows_per_s": round(rate),
        "ratio_to_batched_insert": round(rate / run.insert_ceiling, 3),
        "peak_rss_mib": round(group.peak_rss_mib(), 1),
        "connections_peak": connections,
        "pool_size_per_replica": Settings().max_concurrency + 2,
        **cpu_figures(first, last),
    }, group


async def storage(run: Run, raw_table: dict[str, Any]) -> dict[str, Any]:
    """The stream's size per million rows (and its indexes'), the outputs' and the state's."""
    tables = await pipeline_tables(run.conn)
    stream = next(t for t in tables["streams"] if t["name"] == "telemetry_events")
    scale = 1e6 / max(int(stream["rows"]), 1) / 2**20
    indexes = {name: round(size * scale, 1) for name, size in (await index_sizes(run.conn, STREAM)).items()}
    return {
        "users": run.options.users,
        "stream": per_million(stream) | {"indexes_mib_per_million": indexes},
        "stream_without_pipeline": raw_table,
        "pipeline_index": PIPELINE_INDEX,
        "outputs": tables["outputs"],
        "state": tables["state"],
    }


async def steady_load(run: Run, group: Replicas, rate: int) -> dict[str, Any]:
    """`rate` rows/s for --steady-seconds on a drained stream; insert→effect latency percentiles from
    the replicas' histograms."""
    before = await group.latency()
    start = run.clock.take(paced_span(run.options.steady_seconds))
    rows, achieved = await paced_insert(run.conn, run.users, rate, run.options.steady_seconds, start)
    run.inserted += rows
    await run.wait_caught_up(0.1, timeout=STEADY_WAIT_SECONDS)
    after = await group.latency()
    return {
        "rows": rows,
        "target_rate": rate,
        "achieved_rate": round(achieved),
        **{f"p{q}_ms": round(quantile(before, after, q / 100) * 1000, 1) for q in (50, 90, 99)},
    }


async def poll_only(run: Run, count: int) -> dict[str, Any]:
    """Steady load at WAKEUP_RATE with FLOYO_WAKEUP=poll (the default interval): no hints at all."""
    group = run.start(count, run.options.batch_size, run.options.readers, wakeup="poll")
    try:
        await group.ready()
        await run.wait_caught_up(0.1)
        phase = await steady_load(run, group, WAKEUP_RATE)
    finally:
        run.stopped(group)
    return {"wakeup": "poll", "poll_interval_s": Settings().poll_interval_seconds, **phase}


async def sweep_point(run: Run, batch_size: int, readers: int) -> dict[str, Any]:
    """One replica, ready and idle, then --sweep-rows committed in one transaction: rows per second
    from that commit to the last row's effects (no start-up in it)."""
    group = run.start(1, batch_size, readers)
    try:
        await group.ready()
        await run.wait_caught_up(0.1)
        await run.insert(run.options.sweep_rows, seed=3, one_transaction=True)
        first = await run.mark(group)
        await run.wait_caught_up(0.05)
        last = await run.mark(group)
        rss = group.peak_rss_mib()
    finally:
        run.stopped(group)
    rate = run.options.sweep_rows / (last.at - first.at)
    return {
        "batch_size": batch_size,
        "readers_per_stream": readers,
        "seconds": round(last.at - first.at, 2),
        "rows_per_s": round(rate),
        "ratio_to_batched_insert": round(rate / run.insert_ceiling, 3),
        "peak_rss_mib": round(rss, 1),
        **cpu_figures(first, last),
    }


async def measure_all(options: Options, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Every measurement of the benchmark, in one run on one database."""
    # The embedded server's data (a gigabyte for a 1M-row run) goes once the server has stopped.
    with tempfile.TemporaryDirectory(prefix="floyo-bench-") as tmp:
        async with bench_database(Path(tmp)) as db:
            conn = await connect(db.admin_url)
            try:
                users = await seed_users(conn, options.users, APPS)
                run = Run(db, conn, users, options, await postmaster_pid(conn))
                return await _phases(run, progress)
            finally:
                await conn.close()


async def _phases(run: Run, progress: Callable[[str], None]) -> dict[str, Any]:
    options = run.options
    results: dict[str, Any] = {
        "rows": options.rows,
        "machine": {"cpus": os.cpu_count()},
        "options": asdict(options),
        "service": {
            "batch_size": options.batch_size,
            "readers_per_stream": options.readers,
            "replicas": options.replicas[0],
            "replica_counts": list(options.replicas),
        },
    }
    progress("ceiling and ingest overhead")
    ceiling = await ceiling_and_ingest(run)
    results["ceiling"], results["ingest"] = ceiling["ceiling"], ceiling["ingest"]

    progress(f"catch-up of {options.rows:,} rows, {options.replicas[0]} replica(s)")
    main, group = await catch_up(run, options.replicas[0])
    try:
        results["catch_up"] = main
        results["storage"] = await storage(run, ceiling["raw_table"])
        results["steady"] = []
        for rate in options.rates:
            progress(f"steady load at {rate:,} rows/s (NOTIFY)")
            results["steady"].append(await steady_load(run, group, rate))
    finally:
        run.stopped(group)

    if options.poll_wakeup:
        progress(f"steady load at {WAKEUP_RATE:,} rows/s (poll only)")
        results["poll_wakeup"] = await poll_only(run, options.replicas[0])

    results["scale_out"] = [{k: main[k] for k in _SCALE_OUT_KEYS}]
    for count in options.replicas[1:]:
        progress(f"catch-up of {options.rows:,} rows, {count} replicas")
        more, group = await catch_up(run, count)
        run.stopped(group)
        results["scale_out"].append({k: more[k] for k in _SCALE_OUT_KEYS})

    sweeps: dict[str, Any] = {"rows": options.sweep_rows, "batch_size": [], "readers": []}
    for size in options.batch_sizes:
        progress(f"catch-up of {options.sweep_rows:,} rows at batch size {size}")
        sweeps["batch_size"].append(await sweep_point(run, size, options.readers))
    for readers in options.readers_sweep:
        progress(f"catch-up of {options.sweep_rows:,} rows with {readers} reader(s) per stream")
        sweeps["readers"].append(await sweep_point(run, options.batch_size, readers))
    if sweeps["batch_size"] or sweeps["readers"]:
        results["sweeps"] = sweeps
    results["service_exit_codes"] = run.exit_codes
    return results


_SCALE_OUT_KEYS = (
    "replicas",
    "seconds",
    "rows_per_s",
    "ratio_to_batched_insert",
    "peak_rss_mib",
    "connections_peak",
    "service_cpu_s_per_1k_rows",
    "postgres_cpu_s_per_1k_rows",
    "service_cores",
    "postgres_cores",
)


def wanted_rates(rates: Sequence[int]) -> tuple[int, ...]:
    """The rates asked for, with the targets' rates always among them, in order."""
    return tuple(sorted(set(rates) | set(TARGET_RATES)))
