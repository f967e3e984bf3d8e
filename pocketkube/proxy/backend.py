"""What every proxy backend is, and the pieces they share (kube-proxy's Provider interface).

A backend (nftables.py, userspace.py) turns the change tracker's maps into one node's data
plane. The proxier (proxier.py) knows backends only through `Backend`: it looks the mode up
in `backends()`, starts the chosen one, syncs it, asks every other mode to remove what it
left on the node, and stops it. The packet tracer asks the mode's `trace` the same way.

Shared here: `NodeSettings` (what a backend knows of its node), `SyncStats`, and `Commands`,
the `ip` and `conntrack` commands a backend runs inside the node's network namespace.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable, ClassVar

from pocketkube.core.cluster import CLUSTER_CIDR, DEFAULT_NAME, POD_BRIDGE, SERVICE_CIDR

if TYPE_CHECKING:
    from pocketkube.proxy.changetracker import PortMap, UpdateResult
    from pocketkube.proxy.trace import NodeInfo, Trace

log = logging.getLogger(__name__)

NETNS_DIR = "/run/netns"


def netns_path(netns: str | None) -> str | None:
    """A name under /run/netns or a path (/proc/PID/ns/net) as a path; None stays None."""
    return netns if netns is None or netns.startswith("/") else os.path.join(NETNS_DIR, netns)


@dataclass(frozen=True)
class NodeSettings:
    """One node as a backend sees it. service_route_device: the node gets a route for the
    service range through this device (None: leave routes alone)."""
    node_name: str = ""
    cluster_name: str = DEFAULT_NAME
    cluster_cidr: str = CLUSTER_CIDR
    service_cidr: str = SERVICE_CIDR
    netns: str | None = None  # a name under /run/netns or a path; None: the current namespace
    service_route_device: str | None = POD_BRIDGE


@dataclass
class SyncStats:
    full: bool
    services: int  # Services rewritten
    commands: int  # changes sent to the kernel (nft lines, ip commands, listeners)


class BackendError(RuntimeError):
    """The kernel refused a sync (the message is the tool's own); the last good state stays."""


class Commands:
    """`ip` and `conntrack` inside a network namespace (None: the current one)."""

    def __init__(self, netns: str | None = None):
        self.netns = netns
        path = netns_path(netns)
        # nsenter enters the network namespace only (`ip netns exec` would also remount /sys)
        self._prefix = ["nsenter", f"--net={path}"] if path else []

    async def run(self, argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
        """Run argv (in the runner's namespace): (exit code, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            *self._prefix, *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def ensure_route(self, cidr: str, device: str, source: str | None = None) -> None:
        """`ip route replace CIDR dev DEVICE [src SOURCE]`: a node process can only connect
        to a ClusterIP (and the forward hook only sees a pod's packet for a Service without
        endpoints, to reject it) when the service range has a route. SOURCE (the node's IP)
        makes node-originated Service traffic leave from the node address, as over a default
        route. Logged, not raised, when it fails."""
        argv = ["ip", "route", "replace", cidr, "dev", device, *(["src", source] if source else [])]
        code, _, err = await self.run(argv)
        if code != 0:
            log.warning("no route for the service range %s via %s: %s", cidr, device, err.strip())

    async def delete_route(self, cidr: str, device: str) -> None:
        """`ip route del CIDR dev DEVICE` (no such route is not an error)."""
        await self.run(["ip", "route", "del", cidr, "dev", device])

    async def conntrack_delete(self, args: list[str]) -> None:
        """`conntrack -D ARGS` (no matching entry is not an error)."""
        code, _, err = await self.run(["conntrack", "-D", *args])
        if code not in (0, 1):
            log.warning("conntrack -D %s: %s", " ".join(args), err.strip())

    def close(self) -> None:
        """Release what the runner holds (nothing here; a subclass may hold more)."""


class Backend(abc.ABC):
    """One proxy mode on one node. `sync` programs the maps (everything when
    `needs_full_sync`, else the changed Services) and sets `needs_full_sync` again when the
    kernel refuses, so the next sync repairs; `stop` leaves what keeps serving while a new
    proxy starts (rules, addresses) and closes what lives in the process."""

    mode: ClassVar[str]
    needs_full_sync: bool = True
    runner: Commands

    @classmethod
    @abc.abstractmethod
    def create(cls, node: NodeSettings) -> Backend:
        """The backend for this node, with its own runner."""

    async def start(self, node_ip: Callable[[], Awaitable[str | None]]) -> None:
        """Prepare the node before the first sync (node_ip: the node's address, looked up
        only when needed)."""

    @abc.abstractmethod
    async def sync(self, services: PortMap, endpoints: PortMap, result: UpdateResult) -> SyncStats:
        """Program what changed; raises BackendError (or OSError) when the kernel refuses."""

    async def stop(self) -> None:
        """Stop serving from this process (state in the kernel stays for the next proxy)."""

    @classmethod
    @abc.abstractmethod
    async def remove_leftovers(cls, node: NodeSettings, commands: Commands) -> None:
        """Remove what this mode leaves on a node, when another mode starts there (nothing
        there is not an error)."""

    @staticmethod
    @abc.abstractmethod
    def trace(node: NodeInfo, settings: NodeSettings, services: list[dict], slices: list[dict], source: str,
              destination: str, port: int, protocol: str, from_node: bool) -> Trace:
        """The first packet from `source` to `destination:port` on this node, for these objects."""


def backends() -> dict[str, type[Backend]]:
    """Every mode, by name; the first is the default."""
    from pocketkube.proxy.nftables import NftablesBackend
    from pocketkube.proxy.userspace import UserspaceBackend

    return {b.mode: b for b in (NftablesBackend, UserspaceBackend)}
