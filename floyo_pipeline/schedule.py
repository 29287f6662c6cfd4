"""Job schedules: a small cron subset (`minute hour day-of-month month day-of-week`, UTC), `@every`, `0`.

Fields take `*`, `*/n`, numbers, ranges `a-b` (optionally `/n`) and comma lists. As in Vixie cron,
when both day-of-month and day-of-week are restricted a day matching either one fires; Sunday is 0
or 7. `@every 30s` (also `m`, `h`) fires at multiples of the interval since the Unix epoch, which
gives every replica the same periods. `0` disables the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_UNITS = {"s": 1, "m": 60, "h": 3600}
# Long enough to reach any valid date (29 February recurs within 8 years).
_SEARCH_DAYS = 366 * 8 + 2


class ScheduleError(ValueError):
    """The schedule text is not valid; the message says which part."""


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = low, high
            elif "-" in base:
                a, b = base.split("-", 1)
                start, end = int(a), int(b)
            else:
                start = end = int(base)
                if step_text:
                    end = high
        except ValueError:
            raise ScheduleError(f"{name}: {part!r} is not a number, *, */n, a-b or a list") from None
        if step < 1 or not low <= start <= end <= high:
            raise ScheduleError(f"{name}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _parse_every(text: str) -> float:
    amount = text.strip()
    unit = 1
    if amount and amount[-1] in _UNITS:
        unit, amount = _UNITS[amount[-1]], amount[:-1]
    try:
        seconds = float(amount) * unit
    except ValueError:
        raise ScheduleError(f"@every: {text!r} is not a duration like 30s, 5m or 6h") from None
    if not 1 <= seconds <= 366 * 86400:
        raise ScheduleError("@every: the interval must be between 1 second and a year")
    return seconds


@dataclass(frozen=True)
class Schedule:
    text: str
    every: float | None = None
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    days_any: bool = True
    weekdays_any: bool = True
    disabled: bool = False

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_dom = day.day in self.days
        by_dow = (day.isoweekday() % 7) in self.weekdays
        if self.days_any and self.weekdays_any:
            return True
        if self.days_any:
            return by_dow
        if self.weekdays_any:
            return by_dom
        return by_dom or by_dow

    def latest(self, now: datetime) -> datetime | None:
        """The most recent fire time at or before `now` (None if disabled or never)."""
        if self.disabled:
            return None
        now = now.astimezone(UTC)
        if self.every is not None:
            return datetime.fromtimestamp((now.timestamp() // self.every) * self.every, UTC)
        day = now.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                today = day == now.date()
                for hour in sorted((h for h in self.hours if not today or h <= now.hour), reverse=True):
                    limit = now.minute if today and hour == now.hour else 59
                    minutes = [m for m in self.minutes if m <= limit]
                    if minutes:
                        return datetime(day.year, day.month, day.day, hour, max(minutes), tzinfo=UTC)
            day -= timedelta(days=1)
        return None

    def next_after(self, now: datetime) -> datetime | None:
        """The first fire time strictly after `now` (None if disabled or never)."""
        if self.disabled:
            return None
        now = now.astimezone(UTC)
        if self.every is not None:
            return datetime.fromtimestamp((now.timestamp() // self.every + 1) * self.every, UTC)
        day = now.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                today = day == now.date()
                for hour in sorted(h for h in self.hours if not today or h >= now.hour):
                    floor = now.minute + 1 if today and hour == now.hour else 0
                    minutes = [m for m in self.minutes if m >= floor]
                    if minutes:
                        return datetime(day.year, day.month, day.day, hour, min(minutes), tzinfo=UTC)
            day += timedelta(days=1)
        return None


def parse_schedule(text: str) -> Schedule:
    """Parse a schedule; raises ScheduleError naming the bad part."""
    clean = " ".join(text.split())
    if clean == "0":
        return Schedule(text=clean, disabled=True)
    if clean.startswith("@every"):
        return Schedule(text=clean, every=_parse_every(clean.removeprefix("@every").strip()))
    parts = clean.split(" ")
    if len(parts) != 5:
        raise ScheduleError("expected 5 fields (minute hour day-of-month month day-of-week), @every N or 0")
    fields = [_parse_field(p, name, lo, hi) for p, (name, lo, hi) in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in fields[4])
    schedule = Schedule(
        text=clean,
        minutes=fields[0],
        hours=fields[1],
        days=fields[2],
        months=fields[3],
        weekdays=weekdays,
        days_any=parts[2] == "*",
        weekdays_any=parts[4] == "*",
    )
    if schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ScheduleError("this day-of-month and month never occur together")
    return schedule
