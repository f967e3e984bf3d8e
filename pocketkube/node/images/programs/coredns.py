"""The CoreDNS binary that agnhost images bundle as /coredns, as the e2e suite runs it:

    /coredns -conf /etc/coredns/Corefile

with a Corefile of server blocks (`ZONE[:PORT] [ZONE...] { plugins }`, port 53 by default). Of
the plugins, `hosts` answers (inline `IP NAME...` lines and/or a hosts FILE, with `ttl`,
`no_reverse` and `fallthrough`), `log` prints each query as CoreDNS's common log format does,
and the others are accepted and ignored. As CoreDNS: a name the hosts plugin has, of another
type, is an empty NOERROR; a name it does not have is SERVFAIL (no next plugin); a name outside
every block's zone is REFUSED. PTR records come from the entries unless `no_reverse`.
Standalone (stdlib only), UDP and TCP on every address.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
import threading
from dataclasses import dataclass, field

A, PTR, AAAA = 1, 12, 28
NOERROR, SERVFAIL, NXDOMAIN, REFUSED = 0, 2, 3, 5
TYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV"}
RCODE_NAMES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


def fqdn(name: str) -> str:
    return name.lower().rstrip(".") + "."


def in_zone(name: str, zone: str) -> bool:
    return zone == "." or name == zone or name.endswith("." + zone)


@dataclass
class Block:
    zones: list[str]
    port: int = 53
    hosts: dict[str, list[str]] | None = None  # name -> addresses; None: no hosts plugin
    ttl: int = 3600
    reverse: bool = True
    log: bool = False
    ptr: dict[str, list[str]] = field(default_factory=dict)


def _add_host(block: Block, words: list[str]) -> None:
    try:
        ip = ipaddress.ip_address(words[0].split("%")[0])
    except ValueError:
        return
    for name in words[1:]:
        block.hosts.setdefault(fqdn(name), []).append(str(ip))
        if block.reverse:
            block.ptr.setdefault(ip.reverse_pointer + ".", []).append(fqdn(name))


def parse_corefile(text: str) -> list[Block]:
    """Server blocks and what this server understands of their plugins."""
    lines = [raw.split("#", 1)[0].replace("{", " { ").replace("}", " } ").split() for raw in text.splitlines()]
    flat = [(n, w) for n, ws in enumerate(lines) for w in ws]  # (line number, word)
    blocks: list[Block] = []
    current: Block | None = None
    words_seen: list[str] = []
    depth = i = 0
    while i < len(flat):
        _, word = flat[i]
        if depth == 0:
            if word == "{":
                zones, port = [], 53
                for key in words_seen:
                    key = key.removeprefix("dns://")
                    zone, _, p = key.rpartition(":") if key.count(":") == 1 else (key, "", "")
                    zones.append(fqdn(zone) if zone not in (".", "") else ".")
                    port = int(p) if p.isdigit() else port
                current = Block(zones=zones or ["."], port=port)
                blocks.append(current)
                words_seen, depth = [], 1
            else:
                words_seen.append(word)
            i += 1
            continue
        # inside a block: one plugin per line, with an optional { ... } body
        line_no = flat[i][0]
        plugin = [w for n, w in flat[i:] if n == line_no]
        i += len(plugin)
        if plugin == ["}"]:
            depth, current = 0, None
            continue
        body: list[list[str]] = []
        if plugin[-1] == "{":
            plugin = plugin[:-1]
            while i < len(flat) and flat[i][1] != "}":
                n = flat[i][0]
                entry = [w for m, w in flat[i:] if m == n and w != "}"]
                i += len(entry)
                body.append(entry)
            i += 1  # the closing }
        name = plugin[0]
        if name == "log":
            current.log = True
        elif name == "hosts":
            current.hosts = current.hosts or {}
            options = [e for e in body if e and e[0] in ("ttl", "no_reverse", "reload", "fallthrough")]
            for option in options:
                if option[0] == "ttl" and len(option) > 1 and option[1].isdigit():
                    current.ttl = int(option[1])
                elif option[0] == "no_reverse":
                    current.reverse = False
            if len(plugin) > 1:
                try:
                    with open(plugin[1]) as f:
                        for line in f:
                            words = line.split("#", 1)[0].split()
                            if len(words) > 1:
                                _add_host(current, words)
                except OSError as exc:
                    print(f"[ERROR] plugin/hosts: {exc}", file=sys.stderr, flush=True)
            for entry in body:
                if entry and entry not in options and len(entry) > 1:
                    _add_host(current, entry)
    return blocks


def _read_name(msg: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while True:
        length = msg[offset]
        if length == 0:
            return ".".join(labels) + ".", offset + 1
        if length & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(msg[offset + 1:offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length


def _name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".") if label) + b"\0"


def answer(blocks: list[Block], query: bytes) -> tuple[bytes, str, int, int]:
    """The response to one query, and (name, type, rcode) for the log."""
    qid, flags, qdcount = struct.unpack("!HHH", query[:6])
    if qdcount != 1:
        raise ValueError("one question expected")
    qname, end = _read_name(query, 12)
    (qtype,) = struct.unpack("!H", query[end:end + 2])
    question = query[12:end + 4]
    name = qname.lower()
    block = next((b for b in blocks if any(in_zone(name, z) for z in b.zones)), None)
    records: list[bytes] = []
    if block is None:
        rcode = REFUSED
    elif block.hosts is None:
        rcode = SERVFAIL
    elif qtype == PTR and name in block.ptr:
        rcode = NOERROR
        for target in block.ptr[name]:
            data = _name(target)
            records.append(_name(name) + struct.pack("!HHIH", PTR, 1, block.ttl, len(data)) + data)
    elif name in block.hosts:
        rcode = NOERROR
        for ip in block.hosts[name]:
            address = ipaddress.ip_address(ip)
            if (qtype, address.version) in ((A, 4), (AAAA, 6)):
                records.append(_name(name) + struct.pack("!HHIH", qtype, 1, block.ttl, len(address.packed))
                               + address.packed)
    else:
        rcode = SERVFAIL
    opcode_rd = flags & 0x7900  # opcode and RD, as the query had them
    reply_flags = 0x8000 | opcode_rd | (0x0400 if rcode == NOERROR else 0) | rcode
    head = struct.pack("!HHHHHH", qid, reply_flags, 1, len(records), 0, 0)
    return head + question + b"".join(records), qname, qtype, rcode


def _log(block_log: bool, client: tuple, proto: str, qid: int, qname: str, qtype: int, rcode: int, size: int) -> None:
    if block_log:
        print(f'[INFO] {client[0]}:{client[1]} - {qid} "{TYPE_NAMES.get(qtype, qtype)} IN {qname} {proto} '
              f'{size} false 512" {RCODE_NAMES.get(rcode, rcode)} qr,aa,rd {size} 0.000100s', flush=True)


def serve_udp(blocks: list[Block], port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    logging = any(b.log for b in blocks)
    while True:
        data, client = sock.recvfrom(4096)
        try:
            reply, qname, qtype, rcode = answer(blocks, data)
        except (ValueError, IndexError, struct.error):
            continue
        sock.sendto(reply, client)
        _log(logging, client, "udp", struct.unpack("!H", data[:2])[0], qname, qtype, rcode, len(data))


def serve_tcp(blocks: list[Block], port: int) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(64)
    logging = any(b.log for b in blocks)

    def one(conn: socket.socket, client: tuple) -> None:
        with conn:
            try:
                while head := conn.recv(2):
                    (length,) = struct.unpack("!H", head.ljust(2, b"\0"))
                    data = b""
                    while len(data) < length and (chunk := conn.recv(length - len(data))):
                        data += chunk
                    reply, qname, qtype, rcode = answer(blocks, data)
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
                    _log(logging, client, "tcp", struct.unpack("!H", data[:2])[0], qname, qtype, rcode, len(data))
            except (OSError, ValueError, IndexError, struct.error):
                return

    while True:
        conn, client = server.accept()
        threading.Thread(target=one, args=(conn, client), daemon=True).start()


def main(argv: list[str]) -> int:
    conf = "Corefile"
    if "-conf" in argv and argv.index("-conf") + 1 < len(argv):
        conf = argv[argv.index("-conf") + 1]
    try:
        with open(conf) as f:
            blocks = parse_corefile(f.read())
    except OSError as exc:
        print(f"plugin/hosts: {exc}", file=sys.stderr)
        return 1
    ports = sorted({b.port for b in blocks}) or [53]
    for port in ports:
        print(f".:{port}", flush=True)
    print("CoreDNS-1.7.0\nlinux/amd64, go1.14.4, f59c03d", flush=True)
    for port in ports:
        group = [b for b in blocks if b.port == port]
        threading.Thread(target=serve_tcp, args=(group, port), daemon=True).start()
    udp = [threading.Thread(target=serve_udp, args=([b for b in blocks if b.port == p], p), daemon=True)
           for p in ports]
    for thread in udp:
        thread.start()
    for thread in udp:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
