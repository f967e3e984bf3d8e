"""The node lifecycle controller (kube-controller-manager's "node-lifecycle-controller", acting
as the node-controller ServiceAccount): notices a node that stops reporting and taints it.

- Node monitor, every `--node-monitor-period` (5 s): a node is healthy while its agent renews
  its Lease in kube-node-lease or posts a new Ready heartbeat. When neither happened for
  `--node-monitor-grace-period` (40 s; 60 s for a node that never posted a status), its Ready,
  MemoryPressure, DiskPressure and PIDPressure conditions become Unknown (NodeStatusUnknown,
  "Kubelet stopped posting node status."), the Normal event NodeNotReady is recorded for the
  node and the Ready condition of each of its pods is set to False (MarkPodsNotReady, with a
  Warning NodeNotReady event on each), so Endpoints and EndpointSlices drop them.
- NoSchedule taints follow the conditions (TaintNodesByCondition): Ready False/Unknown ->
  node.kubernetes.io/not-ready / unreachable, MemoryPressure, DiskPressure, PIDPressure,
  NetworkUnavailable True -> their taints, spec.unschedulable -> node.kubernetes.io/unschedulable.
- NoExecute taints (taint-based eviction): a node seen NotReady gets not-ready:NoExecute
  (unreachable:NoExecute when Unknown) through a per-zone rate limiter (0.1 nodes a second);
  the taint eviction controller (tainteviction.py) then deletes the pods that do not tolerate
  it. A node Ready again loses both. Zones follow upstream: a zone with no Ready node is in
  full disruption; when every zone is, evictions stop and the NoExecute taints go ("master
  disruption mode"); a zone with more than 2 and at least 55% NotReady nodes is in partial
  disruption (tainting slows to 0.01/s above 50 nodes, stops below).
- RegisteredNode / RemovingNode events when a node appears or goes.

The decisions (health from heartbeats and leases, the conditions to write, the taints, zone
states, the rate limiter) are pure functions over a clock the caller passes.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable

from pocketkube.controllers.base import Controller
from pocketkube.core import errors
from pocketkube.core.events import EventRecorder
from pocketkube.core.informer import object_key
from pocketkube.core.objects import deep_copy, parse_time, rfc3339, rfc3339_at

NODE_MONITOR_PERIOD = 5.0
NODE_MONITOR_GRACE_PERIOD = 40.0
NODE_STARTUP_GRACE_PERIOD = 60.0
EVICTION_QPS = 0.1  # --node-eviction-rate
SECONDARY_EVICTION_QPS = 0.01  # --secondary-node-eviction-rate
LARGE_CLUSTER_THRESHOLD = 50  # --large-cluster-size-threshold
UNHEALTHY_ZONE_THRESHOLD = 0.55  # --unhealthy-zone-threshold
TAINTING_PASS_SECONDS = 0.1  # NodeEvictionPeriod
UPDATE_RETRIES = 5  # NodeHealthUpdateRetry

NODE_LEASE_NAMESPACE = "kube-node-lease"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
EXCLUDE_DISRUPTION_LABEL = "node.kubernetes.io/exclude-disruption"

# (condition type, status) -> the NoSchedule taint it calls for
CONDITION_TAINTS = {
    ("Ready", "False"): TAINT_NOT_READY,
    ("Ready", "Unknown"): TAINT_UNREACHABLE,
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
}
CONDITION_TAINT_KEYS = frozenset(CONDITION_TAINTS.values())
MONITORED_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")  # not NetworkUnavailable
STOPPED_REASON, STOPPED_MESSAGE = "NodeStatusUnknown", "Kubelet stopped posting node status."
NEVER_REASON, NEVER_MESSAGE = "NodeStatusNeverUpdated", "Kubelet never posted node status."

NORMAL, INITIAL, FULL_DISRUPTION, PARTIAL_DISRUPTION = "Normal", "Initial", "FullDisruption", "PartialDisruption"


# ---- pure decisions --------------------------------------------------------------------------


def condition(node: dict, kind: str) -> dict | None:
    return next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def no_schedule_taints(node: dict) -> list[dict]:
    """The NoSchedule taints the node's conditions and spec.unschedulable call for."""
    keys = [CONDITION_TAINTS[(c.get("type"), c.get("status"))] for c in (node.get("status") or {}).get("conditions")
            or [] if (c.get("type"), c.get("status")) in CONDITION_TAINTS]
    if (node.get("spec") or {}).get("unschedulable"):
        keys.append(TAINT_UNSCHEDULABLE)
    return [{"key": key, "effect": "NoSchedule"} for key in dict.fromkeys(keys)]


def no_schedule_diff(node: dict) -> tuple[list[dict], list[dict]]:
    """doNoScheduleTaintingPass: (taints to add, taints to remove) among the condition and
    unschedulable NoSchedule taints."""
    wanted = no_schedule_taints(node)
    have = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoSchedule"
            and (t.get("key") in CONDITION_TAINT_KEYS or t.get("key") == TAINT_UNSCHEDULABLE)]
    add = [t for t in wanted if not any(h.get("key") == t["key"] for h in have)]
    remove = [h for h in have if not any(t["key"] == h.get("key") for t in wanted)]
    return add, remove


def has_taint(node: dict, key: str, effect: str) -> bool:
    return any(t.get("key") == key and t.get("effect") == effect for t in (node.get("spec") or {}).get("taints") or [])


def swapped_taints(taints: list[dict], add: list[dict], remove: list[dict]) -> list[dict]:
    """The taints with `remove` gone and `add` in place (matched by key and effect; a taint
    already there with the same value is kept as it is, timeAdded too)."""
    out = [t for t in taints if not any(t.get("key") == r.get("key") and t.get("effect") == r.get("effect")
                                        for r in remove)]
    for taint in add:
        same = next((i for i, t in enumerate(out) if t.get("key") == taint.get("key")
                     and t.get("effect") == taint.get("effect")), None)
        if same is None:
            out.append(taint)
        elif (out[same].get("value") or "") != (taint.get("value") or ""):
            out[same] = taint
    return out


def zone_key(node: dict) -> str:
    """GetZoneKey: region and zone from the topology labels, "" for a node without them."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    region = labels.get("topology.kubernetes.io/region") or labels.get("failure-domain.beta.kubernetes.io/region", "")
    zone = labels.get("topology.kubernetes.io/zone") or labels.get("failure-domain.beta.kubernetes.io/zone", "")
    return f"{region}:\x00:{zone}" if region or zone else ""


def zone_state(ready_conditions: list[dict | None], threshold: float = UNHEALTHY_ZONE_THRESHOLD) -> tuple[int, str]:
    """ComputeZoneState: (NotReady nodes, state)."""
    ready = sum(1 for c in ready_conditions if c is not None and c.get("status") == "True")
    not_ready = len(ready_conditions) - ready
    if ready == 0 and not_ready > 0:
        return not_ready, FULL_DISRUPTION
    if not_ready > 2 and not_ready / (not_ready + ready) >= threshold:
        return not_ready, PARTIAL_DISRUPTION
    return not_ready, NORMAL


def zone_qps(state: str, zone_size: int) -> float:
    """setLimiterInZone: the tainting rate for a zone in this state."""
    if state == PARTIAL_DISRUPTION:
        return SECONDARY_EVICTION_QPS if zone_size > LARGE_CLUSTER_THRESHOLD else 0.0
    return EVICTION_QPS


def _epoch(value: str | None) -> float | None:
    t = parse_time(value)
    return t.timestamp() if t is not None else None


@dataclass(frozen=True)
class NodeHealth:
    """What the controller last saw of a node, with its own clock's times (never the node's)."""

    probe: float  # when a heartbeat (Ready condition or Lease) last came
    ready_transition: float
    ready: dict | None  # the Ready condition as last seen
    lease_renew: float | None  # the Lease's renewTime as last seen


@dataclass(frozen=True)
class Assessment:
    health: NodeHealth  # to keep, once `write` (if any) is stored
    observed: dict  # the Ready condition as the node has it (a stand-in Unknown if it has none)
    current: dict | None  # the Ready condition after `write`
    write: list[dict] | None  # the node's new status.conditions, when they must change


def assess(saved: NodeHealth | None, node: dict, lease: dict | None, now: float,
           grace: float = NODE_MONITOR_GRACE_PERIOD, startup_grace: float = NODE_STARTUP_GRACE_PERIOD) -> Assessment:
    """tryUpdateNodeHealth: fold the node's Ready heartbeat and its Lease into what was saved,
    and when no heartbeat came for the grace period, the conditions that say so."""
    meta = node.get("metadata") or {}
    created_at = meta.get("creationTimestamp")
    created = _epoch(created_at) or now
    current = condition(node, "Ready")
    saved_lease = saved.lease_renew if saved is not None else None
    if current is None:
        observed = {"type": "Ready", "status": "Unknown", "lastHeartbeatTime": created_at,
                    "lastTransitionTime": created_at}
        period = startup_grace
        health = replace(saved, ready=None) if saved is not None else NodeHealth(created, created, None, None)
    else:
        observed = dict(current)
        period = grace
        if saved is None or saved.ready is None:
            health = NodeHealth(now, now, current, saved_lease)
        elif saved.ready.get("lastHeartbeatTime") != current.get("lastHeartbeatTime"):
            transition = now if saved.ready.get("lastTransitionTime") != current.get("lastTransitionTime") \
                else saved.ready_transition
            health = NodeHealth(now, transition, current, saved_lease)
        else:
            health = saved
    renew = _epoch(((lease or {}).get("spec") or {}).get("renewTime"))
    if renew is not None and (saved_lease is None or saved_lease < renew):
        health = replace(health, probe=now, lease_renew=renew)
    if now <= health.probe + period:
        return Assessment(health, observed, current, None)
    stamp = rfc3339_at(now)
    conditions = [dict(c) for c in (node.get("status") or {}).get("conditions") or []]
    for kind in MONITORED_CONDITIONS:
        found = next((c for c in conditions if c.get("type") == kind), None)
        if found is None:
            conditions.append({"type": kind, "status": "Unknown", "lastHeartbeatTime": created_at,
                               "lastTransitionTime": stamp, "reason": NEVER_REASON, "message": NEVER_MESSAGE})
        elif found.get("status") != "Unknown":
            found.update(status="Unknown", reason=STOPPED_REASON, message=STOPPED_MESSAGE, lastTransitionTime=stamp)
    ready = next(c for c in conditions if c.get("type") == "Ready")
    if ready == observed:
        return Assessment(health, observed, current, None)
    return Assessment(replace(health, ready_transition=now, ready=ready), observed, ready, conditions)


class TokenBucket:
    """flowcontrol's token bucket limiter (burst 1 as the node controller uses it); qps 0 never accepts."""

    def __init__(self, qps: float, clock: Callable[[], float], burst: int = 1):
        self.qps, self.burst, self.clock = qps, burst, clock
        self.tokens = float(burst)
        self.last = clock()

    def try_accept(self) -> bool:
        if self.qps <= 0:
            return False
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.qps)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class TaintQueue:
    """RateLimitedTimedQueue: the nodes of one zone waiting for their NoExecute taint, in the
    order they came, let through by the zone's limiter."""

    def __init__(self, qps: float, clock: Callable[[], float]):
        self.clock = clock
        self.limiter = TokenBucket(qps, clock)
        self.names: OrderedDict[str, None] = OrderedDict()

    def add(self, name: str) -> bool:
        if name in self.names:
            return False
        self.names[name] = None
        return True

    def remove(self, name: str) -> bool:
        if name not in self.names:
            return False
        del self.names[name]
        return True

    def take(self) -> list[str]:
        """The names the limiter lets through now (taken off the queue)."""
        out = []
        while self.names and self.limiter.try_accept():
            out.append(self.names.popitem(last=False)[0])
        return out

    def swap_limiter(self, qps: float) -> None:
        if qps == self.limiter.qps:
            return
        drained = not self.limiter.try_accept() if self.limiter.qps > 0 else False
        self.limiter = TokenBucket(qps, self.clock)
        if drained:
            self.limiter.try_accept()  # waiting on the old one: the new one starts empty


# ---- the controller --------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeWork:
    """Look at the node `name` again (its taints, its conditions)."""

    name: str


@dataclass(frozen=True)
class PodWork:
    """A pod newly bound to a node: NotReady at once if its node is."""

    key: str


class NodeLifecycleController(Controller):
    name = "node-lifecycle-controller"
    service_account = "node-controller"
    workers = 4

    def __init__(self, *args, clock: Callable[[], float] = time.time, **kwargs):
        super().__init__(*args, **kwargs)
        self.recorder = EventRecorder(self.client, "node-controller")  # upstream's event source
        self.clock = clock
        extra = self.settings.extra
        self.monitor_period = float(extra.get("node_monitor_period", NODE_MONITOR_PERIOD))
        self.grace = float(extra.get("node_monitor_grace_period", NODE_MONITOR_GRACE_PERIOD))
        self.startup_grace = float(extra.get("node_startup_grace_period", NODE_STARTUP_GRACE_PERIOD))

    def setup(self) -> None:
        self.nodes = self.informers.informer("v1", "nodes")
        self.pods = self.informers.informer("v1", "pods")
        self.leases = self.informers.informer("coordination.k8s.io/v1", "leases")
        self.known: dict[str, dict] = {}
        self.health: dict[str, NodeHealth] = {}
        self.retry: set[str] = set()  # nodes whose pods must still be marked NotReady
        self.zone_states: dict[str, str] = {}
        self.tainters: dict[str, TaintQueue] = {}
        self.nodes.add_handlers(lambda n: self.queue.add(NodeWork(n["metadata"]["name"])),
                                lambda old, new: self.queue.add(NodeWork(new["metadata"]["name"])))
        self.pods.add_handlers(lambda p: self._pod_changed(None, p), self._pod_changed)

    def _pod_changed(self, old: dict | None, new: dict) -> None:
        node = (new.get("spec") or {}).get("nodeName")
        if node and (old is None or (old.get("spec") or {}).get("nodeName") != node):
            self.queue.add(PodWork(object_key(new)))

    async def start(self) -> None:
        await super().start()
        self._tasks.append(asyncio.create_task(self._every(self.monitor_period, self.monitor_node_health),
                                               name="node-monitor"))
        self._tasks.append(asyncio.create_task(self._every(TAINTING_PASS_SECONDS, self.tainting_pass),
                                               name="node-no-execute-tainting"))

    async def _every(self, seconds: float, work) -> None:
        while True:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("%s failed", work.__name__)
            await asyncio.sleep(seconds)

    def _pods_on(self, node: str) -> list[dict]:
        return [p for p in self.pods.list() if (p.get("spec") or {}).get("nodeName") == node]

    # ---- work queue: NoSchedule taints of a changed node, pods newly bound --------------------

    async def sync(self, key: NodeWork | PodWork) -> None:
        if isinstance(key, NodeWork):
            node = self.nodes.get(key.name)
            if node is not None:
                add, remove = no_schedule_diff(node)
                if add or remove:
                    await self.swap_taints(key.name, add, remove)
            return
        pod = self.pods.get(key.key)
        if pod is None:
            return
        health = self.health.get((pod.get("spec") or {}).get("nodeName") or "")
        if health is None or health.ready is None:
            return
        if health.ready.get("status") != "True":
            await self.mark_pods_not_ready([pod], pod["spec"]["nodeName"])

    # ---- the node monitor ---------------------------------------------------------------------

    async def monitor_node_health(self) -> None:
        nodes = self.nodes.list()
        names = {n["metadata"]["name"] for n in nodes}
        for node in nodes:
            name = node["metadata"]["name"]
            if name not in self.known:
                self.known[name] = node
                self._node_event(node, "RegisteredNode", f"Node {name} event: Registered Node {name} in Controller")
                self._zone_queue(zone_key(node))
                await self.mark_reachable(node)
            elif zone_key(node) not in self.zone_states:
                self._zone_queue(zone_key(node))
        for name in [n for n in self.known if n not in names]:
            gone = self.known.pop(name)
            self.health.pop(name, None)
            self.retry.discard(name)
            self._node_event(gone, "RemovingNode", f"Node {name} event: Removing Node {name} from Controller")
        zones: dict[str, list[dict | None]] = {}
        for node in nodes:
            await self._update_node(node, zones)
        await self._handle_disruption(zones, nodes)

    async def _update_node(self, node: dict, zones: dict[str, list[dict | None]]) -> None:
        name = node["metadata"]["name"]
        for attempt in range(UPDATE_RETRIES):
            try:
                result = await self._try_update_health(node)
                break
            except errors.APIError as exc:
                if exc.code == 404:
                    return
                self.log.info("updating the health of node %s: %s", name, exc.message)
                try:
                    node = await self.client.get("v1", "nodes", name)
                except errors.APIError:
                    return
        else:
            self.log.error("updating the health of node %s failed; no pods will be evicted", name)
            return
        observed, current = result
        if EXCLUDE_DISRUPTION_LABEL not in ((node.get("metadata") or {}).get("labels") or {}):
            zones.setdefault(zone_key(node), []).append(current)
        if current is None:
            return
        await self.process_taint_based_eviction(node, observed)
        went_not_ready = current.get("status") != "True" and observed.get("status") == "True"
        if went_not_ready:
            self._node_event(node, "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        if went_not_ready or (name in self.retry and observed.get("status") != "True"):
            try:
                await self.mark_pods_not_ready(self._pods_on(name), name)
            except errors.APIError as exc:
                self.log.warning("marking the pods of node %s NotReady: %s; will retry", name, exc.message)
                self.retry.add(name)
                return
        self.retry.discard(name)

    async def _try_update_health(self, node: dict) -> tuple[dict, dict | None]:
        name = node["metadata"]["name"]
        lease = self.leases.get(f"{NODE_LEASE_NAMESPACE}/{name}")
        result = assess(self.health.get(name), node, lease, self.clock(), self.grace, self.startup_grace)
        if result.write is not None:
            updated = deep_copy(node)
            updated.setdefault("status", {})["conditions"] = result.write
            await self.client.update("v1", "nodes", updated, subresource="status")
            self.log.info("node %s: no heartbeat for %.0fs, its conditions are now Unknown", name, self.grace)
        self.health[name] = result.health
        return result.observed, result.current

    async def process_taint_based_eviction(self, node: dict, observed: dict) -> None:
        name, status = node["metadata"]["name"], observed.get("status")
        if status in ("False", "Unknown"):
            wanted, opposite = (TAINT_NOT_READY, TAINT_UNREACHABLE) if status == "False" else \
                (TAINT_UNREACHABLE, TAINT_NOT_READY)
            if has_taint(node, opposite, "NoExecute"):  # swap at once: the two mirror the Ready condition
                await self.swap_taints(name, [{"key": wanted, "effect": "NoExecute"}],
                                       [{"key": opposite, "effect": "NoExecute"}])
                return
            queue = self._zone_queue(zone_key(node))
            if not has_taint(node, wanted, "NoExecute"):
                queue.remove(name)
            if queue.add(name):
                self.log.info("node %s is %s: queued for the %s taint", name,
                              "NotReady" if status == "False" else "unresponsive", wanted)
        elif status == "True":
            await self.mark_reachable(node)

    async def mark_reachable(self, node: dict) -> None:
        name = node["metadata"]["name"]
        remove = [{"key": key, "effect": "NoExecute"} for key in (TAINT_UNREACHABLE, TAINT_NOT_READY)
                  if has_taint(node, key, "NoExecute")]
        if remove:
            await self.swap_taints(name, [], remove)
        self._zone_queue(zone_key(node)).remove(name)

    def _zone_queue(self, zone: str) -> TaintQueue:
        """addPodEvictorForNewZone: a zone seen first gets its queue and the Initial state."""
        if zone not in self.tainters:
            self.tainters[zone] = TaintQueue(EVICTION_QPS, self.clock)
        self.zone_states.setdefault(zone, INITIAL)
        return self.tainters[zone]

    async def tainting_pass(self) -> None:
        """doNoExecuteTaintingPass: taint the queued nodes their zone's limiter lets through."""
        for queue in list(self.tainters.values()):
            for name in queue.take():
                node = self.nodes.get(name)
                if node is None:
                    continue
                ready = condition(node, "Ready")
                if ready is None:
                    queue.add(name)
                    continue
                status = ready.get("status")
                if status not in ("False", "Unknown"):
                    continue  # Ready again
                wanted, opposite = (TAINT_NOT_READY, TAINT_UNREACHABLE) if status == "False" else \
                    (TAINT_UNREACHABLE, TAINT_NOT_READY)
                if not await self.swap_taints(name, [{"key": wanted, "effect": "NoExecute"}],
                                              [{"key": opposite, "effect": "NoExecute"}]):
                    queue.add(name)

    async def _handle_disruption(self, zones: dict[str, list[dict | None]], nodes: list[dict]) -> None:
        new_states = {zone: zone_state(conditions)[1] for zone, conditions in zones.items()}
        all_are_fully = all(state == FULL_DISRUPTION for state in new_states.values())
        for zone in zones:
            self.zone_states.setdefault(zone, INITIAL)
        all_were_fully = True
        for zone in list(self.zone_states):
            if zone not in zones:
                del self.zone_states[zone]
                continue
            if self.zone_states[zone] != FULL_DISRUPTION:
                all_were_fully = False
        if all_are_fully and all_were_fully:
            return
        if all_are_fully:
            self.log.info("Controller detected that all Nodes are not-Ready. Entering master disruption mode")
            for node in nodes:
                await self.mark_reachable(node)
            for zone in self.zone_states:
                self._zone_queue(zone).swap_limiter(0)
                self.zone_states[zone] = FULL_DISRUPTION
            return
        if all_were_fully:
            self.log.info("Controller detected that some Nodes are Ready. Exiting master disruption mode")
            now = self.clock()
            for name, health in list(self.health.items()):
                self.health[name] = replace(health, probe=now, ready_transition=now)
            for zone in self.zone_states:
                self._set_zone_state(zone, new_states, zones)
            return
        for zone, state in list(self.zone_states.items()):
            if state != new_states.get(zone, state):
                self.log.info("zone %r is now in state %s", zone, new_states[zone])
                self._set_zone_state(zone, new_states, zones)

    def _set_zone_state(self, zone: str, new_states: dict[str, str], zones: dict[str, list]) -> None:
        state = new_states.get(zone, NORMAL)
        self._zone_queue(zone).swap_limiter(zone_qps(state, len(zones.get(zone) or [])))
        self.zone_states[zone] = state

    # ---- writes ---------------------------------------------------------------------------------

    async def swap_taints(self, name: str, add: list[dict], remove: list[dict]) -> bool:
        """SwapNodeControllerTaint: add (stamped with timeAdded) and remove taints, retrying on conflict."""
        stamp = rfc3339()
        add = [{**taint, "timeAdded": stamp} for taint in add]
        for attempt in range(UPDATE_RETRIES):
            try:
                node = self.nodes.get(name) if attempt == 0 else await self.client.get("v1", "nodes", name)
                if node is None:
                    return True
                taints = (node.get("spec") or {}).get("taints") or []
                wanted = swapped_taints(taints, add, remove)
                if wanted == taints:
                    return True
                updated = deep_copy(node)
                updated.setdefault("spec", {})["taints"] = wanted
                if not wanted:
                    del updated["spec"]["taints"]
                await self.client.update("v1", "nodes", updated)
                return True
            except errors.APIError as exc:
                if exc.code == 404:
                    return True
                if exc.code != 409:
                    self.log.warning("tainting node %s: %s", name, exc.message)
                    return False
        return False

    async def mark_pods_not_ready(self, pods: list[dict], node: str) -> None:
        """MarkPodsNotReady: each pod's Ready condition False (status update), a Warning event."""
        failed: errors.APIError | None = None
        for pod in pods:
            if (pod.get("spec") or {}).get("nodeName") != node:
                continue
            conditions = (pod.get("status") or {}).get("conditions") or []
            ready = next((c for c in conditions if c.get("type") == "Ready"), None)
            if ready is None or ready.get("status") == "False":
                continue
            updated = deep_copy(pod)
            for c in updated["status"]["conditions"]:
                if c.get("type") == "Ready":
                    c.update(status="False", lastTransitionTime=rfc3339())
            try:
                await self.client.update("v1", "pods", updated, pod["metadata"]["namespace"], subresource="status")
            except errors.APIError as exc:
                if exc.code != 404:
                    failed = exc
                continue
            self.recorder.event({"apiVersion": "v1", "kind": "Pod", **{k: v for k, v in pod.items() if k != "kind"}},
                                "Warning", "NodeNotReady", "Node is not ready")
        if failed is not None:
            raise failed

    def _node_event(self, node: dict, reason: str, message: str) -> None:
        ref = {"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": node["metadata"]["name"], "uid": node["metadata"].get("uid", "")}}
        self.recorder.event(ref, "Normal", reason, message)
