"""A pod's status as the kubelet computes it (generateAPIPodStatus, getPhase): pure functions
from a snapshot of what runs (`ContainerView`s) to status.phase, the conditions and the
container statuses; the restart-policy decision (`should_restart`) and the kubelet's messages
(`format_pod`, `crash_backoff_message`). No I/O, no clock: `now` is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")


def go_duration(seconds: float) -> str:
    """Go's time.Duration String() for whole seconds: 10s, 1m20s, 5m0s."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def format_pod(pod: dict) -> str:
    """The kubelet's format.Pod: name_namespace(uid)."""
    m = pod.get("metadata") or {}
    return f"{m.get('name', '')}_{m.get('namespace', '')}({m.get('uid', '')})"


def crash_backoff_message(backoff: float, container: str, pod: dict) -> str:
    return f"back-off {go_duration(backoff)} restarting failed container={container} pod={format_pod(pod)}"


def should_restart(restart_policy: str, exit_code: int | None, is_init: bool) -> bool:
    """Whether a container that exited is started again."""
    policy = restart_policy or "Always"
    if is_init:  # init containers run to completion; they are retried unless the policy is Never
        return exit_code != 0 and policy != "Never"
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def terminated_reason(exit_code: int | None) -> str:
    return "Completed" if exit_code == 0 else "Error"

@dataclass
class ContainerView:
    """What the status computation needs to know about one container."""

    name: str
    image: str
    image_id: str = ""
    container_id: str | None = None
    state: str = "waiting"            # waiting | running | terminated
    reason: str | None = None         # waiting or terminated reason
    message: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    last_terminated: dict | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    volume_mounts: list = field(default_factory=list)


def container_status(view: ContainerView) -> dict:
    """One entry of status.containerStatuses."""
    if view.state == "running":
        state: dict = {"running": {"startedAt": view.started_at}}
    elif view.state == "terminated":
        terminated = {"exitCode": view.exit_code if view.exit_code is not None else 0,
                      "reason": view.reason or terminated_reason(view.exit_code),
                      "startedAt": view.started_at, "finishedAt": view.finished_at}
        if view.message:
            terminated["message"] = view.message
        if view.container_id:
            terminated["containerID"] = view.container_id
        state = {"terminated": terminated}
    else:
        waiting = {"reason": view.reason or "ContainerCreating"}
        if view.message:
            waiting["message"] = view.message
        state = {"waiting": waiting}
    status = {"name": view.name, "state": state,
              "lastState": {"terminated": view.last_terminated} if view.last_terminated else {},
              "ready": view.ready, "restartCount": view.restart_count, "image": view.image,
              "imageID": view.image_id, "started": view.started}
    if view.container_id:
        status["containerID"] = view.container_id
    if view.volume_mounts:
        status["volumeMounts"] = view.volume_mounts
    return status


def pod_phase(pod: dict, init_views: list[ContainerView], views: list[ContainerView]) -> str:
    """The kubelet's getPhase."""
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy") or "Always"
    pending_init = failed_init = 0
    for view in init_views:
        if view.state == "running":
            pending_init += 1
        elif view.state == "terminated":
            if view.exit_code != 0:
                failed_init += 1
        elif view.last_terminated is not None:
            if view.last_terminated.get("exitCode") != 0:
                failed_init += 1
        else:
            pending_init += 1
    running = waiting = stopped = succeeded = 0
    for view in views:
        if view.state == "running":
            running += 1
        elif view.state == "terminated":
            stopped += 1
            if view.exit_code == 0:
                succeeded += 1
        elif view.last_terminated is not None:
            stopped += 1
        else:
            waiting += 1
    if failed_init and policy == "Never":
        return "Failed"
    if pending_init or waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(type_: str, status: bool, reason: str | None = None, message: str | None = None) -> dict:
    cond: dict[str, Any] = {"type": type_, "status": "True" if status else "False", "lastProbeTime": None}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def kubelet_conditions(pod: dict, phase: str, sandbox_ready: bool, init_views: list[ContainerView],
                       views: list[ContainerView]) -> list[dict]:
    """PodReadyToStartContainers, Initialized, Ready, ContainersReady (without times)."""
    conditions = [_condition("PodReadyToStartContainers", sandbox_ready)]
    incomplete = [v.name for v in init_views if not (v.state == "terminated" and v.exit_code == 0)]
    if incomplete and phase not in ("Succeeded",):
        conditions.append(_condition("Initialized", False, "ContainersNotInitialized",
                                     f"containers with incomplete status: [{' '.join(incomplete)}]"))
    else:
        conditions.append(_condition("Initialized", True))
    if phase == "Succeeded":
        containers_ready = _condition("ContainersReady", False, "PodCompleted")
        ready = _condition("Ready", False, "PodCompleted")
    else:
        unready = [v.name for v in views if not v.ready]
        if unready:
            message = f"containers with unready status: [{' '.join(unready)}]"
            containers_ready = _condition("ContainersReady", False, "ContainersNotReady", message)
            ready = _condition("Ready", False, "ContainersNotReady", message)
        else:
            containers_ready = _condition("ContainersReady", True)
            ready = _readiness_gates(pod) or _condition("Ready", True)
    return conditions + [ready, containers_ready]


def _readiness_gates(pod: dict) -> dict | None:
    """Ready=False while a readiness gate's condition is not True."""
    gates = [g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []]
    existing = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    missing = [g for g in gates if g not in existing]
    false = [g for g in gates if g in existing and existing[g].get("status") != "True"]
    if missing:
        return _condition("Ready", False, "ReadinessGatesNotReady",
                          f'corresponding condition of pod readiness gate "{missing[0]}" does not exist.')
    if false:
        return _condition("Ready", False, "ReadinessGatesNotReady",
                          f'the status of pod readiness gate "{false[0]}" is not "True", but False')
    return None


def with_transition_times(conditions: list[dict], previous: list[dict], now: str) -> list[dict]:
    """Keep a condition's lastTransitionTime while its status does not change."""
    before = {c.get("type"): c for c in previous}
    for cond in conditions:
        old = before.get(cond["type"])
        if old is not None and old.get("status") == cond["status"] and old.get("lastTransitionTime"):
            cond["lastTransitionTime"] = old["lastTransitionTime"]
        else:
            cond["lastTransitionTime"] = now
    return conditions


def generate_pod_status(pod: dict, *, init_views: list[ContainerView], views: list[ContainerView],
                        sandbox_ready: bool, pod_ip: str | None, host_ip: str, start_time: str | None,
                        terminal_phase: str | None, previous_conditions: list[dict], now: str,
                        message: str | None = None, reason: str | None = None) -> dict:
    """The pod status the kubelet would write (generateAPIPodStatus)."""
    phase = terminal_phase or pod_phase(pod, init_views, views)
    existing = (pod.get("status") or {})
    conditions = with_transition_times(kubelet_conditions(pod, phase, sandbox_ready, init_views, views),
                                       previous_conditions, now)
    others = [c for c in existing.get("conditions") or [] if c.get("type") not in KUBELET_CONDITIONS]
    status: dict[str, Any] = {"phase": phase, "conditions": conditions + others, "hostIP": host_ip,
                              "hostIPs": [{"ip": host_ip}]}
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if start_time:
        status["startTime"] = start_time
    if init_views:
        status["initContainerStatuses"] = [container_status(v) for v in init_views]
    status["containerStatuses"] = [container_status(v) for v in views]
    if existing.get("qosClass"):
        status["qosClass"] = existing["qosClass"]
    if message:
        status["message"] = message
    if reason:
        status["reason"] = reason
    return status
