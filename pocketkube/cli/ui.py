"""`pocketkube ui`: the traffic map in a browser, live, on 127.0.0.1 only.

One aiohttp server (cli/mapserver.py): `/` the page (explain/map.html), `/events` a server-sent event stream
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

from pocketkube.cli.explain import gather, run_with_client
from pocketkube.explain import findings, topology


async def snapshot_page(client, namespace: str | None, cluster_name: str | None) -> str:
    """The map page with the topology and every Service's findings inside (`map --html`)."""
    cluster = await gather(client, None, "Ingress", cluster_name)
    top = topology.build(cluster.nodes, cluster.pods, cluster.services, cluster.slices, cluster.ingresses,
                         namespace=namespace)
    reports = {f"{s.namespace}/{s.name}": json.loads(findings.render_json(
        findings.explain("Service", s.namespace, s.name, cluster))) for s in top.services}
    return topology.html_page(top, reports)


def run_ui(args: argparse.Namespace) -> int:
    from pocketkube.cli.mapserver import MapServer  # aiohttp's server: only this command needs it

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
