"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics.

Several API servers over one etcd each run the controllers and the scheduler, but only the
holder of their Lease (`kube-controller-manager`, `kube-scheduler` in kube-system) acts.
What client-go's leaderelection package does, written here for our client:

- `try_acquire_or_renew()`: read the Lease (create it if missing, holding it); a Lease held
  by someone else is respected until `leaseDurationSeconds` have passed on *our* clock since
  we last saw its record change (`observed_time`: clock skew between machines does not
  matter, only their rates); otherwise write ourselves in as holder through an optimistic
  update (the Lease's resourceVersion: of two candidates only one wins). Taking it over sets
  acquireTime and adds one to leaseTransitions; renewing keeps both and moves renewTime.
  The holder first tries a fast renew from the record it observed, without a read.
- `run()`: try every retry period (2 s, jittered up to x2.2) until acquired, call
  `on_started`, then renew every retry period; when renewing has not succeeded for the renew
  deadline (10 s) leadership is lost: `on_stopped` is called. A lease duration (15 s) longer
  than the renew deadline leaves the old leader 5 s to stop acting before anyone else may
  take over. Cancelled while leading, it releases the Lease (holderIdentity "",
  leaseDurationSeconds 1: client-go's ReleaseOnCancel), so a clean shutdown hands over at once.
- `LeaderElected` is a component (start/stop) that keeps a candidate running and starts a
  fresh inner component (a ControllerManager) each time it leads, stopping it when leadership
  is lost. Upstream's kube-controller-manager exits instead; staying a candidate keeps the
  API server in the same process serving.

Times in the Lease are MicroTime (RFC 3339 with microseconds, UTC). The clock is
injectable (`Clock`: `now()` in seconds since the epoch, `sleep()`), for tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

import orjson

from pocketkube.core import errors
from pocketkube.core.client import Client

log = logging.getLogger(__name__)

LEASE_API = "coordination.k8s.io/v1"
LEASE_NAMESPACE = "kube-system"
JITTER_FACTOR = 1.2  # client-go's: the acquire loop waits retry_period * (1 + rand * 1.2)


@dataclass(frozen=True)
class Timing:
    """kube-controller-manager's and kube-scheduler's defaults (--leader-elect-*)."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class Clock(Protocol):
    def now(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def default_identity() -> str:
    """client-go's convention for the controller manager and scheduler: HOSTNAME_UUID."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def micro_time(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseLock:
    """The Lease NAMESPACE/NAME through a client: get() remembers the object read, so
    update() carries its resourceVersion (a concurrent writer makes it fail with 409)."""

    def __init__(self, client: Client, name: str, namespace: str = LEASE_NAMESPACE):
        self.client = client
        self.name = name
        self.namespace = namespace
        self._lease: dict | None = None

    def describe(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def get(self) -> dict | None:
        """The Lease's spec (the election record), or None when there is no Lease."""
        try:
            self._lease = await self.client.get(LEASE_API, "leases", self.name, self.namespace)
        except errors.APIError as exc:
            if exc.code == 404:
                return None
            raise
        return dict(self._lease.get("spec") or {})

    async def create(self, record: dict) -> None:
        self._lease = await self.client.create(LEASE_API, "leases", {
            "apiVersion": LEASE_API, "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace}, "spec": record}, self.namespace)

    async def update(self, record: dict) -> None:
        if self._lease is None:
            raise errors.APIError(409, "Conflict", "the Lease must be read before it is updated")
        lease = {**self._lease, "spec": record}
        self._lease = await self.client.update(LEASE_API, "leases", lease, self.namespace)


class LeaderElector:
    def __init__(self, lock: Any, identity: str, timing: Timing = Timing(), clock: Clock | None = None,
                 on_started: Callable[[], Awaitable[None]] | None = None,
                 on_stopped: Callable[[], Awaitable[None]] | None = None,
                 on_new_leader: Callable[[str], None] | None = None, rng: random.Random | None = None):
        if timing.lease_duration <= timing.renew_deadline:
            raise ValueError("the lease duration must be greater than the renew deadline")
        if timing.renew_deadline <= JITTER_FACTOR * timing.retry_period:
            raise ValueError("the renew deadline must be greater than retry period * 1.2")
        self.lock = lock
        self.identity = identity
        self.timing = timing
        self.clock = clock or RealClock()
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.on_new_leader = on_new_leader
        self._rng = rng or random.Random()
        self.observed: dict = {}
        self._observed_raw: bytes | None = None
        self.observed_time = 0.0
        self._reported_leader = ""

    # ---- state ------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.observed.get("holderIdentity") == self.identity

    @property
    def leader(self) -> str:
        return self.observed.get("holderIdentity") or ""

    def _lease_valid(self, now: float) -> bool:
        return self.observed_time + float(self.observed.get("leaseDurationSeconds") or 0) > now

    def _observe(self, record: dict) -> None:
        self.observed = record
        self.observed_time = self.clock.now()

    def _report_transition(self) -> None:
        if self.leader != self._reported_leader:
            self._reported_leader = self.leader
            if self.on_new_leader is not None:
                self.on_new_leader(self.leader)

    # ---- one attempt ------------------------------------------------------------------------

    async def try_acquire_or_renew(self) -> bool:
        now = self.clock.now()
        record = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.timing.lease_duration),
                  "acquireTime": micro_time(now), "renewTime": micro_time(now), "leaseTransitions": 0}
        try:
            if self.is_leader() and self._lease_valid(now):  # fast path: renew what we observed
                record["acquireTime"] = self.observed.get("acquireTime")
                record["leaseTransitions"] = self.observed.get("leaseTransitions") or 0
                try:
                    await self.lock.update(record)
                    self._observe(record)
                    return True
                except errors.APIError as exc:
                    log.info("lease %s: optimistic renew failed (%s), reading it", self.lock.describe(), exc)
            current = await self.lock.get()
            if current is None:
                await self.lock.create(record)
                self._observe(record)
                return True
            raw = orjson.dumps(current, option=orjson.OPT_SORT_KEYS)
            if raw != self._observed_raw:
                self._observe(current)
                self._observed_raw = raw
            if current.get("holderIdentity") and self._lease_valid(now) and not self.is_leader():
                return False  # held by another, not expired
            if self.is_leader():
                record["acquireTime"] = current.get("acquireTime")
                record["leaseTransitions"] = current.get("leaseTransitions") or 0
            else:
                record["leaseTransitions"] = (current.get("leaseTransitions") or 0) + 1
            await self.lock.update(record)
        except (errors.APIError, OSError, asyncio.TimeoutError) as exc:
            log.info("lease %s: %s", self.lock.describe(), exc)
            return False
        self._observe(record)
        return True

    async def release(self) -> bool:
        """Give the Lease up if we hold it (client-go's ReleaseOnCancel)."""
        if not self.is_leader():
            return True
        now = micro_time(self.clock.now())
        record = {"leaseDurationSeconds": 1, "acquireTime": now, "renewTime": now,
                  "leaseTransitions": self.observed.get("leaseTransitions") or 0}
        try:
            await self.lock.update(record)
        except (errors.APIError, OSError, asyncio.TimeoutError) as exc:
            log.warning("lease %s: release failed: %s", self.lock.describe(), exc)
            return False
        self._observe(record)
        return True

    # ---- loops ------------------------------------------------------------------------------

    async def _attempt(self) -> bool:
        try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            async with asyncio.timeout(self.timing.renew_deadline):
                return await self.try_acquire_or_renew()
        except TimeoutError:
            return False

    async def acquire(self) -> None:
        """Returns once we hold the Lease."""
        log.info("attempting to acquire leader lease %s...", self.lock.describe())
        while True:
            acquired = await self._attempt()
            self._report_transition()
            if acquired:
                log.info("successfully acquired lease %s", self.lock.describe())
                return
            await self.clock.sleep(self.timing.retry_period * (1 + self._rng.random() * JITTER_FACTOR))

    async def renew(self) -> None:
        """Returns when the Lease could not be renewed for the renew deadline."""
        while True:
            deadline = self.clock.now() + self.timing.renew_deadline
            while not await self._attempt():
                if self.clock.now() + self.timing.retry_period > deadline:
                    self._report_transition()
                    log.warning("failed to renew lease %s: lost leadership", self.lock.describe())
                    return
                await self.clock.sleep(self.timing.retry_period)
            self._report_transition()
            await self.clock.sleep(self.timing.retry_period)

    async def run(self) -> None:
        """One term: acquire, lead until the Lease is lost (on_stopped then) or the task is
        cancelled (then the Lease is released)."""
        await self.acquire()
        leading = False
        try:
            if self.on_started is not None:
                await self.on_started()
            leading = True
            await self.renew()
        except asyncio.CancelledError:
            if leading or self.is_leader():
                await asyncio.shield(self._stop_then_release())
            raise
        if self.on_stopped is not None:
            await self.on_stopped()

    async def _stop_then_release(self) -> None:
        if self.on_stopped is not None:
            await self.on_stopped()
        await self.release()


class LeaderElected:
    """A component that runs `make()`'s component only while holding the Lease `name`: a
    candidate from start() to stop(), a fresh inner component for each term."""

    def __init__(self, client: Client, name: str, make: Callable[[], Any], identity: str | None = None,
                 timing: Timing = Timing(), clock: Clock | None = None):
        self.name = name
        self.identity = identity or default_identity()
        self._make = make
        self.inner: Any = None
        self.leading = asyncio.Event()
        self.elector = LeaderElector(LeaseLock(client, name), self.identity, timing, clock,
                                     on_started=self._started, on_stopped=self._stopped,
                                     on_new_leader=lambda who: log.info("lease %s: new leader %s", name, who or "(none)"))
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._campaign(), name=f"leader-election {self.name}")

    async def _campaign(self) -> None:
        while True:
            await self.elector.run()

    async def _started(self) -> None:
        log.info("%s (%s) leads %s", self.identity, os.getpid(), self.name)
        self.inner = self._make()
        try:
            await self.inner.start()
        except Exception:
            log.exception("%s failed to start", self.name)
        self.leading.set()

    async def _stopped(self) -> None:
        self.leading.clear()
        inner, self.inner = self.inner, None
        if inner is not None:
            await inner.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
