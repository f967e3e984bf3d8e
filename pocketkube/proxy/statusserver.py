"""kube-proxy's own HTTP endpoints, in the node's network namespace:

- the health server on 0.0.0.0:10256 (`--healthz-bind-address`): `/healthz` and `/livez`
  answer kube-proxy's JSON, 200 while the proxy is healthy, 503 before its first sync or
  when changes have waited longer than the health timeout:

      {"lastUpdated": "2026-12-06 08:00:00.123456789 +0000 UTC m=+12.000000001","currentTime": "...", "nodeEligible": true}

  (`/livez` without nodeEligible; when healthy, lastUpdated is the current time, as
  kube-proxy reports it for compatibility);
- the metrics server on 127.0.0.1:10249 (`--metrics-bind-address`): `/proxyMode` (the mode's
  name, text) and `/healthz` (`ok`). No Prometheus metrics yet: `/metrics` is a 404.

A port that cannot be bound is logged and left unserved; the proxy itself goes on, as
kube-proxy's servers retry in the background and never stop the proxy.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import datetime, timezone
from typing import Callable

from pocketkube.core.netns import socket_in

log = logging.getLogger(__name__)

HEALTHZ_PORT = 10256
METRICS_PORT = 10249
HEALTH_TIMEOUT = 120.0  # seconds a queued change may wait before /healthz says 503 (2 x syncPeriod default)
_STARTED = time.monotonic()


def go_time(at: float) -> str:
    """time.Time.String() of a wall-clock time with a monotonic reading, as %q prints it in Go."""
    wall = datetime.fromtimestamp(at, timezone.utc)
    nanos = int(round(at * 1e9)) % 1_000_000_000
    since = time.monotonic() - _STARTED - (time.time() - at)
    return f"{wall:%Y-%m-%d %H:%M:%S}.{nanos:09d} +0000 UTC m=+{since:.9f}"


def health(last_synced: float | None, oldest_pending: float | None, now: float) -> bool:
    """isHealthy: synced at least once, and no change queued for longer than the timeout."""
    if last_synced is None:
        return False
    return oldest_pending is None or oldest_pending <= last_synced or now - oldest_pending < HEALTH_TIMEOUT


def http_response(status: int, body: str, content_type: str) -> bytes:
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nX-Content-Type-Options: nosniff\r\n"
            f"Date: {datetime.now(timezone.utc):%a, %d %b %Y %H:%M:%S GMT}\r\n"
            f"Content-Length: {len(body.encode())}\r\nConnection: close\r\n\r\n")
    return (head + body).encode()


class StatusServer:
    """The health and metrics servers of one proxy; `state()` gives (last sync, oldest queued
    change) as time.time() values (None when there is none)."""

    def __init__(self, mode: str, state: Callable[[], tuple[float | None, float | None]], *,
                 netns_path: str | None = None, healthz_address: str = "0.0.0.0", healthz_port: int = HEALTHZ_PORT,
                 metrics_address: str = "127.0.0.1", metrics_port: int = METRICS_PORT):
        self.mode = mode
        self.state = state
        self.netns_path = netns_path
        self._binds = [(healthz_address, healthz_port, self._health_answer),
                       (metrics_address, metrics_port, self._metrics_answer)]
        self._servers: list[asyncio.AbstractServer] = []

    async def start(self) -> None:
        for address, port, answer in self._binds:
            try:
                sock = socket_in(self.netns_path, socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
                sock.setblocking(False)
                self._servers.append(await asyncio.start_server(
                    lambda r, w, answer=answer: self._serve(answer, r, w), sock=sock))
            except OSError as exc:
                log.error("cannot serve the proxy's status on %s:%d: %s", address, port, exc)

    @property
    def ports(self) -> list[int]:
        return [s.sockets[0].getsockname()[1] for s in self._servers]

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()

    async def _serve(self, answer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = parts[1].split("?", 1)[0] if len(parts) > 1 else "/"
            writer.write(answer(path))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, OSError):
            pass
        finally:
            writer.close()

    def _health_answer(self, path: str) -> bytes:
        if path not in ("/healthz", "/livez"):
            return http_response(404, "404 page not found\n", "text/plain; charset=utf-8")
        last_synced, oldest_pending = self.state()
        now = time.time()
        healthy = health(last_synced, oldest_pending, now)
        updated = now if healthy else (last_synced or 0.0)
        body = f'{{"lastUpdated": "{go_time(updated) if updated else "0001-01-01 00:00:00 +0000 UTC"}",' \
               f'"currentTime": "{go_time(now)}"'
        body += ', "nodeEligible": true}' if path == "/healthz" else "}"
        return http_response(200 if healthy else 503, body, "application/json")

    def _metrics_answer(self, path: str) -> bytes:
        if path == "/proxyMode":
            return http_response(200, self.mode, "text/plain; charset=utf-8")
        if path in ("/healthz", "/livez"):
            return http_response(200, "ok", "text/plain; charset=utf-8")
        return http_response(404, "404 page not found\n", "text/plain; charset=utf-8")
