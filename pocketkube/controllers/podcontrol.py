"""What the controllers that own pods share (kube-controller-manager's controller_utils):
controller references and adoption/release (ControllerRefManager), pods from a template,
expectations (so a controller does not act twice before its informer has seen its own
writes), an index of objects by controlling owner, pod readiness and availability, the
order in which surplus pods are deleted (ActivePodsWithRanks) and slow-start batching.

Used by the ReplicaSet and Deployment controllers; general enough for StatefulSet and
DaemonSet: nothing here knows a particular owner kind.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import math
import time
from typing import Awaitable, Callable, Iterable

from pocketkube.core import errors
from pocketkube.core.client import STRATEGIC_PATCH, Client
from pocketkube.core.informer import Informer, object_key
from pocketkube.core.objects import deep_copy, parse_time, utc_now
from pocketkube.core.selectors import LabelSelector

# controller.ExpectationsTimeout: expectations older than this count as satisfied.
EXPECTATIONS_TIMEOUT_SECONDS = 300.0
# controller.SlowStartInitialBatchSize.
SLOW_START_INITIAL_BATCH_SIZE = 1
# The pod-deletion-cost annotation (PodDeletionCost, GA).
POD_DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
# A pod name may be at most 63 characters for a generated name to stay valid; the
# generator appends 5 characters to the prefix.
_MAX_GENERATE_NAME_PREFIX = 58

_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


# ---- owner references --------------------------------------------------------------------


def controller_ref(owner: dict, api_version: str, kind: str) -> dict:
    """metav1.NewControllerRef: the ownerReference a controller puts on what it creates."""
    m = owner["metadata"]
    return {"apiVersion": api_version, "kind": kind, "name": m["name"], "uid": m["uid"],
            "controller": True, "blockOwnerDeletion": True}


def controller_of(obj: dict) -> dict | None:
    """metav1.GetControllerOf: the ownerReference with controller: true, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def is_being_deleted(obj: dict) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def with_kind(obj: dict, api_version: str, kind: str) -> dict:
    """A shallow copy that carries apiVersion and kind (events need them)."""
    if obj.get("kind") == kind and obj.get("apiVersion") == api_version:
        return obj
    return {**obj, "apiVersion": api_version, "kind": kind}


# ---- selectors ---------------------------------------------------------------------------

_selector_cache: dict[str, LabelSelector] = {}


def label_selector(selector: dict | None) -> LabelSelector:
    """selector_from_object, cached by the selector's content (controllers match often)."""
    from pocketkube.core.selectors import selector_from_object

    if selector is None:
        return selector_from_object(None)
    key = repr(sorted((selector.get("matchLabels") or {}).items())) + repr(selector.get("matchExpressions"))
    found = _selector_cache.get(key)
    if found is None:
        found = selector_from_object(selector)
        if len(_selector_cache) > 10000:
            _selector_cache.clear()
        _selector_cache[key] = found
    return found


# ---- pods ---------------------------------------------------------------------------------


def pod_name_prefix(controller_name: str) -> str:
    """getPodsPrefix: `<name>-`, unless that is not a valid generateName."""
    prefix = controller_name + "-"
    if len(prefix) > _MAX_GENERATE_NAME_PREFIX:
        prefix = prefix[:_MAX_GENERATE_NAME_PREFIX]
    return prefix


def pod_from_template(template: dict, owner: dict, owner_ref: dict, generate_name: str | None = None) -> dict:
    """GetPodFromTemplate: labels, annotations, finalizers and spec from the template, the
    owner's namespace and a controller reference; `generateName` by default `<owner>-`."""
    tmeta = template.get("metadata") or {}
    metadata: dict = {
        "namespace": owner["metadata"]["namespace"],
        "ownerReferences": [owner_ref],
    }
    metadata["generateName"] = generate_name if generate_name is not None else pod_name_prefix(
        owner["metadata"]["name"])
    for field in ("labels", "annotations"):
        if tmeta.get(field):
            metadata[field] = dict(tmeta[field])
    if tmeta.get("finalizers"):
        metadata["finalizers"] = list(tmeta["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": deep_copy(template.get("spec") or {})}


def is_pod_active(pod: dict) -> bool:
    """controller.IsPodActive: not Succeeded, not Failed, not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not is_being_deleted(pod)


def pod_ready_condition(pod: dict) -> dict | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition
    return None


def is_pod_ready(pod: dict) -> bool:
    condition = pod_ready_condition(pod)
    return condition is not None and condition.get("status") == "True"


def is_pod_available(pod: dict, min_ready_seconds: int, now: _dt.datetime | None = None) -> bool:
    """podutil.IsPodAvailable: Ready, and Ready for more than minReadySeconds."""
    condition = pod_ready_condition(pod)
    if condition is None or condition.get("status") != "True":
        return False
    if not min_ready_seconds:
        return True
    since = parse_time(condition.get("lastTransitionTime"))
    if since is None:
        return False
    return since + _dt.timedelta(seconds=min_ready_seconds) < (now or utc_now())


def ready_since(pod: dict) -> _dt.datetime | None:
    """When the pod last became Ready, or None when it is not ready."""
    condition = pod_ready_condition(pod)
    if condition is None or condition.get("status") != "True":
        return None
    return parse_time(condition.get("lastTransitionTime"))


# ---- which surplus pods go first ---------------------------------------------------------


def ranks_by_colocation(pods: list[dict], related: Iterable[dict]) -> list[int]:
    """getPodsRankedByRelatedPodsOnSameNode: each pod's rank is the number of active related
    pods on its node (pods doubled up on a node are deleted first)."""
    on_node: dict[str, int] = {}
    for pod in related:
        if is_pod_active(pod):
            node = (pod.get("spec") or {}).get("nodeName") or ""
            on_node[node] = on_node.get(node, 0) + 1
    return [on_node.get((p.get("spec") or {}).get("nodeName") or "", 0) for p in pods]


def _deletion_cost(pod: dict) -> int:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(POD_DELETION_COST_ANNOTATION)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _max_restarts(pod: dict) -> int:
    return max((s.get("restartCount") or 0 for s in (pod.get("status") or {}).get("containerStatuses") or []),
               default=0)


def _log_rank(t: _dt.datetime, now: _dt.datetime) -> int:
    nanos = (now - t) / _dt.timedelta(microseconds=1) * 1000
    return int(math.log2(nanos)) if nanos > 0 else -1


def _newer_first(t1: _dt.datetime | None, t2: _dt.datetime | None, uid1: str, uid2: str,
                 now: _dt.datetime | None) -> bool:
    """afterOrZero, with LogarithmicScaleDown (GA): compare log2 buckets of age, then UIDs."""
    if t1 is None or t2 is None or now is None:
        if t1 is None or t2 is None:
            return t1 is None
        return t1 > t2
    diff = _log_rank(t1, now) - _log_rank(t2, now)
    if diff == 0:
        return uid1 < uid2
    return diff < 0


def deletion_precedes(a: dict, rank_a: int, b: dict, rank_b: int, now: _dt.datetime | None) -> bool:
    """ActivePodsWithRanks.Less: True when pod `a` should be deleted before pod `b`."""
    node_a = (a.get("spec") or {}).get("nodeName") or ""
    node_b = (b.get("spec") or {}).get("nodeName") or ""
    if node_a != node_b and (not node_a or not node_b):
        return not node_a
    phase_a = _PHASE_ORDINAL.get((a.get("status") or {}).get("phase"), 0)
    phase_b = _PHASE_ORDINAL.get((b.get("status") or {}).get("phase"), 0)
    if phase_a != phase_b:
        return phase_a < phase_b
    ready_a, ready_b = is_pod_ready(a), is_pod_ready(b)
    if ready_a != ready_b:
        return not ready_a
    cost_a, cost_b = _deletion_cost(a), _deletion_cost(b)
    if cost_a != cost_b:
        return cost_a < cost_b
    if rank_a != rank_b:
        return rank_a > rank_b
    uid_a, uid_b = a["metadata"].get("uid", ""), b["metadata"].get("uid", "")
    if ready_a and ready_b:
        since_a, since_b = ready_since(a), ready_since(b)
        if since_a != since_b:
            return _newer_first(since_a, since_b, uid_a, uid_b, now)
    restarts_a, restarts_b = _max_restarts(a), _max_restarts(b)
    if restarts_a != restarts_b:
        return restarts_a > restarts_b
    created_a = parse_time(a["metadata"].get("creationTimestamp"))
    created_b = parse_time(b["metadata"].get("creationTimestamp"))
    if created_a != created_b:
        return _newer_first(created_a, created_b, uid_a, uid_b, now)
    return False


def pods_to_delete(pods: list[dict], related: Iterable[dict], count: int,
                   now: _dt.datetime | None = None) -> list[dict]:
    """getPodsToDelete: the `count` pods to delete first, in deletion order."""
    if count >= len(pods):
        return list(pods)
    now = now or utc_now()
    ranks = ranks_by_colocation(pods, related)
    order = list(range(len(pods)))

    def compare(i: int, j: int) -> int:
        if deletion_precedes(pods[i], ranks[i], pods[j], ranks[j], now):
            return -1
        if deletion_precedes(pods[j], ranks[j], pods[i], ranks[i], now):
            return 1
        return 0

    order.sort(key=functools.cmp_to_key(compare))
    return [pods[i] for i in order[:count]]


# ---- expectations ---------------------------------------------------------------------------


class Expectations:
    """UIDTrackingControllerExpectations: per controller key, how many creations and which
    deletions it still waits to see in its informer. Until they are seen (or time out), the
    controller must not create or delete more."""

    def __init__(self, timeout: float = EXPECTATIONS_TIMEOUT_SECONDS):
        self.timeout = timeout
        self._adds: dict[str, int] = {}
        self._deletes: dict[str, set[str]] = {}
        self._set_at: dict[str, float] = {}

    def expect_creations(self, key: str, count: int) -> None:
        self._adds[key] = count
        self._deletes.pop(key, None)
        self._set_at[key] = time.monotonic()

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        self._deletes[key] = set(pod_keys)
        self._adds.pop(key, None)
        self._set_at[key] = time.monotonic()

    def creation_observed(self, key: str) -> None:
        if key in self._adds:
            self._adds[key] -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        pending = self._deletes.get(key)
        if pending is not None:
            pending.discard(pod_key)

    def satisfied(self, key: str) -> bool:
        if key not in self._set_at:
            return True
        if self._adds.get(key, 0) <= 0 and not self._deletes.get(key):
            return True
        return time.monotonic() - self._set_at[key] > self.timeout

    def forget(self, key: str) -> None:
        self._adds.pop(key, None)
        self._deletes.pop(key, None)
        self._set_at.pop(key, None)


# ---- an index of objects by their controller -------------------------------------------------


class OwnerIndex:
    """Objects of one informer, indexed by their controller's UID, and the orphans (no
    controller) by namespace: what a controller looks at when it claims its objects,
    without scanning the whole informer."""

    def __init__(self, informer: Informer):
        self.informer = informer
        self._owned: dict[str, dict[str, dict]] = {}
        self._orphans: dict[str, dict[str, dict]] = {}
        self._where: dict[str, tuple[str, str]] = {}  # object key -> ("owned"|"orphan", uid|ns)
        informer.add_handlers(self._put, lambda old, new: self._put(new), self._remove)

    def owned(self, uid: str) -> list[dict]:
        return list(self._owned.get(uid, {}).values())

    def orphans(self, namespace: str) -> list[dict]:
        return list(self._orphans.get(namespace, {}).values())

    def candidates(self, owner: dict) -> list[dict]:
        """What the owner may claim: its own objects and the orphans of its namespace."""
        m = owner["metadata"]
        return self.owned(m["uid"]) + self.orphans(m.get("namespace", ""))

    def _put(self, obj: dict) -> None:
        key = object_key(obj)
        self._remove_key(key)
        ref = controller_of(obj)
        if ref is not None:
            self._owned.setdefault(ref.get("uid", ""), {})[key] = obj
            self._where[key] = ("owned", ref.get("uid", ""))
        else:
            namespace = obj["metadata"].get("namespace", "")
            self._orphans.setdefault(namespace, {})[key] = obj
            self._where[key] = ("orphan", namespace)

    def _remove(self, obj: dict) -> None:
        self._remove_key(object_key(obj))

    def _remove_key(self, key: str) -> None:
        where = self._where.pop(key, None)
        if where is None:
            return
        table = self._owned if where[0] == "owned" else self._orphans
        bucket = table.get(where[1])
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del table[where[1]]


# ---- adoption and release (ControllerRefManager) -------------------------------------------------


class RefManager:
    """ClaimObjects for one owner: keep what it controls and still matches, release what it
    controls and no longer matches, adopt matching orphans (after checking, once, that the
    owner is not being deleted: RecheckDeletionTimestamp)."""

    def __init__(self, client: Client, owner: dict, owner_api_version: str, owner_kind: str,
                 owner_resource: str, selector: LabelSelector, api_version: str, resource: str):
        self.client = client
        self.owner = owner
        self.owner_api_version = owner_api_version
        self.owner_kind = owner_kind
        self.owner_resource = owner_resource
        self.selector = selector
        self.api_version = api_version
        self.resource = resource
        self._adoption_checked = False

    async def claim(self, objects: Iterable[dict]) -> list[dict]:
        """The objects the owner controls after adoption and release. Raises the first error."""
        claimed: list[dict] = []
        first_error: Exception | None = None
        for obj in objects:
            try:
                if await self._claim_one(obj):
                    claimed.append(obj)
            except errors.APIError as exc:
                if exc.code != 404 and first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error
        return claimed

    async def _claim_one(self, obj: dict) -> bool:
        owner_meta = self.owner["metadata"]
        ref = controller_of(obj)
        matches = self.selector.matches((obj.get("metadata") or {}).get("labels") or {})
        if ref is not None:
            if ref.get("uid") != owner_meta["uid"]:
                return False
            if matches:
                return True
            if is_being_deleted(self.owner):
                return False
            await self._release(obj)
            return False
        if is_being_deleted(self.owner) or not matches or is_being_deleted(obj):
            return False
        if obj["metadata"].get("namespace") != owner_meta.get("namespace"):
            return False
        await self._check_can_adopt()
        await self._patch_owner_refs(obj, [controller_ref(self.owner, self.owner_api_version, self.owner_kind)])
        return True

    async def _check_can_adopt(self) -> None:
        if self._adoption_checked:
            return
        m = self.owner["metadata"]
        fresh = await self.client.get(self.owner_api_version, self.owner_resource, m["name"], m.get("namespace"))
        fm = fresh["metadata"]
        if fm.get("uid") != m["uid"]:
            raise errors.APIError(409, "Conflict", f"original {m.get('namespace')}/{m['name']} is gone: "
                                                   f"got uid {fm.get('uid')}, wanted {m['uid']}")
        if fm.get("deletionTimestamp"):
            raise errors.APIError(409, "Conflict", f"{m.get('namespace')}/{m['name']} has just been deleted at "
                                                   f"{fm['deletionTimestamp']}")
        self._adoption_checked = True

    async def _release(self, obj: dict) -> None:
        await self._patch_owner_refs(obj, [{"$patch": "delete", "uid": self.owner["metadata"]["uid"]}])

    async def _patch_owner_refs(self, obj: dict, refs: list[dict]) -> None:
        m = obj["metadata"]
        patch = {"metadata": {"ownerReferences": refs, "uid": m.get("uid")}}
        await self.client.patch(self.api_version, self.resource, m["name"], patch, m.get("namespace"),
                                patch_type=STRATEGIC_PATCH)


# ---- batching ---------------------------------------------------------------------------------


async def slow_start_batch(count: int, initial_batch_size: int,
                           fn: Callable[[], Awaitable[None]]) -> tuple[int, Exception | None]:
    """controller.slowStartBatch: call `fn` `count` times in batches of 1, 2, 4, ... (all of
    a batch at once); stop after the first batch with an error. Returns (successes, error)."""
    remaining = count
    successes = 0
    batch = min(remaining, initial_batch_size)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        successes += batch - len(failures)
        if failures:
            for failure in failures:
                if isinstance(failure, asyncio.CancelledError):
                    raise failure
            return successes, failures[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None
