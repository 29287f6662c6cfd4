"""Every Prometheus metric of the service, in one place. No user ids or other unbounded labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics

from floyo_pipeline import __version__

# `_created` series double the series count and no dashboard or alert here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]
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
    # Fine around the targets (25 ms at 1k rows/s, 100 ms at 10k rows/s), coarse for backlogs.
    buckets=(
        0.005,
        0.01,
        0.015,
        0.02,
        0.025,
        0.03,
        0.04,
        0.05,
        0.075,
        0.1,
        0.15,
        0.25,
        0.5,
        1.0,
        2.5,
        5.0,
        10.0,
        30.0,
        60.0,
        300.0,
    ),
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
READS = Counter(
    "floyo_pipeline_reads",
    "Batch reads of a stream by a reader, by whether they found rows (found: rows | none).",
    ["stream", "found"],
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
SOURCE_PROBLEM = Gauge(
    "floyo_pipeline_source_problem",
    "1 while a wake-up source is held up by something only an operator can fix: `auth` (the key is "
    "refused, expired or cannot read a stream) or `publication` (a stream is not in the publication).",
    ["source", "problem"],
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
JOB_RUNS = Counter(
    "floyo_pipeline_job_runs",
    "Scheduled job attempts on this replica, by outcome (done, failed, or skipped: another replica "
    "claimed the period).",
    # Not "job": Prometheus attaches its own `job` target label.
    ["scheduled_job", "outcome"],
    registry=REGISTRY,
)
JOB_LAST_SUCCESS = Gauge(
    "floyo_pipeline_job_last_success_timestamp_seconds",
    "Unix time a scheduled job last finished successfully on any replica (from job_runs at scrape time).",
    ["scheduled_job"],
    registry=REGISTRY,
)
HTTP_DATABASE_READS = Counter(
    "floyo_pipeline_http_database_reads",
    "Database reads made to answer the HTTP port (one per snapshot interval at most, whatever the traffic).",
    ["what"],
    registry=REGISTRY,
)
BUILD_INFO = Info("floyo_pipeline_build", "Build information.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})


def histogram_quantile(histogram: Histogram, q: float) -> float | None:
    """Estimate a quantile over all label sets of a histogram (linear within a bucket, as PromQL does)."""
    buckets: dict[float, float] = {}
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total == 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            in_bucket = count - below
            return lower + (bound - lower) * ((rank - below) / in_bucket if in_bucket else 1.0)
        lower, below = bound, count
    return lower
