"""The namespace controller (kube-controller-manager's "namespace-controller").

Owns the end of a namespace's life: once the API server has marked it Terminating
(deletionTimestamp set), every namespaced object in it is deleted (each resource the API
discovery lists with the list and delete verbs), the namespace's deletion conditions are
kept as Kubernetes keeps them (NamespaceDeletionDiscoveryFailure, ...GroupVersionParsing...,
...ContentFailure, NamespaceContentRemaining, NamespaceFinalizersRemaining), and when
nothing is left the `kubernetes` finalizer is removed through PUT .../namespaces/x/finalize,
after which the API server deletes the namespace.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pocketkube.controllers.base import Controller
from pocketkube.core import errors
from pocketkube.core.objects import deep_copy, parse_time, rfc3339, utc_now

FINALIZER = "kubernetes"
# A guess at how long content with finalizers takes to go (finalizerEstimateSeconds).
FINALIZER_ESTIMATE_SECONDS = 15

CONDITION_TYPES = ("NamespaceDeletionDiscoveryFailure", "NamespaceDeletionGroupVersionParsingFailure",
                   "NamespaceDeletionContentFailure", "NamespaceContentRemaining", "NamespaceFinalizersRemaining")
_OK = {
    "NamespaceDeletionDiscoveryFailure": ("ResourcesDiscovered", "All resources successfully discovered"),
    "NamespaceDeletionGroupVersionParsingFailure": ("ParsedGroupVersions", "All legacy kube types successfully parsed"),
    "NamespaceDeletionContentFailure": ("ContentDeleted",
                                        "All content successfully deleted, may be waiting on finalization"),
    "NamespaceContentRemaining": ("ContentRemoved", "All content successfully removed"),
    "NamespaceFinalizersRemaining": ("ContentHasNoFinalizers", "All content-preserving finalizers finished"),
}


@dataclass(frozen=True)
class Resource:
    api_version: str
    resource: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


@dataclass
class ContentTotals:
    """What a deletion pass left behind: remaining objects per resource, per finalizer."""

    remaining: dict[Resource, int] = field(default_factory=dict)
    finalizers: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    estimate: int = 0


def failure_conditions(totals: ContentTotals, discovery_error: str = "") -> dict[str, tuple[str, str]]:
    """The conditions that are True, as (reason, message), the way the namespace deleter's
    condition updater words them."""
    result: dict[str, tuple[str, str]] = {}
    if discovery_error:
        result["NamespaceDeletionDiscoveryFailure"] = ("DiscoveryFailed", discovery_error)
    if totals.errors:
        msgs = sorted(totals.errors)
        result["NamespaceDeletionContentFailure"] = (
            "ContentDeletionFailed", f"Failed to delete all resource types, {len(msgs)} remaining: {', '.join(msgs)}")
    remaining = sorted(f"{r.resource}.{r.group} has {n} resource instances" for r, n in totals.remaining.items() if n)
    if remaining:
        result["NamespaceContentRemaining"] = ("SomeResourcesRemain",
                                               f"Some resources are remaining: {', '.join(remaining)}")
    pending = sorted(f"{f} in {n} resource instances" for f, n in totals.finalizers.items() if n)
    if pending:
        result["NamespaceFinalizersRemaining"] = (
            "SomeFinalizersRemain", f"Some content in the namespace has finalizers remaining: {', '.join(pending)}")
    return result


def updated_conditions(conditions: list[dict], failures: dict[str, tuple[str, str]], now: str) -> list[dict]:
    """updateConditions: each owned type set to its failure or its "ok" form; the transition
    time changes only with the status. Other condition types are kept."""
    result = deep_copy(conditions or [])
    for ctype in CONDITION_TYPES:
        status = "True" if ctype in failures else "False"
        reason, message = failures.get(ctype) or _OK[ctype]
        old = next((c for c in result if c.get("type") == ctype), None)
        if old is None:
            result.append({"type": ctype, "status": status, "lastTransitionTime": now,
                           "reason": reason, "message": message})
        elif (old.get("status"), old.get("reason"), old.get("message")) != (status, reason, message):
            if old.get("status") != status:
                old["lastTransitionTime"] = now
            old.update(status=status, reason=reason, message=message)
    return result


def grace_estimate(pod: dict, now: float) -> int:
    """Seconds until a terminating pod's grace period is over (0 if not terminating)."""
    m = pod.get("metadata") or {}
    ends = parse_time(m.get("deletionTimestamp"))  # the delete time + the grace period
    if ends is None:
        return 0
    return max(0, int(ends.timestamp() - now))


class NamespaceController(Controller):
    name = "namespace-controller"

    def setup(self) -> None:
        self.namespaces = self.informers.informer("v1", "namespaces")
        self.pods = self.informers.informer("v1", "pods")
        self.namespaces.add_handlers(self._maybe_enqueue, lambda old, new: self._maybe_enqueue(new))
        # Not in Kubernetes (which polls by estimate): a pod leaving a terminating namespace
        # re-checks it at once, so `kubectl delete ns` returns as soon as it can.
        self.pods.add_handlers(on_delete=self._pod_gone)

    def _maybe_enqueue(self, ns: dict) -> None:
        if ns["metadata"].get("deletionTimestamp"):
            self.enqueue(ns)

    def _pod_gone(self, pod: dict) -> None:
        ns = self.namespaces.get(pod["metadata"].get("namespace", ""))
        if ns is not None and ns["metadata"].get("deletionTimestamp"):
            self.enqueue(ns)

    async def sync(self, name: str) -> None:
        try:
            ns = await self.client.get("v1", "namespaces", name)
        except errors.APIError as exc:
            if exc.code == 404:
                return
            raise
        if not ns["metadata"].get("deletionTimestamp"):
            return
        if (ns.get("status") or {}).get("phase") != "Terminating":
            ns.setdefault("status", {})["phase"] = "Terminating"
            ns = await self.client.update("v1", "namespaces", ns, subresource="status")
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        discovery_error = ""
        try:
            resources = await self.discover()
        except errors.APIError as exc:
            discovery_error, resources = exc.message, []
        totals = await self.delete_all_content(name, resources)
        ns = await self._set_conditions(ns, failure_conditions(totals, discovery_error))
        if discovery_error or totals.errors:
            raise errors.internal(discovery_error or "; ".join(totals.errors))
        if totals.estimate > 0 or totals.remaining:
            self.queue.add_after(name, min(max(totals.estimate / 2 + 1, 1), 15))
            return
        await self._finalize(ns)

    async def discover(self) -> list[Resource]:
        """Every namespaced resource (not subresource) that can be listed and deleted."""
        group_versions = ["v1"]
        groups = await self.client.get_path("/apis")
        for group in groups.get("groups") or []:
            preferred = (group.get("preferredVersion") or {}).get("groupVersion")
            if preferred:
                group_versions.append(preferred)
        result = []
        for gv in group_versions:
            listing = await self.client.get_path("/api/v1" if gv == "v1" else f"/apis/{gv}")
            for res in listing.get("resources") or []:
                verbs = set(res.get("verbs") or [])
                if res.get("namespaced") and "/" not in res["name"] and {"list", "delete"} <= verbs:
                    result.append(Resource(gv, res["name"]))
        return result

    async def delete_all_content(self, namespace: str, resources: list[Resource]) -> ContentTotals:
        totals = ContentTotals()
        now = utc_now().timestamp()
        for res in resources:
            try:
                items = (await self.client.list(res.api_version, res.resource, namespace)).get("items") or []
                for item in items:
                    await self._delete_item(res, namespace, item)
                left = (await self.client.list(res.api_version, res.resource, namespace)).get("items") or []
            except errors.APIError as exc:
                if exc.code in (404, 405):
                    continue
                totals.errors.append(f"{exc.message} for gvr: {res.api_version}, Resource={res.resource}")
                continue
            if not left:
                continue
            totals.remaining[res] = len(left)
            for item in left:
                for fin in (item.get("metadata") or {}).get("finalizers") or []:
                    totals.finalizers[fin] = totals.finalizers.get(fin, 0) + 1
                    totals.estimate = max(totals.estimate, FINALIZER_ESTIMATE_SECONDS)
                if res.resource == "pods" and res.api_version == "v1":
                    totals.estimate = max(totals.estimate, grace_estimate(item, now))
        return totals

    async def _delete_item(self, res: Resource, namespace: str, item: dict) -> None:
        m = item.get("metadata") or {}
        if m.get("deletionTimestamp"):
            return
        try:
            await self.client.delete(res.api_version, res.resource, m["name"], namespace=namespace,
                                     propagation_policy="Background", preconditions={"uid": m.get("uid")})
        except errors.APIError as exc:
            if exc.code not in (404, 409):
                raise

    async def _set_conditions(self, ns: dict, failures: dict[str, tuple[str, str]]) -> dict:
        status = ns.setdefault("status", {})
        conditions = updated_conditions(status.get("conditions") or [], failures, rfc3339())
        if conditions == status.get("conditions"):
            return ns
        status["conditions"] = conditions
        try:
            return await self.client.update("v1", "namespaces", ns, subresource="status")
        except errors.APIError as exc:
            if exc.code == 409:
                return await self.client.get("v1", "namespaces", ns["metadata"]["name"])
            raise

    async def _finalize(self, ns: dict) -> None:
        """finalizeNamespace: PUT /api/v1/namespaces/x/finalize without our finalizer."""
        body = deep_copy(ns)
        body.setdefault("spec", {})["finalizers"] = sorted(
            {f for f in (ns.get("spec") or {}).get("finalizers") or [] if f != FINALIZER})
        try:
            await self.client.update("v1", "namespaces", body, subresource="finalize")
        except errors.APIError as exc:
            if exc.code != 404:
                raise
