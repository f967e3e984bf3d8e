"""Every kind the API server serves, looked up by resource or kind, and the API groups in
the order a real 1.32 cluster lists them in discovery (core first, then by group priority).

Built-in kinds are fixed; the kinds of CustomResourceDefinitions come and go
(`set_custom`, called by customresources.py when a CRD changes). `generation` counts those
changes so documents built from the registry (discovery, OpenAPI) know when to rebuild."""

from __future__ import annotations

from pocketkube.apiserver.kinds import (
    apiservice, configmap, crd, csr, core_event, cronjob, daemonset, deployment, endpoints, endpointslice, events_event, ingress, ingressclass,
    job, lease, namespace, node, pod, policykinds, rbac, replicaset, replicationcontroller, secret, service, serviceaccount,
    statefulset, volume, webhookconfiguration,
)
import re

from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.apiserver import reviews

ALL_KINDS: list[KindInfo] = [
    namespace.INFO, pod.INFO, service.INFO, endpoints.INFO, node.INFO, secret.INFO, configmap.INFO,
    serviceaccount.INFO, core_event.INFO, replicationcontroller.INFO,
    deployment.INFO, replicaset.INFO, statefulset.INFO, daemonset.INFO,
    job.INFO, cronjob.INFO,
    events_event.INFO,
    ingress.INFO, ingressclass.INFO,
    *rbac.KINDS,
    *webhookconfiguration.KINDS,
    *policykinds.KINDS,
    *volume.KINDS,
    lease.INFO,
    endpointslice.INFO,
    *reviews.KINDS,
    crd.INFO,
    apiservice.INFO,
    csr.INFO,
]

# Served only as the `scale` subresource of deployments, replicasets, statefulsets and
# replicationcontrollers.
SCALE = KindInfo(group="autoscaling", version="v1", kind="Scale", resource="scale", singular="scale",
                 namespaced=True, verbs=("get", "patch", "update"))

# kube-aggregator's group priorities, highest first, restricted to the groups we serve.
_GROUP_ORDER = ("", "apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "autoscaling", "batch",
                "certificates.k8s.io", "networking.k8s.io", "policy", "rbac.authorization.k8s.io", "admissionregistration.k8s.io",
                "apiextensions.k8s.io", "scheduling.k8s.io", "coordination.k8s.io",
                "discovery.k8s.io")

BUILT_IN = list(ALL_KINDS)
_BY_RESOURCE = {(k.group, k.version, k.resource): k for k in ALL_KINDS}
_BY_KIND = {(k.group, k.version, k.kind): k for k in ALL_KINDS + [SCALE]}
_CUSTOM_GROUPS: list[tuple[str, list[str]]] = []
_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")
generation = 0


def by_resource(group: str, version: str, resource: str) -> KindInfo | None:
    return _BY_RESOURCE.get((group, version, resource))


def by_kind(group: str, version: str, kind: str) -> KindInfo | None:
    return _BY_KIND.get((group, version, kind))


def version_priority(version: str) -> tuple:
    """Kubernetes' version ordering, as a sort key: GA before beta before alpha, higher numbers
    first; versions of another form last, by name."""
    m = _VERSION_RE.match(version)
    if not m:
        return (3, 0, 0, version)
    major, level, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    return ({None: 0, "beta": 1, "alpha": 2}[level], -major, -minor, version)


def groups() -> list[tuple[str, list[str]]]:
    """(group, [versions]) with "" for the core group, preferred version first."""
    versions: dict[str, set[str]] = {}
    for k in BUILT_IN + [SCALE]:
        versions.setdefault(k.group, set()).add(k.version)
    return [(group, sorted(versions[group], key=version_priority)) for group in _GROUP_ORDER
            if group in versions] + _CUSTOM_GROUPS


def set_custom(kinds: list[KindInfo], custom_groups: list[tuple[str, list[str]]]) -> None:
    """Serve exactly these custom resource kinds (every served version of every CRD)."""
    global _BY_RESOURCE, _BY_KIND, _CUSTOM_GROUPS, generation
    ALL_KINDS[:] = BUILT_IN + kinds
    _BY_RESOURCE = {(k.group, k.version, k.resource): k for k in ALL_KINDS}
    _BY_KIND = {(k.group, k.version, k.kind): k for k in ALL_KINDS + [SCALE]}
    _CUSTOM_GROUPS = custom_groups
    generation += 1
