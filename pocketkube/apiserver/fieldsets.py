"""Which fields each kind offers to field selectors, and the values an object gives them.

kube-apiserver handles a fieldSelector in two steps that this module mirrors:

1. the field label conversion registered for the request's group/version/kind
   (pkg/apis/<group>/<version>/conversion.go) accepts or rejects each label and may rename
   it (Pod `spec.host` -> `spec.nodeName`; events.k8s.io `regarding.*` -> `involvedObject.*`).
   A kind without one accepts only metadata.name and metadata.namespace
   (runtime.DefaultMetaV1FieldSelectorConversion). See `supported_fields` and
   `convert_field_selector`.
2. the registry strategy's GetAttrs/ToSelectableFields (pkg/registry/.../strategy.go) turns
   the object into the flat field set the selector is matched against. See `fields_for`.

The two lists differ on purpose: Pod accepts `status.podIPs` but never sets it (so it only
ever equals ""), and apps/v1 registers no conversion, so ReplicaSet's `status.replicas`,
although in its field set, is rejected through apps/v1. A field an object does not have
reads as "".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pocketkube.core.selectors import DEFAULT_FIELD_LABELS, FieldSelector, check_field_selector_supported


def _same(*labels: str) -> dict[str, str]:
    return {label: label for label in labels}


_INVOLVED_OBJECT_PARTS = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
_EVENT_FIELDS = (*(f"involvedObject.{part}" for part in _INVOLVED_OBJECT_PARTS),
                 "reason", "reportingComponent", "source", "type")

# (group, kind) -> the labels its field label conversion accepts, each mapped to the field it selects.
_CONVERSIONS: dict[tuple[str, str], dict[str, str]] = {
    ("", "Pod"): {
        **_same("metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
                "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                "status.podIP", "status.podIPs", "status.nominatedNodeName"),
        "spec.host": "spec.nodeName",  # kept for old v1 clients
    },
    ("", "Node"): _same("metadata.name", "spec.unschedulable"),
    ("", "ReplicationController"): _same("metadata.name", "metadata.namespace", "status.replicas"),
    ("", "Event"): _same(*_EVENT_FIELDS, "metadata.namespace", "metadata.name"),
    ("", "Namespace"): _same("status.phase", "metadata.name"),
    ("", "Secret"): _same("type", "metadata.namespace", "metadata.name"),
    ("", "Service"): _same("metadata.namespace", "metadata.name", "spec.clusterIP", "spec.type"),
    ("batch", "Job"): _same("metadata.name", "metadata.namespace", "status.successful"),
    ("certificates.k8s.io", "CertificateSigningRequest"): _same("metadata.name", "spec.signerName"),
    ("events.k8s.io", "Event"): {
        **_same("reason", "type", "metadata.namespace", "metadata.name"),
        **{f"regarding.{part}": f"involvedObject.{part}" for part in _INVOLVED_OBJECT_PARTS},
        "reportingController": "reportingComponent",
    },
}
_DEFAULT_CONVERSION = _same(*sorted(DEFAULT_FIELD_LABELS))


def _accepted_labels(kind: str, group: str) -> dict[str, str]:
    return _CONVERSIONS.get((group, kind), _DEFAULT_CONVERSION)


def supported_fields(kind: str, group: str = "") -> set[str]:
    """The field labels a fieldSelector may use for `kind` in API group `group` ("" = core)."""
    return set(_accepted_labels(kind, group))


def convert_field_selector(selector: FieldSelector, kind: str, group: str = "") -> FieldSelector:
    """What the list/watch handler does with a parsed fieldSelector before matching.

    Raises APIError 400 with the conversion's message for the first unsupported label, and
    returns the selector with aliases renamed to the fields `fields_for` produces.
    """
    accepted = _accepted_labels(kind, group)
    check_field_selector_supported(selector, accepted.keys(), f"{kind}.{group}" if group else kind)
    return selector.renamed(accepted)


# ---------------------------------------------------------------------------------------
# Field sets (registry GetAttrs)
# ---------------------------------------------------------------------------------------

def _get(obj: Mapping, path: str):
    value = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _text(obj: Mapping, path: str) -> str:
    value = _get(obj, path)
    return value if isinstance(value, str) else ""


def _go_bool(obj: Mapping, path: str) -> str:
    return "true" if _get(obj, path) is True else "false"


def _go_int(obj: Mapping, path: str) -> str:
    value = _get(obj, path)
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "0"


def _pod_fields(pod: Mapping) -> dict[str, str]:
    pod_ips = _get(pod, "status.podIPs")
    if isinstance(pod_ips, list) and pod_ips and isinstance(pod_ips[0], Mapping):
        pod_ip = pod_ips[0].get("ip") or ""
    else:
        pod_ip = _text(pod, "status.podIP")
    return {
        "spec.nodeName": _text(pod, "spec.nodeName"),
        "spec.restartPolicy": _text(pod, "spec.restartPolicy"),
        "spec.schedulerName": _text(pod, "spec.schedulerName"),
        "spec.serviceAccountName": _text(pod, "spec.serviceAccountName"),
        "spec.hostNetwork": _go_bool(pod, "spec.hostNetwork"),
        "status.phase": _text(pod, "status.phase"),
        "status.podIP": pod_ip,
        "status.nominatedNodeName": _text(pod, "status.nominatedNodeName"),
    }


def _core_event_fields(event: Mapping) -> dict[str, str]:
    return {
        **{f"involvedObject.{part}": _text(event, f"involvedObject.{part}") for part in _INVOLVED_OBJECT_PARTS},
        "reason": _text(event, "reason"),
        "reportingComponent": _text(event, "reportingComponent"),
        "source": _text(event, "source.component") or _text(event, "reportingComponent"),
        "type": _text(event, "type"),
    }


def _events_k8s_io_event_fields(event: Mapping) -> dict[str, str]:
    """An events.k8s.io Event, under the core names the shared storage selects on."""
    return {
        **{f"involvedObject.{part}": _text(event, f"regarding.{part}") for part in _INVOLVED_OBJECT_PARTS},
        "reason": _text(event, "reason"),
        "reportingComponent": _text(event, "reportingController"),
        "source": _text(event, "deprecatedSource.component") or _text(event, "reportingController"),
        "type": _text(event, "type"),
    }


def _event_fields(event: Mapping) -> dict[str, str]:
    if str(event.get("apiVersion", "")).startswith("events.k8s.io/"):
        return _events_k8s_io_event_fields(event)
    return _core_event_fields(event)


_KIND_FIELDS: dict[str, Callable[[Mapping], dict[str, str]]] = {
    "Pod": _pod_fields,
    "Event": _event_fields,
    "Node": lambda node: {"spec.unschedulable": _go_bool(node, "spec.unschedulable")},
    "Namespace": lambda namespace: {"status.phase": _text(namespace, "status.phase")},
    "Secret": lambda secret: {"type": _text(secret, "type")},
    "Service": lambda service: {"spec.clusterIP": _text(service, "spec.clusterIP"),
                                "spec.type": _text(service, "spec.type")},
    "ReplicationController": lambda rc: {"status.replicas": _go_int(rc, "status.replicas")},
    "ReplicaSet": lambda rs: {"status.replicas": _go_int(rs, "status.replicas")},
    "Job": lambda job: {"status.successful": _go_int(job, "status.succeeded")},
    "CertificateSigningRequest": lambda csr: {"spec.signerName": _text(csr, "spec.signerName")},
}


def fields_for(kind: str, obj: Mapping) -> dict[str, str]:
    """The field set a fieldSelector is matched against for `obj`, a `kind` object as a dict.

    Every kind has metadata.name and metadata.namespace ("" when cluster-scoped, which is
    what a missing field reads as). Kind-specific fields come from the registry strategies;
    Event objects may be core/v1 or events.k8s.io/v1 (told apart by apiVersion).
    """
    metadata = obj.get("metadata") or {}
    fields = {"metadata.name": metadata.get("name") or "", "metadata.namespace": metadata.get("namespace") or ""}
    kind_fields = _KIND_FIELDS.get(kind)
    if kind_fields is not None:
        fields.update(kind_fields(obj))
    return fields
