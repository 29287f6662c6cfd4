"""Supabase Realtime wake-up source: `postgres_changes` INSERT subscriptions as hints, supervised.

Realtime delivery is not guaranteed and has no replay, so this is a hint exactly like NOTIFY. The
maintained `realtime` client does the protocol; this module supervises it:

- one client per session, its own reconnect loop switched off: any trouble (socket closed, a channel
  errored, closed or timed out, a refused join) ends the session, and the next one starts after a
  capped, jittered exponential backoff, forever;
- ready only once the server said "Subscribed to PostgreSQL" on every stream's channel (the
  SUBSCRIBED join reply arrives before the server listens to Postgres), then a catch-up pass;
- callbacks run inside the client's receive loop, so they only hand the hint to the hub and return.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from functools import partial
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import anyio
from realtime import AsyncRealtimeClient, RealtimePostgresChangesListenEvent, RealtimeSubscribeStates

from floyo_pipeline.config import ConfigError, Settings
from floyo_pipeline.engine.wakeups import SourceHealth, WakeHub, backoff_delays
from floyo_pipeline.logs import get_logger

log = get_logger(__name__)

SOURCE = "realtime"
STREAMS = ("telemetry_events", "metrics_log")
SCHEMA = "public"
CHANNEL_PREFIX = "floyo_pipeline:"
POSTGRES_READY = "Subscribed to PostgreSQL"
_REDACTED = "**********"


class _UnparsedFrameFilter(logging.Filter):
    """The client logs every frame it cannot parse verbatim, and a frame can carry row data: log a
    warning without the content instead (G9: no raw telemetry in logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Unrecognized message format"):
            log.warning("source.malformed_message", source=SOURCE)
            return False
        return True


_UNPARSED_FRAME_FILTER = _UnparsedFrameFilter()


def realtime_url(supabase_url: str) -> str:
    """`https://ref.supabase.co` → `wss://ref.supabase.co/realtime/v1` (http → ws)."""
    parts = urlsplit(supabase_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ConfigError("invalid configuration: SUPABASE_URL: must be an http:// or https:// URL")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/realtime/v1", "", ""))


class _SessionEnded(Exception):
    """This session is over; `reason` says why (already redacted)."""


class _Session:
    """The state of one client connection, fed by the client's callbacks (which must never raise)."""

    def __init__(self, redact: Any) -> None:
        self._redact = redact
        self.subscribed: set[str] = set()
        self.listening: set[str] = set()
        self.reason: str | None = None
        self.changed = asyncio.Event()

    @property
    def ended(self) -> bool:
        return self.reason is not None

    @property
    def ready(self) -> bool:
        return not self.ended and self.listening >= set(STREAMS)

    def end(self, reason: str) -> None:
        if self.reason is None:
            self.reason = self._redact(reason)[:300]
        self.changed.set()

    def on_state(self, stream: str, status: RealtimeSubscribeStates, error: Exception | None) -> None:
        if self.ended:  # late callbacks of a torn-down client
            return
        if status == RealtimeSubscribeStates.SUBSCRIBED:
            self.subscribed.add(stream)
            self.changed.set()
            return
        if status == RealtimeSubscribeStates.CHANNEL_ERROR and stream not in self.subscribed:
            refusal = _join_refusal(error)
            if refusal is not None:
                reason = self._redact(refusal)[:300]
                log.warning("source.join_refused", source=SOURCE, stream=stream, reason=reason)
                self.end(f"join refused on {stream}: {reason}")
                return
        detail = f": {type(error).__name__}: {error}" if error is not None else ""
        self.end(f"channel {stream} {status.value.lower()}{detail}")

    def on_system(self, stream: str, payload: Any) -> None:
        if self.ended:
            return
        message = str(getattr(payload, "message", ""))
        extension = str(getattr(payload, "extension", ""))
        if extension == "postgres_changes" and POSTGRES_READY in message:
            self.listening.add(stream)
            self.changed.set()
        else:
            log.info("source.system_message", source=SOURCE, stream=stream, message=message[:200])


def _join_refusal(error: Exception | None) -> str | None:
    """The server's reason when the CHANNEL_ERROR is its reply to our join (a JSON object)."""
    if error is None:
        return None
    try:
        payload = json.loads(str(error))
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    reason = payload.get("reason") or payload.get("message") or json.dumps(payload)
    return str(reason)


def _partition_of(record: Any) -> list[int] | None:
    if isinstance(record, Mapping):
        value = record.get("pipeline_partition")
        if isinstance(value, int) and not isinstance(value, bool):
            return [value]
    return None


class RealtimeSource:
    """Supabase Realtime `postgres_changes` INSERT hints for every stream, with the service role key."""

    def __init__(
        self,
        supabase_url: str,
        service_role_key: str,
        *,
        join_timeout: int = 10,
        ready_timeout: float = 30.0,
        check_interval: float = 1.0,
        backoff_base: float = 0.2,
        backoff_cap: float = 10.0,
    ) -> None:
        if not service_role_key:
            raise ConfigError("invalid configuration: SUPABASE_SERVICE_ROLE_KEY is required")
        self.url = realtime_url(supabase_url)
        self._key = service_role_key
        self.join_timeout = join_timeout
        self.ready_timeout = ready_timeout
        self.check_interval = check_interval
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.health = SourceHealth(SOURCE)
        client_logger = logging.getLogger("realtime._async.client")
        if _UNPARSED_FRAME_FILTER not in client_logger.filters:
            client_logger.addFilter(_UNPARSED_FRAME_FILTER)

    @classmethod
    def from_settings(cls, settings: Settings) -> RealtimeSource:
        if settings.supabase_url is None or settings.supabase_service_role_key is None:
            raise ConfigError(
                "invalid configuration: FLOYO_WAKEUP=realtime needs SUPABASE_URL and "
                "SUPABASE_SERVICE_ROLE_KEY"
            )
        return cls(str(settings.supabase_url), settings.supabase_service_role_key.get_secret_value())

    def _redact(self, text: str) -> str:
        return text.replace(self._key, _REDACTED)

    async def run(self, hub: WakeHub) -> None:
        """Sessions one after the other, forever; returns only by cancellation."""
        delays = iter(backoff_delays(self.backoff_base, self.backoff_cap))
        last_failure: str | None = None
        try:
            while True:
                session = _Session(self._redact)
                client: AsyncRealtimeClient | None = None
                try:
                    client = AsyncRealtimeClient(
                        self.url, token=self._key, auto_reconnect=False, timeout=self.join_timeout
                    )
                    await self._session(client, session, hub, last_failure)
                except _SessionEnded:
                    pass
                except Exception as err:  # the client raises whatever its transport raised
                    session.end(f"{type(err).__name__}: {err}")
                finally:
                    if client is not None:
                        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                            await self._teardown(client)
                if self.health.connected:  # it was up: a fresh outage starts the backoff again
                    delays = iter(backoff_delays(self.backoff_base, self.backoff_cap))
                delay = next(delays)
                last_failure = session.reason or "session ended"
                self.health.down(last_failure)
                log.warning("source.reconnecting", source=SOURCE, reason=last_failure, delay=round(delay, 3))
                await asyncio.sleep(delay)
        finally:
            self.health.down("stopped")

    async def _session(
        self, client: AsyncRealtimeClient, session: _Session, hub: WakeHub, last_failure: str | None
    ) -> NoReturn:
        """Connect, subscribe, wait for readiness, catch up, then watch until the session ends."""
        # Until ready, /readyz keeps showing the last failure (if any): it is the useful reason.
        self.health.down(last_failure or "connecting")
        log.info("source.connecting", source=SOURCE, url=self.url)
        await client.connect()
        for stream in STREAMS:
            channel = client.channel(f"{CHANNEL_PREFIX}{stream}")
            channel.on_postgres_changes(
                RealtimePostgresChangesListenEvent.Insert,
                partial(self._on_change, hub),
                table=stream,
                schema=SCHEMA,
            )
            channel.on_system(partial(session.on_system, stream))
            await channel.subscribe(partial(session.on_state, stream))
            self._raise_if_ended(session)
        self.health.down(last_failure or f"waiting for '{POSTGRES_READY}'")
        with anyio.move_on_after(self.ready_timeout):
            while not session.ready:
                await self._wait_changed(client, session)
        if not session.ready:
            self._raise_if_ended(session)
            missing = ", ".join(s for s in STREAMS if s not in session.listening)
            session.end(f"no '{POSTGRES_READY}' within {self.ready_timeout}s for {missing}")
            raise _SessionEnded
        self.health.up()
        log.info("source.connected", source=SOURCE, streams=list(STREAMS))
        hub.wake_all(SOURCE)  # catch up on whatever was inserted while not listening
        while True:
            await self._wait_changed(client, session)

    async def _wait_changed(self, client: AsyncRealtimeClient, session: _Session) -> None:
        session.changed.clear()
        self._raise_if_ended(session)
        with anyio.move_on_after(self.check_interval):
            await session.changed.wait()
        if not client.is_connected:
            session.end("websocket closed")
        self._raise_if_ended(session)

    @staticmethod
    def _raise_if_ended(session: _Session) -> None:
        if session.ended:
            raise _SessionEnded

    async def _teardown(self, client: AsyncRealtimeClient) -> None:
        try:
            await client.remove_all_channels()
        except Exception as err:
            log.info("source.teardown_failed", source=SOURCE, error_class=type(err).__name__)
            await client.close()

    def _on_change(self, hub: WakeHub, payload: Any) -> None:
        """Runs in the client's receive loop: hand the hint over and return, never raise."""
        try:
            data = payload.get("data") if isinstance(payload, Mapping) else None
            if not isinstance(data, Mapping) or data.get("table") not in STREAMS:
                table = data.get("table") if isinstance(data, Mapping) else None
                log.warning("source.unknown_message", source=SOURCE, table=str(table)[:100])
                return
            hub.wake(SOURCE, str(data["table"]), _partition_of(data.get("record")))
        except Exception as err:
            log.warning("source.bad_message", source=SOURCE, error_class=type(err).__name__)
