"""Every Prometheus metric of the service, in one place. No user ids or other unbounded labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from floyo_pipeline import __version__

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter(
    "floyo_pipeline_events",
    "Stream rows handled per consumer, by outcome.",
    ["stream", "consumer", "outcome"],
    registry=REGISTRY,
)
BATCH_DURATION = Histogram(
    "floyo_pipeline_batch_duration_seconds",
    "Wall time of one committed batch transaction (read, handle, checkpoint, commit).",
    ["consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
END_TO_END_LATENCY = Histogram(
    "floyo_pipeline_end_to_end_latency_seconds",
    "From a row's insert (created_at) to the commit of its effects.",
    ["stream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=REGISTRY,
)
LAG_EVENTS = Gauge(
    "floyo_pipeline_lag_events",
    "Committed rows not yet processed, per consumer and stream (refreshed at scrape time).",
    ["stream", "consumer"],
    registry=REGISTRY,
)
LAG_SECONDS = Gauge(
    "floyo_pipeline_lag_seconds",
    "Age of the oldest committed row not yet processed (refreshed at scrape time).",
    ["stream", "consumer"],
    registry=REGISTRY,
)
WAKEUPS = Counter(
    "floyo_pipeline_wakeups",
    "Wake-up hints received, by source.",
    ["source"],
    registry=REGISTRY,
)
SOURCE_CONNECTED = Gauge(
    "floyo_pipeline_source_connected",
    "1 while a wake-up source is connected and listening, else 0.",
    ["source"],
    registry=REGISTRY,
)
DEAD_LETTERS = Gauge(
    "floyo_pipeline_dead_letters",
    "Open dead letters per consumer and stream (refreshed at scrape time).",
    ["stream", "consumer"],
    registry=REGISTRY,
)
LEASES_HELD = Gauge(
    "floyo_pipeline_leases_held",
    "Partition leases this replica holds.",
    registry=REGISTRY,
)
BUILD_INFO = Info("floyo_pipeline_build", "Build information.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})
