"""The load-balancer controller: what a cloud-controller-manager's service controller does,
with an address pool on the node network instead of a cloud (k8s.io/cloud-provider
controllers/service, plus the IPAM part of MetalLB's controller).

For every `type: LoadBalancer` Service without a foreign `spec.loadBalancerClass`: the
`service.kubernetes.io/load-balancer-cleanup` finalizer, an address from the pool in
`status.loadBalancer.ingress[0]` (`ipMode: VIP`), and the cloud controller's Events
(`EnsuringLoadBalancer`, `EnsuredLoadBalancer`; `SyncLoadBalancerFailed` when it stays
pending, saying why; `DeletingLoadBalancer`, `DeletedLoadBalancer` when the Service is deleted
or stops being a LoadBalancer, `Type` on a type change). Which address: core/lbpool.py.

State lives in the objects: at start the controller reads every Service's
`status.loadBalancer` and holds those addresses again (a restart hands out nothing twice).
One worker, so two Services never pick the same free address; a Service left pending
(pool exhausted, requested address taken) is synced again as soon as an address frees.
Announcing the address on the node network is the node agents' job (node/announcer.py).
"""

from __future__ import annotations

from pocketkube.controllers.base import Controller
from pocketkube.core import errors
from pocketkube.core.informer import object_key, split_key
from pocketkube.core.lbpool import DEFAULT_LB_RANGE, Pool, choose_address, ingress_ips, wants_load_balancer

FINALIZER = "service.kubernetes.io/load-balancer-cleanup"


def ensured(svc: dict, ip: str) -> bool:
    """Whether the Service already shows exactly this address and holds the finalizer."""
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return (ingress == [{"ip": ip, "ipMode": "VIP"}]
            and FINALIZER in ((svc.get("metadata") or {}).get("finalizers") or []))


class LoadBalancerController(Controller):
    name = "service-lb-controller"
    service_account = "service-controller"
    workers = 1  # the free-address choice must see every earlier choice

    def setup(self) -> None:
        self.pool = Pool.parse(self.settings.lb_range or DEFAULT_LB_RANGE)
        self.holders: dict[str, str] = {}  # address -> "namespace/name"
        self.pending: set[str] = set()  # Services waiting for an address to free
        self.written: dict[str, dict] = {}  # key -> the Service as our last write returned it
        self.services = self.informers.informer("v1", "services")
        self.services.add_handlers(self.enqueue, self._updated, self._deleted)

    def _updated(self, old: dict, new: dict) -> None:
        if wants_load_balancer(old) != wants_load_balancer(new):
            self.recorder.event(new, "Normal", "Type", f"{old['spec'].get('type')} -> {new['spec'].get('type')}")
        self.enqueue(new)

    def _deleted(self, svc: dict) -> None:
        self.enqueue(svc)

    async def start(self) -> None:
        # Hold what the stored Services hold before deciding anything new (the informers
        # have synced when the manager starts the controllers).
        for svc in self.services.list():
            if wants_load_balancer(svc) and not svc["metadata"].get("deletionTimestamp"):
                for ip in ingress_ips(svc):
                    if ip in self.pool:
                        self.holders.setdefault(ip, object_key(svc))
        self.log.info("load-balancer pool %s: %d of %d addresses in use", self.pool, len(self.holders),
                      self.pool.size)
        await super().start()

    def held_by(self, key: str) -> list[str]:
        return [ip for ip, holder in self.holders.items() if holder == key]

    def _release(self, key: str) -> bool:
        """Give back what `key` holds; wake the Services waiting for an address."""
        mine = self.held_by(key)
        for ip in mine:
            del self.holders[ip]
        self.pending.discard(key)
        if mine:
            for waiting in sorted(self.pending):
                self.enqueue(waiting)
        return bool(mine)

    def _current(self, key: str) -> dict | None:
        """The newer of the informer's copy and what our own last write returned (the
        informer may not have seen that write yet: no second Ensuring for one change)."""
        seen, written = self.services.get(key), self.written.get(key)
        if seen is None or written is None or written["metadata"].get("uid") != seen["metadata"].get("uid"):
            self.written.pop(key, None)
            return seen
        newer = int(written["metadata"]["resourceVersion"]) > int(seen["metadata"]["resourceVersion"])
        return written if newer else seen

    async def sync(self, key: str) -> None:
        svc = self._current(key)
        if svc is None:
            self._release(key)
            return
        finalizers = svc["metadata"].get("finalizers") or []
        if not wants_load_balancer(svc) or svc["metadata"].get("deletionTimestamp"):
            if FINALIZER in finalizers or self.held_by(key):
                await self._delete(key, svc)
            return
        decision = choose_address(key, svc, self.pool, self.holders)
        if decision.ip is not None and ensured(svc, decision.ip):
            self.holders[decision.ip] = key
            self.pending.discard(key)
            return
        self.recorder.event(svc, "Normal", "EnsuringLoadBalancer", "Ensuring load balancer")
        if FINALIZER not in finalizers:
            svc = await self._patch_finalizers(svc, finalizers + [FINALIZER])
            if svc is None:
                return
        for ip in self.held_by(key):
            if ip != decision.ip:
                del self.holders[ip]
        if decision.ip is None:
            self.pending.add(key)
            if ingress_ips(svc):
                await self._patch_status(svc, {})
            self.recorder.event(svc, "Warning", "SyncLoadBalancerFailed",
                                f"Error syncing load balancer: failed to ensure load balancer: {decision.message}")
            return
        self.holders[decision.ip] = key
        self.pending.discard(key)
        if await self._patch_status(svc, {"ingress": [{"ip": decision.ip, "ipMode": "VIP"}]}):
            self.recorder.event(svc, "Normal", "EnsuredLoadBalancer", "Ensured load balancer")

    async def _delete(self, key: str, svc: dict) -> None:
        """The Service no longer wants a load balancer (deleted, or another type): free its
        address, drop the finalizer, clear the status."""
        if self.held_by(key) or ingress_ips(svc):
            self.recorder.event(svc, "Normal", "DeletingLoadBalancer", "Deleting load balancer")
        self._release(key)
        finalizers = svc["metadata"].get("finalizers") or []
        if FINALIZER in finalizers:
            if await self._patch_finalizers(svc, [f for f in finalizers if f != FINALIZER]) is None:
                return
        self.recorder.event(svc, "Normal", "DeletedLoadBalancer", "Deleted load balancer")
        if ingress_ips(svc) and not svc["metadata"].get("deletionTimestamp"):
            await self._patch_status(svc, {})

    async def _patch_finalizers(self, svc: dict, finalizers: list[str]) -> dict | None:
        """The Service after the patch (None: it is gone). The resourceVersion makes a stale
        view fail with a conflict, retried with the fresh object. Through /status, as the cloud
        service controller writes its finalizer (its role may not write the Service itself)."""
        namespace, name = split_key(object_key(svc))
        patch = {"metadata": {"finalizers": finalizers or None, "resourceVersion": svc["metadata"]["resourceVersion"]}}
        try:
            result = await self.client.patch("v1", "services", name, patch, namespace=namespace,
                                             subresource="status")
        except errors.APIError as exc:
            if exc.code == 404:
                return None
            raise
        self.written[object_key(svc)] = result
        return result

    async def _patch_status(self, svc: dict, load_balancer: dict) -> bool:
        namespace, name = split_key(object_key(svc))
        patch = {"status": {"loadBalancer": {"ingress": load_balancer.get("ingress")}}}
        try:
            self.written[object_key(svc)] = await self.client.patch("v1", "services", name, patch,
                                                                    namespace=namespace, subresource="status")
        except errors.APIError as exc:
            if exc.code == 404:
                return False
            raise
        return True
