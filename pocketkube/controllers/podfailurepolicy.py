"""A Job's podFailurePolicy, judged against one failed pod (pure): which rule matches, whether
the failure counts towards backoffLimit / backoffLimitPerIndex, and the message that fails the
Job when the action is FailJob. Rules are tried in order and the first match decides; a failed
pod that matches no rule counts, as with no policy at all.

- `onExitCodes`: the app containers' statuses, then the init containers', each with a
  `terminated` state and a non-zero exit code (0 never matches), optionally restricted to
  `containerName`; `In` / `NotIn` the listed values (an unknown operator never matches).
- `onPodConditions`: any of the pod's conditions whose type and status equal a pattern's.
- Actions: `FailJob` (the Job fails at once, reason PodFailurePolicy), `Ignore` (not counted,
  the pod is replaced), `Count` (counted, as by default), `FailIndex` (counted, and the pod's
  index of an Indexed Job with backoffLimitPerIndex fails without more retries).
"""

from __future__ import annotations

from dataclasses import dataclass

FAIL_JOB, IGNORE, COUNT, FAIL_INDEX = "FailJob", "Ignore", "Count", "FailIndex"


@dataclass(frozen=True)
class Verdict:
    counts: bool = True           # towards backoffLimit (and backoffLimitPerIndex)
    action: str | None = None     # the matched rule's action, None when no rule matched
    message: str | None = None    # for FailJob: the Job's FailureTarget/Failed message


NO_MATCH = Verdict()


def judge(policy: dict | None, pod: dict) -> Verdict:
    """The policy's verdict on a failed pod."""
    if not policy:
        return NO_MATCH
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    where = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    for index, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        if rule.get("onExitCodes") is not None:
            container = _matching_container(status, rule["onExitCodes"])
            if container is None:
                continue
            code = container["state"]["terminated"].get("exitCode", 0)
            message = (f"Container {container.get('name', '')} for pod {where} failed with exit code {code} "
                       f"matching {action} rule at index {index}")
        elif rule.get("onPodConditions"):
            condition = _matching_condition(status, rule["onPodConditions"])
            if condition is None:
                continue
            message = f"Pod {where} has condition {condition.get('type', '')} matching {action} rule at index {index}"
        else:
            continue
        if action == IGNORE:
            return Verdict(counts=False, action=IGNORE)
        if action in (COUNT, FAIL_INDEX):
            return Verdict(counts=True, action=action)
        if action == FAIL_JOB:
            return Verdict(counts=True, action=FAIL_JOB, message=message)
        # An action this controller does not know: the rule is passed over, as upstream's switch does.
    return NO_MATCH


def _matching_container(status: dict, requirement: dict) -> dict | None:
    name = requirement.get("containerName")
    for container in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        terminated = (container.get("state") or {}).get("terminated")
        if terminated is None or (name is not None and container.get("name") != name):
            continue
        code = terminated.get("exitCode", 0)
        if code != 0 and _operator_matches(code, requirement):
            return container
    return None


def _operator_matches(code: int, requirement: dict) -> bool:
    values = requirement.get("values") or []
    if requirement.get("operator") == "In":
        return code in values
    if requirement.get("operator") == "NotIn":
        return code not in values
    return False


def _matching_condition(status: dict, patterns: list[dict]) -> dict | None:
    for condition in status.get("conditions") or []:
        for pattern in patterns:
            if condition.get("type") == pattern.get("type") and \
                    condition.get("status") == pattern.get("status", "True"):
                return condition
    return None
