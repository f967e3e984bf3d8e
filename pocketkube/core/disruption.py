"""What the eviction subresource (apiserver/eviction.py) and the disruption controller
(controllers/disruption.py) agree on about PodDisruptionBudgets: which pods a budget covers, what
a healthy pod is, and the DisruptionAllowed condition of a budget's status."""

from __future__ import annotations

import datetime as _dt

from pocketkube.core.objects import rfc3339
from pocketkube.core.selectors import selector_from_object


def budget_covers(pdb: dict, pod: dict) -> bool:
    """Whether a budget covers a pod: same namespace, and its selector matches the pod's labels
    (policy/v1: an empty selector matches every pod of the namespace, a missing one none)."""
    selector = (pdb.get("spec") or {}).get("selector")
    if selector is None or (pdb.get("metadata") or {}).get("namespace") != (pod.get("metadata") or {}).get("namespace"):
        return False
    try:
        return selector_from_object(selector).matches((pod.get("metadata") or {}).get("labels") or {})
    except ValueError:
        return False


def pod_is_healthy(pod: dict) -> bool:
    """podutil.IsPodReady, which is what a budget counts as healthy."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def with_disruption_condition(status: dict, generation: int, now: _dt.datetime, reason: str = "",
                              message: str = "") -> list[dict]:
    """status.conditions with DisruptionAllowed set from disruptionsAllowed (SufficientPods /
    InsufficientPods), or False with `reason` when one is given (SyncFailed); its transition
    time moves only when its status changes."""
    allowed = not reason and (status.get("disruptionsAllowed") or 0) > 0
    wanted = {"type": "DisruptionAllowed", "status": "True" if allowed else "False",
              "reason": reason or ("SufficientPods" if allowed else "InsufficientPods"), "message": message,
              "observedGeneration": generation}
    conditions = status.get("conditions") or []
    old = next((c for c in conditions if c.get("type") == "DisruptionAllowed"), None)
    stamp = old["lastTransitionTime"] if old is not None and old.get("status") == wanted["status"] \
        and old.get("lastTransitionTime") else rfc3339(now)
    return [c for c in conditions if c.get("type") != "DisruptionAllowed"] + [{**wanted, "lastTransitionTime": stamp}]
