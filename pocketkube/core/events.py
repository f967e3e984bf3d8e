"""Recording core/v1 Events, as client-go's EventRecorder does (with count aggregation).

`recorder.event(obj, "Normal", "ScalingReplicaSet", "Scaled up ...")` returns at once;
the write happens in the background. The same (object, type, reason, message) seen again
bumps `count` and `lastTimestamp` of the existing Event instead of creating a new one.

A recorder with a `Hold` keeps its events while its source is busy (the source calls
`busy()` as it works: the agent per pod change and status write, the scheduler per pod it
schedules) and sends them once the source has been quiet for `Hold.quiet` seconds, or the
oldest has waited `Hold.patience`, a few at a time: an event costs the API server about as
much as the write it tells of, and in a burst of pods those writes come first (client-go's
broadcaster sends events asynchronously too; `kubectl get events` shows the same events,
their times those of when they happened). `flush()` sends what is held at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from pocketkube.core import errors
from pocketkube.core.client import Client
from pocketkube.core.objects import rfc3339
from pocketkube.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)


def object_reference(obj: dict) -> dict:
    m = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "namespace": m.get("namespace", ""), "name": m.get("name", ""),
           "uid": m.get("uid", ""), "apiVersion": obj.get("apiVersion", ""),
           "resourceVersion": m.get("resourceVersion", "")}
    return {k: v for k, v in ref.items() if v}


@dataclass(frozen=True)
class Hold:
    """How long a recorder's events wait while their source is busy (see the module docstring)."""

    quiet: float = 0.2  # seconds without busy() before the held events go out ...
    patience: float = 2.0  # ... or when the oldest has waited this long
    at_once: int = 8  # events being written at a time (a burst must not open a connection each)


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str = "", hold: Hold | None = None):
        self.client = client
        self.component = component
        self.host = host
        self.hold = hold
        self._seen: dict[tuple, tuple[str, str, int]] = {}  # key -> (namespace, event name, count)
        self._tasks: set[asyncio.Task] = set()
        self._held: list[tuple[dict, str, str, str, str]] = []  # (obj, type, reason, message, time)
        self._held_since: float | None = None  # when the oldest held event was recorded (monotonic)
        self._active = 0.0  # when the source was last busy (monotonic)
        self._sender: asyncio.Task | None = None

    def event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        if self.hold is None:
            self._write(obj, type_, reason, message, rfc3339())
            return
        self._held.append((obj, type_, reason, message, rfc3339()))
        if self._held_since is None:
            self._held_since = time.monotonic()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_held(), name=f"{self.component}-events")

    def busy(self) -> None:
        """The source is working (held events wait until it has been quiet for Hold.quiet)."""
        self._active = time.monotonic()

    async def flush(self) -> None:
        """Send the held events now and wait until every event recorded so far is written."""
        if self._sender is not None:
            await cancel_and_wait(self._sender)
            self._sender = None
        held, self._held, self._held_since = self._held, [], None
        for event in held:
            self._write(*event)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _write(self, obj: dict, type_: str, reason: str, message: str, when: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(self._record(obj, type_, reason, message, when))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _send_held(self) -> None:
        """The held events, in order, Hold.at_once at a time, each batch once the source is quiet."""
        while self._held:
            await self._settled()
            batch = self._held[:self.hold.at_once]
            del self._held[:self.hold.at_once]
            if not self._held:
                self._held_since = None  # a backlog waits Hold.patience at most, as a whole
            await asyncio.wait([self._write(*event) for event in batch])  # not cancelled with this task

    async def _settled(self) -> None:
        while True:
            now = time.monotonic()
            quiet = self.hold.quiet - (now - self._active)
            patience = self.hold.patience - (now - (self._held_since or now))
            if quiet <= 0 or patience <= 0:
                return
            await asyncio.sleep(min(quiet, patience))

    async def _record(self, obj: dict, type_: str, reason: str, message: str, now: str) -> None:
        ref = object_reference(obj)
        namespace = ref.get("namespace") or "default"
        key = (ref.get("uid"), ref.get("kind"), ref.get("name"), type_, reason, message)
        try:
            seen = self._seen.get(key)
            if seen is not None:
                ns, name, count = seen
                try:
                    await self.client.patch("v1", "events", name, {"count": count + 1, "lastTimestamp": now},
                                            namespace=ns)
                    self._seen[key] = (ns, name, count + 1)
                    return
                except errors.APIError as exc:
                    if exc.code != 404:
                        raise
            name = f"{ref.get('name', 'unknown')}.{time.time_ns():x}"
            source = {"component": self.component}
            if self.host:
                source["host"] = self.host
            event = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": ref, "reason": reason, "message": message, "type": type_,
                "source": source, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "eventTime": None, "reportingComponent": self.component,
                "reportingInstance": self.host or self.component,
            }
            await self.client.create("v1", "events", event, namespace=namespace)
            if len(self._seen) > 4096:
                self._seen.clear()
            self._seen[key] = (namespace, name, 1)
        except errors.APIError as exc:
            log.debug("event %s/%s not recorded: %s", reason, ref.get("name"), exc.message)
        except Exception:
            log.exception("event %s not recorded", reason)
