"""Partition leases: heartbeat, fair share across live replicas, takeover, surplus release, drain.

One task per held lease runs batches (one transaction in flight per consumer and partition); a
semaphore caps the transactions in flight across all of them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from floyo_pipeline import metrics
from floyo_pipeline.api import Consumer
from floyo_pipeline.engine.batch import BatchRunner, Lease, RetryPolicy
from floyo_pipeline.engine.errors import is_transient
from floyo_pipeline.engine.wakeups import WakeHub
from floyo_pipeline.engine.worker import PartitionWorker
from floyo_pipeline.logs import get_logger
from floyo_pipeline.queries import Q

log = get_logger(__name__)

Key = tuple[str, str, int]


class WorkerCrashed(Exception):
    """A partition worker died of an error that is neither transient nor a row's fault."""


@dataclass(frozen=True)
class EngineConfig:
    replica_id: str
    batch_size: int
    lease_ttl: float
    max_concurrency: int
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def tick(self) -> float:
        return max(0.2, min(self.lease_ttl / 3, 5.0))


class _Held:
    def __init__(self, worker: PartitionWorker, task: asyncio.Task[None]) -> None:
        self.worker = worker
        self.task = task

    def wake_up(self) -> None:
        self.worker.wake.set()


class LeaseManager:
    """Owns this replica's leases and the workers that use them."""

    def __init__(
        self, pool: asyncpg.Pool, consumers: Sequence[Consumer], config: EngineConfig, hub: WakeHub
    ) -> None:
        self.pool = pool
        self.config = config
        self.hub = hub
        self.runners = {c.name: BatchRunner(c, config.batch_size, config.retry) for c in consumers}
        self.consumers = list(consumers)
        self.held: dict[Key, _Held] = {}
        self.semaphore = asyncio.Semaphore(config.max_concurrency)
        self._changed = asyncio.Event()
        self.crash: BaseException | None = None

    async def prepare(self) -> None:
        """Create the checkpoint rows of every consumer and stream it subscribes to."""
        async with self.pool.acquire() as conn, conn.transaction():
            for consumer in self.consumers:
                for sub in consumer.subscriptions:
                    await conn.execute(Q["ensure_checkpoints"], consumer.name, sub.stream)

    async def run(self, stopping: asyncio.Event) -> None:
        """Keep leases balanced until `stopping` is set; then drain and release."""
        try:
            while not stopping.is_set():
                try:
                    await self.tick()
                except Exception as err:
                    # A database outage must not kill the replica: leases simply expire (workers are
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
        me, ttl = self.config.replica_id, self.config.lease_ttl
        self._reap_finished()
        async with self.pool.acquire() as conn:
            await conn.execute(Q["replica_heartbeat"], me, ttl)
            renewed = await conn.fetch(Q["lease_renew"], me, ttl)
            still_mine = {(r["consumer"], r["stream"], r["partition"]): r["lease_epoch"] for r in renewed}
            for key, held in list(self.held.items()):
                if still_mine.get(key) != held.worker.lease.epoch:
                    log.warning("lease.lost", consumer=key[0], stream=key[1], partition=key[2])
                    held.worker.stop()
            live = max(1, int(await conn.fetchval(Q["replicas_live"])))
            total = int(await conn.fetchval(Q["lease_total"], [c.name for c in self.consumers]))
            fair = math.ceil(total / live)
            active = [k for k, h in self.held.items() if not h.worker.stopping]
            if len(active) < fair:
                claimed = await conn.fetch(
                    Q["lease_claim"], me, [c.name for c in self.consumers], ttl, fair - len(active)
                )
                for record in claimed:
                    self._start(
                        Lease(
                            record["consumer"],
                            record["stream"],
                            record["partition"],
                            record["lease_epoch"],
                            record["position_txid"],
                            record["position_id"],
                            dict(zip(record["pending_txids"], record["pending_after_ids"], strict=True)),
                        )
                    )
                if claimed:
                    log.info(
                        "lease.acquired",
                        count=len(claimed),
                        held=len(self.held),
                        fair_share=fair,
                        live_replicas=live,
                    )
        if len(active) > fair:
            await self._release_surplus(active[fair:])
        metrics.LEASES_HELD.set(len(self.held))

    def _start(self, lease: Lease) -> None:
        worker = PartitionWorker(
            lease, self.runners[lease.consumer], self.pool, self.config.replica_id, self.semaphore
        )
        task = asyncio.create_task(
            worker.run(), name=f"worker:{lease.consumer}/{lease.stream}/{lease.partition}"
        )
        held = _Held(worker, task)
        self.held[lease.key] = held
        self.hub.register(lease.stream, lease.partition, held)
        task.add_done_callback(self._on_worker_done)

    def _on_worker_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self.crash is None:
            self.crash = task.exception()
            log.error("task.crashed", task=task.get_name(), exc_info=task.exception())
        self._changed.set()

    def _reap_finished(self) -> None:
        for key, held in list(self.held.items()):
            if held.task.done():
                self._forget(key, held)

    def _forget(self, key: Key, held: _Held) -> None:
        self.hub.unregister(key[1], key[2], held)
        self.held.pop(key, None)

    async def _release_surplus(self, keys: list[Key]) -> None:
        stopping = [(k, self.held[k]) for k in keys if k in self.held]
        for _, held in stopping:
            held.worker.stop()
        await asyncio.gather(*(h.task for _, h in stopping), return_exceptions=True)
        async with self.pool.acquire() as conn:
            for key, held in stopping:
                await conn.execute(Q["lease_release"], *key, self.config.replica_id, held.worker.lease.epoch)
                self._forget(key, held)
        log.info("lease.released", count=len(stopping), held=len(self.held))

    async def drain(self) -> None:
        """Stop taking batches, let the ones in flight finish, release every lease and leave."""
        for held in self.held.values():
            held.worker.stop()
        await asyncio.gather(*(h.task for h in self.held.values()), return_exceptions=True)
        count = len(self.held)
        for key, held in list(self.held.items()):
            self._forget(key, held)
        try:
            async with self.pool.acquire() as conn:
                await conn.execute(Q["lease_release_all"], self.config.replica_id)
                await conn.execute(Q["replica_remove"], self.config.replica_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            log.warning("lease.release_failed", error_class=type(err).__name__)
        metrics.LEASES_HELD.set(0)
        log.info("lease.released", count=count, held=0)
