"""Recording core/v1 Events, as client-go's EventRecorder does (with count aggregation).

`recorder.event(obj, "Normal", "ScalingReplicaSet", "Scaled up ...")` returns at once;
the write happens in the background. The same (object, type, reason, message) seen again
bumps `count` and `lastTimestamp` of the existing Event instead of creating a new one.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pocketkube.core import errors
from pocketkube.core.client import Client
from pocketkube.core.objects import rfc3339

log = logging.getLogger(__name__)


def object_reference(obj: dict) -> dict:
    m = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "namespace": m.get("namespace", ""), "name": m.get("name", ""),
           "uid": m.get("uid", ""), "apiVersion": obj.get("apiVersion", ""),
           "resourceVersion": m.get("resourceVersion", "")}
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str = ""):
        self.client = client
        self.component = component
        self.host = host
        self._seen: dict[tuple, tuple[str, str, int]] = {}  # key -> (namespace, event name, count)
        self._tasks: set[asyncio.Task] = set()

    def event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        task = asyncio.get_running_loop().create_task(self._record(obj, type_, reason, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _record(self, obj: dict, type_: str, reason: str, message: str) -> None:
        ref = object_reference(obj)
        namespace = ref.get("namespace") or "default"
        key = (ref.get("uid"), ref.get("kind"), ref.get("name"), type_, reason, message)
        now = rfc3339()
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
