"""The /coredns that agnhost images carry (programs/coredns.py): the e2e DNS test's Corefile
(hosts plugin, log), its answers as CoreDNS gives them, and the program serving them over UDP
and TCP on a free loopback port of this machine."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time

from pocketkube.node.images import PROGRAMS_DIR
from pocketkube.node.images.programs import coredns

E2E_COREFILE = ". {\n\thosts {\n\t\t1.1.1.1 notexistname.resolv.conf.local\n\t}\n\tlog\n}"


def query(name: str, qtype: int, qid: int = 7) -> bytes:
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + coredns._name(name) + struct.pack("!HH", qtype, 1)


def rcode_and_answers(reply: bytes) -> tuple[int, int]:
    flags, _, answers = struct.unpack("!HHH", reply[2:8])
    return flags & 0xF, answers


def test_the_e2e_corefile():
    (block,) = coredns.parse_corefile(E2E_COREFILE)
    assert block.zones == ["."] and block.port == 53 and block.log
    assert block.hosts == {"notexistname.resolv.conf.local.": ["1.1.1.1"]}


def test_answers_as_coredns_hosts_gives_them():
    blocks = coredns.parse_corefile(E2E_COREFILE)
    reply, *_ = coredns.answer(blocks, query("NotExistName.resolv.conf.local.", coredns.A))
    assert rcode_and_answers(reply) == (coredns.NOERROR, 1) and reply.endswith(bytes([1, 1, 1, 1]))
    assert rcode_and_answers(coredns.answer(blocks, query("notexistname.resolv.conf.local.", coredns.AAAA))[0]) \
        == (coredns.NOERROR, 0)  # the name exists: no data of that type
    assert rcode_and_answers(coredns.answer(blocks, query("1.1.1.1.in-addr.arpa.", coredns.PTR))[0]) \
        == (coredns.NOERROR, 1)
    assert rcode_and_answers(coredns.answer(blocks, query("other.example.", coredns.A))[0]) == (coredns.SERVFAIL, 0)
    zoned = coredns.parse_corefile("example.org:1053 {\n  hosts {\n    10.0.0.1 a.example.org\n    no_reverse\n  }\n}")
    assert zoned[0].port == 1053 and zoned[0].ptr == {}
    assert rcode_and_answers(coredns.answer(zoned, query("a.other.", coredns.A))[0]) == (coredns.REFUSED, 0)


def test_the_program_serves_udp_and_tcp(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    corefile = tmp_path / "Corefile"
    corefile.write_text(E2E_COREFILE.replace(". {", f".:{port} {{", 1))
    proc = subprocess.Popen([sys.executable, "-I", "-u", os.path.join(PROGRAMS_DIR, "coredns.py"), "-conf", str(corefile)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().strip() == f".:{port}"
        deadline = time.monotonic() + 10
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(0.5)
            while True:
                udp.sendto(query("notexistname.resolv.conf.local.", coredns.A, qid=41), ("127.0.0.1", port))
                try:
                    reply = udp.recv(512)
                    break
                except socket.timeout:
                    assert time.monotonic() < deadline, "no UDP answer"
        assert reply[:2] == struct.pack("!H", 41) and reply.endswith(bytes([1, 1, 1, 1]))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as tcp:
            message = query("notexistname.resolv.conf.local.", coredns.A, qid=42)
            tcp.sendall(struct.pack("!H", len(message)) + message)
            (length,) = struct.unpack("!H", tcp.recv(2))
            assert tcp.recv(length).endswith(bytes([1, 1, 1, 1]))
    finally:
        proc.kill()
        proc.wait()
