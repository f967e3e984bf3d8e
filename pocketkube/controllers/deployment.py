"""The Deployment controller (kube-controller-manager's "deployment-controller"): one
ReplicaSet per pod template, named `<deployment>-<pod-template-hash>`; RollingUpdate (maxSurge,
maxUnavailable) and Recreate rollouts; proportional scaling of a rollout in flight; pause;
revisions (deployment.kubernetes.io/revision, revision-history) and revisionHistoryLimit
cleanup; status and the Available / Progressing / ReplicaFailure conditions that `kubectl
rollout status` and `kubectl describe deploy` read; ScalingReplicaSet events.

The arithmetic (fenceposts, new ReplicaSet size, proportions) and the template hash are
plain functions at the bottom, as in Kubernetes' deployment/util.
"""

from __future__ import annotations

import datetime as _dt
import math

import orjson

from pocketkube.controllers import podcontrol
from pocketkube.controllers.base import Controller
from pocketkube.core import errors
from pocketkube.core.informer import object_key
from pocketkube.core.objects import deep_copy, parse_time, rfc3339, utc_now

API_VERSION = "apps/v1"
KIND = "Deployment"

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
DEPRECATED_ROLLBACK_TO = "deprecated.deployment.rollback.to"
# Annotations a Deployment does not copy to its ReplicaSets.
ANNOTATIONS_TO_SKIP = frozenset({LAST_APPLIED_ANNOTATION, REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION,
                                 DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, DEPRECATED_ROLLBACK_TO})
MAX_REVISION_HISTORY_CHARS = 2000
MAX_INT32 = 2**31 - 1

# Condition reasons (deployment/util).
NEW_RS_REASON = "NewReplicaSetCreated"
FOUND_NEW_RS_REASON = "FoundNewReplicaSet"
FAILED_RS_CREATE_REASON = "ReplicaSetCreateError"
RS_UPDATED_REASON = "ReplicaSetUpdated"
NEW_RS_AVAILABLE_REASON = "NewReplicaSetAvailable"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
PAUSED_REASON = "DeploymentPaused"
RESUMED_REASON = "DeploymentResumed"
MIN_AVAILABLE_REASON = "MinimumReplicasAvailable"
MIN_UNAVAILABLE_REASON = "MinimumReplicasUnavailable"


class DeploymentController(Controller):
    name = "deployment-controller"
    workers = 5  # --concurrent-deployment-syncs

    def setup(self) -> None:
        self.deployments = self.informers.informer(API_VERSION, "deployments")
        self.replicasets = self.informers.informer(API_VERSION, "replicasets")
        self.pods = self.informers.informer("v1", "pods")
        self.rs_index = podcontrol.OwnerIndex(self.replicasets)
        self.pod_index = podcontrol.OwnerIndex(self.pods)
        self.deployments.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.replicasets.add_handlers(self._rs_added, self._rs_updated, self._rs_deleted)
        self.pods.add_handlers(on_delete=self._pod_deleted)

    # ---- event handlers -------------------------------------------------------------------

    def _deployment_key(self, obj: dict, ref: dict | None) -> str | None:
        if ref is None or ref.get("kind") != KIND:
            return None
        key = f"{obj['metadata'].get('namespace', '')}/{ref.get('name', '')}"
        d = self.deployments.get(key)
        if d is None or d["metadata"].get("uid") != ref.get("uid"):
            return None
        return key

    def _matching_deployments(self, rs: dict) -> list[str]:
        labels = rs["metadata"].get("labels") or {}
        keys = []
        for d in self.deployments.list(rs["metadata"].get("namespace", "")):
            try:
                selector = podcontrol.label_selector(d["spec"].get("selector"))
            except ValueError:
                continue
            if not selector.empty and selector.matches(labels):
                keys.append(object_key(d))
        return keys

    def _rs_added(self, rs: dict) -> None:
        ref = podcontrol.controller_of(rs)
        if ref is not None:
            key = self._deployment_key(rs, ref)
            if key is not None:
                self.enqueue(key)
            return
        for key in self._matching_deployments(rs):
            self.enqueue(key)

    def _rs_updated(self, old: dict, new: dict) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        old_ref, new_ref = podcontrol.controller_of(old), podcontrol.controller_of(new)
        if old_ref is not None and (new_ref is None or old_ref.get("uid") != new_ref.get("uid")):
            key = self._deployment_key(old, old_ref)
            if key is not None:
                self.enqueue(key)
        if new_ref is not None:
            key = self._deployment_key(new, new_ref)
            if key is not None:
                self.enqueue(key)
            return
        if old["metadata"].get("labels") != new["metadata"].get("labels") or old_ref is not None:
            for key in self._matching_deployments(new):
                self.enqueue(key)

    def _rs_deleted(self, rs: dict) -> None:
        key = self._deployment_key(rs, podcontrol.controller_of(rs))
        if key is not None:
            self.enqueue(key)

    def _pod_deleted(self, pod: dict) -> None:
        """A Recreate rollout waits for the old pods to be gone: look again when one goes."""
        rs_ref = podcontrol.controller_of(pod)
        if rs_ref is None or rs_ref.get("kind") != "ReplicaSet":
            return
        rs = self.replicasets.get(f"{pod['metadata'].get('namespace', '')}/{rs_ref.get('name', '')}")
        if rs is None:
            return
        key = self._deployment_key(rs, podcontrol.controller_of(rs))
        d = self.deployments.get(key) if key else None
        if d is not None and (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            self.enqueue(key)

    # ---- sync -------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        cached = self.deployments.get(key)
        if cached is None:
            return
        d = deep_copy(cached)
        d.setdefault("apiVersion", API_VERSION)
        d.setdefault("kind", KIND)
        selector_spec = d["spec"].get("selector")
        selector = podcontrol.label_selector(selector_spec)
        if selector.empty:
            self.recorder.event(d, "Warning", "SelectorRequired",
                                "This deployment is selecting all pods. A non-empty selector is required.")
            if (d.get("status") or {}).get("observedGeneration", 0) < d["metadata"].get("generation", 0):
                d.setdefault("status", {})["observedGeneration"] = d["metadata"].get("generation", 0)
                await self._write_status(d, d["status"])
            return
        rs_list = await self._claim_replicasets(d, selector)
        if podcontrol.is_being_deleted(d):
            await self._sync_status_only(d, rs_list)
            return
        await self._check_paused_conditions(d)
        if d["spec"].get("paused"):
            await self._sync_scale(d, rs_list)
            return
        if await self._is_scaling_event(d, rs_list):
            await self._sync_scale(d, rs_list)
            return
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            await self._rollout_recreate(d, rs_list)
        else:
            await self._rollout_rolling(d, rs_list)

    async def _claim_replicasets(self, d: dict, selector) -> list[dict]:
        manager = podcontrol.RefManager(self.client, d, API_VERSION, KIND, "deployments", selector,
                                        API_VERSION, "replicasets")
        return [deep_copy(rs) for rs in await manager.claim(self.rs_index.candidates(d))]

    # ---- writes ------------------------------------------------------------------------------

    async def _write_status(self, d: dict, status: dict) -> None:
        """UpdateStatus (which also carries metadata such as the revision annotation); `d`
        becomes the object the server returned."""
        body = {**d, "status": _status_without_zeros(status)}
        updated = await self.client.update(API_VERSION, "deployments", body, d["metadata"]["namespace"],
                                           subresource="status")
        d.clear()
        d.update(updated)
        d.setdefault("apiVersion", API_VERSION)
        d.setdefault("kind", KIND)

    async def _update_rs(self, rs_list: list[dict], rs: dict) -> dict:
        updated = await self.client.update(API_VERSION, "replicasets", rs, rs["metadata"]["namespace"])
        for i, existing in enumerate(rs_list):
            if existing["metadata"]["uid"] == updated["metadata"]["uid"]:
                rs_list[i] = updated
        return updated

    async def _scale_rs(self, d: dict, rs_list: list[dict], rs: dict, new_scale: int,
                        operation: str | None = None) -> tuple[bool, dict]:
        """scaleReplicaSet: set replicas and the desired/max-replicas annotations; a
        ScalingReplicaSet event when the size changed. Returns (scaled, the RS now)."""
        old_scale = rs["spec"].get("replicas") or 0
        replicas = d["spec"].get("replicas") or 0
        max_replicas = replicas + max_surge(d)
        size_changes = old_scale != new_scale
        if not size_changes and not replicas_annotations_need_update(rs, replicas, max_replicas):
            return False, rs
        copy = deep_copy(rs)
        copy["spec"]["replicas"] = new_scale
        set_replicas_annotations(copy, replicas, max_replicas)
        updated = await self._update_rs(rs_list, copy)
        if size_changes:
            direction = operation or ("up" if old_scale < new_scale else "down")
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled {direction} replica set {updated['metadata']['name']} "
                                f"from {old_scale} to {new_scale}")
        return size_changes, updated

    async def _scale_rs_and_record(self, d: dict, rs_list: list[dict], rs: dict, new_scale: int) -> tuple[bool, dict]:
        """scaleReplicaSetAndRecordEvent: nothing to do when the size is already right."""
        if (rs["spec"].get("replicas") or 0) == new_scale:
            return False, rs
        return await self._scale_rs(d, rs_list, rs, new_scale)

    # ---- new and old ReplicaSets ------------------------------------------------------------

    async def _all_replicasets(self, d: dict, rs_list: list[dict], create: bool) -> tuple[dict | None, list[dict]]:
        """getAllReplicaSetsAndSyncRevision: (new RS or None, all old RSes)."""
        new_rs = find_new_replicaset(d, rs_list)
        new_uid = new_rs["metadata"]["uid"] if new_rs else None
        old = [rs for rs in rs_list if rs["metadata"]["uid"] != new_uid]
        return await self._new_replicaset(d, rs_list, old, new_rs, create), old

    async def _new_replicaset(self, d: dict, rs_list: list[dict], old: list[dict], existing: dict | None,
                              create: bool) -> dict | None:
        new_revision = str(max_revision(old) + 1)
        if existing is not None:
            copy = deep_copy(existing)
            changed = set_new_replicaset_annotations(d, copy, new_revision, exists=True)
            if changed or (copy["spec"].get("minReadySeconds") or 0) != (d["spec"].get("minReadySeconds") or 0):
                copy["spec"]["minReadySeconds"] = d["spec"].get("minReadySeconds") or 0
                existing = await self._update_rs(rs_list, copy)
            needs_update = set_deployment_revision(d, existing["metadata"].get("annotations", {}).get(
                REVISION_ANNOTATION, ""))
            status = d.setdefault("status", {})
            if has_progress_deadline(d) and get_condition(status, "Progressing") is None:
                set_condition(status, new_condition("Progressing", "True", FOUND_NEW_RS_REASON,
                                                    f'Found new replica set "{existing["metadata"]["name"]}"'))
                needs_update = True
            if needs_update:
                await self._write_status(d, status)
            return existing
        if not create:
            return None
        return await self._create_new_replicaset(d, rs_list, old, new_revision)

    async def _create_new_replicaset(self, d: dict, rs_list: list[dict], old: list[dict],
                                     new_revision: str) -> dict | None:
        status = d.setdefault("status", {})
        template = deep_copy(d["spec"]["template"])
        pod_hash = compute_hash(template, status.get("collisionCount"))
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        labels[POD_TEMPLATE_HASH_LABEL] = pod_hash
        template.setdefault("metadata", {})["labels"] = labels
        selector = deep_copy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH_LABEL] = pod_hash
        name = f"{d['metadata']['name']}-{pod_hash}"
        new_rs = {
            "apiVersion": API_VERSION, "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": d["metadata"]["namespace"], "labels": dict(labels),
                         "ownerReferences": [podcontrol.controller_ref(d, API_VERSION, KIND)]},
            "spec": {"replicas": 0, "minReadySeconds": d["spec"].get("minReadySeconds") or 0,
                     "selector": selector, "template": template},
        }
        replicas = new_rs_new_replicas(d, old + [new_rs], new_rs)
        new_rs["spec"]["replicas"] = replicas
        set_new_replicaset_annotations(d, new_rs, new_revision, exists=False)
        already_exists = False
        try:
            created = await self.client.create(API_VERSION, "replicasets", new_rs, d["metadata"]["namespace"])
        except errors.APIError as exc:
            if exc.code == 409 and exc.reason == "AlreadyExists":
                created = await self._existing_or_collision(d, name)
                if created is None:
                    raise
                already_exists = True
            elif exc.code == 403 and "because it is being terminated" in exc.message:
                raise
            else:
                message = f'Failed to create new replica set "{name}": {exc.message}'
                if has_progress_deadline(d):
                    set_condition(status, new_condition("Progressing", "False", FAILED_RS_CREATE_REASON, message))
                    try:
                        await self._write_status(d, status)
                    except errors.APIError:
                        pass
                self.recorder.event(d, "Warning", FAILED_RS_CREATE_REASON, message)
                raise
        if not already_exists:
            rs_list.append(created)
            if replicas > 0:
                self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                    f"Scaled up replica set {created['metadata']['name']} from 0 to {replicas}")
        needs_update = set_deployment_revision(d, new_revision)
        if not already_exists and has_progress_deadline(d):
            set_condition(status, new_condition("Progressing", "True", NEW_RS_REASON,
                                                f'Created new replica set "{created["metadata"]["name"]}"'))
            needs_update = True
        if needs_update:
            await self._write_status(d, status)
        return created

    async def _existing_or_collision(self, d: dict, name: str) -> dict | None:
        """The RS that already has the new name: ours (return it) or a hash collision (bump
        status.collisionCount, return None so the sync retries with another name)."""
        try:
            rs = await self.client.get(API_VERSION, "replicasets", name, d["metadata"]["namespace"])
        except errors.APIError as exc:
            if exc.code == 404:
                return None
            raise
        ref = podcontrol.controller_of(rs)
        if ref is not None and ref.get("uid") == d["metadata"]["uid"] and \
                templates_equal_ignoring_hash(d["spec"]["template"], rs["spec"].get("template") or {}):
            return rs
        status = d.setdefault("status", {})
        status["collisionCount"] = (status.get("collisionCount") or 0) + 1
        try:
            await self._write_status(d, status)
        except errors.APIError:
            pass
        return None

    # ---- strategies ------------------------------------------------------------------------------

    async def _rollout_rolling(self, d: dict, rs_list: list[dict]) -> None:
        new_rs, old = await self._all_replicasets(d, rs_list, create=True)
        all_rs = old + [new_rs]
        if await self._reconcile_new_rs(d, rs_list, new_rs):
            await self._sync_rollout_status(d, _current(rs_list, all_rs), _current_one(rs_list, new_rs))
            return
        new_rs = _current_one(rs_list, new_rs)
        if await self._reconcile_old_rses(d, rs_list, _current(rs_list, old), new_rs):
            await self._sync_rollout_status(d, _current(rs_list, all_rs), _current_one(rs_list, new_rs))
            return
        if deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, _current(rs_list, old))
        await self._sync_rollout_status(d, _current(rs_list, all_rs), _current_one(rs_list, new_rs))

    async def _reconcile_new_rs(self, d: dict, rs_list: list[dict], new_rs: dict) -> bool:
        replicas = d["spec"].get("replicas") or 0
        current = new_rs["spec"].get("replicas") or 0
        if current == replicas:
            return False
        if current > replicas:
            return (await self._scale_rs_and_record(d, rs_list, new_rs, replicas))[0]
        target = new_rs_new_replicas(d, rs_list, new_rs)
        return (await self._scale_rs_and_record(d, rs_list, new_rs, target))[0]

    async def _reconcile_old_rses(self, d: dict, rs_list: list[dict], old: list[dict], new_rs: dict) -> bool:
        old_pods = replica_count(old)
        if old_pods == 0:
            return False
        all_pods = replica_count(old + [new_rs])
        min_available = (d["spec"].get("replicas") or 0) - max_unavailable(d)
        new_unavailable = (new_rs["spec"].get("replicas") or 0) - (new_rs.get("status") or {}).get(
            "availableReplicas", 0)
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = await self._cleanup_unhealthy(d, rs_list, old, max_scaled_down)
        scaled = await self._scale_down_old_for_rolling(d, rs_list, _current(rs_list, old), new_rs)
        return cleaned + scaled > 0

    async def _cleanup_unhealthy(self, d: dict, rs_list: list[dict], old: list[dict], max_cleanup: int) -> int:
        total = 0
        for rs in sorted(old, key=_by_creation):
            if total >= max_cleanup:
                break
            replicas = rs["spec"].get("replicas") or 0
            available = (rs.get("status") or {}).get("availableReplicas", 0)
            if replicas == 0 or replicas == available:
                continue
            count = min(max_cleanup - total, replicas - available)
            await self._scale_rs_and_record(d, rs_list, rs, replicas - count)
            total += count
        return total

    async def _scale_down_old_for_rolling(self, d: dict, rs_list: list[dict], old: list[dict], new_rs: dict) -> int:
        min_available = (d["spec"].get("replicas") or 0) - max_unavailable(d)
        available = available_count(old + [new_rs])
        if available <= min_available:
            return 0
        total, budget = 0, available - min_available
        for rs in sorted(old, key=_by_creation):
            if total >= budget:
                break
            replicas = rs["spec"].get("replicas") or 0
            if replicas == 0:
                continue
            count = min(replicas, budget - total)
            await self._scale_rs_and_record(d, rs_list, rs, replicas - count)
            total += count
        return total

    async def _rollout_recreate(self, d: dict, rs_list: list[dict]) -> None:
        new_rs, old = await self._all_replicasets(d, rs_list, create=False)
        scaled_down = False
        for rs in [rs for rs in old if (rs["spec"].get("replicas") or 0) > 0]:
            scaled, _ = await self._scale_rs_and_record(d, rs_list, rs, 0)
            scaled_down = scaled_down or scaled
        if scaled_down or self._old_pods_running(new_rs, _current(rs_list, old)):
            await self._sync_rollout_status(d, _current(rs_list, old + ([new_rs] if new_rs else [])), new_rs)
            return
        if new_rs is None:
            new_rs, old = await self._all_replicasets(d, rs_list, create=True)
        await self._scale_rs_and_record(d, rs_list, new_rs, d["spec"].get("replicas") or 0)
        if deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, _current(rs_list, old))
        await self._sync_rollout_status(d, _current(rs_list, old + [new_rs]), _current_one(rs_list, new_rs))

    def _old_pods_running(self, new_rs: dict | None, old: list[dict]) -> bool:
        if sum((rs.get("status") or {}).get("replicas", 0) for rs in old) > 0:
            return True
        new_uid = new_rs["metadata"]["uid"] if new_rs else None
        for rs in old:
            if rs["metadata"]["uid"] == new_uid:
                continue
            for pod in self.pod_index.owned(rs["metadata"]["uid"]):
                if (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded"):
                    return True
        return False

    # ---- scaling and pausing ----------------------------------------------------------------------

    async def _is_scaling_event(self, d: dict, rs_list: list[dict]) -> bool:
        new_rs, old = await self._all_replicasets(d, rs_list, create=False)
        replicas = d["spec"].get("replicas") or 0
        for rs in active_replicasets(_current(rs_list, old + ([new_rs] if new_rs else []))):
            desired = _int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)
            if desired is not None and desired != replicas:
                return True
        return False

    async def _sync_scale(self, d: dict, rs_list: list[dict]) -> None:
        """sync: scale the ReplicaSets for a scaling event or a paused deployment."""
        new_rs, old = await self._all_replicasets(d, rs_list, create=False)
        await self._scale(d, rs_list, new_rs, old)
        old = _current(rs_list, old)
        if d["spec"].get("paused"):
            await self._cleanup(d, old)
        new_rs = _current_one(rs_list, new_rs) if new_rs else None
        await self._sync_status(d, old + ([new_rs] if new_rs else []), new_rs)

    async def _scale(self, d: dict, rs_list: list[dict], new_rs: dict | None, old: list[dict]) -> None:
        replicas = d["spec"].get("replicas") or 0
        target = find_active_or_latest(new_rs, old)
        if target is not None:
            if (target["spec"].get("replicas") or 0) != replicas:
                await self._scale_rs_and_record(d, rs_list, target, replicas)
            return
        if is_saturated(d, new_rs):
            for rs in active_replicasets(old):
                await self._scale_rs_and_record(d, rs_list, rs, 0)
            return
        if not is_rolling_update(d):
            return
        for rs, size, operation in proportional_sizes(d, active_replicasets(old + ([new_rs] if new_rs else []))):
            await self._scale_rs(d, rs_list, _current_one(rs_list, rs), size, operation)

    async def _check_paused_conditions(self, d: dict) -> None:
        if not has_progress_deadline(d):
            return
        status = d.setdefault("status", {})
        condition = get_condition(status, "Progressing")
        if condition is not None and condition.get("reason") == TIMED_OUT_REASON:
            return
        paused_now = condition is not None and condition.get("reason") == PAUSED_REASON
        if d["spec"].get("paused") and not paused_now:
            set_condition(status, new_condition("Progressing", "Unknown", PAUSED_REASON, "Deployment is paused"))
        elif not d["spec"].get("paused") and paused_now:
            set_condition(status, new_condition("Progressing", "Unknown", RESUMED_REASON, "Deployment is resumed"))
        else:
            return
        await self._write_status(d, status)

    async def _cleanup(self, d: dict, old: list[dict]) -> None:
        """cleanupDeployment: delete the oldest empty ReplicaSets beyond revisionHistoryLimit."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in old if not podcontrol.is_being_deleted(rs)]
        surplus = len(alive) - limit
        if surplus <= 0:
            return
        for rs in sorted(alive, key=lambda r: (revision_of(r), _by_creation(r)))[:surplus]:
            status = rs.get("status") or {}
            if status.get("replicas", 0) or rs["spec"].get("replicas") or \
                    rs["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
                continue
            try:
                await self.client.delete(API_VERSION, "replicasets", rs["metadata"]["name"],
                                         rs["metadata"]["namespace"])
            except errors.APIError as exc:
                if exc.code != 404:
                    raise

    # ---- status ------------------------------------------------------------------------------------

    async def _sync_status_only(self, d: dict, rs_list: list[dict]) -> None:
        new_rs, old = await self._all_replicasets(d, rs_list, create=False)
        await self._sync_status(d, old + ([new_rs] if new_rs else []), new_rs)

    async def _sync_status(self, d: dict, all_rs: list[dict], new_rs: dict | None) -> None:
        status = calculate_status(all_rs, new_rs, d)
        if _status_without_zeros(status) != _status_without_zeros(d.get("status") or {}):
            await self._write_status(d, status)

    async def _sync_rollout_status(self, d: dict, all_rs: list[dict], new_rs: dict | None) -> None:
        status = rollout_status(d, all_rs, new_rs, utc_now())
        if _status_without_zeros(status) == _status_without_zeros(d.get("status") or {}):
            self._requeue_if_stuck(d, status)
            return
        await self._write_status(d, status)

    def _requeue_if_stuck(self, d: dict, status: dict) -> None:
        """requeueStuckDeployment: look again when the progress deadline passes."""
        condition = get_condition(d.get("status") or {}, "Progressing")
        if not has_progress_deadline(d) or condition is None:
            return
        if deployment_complete(d, status) or condition.get("reason") == TIMED_OUT_REASON:
            return
        since = parse_time(condition.get("lastUpdateTime")) or utc_now()
        after = (since + _dt.timedelta(seconds=d["spec"]["progressDeadlineSeconds"]) - utc_now()).total_seconds()
        self.queue.add_after(object_key(d), max(after, 0) + 1)


# ======================================================================================
# Pure logic (deployment/util)
# ======================================================================================


def _int_annotation(obj: dict, name: str) -> int | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _by_creation(rs: dict) -> tuple:
    return (rs["metadata"].get("creationTimestamp") or "", rs["metadata"].get("name", ""))


def _current(rs_list: list[dict], subset: list[dict | None]) -> list[dict]:
    """The latest copies (from rs_list) of the ReplicaSets in `subset`."""
    latest = {rs["metadata"].get("uid"): rs for rs in rs_list}
    return [latest.get(rs["metadata"].get("uid"), rs) for rs in subset if rs is not None]


def _current_one(rs_list: list[dict], rs: dict) -> dict:
    return _current(rs_list, [rs])[0]


def scaled_value(value, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        raise ValueError("invalid value for IntOrString: invalid type: string is not a percentage")
    percent = int(text[:-1])
    scaled = percent * total / 100
    return int(math.ceil(scaled)) if round_up else int(math.floor(scaled))


def resolve_fenceposts(surge_value, unavailable_value, desired: int) -> tuple[int, int]:
    """ResolveFenceposts: maxSurge rounds up, maxUnavailable down; both 0 makes unavailable 1."""
    surge = scaled_value(surge_value if surge_value is not None else 0, desired, True)
    unavailable = scaled_value(unavailable_value if unavailable_value is not None else 0, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_rolling_update(d: dict) -> bool:
    return (d["spec"].get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def _rolling(d: dict) -> dict:
    return (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}


def max_unavailable(d: dict) -> int:
    replicas = d["spec"].get("replicas") or 0
    if not is_rolling_update(d) or replicas == 0:
        return 0
    _, unavailable = resolve_fenceposts(_rolling(d).get("maxSurge"), _rolling(d).get("maxUnavailable"), replicas)
    return min(unavailable, replicas)


def max_surge(d: dict) -> int:
    if not is_rolling_update(d):
        return 0
    surge, _ = resolve_fenceposts(_rolling(d).get("maxSurge"), _rolling(d).get("maxUnavailable"),
                                  d["spec"].get("replicas") or 0)
    return surge


def replica_count(rses: list[dict]) -> int:
    return sum(rs["spec"].get("replicas") or 0 for rs in rses if rs is not None)


def _status_sum(rses: list[dict], field: str) -> int:
    return sum((rs.get("status") or {}).get(field, 0) or 0 for rs in rses if rs is not None)


def available_count(rses: list[dict]) -> int:
    return _status_sum(rses, "availableReplicas")


def active_replicasets(rses: list[dict]) -> list[dict]:
    return [rs for rs in rses if rs is not None and (rs["spec"].get("replicas") or 0) > 0]


def new_rs_new_replicas(d: dict, all_rs: list[dict], new_rs: dict) -> int:
    """NewRSNewReplicas: how big the new ReplicaSet may be now."""
    replicas = d["spec"].get("replicas") or 0
    if not is_rolling_update(d):
        return replicas
    current_pods = replica_count(all_rs)
    max_total = replicas + max_surge(d)
    new_size = new_rs["spec"].get("replicas") or 0
    if current_pods >= max_total:
        return new_size
    return new_size + min(max_total - current_pods, replicas - new_size)


def is_saturated(d: dict, rs: dict | None) -> bool:
    if rs is None:
        return False
    desired = _int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)
    replicas = d["spec"].get("replicas") or 0
    return desired is not None and (rs["spec"].get("replicas") or 0) == replicas and desired == replicas and \
        (rs.get("status") or {}).get("availableReplicas", 0) == replicas


def find_active_or_latest(new_rs: dict | None, old: list[dict]) -> dict | None:
    """FindActiveOrLatest: the only active ReplicaSet, or the newest one when none is active."""
    if new_rs is None and not old:
        return None
    newest_first = sorted(old, key=_by_creation, reverse=True)
    active = active_replicasets(newest_first + [new_rs])
    if not active:
        return new_rs if new_rs is not None else newest_first[0]
    if len(active) == 1:
        return active[0]
    return None


def _round_half_away(value: float) -> int:
    """integer.RoundToInt32."""
    return int(value - 0.5) if value < 0 else int(value + 0.5)


def replicaset_fraction(rs: dict, d: dict) -> int:
    """getReplicaSetFraction: this ReplicaSet's share of a scaling of the deployment."""
    replicas = d["spec"].get("replicas") or 0
    rs_replicas = rs["spec"].get("replicas") or 0
    if replicas == 0:
        return -rs_replicas
    max_replicas = replicas + max_surge(d)
    before = _int_annotation(rs, MAX_REPLICAS_ANNOTATION)
    if not before:
        before = (d.get("status") or {}).get("replicas", 0)
        if before == 0:
            return 0
    return _round_half_away(rs_replicas * max_replicas / before) - rs_replicas


def replicaset_proportion(rs: dict, d: dict, to_add: int, added: int) -> int:
    """GetReplicaSetProportion."""
    if (rs["spec"].get("replicas") or 0) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replicaset_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_sizes(d: dict, active: list[dict]) -> list[tuple[dict, int, str]]:
    """The proportional scaling of a rollout in flight: (ReplicaSet, new size, "up"|"down"|"")
    for every active ReplicaSet, leftovers to the first (largest) one."""
    replicas = d["spec"].get("replicas") or 0
    allowed = replicas + max_surge(d) if replicas > 0 else 0
    to_add = allowed - replica_count(active)
    operation = ""
    if to_add > 0:
        # ReplicaSetsBySizeNewer: larger first; equal sizes newer first (then names descending).
        by_name = sorted(active, key=lambda rs: rs["metadata"].get("name", ""), reverse=True)
        active = sorted(by_name, key=lambda rs: (-(rs["spec"].get("replicas") or 0), _negated_time(rs)))
        operation = "up"
    elif to_add < 0:
        active = sorted(active, key=lambda rs: (-(rs["spec"].get("replicas") or 0),
                                                rs["metadata"].get("creationTimestamp") or "",
                                                rs["metadata"].get("name", "")))
        operation = "down"
    sizes: list[int] = []
    added = 0
    for rs in active:
        current = rs["spec"].get("replicas") or 0
        if to_add != 0:
            share = replicaset_proportion(rs, d, to_add, added)
            sizes.append(current + share)
            added += share
        else:
            sizes.append(current)
    if active and to_add != 0:
        sizes[0] = max(sizes[0] + to_add - added, 0)
    return [(rs, size, operation) for rs, size in zip(active, sizes)]


def _negated_time(rs: dict) -> float:
    created = parse_time(rs["metadata"].get("creationTimestamp"))
    return -created.timestamp() if created else 0.0


def replicas_annotations_need_update(rs: dict, desired: int, max_replicas: int) -> bool:
    annotations = rs["metadata"].get("annotations") or {}
    return annotations.get(DESIRED_REPLICAS_ANNOTATION) != str(desired) or \
        annotations.get(MAX_REPLICAS_ANNOTATION) != str(max_replicas)


def set_replicas_annotations(rs: dict, desired: int, max_replicas: int) -> bool:
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for name, value in ((DESIRED_REPLICAS_ANNOTATION, str(desired)), (MAX_REPLICAS_ANNOTATION, str(max_replicas))):
        if annotations.get(name) != value:
            annotations[name] = value
            changed = True
    return changed


def revision_of(rs: dict) -> int:
    return _int_annotation(rs, REVISION_ANNOTATION) or 0


def max_revision(rses: list[dict]) -> int:
    return max((revision_of(rs) for rs in rses), default=0)


def set_deployment_revision(d: dict, revision: str) -> bool:
    annotations = d["metadata"].setdefault("annotations", {})
    if annotations.get(REVISION_ANNOTATION) != revision:
        annotations[REVISION_ANNOTATION] = revision
        return True
    return False


def set_new_replicaset_annotations(d: dict, rs: dict, new_revision: str, exists: bool) -> bool:
    """SetNewReplicaSetAnnotations: copy the deployment's annotations, raise the revision
    (keeping the old one in revision-history on a rollback), and for a new ReplicaSet the
    desired/max-replicas annotations. True when something changed."""
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in ((d["metadata"].get("annotations")) or {}).items():
        if key in ANNOTATIONS_TO_SKIP or annotations.get(key) == value:
            continue
        annotations[key] = value
        changed = True
    old_revision = annotations.get(REVISION_ANNOTATION)
    try:
        old_number = int(old_revision) if old_revision else 0
    except ValueError:
        return False
    new_number = int(new_revision)
    if old_number < new_number:
        annotations[REVISION_ANNOTATION] = new_revision
        changed = True
        if old_revision is not None:
            _append_revision_history(annotations, old_revision)
    if not exists:
        replicas = d["spec"].get("replicas") or 0
        if set_replicas_annotations(rs, replicas, replicas + max_surge(d)):
            changed = True
    return changed


def _append_revision_history(annotations: dict, old_revision: str) -> None:
    history = annotations.get(REVISION_HISTORY_ANNOTATION, "")
    if not history:
        annotations[REVISION_HISTORY_ANNOTATION] = old_revision
        return
    entries = history.split(",")
    total = len(history) + len(old_revision) + 1
    start = 0
    while total > MAX_REVISION_HISTORY_CHARS and start < len(entries):
        total -= len(entries[start]) + 1
        start += 1
    if total <= MAX_REVISION_HISTORY_CHARS:
        annotations[REVISION_HISTORY_ANNOTATION] = ",".join(entries[start:] + [old_revision])


# ---- templates and the pod-template-hash ---------------------------------------------------------

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(text: str) -> str:
    """rand.SafeEncodeString: each character mapped into an alphabet without vowels (so a
    hash never spells a word) and without look-alikes (0/o, 1/l)."""
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in text)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def _semantic(value):
    """The template as Kubernetes' semantic equality sees it: unset, null, empty maps and
    empty lists are all the zero value."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _semantic(v)
            if v is None or v == {} or v == [] or v == "":
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        return [_semantic(v) for v in value]
    return value


def compute_hash(template: dict, collision_count: int | None = None) -> str:
    """controller.ComputeHash: FNV-32a of the template (here: its canonical JSON, sorted keys,
    zero values left out) followed, when set, by the collision count as 8 little-endian
    bytes; the decimal sum rendered with SafeEncodeString."""
    data = orjson.dumps(_semantic(template), option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        data += (collision_count & 0xFFFFFFFF).to_bytes(4, "little") + b"\0\0\0\0"
    return safe_encode(str(fnv32a(data)))


def templates_equal_ignoring_hash(a: dict, b: dict) -> bool:
    """EqualIgnoreHash: the two templates are the same but for the pod-template-hash label."""
    def without_hash(t: dict) -> dict:
        t = _semantic(t)
        labels = (t.get("metadata") or {}).get("labels")
        if labels and POD_TEMPLATE_HASH_LABEL in labels:
            labels = {k: v for k, v in labels.items() if k != POD_TEMPLATE_HASH_LABEL}
            t = {**t, "metadata": {**t["metadata"], "labels": labels}}
            if not labels:
                del t["metadata"]["labels"]
            if not t["metadata"]:
                del t["metadata"]
        return t

    return without_hash(a) == without_hash(b)


def find_new_replicaset(d: dict, rs_list: list[dict]) -> dict | None:
    """FindNewReplicaSet: the oldest ReplicaSet whose template is the deployment's."""
    for rs in sorted(rs_list, key=_by_creation):
        if templates_equal_ignoring_hash(rs["spec"].get("template") or {}, d["spec"].get("template") or {}):
            return rs
    return None


# ---- conditions and status -----------------------------------------------------------------------


def new_condition(type_: str, status: str, reason: str, message: str, now: _dt.datetime | None = None) -> dict:
    stamp = rfc3339(now)
    return {"type": type_, "status": status, "lastUpdateTime": stamp, "lastTransitionTime": stamp,
            "reason": reason, "message": message}


def get_condition(status: dict, type_: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def set_condition(status: dict, condition: dict) -> None:
    """SetDeploymentCondition: same status and reason → unchanged; same status → keep the
    transition time; the condition moves to the end of the list."""
    current = get_condition(status, condition["type"])
    if current is not None and current.get("status") == condition["status"] and \
            current.get("reason") == condition["reason"]:
        return
    if current is not None and current.get("status") == condition["status"]:
        condition["lastTransitionTime"] = current.get("lastTransitionTime")
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != condition["type"]]
    status["conditions"].append(condition)


def remove_condition(status: dict, type_: str) -> None:
    if status.get("conditions"):
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != type_]


def has_progress_deadline(d: dict) -> bool:
    deadline = d["spec"].get("progressDeadlineSeconds")
    return deadline is not None and deadline != MAX_INT32


def calculate_status(all_rs: list[dict], new_rs: dict | None, d: dict, now: _dt.datetime | None = None) -> dict:
    """calculateStatus: counts from the ReplicaSets and the Available condition."""
    available = available_count(all_rs)
    unavailable = max(replica_count(all_rs) - available, 0)
    current = d.get("status") or {}
    status = {
        "observedGeneration": d["metadata"].get("generation", 0),
        "replicas": _status_sum(all_rs, "replicas"),
        "updatedReplicas": _status_sum([new_rs] if new_rs else [], "replicas"),
        "readyReplicas": _status_sum(all_rs, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": unavailable,
        "conditions": [dict(c) for c in current.get("conditions") or []],
    }
    if current.get("collisionCount") is not None:
        status["collisionCount"] = current["collisionCount"]
    if available >= (d["spec"].get("replicas") or 0) - max_unavailable(d):
        set_condition(status, new_condition("Available", "True", MIN_AVAILABLE_REASON,
                                            "Deployment has minimum availability.", now))
    else:
        set_condition(status, new_condition("Available", "False", MIN_UNAVAILABLE_REASON,
                                            "Deployment does not have minimum availability.", now))
    return status


def deployment_complete(d: dict, status: dict) -> bool:
    replicas = d["spec"].get("replicas") or 0
    return status.get("updatedReplicas", 0) == replicas and status.get("replicas", 0) == replicas and \
        status.get("availableReplicas", 0) == replicas and \
        status.get("observedGeneration", 0) >= d["metadata"].get("generation", 0)


def deployment_progressing(d: dict, status: dict) -> bool:
    old = d.get("status") or {}
    old_old_replicas = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old_replicas = status.get("replicas", 0) - status.get("updatedReplicas", 0)
    return status.get("updatedReplicas", 0) > old.get("updatedReplicas", 0) or \
        new_old_replicas < old_old_replicas or \
        status.get("readyReplicas", 0) > old.get("readyReplicas", 0) or \
        status.get("availableReplicas", 0) > old.get("availableReplicas", 0)


def deployment_timed_out(d: dict, status: dict, now: _dt.datetime) -> bool:
    if not has_progress_deadline(d):
        return False
    condition = get_condition(status, "Progressing")
    if condition is None or condition.get("reason") == NEW_RS_AVAILABLE_REASON:
        return False
    if condition.get("reason") == TIMED_OUT_REASON:
        return True
    since = parse_time(condition.get("lastUpdateTime"))
    return since is not None and since + _dt.timedelta(seconds=d["spec"]["progressDeadlineSeconds"]) < now


def rollout_status(d: dict, all_rs: list[dict], new_rs: dict | None, now: _dt.datetime) -> dict:
    """syncRolloutStatus's new status: counts, Available, and Progressing (complete,
    progressing, or past its deadline), plus the ReplicaFailure of a ReplicaSet."""
    status = calculate_status(all_rs, new_rs, d, now)
    if not has_progress_deadline(d):
        remove_condition(status, "Progressing")
    current = get_condition(d.get("status") or {}, "Progressing")
    complete = status["replicas"] == status["updatedReplicas"] and current is not None and \
        current.get("reason") == NEW_RS_AVAILABLE_REASON
    if has_progress_deadline(d) and not complete:
        subject = f'ReplicaSet "{new_rs["metadata"]["name"]}"' if new_rs else f'Deployment "{d["metadata"]["name"]}"'
        if deployment_complete(d, status):
            set_condition(status, new_condition("Progressing", "True", NEW_RS_AVAILABLE_REASON,
                                                f"{subject} has successfully progressed.", now))
        elif deployment_progressing(d, status):
            condition = new_condition("Progressing", "True", RS_UPDATED_REASON, f"{subject} is progressing.", now)
            if current is not None:
                if current.get("status") == "True":
                    condition["lastTransitionTime"] = current.get("lastTransitionTime")
                remove_condition(status, "Progressing")
            set_condition(status, condition)
        elif deployment_timed_out(d, status, now):
            set_condition(status, new_condition("Progressing", "False", TIMED_OUT_REASON,
                                                f"{subject} has timed out progressing.", now))
    failure = _replica_failure(all_rs, new_rs)
    if failure is not None:
        set_condition(status, failure)
    else:
        remove_condition(status, "ReplicaFailure")
    return status


def _replica_failure(all_rs: list[dict], new_rs: dict | None) -> dict | None:
    """getReplicaFailures: the new ReplicaSet's ReplicaFailure condition first, else an old one's."""
    candidates = ([new_rs] if new_rs else []) + [rs for rs in all_rs if rs is not new_rs]
    for rs in candidates:
        for c in (rs.get("status") or {}).get("conditions") or []:
            if c.get("type") == "ReplicaFailure":
                stamp = c.get("lastTransitionTime")
                return {"type": "ReplicaFailure", "status": c.get("status"), "lastUpdateTime": stamp,
                        "lastTransitionTime": stamp, "reason": c.get("reason"), "message": c.get("message")}
    return None


def _status_without_zeros(status: dict) -> dict:
    """DeploymentStatus as Go serializes it: every field is omitempty."""
    return {k: v for k, v in status.items() if v not in (0, None, [], {})}
