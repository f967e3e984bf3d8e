"""The resource quota controller (kube-controller-manager's "resourcequota-controller"): keeps
each ResourceQuota's status, which `kubectl describe quota` prints and the API server's quota
admission enforces: status.hard = spec.hard, status.used = what the namespace holds of each
resource the quota names that pocketkube counts (core/quota.py says which; the others get
no `used` entry).

A quota is recomputed when it changes, when a pod, Service, ConfigMap or
ReplicationController of its namespace comes, changes or goes (the shared informers), and
every resync period; the resources without an informer here (Secrets, PersistentVolumeClaims,
count/<resource>.<group>) are listed when their quota is synced.
"""

from __future__ import annotations

import asyncio

from pocketkube.controllers.base import Controller
from pocketkube.core import errors, quota

INFORMED = {("", "pods"), ("", "services"), ("", "configmaps"), ("", "replicationcontrollers"),
            ("", "resourcequotas")}


class ResourceQuotaController(Controller):
    name = "resourcequota-controller"
    workers = 5  # --concurrent-resource-quota-syncs

    def setup(self) -> None:
        self.quotas = self.informers.informer("v1", "resourcequotas")
        self.quotas.add_handlers(self.enqueue, lambda old, new: self._quota_changed(old, new), self._namespace_changed)
        self.informed = {key: self.informers.informer("v1", key[1]) for key in INFORMED}
        for key, informer in self.informed.items():
            if key != ("", "resourcequotas"):
                informer.add_handlers(self._namespace_changed, lambda old, new: self._namespace_changed(new),
                                      self._namespace_changed)
        self._versions: dict[str, str] = {}  # API group -> its preferred version, from discovery

    def _quota_changed(self, old: dict, new: dict) -> None:
        if old.get("spec") != new.get("spec") or old.get("status") != new.get("status"):
            self.enqueue(new)

    def _namespace_changed(self, obj: dict) -> None:
        """Something counted in a namespace moved: its quotas are recomputed."""
        for q in self.quotas.list((obj.get("metadata") or {}).get("namespace", "")):
            self.enqueue(q)

    async def start(self) -> None:
        await super().start()
        self._tasks.append(asyncio.create_task(self._resync(), name=f"{self.name}-resync"))

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            for q in self.quotas.list():
                self.enqueue(q)

    async def sync(self, key: str) -> None:
        q = self.quotas.get(key)
        if q is None:
            return
        namespace = q["metadata"]["namespace"]
        hard = dict((q.get("spec") or {}).get("hard") or {})
        used = {}
        for name in hard:
            what = quota.counted(name)
            if what is not None:
                used[name] = str(quota.total(name, await self._objects(namespace, *what)))
        status = {"hard": hard, "used": used}
        if (q.get("status") or {}) == status:
            return
        try:
            await self.client.update("v1", "resourcequotas", {**q, "status": status}, namespace=namespace,
                                     subresource="status")
        except errors.APIError as exc:
            if exc.code != 404:  # a conflict (our informer is behind) is retried after a backoff
                raise

    async def _objects(self, namespace: str, group: str, resource: str) -> list[dict]:
        if (group, resource) in self.informed:
            return self.informed[(group, resource)].list(namespace)
        try:
            api_version = await self._api_version(group)
            return (await self.client.list(api_version, resource, namespace)).get("items") or []
        except errors.APIError as exc:
            if exc.code == 404:  # not a resource this server serves: nothing of it exists
                return []
            raise

    async def _api_version(self, group: str) -> str:
        if not group:
            return "v1"
        if group not in self._versions:
            found = await self.client.get_path(f"/apis/{group}")
            self._versions[group] = (found.get("preferredVersion") or {}).get("groupVersion") or ""
        if not self._versions[group]:
            raise errors.not_found("", group, group)
        return self._versions[group]
