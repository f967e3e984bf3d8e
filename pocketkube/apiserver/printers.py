"""Server-side printing: the meta.k8s.io/v1 Table a Kubernetes 1.32 API server sends.

Owns the column definitions (name, type, format, description, priority) and the cell
logic of k/k `pkg/printers/internalversion/printers.go` for every kind pocketkube
serves, and the apiserver's default table convertor (Name, Created At) for the rest.
The real server always generates the wide form (`GenerateOptions{Wide: true}`), so the
priority-1 cells are always present; kubectl hides them unless `-o wide`.

Descriptions are the texts the real server sends: the Go SwaggerDoc strings of the API
fields the printer names (checked against a 1.32 build) or the literal printer texts.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass

from pocketkube.core.selectors import format_label_selector, selector_from_object, selector_from_set

# --- column descriptions -------------------------------------------------------------

_D_NAME = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_D_CREATED = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is "
    "in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_D_CONTAINERS = "Names of each container in the template."
_D_IMAGES = "Images referenced by each container in the template."
_D_POD_READY_STATE = "Number of the pod with ready state"
_D_POD_SELECTOR_LABELS = (
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"
)
_RC_DOC = (
    "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/"
    "#what-is-a-replicationcontroller"
)
_DS_DOC = "https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"

_DESC = {
    "pod.podIP": "podIP address allocated to the pod. Routable at least within the cluster. "
    "Empty if not yet allocated.",
    "pod.nodeName": "NodeName indicates in which node this pod is scheduled. If empty, this pod "
    "is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is "
    "set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field "
    "should not be used to express a desire for the pod to be scheduled on a specific node. "
    "https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename",
    "pod.nominatedNodeName": "nominatedNodeName is set only when this pod preempts other pods on "
    "the node, but it cannot be scheduled right away as preemption victims receive their graceful "
    "termination periods. This field does not guarantee that the pod will be scheduled on this "
    "node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. "
    "Scheduler may also decide to give the resources on this node to a higher priority pod that is "
    "created after preemption. As a result, this field may be different than PodSpec.nodeName when "
    "the pod is scheduled.",
    "pod.readinessGates": "If specified, all readiness gates will be evaluated for pod readiness. "
    "A pod is ready when all its containers are ready AND all conditions specified in the "
    'readiness gates have status equal to "True" More info: '
    "https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
    "pod.nodeSelector": "NodeSelector is a selector which must be true for the pod to fit on a "
    "node. Selector which must match a node's labels for the pod to be scheduled on that node. "
    "More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/",
    "svc.type": "type determines how the Service is exposed. Defaults to ClusterIP. Valid options "
    'are ExternalName, ClusterIP, NodePort, and LoadBalancer. "ClusterIP" allocates a '
    "cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the "
    "selector or if that is not specified, by manual construction of an Endpoints object or "
    'EndpointSlice objects. If clusterIP is "None", no virtual IP is allocated and the endpoints '
    'are published as a set of endpoints rather than a virtual IP. "NodePort" builds on ClusterIP '
    "and allocates a port on every node which routes to the same endpoints as the clusterIP. "
    '"LoadBalancer" builds on NodePort and creates an external load-balancer (if supported in the '
    "current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases "
    "this service to the specified externalName. Several other fields do not apply to "
    "ExternalName services. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types",
    "svc.clusterIP": "clusterIP is the IP address of the service and is usually assigned "
    "randomly. If an address is specified manually, is in-range (as per system configuration), "
    "and is not in use, it will be allocated to the service; otherwise creation of the service "
    "will fail. This field may not be changed through updates unless the type field is also being "
    "changed to ExternalName (which requires this field to be blank) or the type field is being "
    "changed from ExternalName (in which case this field may optionally be specified, as describe "
    'above).  Valid values are "None", empty string (""), or a valid IP address. Setting this to '
    '"None" makes a "headless service" (no virtual IP), which is useful when direct endpoint '
    "connections are preferred and proxying is not required.  Only applies to types ClusterIP, "
    "NodePort, and LoadBalancer. If this field is specified when creating a Service of type "
    "ExternalName, creation will fail. This field will be wiped when updating a Service to type "
    "ExternalName. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
    "svc.externalIPs": "externalIPs is a list of IP addresses for which nodes in the cluster will "
    "also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is "
    "responsible for ensuring that traffic arrives at a node with this IP.  A common example is "
    "external load-balancers that are not part of the Kubernetes system.",
    "svc.ports": "The list of ports that are exposed by this service. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
    "svc.selector": "Route service traffic to pods with label keys and values matching this "
    "selector. If empty or not present, the service is assumed to have an external process "
    "managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, "
    "NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/",
    "ep.subsets": "The set of all endpoints is the union of all subsets. Addresses are placed into "
    "subsets according to the IPs they share. A single address with multiple ports, some of which "
    "are ready and some of which are not (because they come from different containers) will "
    "result in the address being displayed in different subsets for the different ports. No "
    "address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of "
    "addresses and ports that comprise a service.",
    "eps.addressType": "addressType specifies the type of address carried by this EndpointSlice. "
    "All addresses in this slice must be the same type. This field is immutable after creation. "
    "The following address types are currently supported: * IPv4: Represents an IPv4 Address. "
    "* IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name.",
    "eps.ports": "ports specifies the list of network ports exposed by each endpoint in this "
    "slice. Each port must have a unique name. When ports is empty, it indicates that there are no "
    "defined ports. When a port is defined with a nil port value, it indicates \"all ports\". Each "
    "slice may include a maximum of 100 ports.",
    "eps.endpoints": "endpoints is a list of unique endpoints in this slice. Each slice may "
    "include a maximum of 1000 endpoints.",
    "node.kubeletVersion": "Kubelet Version reported by the node.",
    "node.addresses": "List of addresses reachable to the node. Queried from cloud provider, if "
    "available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses "
    "Note: This field is declared as mergeable, but the merge key is not sufficiently unique, "
    "which can cause data corruption when it is merged. Callers should instead use a "
    "full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume "
    "that addresses can change during the lifetime of a Node. However, there are some exceptions "
    "where this may not be possible, such as Pods that inherit a Node's address in its own status "
    "or consumers of the downward API (status.hostIP).",
    "node.osImage": "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 "
    "(wheezy)).",
    "node.kernelVersion": "Kernel Version reported by the node from 'uname -r' (e.g. "
    "3.16.0-0.bpo.4-amd64).",
    "node.containerRuntimeVersion": "ContainerRuntime Version reported by the node through "
    "runtime remote API (e.g. containerd://1.4.2).",
    "event.lastTimestamp": "The time at which the most recent occurrence of this event was "
    "recorded.",
    "event.type": "Type of this event (Normal, Warning), new types could be added in the future",
    "event.reason": "This should be a short, machine understandable string that gives the reason "
    "for the transition into the object's current status.",
    "event.involvedObject": "The object that this event is about.",
    "event.fieldPath": "If referring to a piece of an object instead of an entire object, this "
    "string should contain a valid JSON/Go field access statement, such as "
    "desiredState.manifest.containers[2]. For example, if the object reference is to a container "
    'within a pod, this would take on a value like: "spec.containers{name}" (where "name" refers '
    "to the name of the container that triggered the event) or if no container name is specified "
    '"spec.containers[2]" (container with index 2 in this pod). This syntax is chosen only to have '
    "some well-defined way of referencing a part of an object.",
    "event.source": "The component reporting this event. Should be a short machine understandable "
    "string.",
    "event.message": "A human-readable description of the status of this operation.",
    "event.firstTimestamp": "The time at which the event was first recorded. (Time of server "
    "receipt is in TypeMeta.)",
    "event.count": "The number of times this event has occurred.",
    "secret.type": "Used to facilitate programmatic handling of secret data. More info: "
    "https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
    "secret.data": "Data contains the secret data. Each key must consist of alphanumeric "
    "characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded "
    "string, representing the arbitrary (possibly non-string) data value here. Described in "
    "https://tools.ietf.org/html/rfc4648#section-4",
    "sa.secrets": "Secrets is a list of the secrets in the same namespace that pods running using "
    "this ServiceAccount are allowed to use. Pods are only limited to this list if this service "
    'account has a "kubernetes.io/enforce-mountable-secrets" annotation set to "true". The '
    '"kubernetes.io/enforce-mountable-secrets" annotation is deprecated since v1.32. Prefer '
    "separate namespaces to isolate access to mounted secrets. This field should not be used to "
    "find auto-generated service account token secrets for use outside of pods. Instead, tokens "
    "can be requested directly using the TokenRequest API, or service account token secrets can "
    "be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret",
    "cm.data": "Data contains the configuration data. Each key must consist of alphanumeric "
    "characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData "
    "field. The keys stored in Data must not overlap with the keys in the BinaryData field, this "
    "is enforced during validation process.",
    "lease.holderIdentity": "holderIdentity contains the identity of the holder of a current "
    "lease. If Coordinated Leader Election is used, the holder identity must be equal to the "
    "elected LeaseCandidate.metadata.name field.",
    "scale.spec.replicas": "replicas is the desired number of instances for the scaled object.",
    "scale.status.replicas": "replicas is the actual number of observed instances of the scaled "
    "object.",
    # extensions/v1beta1 texts, which printers.go names for the apps kinds.
    "rs.spec.replicas": "Replicas is the number of desired replicas. This is a pointer to "
    f"distinguish between explicit zero and unspecified. Defaults to 1. More info: {_RC_DOC}",
    "rs.status.replicas": f"Replicas is the most recently observed number of replicas. More info: {_RC_DOC}",
    "rs.status.readyReplicas": "The number of ready replicas for this replica set.",
    "rs.spec.selector": "Selector is a label query over pods that should match the replica count. "
    "If the selector is empty, it is defaulted to the labels present on the pod template. Label "
    "keys and values that must match in order to be controlled by this replica set. More info: "
    + _D_POD_SELECTOR_LABELS,
    "ds.desiredNumberScheduled": "The total number of nodes that should be running the daemon pod "
    f"(including nodes correctly running the daemon pod). More info: {_DS_DOC}",
    "ds.currentNumberScheduled": "The number of nodes that are running at least 1 daemon pod and "
    f"are supposed to run the daemon pod. More info: {_DS_DOC}",
    "ds.numberReady": "The number of nodes that should be running the daemon pod and have one or "
    "more of the daemon pod running and ready.",
    "ds.updatedNumberScheduled": "The total number of nodes that are running updated daemon pod",
    "ds.numberAvailable": "The number of nodes that should be running the daemon pod and have one "
    "or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
    "ds.selector": "A label query over pods that are managed by the daemon set. Must match in "
    "order to be controlled. If empty, defaulted to labels on Pod template. More info: "
    + _D_POD_SELECTOR_LABELS,
    "deploy.updatedReplicas": "Total number of non-terminated pods targeted by this deployment "
    "that have the desired template spec.",
    "deploy.availableReplicas": "Total number of available pods (ready for at least "
    "minReadySeconds) targeted by this deployment.",
    "deploy.selector": "Label selector for pods. Existing ReplicaSets whose pods are selected by "
    "this will be the ones affected by this deployment.",
}


def _col(name: str, description: str, type_: str = "string", priority: int = 0,
         format_: str = "") -> dict:
    return {"name": name, "type": type_, "format": format_, "description": description,
            "priority": priority}


def _name_col(priority: int = 0) -> dict:
    return _col("Name", _D_NAME, format_="name", priority=priority)


def _age_col() -> dict:
    return _col("Age", _D_CREATED)


# --- time ----------------------------------------------------------------------------

def human_duration(seconds: float) -> str:
    """apimachinery duration.HumanDuration: a short, rounded-down human form of a duration."""
    whole = int(seconds)  # truncation toward zero, as Go's int(d.Seconds())
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d" if rest == 0 else f"{days}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        rest = days % 365
        return f"{years}y" if rest == 0 else f"{years}y{rest}d"
    return f"{years}y"


_ZERO_TIME = _dt.datetime(1, 1, 1, tzinfo=_dt.timezone.utc)


def _parse_time(ts: str | None) -> _dt.datetime | None:
    """A metav1.Time / MicroTime string as an aware datetime; None for a zero or missing time."""
    if not ts:
        return None
    try:
        parsed = _dt.datetime.fromisoformat(ts)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    return None if parsed == _ZERO_TIME else parsed


def _aware(now: _dt.datetime) -> _dt.datetime:
    return now if now.tzinfo else now.replace(tzinfo=_dt.timezone.utc)


def translate_timestamp_since(ts: str | None, now: _dt.datetime) -> str:
    """printers.go translateTimestampSince: the age of `ts` at `now`, "<unknown>" if unset."""
    parsed = _parse_time(ts)
    if parsed is None:
        return "<unknown>"
    return human_duration((_aware(now) - parsed).total_seconds())


def _age(obj: dict, now: _dt.datetime) -> str:
    return translate_timestamp_since(_meta(obj).get("creationTimestamp"), now)


# --- small accessors -----------------------------------------------------------------

def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _name(obj: dict) -> str:
    return _meta(obj).get("name") or ""


def _spec(obj: dict) -> dict:
    return obj.get("spec") or {}


def _status(obj: dict) -> dict:
    return obj.get("status") or {}


def _template_containers(obj: dict) -> list[dict]:
    return (((_spec(obj).get("template") or {}).get("spec")) or {}).get("containers") or []


def _container_cells(containers: list[dict]) -> tuple[str, str]:
    """layoutContainerCells: container names and images, each joined by ','."""
    names = ",".join(c.get("name") or "" for c in containers)
    images = ",".join(c.get("image") or "" for c in containers)
    return names, images


def _with_more(items: list[str], limit: int = 3) -> str:
    """The first `limit` items joined by ',', then " + N more..." when there were more."""
    shown = ",".join(items[:limit])
    if len(items) > limit:
        return f"{shown} + {len(items) - limit} more..."
    return shown


# --- label selectors -----------------------------------------------------------------

def _format_labels(labels: dict | None) -> str:
    """labels.FormatLabels: "k=v" sorted by key and joined by ',', or "<none>"."""
    return selector_from_set(labels) or "<none>"


def _deployment_selector(selector: dict | None) -> str:
    """printDeployment's selector cell: LabelSelectorAsSelector(...).String() or "<invalid>"."""
    try:
        return str(selector_from_object(selector))
    except ValueError:
        return "<invalid>"


# --- Pod -----------------------------------------------------------------------------

_POD_COLUMNS = [
    _name_col(),
    _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", "The aggregate status of the containers in this pod."),
    _col("Restarts", "The number of times the containers in this pod have been restarted and "
         "when the last container in this pod has restarted."),
    _age_col(),
    _col("IP", _DESC["pod.podIP"], priority=1),
    _col("Node", _DESC["pod.nodeName"], priority=1),
    _col("Nominated Node", _DESC["pod.nominatedNodeName"], priority=1),
    _col("Readiness Gates", _DESC["pod.readinessGates"], priority=1),
]


def _condition_true(conditions: list[dict], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def _is_restartable(container: dict | None) -> bool:
    return bool(container) and container.get("restartPolicy") == "Always"


def _last_termination(status: dict) -> _dt.datetime | None:
    terminated = (status.get("lastState") or {}).get("terminated")
    return _parse_time(terminated.get("finishedAt")) if terminated else None


def _later(current: _dt.datetime | None, candidate: _dt.datetime | None) -> _dt.datetime | None:
    if candidate is None:
        return current
    return candidate if current is None or candidate > current else current


def _terminated_reason(terminated: dict, prefix: str = "") -> str:
    if terminated.get("reason"):
        return prefix + terminated["reason"]
    if terminated.get("signal"):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{terminated.get('exitCode') or 0}"


@dataclass
class _PodTally:
    """What printPod accumulates while it walks a pod's container statuses."""

    reason: str
    ready: int = 0
    restarts: int = 0
    last_restart: _dt.datetime | None = None
    sidecar_restarts: int = 0
    last_sidecar_restart: _dt.datetime | None = None


def _scan_init_containers(pod: dict, tally: _PodTally) -> bool:
    """Walk init container statuses up to the first unfinished one; True while initializing."""
    init_specs = _spec(pod).get("initContainers") or []
    init_by_name = {c.get("name"): c for c in init_specs}
    for index, cs in enumerate(_status(pod).get("initContainerStatuses") or []):
        tally.restarts += cs.get("restartCount") or 0
        tally.last_restart = _later(tally.last_restart, _last_termination(cs))
        sidecar = _is_restartable(init_by_name.get(cs.get("name")))
        if sidecar:
            tally.sidecar_restarts += cs.get("restartCount") or 0
            tally.last_sidecar_restart = _later(tally.last_sidecar_restart, _last_termination(cs))
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and not terminated.get("exitCode"):
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                tally.ready += 1
            continue
        if terminated is not None:
            tally.reason = _terminated_reason(terminated, "Init:")
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            tally.reason = "Init:" + waiting["reason"]
        else:
            tally.reason = f"Init:{index}/{len(init_specs)}"
        return True
    return False


def _scan_containers(pod: dict, tally: _PodTally) -> None:
    """Walk app container statuses last to first; restarts count sidecars and app containers."""
    conditions = _status(pod).get("conditions") or []
    tally.restarts, tally.last_restart = tally.sidecar_restarts, tally.last_sidecar_restart
    has_running = False
    for cs in reversed(_status(pod).get("containerStatuses") or []):
        tally.restarts += cs.get("restartCount") or 0
        tally.last_restart = _later(tally.last_restart, _last_termination(cs))
        state = cs.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            tally.reason = waiting["reason"]
        elif terminated is not None:
            tally.reason = _terminated_reason(terminated)
        elif cs.get("ready") and state.get("running") is not None:
            has_running = True
            tally.ready += 1
    if tally.reason == "Completed" and has_running:
        tally.reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"


def _pod_status_reason(pod: dict) -> str:
    """The starting Status: status.reason or the phase, unless scheduling gates hold the pod."""
    status = _status(pod)
    if any(c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated"
           for c in status.get("conditions") or []):
        return "SchedulingGated"
    return status.get("reason") or status.get("phase") or ""


def _pod_cells(pod: dict, now: _dt.datetime) -> list:
    spec, status = _spec(pod), _status(pod)
    conditions = status.get("conditions") or []
    tally = _PodTally(reason=_pod_status_reason(pod))
    initializing = _scan_init_containers(pod, tally)
    if not initializing or _condition_true(conditions, "Initialized"):
        _scan_containers(pod, tally)

    reason = tally.reason
    if _meta(pod).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif status.get("phase") not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts = str(tally.restarts)
    if tally.restarts and tally.last_restart is not None:
        since = human_duration((_aware(now) - tally.last_restart).total_seconds())
        restarts = f"{tally.restarts} ({since} ago)"

    total = len(spec.get("containers") or []) + sum(
        1 for c in spec.get("initContainers") or [] if _is_restartable(c))
    pod_ips = status.get("podIPs") or []
    return [
        _name(pod), f"{tally.ready}/{total}", reason, restarts, _age(pod, now),
        (pod_ips[0].get("ip") if pod_ips else "") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        _readiness_gates(spec.get("readinessGates") or [], conditions),
    ]


def _readiness_gates(gates: list[dict], conditions: list[dict]) -> str:
    if not gates:
        return "<none>"
    satisfied = 0
    for gate in gates:
        match = next((c for c in conditions if c.get("type") == gate.get("conditionType")), None)
        if match is not None and match.get("status") == "True":
            satisfied += 1
    return f"{satisfied}/{len(gates)}"


# --- Service, Endpoints, EndpointSlice -------------------------------------------------

_SERVICE_COLUMNS = [
    _name_col(),
    _col("Type", _DESC["svc.type"]),
    _col("Cluster-IP", _DESC["svc.clusterIP"]),
    _col("External-IP", _DESC["svc.externalIPs"]),
    _col("Port(s)", _DESC["svc.ports"]),
    _age_col(),
    _col("Selector", _DESC["svc.selector"], priority=1),
]


def _load_balancer_addresses(status: dict) -> list[str]:
    """loadBalancerStatusStringer (wide): ingress IPs, else hostnames, de-duplicated and sorted."""
    found = set()
    for ingress in ((status.get("loadBalancer") or {}).get("ingress")) or []:
        address = ingress.get("ip") or ingress.get("hostname")
        if address:
            found.add(address)
    return sorted(found)


def _service_external_ip(svc: dict) -> str:
    spec = _spec(svc)
    external_ips = spec.get("externalIPs") or []
    svc_type = spec.get("type") or ""
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) if external_ips else "<none>"
    if svc_type == "LoadBalancer":
        addresses = _load_balancer_addresses(_status(svc)) + external_ips
        return ",".join(addresses) if addresses else "<pending>"
    if svc_type == "ExternalName":
        return spec.get("externalName") or ""
    return "<unknown>"


def _service_ports(ports: list[dict]) -> str:
    pieces = []
    for port in ports:
        protocol = port.get("protocol") or "TCP"
        node_port = port.get("nodePort") or 0
        if node_port > 0:
            pieces.append(f"{port.get('port')}:{node_port}/{protocol}")
        else:
            pieces.append(f"{port.get('port')}/{protocol}")
    return ",".join(pieces) or "<none>"


def _service_cells(svc: dict, now: _dt.datetime) -> list:
    spec = _spec(svc)
    cluster_ips = spec.get("clusterIPs") or []
    return [
        _name(svc), spec.get("type") or "", cluster_ips[0] if cluster_ips else "<none>",
        _service_external_ip(svc), _service_ports(spec.get("ports") or []), _age(svc, now),
        _format_labels(spec.get("selector")),
    ]


_ENDPOINTS_COLUMNS = [_name_col(), _col("Endpoints", _DESC["ep.subsets"]), _age_col()]


def _join_host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _format_endpoints(subsets: list[dict]) -> str:
    """formatEndpoints: ready addresses as ip:port over every subset and port, 3 at most."""
    if not subsets:
        return "<none>"
    entries: list[str] = []
    for subset in subsets:
        addresses = [a.get("ip") or "" for a in subset.get("addresses") or []]
        ports = subset.get("ports") or []
        if not ports:  # a headless service without ports lists bare IPs
            entries.extend(addresses)
            continue
        for port in ports:
            entries.extend(_join_host_port(ip, port.get("port") or 0) for ip in addresses)
    return _with_more(entries)


def _endpoints_cells(ep: dict, now: _dt.datetime) -> list:
    return [_name(ep), _format_endpoints(ep.get("subsets") or []), _age(ep, now)]


_ENDPOINT_SLICE_COLUMNS = [
    _name_col(),
    _col("AddressType", _DESC["eps.addressType"]),
    _col("Ports", _DESC["eps.ports"]),
    _col("Endpoints", _DESC["eps.endpoints"]),
    _age_col(),
]


def _unset_if_empty(items: list[str]) -> str:
    return _with_more(items) or "<unset>"


def _endpoint_slice_cells(eps: dict, now: _dt.datetime) -> list:
    ports = []
    for port in eps.get("ports") or []:
        if port.get("port") is not None:
            ports.append(str(port["port"]))
        elif port.get("name") is not None:
            ports.append(port["name"])
        else:
            ports.append("*")
    addresses = [a for e in eps.get("endpoints") or [] for a in e.get("addresses") or []]
    return [_name(eps), eps.get("addressType") or "", _unset_if_empty(ports),
            _unset_if_empty(addresses), _age(eps, now)]


# --- apps ----------------------------------------------------------------------------

_DEPLOYMENT_COLUMNS = [
    _name_col(),
    _col("Ready", _D_POD_READY_STATE),
    _col("Up-to-date", _DESC["deploy.updatedReplicas"]),
    _col("Available", _DESC["deploy.availableReplicas"]),
    _age_col(),
    _col("Containers", _D_CONTAINERS, priority=1),
    _col("Images", _D_IMAGES, priority=1),
    _col("Selector", _DESC["deploy.selector"], priority=1),
]


def _desired_replicas(obj: dict) -> int:
    replicas = _spec(obj).get("replicas")
    return 1 if replicas is None else replicas


def _deployment_cells(deploy: dict, now: _dt.datetime) -> list:
    status = _status(deploy)
    selector = _deployment_selector(_spec(deploy).get("selector"))
    names, images = _container_cells(_template_containers(deploy))
    return [
        _name(deploy), f"{status.get('readyReplicas') or 0}/{_desired_replicas(deploy)}",
        status.get("updatedReplicas") or 0, status.get("availableReplicas") or 0,
        _age(deploy, now), names, images, selector,
    ]


_REPLICA_SET_COLUMNS = [
    _name_col(),
    _col("Desired", _DESC["rs.spec.replicas"], type_="integer"),
    _col("Current", _DESC["rs.status.replicas"], type_="integer"),
    _col("Ready", _DESC["rs.status.readyReplicas"], type_="integer"),
    _age_col(),
    _col("Containers", _D_CONTAINERS, priority=1),
    _col("Images", _D_IMAGES, priority=1),
    _col("Selector", _DESC["rs.spec.selector"], priority=1),
]


def _replica_set_cells(rs: dict, now: _dt.datetime) -> list:
    """printReplicaSet, and printReplicationController with the map selector formatted as labels."""
    status = _status(rs)
    names, images = _container_cells(_template_containers(rs))
    selector = _spec(rs).get("selector")
    return [
        _name(rs), _desired_replicas(rs), status.get("replicas") or 0,
        status.get("readyReplicas") or 0, _age(rs, now), names, images,
        _format_labels(selector) if rs.get("kind") == "ReplicationController" else format_label_selector(selector),
    ]


_REPLICATION_CONTROLLER_COLUMNS = [
    _name_col(),
    _col("Desired", _DESC["rs.spec.replicas"], type_="integer"),  # the same text as the ReplicaSet's
    _col("Current", _DESC["rs.status.replicas"], type_="integer"),
    _col("Ready", "The number of ready replicas for this replication controller.", type_="integer"),
    _age_col(),
    _col("Containers", _D_CONTAINERS, priority=1),
    _col("Images", _D_IMAGES, priority=1),
    _col("Selector", "Selector is a label query over pods that should match the Replicas count. If Selector "
         "is empty, it is defaulted to the labels present on the Pod template. Label keys and values that "
         "must match in order to be controlled by this replication controller, if empty defaulted to labels "
         "on Pod template. More info: " + _D_POD_SELECTOR_LABELS, priority=1),
]


_JOB_COLUMNS = [
    _name_col(),
    _col("Status", "Status of the job."),
    _col("Completions", 'The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.'),
    _col("Duration", "Time required to complete the job."),
    _age_col(),
    _col("Containers", _D_CONTAINERS, priority=1),
    _col("Images", _D_IMAGES, priority=1),
    _col("Selector", 'A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors', priority=1),
]


def _job_condition(job: dict, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in _status(job).get("conditions") or [])


def _job_cells(job: dict, now: _dt.datetime) -> list:
    """printJob: the status word, succeeded/completions ("N/1 of P" for a work queue), duration."""
    spec, status = _spec(job), _status(job)
    succeeded = status.get("succeeded") or 0
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = _parse_time(status.get("startTime")), _parse_time(status.get("completionTime"))
    duration = "" if start is None else human_duration(((end or now) - start).total_seconds())
    if _job_condition(job, "Complete"):
        word = "Complete"
    elif _job_condition(job, "Failed"):
        word = "Failed"
    elif job["metadata"].get("deletionTimestamp"):
        word = "Terminating"
    elif _job_condition(job, "Suspended"):
        word = "Suspended"
    elif _job_condition(job, "FailureTarget"):
        word = "FailureTarget"
    else:
        word = "Running"
    names, images = _container_cells(_template_containers(job))
    return [_name(job), word, completions, duration, _age(job, now), names, images,
            format_label_selector(spec.get("selector"))]


_CRON_JOB_COLUMNS = [
    _name_col(),
    _col("Schedule", 'The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.'),
    _col("Timezone", 'The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones'),
    _col("Suspend", 'This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.', type_="boolean"),
    _col("Active", 'A list of pointers to currently running jobs.', type_="integer"),
    _col("Last Schedule", 'Information when was the last time the job was successfully scheduled.'),
    _age_col(),
    _col("Containers", _D_CONTAINERS, priority=1),
    _col("Images", _D_IMAGES, priority=1),
    _col("Selector", 'A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors', priority=1),
]


def _cron_job_cells(cj: dict, now: _dt.datetime) -> list:
    spec, status = _spec(cj), _status(cj)
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    last = status.get("lastScheduleTime")
    suspend = spec.get("suspend")
    names, images = _container_cells(((job_spec.get("template") or {}).get("spec") or {}).get("containers") or [])
    return [_name(cj), spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            "<unset>" if suspend is None else str(bool(suspend)), len(status.get("active") or []),
            translate_timestamp_since(last, now) if last else "<none>", _age(cj, now), names, images,
            format_label_selector(job_spec.get("selector"))]


def _binding_columns(what: str, role_ref: str) -> list[dict]:
    return [_name_col(), _col("Role", role_ref), _age_col(),
            _col("Users", f"Users in the {what}", priority=1),
            _col("Groups", f"Groups in the {what}", priority=1),
            _col("ServiceAccounts", f"ServiceAccounts in the {what}", priority=1)]


_ROLE_BINDING_COLUMNS = _binding_columns("roleBinding", 'RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.')
_CLUSTER_ROLE_BINDING_COLUMNS = _binding_columns("clusterRoleBinding", 'RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.')


def _binding_cells(binding: dict, now: _dt.datetime) -> list:
    """printRoleBinding: ROLE as Kind/name; wide, the subjects by kind (service accounts as ns/name)."""
    ref = binding.get("roleRef") or {}
    users, groups, accounts = [], [], []
    for subject in binding.get("subjects") or []:
        kind, name = subject.get("kind"), subject.get("name", "")
        if kind == "ServiceAccount":
            accounts.append(f"{subject.get('namespace', '')}/{name}")
        elif kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
    return [_name(binding), f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(binding, now),
            ", ".join(users), ", ".join(groups), ", ".join(accounts)]


_WEBHOOK_CONFIGURATION_COLUMNS = [
    _name_col(),
    _col("Webhooks", "Webhooks indicates the number of webhooks registered in this configuration", type_="integer"),
    _age_col(),
]


def _webhook_configuration_cells(obj: dict, now: _dt.datetime) -> list:
    return [_name(obj), len(obj.get("webhooks") or []), _age(obj, now)]


_NETWORK_POLICY_COLUMNS = [_name_col(), _col("Pod-Selector", 'podSelector selects the pods to which this NetworkPolicy object applies. The array of ingress rules is applied to any pods selected by this field. Multiple network policies can select the same set of pods. In this case, the ingress rules for each are combined additively. This field is NOT optional and follows standard label selector semantics. An empty podSelector matches all pods in this namespace.'), _age_col()]


def _network_policy_cells(policy: dict, now: _dt.datetime) -> list:
    return [_name(policy), format_label_selector(_spec(policy).get("podSelector") or {}), _age(policy, now)]


_PERSISTENT_VOLUME_CLAIM_COLUMNS = [
    _name_col(),
    _col("Status", "phase represents the current phase of PersistentVolumeClaim."),
    _col("Volume", "volumeName is the binding reference to the PersistentVolume backing this claim."),
    _col("Capacity", "capacity represents the actual resources of the underlying volume."),
    _col("Access Modes", "accessModes contains the actual access modes the volume backing the PVC has. More info: "
                         "https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1"),
    _col("StorageClass", "StorageClass of the pvc"),
    _col("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
    _age_col(),
    _col("VolumeMode", "volumeMode defines what type of volume is required by the claim. Value of Filesystem is "
                       "implied when not included in claim spec.", priority=1),
]
_PERSISTENT_VOLUME_COLUMNS = [
    _name_col(),
    _col("Capacity", "capacity is the description of the persistent volume's resources and capacity. More info: "
                     "https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity"),
    _col("Access Modes", "accessModes contains all ways the volume can be mounted. More info: "
                         "https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes"),
    _col("Reclaim Policy", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released "
                           "from its claim. Valid options are Retain (default for manually created PersistentVolumes), "
                           "Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). "
                           "Recycle must be supported by the volume plugin underlying this PersistentVolume. More "
                           "info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming"),
    _col("Status", "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: "
                   "https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase"),
    _col("Claim", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. "
                  "Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. "
                  "More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding"),
    _col("StorageClass", "StorageClass of the pv"),
    _col("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
    _col("Reason", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing "
                   "and tidy display in the CLI."),
    _age_col(),
    _col("VolumeMode", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to "
                       "remain in raw block state. Value of Filesystem is implied when not included in spec.",
         priority=1),
]
_ACCESS_MODE_ABBREVIATIONS = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                              ("ReadWriteOncePod", "RWOP"))


def _access_modes(modes: list) -> str:
    """GetAccessModesAsString: RWO, ROX, RWX, RWOP in that order, each once."""
    return ",".join(short for mode, short in _ACCESS_MODE_ABBREVIATIONS if mode in (modes or []))


def _volume_phase(obj: dict) -> str:
    return "Terminating" if _meta(obj).get("deletionTimestamp") else _status(obj).get("phase") or ""


def _storage_class(obj: dict) -> str:
    """The beta annotation first, then spec.storageClassName (GetPersistentVolume(Claim)Class)."""
    annotations = _meta(obj).get("annotations") or {}
    return annotations.get("volume.beta.kubernetes.io/storage-class", _spec(obj).get("storageClassName") or "")


def _persistent_volume_claim_cells(pvc: dict, now: _dt.datetime) -> list:
    """printPersistentVolumeClaim: capacity and modes are the bound volume's, shown once bound."""
    spec, status = _spec(pvc), _status(pvc)
    capacity = modes = ""
    if spec.get("volumeName"):
        capacity = (status.get("capacity") or {}).get("storage", "")
        modes = _access_modes(status.get("accessModes"))
    return [_name(pvc), _volume_phase(pvc), spec.get("volumeName") or "", capacity, modes, _storage_class(pvc),
            spec.get("volumeAttributesClassName") or "<unset>", _age(pvc, now), spec.get("volumeMode") or "<unset>"]


def _persistent_volume_cells(pv: dict, now: _dt.datetime) -> list:
    spec = _spec(pv)
    ref = spec.get("claimRef") or {}
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if spec.get("claimRef") else ""
    return [_name(pv), (spec.get("capacity") or {}).get("storage", ""), _access_modes(spec.get("accessModes")),
            spec.get("persistentVolumeReclaimPolicy") or "", _volume_phase(pv), claim, _storage_class(pv),
            spec.get("volumeAttributesClassName") or "<unset>", _status(pv).get("reason") or "", _age(pv, now),
            spec.get("volumeMode") or "<unset>"]


_PDB_COLUMNS = [
    _name_col(),
    _col("Min Available", "The minimum number of pods that must be available."),
    _col("Max Unavailable", "The maximum number of pods that may be unavailable."),
    _col("Allowed Disruptions", "Calculated number of pods that may be disrupted at this time.", "integer"),
    _age_col(),
]


def _pdb_cells(pdb: dict, now: _dt.datetime) -> list:
    spec = _spec(pdb)
    low, high = spec.get("minAvailable"), spec.get("maxUnavailable")
    return [_name(pdb), "N/A" if low is None else str(low), "N/A" if high is None else str(high),
            _status(pdb).get("disruptionsAllowed", 0), _age(pdb, now)]


_PRIORITY_CLASS_COLUMNS = [
    _name_col(),
    _col("Value", "value represents the integer value of this priority class. This is the actual priority that "
                  "pods receive when they have the name of this class in their pod spec.", "integer"),
    _col("Global-Default", "globalDefault specifies whether this PriorityClass should be considered as the default "
                           "priority for pods that do not have any priority class. Only one PriorityClass can be "
                           "marked as `globalDefault`. However, if more than one PriorityClasses exists with their "
                           "`globalDefault` field set to true, the smallest value of such global default "
                           "PriorityClasses will be used as the default priority.", "boolean"),
    _age_col(),
    _col("PreemptionPolicy", "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, "
                             "PreemptLowerPriority. Defaults to PreemptLowerPriority if unset."),
]


def _priority_class_cells(pc: dict, now: _dt.datetime) -> list:
    return [_name(pc), pc.get("value", 0), bool(pc.get("globalDefault")), _age(pc, now),
            pc.get("preemptionPolicy", "")]


_HPA_COLUMNS = [
    _name_col(),
    _col("Reference", "scaleTargetRef points to the target resource to scale, and is used to the pods for which "
                      "metrics should be collected, as well as to actually change the replica count."),
    _col("Targets", "metrics contains the specifications for which to use to calculate the desired replica count "
                    "(the maximum replica count across all metrics will be used)."),
    _col("MinPods", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale "
                    "down."),
    _col("MaxPods", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale "
                    "up."),
    _col("Replicas", "currentReplicas is current number of replicas of pods managed by this autoscaler, as last "
                     "seen by the autoscaler."),
    _age_col(),
]


def _hpa_target(metric: dict, current: dict | None) -> str:
    """One metric of formatHPAMetrics: `NAME: CURRENT/TARGET`, <unknown> before any status."""
    kind = metric.get("type", "")
    spec = metric.get({"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods",
                       "Object": "object", "External": "external"}.get(kind, ""), {}) or {}
    target = spec.get("target") or {}
    name = spec.get("name") or (spec.get("metric") or {}).get("name", "")
    cur = (current or {}).get("current") or {}
    if target.get("averageUtilization") is not None:
        have = cur.get("averageUtilization")
        return f"{name}: {'<unknown>' if have is None else f'{have}%'}/{target['averageUtilization']}%"
    for key in ("averageValue", "value"):
        if target.get(key) is not None:
            have = cur.get(key)
            return f"{name}: {'<unknown>' if have is None else have}/{target[key]}"
    return f"{name}: <unknown>"


def _hpa_cells(hpa: dict, now: _dt.datetime) -> list:
    spec, status = _spec(hpa), _status(hpa)
    ref = spec.get("scaleTargetRef") or {}
    metrics = spec.get("metrics") or []
    currents = status.get("currentMetrics") or []
    parts = [_hpa_target(m, currents[i] if i < len(currents) else None) for i, m in enumerate(metrics)]
    targets = "<none>" if not parts else ", ".join(parts[:4]) + (f" + {len(parts) - 4} more..." if len(parts) > 4
                                                                   else "")
    low = spec.get("minReplicas")
    return [_name(hpa), f"{ref.get('kind', '')}/{ref.get('name', '')}", targets,
            "<unset>" if low is None else str(low), str(spec.get("maxReplicas", 0)),
            str(status.get("currentReplicas", 0)), _age(hpa, now)]


_APISERVICE_COLUMNS = [
    _name_col(),
    _col("Service", "The reference to the service that hosts this API endpoint."),
    _col("Available", "Whether this service is available."),
    _age_col(),
]


def _apiservice_cells(svc: dict, now: _dt.datetime) -> list:
    ref = _spec(svc).get("service")
    service = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else "Local"
    available = "Unknown"
    for c in _status(svc).get("conditions") or []:
        if c.get("type") == "Available":
            available = c.get("status", "") if c.get("status") == "True" or not c.get("reason") else \
                f"{c.get('status', '')} ({c['reason']})"
    return [_name(svc), service, available, _age(svc, now)]


_VAP_COLUMNS = [
    _name_col(),
    _col("Validations", "Validations is the number of validations in this policy.", "integer"),
    _col("ParamKind", "ParamKind specifies the kind of resources used to parameterize this policy"),
    _age_col(),
]


def _vap_cells(policy: dict, now: _dt.datetime) -> list:
    kind = _spec(policy).get("paramKind")
    param = f"{kind.get('apiVersion', '')}/{kind.get('kind', '')}" if kind else "<unset>"
    return [_name(policy), len(_spec(policy).get("validations") or []), param, _age(policy, now)]


_VAP_BINDING_COLUMNS = [
    _name_col(),
    _col("PolicyName", "PolicyName references a ValidatingAdmissionPolicy name which the "
                       "ValidatingAdmissionPolicyBinding binds to."),
    _col("ParamRef", "ParamRef specifies the parameter resource used to configure the admission control policy."),
    _age_col(),
]


def _vap_binding_cells(binding: dict, now: _dt.datetime) -> list:
    ref = _spec(binding).get("paramRef")
    param = "<unset>"
    if ref:
        param = f"{ref['namespace']}/{ref.get('name', '')}" if ref.get("namespace") else ref.get("name", "*")
    return [_name(binding), _spec(binding).get("policyName", ""), param, _age(binding, now)]


_RESOURCE_QUOTA_COLUMNS = [
    _name_col(),
    _col("Request", "Request represents a minimum amount of cpu/memory that a container may consume."),
    _col("Limit", "Limits control the maximum amount of cpu/memory that a container may use independent of "
                  "contention on the node."),
    _age_col(),
]


def _resource_quota_cells(quota: dict, now: _dt.datetime) -> list:
    """printResourceQuota: "used/hard" per resource of status.hard, limits.* in their own column."""
    hard, used = _status(quota).get("hard") or {}, _status(quota).get("used") or {}
    requests, limits = [], []
    for resource in sorted(hard):
        column = limits if resource.split(".")[0] == "limits" and "." in resource else requests
        column.append(f"{resource}: {used.get(resource, '0')}/{hard[resource]}")
    return [_name(quota), ", ".join(requests), ", ".join(limits), _age(quota, now)]


_STATEFUL_SET_COLUMNS = [
    _name_col(),
    _col("Ready", _D_POD_READY_STATE),
    _age_col(),
    _col("Containers", _D_CONTAINERS, priority=1),
    _col("Images", _D_IMAGES, priority=1),
]


def _stateful_set_cells(sts: dict, now: _dt.datetime) -> list:
    names, images = _container_cells(_template_containers(sts))
    ready = _status(sts).get("readyReplicas") or 0
    return [_name(sts), f"{ready}/{_desired_replicas(sts)}", _age(sts, now), names, images]


_DAEMON_SET_COLUMNS = [
    _name_col(),
    _col("Desired", _DESC["ds.desiredNumberScheduled"], type_="integer"),
    _col("Current", _DESC["ds.currentNumberScheduled"], type_="integer"),
    _col("Ready", _DESC["ds.numberReady"], type_="integer"),
    _col("Up-to-date", _DESC["ds.updatedNumberScheduled"], type_="integer"),
    _col("Available", _DESC["ds.numberAvailable"], type_="integer"),
    _col("Node Selector", _DESC["pod.nodeSelector"]),
    _age_col(),
    _col("Containers", _D_CONTAINERS, priority=1),
    _col("Images", _D_IMAGES, priority=1),
    _col("Selector", _DESC["ds.selector"], priority=1),
]


def _daemon_set_cells(ds: dict, now: _dt.datetime) -> list:
    status = _status(ds)
    pod_spec = (_spec(ds).get("template") or {}).get("spec") or {}
    names, images = _container_cells(_template_containers(ds))
    return [
        _name(ds),
        status.get("desiredNumberScheduled") or 0, status.get("currentNumberScheduled") or 0,
        status.get("numberReady") or 0, status.get("updatedNumberScheduled") or 0,
        status.get("numberAvailable") or 0,
        _format_labels(pod_spec.get("nodeSelector")), _age(ds, now), names, images,
        format_label_selector(_spec(ds).get("selector")),
    ]


# --- Node, Namespace, Secret, ConfigMap, ServiceAccount, Lease, Scale --------------------

_NODE_COLUMNS = [
    _name_col(),
    _col("Status", "The status of the node"),
    _col("Roles", "The roles of the node"),
    _age_col(),
    _col("Version", _DESC["node.kubeletVersion"]),
    _col("Internal-IP", _DESC["node.addresses"], priority=1),
    _col("External-IP", _DESC["node.addresses"], priority=1),
    _col("OS-Image", _DESC["node.osImage"], priority=1),
    _col("Kernel-Version", _DESC["node.kernelVersion"], priority=1),
    _col("Container-Runtime", _DESC["node.containerRuntimeVersion"], priority=1),
]

_NODE_ROLE_PREFIX = "node-role.kubernetes.io/"


def _node_roles(node: dict) -> str:
    roles = set()
    for key, value in (_meta(node).get("labels") or {}).items():
        if key.startswith(_NODE_ROLE_PREFIX) and len(key) > len(_NODE_ROLE_PREFIX):
            roles.add(key[len(_NODE_ROLE_PREFIX):])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) or "<none>"


def _node_status(node: dict) -> str:
    ready = None
    for condition in _status(node).get("conditions") or []:
        if condition.get("type") == "Ready":
            ready = condition  # the last one wins, as in the printer's condition map
    states = ["Unknown" if ready is None else
              "Ready" if ready.get("status") == "True" else "NotReady"]
    if _spec(node).get("unschedulable"):
        states.append("SchedulingDisabled")
    return ",".join(states)


def _node_address(node: dict, address_type: str) -> str:
    for address in _status(node).get("addresses") or []:
        if address.get("type") == address_type:
            return address.get("address") or ""
    return "<none>"


def _node_cells(node: dict, now: _dt.datetime) -> list:
    info = _status(node).get("nodeInfo") or {}
    return [
        _name(node), _node_status(node), _node_roles(node), _age(node, now),
        info.get("kubeletVersion") or "",
        _node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
        info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


_NAMESPACE_COLUMNS = [_name_col(), _col("Status", "The status of the namespace"), _age_col()]


def _namespace_cells(ns: dict, now: _dt.datetime) -> list:
    return [_name(ns), _status(ns).get("phase") or "", _age(ns, now)]


_SECRET_COLUMNS = [
    _name_col(),
    _col("Type", _DESC["secret.type"]),
    _col("Data", _DESC["secret.data"]),
    _age_col(),
]


def _secret_cells(secret: dict, now: _dt.datetime) -> list:
    return [_name(secret), secret.get("type") or "", len(secret.get("data") or {}),
            _age(secret, now)]


_CONFIG_MAP_COLUMNS = [_name_col(), _col("Data", _DESC["cm.data"]), _age_col()]


def _config_map_cells(cm: dict, now: _dt.datetime) -> list:
    count = len(cm.get("data") or {}) + len(cm.get("binaryData") or {})
    return [_name(cm), count, _age(cm, now)]


_SERVICE_ACCOUNT_COLUMNS = [_name_col(), _col("Secrets", _DESC["sa.secrets"]), _age_col()]


def _service_account_cells(sa: dict, now: _dt.datetime) -> list:
    return [_name(sa), len(sa.get("secrets") or []), _age(sa, now)]


_LEASE_COLUMNS = [_name_col(), _col("Holder", _DESC["lease.holderIdentity"]), _age_col()]


def _lease_cells(lease: dict, now: _dt.datetime) -> list:
    return [_name(lease), _spec(lease).get("holderIdentity") or "", _age(lease, now)]


_CSR_COLUMNS = [_name_col(), _age_col(),
                _col("SignerName", "Only one signer should be set, the name of the signer."),
                _col("Requestor", "Name of the user that created the request."),
                _col("RequestedDuration", "Requested duration of the issued certificate."),
                _col("Condition", "Condition of the request (Pending, Approved, Denied, Failed; Issued once signed).")]


def _csr_cells(csr: dict, now: _dt.datetime) -> list:
    """printers.go's CertificateSigningRequest row: the conditions as kubectl shows them."""
    conditions = {c.get("type") for c in _status(csr).get("conditions") or [] if c.get("status", "True") == "True"}
    words = [w for w in ("Approved", "Denied", "Failed") if w in conditions] or ["Pending"]
    if _status(csr).get("certificate"):
        words.append("Issued")
    seconds = _spec(csr).get("expirationSeconds")
    return [_name(csr), _age(csr, now), _spec(csr).get("signerName") or "", _spec(csr).get("username") or "",
            human_duration(seconds) if seconds else "<none>", ",".join(words)]


_SCALE_COLUMNS = [
    _col("Name", _D_NAME),  # printers.go gives the Scale Name column no "name" format
    _col("Desired", _DESC["scale.spec.replicas"], type_="integer"),
    _col("Available", _DESC["scale.status.replicas"], type_="integer"),
    _age_col(),
]


def _scale_cells(scale: dict, now: _dt.datetime) -> list:
    return [_name(scale), _spec(scale).get("replicas") or 0,
            _status(scale).get("replicas") or 0, _age(scale, now)]


# --- Event ---------------------------------------------------------------------------

_EVENT_COLUMNS = [
    _col("Last Seen", _DESC["event.lastTimestamp"]),
    _col("Type", _DESC["event.type"]),
    _col("Reason", _DESC["event.reason"]),
    _col("Object", _DESC["event.involvedObject"]),
    _col("Subobject", _DESC["event.fieldPath"], priority=1),
    _col("Source", _DESC["event.source"], priority=1),
    _col("Message", _DESC["event.message"]),
    _col("First Seen", _DESC["event.firstTimestamp"], priority=1),
    _col("Count", _DESC["event.count"], priority=1),
    _name_col(priority=1),
]


def _core_event(event: dict) -> dict:
    """An events.k8s.io/v1 Event in the core/v1 shape the printer reads (the internal form)."""
    new_api = str(event.get("apiVersion") or "").startswith("events.k8s.io/") or (
        "involvedObject" not in event and ("regarding" in event or "note" in event))
    if not new_api:
        return event
    return {
        "metadata": event.get("metadata") or {},
        "involvedObject": event.get("regarding") or {},
        "reason": event.get("reason"),
        "message": event.get("note"),
        "source": event.get("deprecatedSource") or {},
        "firstTimestamp": event.get("deprecatedFirstTimestamp"),
        "lastTimestamp": event.get("deprecatedLastTimestamp"),
        "count": event.get("deprecatedCount"),
        "type": event.get("type"),
        "eventTime": event.get("eventTime"),
        "series": event.get("series"),
        "reportingComponent": event.get("reportingController"),
        "reportingInstance": event.get("reportingInstance"),
    }


def _event_source(event: dict) -> str:
    """formatEventSource: component (or reportingComponent), then ", host" (or instance)."""
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    host = source.get("host") or event.get("reportingInstance") or ""
    return f"{component}, {host}" if host else component


def _event_cells(event: dict, now: _dt.datetime) -> list:
    event = _core_event(event)
    if _parse_time(event.get("firstTimestamp")) is None:
        first_seen = translate_timestamp_since(event.get("eventTime"), now)
    else:
        first_seen = translate_timestamp_since(event.get("firstTimestamp"), now)
    if _parse_time(event.get("lastTimestamp")) is None:
        last_seen = first_seen
    else:
        last_seen = translate_timestamp_since(event.get("lastTimestamp"), now)
    series = event.get("series")
    count = event.get("count") or 0
    if series is not None:
        last_seen = translate_timestamp_since(series.get("lastObservedTime"), now)
        count = series.get("count") or 0
    elif count == 0:
        count = 1  # singleton events of the new API carry no count
    involved = event.get("involvedObject") or {}
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    return [
        last_seen, event.get("type") or "", event.get("reason") or "", target,
        involved.get("fieldPath") or "", _event_source(event),
        (event.get("message") or "").strip(), first_seen, count, _name(event),
    ]


# --- Ingress, IngressClass -------------------------------------------------------------

_INGRESS_COLUMNS = [
    _name_col(),
    _col("Class", "The name of the IngressClass resource that should be used for additional "
         "configuration"),
    _col("Hosts", "Hosts that incoming requests are matched against before the ingress rule"),
    _col("Address", "Address is a list containing ingress points for the load-balancer"),
    _col("Ports", "Ports of TLS configurations that open"),
    _age_col(),
]


def _ingress_hosts(rules: list[dict]) -> str:
    """formatHosts: the first 3 non-empty hosts, " + N more..." (N counts rules), or "*"."""
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == 3:
            more = True
        if not more and rule.get("host"):
            hosts.append(rule["host"])
    if not hosts:
        return "*"
    text = ",".join(hosts)
    return f"{text} + {len(rules) - 3} more..." if more else text


def _ingress_cells(ing: dict, now: _dt.datetime) -> list:
    spec = _spec(ing)
    return [
        _name(ing), spec.get("ingressClassName") or "<none>",
        _ingress_hosts(spec.get("rules") or []),
        ",".join(_load_balancer_addresses(_status(ing))),
        "80, 443" if spec.get("tls") else "80", _age(ing, now),
    ]


_INGRESS_CLASS_COLUMNS = [
    _name_col(),
    _col("Controller", "Controller that is responsible for handling this class"),
    _col("Parameters", "A reference to a resource with additional parameters"),
    _age_col(),
]


def _ingress_class_cells(ic: dict, now: _dt.datetime) -> list:
    spec = _spec(ic)
    params = spec.get("parameters")
    parameters = "<none>"
    if params is not None:
        parameters = params.get("kind") or ""
        if params.get("apiGroup") is not None:
            parameters += "." + params["apiGroup"]
        parameters += "/" + (params.get("name") or "")
    return [_name(ic), spec.get("controller") or "", parameters, _age(ic, now)]


# --- the default convertor -------------------------------------------------------------

_DEFAULT_COLUMNS = [_name_col(), _col("Created At", _D_CREATED, type_="date")]


def _default_cells(obj: dict, now: _dt.datetime) -> list:
    created = _parse_time(_meta(obj).get("creationTimestamp")) or _ZERO_TIME
    stamp = created.astimezone(_dt.timezone.utc)
    return [_name(obj), f"{stamp.year:04d}-{stamp:%m-%dT%H:%M:%S}Z"]


# --- registry ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Printer:
    columns: list[dict]
    cells: Callable[[dict, _dt.datetime], list]


_PRINTERS: dict[tuple[str, str], _Printer] = {
    ("", "Pod"): _Printer(_POD_COLUMNS, _pod_cells),
    ("", "Service"): _Printer(_SERVICE_COLUMNS, _service_cells),
    ("", "Endpoints"): _Printer(_ENDPOINTS_COLUMNS, _endpoints_cells),
    ("", "Node"): _Printer(_NODE_COLUMNS, _node_cells),
    ("", "Namespace"): _Printer(_NAMESPACE_COLUMNS, _namespace_cells),
    ("", "Secret"): _Printer(_SECRET_COLUMNS, _secret_cells),
    ("", "ConfigMap"): _Printer(_CONFIG_MAP_COLUMNS, _config_map_cells),
    ("", "ServiceAccount"): _Printer(_SERVICE_ACCOUNT_COLUMNS, _service_account_cells),
    ("", "Event"): _Printer(_EVENT_COLUMNS, _event_cells),
    ("events.k8s.io", "Event"): _Printer(_EVENT_COLUMNS, _event_cells),
    ("apps", "Deployment"): _Printer(_DEPLOYMENT_COLUMNS, _deployment_cells),
    ("apps", "ReplicaSet"): _Printer(_REPLICA_SET_COLUMNS, _replica_set_cells),
    ("", "ReplicationController"): _Printer(_REPLICATION_CONTROLLER_COLUMNS, _replica_set_cells),
    ("apps", "StatefulSet"): _Printer(_STATEFUL_SET_COLUMNS, _stateful_set_cells),
    ("batch", "Job"): _Printer(_JOB_COLUMNS, _job_cells),
    ("networking.k8s.io", "NetworkPolicy"): _Printer(_NETWORK_POLICY_COLUMNS, _network_policy_cells),
    ("", "ResourceQuota"): _Printer(_RESOURCE_QUOTA_COLUMNS, _resource_quota_cells),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"): _Printer(_VAP_COLUMNS, _vap_cells),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"): _Printer(_VAP_BINDING_COLUMNS,
                                                                                    _vap_binding_cells),
    ("apiregistration.k8s.io", "APIService"): _Printer(_APISERVICE_COLUMNS, _apiservice_cells),
    ("policy", "PodDisruptionBudget"): _Printer(_PDB_COLUMNS, _pdb_cells),
    ("scheduling.k8s.io", "PriorityClass"): _Printer(_PRIORITY_CLASS_COLUMNS, _priority_class_cells),
    ("autoscaling", "HorizontalPodAutoscaler"): _Printer(_HPA_COLUMNS, _hpa_cells),
    ("", "PersistentVolumeClaim"): _Printer(_PERSISTENT_VOLUME_CLAIM_COLUMNS, _persistent_volume_claim_cells),
    ("", "PersistentVolume"): _Printer(_PERSISTENT_VOLUME_COLUMNS, _persistent_volume_cells),
    ("batch", "CronJob"): _Printer(_CRON_JOB_COLUMNS, _cron_job_cells),
    ("rbac.authorization.k8s.io", "RoleBinding"): _Printer(_ROLE_BINDING_COLUMNS, _binding_cells),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"):
        _Printer(_WEBHOOK_CONFIGURATION_COLUMNS, _webhook_configuration_cells),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"):
        _Printer(_WEBHOOK_CONFIGURATION_COLUMNS, _webhook_configuration_cells),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _Printer(_CLUSTER_ROLE_BINDING_COLUMNS, _binding_cells),
    ("apps", "DaemonSet"): _Printer(_DAEMON_SET_COLUMNS, _daemon_set_cells),
    ("discovery.k8s.io", "EndpointSlice"): _Printer(_ENDPOINT_SLICE_COLUMNS, _endpoint_slice_cells),
    ("networking.k8s.io", "Ingress"): _Printer(_INGRESS_COLUMNS, _ingress_cells),
    ("networking.k8s.io", "IngressClass"): _Printer(_INGRESS_CLASS_COLUMNS, _ingress_class_cells),
    ("coordination.k8s.io", "Lease"): _Printer(_LEASE_COLUMNS, _lease_cells),
    ("certificates.k8s.io", "CertificateSigningRequest"): _Printer(_CSR_COLUMNS, _csr_cells),
    ("autoscaling", "Scale"): _Printer(_SCALE_COLUMNS, _scale_cells),
}
_DEFAULT_PRINTER = _Printer(_DEFAULT_COLUMNS, _default_cells)


def table_for(kind: str, group: str, objects: list[dict],
              now: _dt.datetime) -> tuple[list[dict], list[list]]:
    """The Table columns and each object's cells for `kind` in API `group` ("" for core).

    Kinds without a printer get the apiserver's default convertor: Name and Created At.
    Columns are fresh dicts, safe for the caller to serialize or modify.
    """
    printer = _PRINTERS.get((group, kind), _DEFAULT_PRINTER)
    columns = [dict(column) for column in printer.columns]
    return columns, [printer.cells(obj, now) for obj in objects]
