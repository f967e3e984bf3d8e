"""The pods/eviction subresource: POST .../pods/NAME/eviction with a policy/v1 Eviction, what
`kubectl drain` sends for each pod of a node.

The pod goes (the DisruptionTarget condition, reason EvictionByEvictionAPI, then a delete with
the Eviction's deleteOptions) when no PodDisruptionBudget covers it, when it has finished or not
started (Succeeded, Failed, Pending) or is already being deleted, or when the one budget that
covers it allows a disruption: then its disruptionsAllowed is decremented and the pod recorded in
its disruptedPods, in one optimistic write of the budget's status (retried on a conflict), so
two evictions never spend the same disruption. Otherwise the answer is 429 TooManyRequests with
the budget's numbers, which `kubectl drain` retries every 5 seconds; the disruption controller
(controllers/disruption.py) gives the budget its allowance back once the pod is gone and a
replacement is Ready. An unready pod may go without spending an allowance when the budget is
otherwise met (unhealthyPodEvictionPolicy IfHealthyBudget), or always (AlwaysAllow). A budget the
controller has not yet seen at its current generation refuses with 429, as upstream does; a pod
covered by two budgets gets 500.
"""

from __future__ import annotations

from pocketkube.apiserver.kinds import registry
from pocketkube.apiserver.storage import Storage, WriteOptions
from pocketkube.core import errors
from pocketkube.core.disruption import budget_covers, pod_is_healthy, with_disruption_condition
from pocketkube.core.objects import deep_copy, rfc3339, utc_now

MAX_DISRUPTED_PODS = 2000
CONFLICT_RETRIES = 5
BUDGET_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
TWO_BUDGETS_MESSAGE = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
SUCCESS = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


class Evictions:
    def __init__(self, storage: Storage):
        self.storage = storage
        self.pods = registry.by_resource("", "v1", "pods")
        self.budgets = registry.by_resource("policy", "v1", "poddisruptionbudgets")

    async def evict(self, namespace: str, name: str, eviction: dict, dry_run: bool) -> dict:
        """Evict a pod, or raise the APIError that says why not. Returns the Success Status."""
        if not isinstance(eviction, dict):
            raise errors.bad_request("the body of the request was in an unknown format")
        if ((eviction.get("metadata") or {}).get("name") or "") != name:
            raise errors.bad_request("name in URL does not match name in Eviction object")
        options = dict(eviction.get("deleteOptions") or {})
        if dry_run:
            options["dryRun"] = ["All"]
        dry_run = dry_run or "All" in (options.get("dryRun") or [])
        pod = await self.storage.get(self.pods, namespace, name)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed", "Pending") or pod["metadata"].get("deletionTimestamp"):
            return await self._delete(namespace, name, options, dry_run)
        covering = [b for b in (await self.storage.list(self.budgets, namespace, None)).items
                    if budget_covers(b, pod)]
        if len(covering) > 1:
            raise errors.APIError(500, "", TWO_BUDGETS_MESSAGE)
        if covering:
            await self._spend(covering[0], pod, dry_run)
        return await self._delete(namespace, name, options, dry_run)

    async def _spend(self, budget: dict, pod: dict, dry_run: bool) -> None:
        """checkAndDecrement, retried while another write of the budget wins."""
        for attempt in range(CONFLICT_RETRIES):
            if attempt:
                budget = await self.storage.get(self.budgets, budget["metadata"]["namespace"],
                                                budget["metadata"]["name"])
            spec, status = budget.get("spec") or {}, budget.get("status") or {}
            if not pod_is_healthy(pod):
                if spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
                    return
                if (status.get("currentHealthy") or 0) >= (status.get("desiredHealthy") or 0) > 0:
                    return  # IfHealthyBudget: an unready pod of a met budget costs nothing
            name = budget["metadata"]["name"]
            if (status.get("observedGeneration") or 0) < (budget["metadata"].get("generation") or 1):
                raise _too_many_requests(f"The disruption budget {name} is still being processed by the server.")
            allowed = status.get("disruptionsAllowed") or 0
            if allowed < 0:
                raise errors.forbidden_object("poddisruptionbudget", "policy", name,
                                              "pdb disruptions allowed is negative")
            if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
                raise errors.forbidden_object("poddisruptionbudget", "policy", name, "DisruptedPods map too big - "
                                              "too many evictions not confirmed by PDB controller")
            if allowed == 0:
                raise _too_many_requests(f"The disruption budget {name} needs {status.get('desiredHealthy') or 0} "
                                         f"healthy pods and has {status.get('currentHealthy') or 0} currently")
            if dry_run:
                return
            now = utc_now()
            new = deep_copy(budget)
            new_status = new.setdefault("status", {})
            new_status["disruptionsAllowed"] = allowed - 1
            if allowed == 1:
                new_status["conditions"] = with_disruption_condition(
                    new_status, budget["metadata"].get("generation") or 1, now)
            new_status.setdefault("disruptedPods", {})[pod["metadata"]["name"]] = rfc3339(now)
            try:
                await self.storage.update(self.budgets, budget["metadata"]["namespace"], name, new,
                                          WriteOptions(subresource="status"))
                return
            except errors.APIError as exc:
                if exc.code != 409:
                    raise
        raise _too_many_requests(f"The disruption budget {budget['metadata']['name']} is still being "
                                 "processed by the server.")

    async def _delete(self, namespace: str, name: str, options: dict, dry_run: bool) -> dict:
        if not dry_run:
            await self._mark_disrupted(namespace, name)
        await self.storage.delete(self.pods, namespace, name, options, dry_run)
        return SUCCESS

    async def _mark_disrupted(self, namespace: str, name: str) -> None:
        """The DisruptionTarget condition, which a Job's podFailurePolicy can match."""
        for _ in range(CONFLICT_RETRIES):
            pod = await self.storage.get(self.pods, namespace, name)
            conditions = (pod.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in conditions):
                return
            new = deep_copy(pod)
            new.setdefault("status", {})["conditions"] = [c for c in conditions if c.get("type") != "DisruptionTarget"] + [
                {"type": "DisruptionTarget", "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": rfc3339(), "reason": "EvictionByEvictionAPI",
                 "message": "Eviction API: evicting"}]
            try:
                await self.storage.update(self.pods, namespace, name, new, WriteOptions(subresource="status"))
                return
            except errors.APIError as exc:
                if exc.code != 409:
                    raise


def _too_many_requests(cause: str) -> errors.APIError:
    return errors.APIError(429, "TooManyRequests", BUDGET_MESSAGE,
                           {"causes": [{"reason": "DisruptionBudget", "message": cause}]})
