"""`pocketkube explain-dns NAME [--from POD] [-n NAMESPACE] [--type TYPE]`: what a pod's
resolver does with a name.

It builds the pod's /etc/resolv.conf with the node agent's own function (node.sandbox.
resolv_conf: the search list from the pod's namespace, dnsPolicy and dnsConfig), expands the
name into the queries the resolver asks (dns.explain), and asks each of them of the real
cluster DNS server, the kube-dns ClusterIP, from this host (the host routes the service range
via node 1). The reason beside each answer comes from the same record logic the server runs
(dns.records), over a view of the live API listed once. When the server does not answer from
here, the answers come from that record logic alone, and the output says so. Traffic goes
only to the cluster DNS Service: a pod whose resolver points elsewhere (dnsPolicy Default)
is explained from the record logic too.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
from dataclasses import dataclass

from pocketkube.cli.helptext import examples
from pocketkube.core.cluster import CLUSTER_DNS, CLUSTER_DOMAIN
from pocketkube.dns import explain, wire
from pocketkube.dns.records import Records
from pocketkube.dns.view import ClusterView

DEFAULT_CLUSTER_DNS = CLUSTER_DNS  # the agent's default; kube-system/kube-dns's ClusterIP when it exists
DNS_PORT = 53
QUERY_TIMEOUT = 2.0
QUERY_TYPES = ("A", "AAAA", "CNAME", "SRV", "PTR", "TXT", "NS", "SOA", "MX", "ANY")


@dataclass
class Inputs:
    """What explain-dns reads from the cluster."""

    pod: dict
    pod_label: str
    cluster_dns: str
    view: ClusterView
    api_server: str = ""   # the API server's URL, to tell our cluster from another one on this host


async def gather(client, source: str | None, namespace: str) -> Inputs:
    """The pod (or a stand-in), kube-dns's address and the live view (raises APIError)."""
    from pocketkube.core import errors

    if source:
        pod = await client.get("v1", "pods", source, namespace)
        policy = (pod.get("spec") or {}).get("dnsPolicy") or "ClusterFirst"
        label = f"pod {namespace}/{source} (dnsPolicy {policy})"
    else:
        pod = {"metadata": {"namespace": namespace}, "spec": {"dnsPolicy": "ClusterFirst"}}
        label = f"a pod in namespace {namespace} with dnsPolicy ClusterFirst (no --from)"
    try:
        kube_dns = await client.get("v1", "services", "kube-dns", "kube-system")
        cluster_dns = (kube_dns.get("spec") or {}).get("clusterIP") or DEFAULT_CLUSTER_DNS
    except errors.APIError as exc:
        if exc.code != 404:
            raise
        cluster_dns = DEFAULT_CLUSTER_DNS
    view = ClusterView()
    for api_version, resource, apply in (("v1", "namespaces", view.apply_namespace),
                                         ("v1", "services", view.apply_service),
                                         ("discovery.k8s.io/v1", "endpointslices", view.apply_endpointslice)):
        for item in (await client.list(api_version, resource)).get("items", []):
            apply(item)
    view.mark_synced()
    return Inputs(pod, label, cluster_dns if cluster_dns != "None" else DEFAULT_CLUSTER_DNS, view,
                  getattr(client.transport, "server", ""))


def ask_server(server: str, port: int, name: str, qtype: int,
               timeout: float = QUERY_TIMEOUT) -> tuple[int, list[wire.RR]] | None:
    """(rcode, answer records) from a DNS server over UDP (TCP when the answer is truncated),
    or None when it does not answer in time."""
    ident = random.randrange(0x10000)
    packet = wire.build_query(ident, name, qtype)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.connect((server, port))
            sock.send(packet)
            while True:
                reply = sock.recv(65535)
                if len(reply) >= 12 and int.from_bytes(reply[:2], "big") == ident:
                    break
        if int.from_bytes(reply[2:4], "big") & wire.FLAG_TC:
            with socket.create_connection((server, port), timeout=timeout) as conn:
                conn.sendall(len(packet).to_bytes(2, "big") + packet)
                size = int.from_bytes(_read_exactly(conn, 2), "big")
                reply = _read_exactly(conn, size)
        _, rcode, sections = wire.parse_response(reply)
    except (OSError, wire.FormError):
        return None
    return rcode, sections[0]


def cluster_route(address: str) -> str:
    """The API server URL of the pocketkube cluster whose bridge this host routes `address`
    through, or "" (no route into a cluster: the packet would leave by another way, so it is
    never sent)."""
    import json
    import subprocess

    from pocketkube.cli.up import ClusterRecord
    from pocketkube.core.cluster import link_alias

    try:
        route = json.loads(subprocess.run(["ip", "-j", "route", "get", address], capture_output=True, text=True,
                                          timeout=5).stdout or "[]")
        dev = route[0].get("dev") if route and route[0].get("type", "unicast") == "unicast" else None
        if not dev:
            return ""
        link = json.loads(subprocess.run(["ip", "-j", "link", "show", "dev", dev], capture_output=True, text=True,
                                         timeout=5).stdout or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return ""
    alias = (link[0].get("ifalias") or "") if link else ""
    prefix = link_alias("")
    record = ClusterRecord.load(alias[len(prefix):]) if alias.startswith(prefix) and alias != prefix else None
    return record.url if record else ""


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


def explain_lookup(name: str, qtype: str, inputs: Inputs, node_resolv: str,
                   ask=ask_server, route=cluster_route) -> str:
    """The explanation text (see dns.explain.render)."""
    from pocketkube.node.podfiles import parse_resolv_conf, resolv_conf

    conf = resolv_conf(inputs.pod, inputs.cluster_dns, CLUSTER_DOMAIN, node_resolv)
    servers, searches, options = parse_resolv_conf(conf)
    ndots = explain.ndots_option(options)
    names = explain.candidates(name, searches, ndots)
    qtype_number = wire.TYPES_BY_NAME[qtype]
    records = Records(inputs.view, zone=CLUSTER_DOMAIN)
    nameserver = servers[0] if servers else ""
    use_server = (nameserver == inputs.cluster_dns and bool(inputs.api_server)
                  and route(nameserver) == inputs.api_server)
    sources: list[str] = []  # who answered each query: "server", or "records" once the server fell silent

    def ask_one(query: str) -> explain.Step:
        local = records.answer_name(query, qtype_number)
        if use_server and "records" not in sources:
            got = ask(nameserver, DNS_PORT, query, qtype_number)
            if got is not None:
                sources.append("server")
                rcode, answer = got
                reason = local.reason
                if local.forward:
                    reason += ": the server forwarded it to its upstream resolvers"
                elif local.external_target:
                    reason += f"; the server asked its upstream resolvers for {local.external_target}"
                if rcode != local.rcode and not local.forward:
                    reason += (f" (the live API view gives {wire.RCODE_NAMES.get(local.rcode, local.rcode)}: "
                               "the server's view lags behind the API, or is ahead of it)")
                return explain.Step(query, rcode, answer, reason)
        sources.append("records")
        if local.forward:  # not asked: SERVFAIL is what the server says when no upstream answers
            return explain.Step(query, wire.SERVFAIL, [], f"{local.reason}: the cluster DNS would forward it to "
                                "its upstream resolvers (not asked from here; SERVFAIL when none answers)")
        return explain.Step(query, local.rcode, local.answer, local.reason)

    steps = explain.walk(names, ask_one)
    header = [f"explain-dns {name} ({qtype}) from {inputs.pod_label}", "its /etc/resolv.conf (as the node agent writes it):"]
    header += [f"  {line}" for line in conf.splitlines()]
    if sources and "records" not in sources:
        header.append(f"answers: the cluster DNS server {nameserver}:{DNS_PORT} (Service kube-system/kube-dns), asked "
                      "from this host; reasons: the same record logic over the live API")
    elif "server" in sources:
        header.append(f"answers: the cluster DNS server {nameserver}:{DNS_PORT}, asked from this host, until it fell "
                      f"silent at query {sources.index('records') + 1}; from there on: pocketkube's record logic over "
                      "the live API")
    elif nameserver == inputs.cluster_dns and not use_server:
        header.append(f"answers: this host does not route {nameserver} into this cluster, so nothing was sent; "
                      "shown instead: pocketkube's record logic over the live API")
    elif use_server:
        header.append(f"answers: the cluster DNS server {nameserver} did not answer from this host; shown instead: "
                      "pocketkube's record logic over the live API (what the server answers once it runs)")
    else:
        header.append(f"answers: the pod's resolver asks {nameserver or 'no nameserver'}, not the cluster DNS "
                      f"({inputs.cluster_dns}); shown: what the cluster zone holds, from the record logic over the "
                      "live API (nothing is sent outside the cluster)")
    return explain.render(name, qtype, names, steps, ndots, header)


def run(args: argparse.Namespace) -> int:
    from pocketkube.cli import up
    from pocketkube.core import errors
    from pocketkube.core.client import from_kubeconfig

    name = args.name
    if not name or name == "." or ".." in name:
        print(f"error: {name!r} is not a DNS name", file=sys.stderr)
        return 1

    async def fetch() -> Inputs:
        client = from_kubeconfig(args.kubeconfig or up.user_kubeconfig_path(), field_manager="pocketkube-explain-dns")
        try:
            return await gather(client, args.source, args.namespace)
        finally:
            await client.close()

    try:
        inputs = asyncio.run(fetch())
    except errors.APIError as exc:
        reason = f" ({exc.reason})" if exc.reason else ""
        print(f"Error from server{reason}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot reach the API server: {exc}", file=sys.stderr)
        return 1
    try:
        with open(args.resolv_conf) as f:
            node_resolv = f.read()
    except OSError:
        node_resolv = ""  # as the agent: no node resolv.conf, no inherited search domains
    sys.stdout.write(explain_lookup(name, args.type.upper(), inputs, node_resolv))
    return 0


def add_parser(sub) -> None:
    """Register `explain-dns` on the CLI's subcommands."""
    e = sub.add_parser("explain-dns", help="show what a pod's resolver does with a name: each query, each answer, why",
                       **examples("pocketkube explain-dns my-nginx                  # from a pod of namespace default",
                                  "pocketkube explain-dns my-nginx.shop --from web-0 -n front",
                                  "pocketkube explain-dns _http._tcp.my-nginx --type SRV"))
    e.add_argument("name", metavar="NAME", help="the name a program in the pod looks up (e.g. my-nginx)")
    e.add_argument("--from", dest="source", metavar="POD", default=None,
                   help="the pod whose resolver to follow (default: a pod in the namespace with dnsPolicy ClusterFirst)")
    e.add_argument("-n", "--namespace", default="default", help="the namespace of --from POD (default: default)")
    e.add_argument("--type", default="A", type=str.upper, choices=QUERY_TYPES, help="the record type asked (default: A)")
    e.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube/config")
    e.add_argument("--resolv-conf", default="/etc/resolv.conf",
                   help="the nodes' resolv.conf, whose search domains pods inherit (default: /etc/resolv.conf)")
    e.set_defaults(func=run)
