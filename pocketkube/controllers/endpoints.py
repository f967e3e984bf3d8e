"""The Endpoints controller ("endpoint-controller", pkg/controller/endpoint) and the API
server's own endpoint reconciler for the `kubernetes` Service (pkg/controlplane/reconcilers).

For every Service with a selector (not ExternalName), an Endpoints object of the same name:
ready pods in `addresses`, unready ones in `notReadyAddresses` (all in `addresses` with
`publishNotReadyAddresses`), terminating pods left out unless `publishNotReadyAddresses`,
ports resolved per pod, subsets repacked the way `endpoints.RepackSubsets` does, the
Service's labels (+ `service.kubernetes.io/headless`), the last-change-trigger-time and
over-capacity (beyond 1000 addresses) annotations. Endpoints of Services without a selector
are left alone. The pure parts (`compute_subsets`, `repack_subsets`, `truncate_subsets`,
`endpoints_to_write`, `kubernetes_endpoints`, `kubernetes_endpoint_slice`) are module
functions so they can be tested without a server.
"""

from __future__ import annotations

import hashlib
import math

import orjson

from pocketkube.controllers.base import Controller
from pocketkube.controllers.endpointutil import (
    ServicePodHandlers,
    ANNOTATION_LEADER, ANNOTATION_OVER_CAPACITY, ANNOTATION_TRIGGER_TIME, LABEL_HEADLESS, LABEL_SERVICE_NAME,
    LABEL_SKIP_MIRROR, find_port, format_trigger_time, ip_family,
    is_headless, is_pod_ready, is_service_ip_set, pod_address_for_service, pod_reference, service_selector,
    should_pod_be_in_endpoints, should_set_hostname,
    stale_cache_error,
)
from pocketkube.core import errors
from pocketkube.core.informer import split_key
from pocketkube.core.objects import deep_copy

MAX_CAPACITY = 1000
TRUNCATED = "truncated"
_NO_PORT = ("", -1, "", "")  # RepackSubsets' sentinel: addresses of a headless Service without ports


# --- pure logic -------------------------------------------------------------------------

def endpoint_address(service: dict, pod: dict) -> dict | None:
    """The EndpointAddress of a pod for a Service, or None when it has no IP of the
    Service's family."""
    ip = pod_address_for_service(service, pod)
    if ip is None:
        return None
    address = {"ip": ip}
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        address["nodeName"] = node_name
    address["targetRef"] = pod_reference(pod)
    if should_set_hostname(pod, service):
        address["hostname"] = pod["spec"]["hostname"]
    return address


def endpoint_port(service_port: dict, number: int) -> dict:
    port = {}
    if service_port.get("name"):
        port["name"] = service_port["name"]
    port["port"] = number
    port["protocol"] = service_port.get("protocol") or "TCP"
    if service_port.get("appProtocol"):
        port["appProtocol"] = service_port["appProtocol"]
    return port


def compute_subsets(service: dict, pods: list[dict]) -> list[dict]:
    """The repacked subsets the Endpoints of a Service should hold for these pods."""
    spec = service.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    service_ports = spec.get("ports") or []
    entries = []  # (address, port or None, ready)
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, publish_not_ready):
            continue
        address = endpoint_address(service, pod)
        if address is None:
            continue
        ready = publish_not_ready or is_pod_ready(pod)
        if not service_ports:
            if is_headless(service):
                entries.append((address, None, ready))
            continue
        for service_port in service_ports:
            number = find_port(pod, service_port)
            if number is not None:
                entries.append((address, endpoint_port(service_port, number), ready))
    return repack_subsets(entries)


def _port_key(port: dict | None) -> tuple:
    if port is None:
        return _NO_PORT
    return (port.get("name") or "", port.get("port") or 0, port.get("protocol") or "TCP",
            port.get("appProtocol") or "")


def _address_key(address: dict) -> tuple:
    return address.get("ip", ""), (address.get("targetRef") or {}).get("uid", "")


def _address_order(address: dict) -> tuple:
    """LessEndpointAddress: IP as bytes, then no targetRef first, then the target's UID."""
    ref = address.get("targetRef")
    return address.get("ip", "").encode(), ref is not None, (ref or {}).get("uid", "")


def _hash_order(obj) -> str:
    return hashlib.md5(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()


def repack_subsets(entries: list[tuple[dict, dict | None, bool]]) -> list[dict]:
    """RepackSubsets over (address, port, ready) triples: addresses de-duplicated by IP and
    target UID, not-ready winning over ready per port, then one subset per distinct set of
    addresses with every port that set offers, in a canonical order."""
    addresses: dict[tuple, dict] = {}
    ports: dict[tuple, dict] = {}
    readiness_by_port: dict[tuple, dict[tuple, bool]] = {}
    for address, port, ready in entries:
        akey = _address_key(address)
        addresses.setdefault(akey, address)
        pkey = _port_key(port)
        if port is not None:
            ports.setdefault(pkey, port)
        readiness = readiness_by_port.setdefault(pkey, {})
        if readiness.get(akey, True):
            readiness[akey] = ready
    ports_by_address_set: dict[frozenset, list[tuple]] = {}
    for pkey, readiness in readiness_by_port.items():
        ports_by_address_set.setdefault(frozenset(readiness.items()), []).append(pkey)
    subsets = []
    for address_set, pkeys in ports_by_address_set.items():
        ready = sorted((addresses[a] for a, r in address_set if r), key=_address_order)
        not_ready = sorted((addresses[a] for a, r in address_set if not r), key=_address_order)
        subset: dict = {}
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        subset_ports = sorted((ports[p] for p in pkeys if p != _NO_PORT), key=_hash_order)
        if subset_ports:
            subset["ports"] = subset_ports
        subsets.append(subset)
    return sorted(subsets, key=_hash_order)


def truncate_subsets(subsets: list[dict]) -> bool:
    """Cut the subsets (in place) to MAX_CAPACITY addresses, ready ones first, each subset
    keeping its share (truncateEndpoints). True when something was cut."""
    total_ready = sum(len(s.get("addresses") or []) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
    if total_ready + total_not_ready <= MAX_CAPACITY:
        return False
    truncate_ready = total_ready > MAX_CAPACITY
    limit = MAX_CAPACITY if truncate_ready else MAX_CAPACITY - total_ready
    total = total_ready if truncate_ready else total_not_ready
    room = limit
    for subset in subsets:
        field = "addresses" if truncate_ready else "notReadyAddresses"
        members = subset.get(field) or []
        share = min(math.ceil(len(members) / total * limit), room)
        kept = members[:share]
        if kept:
            subset[field] = kept
        else:
            subset.pop(field, None)
        if truncate_ready:
            subset.pop("notReadyAddresses", None)
        room -= len(kept)
    return True


def _capacity_annotation_set_correctly(annotations: dict, subsets: list[dict]) -> bool:
    count = sum(len(s.get("addresses") or []) + len(s.get("notReadyAddresses") or []) for s in subsets)
    return count <= MAX_CAPACITY and ANNOTATION_OVER_CAPACITY not in annotations


def endpoints_to_write(service: dict, subsets: list[dict], current: dict | None, trigger_time) -> dict | None:
    """The Endpoints object to create or update for a Service, or None when `current`
    already says it all (same subsets, same labels, capacity annotation right)."""
    svc_meta = service["metadata"]
    service_labels = svc_meta.get("labels") or {}
    if current is not None:
        current_meta = current.get("metadata") or {}
        compare_labels = {k: v for k, v in (current_meta.get("labels") or {}).items() if k != LABEL_HEADLESS}
        current_subsets = current.get("subsets") or []
        if current_subsets == subsets and compare_labels == service_labels and \
                _capacity_annotation_set_correctly(current_meta.get("annotations") or {}, current_subsets):
            return None
        new = deep_copy(current)
    else:
        new = {"apiVersion": "v1", "kind": "Endpoints",
               "metadata": {"name": svc_meta["name"], "namespace": svc_meta.get("namespace", "")}}
    m = new["metadata"]
    annotations = dict(m.get("annotations") or {})
    if trigger_time is not None:
        annotations[ANNOTATION_TRIGGER_TIME] = format_trigger_time(trigger_time)
    else:
        annotations.pop(ANNOTATION_TRIGGER_TIME, None)
    new_subsets = deep_copy(subsets)
    if truncate_subsets(new_subsets):
        annotations[ANNOTATION_OVER_CAPACITY] = TRUNCATED
    else:
        annotations.pop(ANNOTATION_OVER_CAPACITY, None)
    labels = dict(service_labels)
    if is_service_ip_set(service):
        labels.pop(LABEL_HEADLESS, None)
    else:
        labels[LABEL_HEADLESS] = ""
    _set_or_drop(m, "labels", labels)
    _set_or_drop(m, "annotations", annotations)
    _set_or_drop(new, "subsets", [s for s in new_subsets if s.get("addresses") or s.get("notReadyAddresses")])
    return new


def _set_or_drop(obj: dict, field: str, value) -> None:
    """Empty maps and lists are omitted on the wire (omitempty)."""
    if value:
        obj[field] = value
    else:
        obj.pop(field, None)


# --- the controller ---------------------------------------------------------------------

class EndpointsController(ServicePodHandlers, Controller):
    name = "endpoint-controller"
    workers = 5

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._replaced_versions: dict[str, str] = {}  # staleEndpointsTracker

    def setup(self) -> None:
        self.services = self.watch_services_and_pods()
        self.endpoints = self.informers.informer("v1", "endpoints")
        self.endpoints.add_handlers(on_delete=self.enqueue)

    async def start(self) -> None:
        # checkLeftoverEndpoints: Endpoints whose Service is gone are deleted by their sync.
        for ep in self.endpoints.list():
            if ANNOTATION_LEADER not in ((ep.get("metadata") or {}).get("annotations") or {}):
                self.enqueue(ep)
        await super().start()

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        service = self.services.get(key)
        if service is None:
            await self._delete_endpoints(namespace, name)
            self.trigger_times.forget(namespace, name)
            self._replaced_versions.pop(key, None)
            return
        if (service.get("spec") or {}).get("type") == "ExternalName":
            return
        selector = service_selector(service)
        if selector is None:
            return  # manual Endpoints: not ours
        pods = self.pods.matching(namespace, selector)
        trigger_time = self.trigger_times.compute(service, pods)
        subsets = compute_subsets(service, pods)
        current = self.endpoints.get(key)
        if current is not None and self._replaced_versions.get(key) == current["metadata"].get("resourceVersion"):
            raise stale_cache_error(f"endpoints informer cache is out of date, resource version "
                                    f"{current['metadata'].get('resourceVersion')} already processed for "
                                    f"endpoints {key}")
        new = endpoints_to_write(service, subsets, current, trigger_time)
        if new is None:
            return
        await self._write(service, current, new)

    async def _write(self, service: dict, current: dict | None, new: dict) -> None:
        namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
        try:
            if current is None:
                await self.client.create("v1", "endpoints", new, namespace=namespace)
                return
            updated = await self.client.update("v1", "endpoints", new, namespace=namespace)
        except errors.APIError as exc:
            if current is None and errors.namespace_terminating(exc):
                return  # creates will keep failing: drop the item
            if exc.code != 409:  # a conflict is our cache being behind: just retry
                if current is None:
                    self.recorder.event(new, "Warning", "FailedToCreateEndpoint",
                                        f"Failed to create endpoint for service {namespace}/{name}: {exc.message}")
                else:
                    self.recorder.event(new, "Warning", "FailedToUpdateEndpoint",
                                        f"Failed to update endpoint {namespace}/{name}: {exc.message}")
            raise
        old_version = current["metadata"].get("resourceVersion")
        if updated.get("metadata", {}).get("resourceVersion") != old_version:
            self._replaced_versions[f"{namespace}/{name}"] = old_version

    async def _delete_endpoints(self, namespace: str, name: str) -> None:
        try:
            await self.client.delete("v1", "endpoints", name, namespace=namespace)
        except errors.APIError as exc:
            if exc.code != 404:
                raise


# --- the API server's own endpoints -----------------------------------------------------

KUBERNETES_NAMESPACE = "default"
KUBERNETES_SERVICE = "kubernetes"
KUBERNETES_KEY = f"{KUBERNETES_NAMESPACE}/{KUBERNETES_SERVICE}"
RECONCILE_INTERVAL = 10.0  # --endpoint-reconciler interval of kube-apiserver


def _kubernetes_port(port: int) -> dict:
    return {"name": "https", "port": port, "protocol": "TCP"}


def kubernetes_endpoints(address: str, port: int) -> dict:
    """The Endpoints kube-apiserver keeps for the `kubernetes` Service (never mirrored)."""
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": KUBERNETES_SERVICE, "namespace": KUBERNETES_NAMESPACE,
                         "labels": {LABEL_SKIP_MIRROR: "true"}},
            "subsets": [{"addresses": [{"ip": address}], "ports": [_kubernetes_port(port)]}]}


def kubernetes_endpoint_slice(address: str, port: int) -> dict:
    """The EndpointSlice kube-apiserver keeps for the `kubernetes` Service: named like the
    Service, no managed-by label, no owner."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": KUBERNETES_SERVICE, "namespace": KUBERNETES_NAMESPACE,
                         "labels": {LABEL_SERVICE_NAME: KUBERNETES_SERVICE}},
            "addressType": ip_family(address) or "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [_kubernetes_port(port)]}


class KubernetesEndpointsController(Controller):
    """Keeps `default/kubernetes` Endpoints and EndpointSlice pointing at this API server
    (settings.apiserver_address:apiserver_port), repairing them when changed or deleted and
    every RECONCILE_INTERVAL seconds, as kube-apiserver's endpoint reconciler does."""

    name = "kube-apiserver-endpoint-reconciler"
    user = "system:apiserver"  # kube-apiserver's own work upstream
    workers = 1
    field_manager = "kube-apiserver"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_refusal = ""

    def setup(self) -> None:
        self.endpoints = self.informers.informer("v1", "endpoints")
        self.slices = self.informers.informer("discovery.k8s.io/v1", "endpointslices")
        for informer in (self.endpoints, self.slices):
            informer.add_handlers(self._maybe_enqueue, lambda old, new: self._maybe_enqueue(new), self._maybe_enqueue)

    def _maybe_enqueue(self, obj: dict) -> None:
        m = obj.get("metadata") or {}
        if m.get("namespace") == KUBERNETES_NAMESPACE and (
                m.get("name") == KUBERNETES_SERVICE
                or (m.get("labels") or {}).get(LABEL_SERVICE_NAME) == KUBERNETES_SERVICE):
            self.queue.add(KUBERNETES_KEY)

    async def start(self) -> None:
        await super().start()
        self.queue.add(KUBERNETES_KEY)

    async def sync(self, key: str) -> None:
        self.queue.add_after(KUBERNETES_KEY, RECONCILE_INTERVAL)
        address, port = self.settings.apiserver_address, self.settings.apiserver_port
        try:
            await self._sync_endpoints(kubernetes_endpoints(address, port))
            await self._sync_slices(kubernetes_endpoint_slice(address, port))
        except errors.APIError as exc:
            if exc.code != 422:
                raise
            # An address the API refuses (a loopback --advertise-address): say so once,
            # try again at the next interval.
            if exc.message != self._last_refusal:
                self._last_refusal = exc.message
                self.log.warning("cannot publish the kubernetes Service's endpoints: %s", exc.message)

    async def _sync_endpoints(self, desired: dict) -> None:
        current = self.endpoints.get(KUBERNETES_KEY)
        if current is None:
            await self._create("v1", "endpoints", desired)
        elif current.get("subsets") != desired["subsets"] or \
                (current["metadata"].get("labels") or {}) != desired["metadata"]["labels"]:
            new = deep_copy(current)
            new["subsets"] = desired["subsets"]
            new["metadata"]["labels"] = desired["metadata"]["labels"]
            await self.client.update("v1", "endpoints", new, namespace=KUBERNETES_NAMESPACE,
                                     field_manager=self.field_manager)

    async def _sync_slices(self, desired: dict) -> None:
        primary = None
        for es in self.slices.list(KUBERNETES_NAMESPACE):
            m = es["metadata"]
            if (m.get("labels") or {}).get(LABEL_SERVICE_NAME) != KUBERNETES_SERVICE:
                continue
            if m["name"] == KUBERNETES_SERVICE and es.get("addressType") == desired["addressType"]:
                primary = es
                continue
            try:  # a stale slice of another family, or one someone else made
                await self.client.delete("discovery.k8s.io/v1", "endpointslices", m["name"],
                                         namespace=KUBERNETES_NAMESPACE)
            except errors.APIError as exc:
                if exc.code != 404:
                    raise
        if primary is None:
            if self.slices.get(KUBERNETES_KEY) is None:  # not of another family being deleted
                await self._create("discovery.k8s.io/v1", "endpointslices", desired)
            return
        if any(primary.get(f) != desired[f] for f in ("endpoints", "ports")) or \
                (primary["metadata"].get("labels") or {}) != desired["metadata"]["labels"]:
            new = deep_copy(primary)
            for f in ("endpoints", "ports"):
                new[f] = desired[f]
            new["metadata"]["labels"] = desired["metadata"]["labels"]
            await self.client.update("discovery.k8s.io/v1", "endpointslices", new,
                                     namespace=KUBERNETES_NAMESPACE, field_manager=self.field_manager)

    async def _create(self, api_version: str, resource: str, obj: dict) -> None:
        try:
            await self.client.create(api_version, resource, obj, namespace=KUBERNETES_NAMESPACE,
                                     field_manager=self.field_manager)
        except errors.APIError as exc:
            if exc.code != 409:  # already there: the informer will show it, we look again
                raise
