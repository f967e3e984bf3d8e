"""The kubelet's HTTPS probes, against a real TLS server on loopback: they verify neither the
certificate nor its name (a pod's self-signed certificate passes), the status code decides."""

from __future__ import annotations

import asyncio
import ssl

from pocketkube.apiserver import certs
from pocketkube.node.runtime import NetnsSockets, probe_http


async def test_https_probe_skips_verification_and_reads_the_status(tmp_path):
    ca = certs.new_ca("nobody trusts this CA")
    cert, key = certs.serving_cert(*ca, ["some.other.name"], "pod")
    (tmp_path / "tls.crt").write_bytes(certs.pem(cert))
    (tmp_path / "tls.key").write_bytes(certs.pem(key=key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        seen.append(request)
        status = b"200 OK" if request.startswith(b"GET /healthz ") else b"503 Service Unavailable"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    sockets = NetnsSockets(None)
    try:
        ok = await probe_http(sockets, scheme="HTTPS", host="127.0.0.1", port=port, path="/healthz", headers=[],
                              timeout=5)
        failing = await probe_http(sockets, scheme="HTTPS", host="127.0.0.1", port=port, path="/ready", headers=[],
                                   timeout=5)
    finally:
        server.close()
        await server.wait_closed()
    assert (ok.success, ok.message) == (True, "")
    assert (failing.success, failing.message) == (False, "HTTP probe failed with statuscode: 503")
    assert seen[0].startswith(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"User-Agent: kube-probe/1.32\r\n" in seen[0]
