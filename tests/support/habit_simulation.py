"""Seeded months of simulated app switching (and file access) through the pure analyzer rules.

App switching: each simulated user has 40 focus events a day among ten apps. A *random* user picks
the next app uniformly among the nine others. A user with a *main app* goes back to it after any other
app with probability `main_share` (0.3: about 9 of the 40 focus events a day). A *habit* A→B means
that, while the habit lasts, 40 % of A's sessions are followed by B (the others by one of the eight
remaining apps); before and after, the user switches as without it. Gaps between focus events: 90 %
between 15 s and 4 min, 10 % between 10 min and 1 h (a break); each day starts between 09:00 and
10:00 UTC.

Rows go through `analyze_apps` one day per batch, with suggestions upserted the way
consumers/queries.sql does (created_at kept, withdrawn_at and confidence following the latest
judgement), so what is measured is what the service writes.

File access (the accessed-together measurement): 60 file events a day on a project of 20 files, the
next file picked at random, 70 % of gaps between 2 and 25 s and 30 % between 1 and 20 min; a *paired*
user opens b right after a 40 % of the times a is opened.

`python -m tests.support.habit_simulation` prints the tables of docs/analyzers.md.
"""

from __future__ import annotations

import random
import statistics
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from consumers.app_workflows import PREFIX, AppState, analyze_apps
from consumers.file_patterns import FileState, analyze_files
from consumers.habits import pair_key
from consumers.suggestions import Suggestion
from floyo_pipeline.api import TelemetryEvent

APPS = ("vscode", "slack", "excel", "outlook", "figma", "jira", "terminal", "chrome", "notion", "zoom")
PAIRS = (("vscode", "slack"), ("excel", "outlook"), ("figma", "jira"))
START = datetime(2026, 3, 2, tzinfo=UTC)
DAY = timedelta(days=1)
EVENTS_PER_DAY = 40
HABIT_SHARE = 0.4
MAIN_SHARE = 0.3


@dataclass(frozen=True)
class Person:
    habit: tuple[str, str] | None = None
    habit_days: tuple[int, int] = (0, 0)
    """The habit lasts from the first day to before the second (days since START)."""
    main: str | None = None
    main_share: float = 0.0


def random_user() -> Person:
    return Person()


def main_app_user(index: int) -> Person:
    return Person(main=PAIRS[index % 3][0], main_share=MAIN_SHARE)


def habit_user(index: int, days: tuple[int, int], main_app: bool) -> Person:
    pair = PAIRS[index % 3]
    return Person(pair, days, pair[0] if main_app else None, MAIN_SHARE if main_app else 0.0)


@dataclass(frozen=True)
class Focus:
    """An app_focused telemetry row, as much of it as the rule reads."""

    user_id: uuid.UUID
    occurred_at: datetime
    app_id: str


def focus_events(person: Person, days: int, seed: int) -> Iterator[Focus]:
    """The person's focus events, in order; the user id comes from the seed."""
    rng = random.Random(seed)
    user = uuid.UUID(int=seed)
    app = rng.choice(APPS)
    for day in range(days):
        at = START + day * DAY + timedelta(hours=9, seconds=rng.uniform(0, 3600))
        for i in range(EVENTS_PER_DAY):
            if i:
                quick = rng.random() < 0.9
                at += timedelta(seconds=rng.uniform(15, 240) if quick else rng.uniform(600, 3600))
            yield Focus(user, at, app)
            app = _next_app(rng, person, app, day)


def _next_app(rng: random.Random, person: Person, app: str, day: int) -> str:
    first, stop = person.habit_days
    if person.habit is not None and app == person.habit[0] and first <= day < stop:
        if rng.random() < HABIT_SHARE:
            return person.habit[1]
        return rng.choice([a for a in APPS if a not in person.habit])
    if person.main is not None and app != person.main and rng.random() < person.main_share:
        return person.main
    return rng.choice([a for a in APPS if a != app])


@dataclass
class Row:
    """A connector suggestion row as the database would hold it, and every write to it."""

    created_at: datetime
    confidence: float
    withdrawn_at: datetime | None
    history: list[tuple[datetime, Suggestion]] = field(default_factory=list)
    """(end of the day whose batch wrote it, what was written), in order."""


def run(person: Person, days: int, seed: int) -> dict[str, Row]:
    """The person's connector suggestion rows after `days` days, one batch per day."""
    by_day: list[list[Focus]] = [[] for _ in range(days)]
    for focus in focus_events(person, days, seed):
        by_day[(focus.occurred_at - START) // DAY].append(focus)
    states: dict[uuid.UUID, AppState] = {}
    rows: dict[str, Row] = {}
    for day, batch in enumerate(by_day):
        live = set()
        for key, held in rows.items():
            if held.withdrawn_at is None:
                source, target = key.removeprefix(PREFIX).split("->", 1)
                live.add((uuid.UUID(int=seed), source, target))
        fx = analyze_apps(batch, states, live)
        states = {**states, **fx.states}
        for made in fx.suggestions:
            row = rows.setdefault(made.suggestion_key, Row(made.created_at, 0.0, None))
            row.confidence, row.withdrawn_at = made.confidence, made.withdrawn_at
            row.history.append((START + (day + 1) * DAY, made))
    return rows


def share_with_a_suggestion(people: Sequence[Person], days: Sequence[int], seed: int) -> dict[int, float]:
    """Share of `people` who got any connector suggestion within each of `days` days."""
    first: list[datetime | None] = []
    for i, person in enumerate(people):
        rows = run(person, max(days), seed * 100_000 + i)
        first.append(min((r.created_at for r in rows.values()), default=None))
    return {d: sum(1 for c in first if c is not None and c < START + d * DAY) / len(people) for d in days}


def share_under_the_volume_rule(people: Sequence[Person], days: Sequence[int], seed: int) -> dict[int, float]:
    """The same, under the first version's rule: a known pair suggested at its 5th transition."""
    first: list[datetime | None] = []
    for i, person in enumerate(people):
        counts: Counter[tuple[str, str]] = Counter()
        reached: datetime | None = None
        before: Focus | None = None
        for focus in focus_events(person, max(days), seed * 100_000 + i):
            pair = (before.app_id, focus.app_id) if before else None
            if before and pair in PAIRS and focus.occurred_at - before.occurred_at < timedelta(minutes=5):
                counts[pair] += 1
                if counts[pair] == 5 and reached is None:
                    reached = focus.occurred_at
            before = focus
        first.append(reached)
    return {d: sum(1 for c in first if c is not None and c < START + d * DAY) / len(people) for d in days}


@dataclass(frozen=True)
class HabitOutcome:
    found_after: timedelta | None
    """From the start of the habit until its suggestion was made; None if it never was."""
    lost_while_habit: bool
    """Withdrawn at some point after being made and before the habit stopped."""
    fade: timedelta | None
    """From the end of the habit until the suggestion was withdrawn or its confidence halved (measured
    against the last confidence while the habit lasted); None if neither happened."""


def habit_outcome(person: Person, days: int, seed: int) -> HabitOutcome:
    assert person.habit is not None
    row = run(person, days, seed).get(PREFIX + pair_key(*person.habit))
    if row is None:
        return HabitOutcome(None, False, None)
    begin, end = (START + d * DAY for d in person.habit_days)
    lost = any(s.withdrawn_at is not None and s.withdrawn_at < end for _, s in row.history)
    standing = [i for i, (day_end, s) in enumerate(row.history) if day_end <= end and s.withdrawn_at is None]
    fade = None
    if standing and end < START + days * DAY:
        at_end = row.history[standing[-1]][1].confidence
        for day_end, s in row.history[standing[-1] + 1 :]:
            if s.withdrawn_at is not None:
                fade = s.withdrawn_at - end
                break
            if s.confidence <= at_end / 2:
                fade = day_end - end
                break
    return HabitOutcome(row.created_at - begin, lost, fade)


def habit_outcomes(people: Sequence[Person], days: int, seed: int) -> list[HabitOutcome]:
    return [habit_outcome(p, days, seed * 100_000 + i) for i, p in enumerate(people)]


def found_within(outcomes: Sequence[HabitOutcome], days: int) -> float:
    found = [o for o in outcomes if o.found_after is not None and o.found_after < days * DAY]
    return len(found) / len(outcomes)


def fade_days(outcomes: Sequence[HabitOutcome]) -> list[float]:
    """Fade times in days of the habits that were suggested (infinity: not faded by the end)."""
    return sorted(
        o.fade / DAY if o.fade is not None else float("inf") for o in outcomes if o.found_after is not None
    )


# File access: accessed_together weights for random and paired users.

FILES = tuple(f"/proj/src/module{i}.py" for i in range(20))
FILE_EVENTS_PER_DAY = 60


def file_events(paired: bool, days: int, seed: int) -> Iterator[TelemetryEvent]:
    rng = random.Random(seed)
    user = uuid.UUID(int=seed)
    a, b = FILES[0], FILES[1]
    path = rng.choice(FILES)
    for day in range(days):
        at = START + day * DAY + timedelta(hours=9, seconds=rng.uniform(0, 3600))
        for i in range(FILE_EVENTS_PER_DAY):
            if i:
                at += timedelta(seconds=rng.uniform(2, 25) if rng.random() < 0.7 else rng.uniform(60, 1200))
            yield TelemetryEvent.model_construct(
                id=i, pipeline_partition=0, user_id=user, occurred_at=at, app_id="vscode",
                event_type="file_opened", file_path=path, duration_ms=None, metadata={}, created_at=at,
            )  # fmt: skip
            if paired and path == a and rng.random() < HABIT_SHARE:
                path = b
            else:
                path = rng.choice([p for p in FILES if p != path and not (paired and path == a and p == b)])


def together_weights(paired: bool, days: int, seed: int) -> Counter[tuple[str, str]]:
    """accessed_together weights after `days` days, one batch per day (weights add up as in the table)."""
    weights: Counter[tuple[str, str]] = Counter()
    states: dict[uuid.UUID, FileState] = {}
    rows = list(file_events(paired, days, seed))
    for day in range(days):
        batch = [r for r in rows if (r.occurred_at - START) // DAY == day]
        fx = analyze_files(batch, states, {})
        states = {**states, **fx.states}
        for (_, source, target), link in fx.together.items():
            weights[(source, target)] += link.weight
    return weights


@dataclass(frozen=True)
class TogetherFigures:
    random_top_weight: float
    """Median over random users of their heaviest pair's weight."""
    random_with_weight_5: float
    """Share of random users with some pair of weight 5 or more."""
    random_pairs_with_weight_5: float
    """Median number of such pairs per random user."""
    paired_weight: float
    """Median weight of the real pair a→b."""
    paired_on_top: float
    """Share of paired users whose heaviest pair is the real one."""


def together_figures(users: int, days: int, seed: int) -> TogetherFigures:
    randoms = [together_weights(False, days, seed * 100_000 + i) for i in range(users)]
    paired = [together_weights(True, days, seed * 100_000 + users + i) for i in range(users)]
    real = (FILES[0], FILES[1])
    return TogetherFigures(
        statistics.median(max(w.values()) for w in randoms),
        sum(1 for w in randoms if max(w.values()) >= 5) / users,
        statistics.median(sum(1 for v in w.values() if v >= 5) for w in randoms),
        statistics.median(w[real] for w in paired),
        sum(1 for w in paired if w.most_common(1)[0][0] == real) / users,
    )


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _users(share: float, of: int) -> str:
    return f"{round(share * of)} ({share:.1%})"


def _days(values: Sequence[float]) -> str:
    def one(v: float) -> str:
        return "> 30" if v == float("inf") else f"{v:.0f}"

    median, p90, most = statistics.median(values), values[int(0.9 * (len(values) - 1))], values[-1]
    return f"{one(median)} / {one(p90)} / {one(most)}"


def _habit_line(label: str, outcomes: Sequence[HabitOutcome], fade: bool = True) -> str:
    lost = sum(o.lost_while_habit for o in outcomes) / len(outcomes)
    found = f"{_pct(found_within(outcomes, 7))} / {_pct(found_within(outcomes, 14))}"
    if not fade:
        return f"| {label} ({len(outcomes)}) | {found} | {_pct(lost)} | |"
    return f"| {label} ({len(outcomes)}) | {found} | {_pct(lost)} | {_days(fade_days(outcomes))} |"


@dataclass(frozen=True)
class Figures:
    """Every simulated population of the tables, measured once."""

    randoms: dict[int, float]
    randoms_by_volume: dict[int, float]
    mains: dict[int, float]
    main_habit: list[HabitOutcome]
    one_of_ten_habit: list[HabitOutcome]
    later_habit: list[HabitOutcome]
    files: TogetherFigures


RANDOM_USERS, MAIN_APP_USERS, HABIT_USERS, LATER_HABIT_USERS, FILE_USERS = 200, 100, 60, 30, 20


def figures() -> Figures:
    """The populations, seeded."""
    return Figures(
        share_with_a_suggestion([random_user()] * RANDOM_USERS, (7, 30), seed=1),
        share_under_the_volume_rule([random_user()] * RANDOM_USERS, (7, 30), seed=1),
        share_with_a_suggestion([main_app_user(i) for i in range(MAIN_APP_USERS)], (7, 30), seed=2),
        habit_outcomes([habit_user(i, (0, 30), True) for i in range(HABIT_USERS)], 60, seed=3),
        habit_outcomes([habit_user(i, (0, 30), False) for i in range(HABIT_USERS)], 60, seed=4),
        habit_outcomes([habit_user(i, (30, 60), True) for i in range(LATER_HABIT_USERS)], 60, seed=5),
        together_figures(FILE_USERS, 30, seed=6),
    )


def tables(f: Figures) -> str:
    """The figures as the Markdown tables of docs/analyzers.md."""
    randoms, by_volume, mains, files = f.randoms, f.randoms_by_volume, f.mains, f.files
    return "\n".join(
        [
            "| Simulated users, 30 days (seeded) | With a connector suggestion within 7 / 30 days |",
            "| --- | --- |",
            f"| random switching among ten apps ({RANDOM_USERS}) "
            f"| {_users(randoms[7], RANDOM_USERS)} / {_users(randoms[30], RANDOM_USERS)} |",
            f"| the same users under the first version's rule (5 transitions) "
            f"| {_users(by_volume[7], RANDOM_USERS)} / {_users(by_volume[30], RANDOM_USERS)} |",
            f"| random, with a main app ({MAIN_APP_USERS}) "
            f"| {_users(mains[7], MAIN_APP_USERS)} / {_users(mains[30], MAIN_APP_USERS)} |",
            "",
            "| Habit A→B after 40 % of A's sessions | Suggested within 7 / 14 days of its start "
            "| Withdrawn while the habit lasted | Days from its end to withdrawn or confidence halved: "
            "median / 90 % / slowest |",
            "| --- | --- | --- | --- |",
            _habit_line("for 30 days, A the main app (~9 sessions a day)", f.main_habit),
            _habit_line("for 30 days, A one app of ten (~4 sessions a day)", f.one_of_ten_habit),
            _habit_line(
                "from day 30 on, after a month without it, A the main app", f.later_habit, fade=False
            ),
            "",
            f"| accessed_together after 30 days ({FILE_USERS} random, {FILE_USERS} paired users) | |",
            "| --- | --- |",
            f"| random users: heaviest pair's weight (median) | {files.random_top_weight:.0f} |",
            f"| random users with a pair of weight ≥ 5 | {_pct(files.random_with_weight_5)} |",
            f"| random users: pairs of weight ≥ 5 (median) | {files.random_pairs_with_weight_5:.0f} |",
            f"| paired users: weight of the real pair (median) | {files.paired_weight:.0f} |",
            f"| paired users whose heaviest pair is the real one | {_pct(files.paired_on_top)} |",
        ]
    )


if __name__ == "__main__":
    print(tables(figures()))
