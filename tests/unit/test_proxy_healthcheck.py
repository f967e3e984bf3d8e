"""kube-proxy's healthCheckNodePort servers (proxy/healthcheck.py): the local endpoint count,
200 / 503, and kube-proxy's JSON."""

from __future__ import annotations

import asyncio
import json
import socket

from pocketkube.proxy.changetracker import ChangeTracker
from pocketkube.proxy.healthcheck import ServiceHealthServer, health_check_services


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tracker_with(port: int, endpoints: list[tuple[str, str, bool]]) -> ChangeTracker:
    tracker = ChangeTracker("node-1")
    tracker.on_service(None, {
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.40", "externalTrafficPolicy": "Local",
                 "healthCheckNodePort": port,
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30100},
                           {"name": "https", "port": 443, "protocol": "TCP", "nodePort": 30101}]}})
    tracker.on_slice({"metadata": {"namespace": "default", "name": "web-a",
                                   "labels": {"kubernetes.io/service-name": "web"}},
                      "addressType": "IPv4",
                      "endpoints": [{"addresses": [ip], "nodeName": node, "conditions": {"ready": ready}}
                                    for ip, node, ready in endpoints],
                      "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                                {"name": "https", "port": 8443, "protocol": "TCP"}]})
    tracker.apply()
    return tracker


def test_counts_ready_local_pods_once_per_service():
    tracker = tracker_with(32000, [("10.244.1.2", "node-1", True), ("10.244.1.3", "node-1", False),
                                   ("10.244.2.2", "node-2", True)])
    assert health_check_services(tracker.services, tracker.endpoints) == {32000: ("default/web", 1)}


async def ask(port: int) -> tuple[int, dict, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = (await reader.read()).decode()
    writer.close()
    head, body = raw.split("\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body), head


async def test_answers_200_then_503():
    port = free_port()
    server = ServiceHealthServer(address="127.0.0.1")
    try:
        tracker = tracker_with(port, [("10.244.1.2", "node-1", True)])
        await server.sync(tracker.services, tracker.endpoints)
        code, body, head = await ask(port)
        assert code == 200 and "Content-Type: application/json" in head
        assert body == {"service": {"namespace": "default", "name": "web"}, "localEndpoints": 1,
                        "serviceProxyHealthy": True}
        tracker = tracker_with(port, [("10.244.2.2", "node-2", True)])
        await server.sync(tracker.services, tracker.endpoints)
        code, body, _ = await ask(port)
        assert code == 503 and body["localEndpoints"] == 0
    finally:
        await server.stop()
