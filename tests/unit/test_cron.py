"""Cron schedules: parsing (with robfig/cron's messages) and the next activation."""

from __future__ import annotations

import datetime as _dt
from zoneinfo import ZoneInfo

import pytest

from pocketkube.core import cron

UTC = _dt.timezone.utc


def at(*args, tz=UTC) -> _dt.datetime:
    return _dt.datetime(*args, tzinfo=tz)


@pytest.mark.parametrize("spec, after, expected", [
    ("*/1 * * * *", at(2026, 1, 1, 10, 0, 30), at(2026, 1, 1, 10, 1)),
    ("*/15 * * * *", at(2026, 1, 1, 10, 14), at(2026, 1, 1, 10, 15)),
    ("0 9 * * mon-fri", at(2026, 1, 2, 9, 0), at(2026, 1, 5, 9, 0)),  # Friday 9:00 -> Monday
    ("30 2 1 * *", at(2026, 1, 15), at(2026, 2, 1, 2, 30)),
    ("0 0 29 2 *", at(2026, 3, 1), at(2028, 2, 29)),
    ("0 0 13 * 5", at(2026, 1, 1), at(2026, 1, 2)),  # day 13 OR Friday
    ("@hourly", at(2026, 1, 1, 10, 0), at(2026, 1, 1, 11, 0)),
    ("@weekly", at(2026, 1, 1), at(2026, 1, 4)),
    ("0 12 * JAN,jul ?", at(2026, 2, 1), at(2026, 7, 1, 12)),
    ("@every 90s", at(2026, 1, 1, 0, 0, 0, 500), at(2026, 1, 1, 0, 1, 30)),
])
def test_next_activation(spec, after, expected):
    assert cron.parse(spec).next(after) == expected


def test_zones_from_the_prefix_and_the_caller():
    berlin = ZoneInfo("Europe/Berlin")
    assert cron.parse("TZ=Europe/Berlin 0 9 * * *").next(at(2026, 1, 1, 7, 30)) == at(2026, 1, 1, 9, 0, tz=berlin)
    assert cron.parse("0 9 * * *").next(at(2026, 1, 1, 9, 30), berlin) == at(2026, 1, 2, 9, 0, tz=berlin)


@pytest.mark.parametrize("spec, message", [
    ("bad", "expected exactly 5 fields, found 1: [bad]"),
    ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
    ("61 * * * *", "end of range (61) above maximum (59): 61"),
    ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
    ("5-2 * * * *", "beginning of range (5) beyond end of range (2): 5-2"),
    ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("@sometimes", "unrecognized descriptor: @sometimes"),
    ("TZ=Mars/Base * * * * *", "provided bad location Mars/Base: unknown time zone Mars/Base"),
])
def test_bad_schedules_say_why(spec, message):
    with pytest.raises(ValueError) as err:
        cron.parse(spec)
    assert str(err.value) == message


def test_time_zone_names():
    assert cron.zone("America/New_York") == ZoneInfo("America/New_York")
    with pytest.raises(ValueError, match="unknown time zone Nowhere/Land"):
        cron.zone("Nowhere/Land")
    with pytest.raises(ValueError, match="explicit time zone"):
        cron.zone("Local")
