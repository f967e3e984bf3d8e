"""The userspace backend: Services as relays, the way the older kube-proxy's userspace mode
served them (README.md beside this file compares the two modes).

Every ClusterIP and external IP is a /32 local address on a dummy interface `pk-svc` in the
node's network namespace (as IPVS mode's kube-ipvs0; a bridge without ports where the kernel
lacks the dummy driver), so traffic for a Service arrives at
this node as local traffic: from its pods (their default route is the node), from the node
itself, from the host (it routes the service range through node 1). One asyncio listener per
(address, port, protocol) accepts it and relays it to an endpoint, which therefore always
sees the node as the client. NodePorts listen on each of the node's own addresses.

Three layers:
- `EndpointChooser` (pure): which endpoints a connection may use under the traffic policies,
  round robin over them, ClientIP affinity with its timeout (an injectable clock), and the
  listeners (`RelaySpec`) a service port needs. `pocketkube trace` uses the same code;
- the relays: `TcpRelay` (accept, connect to the chosen endpoint, trying the next one when a
  connect fails, then splice both ways, half-close aware) and `UdpRelay` (a session socket
  per client address to its endpoint, idle timeout, replies sent from the service address);
- `UserspaceBackend.sync`: the change tracker's maps -> addresses on `pk-svc` (one
  `ip -batch -` per sync) and listeners, for every Service (full) or the changed ones.

No endpoints anywhere: no listener, so the kernel refuses (TCP reset, ICMP port unreachable
for UDP). Endpoints elsewhere but none the policy allows here (traffic policy Local): the
listener's socket filter drops the SYN (the client times out, as with kube-proxy's drop),
for everyone or only for clients outside the node and its pods.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import json
import logging
import resource
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pocketkube.core.cluster import CLUSTER_CIDR
from pocketkube.core.lbpool import ANNOUNCED_LABEL
from pocketkube.core.netns import enter_netns
from pocketkube.proxy.changetracker import PortMap, UpdateResult
from pocketkube.proxy.backend import Backend, BackendError, Commands, NodeSettings, SyncStats, netns_path
from pocketkube.proxy.servicemap import Endpoint, ServicePort, ServicePortName, categorize_endpoints

log = logging.getLogger(__name__)

DUMMY_INTERFACE = "pk-svc"
CONNECT_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)  # the old userspace proxy's dial timeouts, one per try
UDP_IDLE_TIMEOUT = 30.0  # seconds without a datagram either way before a UDP session closes
LISTEN_BACKLOG = 1024
INTERNAL, EXTERNAL = "internal", "external"  # ClusterIP traffic; NodePort and external IP traffic
DROP_ALL, DROP_EXTERNAL = "all", "external"  # what a listener's socket filter drops
RELAYED_PROTOCOLS = ("TCP", "UDP")  # the old proxy had no SCTP either
OPEN_FILES = 64_000  # a listener per Service port and two sockets per connection (the old proxy's figure)


# ---- choosing an endpoint (pure) ----------------------------------------------------------

@dataclass(frozen=True)
class RelaySpec:
    """One listener a service port needs: where, whose traffic, and which clients its socket
    filter drops (None: nobody)."""
    ip: str
    port: int
    protocol: str  # TCP or UDP
    service: ServicePortName
    kind: str  # INTERNAL (ClusterIP) or EXTERNAL (NodePort, external IP)
    drop: str | None = None
    allow: tuple[str, ...] = ()  # loadBalancerSourceRanges of a load-balancer address: other sources dropped

    @property
    def filtered(self) -> tuple[str | None, tuple[str, ...]]:
        """What its socket filter depends on."""
        return (self.drop, self.allow)

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.ip, self.port, self.protocol)


class EndpointChooser:
    """Round robin and ClientIP affinity over one service port's endpoints (the old proxy's
    LoadBalancerRR), with the traffic policies of kube-proxy's CategorizeEndpoints."""

    def __init__(self, svc: ServicePort, endpoints: tuple[Endpoint, ...] = (), clock=time.monotonic):
        self.clock = clock
        self._next: dict[str, int] = {}  # round robin position per candidate list
        self._affinity: dict[str, tuple[Endpoint, float]] = {}  # client ip -> (endpoint, last used)
        self.update(svc, endpoints)

    def update(self, svc: ServicePort, endpoints: tuple[Endpoint, ...]) -> None:
        self.svc, self.endpoints = svc, tuple(endpoints)
        self.categorized = categorize_endpoints(self.endpoints, svc)
        usable = set(self.categorized.reachable)
        self._affinity = {ip: entry for ip, entry in self._affinity.items() if entry[0] in usable}

    def candidates(self, kind: str, client_internal: bool) -> list[Endpoint]:
        """The endpoints this node may send a client to: ClusterIP traffic follows
        internalTrafficPolicy; NodePort and external IP traffic externalTrafficPolicy, except
        that pods and the node itself are not external clients (they use every endpoint)."""
        cat, svc = self.categorized, self.svc
        if kind == INTERNAL:
            return cat.local if svc.internal_policy_local else cat.cluster
        if not svc.external_policy_local:
            return cat.cluster
        return (cat.cluster or cat.local) if client_internal else cat.local

    def choose(self, client_ip: str, kind: str, client_internal: bool,
               exclude: frozenset[Endpoint] | set[Endpoint] = frozenset()) -> Endpoint | None:
        """The endpoint for a new connection (None: none allowed). A client seen within the
        affinity timeout goes back where it went, and is remembered afresh."""
        candidates = [ep for ep in self.candidates(kind, client_internal) if ep not in exclude]
        if not candidates:
            return None
        now = self.clock()
        timeout = self.svc.affinity_seconds
        if timeout:
            remembered = self._affinity.get(client_ip)
            if remembered and remembered[0] in candidates and now - remembered[1] < timeout:
                self._affinity[client_ip] = (remembered[0], now)
                return remembered[0]
        which = f"{kind}/{client_internal}"
        index = self._next.get(which, 0) % len(candidates)
        self._next[which] = index + 1
        chosen = candidates[index]
        if timeout:
            self._affinity[client_ip] = (chosen, now)
        return chosen

    def forget(self, client_ip: str) -> None:
        """The client's endpoint failed: its next connection chooses afresh."""
        self._affinity.pop(client_ip, None)

    def expire(self) -> None:
        """Drop affinity entries older than the timeout (memory only: choose() checks too)."""
        if self._affinity:
            now, timeout = self.clock(), self.svc.affinity_seconds
            self._affinity = {ip: e for ip, e in self._affinity.items() if now - e[1] < timeout}

    def relays(self, node_addresses: list[str] | tuple[str, ...]) -> list[RelaySpec]:
        """The listeners this port needs: none without usable endpoints anywhere (the kernel
        then refuses), else the ClusterIP, each external IP, and the NodePort on each node
        address; a socket filter drops the clients the traffic policy leaves no endpoint."""
        svc = self.svc
        if svc.protocol not in RELAYED_PROTOCOLS or not self.categorized.has_any:
            return []
        internal_drop = None if self.candidates(INTERNAL, True) else DROP_ALL
        if self.candidates(EXTERNAL, False):
            external_drop = None
        else:
            external_drop = DROP_EXTERNAL if self.candidates(EXTERNAL, True) else DROP_ALL
        specs = [RelaySpec(svc.cluster_ip, svc.port, svc.protocol, svc.name, INTERNAL, internal_drop)]
        specs += [RelaySpec(ip, svc.port, svc.protocol, svc.name, EXTERNAL, external_drop,
                            svc.source_ranges if ip in svc.lb_ips else ()) for ip in svc.external_ips]
        if svc.node_port:
            specs += [RelaySpec(ip, svc.node_port, svc.protocol, svc.name, EXTERNAL, external_drop)
                      for ip in node_addresses]
        return specs


def service_addresses(services: PortMap, service: str) -> set[str]:
    """The addresses of Service "namespace/name" that live on the dummy interface."""
    found = set()
    for spn in services.ports_of(service):
        svc = services[spn]
        found.add(svc.cluster_ip)
        found.update(svc.external_ips)
    return found


class ClientClassifier:
    """Whether a client address is "internal" (a pod, or the node itself) for externalTrafficPolicy."""

    def __init__(self, cluster_cidr: str, local_addresses=()):
        net = ipaddress.IPv4Network(cluster_cidr, strict=False)
        self.network, self.mask = int(net.network_address), int(net.netmask)
        self.local = set(local_addresses)

    def __call__(self, ip: str) -> bool:
        try:
            value = int.from_bytes(socket.inet_aton(ip), "big")
        except OSError:
            return False
        return value & self.mask == self.network or ip in self.local


def source_allowed(ip: str, ranges: tuple[str, ...]) -> bool:
    address = ipaddress.IPv4Address(ip)
    return any(address in ipaddress.IPv4Network(cidr, strict=False) for cidr in ranges)


# ---- socket filters -------------------------------------------------------------------------

SO_ATTACH_FILTER, SO_DETACH_FILTER = 26, 27
_LD_W_ABS, _JEQ_K, _AND_K, _RET_K = 0x20, 0x15, 0x54, 0x06
_SKF_AD_IFINDEX = -0x1000 + 8  # the interface a packet arrived on
_SKF_NET_SRC = -0x100000 + 12  # the IPv4 source address
_LOOPBACK_IFINDEX = 1  # the node's own traffic to its local addresses arrives on lo


def socket_filter(drop: str | None, cluster_cidr: str, allow: tuple[str, ...] = ()) -> list[tuple[int, int, int, int]]:
    """A classic BPF program for a listening socket: DROP_ALL drops every packet (a TCP SYN
    dropped by the filter is never answered); DROP_EXTERNAL keeps the node's own traffic (it
    arrives on lo) and the pods' (source in the cluster range). With `allow` (CIDRs), a
    source outside all of them is dropped first."""
    program: list[tuple[int, int, int, int]] = []
    for i, cidr in enumerate(allow):
        net = ipaddress.IPv4Network(cidr, strict=False)
        to_policy = 3 * (len(allow) - i) - 2  # past the later ranges and the drop below
        program += [(_LD_W_ABS, 0, 0, _SKF_NET_SRC & 0xFFFFFFFF),
                    (_AND_K, 0, 0, int(net.netmask)),
                    (_JEQ_K, to_policy, 0, int(net.network_address))]
    if allow:
        program.append((_RET_K, 0, 0, 0))
    if drop is None:
        return program + [(_RET_K, 0, 0, 0xFFFFFFFF)]
    if drop == DROP_ALL:
        return program + [(_RET_K, 0, 0, 0)]
    net = ipaddress.IPv4Network(cluster_cidr, strict=False)
    return program + [(_LD_W_ABS, 0, 0, _SKF_AD_IFINDEX & 0xFFFFFFFF),
            (_JEQ_K, 4, 0, _LOOPBACK_IFINDEX),
            (_LD_W_ABS, 0, 0, _SKF_NET_SRC & 0xFFFFFFFF),
            (_AND_K, 0, 0, int(net.netmask)),
            (_JEQ_K, 1, 0, int(net.network_address)),
            (_RET_K, 0, 0, 0),
            (_RET_K, 0, 0, 0xFFFFFFFF)]


def set_socket_filter(sock, drop: str | None, cluster_cidr: str, allow: tuple[str, ...] = ()) -> None:
    if drop is None and not allow:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
        except OSError:
            pass  # no filter attached
        return
    program = socket_filter(drop, cluster_cidr, allow)
    code = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HP", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


# ---- sockets inside the node's network namespace ---------------------------------------------

class SocketMaker:
    """New sockets and connections in the node's network namespace. A socket belongs to the
    namespace of the thread that created it: with `netns` set, one thread that entered it
    creates them (the proxy of a real node runs inside its namespace and creates them directly)."""

    def __init__(self, netns: str | None = None):
        path = netns_path(netns)
        self._executor = ThreadPoolExecutor(1, "pk-netns", enter_netns, (path,)) if path else None

    async def make(self, count: int, kind: int) -> list[socket.socket]:
        def work() -> list[socket.socket]:
            return [socket.socket(socket.AF_INET, kind) for _ in range(count)]
        if self._executor is None or count == 0:
            return work()
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def connect(self, protocol: asyncio.Protocol, address: tuple[str, int]) -> None:
        """A TCP connection to `address` for `protocol` (its connection_made has run on return)."""
        loop = asyncio.get_running_loop()
        if self._executor is None:  # the common case: no thread hop, the loop's own connect
            await loop.create_connection(lambda: protocol, *address)
            return
        sock = (await self.make(1, socket.SOCK_STREAM))[0]
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
            await loop.create_connection(lambda: protocol, sock=sock)
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        if self._executor:
            self._executor.shutdown(wait=False)


# ---- relays ------------------------------------------------------------------------------

class _Side(asyncio.Protocol):
    """One end of a relayed TCP connection: what it reads goes to the other end as it is (one
    bound write() per chunk, nothing else), with flow control both ways and half-close
    passed through."""

    __slots__ = ("transport", "other", "forward", "eof")

    def __init__(self) -> None:
        self.transport = None
        self.other: _Side | None = None
        self.forward = None  # the other end's transport.write
        self.eof = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.forward(data)

    def eof_received(self) -> bool:
        self.eof = True
        other = self.other
        if other is None:  # a client that half-closed before its endpoint answered: passed on then
            return True
        if other.eof:  # both directions done
            other.transport.close()
            return False
        other.transport.write_eof()
        return True

    def connection_lost(self, exc) -> None:
        other = self.other
        if other is not None and not other.transport.is_closing():
            other.transport.close()

    def pause_writing(self) -> None:  # our send buffer is full: stop reading the other end
        if self.other is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None:
            self.other.transport.resume_reading()

    def join(self, other: _Side) -> None:
        """Splice: from now on each end's reads are the other end's writes."""
        self.other, other.other = other, self
        self.forward, other.forward = other.transport.write, self.transport.write


class _ClientSide(_Side):
    """The accepted end. Until its endpoint is connected it holds what the client sends and
    stops reading (asyncio honours a pause_reading() in connection_made; uvloop starts
    reading right after it anyway, so the first chunk can arrive before the endpoint)."""

    __slots__ = ("relay", "task", "held")

    def __init__(self, relay: TcpRelay) -> None:
        super().__init__()
        self.relay = relay
        self.task = None
        self.held: list[bytes] = []
        self.forward = self._hold

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.pause_reading()
        self.relay.backend.connections.add(self)
        self.task = asyncio.get_running_loop().create_task(self.relay.connect_upstream(self))

    def _hold(self, data: bytes) -> None:
        self.held.append(data)
        self.transport.pause_reading()

    def connection_lost(self, exc) -> None:
        self.relay.backend.connections.discard(self)
        if self.other is None and self.task is not None:
            self.task.cancel()
        super().connection_lost(exc)


class TcpRelay:
    """A listener for one (address, port): each connection goes to an endpoint."""

    def __init__(self, backend: UserspaceBackend, spec: RelaySpec, sock: socket.socket):
        self.backend, self.spec, self.sock = backend, spec, sock
        self.server = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _ClientSide(self), sock=self.sock, backlog=LISTEN_BACKLOG)

    async def connect_upstream(self, client: _ClientSide) -> None:
        backend, spec = self.backend, self.spec
        peer = client.transport.get_extra_info("peername")
        client_ip = peer[0] if peer else ""
        internal = backend.is_internal(client_ip)
        tried: set[Endpoint] = set()
        for timeout in CONNECT_TIMEOUTS:
            chooser = backend.choosers.get(spec.service)
            ep = chooser.choose(client_ip, spec.kind, internal, tried) if chooser else None
            if ep is None:
                break
            tried.add(ep)
            upstream = _Side()
            try:
                async with asyncio.timeout(timeout):
                    await backend.sockets.connect(upstream, (ep.ip, ep.port))
            except (OSError, asyncio.TimeoutError) as exc:
                chooser.forget(client_ip)
                log.debug("%s: connecting to %s failed (%s); trying another endpoint", spec.service, ep, exc)
                continue
            if client.transport.is_closing():  # the client left while we connected
                upstream.transport.close()
                return
            client.join(upstream)
            if client.held:
                upstream.transport.write(b"".join(client.held))
                client.held.clear()
            if client.eof:
                upstream.transport.write_eof()
            else:
                client.transport.resume_reading()
            return
        log.info("%s: no endpoint answered for %s; resetting the client", spec.service, client_ip)
        _reset(client.transport)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.sock.close()


def _reset(transport) -> None:
    """Close with a TCP reset (the client sees "connection reset", not a clean end)."""
    sock = transport.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    transport.abort()


class _UdpSession(asyncio.DatagramProtocol):
    """One client address's datagrams to its endpoint, and the endpoint's replies back."""

    def __init__(self, relay: UdpRelay, client: tuple, endpoint: Endpoint):
        self.relay, self.client, self.endpoint = relay, client, endpoint
        self.transport = None
        self.pending: list[bytes] = []
        self.last_used = time.monotonic()
        self.closed = False

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        sock = (await self.relay.backend.sockets.make(1, socket.SOCK_DGRAM))[0]
        sock.setblocking(False)
        try:
            sock.connect((self.endpoint.ip, self.endpoint.port))
            await loop.create_datagram_endpoint(lambda: self, sock=sock)
        except OSError as exc:
            sock.close()
            log.debug("%s: UDP session to %s failed: %s", self.relay.spec.service, self.endpoint, exc)
            self.close()

    def connection_made(self, transport) -> None:
        if self.closed:
            transport.close()
            return
        self.transport = transport
        for data in self.pending:
            transport.sendto(data)
        self.pending.clear()

    def send(self, data: bytes) -> None:
        self.last_used = time.monotonic()
        if self.transport is not None:
            self.transport.sendto(data)
        elif len(self.pending) < 64:
            self.pending.append(data)

    def datagram_received(self, data: bytes, addr) -> None:
        self.last_used = time.monotonic()
        listener = self.relay.transport
        if listener is not None:
            listener.sendto(data, self.client)

    def error_received(self, exc) -> None:
        pass  # the endpoint refused a datagram (ICMP): the client times out, as with DNAT

    def close(self) -> None:
        self.closed = True
        if self.relay.sessions.get(self.client) is self:
            del self.relay.sessions[self.client]
        if self.transport is not None:
            self.transport.close()


class UdpRelay(asyncio.DatagramProtocol):
    """A UDP socket for one (address, port): a session per client address."""

    def __init__(self, backend: UserspaceBackend, spec: RelaySpec, sock: socket.socket):
        self.backend, self.spec, self.sock = backend, spec, sock
        self.transport = None
        self.sessions: dict[tuple, _UdpSession] = {}

    async def start(self) -> None:
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: self, sock=self.sock)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        session = self.sessions.get(addr)
        if session is None:
            if self.spec.allow and not source_allowed(addr[0], self.spec.allow):
                return  # not in loadBalancerSourceRanges: dropped
            chooser = self.backend.choosers.get(self.spec.service)
            ep = chooser.choose(addr[0], self.spec.kind, self.backend.is_internal(addr[0])) if chooser else None
            if ep is None:
                return  # the policy allows no endpoint for this client: dropped
            session = self.sessions[addr] = _UdpSession(self, addr, ep)
            asyncio.get_running_loop().create_task(session.open())
        session.send(data)

    def prune(self, idle_before: float | None = None) -> None:
        """Close sessions whose endpoint may no longer be used for their client (UDP has no
        end of connection), and those idle since before `idle_before`."""
        chooser = self.backend.choosers.get(self.spec.service)
        for session in list(self.sessions.values()):
            allowed = chooser.candidates(self.spec.kind, self.backend.is_internal(session.client[0])) if chooser else ()
            if session.endpoint not in allowed or (idle_before is not None and session.last_used < idle_before):
                session.close()

    def close(self) -> None:
        for session in list(self.sessions.values()):
            session.close()
        if self.transport is not None:
            self.transport.close()
        else:
            self.sock.close()


def raise_open_files_limit(wanted: int) -> None:
    """At least `wanted` open files if root may, else as many as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---- the backend -----------------------------------------------------------------------------

@dataclass(frozen=True)
class UserspaceConfig:
    node_name: str = ""
    cluster_cidr: str = CLUSTER_CIDR  # pods: "internal" clients for externalTrafficPolicy Local
    interface: str = DUMMY_INTERFACE
    udp_idle_timeout: float = UDP_IDLE_TIMEOUT


class UserspaceError(BackendError):
    """`ip` refused a change of the dummy interface's addresses (its message)."""


class UserspaceBackend(Backend):
    """Keeps one node's relays and service addresses equal to the change tracker's maps.

    Usable on its own: `UserspaceBackend(UserspaceConfig(node_name=...), Commands(netns),
    netns)` then `await backend.sync(tracker.services, tracker.endpoints, tracker.apply())`
    inside a running event loop; `await backend.stop()` closes every listener and
    connection (the addresses stay for the next proxy to adopt)."""

    mode = "userspace"

    def __init__(self, cfg: UserspaceConfig, runner: Commands, netns: str | None = None):
        self.cfg = cfg
        self.runner = runner
        self.sockets = SocketMaker(netns)
        self.needs_full_sync = True
        self.choosers: dict[ServicePortName, EndpointChooser] = {}
        self.relays: dict[tuple, TcpRelay | UdpRelay] = {}
        self.failed: dict[tuple, str] = {}  # listeners that could not open (a port in use), and why
        self.connections: set[_ClientSide] = set()
        self.node_addresses: list[str] = []
        self.is_internal = ClientClassifier(cfg.cluster_cidr)
        self._claims: dict[tuple, dict[str, RelaySpec]] = {}  # key -> Service -> spec (first name wins)
        self._service_keys: dict[str, set[tuple]] = {}
        self._service_ports: dict[str, set[ServicePortName]] = {}
        self._service_addresses: dict[str, set[str]] = {}
        self._addresses: set[str] = set()  # on the dummy interface, as programmed
        self._sweeper: asyncio.Task | None = None
        raise_open_files_limit(OPEN_FILES)

    @classmethod
    def create(cls, node: NodeSettings) -> UserspaceBackend:
        return cls(UserspaceConfig(node_name=node.node_name, cluster_cidr=node.cluster_cidr), Commands(node.netns),
                   node.netns)

    @classmethod
    async def remove_leftovers(cls, node: NodeSettings, commands: Commands) -> None:
        """The dummy interface and the Service addresses on it."""
        code, _, _ = await commands.run(["ip", "link", "del", DUMMY_INTERFACE])
        if code == 0:
            log.info("removed the userspace mode's interface %s", DUMMY_INTERFACE)

    @staticmethod
    def trace(node, settings: NodeSettings, services: list[dict], slices: list[dict], source: str,
              destination: str, port: int, protocol: str, from_node: bool):
        """Which relay the packet meets and where it may go (trace.py's `userspace_trace`)."""
        from pocketkube.proxy.trace import userspace_trace

        return userspace_trace(node, services, slices, source, destination, port, protocol, from_node,
                               settings.cluster_cidr, settings.service_cidr)

    async def sync(self, services: PortMap, endpoints: PortMap, result: UpdateResult) -> SyncStats:
        try:
            if self.needs_full_sync:
                names = set(services.service_names()) | set(self._service_keys) | set(self._service_addresses)
                commands = await self._adopt(services)
                commands += await self._sync_services(services, endpoints, names)
                self.needs_full_sync = False
                stats = SyncStats(True, len(services.service_names()), commands)
            else:
                commands = await self._sync_addresses(services, result.updated_services)
                commands += await self._sync_services(services, endpoints, result.updated_services)
                stats = SyncStats(False, len(result.updated_services), commands)
        except BaseException:
            self.needs_full_sync = True
            raise
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="userspace-sweep")
        return stats

    # -- addresses --

    async def _run(self, argv: list[str], stdin: str | None = None) -> str:
        code, out, err = await self.runner.run(argv, stdin)
        if code != 0:
            raise UserspaceError(err.strip() or f"{' '.join(argv)} exited with status {code}")
        return out

    async def _adopt(self, services: PortMap) -> int:
        """Full sync: make sure the dummy exists, learn the node's addresses, and make the
        dummy hold exactly the Services' addresses (adopting what a previous proxy left)."""
        dummy = self.cfg.interface
        found = json.loads(await self._run(["ip", "-j", "-4", "address", "show"]) or "[]")
        names = {link.get("ifname") for link in found}
        if dummy not in names:
            await self._create_interface()
        node, present = [], set()
        for link in found:
            for info in link.get("addr_info") or []:
                if link.get("ifname") == dummy:
                    present.add(info["local"])
                elif not info["local"].startswith("127.") and info.get("label") != ANNOUNCED_LABEL:
                    node.append(info["local"])  # (a load-balancer address the node announces is not its own)
        self.node_addresses = sorted(set(node), key=lambda ip: socket.inet_aton(ip))
        self._service_addresses = {name: service_addresses(services, name) for name in services.service_names()}
        wanted = set().union(*self._service_addresses.values()) if self._service_addresses else set()
        count = await self._change_addresses(present, wanted)
        self._addresses = wanted
        self._refresh_classifier()
        return count

    async def _create_interface(self) -> None:
        """The dummy interface, up; a bridge without ports where the kernel has no dummy
        driver (it holds local addresses just as well)."""
        dummy = self.cfg.interface
        code, _, err = await self.runner.run(["ip", "link", "add", dummy, "type", "dummy"])
        if code != 0:
            if "Unknown device type" not in err:
                raise UserspaceError(err.strip())
            log.info("the kernel has no dummy interfaces; %s is a bridge without ports", dummy)
            await self._run(["ip", "link", "add", dummy, "type", "bridge"])
        await self._run(["ip", "link", "set", dummy, "up"])

    async def _sync_addresses(self, services: PortMap, changed: set[str]) -> int:
        for name in changed:
            addresses = service_addresses(services, name)
            if addresses:
                self._service_addresses[name] = addresses
            else:
                self._service_addresses.pop(name, None)
        wanted = set().union(*self._service_addresses.values()) if self._service_addresses else set()
        count = await self._change_addresses(self._addresses, wanted)
        self._addresses = wanted
        self._refresh_classifier()
        return count

    async def _change_addresses(self, present: set[str], wanted: set[str]) -> int:
        dummy = self.cfg.interface
        lines = [f"address del {ip}/32 dev {dummy}" for ip in sorted(present - wanted)]
        lines += [f"address add {ip}/32 dev {dummy}" for ip in sorted(wanted - present)]
        if lines:
            await self._run(["ip", "-batch", "-"], "\n".join(lines) + "\n")
        return len(lines)

    def _refresh_classifier(self) -> None:
        self.is_internal = ClientClassifier(self.cfg.cluster_cidr, [*self.node_addresses, *self._addresses])

    # -- listeners --

    async def _sync_services(self, services: PortMap, endpoints: PortMap, names: set[str]) -> int:
        touched: set[tuple] = set()
        for name in names:
            ports = services.ports_of(name)
            for spn in self._service_ports.pop(name, set()) - set(ports):
                self.choosers.pop(spn, None)
            if ports:
                self._service_ports[name] = set(ports)
            specs: dict[tuple, RelaySpec] = {}
            for spn in ports:
                chooser = self.choosers.get(spn)
                if chooser is None:
                    chooser = self.choosers[spn] = EndpointChooser(services[spn], endpoints.get(spn, ()))
                else:
                    chooser.update(services[spn], endpoints.get(spn, ()))
                for spec in chooser.relays(self.node_addresses):
                    specs.setdefault(spec.key, spec)
            old_keys = self._service_keys.pop(name, set())
            for key in old_keys - specs.keys():
                owners = self._claims.get(key, {})
                owners.pop(name, None)
                if not owners:
                    self._claims.pop(key, None)
            for key, spec in specs.items():
                self._claims.setdefault(key, {})[name] = spec
            if specs:
                self._service_keys[name] = set(specs)
            touched |= old_keys | specs.keys()
        return await self._apply_relays(touched)

    async def _apply_relays(self, keys: set[tuple]) -> int:
        changes = 0
        to_open: list[RelaySpec] = []
        for key in keys:
            owners = self._claims.get(key)
            spec = owners[min(owners)] if owners else None
            if owners and len(owners) > 1:
                log.warning("%s:%d/%s is claimed by %s; %s wins", *key, ", ".join(sorted(owners)), min(owners))
            relay = self.relays.get(key)
            if relay is not None and (spec is None or spec.service != relay.spec.service):
                relay.close()
                del self.relays[key]
                relay = None
                changes += 1
            if spec is None:
                self.failed.pop(key, None)
                continue
            if relay is None:
                to_open.append(spec)
                continue
            if relay.spec.filtered != spec.filtered and spec.protocol == "TCP":
                set_socket_filter(relay.sock, spec.drop, self.cfg.cluster_cidr, spec.allow)
                changes += 1
            relay.spec = spec
            if isinstance(relay, UdpRelay):
                relay.prune()
        for spec in to_open:
            changes += 1
        await self._open(to_open)
        return changes

    async def _open(self, specs: list[RelaySpec]) -> None:
        tcp = [s for s in specs if s.protocol == "TCP"]
        udp = [s for s in specs if s.protocol == "UDP"]
        socks = (await self.sockets.make(len(tcp), socket.SOCK_STREAM)
                 + await self.sockets.make(len(udp), socket.SOCK_DGRAM))
        for spec, sock in zip([*tcp, *udp], socks):
            try:
                sock.setblocking(False)
                if spec.protocol == "TCP":  # (for UDP it would let two sockets share a port)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if (spec.drop or spec.allow) and spec.protocol == "TCP":
                    set_socket_filter(sock, spec.drop, self.cfg.cluster_cidr, spec.allow)
                sock.bind((spec.ip, spec.port))
                relay = TcpRelay(self, spec, sock) if spec.protocol == "TCP" else UdpRelay(self, spec, sock)
                await relay.start()
            except OSError as exc:
                sock.close()
                what = "nodePort" if spec.ip in self.node_addresses else "port"
                message = f'can\'t open {what} "{spec.service}" ({spec.ip}:{spec.port}/{spec.protocol.lower()}): {exc.strerror or exc}'
                if self.failed.get(spec.key) != message:
                    log.error("%s; skipping it", message)
                self.failed[spec.key] = message
                continue
            self.failed.pop(spec.key, None)
            self.relays[spec.key] = relay

    async def _sweep(self) -> None:
        """Close idle UDP sessions and forget expired affinity, now and then."""
        interval = max(0.5, min(self.cfg.udp_idle_timeout / 2, 10.0))
        while True:
            await asyncio.sleep(interval)
            idle_before = time.monotonic() - self.cfg.udp_idle_timeout
            for relay in list(self.relays.values()):
                if isinstance(relay, UdpRelay) and relay.sessions:
                    relay.prune(idle_before)
            for chooser in self.choosers.values():
                chooser.expire()

    async def stop(self) -> None:
        """Close every listener, session and relayed connection (what the proxy's exit
        does); the addresses stay on the dummy for the next proxy to adopt."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for relay in self.relays.values():
            relay.close()
        self.relays.clear()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
            if conn.other is not None and conn.other.transport is not None:
                conn.other.transport.abort()
        self.connections.clear()
        self.sockets.close()
        self.needs_full_sync = True
        self.choosers.clear()
        self._claims.clear()
        self._service_keys.clear()
        self._service_ports.clear()
