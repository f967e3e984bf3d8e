"""Hostile packets against the DNS parser and handler (hypothesis): truncated packets, wrong
opcodes, compression loops, over-long names, odd label bytes, random bytes. The handler must
answer a correct error code (FORMERR, NOTIMP, REFUSED, BADVERS) or nothing, never raise, and
a running server must keep answering others afterwards."""

from __future__ import annotations

import asyncio
import socket
import struct

import dns.message
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pocketkube.dns import wire
from pocketkube.dns.server import Deferred, DNSHandler, DNSServer, Metrics
from pocketkube.dns.records import Records
from pocketkube.dns.view import ClusterView

pytestmark = pytest.mark.fuzz


def make_view() -> ClusterView:
    view = ClusterView()
    view.apply_namespace({"metadata": {"name": "default"}})
    view.apply_service({"metadata": {"namespace": "default", "name": "web"},
                        "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}})
    view.mark_synced()
    return view


VIEW = make_view()
HANDLER = DNSHandler(Records(VIEW), VIEW, Metrics("dns://test", "cluster.local"))
GOOD = dns.message.make_query("web.default.svc.cluster.local.", "A", use_edns=0).to_wire()
ALLOWED = {wire.NOERROR, wire.FORMERR, wire.SERVFAIL, wire.NXDOMAIN, wire.NOTIMP, wire.REFUSED}


def check(data: bytes, tcp: bool = False) -> int | None:
    """Handle data; the rcode answered (None when nothing is sent). Fails on any exception
    escaping, on a reply that is not a valid DNS message, or on a reply to a response."""
    out = HANDLER.handle(data, tcp)
    if out is None:
        return None
    if isinstance(out, Deferred):
        return -1  # would be forwarded (a name outside the zone)
    assert len(data) >= 12
    assert out[:2] == data[:2], "the reply keeps the query's ID"
    assert not data[2] & 0x80, "never answer a response"
    assert out[2] & 0x80, "QR set in the reply"
    if not tcp:
        assert len(out) <= 65535
    if (out[2] >> 3) & 0xF == wire.OPCODE_QUERY:  # dnspython reads other opcodes by their own rules
        msg = dns.message.from_wire(out)
        assert msg.rcode() in ALLOWED | {wire.BADVERS}
    rcode = out[3] & 0xF
    assert rcode in ALLOWED
    return rcode


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes(data):
    check(data)
    check(data, tcp=True)


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=len(GOOD) - 1))
def test_truncated_queries_get_formerr_or_nothing(cut):
    rcode = check(GOOD[:cut])
    if cut < 12:
        assert rcode is None
    else:
        assert rcode == wire.FORMERR


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=15))
def test_other_opcodes_get_notimp(opcode):
    data = bytearray(GOOD)
    data[2] = (data[2] & 0x87) | (opcode << 3)
    assert check(bytes(data)) == wire.NOTIMP


def test_responses_are_never_answered():
    data = bytearray(GOOD)
    data[2] |= 0x80
    assert check(bytes(data)) is None


def header(qd=1, an=0, ns=0, ar=0, flags=0x0100) -> bytes:
    return struct.pack("!HHHHHH", 0x1234, flags, qd, an, ns, ar)


@pytest.mark.parametrize("name,why", [
    (b"\xc0\x0c", "a pointer to itself"),
    (b"\x03www\xc0\x0c", "a pointer back to the start of its own name"),
    (b"\x03www\xc0\x10", "a pointer forwards"),
    (b"\x01a\xc0\x0e", "a pointer into its own labels: a loop"),
    (b"\x40" + b"a" * 64 + b"\x00", "a 64-byte label"),
    (b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x00", "a 257-byte name"),
    (b"\x80abc\x00", "a reserved label type"),
    (b"\x05ab", "a label past the end"),
])
def test_malformed_names_get_formerr(name, why):
    assert check(header() + name + b"\x00\x01\x00\x01") == wire.FORMERR, why


def test_a_255_byte_name_is_accepted_and_answered():
    labels = [b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 61]  # 4*1 + 250 + root = 255 bytes
    name = b"".join(bytes([len(lb)]) + lb for lb in labels) + b"\x00"
    assert len(name) == 255
    assert check(header() + name + b"\x00\x01\x00\x01") == -1  # outside the zone: forwarded


def test_section_counts_and_edns_rules():
    q = GOOD[12:]
    assert check(header(qd=0) + q) == wire.FORMERR
    assert check(header(qd=2) + q + q[:-11]) == wire.FORMERR
    assert check(header(ar=2) + q) == wire.FORMERR  # claims a record that is not there
    with_v1 = bytearray(GOOD)
    with_v1[-5] = 1  # EDNS version 1
    msg = dns.message.from_wire(HANDLER.handle(bytes(with_v1), False))
    assert msg.rcode() == dns.rcode.BADVERS and msg.edns == 0
    chaos = bytearray(GOOD)
    chaos[12 + len(GOOD[12:]) - 11 - 1] = 3  # class CH
    assert check(bytes(chaos)) == wire.REFUSED


odd_labels = st.lists(st.binary(min_size=1, max_size=63), min_size=1, max_size=6)


@settings(max_examples=800, deadline=None)
@given(odd_labels, st.sampled_from(["", "svc.cluster.local", "default.svc.cluster.local",
                                     "default.pod.cluster.local", "in-addr.arpa", "cluster.local"]),
       st.integers(min_value=0, max_value=65535))
def test_odd_label_bytes_in_every_part_of_the_zone(labels, suffix, qtype):
    suffix_labels = [lb.encode() for lb in suffix.split(".") if lb]
    all_labels = labels + suffix_labels
    name = b"".join(bytes([len(lb)]) + lb for lb in all_labels) + b"\x00"
    rcode = check(header() + name + struct.pack("!HH", qtype, 1))
    if len(name) > 255:
        assert rcode == wire.FORMERR
    else:
        assert rcode in ALLOWED | {-1}


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.integers(min_value=0, max_value=0x3FFF))
def test_random_pointers_in_the_question(prefix, target):
    name = prefix + struct.pack("!H", 0xC000 | target)
    check(header() + name + b"\x00\x01\x00\x01")


async def ask_until_answered(loop, sock, port: int) -> bytes:
    """Send the good query, as a client retries, until its answer comes (the flood may have
    overrun the socket buffer, which drops datagrams, as it would on any server)."""
    for _ in range(20):
        sock.sendto(GOOD, ("127.0.0.1", port))
        try:
            while True:
                reply = await asyncio.wait_for(loop.sock_recv(sock, 4096), 0.5)
                if reply[:2] == GOOD[:2] and len(reply) > 12:
                    return reply
        except asyncio.TimeoutError:
            continue
    raise AssertionError("the server stopped answering")


async def test_the_server_keeps_answering_after_garbage():
    server = DNSServer(make_view(), address="127.0.0.1", port=0, metrics_port=None, upstreams=[])
    await server.start()
    try:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        garbage = [b"", b"\x00", GOOD[:7], header() + b"\xc0\x0c\x00\x01\x00\x01", b"\xff" * 512,
                   header(flags=0x7800) + GOOD[12:]] * 50
        for g in garbage:
            sock.sendto(g, ("127.0.0.1", server.port))
        # TCP garbage: a length prefix promising more than is sent, then a close
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x00\x40garbage")
        writer.close()
        reply = await ask_until_answered(loop, sock, server.port)
        msg = dns.message.from_wire(reply)
        assert msg.rcode() == dns.rcode.NOERROR
        assert [rd.address for rd in msg.answer[0]] == ["10.96.0.20"]
        assert server.metrics.panics == 0
        sock.close()
    finally:
        await server.stop()


def fresh_answer(data: bytes, tcp: bool, view: ClusterView) -> bytes:
    """What a handler with empty caches answers."""
    return DNSHandler(Records(view), view, Metrics("dns://test", "cluster.local")).handle(data, tcp)


NAMES = ["web.default.svc.cluster.local.", "nope.default.svc.cluster.local.", "_http._tcp.web.default.svc.cluster.local."]


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(NAMES), st.sampled_from(["A", "AAAA", "SRV", "TXT"]), st.booleans(), st.booleans(),
       st.lists(st.tuples(st.integers(0, 0xFFFF), st.randoms()), min_size=1, max_size=4))
def test_cached_answers_equal_fresh_ones(name, qtype, edns, tcp, asks):
    """Whatever cache answers (exact bytes, or the lowercased name), the bytes are those a fresh
    handler gives, for every ID and spelling of the name."""
    for ident, rnd in asks:
        spelled = "".join(c.upper() if rnd.random() < 0.5 else c for c in name)
        query = dns.message.make_query(spelled, qtype, use_edns=0 if edns else None)
        query.id = ident
        data = query.to_wire()
        assert HANDLER.handle(data, tcp) == fresh_answer(data, tcp, VIEW)


def test_a_view_change_empties_the_caches():
    view = make_view()
    handler = DNSHandler(Records(view), view, Metrics("dns://test", "cluster.local"))
    query = dns.message.make_query("web.default.svc.cluster.local.", "A").to_wire()
    first = handler.handle(query, False)
    assert handler.handle(query, False) == first  # from the cache
    view.apply_service({"metadata": {"namespace": "default", "name": "web"},
                        "spec": {"clusterIP": "10.96.0.21", "ports": [{"name": "http", "port": 80}]}})
    changed = dns.message.from_wire(handler.handle(query, False))
    assert changed.answer[0][0].address == "10.96.0.21"
    assert handler.metrics.requests[("cluster.local.", "udp", "1", "A")] == 3
