"""The taint eviction controller (kube-controller-manager's "taint-eviction-controller", the
taint manager that was once part of the node lifecycle controller): deletes the pods that run on
a node with a NoExecute taint they do not tolerate.

For each pod bound to a node with NoExecute taints:
- a taint the pod does not tolerate: the pod is deleted at once;
- every taint tolerated, the tolerations used all without `tolerationSeconds`: the pod stays;
- otherwise it is deleted once the smallest `tolerationSeconds` of the tolerations used has
  passed since the controller saw it there (a deletion once scheduled keeps its time).
Taints removed, the pod gone or tolerating forever cancel a scheduled deletion (the event
TaintManagerEviction "Cancelling deletion of Pod NS/NAME"). A deletion records the Normal event
TaintManagerEviction "Marking for deletion Pod NS/NAME", gives the pod the condition
DisruptionTarget (reason DeletionByTaintManager), then deletes it with its grace period.

It acts with the rights of the node-controller ServiceAccount, as upstream's does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

from pocketkube.controllers.base import Controller
from pocketkube.controllers.nodelifecycle import NodeWork
from pocketkube.core import errors
from pocketkube.core.informer import object_key, split_key
from pocketkube.core.nodefit import tolerates
from pocketkube.core.objects import rfc3339

DELETE_RETRIES = 5
DISRUPTION_REASON = "DeletionByTaintManager"
DISRUPTION_MESSAGE = "Taint manager: deleting due to NoExecute taint"


# ---- pure decisions --------------------------------------------------------------------------


def no_execute_taints(node: dict | None) -> list[dict]:
    return [t for t in ((node or {}).get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]


def matching_tolerations(taints: list[dict], tolerations: list[dict]) -> tuple[bool, list[dict]]:
    """GetMatchingTolerations: whether every taint is tolerated, and for each taint the first
    toleration that tolerates it."""
    used = []
    for taint in taints:
        toleration = next((t for t in tolerations if tolerates(t, taint)), None)
        if toleration is None:
            return False, []
        used.append(toleration)
    return True, used


def min_toleration_seconds(tolerations: list[dict]) -> float | None:
    """getMinTolerationTime: the smallest tolerationSeconds (0 for none, or for a value <= 0),
    None when none of them has a limit (tolerated forever)."""
    if not tolerations:
        return 0.0
    limits = [t["tolerationSeconds"] for t in tolerations if t.get("tolerationSeconds") is not None]
    if not limits:
        return None
    return float(max(min(limits), 0))


def eviction_delay(taints: list[dict], tolerations: list[dict]) -> float | None:
    """Seconds after which a pod with these tolerations goes from a node with these NoExecute
    taints: 0 = at once, None = never."""
    tolerated, used = matching_tolerations(taints, tolerations)
    if not tolerated:
        return 0.0
    return min_toleration_seconds(used)


@dataclass(frozen=True)
class Scheduled:
    created: float  # when the deletion was first scheduled
    fire_at: float


def reschedule(current: Scheduled | None, delay: float, now: float) -> Scheduled | None:
    """processPodOnNode for a pod that tolerates for `delay` seconds: None keeps the deletion
    already scheduled (one scheduled before now stays as it is), else the deletion to schedule."""
    if current is not None and current.created < now:
        return None
    return Scheduled(current.created if current is not None else now, now + delay)


# ---- the controller --------------------------------------------------------------------------


@dataclass(frozen=True)
class PodWork:
    """Look at the pod `key` again, bound to `node` when it changed (another node: another look)."""

    key: str
    node: str


class TaintEvictionController(Controller):
    name = "taint-eviction-controller"
    service_account = "node-controller"  # upstream: "taint-manager uses existing cluster role from node-controller"
    workers = 1  # one worker: a node's taints are recorded before its pods are looked at, as upstream's sharding ensures

    def __init__(self, *args, clock: Callable[[], float] = time.time, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = clock

    def setup(self) -> None:
        self.pods = self.informers.informer("v1", "pods")
        self.nodes = self.informers.informer("v1", "nodes")
        self.tainted: dict[str, list[dict]] = {}  # node -> its NoExecute taints
        self.scheduled: dict[str, Scheduled] = {}  # pod key -> its deletion
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._deleting: set[asyncio.Task] = set()
        self.pods.add_handlers(lambda pod: self._pod_changed(None, pod), self._pod_changed,
                               lambda pod: self._pod_changed(pod, None))
        self.nodes.add_handlers(lambda node: self._node_changed(None, node), self._node_changed,
                                lambda node: self._node_changed(node, None))

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._deleting):
            task.cancel()
        await asyncio.gather(*self._deleting, return_exceptions=True)
        await super().stop()

    def _pod_changed(self, old: dict | None, new: dict | None) -> None:
        if old is not None and new is not None and \
                (old.get("spec") or {}).get("tolerations") == (new.get("spec") or {}).get("tolerations") and \
                (old.get("spec") or {}).get("nodeName") == (new.get("spec") or {}).get("nodeName"):
            return
        pod = new if new is not None else old
        self.queue.add(PodWork(object_key(pod), (pod.get("spec") or {}).get("nodeName") or ""))

    def _node_changed(self, old: dict | None, new: dict | None) -> None:
        if old is not None and new is not None and no_execute_taints(old) == no_execute_taints(new):
            return
        self.queue.add(NodeWork(((new or old) or {})["metadata"]["name"]))

    async def sync(self, key: NodeWork | PodWork) -> None:
        if isinstance(key, NodeWork):
            self._handle_node(key.name)
        else:
            self._handle_pod(key)

    def _handle_node(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            self.tainted.pop(name, None)
            return
        taints = no_execute_taints(node)
        if taints:
            self.tainted[name] = taints
        else:
            self.tainted.pop(name, None)
        pods = [p for p in self.pods.list() if (p.get("spec") or {}).get("nodeName") == name]
        now = self.clock()
        for pod in pods:
            key = object_key(pod)
            if not taints:
                self._cancel(key)
            else:
                self._process(key, (pod.get("spec") or {}).get("tolerations") or [], taints, now)

    def _handle_pod(self, work: PodWork) -> None:
        pod = self.pods.get(work.key)
        if pod is None:
            self._cancel(work.key)
            return
        node = (pod.get("spec") or {}).get("nodeName") or ""
        if node != work.node or not node:
            return
        taints = self.tainted.get(node)
        if taints is None:
            return
        self._process(work.key, (pod.get("spec") or {}).get("tolerations") or [], taints, self.clock())

    def _process(self, key: str, tolerations: list[dict], taints: list[dict], now: float) -> None:
        delay = eviction_delay(taints, tolerations)
        if delay is None:
            self._cancel(key)  # tolerated forever
            return
        if delay == 0:
            self._cancel(key)
            self._schedule(key, Scheduled(now, now))
            return
        plan = reschedule(self.scheduled.get(key), delay, now)
        if plan is None:
            return
        self._cancel(key)
        self._schedule(key, plan)

    def _schedule(self, key: str, plan: Scheduled) -> None:
        self.scheduled[key] = plan
        delay = max(plan.fire_at - self.clock(), 0.0)
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def _cancel(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if self.scheduled.pop(key, None) is not None and timer is not None:
            namespace, name = split_key(key)
            self.recorder.event(_pod_ref(namespace or "", name), "Normal", "TaintManagerEviction",
                                f"Cancelling deletion of Pod {key}")

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.scheduled.pop(key, None)
        task = asyncio.get_running_loop().create_task(self._delete(key), name=f"taint-evict-{key}")
        self._deleting.add(task)
        task.add_done_callback(self._deleting.discard)

    async def _delete(self, key: str) -> None:
        namespace, name = split_key(key)
        namespace = namespace or ""
        self.log.info("deleting pod %s", key)
        self.recorder.event(_pod_ref(namespace, name), "Normal", "TaintManagerEviction",
                            f"Marking for deletion Pod {key}")
        for attempt in range(DELETE_RETRIES):
            try:
                await self._mark_and_delete(namespace, name)
                return
            except errors.APIError as exc:
                if exc.code == 404:
                    return
                self.log.warning("deleting pod %s failed (attempt %d): %s", key, attempt + 1, exc.message)
            await asyncio.sleep(0.01)

    async def _mark_and_delete(self, namespace: str, name: str) -> None:
        """addConditionAndDeletePod: DisruptionTarget=True, then a delete with the pod's grace period."""
        pod = await self.client.get("v1", "pods", name, namespace)
        conditions = list((pod.get("status") or {}).get("conditions") or [])
        current = next((c for c in conditions if c.get("type") == "DisruptionTarget"), None)
        if current is None or current.get("status") != "True" or current.get("reason") != DISRUPTION_REASON:
            condition = {"type": "DisruptionTarget", "status": "True", "lastProbeTime": None,
                         "lastTransitionTime": rfc3339(), "reason": DISRUPTION_REASON,
                         "message": DISRUPTION_MESSAGE}
            pod.setdefault("status", {})["conditions"] = \
                [c for c in conditions if c.get("type") != "DisruptionTarget"] + [condition]
            await self.client.update("v1", "pods", pod, namespace, subresource="status")
        await self.client.delete("v1", "pods", name, namespace, preconditions={"uid": pod["metadata"]["uid"]})


def _pod_ref(namespace: str, name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": namespace, "name": name}}
