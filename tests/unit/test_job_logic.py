"""The Job controller's pure pieces: completedIndexes text, back-off delays, conditions."""

from __future__ import annotations

import datetime as _dt

import pytest

from pocketkube.controllers.job import _set_condition, backoff_delay, format_indexes


@pytest.mark.parametrize("indexes, text", [
    (set(), ""), ({0}, "0"), ({0, 1}, "0,1"), ({0, 1, 2}, "0-2"), ({1, 3, 4, 5, 7}, "1,3-5,7"),
    ({9, 2, 3, 4, 5, 0}, "0,2-5,9"),
])
def test_completed_indexes_text(indexes, text):
    assert format_indexes(indexes) == text


def test_backoff_doubles_from_ten_seconds_to_six_minutes():
    assert [backoff_delay(n) for n in range(0, 8)] == [0, 10, 20, 40, 80, 160, 320, 360]


def test_a_condition_moves_its_transition_time_only_when_its_status_changes():
    t0 = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)
    t1 = t0 + _dt.timedelta(seconds=5)
    conditions = _set_condition([], "Suspended", "True", "JobSuspended", "Job suspended", t0)
    again = _set_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", t1)
    assert again[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    resumed = _set_condition(again, "Suspended", "False", "JobResumed", "Job resumed", t1)
    assert (resumed[0]["status"], resumed[0]["reason"], resumed[0]["lastTransitionTime"]) == \
        ("False", "JobResumed", "2026-01-01T00:00:05Z")


def test_cronjob_job_names_and_scheduled_times():
    from zoneinfo import ZoneInfo

    from pocketkube.controllers.cronjob import job_name, most_recent_time, rfc3339_in
    from pocketkube.core import cron

    utc = _dt.timezone.utc
    t = _dt.datetime(2026, 12, 6, 6, 30, tzinfo=utc)
    assert job_name("backup", t) == f"backup-{int(t.timestamp()) // 60}"
    every5 = cron.parse("*/5 * * * *")
    latest, missed = most_recent_time(every5, t - _dt.timedelta(minutes=12), t + _dt.timedelta(seconds=30), utc)
    assert (latest, missed) == (t, 3)  # 6:20, 6:25, 6:30
    assert most_recent_time(every5, t, t + _dt.timedelta(minutes=4), utc) == (None, 0)
    assert rfc3339_in(t, utc) == "2026-12-06T06:30:00Z"
    assert rfc3339_in(t, ZoneInfo("Asia/Kolkata")) == "2026-12-06T12:00:00+05:30"
