"""Partition leases: heartbeat, fair share across live replicas, takeover, surplus release, drain.

Leases are per (consumer, stream, partition). This process runs a few readers per stream, each over
a fixed share of the partitions it leases (partition modulo the reader count, so that one batch's
database work overlaps another's Python work); a semaphore caps the batch transactions in flight
across readers. The readers run in one task group under the lease manager: a reader that dies of an
error that is neither transient nor a row's fault ends the manager, and with it the service.

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

import anyio
import asyncpg

from floyo_pipeline import metrics
from floyo_pipeline.api import Consumer
from floyo_pipeline.engine.apply import RetryPolicy
from floyo_pipeline.engine.batch import BatchRunner, ReadLimits
from floyo_pipeline.engine.checkpoints import CheckpointStore, Key, Lease
from floyo_pipeline.engine.errors import DATABASE_ERRORS, is_transient
from floyo_pipeline.engine.reader import StreamReader
from floyo_pipeline.engine.wakeups import WakeHub
from floyo_pipeline.logs import get_logger

log = get_logger(__name__)

RELEASE_TIMEOUT_SECONDS = 3.0


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
    """Owns this process's leases and the readers that use them."""

    def __init__(
        self, pool: asyncpg.Pool, consumers: Sequence[Consumer], config: EngineConfig, hub: WakeHub
    ) -> None:
        self.pool = pool
        self.config = config
        self.hub = hub
        self.store = CheckpointStore(f"{config.replica_id}#{secrets.token_hex(4)}", config.replica_id)
        self.consumers = list(consumers)
        self.semaphore = asyncio.Semaphore(config.max_concurrency)
        self.readers: dict[tuple[str, int], StreamReader] = {}
        streams = sorted({sub.stream for c in self.consumers for sub in c.subscriptions})
        for stream in streams:
            subscribed = [c for c in self.consumers if c.subscription(stream) is not None]
            for group in range(config.readers_per_stream):
                runner = BatchRunner(stream, subscribed, config.limits, self.store, config.retry)
                on_rows = partial(hub.rows_found, stream)
                self.readers[(stream, group)] = StreamReader(
                    runner, pool, self.semaphore, config.tick, on_rows
                )
        self._first_claim = True
        self._running = 0
        self._readers_done = anyio.Event()
        self.crash: BaseException | None = None

    @property
    def owner(self) -> str:
        return self.store.owner

    @property
    def held(self) -> dict[Key, Lease]:
        return {lease.key: lease for reader in self.readers.values() for lease in reader.leases.values()}

    async def prepare(self) -> None:
        """Create the checkpoint rows of every consumer and stream it subscribes to, forget the
        earlier incarnations of this replica and announce this one (before any component runs: a
        scheduled job's claim is alive while its owner's row is)."""
        async with self.pool.acquire() as conn, conn.transaction():
            for consumer in self.consumers:
                for sub in consumer.subscriptions:
                    await self.store.ensure(conn, consumer.name, sub.stream)
            await self.store.forget_predecessors(conn)
            await self.store.heartbeat(conn, self.config.lease_ttl)

    async def run(self, stopping: asyncio.Event) -> None:
        """Keep leases balanced until `stopping` is set; then drain and release."""
        try:
            async with anyio.create_task_group() as tg:
                for (stream, group), reader in self.readers.items():
                    self.hub.register(stream, reader)
                    self._running += 1
                    tg.start_soon(self._read, reader, name=f"reader:{stream}/{group}")
                await self._balance(stopping)
                await self._stop_readers(tg.cancel_scope)
        finally:
            with anyio.CancelScope(shield=True):
                await self._leave()

    async def _read(self, reader: StreamReader) -> None:
        try:
            await reader.run()
        except Exception as err:
            self.crash = err
            raise
        finally:
            self._running -= 1
            if not self._running:
                self._readers_done.set()

    async def _balance(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.tick()
            except Exception as err:
                # A database outage must not kill the replica: leases simply expire (readers are
                # fenced at commit) and are claimed again once the database answers.
                if not is_transient(err):
                    raise
                log.warning("lease.tick_failed", error_class=type(err).__name__)
            with anyio.move_on_after(self.config.tick):
                await stopping.wait()

    async def _stop_readers(self, readers: anyio.CancelScope) -> None:
        """Stop taking batches and let the ones in flight finish; past `drain_seconds`, abandon them
        (their transactions roll back whole)."""
        for reader in self.readers.values():
            reader.stop()
        with anyio.move_on_after(self.config.drain_seconds):
            await self._readers_done.wait()
        if self._running:
            log.warning(
                "lease.drain_abandoned", batches=self._running, drain_seconds=self.config.drain_seconds
            )
            readers.cancel()

    async def tick(self) -> None:
        ttl = self.config.lease_ttl
        async with self.pool.acquire() as conn:
            await self.store.heartbeat(conn, ttl)
            still_mine = await self.store.renew(conn, ttl)
            for (stream, _), reader in self.readers.items():
                lost = [k for k, lease in reader.leases.items() if still_mine.get(lease.key) != lease.epoch]
                if lost:
                    await reader.remove(lost)
                    log.warning("lease.lost", stream=stream, leases=[f"{c}/{p}" for c, p in lost])
            live = await self.store.live_replicas(conn)
            fair = math.ceil(await self.store.lease_count(conn, [c.name for c in self.consumers]) / live)
            held = len(self.held)
            if held < fair:
                claimed = await self.store.claim(
                    conn, [c.name for c in self.consumers], ttl, fair - held, self._first_claim
                )
                # Only the first claim takes over a predecessor's live leases: two processes that
                # share a replica id by mistake must not keep taking leases from each other.
                self._first_claim = False
                by_reader: dict[tuple[str, int], list[Lease]] = defaultdict(list)
                for lease in claimed:
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
                await self.store.release(conn, lease)
        log.info("lease.released", count=len(released), held=len(self.held))

    async def _leave(self) -> None:
        """Release every lease and the replica row (bounded: the database may be gone)."""
        count = len(self.held)
        for (stream, _), reader in self.readers.items():
            self.hub.unregister(stream, reader)
            reader.leases.clear()
        try:
            with anyio.fail_after(RELEASE_TIMEOUT_SECONDS):
                async with self.pool.acquire() as conn:
                    await self.store.leave(conn)
        except DATABASE_ERRORS as err:
            log.warning("lease.release_failed", error_class=type(err).__name__)
        metrics.LEASES_HELD.set(0)
        log.info("lease.released", count=count, held=0)
