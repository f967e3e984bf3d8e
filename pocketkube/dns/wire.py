"""The DNS wire format (RFC 1035, RFC 6891 EDNS0) for the cluster DNS server: a strict parser
for queries and an encoder for answers with name compression and truncation.

Why our own codec and not dnspython's: the server's hot path is "parse one question, look it
up, write the answer", and dnspython's general `dns.message.from_wire` / `to_wire` cost tens of
microseconds each in pure Python, which alone would hold the server far below the benchmark goal
(half of dnsmasq's queries/s). A query needs only the header, one question and the OPT record,
so this parser reads exactly that (skipping other records) and the encoder writes only the
record types the cluster zone produces. dnspython stays the reference in the tests: every answer
the tests check is decoded with dnspython, and the fuzz tests feed the parser hostile packets.

Safety rules the parser enforces (each violation is `FormError`, answered with FORMERR):
names of at most 255 bytes, labels of at most 63, compression pointers that only point
backwards to ever earlier offsets (so no loop can be followed), no truncated fields.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from socket import AF_INET, AF_INET6, inet_pton

# Record types and classes used by the cluster zone.
A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, OPT = 1, 2, 5, 6, 12, 15, 16, 28, 33, 41
IXFR, AXFR, ANY = 251, 252, 255
IN = 1
TYPE_NAMES = {A: "A", NS: "NS", CNAME: "CNAME", SOA: "SOA", PTR: "PTR", MX: "MX", TXT: "TXT",
              AAAA: "AAAA", SRV: "SRV", OPT: "OPT", IXFR: "IXFR", AXFR: "AXFR", ANY: "ANY"}
TYPES_BY_NAME = {v: k for k, v in TYPE_NAMES.items()}

# Response codes (BADVERS is an extended rcode: 16 = 1 << 4 in the OPT record).
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, BADVERS = 0, 1, 2, 3, 4, 5, 16
RCODE_NAMES = {NOERROR: "NOERROR", FORMERR: "FORMERR", SERVFAIL: "SERVFAIL", NXDOMAIN: "NXDOMAIN",
               NOTIMP: "NOTIMP", REFUSED: "REFUSED", BADVERS: "BADVERS"}

OPCODE_QUERY = 0
FLAG_QR, FLAG_AA, FLAG_TC, FLAG_RD, FLAG_RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
EDNS_DO = 0x8000
MAX_NAME = 255
PLAIN_UDP_SIZE = 512
SERVER_UDP_SIZE = 1232  # the size we advertise in our own OPT record (DNS flag day 2020)

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_QFIXED = struct.Struct("!HH")


class FormError(ValueError):
    """The packet is not a well-formed DNS message."""


@dataclass(slots=True)
class Query:
    """What a query asks, with the raw bytes needed to echo its question."""

    id: int
    flags: int
    labels: tuple[str, ...]        # lowercase labels, bytes decoded as latin-1 (odd bytes kept)
    qtype: int
    qclass: int
    question: bytes                 # the question as received (name, type, class): echoed as is
    compressed_question: bool       # the question name used a pointer (not cacheable by its bytes)
    counts: tuple[int, int, int, int]
    edns: bool = False
    edns_version: int = 0
    edns_do: bool = False
    udp_size: int = PLAIN_UDP_SIZE

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    def max_size(self, tcp: bool) -> int:
        """The largest response this client accepts: 65535 over TCP, else its EDNS size or 512."""
        return 65535 if tcp else self.udp_size


def read_name(data: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """The labels of the name at offset (as received) and the offset just past it."""
    labels = []
    total = 1
    pos = offset
    end = -1
    floor = offset  # every pointer must jump strictly below the previous target
    n = len(data)
    while True:
        if pos >= n:
            raise FormError("name runs past the end of the packet")
        length = data[pos]
        if length >= 0xC0:
            if pos + 1 >= n:
                raise FormError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= floor:
                raise FormError("compression pointer does not point backwards")
            if end < 0:
                end = pos + 2
            floor = pos = target
            continue
        if length & 0xC0:
            raise FormError("unknown label type")
        if length == 0:
            return tuple(labels), (end if end >= 0 else pos + 1)
        total += length + 1
        if total > MAX_NAME:
            raise FormError("name longer than 255 bytes")
        start = pos + 1
        pos = start + length
        if pos > n:
            raise FormError("label runs past the end of the packet")
        labels.append(data[start:pos])


def parse_query(data: bytes) -> Query:
    """Parse a query: header, the one question, and the OPT record if any (other records are
    walked over). Raises FormError on malformed input."""
    if len(data) < 12:
        raise FormError("shorter than a DNS header")
    ident, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if qd != 1:
        raise FormError("a query must have exactly one question")
    raw_labels, pos = read_name(data, 12)
    if pos + 4 > len(data):
        raise FormError("truncated question")
    qtype, qclass = _QFIXED.unpack_from(data, pos)
    qend = pos + 4
    q = Query(ident, flags, tuple(lb.lower().decode("latin-1") for lb in raw_labels), qtype, qclass,
              data[12:qend], pos - 12 != sum(len(lb) + 1 for lb in raw_labels) + 1, (qd, an, ns, ar))
    pos = qend
    for index in range(an + ns + ar):
        owner, pos = read_name(data, pos)
        if pos + 10 > len(data):
            raise FormError("truncated resource record")
        rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, pos)
        pos += 10 + rdlen
        if pos > len(data):
            raise FormError("truncated record data")
        if rtype == OPT:
            if index < an + ns or q.edns or owner:
                raise FormError("misplaced OPT record")
            q.edns = True
            q.udp_size = max(PLAIN_UDP_SIZE, rclass)
            q.edns_version = (ttl >> 16) & 0xFF
            q.edns_do = bool(ttl & EDNS_DO)
    return q


def header_id_flags(data: bytes) -> tuple[int, int] | None:
    """The ID and flags of whatever arrived, if it has a header at all."""
    if len(data) < 12:
        return None
    ident, flags = struct.unpack_from("!HH", data)
    return ident, flags


# ---------------------------------------------------------------------------------------------
# Records and encoding


@dataclass(frozen=True, slots=True)
class RR:
    """One resource record. `name` None means the question's own name (written as a pointer to
    the question, so the answer echoes the asker's spelling). Data by type: A/AAAA an address
    string; CNAME/PTR/NS a name; SRV (priority, weight, port, target); TXT a tuple of strings;
    SOA (mname, rname, serial, refresh, retry, expire, minimum)."""

    name: str | None
    type: int
    ttl: int
    data: object

    def to_text(self, qname: str) -> str:
        """Zone-file text, e.g. `a.ns.svc.cluster.local. 30 IN A 10.96.0.5`."""
        owner = qname if self.name is None else self.name
        d = self.data
        if self.type == SRV:
            rdata = " ".join(str(x) for x in d)
        elif self.type == TXT:
            rdata = " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in d)
        elif self.type == SOA:
            rdata = " ".join(str(x) for x in d)
        else:
            rdata = str(d)
        return f"{owner} {self.ttl} IN {TYPE_NAMES.get(self.type, self.type)} {rdata}"


def name_labels(name: str) -> tuple[str, ...]:
    return tuple(lb for lb in name.rstrip(".").split(".") if lb) if name not in (".", "") else ()


class Encoder:
    """Builds one response message: header, echoed question, then records with compression
    (case-insensitive, pointing only backwards). Record boundaries are kept for truncation."""

    def __init__(self, question: bytes, question_labels: tuple[str, ...]):
        self.buf = bytearray(12)
        self.buf += question
        self.offsets: dict[tuple[str, ...], int] = {}
        if question_labels and len(question) == sum(len(lb) + 1 for lb in question_labels) + 5:
            pos = 12
            for i in range(len(question_labels)):
                self.offsets.setdefault(question_labels[i:], pos)
                pos += len(question_labels[i]) + 1
        self.question_labels = question_labels
        self.question_end = len(self.buf)
        self.ends: list[int] = []  # buffer length after each record

    def name(self, labels: tuple[str, ...], compress: bool = True) -> None:
        buf = self.buf
        for i in range(len(labels)):
            suffix = labels[i:]
            if compress:
                ptr = self.offsets.get(suffix)
                if ptr is not None:
                    buf += (0xC000 | ptr).to_bytes(2, "big")
                    return
            if len(buf) < 0x3FFF:
                self.offsets.setdefault(suffix, len(buf))
            raw = labels[i].encode("latin-1")
            buf.append(len(raw))
            buf += raw
        buf.append(0)

    def record(self, rr: RR) -> None:
        buf = self.buf
        if rr.name is None:
            if 0 < len(self.question_labels) and self.question_labels in self.offsets:
                buf += b"\xc0\x0c"
            else:
                self.name(self.question_labels)
        else:
            self.name(name_labels(rr.name))
        buf += struct.pack("!HHIH", rr.type, IN, rr.ttl, 0)
        start = len(buf)
        t, d = rr.type, rr.data
        if t == A:
            buf += inet_pton(AF_INET, d)
        elif t == AAAA:
            buf += inet_pton(AF_INET6, d)
        elif t in (CNAME, PTR, NS):
            self.name(name_labels(d))
        elif t == SRV:
            buf += struct.pack("!HHH", d[0], d[1], d[2])
            self.name(name_labels(d[3]), compress=False)  # RFC 2782: no compression in SRV
        elif t == TXT:
            for s in d:
                raw = s.encode()
                buf.append(len(raw))
                buf += raw
        elif t == SOA:
            self.name(name_labels(d[0]))
            self.name(name_labels(d[1]))
            buf += struct.pack("!IIIII", *d[2:])
        else:
            raise ValueError(f"cannot encode type {t}")
        struct.pack_into("!H", buf, start - 2, len(buf) - start)
        self.ends.append(len(buf))


def opt_record(do: bool, ext_rcode: int) -> bytes:
    """Our OPT record: version 0, our UDP size, the DO bit echoed, the extended rcode bits."""
    ttl = (ext_rcode << 24) | (EDNS_DO if do else 0)
    return b"\x00" + struct.pack("!HHIH", OPT, SERVER_UDP_SIZE, ttl, 0)


@dataclass(slots=True)
class Encoded:
    """A response without its ID: flags word, section counts, and the bytes after the question.
    The same value serves every query with the same question (any spelling) and limits."""

    flags: int
    counts: tuple[int, int, int, int]
    tail: bytes
    rcode: int


def encode(query: Query, rcode: int, answer: list[RR], authority: list[RR], additional: list[RR],
           authoritative: bool, recursion_available: bool, limit: int) -> Encoded:
    """Encode a response to query, truncated to limit bytes: additional records are dropped
    first (no TC), then authority and answer records from the end (TC set)."""
    enc = Encoder(query.question, query.labels)
    records = answer + authority + additional
    for rr in records:
        enc.record(rr)
    opt = b""
    if query.edns:
        opt = opt_record(query.edns_do, rcode >> 4)
    counts = [len(answer), len(authority), len(additional)]
    keep = len(records)
    truncated = False
    while keep and enc.ends[keep - 1] + len(opt) > limit:
        keep -= 1
        if keep < counts[0] + counts[1]:
            truncated = True
    body_end = enc.ends[keep - 1] if keep else enc.question_end
    kept = [min(counts[0], keep), min(counts[1], max(0, keep - counts[0])),
            min(counts[2], max(0, keep - counts[0] - counts[1]))]
    flags = FLAG_QR | (query.flags & 0x7900) | (rcode & 0xF)  # opcode and RD echoed
    if authoritative:
        flags |= FLAG_AA
    if recursion_available:
        flags |= FLAG_RA
    if truncated:
        flags |= FLAG_TC
    tail = bytes(enc.buf[enc.question_end:body_end]) + opt
    return Encoded(flags, (1, kept[0], kept[1], kept[2] + (1 if opt else 0)), tail, rcode)


def assemble(ident: int, question: bytes, enc: Encoded) -> bytes:
    return _HEADER.pack(ident, enc.flags, *enc.counts) + question + enc.tail


def error_response(data: bytes, rcode: int, query: Query | None = None) -> bytes | None:
    """A header-only (or question-echoing, when the query parsed) error response; None when the
    packet has no header or is itself a response (answering those invites loops)."""
    if query is not None:
        enc = encode(query, rcode, [], [], [], False, False, query.max_size(False))
        return assemble(query.id, query.question, enc)
    head = header_id_flags(data)
    if head is None or head[1] & FLAG_QR:
        return None
    ident, flags = head
    return _HEADER.pack(ident, FLAG_QR | (flags & 0x7900) | rcode, 0, 0, 0, 0)


def parse_response(data: bytes) -> tuple[int, int, list[list[RR]]]:
    """(ID, rcode, [answer, authority, additional]) of a response: records of the types the
    cluster zone produces are decoded into RRs (owner names absolute, with the final dot),
    others skipped. Raises FormError on malformed input."""
    if len(data) < 12:
        raise FormError("shorter than a DNS header")
    ident, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    pos = 12
    for _ in range(qd):
        _, pos = read_name(data, pos)
        pos += 4
    sections: list[list[RR]] = [[], [], []]
    for index in range(an + ns + ar):
        owner, pos = read_name(data, pos)
        if pos + 10 > len(data):
            raise FormError("truncated resource record")
        rtype, _, ttl, rdlen = _RR_FIXED.unpack_from(data, pos)
        start, pos = pos + 10, pos + 10 + rdlen
        if pos > len(data):
            raise FormError("truncated record data")
        rdata = _rdata(data, rtype, start, pos)
        if rdata is not None:
            sections[0 if index < an else 1 if index < an + ns else 2].append(RR(_text(owner), rtype, ttl, rdata))
    return ident, flags & 0xF, sections


def _rdata(data: bytes, rtype: int, start: int, end: int) -> object | None:
    """The RR.data of one record (see RR), or None for types and sizes we do not read."""
    size = end - start
    if rtype == A and size == 4:
        return str(ipaddress.IPv4Address(data[start:end]))
    if rtype == AAAA and size == 16:
        return str(ipaddress.IPv6Address(data[start:end]))
    if rtype in (CNAME, PTR, NS):
        return _text(read_name(data, start)[0])
    if rtype == SRV and size >= 7:
        priority, weight, port = struct.unpack_from("!HHH", data, start)
        return priority, weight, port, _text(read_name(data, start + 6)[0])
    if rtype == TXT:
        strings, pos = [], start
        while pos < end:
            length = data[pos]
            if pos + 1 + length > end:
                raise FormError("TXT string runs past its record")
            strings.append(data[pos + 1:pos + 1 + length].decode("utf-8", "replace"))
            pos += 1 + length
        return tuple(strings)
    if rtype == SOA:
        mname, pos = read_name(data, start)
        rname, pos = read_name(data, pos)
        if pos + 20 > end:
            raise FormError("truncated SOA record")
        return (_text(mname), _text(rname), *struct.unpack_from("!IIIII", data, pos))
    return None


def parse_answers(data: bytes) -> tuple[int, int, list[RR]]:
    """(ID, rcode, the A/AAAA/CNAME records of the answer section) of a response from an
    upstream server; other record types are skipped. Raises FormError on malformed input."""
    ident, rcode, sections = parse_response(data)
    return ident, rcode, [rr for rr in sections[0] if rr.type in (A, AAAA, CNAME)]


def _text(labels: tuple[bytes, ...]) -> str:
    return ".".join(lb.decode("latin-1") for lb in labels) + "."


def build_query(ident: int, name: str, qtype: int, rd: bool = True) -> bytes:
    """A plain query (used to resolve an ExternalName's target upstream)."""
    out = bytearray(_HEADER.pack(ident, FLAG_RD if rd else 0, 1, 0, 0, 0))
    for label in name_labels(name):
        raw = label.encode("latin-1")
        out.append(len(raw))
        out += raw
    out.append(0)
    out += _QFIXED.pack(qtype, IN)
    return bytes(out)
