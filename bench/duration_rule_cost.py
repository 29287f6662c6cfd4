"""CPU per duration row of the regression rule (consumers.durations.analyze_durations), without the
database: batches of 5,000 telemetry rows over 2,000 users as in bench/run.py (a third of them timed
actions), so that most series get one run per batch and are rebuilt from their stored state.

    python -m bench.duration_rule_cost
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta

from consumers.durations import DurationState, analyze_durations
from consumers.rank_test import RankComparison

USERS = 2000
ROWS_PER_BATCH = 5000 // 3
ROUNDS = 20


def main() -> None:
    rng = random.Random(1)
    users = [uuid.UUID(int=i + 1) for i in range(USERS)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    stored = {}
    for user in users:
        durations = [int(rng.gauss(800, 30)) for _ in range(100)]
        ranks = RankComparison(durations[:60], durations[60:])
        stored[(user, "terminal", "action_completed")] = DurationState(
            durations, 60, rank_u2=ranks.u2, rank_ties=ranks.ties
        )
    batch = [
        (
            users[i % USERS],
            "terminal",
            "action_completed",
            int(rng.gauss(800, 30)),
            start + timedelta(seconds=i),
        )
        for i in range(ROWS_PER_BATCH)
    ]
    began = time.perf_counter()
    for _ in range(ROUNDS):
        analyze_durations(batch, stored)
    per_row = (time.perf_counter() - began) / ROUNDS / len(batch)
    print(f"analyze_durations: {per_row * 1e6:.1f} µs per duration row ({len(batch)} rows a batch)")


if __name__ == "__main__":
    main()
