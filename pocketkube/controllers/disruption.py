"""The disruption controller (kube-controller-manager's "disruption-controller"): keeps each
PodDisruptionBudget's status, which the API server's eviction subresource (apiserver/eviction.py)
reads before it lets a pod go and `kubectl get pdb` prints as ALLOWED DISRUPTIONS.

- The pods of a budget: those of its namespace its selector matches (policy/v1: an empty
  selector matches every pod of the namespace, a missing one none).
- expectedPods and desiredHealthy: `minAvailable` as a number is desiredHealthy over the
  matching pods; a percentage, or `maxUnavailable`, scales the sum of the pods' controllers'
  replicas (ReplicationController, ReplicaSet or its Deployment, StatefulSet), rounded up.
  Pods without a controller are then left out, with an UnmanagedPods Warning; a controller of
  another kind fails the sync (CalculateExpectedPodCountFailed, no disruption allowed).
- currentHealthy: Ready pods not being deleted and not already evicted; disruptedPods (names
  the eviction subresource wrote) are dropped once the pod is being deleted or after 2 minutes.
- disruptionsAllowed = currentHealthy - desiredHealthy (0 when negative or nothing expected),
  the DisruptionAllowed condition (SufficientPods / InsufficientPods), observedGeneration.
"""

from __future__ import annotations

import datetime as _dt

from pocketkube.controllers import podcontrol
from pocketkube.controllers.base import Controller
from pocketkube.controllers.deployment import scaled_value
from pocketkube.core import errors
from pocketkube.core.disruption import budget_covers, pod_is_healthy, with_disruption_condition
from pocketkube.core.objects import deep_copy, parse_time, utc_now

API_VERSION, KIND = "policy/v1", "PodDisruptionBudget"
DELETION_TIMEOUT_SECONDS = 120  # an eviction the pod did not follow is forgotten after this
UNMANAGED_MESSAGE = (
    'Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a result, the '
    'status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these '
    'pods please set ".spec.minAvailable" field of the PDB to an integer value.')


class ScaleUnknown(Exception):
    """A pod's controller is of a kind whose scale this controller cannot read."""


class DisruptionController(Controller):
    name = "disruption-controller"
    workers = 1

    def setup(self) -> None:
        self.pdbs = self.informers.informer(API_VERSION, "poddisruptionbudgets")
        self.pods = self.informers.informer("v1", "pods")
        self.owners = {kind: self.informers.informer(api_version, resource)
                       for kind, (api_version, resource) in {
                           "ReplicationController": ("v1", "replicationcontrollers"),
                           "ReplicaSet": ("apps/v1", "replicasets"),
                           "Deployment": ("apps/v1", "deployments"),
                           "StatefulSet": ("apps/v1", "statefulsets")}.items()}
        self.pdbs.add_handlers(self.enqueue, lambda old, new: self.enqueue(new))
        self.pods.add_handlers(self._pod_changed, lambda old, new: (self._pod_changed(old), self._pod_changed(new)),
                               self._pod_changed)
        for kind in ("ReplicationController", "ReplicaSet", "Deployment", "StatefulSet"):
            self.owners[kind].add_handlers(self._owner_changed, lambda old, new: self._owner_changed(new),
                                           self._owner_changed)

    def _pod_changed(self, pod: dict) -> None:
        for pdb in self.pdbs.list(pod["metadata"].get("namespace", "")):
            if budget_covers(pdb, pod):
                self.enqueue(pdb)

    def _owner_changed(self, owner: dict) -> None:
        """A controller's replicas moved: the budgets scaled by it are recomputed."""
        for pdb in self.pdbs.list(owner["metadata"].get("namespace", "")):
            self.enqueue(pdb)

    async def sync(self, key: str) -> None:
        pdb = self.pdbs.get(key)
        if pdb is None or podcontrol.is_being_deleted(pdb):
            return
        now = utc_now()
        pods = self._pods_of(pdb)
        target = podcontrol.with_kind(pdb, API_VERSION, KIND)
        if not pods:
            self.recorder.event(target, "Normal", "NoPods", "No matching pods found")
        try:
            expected, desired, unmanaged = self._expected(pdb, pods)
        except ScaleUnknown as exc:
            message = f"Failed to calculate the number of expected pods: {exc}"
            self.recorder.event(target, "Warning", "CalculateExpectedPodCountFailed", message)
            await self._fail_safe(pdb, str(exc), now)
            return
        if unmanaged:
            self.recorder.event(target, "Warning", "UnmanagedPods", UNMANAGED_MESSAGE.format(
                selector=_selector_text(pdb)))
        disrupted, recheck = self._disrupted(pdb, pods, now)
        healthy = sum(1 for p in pods if not podcontrol.is_being_deleted(p)
                      and p["metadata"]["name"] not in disrupted and pod_is_healthy(p))
        allowed = healthy - desired if expected > 0 else 0
        status = deep_copy(pdb.get("status") or {})
        status.update(currentHealthy=healthy, desiredHealthy=desired, expectedPods=expected,
                      disruptionsAllowed=max(allowed, 0), observedGeneration=pdb["metadata"].get("generation", 1))
        if disrupted:
            status["disruptedPods"] = disrupted
        else:
            status.pop("disruptedPods", None)
        status["conditions"] = with_disruption_condition(status, pdb["metadata"].get("generation", 1), now)
        await self._write(pdb, status)
        if recheck is not None:
            self.queue.add_after(key, max((recheck - now).total_seconds(), 0.1))

    def _pods_of(self, pdb: dict) -> list[dict]:
        namespace = pdb["metadata"].get("namespace", "")
        return [p for p in self.pods.list(namespace) if budget_covers(pdb, p)]

    def _expected(self, pdb: dict, pods: list[dict]) -> tuple[int, int, list[str]]:
        """(expectedPods, desiredHealthy, unmanaged pod names), as getExpectedPodCount."""
        spec = pdb.get("spec") or {}
        max_unavailable, min_available = spec.get("maxUnavailable"), spec.get("minAvailable")
        if max_unavailable is not None:
            expected, unmanaged = self._expected_scale(pods)
            return expected, max(expected - scaled_value(max_unavailable, expected, True), 0), unmanaged
        if isinstance(min_available, int):
            return len(pods), min_available, []
        if min_available is not None:
            expected, unmanaged = self._expected_scale(pods)
            return expected, scaled_value(min_available, expected, True), unmanaged
        return len(pods), 0, []

    def _expected_scale(self, pods: list[dict]) -> tuple[int, list[str]]:
        scales: dict[str, int] = {}
        unmanaged: list[str] = []
        for pod in pods:
            ref = podcontrol.controller_of(pod)
            if ref is None:
                unmanaged.append(pod["metadata"]["name"])
                continue
            if ref.get("uid") in scales:
                continue
            found = self._scale_of(ref, pod["metadata"].get("namespace", ""))
            if found is None:
                raise ScaleUnknown(f'found no controllers for pod "{pod["metadata"]["name"]}"')
            scales[found[0]] = found[1]
        return sum(scales.values()), unmanaged

    def _scale_of(self, ref: dict, namespace: str) -> tuple[str, int] | None:
        """(uid, replicas) of a pod's controller; a ReplicaSet of a Deployment counts as the Deployment."""
        informer = self.owners.get(ref.get("kind", ""))
        if informer is None:
            return None
        owner = informer.get(f"{namespace}/{ref.get('name', '')}")
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return None
        if ref.get("kind") == "ReplicaSet":
            parent = podcontrol.controller_of(owner)
            if parent is not None and parent.get("kind") == "Deployment":
                deployment = self.owners["Deployment"].get(f"{namespace}/{parent.get('name', '')}")
                if deployment is not None and deployment["metadata"].get("uid") == parent.get("uid"):
                    return deployment["metadata"]["uid"], (deployment.get("spec") or {}).get("replicas", 1)
        return owner["metadata"]["uid"], (owner.get("spec") or {}).get("replicas", 1)

    @staticmethod
    def _disrupted(pdb: dict, pods: list[dict], now: _dt.datetime) -> tuple[dict, _dt.datetime | None]:
        """disruptedPods still pending: the evicted pod exists and is not yet being deleted, and
        the eviction is younger than the deletion timeout; plus when the oldest one expires."""
        recorded = (pdb.get("status") or {}).get("disruptedPods") or {}
        by_name = {p["metadata"]["name"]: p for p in pods}
        kept, recheck = {}, None
        for name, stamp in recorded.items():
            pod = by_name.get(name)
            when = parse_time(stamp)
            if pod is None or podcontrol.is_being_deleted(pod) or when is None:
                continue
            expires = when + _dt.timedelta(seconds=DELETION_TIMEOUT_SECONDS)
            if expires < now:
                continue
            kept[name] = stamp
            recheck = expires if recheck is None else min(recheck, expires)
        return kept, recheck

    async def _fail_safe(self, pdb: dict, why: str, now: _dt.datetime) -> None:
        """No disruption is allowed while the budget cannot be computed."""
        status = deep_copy(pdb.get("status") or {})
        generation = pdb["metadata"].get("generation", 1)
        status.update(disruptionsAllowed=0, observedGeneration=generation)
        status["conditions"] = with_disruption_condition(status, generation, now, "SyncFailed", why)
        await self._write(pdb, status)

    async def _write(self, pdb: dict, status: dict) -> None:
        if status == (pdb.get("status") or {}):
            return
        try:
            await self.client.update(API_VERSION, "poddisruptionbudgets", {**pdb, "status": status},
                                     pdb["metadata"]["namespace"], subresource="status")
        except errors.APIError as exc:
            if exc.code not in (404, 409):  # a newer budget comes through the informer and syncs again
                raise


def _selector_text(pdb: dict) -> str:
    selector = (pdb.get("spec") or {}).get("selector") or {}
    try:
        return str(podcontrol.label_selector(selector))
    except ValueError:
        return ""
