"""Generated datasets through all analyzers: determinism (batch size, replay) and planted behaviour."""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg

from consumers.durations import analyze_durations
from tests.support.analyzers import (
    T0,
    Ev,
    consenting_users,
    dead_letters,
    insert_metrics,
    insert_rows,
    process,
    reset_outputs,
    snapshot,
    state_snapshot,
)
from tests.support.pg import TestDatabase

NOISE_APPS = ("chrome", "terminal", "excel", "figma")
NOISE_EXTENSIONS = ("txt", "png", "docx", "")


@dataclass
class Plan:
    heavy_py: set[uuid.UUID] = field(default_factory=set)
    habit: set[uuid.UUID] = field(default_factory=set)
    slowdown: set[uuid.UUID] = field(default_factory=set)
    rows: list[Ev] = field(default_factory=list)


def generate(users: list[uuid.UUID], seed: int, planted_share: float = 0.2) -> Plan:
    """Per user a timeline of noise (random apps, non-catalog files, at most two .md files, stable
    durations within 3 %), with planted behaviour for some: 3-8 .py files, 5-8 vscode->slack switches
    within a minute, or one action 30 % slower in its last 40 runs (after 60 to 70 at its usual speed)."""
    rng = random.Random(seed)
    plan = Plan()
    for user in users:
        t = rng.uniform(0, 3600)
        timeline: list[Ev] = []

        def add(
            app: str, event_type: str, path: str | None = None, duration: int | None = None, gap: int = 0
        ) -> None:
            nonlocal t
            t += gap or rng.choice((5, 12, 25, 40, 90, 400))
            timeline.append(Ev(user, t, app, event_type, path, duration))  # noqa: B023

        blocks: list[str] = ["noise"] * rng.randint(4, 8)
        if rng.random() < planted_share:
            plan.heavy_py.add(user)
            blocks += ["py"] * rng.randint(3, 8)
        if rng.random() < planted_share:
            plan.habit.add(user)
            blocks += ["habit"] * rng.randint(5, 8)
        rng.shuffle(blocks)
        md_left = rng.randint(0, 2)
        for block in blocks:
            if block == "py":
                add(
                    "vscode",
                    rng.choice(("file_opened", "file_modified")),
                    f"/proj/src/m{rng.randint(0, 5)}.py",
                )
            elif block == "habit":
                add("vscode", "app_focused")
                add("slack", "app_focused", gap=rng.randint(5, 60))
            else:
                for _ in range(rng.randint(1, 4)):
                    ext = rng.choice(NOISE_EXTENSIONS)
                    if md_left and rng.random() < 0.2:
                        md_left -= 1
                        ext = "md"
                    name = f"/docs/v1.{rng.randint(0, 9)}/file{rng.randint(0, 20)}"
                    name += f".{ext}" if ext else ""
                    add(rng.choice(NOISE_APPS), "file_opened", name)
                    add(rng.choice(NOISE_APPS), "app_focused")
        base = rng.randint(100, 2000)
        slow = rng.random() < planted_share
        if slow:
            plan.slowdown.add(user)
        older = rng.randint(60, 70)
        for i in range(older + 40):
            factor = 1.3 if slow and i >= older else 1.0
            add("terminal", "action_completed", duration=round(base * factor * rng.uniform(0.97, 1.03)))
        plan.rows += timeline
    plan.rows.sort(key=lambda r: (r.occurred_at, str(r.user)))
    return plan


def metrics_rows(seed: int) -> list[tuple[object, str, dict[str, object]]]:
    rng = random.Random(seed)
    rows: list[tuple[object, str, dict[str, object]]] = []
    midnight = T0.replace(hour=0)
    for day in range(5):
        for hour in range(0, 24, 3):
            ts = midnight + timedelta(days=day, hours=hour)
            level = 240 if day % 2 else 170
            rows.append((ts, "supabase", {"latencyMs": rng.uniform(level - 20, level + 20)}))
            rows.append((ts, "vercel", {"lcp": rng.uniform(1800, 2600), "cls": 0.05}))
            rows.append((ts, "ci", {"queueLength": rng.randint(0, 7)}))
            rows.append((ts, "expo", {"bundleMB": rng.uniform(28, 32)}))
    rng.shuffle(rows)
    # Late samples bring a slow day back under 200 ms: its insight resolves.
    late = midnight + timedelta(days=1, hours=23)
    rows += [(late + timedelta(minutes=m), "supabase", {"latencyMs": 150.0}) for m in range(10)]
    return rows


async def test_same_output_for_any_batch_size_and_after_replay(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    users = await consenting_users(admin, 6)
    plan = generate(users, seed=7, planted_share=0.5)
    await insert_rows(admin, plan.rows)
    await insert_metrics(admin, metrics_rows(seed=7))  # type: ignore[arg-type]

    await process(database, admin, batch_size=1, timeout=120)
    one = await snapshot(admin)
    one_state = await state_snapshot(admin)
    assert all(one.values()), {t: len(rows) for t, rows in one.items()}
    assert {r["status"] for r in one["insights"]} == {"open", "resolved"}

    await reset_outputs(admin)
    await process(database, admin, batch_size=1000)
    assert await snapshot(admin) == one
    assert await state_snapshot(admin) == one_state

    await reset_outputs(admin)
    await process(database, admin, batch_size=37)
    assert await snapshot(admin) == one
    assert await state_snapshot(admin) == one_state
    assert await dead_letters(admin) == []


async def test_planted_behaviour_is_found_and_stable_series_stay_quiet(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    users = await consenting_users(admin, 300)
    plan = generate(users, seed=2026)
    assert plan.heavy_py and plan.habit and plan.slowdown
    await insert_rows(admin, plan.rows)
    await process(database, admin, timeout=120)
    out = await snapshot(admin)
    suggestions = {(r["user_id"], r["suggestion_key"]) for r in out["suggestions"]}
    assert suggestions == {(u, "file_extension:py") for u in plan.heavy_py} | {
        (u, "app_transition:vscode->slack") for u in plan.habit
    }
    for row in out["suggestions"]:
        if row["suggestion_key"] == "file_extension:py":
            assert 0.3 <= row["confidence"] <= 0.8
            assert 1 <= len(row["actual_files"]) <= 3
    regressions = {r["user_id"]: r for r in out["insights"] if r["kind"] == "performance_regression"}
    assert set(regressions) == plan.slowdown
    for row in regressions.values():
        assert (row["status"], row["severity"]) == ("open", "warning")
        assert 0.2 < row["evidence"]["change"] < 0.4
    assert len(out["insights"]) == len(regressions)
    habits = {
        r["user_id"]
        for r in out["relationships"]
        if (r["source"], r["target"], r["relation_type"]) == ("vscode", "slack", "app_transition")
    }
    assert habits == plan.habit
    assert await dead_letters(admin) == []


@dataclass
class Timings:
    stable: set[uuid.UUID] = field(default_factory=set)
    held: set[uuid.UUID] = field(default_factory=set)
    recovered: set[uuid.UUID] = field(default_factory=set)
    medians: dict[uuid.UUID, float] = field(default_factory=dict)
    rows: list[Ev] = field(default_factory=list)


def timings(users: list[uuid.UUID], seed: int) -> Timings:
    """Noisy durations as real timings vary (lognormal, coefficient of variation 0.3, a median between
    100 and 2,000 ms per user), 160 runs each: stable for the first users, 50 % slower from run 60 on
    for the next ones, and for the last ones 50 % slower from run 60 to 100 and back afterwards."""
    rng = random.Random(seed)
    sigma = math.sqrt(math.log(1 + 0.3**2))
    plan = Timings()
    for n, user in enumerate(users):
        group = (plan.stable, plan.held, plan.recovered)[min(n * 3 // len(users), 2)]
        group.add(user)
        plan.medians[user] = median = rng.uniform(100, 2000)
        t = rng.uniform(0, 600)
        for run in range(160):
            slower = (
                1.5
                if (group is plan.held and run >= 60) or (group is plan.recovered and 60 <= run < 100)
                else 1.0
            )
            t += rng.uniform(20, 120)
            duration = round(median * slower * rng.lognormvariate(0, sigma))
            plan.rows.append(Ev(user, t, "terminal", "action_completed", duration=duration))
    plan.rows.sort(key=lambda r: (r.occurred_at, str(r.user)))
    return plan


async def test_noisy_timings_a_held_regression_stays_open_and_stable_series_stay_quiet(
    database: TestDatabase, admin: asyncpg.Connection
) -> None:
    users = await consenting_users(admin, 90)
    plan = timings(users, seed=14)
    await insert_rows(admin, plan.rows)
    await process(database, admin, batch_size=97, timeout=120)
    got = {r["user_id"]: r for r in (await snapshot(admin))["insights"]}
    # The same rows through the pure rule in one call give the same rows.
    pure = analyze_durations(
        ((r.user, r.app, r.event_type, r.duration or 0, r.occurred_at) for r in plan.rows), {}
    )
    assert {u: (r["status"], r["severity"], r["evidence"]) for u, r in got.items()} == {
        key[0]: (i.status, i.severity, i.evidence) for key, i in pure.insights.items()
    }
    # 60 runs slower and still open, measured against the baseline from before the slowdown.
    for user in plan.held:
        row = got[user]
        assert row["status"] == "open"
        assert 0.8 < row["evidence"]["baseline_median"] / plan.medians[user] < 1.2
        assert 0.25 < row["evidence"]["change"] < 0.85
        assert row["evidence"]["baseline_runs"] >= 40
    assert sum(got[u]["status"] == "resolved" for u in plan.recovered if u in got) >= len(plan.recovered) - 1
    assert sum(u in got for u in plan.stable) <= 1  # at most one alarm among 30 stable series
