"""The cluster DNS server: UDP and TCP on one address and port, answering the cluster zone from
records.Records and forwarding every other name to the host's resolvers; Prometheus metrics,
/health and /ready over HTTP; and `ClusterDNS`, the component that feeds the view from
informers and runs the server (what `pocketkube dns` and the kube-system `coredns` pod run).

Request path (DNSHandler.handle, synchronous): validate the header as miekg/dns's default
accept function does (responses are dropped; opcodes other than QUERY get NOTIMP; more than one
question, more than one answer or authority record or more than two additional records get
FORMERR), then look the packet up in an answer cache keyed by everything but the ID with the
name lowercased (valid until the view's generation changes; before it, a cache of whole
responses keyed by the exact query bytes), else parse, answer and encode. An answer from the
exact cache is counted on its cache entry and folded into the metrics before they are rendered
or the entry goes (a third fewer instructions per answer than counting in the metrics' dicts).
UDP answers are cut to 512 bytes or the client's EDNS0 size with TC set when answer records had
to go, so the client retries over TCP. EDNS0: our OPT record echoes DO; versions other than 0
get BADVERS. AXFR/IXFR and classes other than IN get REFUSED.

Forwarding (CoreDNS `forward . /etc/resolv.conf`): the query as received, with a fresh ID, to
each upstream in turn over the client's transport, within `forward_timeout` seconds in all;
SERVFAIL when none answers (at once when none is reachable: the ICMP error ends the try);
REFUSED beyond `max_concurrent` forwards in flight (CoreDNS's
max_concurrent). An ExternalName whose CNAME leaves the zone has its target resolved the same
way and the upstream's A/AAAA/CNAME records appended (CoreDNS's upstream lookup).
"""

from __future__ import annotations

import asyncio
import bisect
import errno
import fcntl
import gc
import ipaddress
import logging
import random
import socket
import struct
import time
from collections import defaultdict

from pocketkube.dns import wire
from pocketkube.dns.records import KUBEADM_TTL, Answer, Records
from pocketkube.dns.view import ClusterView

log = logging.getLogger(__name__)

MAX_CACHE = 100_000
MAX_EXACT = 10_000  # whole responses by exact query bytes: the hot names (each spelling its own entry)
TCP_IDLE_SECONDS = 10.0
UNREACHABLE_HOLD_SECONDS = 5.0  # an upstream with no route to it is skipped this long (the kernel rate-limits the ICMP that says so)
UDP_RECEIVE_BUFFER = 4 << 20  # bytes (the kernel doubles it for its bookkeeping)
DURATION_BUCKETS = tuple(0.00025 * 2 ** i for i in range(16))  # CoreDNS: ExponentialBuckets(0.00025, 2, 16)
FIRST_BUCKET = DURATION_BUCKETS[0]
METRIC_TYPES = frozenset(("A", "AAAA", "CNAME", "SOA", "PTR", "MX", "TXT", "SRV", "NS", "IXFR", "AXFR", "ANY"))


# ---------------------------------------------------------------------------------------------
# Metrics (CoreDNS names and labels)


class Metrics:
    """Counters and a histogram, rendered in the Prometheus text format."""

    def __init__(self, server: str, zone: str):
        self.server = server
        self.zone = zone + "."
        self.requests: dict[tuple[str, str, str, str], int] = defaultdict(int)
        self.responses: dict[tuple[str, str], int] = defaultdict(int)
        self.duration_counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.forward_requests: dict[str, int] = defaultdict(int)
        self.forward_responses: dict[tuple[str, str], int] = defaultdict(int)
        self.panics = 0
        self.flushers: list = []  # called before rendering: fold in counts kept elsewhere (DNSHandler)

    def observe(self, zone: str, proto: str, family: str, qtype: int, rcode: int, seconds: float,
                plugin: str) -> None:
        self.count(*self.keys(zone, proto, family, qtype, rcode, plugin), seconds)

    @staticmethod
    def keys(zone: str, proto: str, family: str, qtype: int, rcode: int, plugin: str) -> tuple[tuple, tuple]:
        """The label keys of one answer in `requests` and `responses` (kept with cached answers)."""
        name = wire.TYPE_NAMES.get(qtype, "other")
        return ((zone, proto, family, name if name in METRIC_TYPES else "other"),
                (zone, wire.RCODE_NAMES.get(rcode, str(rcode)), plugin))

    def count(self, request_key: tuple, response_key: tuple, seconds: float) -> None:
        self.requests[request_key] += 1
        self.responses[response_key] += 1
        self.duration_counts[0 if seconds <= FIRST_BUCKET else bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds

    def add_fast(self, request_key: tuple, response_key: tuple, n: int, seconds: float) -> None:
        """Count n answers that each took at most the first bucket's bound, `seconds` in all."""
        self.requests[request_key] += n
        self.responses[response_key] += n
        self.duration_counts[0] += n
        self.duration_sum += seconds

    def render(self) -> str:
        for flush in self.flushers:
            flush()
        s = self.server
        out = ["# HELP coredns_build_info A metric with a constant '1' value labeled by version.",
               "# TYPE coredns_build_info gauge",
               'coredns_build_info{goversion="python",revision="pocketkube",version="1.11.3"} 1',
               "# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.",
               "# TYPE coredns_dns_requests_total counter"]
        for (zone, proto, family, qtype), n in sorted(self.requests.items()):
            out.append(f'coredns_dns_requests_total{{family="{family}",proto="{proto}",server="{s}",'
                       f'type="{qtype}",view="",zone="{zone}"}} {n}')
        out += ["# HELP coredns_dns_responses_total Counter of response status codes.",
                "# TYPE coredns_dns_responses_total counter"]
        for (zone, rcode, plugin), n in sorted(self.responses.items()):
            out.append(f'coredns_dns_responses_total{{plugin="{plugin}",rcode="{rcode}",server="{s}",'
                       f'view="",zone="{zone}"}} {n}')
        out += ["# HELP coredns_dns_request_duration_seconds Histogram of the time (in seconds) each request took.",
                "# TYPE coredns_dns_request_duration_seconds histogram"]
        cumulative = 0
        for bound, n in zip(DURATION_BUCKETS, self.duration_counts):
            cumulative += n
            out.append(f'coredns_dns_request_duration_seconds_bucket{{server="{s}",view="",zone="{self.zone}",'
                       f'le="{bound:g}"}} {cumulative}')
        cumulative += self.duration_counts[-1]
        out.append(f'coredns_dns_request_duration_seconds_bucket{{server="{s}",view="",zone="{self.zone}",'
                   f'le="+Inf"}} {cumulative}')
        out.append(f'coredns_dns_request_duration_seconds_sum{{server="{s}",view="",zone="{self.zone}"}} '
                   f'{self.duration_sum:.9f}')
        out.append(f'coredns_dns_request_duration_seconds_count{{server="{s}",view="",zone="{self.zone}"}} '
                   f'{cumulative}')
        out += ["# HELP coredns_forward_requests_total Counter of requests made per upstream.",
                "# TYPE coredns_forward_requests_total counter"]
        out += [f'coredns_forward_requests_total{{to="{to}"}} {n}' for to, n in sorted(self.forward_requests.items())]
        out += ["# HELP coredns_forward_responses_total Counter of responses received per upstream.",
                "# TYPE coredns_forward_responses_total counter"]
        out += [f'coredns_forward_responses_total{{rcode="{rc}",to="{to}"}} {n}'
                for (to, rc), n in sorted(self.forward_responses.items())]
        out += ["# HELP coredns_panics_total A metrics that counts the number of panics.",
                "# TYPE coredns_panics_total counter", f"coredns_panics_total {self.panics}"]
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# The synchronous request path


class Deferred:
    """An answer that needs the network (forwarding, or an ExternalName target to resolve)."""

    __slots__ = ("query", "answer", "tcp", "data", "started")

    def __init__(self, query: wire.Query, answer: Answer, tcp: bool, data: bytes, started: float):
        self.query, self.answer, self.tcp, self.data, self.started = query, answer, tcp, data, started


class _Exact:
    """A response for one exact query (all bytes but the ID), its metric keys, and the answers
    given from it not yet counted in the metrics (those within the first duration bucket: the
    handler folds them in before the entry goes and before the metrics are rendered)."""

    __slots__ = ("tail", "family", "request_key", "response_key", "hits", "seconds")

    def __init__(self, tail: bytes, family: str, request_key: tuple, response_key: tuple):
        self.tail, self.family, self.request_key, self.response_key = tail, family, request_key, response_key
        self.hits, self.seconds = 0, 0.0


class DNSHandler:
    """bytes in, bytes (or None: send nothing, or a Deferred) out. Never raises.

    Two answer caches, both emptied when the view's generation changes: `_exact` maps a query's
    bytes after the ID (per transport) to the response's bytes after the ID, so a repeated
    query costs one dictionary lookup and one concatenation; `_cache` maps the same bytes with
    the name lowercased to the encoded answer, so any spelling of a name is encoded once. An
    answer from `_exact` is counted on its entry (one attribute increment instead of the
    metrics' dictionaries) and folded into the metrics by flush_metrics."""

    def __init__(self, records: Records, view: ClusterView, metrics: Metrics):
        self.records = records
        self.view = view
        self.metrics = metrics
        self.zone = records.zone + "."
        self._cache: dict[tuple[bytes, bool], wire.Encoded] = {}
        self._exact: tuple[dict[bytes, _Exact], dict[bytes, _Exact]] = ({}, {})  # (udp, tcp)
        self._generation = -1
        metrics.flushers.append(self.flush_metrics)

    def flush_metrics(self) -> None:
        """Fold the answers counted on the `_exact` entries into the metrics."""
        for exact in self._exact:
            for hit in exact.values():
                if hit.hits:
                    self.metrics.add_fast(hit.request_key, hit.response_key, hit.hits, hit.seconds)
                    hit.hits, hit.seconds = 0, 0.0

    def handle(self, data: bytes, tcp: bool, family: str = "1") -> bytes | Deferred | None:
        started = time.perf_counter()
        try:
            if self._generation != self.view.generation:
                self.flush_metrics()
                self._cache.clear()
                self._exact[0].clear()
                self._exact[1].clear()
                self._generation = self.view.generation
            exact = self._exact[tcp]
            hit = exact.get(data[2:])
            if hit is not None and hit.family == family:
                elapsed = time.perf_counter() - started
                if elapsed <= FIRST_BUCKET:
                    hit.hits += 1
                    hit.seconds += elapsed
                else:
                    self.metrics.count(hit.request_key, hit.response_key, elapsed)
                return data[:2] + hit.tail
            key, qend = _cache_key(data, tcp)
            if key is not None:
                enc = self._cache.get(key)
                if enc is not None:
                    out = wire.assemble(int.from_bytes(data[:2], "big"), data[12:qend], enc)
                    self._remember(data, out, tcp, family, int.from_bytes(data[qend - 4:qend - 2], "big"), enc.rcode,
                                   started)
                    return out
            return self._slow(data, tcp, family, key, started)
        except Exception:  # a bug must cost one answer, never the server
            self.metrics.panics += 1
            log.exception("dns: handling a query failed")
            return wire.error_response(data, wire.SERVFAIL)

    def _remember(self, data: bytes, out: bytes, tcp: bool, family: str, qtype: int, rcode: int,
                  started: float) -> None:
        """Count an answer from the cluster zone and keep it for the same query bytes."""
        request_key, response_key = self.metrics.keys(self.zone, "tcp" if tcp else "udp", family, qtype, rcode,
                                                      "kubernetes")
        exact = self._exact[tcp]
        if len(exact) >= MAX_EXACT:
            self.flush_metrics()
            exact.clear()
        exact[data[2:]] = _Exact(out[2:], family, request_key, response_key)
        self.metrics.count(request_key, response_key, time.perf_counter() - started)

    def _slow(self, data: bytes, tcp: bool, family: str, key, started: float):
        proto = "tcp" if tcp else "udp"
        try:
            q = wire.parse_query(data)
        except wire.FormError:
            out = wire.error_response(data, wire.FORMERR)
            if out is not None:
                self.metrics.observe(".", proto, family, 0, wire.FORMERR, time.perf_counter() - started, "")
            return out
        if q.flags & wire.FLAG_QR:
            return None
        rcode = wire.NOERROR
        if q.opcode != wire.OPCODE_QUERY:
            rcode = wire.NOTIMP
        elif q.counts[1] > 1 or q.counts[2] > 1 or q.counts[3] > 2:
            rcode = wire.FORMERR
        elif q.edns and q.edns_version != 0:
            rcode = wire.BADVERS
        elif q.qclass != wire.IN:
            rcode = wire.REFUSED
        if rcode != wire.NOERROR:
            enc = wire.encode(q, rcode, [], [], [], False, False, q.max_size(tcp))
            self.metrics.observe(".", proto, family, q.qtype, rcode, time.perf_counter() - started, "")
            return wire.assemble(q.id, q.question, enc)
        answer = self.records.answer(q.labels, q.qtype)
        if answer.forward or answer.external_target:
            return Deferred(q, answer, tcp, data, started)
        enc = wire.encode(q, answer.rcode, answer.answer, answer.authority, answer.additional,
                          answer.authoritative, False, q.max_size(tcp))
        out = wire.assemble(q.id, q.question, enc)
        if key is not None and not q.compressed_question:
            if len(self._cache) >= MAX_CACHE:
                self._cache.clear()
            self._cache[key] = enc
            self._remember(data, out, tcp, family, q.qtype, enc.rcode, started)
        else:
            self.metrics.observe(self.zone, proto, family, q.qtype, enc.rcode, time.perf_counter() - started,
                                 "kubernetes")
        return out


def _cache_key(data: bytes, tcp: bool) -> tuple[tuple[bytes, bool] | None, int]:
    """(everything but the ID with the question name lowercased, where the question ends);
    (None, 0) for packets the fast path does not read (compressed or malformed names: the
    slow path decides)."""
    n = len(data)
    if n < 17:
        return None, 0
    pos = 12
    while True:
        if pos >= n:
            return None, 0
        length = data[pos]
        if length == 0:
            break
        if length > 63:
            return None, 0
        pos += length + 1
    if pos + 5 > n or pos - 12 > wire.MAX_NAME:
        return None, 0
    return (data[2:12] + data[12:pos].lower() + data[pos:], tcp), pos + 5


# ---------------------------------------------------------------------------------------------
# Forwarding


def resolv_conf_nameservers(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The `nameserver` lines of a resolv.conf, as (address, 53)."""
    servers = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        servers.append((str(ipaddress.ip_address(parts[1].split("%")[0])), 53))
                    except ValueError:
                        continue
    except OSError:
        pass
    return servers


IP_RECVERR, IPV6_RECVERR = 11, 25  # linux/in.h, linux/in6.h (Python's socket module lacks them)


def _upstream_socket(host: str, port: int) -> socket.socket:
    """A UDP socket connected to an upstream that also reports the ICMP errors Linux counts as
    soft (network or host unreachable), so an upstream the cluster has no route to (nodes and
    pods have none out of the cluster) fails the forward at once, not after its timeout."""
    v6 = ":" in host
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP, IPV6_RECVERR if v6 else IP_RECVERR, 1)
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class Forwarder:
    """Sends queries to upstream resolvers in turn; None when none answers in time. An upstream
    found unreachable (no route: nodes and pods have none out of the cluster) is skipped for
    UNREACHABLE_HOLD_SECONDS, so a name outside the cluster gets its SERVFAIL at once, not
    after the timeout, each time it is asked."""

    def __init__(self, upstreams: list[tuple[str, int]], timeout: float, max_concurrent: int, metrics: Metrics):
        self.upstreams = upstreams
        self.timeout = timeout
        self.max_concurrent = max_concurrent
        self.metrics = metrics
        self.in_flight = 0
        self.unreachable_until: dict[tuple[str, int], float] = {}

    async def exchange(self, data: bytes, tcp: bool) -> bytes | None:
        if not self.upstreams:
            return None
        per_try = self.timeout / len(self.upstreams)
        for host, port in self.upstreams:
            if self.unreachable_until.get((host, port), 0.0) > time.monotonic():
                continue
            ident = random.randrange(0x10000)
            packet = ident.to_bytes(2, "big") + data[2:]
            to = f"{host}:{port}"
            self.metrics.forward_requests[to] += 1
            try:
                reply = await asyncio.wait_for(self._tcp(host, port, packet) if tcp else
                                               self._udp(host, port, ident, packet), per_try)
            except (OSError, asyncio.IncompleteReadError) as exc:  # OSError: timeouts too
                if getattr(exc, "errno", None) in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                    self.unreachable_until[(host, port)] = time.monotonic() + UNREACHABLE_HOLD_SECONDS
                continue
            if len(reply) < 12 or int.from_bytes(reply[:2], "big") != ident:
                continue
            self.metrics.forward_responses[(to, wire.RCODE_NAMES.get(reply[3] & 0xF, str(reply[3] & 0xF)))] += 1
            return data[:2] + reply[2:]
        return None

    async def _udp(self, host: str, port: int, ident: int, packet: bytes) -> bytes:
        # the socket's own calls, not a datagram transport: uvloop's crashes the process on
        # the queued ICMP error (SIGSEGV, uvloop 0.23)
        loop = asyncio.get_running_loop()
        sock = _upstream_socket(host, port)
        try:
            await loop.sock_sendall(sock, packet)
            while True:
                reply = await loop.sock_recv(sock, 65535)
                if len(reply) >= 12 and int.from_bytes(reply[:2], "big") == ident:
                    return reply
        finally:
            sock.close()

    async def _tcp(self, host: str, port: int, packet: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(len(packet).to_bytes(2, "big") + packet)
            await writer.drain()
            size = int.from_bytes(await reader.readexactly(2), "big")
            return await reader.readexactly(size)
        finally:
            writer.close()


# ---------------------------------------------------------------------------------------------
# The server


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: "DNSServer"):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        out = self.server.handler.handle(data, False, "2" if ":" in addr[0] else "1")
        if out is None:
            return
        if type(out) is bytes:
            self.transport.sendto(out, addr)
        else:
            self.server.spawn(self._finish(out, addr))

    async def _finish(self, deferred: Deferred, addr) -> None:
        out = await self.server.complete(deferred)
        if out is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)

    def error_received(self, exc):
        log.debug("dns: udp error: %s", exc)


class DNSServer:
    """The DNS server over a ClusterView. `port=0` picks a free port (the same for UDP and
    TCP); after start(), `port` and `metrics_port` hold the bound ports."""

    def __init__(self, view: ClusterView, *, address: str = "127.0.0.1", port: int = 53,
                 zone: str = "cluster.local", ttl: int = KUBEADM_TTL, pod_mode: str = "insecure",
                 upstreams: list[tuple[str, int]] | None = None, forward_timeout: float = 2.0,
                 max_concurrent: int = 1000, metrics_address: str | None = None, metrics_port: int | None = 9153,
                 health_port: int | None = None, ready_port: int | None = None,
                 local_ips: tuple[str, ...] | None = None):
        self.view = view
        self.address = address
        self.port = port
        if local_ips is None:
            local_ips = local_addresses() if address in ("0.0.0.0", "::") else (address,)
        self.records = Records(view, zone=zone, ttl=ttl, pod_mode=pod_mode, local_ips=tuple(local_ips))
        self.metrics = Metrics(f"dns://{address}:{port}", self.records.zone)
        self.handler = DNSHandler(self.records, view, self.metrics)
        self.forwarder = Forwarder(list(upstreams or []), forward_timeout, max_concurrent, self.metrics)
        self.metrics_address = metrics_address or address
        self.metrics_port = metrics_port
        self.health_port = health_port
        self.ready_port = ready_port
        self.ready = asyncio.Event()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.AbstractServer | None = None
        self._http = None
        self._tasks: set[asyncio.Task] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            udp_sock = socket.socket(socket.AF_INET6 if ":" in self.address else socket.AF_INET, socket.SOCK_DGRAM)
            udp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            _grow_receive_buffer(udp_sock)
            udp_sock.bind((self.address, self.port))
            port = udp_sock.getsockname()[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.address, port, reuse_address=True)
            except OSError:
                udp_sock.close()
                if self.port or attempt == 19:
                    raise
                continue
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _UDPProtocol(self), sock=udp_sock)
            self.port = port
            break
        self.metrics.server = f"dns://{self.address}:{self.port}"
        await self._start_http()
        self.ready.set()
        log.info("dns: serving %s on %s:%d (udp, tcp)", self.records.zone, self.address, self.port)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.cleanup()
        self.ready.clear()

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- answers that need the network ----------------------------------------------------------

    async def complete(self, d: Deferred) -> bytes | None:
        q = d.query
        proto = "tcp" if d.tcp else "udp"
        if self.forwarder.in_flight >= self.forwarder.max_concurrent:
            return self._error(q, wire.REFUSED, d, "forward")
        self.forwarder.in_flight += 1
        try:
            if d.answer.forward:
                reply = await self.forwarder.exchange(d.data, d.tcp)
                if reply is None:
                    return self._error(q, wire.SERVFAIL, d, "forward")
                self.metrics.observe(".", proto, "1", q.qtype, reply[3] & 0xF, time.perf_counter() - d.started, "forward")
                return reply
            extra = await self._resolve_external(d.answer.external_target, q.qtype)
            enc = wire.encode(q, d.answer.rcode, d.answer.answer + extra, d.answer.authority, d.answer.additional,
                              True, False, q.max_size(d.tcp))
            self.metrics.observe(self.handler.zone, proto, "1", q.qtype, enc.rcode, time.perf_counter() - d.started,
                                 "kubernetes")
            return wire.assemble(q.id, q.question, enc)
        except Exception:
            self.metrics.panics += 1
            log.exception("dns: completing a query failed")
            return self._error(q, wire.SERVFAIL, d, "")
        finally:
            self.forwarder.in_flight -= 1

    def _error(self, q: wire.Query, rcode: int, d: Deferred, plugin: str) -> bytes:
        enc = wire.encode(q, rcode, [], [], [], False, False, q.max_size(d.tcp))
        self.metrics.observe(".", "tcp" if d.tcp else "udp", "1", q.qtype, rcode, time.perf_counter() - d.started, plugin)
        return wire.assemble(q.id, q.question, enc)

    async def _resolve_external(self, target: str, qtype: int) -> list[wire.RR]:
        """The upstream's records for an ExternalName target (nothing when none answers)."""
        ident = random.randrange(0x10000)
        reply = await self.forwarder.exchange(wire.build_query(ident, target, qtype), False)
        if reply is None:
            return []
        try:
            _, _, records = wire.parse_answers(reply)
        except wire.FormError:
            return []
        return records

    # -- TCP ------------------------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("",)
        family = "2" if ":" in str(peer[0]) else "1"
        try:
            while True:
                size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS), "big")
                data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE_SECONDS)
                out = self.handler.handle(data, True, family)
                if isinstance(out, Deferred):
                    out = await self.complete(out)
                if out is None:
                    continue
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    # -- HTTP: /metrics, /health, /ready ----------------------------------------------------------

    async def _start_http(self) -> None:
        ports = [p for p in (self.metrics_port, self.health_port, self.ready_port) if p is not None]
        if not ports:
            return
        from aiohttp import web

        async def metrics(_request):
            return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8",
                                headers={"X-Content-Type-Options": "nosniff"})

        async def health(_request):
            return web.Response(text="OK")

        async def ready(_request):
            if self.view.synced and self.ready.is_set():
                return web.Response(text="OK")
            return web.Response(status=503, text="kubernetes")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/health", health)
        app.router.add_get("/ready", ready)
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        bound = []
        for port in dict.fromkeys(ports):
            site = web.TCPSite(self._http, self.metrics_address, port, reuse_address=True)
            await site.start()
            bound.append(site._server.sockets[0].getsockname()[1])
        if self.metrics_port is not None:
            self.metrics_port = bound[list(dict.fromkeys(ports)).index(self.metrics_port)]


def _grow_receive_buffer(sock: socket.socket) -> None:
    """Room for UDP_RECEIVE_BUFFER bytes of queries while the loop is busy or the process waits
    for a CPU: the default (~200 kB, a few hundred queries) drops the queries of a pause of
    tens of milliseconds at 10k queries/s, and a dropped query costs the client a 5 s retry.
    Past net.core.rmem_max only root may (SO_RCVBUFFORCE); otherwise the kernel caps it."""
    for option in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, UDP_RECEIVE_BUFFER)
            return
        except OSError:
            continue


def local_addresses() -> tuple[str, ...]:
    """The IPv4 addresses of this network namespace's interfaces except loopback (CoreDNS
    answers NS queries with them when it is not behind a Service)."""
    siocgifaddr = 0x8915
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(s.fileno(), siocgifaddr, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            ip = socket.inet_ntoa(raw[20:24])
            if not ip.startswith("127."):
                found.append(ip)
    return tuple(found)


# ---------------------------------------------------------------------------------------------
# The component


class ClusterDNS:
    """Cluster DNS as a component: informers for Namespaces, Services, EndpointSlices (and Pods
    with pod_mode="verified") feed a ClusterView; a DNSServer answers from it. start() waits up
    to sync_timeout for the first lists (CoreDNS waits 5 s, then serves anyway, answering
    SERVFAIL instead of NXDOMAIN until synced); `ready` is set once synced and serving."""

    def __init__(self, client, *, address: str = "0.0.0.0", port: int = 53, sync_timeout: float = 5.0,
                 upstreams: list[tuple[str, int]] | None = None, resolv_conf: str = "/etc/resolv.conf",
                 **server_options):
        from pocketkube.core.informer import InformerFactory

        self.client = client
        self.view = ClusterView()
        self.factory = InformerFactory(client)
        self.sync_timeout = sync_timeout
        if upstreams is None:
            upstreams = [u for u in resolv_conf_nameservers(resolv_conf) if not _is_self(u, address, port)]
        self.server = DNSServer(self.view, address=address, port=port, upstreams=upstreams, **server_options)
        self.ready = asyncio.Event()
        self._sync_task: asyncio.Task | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        self.view.attach(self.factory, watch_pods=self.server.records.pod_mode == "verified")
        await self.factory.start()
        try:
            await self.factory.wait_synced(self.sync_timeout)
            self.view.mark_synced()
        except asyncio.TimeoutError:
            log.warning("dns: starting with an unsynced view of the Kubernetes API")
        await self.server.start()
        if self.view.synced:
            _keep_out_of_collections()
            self.ready.set()
        else:
            self._sync_task = asyncio.get_running_loop().create_task(self._await_sync())

    async def _await_sync(self) -> None:
        await self.factory.wait_synced(None)
        self.view.mark_synced()
        _keep_out_of_collections()
        self.ready.set()

    async def stop(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
        await self.server.stop()
        await self.factory.stop()
        self.ready.clear()


def _keep_out_of_collections() -> None:
    """Once the first lists are in: move every object alive now out of the garbage collector's
    passes (gc.freeze; this process is the DNS server's own). With 10,000 Services and 50,000
    endpoints cached that is ~230,000 objects, and a full collection over them took 30-40 ms
    of CPU, during which every query waits: a tail the watch traffic would otherwise bring
    back now and then. Informer objects and view records are acyclic, so what a later event
    replaces is still freed by reference counting."""
    gc.freeze()


def _is_self(upstream: tuple[str, int], address: str, port: int) -> bool:
    """Would forwarding to upstream reach this very server (a forwarding loop)?"""
    host, up_port = upstream
    if up_port != port:
        return False
    if host == address:
        return True
    return address in ("0.0.0.0", "::") and (ipaddress.ip_address(host).is_loopback or host in local_addresses())
