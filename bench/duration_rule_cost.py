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

from consumers.durations import DurationState, Series, analyze_durations

USERS = 2000
ROWS_PER_BATCH = 5000 // 3
ROUNDS = 20
REPEATS = 5


def main() -> None:
    rng = random.Random(1)
    users = [uuid.UUID(int=i + 1) for i in range(USERS)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    stored = {}
    for user in users:
        durations = [int(rng.gauss(800, 30)) for _ in range(100)]
        # As loaded from the table: with the log sums a batch saved.
        stored[(user, "terminal", "action_completed")] = Series(DurationState(durations, 60)).state()
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
    # The best of a few repeats: the machine may be busy with other work.
    timings = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        for _ in range(ROUNDS):
            analyze_durations(batch, stored)
        timings.append((time.perf_counter() - began) / ROUNDS / len(batch))
    per_row = min(timings)
    print(f"analyze_durations: {per_row * 1e6:.1f} µs per duration row ({len(batch)} rows a batch)")


if __name__ == "__main__":
    main()
