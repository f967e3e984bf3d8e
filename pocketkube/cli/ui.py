"""`pocketkube ui`: the traffic map in a browser, live, on 127.0.0.1 only.

One aiohttp server: `/` the page (explain/map.html), `/events` a server-sent event stream
with the topology (explain/topology.py) once at connection and again after each change the
watches report (cli/explain.py's TopologyWatch; changes within 50 ms share one message), `/topology` the same as one JSON
document, `/explain?namespace=NS&name=NAME[&kind=Service]` a Service's (or Ingress's, Pod's,
Endpoints') findings as `pocketkube explain -o json` gives them, read fresh from the API,
`/trace?from=POD|host&to=ADDR:PORT&proto=tcp` `pocketkube trace`'s text for a packet from a pod
(`namespace/name`) or the host to a Service address (the page offers it for the clicked Service).
`pocketkube map --html FILE` writes the same page with a snapshot inside.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING

from pocketkube.cli.explain import TopologyWatch, gather, run_with_client, trace
from pocketkube.explain import findings, topology

if TYPE_CHECKING:  # aiohttp's server is imported where the map is served: `pocketkube up`, `down`,
    from aiohttp import web  # `explain` ... build their parser from this module and start ~0.2 s sooner

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
        from aiohttp import web

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
        from aiohttp import web

        return web.Response(text=topology.html_page(), content_type="text/html")

    async def _topology_json(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.Response(text=self.current, content_type="application/json")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

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
        from aiohttp import web

        kind = findings.KINDS.get(request.query.get("kind", "svc").lower(), "Service")
        namespace, name = request.query.get("namespace", "default"), request.query.get("name", "")
        cluster = await gather(self.client, namespace, kind, self.cluster_name)
        report = findings.explain(kind, namespace, name, cluster)
        return web.Response(text=findings.render_json(report), content_type="application/json")


    async def _trace(self, request: web.Request) -> web.Response:
        from aiohttp import web

        from pocketkube.proxy.trace import TraceError

        query = request.query
        try:
            text = await trace(self.client, source=query.get("from", "host"), to=query.get("to", ""),
                               protocol=query.get("proto", "tcp"), cluster_name=self.cluster_name)
        except TraceError as exc:
            return web.Response(status=400, text=f"error: {exc}")
        return web.Response(text=text)


async def snapshot_page(client, namespace: str | None, cluster_name: str | None) -> str:
    """The map page with the topology and every Service's findings inside (`map --html`)."""
    cluster = await gather(client, None, "Ingress", cluster_name)
    top = topology.build(cluster.nodes, cluster.pods, cluster.services, cluster.slices, cluster.ingresses,
                         namespace=namespace)
    reports = {f"{s.namespace}/{s.name}": json.loads(findings.render_json(
        findings.explain("Service", s.namespace, s.name, cluster))) for s in top.services}
    return topology.html_page(top, reports)


def run_ui(args: argparse.Namespace) -> int:
    async def serve(client) -> int:
        server = MapServer(client, args.port, args.namespace, args.cluster_name)
        try:
            await server.start()
            print(f"pocketkube ui: the map is at {server.url} (Ctrl-C ends it)", flush=True)
            await asyncio.Event().wait()
        finally:
            await server.stop()
        return 0

    return run_with_client(args, "pocketkube-ui", serve)


UI_EXAMPLES = """examples:
  pocketkube ui                   # open http://127.0.0.1:8001/, click a Service: its findings, a trace from a pod
  pocketkube ui --port 9000 -n default
  pocketkube map --html map.html  # the same page as a file: a snapshot, no server"""


def add_parser(sub) -> None:
    u = sub.add_parser("ui", help="serve the live traffic map (SVG) and explain findings on 127.0.0.1",
                       epilog=UI_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    u.add_argument("--port", type=int, default=8001, help="port on 127.0.0.1 (default %(default)s; 0: any free one)")
    u.add_argument("-n", "--namespace", default=None, help="only this namespace (default: all)")
    u.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube/config")
    u.add_argument("--cluster-name", default=None, help="as for `pocketkube explain`")
    u.set_defaults(func=run_ui)


async def write_snapshot(client, args: argparse.Namespace) -> int:
    """`pocketkube map --html FILE`."""
    page = await snapshot_page(client, args.namespace, None)
    with open(args.html, "w") as f:
        f.write(page)
    print(f"wrote {args.html}", file=sys.stderr)
    return 0
