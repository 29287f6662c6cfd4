"""The service under test: the real CLI (`floyo-pipeline run`) with the analyzers as subprocesses, and
what the benchmark reads from them (readiness, the latency histogram, CPU time, peak RSS)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench import processes

ROOT = Path(__file__).resolve().parent.parent
LATENCY = "floyo_pipeline_end_to_end_latency_seconds"

Buckets = list[tuple[float, float]]
"""A cumulative histogram: (upper bound, count), in order."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """One replica: `floyo-pipeline run` as a subprocess on a free port."""

    def __init__(self, url: str, batch_size: int, readers: int, replica_id: str, wakeup: str) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "FLOYO_HTTP_PORT": str(port := free_port()),
            "FLOYO_HTTP_HOST": "127.0.0.1",
            "FLOYO_LOG_LEVEL": "warning",
            "FLOYO_BATCH_SIZE": str(batch_size),
            "FLOYO_READERS_PER_STREAM": str(readers),
            "FLOYO_REPLICA_ID": replica_id,
            "FLOYO_WAKEUP": wakeup,
        }
        self.port = port
        # A file, not a pipe: a pipe nobody reads would stall the service once full. Closed by
        # Replicas.stop, with the process.
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "floyo_pipeline", "run"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def _is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    async def ready(self) -> None:
        for _ in range(300):
            if await asyncio.to_thread(self._is_ready):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {self._stderr_text()!r}")
            await asyncio.sleep(0.1)
        raise RuntimeError("service never became ready")

    def cpu_seconds(self) -> float | None:
        return processes.tree_cpu_seconds(self.proc.pid)

    def peak_rss_mib(self) -> float:
        return processes.peak_rss_mib(self.proc.pid)


class Replicas:
    """The replicas of one phase, sharing the work through the leases."""

    def __init__(self, services: Sequence[Service]) -> None:
        self.services = list(services)
        self.exit_codes: list[int] = []

    async def ready(self) -> None:
        for service in self.services:
            await service.ready()

    def cpu_seconds(self) -> float | None:
        each = [s.cpu_seconds() for s in self.services]
        return None if any(c is None for c in each) else sum(c for c in each if c is not None)

    def peak_rss_mib(self) -> float:
        return max(s.peak_rss_mib() for s in self.services)

    async def latency(self) -> Buckets:
        """The latency histograms of every replica, added up bucket by bucket."""
        merged: dict[float, float] = {}
        for service in self.services:
            for le, count in latency_buckets(await asyncio.to_thread(service.metrics)):
                merged[le] = merged.get(le, 0.0) + count
        return sorted(merged.items())

    def stop(self) -> list[int]:
        """SIGTERM to all (they drain at once, in parallel), then their exit codes; once."""
        if self.exit_codes:
            return self.exit_codes
        for service in self.services:
            if service.proc.poll() is None:
                service.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_codes = [service.proc.wait(60) for service in self.services]
        finally:
            for service in self.services:
                if service.proc.poll() is None:
                    service.proc.kill()
                service.stderr.close()
        return self.exit_codes


def start_replicas(url: str, count: int, *, batch_size: int, readers: int, wakeup: str) -> Replicas:
    """`count` replicas `bench-0`, `bench-1`, …: a phase's replica takes over its predecessor's
    leases at once, under the same id."""
    return Replicas([Service(url, batch_size, readers, f"bench-{n}", wakeup) for n in range(count)])


def latency_buckets(metrics_text: str) -> Buckets:
    """The end-to-end latency histogram of telemetry_events, from one scrape."""
    for family in text_string_to_metric_families(metrics_text):
        if family.name == LATENCY:
            return sorted(
                (float(s.labels["le"]), s.value)
                for s in family.samples
                if s.name.endswith("_bucket") and s.labels.get("stream") == "telemetry_events"
            )
    return []


def quantile(before: Buckets, after: Buckets, q: float) -> float:
    """Quantile of the observations between two scrapes, interpolated inside its bucket."""
    prior = dict(before)
    counts = [(le, value - prior.get(le, 0.0)) for le, value in after]
    total = counts[-1][1] if counts else 0.0
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for le, cumulative in counts:
        if cumulative >= rank:
            if le == float("inf"):
                return lower
            share = (rank - below) / max(cumulative - below, 1e-9)
            return lower + (le - lower) * share
        lower, below = le, cumulative
    return lower
