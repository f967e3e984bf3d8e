"""The EndpointSlice controller ("endpointslice-controller", pkg/controller/endpointslice and
the staging k8s.io/endpointslice reconciler of Kubernetes 1.32).

For every Service with a selector (not ExternalName): EndpointSlices named `<svc>-<5 random>`
(generateName), labelled `kubernetes.io/service-name` and
`endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io` plus the Service's
labels, owned by the Service; one group of slices per distinct set of resolved ports, at most
100 endpoints per slice; endpoints with addresses, ready/serving/terminating conditions,
nodeName, zone, hostname and targetRef. The reconciler's placement keeps churn low: keep
endpoints where they are, fill slices that change anyway, then the unchanged slice that
ends closest to full, then new slices; an empty placeholder slice when nothing backs the
Service; creates turned into updates of slices that would be deleted. `plan_slices` is the
pure part; the controller writes its plan and tracks the generations it wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from pocketkube.controllers.base import Controller
from pocketkube.controllers.endpointutil import (
    delete_slice,
    ServicePodHandlers,
    ANNOTATION_TRIGGER_TIME, LABEL_HEADLESS, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_TOPOLOGY_ZONE,
    SliceTracker, find_port, format_trigger_time,
    is_pod_ready, is_service_ip_set, is_terminating, owner_reference, pod_addresses_of_type, pod_reference,
    service_address_types, service_selector, services_for_pod,
    should_pod_be_in_endpoints, should_set_hostname, stale_cache_error,
)
from pocketkube.core import errors
from pocketkube.core.informer import split_key
from pocketkube.core.objects import deep_copy

CONTROLLER_NAME = "endpointslice-controller.k8s.io"
MAX_ENDPOINTS_PER_SLICE = 100
SLICE_CHANGE_MIN_SYNC_DELAY = 1.0  # endpointSliceChangeMinSyncDelay
RESERVED_LABELS = (LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS)

NodeLookup = Callable[[str], "dict | None"]


# --- shared slice helpers (also used by the mirroring controller) ----------------------

def ports_key(ports: list[dict] | None) -> tuple:
    """Identifies a group of slices: the set of their ports (PortMapKey)."""
    return tuple(sorted((p.get("name") or "", p.get("port") or 0, p.get("protocol") or "TCP",
                         p.get("appProtocol") or "") for p in ports or []))


def endpoint_key(endpoint: dict) -> tuple:
    """What makes two endpoints the same one (hashEndpoint): addresses, hostname and the
    target's namespace and name."""
    ref = endpoint.get("targetRef") or {}
    return (tuple(sorted(endpoint.get("addresses") or [])), endpoint.get("hostname") or "",
            ref.get("namespace", ""), ref.get("name", ""))


def endpoints_equal_beyond_key(a: dict, b: dict) -> bool:
    """EndpointsEqualBeyondHash: node, zone, conditions and target (resourceVersion aside)."""
    if a.get("nodeName") != b.get("nodeName") or a.get("zone") != b.get("zone"):
        return False
    ca, cb = a.get("conditions") or {}, b.get("conditions") or {}
    if any(ca.get(c) != cb.get(c) for c in ("ready", "serving", "terminating")):
        return False
    ra = {k: v for k, v in (a.get("targetRef") or {}).items() if k != "resourceVersion"}
    rb = {k: v for k, v in (b.get("targetRef") or {}).items() if k != "resourceVersion"}
    return ra == rb


def pop_first(want: dict) -> dict:
    return want.pop(next(iter(want)))


def wire_form(es: dict) -> dict:
    """How a slice goes over the wire: empty ports omitted, empty endpoints null."""
    out = dict(es)
    if not out.get("ports"):
        out.pop("ports", None)
    if not out.get("endpoints"):
        out["endpoints"] = None
    return out


def set_trigger_time(es: dict, trigger_time) -> None:
    m = es["metadata"]
    annotations = dict(m.get("annotations") or {})
    if trigger_time is not None:
        annotations[ANNOTATION_TRIGGER_TIME] = format_trigger_time(trigger_time)
    else:
        annotations.pop(ANNOTATION_TRIGGER_TIME, None)
    if annotations:
        m["annotations"] = annotations
    else:
        m.pop("annotations", None)


async def apply_slice_plan(client, tracker: SliceTracker, key: str, owner: dict, plan,
                           stamp: Callable[[dict], None] | None = None) -> None:
    """Write a plan's creates, updates and deletes (slices of `owner`, a Service or an Endpoints)
    and tell the tracker; `stamp` edits each slice just before it is written. No creates while
    the owner is being deleted; a namespace being deleted ends the creates quietly."""
    namespace = owner["metadata"]["namespace"]
    if not owner["metadata"].get("deletionTimestamp"):
        for es in plan.create:
            if stamp:
                stamp(es)
            try:
                created = await client.create("discovery.k8s.io/v1", "endpointslices", wire_form(es),
                                              namespace=namespace)
            except errors.APIError as exc:
                if errors.namespace_terminating(exc):
                    return
                raise
            tracker.update(key, created)
    for es in plan.update:
        if stamp:
            stamp(es)
        updated = await client.update("discovery.k8s.io/v1", "endpointslices", wire_form(es), namespace=namespace)
        tracker.update(key, updated)
    for es in plan.delete:
        await delete_slice(client, tracker, key, es)


def recycle(create: list[dict], delete: list[dict], may_reuse: Callable[[dict, dict], bool]) -> list[dict]:
    """Turn creates into updates of slices about to be deleted (finalize): returns the
    updates; `create` and `delete` lose the pairs used."""
    updates = []
    i = 0
    while create and i < len(delete):
        if may_reuse(delete[i], create[-1]):
            es = create.pop()
            es["metadata"].pop("generateName", None)
            es["metadata"]["name"] = delete.pop(i)["metadata"]["name"]
            updates.append(es)
        else:
            i += 1
    return updates


# --- pure planning ----------------------------------------------------------------------

def endpoint_ports(service: dict, pod: dict) -> list[dict]:
    """The slice ports of one pod: each Service port resolved on the pod (getEndpointPorts);
    ports the pod lacks are left out."""
    out = []
    for service_port in (service.get("spec") or {}).get("ports") or []:
        number = find_port(pod, service_port)
        if number is None:
            continue
        port = {"name": service_port.get("name") or "", "port": number,
                "protocol": service_port.get("protocol") or "TCP"}
        if service_port.get("appProtocol"):
            port["appProtocol"] = service_port["appProtocol"]
        out.append(port)
    return out


def pod_to_endpoint(pod: dict, node: dict | None, service: dict, address_type: str) -> dict:
    """ready = serving and not terminating (or publishNotReadyAddresses); serving = Ready."""
    serving = is_pod_ready(pod)
    terminating = is_terminating(pod)
    ready = bool((service.get("spec") or {}).get("publishNotReadyAddresses")) or (serving and not terminating)
    endpoint = {"addresses": pod_addresses_of_type(pod, address_type),
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}
    if should_set_hostname(pod, service):
        endpoint["hostname"] = pod["spec"]["hostname"]
    endpoint["targetRef"] = pod_reference(pod)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        endpoint["nodeName"] = node_name
    zone = (((node or {}).get("metadata") or {}).get("labels") or {}).get(LABEL_TOPOLOGY_ZONE)
    if zone:
        endpoint["zone"] = zone
    return endpoint


def slice_labels(current: dict | None, service: dict) -> tuple[dict, bool]:
    """(the labels a slice of this Service must have, whether its copy of the Service's
    labels differs) — setEndpointSliceLabels."""
    def unreserved(labels):
        return {k: v for k, v in (labels or {}).items() if k not in RESERVED_LABELS}

    service_labels = unreserved(service["metadata"].get("labels"))
    changed = unreserved(current) != service_labels
    labels = dict(service_labels)
    if not is_service_ip_set(service):
        labels[LABEL_HEADLESS] = ""
    labels[LABEL_SERVICE_NAME] = service["metadata"]["name"]
    labels[LABEL_MANAGED_BY] = CONTROLLER_NAME
    return labels, changed


def new_slice(service: dict, ports: list[dict], address_type: str) -> dict:
    m = service["metadata"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": f"{m['name']}-", "namespace": m.get("namespace", ""),
                         "labels": slice_labels(None, service)[0],
                         "ownerReferences": [owner_reference(service, "v1", "Service")]},
            "addressType": address_type, "endpoints": [], "ports": list(ports)}


def owned_by(es: dict, service: dict) -> bool:
    uid = service["metadata"].get("uid")
    return any(o.get("uid") == uid and o.get("kind") == "Service" and o.get("apiVersion") == "v1"
               for o in (es.get("metadata") or {}).get("ownerReferences") or [])


def _is_same_placeholder(es: dict, placeholder: dict) -> bool:
    m, pm = es.get("metadata") or {}, placeholder["metadata"]
    return m.get("namespace") == pm["namespace"] and (m.get("labels") or {}) == pm["labels"] \
        and (m.get("ownerReferences") or []) == pm["ownerReferences"] \
        and es.get("addressType") == placeholder["addressType"] \
        and not es.get("endpoints") and not es.get("ports")


def _slice_to_fill(candidates: list[dict], count: int, max_endpoints: int) -> dict | None:
    """The slice that ends closest to full once `count` endpoints are added (getSliceToFill)."""
    best, best_room = None, max_endpoints
    for es in candidates:
        room = max_endpoints - (count + len(es.get("endpoints") or []))
        if 0 <= room < best_room:
            best, best_room = es, room
            if room == 0:
                break
    return best


@dataclass
class SlicePlan:
    create: list[dict] = field(default_factory=list)
    update: list[dict] = field(default_factory=list)
    delete: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def plan_slices(service: dict, pods: list[dict], existing: list[dict], node_lookup: NodeLookup,
                max_endpoints: int = MAX_ENDPOINTS_PER_SLICE) -> SlicePlan:
    """What to create, update and delete so that the Service's slices hold its pods
    (Reconciler.Reconcile). `existing` are the slices this controller manages for it."""
    plan = SlicePlan()
    address_types = service_address_types(service)
    by_type: dict[str, list[dict]] = {}
    wrong_type = []
    for es in existing:
        if es.get("addressType") in address_types:
            by_type.setdefault(es["addressType"], []).append(es)
        else:
            wrong_type.append(es)
    for address_type in address_types:
        _plan_address_type(service, pods, by_type.get(address_type, []), address_type, node_lookup,
                           max_endpoints, plan)
    plan.delete.extend(wrong_type)
    return plan


def _plan_address_type(service: dict, pods: list[dict], existing: list[dict], address_type: str,
                       node_lookup: NodeLookup, max_endpoints: int, plan: SlicePlan) -> None:
    delete: list[dict] = []
    existing_by_ports: dict[tuple, list[dict]] = {}
    for es in existing:
        if owned_by(es, service):
            existing_by_ports.setdefault(ports_key(es.get("ports")), []).append(es)
        else:
            delete.append(es)  # a slice of an older Service of the same name

    desired: dict[tuple, dict[tuple, dict]] = {}
    desired_ports: dict[tuple, list[dict]] = {}
    publish_not_ready = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, True):
            continue
        ports = endpoint_ports(service, pod)
        key = ports_key(ports)
        want = desired.setdefault(key, {})
        desired_ports.setdefault(key, ports)
        node_name = (pod.get("spec") or {}).get("nodeName")
        node = node_lookup(node_name) if node_name else None
        if node_name and node is None and not publish_not_ready:
            m = service["metadata"]
            plan.errors.append(f"skipping Pod {pod['metadata']['name']} for Service {m['namespace']}/{m['name']}: "
                               f"Node {node_name} Not Found")
            continue
        endpoint = pod_to_endpoint(pod, node, service, address_type)
        if endpoint["addresses"]:
            want[endpoint_key(endpoint)] = endpoint

    create: list[dict] = []
    update: list[dict] = []
    for key, want in desired.items():
        c, u, d = _plan_port_mapping(service, existing_by_ports.get(key, []), want, desired_ports[key],
                                     address_type, max_endpoints)
        create += c
        update += u
        delete += d
    for key, slices in existing_by_ports.items():
        if key not in desired:
            delete += slices

    if len(existing) == len(delete) and not create:
        placeholder = new_slice(service, [], address_type)
        if len(delete) == 1 and _is_same_placeholder(delete[0], placeholder):
            delete = []
        else:
            create.append(placeholder)

    update += recycle(create, delete, lambda old, new: old.get("addressType") == new["addressType"]
                      and owned_by(old, service))
    plan.create += create
    plan.update += update
    plan.delete += delete


def _plan_port_mapping(service: dict, existing: list[dict], want: dict[tuple, dict], ports: list[dict],
                       address_type: str, max_endpoints: int) -> tuple[list[dict], list[dict], list[dict]]:
    """reconcileByPortMapping: (create, update, delete) for one group of slices."""
    by_name: dict[str, dict] = {}
    unchanged: list[str] = []
    to_update: dict[str, dict] = {}
    delete: list[dict] = []
    # 1. keep desired endpoints where they are; drop the rest; note label changes.
    for es in existing:
        name = es["metadata"]["name"]
        by_name[name] = es
        current = es.get("endpoints") or []
        kept, changed = [], False
        for endpoint in current:
            got = want.pop(endpoint_key(endpoint), None)
            if got is not None:
                kept.append(got)
                changed = changed or not endpoints_equal_beyond_key(got, endpoint)
        labels, labels_changed = slice_labels(es["metadata"].get("labels"), service)
        if changed or len(kept) != len(current):
            if not kept:
                delete.append(es)
                continue
            copy = deep_copy(es)
            copy["endpoints"] = kept
            copy["metadata"]["labels"] = labels
            to_update[name] = copy
        elif labels_changed:
            copy = deep_copy(es)
            copy["metadata"]["labels"] = labels
            to_update[name] = copy
        else:
            unchanged.append(name)
    # 2. fill the slices that change anyway, fullest first.
    if want and to_update:
        for es in sorted(to_update.values(), key=lambda s: len(s["endpoints"]), reverse=True):
            while want and len(es["endpoints"]) < max_endpoints:
                es["endpoints"].append(pop_first(want))
    # 3. the rest: into the unchanged slice that ends closest to full, else new slices.
    create: list[dict] = []
    while want:
        target = None
        if len(want) < max_endpoints and unchanged:
            target = _slice_to_fill([by_name[n] for n in unchanged], len(want), max_endpoints)
        if target is None:
            target = new_slice(service, ports, address_type)
        else:
            target = deep_copy(target)
            target["endpoints"] = target.get("endpoints") or []
        while want and len(target["endpoints"]) < max_endpoints:
            target["endpoints"].append(pop_first(want))
        name = target["metadata"].get("name")
        if name:
            to_update[name] = target
            unchanged.remove(name)
        else:
            create.append(target)
    return create, list(to_update.values()), delete


# --- the controller ---------------------------------------------------------------------

def managed_by_us(es: dict) -> bool:
    return ((es.get("metadata") or {}).get("labels") or {}).get(LABEL_MANAGED_BY) == CONTROLLER_NAME


def service_key_of(es: dict) -> str | None:
    m = es.get("metadata") or {}
    name = (m.get("labels") or {}).get(LABEL_SERVICE_NAME)
    return f"{m.get('namespace', '')}/{name}" if name else None


class EndpointSliceController(ServicePodHandlers, Controller):
    name = "endpointslice-controller"
    workers = 5

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tracker = SliceTracker()
        self.max_endpoints = MAX_ENDPOINTS_PER_SLICE

    def setup(self) -> None:
        self.services = self.watch_services_and_pods()
        self.slices = self.informers.informer("discovery.k8s.io/v1", "endpointslices")
        self.nodes = self.informers.informer("v1", "nodes")
        self.slices.add_handlers(self._slice_added, self._slice_updated, self._slice_deleted)
        self.nodes.add_handlers(on_add=self._node_added)

    # pods, nodes and slices -> Service keys

    def _node_added(self, node: dict) -> None:
        """Pods skipped for a Node not yet known get their slices once it appears."""
        for pod in self.pods.on_node(node["metadata"]["name"]):
            for key in services_for_pod(self.service_index, pod):
                self.queue.add(key)

    def _queue_for_slice(self, es: dict) -> None:
        key = service_key_of(es)
        if key:
            self.queue.add_after(key, SLICE_CHANGE_MIN_SYNC_DELAY)

    def _slice_added(self, es: dict) -> None:
        key = service_key_of(es)
        if key and managed_by_us(es) and self.tracker.should_sync(key, es):
            self._queue_for_slice(es)

    def _slice_updated(self, old: dict, new: dict) -> None:
        if service_key_of(old) != service_key_of(new):
            self._queue_for_slice(new)
            self._queue_for_slice(old)
            return
        key = service_key_of(new)
        if key and (managed_by_us(old) != managed_by_us(new)
                    or (managed_by_us(new) and self.tracker.should_sync(key, new))):
            self._queue_for_slice(new)

    def _slice_deleted(self, es: dict) -> None:
        key = service_key_of(es)
        if key and managed_by_us(es) and self.tracker.has(key, es) and not self.tracker.handle_deletion(key, es):
            self._queue_for_slice(es)

    def _managed_slices(self, namespace: str, name: str) -> list[dict]:
        return [es for es in self.slices.list(namespace)
                if managed_by_us(es) and es["metadata"].get("labels", {}).get(LABEL_SERVICE_NAME) == name]

    def _node(self, name: str) -> dict | None:
        return self.nodes.get(name)

    # sync

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        service = self.services.get(key)
        if service is None:
            await self._delete_slices_of_deleted_service(key, namespace, name)
            return
        if (service.get("spec") or {}).get("type") == "ExternalName" or service_selector(service) is None:
            return
        pods = self.pods.matching(namespace, service_selector(service))
        slices = [es for es in self._managed_slices(namespace, name)
                  if not es["metadata"].get("deletionTimestamp")]
        if self.tracker.stale(key, slices):
            raise stale_cache_error("EndpointSlice informer cache is out of date")
        trigger_time = self.trigger_times.compute(service, pods)
        plan = plan_slices(service, pods, slices, self._node, self.max_endpoints)
        try:
            await self._apply(key, service, plan, trigger_time)
        except errors.APIError as exc:
            self._failed(service, exc.message)
            raise
        if plan.errors:
            message = plan.errors[0] if len(plan.errors) == 1 else "[" + ", ".join(plan.errors) + "]"
            self._failed(service, message)
            raise RuntimeError(message)

    def _failed(self, service: dict, message: str) -> None:
        m = service["metadata"]
        self.recorder.event(service, "Warning", "FailedToUpdateEndpointSlices",
                            f"Error updating Endpoint Slices for Service {m['namespace']}/{m['name']}: {message}")

    async def _apply(self, key: str, service: dict, plan: SlicePlan, trigger_time) -> None:
        await apply_slice_plan(self.client, self.tracker, key, service, plan,
                               stamp=lambda es: set_trigger_time(es, trigger_time))

    async def _delete_slices_of_deleted_service(self, key: str, namespace: str, name: str) -> None:
        """The garbage collector removes these through their ownerReferences; doing it here
        too means no slice outlives its Service even without it."""
        self.trigger_times.forget(namespace, name)
        for es in self._managed_slices(namespace, name):
            await delete_slice(self.client, self.tracker, key, es)
        self.tracker.forget(key)
