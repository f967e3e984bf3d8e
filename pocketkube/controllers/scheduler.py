"""The scheduler ("default-scheduler"): binds each pod that has no node and asks for the
default scheduler to a node that fits, through POST pods/NAME/binding, as kube-scheduler does.

Filters, in kube-scheduler's order and with its reasons: NodeUnschedulable, TaintToleration
(NoSchedule / NoExecute, counting at once the condition taints nodelifecycle.py writes),
NodeAffinity (nodeSelector and requiredDuringScheduling terms), NodePorts, NodeResourcesFit
(pods, cpu, memory). Scoring spreads: fewest pods of the same owner, then fewest untolerated
PreferNoSchedule taints, then fewest pods. A pod that fits nowhere gets PodScheduled=False
(Unschedulable) with the scheduler's FitError message and a FailedScheduling event, and is
tried again when a node or a pod changes in a way that may make room, and every 5 minutes.

Its events wait while it schedules and while pods change (an EventRecorder with a Hold,
core/events.py): in a burst of new pods the bindings and the agents' status writes go first and
the Scheduled events follow once the pods have been quiet for 0.2 s (2 s at most), as
kube-scheduler's event broadcaster sends them asynchronously.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction

from pocketkube.controllers import podcontrol
from pocketkube.controllers.base import Controller
from pocketkube.controllers.nodelifecycle import TAINT_UNSCHEDULABLE, no_schedule_taints
from pocketkube.core.nodefit import PORTS_REASON, host_ports, matches_node_affinity, ports_conflict, tolerates
from pocketkube.core import errors
from pocketkube.core.events import EventRecorder, Hold
from pocketkube.core.informer import object_key
from pocketkube.core.objects import rfc3339
from pocketkube.core.quantity import parse_quantity

SCHEDULER_NAME = "default-scheduler"
NO_NODES_MESSAGE = "no nodes available to schedule pods"
# podMaxInUnschedulablePodsDuration: an unschedulable pod is tried again at least this often.
UNSCHEDULABLE_RETRY_SECONDS = 300.0

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_TOO_MANY_PODS = "Too many pods"
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
PREEMPTION_NO_VICTIMS = "No preemption victims found for incoming pod"


# ---- what a pod asks for -----------------------------------------------------------------------


@dataclass(frozen=True)
class PodDemand:
    owner: str = ""
    cpu: Fraction = Fraction(0)
    memory: Fraction = Fraction(0)
    host_ports: frozenset = frozenset()


def _requests(containers: list) -> Counter:
    total: Counter = Counter()
    for container in containers or []:
        for name, value in ((container.get("resources") or {}).get("requests") or {}).items():
            parsed = parse_quantity(value)
            if parsed is not None:
                total[name] += parsed
    return total


def pod_demand(pod: dict) -> PodDemand:
    """computePodResourceRequest (containers summed, the largest init container if bigger,
    plus overhead), the host ports, and the controlling owner for spreading."""
    spec = pod.get("spec") or {}
    total = _requests(spec.get("containers"))
    for init in spec.get("initContainers") or []:
        single = _requests([init])
        for name, value in single.items():
            total[name] = max(total[name], value)
    for name, value in (spec.get("overhead") or {}).items():
        parsed = parse_quantity(value)
        if parsed is not None:
            total[name] += parsed
    ref = podcontrol.controller_of(pod)
    return PodDemand(ref.get("uid", "") if ref else "", total["cpu"], total["memory"], host_ports(spec))


@dataclass
class NodeUsage:
    """What the pods bound (or assumed bound) to one node take from it."""

    pods: dict[str, PodDemand] = field(default_factory=dict)
    by_owner: Counter = field(default_factory=Counter)
    ports: Counter = field(default_factory=Counter)
    cpu: Fraction = Fraction(0)
    memory: Fraction = Fraction(0)

    def put(self, key: str, demand: PodDemand) -> None:
        if self.pods.get(key) == demand:
            return
        self.remove(key)
        self.pods[key] = demand
        self.cpu += demand.cpu
        self.memory += demand.memory
        if demand.owner:
            self.by_owner[demand.owner] += 1
        for port in demand.host_ports:
            self.ports[port] += 1

    def remove(self, key: str) -> None:
        demand = self.pods.pop(key, None)
        if demand is None:
            return
        self.cpu -= demand.cpu
        self.memory -= demand.memory
        if demand.owner:
            self.by_owner[demand.owner] -= 1
        for port in demand.host_ports:
            self.ports[port] -= 1


# ---- node facts ---------------------------------------------------------------------------------


def node_taints(node: dict) -> list[dict]:
    """The node's taints, with the NoSchedule taints its conditions call for that the node
    lifecycle controller has not written yet (it writes them a moment after the change)."""
    taints = list((node.get("spec") or {}).get("taints") or [])
    for taint in no_schedule_taints(node):
        if not any(t.get("key") == taint["key"] and t.get("effect") == "NoSchedule" for t in taints):
            taints.append(taint)
    return taints


def first_untolerated(taints: list[dict], tolerations: list[dict], effects: tuple[str, ...]) -> dict | None:
    for taint in taints:
        if taint.get("effect") in effects and not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def unfit_reasons(pod: dict, demand: PodDemand, node: dict, usage: NodeUsage) -> tuple[list[str], bool]:
    """Why the pod does not fit the node ([] when it does), and whether preemption could
    help (False for UnschedulableAndUnresolvable reasons)."""
    spec = pod.get("spec") or {}
    tolerations = spec.get("tolerations") or []
    if (node.get("spec") or {}).get("unschedulable") and not any(
            tolerates(t, {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}) for t in tolerations):
        return [REASON_UNSCHEDULABLE], False
    taint = first_untolerated(node_taints(node), tolerations, ("NoSchedule", "NoExecute"))
    if taint is not None:
        return [f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value') or ''}}}"], False
    if not matches_node_affinity(pod.get("spec") or {}, node):
        return [REASON_AFFINITY], False
    if demand.host_ports and ports_conflict(demand.host_ports, usage.ports):
        return [PORTS_REASON], True
    return _insufficient(demand, node, usage), True


def _insufficient(demand: PodDemand, node: dict, usage: NodeUsage) -> list[str]:
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    reasons = []
    max_pods = parse_quantity(allocatable["pods"]) if "pods" in allocatable else None
    if max_pods is not None and len(usage.pods) + 1 > max_pods:
        reasons.append(REASON_TOO_MANY_PODS)
    for name, wanted, used in (("cpu", demand.cpu, usage.cpu), ("memory", demand.memory, usage.memory)):
        capacity = parse_quantity(allocatable[name]) if name in allocatable else None
        if wanted and capacity is not None and used + wanted > capacity:
            reasons.append(f"Insufficient {name}")
    return reasons


def fit_error_message(node_count: int, failures: dict[str, tuple[list[str], bool]]) -> str:
    """FitError.Error() with the default preemption plugin's PostFilter message."""
    counts = Counter(reason for reasons, _ in failures.values() for reason in reasons)
    message = f"0/{node_count} nodes are available:"
    histogram = sorted(f"{n} {reason}" for reason, n in counts.items())
    if histogram:
        message += f" {', '.join(histogram)}."
    unresolvable = sum(1 for _, resolvable in failures.values() if not resolvable)
    resolvable = len(failures) - unresolvable
    preemption = []
    if unresolvable:
        preemption.append(f"{unresolvable} {PREEMPTION_NOT_HELPFUL}")
    if resolvable:
        preemption.append(f"{resolvable} {PREEMPTION_NO_VICTIMS}")
    return message + f" preemption: 0/{node_count} nodes are available: {', '.join(sorted(preemption))}."


def _node_schedulable_view(node: dict) -> tuple:
    """The parts of a node that decide whether a pod fits (a change may make room)."""
    ready = next((c.get("status") for c in (node.get("status") or {}).get("conditions") or []
                  if c.get("type") == "Ready"), None)
    spec = node.get("spec") or {}
    return ((node.get("metadata") or {}).get("labels"), spec.get("taints"), spec.get("unschedulable"),
            (node.get("status") or {}).get("allocatable"), ready)


def needs_scheduling(pod: dict) -> bool:
    spec = pod.get("spec") or {}
    return not spec.get("nodeName") and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME and \
        podcontrol.is_pod_active(pod)


class Scheduler(Controller):
    name = SCHEDULER_NAME
    user = "system:kube-scheduler"
    workers = 4

    def setup(self) -> None:
        self.recorder = EventRecorder(self.client, self.name, hold=Hold())
        self.pods = self.informers.informer("v1", "pods")
        self.nodes = self.informers.informer("v1", "nodes")
        self.usage: dict[str, NodeUsage] = {}
        self._pod_node: dict[str, str] = {}  # pod key -> node it counts against
        self.assumed: dict[str, str] = {}  # pod key -> node, bound but not yet seen bound
        self.unschedulable: set[str] = set()
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handlers(lambda node: self._retry_unschedulable(), self._node_updated)

    # ---- bookkeeping -------------------------------------------------------------------------

    def _account(self, key: str, pod: dict | None) -> None:
        """Count the pod against its node (the one it is bound or assumed bound to)."""
        node = None
        if pod is not None:
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                self.assumed.pop(key, None)
            else:
                node = self.assumed.get(key)
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                node = None
        previous = self._pod_node.get(key)
        if previous and previous != node:
            self.usage[previous].remove(key)
            del self._pod_node[key]
        if node:
            self.usage.setdefault(node, NodeUsage()).put(key, pod_demand(pod))
            self._pod_node[key] = node

    def _pod_added(self, pod: dict) -> None:
        key = object_key(pod)
        self._account(key, pod)
        if needs_scheduling(pod):
            self.enqueue(key)

    def _pod_updated(self, old: dict, new: dict) -> None:
        # pods changing (bindings landing, agents writing statuses) keep the Scheduled events
        # held: in a burst they would otherwise go out between the statuses (Hold, core/events.py)
        self.recorder.busy()
        key = object_key(new)
        self._account(key, new)
        if not needs_scheduling(new):
            self.unschedulable.discard(key)
            if old.get("spec", {}).get("nodeName") and (new.get("status") or {}).get("phase") in (
                    "Succeeded", "Failed"):
                self._retry_unschedulable()
            return
        if key in self.unschedulable and old.get("spec") == new.get("spec") and \
                old["metadata"].get("labels") == new["metadata"].get("labels"):
            return  # only its status changed (our own condition write): nothing new to try
        self.enqueue(key)

    def _pod_deleted(self, pod: dict) -> None:
        key = object_key(pod)
        self.assumed.pop(key, None)
        self.unschedulable.discard(key)
        had_node = key in self._pod_node
        self._account(key, None)
        if had_node:
            self._retry_unschedulable()

    def _node_updated(self, old: dict, new: dict) -> None:
        if _node_schedulable_view(old) != _node_schedulable_view(new):
            self._retry_unschedulable()

    def _retry_unschedulable(self) -> None:
        for key in list(self.unschedulable):
            self.enqueue(key)

    # ---- scheduling -----------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        self.recorder.busy()
        pod = self.pods.get(key)
        if pod is None or not needs_scheduling(pod) or key in self.assumed:
            return
        nodes = self.nodes.list()
        if not nodes:
            await self._mark_unschedulable(key, pod, NO_NODES_MESSAGE)
            return
        demand = pod_demand(pod)
        feasible: list[dict] = []
        failures: dict[str, tuple[list[str], bool]] = {}
        for node in nodes:
            name = node["metadata"]["name"]
            reasons, resolvable = unfit_reasons(pod, demand, node, self.usage.get(name) or NodeUsage())
            if reasons:
                failures[name] = (reasons, resolvable)
            else:
                feasible.append(node)
        if not feasible:
            await self._mark_unschedulable(key, pod, fit_error_message(len(nodes), failures))
            return
        target = min(feasible, key=lambda node: self._score(pod, demand, node))["metadata"]["name"]
        await self._bind(key, pod, target)

    def _score(self, pod: dict, demand: PodDemand, node: dict) -> tuple:
        """Lower is better: spread a controller's pods, avoid PreferNoSchedule taints, then
        prefer the emptier node; the name breaks ties."""
        usage = self.usage.get(node["metadata"]["name"]) or NodeUsage()
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        prefer_not = sum(1 for taint in node_taints(node) if taint.get("effect") == "PreferNoSchedule"
                         and not any(tolerates(t, taint) for t in tolerations))
        same_owner = usage.by_owner.get(demand.owner, 0) if demand.owner else 0
        return (same_owner, prefer_not, len(usage.pods), node["metadata"]["name"])

    async def _bind(self, key: str, pod: dict, node: str) -> None:
        m = pod["metadata"]
        self.assumed[key] = node
        self._account(key, pod)
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m.get("uid")},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            await self.client.create("v1", "pods", binding, namespace=m["namespace"], subresource="binding",
                                     name=m["name"])
        except errors.APIError as exc:
            self.assumed.pop(key, None)
            self._account(key, self.pods.get(key))
            if exc.code in (404, 409):
                return  # gone, already bound, or being deleted
            raise
        self.unschedulable.discard(key)
        self.recorder.event(podcontrol.with_kind(pod, "v1", "Pod"), "Normal", "Scheduled",
                            f"Successfully assigned {m['namespace']}/{m['name']} to {node}")

    async def _mark_unschedulable(self, key: str, pod: dict, message: str) -> None:
        """handleSchedulingFailure: the FailedScheduling event and PodScheduled=False."""
        self.unschedulable.add(key)
        self.queue.add_after(key, UNSCHEDULABLE_RETRY_SECONDS)
        self.recorder.event(podcontrol.with_kind(pod, "v1", "Pod"), "Warning", "FailedScheduling", message)
        conditions = list((pod.get("status") or {}).get("conditions") or [])
        current = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        if current is not None and current.get("status") == "False" and \
                current.get("reason") == "Unschedulable" and current.get("message") == message:
            return
        transition = current.get("lastTransitionTime") if current is not None and \
            current.get("status") == "False" else rfc3339()
        condition = {"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                     "lastTransitionTime": transition, "reason": "Unschedulable", "message": message}
        conditions = [c for c in conditions if c.get("type") != "PodScheduled"] + [condition]
        m = pod["metadata"]
        try:
            await self.client.patch("v1", "pods", m["name"], {"status": {"conditions": conditions}},
                                    m["namespace"], subresource="status")
        except errors.APIError as exc:
            if exc.code != 404:
                raise
