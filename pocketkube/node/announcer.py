"""Announcing load-balancer addresses on the node network, as MetalLB's layer-2 speaker does,
from inside each node agent (docs/adr/0006-announcing-load-balancer-addresses.md says why).

Every agent decides the same thing from the same facts, without talking through the API:
- who is alive: agents send each other a datagram every 0.2 s on UDP 7946 (memberlist's
  port, MetalLB's speakers' gossip); a node not heard from for 1.2 s is gone, and an agent
  that stops cleanly says so at once. A node labelled
  `node.kubernetes.io/exclude-from-external-load-balancers` never announces.
- who may announce an address (`plan`, pure): every live node for `externalTrafficPolicy:
  Cluster`; for `Local`, only live nodes with a ready endpoint of the Service (so the client's
  address reaches a local pod); the one whose sha256("<node>#<address>") is lowest wins, as
  MetalLB orders its candidates.
The winner puts the address on its `eth0` as a /32 labelled `eth0:lb` (the kernel then answers
ARP for it; nodes answer ARP only for eth0's own addresses, see network.create_network) and
sends gratuitous ARP, so the host's neighbour entry moves at once on a takeover; it records a
`nodeAssigned` Event on the Service ("announcing from node ... with protocol layer2").
The others remove it. `pocketkube status` reads the labelled addresses back.

A (re)starting agent first says `join` for 0.6 s: it listens and claims nothing, and its peers
do not count it, so they take over at once what a killed agent held, even when the supervisor
restarts it faster than the 1.2 s of silence. Then it announces again what the plan gives it
(with gratuitous ARP: another node may hold it meanwhile), and drops what it should not.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import os
import socket
import struct
import time

from pocketkube.core.client import Client
from pocketkube.core.events import EventRecorder
from pocketkube.core.informer import Informer, object_key
from pocketkube.core.lbpool import ANNOUNCED_LABEL, ingress_ips, wants_load_balancer
from pocketkube.core.netns import socket_in
from pocketkube.core.tasks import cancel_and_wait
from pocketkube.node import network

log = logging.getLogger(__name__)

PORT = 7946  # memberlist's, as MetalLB's speakers use
PING_SECONDS = 0.2
DEAD_SECONDS = 1.2
WARMUP_SECONDS = 0.6
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
INTERFACE = "eth0"
ETH_P_ARP = 0x0806


# ---- the decision (pure) ----------------------------------------------------------------------

def ready_nodes_by_service(slices: list[dict]) -> dict[str, set[str]]:
    """"namespace/name" -> the nodes with a ready endpoint of that Service."""
    found: dict[str, set[str]] = {}
    for es in slices:
        meta = es.get("metadata") or {}
        name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not name:
            continue
        nodes = found.setdefault(f"{meta.get('namespace', '')}/{name}", set())
        for ep in es.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is not False and ep.get("nodeName"):
                nodes.add(ep["nodeName"])
    return found


def winner(address: str, candidates: set[str]) -> str | None:
    return min(candidates, key=lambda n: hashlib.sha256(f"{n}#{address}".encode()).digest(), default=None)


def plan(services: list[dict], ready_nodes: dict[str, set[str]], alive: set[str]) -> dict[str, tuple[str, dict]]:
    """Load-balancer address -> (the node that announces it, its Service), for the addresses
    some live node may announce."""
    result: dict[str, tuple[str, dict]] = {}
    for svc in sorted(services, key=lambda s: s["metadata"].get("creationTimestamp") or ""):
        if not wants_load_balancer(svc) or svc["metadata"].get("deletionTimestamp"):
            continue
        candidates = set(alive)
        if (svc.get("spec") or {}).get("externalTrafficPolicy") == "Local":
            candidates &= ready_nodes.get(object_key(svc), set())
        for ip in ingress_ips(svc):
            node = winner(ip, candidates)
            if node is not None and ip not in result:
                result[ip] = (node, svc)
    return result


# ---- the node network ---------------------------------------------------------------------------

def arp_frames(mac: bytes, ip: str) -> list[bytes]:
    """Gratuitous ARP for `ip` at `mac`: a request and a reply, both broadcast."""
    addr = ipaddress.IPv4Address(ip).packed
    head = b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP) + struct.pack("!HHBB", 1, 0x0800, 6, 4)
    return [head + struct.pack("!H", op) + mac + addr + target + addr
            for op, target in ((1, b"\x00" * 6), (2, b"\xff" * 6))]


class Members(asyncio.DatagramProtocol):
    """Who is alive, from the peers' datagrams: `pk-l2 alive NODE`, and `pk-l2 join NODE` /
    `pk-l2 leave NODE` from a node that is starting or stopping (not a candidate)."""

    def __init__(self, me: str, on_change) -> None:
        self.me = me
        self.on_change = on_change
        self.last_seen: dict[str, float] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        parts = data.decode(errors="replace").split()
        if len(parts) != 3 or parts[0] != "pk-l2" or parts[2] == self.me:
            return
        was = self.alive()
        if parts[1] == "alive":
            self.last_seen[parts[2]] = time.monotonic()
        elif parts[1] in ("join", "leave"):  # starting (not a candidate yet) or stopping
            self.last_seen.pop(parts[2], None)
        if self.alive() != was:
            self.on_change()

    def alive(self) -> set[str]:
        now = time.monotonic()
        return {self.me} | {n for n, seen in self.last_seen.items() if now - seen < DEAD_SECONDS}

    def send(self, kind: str, peers: list[str]) -> None:
        if self.transport is None:
            return
        message = f"pk-l2 {kind} {self.me}".encode()
        for ip in peers:
            try:
                self.transport.sendto(message, (ip, PORT))
            except OSError:
                pass


class Announcer:
    """One node's layer-2 speaker (component shape: start, stop, ready)."""

    def __init__(self, client: Client, *, node_name: str, node_ip: str, netns: str | None,
                 services: Informer | None = None):
        self.client = client
        self.node_name = node_name
        self.node_ip = node_ip
        self.netns_path = netns if not netns or netns.startswith("/") else os.path.join(network.NETNS_DIR, netns)
        self.services = services or Informer(client, "v1", "services")
        self._own_services = services is None
        self.slices = Informer(client, "discovery.k8s.io/v1", "endpointslices")
        self.nodes = Informer(client, "v1", "nodes")
        self.recorder = EventRecorder(client, "pocketkube-l2-speaker", host=node_name)
        self.members = Members(node_name, self._wake_up)
        self.held: set[str] = set()
        self.ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._started = 0.0
        self._warm = False  # listened long enough to know the peers: a candidate now
        self._mac = b""
        self._arp: socket.socket | None = None

    def _wake_up(self, *_args) -> None:
        self._wake.set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        udp = socket_in(self.netns_path, socket.AF_INET, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.bind((self.node_ip, PORT))
        await loop.create_datagram_endpoint(lambda: self.members, sock=udp)
        self._arp = socket_in(self.netns_path, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        self._arp.bind((INTERFACE, ETH_P_ARP))
        self._mac = self._arp.getsockname()[4]
        self.held = await self._read_held()
        for informer in ([self.services] if self._own_services else []) + [self.slices, self.nodes]:
            informer.add_handlers(self._wake_up, self._wake_up, self._wake_up)
            await informer.start()
        if not self._own_services:
            self.services.add_handlers(self._wake_up, self._wake_up, self._wake_up)
        self._started = time.monotonic()
        self._tasks = [asyncio.create_task(self._ping(), name="l2-ping"),
                       asyncio.create_task(self._loop(), name="l2-announce")]
        self.ready.set()

    async def stop(self) -> None:
        """Say goodbye (peers take over at once) and give up every address held."""
        await cancel_and_wait(*self._tasks)
        self.members.send("leave", self._peers())
        if self.held:
            await self._change(set(), self.held)
        for informer in [self.slices, self.nodes] + ([self.services] if self._own_services else []):
            await informer.stop()
        if self.members.transport is not None:
            self.members.transport.close()
        if self._arp is not None:
            self._arp.close()
        await self.recorder.flush()

    def _peers(self) -> list[str]:
        return [a["address"] for n in self.nodes.list() if n["metadata"]["name"] != self.node_name
                for a in (n.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalIP"]

    async def _ping(self) -> None:
        alive = self.members.alive()
        while True:
            self.members.send("alive" if self._warm else "join", self._peers())
            await asyncio.sleep(PING_SECONDS)
            now_alive = self.members.alive()
            if now_alive != alive:
                log.info("layer-2 members: %s", ", ".join(sorted(now_alive)))
                alive = now_alive
                self._wake.set()

    async def _loop(self) -> None:
        await self.slices.wait_synced()
        await self.nodes.wait_synced()
        await self.services.wait_synced()
        warm = False
        while True:
            remaining = WARMUP_SECONDS - (time.monotonic() - self._started)
            if remaining > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
            else:
                await self._wake.wait()
            self._wake.clear()
            first = not warm and time.monotonic() - self._started >= WARMUP_SECONDS
            warm = self._warm = warm or first
            try:
                await self._reconcile(warm, first)
            except Exception:
                log.exception("announcing load-balancer addresses failed; retrying")
                await asyncio.sleep(1.0)
                self._wake.set()

    async def _reconcile(self, warm: bool, first: bool) -> None:
        excluded = {n["metadata"]["name"] for n in self.nodes.list()
                    if EXCLUDE_LABEL in ((n["metadata"].get("labels")) or {})}
        decided = plan(self.services.list(), ready_nodes_by_service(self.slices.list()),
                       self.members.alive() - excluded)
        mine = {ip: svc for ip, (node, svc) in decided.items() if node == self.node_name}
        want = set(mine) if warm else set(mine) & self.held  # claim nothing before knowing the peers
        added, removed = want - self.held, self.held - want
        if added or removed:
            await self._change(added, removed)
        # A restarted agent announces again what it kept: another node may have taken it meanwhile.
        for ip in sorted(added | (want if first else set())):
            self._gratuitous_arp(ip)
            log.info("announcing %s (%s)", ip, object_key(mine[ip]))
            self.recorder.event(mine[ip], "Normal", "nodeAssigned",
                                f'announcing from node "{self.node_name}" with protocol "layer2"')
        for ip in sorted(removed):
            log.info("no longer announcing %s", ip)

    async def _read_held(self) -> set[str]:
        code, out, err = await self._ip(["-j", "-4", "addr", "show", "dev", INTERFACE])
        if code != 0:
            raise RuntimeError(f"cannot read {INTERFACE}'s addresses: {err.strip()}")
        return {i["local"] for link in json.loads(out or "[]") for i in link.get("addr_info") or []
                if i.get("label") == ANNOUNCED_LABEL}

    async def _change(self, added: set[str], removed: set[str]) -> None:
        lines = [f"addr del {ip}/32 dev {INTERFACE}" for ip in sorted(removed)]
        lines += [f"addr add {ip}/32 dev {INTERFACE} label {ANNOUNCED_LABEL}" for ip in sorted(added)]
        code, _, err = await self._ip(["-force", "-batch", "-"], "\n".join(lines) + "\n")
        if code != 0:
            log.warning("changing announced addresses: %s", err.strip())
        self.held = await self._read_held()

    async def _ip(self, args: list[str], stdin: str | None = None) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            "ip", *args, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            preexec_fn=network.enter_netns(self.netns_path) if self.netns_path else None)
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        return proc.returncode, out.decode(), err.decode()

    def _gratuitous_arp(self, ip: str) -> None:
        if self._arp is None:
            return
        for frame in arp_frames(self._mac, ip):
            try:
                self._arp.send(frame)
            except OSError as exc:
                log.warning("gratuitous ARP for %s: %s", ip, exc)
