"""Switching habits: decayed app-switch statistics per user, and whether a pair beats chance.

Every switch A→B (an app transition) counts with weight 2^(-age / half-life), its age measured in
event time from the user's latest switch, so the statistics describe what the user does *lately* and
the same rows in the same order always give the same numbers. Per user we keep, all decayed:

- `switches`: every switch;
- `apps[X] = [arrivals, departures]`: switches into and out of X;
- `pairs["A->B"]`: switches A→B, only for the known connector pairs.

For a pair A→B, `share` = pairs[A→B] / departures[A] (how often leaving A means going to B), and
`chance` = how often the user's switches that do not involve A go to B (what leaving A would give if
the next app did not depend on A). `lift` = share / chance, and `evidence` is the signed square root of
the binomial likelihood-ratio statistic of share against chance (about "how many standard deviations
above chance"). The state is bounded: one entry per app the user switched to or from lately, one per
known pair. The rule and its numbers: docs/analyzers.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consumers import settings


def pair_key(source: str, target: str) -> str:
    return f"{source}->{target}"


@dataclass
class Habits:
    """One user's decayed switch counts, all as of `at` (the latest switch's event time)."""

    at: datetime | None = None
    switches: float = 0.0
    apps: dict[str, list[float]] = field(default_factory=dict)
    """app -> [arrivals, departures]."""
    pairs: dict[str, float] = field(default_factory=dict)
    """"source->target" -> switches, for known connector pairs only."""

    def copy(self) -> Habits:
        return Habits(self.at, self.switches, {k: list(v) for k, v in self.apps.items()}, dict(self.pairs))

    def as_json(self) -> dict[str, Any]:
        return {"switches": self.switches, "apps": self.apps, "pairs": self.pairs}

    @classmethod
    def from_json(cls, at: datetime | None, doc: dict[str, Any]) -> Habits:
        return cls(
            at,
            float(doc.get("switches", 0.0)),
            {k: [float(v[0]), float(v[1])] for k, v in doc.get("apps", {}).items()},
            {k: float(v) for k, v in doc.get("pairs", {}).items()},
        )

    def record(self, source: str, target: str, at: datetime, known: bool) -> None:
        """Count one switch source→target at `at` (`known`: the pair is a connector pair)."""
        half_life = settings.HABIT_HALF_LIFE.total_seconds()
        if self.at is None or at > self.at:
            if self.at is not None:
                self._fade(0.5 ** ((at - self.at).total_seconds() / half_life))
            self.at = at
            weight = 1.0
        else:  # a late row: it counts as old as it is
            weight = 0.5 ** ((self.at - at).total_seconds() / half_life)
        self.switches += weight
        self.apps.setdefault(target, [0.0, 0.0])[0] += weight
        self.apps.setdefault(source, [0.0, 0.0])[1] += weight
        if known:
            key = pair_key(source, target)
            self.pairs[key] = self.pairs.get(key, 0.0) + weight

    def _fade(self, factor: float) -> None:
        # Runs at nearly every switch: one pass over each table, the products computed once.
        floor = settings.HABIT_FORGET_BELOW
        self.switches *= factor
        gone = []
        for app, counts in self.apps.items():
            arrivals, departures = counts[0] * factor, counts[1] * factor
            counts[0], counts[1] = arrivals, departures
            if arrivals + departures < floor:
                gone.append(app)
        for app in gone:
            del self.apps[app]
        pairs = self.pairs
        gone = []
        for key, count in pairs.items():
            count *= factor
            pairs[key] = count
            if count < floor:
                gone.append(key)
        for key in gone:
            del pairs[key]

    def judge(self, source: str, target: str) -> Verdict:
        """How the user's switches source→target compare with chance, lately."""
        count = self.pairs.get(pair_key(source, target), 0.0)
        arrivals_a, departures_a = self.apps.get(source, (0.0, 0.0))
        arrivals_b = self.apps.get(target, (0.0, 0.0))[0]
        # Switches that neither start nor end in A, and those of them that end in B; one imagined
        # switch to B and one elsewhere keep chance above zero for an app reached only from A.
        others = max(self.switches - arrivals_a - departures_a, 0.0)
        others_to_b = min(max(arrivals_b - count, 0.0), others)
        chance = (others_to_b + 1.0) / (others + 2.0)
        share = count / departures_a if departures_a > 0 else 0.0
        return Verdict(
            count, departures_a, share, chance, share / chance, evidence(count, departures_a, chance)
        )


def evidence(count: float, trials: float, chance: float) -> float:
    """Signed root of the binomial likelihood-ratio statistic for `count` of `trials` against `chance`
    (0 when the count is at or below what chance gives)."""
    if trials <= 0 or count <= trials * chance:
        return 0.0
    g = count * math.log(count / (trials * chance))
    if trials > count:
        g += (trials - count) * math.log((trials - count) / (trials * (1.0 - chance)))
    return math.sqrt(max(2.0 * g, 0.0))


@dataclass(frozen=True)
class Verdict:
    count: float
    """Decayed switches source→target."""
    departures: float
    """Decayed switches out of source."""
    share: float
    chance: float
    lift: float
    evidence: float

    def suggests(self, shown: bool) -> bool:
        """Whether the pair is (still) a habit worth a suggestion; `shown`: it is suggested now."""
        if shown:
            return self.lift >= settings.HABIT_KEEP_LIFT and self.evidence >= settings.HABIT_KEEP_EVIDENCE
        return (
            self.count >= settings.HABIT_MIN_SWITCHES
            and self.lift >= settings.HABIT_MIN_LIFT
            and self.evidence >= settings.HABIT_MIN_EVIDENCE
        )

    @property
    def confidence(self) -> float:
        """1 - 1/lift: the part of the switches that chance does not explain, capped."""
        if self.lift <= 1.0:
            return 0.0
        return round(min(1.0 - 1.0 / self.lift, settings.HABIT_CONFIDENCE_CAP), 2)
