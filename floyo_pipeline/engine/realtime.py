"""Supabase Realtime wake-up source: `postgres_changes` INSERT subscriptions as hints, supervised.

Realtime delivery is not guaranteed and has no replay, so this is a hint exactly like NOTIFY. The
maintained `realtime` client does the protocol; this module supervises it:

- one websocket per stream, so that one stream's trouble (a channel error, a table missing from the
  publication) never stops the other's hints. Each has its own client with its reconnect loop
  switched off; any trouble ends that stream's session, and the next starts after a capped, jittered
  exponential backoff, forever. The backoff is longer when only a person can fix the cause: the key
  refused at the upgrade or expired, or a stream that is not in the publication;
- a stream listens only once the server said "Subscribed to PostgreSQL" on its channel (the join
  reply comes before the server listens to Postgres); that message, and any repeat of it on a live
  channel (the server re-subscribed after losing Postgres), is followed by a catch-up pass;
- a key whose role cannot read a stream connects fine, but every change then arrives as a frame
  carrying "Error 401: Unauthorized" and no row: it is reported as unauthorized (and still taken as
  a hint for its stream);
- the database is asked every few minutes which streams are in the publication: a table dropped from
  it while running makes the server fall silent without an error;
- callbacks run inside the client's receive loop, so they only record state, hand the hint to the
  hub and return.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import anyio
from realtime import AsyncRealtimeClient, RealtimePostgresChangesListenEvent, RealtimeSubscribeStates

from floyo_pipeline import metrics
from floyo_pipeline.config import ConfigError, Settings
from floyo_pipeline.connections import connect
from floyo_pipeline.engine.errors import backoff_delays
from floyo_pipeline.engine.streams import STREAMS
from floyo_pipeline.engine.wakeups import SourceHealth, WakeHub
from floyo_pipeline.logs import get_logger
from floyo_pipeline.queries import Q

log = get_logger(__name__)

SOURCE = "realtime"
SCHEMA = "public"
PUBLICATION = "supabase_realtime"
CHANNEL_PREFIX = "floyo_pipeline:"
POSTGRES_READY = "Subscribed to PostgreSQL"
# Problems only an operator can fix (the floyo_pipeline_source_problem gauge, a longer backoff).
AUTH = "auth"
NOT_PUBLISHED = "publication"
PROBLEMS = (AUTH, NOT_PUBLISHED)
SERVICE_RESTART = 1012  # the websocket close code of a server going down for a restart
_REDACTED = "**********"
_REASON_CHARS = 500
_BODY_CHARS = 200
_UNPARSED = "Unrecognized message format "


def realtime_url(supabase_url: str) -> str:
    """`https://ref.supabase.co` → `wss://ref.supabase.co/realtime/v1` (http → ws)."""
    parts = urlsplit(supabase_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ConfigError("invalid configuration: SUPABASE_URL: must be an http:// or https:// URL")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/realtime/v1", "", ""))


# ---- what the server said ----------------------------------------------------------------------


def _json_object(error: BaseException | None) -> dict[str, Any] | None:
    """The payload the client wrapped in an Exception (a join reply or a system error), if any."""
    if error is None:
        return None
    try:
        payload = json.loads(str(error))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _close_code(error: BaseException | None) -> int | None:
    received = getattr(error, "rcvd", None)
    code = getattr(received, "code", None)
    return code if isinstance(code, int) else None


def _refused_upgrade(error: BaseException) -> tuple[int, str] | None:
    """(status, body) when the server refused the websocket upgrade with 401 or 403."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status not in (401, 403):
        return None
    body = getattr(response, "body", b"") or b""
    text = bytes(body).decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)
    return int(status), text.strip()[:_BODY_CHARS]


def _about_auth(reason: str) -> bool:
    lowered = reason.lower()
    return any(word in lowered for word in ("jwt", "token", "unauthorized", "signature", "permission"))


def _about_publication(message: str) -> bool:
    # The server's words when the subscription matched no table of the publication.
    return "realtime is enabled" in message.lower() or "publication" in message.lower()


def _unauthorized(errors: Any) -> bool:
    items = errors if isinstance(errors, list) else [errors]
    return any(isinstance(e, str) and ("401" in e or "Unauthorized" in e) for e in items)


def _unparsed_frame(text: str) -> Any:
    """The frame inside the client's "Unrecognized message format {frame!r}\\n{error}" record."""
    literal = text[len(_UNPARSED) :].split("\n", 1)[0]
    try:
        raw = ast.literal_eval(literal)
        return json.loads(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


# ---- one stream's connection ---------------------------------------------------------------------


class _SessionEnded(Exception):
    """This session is over; the session's `reason` says why (already redacted)."""


class _Session:
    """One stream's websocket: state fed by the client's callbacks, which must never raise."""

    def __init__(self, stream: str, hub: WakeHub, redact: Any) -> None:
        self.stream = stream
        self._hub = hub
        self._redact = redact
        self.subscribed = False
        self.listening = False
        self.unauthorized: str | None = None  # the server's error, once a 401 frame arrived
        self.reason: str | None = None
        self.problem: str | None = None
        self.changed = asyncio.Event()

    @property
    def ended(self) -> bool:
        return self.reason is not None

    @property
    def table(self) -> str:
        return f"{SCHEMA}.{self.stream}"

    def end(self, reason: str, problem: str | None = None) -> None:
        if self.reason is None:
            self.reason = self._redact(reason)[:_REASON_CHARS]
            self.problem = problem
        self.changed.set()

    def on_state(self, status: RealtimeSubscribeStates, error: Exception | None) -> None:
        if self.ended:  # late callbacks of a torn-down client
            return
        if status == RealtimeSubscribeStates.SUBSCRIBED:
            self.subscribed = True
            self.changed.set()
            return
        payload = _json_object(error)
        if status == RealtimeSubscribeStates.CHANNEL_ERROR and payload is not None:
            if not self.subscribed and "message" not in payload:
                self._join_refused(payload)
                return
            if "message" in payload:
                self._server_error(payload)
                return
        if _close_code(error) == SERVICE_RESTART:
            self.end(f"the server is restarting (websocket closed with {SERVICE_RESTART})")
            return
        detail = f": {type(error).__name__}: {error}" if error is not None else ""
        self.end(f"channel {status.value.lower()}{detail}")

    def _join_refused(self, payload: dict[str, Any]) -> None:
        reason = self._redact(str(payload.get("reason") or json.dumps(payload)))[:_REASON_CHARS]
        log.warning("source.join_refused", source=SOURCE, stream=self.stream, reason=reason)
        self.end(f"join refused: {reason}", AUTH if _about_auth(reason) else None)

    def _server_error(self, payload: dict[str, Any]) -> None:
        """A `system` message with status error: the server gave up on this channel."""
        message = self._redact(str(payload.get("message", "")))[:_REASON_CHARS]
        if "expired" in message.lower():
            log.warning("source.token_expired", source=SOURCE, stream=self.stream, message=message)
            self.end(f"access token expired: {message}", AUTH)
            return
        problem = NOT_PUBLISHED if _about_publication(message) else None
        log.warning(
            "source.stream_error",
            source=SOURCE,
            stream=self.stream,
            table=self.table,
            extension=str(payload.get("extension", "")),
            message=message,
        )
        self.end(f"{self.table}: {message}", problem)

    def on_system(self, payload: Any) -> None:
        if self.ended:
            return
        message = str(getattr(payload, "message", ""))
        extension = str(getattr(payload, "extension", ""))
        if extension == "postgres_changes" and POSTGRES_READY in message:
            if self.listening:
                # The server lost Postgres and subscribed again: what it missed meanwhile is read now.
                log.info("source.resubscribed", source=SOURCE, stream=self.stream)
                self._hub.wake(SOURCE, self.stream)
            self.listening = True
            self.changed.set()
        else:
            log.info("source.system_message", source=SOURCE, stream=self.stream, message=message[:200])

    def on_change(self, payload: Any) -> None:
        """Runs in the client's receive loop: hand the hint over and return, never raise."""
        try:
            data = payload.get("data") if isinstance(payload, Mapping) else None
            table = data.get("table") if isinstance(data, Mapping) else None
            if not isinstance(data, Mapping) or table != self.stream:
                log.warning(
                    "source.unknown_message", source=SOURCE, stream=self.stream, table=str(table)[:100]
                )
                return
            if _unauthorized(data.get("errors")):
                self.on_unauthorized(data.get("errors"))
                return
            self._hub.wake(SOURCE, self.stream)
        except Exception as err:
            log.warning(
                "source.bad_message", source=SOURCE, stream=self.stream, error_class=type(err).__name__
            )

    def on_unparsed(self, frame: Any) -> None:
        """A frame the client could not parse; row data stays out of the logs."""
        payload = frame.get("payload") if isinstance(frame, dict) else None
        data = payload.get("data") if isinstance(payload, dict) else None
        if (
            isinstance(data, dict)
            and frame.get("event") == "postgres_changes"
            and data.get("table") == self.stream
            and _unauthorized(data.get("errors"))
        ):
            self.on_unauthorized(data.get("errors"))
            return
        log.warning("source.malformed_message", source=SOURCE, stream=self.stream)

    def on_unauthorized(self, errors: Any) -> None:
        # A change happened on the stream, the key's role just may not see it: still a hint.
        self._hub.wake(SOURCE, self.stream)
        if self.unauthorized is None:
            self.unauthorized = str(errors)[:_BODY_CHARS]
            log.error(
                "source.unauthorized",
                source=SOURCE,
                stream=self.stream,
                table=self.table,
                errors=self.unauthorized,
                detail="the key's role cannot read this table: use the service role key",
            )
            self.changed.set()


# The session whose client is receiving: its receive task is created inside the session's context.
_CURRENT: ContextVar[_Session | None] = ContextVar("floyo_realtime_session", default=None)


class _UnparsedFrameFilter(logging.Filter):
    """The client logs every frame it cannot parse verbatim, and a frame can carry row data: the
    frame goes to the session it arrived on instead, and the record is dropped (no raw telemetry
    in logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not text.startswith(_UNPARSED):
            return True
        session = _CURRENT.get()
        if session is None:
            log.warning("source.malformed_message", source=SOURCE)
        else:
            session.on_unparsed(_unparsed_frame(text))
        return False


_UNPARSED_FRAME_FILTER = _UnparsedFrameFilter()


# ---- the source ----------------------------------------------------------------------------------


class _StreamStatus:
    """What is known of one stream across its sessions."""

    def __init__(self) -> None:
        self.listening = False
        self.reason: str | None = "not started"
        self.problem: str | None = None
        self.published: bool | None = None  # None until the database was asked
        self.kick = asyncio.Event()  # cut a backoff short, or end a session (publication restored)
        self.session: _Session | None = None


class RealtimeSource:
    """Supabase Realtime `postgres_changes` INSERT hints for every stream, with the service role key."""

    def __init__(
        self,
        supabase_url: str,
        service_role_key: str,
        *,
        database_url: str | None = None,
        join_timeout: int = 10,
        ready_timeout: float = 30.0,
        check_interval: float = 1.0,
        backoff_base: float = 0.2,
        backoff_cap: float = 10.0,
        slow_backoff_base: float = 5.0,
        slow_backoff_cap: float = 300.0,
        publication_check_interval: float = 120.0,
    ) -> None:
        if not service_role_key:
            raise ConfigError("invalid configuration: SUPABASE_SERVICE_ROLE_KEY is required")
        self.url = realtime_url(supabase_url)
        self._key = service_role_key
        self.database_url = database_url
        self.join_timeout = join_timeout
        self.ready_timeout = ready_timeout
        self.check_interval = check_interval
        self.backoff = (backoff_base, backoff_cap)
        self.slow_backoff = (slow_backoff_base, slow_backoff_cap)
        self.publication_check_interval = publication_check_interval
        self.health = SourceHealth(SOURCE)
        self.streams: dict[str, _StreamStatus] = {}
        client_logger = logging.getLogger("realtime._async.client")
        if _UNPARSED_FRAME_FILTER not in client_logger.filters:
            client_logger.addFilter(_UNPARSED_FRAME_FILTER)

    @classmethod
    def from_settings(cls, settings: Settings, database_url: str | None = None) -> RealtimeSource:
        if settings.supabase_url is None or settings.supabase_service_role_key is None:
            raise ConfigError(
                "invalid configuration: FLOYO_WAKEUP=realtime needs SUPABASE_URL and "
                "SUPABASE_SERVICE_ROLE_KEY"
            )
        return cls(
            str(settings.supabase_url),
            settings.supabase_service_role_key.get_secret_value(),
            database_url=database_url,
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._key, _REDACTED)

    async def run(self, hub: WakeHub) -> None:
        """Every stream's sessions, and the publication check; returns only by cancellation."""
        self.streams = {stream: _StreamStatus() for stream in STREAMS}
        self._publish_health()
        try:
            async with anyio.create_task_group() as tg:
                for stream in STREAMS:
                    tg.start_soon(self._supervise, stream, hub, name=f"realtime:{stream}")
                if self.database_url is not None:
                    tg.start_soon(self._watch_publication, name="realtime:publication")
        finally:
            for status in self.streams.values():
                status.listening, status.reason, status.problem = False, "stopped", None
                status.published, status.session = None, None
            self._publish_health()
            self.health.down("stopped")

    # ---- health ----------------------------------------------------------------------------------

    def _trouble(self, status: _StreamStatus) -> str | None:
        if status.published is False:
            return f"not in publication {PUBLICATION}"
        if status.session is not None and status.session.unauthorized is not None and status.listening:
            return (
                f"unauthorized: every change arrives as {status.session.unauthorized} "
                "(the key's role cannot read the table: use the service role key)"
            )
        return None if status.listening else status.reason or "not listening"

    def _problems(self, status: _StreamStatus) -> set[str]:
        found = set()
        if status.published is False:
            found.add(NOT_PUBLISHED)
        if status.session is not None and status.session.unauthorized is not None:
            found.add(AUTH)
        if not status.listening and status.problem is not None:
            found.add(status.problem)
        return found

    def _publish_health(self) -> None:
        troubles = {stream: self._trouble(status) for stream, status in self.streams.items()}
        self.health.streams = troubles
        for problem in PROBLEMS:
            active = any(problem in self._problems(status) for status in self.streams.values())
            metrics.SOURCE_PROBLEM.labels(SOURCE, problem).set(1 if active else 0)
        down = {stream: why for stream, why in troubles.items() if why is not None}
        if not down:
            self.health.up()
            return
        # Both streams usually fail alike (a refused key): say it once.
        grouped: dict[str, list[str]] = {}
        for stream, why in down.items():
            grouped.setdefault(why, []).append(stream)
        self.health.down("; ".join(f"{', '.join(streams)}: {why}" for why, streams in grouped.items()))

    # ---- one stream ------------------------------------------------------------------------------

    async def _supervise(self, stream: str, hub: WakeHub) -> None:
        """One stream's sessions, one after the other, forever."""
        status = self.streams[stream]
        fast, slow = self._delays(self.backoff), self._delays(self.slow_backoff)
        while True:
            session = _Session(stream, hub, self._redact)
            status.session = session
            context = _CURRENT.set(session)
            client: AsyncRealtimeClient | None = None
            was_listening = False
            try:
                client = AsyncRealtimeClient(
                    self.url, token=self._key, auto_reconnect=False, timeout=self.join_timeout
                )
                await self._session(client, session, status, hub)
            except _SessionEnded:
                pass
            except Exception as err:  # the client raises whatever its transport raised
                self._failed(session, err)
            finally:
                _CURRENT.reset(context)
                was_listening = status.listening
                if client is not None:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                        await self._teardown(client)
            if was_listening:  # it was up: a fresh outage starts the backoff again
                fast, slow = self._delays(self.backoff), self._delays(self.slow_backoff)
            delay = next(slow if session.problem is not None else fast)
            status.listening, status.reason, status.problem = (
                False,
                session.reason or "session ended",
                session.problem,
            )
            self._publish_health()
            log.warning(
                "source.reconnecting",
                source=SOURCE,
                stream=stream,
                reason=status.reason,
                delay=round(delay, 3),
                backoff="slow" if session.problem is not None else "fast",
            )
            with anyio.move_on_after(delay):
                await status.kick.wait()
            status.kick.clear()

    @staticmethod
    def _delays(bounds: tuple[float, float]) -> Iterator[float]:
        return iter(backoff_delays(*bounds))

    def _failed(self, session: _Session, err: Exception) -> None:
        refused = _refused_upgrade(err)
        if refused is None:
            session.end(f"{type(err).__name__}: {err}")
            return
        code, body = refused
        body = self._redact(body)
        log.error(
            "source.auth_refused",
            source=SOURCE,
            stream=session.stream,
            status=code,
            body=body,
            detail="the server refused the key at the websocket upgrade: check SUPABASE_SERVICE_ROLE_KEY",
        )
        session.end(f"auth refused: HTTP {code} {body or '(empty body)'}", AUTH)

    async def _session(
        self, client: AsyncRealtimeClient, session: _Session, status: _StreamStatus, hub: WakeHub
    ) -> NoReturn:
        """Connect, subscribe, wait for readiness, catch up, then watch until the session ends."""
        stream = session.stream
        log.info("source.connecting", source=SOURCE, stream=stream, url=self.url)
        await client.connect()
        channel = client.channel(f"{CHANNEL_PREFIX}{stream}")
        channel.on_postgres_changes(
            RealtimePostgresChangesListenEvent.Insert, session.on_change, table=stream, schema=SCHEMA
        )
        channel.on_system(session.on_system)
        await channel.subscribe(session.on_state)
        self._raise_if_ended(session)
        if status.reason == "not started":  # later, the last failure stays the useful reason
            status.reason = f"waiting for '{POSTGRES_READY}'"
            self._publish_health()
        with anyio.move_on_after(self.ready_timeout):
            while not session.listening:
                await self._wait_changed(client, session, status)
        if not session.listening:
            self._raise_if_ended(session)
            session.end(f"no '{POSTGRES_READY}' within {self.ready_timeout:g}s")
            raise _SessionEnded
        status.listening, status.reason, status.problem = True, None, None
        self._publish_health()
        log.info("source.connected", source=SOURCE, stream=stream)
        hub.wake(SOURCE, stream)  # catch up on whatever was inserted while not listening
        unauthorized = session.unauthorized
        while True:
            await self._wait_changed(client, session, status)
            if session.unauthorized != unauthorized:
                unauthorized = session.unauthorized
                self._publish_health()

    async def _wait_changed(
        self, client: AsyncRealtimeClient, session: _Session, status: _StreamStatus
    ) -> None:
        session.changed.clear()
        self._raise_if_ended(session)
        with anyio.move_on_after(self.check_interval):
            await session.changed.wait()
        if not client.is_connected:
            session.end("websocket closed")
        if status.kick.is_set():
            status.kick.clear()
            session.end("restarting after the publication check")
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

    # ---- publication -----------------------------------------------------------------------------

    async def _watch_publication(self) -> None:
        """Ask the database which streams are in the publication, every few minutes, forever."""
        assert self.database_url is not None
        while True:
            try:
                published = await self._published()
            except Exception as err:  # the database may be down; the next check tries again
                log.info("source.publication_check_failed", source=SOURCE, error_class=type(err).__name__)
            else:
                self._update_publication(published)
            await anyio.sleep(self.publication_check_interval)

    async def _published(self) -> set[str]:
        assert self.database_url is not None
        conn = await connect(self.database_url, timeout=10)
        try:
            rows = await conn.fetch(Q["realtime_published_streams"], PUBLICATION, SCHEMA, list(STREAMS))
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
        return {r["table_name"] for r in rows}

    def _update_publication(self, published: set[str]) -> None:
        for stream, status in self.streams.items():
            now = stream in published
            if status.published is not False and not now:
                log.error(
                    "source.publication_missing",
                    source=SOURCE,
                    stream=stream,
                    table=f"{SCHEMA}.{stream}",
                    publication=PUBLICATION,
                    detail="Realtime sends nothing for this table: add it back to the publication",
                )
            elif status.published is False and now:
                log.info(
                    "source.publication_restored", source=SOURCE, stream=stream, table=f"{SCHEMA}.{stream}"
                )
                status.kick.set()  # resubscribe now; the catch-up follows "Subscribed to PostgreSQL"
            status.published = now
        self._publish_health()
