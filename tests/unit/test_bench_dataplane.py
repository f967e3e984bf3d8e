"""bench.dataplane's proxy sync rows: medians over rounds with their min and max, the pooled
partial-sync median and p99 beside their goals, and no figure from too few rounds."""

from __future__ import annotations

from bench.dataplane import SyncRound, sync_rows


def rounds(n: int) -> list[SyncRound]:
    return [SyncRound(apply=0.5, cold=1.0 + i / 10, cold_nft=0.8, resync=0.9, resync_nft=0.7, cold_cpu=1.0,
                      resync_cpu=0.8, added=[10.0 + i, 20.0 + i, 30.0 + i], changed=[5.0, 6.0, 200.0])
            for i in range(n)]


def test_rows_are_medians_with_the_spread_of_rounds():
    rows = {row.name: row for row in sync_rows(10_000, rounds(5))}
    cold = rows["proxy full sync, 10,000 Services x 5 endpoints (cold)"]
    assert (cold.value, cold.low, cold.high, cold.goal, cold.higher) == (1.2, 1.0, 1.4, 2.0, False)
    assert "nft 0.80 s, generating 0.40 s" in cold.note and cold.verdict == "meets"
    added = rows["proxy partial sync at 10,000 Services x 5 endpoints: add one Service, median"]
    assert (added.value, added.low, added.high) == (22.0, 20.0, 24.0) and "141 ms" in added.anchor
    changed_p99 = rows["proxy partial sync at 10,000 Services x 5 endpoints: change one Service's endpoints, p99"]
    assert changed_p99.value > 100 and changed_p99.verdict.startswith("MISSES")


def test_too_few_rounds_give_no_figure():
    rows = sync_rows(10_000, rounds(2))
    assert all(row.value is None and "fewer than 5" in row.note for row in rows)


def test_full_sync_only_sizes_have_no_partial_rows():
    only_full = [SyncRound(cold=0.2, cold_nft=0.1, resync=0.2, resync_nft=0.1) for _ in range(5)]
    assert [row.name for row in sync_rows(1_000, only_full)] == [
        "proxy full sync, 1,000 Services x 5 endpoints (cold)",
        "proxy full sync, 1,000 Services x 5 endpoints (re-sync over its own table)"]


def test_a_round_is_scaled_to_the_yardstick_speed_but_its_waits_are_not():
    measured = SyncRound(cold=1.0, cold_nft=0.8, resync=0.5, added=[10.0, 20.0], changed=[4.0],
                         added_cpu=[9.0, 18.0], changed_cpu=[4.0], added_waited=[1.0, 2.0], changed_waited=[0.0])
    slow = measured.scaled(0.8)  # the CPU ran at 0.8 of the yardstick: at the yardstick the work is shorter
    assert (slow.cold, slow.cold_nft, slow.resync, slow.speed) == (0.8, 0.8 * 0.8, 0.4, 0.8)
    assert slow.added == [8.0, 16.0] and slow.added_cpu == [9.0 * 0.8, 18.0 * 0.8]
    assert slow.added_waited == [1.0, 2.0]
    assert SyncRound().scaled(1.2).added is None
