"""clusterrole-aggregation-controller: a ClusterRole with an `aggregationRule` gets the rules of
every ClusterRole its selectors match (kube-controller-manager's controller of that name).

The bootstrap roles `admin`, `edit` and `view` are built this way from the
`system:aggregate-to-*` roles; a CRD installer adds a ClusterRole labelled
`rbac.authorization.k8s.io/aggregate-to-view: "true"` and `view` holds its rules within a moment.
Rules are gathered in the order of the matching roles' names, each once; the aggregated role is
written only when its rules change.
"""

from __future__ import annotations

from pocketkube.controllers.base import Controller
from pocketkube.core import errors, selectors

API = "rbac.authorization.k8s.io/v1"


def aggregate(role: dict, roles: list[dict]) -> list[dict]:
    """The rules `role`'s aggregationRule selects from `roles`."""
    rules: list[dict] = []
    chosen: set[str] = set()
    name = role["metadata"]["name"]
    for sel in (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []:
        selector = selectors.selector_from_object(sel)
        for other in sorted(roles, key=lambda r: r["metadata"]["name"]):
            other_name = other["metadata"]["name"]
            if other_name == name or other_name in chosen:
                continue
            if not selector.matches((other["metadata"].get("labels") or {})):
                continue
            chosen.add(other_name)
            for r in other.get("rules") or []:
                if r not in rules:
                    rules.append(r)
    return rules


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation-controller"
    workers = 1

    def setup(self) -> None:
        self.roles = self.informers.informer(API, "clusterroles")
        self.roles.add_handlers(self._changed, lambda old, new: self._changed(new), self._changed)

    def _changed(self, _role: dict) -> None:
        # Any role may now match (or stop matching) a selector: look at every aggregated role.
        for role in self.roles.list():
            if role.get("aggregationRule"):
                self.queue.add(role["metadata"]["name"])

    async def sync(self, key: str) -> None:
        role = self.roles.get(key)
        if role is None or not role.get("aggregationRule"):
            return
        rules = aggregate(role, self.roles.list())
        if (role.get("rules") or []) == rules:
            return
        new = {**role, "rules": rules}
        try:
            await self.client.update(API, "clusterroles", new)
        except errors.APIError as exc:
            if exc.code != 404:
                raise
