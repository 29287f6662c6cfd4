"""The benchmark of docs/benchmark.md (its targets are there), measured side by side in one run on one
database. Run it in the project's environment:

    python3 dev.py bench                 # 1M-row backlog (several minutes); = .venv/bin/python bench/run.py
    python3 dev.py bench --rows 200000   # quicker
    python3 dev.py bench --quick         # only the target figures: no sweeps, no poll-only phase

Prints the Postgres ceiling (batched insert, COPY and cursor read rates of telemetry rows), the
pipeline's catch-up rate through all analyzers with its peak RSS and CPU per row (service and
Postgres), the ingest overhead of the pipeline's columns and trigger, storage per million rows, and
p50/p90/p99 insert→effect latency under steady load with NOTIFY wake-ups by rate and with the
poll-only wake-up; then catch-up by batch size and by readers per stream. Writes
bench/results/latest.json and two PNG plots beside it (with the `bench` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import Options, measure_all, wanted_rates  # noqa: E402
from bench.report import copy_plots, format_report, write_plots  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def counts(text: str) -> tuple[int, ...]:
    """A comma-separated list of positive integers: "1,2"."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"not a list of positive numbers: {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    d = Options()
    p.add_argument("--rows", type=int, default=d.rows, help="backlog size for the catch-up")
    p.add_argument("--users", type=int, default=d.users)
    p.add_argument(
        "--ceiling-rows", type=int, default=d.ceiling_rows, help="rows per insert-rate measurement"
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="FLOYO_BATCH_SIZE of the service")
    p.add_argument("--readers", type=int, default=d.readers, help="FLOYO_READERS_PER_STREAM of the service")
    p.add_argument(
        "--replicas",
        type=counts,
        default=d.replicas,
        help="service processes sharing the catch-up; a list (1,2) runs it once per count, each against "
        "the same insert ceiling (the steady load runs on the first)",
    )
    p.add_argument(
        "--steady-seconds", type=float, default=d.steady_seconds, help="length of each steady phase"
    )
    p.add_argument(
        "--rates",
        type=counts,
        default=d.rates,
        help="steady rates (rows/s) for latency by rate; 1000 and 10000 (the targets') are always in",
    )
    p.add_argument("--sweep-rows", type=int, default=d.sweep_rows, help="backlog of each sweep point")
    p.add_argument("--batch-sizes", type=counts, default=d.batch_sizes, help="FLOYO_BATCH_SIZE sweep")
    p.add_argument(
        "--readers-sweep", type=counts, default=d.readers_sweep, help="FLOYO_READERS_PER_STREAM sweep"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="only the target figures (rates 1000 and 10000; no poll-only phase, no sweeps)",
    )
    p.add_argument("--plots-to", type=Path, help="also copy the plots into this folder (e.g. docs/)")
    p.add_argument(
        "--from-json",
        type=Path,
        help="measure nothing: print the report and make the plots of a saved run (latest.json)",
    )
    return p


def options_of(args: argparse.Namespace) -> Options:
    options = Options(
        rows=args.rows,
        users=args.users,
        ceiling_rows=args.ceiling_rows,
        batch_size=args.batch_size,
        readers=args.readers,
        replicas=args.replicas,
        steady_seconds=args.steady_seconds,
        rates=wanted_rates(args.rates),
        sweep_rows=args.sweep_rows,
        batch_sizes=args.batch_sizes,
        readers_sweep=args.readers_sweep,
    )
    if args.quick:
        options = replace(
            options, rates=wanted_rates(()), poll_wakeup=False, batch_sizes=(), readers_sweep=()
        )
    return options


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        results = asyncio.run(
            measure_all(options_of(args), progress=lambda s: print(f"... {s}", file=sys.stderr))
        )
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    print(format_report(results))
    plots = write_plots(results, RESULTS)
    if plots:
        print("\nPlots: " + ", ".join(str(p.relative_to(ROOT)) for p in plots))
        if args.plots_to:
            copies = copy_plots(plots, args.plots_to)
            print("Copied to: " + ", ".join(str(p) for p in copies))
    else:
        print("\nNo plots: install the bench extra (matplotlib), or python3 dev.py install")
    return 0


if __name__ == "__main__":
    sys.exit(main())
