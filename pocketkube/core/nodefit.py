"""Whether a pod may go on a node: node affinity (nodeSelector and the required terms),
taints against tolerations, and host ports. The scheduler, the DaemonSet controller and the
node agent's admission decide with the same rules, as kube-scheduler's plugins, the DaemonSet
controller's predicates and the kubelet's GeneralPredicates do."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

WILDCARD_IP = "0.0.0.0"
PORTS_REASON = "node(s) didn't have free ports for the requested pod ports"  # the NodePorts plugin's


def tolerates(toleration: dict, taint: dict) -> bool:
    """Toleration.ToleratesTaint."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def requirement_matches(requirement: dict, value: str | None) -> bool:
    operator = requirement.get("operator")
    values = requirement.get("values") or []
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if operator == "Gt" else have < want
    return False


def term_matches(term: dict, node: dict) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = (node.get("metadata") or {}).get("labels") or {}
    if not all(requirement_matches(r, labels.get(r.get("key", ""))) for r in expressions):
        return False
    node_fields = {"metadata.name": (node.get("metadata") or {}).get("name")}
    return all(requirement_matches(r, node_fields.get(r.get("key", ""))) for r in fields)


def matches_node_affinity(pod_spec: dict, node: dict) -> bool:
    """NodeAffinity filter: nodeSelector (all labels equal) and, when set, one of the
    requiredDuringSchedulingIgnoredDuringExecution terms."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(term_matches(term, node) for term in required.get("nodeSelectorTerms") or [])


# ---- host ports (the NodePorts filter) ------------------------------------------------------

def host_ports(pod_spec: dict) -> frozenset:
    """(protocol, hostIP, hostPort) of every container port with a hostPort, init containers too."""
    ports = set()
    for container in (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or []):
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                ports.add((port.get("protocol") or "TCP", port.get("hostIP") or WILDCARD_IP, port["hostPort"]))
    return frozenset(ports)


def ports_conflict(wanted: Iterable[tuple], used: Counter) -> bool:
    """Whether any wanted host port is taken: same protocol and port, and the same address or
    either side on 0.0.0.0. `used` counts the ports of the pods already there."""
    for protocol, ip, port in wanted:
        for (used_protocol, used_ip, used_port), count in used.items():
            if count <= 0 or used_protocol != protocol or used_port != port:
                continue
            if ip == used_ip or WILDCARD_IP in (ip, used_ip):
                return True
    return False
