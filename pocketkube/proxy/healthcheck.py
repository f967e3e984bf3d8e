"""kube-proxy's service health checks (pkg/proxy/healthcheck): for every LoadBalancer Service
with `externalTrafficPolicy: Local`, an HTTP server on its `healthCheckNodePort` that a load
balancer asks whether this node has endpoints of the Service.

Any path gets the same JSON as kube-proxy's:

    {
    	"service": {
    		"namespace": "default",
    		"name": "web"
    	},
    	"localEndpoints": 1,
    	"serviceProxyHealthy": true
    }

with 200 when the node has a ready local endpoint (and the proxy has synced), else 503. One
listener per port on every address of the node (kube-proxy's default `nodePortAddresses`),
made in the node's network namespace; `sync` opens and closes them after each proxy sync.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from pocketkube.core.netns import socket_in
from pocketkube.proxy.backend import netns_path
from pocketkube.proxy.changetracker import PortMap

log = logging.getLogger(__name__)



def health_check_services(services: PortMap, endpoints: PortMap) -> dict[int, tuple[str, int]]:
    """healthCheckNodePort -> ("namespace/name", the node's ready local endpoints: distinct pods)."""
    found: dict[int, tuple[str, int]] = {}
    for spn, svc in services.items():
        if not svc.health_check_port:
            continue
        local = {ep.ip for p in services.ports_of(spn.service) for ep in endpoints.get(p, ())
                 if ep.is_local and ep.ready}
        found[svc.health_check_port] = (spn.service, len(local))
    return found


def response(service: str, local_endpoints: int, healthy: bool) -> bytes:
    namespace, name = service.split("/", 1)
    body = (f'{{\n\t"service": {{\n\t\t"namespace": "{namespace}",\n\t\t"name": "{name}"\n\t}},\n'
            f'\t"localEndpoints": {local_endpoints},\n\t"serviceProxyHealthy": {"true" if healthy else "false"}\n}}')
    ok = local_endpoints > 0 and healthy
    head = (f"HTTP/1.1 {'200 OK' if ok else '503 Service Unavailable'}\r\n"
            "Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body.encode()


class ServiceHealthServer:
    def __init__(self, netns: str | None = None, address: str = "0.0.0.0"):
        self.address = address
        self.netns_path = netns_path(netns or None)
        self.state: dict[int, tuple[str, int]] = {}
        self.healthy = False
        self._servers: dict[int, asyncio.AbstractServer] = {}

    async def sync(self, services: PortMap, endpoints: PortMap, healthy: bool = True) -> None:
        self.state = health_check_services(services, endpoints)
        self.healthy = healthy
        for port in set(self._servers) - set(self.state):
            self._servers.pop(port).close()
        for port in set(self.state) - set(self._servers):
            try:
                sock = socket_in(self.netns_path, socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.address, port))
                sock.setblocking(False)
                self._servers[port] = await asyncio.start_server(
                    lambda r, w, port=port: self._answer(port, r, w), sock=sock)
            except OSError as exc:
                log.error("cannot serve the health check of %s on port %d: %s", self.state[port][0], port, exc)

    async def _answer(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            service, count = self.state.get(port, ("/", 0))
            writer.write(response(service, count, self.healthy))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, OSError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()
