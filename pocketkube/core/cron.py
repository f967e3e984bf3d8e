"""Cron schedules as CronJobs read them (robfig/cron's ParseStandard, which Kubernetes uses):
five fields (minute hour day-of-month month day-of-week) with `*`, `?`, lists, ranges, steps and
month/day names; the descriptors @yearly @annually @monthly @weekly @daily @midnight @hourly and
`@every DURATION`; an optional `TZ=Zone ` or `CRON_TZ=Zone ` prefix. Day-of-month and
day-of-week match either one when both are restricted, as in Vixie cron.

`parse` raises ValueError with robfig's message (the API server puts it in its 422), and
`Schedule.next(after)` gives the first activation strictly after a time, in the schedule's zone.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
           ("month", 1, 12, {m: i + 1 for i, m in enumerate(
               ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}),
           ("day of week", 0, 6, {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}))
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_star: bool
    dow_star: bool
    zone: _dt.tzinfo | None = None  # None: the zone the caller gives
    every: float = 0.0  # @every: seconds between activations

    def next(self, after: _dt.datetime, zone: _dt.tzinfo | None = None) -> _dt.datetime | None:
        """The first activation strictly after `after` (aware), or None within five years."""
        if self.every:  # robfig's ConstantDelaySchedule: whole seconds, at least one
            return after.replace(microsecond=0) + _dt.timedelta(seconds=max(int(self.every), 1))
        tz = self.zone or zone or _dt.timezone.utc
        t = after.astimezone(tz).replace(second=0, microsecond=0) + _dt.timedelta(minutes=1)
        limit = t.year + 5
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + _dt.timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + _dt.timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + _dt.timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t += _dt.timedelta(minutes=1)
                continue
            return t
        return None

    def _day_matches(self, t: _dt.datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow


def parse(spec: str) -> Schedule:
    zone = None
    text = spec
    if text.startswith("TZ=") or text.startswith("CRON_TZ="):
        head, _, text = text.partition(" ")
        name = head.split("=", 1)[1]
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"provided bad location {name}: unknown time zone {name}") from None
        text = text.strip()
    if text.startswith("@"):
        if text.startswith("@every "):
            return Schedule(*(frozenset(),) * 5, False, False, zone, _every(text[len("@every "):]))
        if text not in _DESCRIPTORS:
            raise ValueError(f"unrecognized descriptor: {text}")
        text = _DESCRIPTORS[text]
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    sets, stars = [], []
    for value, (_, low, high, names) in zip(fields, _FIELDS):
        numbers, star = _field(value, low, high, names)
        sets.append(frozenset(numbers))
        stars.append(star)
    return Schedule(sets[0], sets[1], sets[2], sets[3], sets[4], stars[2], stars[4], zone)


def _field(value: str, low: int, high: int, names: dict[str, int]) -> tuple[set[int], bool]:
    numbers: set[int] = set()
    star = False
    for part in value.split(","):
        range_part, slash, step_text = part.partition("/")
        if range_part in ("*", "?"):
            start, end = low, high
            star = not slash
        else:
            first, dash, last = range_part.partition("-")
            start = _number(first, names)
            end = _number(last, names) if dash else start
            if slash and not dash:
                end = high
        step = 1
        if slash:
            step = _number(step_text, {})
            if step <= 0:
                raise ValueError(f"step of range should be a positive number: {part}")
        if start < low:
            raise ValueError(f"beginning of range ({start}) below minimum ({low}): {part}")
        if end > high:
            raise ValueError(f"end of range ({end}) above maximum ({high}): {part}")
        if start > end:
            raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {part}")
        numbers.update(range(start, end + 1, step))
    return numbers, star


def _number(text: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise ValueError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


def _every(text: str) -> float:
    """A Go duration ("1h30m", "90s"), at least one second."""
    matches = list(_DURATION.finditer(text))
    if not matches or "".join(m.group(0) for m in matches) != text:
        raise ValueError(f"failed to parse duration @every {text}: time: invalid duration \"{text}\"")
    return sum(float(m.group(1)) * _UNIT_SECONDS[m.group(2)] for m in matches)


def zone(name: str) -> _dt.tzinfo:
    """A CronJob's spec.timeZone; ValueError as time.LoadLocation words it."""
    if not name or name == "Local":
        raise ValueError("timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name}") from None
