"""bench.crossmachine's pure parts: the CPU mask written to rps_cpus, a run's figures (at the
yardstick speed, CPU seconds per GB) and the rows (the goal on the ratio with the receive side on
its own CPU, by the clock; the whole-path ratios beside it without one)."""

from __future__ import annotations

from bench.crossmachine import GOAL, Sample, cpu_mask, rows


def test_cpu_mask_is_sysfs_hex_in_groups_of_32_cpus():
    assert cpu_mask([0, 1]) == "3"
    assert cpu_mask([1]) == "2"
    assert cpu_mask(list(range(40))) == "ff,ffffffff"
    assert cpu_mask([32]) == "1,00000000"


def sample(gbps: float, speed: float = 1.0, cpu: float = 50.0, sender: float | None = None) -> Sample:
    # 4 s at gbps: gbps / 2 GB; each iperf3 at `cpu` % of one CPU, 0.1 s of ksoftirqd
    return Sample(gbps, speed, {0: 1.0, 1: 0.5}, cpu if sender is None else sender, cpu, 0.1, 4.0, gbps / 2)


def test_sample_scales_to_the_yardstick_and_counts_both_processes_and_ksoftirqd_per_gb():
    s = sample(20.0, speed=0.5, cpu=40.0)
    assert s.at_yardstick == 40.0
    # (0.4 + 0.4) * 4 s + 0.1 s = 3.3 CPU-s for 10 GB, at half speed: 0.165 at the yardstick
    assert round(s.cpu_s_per_gb, 4) == 0.165
    assert "CPUs busy 100/50%" in s.text()


def test_rows_judge_the_goal_on_the_split_ratio_by_the_clock_and_per_sending_cpu():
    # the yardstick speed differs between the runs of a round: the ratio must not divide it in;
    # each path's figure in a round is the median of its runs
    same = [30.0, 32.0, 31.0, 29.0, 30.0]
    across = [27.0, 30.0, 28.0, 27.0, 28.5]
    samples = [{"same, split": [sample(s, speed=0.5, sender=100.0), sample(9.0, speed=0.5, sender=30.0),
                                sample(40.0, speed=0.5, sender=100.0)],
                "across, split": [sample(a, speed=1.0, sender=50.0)],
                "same, one CPU": [sample(30.0, cpu=50.0)], "across, one CPU": [sample(24.0, cpu=60.0)]}
               for s, a in zip(same, across)]
    by_name = {row.name: row for row in rows(samples, 4, 3)}
    split = by_name["across machines against one machine (receive on its own CPU)"]
    assert split.goal == GOAL and split.verdict == "meets"
    assert round(split.low, 3) == 0.9 and round(split.high, 3) == 0.95
    assert by_name["pod to pod on one machine (iperf3, 1 TCP stream, 4s, at the yardstick CPU speed, median of 3 runs "
                   "a round; receive on its own CPU)"].value == 60.0
    # per second of the sender's CPU: same 30 (9 / 0.3, 30 / 1, 40 / 1 -> median 30 in round 1),
    # across 27 / 0.5 = 54: the across sender got half its CPU
    per_cpu = by_name["across machines against one machine (receive on its own CPU; per second of the sending "
                      "iperf3's CPU)"]
    assert per_cpu.goal is None and round(per_cpu.low, 3) == round(54 / 30, 3)
    whole = by_name["across machines against one machine (whole path on one CPU)"]
    assert whole.goal is None and whole.value == 0.8
    # per GB: same (1.0 * 4 + 0.1) / 15, across (1.2 * 4 + 0.1) / 12: same's cost over across's
    per_gb = by_name["across machines against one machine (GB per CPU-second, whole path on one CPU)"]
    assert per_gb.goal is None and round(per_gb.value, 3) == round((4.1 / 15) / (4.9 / 12), 3)
