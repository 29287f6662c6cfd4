"""The benchmark's printed report and its plots, made from the results alone (what
bench/results/latest.json holds), so that a saved run can be printed and plotted again."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LATENCY_TARGETS_MS = {1000: 25, 10_000: 100}
"""p99 insert→effect targets by steady rate (rows/s), with NOTIFY wake-ups."""
RSS_TARGET_MIB = 200
CATCH_UP_TARGET = 0.5
"""Catch-up, as a share of the batched insert rate."""
LATENCY_PLOT = "benchmark-latency-vs-rate.png"
THROUGHPUT_PLOT = "benchmark-throughput-vs-batch-size.png"


def _steady_at(results: dict[str, Any], rate: int) -> dict[str, Any] | None:
    return next((s for s in results.get("steady", []) if s["target_rate"] == rate), None)


def _cpu(value: float | None, cores: float | None) -> str:
    if value is None:
        return "not measured (not a local process)"
    return f"{value:.4f} CPU-s per 1,000 rows  ({cores:.2f} cores busy)"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def format_report(results: dict[str, Any]) -> str:
    c, i, k, svc = results["ceiling"], results["ingest"], results["catch_up"], results["service"]
    lines = [
        f"floyo-pipeline benchmark ({results['rows']:,} row backlog, {results['machine']['cpus']} cpus, "
        f"batch size {svc['batch_size']}, {svc['readers_per_stream']} readers per stream, "
        f"{svc['replicas']} replica(s))",
        "",
        "Postgres ceiling (telemetry rows)",
        f"  batched insert          {c['batched_insert_rows_per_s']:>10,} rows/s",
        f"  COPY                    {c['copy_rows_per_s']:>10,} rows/s",
        f"  cursor read             {c['cursor_read_rows_per_s']:>10,} rows/s",
        "",
        "Targets                                         measured      target    ratio",
        f"  catch-up through all consumers   {k['rows_per_s']:>12,} rows/s  >= 0.5 x insert"
        f"  {k['ratio_to_batched_insert']:.2f} x insert",
        f"  peak RSS (largest replica)       {k['peak_rss_mib']:>12.1f} MiB     <= 200 MiB"
        f"  {k['peak_rss_mib'] / RSS_TARGET_MIB:.2f} of target",
        f"  ingest overhead (columns+trigger){i['overhead_percent']:>12.1f} %       <= 5 %"
        f"  ({i['pipeline_rows_per_s']:,} vs {i['plain_rows_per_s']:,} rows/s)",
    ]
    for rate, limit in LATENCY_TARGETS_MS.items():
        s = _steady_at(results, rate)
        if s is not None:
            lines.append(
                f"  p99 insert->effect @ {s['target_rate']:>6,}/s   {s['p99_ms']:>12.1f} ms"
                f"      <= {limit} ms  (p50 {s['p50_ms']} ms, achieved {s['achieved_rate']:,}/s)"
            )
    lines += _scale_out(results) + _cpu_and_connections(results) + _storage(results)
    lines += _latency(results) + _sweeps(results)
    if any(code != 0 for code in results.get("service_exit_codes", [])):
        lines += ["", f"WARNING: service exit codes {results['service_exit_codes']}"]
    return "\n".join(lines)


def _scale_out(results: dict[str, Any]) -> list[str]:
    runs = results.get("scale_out", [])
    if len(runs) < 2:
        return []
    ceiling = results["ceiling"]["batched_insert_rows_per_s"]
    lines = [
        "",
        f"Catch-up by replicas ({results['rows']:,}-row backlog each; insert ceiling {ceiling:,} rows/s)",
    ]
    for r in runs:
        lines.append(
            f"  {r['replicas']} replica(s)   {r['rows_per_s']:>10,} rows/s"
            f"  {r['ratio_to_batched_insert']:.2f} x insert"
            f"  peak RSS {r['peak_rss_mib']:.1f} MiB  connections {r.get('connections_peak', '?')}"
            f"  service {_short_cpu(r['service_cpu_s_per_1k_rows'])}"
            f"  Postgres {_short_cpu(r['postgres_cpu_s_per_1k_rows'])} CPU-s/1k rows"
        )
    return lines


def _short_cpu(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _cpu_and_connections(results: dict[str, Any]) -> list[str]:
    k = results["catch_up"]
    return [
        "",
        f"CPU and connections (catch-up: {k.get('replicas', 1)} replica(s), from all ready to the last row, "
        f"{k['cpu_window_rows']:,} rows)",
        f"  catch-up, service processes {_cpu(k['service_cpu_s_per_1k_rows'], k['service_cores'])}",
        f"  catch-up, Postgres          {_cpu(k['postgres_cpu_s_per_1k_rows'], k['postgres_cores'])}",
        f"  inserts, Postgres           {_ingest_cpu(results['ingest'])}",
        f"  connections (peak)          {k['connections_peak']} in all "
        f"(pool of {k['pool_size_per_replica']} + 1 LISTEN per replica at most)",
    ]


def _ingest_cpu(ingest: dict[str, Any]) -> str:
    piped, plain = (
        ingest.get("pipeline_postgres_cpu_s_per_1k_rows"),
        ingest.get("plain_postgres_cpu_s_per_1k_rows"),
    )
    if piped is None or plain is None:
        return "not measured"
    return (
        f"{piped:.4f} CPU-s per 1,000 rows inserted ({plain:.4f} without the pipeline's column and trigger)"
    )


def _storage(results: dict[str, Any]) -> list[str]:
    st = results.get("storage")
    if not st:
        return []
    stream, raw = st["stream"], st["stream_without_pipeline"]
    # The copy's own indexes are no guide (it holds the same rows several times over, which btree
    # deduplication shrinks), so the pipeline's share is its column (heap against heap) and its index.
    column = stream["table_mib_per_million"] - raw["table_mib_per_million"]
    index = stream.get("indexes_mib_per_million", {}).get(st.get("pipeline_index", ""), math.nan)
    lines = [
        "",
        "Storage",
        f"  telemetry_events        {stream['total_mib_per_million']:>8,.1f} MiB per 1M rows "
        f"(table {stream['table_mib_per_million']:,.1f}, indexes {stream['index_mib_per_million']:,.1f}; "
        f"measured on {stream['rows']:,} rows)",
        f"  of which the pipeline's {column + index:>8,.1f} MiB per 1M rows (its column {column:,.1f}, "
        f"table against a copy without it; its index {index:,.1f})",
    ]
    for kind, label in (("outputs", "outputs"), ("state", "pipeline state")):
        tables = st[kind]
        total = sum(t["table_bytes"] + t["index_bytes"] for t in tables)
        named = ", ".join(f"{t['name']} {t['rows']:,}" for t in tables if t["rows"])
        lines.append(
            f"  {label:<23} {_mib(total):>12} after the catch-up, {st['users']:,} users ({named} rows)"
        )
    return lines


def _latency_row(label: str, s: dict[str, Any]) -> str:
    percentiles = "".join(f"{s.get(f'p{q}_ms', math.nan):>10.1f}" for q in (50, 90, 99))
    return f"  {label:<9} @ {s['target_rate']:>6,} rows/s       {percentiles}   {s['achieved_rate']:>10,}"


def _latency(results: dict[str, Any]) -> list[str]:
    lines = ["", "Insert->effect latency under steady load    p50 ms    p90 ms    p99 ms   achieved rows/s"]
    lines += [_latency_row("NOTIFY", s) for s in results.get("steady", [])]
    poll = results.get("poll_wakeup")
    if poll:
        lines.append(_latency_row("poll only", poll) + f"   (every {poll['poll_interval_s']:g} s)")
    return lines


def _sweeps(results: dict[str, Any]) -> list[str]:
    sweeps = results.get("sweeps")
    if not sweeps:
        return []
    svc = results["service"]
    lines = [
        "",
        f"Catch-up of {sweeps['rows']:,} rows by one idle replica (from the commit; no start-up in it)",
    ]
    for key, label, fixed in (
        ("batch_size", "FLOYO_BATCH_SIZE", f"{svc['readers_per_stream']} readers per stream"),
        ("readers", "FLOYO_READERS_PER_STREAM", f"batch size {svc['batch_size']}"),
    ):
        if sweeps[key]:
            lines.append(f"  by {label} ({fixed})")
        for p in sweeps[key]:
            value = p["batch_size"] if key == "batch_size" else p["readers_per_stream"]
            lines.append(
                f"    {value:>6}   {p['rows_per_s']:>10,} rows/s  {p['ratio_to_batched_insert']:.2f} x insert"
                f"  service {_short_cpu(p['service_cpu_s_per_1k_rows'])}"
                f"  Postgres {_short_cpu(p['postgres_cpu_s_per_1k_rows'])} CPU-s/1k rows"
            )
    return lines


def write_plots(results: dict[str, Any], folder: Path) -> list[Path]:
    """The PNG plots the results allow (latency by rate; throughput by batch size and readers) into
    `folder`; none without matplotlib (the `bench` extra)."""
    try:
        import matplotlib
    except ImportError:
        return []
    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    if results.get("steady"):
        made.append(_latency_plot(results, folder / LATENCY_PLOT))
    if results.get("sweeps"):
        made.append(_throughput_plot(results, folder / THROUGHPUT_PLOT))
    return made


def _caption(results: dict[str, Any]) -> str:
    svc = results["service"]
    return (
        f"{results['machine']['cpus']} cpus, batch size {svc['batch_size']}, "
        f"{svc['readers_per_stream']} readers per stream, {svc['replicas']} replica(s)"
    )


def _latency_plot(results: dict[str, Any], path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    steady = results["steady"]
    rates = [s["target_rate"] for s in steady]
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for q, style in (("p50", "o-"), ("p90", "s-"), ("p99", "^-")):
        ax.plot(rates, [s.get(f"{q}_ms", math.nan) for s in steady], style, label=f"{q}, NOTIFY")
    targets = sorted(LATENCY_TARGETS_MS.items())
    ax.plot([r for r, _ in targets], [ms for _, ms in targets], "k*", markersize=11, label="p99 target")
    poll = results.get("poll_wakeup")
    if poll:
        ax.plot(
            [poll["target_rate"]] * 2,
            [poll["p50_ms"], poll["p99_ms"]],
            "x--",
            color="grey",
            label=f"p50/p99, poll only (every {poll['poll_interval_s']:g} s)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(rates, [f"{r:,}" for r in rates])
    ax.minorticks_off()
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel("steady insert rate (rows/s)")
    ax.set_ylabel("insert→effect latency (ms)")
    ax.set_title(f"Latency percentiles by rate ({_caption(results)})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return path


def _throughput_plot(results: dict[str, Any], path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    sweeps, svc = results["sweeps"], results["service"]
    target = CATCH_UP_TARGET * results["ceiling"]["batched_insert_rows_per_s"]
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    panels: Sequence[tuple[Any, str, str, str]] = (
        (
            left,
            "batch_size",
            "batch_size",
            f"FLOYO_BATCH_SIZE ({svc['readers_per_stream']} readers per stream)",
        ),
        (
            right,
            "readers",
            "readers_per_stream",
            f"FLOYO_READERS_PER_STREAM (batch size {svc['batch_size']})",
        ),
    )
    for ax, key, field, label in panels:
        points = sweeps[key]
        ax.plot([p[field] for p in points], [p["rows_per_s"] for p in points], "o-", label="one replica")
        ax.axhline(target, color="k", linestyle="--", linewidth=1, label="target: 0.5 x batched insert")
        ax.set_xscale("log", base=2 if key == "readers" else 10)
        ax.set_xticks([p[field] for p in points], [str(p[field]) for p in points])
        ax.minorticks_off()
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
    left.set_ylabel("catch-up (rows/s, all three analyzers)")
    left.set_ylim(bottom=0)
    left.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    left.legend(fontsize=8)
    fig.suptitle(
        f"Catch-up of {sweeps['rows']:,} rows by batch size and readers ({results['machine']['cpus']} cpus)",
        fontsize=9,
    )
    fig.savefig(path, dpi=120)
    return path


def copy_plots(plots: Sequence[Path], folder: Path) -> list[Path]:
    """Copies of the plots in `folder` (e.g. docs/, where docs/benchmark.md shows them)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(plot, folder / plot.name)) for plot in plots]
