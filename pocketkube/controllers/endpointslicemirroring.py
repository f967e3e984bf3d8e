"""The EndpointSlice mirroring controller ("endpointslicemirroring-controller",
pkg/controller/endpointslicemirroring of Kubernetes 1.32).

Endpoints written by hand for a Service without a selector are mirrored into EndpointSlices:
one slice per (address type, set of ports), at most 1000 addresses per subset, labelled
`endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io` and
`kubernetes.io/service-name`, carrying the Endpoints' other labels and annotations, owned by
the Endpoints. Endpoints labelled `endpointslice.kubernetes.io/skip-mirror: "true"` (the
`kubernetes` Service's) or holding a leader-election annotation are not mirrored; mirrored
slices go away with the Endpoints, the Service, or when the Service gains a selector.
`plan_mirrored_slices` is the pure part.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from pocketkube.controllers.base import Controller
from pocketkube.controllers.endpointslice import (
    apply_slice_plan, endpoint_key, endpoints_equal_beyond_key, pop_first, ports_key, recycle, service_key_of,
)
from pocketkube.controllers.endpointutil import (
    delete_slice,
    ADDRESS_IPV4, ADDRESS_IPV6, ANNOTATION_LAST_APPLIED, ANNOTATION_LEADER, ANNOTATION_TRIGGER_TIME,
    LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_SKIP_MIRROR, SliceTracker, owner_reference, service_selector,
    stale_cache_error,
)
from pocketkube.core.informer import split_key

CONTROLLER_NAME = "endpointslicemirroring-controller.k8s.io"
MAX_ENDPOINTS_PER_SUBSET = 1000
UNMIRRORED_ANNOTATIONS = (ANNOTATION_TRIGGER_TIME, ANNOTATION_LAST_APPLIED)


# --- pure logic -------------------------------------------------------------------------

def should_mirror(endpoints: dict | None) -> bool:
    if endpoints is None:
        return False
    m = endpoints.get("metadata") or {}
    return (m.get("labels") or {}).get(LABEL_SKIP_MIRROR) != "true" \
        and ANNOTATION_LEADER not in (m.get("annotations") or {})


def address_to_endpoint(address: dict, ready: bool) -> tuple[dict | None, str | None]:
    """(endpoint, address type) for an Endpoints address, or (None, None) for a bad IP."""
    try:
        ip = ipaddress.ip_address((address.get("ip") or "").strip())
    except ValueError:
        return None, None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    endpoint = {"addresses": [str(ip)], "conditions": {"ready": ready}}
    if address.get("targetRef"):
        endpoint["targetRef"] = address["targetRef"]
    if address.get("nodeName") is not None:
        endpoint["nodeName"] = address["nodeName"]
    if address.get("hostname"):
        endpoint["hostname"] = address["hostname"]
    return endpoint, (ADDRESS_IPV6 if ip.version == 6 else ADDRESS_IPV4)


def slice_ports(endpoint_ports: list[dict] | None) -> list[dict]:
    out = []
    for p in endpoint_ports or []:
        port = {"name": p.get("name") or "", "port": p.get("port"), "protocol": p.get("protocol") or "TCP"}
        if p.get("appProtocol"):
            port["appProtocol"] = p["appProtocol"]
        out.append(port)
    return out


def _without(mapping: dict | None, keys) -> dict:
    return {k: v for k, v in (mapping or {}).items() if k not in keys}


def new_mirrored_slice(endpoints: dict, ports: list[dict], address_type: str, name: str = "") -> dict:
    m = endpoints["metadata"]
    labels = dict(m.get("labels") or {})
    labels[LABEL_SERVICE_NAME] = m["name"]
    labels[LABEL_MANAGED_BY] = CONTROLLER_NAME
    meta = {"namespace": m.get("namespace", ""), "labels": labels,
            "ownerReferences": [owner_reference(endpoints, "v1", "Endpoints")]}
    annotations = _without(m.get("annotations"), UNMIRRORED_ANNOTATIONS)
    if annotations:
        meta["annotations"] = annotations
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = f"{m['name']}-"
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
            "addressType": address_type, "endpoints": [], "ports": ports}


@dataclass
class MirrorPlan:
    create: list[dict] = field(default_factory=list)
    update: list[dict] = field(default_factory=list)
    delete: list[dict] = field(default_factory=list)
    invalid_addresses: int = 0
    skipped_addresses: int = 0  # invalid ones and those beyond the per-subset maximum


def plan_mirrored_slices(endpoints: dict, existing: list[dict],
                         max_per_subset: int = MAX_ENDPOINTS_PER_SUBSET) -> MirrorPlan:
    """What to create, update and delete so that the mirrored slices say what the
    Endpoints say (reconciler.reconcile)."""
    plan = MirrorPlan()
    desired: dict[tuple, dict[tuple, dict]] = {}
    desired_ports: dict[tuple, list[dict]] = {}
    for subset in endpoints.get("subsets") or []:
        ports = slice_ports(subset.get("ports"))
        candidates = [(a, True) for a in subset.get("addresses") or []] + \
                     [(a, False) for a in subset.get("notReadyAddresses") or []]
        added = 0
        for address, ready in candidates:
            if added >= max_per_subset:
                break
            endpoint, address_type = address_to_endpoint(address, ready)
            if endpoint is None:
                plan.invalid_addresses += 1
                continue
            key = (address_type, ports_key(ports))
            desired.setdefault(key, {})[endpoint_key(endpoint)] = endpoint
            desired_ports.setdefault(key, ports)
            added += 1
        plan.skipped_addresses += len(candidates) - added

    existing_by_key: dict[tuple, list[dict]] = {}
    for es in existing:
        existing_by_key.setdefault((es.get("addressType"), ports_key(es.get("ports"))), []).append(es)
    for key, want in desired.items():
        _plan_port_mapping(endpoints, existing_by_key.get(key, []), want, desired_ports[key], key[0],
                           max_per_subset, plan)
    for key, slices in existing_by_key.items():
        if key not in desired:
            plan.delete += slices
    plan.update += recycle(plan.create, plan.delete, lambda old, new: True)
    return plan


def _unchanged(es: dict, want: dict[tuple, dict], endpoints: dict) -> bool:
    current = es.get("endpoints") or []
    if len(current) != len(want):
        return False
    for endpoint in current:
        got = want.get(endpoint_key(endpoint))
        if got is None or not endpoints_equal_beyond_key(got, endpoint):
            return False
    m, em = es["metadata"], endpoints["metadata"]
    return _without(m.get("labels"), (LABEL_MANAGED_BY, LABEL_SERVICE_NAME)) == \
        _without(em.get("labels"), (LABEL_MANAGED_BY, LABEL_SERVICE_NAME)) \
        and _without(m.get("annotations"), UNMIRRORED_ANNOTATIONS) == \
        _without(em.get("annotations"), UNMIRRORED_ANNOTATIONS)


def _plan_port_mapping(endpoints: dict, existing: list[dict], want: dict[tuple, dict], ports: list[dict],
                       address_type: str, max_per_subset: int, plan: MirrorPlan) -> None:
    """One slice per group: keep the first existing one (rewritten when it differs), delete
    the others."""
    if not want:
        plan.delete += existing
        return
    name = ""
    if existing:
        plan.delete += existing[1:]
        if _unchanged(existing[0], want, endpoints):
            return
        name = existing[0]["metadata"]["name"]
    es = new_mirrored_slice(endpoints, ports, address_type, name)
    while want and len(es["endpoints"]) < max_per_subset:
        es["endpoints"].append(pop_first(want))
    (plan.update if name else plan.create).append(es)


# --- the controller ---------------------------------------------------------------------

def _mirrored(es: dict) -> bool:
    return ((es.get("metadata") or {}).get("labels") or {}).get(LABEL_MANAGED_BY) == CONTROLLER_NAME


class EndpointSliceMirroringController(Controller):
    name = "endpointslicemirroring-controller"
    workers = 5

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tracker = SliceTracker()

    def setup(self) -> None:
        self.services = self.informers.informer("v1", "services")
        self.endpoints = self.informers.informer("v1", "endpoints")
        self.slices = self.informers.informer("discovery.k8s.io/v1", "endpointslices")
        self.services.add_handlers(self._service_added, self._service_updated, self._service_added)
        self.endpoints.add_handlers(self._endpoints_changed, self._endpoints_updated, self._endpoints_changed)
        self.slices.add_handlers(self._slice_added, self._slice_updated, self._slice_deleted)

    def _service_added(self, service: dict) -> None:
        if service_selector(service) is None:
            self.enqueue(service)

    def _service_updated(self, old: dict, new: dict) -> None:
        if (service_selector(old) is None) != (service_selector(new) is None):
            self.enqueue(new)

    def _endpoints_changed(self, endpoints: dict) -> None:
        if should_mirror(endpoints):
            self.enqueue(endpoints)

    def _endpoints_updated(self, old: dict, new: dict) -> None:
        if should_mirror(old) or should_mirror(new):
            self.enqueue(new)

    def _slice_added(self, es: dict) -> None:
        key = service_key_of(es)
        if key and _mirrored(es) and self.tracker.should_sync(key, es):
            self.queue.add(key)

    def _slice_updated(self, old: dict, new: dict) -> None:
        old_key, key = service_key_of(old), service_key_of(new)
        if old_key != key:
            for k in (old_key, key):
                if k:
                    self.queue.add(k)
            return
        if key and (_mirrored(old) != _mirrored(new) or (_mirrored(new) and self.tracker.should_sync(key, new))):
            self.queue.add(key)

    def _slice_deleted(self, es: dict) -> None:
        key = service_key_of(es)
        if key and _mirrored(es) and self.tracker.has(key, es) and not self.tracker.handle_deletion(key, es):
            self.queue.add(key)

    def _mirrored_slices(self, namespace: str, name: str) -> list[dict]:
        return [es for es in self.slices.list(namespace)
                if _mirrored(es) and es["metadata"].get("labels", {}).get(LABEL_SERVICE_NAME) == name]

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        endpoints = self.endpoints.get(key)
        service = self.services.get(key)
        if not should_mirror(endpoints) or service is None or service_selector(service) is not None:
            await self._delete_mirrored(key, namespace, name)
            return
        slices = self._mirrored_slices(namespace, name)
        if self.tracker.stale(key, slices):
            raise stale_cache_error("EndpointSlice informer cache is out of date")
        plan = plan_mirrored_slices(endpoints, slices)
        if plan.invalid_addresses:
            self.recorder.event(endpoints, "Warning", "InvalidIPAddress",
                                f"Skipped {plan.invalid_addresses} invalid IP addresses when mirroring to "
                                f"EndpointSlices")
        if plan.skipped_addresses > plan.invalid_addresses:
            self.recorder.event(endpoints, "Warning", "TooManyAddressesToMirror",
                                f"A max of {MAX_ENDPOINTS_PER_SUBSET} addresses can be mirrored to EndpointSlices "
                                f"per Endpoints subset. {plan.skipped_addresses} addresses were skipped")
        await apply_slice_plan(self.client, self.tracker, key, endpoints, plan)

    async def _delete_mirrored(self, key: str, namespace: str, name: str) -> None:
        for es in self._mirrored_slices(namespace, name):
            await delete_slice(self.client, self.tracker, key, es)
        self.tracker.forget(key)
