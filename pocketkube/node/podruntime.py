"""The runtime interface the pod worker drives (the kubelet's CRI, cut to what runs here), and
its implementation over namespaces and processes.

`PodRuntime` is all the worker (podworker.py) asks of the machine: create and destroy a pod's
sandbox, find the sandboxes and containers a previous agent left (adoption), start a container
and clean up after one that ended, run a handler (exec, httpGet, tcpSocket: probes and
lifecycle hooks) against a running one, and the argv of an exec session. A container is a
`Container`: its record (id, pid, start time, cgroup, log), whether it runs, its exit code
once it ended, `stop(grace)`, and `on_exit` to wake the worker.

`ProcessRuntime` implements it with sandbox.py (a holder process owning the pod's namespaces,
its IP, its /etc files) and runtime.py (a container's process, cgroup, logs, probes). The unit
tests drive the worker over a fake of it (tests/unit/test_pod_worker.py).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from typing import Callable, Protocol

from pocketkube.core.linux import process_alive, read_text, remove_tree
from pocketkube.node import images, runtime
from pocketkube.node.sandbox import SandboxInfo, SandboxManager


class Sandbox(Protocol):
    ip: str | None
    holder_pid: int | None

    def alive(self) -> bool: ...


class Container(Protocol):
    record: runtime.ContainerRecord
    pid: int
    running: bool
    exit_known: bool
    exit_code: int | None
    finished_at: str | None
    on_exit: Callable | None

    async def stop(self, grace_seconds: float) -> None: ...

    def detach(self) -> None: ...


@dataclass
class ContainerRequest:
    """One container instance to start in a pod's sandbox."""

    uid: str
    name: str
    instance: int                  # its number among the container's instances (log file, cgroup)
    container_id: str
    argv: list[str]
    env: dict[str, str]
    working_dir: str
    log_path: str
    restart_count: int
    security: dict
    holds: list[str] = field(default_factory=list)        # what its image holds (images.Resolved.holds)
    passwd: str = ""
    group: str = ""
    mounts: list[dict] = field(default_factory=list)      # volumes and image mounts (volumes.PodVolumes.mounts)
    writable: list[str] = field(default_factory=list)     # mountPaths writable under a read-only root
    host_pid: bool = False                                 # the machine's PID namespace (hostPID)
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False


class PodRuntime(Protocol):
    capabilities: int  # what a privileged container gets

    def pod_dir(self, uid: str) -> str: ...

    async def create_sandbox(self, pod: dict) -> Sandbox: ...

    async def destroy_sandbox(self, sandbox: Sandbox, keep_pod_files: bool = False) -> None: ...

    def find_sandbox(self, uid: str) -> Sandbox | None: ...

    def pods(self) -> list[str]: ...

    def retain(self, uids: set[str]) -> None: ...

    async def forget_sandbox(self, uid: str, sandbox: Sandbox | None) -> None: ...

    async def start_container(self, pod: dict, sandbox: Sandbox, request: ContainerRequest) -> Container: ...

    def adopt_container(self, record: dict) -> Container | None: ...

    def kill_container(self, record: dict) -> None: ...

    def kill_sandbox(self, sandbox: Sandbox) -> None: ...

    async def container_ended(self, container: Container) -> None: ...

    async def remove_pod(self, uid: str) -> None: ...

    async def run_handler(self, pod: dict, pod_ip: str | None, container: Container, spec: dict,
                          working_dir: str, env: dict, security: dict, handler: dict,
                          timeout: float) -> runtime.ProbeResult: ...

    def exec_argv(self, container: Container, working_dir: str, env: dict, security: dict, argv: list[str],
                  tty: bool = False) -> list[str]: ...

    async def close(self) -> None: ...


class ProcessRuntime:
    """PodRuntime over network namespaces and processes (see the module docstring)."""

    def __init__(self, *, node_name: str, node_ip: str, pod_cidr: str, state_dir: str, cluster_dns: str,
                 cluster_domain: str, netns: str | None):
        self.node_ip = node_ip
        self.sandboxes = SandboxManager(state_dir=state_dir, node_ip=node_ip, pod_cidr=pod_cidr, netns=netns,
                                        cluster_dns=cluster_dns, cluster_domain=cluster_domain)
        self.cgroups = runtime.Cgroups(state_dir, node_name)
        self.capabilities = own_capabilities()
        self.probe_sockets = runtime.NetnsSockets(f"/run/netns/{netns}" if netns else None)

    def pod_dir(self, uid: str) -> str:
        return self.sandboxes.pod_dir(uid)

    async def create_sandbox(self, pod: dict) -> SandboxInfo:
        return await self.sandboxes.create(pod)

    async def destroy_sandbox(self, sandbox: SandboxInfo, keep_pod_files: bool = False) -> None:
        await self.sandboxes.destroy(sandbox, keep_pod_files=keep_pod_files)

    def find_sandbox(self, uid: str) -> SandboxInfo | None:
        return self.sandboxes.load(uid)

    def pods(self) -> list[str]:
        """The uids of the pods this node holds anything for (state, sandbox, logs)."""
        return self.sandboxes.known_uids()

    def retain(self, uids: set[str]) -> None:
        """After adoption: only these pods' sandboxes live; every other IP is free again."""
        self.sandboxes.ipam.retain(uids)

    async def forget_sandbox(self, uid: str, sandbox: SandboxInfo | None) -> None:
        """What a sandbox that died while no agent watched left behind: its IP, its root and
        /dev/shm, its record, its cgroups (the pod's volumes and logs stay)."""
        if sandbox is not None:
            self.sandboxes.ipam.release(uid)
        for sub in ("root", "overlay", "shm", "sandbox.json"):
            remove_tree(os.path.join(self.pod_dir(uid), sub))
        await self.cgroups.remove_pod(uid)

    async def start_container(self, pod: dict, sandbox: SandboxInfo, request: ContainerRequest):
        uid = request.uid
        cgroup = self.cgroups.create(uid, f"{request.name}-{request.instance}")  # one per instance
        pod_dir = self.pod_dir(uid)
        rootfs = {"root": os.path.join(pod_dir, "root"), "overlay_dir": os.path.join(pod_dir, "overlay"),
                  "etc": self.sandboxes.etc_files(pod, sandbox.ip, request.passwd, request.group),
                  "holds": [*images.LIBRARY_DIRS, *request.holds], "mounts": request.mounts,
                  "dirs": [request.working_dir], "shm": self.sandboxes.shm_dir(uid)}
        try:
            return await runtime.start_container(
                spawner=self.sandboxes.spawner, name=request.name, container_id=request.container_id,
                holder_pid=sandbox.holder_pid, argv=request.argv, env=request.env,
                working_dir=request.working_dir, log_path=request.log_path, cgroup=cgroup,
                restart_count=request.restart_count, tty=request.tty, stdin=request.stdin,
                stdin_once=request.stdin_once, pid_namespace=sandbox.pid_namespace_path, host_pid=request.host_pid,
                security=request.security, writable=request.writable, rootfs=rootfs)
        except runtime.StartError:
            if cgroup:
                await runtime.remove_cgroup_soon(cgroup)
            raise

    def adopt_container(self, record: dict):
        if not process_alive(record["pid"], record.get("start_ticks")):
            return None
        return runtime.adopt_container(runtime.ContainerRecord(**record))

    def kill_container(self, record: dict) -> None:
        """Kill what a container left running (its cgroup, else its process while it is ours)."""
        if process_alive(record["pid"], record.get("start_ticks")) or record.get("cgroup"):
            runtime.ContainerProcess(runtime.ContainerRecord(**record)).kill_all()

    def kill_sandbox(self, sandbox: SandboxInfo) -> None:
        """SIGKILL a sandbox's holder (its namespaces go with the last process in them)."""
        if sandbox.alive():
            try:
                os.kill(sandbox.holder_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def container_ended(self, container) -> None:
        """Its main process ended: whatever it left in its cgroup dies, the cgroup goes."""
        cgroup = container.record.cgroup
        if cgroup:
            runtime.kill_cgroup(cgroup)
            await runtime.remove_cgroup_soon(cgroup)

    async def remove_pod(self, uid: str) -> None:
        await self.cgroups.remove_pod(uid)

    async def run_handler(self, pod: dict, pod_ip: str | None, container, spec: dict, working_dir: str,
                          env: dict, security: dict, handler: dict, timeout: float) -> runtime.ProbeResult:
        """An exec / httpGet / tcpSocket / sleep handler (probes and lifecycle hooks) against
        the running container (exec runs in its namespaces)."""
        import asyncio

        host = pod_ip or self.node_ip
        if "exec" in handler:
            command = handler["exec"].get("command") or []
            argv = self.exec_argv(container, working_dir, env, security, command)
            return await runtime.probe_exec(argv, command, timeout)
        if "httpGet" in handler:
            get = handler["httpGet"]
            return await runtime.probe_http(self.probe_sockets, scheme=get.get("scheme") or "HTTP",
                                            host=get.get("host") or host,
                                            port=runtime.resolve_port(get.get("port"), spec),
                                            path=get.get("path") or "/", headers=get.get("httpHeaders") or [],
                                            timeout=timeout)
        if "tcpSocket" in handler or "grpc" in handler:
            target = handler.get("tcpSocket") or handler.get("grpc")
            return await runtime.probe_tcp(self.probe_sockets, target.get("host") or host,
                                           runtime.resolve_port(target.get("port"), spec), timeout)
        if "sleep" in handler:
            await asyncio.sleep(min(timeout, float(handler["sleep"].get("seconds", 0))))
        return runtime.ProbeResult(True)

    def exec_argv(self, container, working_dir: str, env: dict, security: dict, argv: list[str],
                  tty: bool = False) -> list[str]:
        return runtime.exec_argv(container.pid, working_dir, env, argv, cgroup=container.record.cgroup, tty=tty,
                                 security=security)

    async def close(self) -> None:
        """Stop managing: the spawner ends (the holders live on), the probe thread goes, the
        node's cgroup directory goes if no pod is left in it."""
        await self.sandboxes.spawner.close()
        self.probe_sockets.close()
        await self.cgroups.remove_if_empty()


def own_capabilities() -> int:
    """This process's bounding set (CapBnd of /proc/self/status)."""
    for line in read_text("/proc/self/status").splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    return 0
