"""A small Supabase Realtime test double: Phoenix channels (JSON v1 serializer) over `websockets`.

It follows the documented Realtime protocol closely enough for the real `realtime` Python client:
`phx_join` on `realtime:<name>` with `config.postgres_changes` and `access_token` → `phx_reply` ok with
binding ids (or an error with a reason), then the `system` "Subscribed to PostgreSQL" message, after
which it delivers `postgres_changes` INSERT events; heartbeats, `access_token` and `phx_leave` are
answered. Rows come from a real Postgres: LISTEN on the streams' NOTIFY channel, then each new row is
fetched and sent to every channel listening to its table. Like the real server, rows inserted before
a channel is "Subscribed to PostgreSQL" are never delivered to it (no replay).
Rows are picked up by `id > last seen id`, enough for tests that insert from one session at a
time (a smaller id committing after a larger one would be skipped; the real server reads the WAL).

Test controls: `drop_all()`, `refusing` (reject the HTTP upgrade), `accepted_tokens`,
`subscribed_gate` / `subscribed_delay`, `send_raw()`, `send_unknown_table()`; counters in `stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import asyncpg
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from floyo_pipeline.db import connect
from floyo_pipeline.engine.wakeups import NOTIFY_CHANNEL

STREAMS = ("telemetry_events", "metrics_log")
WEBSOCKET_PATH = "/realtime/v1/websocket"


@dataclass
class _Binding:
    id: int
    event: str
    schema: str
    table: str | None
    filter: str | None

    def matches(self, schema: str, table: str) -> bool:
        return self.event in ("INSERT", "*") and self.schema == schema and self.table in (table, "*", None)


@dataclass
class _Channel:
    topic: str
    join_ref: str | None
    bindings: list[_Binding]
    listening: bool = False
    after_id: dict[str, int] = field(default_factory=dict)  # rows up to these ids predate listening


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    channels: dict[str, _Channel] = field(default_factory=dict)


class RealtimeTestServer:
    """Start with `await start()`, stop with `await stop()`; `url` is the SUPABASE_URL to use."""

    def __init__(self, admin_url: str, accepted_tokens: set[str] | None = None) -> None:
        self.admin_url = admin_url
        self.accepted_tokens = accepted_tokens  # None: any token is accepted
        self.refusing = False
        self.subscribed_gate = asyncio.Event()
        self.subscribed_gate.set()
        self.subscribed_delay = 0.0
        self.stats: Counter[str] = Counter()
        self.clients: set[_Client] = set()
        self._ids = itertools.count(41_000)
        self._server: Server | None = None
        self._listener: asyncpg.Connection | None = None
        self._last_id: dict[str, int] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._columns: dict[str, list[dict[str, str]]] = {}
        self._db = asyncio.Lock()  # one query at a time on the listener connection

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"http://127.0.0.1:{port}"

    @property
    def awaiting_subscribed(self) -> int:
        """Channels joined (SUBSCRIBED replied) but not yet told "Subscribed to PostgreSQL"."""
        return sum(1 for c in self.clients for ch in c.channels.values() if not ch.listening)

    @property
    def listening(self) -> int:
        return sum(1 for c in self.clients for ch in c.channels.values() if ch.listening)

    async def start(self) -> RealtimeTestServer:
        self._listener = await connect(self.admin_url)
        for stream in STREAMS:
            self._last_id[stream] = int(
                await self._listener.fetchval(f"select coalesce(max(id), 0) from public.{stream}")
            )
            self._columns[stream] = [
                {"name": r["attname"], "type": r["type"]}
                for r in await self._listener.fetch(
                    """select attname, format_type(atttypid, atttypmod) as type from pg_attribute
                       where attrelid = $1::regclass and attnum > 0 and not attisdropped order by attnum""",
                    f"public.{stream}",
                )
            ]
        await self._listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
        self._spawn(self._pump())
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request, compression=None
        )
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._listener is not None:
            await self._listener.close()

    # ---- controls -------------------------------------------------------------------------------

    def drop_all(self) -> None:
        """Cut every websocket without a close handshake (a network drop)."""
        for client in list(self.clients):
            client.ws.transport.abort()
        self.stats["drops"] += 1

    async def send_raw(self, frame: str | bytes) -> None:
        for client in list(self.clients):
            with contextlib.suppress(ConnectionClosed):
                await client.ws.send(frame)

    async def send_unknown_table(self) -> None:
        """postgres_changes for a table nobody subscribed to: once with the channel's own binding ids
        (a misrouted message reaches the client's callback), once with ids nobody holds."""
        for client in list(self.clients):
            for channel in list(client.channels.values()):
                if channel.listening:
                    ids = [b.id for b in channel.bindings]
                    record = {"id": 1, "pipeline_partition": 3}
                    for chosen in (ids, [1]):
                        await self._send(
                            client,
                            channel.topic,
                            "postgres_changes",
                            self._change("not_a_stream", record, chosen),
                        )

    # ---- websocket side ----------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not request.path.startswith(WEBSOCKET_PATH):
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if self.refusing:
            self.stats["upgrades_refused"] += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "refusing connections\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        client = _Client(ws)
        self.clients.add(client)
        self.stats["connections"] += 1
        try:
            async for frame in ws:
                try:
                    msg = json.loads(frame)
                    topic, event, payload, ref = (
                        msg["topic"],
                        msg["event"],
                        msg.get("payload") or {},
                        msg.get("ref"),
                    )
                except (ValueError, KeyError, TypeError):
                    self.stats["bad_client_frames"] += 1
                    continue
                await self._on_message(client, topic, event, payload, ref, msg.get("join_ref"))
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)

    async def _on_message(
        self,
        client: _Client,
        topic: str,
        event: str,
        payload: dict[str, Any],
        ref: str | None,
        join_ref: str | None,
    ) -> None:
        if topic == "phoenix" and event == "heartbeat":
            self.stats["heartbeats"] += 1
            await self._reply(client, topic, ref, join_ref, "ok", {})
        elif event == "phx_join":
            await self._join(client, topic, payload, ref, join_ref)
        elif event == "phx_leave":
            client.channels.pop(topic, None)
            await self._reply(client, topic, ref, join_ref, "ok", {})
        elif event == "access_token":
            self.stats["access_tokens"] += 1
            await self._reply(client, topic, ref, join_ref, "ok", {})
        else:
            await self._reply(client, topic, ref, join_ref, "ok", {})

    async def _join(
        self, client: _Client, topic: str, payload: dict[str, Any], ref: str | None, join_ref: str | None
    ) -> None:
        token = payload.get("access_token")
        if self.accepted_tokens is not None and token not in self.accepted_tokens:
            self.stats["joins_refused"] += 1
            reason = "Invalid JWT: the access token was rejected"
            await self._reply(client, topic, ref, join_ref, "error", {"reason": reason})
            return
        wanted = ((payload.get("config") or {}).get("postgres_changes")) or []
        bindings = [
            _Binding(
                next(self._ids),
                b.get("event", "*"),
                b.get("schema", "public"),
                b.get("table"),
                b.get("filter"),
            )
            for b in wanted
        ]
        channel = _Channel(topic, join_ref or ref, bindings)
        client.channels[topic] = channel
        self.stats["joins"] += 1
        response = {
            "postgres_changes": [
                {"id": b.id, "event": b.event, "schema": b.schema, "table": b.table, "filter": b.filter}
                for b in bindings
            ]
        }
        await self._reply(client, topic, ref, join_ref, "ok", response)
        if bindings:
            self._spawn(self._announce(client, channel))

    async def _announce(self, client: _Client, channel: _Channel) -> None:
        """The server starts listening to Postgres some time after the join reply (the gap)."""
        await self.subscribed_gate.wait()
        await asyncio.sleep(self.subscribed_delay)
        if client.channels.get(channel.topic) is not channel or client not in self.clients:
            return
        channel.after_id = await self._max_ids()
        channel.listening = True
        payload = {
            "status": "ok",
            "message": "Subscribed to PostgreSQL",
            "extension": "postgres_changes",
            "channel": channel.topic.removeprefix("realtime:"),
        }
        await self._send(client, channel.topic, "system", payload)

    async def _reply(
        self,
        client: _Client,
        topic: str,
        ref: str | None,
        join_ref: str | None,
        status: str,
        response: dict[str, Any],
    ) -> None:
        await self._send(client, topic, "phx_reply", {"status": status, "response": response}, ref, join_ref)

    async def _send(
        self,
        client: _Client,
        topic: str,
        event: str,
        payload: dict[str, Any],
        ref: str | None = None,
        join_ref: str | None = None,
    ) -> None:
        frame = json.dumps(
            {"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref}
        )
        with contextlib.suppress(ConnectionClosed):
            await client.ws.send(frame)

    # ---- Postgres side ----------------------------------------------------------------------------

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        stream = payload.partition(":")[0]
        if stream in STREAMS:
            self._queue.put_nowait(stream)

    async def _pump(self) -> None:
        assert self._listener is not None
        while True:
            stream = await self._queue.get()
            async with self._db:
                rows = await self._listener.fetch(
                    f"select id, to_jsonb(t)::text as record from public.{stream} t"
                    " where id > $1 order by id",
                    self._last_id[stream],
                )
            for row in rows:
                self._last_id[stream] = max(self._last_id[stream], row["id"])
                await self._broadcast(stream, row["id"], json.loads(row["record"]))

    async def _max_ids(self) -> dict[str, int]:
        assert self._listener is not None
        async with self._db:
            return {
                stream: int(
                    await self._listener.fetchval(f"select coalesce(max(id), 0) from public.{stream}")
                )
                for stream in STREAMS
            }

    async def _broadcast(self, table: str, row_id: int, record: dict[str, Any]) -> None:
        for client in list(self.clients):
            for channel in list(client.channels.values()):
                ids = [b.id for b in channel.bindings if b.matches("public", table)]
                if channel.listening and ids and row_id > channel.after_id.get(table, 0):
                    self.stats["changes_sent"] += 1
                    await self._send(
                        client, channel.topic, "postgres_changes", self._change(table, record, ids)
                    )

    def _change(self, table: str, record: dict[str, Any], ids: list[int]) -> dict[str, Any]:
        return {
            "ids": ids,
            "data": {
                "schema": "public",
                "table": table,
                "commit_timestamp": datetime.now(UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                "eventType": "INSERT",
                "type": "INSERT",
                "record": record,
                "columns": self._columns.get(table, []),
                "errors": None,
            },
        }

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
