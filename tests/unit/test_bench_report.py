"""The benchmark's report and plots from a small canned result (no measuring, no timing), its command
line, and that bench/ stands alone (imports nothing from tests/)."""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any

from bench.report import LATENCY_PLOT, THROUGHPUT_PLOT, copy_plots, format_report, write_plots
from bench.run import options_of, parser

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def cpu(service: float | None, postgres: float | None) -> dict[str, Any]:
    return {
        "cpu_window_rows": 180_000,
        "service_cpu_s_per_1k_rows": service,
        "service_cores": None if service is None else 0.93,
        "postgres_cpu_s_per_1k_rows": postgres,
        "postgres_cores": None if postgres is None else 0.71,
    }


def steady(rate: int, p50: float, p90: float, p99: float) -> dict[str, Any]:
    return {
        "rows": rate * 3,
        "target_rate": rate,
        "achieved_rate": rate - 3,
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
    }


def sweep_point(batch_size: int, readers: int, rate: int) -> dict[str, Any]:
    return {
        "batch_size": batch_size,
        "readers_per_stream": readers,
        "seconds": 5.0,
        "rows_per_s": rate,
        "ratio_to_batched_insert": round(rate / 67_096, 3),
        "peak_rss_mib": 90.0,
        **cpu(0.05, 0.04),
    }


def canned() -> dict[str, Any]:
    """A full run's results, in the shape bench/measure.py returns (two replica counts, sweeps)."""
    main = {
        "replicas": 1,
        "seconds": 11.5,
        "rows_per_s": 17_351,
        "ratio_to_batched_insert": 0.259,
        "peak_rss_mib": 118.8,
        "connections_peak": 9,
        "pool_size_per_replica": 8,
        **cpu(0.0523, 0.0411),
    }
    table = {"table_bytes": 3 * 2**20, "index_bytes": 2**20}
    return {
        "rows": 200_000,
        "machine": {"cpus": 2},
        "service": {"batch_size": 5000, "readers_per_stream": 4, "replicas": 1, "replica_counts": [1, 2]},
        "ceiling": {
            "batched_insert_rows_per_s": 67_096,
            "copy_rows_per_s": 117_183,
            "cursor_read_rows_per_s": 391_641,
        },
        "ingest": {
            "plain_rows_per_s": 67_096,
            "pipeline_rows_per_s": 63_551,
            "overhead_percent": 5.3,
            "plain_postgres_cpu_s_per_1k_rows": 0.0105,
            "pipeline_postgres_cpu_s_per_1k_rows": 0.012,
        },
        "catch_up": main,
        "storage": {
            "users": 2000,
            "stream": {
                "rows": 200_000,
                "table_mib_per_million": 117.2,
                "index_mib_per_million": 104.3,
                "total_mib_per_million": 221.5,
                "indexes_mib_per_million": {
                    "telemetry_events_pipeline_idx": 59.6,
                    "telemetry_events_pkey": 21.0,
                },
            },
            "pipeline_index": "telemetry_events_pipeline_idx",
            "stream_without_pipeline": {
                "rows": 1_400_000,
                "table_mib_per_million": 110.0,
                "index_mib_per_million": 36.1,
                "total_mib_per_million": 146.1,
            },
            "outputs": [{"schema": "public", "name": "patterns", "rows": 5597, **table}],
            "state": [{"schema": "floyo_pipeline", "name": "checkpoints", "rows": 193, **table}],
        },
        "steady": [
            steady(500, 6.1, 12.0, 20.3),
            steady(1000, 8.9, 17.5, 29.1),
            steady(10_000, 47.9, 80.2, 101.6),
        ],
        "poll_wakeup": {"wakeup": "poll", "poll_interval_s": 2.0, **steady(1000, 1003.0, 1804.2, 1985.9)},
        "scale_out": [
            {k: main[k] for k in ("replicas", "rows_per_s", "ratio_to_batched_insert", "peak_rss_mib")}
            | {"service_cpu_s_per_1k_rows": 0.0523, "postgres_cpu_s_per_1k_rows": 0.0411},
            {
                "replicas": 2,
                "rows_per_s": 28_751,
                "ratio_to_batched_insert": 0.429,
                "peak_rss_mib": 107.6,
                "connections_peak": 17,
                "service_cpu_s_per_1k_rows": None,
                "postgres_cpu_s_per_1k_rows": None,
            },
        ],
        "sweeps": {
            "rows": 100_000,
            "batch_size": [sweep_point(500, 4, 9_100), sweep_point(5000, 4, 18_200)],
            "readers": [sweep_point(5000, 1, 8_300), sweep_point(5000, 8, 18_900)],
        },
        "service_exit_codes": [0, 0, 0],
    }


def test_the_report_prints_every_figure_beside_its_target() -> None:
    text = format_report(canned())
    assert "batched insert              67,096 rows/s" in text
    assert "catch-up through all consumers         17,351 rows/s  >= 0.5 x insert  0.26 x insert" in text
    assert "peak RSS (largest replica)              118.8 MiB     <= 200 MiB  0.59 of target" in text
    assert "ingest overhead (columns+trigger)         5.3 %" in text
    assert "p99 insert->effect @  1,000/s           29.1 ms      <= 25 ms  (p50 8.9 ms" in text
    assert "p99 insert->effect @ 10,000/s          101.6 ms      <= 100 ms" in text
    assert "catch-up, service processes 0.0523 CPU-s per 1,000 rows  (0.93 cores busy)" in text
    assert "catch-up, Postgres          0.0411 CPU-s per 1,000 rows  (0.71 cores busy)" in text
    assert "inserts, Postgres           0.0120 CPU-s per 1,000 rows inserted (0.0105 without" in text
    assert "2 replica(s)       28,751 rows/s  0.43 x insert  peak RSS 107.6 MiB  connections 17" in text
    assert "poll only @  1,000 rows/s           1003.0    1804.2    1985.9" in text
    assert "221.5 MiB per 1M rows" in text
    assert "of which the pipeline's     66.8 MiB per 1M rows (its column 7.2, table against a copy" in text
    assert "by FLOYO_BATCH_SIZE" in text and "by FLOYO_READERS_PER_STREAM" in text
    assert "WARNING" not in text


def test_a_quick_run_prints_the_core_figures_and_says_what_was_not_measured() -> None:
    results = copy.deepcopy(canned())
    for key in ("sweeps", "poll_wakeup"):
        del results[key]
    results["scale_out"] = results["scale_out"][:1]
    results["catch_up"].update(cpu(None, None))
    results["service_exit_codes"] = [0, 1]
    text = format_report(results)
    assert "catch-up through all consumers" in text and "p99 insert->effect @ 10,000/s" in text
    assert "poll only" not in text and "FLOYO_BATCH_SIZE" not in text and "Catch-up by replicas" not in text
    assert "not measured (not a local process)" in text
    assert "WARNING: service exit codes [0, 1]" in text


def test_the_plots_are_png_files_and_copied_where_asked(tmp_path: Path) -> None:
    plots = write_plots(canned(), tmp_path / "results")
    assert sorted(p.name for p in plots) == sorted([LATENCY_PLOT, THROUGHPUT_PLOT])
    for plot in plots:
        assert plot.read_bytes().startswith(PNG)
    copies = copy_plots(plots, tmp_path / "docs")
    assert [c.read_bytes() for c in copies] == [p.read_bytes() for p in plots]


def test_without_sweeps_only_the_latency_plot_is_made(tmp_path: Path) -> None:
    results = canned()
    del results["sweeps"]
    assert [p.name for p in write_plots(results, tmp_path)] == [LATENCY_PLOT]


def test_the_command_line_takes_lists_and_quick_keeps_the_target_rates() -> None:
    full = options_of(parser().parse_args(["--replicas", "1,2", "--rates", "2000"]))
    assert full.replicas == (1, 2)
    assert full.rates == (1000, 2000, 10_000)
    assert full.batch_sizes and full.readers_sweep and full.poll_wakeup
    quick = options_of(parser().parse_args(["--quick"]))
    assert quick.rates == (1000, 10_000)
    assert (quick.batch_sizes, quick.readers_sweep, quick.poll_wakeup) == ((), (), False)


def test_bench_imports_nothing_from_tests() -> None:
    imported = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported += [(path.name, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.append((path.name, node.module))
    assert imported  # the scan sees the imports
    assert [(f, m) for f, m in imported if m == "tests" or m.startswith("tests.")] == []
