"""Leader election (core/leaderelection.py) with a fake clock and an in-memory Lease that keeps
the API server's optimistic concurrency (an update with a stale resourceVersion is a 409)."""

from __future__ import annotations

import asyncio
import random

import pytest

from pocketkube.core import errors
from pocketkube.core.leaderelection import LeaderElector, Timing, micro_time


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0):
        self.t = start

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


class LeaseServer:
    """One Lease, as the API server keeps it: a resourceVersion bumped by every write."""

    def __init__(self) -> None:
        self.lease: dict | None = None
        self.rv = 0
        self.down = False
        self.writes: list[dict] = []

    def write(self, spec: dict, expected_rv: int | None) -> int:
        if self.down:
            raise errors.APIError(503, "ServiceUnavailable", "etcd is away")
        if expected_rv is None:
            if self.lease is not None:
                raise errors.APIError(409, "AlreadyExists", "leases \"x\" already exists")
        elif self.lease is None:
            raise errors.APIError(404, "NotFound", "not found")
        elif expected_rv != self.rv:
            raise errors.APIError(409, "Conflict", "the object has been modified")
        self.rv += 1
        self.lease = dict(spec)
        self.writes.append(dict(spec))
        return self.rv


class FakeLock:
    def __init__(self, server: LeaseServer):
        self.server = server
        self.seen_rv: int | None = None

    def describe(self) -> str:
        return "kube-system/kube-controller-manager"

    async def get(self) -> dict | None:
        if self.server.down:
            raise errors.APIError(503, "ServiceUnavailable", "etcd is away")
        self.seen_rv = self.server.rv if self.server.lease is not None else None
        return None if self.server.lease is None else dict(self.server.lease)

    async def create(self, record: dict) -> None:
        self.seen_rv = self.server.write(record, None)

    async def update(self, record: dict) -> None:
        if self.seen_rv is None:
            raise errors.APIError(409, "Conflict", "read first")
        self.seen_rv = self.server.write(record, self.seen_rv)


def elector(server: LeaseServer, clock: FakeClock, identity: str, **kw) -> LeaderElector:
    return LeaderElector(FakeLock(server), identity, Timing(), clock, rng=random.Random(1), **kw)


async def test_first_candidate_creates_the_lease_with_upstreams_fields():
    server, clock = LeaseServer(), FakeClock()
    a = elector(server, clock, "a")
    assert await a.try_acquire_or_renew()
    assert server.lease == {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": micro_time(clock.t),
                            "renewTime": micro_time(clock.t), "leaseTransitions": 0}
    assert micro_time(clock.t).endswith("Z") and len(micro_time(clock.t).split(".")[1]) == 7  # microseconds
    assert a.is_leader()


async def test_renewing_keeps_acquire_time_and_transitions_and_moves_renew_time():
    server, clock = LeaseServer(), FakeClock()
    a = elector(server, clock, "a")
    await a.try_acquire_or_renew()
    acquired = server.lease["acquireTime"]
    clock.t += 2
    assert await a.try_acquire_or_renew()
    assert server.lease["acquireTime"] == acquired
    assert server.lease["renewTime"] == micro_time(clock.t)
    assert server.lease["leaseTransitions"] == 0


async def test_a_held_lease_is_respected_until_the_lease_duration_passes_on_the_observers_clock():
    server, clock = LeaseServer(), FakeClock()
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()  # b observes a's record now
    assert b.leader == "a" and not b.is_leader()
    clock.t += 14.9
    assert not await b.try_acquire_or_renew()  # the record did not change: still counting from then
    clock.t += 0.2
    assert await b.try_acquire_or_renew()  # 15.1 s without a change: expired
    assert server.lease["holderIdentity"] == "b"
    assert server.lease["leaseTransitions"] == 1
    assert server.lease["acquireTime"] == micro_time(clock.t)


async def test_a_renewed_record_restarts_the_observers_count():
    server, clock = LeaseServer(), FakeClock()
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    await a.try_acquire_or_renew()
    await b.try_acquire_or_renew()
    clock.t += 10
    await a.try_acquire_or_renew()  # a renews at t+10
    clock.t += 1
    assert not await b.try_acquire_or_renew()  # b sees a new record at t+11
    clock.t += 14
    assert not await b.try_acquire_or_renew()  # 14 s after it saw the change
    clock.t += 1.1
    assert await b.try_acquire_or_renew()


async def test_two_candidates_racing_for_an_expired_lease_only_one_wins():
    server, clock = LeaseServer(), FakeClock()
    a, b, c = elector(server, clock, "a"), elector(server, clock, "b"), elector(server, clock, "c")
    await a.try_acquire_or_renew()
    await b.lock.get(), await c.lock.get()
    await b.try_acquire_or_renew(), await c.try_acquire_or_renew()
    clock.t += 16
    # Both read the same record; the second update carries a stale resourceVersion.
    results = await asyncio.gather(b.try_acquire_or_renew(), c.try_acquire_or_renew())
    assert sorted(results) == [False, True]
    assert server.lease["holderIdentity"] in ("b", "c")
    assert server.lease["leaseTransitions"] == 1


async def test_release_empties_the_holder_so_another_takes_over_at_once():
    server, clock = LeaseServer(), FakeClock()
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    await a.try_acquire_or_renew()
    await b.try_acquire_or_renew()
    assert await a.release()
    assert "holderIdentity" not in server.lease and server.lease["leaseDurationSeconds"] == 1
    assert await b.try_acquire_or_renew()
    assert server.lease["holderIdentity"] == "b" and server.lease["leaseTransitions"] == 1


async def test_run_leads_then_loses_after_the_renew_deadline_and_the_other_takes_over_within_the_duration():
    server, clock = LeaseServer(), FakeClock()
    events: list[tuple[str, float]] = []

    async def started():
        events.append(("started", clock.t))

    async def stopped():
        events.append(("stopped", clock.t))

    a = elector(server, clock, "a", on_started=started, on_stopped=stopped)
    task = asyncio.create_task(a.run())
    for _ in range(20):
        await asyncio.sleep(0)
    assert events == [("started", clock.t)] or events[0][0] == "started"
    renewals = len(server.writes)
    for _ in range(20):  # it keeps renewing every retry period
        await asyncio.sleep(0)
    assert len(server.writes) > renewals
    server.down = True  # etcd away: renewals fail
    lost_from = clock.t
    await asyncio.wait_for(task, 5)
    assert events[-1][0] == "stopped"
    assert events[-1][1] - lost_from <= Timing().renew_deadline + Timing().retry_period
    # The last successful renewal was at most a retry period before; the lease is valid 15 s from it,
    # so the old leader stopped acting before anyone could take over.
    assert events[-1][1] - lost_from < Timing().lease_duration


async def test_run_cancelled_while_leading_stops_the_work_and_releases():
    server, clock = LeaseServer(), FakeClock()
    stopped = []

    async def on_stopped():
        stopped.append(server.lease.get("holderIdentity"))

    a = elector(server, clock, "a", on_stopped=on_stopped)
    task = asyncio.create_task(a.run())
    for _ in range(10):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopped == ["a"]  # the work stopped while the Lease was still ours, then it was released
    assert "holderIdentity" not in server.lease


async def test_acquire_waits_for_the_holder_then_takes_over_when_it_stops_renewing():
    server, clock = LeaseServer(), FakeClock()
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    await a.try_acquire_or_renew()
    start = clock.t
    await asyncio.wait_for(b.acquire(), 5)  # a never renews again (killed)
    assert b.is_leader()
    took = clock.t - start
    assert Timing().lease_duration <= took <= Timing().lease_duration + Timing().retry_period * (1 + 1.2)


def test_timing_is_checked_like_client_go():
    with pytest.raises(ValueError):
        LeaderElector(None, "a", Timing(lease_duration=10, renew_deadline=10))
    with pytest.raises(ValueError):
        LeaderElector(None, "a", Timing(renew_deadline=2, retry_period=2))
