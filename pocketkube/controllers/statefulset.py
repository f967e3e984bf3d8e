"""The StatefulSet controller (kube-controller-manager's "statefulset-controller").

Owns: pods named `<set>-<ordinal>` with a stable hostname (the pod name) and subdomain
(spec.serviceName), the `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`
and `controller-revision-hash` labels; ordered (OrderedReady) or parallel creation, deletion
in reverse ordinal order on scale down; RollingUpdate (highest ordinal first, down to the
partition) and OnDelete; the status `kubectl get sts` and `kubectl rollout status` read.

ControllerRevisions are not served: the revision name `<set>-<hash>` is computed from the pod
template (as the real controller names its revisions) and the templates of revisions seen
are remembered in memory, so pods below a partition are recreated at their own revision.
`template_hash` is shared with the DaemonSet controller.
"""

from __future__ import annotations

import datetime as _dt
import re
import struct

import orjson

from pocketkube.controllers.base import Controller
from pocketkube.controllers.podcontrol import (
    Expectations, OwnerIndex, RefManager, controller_of, controller_ref, is_being_deleted, is_pod_available,
    is_pod_ready, label_selector, pod_from_template, ready_since,
)
from pocketkube.core import errors
from pocketkube.core.informer import object_key
from pocketkube.core.objects import deep_copy, utc_now

API_VERSION = "apps/v1"
KIND = "StatefulSet"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"

# rand.SafeEncodeString's alphabet: no vowels, no look-alike characters.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_ORDINAL_NAME = re.compile(r"^(.*)-([0-9]+)$")


# ---------------------------------------------------------------------------------------
# Hashes and small pod helpers
# ---------------------------------------------------------------------------------------

def safe_encode(text: str) -> str:
    """apimachinery's rand.SafeEncodeString: each character mapped into a vowel-free alphabet."""
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in text)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: dict, collision_count: int | None = None) -> str:
    """A stable short hash of a pod template (and the collision count, when there is one):
    FNV-32a over the canonical JSON, encoded as controller.ComputeHash encodes it."""
    data = orjson.dumps(template or {}, option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        data += struct.pack("<I", collision_count & 0xFFFFFFFF)
    return safe_encode(str(fnv32a(data)))


def pod_phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def available_in(pod: dict, min_ready_seconds: int, now: _dt.datetime | None = None) -> float | None:
    """None if the pod is not ready; else seconds until it is available (0: available now)."""
    if not is_pod_ready(pod):
        return None
    if is_pod_available(pod, min_ready_seconds, now):
        return 0.0
    since = ready_since(pod)
    if since is None:
        return float(min_ready_seconds)
    left = (since + _dt.timedelta(seconds=min_ready_seconds) - (now or utc_now())).total_seconds()
    return max(left, 0.001)


# ---------------------------------------------------------------------------------------
# StatefulSet pure logic
# ---------------------------------------------------------------------------------------

def parent_and_ordinal(pod_name: str) -> tuple[str, int]:
    """getParentNameAndOrdinal: ("web", 3) for "web-3"; ("", -1) for a name without one."""
    match = _ORDINAL_NAME.match(pod_name)
    if not match:
        return "", -1
    return match.group(1), int(match.group(2))


def start_ordinal(sts: dict) -> int:
    return int(((sts.get("spec") or {}).get("ordinals") or {}).get("start") or 0)


def revision_name(sts: dict, collision_count: int) -> str:
    """The name the real controller gives the ControllerRevision of the current template."""
    template = (sts.get("spec") or {}).get("template") or {}
    return f"{sts['metadata']['name']}-{template_hash(template, collision_count)}"


def pod_revision(pod: dict) -> str:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL, "")


def identity_matches(sts: dict, pod: dict, ordinal: int) -> bool:
    """identityMatches: the name is the set's at this ordinal and the pod-name label says so."""
    m = pod.get("metadata") or {}
    name = f"{sts['metadata']['name']}-{ordinal}"
    return (m.get("name") == name and m.get("namespace") == sts["metadata"]["namespace"]
            and (m.get("labels") or {}).get(POD_NAME_LABEL) == name)


def set_identity(sts: dict, pod: dict, ordinal: int) -> None:
    """updateIdentity: name, namespace, hostname, subdomain and the two identity labels."""
    name = f"{sts['metadata']['name']}-{ordinal}"
    m = pod.setdefault("metadata", {})
    m["name"] = name
    m["namespace"] = sts["metadata"]["namespace"]
    labels = m.get("labels") or {}
    labels[POD_NAME_LABEL] = name
    labels[POD_INDEX_LABEL] = str(ordinal)
    m["labels"] = labels
    spec = pod.setdefault("spec", {})
    spec["hostname"] = name
    service_name = (sts.get("spec") or {}).get("serviceName")
    if service_name:
        spec["subdomain"] = service_name
    else:
        spec.pop("subdomain", None)


def new_stateful_pod(sts: dict, template: dict, revision: str, ordinal: int) -> dict:
    """newStatefulSetPod: the template, a controller reference, the identity, the revision."""
    pod = pod_from_template(template, sts, controller_ref(sts, API_VERSION, KIND))
    pod["metadata"].pop("generateName", None)
    pod["metadata"].setdefault("labels", {})
    set_identity(sts, pod, ordinal)
    pod["metadata"]["labels"][REVISION_LABEL] = revision
    return pod


def keeps_current_revision(sts: dict, ordinal: int) -> bool:
    """newVersionedStatefulSetPod's test (Go precedence and all): a pod below the partition
    is created at the current revision; every other one, OnDelete included, at the update
    revision."""
    strategy = (sts.get("spec") or {}).get("updateStrategy") or {}
    rolling = strategy.get("rollingUpdate")
    start = start_ordinal(sts)
    if strategy.get("type") == "RollingUpdate" and rolling is None and ordinal < start:
        return True
    return rolling is not None and ordinal < start + int(rolling.get("partition") or 0)


def is_running_and_ready(pod: dict) -> bool:
    return pod_phase(pod) == "Running" and is_pod_ready(pod)


def is_healthy(pod: dict) -> bool:
    return is_running_and_ready(pod) and not is_being_deleted(pod)


def is_created(pod: dict) -> bool:
    return pod_phase(pod) != ""


def compute_status(sts: dict, pods: list[dict], current_revision: str, update_revision: str,
                   collision_count: int, now: float | None = None) -> dict:
    """computeReplicaStatus plus the fields the sync sets (observedGeneration, revisions),
    and completeRollingUpdate's promotion of the update revision once it is complete."""
    min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
    replicas = ready = available = current = updated = 0
    for pod in pods:
        if is_created(pod):
            replicas += 1
        if is_running_and_ready(pod):
            ready += 1
            if is_pod_available(pod, min_ready, now):
                available += 1
        if is_created(pod) and not is_being_deleted(pod):
            revision = pod_revision(pod)
            current += revision == current_revision
            updated += revision == update_revision
    strategy = ((sts.get("spec") or {}).get("updateStrategy") or {}).get("type") or "RollingUpdate"
    if strategy == "RollingUpdate" and updated == replicas and ready == replicas:
        current, current_revision = updated, update_revision
    status = {
        "observedGeneration": sts["metadata"].get("generation"),
        "replicas": replicas, "readyReplicas": ready, "currentReplicas": current, "updatedReplicas": updated,
        "currentRevision": current_revision, "updateRevision": update_revision,
        "collisionCount": collision_count, "availableReplicas": available,
    }
    # omitempty fields vanish at their zero value, as in the real API.
    for key in ("observedGeneration", "readyReplicas", "currentReplicas", "updatedReplicas",
                "currentRevision", "updateRevision"):
        if not status[key]:
            del status[key]
    conditions = (sts.get("status") or {}).get("conditions")
    if conditions:
        status["conditions"] = conditions
    return status


# ---------------------------------------------------------------------------------------
# The controller
# ---------------------------------------------------------------------------------------

class StatefulSetController(Controller):
    name = "statefulset-controller"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.expectations = Expectations()
        # revision name -> pod template, for revisions this process has seen
        self.revision_templates: dict[str, dict] = {}

    def setup(self) -> None:
        self.sets = self.informers.informer(API_VERSION, "statefulsets")
        self.pods = self.informers.informer("v1", "pods")
        self.pods_by_owner = OwnerIndex(self.pods)
        self.sets.add_handlers(self.enqueue, lambda old, new: self.enqueue(new),
                               lambda sts: self.expectations.forget(object_key(sts)))
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)

    # ---- event handlers ------------------------------------------------------------

    def _owner_key(self, pod: dict) -> str | None:
        ref = controller_of(pod)
        if not ref or ref.get("kind") != KIND:
            return None
        key = f"{pod['metadata']['namespace']}/{ref.get('name')}"
        sts = self.sets.get(key)
        if sts is None or sts["metadata"].get("uid") != ref.get("uid"):
            return None
        return key

    def _enqueue_for_pod(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key:
            self.enqueue(key)
        elif controller_of(pod) is None:  # an orphan: the sets that may adopt it
            labels = pod["metadata"].get("labels") or {}
            for sts in self.sets.list(pod["metadata"]["namespace"]):
                if label_selector((sts.get("spec") or {}).get("selector")).matches(labels):
                    self.enqueue(sts)

    def _pod_added(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.creation_observed(key)
        self._enqueue_for_pod(pod)

    def _pod_updated(self, old: dict, new: dict) -> None:
        if is_being_deleted(new) and not is_being_deleted(old):
            key = self._owner_key(new)
            if key:
                self.expectations.deletion_observed(key, object_key(new))
        self._enqueue_for_pod(new)

    def _pod_deleted(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.deletion_observed(key, object_key(pod))
            self.enqueue(key)

    # ---- sync ----------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        sts = self.sets.get(key)
        if sts is None:
            self.expectations.forget(key)
            return
        if not self.expectations.satisfied(key):
            return
        pods = await self._claim_pods(sts)
        collision_count = int((sts.get("status") or {}).get("collisionCount") or 0)
        template = (sts.get("spec") or {}).get("template") or {}
        update_revision = revision_name(sts, collision_count)
        self.revision_templates[update_revision] = template
        current_revision = (sts.get("status") or {}).get("currentRevision") or update_revision
        if current_revision not in self.revision_templates:
            current_revision = update_revision  # its template is unknown (as with no history)
        requeue_after = 0.0
        if not is_being_deleted(sts):
            pods, requeue_after = await self._update_pods(sts, pods, current_revision, update_revision)
        status = compute_status(sts, pods, current_revision, update_revision, collision_count)
        await self._write_status(sts, status)
        if requeue_after:
            self.queue.add_after(key, requeue_after)

    async def _claim_pods(self, sts: dict) -> list[dict]:
        """Pods this set controls, after adopting the orphans it selects whose names are
        its ordinals and releasing the pods it no longer selects (ControllerRefManager)."""
        m = sts["metadata"]
        candidates = self.pods_by_owner.owned(m["uid"]) + [
            pod for pod in self.pods_by_owner.orphans(m["namespace"])
            if parent_and_ordinal(pod["metadata"]["name"])[0] == m["name"]]
        manager = RefManager(self.client, sts, API_VERSION, KIND, "statefulsets",
                             label_selector((sts.get("spec") or {}).get("selector")), "v1", "pods")
        return await manager.claim(candidates)

    async def _update_pods(self, sts: dict, pods: list[dict], current_revision: str,
                           update_revision: str) -> tuple[list[dict], float]:
        """One pass of updateStatefulSet; returns the pods as they are after it, and a delay
        after which to look again (minReadySeconds), 0 for none."""
        spec = sts.get("spec") or {}
        start = start_ordinal(sts)
        count = int(spec.get("replicas") if spec.get("replicas") is not None else 1)
        monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        min_ready = int(spec.get("minReadySeconds") or 0)

        replicas: dict[int, dict] = {}
        condemned: list[dict] = []
        for pod in pods:
            ordinal = parent_and_ordinal(pod["metadata"]["name"])[1]
            if start <= ordinal < start + count:
                replicas[ordinal] = pod
            elif ordinal >= 0:
                condemned.append(pod)
        condemned.sort(key=lambda p: parent_and_ordinal(p["metadata"]["name"])[1])
        current = list(pods)
        unhealthy = [replicas[o] for o in sorted(replicas) if not is_healthy(replicas[o])]
        unhealthy += [p for p in condemned if not is_healthy(p)]
        first_unhealthy = unhealthy[0] if unhealthy else None

        missing: list[int] = []
        blocked = False  # monotonic: a replica is missing or not yet healthy, nothing after it moves
        for ordinal in range(start, start + count):
            pod = replicas.get(ordinal)
            if pod is not None and pod_phase(pod) in ("Failed", "Succeeded"):
                if not is_being_deleted(pod):
                    await self._delete_pods(sts, [pod])
                current.remove(pod)
                pod = None
            if pod is None:
                missing.append(ordinal)
                blocked = monotonic
            elif monotonic and (is_being_deleted(pod) or not is_running_and_ready(pod)):
                blocked = True
            else:
                wait = available_in(pod, min_ready) if monotonic else 0.0
                if wait:
                    return current, wait
                if not identity_matches(sts, pod, ordinal):
                    await self._fix_identity(sts, pod, ordinal)
            if blocked:
                break
        if missing:
            current += await self._create_pods(sts, missing, current_revision, update_revision)
        if blocked:
            return current, 0.0

        doomed: list[dict] = []
        for pod in reversed(condemned):
            if is_being_deleted(pod):
                if monotonic:
                    return current, 0.0
                continue
            if monotonic and not is_running_and_ready(pod) and pod is not first_unhealthy:
                return current, 0.0
            doomed.append(pod)
            if monotonic:
                break
        if doomed:
            await self._delete_pods(sts, doomed, expect=not missing)
            return current, 0.0

        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return current, 0.0
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        for ordinal in range(start + count - 1, start + partition - 1, -1):
            pod = replicas.get(ordinal)
            if pod is None:
                continue
            if pod_revision(pod) != update_revision and not is_being_deleted(pod):
                await self._delete_pods(sts, [pod], expect=not missing)
                return current, 0.0
            if not is_healthy(pod):
                return current, 0.0
        return current, 0.0

    async def _create_pods(self, sts: dict, ordinals: list[int], current_revision: str,
                           update_revision: str) -> list[dict]:
        """newVersionedStatefulSetPod for each ordinal (below the partition a pod keeps the
        current revision), created; returns the pods created (or found existing)."""
        key = object_key(sts)
        self.expectations.expect_creations(key, len(ordinals))
        created: list[dict] = []
        for ordinal in ordinals:
            revision = current_revision if keeps_current_revision(sts, ordinal) else update_revision
            pod = new_stateful_pod(sts, self.revision_templates[revision], revision, ordinal)
            try:
                created.append(await self.client.create("v1", "pods", pod, namespace=sts["metadata"]["namespace"]))
            except errors.APIError as exc:
                self.expectations.creation_observed(key)
                if exc.code != 409:
                    self._record(sts, "create", pod["metadata"]["name"], exc)
                    raise
                # It exists already (our informer has not seen it yet): count it as pending.
                pod.setdefault("status", {})["phase"] = "Pending"
                created.append(pod)
                continue
            self._record(sts, "create", pod["metadata"]["name"])
        return created

    async def _delete_pods(self, sts: dict, pods: list[dict], expect: bool = True) -> None:
        """Deletes pods (graceful for bound pods); `expect`: wait to see the deletions
        before acting again (not when creations made in the same pass are awaited)."""
        key = object_key(sts)
        if expect:
            self.expectations.expect_deletions(key, [object_key(p) for p in pods])
        for pod in pods:
            m = pod["metadata"]
            try:
                await self.client.delete("v1", "pods", m["name"], namespace=m["namespace"],
                                         preconditions={"uid": m["uid"]})
            except errors.APIError as exc:
                self.expectations.deletion_observed(key, object_key(pod))
                if exc.code == 404:
                    continue
                self._record(sts, "delete", m["name"], exc)
                raise
            self._record(sts, "delete", m["name"])

    async def _fix_identity(self, sts: dict, pod: dict, ordinal: int) -> None:
        m = pod["metadata"]
        fixed = deep_copy(pod)
        set_identity(sts, fixed, ordinal)
        try:
            await self.client.update("v1", "pods", fixed, namespace=m["namespace"])
        except errors.APIError as exc:
            self._record(sts, "update", m["name"], exc)
            raise
        self._record(sts, "update", m["name"])

    def _record(self, sts: dict, verb: str, pod_name: str, error: errors.APIError | None = None) -> None:
        """recordPodEvent: "create Pod web-0 in StatefulSet web successful"."""
        set_name = sts["metadata"]["name"]
        if error is None:
            self.recorder.event(sts, "Normal", f"Successful{verb.title()}",
                                f"{verb} Pod {pod_name} in StatefulSet {set_name} successful")
        else:
            self.recorder.event(sts, "Warning", f"Failed{verb.title()}",
                                f"{verb} Pod {pod_name} in StatefulSet {set_name} failed error: {error.message}")

    async def _write_status(self, sts: dict, status: dict) -> None:
        if status == (sts.get("status") or {}):
            return
        body = deep_copy(sts)
        body["status"] = status
        try:
            await self.client.update("apps/v1", "statefulsets", body, namespace=sts["metadata"]["namespace"],
                                     subresource="status")
        except errors.APIError as exc:
            if exc.code != 404:
                raise
