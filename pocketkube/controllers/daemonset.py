"""The DaemonSet controller (kube-controller-manager's "daemonset-controller").

Owns: one pod per eligible node (the node selector and required node affinity of the
template, taints against tolerations), each pod aimed at its node by a required node
affinity on `metadata.name` (matchFields) for the scheduler to bind, as Kubernetes 1.32
does; the standard DaemonSet tolerations; pods deleted from nodes that no longer qualify
or no longer exist; RollingUpdate with maxUnavailable (OnDelete leaves old pods alone);
the status `kubectl get ds` and `kubectl rollout status ds/x` read.
"""

from __future__ import annotations

import datetime as _dt
import math

from pocketkube.controllers.base import Controller
from pocketkube.core.nodefit import matches_node_affinity, tolerates
from pocketkube.controllers.podcontrol import (
    Expectations, OwnerIndex, controller_of, controller_ref, is_being_deleted, is_pod_available, is_pod_ready,
    label_selector, pod_from_template, pod_name_prefix,
)
from pocketkube.controllers.statefulset import pod_phase, template_hash
from pocketkube.core import errors
from pocketkube.core.informer import object_key
from pocketkube.core.objects import deep_copy, parse_time

API_VERSION = "apps/v1"
KIND = "DaemonSet"
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"
TEMPLATE_GENERATION_LABEL = "pod-template-generation"
REVISION_LABEL = "controller-revision-hash"

# util.AddOrUpdateDaemonPodTolerations, in its order.
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
NETWORK_UNAVAILABLE_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                                  "effect": "NoSchedule"}


# ---------------------------------------------------------------------------------------
# Pure logic: tolerations, node affinity, eligibility
# ---------------------------------------------------------------------------------------

def add_daemon_tolerations(pod_spec: dict) -> None:
    """AddOrUpdateDaemonPodTolerations: a toleration with the same key, operator, value and
    effect is replaced; others are appended."""
    wanted = list(DAEMON_TOLERATIONS)
    if pod_spec.get("hostNetwork"):
        wanted.append(NETWORK_UNAVAILABLE_TOLERATION)
    tolerations = list(pod_spec.get("tolerations") or [])
    for tol in wanted:
        same = [i for i, t in enumerate(tolerations)
                if (t.get("key"), t.get("operator") or "Equal", t.get("value") or "", t.get("effect") or "")
                == (tol["key"], tol["operator"], "", tol["effect"])]
        if same:
            tolerations[same[0]] = dict(tol)
        else:
            tolerations.append(dict(tol))
    pod_spec["tolerations"] = tolerations


def set_node_affinity(pod_spec: dict, node_name: str) -> None:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: the required node selector becomes exactly one
    term matching the node's metadata.name; preferred terms are kept."""
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
    affinity = pod_spec.setdefault("affinity", {}) or {}
    pod_spec["affinity"] = affinity
    node_affinity = affinity.setdefault("nodeAffinity", {}) or {}
    affinity["nodeAffinity"] = node_affinity
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [term]}


def target_node(pod: dict) -> str:
    """util.GetTargetNodeName: spec.nodeName, else the node the matchFields affinity names."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for req in term.get("matchFields") or []:
            if req.get("key") == "metadata.name" and req.get("operator") == "In" and len(req.get("values") or []) == 1:
                return req["values"][0]
    return ""


def has_untolerated_taint(taints: list[dict], tolerations: list[dict], effects: tuple[str, ...]) -> bool:
    return any(t.get("effect") in effects and not any(tolerates(tol, t) for tol in tolerations) for t in taints)


def daemon_pod_spec(ds: dict) -> dict:
    spec = deep_copy(((ds.get("spec") or {}).get("template") or {}).get("spec") or {})
    add_daemon_tolerations(spec)
    return spec


def node_should_run(ds: dict, node: dict, pod_spec: dict | None = None) -> tuple[bool, bool]:
    """NodeShouldRunDaemonPod: (should run a pod there, should keep running one there)."""
    pod_spec = pod_spec if pod_spec is not None else daemon_pod_spec(ds)
    if pod_spec.get("nodeName") and pod_spec["nodeName"] != node["metadata"]["name"]:
        return False, False
    if not matches_node_affinity(pod_spec, node):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or []
    tolerations = pod_spec.get("tolerations") or []
    if has_untolerated_taint(taints, tolerations, ("NoSchedule", "NoExecute")):
        return False, not has_untolerated_taint(taints, tolerations, ("NoExecute",))
    return True, True


def template_generation(ds: dict) -> str | None:
    return ((ds.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION)


def daemon_hash(ds: dict) -> str:
    template = (ds.get("spec") or {}).get("template") or {}
    return template_hash(template, int((ds.get("status") or {}).get("collisionCount") or 0))


def is_pod_updated(pod: dict, hash_: str, generation: str | None) -> bool:
    """util.IsPodUpdated: the revision hash label or the template generation label matches."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return (bool(hash_) and labels.get(REVISION_LABEL) == hash_) or (
        generation is not None and labels.get(TEMPLATE_GENERATION_LABEL) == generation)


def _creation_order(pod: dict) -> tuple:
    """podByCreationTimestampAndPhase: older first, Running before the others at a tie."""
    created = parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
    return (created.timestamp() if created else math.inf, pod_phase(pod) != "Running", pod["metadata"]["name"])


def resolve_max_unavailable(ds: dict, desired: int) -> int:
    """maxUnavailable as a number (a percentage of desired, rounded up); at least 1 when
    maxSurge is 0, as updatedDesiredNodeCounts does."""
    rolling = (((ds.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {})
    value = rolling.get("maxUnavailable", 1)
    if isinstance(value, str) and value.endswith("%"):
        number = math.ceil(int(value[:-1] or 0) * desired / 100)
    else:
        number = int(value)
    return max(number, 1)


def daemon_status(ds: dict, nodes: list[dict], node_to_pods: dict[str, list[dict]], hash_: str,
                  now: _dt.datetime | None = None) -> dict:
    """updateDaemonSetStatus: the counts over the nodes that should run a pod."""
    pod_spec = daemon_pod_spec(ds)
    generation = template_generation(ds)
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    desired = current = ready = available = updated = misscheduled = 0
    for node in nodes:
        should_run, _ = node_should_run(ds, node, pod_spec)
        pods = node_to_pods.get(node["metadata"]["name"]) or []
        if not should_run:
            misscheduled += bool(pods)
            continue
        desired += 1
        if not pods:
            continue
        current += 1
        pod = sorted(pods, key=_creation_order)[0]
        if is_pod_ready(pod):
            ready += 1
            available += is_pod_available(pod, min_ready, now)
        updated += is_pod_updated(pod, hash_, generation)
    status = {
        "currentNumberScheduled": current, "numberMisscheduled": misscheduled,
        "desiredNumberScheduled": desired, "numberReady": ready,
        "observedGeneration": ds["metadata"].get("generation"),
        "updatedNumberScheduled": updated, "numberAvailable": available,
        "numberUnavailable": desired - available,
    }
    for key in ("observedGeneration", "updatedNumberScheduled", "numberAvailable", "numberUnavailable"):
        if not status[key]:
            del status[key]
    old = ds.get("status") or {}
    for key in ("collisionCount", "conditions"):
        if old.get(key) is not None:
            status[key] = old[key]
    return status


def rolling_update_deletions(ds: dict, node_to_pods: dict[str, list[dict]], hash_: str, desired: int,
                             now: _dt.datetime | None = None) -> list[dict]:
    """rollingUpdate without surge: old pods that may go now, within maxUnavailable."""
    generation = template_generation(ds)
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    max_unavailable = resolve_max_unavailable(ds, desired)
    unavailable = 0
    replace_now: list[dict] = []
    candidates: list[dict] = []
    for node_name in sorted(node_to_pods):
        new_pod = old_pod = None
        duplicate = False
        for pod in node_to_pods[node_name]:
            if is_being_deleted(pod):
                continue
            if is_pod_updated(pod, hash_, generation):
                duplicate = duplicate or new_pod is not None
                new_pod = pod
            else:
                duplicate = duplicate or old_pod is not None
                old_pod = pod
        if duplicate or (new_pod is None) == (old_pod is None):
            unavailable += 1
        elif new_pod is not None:
            unavailable += not is_pod_available(new_pod, min_ready, now)
        elif not is_pod_available(old_pod, min_ready, now):
            replace_now.append(old_pod)
        elif unavailable < max_unavailable:
            candidates.append(old_pod)
    room = max(0, min(max_unavailable - unavailable, len(candidates)))
    return replace_now + candidates[:room]


# ---------------------------------------------------------------------------------------
# The controller
# ---------------------------------------------------------------------------------------

class DaemonSetController(Controller):
    name = "daemonset-controller"
    service_account = "daemon-set-controller"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.expectations = Expectations()

    def setup(self) -> None:
        self.sets = self.informers.informer(API_VERSION, "daemonsets")
        self.pods = self.informers.informer("v1", "pods")
        self.nodes = self.informers.informer("v1", "nodes")
        self.pods_by_owner = OwnerIndex(self.pods)
        self.sets.add_handlers(self.enqueue, lambda old, new: self.enqueue(new),
                               lambda ds: self.expectations.forget(object_key(ds)))
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handlers(self._node_changed, lambda old, new: self._node_changed(new), self._node_changed)

    def _owner_key(self, pod: dict) -> str | None:
        ref = controller_of(pod)
        if not ref or ref.get("kind") != KIND:
            return None
        key = f"{pod['metadata']['namespace']}/{ref.get('name')}"
        ds = self.sets.get(key)
        return key if ds is not None and ds["metadata"].get("uid") == ref.get("uid") else None

    def _pod_added(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.creation_observed(key)
            self.enqueue(key)

    def _pod_updated(self, old: dict, new: dict) -> None:
        key = self._owner_key(new)
        if key:
            if is_being_deleted(new) and not is_being_deleted(old):
                self.expectations.deletion_observed(key, object_key(new))
            self.enqueue(key)

    def _pod_deleted(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.deletion_observed(key, object_key(pod))
            self.enqueue(key)

    def _node_changed(self, node: dict) -> None:
        for ds in self.sets.list():
            self.enqueue(ds)

    # ---- sync ----------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ds = self.sets.get(key)
        if ds is None:
            self.expectations.forget(key)
            return
        nodes = self.nodes.list()
        hash_ = daemon_hash(ds)
        if not is_being_deleted(ds) and self.expectations.satisfied(key):
            created = await self._manage(ds, nodes, self._node_to_pods(ds), hash_)
            strategy = ((ds.get("spec") or {}).get("updateStrategy") or {}).get("type") or "RollingUpdate"
            if strategy == "RollingUpdate" and not created:
                desired = sum(node_should_run(ds, n)[0] for n in nodes)
                old = rolling_update_deletions(ds, self._node_to_pods(ds), hash_, desired)
                await self._delete_pods(ds, old)
        await self._write_status(ds, daemon_status(ds, nodes, self._node_to_pods(ds), hash_))

    def _node_to_pods(self, ds: dict) -> dict[str, list[dict]]:
        """getNodesToDaemonPods: the pods this DaemonSet controls, by the node they target."""
        try:
            selector = label_selector((ds.get("spec") or {}).get("selector"))
        except ValueError:
            return {}
        result: dict[str, list[dict]] = {}
        for pod in self.pods_by_owner.owned(ds["metadata"]["uid"]):
            if not selector.matches((pod.get("metadata") or {}).get("labels") or {}):
                continue
            node = target_node(pod)
            if node:
                result.setdefault(node, []).append(pod)
        return result

    async def _manage(self, ds: dict, nodes: list[dict], node_to_pods: dict[str, list[dict]], hash_: str) -> bool:
        """podsShouldBeOnNode for every node, then create and delete (syncNodes). Returns
        whether pods were created (their expectations are then pending)."""
        pod_spec = daemon_pod_spec(ds)
        need_pods: list[str] = []
        to_delete: list[dict] = []
        for node in nodes:
            name = node["metadata"]["name"]
            should_run, should_continue = node_should_run(ds, node, pod_spec)
            pods = node_to_pods.get(name) or []
            if should_run and not pods:
                need_pods.append(name)
            elif should_continue:
                running = []
                for pod in pods:
                    if is_being_deleted(pod):
                        continue
                    if pod_phase(pod) == "Failed":
                        self.recorder.event(ds, "Warning", "FailedDaemonPod",
                                            f"Found failed daemon pod {pod['metadata']['namespace']}/"
                                            f"{pod['metadata']['name']} on node {name}, will try to kill it")
                        to_delete.append(pod)
                    else:
                        running.append(pod)
                to_delete += sorted(running, key=_creation_order)[1:]
            elif pods:
                to_delete += [p for p in pods if not is_being_deleted(p)]
        known = {n["metadata"]["name"] for n in nodes}
        # Pods aimed at nodes that no longer exist: no kubelet will finish them (the pod
        # garbage collector force-deletes them in Kubernetes), so they go at once.
        gone = [p for node, pods in node_to_pods.items() if node not in known for p in pods
                if not is_being_deleted(p) or (p.get("spec") or {}).get("nodeName")]
        await self._create_pods(ds, need_pods, hash_)
        await self._delete_pods(ds, to_delete, expect=not need_pods)
        await self._delete_pods(ds, gone, expect=False, force=True)
        return bool(need_pods)

    async def _create_pods(self, ds: dict, node_names: list[str], hash_: str) -> None:
        if not node_names:
            return
        key = object_key(ds)
        template = deep_copy((ds.get("spec") or {}).get("template") or {})
        add_daemon_tolerations(template.setdefault("spec", {}))
        labels = template.setdefault("metadata", {}).get("labels") or {}
        template["metadata"]["labels"] = labels
        generation = template_generation(ds)
        if generation is not None:
            labels[TEMPLATE_GENERATION_LABEL] = generation
        labels[REVISION_LABEL] = hash_
        self.expectations.expect_creations(key, len(node_names))
        failure: errors.APIError | None = None
        for node_name in node_names:
            pod = pod_from_template(template, ds, controller_ref(ds, API_VERSION, KIND),
                                    pod_name_prefix(ds["metadata"]["name"]))
            set_node_affinity(pod["spec"], node_name)
            try:
                created = await self.client.create("v1", "pods", pod, namespace=ds["metadata"]["namespace"])
            except errors.APIError as exc:
                self.expectations.creation_observed(key)
                self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {exc.message}")
                failure = failure or exc
                continue
            self.recorder.event(ds, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
        if failure is not None:
            raise failure

    async def _delete_pods(self, ds: dict, pods: list[dict], expect: bool = True, force: bool = False) -> None:
        """Deletes pods; `expect`: wait to see the deletions before acting again; `force`:
        at once, without a grace period."""
        if not pods:
            return
        key = object_key(ds)
        if expect:
            self.expectations.expect_deletions(key, [object_key(p) for p in pods if not is_being_deleted(p)])
        for pod in pods:
            m = pod["metadata"]
            try:
                await self.client.delete("v1", "pods", m["name"], namespace=m["namespace"],
                                         grace_period_seconds=0 if force else None,
                                         preconditions={"uid": m["uid"]})
            except errors.APIError as exc:
                self.expectations.deletion_observed(key, object_key(pod))
                if exc.code == 404:
                    continue
                self.recorder.event(ds, "Warning", "FailedDelete", f"Error deleting: {exc.message}")
                raise
            self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")

    async def _write_status(self, ds: dict, status: dict) -> None:
        if status == (ds.get("status") or {}):
            return
        body = deep_copy(ds)
        body["status"] = status
        try:
            await self.client.update("apps/v1", "daemonsets", body, namespace=ds["metadata"]["namespace"],
                                     subresource="status")
        except errors.APIError as exc:
            if exc.code != 404:
                raise
