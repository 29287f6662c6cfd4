"""Switching habits as pure functions: the decayed statistics, the verdict, and seeded months of
simulated users against the targets of issue 16 (no database; tests/support/habit_simulation.py)."""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consumers.app_workflows import PREFIX, AppState, analyze_apps
from consumers.habits import Habits, Verdict, evidence
from tests.support import habit_simulation as sim

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "analyzers.md"


def test_switches_fade_with_a_weeks_half_life_in_event_time() -> None:
    h = Habits()
    h.record("vscode", "slack", T0, known=True)
    h.record("excel", "chrome", T0 + WEEK, known=False)
    assert (h.at, h.switches, h.pairs) == (T0 + WEEK, 1.5, {"vscode->slack": 0.5})
    assert h.apps == {"vscode": [0.0, 0.5], "slack": [0.5, 0.0], "excel": [0.0, 1.0], "chrome": [1.0, 0.0]}
    # A late row counts as old as it is, and does not move the clock.
    h.record("vscode", "slack", T0 - WEEK, known=True)
    assert (h.at, h.switches, h.pairs) == (T0 + WEEK, 1.75, {"vscode->slack": 0.75})


def test_forgotten_apps_leave_the_state() -> None:
    h = Habits()
    h.record("zoom", "notion", T0, known=False)
    h.record("vscode", "slack", T0 + 6 * WEEK, known=True)
    assert set(h.apps) == {"zoom", "notion", "vscode", "slack"}  # 2^-6 = 0.016: still there
    h.record("slack", "vscode", T0 + 7 * WEEK, known=False)
    assert set(h.apps) == {"vscode", "slack"}  # 2^-7 = 0.008: below HABIT_FORGET_BELOW
    assert h.pairs == {"vscode->slack": 0.5}


def test_state_survives_json_exactly() -> None:
    h = Habits()
    for i in range(50):
        h.record(sim.APPS[i % 7], sim.APPS[(i * 3 + 1) % 10], T0 + timedelta(minutes=37 * i), i % 4 == 0)
    doc: dict[str, Any] = json.loads(json.dumps(h.as_json()))
    assert Habits.from_json(h.at, doc) == h


def test_verdict_numbers() -> None:
    h = Habits(
        at=T0,
        switches=100.0,
        apps={"vscode": [10.0, 20.0], "slack": [18.0, 5.0]},
        pairs={"vscode->slack": 8.0},
    )
    v = h.judge("vscode", "slack")
    # 70 switches neither start nor end in vscode; 10 of them end in slack: chance = (10+1)/(70+2).
    assert (v.count, v.departures, v.share, v.chance) == (8.0, 20.0, 0.4, 11 / 72)
    assert v.lift == pytest.approx(2.618, abs=1e-3)
    assert v.evidence == pytest.approx(evidence(8.0, 20.0, 11 / 72))
    assert v.confidence == 0.62  # 1 - 1/lift
    assert h.judge("excel", "outlook") == Verdict(0.0, 0.0, 0.0, 1 / 102, 0.0, 0.0)


def test_evidence_is_the_signed_root_of_the_likelihood_ratio() -> None:
    expected = math.sqrt(2 * (10 * math.log(10 / 2) + 10 * math.log(10 / 18)))
    assert evidence(10, 20, 0.1) == pytest.approx(expected)
    assert expected == pytest.approx(4.52, abs=0.01)
    assert evidence(2, 20, 0.1) == 0.0  # at chance
    assert evidence(1, 20, 0.1) == 0.0  # below chance
    assert evidence(5, 5, 0.1) == pytest.approx(math.sqrt(2 * 5 * math.log(10)))


@pytest.mark.parametrize(
    ("verdict", "shown", "expected"),
    [
        (Verdict(4.0, 10, 0.4, 0.1, 4.0, 3.25), False, True),
        (Verdict(3.99, 10, 0.4, 0.1, 4.0, 3.25), False, False),  # too few switches
        (Verdict(4.0, 10, 0.4, 0.1, 1.99, 3.25), False, False),  # too little lift
        (Verdict(4.0, 10, 0.4, 0.1, 4.0, 3.24), False, False),  # too little evidence
        (Verdict(1.0, 10, 0.4, 0.1, 1.5, 1.5), True, True),  # kept down to 1.5 and 1.5
        (Verdict(1.0, 10, 0.4, 0.1, 1.49, 3.0), True, False),
        (Verdict(1.0, 10, 0.4, 0.1, 3.0, 1.49), True, False),
    ],
)
def test_suggest_and_keep_thresholds(verdict: Verdict, shown: bool, expected: bool) -> None:
    assert verdict.suggests(shown) is expected


def test_confidence_is_the_part_chance_does_not_explain() -> None:
    def confidence(lift: float) -> float:
        return Verdict(5, 10, 0.5, 0.5 / lift, lift, 5).confidence

    assert (confidence(4), confidence(2), confidence(1.5), confidence(0.8), confidence(100)) == (
        0.75,
        0.5,
        0.33,
        0.0,
        0.95,
    )


def _written(rows: list[sim.Focus], batch_size: int) -> tuple[dict[str, tuple[object, ...]], Habits]:
    """The suggestion rows (as the upsert leaves them) and the final habits, in batches."""
    states: dict[uuid.UUID, AppState] = {}
    written: dict[str, tuple[object, ...]] = {}
    for i in range(0, len(rows), batch_size):
        live = set()
        for key, row in written.items():
            if row[3] is None:
                source, target = key.removeprefix(PREFIX).split("->")
                live.add((rows[0].user_id, source, target))
        fx = analyze_apps(rows[i : i + batch_size], states, live)
        states = {**states, **fx.states}
        for s in fx.suggestions:
            created = written[s.suggestion_key][0] if s.suggestion_key in written else s.created_at
            written[s.suggestion_key] = (created, s.confidence, s.reasoning, s.withdrawn_at)
    [state] = states.values()
    return written, state.habits


def test_same_suggestions_and_state_for_any_batch_split() -> None:
    person = sim.habit_user(0, (0, 10), main_app=True)
    rows = list(sim.focus_events(person, 30, seed=99))
    whole = _written(rows, len(rows))
    written, _ = whole
    [row] = written.values()
    assert row[3] is not None  # made, then withdrawn once the habit stopped
    for size in (1, 37, 400):
        assert _written(rows, size) == whole


# The targets, on the populations of the docs' table (seeded; computed once per module).


@pytest.fixture(scope="module")
def figures() -> sim.Figures:
    return sim.figures()


def test_random_switching_rarely_gets_a_connector_suggestion(figures: sim.Figures) -> None:
    assert figures.randoms[30] <= 0.05
    assert figures.mains[30] <= 0.05


def test_habit_in_the_main_app_is_suggested_within_a_week_and_kept(figures: sim.Figures) -> None:
    habit = figures.main_habit
    assert sim.found_within(habit, 7) >= 0.9
    assert sum(o.lost_while_habit for o in habit) / len(habit) <= 0.05


def test_stopped_habit_is_withdrawn_or_halved_within_30_days(figures: sim.Figures) -> None:
    for outcomes in (figures.main_habit, figures.one_of_ten_habit):
        fades = sim.fade_days(outcomes)
        assert len(fades) >= 0.9 * len(outcomes)
        assert sum(1 for d in fades if d <= 30) >= 0.95 * len(fades)


def test_habit_in_one_app_of_ten_takes_two_weeks(figures: sim.Figures) -> None:
    """About 10 habit switches a week: too few to tell from chance within 7 days (see docs)."""
    habit = figures.one_of_ten_habit
    assert sim.found_within(habit, 14) >= 0.9
    assert sum(o.lost_while_habit for o in habit) / len(habit) <= 0.1


def test_accessed_together_weights_count_volume_but_rank_real_pairs_first(figures: sim.Figures) -> None:
    files = figures.files
    assert files.random_with_weight_5 == 1.0
    assert files.paired_on_top == 1.0


def test_docs_show_these_figures(figures: sim.Figures) -> None:
    text = DOCS.read_text()
    table = sim.tables(figures)
    assert table in text, (
        f"docs/analyzers.md is out of date; run: python -m tests.support.habit_simulation\n{table}"
    )
    assert re.search(r"python -m tests\.support\.habit_simulation", text)
