"""bench/harness.py: rounds, ratios and their refusals, rows and their verdicts, the JSON a
benchmark hands the runner."""

import argparse
import asyncio
import os

import pytest

from bench import harness
from bench.harness import Row


def test_percentile_interpolates_between_closest_ranks():
    assert harness.percentile([3, 1, 2, 4, 5], 50) == 3
    assert harness.percentile([1, 2], 50) == 1.5
    assert harness.percentile(range(1, 101), 99) == pytest.approx(99.01)
    assert harness.percentile([7], 99) == 7
    assert harness.percentile([], 50) != harness.percentile([], 50)  # nan


def test_interleave_runs_targets_in_turn_each_round():
    calls = []

    def target(name):
        def run(r):
            calls.append((name, r))
            return r * 10 + (1 if name == "a" else 2)
        return run

    out = harness.interleave({"a": target("a"), "b": target("b")}, rounds=3)
    assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert out == {"a": [1, 11, 21], "b": [2, 12, 22]}
    with pytest.raises(ValueError):
        harness.interleave({"a": target("a")}, rounds=0)


def test_ratio_is_paired_per_round_with_median_min_max():
    r = harness.ratio([10, 20, 30, 40, 50], [40, 80, 100, 160, 200])
    assert r.ok
    assert r.median == 0.25
    assert (r.low, r.high) == (0.25, 0.3)
    assert r.rounds == 5
    assert "0.25" in r.text()


def test_a_ratio_without_a_goal_is_refused_when_the_spread_is_wider_than_the_effect():
    r = harness.ratio([9, 11, 10, 12, 8], [10, 10, 10, 10, 10])
    assert r.ok  # the Spread itself: enough rounds, all paired
    assert "wider than the effect" in harness.parity_refusal(r)
    assert harness.parity_refusal(harness.ratio([5, 6, 5, 6, 5], [10] * 5)) == ""
    row = harness.ratio_row("a / b", r)
    assert row.value is None and row.verdict.startswith("no figure: the spread between rounds")


def test_a_ratio_with_a_goal_near_parity_is_printed_and_judged_round_by_round():
    # RBAC on / off <= 1.1: effect 0.02 from parity, spread 0.1 -- judged against the goal instead
    close = harness.ratio_row("on / off", harness.ratio([102, 98, 105, 100, 103], [100] * 5), goal=1.1,
                              higher=False)
    assert (close.value, close.low, close.high) == (1.02, 0.98, 1.05)
    assert close.verdict == "meets"
    straddles = harness.ratio_row("nft / direct", harness.ratio([90, 97, 94, 99, 96], [100] * 5), goal=0.95)
    assert straddles.value == 0.96
    assert straddles.verdict == "undecided: the median meets, the worst round (0.90) does not"
    below = harness.ratio_row("nft / direct", harness.ratio([90, 92, 94, 96, 91], [100] * 5), goal=0.95)
    assert below.verdict == "MISSES by 3% (0.92 < 0.95); the best round (0.96) meets"


def test_a_ratio_above_its_physical_limit_says_the_client_was_measured():
    row = harness.ratio_row("nft / direct", harness.ratio([104, 101, 99, 103, 102], [100] * 5), goal=0.95,
                            limit=1.0)
    assert row.value == 1.02
    assert row.verdict.startswith("no verdict: above its physical limit (1.02 > 1)")
    assert "load generator" in row.verdict
    within = harness.ratio_row("nft / direct", harness.ratio([98, 97, 99, 101, 97], [100] * 5), goal=0.95, limit=1.0)
    assert within.verdict == "meets"
    assert Row.from_dict(row.to_dict()) == row


def test_ratio_refused_with_too_few_rounds_or_unpaired():
    assert "fewer than 5" in harness.ratio([1, 1, 1], [2, 2, 2]).refusal
    assert harness.ratio([1] * 3, [2] * 3, min_rounds=3).ok
    with pytest.raises(ValueError):
        harness.ratio([1, 2], [1])
    assert "measured nothing" in harness.ratio([1] * 5, [2, 2, 0, 2, 2]).refusal


def test_spread_of_plain_figures():
    s = harness.spread([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.low, s.high, s.ok) == (3.0, 1.0, 5.0, True)
    assert not harness.spread([]).ok


def test_row_verdicts_say_whether_and_by_how_much():
    assert Row("x", 0.6, "x", goal=0.5).verdict == "meets"
    assert Row("x", 0.4, "x", goal=0.5).verdict == "MISSES by 20% (0.40 < 0.5)"
    assert Row("p99", 1.3, "ms", goal=1.0, higher=False).verdict == "MISSES by 30% (1.30 > 1)"
    assert Row("p99", 0.8, "ms", goal=1.0, higher=False).verdict == "meets"
    assert Row("p99", 30.3, "ms", goal=1.0, higher=False).verdict == "MISSES: 30.3× the goal (30.3 > 1)"
    assert Row("x", 0.6, "x", goal=0.5, low=0.45, high=0.7).verdict == \
        "undecided: the median meets, the worst round (0.45) does not"
    assert Row("p99", 11.0, "ms", goal=100, higher=False, low=8.0, high=346.4).verdict == \
        "undecided: the median meets, the worst round (346) does not"
    assert Row("x", 0.4, "x", goal=0.5, low=0.3, high=0.55).verdict == \
        "MISSES by 20% (0.40 < 0.5); the best round (0.55) meets"
    assert Row("x", None, "x", goal=0.5, note="too noisy").verdict == "no figure: too noisy"
    assert Row("x", 3.0, "MB").verdict == ""


def test_a_refused_figure_still_says_when_every_round_is_on_one_side_of_the_goal():
    assert Row("x", None, "x", goal=0.5, low=0.69, high=1.04, note="noisy").verdict == \
        "no figure: noisy; yet every round meets the goal (0.69–1.04)"
    assert Row("x", None, "x", goal=0.5, low=0.2, high=0.4, note="noisy").verdict == \
        "no figure: noisy; every round MISSES the goal (0.20–0.40)"
    assert Row("x", None, "x", goal=0.5, low=0.4, high=0.6, note="noisy").verdict == "no figure: noisy"


def test_ratio_row_carries_the_refusal():
    refused = harness.ratio_row("q/s", harness.ratio([1, 1, 1], [2, 2, 2]), goal=0.5)
    assert refused.value is None and "fewer than 5" in refused.note
    assert refused.verdict.startswith("no figure")
    kept = harness.ratio_row("q/s", harness.ratio([1] * 5, [4] * 5), goal=0.5, anchor="CoreDNS")
    assert (kept.value, kept.low, kept.high, kept.unit) == (0.25, 0.25, 0.25, "x")
    assert "MISSES by 50%" in kept.render() and "anchor: CoreDNS" in kept.render()


def test_row_text():
    row = Row("p99", 0.512, "ms", goal=1, higher=False, low=0.4, high=0.61)
    assert row.value_text() == "0.51 (0.40–0.61) ms"
    assert row.goal_text() == "≤ 1 ms"
    assert Row("r", 0.5, "x", goal=0.5).goal_text() == "≥ 0.5x"
    assert Row("r", None).value_text() == "n/a"


def test_session_writes_rows_machine_and_load(tmp_path, capsys):
    path = str(tmp_path / "out.json")
    args = argparse.Namespace(json=path)
    with harness.Session("demo", args) as session:
        session.add(Row("a", 1.0, "x", goal=0.5, anchor="peer"))
        session.note("a note")
    out = capsys.readouterr().out
    assert "load average" in out and "before" in out and "after" in out and "a note" in out
    data = harness.read_json(path)
    assert data["benchmark"] == "demo"
    assert data["machine"]["cores"] == os.cpu_count()
    assert len(data["load_before"]) == 3
    (row,) = data["rows"]
    assert row == Row("a", 1.0, "x", goal=0.5, anchor="peer", benchmark="demo")


def test_session_writes_nothing_when_the_benchmark_fails(tmp_path):
    path = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with harness.Session("demo", argparse.Namespace(json=str(path))):
            raise RuntimeError("boom")
    assert not path.exists()


def test_process_figures_from_proc():
    assert harness.cpu_seconds() > 0
    assert harness.rss_mb() > 1
    server, client = harness.server_and_client_cpus()
    assert server in harness.usable_cpus() and client in harness.usable_cpus()
    assert harness.taskset(1) == ["taskset", "-c", "1"]


def test_speed_is_the_yardstick_over_the_reference_loop():
    took = harness.reference_cpu_seconds(repeats=1)
    assert 0 < took < 10
    assert 0 < harness.speed() < 100
    assert sorted(harness.REROUND_AGREEMENT) == list(harness.REROUND_AGREEMENT)


def test_cpu_times_count_idle_and_iowait_as_not_busy():
    line = "cpu  100 5 50 800 40 3 2 0 7 0"  # user nice system idle iowait irq softirq steal guest guest_nice
    busy, total = harness.cpu_times(line)
    assert (busy, total) == (160, 1000)
    assert harness.busy_share((160, 1000), (220, 1200)) == 0.3
    assert harness.busy_share((160, 1000), (160, 1000)) == 0.0


def test_settled_returns_once_the_cpus_are_quiet(monkeypatch):
    readings = iter([(0, 100), (90, 200), (90, 200), (95, 300)])  # 90% busy, then 5%
    monkeypatch.setattr(harness, "cpu_times", lambda: next(readings))
    waited = asyncio.run(harness.settled(window=0.01, busy_below=0.15, timeout=5))
    assert 0.015 <= waited < 1
