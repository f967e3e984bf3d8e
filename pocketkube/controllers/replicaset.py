"""The ReplicaSet controller (kube-controller-manager's "replicaset-controller"): keeps
`spec.replicas` active pods from the template, adopts matching orphans and releases pods
that stop matching, deletes surplus pods in Kubernetes' order, and writes the status
(replicas, fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration, the
ReplicaFailure condition) and the SuccessfulCreate / SuccessfulDelete events.

The ReplicationController manager is the same loop over v1 ReplicationControllers, whose
selector is a plain map of labels, as upstream builds it from the ReplicaSet controller.
"""

from __future__ import annotations

import asyncio

from pocketkube.controllers import podcontrol
from pocketkube.controllers.base import Controller
from pocketkube.core import errors
from pocketkube.core.informer import object_key
from pocketkube.core.objects import rfc3339, utc_now

# controller.BurstReplicas: at most this many creations or deletions per sync.
BURST_REPLICAS = 500


class ReplicaSetController(Controller):
    name = "replicaset-controller"
    workers = 5  # --concurrent-replicaset-syncs
    api_version, kind, resource = "apps/v1", "ReplicaSet", "replicasets"

    @staticmethod
    def selector_of(rs: dict) -> dict | None:
        """The owner's pod selector as a LabelSelector."""
        return rs["spec"].get("selector")

    def setup(self) -> None:
        self.expectations = podcontrol.Expectations()
        self.replicasets = self.informers.informer(self.api_version, self.resource)
        self.pods = self.informers.informer("v1", "pods")
        self.rs_index = podcontrol.OwnerIndex(self.replicasets)
        self.pod_index = podcontrol.OwnerIndex(self.pods)
        self.replicasets.add_handlers(self.enqueue, self._rs_updated, self._rs_deleted)
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)

    # ---- event handlers --------------------------------------------------------------

    def _rs_updated(self, old: dict, new: dict) -> None:
        self.enqueue(new)

    def _rs_deleted(self, rs: dict) -> None:
        key = object_key(rs)
        self.expectations.forget(key)
        self.enqueue(key)

    def _owner_key(self, pod: dict, ref: dict) -> str | None:
        """The key of the ReplicaSet a controller reference names, if it is ours."""
        group = self.api_version.rpartition("/")[0]
        if ref.get("kind") != self.kind or str(ref.get("apiVersion", "")).rpartition("/")[0] != group:
            return None
        key = f"{pod['metadata'].get('namespace', '')}/{ref.get('name', '')}"
        rs = self.replicasets.get(key)
        if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
            return None
        return key

    def _matching_replicasets(self, pod: dict) -> list[str]:
        """getPodReplicaSets: ReplicaSets of the pod's namespace whose selector matches it."""
        labels = pod["metadata"].get("labels") or {}
        namespace = pod["metadata"].get("namespace", "")
        keys = []
        for rs in self.replicasets.list(namespace):
            try:
                if podcontrol.label_selector(self.selector_of(rs)).matches(labels):
                    keys.append(object_key(rs))
            except ValueError:
                continue
        return keys

    def _pod_added(self, pod: dict) -> None:
        if podcontrol.is_being_deleted(pod):
            self._pod_deleted(pod)
            return
        ref = podcontrol.controller_of(pod)
        if ref is not None:
            key = self._owner_key(pod, ref)
            if key is not None:
                self.expectations.creation_observed(key)
                self.enqueue(key)
            return
        for key in self._matching_replicasets(pod):
            self.enqueue(key)

    def _pod_updated(self, old: dict, new: dict) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        labels_changed = old["metadata"].get("labels") != new["metadata"].get("labels")
        if podcontrol.is_being_deleted(new) and not podcontrol.is_being_deleted(old):
            self._pod_deleted(new)
            if labels_changed:
                self._pod_deleted(old)
            return
        old_ref, new_ref = podcontrol.controller_of(old), podcontrol.controller_of(new)
        if old_ref is not None and (new_ref is None or old_ref.get("uid") != new_ref.get("uid")):
            key = self._owner_key(old, old_ref)
            if key is not None:
                self.enqueue(key)
        if new_ref is not None:
            key = self._owner_key(new, new_ref)
            if key is not None:
                self.enqueue(key)
                self._requeue_for_availability(key, old, new)
            return
        if labels_changed or old_ref is not None:
            for key in self._matching_replicasets(new):
                self.enqueue(key)

    def _requeue_for_availability(self, key: str, old: dict, new: dict) -> None:
        """A pod that just became Ready becomes available after minReadySeconds: look again then."""
        rs = self.replicasets.get(key)
        min_ready = (rs or {}).get("spec", {}).get("minReadySeconds") or 0
        if min_ready and not podcontrol.is_pod_ready(old) and podcontrol.is_pod_ready(new):
            self.queue.add_after(key, min_ready + 1)

    def _pod_deleted(self, pod: dict) -> None:
        ref = podcontrol.controller_of(pod)
        if ref is None:
            return
        key = self._owner_key(pod, ref)
        if key is not None:
            self.expectations.deletion_observed(key, object_key(pod))
            self.enqueue(key)

    # ---- sync ---------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        rs = self.replicasets.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        needs_sync = self.expectations.satisfied(key)
        selector = podcontrol.label_selector(self.selector_of(rs))
        active = [p for p in self.pod_index.candidates(rs) if podcontrol.is_pod_active(p)]
        manager = podcontrol.RefManager(self.client, rs, self.api_version, self.kind, self.resource, selector,
                                        "v1", "pods")
        pods = await manager.claim(active)
        manage_error: Exception | None = None
        if needs_sync and not podcontrol.is_being_deleted(rs):
            manage_error = await self._manage_replicas(key, rs, pods)
        await self._update_status(rs, pods, manage_error)
        if manage_error is not None:
            raise manage_error

    async def _manage_replicas(self, key: str, rs: dict, pods: list[dict]) -> Exception | None:
        diff = len(pods) - (rs["spec"].get("replicas") or 0)
        if diff < 0:
            return await self._create_pods(key, rs, min(-diff, BURST_REPLICAS))
        if diff > 0:
            return await self._delete_pods(key, rs, pods, min(diff, BURST_REPLICAS))
        return None

    async def _create_pods(self, key: str, rs: dict, count: int) -> Exception | None:
        self.expectations.expect_creations(key, count)
        ref = podcontrol.controller_ref(rs, self.api_version, self.kind)
        event_target = podcontrol.with_kind(rs, self.api_version, self.kind)
        namespace = rs["metadata"]["namespace"]

        async def create_one() -> None:
            pod = podcontrol.pod_from_template(rs["spec"].get("template") or {}, rs, ref)
            try:
                created = await self.client.create("v1", "pods", pod, namespace=namespace)
            except errors.APIError as exc:
                self.expectations.creation_observed(key)
                if not errors.namespace_terminating(exc):
                    self.recorder.event(event_target, "Warning", "FailedCreate", f"Error creating: {exc.message}")
                raise
            self.recorder.event(event_target, "Normal", "SuccessfulCreate",
                                f"Created pod: {created['metadata']['name']}")

        successes, error = await podcontrol.slow_start_batch(count, podcontrol.SLOW_START_INITIAL_BATCH_SIZE,
                                                             create_one)
        skipped = count - successes - (1 if error is not None else 0)
        for _ in range(max(skipped, 0)):
            self.expectations.creation_observed(key)
        if isinstance(error, errors.APIError) and errors.namespace_terminating(error):
            return None
        return error

    async def _delete_pods(self, key: str, rs: dict, pods: list[dict], count: int) -> Exception | None:
        related = self._related_pods(rs)
        victims = podcontrol.pods_to_delete(pods, related, count)
        self.expectations.expect_deletions(key, [object_key(p) for p in victims])
        event_target = podcontrol.with_kind(rs, self.api_version, self.kind)

        async def delete_one(pod: dict) -> Exception | None:
            m = pod["metadata"]
            try:
                await self.client.delete("v1", "pods", m["name"], m["namespace"])
            except errors.APIError as exc:
                self.expectations.deletion_observed(key, object_key(pod))
                if exc.code == 404:
                    return None
                self.recorder.event(event_target, "Warning", "FailedDelete", f"Error deleting: {exc.message}")
                return exc
            self.recorder.event(event_target, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")
            return None

        results = await asyncio.gather(*(delete_one(p) for p in victims))
        return next((r for r in results if r is not None), None)

    def _related_pods(self, rs: dict) -> list[dict]:
        """getIndirectlyRelatedPods: pods of every ReplicaSet with the same controlling owner."""
        owner = podcontrol.controller_of(rs)
        if owner is None:
            return self.pod_index.owned(rs["metadata"]["uid"])
        siblings = self.rs_index.owned(owner.get("uid", ""))
        return [p for sibling in siblings for p in self.pod_index.owned(sibling["metadata"]["uid"])]

    # ---- status ---------------------------------------------------------------------------

    async def _update_status(self, rs: dict, pods: list[dict], manage_error: Exception | None) -> None:
        status = calculate_status(rs, pods, manage_error)
        generation = rs["metadata"].get("generation") or 0
        current = rs.get("status") or {}
        if _without_zeros(current) == _without_zeros({**status, "observedGeneration": current.get(
                "observedGeneration", 0)}) and current.get("observedGeneration") == generation:
            return
        status["observedGeneration"] = generation
        body = {**rs, "status": _without_zeros(status, keep=("replicas",))}
        try:
            updated = await self.client.update(self.api_version, self.resource, body, rs["metadata"]["namespace"],
                                               subresource="status")
        except errors.APIError as exc:
            if exc.code == 404:
                return
            raise
        spec_replicas = updated["spec"].get("replicas") or 0
        new_status = updated.get("status") or {}
        min_ready = updated["spec"].get("minReadySeconds") or 0
        if (manage_error is None and min_ready and new_status.get("readyReplicas", 0) == spec_replicas
                and new_status.get("availableReplicas", 0) != spec_replicas):
            self.queue.add_after(object_key(updated), min_ready)


class ReplicationManager(ReplicaSetController):
    """kube-controller-manager's "replicationcontroller" loop (events from "replication-controller")."""

    name = "replication-controller"
    workers = 5  # --concurrent-rc-syncs
    api_version, kind, resource = "v1", "ReplicationController", "replicationcontrollers"

    @staticmethod
    def selector_of(rc: dict) -> dict | None:
        return {"matchLabels": dict(rc["spec"].get("selector") or {})}


def calculate_status(rs: dict, pods: list[dict], manage_error: Exception | None) -> dict:
    """The ReplicaSet status for these (claimed, active) pods, as calculateStatus does."""
    status = dict(rs.get("status") or {})
    template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = rs["spec"].get("minReadySeconds") or 0
    now = utc_now()
    fully_labeled = ready = available = 0
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully_labeled += 1
        if podcontrol.is_pod_ready(pod):
            ready += 1
            if podcontrol.is_pod_available(pod, min_ready, now):
                available += 1
    conditions = [c for c in status.get("conditions") or []]
    failure = next((c for c in conditions if c.get("type") == "ReplicaFailure"), None)
    if manage_error is not None and failure is None:
        diff = len(pods) - (rs["spec"].get("replicas") or 0)
        reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
        message = manage_error.message if isinstance(manage_error, errors.APIError) else str(manage_error)
        conditions.append({"type": "ReplicaFailure", "status": "True", "lastTransitionTime": rfc3339(now),
                           "reason": reason, "message": message})
    elif manage_error is None and failure is not None:
        conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
    status.update(replicas=len(pods), fullyLabeledReplicas=fully_labeled, readyReplicas=ready,
                  availableReplicas=available, conditions=conditions)
    return status


def _without_zeros(status: dict, keep: tuple[str, ...] = ()) -> dict:
    """The status as Go serializes it: omitempty fields with zero values left out."""
    return {k: v for k, v in status.items() if k in keep or v not in (0, None, [], {})}

