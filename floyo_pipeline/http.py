"""The one HTTP port: /healthz, /readyz, /status, /metrics, served by hypercorn inside the service's loop.

What the endpoints read from the database is a snapshot taken at most once per
FLOYO_HTTP_CACHE_SECONDS, by one request while the others wait for it, so that any number of clients
costs the database one status query and one `select 1` per interval and never takes more than one
of the pool's connections away from the batches. The server keeps answering through the drain
(readiness then says "stopping") and is shut down gracefully when the service cancels its components.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import math
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Generic, TypeVar, cast

import anyio
from hypercorn.asyncio import serve
from hypercorn.config import Config
from prometheus_client.exposition import choose_encoder

from floyo_pipeline import __version__, exits, metrics
from floyo_pipeline.config import Settings
from floyo_pipeline.engine.errors import DATABASE_ERRORS
from floyo_pipeline.logs import get_logger, scrub
from floyo_pipeline.operations import status
from floyo_pipeline.queries import Q
from floyo_pipeline.service import Runtime, StartupError

log = get_logger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Response = tuple[int, str, bytes]

JSON_TYPE = "application/json"
DB_CHECK_TIMEOUT_SECONDS = 2.0
QUERY_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
# Far above what health checks and scrapers need; a flood of clients waits instead of taking the core.
PROBES_PER_SECOND = 100.0
DOCUMENTS_PER_SECOND = 20.0
MAX_REMEMBERED_CONNECTIONS = 4096
_ALLOWED = "GET, HEAD"


T = TypeVar("T")


class Snapshot(Generic[T]):
    """A value computed at most once per `max_age` seconds; concurrent callers share one computation."""

    def __init__(self, compute: Callable[[], Awaitable[T]], max_age: float) -> None:
        self.compute = compute
        self.max_age = max_age
        self.computed = 0
        self._value: T | None = None
        self._at = -float("inf")
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self.computed > 0 and time.monotonic() - self._at < self.max_age

    async def get(self) -> T:
        if self._fresh():
            return cast(T, self._value)
        async with self._lock:
            if not self._fresh():
                self._value = await self.compute()
                self._at = time.monotonic()
                self.computed += 1
            return cast(T, self._value)


class FairRate:
    """At most `rate` answers a second (bursts of `burst`); the requests beyond wait for their turn,
    the connection served longest ago first.

    Clients that loop on the port are slowed down by the answer itself, so the port's share of the
    service's one core stays bounded however many of them there are; a health check or a scraper that
    comes every few seconds goes ahead of connections that were just served."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []
        self._served: OrderedDict[Any, float] = OrderedDict()
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def _release(self) -> None:
        self._timer = None
        self._refill()
        while self._waiting and self._tokens >= 1:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)
                self._tokens -= 1
        if self._waiting:
            delay = (1 - self._tokens) / self.rate
            self._timer = asyncio.get_running_loop().call_later(delay, self._release)

    def _mark(self, key: Any) -> None:
        self._served[key] = time.monotonic()
        self._served.move_to_end(key)
        while len(self._served) > MAX_REMEMBERED_CONNECTIONS:
            self._served.popitem(last=False)

    async def wait(self, key: Any) -> None:
        self._refill()
        if not self._waiting and self._tokens >= 1:
            self._tokens -= 1
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (self._served.get(key, -math.inf), next(self._order), turn))
            if self._timer is None:
                self._release()
            await turn
        self._mark(key)


async def _disconnected(receive: Receive) -> None:
    """Returns once the client has gone (the request's body, empty for GET, comes first)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _json(code: int, doc: Any) -> Response:
    return code, JSON_TYPE, (json.dumps(doc, default=str) + "\n").encode()


def _error_text(err: BaseException) -> str:
    """Class and message, secrets scrubbed, bounded (an asyncpg message names roles, never passwords)."""
    return scrub(f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)[:300]


class App:
    """A small ASGI application over the running service's Runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        max_age = runtime.settings.http_cache_seconds
        self.database = Snapshot(self._database_check, max_age)
        self.state = Snapshot(self._read_state, max_age)
        self.max_age = max_age
        self._metric_bodies: dict[str, Snapshot[bytes]] = {}
        # Probes are cheap and must stay quick; status and metrics documents cost more to render.
        probes, documents = FairRate(PROBES_PER_SECOND, 20), FairRate(DOCUMENTS_PER_SECOND, 10)
        self.limits = {"/healthz": probes, "/readyz": probes, "/status": documents, "/metrics": documents}
        self.routes: dict[str, Callable[[Scope], Awaitable[Response]]] = {
            "/healthz": self.healthz,
            "/readyz": self.readyz,
            "/status": self.status,
            "/metrics": self.metrics,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        handler = self.routes.get(scope["path"])
        headers: list[tuple[bytes, bytes]] = []
        if handler is None:
            code, content_type, body = _json(404, {"error": "not found", "paths": sorted(self.routes)})
        elif scope["method"] not in ("GET", "HEAD"):
            code, content_type, body = _json(405, {"error": "method not allowed", "allow": _ALLOWED})
            headers.append((b"allow", _ALLOWED.encode()))
        else:
            if not await self._turn(scope, receive):
                return  # the client left while waiting: nothing to answer
            try:
                code, content_type, body = await handler(scope)
            except Exception as err:
                log.error("http.error", path=scope["path"], error_class=type(err).__name__)
                code, content_type, body = _json(500, {"error": type(err).__name__})
        headers += [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    async def _turn(self, scope: Scope, receive: Receive) -> bool:
        """Wait for this request's turn; False if the client disconnected meanwhile."""
        turn = asyncio.ensure_future(self.limits[scope["path"]].wait(scope.get("client")))
        gone = asyncio.ensure_future(_disconnected(receive))
        await asyncio.wait({turn, gone}, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if turn.done():
            return True
        turn.cancel()
        return False

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def healthz(self, scope: Scope) -> Response:
        return _json(200, {"status": "ok", "version": __version__})

    async def _database_check(self) -> str | None:
        """None when `select 1` answers within the timeout, else the reason."""
        metrics.HTTP_DATABASE_READS.labels("readiness").inc()
        try:
            with anyio.fail_after(DB_CHECK_TIMEOUT_SECONDS):
                async with self.runtime.pool.acquire() as conn:
                    await conn.fetchval("select 1")
        except TimeoutError:
            return f"database unreachable: no answer within {DB_CHECK_TIMEOUT_SECONDS:g}s"
        except DATABASE_ERRORS as err:
            return f"database unreachable: {_error_text(err)}"
        return None

    async def readyz(self, scope: Scope) -> Response:
        rt = self.runtime
        reasons: list[str] = []
        if rt.stopping.is_set():
            reasons.append("service is stopping")
        db_problem = await self.database.get()
        if db_problem:
            reasons.append(db_problem)
        sources: list[dict[str, Any]] = []
        for source in rt.sources:
            health = source.health
            doc_source: dict[str, Any] = {
                "name": health.name,
                "connected": health.connected,
                "reason": health.reason,
            }
            if health.streams:
                doc_source["streams"] = dict(health.streams)
            sources.append(doc_source)
        poll_up = any(s["name"] == "poll" and s["connected"] for s in sources)
        hints_down = [s for s in sources if s["name"] != "poll" and not s["connected"]]
        # Ready means rows are processed: a hint source that is down only adds latency (the poll
        # timer keeps every row flowing), so it degrades readiness instead of failing it.
        degraded = [
            f"wake-up source {s['name']} is down ({s['reason']}): rows are processed at the poll "
            f"interval ({rt.settings.poll_interval_seconds:g}s) until it is back"
            for s in hints_down
        ]
        if not poll_up:
            reasons.append("wake-up source poll is not running")
        crash = rt.manager.crash
        if rt.dead_tasks:
            reasons.append(f"supervised task(s) died: {', '.join(rt.dead_tasks)}")
        if crash is not None:
            reasons.append(f"stream reader crashed: {type(crash).__name__}")
        doc = {
            "ready": not reasons,
            "reasons": reasons,
            "degraded": degraded,
            "database": {"reachable": db_problem is None},
            "wakeup": {
                # The poll timer is the safety net: with a hint source down, rows still flow, later.
                "mode": "poll-fallback" if hints_down else "normal",
                "sources": sources,
            },
            "tasks": {
                "supervised": sorted(rt.task_names),
                "dead": list(rt.dead_tasks),
                "reader_crash": type(crash).__name__ if crash is not None else None,
            },
            "leases_held": len(rt.manager.held),
        }
        return _json(200 if not reasons else 503, doc)

    async def _read_state(self) -> tuple[dict[str, Any] | None, list[Any], str | None]:
        """The status document and the jobs' last successes, or the reason they could not be read."""
        metrics.HTTP_DATABASE_READS.labels("status").inc()
        try:
            with anyio.fail_after(QUERY_TIMEOUT_SECONDS):
                async with self.runtime.pool.acquire() as conn:
                    return await status(conn), list(await conn.fetch(Q["job_last_success"])), None
        except DATABASE_ERRORS as err:
            return None, [], f"database unreachable: {_error_text(err)}"

    async def status(self, scope: Scope) -> Response:
        doc, _, problem = await self.state.get()
        if doc is None:
            return _json(503, {"error": problem})
        return _json(200, doc)

    def _set_gauges(self, doc: dict[str, Any], jobs: list[Any]) -> None:
        """Lag, dead-letter and job gauges from the database (the truth across all replicas)."""
        for job in jobs:
            metrics.JOB_LAST_SUCCESS.labels(job["job"]).set(job["finished"])
        metrics.LAG_EVENTS.clear()
        metrics.LAG_SECONDS.clear()
        metrics.DEAD_LETTERS.clear()
        for c in doc["consumers"]:
            metrics.LAG_EVENTS.labels(c["stream"], c["consumer"]).set(c["lag_rows"])
            metrics.LAG_SECONDS.labels(c["stream"], c["consumer"]).set(c["lag_seconds"])
            metrics.DEAD_LETTERS.labels(c["stream"], c["consumer"]).set(0)
        for d in doc["dead_letters"]:
            if d["status"] == "open":
                metrics.DEAD_LETTERS.labels(d["stream"], d["consumer"]).set(d["count"])

    async def metrics(self, scope: Scope) -> Response:
        accept = ""
        for name, value in scope.get("headers", ()):
            if name.lower() == b"accept":
                accept = value.decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        body = self._metric_bodies.get(content_type)
        if body is None:
            body = self._metric_bodies[content_type] = Snapshot(partial(self._encode, encoder), self.max_age)
        return 200, content_type, await body.get()

    async def _encode(self, encoder: Callable[[Any], bytes]) -> bytes:
        doc, jobs, problem = await self.state.get()
        if doc is None:
            # Stale lag would look healthy: drop the series so absent()/staleness alerts fire.
            metrics.LAG_EVENTS.clear()
            metrics.LAG_SECONDS.clear()
            metrics.DEAD_LETTERS.clear()
            log.warning("http.metrics_refresh_failed", reason=problem)
        else:
            self._set_gauges(doc, jobs)
        return encoder(metrics.REGISTRY)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            # Both stacks on "::": the healthcheck probes 127.0.0.1, Fly's private network is IPv6.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        # Listening now, so a client that read the port from `http.listening` queues instead of being
        # refused while hypercorn is still starting.
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class HttpServer:
    """The HTTP port as a service Component; `port` is the bound port once `listening` is set."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port: int | None = None
        self.listening = asyncio.Event()
        self._sock: socket.socket | None = None

    def _claim(self) -> socket.socket:
        host, port = self.settings.http_host, self.settings.http_port
        try:
            return _bind(host, port)
        except OSError as err:
            raise StartupError(
                f"cannot listen on {host}:{port} (FLOYO_HTTP_HOST, FLOYO_HTTP_PORT): {err.strerror or err}",
                exits.HTTP_PORT_UNAVAILABLE,
            ) from None

    async def prepare(self) -> None:
        """Claim the port before the service starts: a busy port is a one-line start-up error."""
        if self._sock is None:
            self._sock = self._claim()

    def close(self) -> None:
        """Give the port back if the service stopped before serving it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _config(self, fd: int) -> Config:
        config = Config()
        config.bind = [f"fd://{fd}"]
        config.accesslog = None
        # Hypercorn's own warnings go to stderr through logging; stdout stays one JSON object per line.
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = STOP_TIMEOUT_SECONDS
        config.include_server_header = False
        return config

    async def __call__(self, runtime: Runtime) -> None:
        sock, self._sock = self._sock or self._claim(), None
        self.port = int(sock.getsockname()[1])
        config = self._config(sock.detach())  # hypercorn owns the descriptor from here on
        shutdown = asyncio.Event()
        server = asyncio.create_task(
            serve(cast(Any, App(runtime)), config, shutdown_trigger=shutdown.wait), name="http.server"
        )
        log.info("http.listening", host=self.settings.http_host, port=self.port)
        self.listening.set()
        try:
            # Shielded: the service's cancellation must reach us, not hypercorn, which then stops cleanly.
            await asyncio.shield(server)
        finally:
            shutdown.set()
            with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_TIMEOUT_SECONDS + 1):
                await asyncio.wait({server})
            if not server.done():
                server.cancel()
            log.info("http.stopped", port=self.port)


def probe_host(settings: Settings) -> str:
    """Where `healthcheck` looks: loopback unless the port is bound to one specific address."""
    host = settings.http_host
    if host in ("", "0.0.0.0", "::", "127.0.0.1", "localhost"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def fetch_readiness(settings: Settings, timeout: float = 5.0) -> tuple[bool, str]:
    """GET /readyz of the running service: (ready, one line saying why)."""
    import urllib.error
    import urllib.request

    if settings.http_port == 0:
        return False, "FLOYO_HTTP_PORT is 0 (an ephemeral port): there is no known port to probe"
    url = f"http://{probe_host(settings)}:{settings.http_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
            code = response.status
    except urllib.error.HTTPError as err:
        body, code = err.read(), err.code
    except (OSError, TimeoutError) as err:
        return False, f"not ready: {url}: {type(err).__name__}: {err}"
    try:
        doc = json.loads(body)
    except ValueError:
        return False, f"not ready: {url} answered {code} with a body that is not JSON"
    if code == 200 and doc.get("ready") is True:
        return True, f"ready ({url})"
    reasons = doc.get("reasons") or [f"HTTP {code}"]
    return False, "not ready: " + "; ".join(str(r) for r in reasons)


async def cmd_healthcheck(settings: Settings, args: Any) -> int:
    """`floyo-pipeline healthcheck`: exit 0 when /readyz says ready, 1 otherwise (with the reason)."""
    ready, line = await asyncio.to_thread(fetch_readiness, settings)
    print(line, flush=True)
    return 0 if ready else 1


def http_component(settings: Settings) -> HttpServer:
    return HttpServer(settings)
