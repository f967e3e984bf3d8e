"""kube-proxy's /healthz, /livez and /proxyMode (proxy/statusserver.py), served on free
loopback ports, as the e2e spec 'Networking should check kube-proxy urls' reads them."""

from __future__ import annotations

import asyncio
import re
import time

from pocketkube.proxy.statusserver import HEALTH_TIMEOUT, StatusServer, health

GO_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} \+0000 UTC m=\+\d+\.\d{9}"


async def get(port: int, path: str) -> tuple[str, dict, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl\r\n\r\n".encode())
    await writer.drain()
    raw = (await reader.read()).decode()
    writer.close()
    head, body = raw.split("\r\n\r\n", 1)
    status, *lines = head.split("\r\n")
    return status, dict(line.split(": ", 1) for line in lines), body


def test_health_waits_for_the_first_sync_and_late_changes():
    now = 1000.0
    assert not health(None, None, now)
    assert health(990.0, None, now)
    assert health(990.0, 995.0, now)  # queued 5 s ago
    assert health(990.0, 980.0, now)  # queued before the last sync: synced since
    late = now - HEALTH_TIMEOUT - 1
    assert not health(late - 10, late, now)  # queued after the last sync, for longer than the timeout


async def test_healthz_livez_and_proxy_mode():
    state = {"synced": None, "queued": time.time()}
    server = StatusServer("nftables", lambda: (state["synced"], state["queued"]), healthz_address="127.0.0.1",
                          healthz_port=0, metrics_port=0)
    await server.start()
    healthz_port, metrics_port = server.ports
    try:
        status, headers, body = await get(healthz_port, "/healthz")
        assert status == "HTTP/1.1 503 Service Unavailable"  # not synced yet
        state["synced"], state["queued"] = time.time(), None
        status, headers, body = await get(healthz_port, "/healthz")
        assert status == "HTTP/1.1 200 OK"
        assert headers["Content-Type"] == "application/json"
        assert re.fullmatch(f'{{"lastUpdated": "{GO_TIME}","currentTime": "{GO_TIME}", "nodeEligible": true}}', body)
        status, _, body = await get(healthz_port, "/livez")
        assert status == "HTTP/1.1 200 OK" and "nodeEligible" not in body and "lastUpdated" in body
        status, headers, body = await get(metrics_port, "/proxyMode")
        assert (status, body) == ("HTTP/1.1 200 OK", "nftables")
        assert (await get(metrics_port, "/healthz"))[2] == "ok"
        assert (await get(metrics_port, "/metrics"))[0] == "HTTP/1.1 404 Not Found"
    finally:
        await server.stop()
