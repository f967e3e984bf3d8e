"""PodManager: the kubelet's per-pod work on one node.

For each pod bound to the node a `PodWorker` (an asyncio task) makes reality match the spec:
it resolves the images (ErrImagePull / ImagePullBackOff with the kubelet's back-off), writes
the volumes, creates the sandbox, runs the init containers in order and then the containers,
restarts them per restartPolicy with the kubelet's crash back-off (10 s doubling to 5 min,
CrashLoopBackOff), runs the startup, liveness and readiness probes, and on deletion stops
everything gracefully (preStop, SIGTERM, grace period, SIGKILL) and removes the sandbox.

Each container instance runs in a PID namespace of its own, where its main process is
PID 1, or in the pod's with shareProcessNamespace, or in the machine's with hostPID (here the
node is the machine) (runtime.py, sandbox.py); exec sessions and exec probes join it. Each container instance starts in a root built
from its image, with its volumes and the user and rights of its securityContext
(`_rootfs`, `_security`: sandbox.py, security.py); runAsNonRoot refusals and unknown image
users are CreateContainerConfigError, as the kubelet reports them.

The pod status is computed by pure functions (`generate_pod_status`, `pod_phase`, ...) from
a snapshot of the worker's state, as the kubelet's generateAPIPodStatus does; `sync()`
returns it. Everything needed to report status again survives an agent restart in
pods/<uid>/state.json: `start()` adopts live sandboxes and their containers, and cleans
what a dead sandbox left.

Events go to `on_event(pod, type, reason, message)` with the kubelet's reasons and messages;
`on_change(pod)` is called when a pod's status may have changed (so the agent can sync it
without waiting for its resync).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from pocketkube.core.tasks import cancel_and_wait
from pocketkube.node import images, runtime, security
from pocketkube.node.sandbox import (SandboxError, SandboxInfo, SandboxManager, process_alive, read_text,
                                     remove_tree, write_atomic)

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
MINIMUM_GRACE_SECONDS = 2
DEFAULT_GRACE_SECONDS = 30
RETRY_SECONDS = 2.0          # a failed volume or env resolution is retried after this (doubling)
RETRY_MAX_SECONDS = 60.0
LOG_INDEX_SECONDS = 1.0
PROBE_WARMUP_SECONDS = 1.0   # probe failures in a container's first second are retried quietly
PROBE_WARMUP_RETRY = 0.05
FIRST_STATUS_SECONDS = 1.0   # a pod's first status waits at most this long for its first sync pass
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")
EPOCH = "1970-01-01T00:00:00Z"


class PodRuntimeError(LookupError):
    """A request about a pod's container that cannot be served (the message is the kubelet's)."""


# ---- back-off (the kubelet's flowcontrol.Backoff) ------------------------------------------

class Backoff:
    """Per-key exponential back-off: 10 s doubling to 300 s, forgotten after 2 x max quiet."""

    def __init__(self, initial: float = BACKOFF_INITIAL, maximum: float = BACKOFF_MAX):
        self.initial = initial
        self.maximum = maximum
        self.entries: dict[str, tuple[float, float]] = {}  # key -> (backoff, last update)

    def _expired(self, key: str, event_time: float) -> bool:
        backoff, last_update = self.entries[key]
        return event_time - last_update > 2 * self.maximum

    def get(self, key: str) -> float:
        return self.entries.get(key, (0.0, 0.0))[0]

    def next(self, key: str, event_time: float, now: float) -> None:
        if key not in self.entries or self._expired(key, event_time):
            self.entries[key] = (self.initial, now)
        else:
            backoff, _ = self.entries[key]
            self.entries[key] = (min(backoff * 2, self.maximum), now)

    def in_backoff_since(self, key: str, event_time: float, now: float) -> bool:
        """Crash back-off: still waiting since the container finished at `event_time`."""
        if key not in self.entries or self._expired(key, event_time):
            return False
        return now - event_time < self.entries[key][0]

    def in_backoff_since_update(self, key: str, now: float) -> bool:
        """Image pull back-off: still waiting since the last failed pull."""
        if key not in self.entries:
            return False
        backoff, last_update = self.entries[key]
        if now - last_update > 2 * self.maximum:
            return False
        return now - last_update < backoff

    def remaining(self, key: str, since: float, now: float) -> float:
        return max(0.0, since + self.get(key) - now)


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


# ---- status computation (pure) ----------------------------------------------------------------

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


# ---- volumes ---------------------------------------------------------------------------------

def write_volume_files(directory: str, files: dict[str, bytes], mode: int) -> None:
    """The kubelet's atomic writer layout: files in a timestamped dir, `..data` pointing to
    it, and one symlink per top-level entry (so updates appear at once)."""
    os.makedirs(directory, exist_ok=True)
    version = time.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{time.time_ns() % 1_000_000_000:09d}"
    payload = os.path.join(directory, version)
    os.makedirs(payload)
    for rel, data in files.items():
        rel = rel.lstrip("/")
        if not rel or ".." in rel.split("/"):
            continue
        target = os.path.join(payload, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
        os.chmod(target, mode)
    tmp_link = os.path.join(directory, "..data_tmp")
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(version, tmp_link)
    os.replace(tmp_link, os.path.join(directory, "..data"))
    tops = {rel.lstrip("/").split("/")[0] for rel in files}
    for top in tops:
        link = os.path.join(directory, top)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..data", top), link)
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        if entry.startswith("..") and entry not in ("..data", version) and os.path.isdir(path) \
                and not os.path.islink(path):
            remove_tree(path)
        elif not entry.startswith("..") and entry not in tops:
            remove_tree(path)


def set_volume_ownership(path: str, fs_group: int, readonly: bool) -> None:
    """fsGroup as the kubelet applies it to a volume (SetVolumeOwnership): every file and
    directory belongs to the group, gets its read (and unless read-only, write) bits, and
    directories the setgid bit, so new files inherit the group."""
    mask = 0o440 if readonly else 0o660
    for root, dirs, files in os.walk(path):
        for name in [None, *files]:
            entry = root if name is None else os.path.join(root, name)
            if os.path.islink(entry):
                continue
            os.chown(entry, -1, fs_group)
            mode = os.stat(entry).st_mode & 0o7777
            if name is None:
                os.chmod(entry, mode | mask | 0o110 | 0o2000)
            else:
                os.chmod(entry, mode | mask)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]


def own_capabilities() -> int:
    """This process's bounding set (CapBnd of /proc/self/status)."""
    for line in read_text("/proc/self/status").splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    return 0


def volume_mode(volume: dict) -> int:
    for kind in ("configMap", "secret", "projected", "downwardAPI"):
        if kind in volume and volume[kind].get("defaultMode") is not None:
            return int(volume[kind]["defaultMode"]) & 0o777
    return 0o644


FILE_VOLUMES = ("configMap", "secret", "projected", "downwardAPI")


# ---- one container -------------------------------------------------------------------------

class ContainerSlot:
    """The worker's state for one container of the pod (init or regular)."""

    def __init__(self, spec: dict, is_init: bool):
        self.spec = spec
        self.is_init = is_init
        self.name = spec["name"]
        self.resolved: images.Resolved | None = None
        self.pull_failed_at = 0.0
        self.process: runtime.ContainerProcess | None = None
        self.log_index: runtime.LogIndex | None = None
        self.env: dict[str, str] = {}
        self.working_dir = "/"
        self.restart_count = 0
        self.instances = 0                  # started instances (log file numbers)
        self.terminated: dict | None = None  # the last finished instance
        self.finished_mono = 0.0             # monotonic time of that finish
        self.done = False                    # finished for good
        self.waiting_reason: str | None = None
        self.waiting_message: str | None = None
        self.ready = False
        self.started = False
        self.probe_tasks: list[asyncio.Task] = []
        self.retry_at = 0.0
        self.retry_delay = RETRY_SECONDS
        self.backoff_event_sent = 0.0
        self.previous_terminated: dict | None = None  # lastState while a new instance runs
        self.image_changed = False
        self.replacing = False
        self.pulled_image: str | None = None  # the spec image last resolved
        self.security: dict | None = None     # what its process became (security.process_security)

    @property
    def backoff_key(self) -> str:
        return ("init/" if self.is_init else "") + self.name

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    @property
    def succeeded(self) -> bool:
        return self.done and (self.terminated or {}).get("exitCode") == 0

    def view(self, mounts: list) -> ContainerView:
        image = self.resolved.image if self.resolved else self.spec.get("image", "")
        image_id = self.resolved.image_id if self.resolved and self.instances else ""
        view = ContainerView(name=self.name, image=image, image_id=image_id, restart_count=self.restart_count,
                             volume_mounts=mounts)
        last = self.terminated
        if self.running:
            view.state = "running"
            view.container_id = self.process.record.container_id
            view.started_at = self.process.record.started_at
            view.ready = self.ready
            view.started = self.started
            view.last_terminated = self.previous_terminated
        elif self.done and last is not None:
            view.state = "terminated"
            view.container_id = last.get("containerID")
            view.exit_code = last.get("exitCode")
            view.reason = last.get("reason")
            view.message = last.get("message")
            view.started_at = last.get("startedAt")
            view.finished_at = last.get("finishedAt")
            view.last_terminated = self.previous_terminated
        else:
            view.state = "waiting"
            view.reason = self.waiting_reason or "ContainerCreating"
            view.message = self.waiting_message
            view.last_terminated = last
            if last is not None:
                view.container_id = last.get("containerID")
        return view

    def to_state(self) -> dict:
        return {"restart_count": self.restart_count, "instances": self.instances, "terminated": self.terminated,
                "previous_terminated": self.previous_terminated, "done": self.done, "env": self.env,
                "working_dir": self.working_dir,
                "record": self.process.record.to_dict() if self.running else None,
                "image": self.resolved.image if self.resolved else None,
                "image_id": self.resolved.image_id if self.resolved else None}

    def load_state(self, state: dict) -> None:
        self.restart_count = state.get("restart_count", 0)
        self.instances = state.get("instances", 0)
        self.terminated = state.get("terminated")
        self.previous_terminated = state.get("previous_terminated")
        self.done = state.get("done", False)
        self.env = state.get("env") or {}
        self.working_dir = state.get("working_dir") or "/"


# ---- one pod ---------------------------------------------------------------------------------

class PodWorker:
    """Keeps one pod's sandbox and containers in line with its spec."""

    def __init__(self, manager: "PodManager", uid: str):
        self.m = manager
        self.uid = uid
        self.pod: dict = {"metadata": {"uid": uid}}
        self.env_resolver = None
        self.sandbox: SandboxInfo | None = None
        self.pod_ip: str | None = None
        self.volume_sources: dict[str, str] = {}  # volume name -> the node's directory (or file) behind it
        self.start_time: str | None = None
        self.terminal_phase: str | None = None
        self.conditions: list[dict] = []
        self.init_slots: list[ContainerSlot] = []
        self.slots: list[ContainerSlot] = []
        self.wake = asyncio.Event()
        self.notified_status: dict | None = None  # the last status reported through on_change
        self.reported = False  # whether the agent may write this pod's status yet (see run())
        self.task: asyncio.Task | None = None
        self.terminating = False
        self.sandbox_retry_at = 0.0
        self.sandbox_delay = RETRY_SECONDS
        self.sandbox_error: str | None = None
        self.images_pulled = False
        self.image_backoff = Backoff()
        self.crash_backoff = Backoff()
        self.lock = asyncio.Lock()

    # paths
    @property
    def dir(self) -> str:
        return self.m.sandboxes.pod_dir(self.uid)

    def log_path(self, slot: ContainerSlot, instance: int) -> str:
        return os.path.join(self.dir, "logs", slot.name, f"{instance}.log")

    def all_slots(self) -> list[ContainerSlot]:
        return self.init_slots + self.slots

    def slot(self, name: str) -> ContainerSlot | None:
        return next((s for s in self.all_slots() if s.name == name), None)

    # spec
    def update(self, pod: dict, env_resolver) -> None:
        self.pod = pod
        self.env_resolver = env_resolver
        spec = pod.get("spec") or {}
        self.init_slots = self._merge_slots(self.init_slots, spec.get("initContainers") or [], True)
        self.slots = self._merge_slots(self.slots, spec.get("containers") or [], False)
        if self.start_time is None:
            self.start_time = runtime.rfc3339()
        if self.task is None:
            self.task = asyncio.create_task(self.run(), name=f"pod-{self.uid}")
        self.wake.set()

    def _merge_slots(self, slots: list[ContainerSlot], specs: list[dict], is_init: bool) -> list[ContainerSlot]:
        by_name = {s.name: s for s in slots}
        merged = []
        for spec in specs:
            slot = by_name.get(spec["name"]) or ContainerSlot(spec, is_init)
            if slot.pulled_image is not None and slot.pulled_image != spec.get("image"):
                slot.resolved = None
                slot.pulled_image = None
                slot.image_changed = True
            slot.spec = spec
            merged.append(slot)
        return merged

    def event(self, type_: str, reason: str, message: str) -> None:
        if self.m.on_event is not None and self.pod.get("metadata", {}).get("name"):
            try:
                self.m.on_event(self.pod, type_, reason, message)
            except Exception:
                log.exception("event callback failed")

    # the loop
    async def run(self) -> None:
        """Reconcile until terminated. The first status is reported when the first pass is
        done, or after FIRST_STATUS_SECONDS if that pass takes longer: a pod that starts
        quickly goes from Pending to Running in one status write instead of two (a kubelet
        usually writes ContainerCreating first; here only a slow first pass shows it)."""
        first_status = asyncio.get_running_loop().call_later(FIRST_STATUS_SECONDS, self._report)
        try:
            await self._run()
        finally:
            first_status.cancel()

    def _report(self) -> None:
        self.reported = True
        self.m.changed(self)

    async def _run(self) -> None:
        while not self.terminating:
            try:
                async with self.lock:
                    delay = await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pod %s: sync failed", format_pod(self.pod))
                delay = RETRY_SECONDS
            self._report()
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), delay if delay is not None else 60.0)
            except asyncio.TimeoutError:
                pass

    async def reconcile(self) -> float | None:
        """One pass of the kubelet's SyncPod; returns when to look again (None: on events only)."""
        if self.terminal_phase or self.terminating:
            return None
        now = time.monotonic()
        deadlines: list[float] = []
        self._collect_exits()
        if not self.images_pulled:
            for slot in self.all_slots():
                if slot.resolved is None and not slot.done:
                    self._pull(slot, now)
            self.images_pulled = True
        if self.sandbox is not None and not self.sandbox.alive():
            await self._sandbox_died()
        if self.sandbox is None:
            if now < self.sandbox_retry_at:
                return self.sandbox_retry_at - now
            if not await self._create_sandbox():
                return max(0.0, self.sandbox_retry_at - time.monotonic())
        initialized = True
        for slot in self.init_slots:  # one at a time, in order, each to success
            if slot.succeeded:
                continue
            deadlines.append(await self._drive(slot, now))
            if not slot.succeeded:
                initialized = False
                for app in self.slots:
                    if not app.instances and app.waiting_reason in (None, "ContainerCreating"):
                        app.waiting_reason = "PodInitializing"
                break
        if initialized:
            for slot in self.slots:
                deadlines.append(await self._drive(slot, now))
        phase = pod_phase(self.pod, self._views(self.init_slots), self._views(self.slots))
        if phase in ("Succeeded", "Failed") and not any(s.running for s in self.all_slots()):
            await self._finish(phase)
            return None
        waits = [d for d in deadlines if d is not None]
        return min(waits) if waits else None

    def _views(self, slots: list[ContainerSlot]) -> list[ContainerView]:
        return [s.view(self._status_mounts(s)) for s in slots]

    def _status_mounts(self, slot: ContainerSlot) -> list[dict]:
        mounts = []
        for vm in slot.spec.get("volumeMounts") or []:
            entry = {"name": vm["name"], "mountPath": vm["mountPath"]}
            if vm.get("readOnly"):
                entry["readOnly"] = True
                entry["recursiveReadOnly"] = "Disabled"
            mounts.append(entry)
        return mounts

    # images
    def _pull(self, slot: ContainerSlot, now: float) -> None:
        """Resolve the image (the kubelet's EnsureImageExists, with its events)."""
        image = slot.spec.get("image", "")
        slot.pulled_image = image
        policy = slot.spec.get("imagePullPolicy") or "IfNotPresent"
        run_dir = os.path.join(self.dir, "containers", slot.name)
        try:
            os.makedirs(run_dir, exist_ok=True)
            slot.resolved = images.resolve(image, slot.spec.get("command"), slot.spec.get("args"), self.pod,
                                           slot.spec, run_dir=run_dir, cache_dir=self.m.cache_dir)
        except images.ImageNotFound as exc:
            slot.pull_failed_at = now
            key = self._image_key(slot)
            self.image_backoff.next(key, now, now)
            self.event("Normal", "Pulling", f'Pulling image "{image}"')
            self.event("Warning", "Failed", f'Failed to pull image "{image}": {exc.cause}')
            self.event("Warning", "Failed", "Error: ErrImagePull")
            slot.waiting_reason, slot.waiting_message = "ErrImagePull", exc.message
            return
        if not slot.resolved.in_catalog and not images.catalog().get(images.parse_image(image).name):
            self.event("Normal", "Pulled", f'Container image "{image}" already present on machine')
        elif policy == "Always":
            self.event("Normal", "Pulling", f'Pulling image "{image}"')
            self.event("Normal", "Pulled", f'Successfully pulled image "{image}" in 0s (0s including waiting). '
                                           f'Image size: {slot.resolved.size} bytes.')
        else:
            self.event("Normal", "Pulled", f'Container image "{image}" already present on machine')
        for path, data in slot.resolved.files.items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomic(path, data, 0o755 if data.startswith(b"#!") else 0o644)  # a script is a program

    def _image_key(self, slot: ContainerSlot) -> str:
        return f"{self.uid}_{slot.spec.get('image', '')}"

    def _image_wait(self, slot: ContainerSlot, now: float) -> float | None:
        """ErrImagePull for half the back-off, then ImagePullBackOff, then pull again."""
        key = self._image_key(slot)
        backoff = self.image_backoff.get(key)
        if self.image_backoff.in_backoff_since_update(key, now):
            half = slot.pull_failed_at + backoff / 2
            if now >= half and slot.waiting_reason != "ImagePullBackOff":
                image = slot.spec.get("image", "")
                slot.waiting_reason = "ImagePullBackOff"
                slot.waiting_message = f'Back-off pulling image "{image}"'
                self.event("Normal", "BackOff", f'Back-off pulling image "{image}"')
                self.event("Warning", "Failed", "Error: ImagePullBackOff")
            return (half - now) if now < half else (slot.pull_failed_at + backoff - now)
        self._pull(slot, now)
        if slot.resolved is None:
            return self.image_backoff.get(key) / 2
        return 0.0

    # sandbox
    async def _create_sandbox(self) -> bool:
        try:
            await self._prepare_volumes()
            # the pause container's root: the libraries its sleep loads, the base accounts
            self.sandbox = await self.m.sandboxes.create(self.pod, list(images.LIBRARY_DIRS), images.passwd_file([]),
                                                         images.group_file([]))
        except (SandboxError, VolumeError) as exc:
            reason = "FailedMount" if isinstance(exc, VolumeError) else "FailedCreatePodSandBox"
            self.sandbox_error = str(exc)
            self.event("Warning", reason, str(exc))
            self.sandbox_retry_at = time.monotonic() + self.sandbox_delay
            self.sandbox_delay = min(self.sandbox_delay * 2, RETRY_MAX_SECONDS)
            return False
        self.sandbox_error = None
        self.sandbox_delay = RETRY_SECONDS
        self.pod_ip = self.sandbox.ip
        self.save()
        return True

    async def _sandbox_died(self) -> None:
        """The holder is gone (killed from outside): kill the containers, make a new sandbox."""
        self.event("Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
        for slot in self.all_slots():
            if slot.running:
                await slot.process.stop(0)
        self._collect_exits()
        await self.m.sandboxes.destroy(self.sandbox, keep_pod_files=True)
        self.sandbox = None

    async def _prepare_volumes(self) -> None:
        """Every volume a container mounts, made ready before the sandbox (FailedMount
        otherwise), group-owned by fsGroup as the kubelet makes them."""
        spec = self.pod.get("spec") or {}
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        for slot in self.all_slots():
            for vm in slot.spec.get("volumeMounts") or []:
                volume = volumes.get(vm["name"])
                if volume is None or vm["name"] in self.volume_sources:
                    continue
                source = self.volume_sources[vm["name"]] = await self._prepare_volume(volume)
                if fs_group is not None and "hostPath" not in volume:
                    set_volume_ownership(source, int(fs_group), any(k in volume for k in FILE_VOLUMES))

    async def _container_mounts(self, slot: ContainerSlot) -> list[dict]:
        """Bind mounts for the container's root: its volumeMounts, then its image's own mounts
        (read-only when shared by the node's pods: busybox's /bin)."""
        volumes = {v["name"]: v for v in (self.pod.get("spec") or {}).get("volumes") or []}
        mounts: list[dict] = []
        for vm in slot.spec.get("volumeMounts") or []:
            volume = volumes.get(vm["name"])
            if volume is None:
                continue
            if vm["name"] not in self.volume_sources:  # an agent restarted since the sandbox was made
                self.volume_sources[vm["name"]] = await self._prepare_volume(volume)
            source = self.volume_sources[vm["name"]]
            owned = "hostPath" not in volume
            if vm.get("subPath"):
                source = os.path.join(source, vm["subPath"])
                if not os.path.lexists(source) and owned:
                    os.makedirs(source, exist_ok=True)
            readonly = bool(vm.get("readOnly")) or any(k in volume for k in FILE_VOLUMES)
            mounts.append({"target": vm["mountPath"], "source": source, "readonly": readonly, "owned": owned})
        targets = {m["target"].rstrip("/") or "/" for m in mounts}
        for target, source in slot.resolved.mounts.items():
            if target.rstrip("/") not in targets:
                shared = source.startswith(self.m.cache_dir + os.sep)
                mounts.append({"target": target, "source": source, "readonly": shared, "owned": not shared})
        return mounts

    async def _rootfs(self, slot: ContainerSlot) -> dict:
        """The container's root (sandbox.RootBuilder's config): its image's holds and users,
        the pod's hosts, resolv.conf and hostname, its mounts, its working dir, the pod's /dev/shm."""
        resolved = slot.resolved
        etc = self.m.sandboxes.etc_files(self.pod, self.sandbox.ip, images.passwd_file(resolved.users),
                                         images.group_file(resolved.groups))
        return {"root": os.path.join(self.dir, "root"), "overlay_dir": os.path.join(self.dir, "overlay"), "etc": etc,
                "holds": [*images.LIBRARY_DIRS, *resolved.holds], "mounts": await self._container_mounts(slot),
                "dirs": [slot.working_dir], "shm": self.m.sandboxes.shm_dir(self.uid)}

    async def _prepare_volume(self, volume: dict) -> str:
        name = volume["name"]
        directory = os.path.join(self.dir, "volumes", name)
        if "hostPath" in volume:
            return self._host_path(volume["hostPath"], name)
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            path = os.path.join(self.m.state_dir, "claims", self.pod["metadata"].get("namespace", "default"), claim)
            os.makedirs(path, exist_ok=True)
            return path
        if any(k in volume for k in FILE_VOLUMES):
            if self.env_resolver is None:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : no API access yet')
            try:
                files = await self.env_resolver.volume_files(self.pod, volume)
            except Exception as exc:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : '
                                  f'{getattr(exc, "message", None) or exc}') from None
            write_volume_files(directory, files, volume_mode(volume))
            self._protect_tokens(directory, volume)
            return directory
        os.makedirs(directory, exist_ok=True)  # emptyDir and anything else: a directory of the pod
        os.chmod(directory, 0o777)
        return directory

    def _protect_tokens(self, directory: str, volume: dict) -> None:
        """A projected service-account token as the kubelet writes it: with fsGroup, or with
        one runAsUser for every container, 0600 and owned by that user (fsGroup then adds
        group read), so the pod's user and nobody else reads it."""
        spec = self.pod.get("spec") or {}
        users = {security.effective_context(self.pod, c).get("runAsUser")
                 for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])}
        fs_user = users.pop() if len(users) == 1 else None
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        if fs_user is None and fs_group is None:
            return
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "serviceAccountToken" in source:
                token = os.path.join(directory, source["serviceAccountToken"].get("path") or "token")
                if os.path.exists(token):
                    os.chmod(token, 0o600)
                    if fs_user is not None:
                        os.chown(os.path.realpath(token), int(fs_user), -1)

    @staticmethod
    def _host_path(src: dict, name: str) -> str:
        path = src.get("path", "")
        kind = src.get("type") or ""
        if kind == "DirectoryOrCreate":
            os.makedirs(path, exist_ok=True)
        elif kind == "FileOrCreate" and not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "a").close()
        elif kind == "Directory" and not os.path.isdir(path):
            raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : hostPath type check failed: '
                              f'{path} is not a directory')
        elif kind == "File" and not os.path.isfile(path):
            raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : hostPath type check failed: '
                              f'{path} is not a file')
        elif not os.path.exists(path):
            os.makedirs(path, exist_ok=True)
        return path

    # containers
    def _collect_exits(self) -> None:
        """Turn finished processes into terminated states and restart decisions."""
        for slot in self.all_slots():
            process = slot.process
            if process is None or process.running:
                continue
            slot.process = None
            self._stop_probes(slot)
            slot.ready = False
            record = process.record
            if process.exit_known and process.exit_code is not None:
                terminated = {"exitCode": process.exit_code, "reason": terminated_reason(process.exit_code),
                              "startedAt": record.started_at, "finishedAt": process.finished_at,
                              "containerID": record.container_id}
            else:
                terminated = {"exitCode": 137, "reason": "ContainerStatusUnknown",
                              "message": "The container could not be located when the pod was terminated",
                              "startedAt": record.started_at, "finishedAt": process.finished_at,
                              "containerID": record.container_id}
            slot.previous_terminated = None
            slot.terminated = terminated
            slot.finished_mono = time.monotonic()
            policy = (self.pod.get("spec") or {}).get("restartPolicy") or "Always"
            slot.done = not should_restart(policy, terminated["exitCode"], slot.is_init)
            if record.cgroup:
                runtime.kill_cgroup(record.cgroup)
                runtime.remove_cgroup(record.cgroup)
            self.save()

    async def _drive(self, slot: ContainerSlot, now: float) -> float | None:
        """Start or restart one container when it is due; returns seconds until next due."""
        if slot.running and slot.image_changed and not slot.replacing:
            slot.replacing = True  # a new image: the kubelet restarts the container with it
            self.event("Normal", "Killing", f"Container {slot.name} definition changed, will be restarted")
            asyncio.create_task(self._kill_unhealthy(slot, slot.process, {}))
        if slot.running or slot.done:
            return None
        slot.replacing = False
        if slot.image_changed:
            slot.image_changed = False
            self._pull(slot, now)
        if slot.resolved is None:
            return self._image_wait(slot, now)
        if now < slot.retry_at:
            return slot.retry_at - now
        if slot.terminated is not None:
            finished = slot.finished_mono
            key = slot.backoff_key
            if self.crash_backoff.in_backoff_since(key, finished, now):
                backoff = self.crash_backoff.get(key)
                slot.waiting_reason = "CrashLoopBackOff"
                slot.waiting_message = crash_backoff_message(backoff, slot.name, self.pod)
                if slot.backoff_event_sent != finished:
                    slot.backoff_event_sent = finished
                    self.event("Warning", "BackOff", f"Back-off restarting failed container {slot.name} in pod "
                                                     f"{format_pod(self.pod)}")
                return self.crash_backoff.remaining(key, finished, now)
            self.crash_backoff.next(key, finished, now)
        await self._start(slot)
        if slot.running or slot.done:
            return None
        return max(0.0, slot.retry_at - time.monotonic())  # start error: back-off next; env error: retry

    async def _start(self, slot: ContainerSlot) -> None:
        from pocketkube.node.env import expand

        spec = slot.spec
        try:
            env = await self.env_resolver.container_env(self.pod, spec, self.pod_ip) if self.env_resolver else {}
        except Exception as exc:
            message = getattr(exc, "message", None) or str(exc)
            slot.waiting_reason = getattr(exc, "reason", None) or "CreateContainerConfigError"
            slot.waiting_message = message
            self.event("Warning", "Failed", f"Error: {message}")
            slot.retry_at = time.monotonic() + slot.retry_delay
            slot.retry_delay = min(slot.retry_delay * 2, RETRY_MAX_SECONDS)
            return
        resolved = slot.resolved
        refusal = security.verify_run_as_non_root(security.effective_context(self.pod, spec), resolved.user,
                                                  format_pod(self.pod), slot.name)
        try:
            slot.security = self._security(slot)
        except ValueError as exc:  # an image user its passwd lacks
            refusal = str(exc)
        if refusal is not None:
            slot.waiting_reason, slot.waiting_message = "CreateContainerConfigError", refusal
            self.event("Warning", "Failed", f"Error: {refusal}")
            slot.retry_at = time.monotonic() + slot.retry_delay
            slot.retry_delay = min(slot.retry_delay * 2, RETRY_MAX_SECONDS)
            return
        if slot.security["unknown_capabilities"]:  # runc's warning; the container runs without them
            log.warning("pod %s container %s: ignoring unknown or unavailable capabilities: %s",
                        format_pod(self.pod), slot.name, slot.security["unknown_capabilities"])
        slot.retry_delay = RETRY_SECONDS
        hostname = self._hostname()
        merged = {**resolved.env, "HOSTNAME": hostname, **env}
        if spec.get("tty"):
            merged.setdefault("TERM", "xterm")
        argv = [expand(a, env) for a in resolved.argv] if (spec.get("command") or spec.get("args")) else resolved.argv
        slot.env = merged
        slot.working_dir = spec.get("workingDir") or resolved.working_dir or "/"
        instance = slot.instances
        restarting = slot.terminated is not None
        container_id = "pocketkube://" + hashlib.sha256(
            f"{self.uid}/{slot.name}/{instance}/{time.time_ns()}".encode()).hexdigest()
        cgroup = self.m.cgroups.create(self.uid, f"{slot.name}-{instance}")  # one per instance
        log_path = self.log_path(slot, instance)
        try:
            process = await runtime.start_container(
                spawner=self.m.sandboxes.spawner, name=slot.name, container_id=container_id,
                holder_pid=self.sandbox.holder_pid, argv=argv,
                env=merged, working_dir=slot.working_dir, log_path=log_path, cgroup=cgroup,
                restart_count=slot.restart_count + (1 if restarting else 0), tty=bool(spec.get("tty")),
                stdin=bool(spec.get("stdin")), stdin_once=bool(spec.get("stdinOnce")),
                pid_namespace=self.sandbox.pid_namespace_path, security=slot.security,
                host_pid=bool((self.pod.get("spec") or {}).get("hostPID")),
                writable=[vm["mountPath"] for vm in spec.get("volumeMounts") or [] if not vm.get("readOnly")],
                rootfs=await self._rootfs(slot))
        except runtime.StartError as exc:
            if cgroup:
                runtime.remove_cgroup(cgroup)
            self.event("Warning", "Failed", f"Error: {exc}")
            if restarting:
                slot.restart_count += 1
            slot.instances += 1
            slot.terminated = {"exitCode": runtime.START_ERROR_EXIT_CODE, "reason": "StartError",
                               "message": str(exc), "startedAt": EPOCH, "finishedAt": runtime.rfc3339(),
                               "containerID": container_id}
            slot.finished_mono = time.monotonic()
            policy = (self.pod.get("spec") or {}).get("restartPolicy") or "Always"
            slot.done = not should_restart(policy, runtime.START_ERROR_EXIT_CODE, slot.is_init)
            self.save()
            return
        if restarting:
            slot.restart_count += 1
            slot.previous_terminated = slot.terminated
        slot.instances += 1
        self._prune_logs(slot)
        slot.process = process
        slot.log_index = runtime.LogIndex(log_path)
        slot.waiting_reason = slot.waiting_message = None
        slot.ready = False
        slot.started = not spec.get("startupProbe")
        process.on_exit = lambda _p: self._poke()
        self.event("Normal", "Created", f"Created container {slot.name}")
        self.event("Normal", "Started", f"Started container {slot.name}")
        self.save()
        await self._post_start(slot)
        if not slot.is_init:
            self._start_probes(slot)

    def _security(self, slot: ContainerSlot) -> dict:
        """What the container's process becomes (security.py), from its spec and image."""
        resolved = slot.resolved
        return security.process_security(self.pod, slot.spec, image_user=resolved.user,
                                         passwd=images.passwd_file(resolved.users),
                                         group=images.group_file(resolved.groups), available=self.m.capabilities)

    def _prune_logs(self, slot: ContainerSlot) -> None:
        """Keep the current and the previous instance's logs."""
        for old in range(max(0, slot.instances - 3), slot.instances - 2):
            for suffix in ("", ".idx"):
                try:
                    os.unlink(self.log_path(slot, old) + suffix)
                except FileNotFoundError:
                    pass

    def _hostname(self) -> str:
        from pocketkube.node.sandbox import pod_hostname

        if (self.pod.get("spec") or {}).get("hostNetwork"):
            with open("/proc/sys/kernel/hostname") as f:
                return f.read().strip()
        return pod_hostname(self.pod, self.m.cluster_domain)[0]

    def _poke(self) -> None:
        self.wake.set()

    # lifecycle hooks and probes
    async def _run_handler(self, slot: ContainerSlot, process: runtime.ContainerProcess, handler: dict,
                           timeout: float) -> runtime.ProbeResult:
        """An exec / httpGet / tcpSocket handler (probes and lifecycle hooks) of the container
        instance `process` (exec runs in its namespaces)."""
        host = self.pod_ip or self.m.node_ip
        if "exec" in handler:
            command = handler["exec"].get("command") or []
            argv = runtime.exec_argv(process.pid, slot.working_dir, slot.env, command,
                                     cgroup=process.record.cgroup, security=self._security(slot))
            return await runtime.probe_exec(argv, command, timeout)
        if "httpGet" in handler:
            get = handler["httpGet"]
            return await runtime.probe_http(self.m.probe_sockets, scheme=get.get("scheme") or "HTTP",
                                            host=get.get("host") or host,
                                            port=runtime.resolve_port(get.get("port"), slot.spec),
                                            path=get.get("path") or "/", headers=get.get("httpHeaders") or [],
                                            timeout=timeout)
        if "tcpSocket" in handler or "grpc" in handler:
            target = handler.get("tcpSocket") or handler.get("grpc")
            return await runtime.probe_tcp(self.m.probe_sockets, target.get("host") or host,
                                           runtime.resolve_port(target.get("port"), slot.spec), timeout)
        if "sleep" in handler:
            await asyncio.sleep(min(timeout, float(handler["sleep"].get("seconds", 0))))
            return runtime.ProbeResult(True)
        return runtime.ProbeResult(True)

    async def _post_start(self, slot: ContainerSlot) -> None:
        hook = (slot.spec.get("lifecycle") or {}).get("postStart")
        if not hook:
            return
        result = await self._run_handler(slot, slot.process, hook, 30)
        if not result.success:
            self.event("Warning", "FailedPostStartHook", f"PostStartHook failed: {result.message}")
            self.event("Normal", "Killing", "FailedPostStartHook")
            await slot.process.stop(self._grace(slot))

    def _grace(self, slot: ContainerSlot, probe: dict | None = None) -> int:
        if probe and probe.get("terminationGracePeriodSeconds") is not None:
            return int(probe["terminationGracePeriodSeconds"])
        grace = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        return DEFAULT_GRACE_SECONDS if grace is None else int(grace)

    def _start_probes(self, slot: ContainerSlot) -> None:
        spec = slot.spec
        process = slot.process
        startup_done = asyncio.Event()
        if not spec.get("startupProbe"):
            startup_done.set()
        if spec.get("startupProbe"):
            slot.probe_tasks.append(asyncio.create_task(
                self._probe_loop(slot, process, "Startup", spec["startupProbe"], None, startup_done)))
        if spec.get("livenessProbe"):
            slot.probe_tasks.append(asyncio.create_task(
                self._probe_loop(slot, process, "Liveness", spec["livenessProbe"], startup_done, None)))
        if spec.get("readinessProbe"):
            slot.probe_tasks.append(asyncio.create_task(
                self._probe_loop(slot, process, "Readiness", spec["readinessProbe"], startup_done, None)))
        elif startup_done.is_set():
            slot.ready = True  # no probe: ready once started (in the same status write)
        else:
            slot.probe_tasks.append(asyncio.create_task(self._ready_when_started(slot, process, startup_done)))

    async def _ready_when_started(self, slot, process, startup_done: asyncio.Event) -> None:
        await startup_done.wait()
        if slot.process is process and process.running:
            slot.ready = True
            self.m.changed(self)

    def _stop_probes(self, slot: ContainerSlot) -> None:
        for task in slot.probe_tasks:
            task.cancel()
        slot.probe_tasks = []

    async def _probe_loop(self, slot: ContainerSlot, process, kind: str, probe: dict,
                          wait_for: asyncio.Event | None, done: asyncio.Event | None) -> None:
        period = max(1, int(probe.get("periodSeconds") or 10))
        timeout = max(1, int(probe.get("timeoutSeconds") or 1))
        success_needed = max(1, int(probe.get("successThreshold") or 1))
        failure_limit = max(1, int(probe.get("failureThreshold") or 3))
        if wait_for is not None:
            await wait_for.wait()
        started = time.monotonic()
        await asyncio.sleep(int(probe.get("initialDelaySeconds") or 0))
        successes = failures = 0
        while slot.process is process and process.running:
            result = await self._run_handler(slot, process, probe, timeout)
            if not (slot.process is process and process.running):
                return
            if not result.success and time.monotonic() - started < PROBE_WARMUP_SECONDS:
                await asyncio.sleep(PROBE_WARMUP_RETRY)  # a program still starting is not a failure yet
                continue
            if result.success:
                successes, failures = successes + 1, 0
                if kind == "Readiness" and successes >= success_needed and not slot.ready:
                    slot.ready = True
                    self.m.changed(self)
                if kind == "Startup":
                    slot.started = True
                    done.set()
                    self.m.changed(self)
                    return
            else:
                successes, failures = 0, failures + 1
                self.event("Warning", "Unhealthy", f"{kind} probe failed: {result.message}".rstrip())
                if failures >= failure_limit:
                    if kind == "Readiness":
                        if slot.ready:
                            slot.ready = False
                            self.m.changed(self)
                    else:
                        self.event("Normal", "Killing", f"Container {slot.name} failed {kind.lower()} probe, "
                                                        f"will be restarted")
                        asyncio.create_task(self._kill_unhealthy(slot, process, probe))
                        return
            elapsed = time.monotonic() - started
            await asyncio.sleep(period - (elapsed % period) if elapsed > 0 else period)

    async def _kill_unhealthy(self, slot: ContainerSlot, process, probe: dict) -> None:
        """Stop a container so that it is restarted (failed probe, changed image)."""
        grace = self._grace(slot, probe)
        await self._pre_stop(slot, process, grace)
        await process.stop(grace)
        self.wake.set()

    async def _pre_stop(self, slot: ContainerSlot, process, grace: float) -> None:
        hook = (slot.spec.get("lifecycle") or {}).get("preStop")
        if hook and process.running and grace > 0:
            try:
                result = await asyncio.wait_for(self._run_handler(slot, process, hook, grace), grace)
                if not result.success:
                    self.event("Warning", "FailedPreStopHook", f"PreStopHook failed: {result.message}")
            except asyncio.TimeoutError:
                pass

    # end of life
    async def _finish(self, phase: str) -> None:
        """A pod in a terminal phase: nothing runs any more and its sandbox is removed
        (its IP stays in the status; its logs stay until the pod is deleted)."""
        self.terminal_phase = phase
        await self._release()
        self.save()

    async def _release(self) -> None:
        """Nothing of the pod runs any more: its probes stop, its sandbox (network namespace,
        holder) and its cgroup go."""
        for slot in self.all_slots():
            self._stop_probes(slot)
        if self.sandbox is not None:
            await self.m.sandboxes.destroy(self.sandbox)
            self.sandbox = None
        self.m.cgroups.remove_pod(self.uid)

    async def terminate(self, grace_seconds: int) -> None:
        self.terminating = True
        self.wake.set()
        await cancel_and_wait(self.task)
        async with self.lock:
            grace = grace_seconds if grace_seconds <= 0 else max(grace_seconds, MINIMUM_GRACE_SECONDS)
            running = [s for s in self.all_slots() if s.running]
            for slot in running:
                self.event("Normal", "Killing", f"Stopping container {slot.name}")
            await asyncio.gather(*(self._stop_slot(s, grace) for s in running))
            await self._release()
            remove_tree(self.dir)

    async def _stop_slot(self, slot: ContainerSlot, grace: float) -> None:
        process = slot.process
        deadline = time.monotonic() + grace
        await self._pre_stop(slot, process, grace)
        await process.stop(max(0.0, deadline - time.monotonic()) if grace > 0 else 0)

    # status
    def status(self) -> dict:
        self._collect_exits()
        now = runtime.rfc3339()
        status = generate_pod_status(
            self.pod, init_views=self._views(self.init_slots), views=self._views(self.slots),
            sandbox_ready=self.sandbox is not None and self.terminal_phase is None, pod_ip=self.pod_ip,
            host_ip=self.m.node_ip, start_time=self.start_time, terminal_phase=self.terminal_phase,
            previous_conditions=self.conditions, now=now)
        self.conditions = [c for c in status["conditions"] if c["type"] in KUBELET_CONDITIONS]
        return status

    # persistence
    def save(self) -> None:
        if self.uid in self.m._adopted:
            return  # adopted but not synced yet: what the previous agent saved still holds
        state = {"metadata": {k: self.pod.get("metadata", {}).get(k) for k in ("name", "namespace", "uid")},
                 "start_time": self.start_time, "pod_ip": self.pod_ip, "terminal_phase": self.terminal_phase,
                 "conditions": self.conditions,
                 "containers": {s.backoff_key: s.to_state() for s in self.all_slots()}}
        os.makedirs(self.dir, exist_ok=True)
        write_atomic(os.path.join(self.dir, "state.json"), json.dumps(state).encode(), mode=0o600)

    def load(self, state: dict) -> dict[str, dict]:
        """Restore what a previous agent saved; returns the container states by key."""
        self.pod = {"metadata": state.get("metadata") or {"uid": self.uid}}
        self.start_time = state.get("start_time")
        self.pod_ip = state.get("pod_ip")
        self.terminal_phase = state.get("terminal_phase")
        self.conditions = state.get("conditions") or []
        return state.get("containers") or {}


class VolumeError(Exception):
    """A volume could not be set up (the kubelet's FailedMount)."""


# ---- the manager -----------------------------------------------------------------------------

class PodManager:
    """The pods of one node: see the module docstring."""

    def __init__(self, *, node_name: str, node_ip: str, pod_cidr: str, state_dir: str,
                 cluster_dns: str = "10.96.0.10", cluster_domain: str = "cluster.local",
                 netns: str | None = None,
                 on_event: Callable[[dict, str, str, str], None] | None = None,
                 on_change: Callable[[dict], None] | None = None):
        self.node_name = node_name
        self.node_ip = node_ip
        self.pod_cidr = pod_cidr
        self.state_dir = state_dir
        self.cluster_dns = cluster_dns
        self.cluster_domain = cluster_domain
        self.netns = netns
        self.on_event = on_event
        self.on_change = on_change
        self.cache_dir = os.path.join(state_dir, "images")
        os.makedirs(self.cache_dir, exist_ok=True)
        self.sandboxes = SandboxManager(state_dir=state_dir, node_ip=node_ip, pod_cidr=pod_cidr, netns=netns,
                                        cluster_dns=cluster_dns, cluster_domain=cluster_domain)
        self.cgroups = runtime.Cgroups(state_dir, node_name)
        self.capabilities = own_capabilities()  # a privileged container gets these
        self.probe_sockets = runtime.NetnsSockets(f"/run/netns/{netns}" if netns else None)
        self.workers: dict[str, PodWorker] = {}
        self._indexer: asyncio.Task | None = None
        self._adopted: dict[str, dict[str, dict]] = {}

    # lifecycle
    async def start(self) -> None:
        """Adopt the sandboxes a previous agent left running; clean the dead ones."""
        live_uids = set()
        for uid in self.sandboxes.known_uids():
            worker = self._adopt(uid)
            if worker is not None:
                self.workers[uid] = worker
                if worker.sandbox is not None:
                    live_uids.add(uid)
        self.sandboxes.ipam.retain(live_uids)
        self._indexer = asyncio.create_task(self._index_logs(), name="log-indexer")

    def _adopt(self, uid: str) -> PodWorker | None:
        pod_dir = self.sandboxes.pod_dir(uid)
        try:
            with open(os.path.join(pod_dir, "state.json")) as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = None
        info = self.sandboxes.load(uid)
        if state is None:
            self._kill_leftovers(info, {})
            remove_tree(pod_dir)
            return None
        worker = PodWorker(self, uid)
        containers = worker.load(state)
        alive = info is not None and info.alive()
        if not alive:
            self._kill_leftovers(info, containers)
            if info is not None:
                self.sandboxes.ipam.release(uid)
            for sub in ("root", "overlay", "shm", "sandbox.json"):
                remove_tree(os.path.join(pod_dir, sub))
            self.cgroups.remove_pod(uid)
        else:
            worker.sandbox = info
        self._adopted[uid] = containers
        return worker

    def _kill_leftovers(self, info: SandboxInfo | None, containers: dict[str, dict]) -> None:
        for saved in containers.values():
            record = saved.get("record")
            if record:
                process = runtime.ContainerProcess(runtime.ContainerRecord(**record))
                if process_alive(record["pid"], record.get("start_ticks")) or record.get("cgroup"):
                    process.kill_all()
        if info is not None and info.alive():
            try:
                os.kill(info.holder_pid, 9)
            except ProcessLookupError:
                pass

    def _restore_slots(self, worker: PodWorker) -> None:
        """First sync of an adopted pod: put the saved container states back in its slots."""
        containers = self._adopted.pop(worker.uid, None)
        if containers is None:
            return
        for slot in worker.all_slots():
            saved = containers.get(slot.backoff_key)
            if saved is None:
                continue
            slot.load_state(saved)
            record = saved.get("record")
            if worker.sandbox is not None and record and process_alive(record["pid"], record.get("start_ticks")):
                slot.process = runtime.adopt_container(runtime.ContainerRecord(**record))
                slot.process.on_exit = lambda _p, w=worker: w._poke()
                slot.log_index = runtime.LogIndex(record["log_path"])
                run_dir = os.path.join(worker.dir, "containers", slot.name)
                slot.pulled_image = slot.spec.get("image", "")
                slot.resolved = images.resolve(slot.pulled_image, slot.spec.get("command"),
                                               slot.spec.get("args"), worker.pod, slot.spec, run_dir=run_dir,
                                               cache_dir=self.cache_dir)
                slot.started = True
                if not slot.is_init:
                    worker._start_probes(slot)
            elif record:  # it ran when the agent died and is gone now: exit code unknown
                slot.terminated = {"exitCode": 137, "reason": "ContainerStatusUnknown",
                                   "message": "The container could not be located when the pod was terminated",
                                   "startedAt": record.get("started_at"), "finishedAt": runtime.rfc3339(),
                                   "containerID": record.get("container_id")}
                policy = (worker.pod.get("spec") or {}).get("restartPolicy") or "Always"
                slot.done = not should_restart(policy, 137, slot.is_init)
                slot.instances = max(slot.instances, 1)

    async def stop(self) -> None:
        """Stop managing; pods keep running (a restarted agent adopts them)."""
        if self._indexer is not None:
            self._indexer.cancel()
        await cancel_and_wait(*(worker.task for worker in self.workers.values()))
        for worker in self.workers.values():
            for slot in worker.all_slots():
                worker._stop_probes(slot)
                if slot.process is not None:
                    slot.process.detach()
            worker.save()
        await self.sandboxes.spawner.close()  # the holders live on
        self.probe_sockets.close()
        self.cgroups.remove_if_empty()

    # the agent's interface
    async def sync(self, pod: dict, env) -> dict | None:
        """Make reality match the pod spec (work happens in the pod's worker task); returns
        the pod's current status, always (the agent compares it with what it wrote)."""
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is None:
            worker = self.workers[uid] = PodWorker(self, uid)
        first = worker.task is None
        if first and uid in self._adopted:
            worker.pod = pod
            worker.env_resolver = env
            spec = pod.get("spec") or {}
            worker.init_slots = worker._merge_slots([], spec.get("initContainers") or [], True)
            worker.slots = worker._merge_slots([], spec.get("containers") or [], False)
            self._restore_slots(worker)
        worker.update(pod, env)
        return worker.status()

    async def terminate(self, pod: dict, grace_seconds: int) -> None:
        """Stop the pod's containers gracefully (preStop, SIGTERM, grace, SIGKILL), remove
        its sandbox, IP, cgroups and files. `pod` may carry only metadata.uid."""
        uid = pod["metadata"]["uid"]
        worker = self.workers.pop(uid, None)
        if worker is None:
            info = self.sandboxes.load(uid)
            if info is not None:
                self._kill_leftovers(info, {})
                await self.sandboxes.destroy(info)
            remove_tree(self.sandboxes.pod_dir(uid))
            return
        if pod.get("spec"):
            worker.pod = pod
        if worker.task is None and uid in self._adopted:
            self._kill_leftovers(worker.sandbox, self._adopted.pop(uid))
        await worker.terminate(grace_seconds)

    def current_status(self, uid: str) -> dict | None:
        """The status of a pod this node runs (None if it runs no such pod)."""
        worker = self.workers.get(uid)
        return worker.status() if worker is not None and worker.task is not None else None

    def reported(self, uid: str) -> bool:
        """Whether the pod's status is worth writing yet: its worker finished its first pass,
        or took longer than FIRST_STATUS_SECONDS (see PodWorker.run)."""
        worker = self.workers.get(uid)
        return worker is not None and worker.reported

    def running_pods(self) -> list[str]:
        """Uids of the pods this node holds anything for (sandbox, containers, logs)."""
        return sorted(self.workers)

    # for streaming
    def _worker(self, uid: str) -> PodWorker:
        worker = self.workers.get(uid)
        if worker is None:
            raise PodRuntimeError(f"pod {uid} is not on this node")
        return worker

    def _running_slot(self, uid: str, container: str) -> tuple[PodWorker, ContainerSlot]:
        worker = self._worker(uid)
        slot = worker.slot(container)
        if slot is None:
            raise PodRuntimeError(f"container {container} is not valid for pod {worker.pod['metadata'].get('name')}")
        if not slot.running or worker.sandbox is None:
            raise PodRuntimeError(f"container not found ({container!r})" if not slot.instances else
                                  f'container "{container}" in pod "{worker.pod["metadata"].get("name")}" '
                                  f"is not running")
        return worker, slot

    def pod_netns_path(self, uid: str) -> str:
        worker = self._worker(uid)
        if worker.sandbox is None:
            raise PodRuntimeError(f"pod {worker.pod['metadata'].get('name')} has no running sandbox")
        return worker.sandbox.netns_path

    def container_pid(self, uid: str, container: str) -> int | None:
        """The host PID of the running container's main process (PID 1 inside it)."""
        worker = self.workers.get(uid)
        slot = worker.slot(container) if worker else None
        return slot.process.pid if slot is not None and slot.running else None

    def exec_command(self, uid: str, container: str, argv: list[str], tty: bool = False) -> list[str]:
        """An argv running `argv` in the container: as a child of nsenter in its PID, mount,
        UTS, IPC and network namespaces, with its root, working dir, env and cgroup; with
        tty=True its stdin must be a terminal (it becomes the controlling one)."""
        worker, slot = self._running_slot(uid, container)
        return runtime.exec_argv(slot.process.pid, slot.working_dir, slot.env, argv,
                                 cgroup=slot.process.record.cgroup, tty=tty, security=worker._security(slot))

    def attach(self, uid: str, container: str) -> runtime.AttachHandle:
        _, slot = self._running_slot(uid, container)
        return runtime.AttachHandle(slot.process)

    def log_files(self) -> dict[str, str]:
        """The node's log directory as the kubelet's /logs/ serves its /var/log: this agent's own
        log (agent.log in the state dir, where `pocketkube up` writes it) and every container
        instance's log as pods/<namespace>_<name>_<uid>/<container>/<n>.log (/var/log/pods' layout).
        Relative path -> file."""
        files = {}
        agent_log = os.path.join(self.state_dir, "agent.log")
        if os.path.exists(agent_log):
            files["agent.log"] = agent_log
        for uid, worker in self.workers.items():
            m = worker.pod.get("metadata") or {}
            base = f"pods/{m.get('namespace', '')}_{m.get('name', '')}_{uid}"
            for slot in worker.all_slots():
                for instance in range(slot.instances):
                    path = worker.log_path(slot, instance)
                    if os.path.exists(path):
                        files[f"{base}/{slot.name}/{instance}.log"] = path
        return files

    def log_path(self, uid: str, container: str, previous: bool = False) -> str | None:
        worker = self.workers.get(uid)
        slot = worker.slot(container) if worker else None
        if slot is None or slot.instances == 0:
            return None
        instance = slot.instances - (2 if previous else 1)
        if instance < 0:
            return None
        path = worker.log_path(slot, instance)
        return path if os.path.exists(path) else None

    async def read_logs(self, uid: str, container: str, *, follow: bool = False, tail_lines: int | None = None,
                        since_seconds: int | None = None, timestamps: bool = False, previous: bool = False,
                        limit_bytes: int | None = None, since_time: str | None = None) -> AsyncIterator[bytes]:
        """kubectl logs for one container; raises PodRuntimeError with the kubelet's message
        when there is nothing to read (container waiting, no previous instance)."""
        worker = self._worker(uid)
        name = worker.pod["metadata"].get("name")
        slot = worker.slot(container)
        if slot is None:
            raise PodRuntimeError(f"container {container} is not valid for pod {name}")
        path = self.log_path(uid, container, previous)
        if path is None:
            if previous:
                raise PodRuntimeError(f'previous terminated container "{container}" in pod "{name}" not found')
            reason = slot.waiting_reason or "ContainerCreating"
            raise PodRuntimeError(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        current = slot.process if not previous else None
        since_ns = _parse_time_ns(since_time) if since_time else None
        async for chunk in runtime.read_log_file(
                path, follow=follow and not previous, tail_lines=tail_lines, since_seconds=since_seconds,
                since_time_ns=since_ns, timestamps=timestamps, limit_bytes=limit_bytes,
                is_running=lambda: current is not None and current.running):
            yield chunk

    # internals
    def changed(self, worker: PodWorker) -> None:
        """Tell the agent a pod's status changed — only when it did: the agent's sync wakes the
        worker, whose reconcile calls this again, so notifying on every reconcile kept the agent
        at 100% CPU per running pod."""
        if self.on_change is None or not worker.reported or not worker.pod.get("metadata", {}).get("name"):
            return
        status = worker.status()
        if status == worker.notified_status:
            return
        worker.notified_status = status
        try:
            self.on_change(worker.pod)
        except Exception:
            log.exception("change callback failed")

    async def _index_logs(self) -> None:
        while True:
            await asyncio.sleep(LOG_INDEX_SECONDS)
            for worker in list(self.workers.values()):
                for slot in worker.all_slots():
                    if slot.log_index is not None and slot.process is not None:
                        try:
                            slot.log_index.update()
                        except OSError:
                            pass


def _parse_time_ns(text: str) -> int:
    import datetime

    value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(value.timestamp() * 1_000_000_000)


def cleanup_node_state(state_dir: str, node_name: str) -> int:
    """For `down` (no agent running): kill every holder and container recorded under
    `state_dir`, remove their cgroups. Returns how many processes were killed."""
    killed = 0
    pods_dir = os.path.join(state_dir, "pods")
    for uid in sorted(os.listdir(pods_dir)) if os.path.isdir(pods_dir) else []:
        pod_dir = os.path.join(pods_dir, uid)
        try:
            with open(os.path.join(pod_dir, "state.json")) as f:
                containers = (json.load(f).get("containers") or {}).values()
        except (OSError, ValueError):
            containers = []
        for saved in containers:
            record = saved.get("record")
            if record and process_alive(record["pid"], record.get("start_ticks")):
                runtime.ContainerProcess(runtime.ContainerRecord(**record)).kill_all()
                killed += 1
            elif record and record.get("cgroup"):
                runtime.kill_cgroup(record["cgroup"])
        try:
            with open(os.path.join(pod_dir, "sandbox.json")) as f:
                info = SandboxInfo(**json.load(f))
            if info.alive():
                os.kill(info.holder_pid, 9)
                killed += 1
        except (OSError, ValueError):
            pass
    base = runtime.cgroup_base(node_name)
    for _ in range(50):
        if base is None or not os.path.exists(base):
            break
        runtime.remove_cgroup(base)
        time.sleep(0.02)
    return killed
