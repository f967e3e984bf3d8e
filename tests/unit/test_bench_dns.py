"""bench.dns's latency rows keep only the fixed-rate rounds the sender kept its schedule in
(pure logic: rounds as Target.round records them)."""

from __future__ import annotations

from bench.dns import Target, on_schedule


def target(name: str, p99s: list[float], behind: set[int]) -> Target:
    t = Target(name, "127.0.0.1", 53, proc=None)
    t.rounds = [{"rate_p99": p, "rate_fell_behind": i in behind, "rate_late": 400 if i in behind else 3,
                 "rate_sent": 30000} for i, p in enumerate(p99s)]
    return t


def test_every_round_on_schedule_counts():
    mine, peer = on_schedule([target("pocketkube", [1, 2, 3, 4, 5], set()), target("dnsmasq", [5, 6, 7, 8, 9], set())],
                             "rate_p99", tries=3)
    assert (mine.ok, mine.median, mine.rounds) == (True, 3, 5)
    assert (peer.ok, peer.median, peer.low, peer.high) == (True, 7, 5, 9)


def test_a_round_the_sender_fell_behind_in_is_left_out():
    mine, peer = on_schedule([target("pocketkube", [1, 2, 90, 3, 4, 5], {2}), target("dnsmasq", [1] * 6, set())],
                             "rate_p99", tries=3)
    assert (mine.ok, mine.rounds, mine.high, mine.median) == (True, 5, 5, 3)
    assert peer.rounds == 6


def test_too_few_rounds_left_refuse_the_figure_and_say_why():
    mine, peer = on_schedule([target("pocketkube", [1, 2, 3, 4, 5], {0, 4}), target("dnsmasq", [1] * 5, set())],
                             "rate_p99", tries=3)
    assert not mine.ok and peer.ok
    assert "fell behind its schedule in 2 of 10 runs after 3 tries each" in mine.refusal
    assert "worst 400 of 30000" in mine.refusal and "leaving 3 rounds of pocketkube, fewer than 5" in mine.refusal
