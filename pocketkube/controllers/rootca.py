"""root-ca-cert-publisher: a `kube-root-ca.crt` ConfigMap with the cluster CA in every
namespace, as kube-controller-manager publishes it (pods' projected token volumes read it)."""

from __future__ import annotations

from pocketkube.controllers.base import Controller
from pocketkube.core import errors

CONFIGMAP = "kube-root-ca.crt"


class RootCACertPublisher(Controller):
    name = "root-ca-cert-publisher"

    def setup(self) -> None:
        self.namespaces = self.informers.informer("v1", "namespaces")
        self.configmaps = self.informers.informer("v1", "configmaps")
        self.namespaces.add_handlers(self.enqueue, lambda old, new: self.enqueue(new))
        self.configmaps.add_handlers(
            on_update=lambda old, new: self._on_configmap(new), on_delete=self._on_configmap)

    def _on_configmap(self, cm: dict) -> None:
        if cm["metadata"]["name"] == CONFIGMAP:
            self.queue.add(cm["metadata"]["namespace"])

    async def sync(self, key: str) -> None:
        if not self.settings.root_ca:
            return
        ns = self.namespaces.get(key)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return
        want = {"ca.crt": self.settings.root_ca.decode()}
        current = self.configmaps.get(f"{key}/{CONFIGMAP}")
        if current is None:
            cm = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": CONFIGMAP, "namespace": key,
                               "annotations": {"kubernetes.io/description": (
                                   "Contains a CA bundle that can be used to verify the kube-apiserver "
                                   "when using internal endpoints such as the internal service IP or "
                                   "kubernetes.default.svc. No other usage is guaranteed across "
                                   "distributions of Kubernetes clusters.")}},
                  "data": want}
            try:
                await self.client.create("v1", "configmaps", cm, namespace=key)
            except errors.APIError as exc:
                if exc.code not in (409, 403):  # exists, or the namespace is terminating
                    raise
        elif current.get("data") != want:
            await self.client.update("v1", "configmaps", {**current, "data": want}, namespace=key)
