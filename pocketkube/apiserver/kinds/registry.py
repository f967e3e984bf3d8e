"""Every kind the API server serves, looked up by resource or kind, and the API groups in
the order a real 1.32 cluster lists them in discovery (core first, then by group priority)."""

from __future__ import annotations

from pocketkube.apiserver.kinds import (
    configmap, core_event, cronjob, daemonset, deployment, endpoints, endpointslice, events_event, ingress, ingressclass,
    job, lease, namespace, node, pod, policykinds, rbac, replicaset, replicationcontroller, secret, service, serviceaccount,
    statefulset, volume, webhookconfiguration,
)
from pocketkube.apiserver.kinds.base import KindInfo

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
]

# Served only as the `scale` subresource of deployments, replicasets, statefulsets and
# replicationcontrollers.
SCALE = KindInfo(group="autoscaling", version="v1", kind="Scale", resource="scale", singular="scale",
                 namespaced=True, verbs=("get", "patch", "update"))

# kube-aggregator's group priorities, highest first, restricted to the groups we serve.
_GROUP_ORDER = ("", "apps", "events.k8s.io", "autoscaling", "batch", "networking.k8s.io",
                "rbac.authorization.k8s.io", "admissionregistration.k8s.io", "coordination.k8s.io",
                "discovery.k8s.io")

_BY_RESOURCE = {(k.group, k.version, k.resource): k for k in ALL_KINDS}
_BY_KIND = {(k.group, k.version, k.kind): k for k in ALL_KINDS + [SCALE]}


def by_resource(group: str, version: str, resource: str) -> KindInfo | None:
    return _BY_RESOURCE.get((group, version, resource))


def by_kind(group: str, version: str, kind: str) -> KindInfo | None:
    return _BY_KIND.get((group, version, kind))


def groups() -> list[tuple[str, list[str]]]:
    """(group, [versions]) with "" for the core group, preferred version first."""
    served = {k.group for k in ALL_KINDS} | {SCALE.group}
    return [(group, ["v1"]) for group in _GROUP_ORDER if group in served]
