"""bench.crossmachine's pure parts: the CPU mask written to rps_cpus, and the rows (the goal on
the ratio with the receive side on its own CPU, the whole-path ratio beside it without one)."""

from __future__ import annotations

from bench.crossmachine import GOAL, cpu_mask, rows


def test_cpu_mask_is_sysfs_hex_in_groups_of_32_cpus():
    assert cpu_mask([0, 1]) == "3"
    assert cpu_mask([1]) == "2"
    assert cpu_mask(list(range(40))) == "ff,ffffffff"
    assert cpu_mask([32]) == "1,00000000"


def test_rows_judge_the_goal_on_the_split_ratio_only():
    results = {"same": [30.0, 32.0, 31.0, 29.0, 30.0], "across": [27.0, 30.0, 28.0, 27.0, 28.5],
               "same, one CPU": [30.0, 31.0, 30.0, 29.0, 30.0], "across, one CPU": [24.0, 24.0, 23.0, 23.0, 24.0]}
    by_name = {row.name: row for row in rows(results, 5)}
    split = by_name["across machines against one machine (receive on its own CPU)"]
    whole = by_name["across machines against one machine (whole path on the sending CPU)"]
    assert split.goal == GOAL and split.verdict == "meets"
    assert round(split.low, 3) == 0.9 and round(split.high, 3) == 0.95
    assert whole.goal is None and round(whole.value, 3) == 0.793
    assert by_name["pod to pod on one machine (iperf3, 1 TCP stream, 5s, at the yardstick CPU speed; receive on its own CPU)"].value == 30.0
