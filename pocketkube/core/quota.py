"""ResourceQuota accounting, shared by the API server's quota admission and the resource quota
controller (which writes status.hard and status.used): which objects a quota's resource names
count, and how much each object adds.

Counted today, as kube's object-count evaluators count them: `pods` (those not finished:
phase Succeeded or Failed, or past their deletion grace period, do not count), `services`,
`services.nodeports` (one per port of a NodePort or LoadBalancer Service),
`services.loadbalancers`, `configmaps`, `secrets`, `replicationcontrollers`, `resourcequotas`,
`persistentvolumeclaims`, and `count/<resource>[.<group>]` for any resource (every object).
Compute resources (`requests.cpu`, `limits.memory`, ...) are not counted yet: a quota naming
them does not hold creates back for them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from fractions import Fraction

from pocketkube.core.quantity import parse_quantity

# quota resource name -> (API group, resource) of the objects it counts
STANDARD_COUNTS = {
    "pods": ("", "pods"),
    "services": ("", "services"),
    "services.nodeports": ("", "services"),
    "services.loadbalancers": ("", "services"),
    "configmaps": ("", "configmaps"),
    "secrets": ("", "secrets"),
    "replicationcontrollers": ("", "replicationcontrollers"),
    "resourcequotas": ("", "resourcequotas"),
    "persistentvolumeclaims": ("", "persistentvolumeclaims"),
}
TERMINAL_PHASES = ("Succeeded", "Failed")


def counted(name: str) -> tuple[str, str] | None:
    """(group, resource) whose objects the quota resource `name` counts, or None if not counted."""
    if name in STANDARD_COUNTS:
        return STANDARD_COUNTS[name]
    if name.startswith("count/") and len(name) > len("count/"):
        resource, _, group = name[len("count/"):].partition(".")
        return group, resource
    return None


def pod_counts(pod: dict, now: datetime | None = None) -> bool:
    """Whether a pod takes quota: not finished, and not past its deletion grace period."""
    if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
        return False
    m = pod.get("metadata") or {}
    deleted, grace = m.get("deletionTimestamp"), m.get("deletionGracePeriodSeconds")
    if deleted and grace is not None:
        at = datetime.fromisoformat(deleted.replace("Z", "+00:00")) + timedelta(seconds=int(grace))
        return (now or datetime.now(timezone.utc)) <= at
    return True


def usage(name: str, obj: dict) -> int:
    """What one object of the counted resource adds to the quota resource `name`."""
    if name.startswith("count/"):
        return 1
    if name == "pods":
        return 1 if pod_counts(obj) else 0
    spec = obj.get("spec") or {}
    if name == "services.nodeports":
        return len(spec.get("ports") or []) if spec.get("type") in ("NodePort", "LoadBalancer") else 0
    if name == "services.loadbalancers":
        return 1 if spec.get("type") == "LoadBalancer" else 0
    return 1


def total(name: str, objects) -> int:
    return sum(usage(name, obj) for obj in objects)


def hard_limits(quota: dict, names) -> dict[str, Fraction]:
    """status.hard of the quota for the given resource names (those it enforces: what the
    controller has observed; a quota not yet synced holds nothing back, as kube's admission)."""
    hard = (quota.get("status") or {}).get("hard") or {}
    limits = {}
    for name in names:
        if name in hard and (value := parse_quantity(hard[name])) is not None:
            limits[name] = value
    return limits


def pretty(amounts: dict) -> str:
    """`pods=1,services=2`: sorted by name, as the quota admission's messages print them."""
    return ",".join(f"{name}={amounts[name]}" for name in sorted(amounts))
