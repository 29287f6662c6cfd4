"""A Supabase Realtime test double: Phoenix channels (JSON serializer vsn 1.0.0) over `websockets`.

It behaves like the real server (supabase/realtime v2.28, and current upstream where they differ) as
observed from the real `realtime` Python client:

- the key travels as `?apikey=` in the websocket URL and is checked at the HTTP upgrade: a wrong or
  expired key is refused there, 403 with an empty body (v2.28) or 401
  `{"error":"Failed to validate JWT signature"}` (upstream, `refusal="401"`);
- `phx_join` on `realtime:<name>` with `config.postgres_changes` and `access_token` → `phx_reply` ok
  echoing each binding as sent plus its id (no `filter` key unless one was sent; no `join_ref` in
  any frame), then `presence_state`, then, some time later, the `system` message "Subscribed to
  PostgreSQL"; a table missing from the publication gets a `system` error instead (and no retry);
- changes come from a real Postgres, polled like the server polls its replication slot: new rows
  (by id) of every published table a listening channel binds. Each subscriber gets a row only if its
  JWT's role may select the table's primary key (else a frame with `"errors":["Error 401:
  Unauthorized"]`, no `commit_timestamp`, no record) and row level security, evaluated as that role
  with the token's claims in `request.jwt.claims`, lets it see the row; the record carries only the
  columns the role may select. Frames have `type` (no `eventType`), short column type names, and
  `to_jsonb` values (`pipeline_txid` is a string). A statement's hint is delayed by
  `per_row_delay` per row (~400 ms for 1,000 rows). Rows written while a channel is not listening,
  or while its table is out of the publication, are never sent (no replay);
- a token's `exp` ends the channel in session: `system` error "Access token has expired", then
  `phx_close`; `resubscribe_all()` repeats "Subscribed to PostgreSQL" on live channels (the server
  re-subscribing after losing Postgres); `stop()` closes websockets with code 1012; after
  `restart()` "Subscribed" comes 1.5 to 3.8 s after the join.

Rows are picked up by `id > last seen id`, enough for tests that insert from one session at a time
(a smaller id committing after a larger one would be skipped; the real server reads the WAL), and
only INSERTs are sent.

Test controls: `keys` / `jwt_secret` (what the upgrade and the join accept), `refusing` (a 503
outage), `refusal`, `join_error`, `subscribed_gate` / `subscribed_delay`, `pause()` /
`resubscribe_all()`, `expire_tokens()`, `restart()`, `drop_all()`, `send_raw()`,
`send_unknown_table()`; counters in `stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import asyncpg
import jwt
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from floyo_pipeline.connections import connect

WEBSOCKET_PATH = "/realtime/v1/websocket"
SERVICE_RESTART = 1012
EXPIRED = "Access token has expired"
UNAUTHORIZED = "Error 401: Unauthorized"
SUBSCRIBED = "Subscribed to PostgreSQL"


@dataclass
class _Binding:
    id: int
    params: dict[str, Any]  # as the client sent it

    @property
    def event(self) -> str:
        return str(self.params.get("event", "*")).upper()

    @property
    def schema(self) -> str:
        return str(self.params.get("schema", "public"))

    @property
    def table(self) -> str | None:
        table = self.params.get("table")
        return str(table) if table is not None else None

    def matches(self, schema: str, table: str) -> bool:
        return self.event in ("INSERT", "*") and self.schema == schema and self.table in (table, "*", None)

    def passes_filter(self, record: dict[str, Any]) -> bool:
        """`column=eq.value` filters (the only operator the double knows)."""
        spec = self.params.get("filter")
        if not spec:
            return True
        column, _, rest = str(spec).partition("=")
        op, _, value = rest.partition(".")
        return op == "eq" and str(record.get(column)) == value


@dataclass
class _Channel:
    topic: str
    claims: dict[str, Any]
    bindings: list[_Binding]
    listening: bool = False
    after_id: dict[str, int] = field(default_factory=dict)  # rows up to these ids predate listening


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    claims: dict[str, Any]
    channels: dict[str, _Channel] = field(default_factory=dict)


class RealtimeTestServer:
    """Start with `await start()`, stop with `await stop()` (or `async with`); `url` is the SUPABASE_URL
    to use."""

    def __init__(
        self,
        admin_url: str,
        keys: dict[str, dict[str, Any]] | None = None,
        jwt_secret: str | None = None,
    ) -> None:
        self.admin_url = admin_url
        self.keys = keys  # opaque keys and their claims; None (and no jwt_secret): anything goes
        self.jwt_secret = jwt_secret
        self.refusing = False
        self.refusal: Literal["403", "401"] = "403"
        self.join_error: str | None = None
        self.subscribed_gate = asyncio.Event()
        self.subscribed_gate.set()
        self.subscribed_delay = 0.0
        self.restart_subscribed_delay = (1.5, 3.8)
        self.poll_interval = 0.05
        self.per_row_delay = 0.0004
        self.stats: Counter[str] = Counter()
        self.clients: set[_Client] = set()
        self.port = 0
        self._ids = itertools.count(41_000)
        self._server: Server | None = None
        self._db: asyncpg.Connection | None = None
        self._db_lock = asyncio.Lock()
        self._last_id: dict[str, int] = {}
        self._paused = False
        self._restarted_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def awaiting_subscribed(self) -> int:
        """Channels joined (SUBSCRIBED replied) but not yet told "Subscribed to PostgreSQL"."""
        return sum(1 for c in self.clients for ch in c.channels.values() if not ch.listening)

    @property
    def listening(self) -> int:
        return sum(1 for c in self.clients for ch in c.channels.values() if ch.listening)

    async def start(self) -> RealtimeTestServer:
        self._db = await connect(self.admin_url)
        self._spawn(self._poll())
        await self._listen()
        return self

    async def __aenter__(self) -> RealtimeTestServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _listen(self) -> None:
        self._server = await serve(
            self._handle, "127.0.0.1", self.port, process_request=self._process_request, compression=None
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        await self._shut_down()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._db is not None:
            await self._db.close()

    async def _shut_down(self) -> None:
        """Close every websocket with 1012 (service restart), as the real server does, and stop."""
        for client in list(self.clients):
            with contextlib.suppress(ConnectionClosed):
                await client.ws.close(SERVICE_RESTART, "service restart")
        self.clients.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def restart(self, down_for: float = 0.5) -> None:
        """A server restart: 1012 to everyone, down for a moment, then "Subscribed" comes late."""
        await self._shut_down()
        await asyncio.sleep(down_for)
        self._restarted_at = time.monotonic()
        await self._listen()
        self.stats["restarts"] += 1

    # ---- controls -------------------------------------------------------------------------------

    def drop_all(self) -> None:
        """Cut every websocket without a close handshake (a network drop)."""
        for client in list(self.clients):
            client.ws.transport.abort()
        self.stats["drops"] += 1

    def pause(self) -> None:
        """The server loses Postgres: nothing is delivered (nor later replayed) until resubscribe_all."""
        self._paused = True

    async def resubscribe_all(self) -> None:
        """The server subscribed again: "Subscribed to PostgreSQL" once more on every live channel."""
        await self._skip_unsent()
        self._paused = False
        for client in list(self.clients):
            for channel in list(client.channels.values()):
                if channel.listening:
                    await self._subscribed(client, channel)

    async def expire_tokens(self) -> None:
        """Every channel's token expires now: a system error, then phx_close."""
        for client in list(self.clients):
            for channel in list(client.channels.values()):
                await self._expire(client, channel)

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
                        data = self._change("not_a_stream", record, [{"name": "id", "type": "int8"}])
                        await self._send(
                            client, channel.topic, "postgres_changes", {"ids": chosen, "data": data}
                        )

    # ---- authorization ---------------------------------------------------------------------------

    def claims_of(self, token: str | None) -> dict[str, Any] | None:
        """The claims a token carries, or None when the server would refuse it."""
        if token is None:
            return None
        if self.keys is not None and token in self.keys:
            return dict(self.keys[token])
        if self.jwt_secret is not None:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    self.jwt_secret,
                    algorithms=["HS256"],
                    options={"require": ["exp", "role"], "verify_aud": False},
                )
            except jwt.PyJWTError:
                return None
            return claims
        if self.keys is None:
            return {"role": "service_role"}
        return None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not request.path.startswith(WEBSOCKET_PATH):
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if self.refusing:
            self.stats["upgrades_refused"] += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "refusing connections\n")
        if self.claims_of(_apikey(request.path)) is None:
            self.stats["auth_refused"] += 1
            if self.refusal == "401":
                body = json.dumps({"error": "Failed to validate JWT signature"})
                response = connection.respond(HTTPStatus.UNAUTHORIZED, body)
                del response.headers["Content-Type"]
                response.headers["Content-Type"] = "application/json"
                return response
            return connection.respond(HTTPStatus.FORBIDDEN, "")
        return None

    # ---- websocket side ----------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        client = _Client(ws, self.claims_of(_apikey(ws.request.path)) or {})
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
                await self._on_message(client, topic, event, payload, ref)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)

    async def _on_message(
        self, client: _Client, topic: str, event: str, payload: dict[str, Any], ref: str | None
    ) -> None:
        if topic == "phoenix" and event == "heartbeat":
            self.stats["heartbeats"] += 1
            await self._reply(client, topic, ref, "ok", {})
        elif event == "phx_join":
            await self._join(client, topic, payload, ref)
        elif event == "phx_leave":
            client.channels.pop(topic, None)
            await self._reply(client, topic, ref, "ok", {})
        elif event == "access_token":
            self.stats["access_tokens"] += 1
            channel = client.channels.get(topic)
            claims = self.claims_of(payload.get("access_token"))
            if channel is not None and claims is not None:
                channel.claims = claims
        else:
            await self._reply(client, topic, ref, "ok", {})

    async def _join(self, client: _Client, topic: str, payload: dict[str, Any], ref: str | None) -> None:
        claims = self.claims_of(payload.get("access_token")) if "access_token" in payload else client.claims
        if self.join_error is not None or claims is None:
            self.stats["joins_refused"] += 1
            reason = self.join_error or "JwtSignatureError: Failed to validate JWT signature"
            await self._reply(client, topic, ref, "error", {"reason": reason})
            return
        wanted = ((payload.get("config") or {}).get("postgres_changes")) or []
        bindings = [_Binding(next(self._ids), dict(b)) for b in wanted if isinstance(b, dict)]
        channel = _Channel(topic, claims, bindings)
        client.channels[topic] = channel
        self.stats["joins"] += 1
        await self._reply(
            client, topic, ref, "ok", {"postgres_changes": [{**b.params, "id": b.id} for b in bindings]}
        )
        await self._send(client, topic, "presence_state", {})
        self.stats["presence_state_sent"] += 1
        if "exp" in claims:
            self._spawn(self._expire_at(client, channel, float(claims["exp"])))
        if bindings:
            self._spawn(self._announce(client, channel))

    async def _announce(self, client: _Client, channel: _Channel) -> None:
        """The server subscribes to Postgres some time after the join reply (the gap)."""
        await self.subscribed_gate.wait()
        delay = self.subscribed_delay
        if self._restarted_at is not None and time.monotonic() - self._restarted_at < 30:
            delay = max(delay, random.uniform(*self.restart_subscribed_delay))
        await asyncio.sleep(delay)
        if client.channels.get(channel.topic) is not channel or client not in self.clients:
            return
        published = await self._published()
        for binding in channel.bindings:
            if binding.table is not None and binding.table != "*" and binding.table not in published:
                self.stats["subscribe_errors"] += 1
                filters = binding.params.get("filter") or []
                message = (
                    "Unable to subscribe to changes with given parameters. Please check Realtime is enabled "
                    f"for the given connect parameters: [event: {binding.event}, schema: {binding.schema}, "
                    f"table: {binding.table}, filters: {filters}, select: nil]"
                )
                await self._system(client, channel, "postgres_changes", "error", message)
                return  # fatal on the server: no retry
        for binding in channel.bindings:
            if binding.table is not None:
                channel.after_id[binding.table] = await self._max_id(binding.table)
                self._last_id.setdefault(binding.table, channel.after_id[binding.table])
        channel.listening = True
        await self._subscribed(client, channel)

    async def _subscribed(self, client: _Client, channel: _Channel) -> None:
        self.stats["subscribed_sent"] += 1
        await self._system(client, channel, "postgres_changes", "ok", SUBSCRIBED)

    async def _expire_at(self, client: _Client, channel: _Channel, exp: float) -> None:
        await asyncio.sleep(max(0.0, exp - time.time()))
        await self._expire(client, channel)

    async def _expire(self, client: _Client, channel: _Channel) -> None:
        if client.channels.get(channel.topic) is not channel:
            return
        self.stats["expired"] += 1
        await self._system(client, channel, "system", "error", EXPIRED)
        client.channels.pop(channel.topic, None)
        await self._send(client, channel.topic, "phx_close", {})

    async def _system(
        self, client: _Client, channel: _Channel, extension: str, status: str, message: str
    ) -> None:
        payload = {
            "extension": extension,
            "status": status,
            "message": message,
            "channel": channel.topic.removeprefix("realtime:"),
        }
        await self._send(client, channel.topic, "system", payload)

    async def _reply(
        self, client: _Client, topic: str, ref: str | None, status: str, response: dict[str, Any]
    ) -> None:
        await self._send(client, topic, "phx_reply", {"status": status, "response": response}, ref)

    async def _send(
        self, client: _Client, topic: str, event: str, payload: dict[str, Any], ref: str | None = None
    ) -> None:
        frame = json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref})
        with contextlib.suppress(ConnectionClosed):
            await client.ws.send(frame)

    # ---- Postgres side ----------------------------------------------------------------------------

    async def _query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        assert self._db is not None
        async with self._db_lock:
            return list(await self._db.fetch(sql, *args))

    async def _published(self) -> set[str]:
        rows = await self._query(
            "select tablename from pg_publication_tables"
            " where pubname = 'supabase_realtime' and schemaname = 'public'"
        )
        return {r["tablename"] for r in rows}

    async def _max_id(self, table: str) -> int:
        rows = await self._query(f'select coalesce(max(id), 0) as m from public."{table}"')
        return int(rows[0]["m"])

    async def _skip_unsent(self) -> None:
        for table in list(self._last_id):
            self._last_id[table] = max(self._last_id[table], await self._max_id(table))

    async def _poll(self) -> None:
        """The replication poller: new rows of every tracked table, every poll_interval."""
        while True:
            await asyncio.sleep(self.poll_interval)
            if not self._last_id:
                continue
            published = await self._published()
            for table in list(self._last_id):
                rows = await self._query(
                    f'select id, to_jsonb(t)::text as record from public."{table}" t'
                    " where id > $1 order by id",
                    self._last_id[table],
                )
                if not rows:
                    continue
                self._last_id[table] = max(int(r["id"]) for r in rows)
                if self._paused or table not in published:
                    # Never decoded for the publication, never sent.
                    self.stats["rows_not_sent"] += len(rows)
                    continue
                delay = self.per_row_delay * len(rows)
                self.stats["delay_ms"] += round(delay * 1000)
                await asyncio.sleep(delay)
                await self._deliver(table, [(int(r["id"]), json.loads(r["record"])) for r in rows])

    async def _deliver(self, table: str, rows: list[tuple[int, dict[str, Any]]]) -> None:
        for client in list(self.clients):
            for channel in list(client.channels.values()):
                bindings = [b for b in channel.bindings if b.matches("public", table)]
                if not channel.listening or not bindings:
                    continue
                role = str(channel.claims.get("role") or "anon")
                columns = await self._selectable_columns(role, table)
                if "id" not in {c["name"] for c in columns}:
                    for row_id, _ in rows:
                        if row_id <= channel.after_id.get(table, 0):
                            continue
                        self.stats["unauthorized_sent"] += 1
                        data: dict[str, Any] = {
                            "schema": "public",
                            "table": table,
                            "type": "INSERT",
                            "commit_timestamp": None,
                            "columns": [],
                            "record": {},
                            "errors": [UNAUTHORIZED],
                        }
                        await self._send(
                            client,
                            channel.topic,
                            "postgres_changes",
                            {"ids": [b.id for b in bindings], "data": data},
                        )
                    continue
                visible = await self._visible_ids(role, channel.claims, table, [row_id for row_id, _ in rows])
                names = {c["name"] for c in columns}
                for row_id, record in rows:
                    if row_id not in visible or row_id <= channel.after_id.get(table, 0):
                        continue
                    shown = {k: v for k, v in record.items() if k in names}
                    ids = [b.id for b in bindings if b.passes_filter(shown)]
                    if ids:
                        self.stats["changes_sent"] += 1
                        self.stats[f"changes_sent:{table}"] += 1
                        data = self._change(table, shown, columns)
                        await self._send(
                            client, channel.topic, "postgres_changes", {"ids": ids, "data": data}
                        )

    async def _selectable_columns(self, role: str, table: str) -> list[dict[str, str]]:
        rows = await self._query(
            """select a.attname as name, t.typname as type from pg_attribute a
               join pg_type t on t.oid = a.atttypid
               where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped
                 and exists (select 1 from pg_roles where rolname = $2)
                 and has_column_privilege($2, a.attrelid, a.attname, 'SELECT')
               order by a.attnum""",
            f'public."{table}"',
            role,
        )
        return [{"name": r["name"], "type": r["type"]} for r in rows]

    async def _visible_ids(self, role: str, claims: dict[str, Any], table: str, ids: list[int]) -> set[int]:
        """Row level security as the subscriber: its role, its claims in request.jwt.claims."""
        assert self._db is not None
        async with self._db_lock, self._db.transaction():
            await self._db.execute(f'set local role "{role}"')
            await self._db.execute("select set_config('request.jwt.claims', $1, true)", json.dumps(claims))
            rows = await self._db.fetch(f'select id from public."{table}" where id = any($1::bigint[])', ids)
        return {int(r["id"]) for r in rows}

    def _change(self, table: str, record: dict[str, Any], columns: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "schema": "public",
            "table": table,
            "commit_timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "type": "INSERT",
            "columns": columns,
            "record": record,
            "errors": None,
        }

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _apikey(path: str) -> str | None:
    values = parse_qs(urlsplit(path).query).get("apikey")
    return values[0] if values else None
