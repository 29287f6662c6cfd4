"""The analyzers' thresholds as named settings (explained in docs/analyzers.md)."""

from __future__ import annotations

from datetime import timedelta

# file_patterns
ACCESSED_TOGETHER_WINDOW = timedelta(seconds=30)
"""Consecutive file events on different paths strictly closer than this are accessed together."""
SUGGESTION_MIN_USES = 3
"""A catalog extension used this many times (or more) earns an integration suggestion."""
SUGGESTION_CONFIDENCE_DIVISOR = 10
"""confidence = min(uses / SUGGESTION_CONFIDENCE_DIVISOR, SUGGESTION_CONFIDENCE_CAP)."""
SUGGESTION_CONFIDENCE_CAP = 0.9
ACTUAL_FILES_SHOWN = 3
"""How many of the most recent distinct paths a suggestion lists."""

# app_workflows
APP_TRANSITION_WINDOW = timedelta(minutes=5)
"""Consecutive rows in different apps strictly closer than this are an app transition."""
HABIT_HALF_LIFE = timedelta(days=7)
"""A switch weighs half as much in the habit statistics (consumers/habits.py) after this much event time."""
HABIT_MIN_SWITCHES = 4.0
"""A connector pair is suggested only with at least this many (decayed) switches A→B ..."""
HABIT_MIN_LIFT = 2.0
"""... at least this many times as often as chance would give ..."""
HABIT_MIN_EVIDENCE = 3.25
"""... and with this much evidence (signed root of the likelihood-ratio statistic against chance)."""
HABIT_KEEP_LIFT = 1.5
"""A suggested pair is withdrawn when its lift falls below this ..."""
HABIT_KEEP_EVIDENCE = 1.5
"""... or its evidence below this."""
HABIT_CONFIDENCE_CAP = 0.95
"""confidence = min(1 - 1/lift, HABIT_CONFIDENCE_CAP)."""
HABIT_FORGET_BELOW = 0.01
"""Decayed counts below this are dropped (about 7 half-lives without a switch)."""

# performance: durations
RECENT_RUNS = 40
"""The newest runs of a (user, app, event type), compared with the baseline."""
BASELINE_RUNS = 60
"""At most this many runs before the recent ones form the baseline; held while a regression is open."""
MIN_BASELINE_RUNS = 40
"""No verdict before the baseline has this many runs (at first, and again after a resolution)."""
REGRESSION_STANDARD_ERRORS = 3.0
"""A regression opens only when the recent runs' mean log duration is at least this many standard
errors above the baseline's (Welch's t statistic; about 99.8 % one-sided confidence) ..."""
REGRESSION_PERCENT = 10
"""... and more than this many percent above it (the ratio of the two samples' geometric means)."""
RESOLVE_PERCENT = 5
"""An open regression resolves when the recent runs are back within this many percent of its held
baseline ..."""
RESOLVE_STANDARD_ERRORS = 1.5
"""... or less than this many standard errors above it."""
CRITICAL_PERCENT = 50
"""A regression of more than this many percent is critical."""
WINSOR_SPREADS = 2.5
"""A run counts (and is kept) at most this many standard deviations of log duration away from the
mean of the sample it joins ..."""
WINSOR_MIN_RATIO = 2.0
"""... but is never pulled closer than this factor of that sample's geometric mean (twice or half) ..."""
WINSOR_MIN_RUNS = 10
"""... once that sample has this many runs (before, the other sample's bounds; with neither, none)."""

# performance: metrics_log daily rules
LCP_INCREASE_PERCENT = 10
"""Daily average LCP more than this many percent above the previous day's (with confidence)."""
LCP_RESOLVE_PERCENT = 5
"""An open LCP insight resolves when the day is this many percent or less above the previous day."""
SLOW_QUERY_MS = 200
"""Daily average Supabase latency above this many milliseconds (with confidence)."""
BUNDLE_MB = 30
"""Daily average Expo bundle size above this many megabytes (with confidence)."""
CI_QUEUE_LENGTH = 3
"""Daily average CI queue length above this (with confidence)."""
METRIC_CONFIDENCE = 0.999
"""A daily rule opens only when a t test on the day's samples gives its condition this confidence."""
MIN_DAILY_SAMPLES = 5
"""Days with fewer samples are not judged: one sample has no spread, a few have little."""
