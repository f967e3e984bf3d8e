"""Pure logic shared by the Endpoints, EndpointSlice and EndpointSlice mirroring controllers
(k8s.io/endpointslice/util and pkg/api/v1/pod in Kubernetes 1.32).

Which pods back a Service (selector, IP, terminal phase, terminating), readiness, named
target ports resolved per pod, hostname for `spec.hostname` + `spec.subdomain`, the address
types a Service wants, which Services a pod change touches, a label index over pods, the
`endpoints.kubernetes.io/last-change-trigger-time` tracker, and the slice-generation tracker
that tells a controller its EndpointSlice cache is behind its own writes.
No I/O here: everything takes and returns plain API dicts.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress

from pocketkube.core import errors
from pocketkube.core.objects import parse_time

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
LABEL_HEADLESS = "service.kubernetes.io/headless"
LABEL_TOPOLOGY_ZONE = "topology.kubernetes.io/zone"
ANNOTATION_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
ANNOTATION_OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
ANNOTATION_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ANNOTATION_LEADER = "control-plane.alpha.kubernetes.io/leader"

ADDRESS_IPV4 = "IPv4"
ADDRESS_IPV6 = "IPv6"


# --- pods -------------------------------------------------------------------------------

def ready_condition(pod: dict) -> dict | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition
    return None


def is_pod_ready(pod: dict) -> bool:
    condition = ready_condition(pod)
    return condition is not None and condition.get("status") == "True"


def is_pod_terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_terminating(obj: dict) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def pod_ips(pod: dict) -> list[str]:
    """status.podIPs, or status.podIP when only that is set."""
    status = pod.get("status") or {}
    ips = [entry.get("ip") for entry in status.get("podIPs") or [] if entry.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return ips


def should_pod_be_in_endpoints(pod: dict, include_terminating: bool) -> bool:
    """Not terminal, has an IP, and (unless asked) not terminating (ShouldPodBeInEndpoints)."""
    if is_pod_terminal(pod) or not pod_ips(pod):
        return False
    return include_terminating or not is_terminating(pod)


def should_set_hostname(pod: dict, service: dict) -> bool:
    """A pod's hostname is published when its subdomain names this Service (StatefulSets)."""
    spec = pod.get("spec") or {}
    pod_meta, svc_meta = pod.get("metadata") or {}, service.get("metadata") or {}
    return bool(spec.get("hostname")) and spec.get("subdomain") == svc_meta.get("name") \
        and pod_meta.get("namespace") == svc_meta.get("namespace")


def _container_ports(pod: dict):
    spec = pod.get("spec") or {}
    for container in spec.get("containers") or []:
        yield from container.get("ports") or []
    for container in spec.get("initContainers") or []:  # sidecars only
        if container.get("restartPolicy") == "Always":
            yield from container.get("ports") or []


def find_port(pod: dict, service_port: dict) -> int | None:
    """The port a Service port reaches on this pod: a number as is, a name looked up among
    the pod's container ports of the same protocol (FindPort). None when the pod has no such
    named port."""
    target = service_port.get("targetPort")
    if target is None or target == "":
        target = service_port.get("port")
    if isinstance(target, int):
        return target
    protocol = service_port.get("protocol") or "TCP"
    for port in _container_ports(pod):
        if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
            return port.get("containerPort")
    return None


def pod_endpoints_changed(old: dict, new: dict) -> tuple[bool, bool]:
    """(the pod changed in a way that changes its endpoint, its Service membership may have
    changed) — podEndpointsChanged."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    labels_changed = (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels") \
        or old_spec.get("hostname") != new_spec.get("hostname") \
        or old_spec.get("subdomain") != new_spec.get("subdomain")
    pod_changed = (old.get("metadata") or {}).get("deletionTimestamp") != \
        (new.get("metadata") or {}).get("deletionTimestamp") \
        or is_pod_ready(old) != is_pod_ready(new) \
        or pod_ips(old) != pod_ips(new) \
        or is_pod_terminal(old) != is_pod_terminal(new) \
        or old_spec.get("nodeName") != new_spec.get("nodeName")
    return pod_changed, labels_changed


# --- services ---------------------------------------------------------------------------

def service_selector(service: dict) -> dict | None:
    """The selector, or None when the Service has none (an empty selector is none too: it
    does not survive the API's storage round trip in Kubernetes)."""
    return (service.get("spec") or {}).get("selector") or None


def selector_matches(selector: dict, labels: dict | None) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def is_service_ip_set(service: dict) -> bool:
    cluster_ip = (service.get("spec") or {}).get("clusterIP") or ""
    return cluster_ip not in ("", "None")


def is_headless(service: dict) -> bool:
    return (service.get("spec") or {}).get("clusterIP") == "None"


def ip_family(ip: str) -> str | None:
    try:
        return ADDRESS_IPV6 if ipaddress.ip_address(ip).version == 6 else ADDRESS_IPV4
    except ValueError:
        return None


def service_address_types(service: dict) -> list[str]:
    """The EndpointSlice address types a Service wants: one per ipFamilies entry; without
    ipFamilies, the family of the ClusterIP, or both for a headless Service."""
    spec = service.get("spec") or {}
    types = []
    for family in spec.get("ipFamilies") or []:
        if family in (ADDRESS_IPV4, ADDRESS_IPV6) and family not in types:
            types.append(family)
    if types:
        return types
    if is_service_ip_set(service):
        return [ip_family(spec["clusterIP"]) or ADDRESS_IPV4]
    return [ADDRESS_IPV4, ADDRESS_IPV6]


def pod_address_for_service(service: dict, pod: dict) -> str | None:
    """The pod IP of the Service's primary family (podToEndpointAddressForService)."""
    spec = service.get("spec") or {}
    families = spec.get("ipFamilies") or []
    if families:
        family = families[0]
    elif is_service_ip_set(service):
        family = ip_family(spec["clusterIP"]) or ADDRESS_IPV4
    else:
        status = pod.get("status") or {}
        family = ip_family(status.get("podIP") or "") or ADDRESS_IPV4
    for ip in pod_ips(pod):
        if ip_family(ip) == family:
            return ip
    return None


def pod_addresses_of_type(pod: dict, address_type: str) -> list[str]:
    """Every pod IP of one family, normalized (getEndpointAddresses)."""
    out = []
    for ip in pod_ips(pod):
        try:
            parsed = ipaddress.ip_address(ip)
        except ValueError:
            continue
        if (parsed.version == 6) == (address_type == ADDRESS_IPV6):
            out.append(str(parsed))
    return out


def services_for_pod(index: "ServiceIndex", pod: dict) -> set[str]:
    """Keys of the Services (with a selector) whose selector matches the pod's labels
    (GetPodServiceMemberships)."""
    m = pod.get("metadata") or {}
    return index.matching(m.get("namespace", ""), m.get("labels") or {})


def services_to_update_on_pod_change(index: "ServiceIndex", old: dict, new: dict) -> set[str]:
    """The Services a pod update concerns (GetServicesToUpdateOnPodChange): none for a resync
    or an irrelevant change; on a label change, the union (pod changed too) or the symmetric
    difference (only labels changed) of the old and new memberships."""
    if (old.get("metadata") or {}).get("resourceVersion") == (new.get("metadata") or {}).get("resourceVersion"):
        return set()
    pod_changed, labels_changed = pod_endpoints_changed(old, new)
    if not pod_changed and not labels_changed:
        return set()
    current = services_for_pod(index, new)
    if not labels_changed:
        return current
    previous = services_for_pod(index, old)
    return current | previous if pod_changed else current ^ previous


def owner_reference(obj: dict, api_version: str, kind: str) -> dict:
    """A controller ownerReference to obj (metav1.NewControllerRef)."""
    m = obj["metadata"]
    return {"apiVersion": api_version, "kind": kind, "name": m["name"], "uid": m.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


def pod_reference(pod: dict) -> dict:
    m = pod["metadata"]
    ref = {"kind": "Pod", "namespace": m.get("namespace", ""), "name": m["name"]}
    if m.get("uid"):
        ref["uid"] = m["uid"]
    return ref


# --- indexes and trackers ---------------------------------------------------------------

class PodIndex:
    """Pods by namespace and label pair, so "the pods a selector matches" does not scan
    every pod of the cluster (the lister's namespace index, plus labels)."""

    def __init__(self) -> None:
        self._pods: dict[str, dict] = {}
        self._by_label: dict[tuple[str, str, str], set[str]] = {}

    def __len__(self) -> int:
        return len(self._pods)

    def upsert(self, pod: dict) -> None:
        key = _key(pod)
        old = self._pods.get(key)
        if old is not None:
            self._unindex(key, old)
        self._pods[key] = pod
        ns = pod["metadata"].get("namespace", "")
        for k, v in ((pod["metadata"].get("labels")) or {}).items():
            self._by_label.setdefault((ns, k, v), set()).add(key)

    def remove(self, pod: dict) -> None:
        key = _key(pod)
        old = self._pods.pop(key, None)
        if old is not None:
            self._unindex(key, old)

    def _unindex(self, key: str, pod: dict) -> None:
        ns = pod["metadata"].get("namespace", "")
        for k, v in ((pod["metadata"].get("labels")) or {}).items():
            members = self._by_label.get((ns, k, v))
            if members is not None:
                members.discard(key)
                if not members:
                    del self._by_label[(ns, k, v)]

    def matching(self, namespace: str, selector: dict) -> list[dict]:
        """Pods of the namespace whose labels match every pair of a non-empty selector,
        ordered by name."""
        if not selector:
            return []
        candidates = None
        for k, v in selector.items():
            members = self._by_label.get((namespace, k, v))
            if not members:
                return []
            if candidates is None or len(members) < len(candidates):
                candidates = members
        pods = [self._pods[key] for key in candidates]
        pods = [p for p in pods if selector_matches(selector, p["metadata"].get("labels"))]
        return sorted(pods, key=lambda p: p["metadata"]["name"])

    def on_node(self, node_name: str) -> list[dict]:
        return [p for p in self._pods.values() if (p.get("spec") or {}).get("nodeName") == node_name]


class ServiceIndex:
    """Services with a selector, by namespace and selector pair, so "the Services a pod
    belongs to" looks only at Services that select one of its labels."""

    def __init__(self) -> None:
        self._selectors: dict[str, tuple[str, dict]] = {}
        self._by_pair: dict[tuple[str, str, str], set[str]] = {}

    def upsert(self, service: dict) -> None:
        self.remove(service)
        selector = service_selector(service)
        if selector is None:
            return
        key = _key(service)
        ns = service["metadata"].get("namespace", "")
        self._selectors[key] = (ns, selector)
        for k, v in selector.items():
            self._by_pair.setdefault((ns, k, v), set()).add(key)

    def remove(self, service: dict) -> None:
        key = _key(service)
        old = self._selectors.pop(key, None)
        if old is None:
            return
        ns, selector = old
        for k, v in selector.items():
            members = self._by_pair.get((ns, k, v))
            if members is not None:
                members.discard(key)
                if not members:
                    del self._by_pair[(ns, k, v)]

    def matching(self, namespace: str, labels: dict) -> set[str]:
        candidates: set[str] = set()
        for k, v in labels.items():
            candidates |= self._by_pair.get((namespace, k, v), set())
        return {key for key in candidates if selector_matches(self._selectors[key][1], labels)}


def _key(obj: dict) -> str:
    m = obj["metadata"]
    return f"{m.get('namespace', '')}/{m['name']}"


def format_trigger_time(t: _dt.datetime) -> str:
    """Go's RFC3339Nano in UTC: fractional seconds only when not zero, trailing zeros cut."""
    t = t.astimezone(_dt.timezone.utc)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += "." + f"{t.microsecond:06d}".rstrip("0")
    return text + "Z"


class TriggerTimeTracker:
    """Computes the `last-change-trigger-time` annotation (TriggerTimeTracker): the earliest
    pod Ready-transition (or Service creation) time that changed since the previous sync of
    that Service; the Service's creation time on its first sync; None when nothing changed."""

    def __init__(self) -> None:
        self._states: dict[str, tuple[_dt.datetime | None, dict[str, _dt.datetime]]] = {}

    def compute(self, service: dict, pods: list[dict]) -> _dt.datetime | None:
        m = service["metadata"]
        key = f"{m.get('namespace', '')}/{m['name']}"
        known = key in self._states
        last_service_time, last_pod_times = self._states.get(key, (None, {}))
        earliest = None
        pod_times = {}
        for pod in pods:
            condition = ready_condition(pod)
            t = parse_time(condition.get("lastTransitionTime")) if condition else None
            if t is None:
                continue
            name = pod["metadata"]["name"]
            pod_times[name] = t
            previous = last_pod_times.get(name)
            if previous is None or t > previous:
                earliest = t if earliest is None or t < earliest else earliest
        service_time = parse_time(m.get("creationTimestamp"))
        if service_time is not None and (last_service_time is None or service_time > last_service_time):
            earliest = service_time if earliest is None or service_time < earliest else earliest
        self._states[key] = (service_time, pod_times)
        if not known:
            return service_time
        return earliest

    def forget(self, namespace: str, name: str) -> None:
        self._states.pop(f"{namespace}/{name}", None)


def stale_cache_error(message: str) -> errors.APIError:
    """The error a sync returns when its cache has not yet seen its own last write: a
    conflict, retried with backoff (and logged quietly) like any other."""
    return errors.APIError(409, "Conflict", message)


DELETION_EXPECTED = -1


class SliceTracker:
    """The generations of the EndpointSlices a controller last wrote, per owner key
    (EndpointSliceTracker): a sync that sees older slices than it wrote waits for the cache."""

    def __init__(self) -> None:
        self._generations: dict[str, dict[str, int]] = {}

    @staticmethod
    def _uid_generation(es: dict) -> tuple[str, int]:
        m = es["metadata"]
        return m.get("uid", ""), int(m.get("generation") or 0)

    def should_sync(self, owner_key: str, es: dict) -> bool:
        """True when the slice is not one of ours at this generation (someone else wrote it)."""
        uid, generation = self._uid_generation(es)
        tracked = self._generations.get(owner_key, {}).get(uid)
        return tracked is None or generation > tracked

    def has(self, owner_key: str, es: dict) -> bool:
        return self._uid_generation(es)[0] in self._generations.get(owner_key, {})

    def stale(self, owner_key: str, slices: list[dict]) -> bool:
        tracked = self._generations.get(owner_key)
        if not tracked:
            return False
        provided = set()
        for es in slices:
            uid, generation = self._uid_generation(es)
            provided.add(uid)
            g = tracked.get(uid)
            if g is not None and (g == DELETION_EXPECTED or g > generation):
                return True
        return any(g != DELETION_EXPECTED and uid not in provided for uid, g in tracked.items())

    def update(self, owner_key: str, es: dict) -> None:
        uid, generation = self._uid_generation(es)
        self._generations.setdefault(owner_key, {})[uid] = generation

    def expect_deletion(self, owner_key: str, es: dict) -> None:
        self._generations.setdefault(owner_key, {})[self._uid_generation(es)[0]] = DELETION_EXPECTED

    def handle_deletion(self, owner_key: str, es: dict) -> bool:
        """Forget a deleted slice; True when its deletion was ours (expected)."""
        tracked = self._generations.get(owner_key)
        if tracked is None:
            return True
        g = tracked.pop(self._uid_generation(es)[0], None)
        if not tracked:
            del self._generations[owner_key]
        return g is None or g == DELETION_EXPECTED

    def forget(self, owner_key: str) -> None:
        self._generations.pop(owner_key, None)


class ServicePodHandlers:
    """What the Endpoints and EndpointSlice controllers share: the Service and pod indexes,
    the trigger times, and the informer handlers that keep the indexes current and queue
    every Service a change touches (`watch_services_and_pods`). The controller provides
    `informers`, `queue` and `enqueue`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pods = PodIndex()
        self.service_index = ServiceIndex()
        self.trigger_times = TriggerTimeTracker()

    def watch_services_and_pods(self):
        """Register the handlers; returns the Services informer."""
        services = self.informers.informer("v1", "services")
        services.add_handlers(self._service_changed, lambda old, new: self._service_changed(new),
                              self._service_deleted)
        self.informers.informer("v1", "pods").add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)
        return services

    def _service_changed(self, service: dict) -> None:
        self.service_index.upsert(service)
        self.enqueue(service)

    def _service_deleted(self, service: dict) -> None:
        self.service_index.remove(service)
        self.enqueue(service)

    def _pod_added(self, pod: dict) -> None:
        self.pods.upsert(pod)
        for key in services_for_pod(self.service_index, pod):
            self.queue.add(key)

    def _pod_updated(self, old: dict, new: dict) -> None:
        self.pods.upsert(new)
        for key in services_to_update_on_pod_change(self.service_index, old, new):
            self.queue.add(key)

    def _pod_deleted(self, pod: dict) -> None:
        self.pods.remove(pod)
        for key in services_for_pod(self.service_index, pod):
            self.queue.add(key)


async def delete_slice(client, tracker: "SliceTracker", key: str, es: dict) -> None:
    """Delete one EndpointSlice a controller owns and tell its tracker to expect the event
    (an already-gone slice is fine)."""
    try:
        await client.delete("discovery.k8s.io/v1", "endpointslices", es["metadata"]["name"],
                            namespace=es["metadata"]["namespace"])
    except errors.APIError as exc:
        if exc.code != 404:
            raise
        return
    tracker.expect_deletion(key, es)
