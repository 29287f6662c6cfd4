"""How well the duration regression rule tells slowdowns from noise, on simulated series.

    python -m bench.regressions              # the table in docs/analyzers.md (2,000 users a cell)
    python -m bench.regressions --users 300  # quicker
    python -m bench.regressions --tradeoff   # false alarms against detection, by threshold
    python -m bench.regressions --spikes     # the same rule when 2 % of runs are 3 to 30 times slower

Each simulated user has one series of lognormal durations (median drawn between 100 and 2,000 ms, a
given coefficient of variation) fed run by run through the real rule (consumers.durations.Series).
Seeded: the same arguments always print the same table, and the first N users of a cell are the same
whatever the number of users asked for. The tests assert the targets on these functions
(tests/unit/test_regression_simulation.py).
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from consumers import settings
from consumers.durations import DurationState, Series

USERS = 2000
"""Simulated users per cell of the tables in docs/analyzers.md."""
BEFORE = 60
"""Runs before a change."""
AFTER = 120
"""Runs after it (and a stable series is BEFORE + AFTER runs long)."""
WITHIN = 40
"""A change should be caught (or a recovery resolved) within this many runs."""
SPIKES = 0.02
"""With --spikes, this share of runs is slower by a factor drawn between 3 and 30 (a cold cache, a
machine waking up): what real timings have and lognormal noise does not."""

Phases = Sequence[tuple[int, float]]
"""(runs, factor on the user's median) in order."""


def open_flags(
    cv: float, phases: Phases, users: int, seed: int, rule: type[Series] = Series, spikes: float = 0.0
) -> list[list[bool]]:
    """Per user, whether a regression is open after each run."""
    rng = random.Random(seed)
    sigma = math.sqrt(math.log(1 + cv * cv))
    everyone = []
    for _ in range(users):
        base = rng.uniform(100, 2000)
        series = rule(DurationState([]))
        flags = []
        for runs, factor in phases:
            for _ in range(runs):
                duration = base * factor * rng.lognormvariate(0, sigma)
                if spikes and rng.random() < spikes:
                    duration *= rng.uniform(3, 30)
                series.push(round(duration))
                flags.append(series.regression_open)
        everyone.append(flags)
    return everyone


@dataclass(frozen=True)
class Stable:
    ever_open: float
    """Share of users with a regression open at some run."""
    open_at_worst_run: float
    """The largest share of users with a regression open at the same run."""
    flapped: int
    """Users whose regression opened, resolved and opened again."""


def stable(cv: float, users: int, seed: int, rule: type[Series] = Series, spikes: float = 0.0) -> Stable:
    flags = open_flags(cv, [(BEFORE + AFTER, 1.0)], users, seed, rule, spikes)
    worst = max(sum(f[run] for f in flags) for run in range(BEFORE + AFTER))
    flapped = sum(sum(1 for a, b in zip([False, *f], f, strict=False) if b and not a) > 1 for f in flags)
    return Stable(sum(any(f) for f in flags) / users, worst / users, flapped)


@dataclass(frozen=True)
class Step:
    caught: float
    """Share of users with the regression open within WITHIN runs of the change."""
    caught_and_held: float
    """... and open from then on to the end of the series."""
    open_at_end: float


def step(
    cv: float, slower: float, users: int, seed: int, rule: type[Series] = Series, spikes: float = 0.0
) -> Step:
    flags = open_flags(cv, [(BEFORE, 1.0), (AFTER, 1 + slower)], users, seed, rule, spikes)
    caught = [f for f in flags if any(f[BEFORE : BEFORE + WITHIN])]
    held = [f for f in caught if all(f[f.index(True, BEFORE) :])]
    return Step(len(caught) / users, len(held) / users, sum(f[-1] for f in flags) / users)


@dataclass(frozen=True)
class Recovery:
    open_when_back: float
    """Share of users with the regression open on the last slow run."""
    resolved_within: float
    """Of those, the share resolved within WITHIN runs of durations being back."""


def recovery(
    cv: float, slower: float, users: int, seed: int, rule: type[Series] = Series, spikes: float = 0.0
) -> Recovery:
    back = 2 * BEFORE
    flags = open_flags(cv, [(BEFORE, 1.0), (BEFORE, 1 + slower), (BEFORE, 1.0)], users, seed, rule, spikes)
    were_open = [f for f in flags if f[back - 1]]
    resolved = sum(not all(f[back : back + WITHIN]) for f in were_open)
    return Recovery(len(were_open) / users, resolved / max(len(were_open), 1))


CVS = (0.1, 0.3, 0.45, 0.6)
STEPS = (0.1, 0.2, 0.3, 0.5)


def seed_of(cv: float, slower: float = 0.0, kind: int = 0) -> int:
    """A fixed seed per row (not hash(): that is salted per process for strings)."""
    return kind * 1_000_000 + round(cv * 1000) * 1000 + round(slower * 100)


def table(users: int, spikes: float = 0.0) -> str:
    lines = [
        "| CV | stable: ever open | stable: most open at once | flapped | "
        + " | ".join(f"{round(s * 100)} % slower: caught (held)" for s in STEPS)
        + " | 30 % back: resolved |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in STEPS) + " | --- |",
    ]
    for cv in CVS:
        quiet = stable(cv, users, seed_of(cv), spikes=spikes)
        cells = [
            f"{cv:g}",
            f"{quiet.ever_open:.1%}",
            f"{quiet.open_at_worst_run:.1%}",
            str(quiet.flapped),
        ]
        for slower in STEPS:
            found = step(cv, slower, users, seed_of(cv, slower, 1), spikes=spikes)
            cells.append(f"{found.caught:.1%} ({found.caught_and_held:.1%})")
        back = recovery(cv, 0.3, users, seed_of(cv, 0.3, 2), spikes=spikes)
        cells.append(f"{back.resolved_within:.1%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tuned(open_t: float, resolve_t: float) -> type[Series]:
    """The rule with other thresholds (settings.REGRESSION_STANDARD_ERRORS, RESOLVE_STANDARD_ERRORS)."""
    return type("Tuned", (Series,), {"open_t": open_t, "resolve_t": resolve_t})


TRADEOFF = ((2.5, 1.0), (2.5, 2.0), (2.7, 1.5), (2.9, 1.5), (3.0, 1.0), (3.0, 1.5), (3.1, 1.5), (3.3, 1.5))
"""(opens at, resolves below) in standard errors."""


def tradeoff(users: int, pairs: Sequence[tuple[float, float]] = TRADEOFF) -> str:
    lines = [
        "| opens at | resolves below | stable (CV 0.3): ever open | most open at once (worst CV) | "
        "CV 0.3, 20 % slower: caught (held) | 30 % slower: caught (held) | 30 % back: resolved |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    default = (settings.REGRESSION_STANDARD_ERRORS, settings.RESOLVE_STANDARD_ERRORS)
    for open_t, resolve_t in pairs:
        rule = tuned(open_t, resolve_t)
        quiet = {cv: stable(cv, users, seed_of(cv), rule) for cv in CVS}
        worst = max(CVS, key=lambda cv: quiet[cv].open_at_worst_run)
        twenty = step(0.3, 0.2, users, seed_of(0.3, 0.2, 1), rule)
        thirty = step(0.3, 0.3, users, seed_of(0.3, 0.3, 1), rule)
        back = recovery(0.3, 0.3, users, seed_of(0.3, 0.3, 2), rule)
        marker = " (default)" if (open_t, resolve_t) == default else ""
        lines.append(
            f"| {open_t:.1f}{marker} | {resolve_t:.1f} | {quiet[0.3].ever_open:.1%} | "
            f"{quiet[worst].open_at_worst_run:.1%} (CV {worst:g}) | "
            f"{twenty.caught:.1%} ({twenty.caught_and_held:.1%}) | "
            f"{thirty.caught:.1%} ({thirty.caught_and_held:.1%}) | {back.resolved_within:.1%} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=USERS, help="simulated users per cell")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--tradeoff", action="store_true", help="false alarms against detection, by threshold"
    )
    choice.add_argument("--spikes", action="store_true", help=f"{SPIKES:.0%} of runs 3 to 30 times slower")
    args = parser.parse_args(argv)
    if args.tradeoff:
        print(tradeoff(args.users))
    else:
        print(table(args.users, SPIKES if args.spikes else 0.0))


if __name__ == "__main__":
    main()
