"""A container instance's startup, liveness and readiness probes, as the kubelet's prober runs
them: each probe its own loop (initialDelaySeconds, then every periodSeconds, timeoutSeconds per
try, successThreshold / failureThreshold), liveness and readiness only once startup succeeded.

`Prober` owns nothing but the decisions; what a try does (`check`: the runtime's handler run
against the container) and what a verdict changes (`ready`, `started`, `unhealthy`: the pod
worker's state) are given to it, so the loops are the same over a real or a fake runtime.
Failures in a container's first second are retried quietly (a program still starting is not
a failure yet); every failure is a Warning `Unhealthy` event with the kubelet's message.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

PROBE_WARMUP_SECONDS = 1.0   # probe failures in a container's first second are retried quietly
PROBE_WARMUP_RETRY = 0.05


class Prober:
    """The probes of one container instance (see the module docstring)."""

    def __init__(self, spec: dict, *, check: Callable[[dict, float], Awaitable], alive: Callable[[], bool],
                 spawn: Callable[[Awaitable, str], asyncio.Task], event: Callable[[str, str, str], None],
                 ready: Callable[[bool], None], started: Callable[[], None],
                 unhealthy: Callable[[str, dict], None]):
        self.spec = spec
        self.check = check            # (probe, timeout) -> ProbeResult
        self.alive = alive            # whether the instance probed still runs
        self.spawn = spawn            # (coroutine, name) -> a task its worker owns
        self.event = event
        self.ready = ready            # readiness changed
        self.started = started        # the startup probe succeeded
        self.unhealthy = unhealthy    # (kind, probe): liveness or startup failed for good: restart it

    def start(self) -> tuple[list[asyncio.Task], bool]:
        """Start the loops; returns their tasks, and whether the container is ready at once
        (no readiness and no startup probe: ready once started, in the same status write)."""
        spec = self.spec
        name = spec["name"]
        startup_done = asyncio.Event()
        tasks = []
        if spec.get("startupProbe"):
            tasks.append(self.spawn(self._loop("Startup", spec["startupProbe"], None, startup_done), f"startup-{name}"))
        else:
            startup_done.set()
        if spec.get("livenessProbe"):
            tasks.append(self.spawn(self._loop("Liveness", spec["livenessProbe"], startup_done, None),
                                    f"liveness-{name}"))
        if spec.get("readinessProbe"):
            tasks.append(self.spawn(self._loop("Readiness", spec["readinessProbe"], startup_done, None),
                                    f"readiness-{name}"))
            return tasks, False
        if startup_done.is_set():
            return tasks, True
        tasks.append(self.spawn(self._ready_when_started(startup_done), f"ready-{name}"))
        return tasks, False

    async def _ready_when_started(self, startup_done: asyncio.Event) -> None:
        await startup_done.wait()
        if self.alive():
            self.ready(True)

    async def _loop(self, kind: str, probe: dict, wait_for: asyncio.Event | None, done: asyncio.Event | None) -> None:
        period = max(1, int(probe.get("periodSeconds") or 10))
        timeout = max(1, int(probe.get("timeoutSeconds") or 1))
        success_needed = max(1, int(probe.get("successThreshold") or 1))
        failure_limit = max(1, int(probe.get("failureThreshold") or 3))
        if wait_for is not None:
            await wait_for.wait()
        started = time.monotonic()
        await asyncio.sleep(int(probe.get("initialDelaySeconds") or 0))
        successes = failures = 0
        is_ready = False
        while self.alive():
            result = await self.check(probe, timeout)
            if not self.alive():
                return
            if not result.success and time.monotonic() - started < PROBE_WARMUP_SECONDS:
                await asyncio.sleep(PROBE_WARMUP_RETRY)  # a program still starting is not a failure yet
                continue
            if result.success:
                successes, failures = successes + 1, 0
                if kind == "Readiness" and successes >= success_needed and not is_ready:
                    is_ready = True
                    self.ready(True)
                if kind == "Startup":
                    done.set()
                    self.started()
                    return
            else:
                successes, failures = 0, failures + 1
                self.event("Warning", "Unhealthy", f"{kind} probe failed: {result.message}".rstrip())
                if failures >= failure_limit:
                    if kind == "Readiness":
                        if is_ready:
                            is_ready = False
                            self.ready(False)
                    else:
                        self.event("Normal", "Killing", f"Container {self.spec['name']} failed {kind.lower()} "
                                                        f"probe, will be restarted")
                        self.unhealthy(kind, probe)
                        return
            elapsed = time.monotonic() - started
            await asyncio.sleep(period - (elapsed % period) if elapsed > 0 else period)
