"""The duration regression rule on seeded simulated users (bench/regressions.py: lognormal durations,
60 runs before a change, the real rule run by run). No database: these are properties of the rule.

docs/analyzers.md has the same figures for 2,000 users a cell: the stable series here are those same
users, the slowdowns and recoveries the first 1,000 of them."""

from __future__ import annotations

import pytest

from bench.regressions import SPIKES, USERS, recovery, seed_of, stable, step

HALF = USERS // 2


@pytest.mark.parametrize("cv", [0.1, 0.3, 0.45, 0.6])
def test_stable_series_raise_almost_no_alarms_and_never_flap(cv: float) -> None:
    # The targets, at every noise level up to CV 0.6.
    quiet = stable(cv, USERS, seed_of(cv))
    assert quiet.open_at_worst_run <= 0.02
    assert quiet.flapped == 0


def test_low_noise_slowdowns_are_caught_within_40_runs_and_stay_open() -> None:
    for slower in (0.2, 0.3, 0.5):
        found = step(0.1, slower, HALF, seed_of(0.1, slower, 1))
        assert found.caught_and_held >= 0.99, slower
        assert found.open_at_end >= 0.99, slower


def test_slowdowns_at_cv_0_3() -> None:
    # Below the 95 % (30 % slower) and 70 % (20 % slower): at CV 0.3 a 30 % step is 4.4
    # standard errors of the comparison (60 baseline runs, 40 recent ones) and a 20 % step 3.0, and
    # holding stable series under 2 % open at once takes an opening bar of 3 of them
    # (docs/analyzers.md, "python -m bench.regressions --tradeoff").
    thirty = step(0.3, 0.3, HALF, seed_of(0.3, 0.3, 1))
    assert thirty.caught_and_held >= 0.92
    twenty = step(0.3, 0.2, HALF, seed_of(0.3, 0.2, 1))
    assert twenty.caught_and_held >= 0.52
    fifty = step(0.3, 0.5, HALF, seed_of(0.3, 0.5, 1))
    assert fifty.caught_and_held >= 0.99


def test_noisy_series_only_cry_for_large_slowdowns() -> None:
    assert step(0.6, 0.5, HALF, seed_of(0.6, 0.5, 1)).caught_and_held >= 0.75
    assert step(0.6, 0.1, HALF, seed_of(0.6, 0.1, 1)).caught <= 0.06


@pytest.mark.parametrize(("cv", "at_least"), [(0.1, 0.97), (0.3, 0.9), (0.6, 0.86)])
def test_slowdowns_that_go_away_resolve_within_40_runs(cv: float, at_least: float) -> None:
    back = recovery(cv, 0.3, HALF, seed_of(cv, 0.3, 2))
    assert back.open_when_back > 0.4
    assert back.resolved_within >= at_least


def test_rare_very_slow_runs_neither_raise_alarms_nor_hide_a_slowdown() -> None:
    # 2 % of runs 3 to 30 times slower: winsorized, they cost a few points of detection.
    assert stable(0.3, HALF, seed_of(0.3), spikes=SPIKES).open_at_worst_run <= 0.02
    assert step(0.3, 0.3, HALF, seed_of(0.3, 0.3, 1), spikes=SPIKES).caught_and_held >= 0.84
    assert step(0.1, 0.2, HALF, seed_of(0.1, 0.2, 1), spikes=SPIKES).caught_and_held >= 0.95
