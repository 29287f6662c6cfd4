"""Partition leases: heartbeat, fair share across live replicas, takeover, surplus release, drain.

Leases are per (consumer, stream, partition). This replica runs a few readers per stream over the
partitions it leases; a semaphore caps the batch transactions in flight across readers.

A lease's owner is this process, not only its replica id: `<replica id>#<incarnation>`, with a fresh
incarnation at every start. A process that comes back under the same replica id (Fly keeps the
machine id across an OOM kill or a restart) is never taken for its dead predecessor: it takes that
predecessor's leases over at once (a new epoch fences anything the old process might still commit)
instead of renewing them by name without reading.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import asyncpg

from floyo_pipeline import metrics
from floyo_pipeline.api import Consumer
from floyo_pipeline.engine.batch import BatchRunner, Lease, ReadLimits, RetryPolicy
from floyo_pipeline.engine.errors import is_transient
from floyo_pipeline.engine.wakeups import WakeHub
from floyo_pipeline.engine.worker import StreamReader
from floyo_pipeline.logs import get_logger
from floyo_pipeline.queries import Q

log = get_logger(__name__)

Key = tuple[str, str, int]
RELEASE_TIMEOUT_SECONDS = 3.0


class WorkerCrashed(Exception):
    """A reader died of an error that is neither transient nor a row's fault."""


@dataclass(frozen=True)
class EngineConfig:
    replica_id: str
    batch_size: int
    lease_ttl: float
    max_concurrency: int
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    readers_per_stream: int = 4
    batch_max_bytes: int = 4 * 1024 * 1024
    max_row_bytes: int = 4 * 1024 * 1024
    drain_seconds: float = 20.0
    """How long a stop waits for the batches in flight before abandoning them (they roll back)."""

    @property
    def limits(self) -> ReadLimits:
        return ReadLimits(self.batch_size, self.batch_max_bytes, self.max_row_bytes)

    @property
    def tick(self) -> float:
        return max(0.2, min(self.lease_ttl / 3, 5.0))


class LeaseManager:
    """Owns this replica's leases and the readers that use them."""

    def __init__(
        self, pool: asyncpg.Pool, consumers: Sequence[Consumer], config: EngineConfig, hub: WakeHub
    ) -> None:
        self.pool = pool
        self.config = config
        self.hub = hub
        self.owner = f"{config.replica_id}#{secrets.token_hex(4)}"
        self._predecessors: str | None = config.replica_id
        self.consumers = list(consumers)
        self.semaphore = asyncio.Semaphore(config.max_concurrency)
        # Several readers per stream, each over a fixed share of the partitions (partition modulo the
        # group count), so that one batch's database work overlaps another's Python work.
        self.readers: dict[tuple[str, int], StreamReader] = {}
        streams = sorted({sub.stream for c in self.consumers for sub in c.subscriptions})
        for stream in streams:
            subscribed = [c for c in self.consumers if c.subscription(stream) is not None]
            for group in range(config.readers_per_stream):
                runner = BatchRunner(stream, subscribed, config.limits, config.retry)
                reader = StreamReader(
                    runner, pool, self.owner, self.semaphore, config.tick, partial(hub.rows_found, stream)
                )
                self.readers[(stream, group)] = reader
        self.tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self.crash: BaseException | None = None

    @property
    def held(self) -> dict[Key, Lease]:
        return {lease.key: lease for reader in self.readers.values() for lease in reader.leases.values()}

    async def prepare(self) -> None:
        """Create the checkpoint rows of every consumer and stream it subscribes to, and forget the
        earlier incarnations of this replica (they are dead: this process has their name)."""
        async with self.pool.acquire() as conn, conn.transaction():
            for consumer in self.consumers:
                for sub in consumer.subscriptions:
                    await conn.execute(Q["ensure_checkpoints"], consumer.name, sub.stream)
            await conn.execute(Q["replica_forget_predecessors"], self.config.replica_id, self.owner)

    async def run(self, stopping: asyncio.Event) -> None:
        """Keep leases balanced until `stopping` is set; then drain and release."""
        for (stream, group), reader in self.readers.items():
            task = asyncio.create_task(reader.run(), name=f"reader:{stream}/{group}")
            task.add_done_callback(self._on_reader_done)
            self.tasks.append(task)
            self.hub.register(stream, reader)
        try:
            while not stopping.is_set():
                try:
                    await self.tick()
                except Exception as err:
                    # A database outage must not kill the replica: leases simply expire (readers are
                    # fenced at commit) and are claimed again once the database answers.
                    if not is_transient(err):
                        raise
                    log.warning("lease.tick_failed", error_class=type(err).__name__)
                if self.crash is not None:
                    raise WorkerCrashed(str(self.crash)) from self.crash
                self._changed.clear()
                stop_wait = asyncio.ensure_future(stopping.wait())
                change_wait = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait(
                        {stop_wait, change_wait},
                        timeout=self.config.tick,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    stop_wait.cancel()
                    change_wait.cancel()
        finally:
            await self.drain()

    async def tick(self) -> None:
        me, ttl = self.owner, self.config.lease_ttl
        async with self.pool.acquire() as conn:
            await conn.execute(Q["replica_heartbeat"], me, ttl)
            renewed = await conn.fetch(Q["lease_renew"], me, ttl)
            still_mine = {(r["consumer"], r["stream"], r["partition"]): r["lease_epoch"] for r in renewed}
            for (stream, _), reader in self.readers.items():
                lost = [k for k, lease in reader.leases.items() if still_mine.get(lease.key) != lease.epoch]
                if lost:
                    await reader.remove(lost)
                    log.warning("lease.lost", stream=stream, leases=[f"{c}/{p}" for c, p in lost])
            live = max(1, int(await conn.fetchval(Q["replicas_live"])))
            total = int(await conn.fetchval(Q["lease_total"], [c.name for c in self.consumers]))
            fair = math.ceil(total / live)
            held = len(self.held)
            if held < fair:
                claimed = await conn.fetch(
                    Q["lease_claim"],
                    me,
                    [c.name for c in self.consumers],
                    ttl,
                    fair - held,
                    self._predecessors,
                )
                # Only the first claim takes over a predecessor's live leases: two processes that
                # share a replica id by mistake must not keep taking leases from each other.
                self._predecessors = None
                by_reader: dict[tuple[str, int], list[Lease]] = defaultdict(list)
                for r in claimed:
                    pending = {int(t): int(i) for t, i in r["pending"].items()}
                    lease = Lease(
                        r["consumer"],
                        r["stream"],
                        r["partition"],
                        r["lease_epoch"],
                        r["position_txid"],
                        r["position_id"],
                        pending,
                    )
                    by_reader[(lease.stream, lease.partition % self.config.readers_per_stream)].append(lease)
                for key, leases in by_reader.items():
                    await self.readers[key].add(leases)
                if claimed:
                    log.info(
                        "lease.acquired",
                        count=len(claimed),
                        held=len(self.held),
                        fair_share=fair,
                        live_replicas=live,
                    )
        if held > fair:
            await self._release_surplus(held - fair)
        metrics.LEASES_HELD.set(len(self.held))

    def _on_reader_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self.crash is None:
            self.crash = task.exception()
            log.error("task.crashed", task=task.get_name(), exc_info=task.exception())
        self._changed.set()

    async def _release_surplus(self, surplus: int) -> None:
        """Give back `surplus` leases, from the readers holding the most, after their batch in flight."""
        released: list[Lease] = []
        while len(released) < surplus:
            reader = max(self.readers.values(), key=lambda r: len(r.leases))
            if not reader.leases:
                break
            take = min(surplus - len(released), max(1, len(reader.leases) // 2))
            # Whole partitions first (every consumer of one), so that both sides keep reading once.
            keys = sorted(reader.leases, key=lambda k: (k[1], k[0]))[-take:]
            released += await reader.remove(keys)
        async with self.pool.acquire() as conn:
            for lease in released:
                await conn.execute(Q["lease_release"], *lease.key, self.owner, lease.epoch)
        log.info("lease.released", count=len(released), held=len(self.held))

    async def drain(self) -> None:
        """Stop taking batches, let the ones in flight finish (or abandon them once `drain_seconds`
        have passed: their transactions roll back whole), release every lease and leave."""
        for reader in self.readers.values():
            reader.stop()
        running = [t for t in self.tasks if not t.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=self.config.drain_seconds)
            if late:
                log.warning(
                    "lease.drain_abandoned", batches=len(late), drain_seconds=self.config.drain_seconds
                )
                for task in late:
                    task.cancel()
                await asyncio.wait(late, timeout=RELEASE_TIMEOUT_SECONDS)
        count = len(self.held)
        for (stream, _), reader in self.readers.items():
            self.hub.unregister(stream, reader)
            reader.leases.clear()
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT_SECONDS), self.pool.acquire() as conn:
                await conn.execute(Q["lease_release_all"], self.owner)
                await conn.execute(Q["replica_remove"], self.owner)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            log.warning("lease.release_failed", error_class=type(err).__name__)
        metrics.LEASES_HELD.set(0)
        log.info("lease.released", count=count, held=0)
