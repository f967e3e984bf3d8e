"""The proxy component (`pocketkube proxy`): informers for Services and EndpointSlices feed
the shared change tracker; one sync loop applies what is pending to the mode's backend
(nftables.py, the default, or userspace.py).

The loop syncs as soon as something changes (no minimum interval by default: programming
latency matters more here than in a 5,000-node cluster), and bursts coalesce by themselves:
events that arrive while a sync runs are folded into the next one. A sync nft refuses is
logged, leaves the last good rules in place and is retried as a full sync with backoff; a
full sync also runs periodically. Stopping the nftables proxy leaves its rules in place, so
established connections (and new ones) keep working while it restarts; a restarted proxy
adopts its table in one atomic full sync. Stopping the userspace proxy closes its relays
(they live in the process); the next one adopts the addresses on `pk-svc`.

kube-proxy's own endpoints (healthz on :10256, proxyMode on 127.0.0.1:10249) are
statusserver.py's, fed with the time of the last sync and of the oldest change waiting.

The modes are sibling backends behind one interface (backend.py): the proxier looks its mode
up by name and never asks which one it holds. Starting in one mode asks every other mode to
remove what it left (as kube-proxy cleans up the other modes' rules at start): the nftables
table and the service range's route in userspace mode, the `pk-svc` dummy in nftables mode.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from pocketkube.core.client import Client
from pocketkube.core.cluster import CLUSTER_CIDR, DEFAULT_NAME, POD_BRIDGE, SERVICE_CIDR
from pocketkube.core.informer import Informer
from pocketkube.core.tasks import cancel_and_wait
from pocketkube.proxy.changetracker import ChangeTracker
from pocketkube.proxy.healthcheck import ServiceHealthServer
from pocketkube.proxy.statusserver import StatusServer
from pocketkube.proxy.backend import Backend, BackendError, Commands, NodeSettings, SyncStats, backends

log = logging.getLogger(__name__)

MODES = tuple(backends())


class Proxier:
    """One node's service proxy, in `mode` nftables or userspace.

    Runs in the node's network namespace, or anywhere with `netns` naming it (nft, ip and
    conntrack are then run inside it, and the userspace relays' sockets are made in it)."""

    def __init__(self, client: Client, *, node_name: str, cluster_name: str = DEFAULT_NAME, mode: str = "nftables",
                 netns: str | None = None, node_ip: str | None = None, cluster_cidr: str = CLUSTER_CIDR,
                 service_cidr: str = SERVICE_CIDR, service_route_device: str | None = POD_BRIDGE,
                 min_sync_interval: float = 0.0, full_sync_interval: float = 3600.0,
                 max_retry_interval: float = 30.0, status_ports: tuple[int, int] | None = None):
        """service_route_device: the node gets a route for the service range through this
        device (the node has no default route, and a node process can only connect to a
        ClusterIP that has a route; None: leave routes alone), with the node's address as the
        source: `node_ip`, else the Node object's InternalIP. The userspace mode needs no such
        route (Service addresses are local to the node) and removes it. status_ports: the
        (healthz, metrics) ports, kube-proxy's 10256 and 10249 by default; 0 picks a free one."""
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; known: {', '.join(MODES)}")
        self.client = client
        self.node_name = node_name
        self.mode = mode
        self.settings = NodeSettings(node_name=node_name, cluster_name=cluster_name, cluster_cidr=cluster_cidr,
                                     service_cidr=service_cidr, netns=netns, service_route_device=service_route_device)
        self.backend: Backend = backends()[mode].create(self.settings)
        self.runner = self.backend.runner
        self.tracker = ChangeTracker(node_name)
        self.health = ServiceHealthServer(netns)  # healthCheckNodePorts
        healthz_port, metrics_port = status_ports or (None, None)
        self.status = StatusServer(mode, lambda: (self.last_synced_at, self._queued_at),
                                   netns_path=self.health.netns_path,
                                   **({"healthz_port": healthz_port, "metrics_port": metrics_port} if status_ports else {}))
        self.last_synced_at: float | None = None  # time.time() of the last successful sync
        self._queued_at: float | None = None  # of the oldest change not synced yet
        self.node_ip = node_ip
        self.min_sync_interval = min_sync_interval
        self.full_sync_interval = full_sync_interval
        self.max_retry_interval = max_retry_interval
        self.services = Informer(client, "v1", "services")
        self.slices = Informer(client, "discovery.k8s.io/v1", "endpointslices")
        self.ready = asyncio.Event()  # set after the first successful sync
        self.last_sync: SyncStats | None = None
        self.sync_count = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.services.add_handlers(on_add=lambda new: self._changed(self.tracker.on_service(None, new)),
                                   on_update=lambda old, new: self._changed(self.tracker.on_service(old, new)),
                                   on_delete=lambda old: self._changed(self.tracker.on_service(old, None)))
        self.slices.add_handlers(on_add=lambda new: self._changed(self.tracker.on_slice(new)),
                                 on_update=lambda old, new: self._changed(self.tracker.on_slice(new)),
                                 on_delete=lambda old: self._changed(self.tracker.on_slice(old, removed=True)))
        await self._clean_other_modes()
        await self.backend.start(self._node_ip)
        await self.services.start()
        await self.slices.start()
        await self.status.start()
        self._task = asyncio.create_task(self._loop(), name="proxy-sync")

    async def stop(self) -> None:
        """Stop watching and syncing; nftables rules and userspace addresses stay
        (kube-proxy's behaviour too), userspace relays close."""
        await cancel_and_wait(self._task)
        await self.status.stop()
        await self.slices.stop()
        await self.services.stop()
        await self.health.stop()
        await self.backend.stop()

    async def _clean_other_modes(self) -> None:
        """Remove what the other modes left on this node."""
        commands = Commands(self.settings.netns)
        for mode, backend in backends().items():
            if mode != self.mode:
                await backend.remove_leftovers(self.settings, commands)

    async def _node_ip(self) -> str | None:
        return self.node_ip or await self._node_internal_ip()

    async def _node_internal_ip(self) -> str | None:
        """This node's InternalIP from its Node object (None when it cannot be read yet)."""
        try:
            node = await self.client.get("v1", "nodes", self.node_name)
        except Exception as exc:  # the proxy still works; node traffic leaves from cni0's address
            log.warning("cannot read Node %s for its address: %s", self.node_name, exc)
            return None
        return next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                     if a.get("type") == "InternalIP"), None)

    def _changed(self, pending: bool) -> None:
        if pending:
            if self._queued_at is None:
                self._queued_at = time.time()
            self._wake.set()

    async def _loop(self) -> None:
        await self.services.wait_synced()
        await self.slices.wait_synced()
        loop = asyncio.get_running_loop()
        retry = 0.0
        next_full = loop.time() + self.full_sync_interval
        last_start = float("-inf")
        self._wake.set()  # the first sync: a full one, adopting whatever table exists
        while True:
            timeout = max(0.0, (next_full if not retry else min(next_full, loop.time() + retry)) - loop.time())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            if loop.time() >= next_full:
                self.backend.needs_full_sync = True
            gap = self.min_sync_interval - (loop.time() - last_start)
            if gap > 0:
                await asyncio.sleep(gap)
            await asyncio.sleep(0)  # let the rest of a burst of watch events land first
            self._wake.clear()
            last_start = loop.time()
            full = self.backend.needs_full_sync
            if await self.sync_once():
                retry = 0.0
                if full:
                    next_full = loop.time() + self.full_sync_interval
            else:
                retry = min(self.max_retry_interval, retry * 2 or 1.0)
                log.info("retrying with a full sync in %.0fs", retry)

    def _synced(self) -> None:
        """What /healthz reports: synced now; changes that came during the sync wait from now."""
        self.last_synced_at = time.time()
        self._queued_at = self.last_synced_at if self._wake.is_set() else None

    async def sync_once(self) -> bool:
        """Apply what is pending and program it; False when it failed (nft or ip refused it)."""
        result = self.tracker.apply()
        if not result and not self.backend.needs_full_sync:
            self._synced()
            return True
        started = time.monotonic()
        try:
            stats = await self.backend.sync(self.tracker.services, self.tracker.endpoints, result)
        except BackendError as exc:
            log.error("%s sync failed; the last good state stays in place: %s", self.mode, exc)
            return False
        except Exception:  # nft, ip or conntrack missing, a bug: retried the same way
            log.exception("%s sync failed; the last good state stays in place", self.mode)
            return False
        self.last_sync = stats
        if stats.full:
            keep_out_of_collections()
        self.sync_count += 1
        self._synced()
        await self.health.sync(self.tracker.services, self.tracker.endpoints)
        log.log(logging.INFO if stats.full else logging.DEBUG, "%s %s sync: %d Service(s), %d command(s) in %.1f ms",
                self.mode, "full" if stats.full else "partial", stats.services, stats.commands,
                (time.monotonic() - started) * 1000)
        self.ready.set()
        return True


def keep_out_of_collections() -> None:
    """After a full sync: move every object alive now out of the garbage collector's passes
    (gc.freeze). A backend's record of 10,000 Services is ~400,000 objects, and a full
    collection over them takes ~220 ms of CPU, which otherwise lands on a partial sync now and
    then (its p99). The record is acyclic, so reference counting still frees what a later sync
    replaces; only cyclic garbage alive at this moment stays (this process is the proxy's own)."""
    gc.freeze()
