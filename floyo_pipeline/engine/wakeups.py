"""Wake-up hints: NOTIFY, Realtime and the poll timer tell the stream readers to look now.

Hints only: losing one delays processing until the next hint or poll, never loses a row, because the
durable position is the checkpoint in Postgres.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from floyo_pipeline import metrics
from floyo_pipeline.connections import connect
from floyo_pipeline.engine.errors import DATABASE_ERRORS, backoff_delays
from floyo_pipeline.logs import get_logger

log = get_logger(__name__)

NOTIFY_CHANNEL = "floyo_pipeline"
LISTEN_APPLICATION_NAME = "floyo_pipeline.listen"
TOLERATED_UNANSWERED = 16
HINT_GAP_SECONDS = 0.005
MAX_HINT_GAP_SECONDS = 0.5


class Wakeable(Protocol):
    def wake_up(self) -> None: ...


class HintPacer:
    """Paces the hint wake-ups of one stream. Any role may call pg_notify (and a Realtime message is no
    more trustworthy), so hints that keep waking readers who then find no row are coalesced, doubling
    the gap up to MAX_HINT_GAP_SECONDS; a read that finds rows restores immediate wake-ups. Readers
    that share a hint mostly find nothing for each other (other partitions, other replicas): a run of
    TOLERATED_UNANSWERED such wake-ups is normal."""

    def __init__(self) -> None:
        self.unanswered = 0
        self.last = -math.inf
        self.timer: asyncio.TimerHandle | None = None

    def gap(self) -> float:
        excess = self.unanswered - TOLERATED_UNANSWERED
        return 0.0 if excess < 0 else min(MAX_HINT_GAP_SECONDS, HINT_GAP_SECONDS * 2**excess)


class WakeHub:
    """Routes a hint for a stream to the readers of that stream."""

    def __init__(self) -> None:
        self._targets: dict[str, set[Wakeable]] = defaultdict(set)
        self._pacers: dict[str, HintPacer] = defaultdict(HintPacer)

    def register(self, stream: str, target: Wakeable) -> None:
        self._targets[stream].add(target)

    def unregister(self, stream: str, target: Wakeable) -> None:
        self._targets[stream].discard(target)

    def wake(self, source: str, stream: str) -> None:
        """Wake the readers of `stream` now, or once its pacer allows (one wake-up for the hints between)."""
        metrics.WAKEUPS.labels(source).inc()
        targets = self._targets.get(stream)
        if not targets:
            return  # a stream no reader of this replica reads (or a forged name)
        pacer = self._pacers[stream]
        if pacer.timer is not None:
            return
        wait = pacer.last + pacer.gap() - time.monotonic()
        if wait <= 0:
            self._wake_paced(stream)
        else:
            pacer.timer = asyncio.get_running_loop().call_later(wait, self._wake_paced, stream)

    def _wake_paced(self, stream: str) -> None:
        pacer = self._pacers[stream]
        pacer.timer = None
        pacer.last = time.monotonic()
        pacer.unanswered += 1
        for target in self._targets.get(stream, ()):
            target.wake_up()

    def rows_found(self, stream: str) -> None:
        """A reader of `stream` found rows: hints are answered, wake-ups are immediate again."""
        self._pacers[stream].unanswered = 0

    def wake_all(self, source: str) -> None:
        metrics.WAKEUPS.labels(source).inc()
        for targets in self._targets.values():
            for target in targets:
                target.wake_up()


@dataclass
class SourceHealth:
    """What /readyz reports of a wake-up source."""

    name: str
    connected: bool = False
    reason: str | None = "not started"
    # Sources that listen per stream: each stream's trouble (None while it is fine).
    streams: dict[str, str | None] = field(default_factory=dict)

    def up(self) -> None:
        self.connected, self.reason = True, None
        metrics.SOURCE_CONNECTED.labels(self.name).set(1)

    def down(self, reason: str) -> None:
        self.connected, self.reason = False, reason
        metrics.SOURCE_CONNECTED.labels(self.name).set(0)


class WakeupSource(Protocol):
    """A supervised, long-running source of hints; `run` returns only when cancelled."""

    health: SourceHealth

    async def run(self, hub: WakeHub) -> None: ...


class PollSource:
    """The safety net, always on: wakes every reader every interval."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.health = SourceHealth("poll")

    async def run(self, hub: WakeHub) -> None:
        self.health.up()
        while True:
            await asyncio.sleep(self.interval)
            hub.wake_all("poll")


class NotifySource:
    """LISTEN on a dedicated connection (not pooled); reconnects with backoff, catches up on connect."""

    def __init__(self, url: str, check_interval: float = 5.0) -> None:
        self.url = url
        self.check_interval = check_interval
        self.health = SourceHealth("notify")

    async def run(self, hub: WakeHub) -> None:
        delays = iter(backoff_delays())
        while True:
            try:
                await self._listen(hub)
            except DATABASE_ERRORS as err:
                if self.health.connected:  # it was up: a fresh outage starts the backoff again
                    delays = iter(backoff_delays())
                delay = next(delays)
                self.health.down(f"{type(err).__name__}: {err}"[:300])
                log.warning(
                    "source.reconnecting",
                    source="notify",
                    error_class=type(err).__name__,
                    delay=round(delay, 3),
                )
                await asyncio.sleep(delay)

    async def _listen(self, hub: WakeHub) -> None:
        """One LISTEN connection, until it drops (raises) or the task is cancelled."""
        conn = await connect(self.url, server_settings={"application_name": LISTEN_APPLICATION_NAME})
        try:
            closed = asyncio.Event()
            conn.add_termination_listener(lambda _c: closed.set())

            def on_notify(_c: object, _pid: int, _channel: str, payload: str) -> None:
                hub.wake("notify", payload)  # the payload is the stream's name

            await conn.add_listener(NOTIFY_CHANNEL, on_notify)
            self.health.up()
            log.info("source.connected", source="notify")
            hub.wake_all("notify")  # catch up on whatever arrived while not listening
            while not closed.is_set():
                try:
                    await asyncio.wait_for(closed.wait(), timeout=self.check_interval)
                except TimeoutError:
                    await conn.execute("select 1")  # notices a half-open connection
            raise ConnectionError("listen connection closed")
        finally:
            if not conn.is_closed():
                conn.terminate()
