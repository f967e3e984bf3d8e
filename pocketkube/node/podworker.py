"""The pod worker: one pod's lifecycle on the node, as the kubelet's pod worker and SyncPod run it,
over the runtime interface (podruntime.PodRuntime), so it is the same over real processes and
over the unit tests' fake runtime.

A `PodWorker` is a state machine driven by one asyncio task: each pass (`reconcile`, under the
worker's lock) collects the containers that exited (once, there), resolves the images
(ErrImagePull / ImagePullBackOff with the kubelet's back-off), makes the volumes (volumes.py)
and the sandbox, runs the init containers in order, each to success, then the containers,
restarts them per restartPolicy (podstatus.should_restart, decided in ContainerSlot.finished)
with the kubelet's crash back-off (10 s doubling to 5 min, CrashLoopBackOff), starts each
instance's probes (probes.py) and postStart hook, rewrites token volumes when due, and ends
the pod when its phase is terminal (the sandbox goes, the IP stays in the status). Between
passes it sleeps until the earliest deadline or until woken (a container exited, the spec or
a probe verdict changed). `terminate(grace)` stops it: preStop hooks, SIGTERM, the grace period,
SIGKILL, the sandbox and the pod's files.

Its states per container: waiting (ContainerCreating, PodInitializing, ErrImagePull,
ImagePullBackOff, CreateContainerConfigError, CrashLoopBackOff), running, terminated (done for
good, or waiting for its restart). The status is a pure snapshot (`refresh_status`: podstatus.
generate_pod_status over the slots' views), computed once per change; the checkpoint
(checkpoint.py) is written at each change of what runs, and read back by `adopt`/`restore`
after an agent restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from typing import Callable

from pocketkube.core.linux import remove_tree, write_atomic
from pocketkube.core.objects import rfc3339
from pocketkube.core.tasks import cancel_and_wait
from pocketkube.node import checkpoint, images, runtime, security
from pocketkube.node.podfiles import pod_hostname
from pocketkube.node.podruntime import Container, ContainerRequest, PodRuntime, Sandbox
from pocketkube.node.podstatus import (KUBELET_CONDITIONS, ContainerView, crash_backoff_message, format_pod,
                                       generate_pod_status, pod_phase, should_restart, terminated_reason)
from pocketkube.node.probes import Prober
from pocketkube.node.runtime import GracePeriod
from pocketkube.node.sandbox import SandboxError
from pocketkube.node.volumes import PodVolumes, VolumeError, status_mounts

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
MINIMUM_GRACE_SECONDS = 2
DEFAULT_GRACE_SECONDS = 30
RETRY_SECONDS = 2.0          # a failed volume or env resolution is retried after this (doubling)
RETRY_MAX_SECONDS = 60.0
FIRST_STATUS_SECONDS = 1.0   # a pod's first status waits at most this long for its first sync pass
EPOCH = "1970-01-01T00:00:00Z"


def _pod_grace(grace_seconds: int) -> int:
    """A pod's grace period as its containers get it: 0 stays 0 (kill now), others at least
    MINIMUM_GRACE_SECONDS, as the kubelet's minimum."""
    return grace_seconds if grace_seconds <= 0 else max(grace_seconds, MINIMUM_GRACE_SECONDS)


def pod_data_dir(state_dir: str, uid: str) -> str:
    """What of a pod stays on the node's disk: its emptyDir volumes (volumes/<name>), as a
    kubelet keeps its volumes on disk, and its logs beside (`container_log_path`). The rest of
    the pod's files (sandbox, checkpoint, configMap/secret/projected volumes, /dev/shm) are in
    pods/<uid>, a tmpfs where `up` mounted one (pods.mount_pod_state)."""
    return os.path.join(state_dir, "pod-data", uid)


def container_log_path(state_dir: str, uid: str, container: str, instance: int) -> str:
    """A container instance's log on the node's disk: one file per instance in one directory
    of the node (`pod-logs/<pod uid>_<container>_<n>.log`, as the kubelet's flat
    /var/log/containers), so a starting pod makes one new inode on disk, not three directories
    and a file: on an ext4 without a journal each new inode scans past the recently freed
    ones (docs/adr/0021), and a burst frees and makes hundreds."""
    return os.path.join(state_dir, "pod-logs", f"{uid}_{container}_{instance}.log")


def remove_pod_data(state_dir: str, uid: str) -> None:
    """Remove what of a pod is on the node's disk: its data dir and its containers' logs."""
    remove_tree(pod_data_dir(state_dir, uid))
    logs = os.path.join(state_dir, "pod-logs")
    try:
        names = os.listdir(logs)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(uid + "_"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(logs, name))


class NodeContext:
    """What a worker knows of its node: its address and names, where images are cached, and
    whom to tell about events (`on_event(pod, type, reason, message)`) and status changes
    (`changed(worker)`)."""

    def __init__(self, *, node_ip: str, cluster_domain: str, state_dir: str, cache_dir: str,
                 on_event: Callable[[dict, str, str, str], None] | None, changed: Callable[["PodWorker"], None]):
        self.node_ip = node_ip
        self.cluster_domain = cluster_domain
        self.state_dir = state_dir
        self.cache_dir = cache_dir
        self.on_event = on_event
        self.changed = changed


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


# ---- one container -------------------------------------------------------------------------

class ContainerSlot:
    """The worker's state for one container of the pod (init or regular)."""

    def __init__(self, spec: dict, is_init: bool):
        self.spec = spec
        self.is_init = is_init
        self.name = spec["name"]
        self.resolved: images.Resolved | None = None
        self.pull_failed_at = 0.0
        self.process: Container | None = None
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

    def finished(self, terminated: dict, restart_policy: str, now: float) -> None:
        """An instance ended (exit, start error, or lost while the agent was down): it becomes
        the last terminated state, and the restart policy decides whether another starts."""
        self.terminated = terminated
        self.finished_mono = now
        self.done = not should_restart(restart_policy, terminated["exitCode"], self.is_init)

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
        if self.process is not None:  # running, or exited and not yet collected (reconcile does that)
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
                "record": self.process.record.to_dict() if self.process is not None else None,
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

    def __init__(self, uid: str, node: NodeContext, pod_runtime: PodRuntime):
        self.node = node
        self.runtime = pod_runtime
        self.uid = uid
        self.pod: dict = {"metadata": {"uid": uid}}
        self.env_resolver = None
        self.sandbox: Sandbox | None = None
        self.pod_ip: str | None = None
        self.data_dir = pod_data_dir(node.state_dir, uid)
        self.volumes = PodVolumes(pod_runtime.pod_dir(uid), self.data_dir, node.state_dir, node.cache_dir)
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
        self.grace: GracePeriod | None = None  # the stop's, once terminate() began
        self.sandbox_retry_at = 0.0
        self.sandbox_delay = RETRY_SECONDS
        self.sandbox_error: str | None = None
        self.images_pulled = False
        self.image_backoff = Backoff()
        self.crash_backoff = Backoff()
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task] = set()  # probes and kills it started; ended by terminate/stop
        self.snapshot: dict | None = None  # the status as last computed (refresh_status)
        self.clock: Callable[[], float] = time.monotonic  # the back-offs' and retries' clock (tests move it)
        self.adopted: dict[str, dict] | None = None  # saved container states awaiting the first sync (adopt)

    @property
    def restart_policy(self) -> str:
        return (self.pod.get("spec") or {}).get("restartPolicy") or "Always"

    def spawn(self, coro, name: str) -> asyncio.Task:
        """A task of this pod (a probe, a kill): kept until it ends, its error logged, cancelled
        and awaited when the worker ends (`end_tasks`)."""
        task = asyncio.create_task(coro, name=f"pod-{self.uid}-{name}")
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("pod %s: task %s failed", format_pod(self.pod), task.get_name(), exc_info=task.exception())

    async def end_tasks(self) -> None:
        """Cancel the worker's loop and every task it started, and wait until they have ended."""
        await cancel_and_wait(self.task, *self.tasks)

    # paths
    @property
    def dir(self) -> str:
        return self.runtime.pod_dir(self.uid)

    def log_path(self, slot: ContainerSlot, instance: int) -> str:
        return container_log_path(self.node.state_dir, self.uid, slot.name, instance)

    def all_slots(self) -> list[ContainerSlot]:
        return self.init_slots + self.slots

    def slot(self, name: str) -> ContainerSlot | None:
        return next((s for s in self.all_slots() if s.name == name), None)

    # spec
    def update(self, pod: dict, env_resolver) -> None:
        """The pod's spec (and the resolver of its env and volumes) as the agent last saw it;
        starts the worker's task on the first call, wakes it on the others."""
        self.set_spec(pod, env_resolver)
        if self.task is None:
            self.task = asyncio.create_task(self.run(), name=f"pod-{self.uid}")
        self.wake.set()

    def set_spec(self, pod: dict, env_resolver) -> None:
        """The state machine's input: the spec its containers are merged with (a changed image
        restarts a container); an adopted pod's saved containers come back first."""
        if self.adopted is not None:
            self._restore(pod)
        self.pod = pod
        self.env_resolver = env_resolver
        spec = pod.get("spec") or {}
        self.init_slots = self._merge_slots(self.init_slots, spec.get("initContainers") or [], True)
        self.slots = self._merge_slots(self.slots, spec.get("containers") or [], False)
        if self.start_time is None:
            self.start_time = rfc3339()

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
        if self.node.on_event is not None and self.pod.get("metadata", {}).get("name"):
            try:
                self.node.on_event(self.pod, type_, reason, message)
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
        self.node.changed(self)

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
        now = self.clock()
        deadlines: list[float] = []
        await self._collect_exits()
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
                return max(0.0, self.sandbox_retry_at - self.clock())
        deadlines.append(await self._refresh_tokens(now))
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
        return status_mounts(slot.spec)

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
                                           slot.spec, run_dir=run_dir, cache_dir=self.node.cache_dir)
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
            await self.volumes.prepare(self.pod, self.env_resolver, [s.spec for s in self.all_slots()])
            self.sandbox = await self.runtime.create_sandbox(self.pod)
        except (SandboxError, VolumeError) as exc:
            reason = "FailedMount" if isinstance(exc, VolumeError) else "FailedCreatePodSandBox"
            self.sandbox_error = str(exc)
            self.event("Warning", reason, str(exc))
            self.sandbox_retry_at = self.clock() + self.sandbox_delay
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
        await self._collect_exits()
        await self.runtime.destroy_sandbox(self.sandbox, keep_pod_files=True)
        self.sandbox = None

    async def _refresh_tokens(self, now: float) -> float | None:
        """Token volumes written again when their token is due (volumes.PodVolumes.refresh_tokens)."""
        try:
            return await self.volumes.refresh_tokens(self.pod, self.env_resolver, now)
        except VolumeError as exc:
            self.event("Warning", "FailedMount", str(exc))
            return RETRY_SECONDS

    # containers
    async def _collect_exits(self) -> None:
        """Turn finished processes into terminated states and restart decisions: under the
        worker's lock (reconcile), once per exit."""
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
            slot.finished(terminated, self.restart_policy, self.clock())
            await self.runtime.container_ended(process)
            self.save()

    async def _drive(self, slot: ContainerSlot, now: float) -> float | None:
        """Start or restart one container when it is due; returns seconds until next due."""
        if slot.running and slot.image_changed and not slot.replacing:
            slot.replacing = True  # a new image: the kubelet restarts the container with it
            self.event("Normal", "Killing", f"Container {slot.name} definition changed, will be restarted")
            self.spawn(self._kill_unhealthy(slot, slot.process, {}), f"replace-{slot.name}")
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
        return max(0.0, slot.retry_at - self.clock())  # start error: back-off next; env error: retry

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
            slot.retry_at = self.clock() + slot.retry_delay
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
            slot.retry_at = self.clock() + slot.retry_delay
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
        log_path = self.log_path(slot, instance)
        request = ContainerRequest(
            uid=self.uid, name=slot.name, instance=instance, container_id=container_id, argv=argv, env=merged,
            working_dir=slot.working_dir, log_path=log_path,
            restart_count=slot.restart_count + (1 if restarting else 0), security=slot.security,
            holds=list(resolved.holds), passwd=images.passwd_file(resolved.users),
            group=images.group_file(resolved.groups),
            mounts=await self.volumes.mounts(self.pod, self.env_resolver, spec, resolved.mounts),
            writable=[vm["mountPath"] for vm in spec.get("volumeMounts") or [] if not vm.get("readOnly")],
            tty=bool(spec.get("tty")), stdin=bool(spec.get("stdin")), stdin_once=bool(spec.get("stdinOnce")),
            host_pid=bool((self.pod.get("spec") or {}).get("hostPID")))
        try:
            process = await self.runtime.start_container(self.pod, self.sandbox, request)
        except runtime.StartError as exc:
            self.event("Warning", "Failed", f"Error: {exc}")
            if restarting:
                slot.restart_count += 1
            slot.instances += 1
            slot.finished({"exitCode": runtime.START_ERROR_EXIT_CODE, "reason": "StartError",
                           "message": str(exc), "startedAt": EPOCH, "finishedAt": rfc3339(),
                           "containerID": container_id}, self.restart_policy, self.clock())
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
                                         group=images.group_file(resolved.groups), available=self.runtime.capabilities)

    def _prune_logs(self, slot: ContainerSlot) -> None:
        """Keep the current and the previous instance's logs."""
        for old in range(max(0, slot.instances - 3), slot.instances - 2):
            for suffix in ("", ".idx"):
                try:
                    os.unlink(self.log_path(slot, old) + suffix)
                except FileNotFoundError:
                    pass

    def _hostname(self) -> str:
        if (self.pod.get("spec") or {}).get("hostNetwork"):
            with open("/proc/sys/kernel/hostname") as f:
                return f.read().strip()
        return pod_hostname(self.pod, self.node.cluster_domain)[0]

    def _poke(self) -> None:
        self.wake.set()

    # lifecycle hooks and probes
    async def _run_handler(self, slot: ContainerSlot, process: Container, handler: dict,
                           timeout: float) -> runtime.ProbeResult:
        """A handler (probes and lifecycle hooks) run by the runtime against the container
        instance `process`."""
        return await self.runtime.run_handler(self.pod, self.pod_ip, process, slot.spec, slot.working_dir, slot.env,
                                              self._security(slot), handler, timeout)

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
        """The running instance's probes (probes.Prober); their verdicts change the slot."""
        process = slot.process

        def alive() -> bool:
            return slot.process is process and process.running

        def ready(value: bool) -> None:
            slot.ready = value
            self.node.changed(self)

        def started() -> None:
            slot.started = True
            self.node.changed(self)

        def unhealthy(_kind: str, probe: dict) -> None:
            self.spawn(self._kill_unhealthy(slot, process, probe), f"kill-{slot.name}")

        prober = Prober(slot.spec, check=lambda probe, timeout: self._run_handler(slot, process, probe, timeout),
                        alive=alive, spawn=self.spawn, event=self.event, ready=ready, started=started,
                        unhealthy=unhealthy)
        slot.probe_tasks, ready_now = prober.start()
        if ready_now:
            slot.ready = True  # no probe: ready once started (in the same status write)

    def _stop_probes(self, slot: ContainerSlot) -> None:
        for task in slot.probe_tasks:
            task.cancel()
        slot.probe_tasks = []

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
            await self.runtime.destroy_sandbox(self.sandbox)
            self.sandbox = None
        await self.runtime.remove_pod(self.uid)

    async def terminate(self, grace_seconds: int) -> dict | None:
        """Stop everything of the pod and remove it. Returns the pod's final status when
        containers were running (a terminal phase: Succeeded if every container exited 0,
        else Failed, with their terminated states), which the kubelet writes before the pod
        goes, so a Job's controller sees how its pod ended; None when nothing ran."""
        self.terminating = True
        self.wake.set()
        await self.end_tasks()
        if self.adopted is not None:  # never synced since the agent started: nothing is watched
            kill_leftovers(self.runtime, self.sandbox, [s["record"] for s in self.adopted.values() if s.get("record")])
            self.adopted = None
        final = None
        async with self.lock:
            self.grace = GracePeriod(_pod_grace(grace_seconds))
            running = [s for s in self.all_slots() if s.running]
            for slot in running:
                self.event("Normal", "Killing", f"Stopping container {slot.name}")
            await asyncio.gather(*(self._stop_slot(s, self.grace) for s in running))
            if running and self.terminal_phase is None:
                await self._collect_exits()
                for slot in self.all_slots():
                    slot.done = slot.terminated is not None or slot.done  # nothing restarts in a pod that goes
                self.terminal_phase = "Succeeded" if all(
                    (s.terminated or {}).get("exitCode") == 0 for s in self.slots) else "Failed"
                final = self.refresh_status()
            await self._release()
            remove_tree(self.dir)
            remove_pod_data(self.node.state_dir, self.uid)
            if self.env_resolver is not None:
                self.env_resolver.forget_pod(self.uid)
        return final

    def shorten_grace(self, grace_seconds: int) -> bool:
        """A later delete with a shorter grace period while the pod stops: the containers get
        SIGKILL by the new deadline (a preStop hook under way keeps its own). Returns whether
        the deadline moved."""
        return self.grace is not None and self.grace.shorten(_pod_grace(grace_seconds))

    async def _stop_slot(self, slot: ContainerSlot, grace: GracePeriod) -> None:
        process = slot.process
        await self._pre_stop(slot, process, grace.left())
        await process.stop(grace)

    # status
    def refresh_status(self) -> dict:
        """Compute the pod's status from the worker's state (generate_pod_status, pure; no exit
        is collected here: that is reconcile's, under the lock) and keep it as the snapshot
        the agent reads. The conditions' transition times are remembered from it."""
        status = generate_pod_status(
            self.pod, init_views=self._views(self.init_slots), views=self._views(self.slots),
            sandbox_ready=self.sandbox is not None and self.terminal_phase is None, pod_ip=self.pod_ip,
            host_ip=self.node.node_ip, start_time=self.start_time, terminal_phase=self.terminal_phase,
            previous_conditions=self.conditions, now=rfc3339())
        self.conditions = [c for c in status["conditions"] if c["type"] in KUBELET_CONDITIONS]
        self.snapshot = status
        return status

    # persistence and adoption
    def save(self) -> None:
        """Write the checkpoint (checkpoint.py) of what the pod runs now."""
        if self.adopted is not None:
            return  # adopted but not synced yet: what the previous agent saved still holds
        checkpoint.save(self.dir, {
            "metadata": {k: self.pod.get("metadata", {}).get(k) for k in ("name", "namespace", "uid")},
            "start_time": self.start_time, "pod_ip": self.pod_ip, "terminal_phase": self.terminal_phase,
            "conditions": self.conditions, "containers": {s.backoff_key: s.to_state() for s in self.all_slots()}})

    def load(self, state: dict) -> dict[str, dict]:
        """Restore what a previous agent saved; returns the container states by key."""
        self.pod = {"metadata": state.get("metadata") or {"uid": self.uid}}
        self.start_time = state.get("start_time")
        self.pod_ip = state.get("pod_ip")
        self.terminal_phase = state.get("terminal_phase")
        self.conditions = state.get("conditions") or []
        return state.get("containers") or {}

    @classmethod
    async def adopt(cls, uid: str, node: NodeContext, pod_runtime: PodRuntime) -> "PodWorker | None":
        """The pod a previous agent left on this node, from its checkpoint: a live sandbox is
        kept (its containers come back at the first sync, `_restore`); what a dead one left
        is killed and cleaned. None (its files removed) when there is no checkpoint."""
        pod_dir = pod_runtime.pod_dir(uid)
        state = checkpoint.load(pod_dir)
        sandbox = pod_runtime.find_sandbox(uid)
        if state is None:
            kill_leftovers(pod_runtime, sandbox, [])
            remove_tree(pod_dir)
            remove_pod_data(node.state_dir, uid)
            return None
        worker = cls(uid, node, pod_runtime)
        containers = worker.load(state)
        if sandbox is not None and sandbox.alive():
            worker.sandbox = sandbox
        else:
            kill_leftovers(pod_runtime, sandbox, checkpoint.container_records(state))
            await pod_runtime.forget_sandbox(uid, sandbox)
        worker.adopted = containers
        return worker

    def _restore(self, pod: dict) -> None:
        """First sync of an adopted pod: the saved container states go back in its slots; a
        container still running is watched again (its probes start again), one that ended
        while no agent watched is ContainerStatusUnknown (exit code 137)."""
        containers, self.adopted = self.adopted, None
        self.pod = pod
        spec = pod.get("spec") or {}
        self.init_slots = self._merge_slots([], spec.get("initContainers") or [], True)
        self.slots = self._merge_slots([], spec.get("containers") or [], False)
        for slot in self.all_slots():
            saved = containers.get(slot.backoff_key)
            if saved is None:
                continue
            slot.load_state(saved)
            record = saved.get("record")
            process = self.runtime.adopt_container(record) if self.sandbox is not None and record else None
            if process is not None:
                slot.process = process
                process.on_exit = lambda _p: self._poke()
                slot.log_index = runtime.LogIndex(record["log_path"])
                slot.pulled_image = slot.spec.get("image", "")
                slot.resolved = images.resolve(slot.pulled_image, slot.spec.get("command"), slot.spec.get("args"),
                                               pod, slot.spec, run_dir=os.path.join(self.dir, "containers", slot.name),
                                               cache_dir=self.node.cache_dir)
                slot.started = True
                if not slot.is_init:
                    self._start_probes(slot)
            elif record:  # it ran when the agent died and is gone now: exit code unknown
                slot.finished({"exitCode": 137, "reason": "ContainerStatusUnknown",
                               "message": "The container could not be located when the pod was terminated",
                               "startedAt": record.get("started_at"), "finishedAt": rfc3339(),
                               "containerID": record.get("container_id")}, self.restart_policy, self.clock())
                slot.instances = max(slot.instances, 1)

    async def detach(self) -> None:
        """Stop managing the pod and leave it running (the agent stops; a new one adopts it)."""
        await self.end_tasks()
        for slot in self.all_slots():
            self._stop_probes(slot)
            if slot.process is not None:
                slot.process.detach()
        self.save()


def kill_leftovers(pod_runtime: PodRuntime, sandbox: Sandbox | None, records: list[dict]) -> None:
    """Kill what a pod no agent manages still runs: its containers, then its holder."""
    for record in records:
        pod_runtime.kill_container(record)
    if sandbox is not None:
        pod_runtime.kill_sandbox(sandbox)
