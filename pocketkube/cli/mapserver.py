"""The server behind `pocketkube ui` (cli/ui.py says what it serves): one aiohttp
application on 127.0.0.1. A module of its own, imported when the map is served: every CLI
command builds its parser from cli/ui.py, and aiohttp's server costs ~0.2 s of imports.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from pocketkube.cli.explain import TopologyWatch, gather, trace
from pocketkube.explain import findings, topology

LOCALHOST = "127.0.0.1"


class MapServer:
    """The page, the topology stream and the findings, for one API client."""

    def __init__(self, client, port: int = 0, namespace: str | None = None, cluster_name: str | None = None):
        self.client, self.port, self.cluster_name = client, port, cluster_name
        self.watch = TopologyWatch(client, namespace)
        self.listeners: set[asyncio.Queue] = set()
        self.current = ""
        self._task: asyncio.Task | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}/"

    async def start(self) -> None:
        await self.watch.start()
        self.current = json.dumps(self.watch.topology().to_dict())
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/events", self._events)
        app.router.add_get("/topology", self._topology_json)
        app.router.add_get("/explain", self._explain)
        app.router.add_get("/trace", self._trace)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOCALHOST, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._task = asyncio.create_task(self._publish())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for queue in list(self.listeners):
            queue.put_nowait(None)
        if self._runner:
            await self._runner.cleanup()
        await self.watch.stop()

    async def _publish(self) -> None:
        while True:
            await self.watch.changed()
            latest = json.dumps(self.watch.topology().to_dict())
            if latest == self.current:
                continue
            self.current = latest
            for queue in self.listeners:
                queue.put_nowait(latest)

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=topology.html_page(), content_type="text/html")

    async def _topology_json(self, request: web.Request) -> web.Response:
        return web.Response(text=self.current, content_type="application/json")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue()
        self.listeners.add(queue)
        try:
            message = self.current
            while message is not None:
                await response.write(f"data: {message}\n\n".encode())
                message = await queue.get()
        except ConnectionResetError:
            pass
        finally:
            self.listeners.discard(queue)
        return response

    async def _explain(self, request: web.Request) -> web.Response:
        kind = findings.KINDS.get(request.query.get("kind", "svc").lower(), "Service")
        namespace, name = request.query.get("namespace", "default"), request.query.get("name", "")
        cluster = await gather(self.client, namespace, kind, self.cluster_name)
        report = findings.explain(kind, namespace, name, cluster)
        return web.Response(text=findings.render_json(report), content_type="application/json")

    async def _trace(self, request: web.Request) -> web.Response:
        from pocketkube.proxy.trace import TraceError

        query = request.query
        try:
            text = await trace(self.client, source=query.get("from", "host"), to=query.get("to", ""),
                               protocol=query.get("proto", "tcp"), cluster_name=self.cluster_name)
        except TraceError as exc:
            return web.Response(status=400, text=f"error: {exc}")
        return web.Response(text=text)
