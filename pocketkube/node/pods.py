"""PodManager: the pods of one node, the agent's interface to them (the kubelet's pod manager
and the runtime-facing parts of its server: logs, exec, attach).

One `PodWorker` per pod bound to the node (podworker.py: the pod's lifecycle as a state machine
over the runtime interface, podruntime.py) does the work; the manager creates them, adopts
the pods a previous agent left (`start`: PodWorker.adopt), hands them the spec (`sync`) and
the end (`terminate`), and reports their status snapshots (`current_status`; `on_change(pod)`
when one changed, so the agent writes it without waiting for its resync). For streaming it
finds a running container (`exec_command`, `attach`, `container_pid`, `pod_netns_path`) and
serves its logs (`read_logs`, `log_files`), as the kubelet does, from the files the runtime
writes (one per container instance, so `--previous` works).

What runs where (modules of node/): podworker.py the lifecycle, podstatus.py the status
(pure), probes.py the probes, volumes.py the volumes, checkpoint.py the pod's state on disk,
podruntime.py the runtime interface and its implementation over sandbox.py (the pod's
namespaces: a holder process, its IP from ipam.py, its /etc from podfiles.py, started by the
spawner: spawner.py, nsinit.py) and runtime.py (a container's process, cgroup, logs, probes).

Each container instance runs in a PID namespace of its own, where its main process is PID 1,
or in the pod's with shareProcessNamespace, or in the machine's with hostPID (here the node is
the machine); exec sessions and exec probes join it (runtime.py, nsinit.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import time
from typing import AsyncIterator, Callable

from pocketkube.core.cluster import CLUSTER_DNS, CLUSTER_DOMAIN
from pocketkube.core.linux import process_alive, remove_tree
from pocketkube.core.tasks import cancel_and_wait
from pocketkube.node import checkpoint, runtime
from pocketkube.node.podruntime import PodRuntime, ProcessRuntime
from pocketkube.node.podworker import ContainerSlot, NodeContext, PodWorker, kill_leftovers, remove_pod_data
from pocketkube.node.sandbox import SandboxInfo

log = logging.getLogger(__name__)

LOG_INDEX_SECONDS = 1.0


class PodRuntimeError(LookupError):
    """A request about a pod's container that cannot be served (the message is the kubelet's)."""


class PodManager:
    """The pods of one node: see the module docstring."""

    def __init__(self, *, node_name: str, node_ip: str, pod_cidr: str, state_dir: str,
                 cluster_dns: str = CLUSTER_DNS, cluster_domain: str = CLUSTER_DOMAIN,
                 netns: str | None = None,
                 on_event: Callable[[dict, str, str, str], None] | None = None,
                 on_change: Callable[[dict], None] | None = None, pod_runtime: PodRuntime | None = None):
        self.node_name = node_name
        self.node_ip = node_ip
        self.state_dir = state_dir
        self.on_change = on_change
        cache_dir = os.path.join(state_dir, "images")
        os.makedirs(cache_dir, exist_ok=True)
        self.runtime = pod_runtime or ProcessRuntime(
            node_name=node_name, node_ip=node_ip, pod_cidr=pod_cidr, state_dir=state_dir, cluster_dns=cluster_dns,
            cluster_domain=cluster_domain, netns=netns)
        self.node = NodeContext(node_ip=node_ip, cluster_domain=cluster_domain, state_dir=state_dir,
                                cache_dir=cache_dir, on_event=on_event, changed=self.changed)
        self.workers: dict[str, PodWorker] = {}
        self.stopping: dict[str, PodWorker] = {}  # those terminate() is stopping (no longer in workers)
        self._indexer: asyncio.Task | None = None

    # lifecycle
    async def start(self) -> None:
        """Adopt the sandboxes a previous agent left running; clean the dead ones."""
        live_uids = set()
        for uid in self.runtime.pods():
            worker = await PodWorker.adopt(uid, self.node, self.runtime)
            if worker is not None:
                self.workers[uid] = worker
                if worker.sandbox is not None:
                    live_uids.add(uid)
        self.runtime.retain(live_uids)
        self._indexer = asyncio.create_task(self._index_logs(), name="log-indexer")

    async def stop(self) -> None:
        """Stop managing; pods keep running (a restarted agent adopts them)."""
        await cancel_and_wait(self._indexer)
        for worker in self.workers.values():
            await worker.detach()
        await self.runtime.close()  # the holders live on

    # the agent's interface
    async def sync(self, pod: dict, env) -> dict | None:
        """Make reality match the pod spec (work happens in the pod's worker task); returns
        the pod's current status, always (the agent compares it with what it wrote)."""
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is None:
            worker = self.workers[uid] = PodWorker(uid, self.node, self.runtime)
        worker.update(pod, env)
        return worker.snapshot or worker.refresh_status()

    async def terminate(self, pod: dict, grace_seconds: int) -> dict | None:
        """Stop the pod's containers gracefully (preStop, SIGTERM, grace, SIGKILL), remove
        its sandbox, IP, cgroups and files. `pod` may carry only metadata.uid. Returns the
        pod's final status if containers were running (PodWorker.terminate)."""
        uid = pod["metadata"]["uid"]
        worker = self.workers.pop(uid, None)
        if worker is None:
            sandbox = self.runtime.find_sandbox(uid)
            if sandbox is not None:
                kill_leftovers(self.runtime, sandbox, [])
                await self.runtime.destroy_sandbox(sandbox)
            remove_tree(self.runtime.pod_dir(uid))
            remove_pod_data(self.node.state_dir, uid)
            return None
        if pod.get("spec"):
            worker.pod = pod
        self.stopping[uid] = worker
        try:
            return await worker.terminate(grace_seconds)
        finally:
            self.stopping.pop(uid, None)

    def shorten_grace(self, uid: str, grace_seconds: int) -> bool:
        """A pod that is stopping gets a shorter grace period (a second delete's): whether its
        deadline moved."""
        worker = self.stopping.get(uid)
        return worker is not None and worker.shorten_grace(grace_seconds)

    def current_status(self, uid: str) -> dict | None:
        """The status of a pod this node runs (None if it runs no such pod)."""
        worker = self.workers.get(uid)
        return worker.snapshot if worker is not None and worker.task is not None else None

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
        return self.runtime.exec_argv(slot.process, slot.working_dir, slot.env, worker._security(slot), argv, tty=tty)

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
        status = worker.refresh_status()
        if self.on_change is None or not worker.reported or not worker.pod.get("metadata", {}).get("name"):
            return
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


POD_STATE_FS = "pocketkube-pods"  # the source name of the tmpfs mount_pod_state makes


def mount_pod_state(state_dir: str) -> bool:
    """For `up` (before the node's agent starts, in the machine's mount namespace, which the
    agent's `ip netns exec` copies, so a restarted agent sees it again): a tmpfs on the node's
    pods/, where every pod's sandbox, checkpoint, configMap / secret / projected volumes and
    /dev/shm live (as containerd keeps its state under /run and a kubelet its secret volumes
    on tmpfs). On a disk, creating and removing those ~20 files and directories per pod was
    the agent's largest cost in a burst (ext4 inode allocation: docs/adr/0021). Logs and
    emptyDirs stay on disk (podworker.pod_data_dir, container_log_path). Best effort: False leaves pods/ on disk."""
    path = os.path.join(state_dir, "pods")
    os.makedirs(path, exist_ok=True)
    if os.path.ismount(path):
        return True
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", POD_STATE_FS, path], capture_output=True)
    return done.returncode == 0


def unmount_pod_state(state_dir: str) -> None:
    """For `down`: the tmpfs of mount_pod_state goes (lazily: a pod's namespace may still hold it)."""
    path = os.path.join(state_dir, "pods")
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", path], capture_output=True)


def cleanup_node_state(state_dir: str, node_name: str) -> int:
    """For `down` (no agent running): kill every holder and container recorded under
    `state_dir`, remove their cgroups and the tmpfs of the pods' state. Returns how many
    processes were killed."""
    killed = 0
    pods_dir = os.path.join(state_dir, "pods")
    for uid in sorted(os.listdir(pods_dir)) if os.path.isdir(pods_dir) else []:
        pod_dir = os.path.join(pods_dir, uid)
        if not os.path.isdir(pod_dir):
            continue  # ipam.json
        for record in checkpoint.container_records(checkpoint.load(pod_dir)):
            if process_alive(record["pid"], record.get("start_ticks")):
                runtime.ContainerProcess(runtime.ContainerRecord(**record)).kill_all()
                killed += 1
            elif record.get("cgroup"):
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
    for _ in range(50):  # a command, not the agent's event loop: it may wait
        if base is None or runtime.remove_cgroup(base):
            break
        time.sleep(0.02)
    unmount_pod_state(state_dir)
    return killed
