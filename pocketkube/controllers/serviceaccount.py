"""The ServiceAccount controller (kube-controller-manager's "serviceaccount-controller").

Owns the `default` ServiceAccount of every namespace: created when a namespace appears,
recreated when it is deleted, left alone in a namespace that is being terminated.
"""

from __future__ import annotations

from pocketkube.controllers.base import Controller
from pocketkube.core import errors

DEFAULT_ACCOUNTS = ("default",)


class ServiceAccountController(Controller):
    name = "serviceaccount-controller"
    service_account = "service-account-controller"

    def setup(self) -> None:
        self.namespaces = self.informers.informer("v1", "namespaces")
        self.accounts = self.informers.informer("v1", "serviceaccounts")
        self.namespaces.add_handlers(self.enqueue, lambda old, new: self.enqueue(new))
        self.accounts.add_handlers(on_delete=self._account_deleted)

    def _account_deleted(self, account: dict) -> None:
        if account["metadata"].get("name") in DEFAULT_ACCOUNTS:
            self.enqueue(account["metadata"].get("namespace", ""))

    async def sync(self, namespace: str) -> None:
        ns = self.namespaces.get(namespace)
        if ns is None or ns["metadata"].get("deletionTimestamp") \
                or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        for name in DEFAULT_ACCOUNTS:
            if self.accounts.get(f"{namespace}/{name}") is not None:
                continue
            account = {"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": name, "namespace": namespace}}
            try:
                await self.client.create("v1", "serviceaccounts", account, namespace=namespace)
            except errors.APIError as exc:
                # 409: it exists (our informer is behind); 403/404: the namespace is going.
                if exc.code not in (403, 404, 409):
                    raise
