"""Pod sandboxes: the namespaces a pod's containers share (pocketkube's pause container).

A sandbox is one holder process, `catatonit -P` (the pause process podman uses) renamed
`pocketkube-pause`, that owns the pod's network, UTS, IPC and mount namespaces; containers
join them (runtime.py). The network namespace is unnamed: it lives exactly as long as the
processes in it, so a pod killed by any means leaves no namespace or veth behind
(`pod_netns_path` is /proc/<holder>/ns/net).

Containers get their own PID namespace, or the pod's with `shareProcessNamespace: true` (then
the holder is PID 1 of it, reaping the pod's orphans). What runs inside
the new processes before exec (the roots, mounts, security) is nsinit.py's; the agent starts
them through the spawner (spawner.py); the pod's /etc files come from podfiles.py and its IP
from ipam.py.

The network: a veth pair, one end `veth<8 hex>` on the node's cni0, the other `eth0` in the
pod with an IP of the node's pod /24 (IPAM persisted in the state dir), lo up, default route
via the cni0 gateway; the holder's init wires it as it makes the namespace, before it reports
(nsinit.py with netlink.py: no thread or `ip` fork of the agent's per pod). hostNetwork pods
stay in the node's network and UTS namespaces.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import signal

from pocketkube.core.linux import process_alive, process_start_ticks, read_text, remove_tree, write_atomic
from pocketkube.core.objects import rfc3339
from pocketkube.node import netlink
from pocketkube.node.ipam import Ipam, IpamError
from pocketkube.node.podfiles import NSSWITCH_CONF, hosts_file, pod_hostname, resolv_conf
from pocketkube.node.spawner import Spawner

log = logging.getLogger(__name__)

# the pause process (Debian's catatonit, static: it needs nothing in the holder's root)
PAUSE_PROGRAM = "catatonit"


class SandboxError(Exception):
    """The sandbox could not be created (kubelet: FailedCreatePodSandBox)."""


def veth_name(uid: str) -> str:
    return "veth" + hashlib.sha256(uid.encode()).hexdigest()[:8]


class SandboxInfo:
    """A live sandbox, as persisted in pods/<uid>/sandbox.json."""

    FIELDS = ("uid", "name", "namespace", "holder_pid", "holder_start", "ip", "veth", "host_network", "created",
              "shared_pid_namespace")

    def __init__(self, **values):
        for name in self.FIELDS:
            setattr(self, name, values.get(name))

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}

    def alive(self) -> bool:
        return process_alive(self.holder_pid or 0, self.holder_start)

    @property
    def netns_path(self) -> str:
        return f"/proc/{self.holder_pid}/ns/net"

    @property
    def pid_namespace_path(self) -> str | None:
        """The pod's PID namespace (shareProcessNamespace), None when each container has its own."""
        return f"/proc/{self.holder_pid}/ns/pid" if self.shared_pid_namespace else None


class SandboxManager:
    """Creates, finds and removes the sandboxes of one node."""

    def __init__(self, *, state_dir: str, node_ip: str, pod_cidr: str, netns: str | None,
                 cluster_dns: str, cluster_domain: str):
        self.state_dir = state_dir
        self.pods_dir = os.path.join(state_dir, "pods")
        os.makedirs(self.pods_dir, exist_ok=True)
        self.node_ip = node_ip
        self.netns = netns
        self.cluster_dns = cluster_dns
        self.cluster_domain = cluster_domain
        # beside the pods' state (a tmpfs under `up`, docs/adr/0021): the addresses of live sandboxes
        self.ipam = Ipam(os.path.join(self.pods_dir, "ipam.json"), pod_cidr)
        self.spawner = Spawner()

    # paths
    def pod_dir(self, uid: str) -> str:
        return os.path.join(self.pods_dir, uid)

    def shm_dir(self, uid: str) -> str:
        """The pod's /dev/shm, shared by its containers as their IPC namespace is (a directory
        of its state: a mount of another mount namespace cannot be bound into theirs)."""
        return os.path.join(self.pod_dir(uid), "shm")

    def node_netns_path(self) -> str | None:
        return f"/run/netns/{self.netns}" if self.netns else None

    # files the pod sees
    def etc_files(self, pod: dict, ip: str, passwd: str, group: str) -> dict[str, str]:
        """A container's /etc (and the holder's): resolv.conf, hosts and hostname as the kubelet
        writes them for the pod, the image's passwd and group, nsswitch.conf."""
        hostname, _ = pod_hostname(pod, self.cluster_domain)
        if (pod.get("spec") or {}).get("hostNetwork"):
            hostname = read_text("/proc/sys/kernel/hostname").strip()
        return {"resolv.conf": resolv_conf(pod, self.cluster_dns, self.cluster_domain, read_text("/etc/resolv.conf")),
                "hosts": hosts_file(pod, ip, self.cluster_domain, read_text("/etc/hosts")),
                "hostname": hostname + "\n", "passwd": passwd, "group": group, "nsswitch.conf": NSSWITCH_CONF}

    async def create(self, pod: dict) -> SandboxInfo:
        """Start the holder (the pod's pause process) with the pod's namespaces, its network
        wired, in an empty root of its own. Containers build their own roots
        (`_become_container`)."""
        meta = pod["metadata"]
        uid = meta["uid"]
        host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        shared_pids = bool((pod.get("spec") or {}).get("shareProcessNamespace"))
        pod_dir = self.pod_dir(uid)
        for sub in ("root", "overlay", "shm"):
            os.makedirs(os.path.join(pod_dir, sub), exist_ok=True)
        os.chmod(self.shm_dir(uid), 0o1777)
        try:
            ip = self.node_ip if host_network else self.ipam.allocate(uid)
        except IpamError as exc:
            raise SandboxError(str(exc)) from None
        hostname, _ = pod_hostname(pod, self.cluster_domain)
        veth = None if host_network else veth_name(uid)
        config = {
            "root": os.path.join(pod_dir, "root"),
            "new_net": not host_network,
            "new_uts": not host_network,
            "join_netns": self.node_netns_path() if host_network else None,
            "hostname": hostname,
            "new_pid": shared_pids,
            "pause": host_program(PAUSE_PROGRAM),
            # wired by the holder's init as it makes the namespace (nsinit.py, netlink.wire_pod)
            "network": None if host_network else {
                "node_netns": self.node_netns_path(), "veth": veth, "bridge": "cni0", "ip": ip,
                "prefix_len": self.ipam.prefix_len, "gateway": self.ipam.gateway},
        }
        info = SandboxInfo(uid=uid, name=meta.get("name"), namespace=meta.get("namespace"), ip=ip,
                           veth=veth, host_network=host_network,
                           created=rfc3339(), shared_pid_namespace=shared_pids)
        try:
            info.holder_pid = await self.spawner.spawn(config)
            info.holder_start = process_start_ticks(info.holder_pid)
        except BaseException as exc:
            await self.destroy(info)
            if isinstance(exc, (SandboxError, asyncio.CancelledError)):
                raise
            raise SandboxError(str(exc)) from None  # SpawnError, OSError: FailedCreatePodSandBox
        write_atomic(os.path.join(pod_dir, "sandbox.json"), json.dumps(info.to_dict()).encode())
        return info

    async def destroy(self, info: SandboxInfo, keep_pod_files: bool = False) -> None:
        """Kill the holder (its namespaces and veth go with it once the containers are
        gone), release the IP and remove the sandbox's files (not the logs; with
        `keep_pod_files`, for a sandbox made again, not the volumes nor the images' files)."""
        if info.holder_pid and info.alive():
            try:
                os.kill(info.holder_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for _ in range(200):
                if not info.alive():
                    break
                await asyncio.sleep(0.005)
        if not info.host_network:
            if info.veth:  # the kernel removes it with the namespace, but asynchronously
                try:
                    netlink.delete_link(self.node_netns_path(), info.veth)
                except OSError as exc:
                    log.warning("removing %s: %s", info.veth, exc)
            self.ipam.release(info.uid)
        pod_dir = self.pod_dir(info.uid)
        for sub in ("root", "overlay", "shm", "sandbox.json") + (() if keep_pod_files else ("volumes", "containers")):
            remove_tree(os.path.join(pod_dir, sub))

    def load(self, uid: str) -> SandboxInfo | None:
        try:
            with open(os.path.join(self.pod_dir(uid), "sandbox.json")) as f:
                return SandboxInfo(**json.load(f))
        except (OSError, ValueError):
            return None

    def known_uids(self) -> list[str]:
        return sorted(name for name in os.listdir(self.pods_dir) if os.path.isdir(os.path.join(self.pods_dir, name)))


def host_program(program: str) -> str:
    found = shutil.which(program, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if found is None:
        raise SandboxError(f"{program} is not installed")
    return found
