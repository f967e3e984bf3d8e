"""`pocketkube explain svc|ingress|pod|endpoints/NAME` and `pocketkube map`: the thin layer that
reads the live cluster for the pure modules in pocketkube/explain.

The objects come from the API with the user's kubeconfig, as kubectl reads them (and as
`trace` and `explain-dns` do). What each pod listens on is asked of its network namespace on
this machine, read-only: the processes of the cluster's node agents (and their descendants:
pod sandboxes and containers) are grouped by network namespace, each namespace's own
addresses are read from /proc/PID/net/fib_trie and its sockets from /proc/PID/net/{tcp,udp}
(and the IPv6 files), then matched to a pod by its IP. A pod of a cluster on another machine,
or a run without root, is simply not asked, and the checks that need it are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys

from pocketkube.core.cluster import DEFAULT_NAME as DEFAULT_CLUSTER
from pocketkube.core.objects import namespace_of
from pocketkube.explain import findings, topology

TCP_LISTEN, UDP_UNCONNECTED = "0A", "07"


# ---- what pods listen on ------------------------------------------------------------------------

def parse_proc_net(text: str, protocol: str) -> list[tuple[str, int]]:
    """(local address, port) of the listening sockets in a /proc/net/{tcp,tcp6,udp,udp6} text
    (TCP: state LISTEN; UDP: unconnected sockets, which receive from anyone)."""
    wanted = TCP_LISTEN if protocol == "TCP" else UDP_UNCONNECTED
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != wanted:
            continue
        if protocol == "UDP" and fields[2].split(":")[0].strip("0"):
            continue  # connected to a peer: not a server socket
        address_hex, _, port_hex = fields[1].partition(":")
        out.append((_hex_address(address_hex), int(port_hex, 16)))
    return out


def _hex_address(text: str) -> str:
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]  # each 32-bit word is in host (little) order
    address = ipaddress.IPv6Address(b"".join(words))
    return f"::ffff:{address.ipv4_mapped}" if address.ipv4_mapped else str(address)


def parse_fib_trie(text: str) -> set[str]:
    """The local IPv4 addresses (`/32 host LOCAL`) in a /proc/net/fib_trie text."""
    found, last = set(), ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("|--", "+--")):
            last = stripped[3:].strip().split("/")[0]
        elif stripped == "/32 host LOCAL" and last:
            found.add(last)
    return found


def _loopback(address: str) -> bool:
    return address.removeprefix("::ffff:").startswith("127.") or address == "::1"


def sockets_by_address(sockets: list[tuple[str, str, int]], addresses: set[str]) -> tuple[set, set]:
    """(ports reachable on `addresses`, ports bound to loopback only) from (protocol, bound address,
    port) triples of one network namespace."""
    reachable, loopback = set(), set()
    for protocol, bound, port in sockets:
        if bound in ("0.0.0.0", "::") or bound in addresses or bound.removeprefix("::ffff:") in addresses:
            reachable.add((protocol, port))
        elif _loopback(bound):
            loopback.add((protocol, port))
    return reachable, loopback - reachable


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _descendants(roots: list[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat:
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    seen, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.append(pid)
            todo.extend(children.get(pid, ()))
    return seen


def listening_by_ip(agent_pids: list[int]) -> dict[str, tuple[set, set]]:
    """Pod (or node) IP -> (ports it listens on, ports bound to loopback only), for every network
    namespace a process of these agents (or of their descendants) is in."""
    by_namespace: dict[tuple[int, int], int] = {}
    for pid in _descendants(agent_pids):
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        by_namespace.setdefault((st.st_dev, st.st_ino), pid)
    out: dict[str, tuple[set, set]] = {}
    for pid in by_namespace.values():
        addresses = parse_fib_trie(_read(f"/proc/{pid}/net/fib_trie")) - {"127.0.0.1"}
        sockets = [(protocol.upper(), address, port) for protocol in ("tcp", "udp") for suffix in ("", "6")
                   for address, port in parse_proc_net(_read(f"/proc/{pid}/net/{protocol}{suffix}"), protocol.upper())]
        for address in addresses:
            out[address] = sockets_by_address(sockets, addresses)
    return out


def local_record(server: str, cluster_name: str | None):
    """The record of the cluster on this machine named `cluster_name`, or else the one whose API
    server is at `server` (the kubeconfig's): its ranges, nodes and processes. None if neither."""
    from pocketkube.cli import up

    names = [cluster_name] if cluster_name else up.known_clusters()
    for name in names:
        record = up.ClusterRecord.load(name)
        if record and (cluster_name or record.url == server.rstrip("/")):
            return record
    return None


def _cluster_agents(server: str, cluster_name: str | None) -> list[int]:
    """The PIDs of the node agents of the cluster at `server` (or named `cluster_name`) on this machine."""
    from pocketkube.cli import up

    record = local_record(server, cluster_name)
    return [pid for n, pid in up.cluster_processes(record).items() if n.startswith("agent-")] if record else []


async def trace(client, *, source: str, to: str, protocol: str = "tcp", namespace: str = "default",
                cluster_name: str | None = None, mode: str | None = None) -> str:
    """`pocketkube trace`'s text for a packet from `source` to `to` ("ADDR:PORT"), over the ranges
    of the local cluster the client talks to (its record: host address, pod and service ranges),
    and, as root, the load-balancer addresses its nodes announce."""
    from pocketkube.node import network
    from pocketkube.proxy.trace import trace_in_cluster

    record = local_record(getattr(client.transport, "server", ""), cluster_name)
    net = record.network if record else network.ClusterNetwork(cluster_name or DEFAULT_CLUSTER)
    # which node holds each load-balancer address, read from the nodes themselves (needs root)
    announced = network.announced_addresses(net) if record and os.geteuid() == 0 else {}
    return await trace_in_cluster(client, source=source, to=to, protocol=protocol, namespace=namespace,
                                  cluster_name=net.name, mode=mode, announced=announced, host_address=net.host_ip,
                                  cluster_cidr=str(net.pod_cidr), service_cidr=str(net.service_cidr))


# ---- reading the API ----------------------------------------------------------------------------

async def gather(client, namespace: str | None, kind: str, cluster_name: str | None = None) -> findings.Cluster:
    """The objects explain reads about `kind` in `namespace` (None: every namespace) and, as root
    on the cluster's own machine, what the pods listen on."""
    from pocketkube.core import errors

    async def items(api_version, resource, ns=None):
        try:
            return (await client.list(api_version, resource, ns)).get("items", [])
        except errors.APIError as exc:
            if exc.code in (403, 404):
                return []
            raise

    c = findings.Cluster(
        services=await items("v1", "services"), pods=await items("v1", "pods"),
        endpoints=await items("v1", "endpoints", namespace or None),
        slices=await items("discovery.k8s.io/v1", "endpointslices"), nodes=await items("v1", "nodes"),
        events=await items("v1", "events", namespace or None))
    if kind == "Ingress":
        c.ingresses = await items("networking.k8s.io/v1", "ingresses")
        c.ingress_classes = await items("networking.k8s.io/v1", "ingressclasses")
        wanted = {(namespace_of(i), t.get("secretName")) for i in c.ingresses
                  for t in (i.get("spec") or {}).get("tls") or [] if t.get("secretName")}
        for ns, secret in sorted(wanted):
            try:
                c.secrets.append(await client.get("v1", "secrets", secret, ns))
            except errors.APIError as exc:
                if exc.code not in (403, 404):
                    raise
    if os.geteuid() == 0:
        agents = _cluster_agents(getattr(client.transport, "server", ""), cluster_name)
        by_ip = listening_by_ip(agents) if agents else {}
        for pod in c.pods:
            ip = (pod.get("status") or {}).get("podIP")
            if ip in by_ip and (pod.get("status") or {}).get("phase") == "Running":
                c.listening[findings.object_key(pod)], c.loopback[findings.object_key(pod)] = by_ip[ip]
    return c


def run_with_client(args: argparse.Namespace, field_manager: str, work) -> int:
    """Run `await work(client)` with a client from the user's kubeconfig (closed after) and return
    its exit code: 0 on Ctrl-C, 2 (and the error) when the cluster cannot be read."""
    from pocketkube.cli import up
    from pocketkube.core import errors
    from pocketkube.core.client import from_kubeconfig

    async def main() -> int:
        client = from_kubeconfig(args.kubeconfig or up.user_kubeconfig_path(), field_manager=field_manager)
        try:
            return await work(client)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 0
    except errors.APIError as exc:
        reason = f" ({exc.reason})" if exc.reason else ""
        print(f"Error from server{reason}: {exc.message}", file=sys.stderr)
    except OSError as exc:
        print(f"error: cannot read the cluster: {exc}", file=sys.stderr)
    return 2


def run_explain(args: argparse.Namespace) -> int:
    try:
        kind, name = findings.parse_target(args.target)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def work(client) -> int:
        cluster = await gather(client, args.namespace, kind, args.cluster_name)
        report = findings.explain(kind, args.namespace, name, cluster)
        sys.stdout.write(findings.render_json(report) if args.output == "json" else findings.render_text(report))
        return 0 if report.healthy else 1

    return run_with_client(args, "pocketkube-explain", work)


# ---- the map --------------------------------------------------------------------------------------

MAP_RESOURCES = (("v1", "nodes"), ("v1", "pods"), ("v1", "services"), ("discovery.k8s.io/v1", "endpointslices"),
                 ("networking.k8s.io/v1", "ingresses"))


class TopologyWatch:
    """The map's objects kept current by watches (one informer per resource): `topology()` draws
    them, `changed()` returns after the next change (a burst within `coalesce` seconds is one)."""

    def __init__(self, client, namespace: str | None = None, coalesce: float = 0.05):
        from pocketkube.core.informer import InformerFactory

        self.namespace, self.coalesce = namespace, coalesce
        self._factory = InformerFactory(client)
        self._event = asyncio.Event()
        self._informers = []
        for api_version, resource in MAP_RESOURCES:
            informer = self._factory.informer(api_version, resource)
            informer.add_handlers(self._touch, self._touch, self._touch)
            self._informers.append(informer)

    def _touch(self, *_) -> None:
        self._event.set()

    async def start(self) -> None:
        await self._factory.start()
        await self._factory.wait_synced()

    async def stop(self) -> None:
        await self._factory.stop()

    def topology(self) -> topology.Topology:
        return topology.build(*(informer.list() for informer in self._informers), namespace=self.namespace)

    async def changed(self) -> None:
        await self._event.wait()
        await asyncio.sleep(self.coalesce)
        self._event.clear()


def run_map(args: argparse.Namespace) -> int:
    from pocketkube.core import errors

    if args.html:
        from pocketkube.cli import ui

        return run_with_client(args, "pocketkube-map", lambda client: ui.write_snapshot(client, args))
    width = args.width or min(os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else 100, 100)

    def draw(model: topology.Topology) -> None:
        text = topology.render_text(model, width)
        if args.watch and sys.stdout.isatty():
            sys.stdout.write("\x1b[H\x1b[2J")
        elif args.watch:
            sys.stdout.write("\x0c\n")  # a form feed between drawings when the output is not a terminal
        sys.stdout.write(text)
        sys.stdout.flush()

    async def work(client) -> int:
        if args.watch:
            watch = TopologyWatch(client, args.namespace, coalesce=0.2)
            await watch.start()
            try:
                while True:
                    draw(watch.topology())
                    await watch.changed()
            finally:
                await watch.stop()
        lists = []
        for api_version, resource in MAP_RESOURCES:
            try:
                lists.append((await client.list(api_version, resource)).get("items", []))
            except errors.APIError as exc:
                if exc.code != 404:
                    raise
                lists.append([])
        draw(topology.build(*lists, namespace=args.namespace))
        return 0

    return run_with_client(args, "pocketkube-map", work)


EXPLAIN_EXAMPLES = """examples:
  pocketkube explain svc/web                 # why does Service web (namespace default) not answer?
  pocketkube explain svc/web -n shop -o json # the same findings for a script
  pocketkube explain ingress/site            # class, controller, each rule's backend, TLS secrets
  pocketkube explain pod/web-7d9f-x2k4q      # readiness, ports it listens on, Services that pick it
  pocketkube explain endpoints/web           # Endpoints against its EndpointSlices

exit status: 0 healthy, 1 something is wrong (the findings say what), 2 the cluster could not be read"""

MAP_EXAMPLES = """examples:
  pocketkube map                  # nodes, pods, Services, their endpoints and Ingress rules, once
  pocketkube map -n default       # one namespace's pods, Services and Ingresses
  pocketkube map --watch          # redraw on every change (Ctrl-C ends it)
  pocketkube map --html map.html  # a web page of the same (`pocketkube ui` serves it live)"""


def add_parsers(sub) -> None:
    """Register `explain` and `map` on the CLI's subcommands."""
    e = sub.add_parser("explain", help="say what is wrong with a Service, Ingress, Pod or Endpoints, and what to do",
                       epilog=EXPLAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("target", metavar="svc/NAME|ingress/NAME|pod/NAME|endpoints/NAME")
    e.add_argument("-n", "--namespace", default="default")
    e.add_argument("-o", "--output", choices=("text", "json"), default="text")
    e.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube/config")
    e.add_argument("--cluster-name", default=None,
                   help="the local cluster whose pods to ask what they listen on (default: the one the "
                        "kubeconfig's server belongs to)")
    e.set_defaults(func=run_explain)
    m = sub.add_parser("map", help="draw the cluster's traffic topology: nodes, pods, Services, endpoints, Ingresses",
                       epilog=MAP_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("-n", "--namespace", default=None, help="only this namespace (default: every namespace but "
                   "kube-system's and ingress-nginx's system pods are shown too)")
    m.add_argument("--watch", action="store_true", help="redraw on every change")
    m.add_argument("--html", metavar="FILE", default=None,
                   help="write the map as a web page (SVG; click a Service for its findings) instead")
    m.add_argument("--width", type=int, default=None, help="columns (default: the terminal's, at most 100)")
    m.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube/config")
    m.set_defaults(func=run_map)
