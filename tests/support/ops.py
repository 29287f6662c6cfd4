"""Helpers for the operations tests: the service with its HTTP port, and plain HTTP requests."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from floyo_pipeline.api import Batch, BatchContext, Consumer, TelemetryEvent
from floyo_pipeline.engine.wakeups import WakeupSource
from floyo_pipeline.http import HttpServer
from floyo_pipeline.jobs import Scheduler, build_jobs
from floyo_pipeline.service import Component
from tests.support.consumers import EffectRecorder
from tests.support.service import service_settings, service_task


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass
class Running:
    task: asyncio.Task[int]
    http: HttpServer
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"


def _request(url: str, method: str, headers: dict[str, str]) -> Reply:
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


async def http(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
    """A real HTTP request (urllib in a thread, so the service keeps running in this loop)."""
    return await asyncio.to_thread(_request, url, method, headers or {})


@asynccontextmanager
async def serving(
    url: str,
    consumers: Sequence[Consumer],
    sources: Sequence[WakeupSource] | None = None,
    with_jobs: bool = False,
    **settings: Any,
) -> AsyncIterator[Running]:
    """The service in this loop with its HTTP port on an ephemeral loopback port (and the jobs if asked)."""
    config = service_settings(url, **{"http_host": "127.0.0.1", **settings})
    server = HttpServer(config)
    components: list[tuple[str, Component]] = [("http", server)]
    if with_jobs:
        components.append(("jobs", Scheduler(build_jobs(config, consumers))))
    async with service_task(url, config, consumers, sources, components=components) as task:
        listening = asyncio.ensure_future(server.listening.wait())
        done, _ = await asyncio.wait({task, listening}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if listening not in done:
            listening.cancel()
            raise AssertionError("the HTTP port never started listening")
        yield Running(task, server)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_binary(name: str) -> str:
    """The path of a Prometheus binary; missing fails the test unless FLOYO_ALLOW_SKIP_PROMETHEUS=1."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("FLOYO_ALLOW_SKIP_PROMETHEUS") == "1":
            pytest.skip(f"{name} is not installed (FLOYO_ALLOW_SKIP_PROMETHEUS=1)")
        pytest.fail(
            f"{name} is not on PATH: run the tests with `python3 dev.py test` (it unpacks Debian's "
            "prometheus package into .venv/ where apt-get is there), or install Prometheus "
            "(apt-get install prometheus), or set FLOYO_ALLOW_SKIP_PROMETHEUS=1 to skip this test"
        )
    return path


class LeakyConsumer(EffectRecorder):
    """Fails on app_id 'poison' with an error that quotes the row's payload (which must stay out of logs)."""

    async def handle(self, batch: Batch[Any], ctx: BatchContext) -> None:
        rows: list[TelemetryEvent] = list(batch.rows)
        for row in rows:
            if row.app_id == "poison":
                raise ValueError(f"cannot use {row.file_path} with {row.metadata}")
        await super().handle(batch, ctx)


def leaky_recorders() -> list[Consumer]:
    """Factory for FLOYO_CONSUMERS=tests.support.ops:leaky_recorders."""
    return [LeakyConsumer("recorder")]


def sample(body: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None
