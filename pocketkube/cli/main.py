"""`pocketkube` entry point: parses the command line and runs the asked-for command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys


def _server(args: argparse.Namespace) -> int:
    from pocketkube.apiserver.authn import controller_identity
    from pocketkube.apiserver.local import LocalTransport
    from pocketkube.apiserver.server import APIServer
    from pocketkube.cli.supervisor import Supervisor
    from pocketkube.controllers.base import Settings
    from pocketkube.controllers.manager import ControllerManager
    from pocketkube.core.client import Client
    from pocketkube.core.lbpool import Pool, PoolError
    from pocketkube.store.base import StoreError

    try:
        Pool.parse(args.lb_range)
    except PoolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        sup = Supervisor()
        server = await sup.start(APIServer(args.data_dir, port=args.port, datastore=args.datastore,
                                           bind=args.bind, extra_addresses=tuple(args.extra_bind),
                                           authorization_mode=args.authorization_mode,
                                           etcd_servers=tuple(args.etcd_servers),
                                           etcd_cafile=args.etcd_cafile, etcd_certfile=args.etcd_certfile,
                                           etcd_keyfile=args.etcd_keyfile, advertise_address=args.advertise_address,
                                           service_cidr=args.service_cluster_ip_range,
                                           advertise_port=args.advertise_port))
        if not args.no_controllers:
            def client_for(username: str) -> Client:
                return Client(LocalTransport(server.handlers, controller_identity(username)),
                              field_manager="kube-controller-manager")

            with open(server.pki.ca_cert, "rb") as f:
                root_ca = f.read()
            with open(server.pki.ca_key, "rb") as f:
                ca_key = f.read()
            settings = Settings(apiserver_address=args.advertise_address,
                                apiserver_port=args.advertise_port or server.port,
                                root_ca=root_ca, ca_key=ca_key, lb_range=args.lb_range,
                                extra={"node_monitor_period": args.node_monitor_period,
                                       "node_monitor_grace_period": args.node_monitor_grace_period})
            if not args.leader_elect:
                await sup.start(ControllerManager(client_for("system:kube-controller-manager"), settings=settings,
                                                  client_for=client_for))
            else:  # several servers over one etcd: only the Lease holders' controllers and scheduler act
                from pocketkube.controllers.manager import default_controllers
                from pocketkube.controllers.scheduler import Scheduler
                from pocketkube.core.leaderelection import LeaderElected, default_identity

                def manager(classes: list) -> ControllerManager:
                    return ControllerManager(client_for("system:kube-controller-manager"), classes, settings=settings,
                                             client_for=client_for)

                others = [c for c in default_controllers() if c is not Scheduler]
                identity = default_identity()
                with open(os.path.join(args.data_dir, f"leader-identity.{server.port}"), "w") as f:
                    f.write(identity + "\n")  # for `pocketkube status`: which server holds each Lease
                await sup.start(LeaderElected(client_for("system:kube-controller-manager"), "kube-controller-manager",
                                              lambda: manager(others), identity=identity))
                await sup.start(LeaderElected(client_for("system:kube-scheduler"), "kube-scheduler",
                                              lambda: manager([Scheduler]), identity=identity))
        print(f"pocketkube API server listening on {server.url}", flush=True)
        print(f"  export KUBECONFIG={server.kubeconfig_path}", flush=True)
        await _until_signalled()
        await sup.stop()

    try:
        _run(run())
    except StoreError as exc:  # e.g. no etcd answers at --etcd-servers: say so, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _agent(args: argparse.Namespace) -> int:
    from pocketkube.cli.supervisor import Supervisor
    from pocketkube.core.client import from_kubeconfig, wait_for_api
    from pocketkube.node.agent import NodeAgent

    async def run() -> None:
        client = from_kubeconfig(args.kubeconfig, field_manager="kubelet")
        await wait_for_api(client, timeout=30)
        sup = Supervisor()
        await sup.start(NodeAgent(client, node_name=args.node_name, node_ip=args.node_ip, pod_cidr=args.pod_cidr,
                                  state_dir=args.state_dir, netns=args.netns, port=args.port,
                                  cluster_dns=args.cluster_dns,
                                  stream_token=_stream_token(args.stream_token_file, client.transport.token)))
        print(f"pocketkube agent for node {args.node_name} ready on {args.node_ip}:{args.port}", flush=True)
        await _until_signalled()
        await sup.stop()
        await client.close()

    _run(run())
    return 0


def _stream_token(path: str | None, default: str) -> str:
    if not path:
        return default
    with open(path) as f:
        return f.read().strip()


def _serve_component(kubeconfig: str | None, field_manager: str, make, banner, api_timeout: float = 30) -> int:
    """Run one component in this process until SIGTERM: its client (the pod's service account
    when `kubeconfig` is empty or `in-cluster`, else the file), `make(client)` started under a
    Supervisor, then `banner(component)` printed. 1 when the client cannot be made."""
    from pocketkube.cli.supervisor import Supervisor
    from pocketkube.core.client import from_in_cluster, from_kubeconfig, wait_for_api

    failed = []

    async def run() -> None:
        try:
            client = (from_in_cluster(field_manager=field_manager) if kubeconfig in (None, "", "in-cluster")
                      else from_kubeconfig(kubeconfig, field_manager=field_manager))
        except (RuntimeError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed.append(exc)
            return
        await wait_for_api(client, timeout=api_timeout)
        sup = Supervisor()
        component = await sup.start(make(client))
        print(banner(component), flush=True)
        await _until_signalled()
        await sup.stop()
        await client.close()

    _run(run())
    return 1 if failed else 0


def _dns(args: argparse.Namespace) -> int:
    from pocketkube.dns.server import ClusterDNS

    upstreams = None
    if args.upstream:
        upstreams = [(u.rsplit(":", 1)[0], int(u.rsplit(":", 1)[1])) if u.count(":") == 1 else (u, 53)
                     for u in args.upstream]
    return _serve_component(
        args.kubeconfig, "coredns",
        lambda client: ClusterDNS(client, address=args.listen, port=args.port, zone=args.zone, ttl=args.ttl,
                                  pod_mode=args.pods, upstreams=upstreams, resolv_conf=args.resolv_conf,
                                  metrics_port=args.metrics_port, health_port=args.health_port,
                                  ready_port=args.ready_port),
        lambda dns: f"pocketkube dns serving {args.zone} on {args.listen}:{dns.port}")


def _proxy(args: argparse.Namespace) -> int:
    from pocketkube.proxy.proxier import Proxier

    return _serve_component(
        args.kubeconfig, "kube-proxy",
        lambda client: Proxier(client, node_name=args.node_name, cluster_name=args.cluster_name, mode=args.mode,
                               netns=args.netns, node_ip=args.node_ip, cluster_cidr=args.cluster_cidr,
                               service_cidr=args.service_cidr),
        lambda _: f"pocketkube proxy ({args.mode}) for node {args.node_name} started")


def _overlay(args: argparse.Namespace) -> int:
    from pocketkube.node.overlay import Overlay

    local, first_ip = {}, ""
    for item in args.node:
        name, netns, pod_cidr, ip = item.split(",")
        local[name] = (netns, pod_cidr)
        first_ip = first_ip or ip
    return _serve_component(
        args.kubeconfig, "pocketkube-overlay",
        lambda client: Overlay(client, cluster=args.cluster_name, public_ip=args.public_ip, host_ip=args.host_ip,
                               local=local, first_node_ip=first_ip),
        lambda o: f"pocketkube overlay: VTEP {o.vtep_ip} on {args.public_ip}, MTU {o.mtu}")


def _ingress_controller(args: argparse.Namespace) -> int:
    from pocketkube.ingress.controller import IngressController, Options, options_from_env

    options = options_from_env(Options(
        controller_class=args.controller_class, ingress_class=args.ingress_class,
        watch_without_class=args.watch_ingress_without_class, configmap=args.configmap,
        election_id=args.election_id, publish_service=args.publish_service,
        publish_status_address=[a for a in args.publish_status_address.split(",") if a],
        update_status=args.update_status, update_status_on_shutdown=args.update_status_on_shutdown,
        work_dir=args.work_dir, http_port=args.http_port, https_port=args.https_port,
        healthz_port=args.healthz_port, default_server_port=args.default_server_port,
        worker_processes=args.worker_processes, validating_webhook=args.validating_webhook or "",
        webhook_certificate=args.validating_webhook_certificate or "",
        webhook_key=args.validating_webhook_key or ""))
    return _serve_component(
        args.kubeconfig, "nginx-ingress-controller", lambda client: IngressController(client, options),
        lambda _: (f"pocketkube ingress controller ({options.controller_class}, class {options.ingress_class}) "
                   f"serving HTTP on :{options.http_port} and HTTPS on :{options.https_port}"), api_timeout=60)


def _go_bool(text: str) -> bool:
    """A Go flag's boolean (`--x`, `--x=true`, `--x=false`)."""
    lowered = text.strip().lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f'invalid boolean value "{text}"')


def _go_duration(text: str) -> float:
    """A Go flag's duration (`40s`, `1m30s`), in seconds; it must be positive."""
    from pocketkube.node.images.programs.agnhost import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f'duration must be positive: "{text}"')
    return seconds


def _add_ingress_parser(sub) -> None:
    """The ingress-nginx controller's flags (those its manifests and charts pass)."""
    g = sub.add_parser("ingress-controller", help="run the Ingress controller (what the ingress-nginx image runs)")
    g.add_argument("--kubeconfig", default="", help="default: the pod's service account (in-cluster)")
    g.add_argument("--controller-class", default="k8s.io/ingress-nginx")
    g.add_argument("--ingress-class", default="nginx", help="the legacy kubernetes.io/ingress.class value")
    g.add_argument("--watch-ingress-without-class", type=_go_bool, nargs="?", const=True, default=False)
    g.add_argument("--configmap", default="", metavar="NAMESPACE/NAME")
    g.add_argument("--election-id", default="ingress-controller-leader")
    g.add_argument("--publish-service", default="", metavar="NAMESPACE/NAME")
    g.add_argument("--publish-status-address", default="", metavar="ADDRESS[,ADDRESS]")
    g.add_argument("--update-status", type=_go_bool, nargs="?", const=True, default=True)
    g.add_argument("--update-status-on-shutdown", type=_go_bool, nargs="?", const=True, default=True)
    g.add_argument("--http-port", type=int, default=80)
    g.add_argument("--https-port", type=int, default=443)
    g.add_argument("--healthz-port", type=int, default=10254)
    g.add_argument("--default-server-port", type=int, default=8181,
                   help="the default backend (404), on 127.0.0.1; the next port answers 503")
    g.add_argument("--work-dir", default="/etc/nginx", help="where nginx.conf, certificates and temp files go")
    g.add_argument("--worker-processes", default="auto", help="nginx's worker_processes")
    g.add_argument("--validating-webhook", default="", metavar="[HOST]:PORT",
                   help="serve the admission webhook (HTTPS) there")
    g.add_argument("--validating-webhook-certificate", default="", metavar="PATH")
    g.add_argument("--validating-webhook-key", default="", metavar="PATH")
    # accepted as the real controller accepts them; this controller does not act on them
    for name in ("--default-ssl-certificate", "--default-backend-service", "--watch-namespace",
                 "--tcp-services-configmap", "--udp-services-configmap", "--v", "--metrics-per-host",
                 "--enable-metrics", "--enable-ssl-passthrough", "--ingress-class-by-name",
                 "--report-node-internal-ip-address", "--enable-annotation-validation", "--enable-topology-aware-routing"):
        g.add_argument(name, default=None, nargs="?", const="true")
    g.set_defaults(func=_ingress_controller)


def _trace(args: argparse.Namespace) -> int:
    from pocketkube.cli import explain as explain_cli, up
    from pocketkube.core.client import from_kubeconfig
    from pocketkube.ingress import explain
    from pocketkube.proxy.trace import TraceError

    http = args.to.startswith(("http://", "https://")) or args.host or args.path

    async def run() -> int:
        client = from_kubeconfig(args.kubeconfig or up.user_kubeconfig_path(), field_manager="pocketkube-trace")
        try:
            to, http_lines = args.to, []
            if http:
                request = explain.parse_url(args.to, args.host, args.path)
                if any(":" not in h for h in args.header):
                    raise explain.ExplainError("--header must be NAME:VALUE")
                headers = {k.strip(): v.strip() for k, v in (h.split(":", 1) for h in args.header)}
                address, port, http_lines = await explain.explain(client, request, headers)
                to = f"{address}:{port}"
            print(await explain_cli.trace(client, source=args.source, to=to, protocol=args.proto,
                                          namespace=args.namespace, cluster_name=args.cluster_name,
                                          mode=args.proxy_mode))
            if http_lines:
                print("\n".join(http_lines))
            return 0
        except (TraceError, explain.ExplainError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            await client.close()

    return asyncio.run(run())


async def _until_signalled() -> None:
    """Return on SIGINT or SIGTERM (a component's process then stops its supervisor)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _tune_malloc() -> None:
    """Keep glibc from raising its mmap threshold after a large free (its default), which
    makes every later multi-megabyte response (a list of 10k objects) land on the heap and
    stay there as fragmentation: RSS grew by ~19 MB per 10k-object list without this."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 256 * 1024)
        libc.mallopt(m_trim_threshold, 1024 * 1024)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def _run(coro) -> None:
    _tune_malloc()
    if os.environ.get("POCKETKUBE_LOOP") == "asyncio":
        asyncio.run(coro)
        return
    import uvloop  # a dependency: every process runs on it unless POCKETKUBE_LOOP=asyncio

    uvloop.run(coro)


def build_parser() -> argparse.ArgumentParser:
    from pocketkube.cli.helptext import examples
    from pocketkube.core import cluster as names
    from pocketkube.core.lbpool import DEFAULT_LB_RANGE

    parser = argparse.ArgumentParser(
        prog="pocketkube", description="Kubernetes Service networking, for real, on one Linux machine: "
        "a cluster that the real kubectl drives, and tools that say where a Service's traffic goes.",
        **examples("pocketkube up                       # start a cluster (as root); kubectl then works",
                   "pocketkube explain svc/web          # why does Service web not answer?",
                   "pocketkube trace --from web-0 --to 10.96.0.10:53 --proto udp",
                   "pocketkube down                     # stop it and remove everything it made"))
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("server", help="run the API server and the controllers (the scheduler among them)", **examples(
        "pocketkube server --data-dir /tmp/pk          # then: KUBECONFIG=/tmp/pk/kubeconfig kubectl get ns",
        "pocketkube server --data-dir /tmp/pk --datastore etcd --etcd-servers https://127.0.0.1:2379 \\",
        "    --etcd-cafile ca.crt --etcd-certfile client.crt --etcd-keyfile client.key",
        "pocketkube server --data-dir /tmp/pk --port 6444 --datastore etcd --etcd-servers URL --leader-elect \\",
        "    ...                                     # a second server over the same etcd and data dir"))
    p.add_argument("--data-dir", required=True, help="where the store, certificates and kubeconfig live")
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    p.add_argument("--extra-bind", action="append", default=[], metavar="ADDRESS",
                   help="another address to listen on (repeatable; `up` adds the node bridge's)")
    p.add_argument("--datastore", choices=("sqlite", "memory", "etcd"), default="sqlite",
                   help="sqlite (default): <data-dir>/state.db; memory: nothing kept; etcd: the etcd cluster "
                        "at --etcd-servers, under kube-apiserver's /registry key layout")
    p.add_argument("--etcd-servers", type=lambda v: [u for u in v.split(",") if u], default=[], metavar="URL[,URL...]",
                   help="etcd client URLs (with --datastore etcd): http(s)://HOST:PORT, or unix://PATH for a "
                        "member's unix socket listener (`up` gives the server its members' sockets)")
    p.add_argument("--etcd-cafile", help="CA bundle that etcd's serving certificate is checked against")
    p.add_argument("--etcd-certfile", help="client certificate presented to etcd")
    p.add_argument("--etcd-keyfile", help="the client certificate's key")
    p.add_argument("--no-controllers", action="store_true", help="serve the API only")
    p.add_argument("--leader-elect", action="store_true",
                   help="run the controllers and the scheduler only while holding their Lease "
                        "(kube-system/kube-controller-manager, kube-system/kube-scheduler): for several servers "
                        "over one etcd")
    p.add_argument("--authorization-mode", choices=("RBAC", "AlwaysAllow"), default="RBAC",
                   help="RBAC (default): requests are authorized by Roles and bindings; AlwaysAllow: every "
                        "authenticated request may do anything")
    p.add_argument("--advertise-address", default="127.0.0.1",
                   help="the address the `kubernetes` Service's endpoints point at; the serving certificate names it")
    p.add_argument("--advertise-port", type=int, default=0,
                   help="the port the `kubernetes` Service and its endpoints name (default --port; `up --api-servers N` "
                        "gives apiserver-lb's, in front of the servers)")
    p.add_argument("--lb-range", default=DEFAULT_LB_RANGE, metavar="FIRST-LAST|CIDR",
                   help="addresses for LoadBalancer Services (default %(default)s; `up --lb-range` sets it)")
    p.add_argument("--node-monitor-grace-period", type=_go_duration, default=40.0, metavar="DURATION",
                   help="how long a node may go without renewing its Lease or posting its status before it "
                        "is marked NotReady (Unknown) and tainted (default 40s)")
    p.add_argument("--node-monitor-period", type=_go_duration, default=5.0, metavar="DURATION",
                   help="how often the node lifecycle controller checks the nodes' heartbeats (default 5s)")
    p.add_argument("--service-cluster-ip-range", default=names.SERVICE_CIDR, metavar="CIDR",
                   help="the Service network ClusterIPs come from (default %(default)s; `up` passes the cluster's)")
    p.set_defaults(func=_server)
    from pocketkube.cli import up

    up.add_parsers(sub)
    from pocketkube.cli import apilb

    apilb.add_parsers(sub)
    from pocketkube.cli import join as join_cli

    join_cli.add_parsers(sub)
    from pocketkube.cli import addons as addons_cli

    addons_cli.add_parser(sub)
    from pocketkube.cli import explain_dns

    explain_dns.add_parser(sub)
    from pocketkube.cli import explain as explain_cli

    explain_cli.add_parsers(sub)
    from pocketkube.cli import ui

    ui.add_parser(sub)
    a = sub.add_parser("agent", help="run a node agent (pocketkube's kubelet); `up` starts these")
    a.add_argument("--kubeconfig", required=True, help="how to reach the API server")
    a.add_argument("--node-name", required=True)
    a.add_argument("--node-ip", required=True, help="this node's address (InternalIP)")
    a.add_argument("--pod-cidr", required=True, help="this node's pod range, e.g. 10.244.1.0/24")
    a.add_argument("--cluster-dns", default=names.CLUSTER_DNS, metavar="ADDRESS",
                   help="the nameserver in pods' resolv.conf (default %(default)s; `up` passes the service range's .10)")
    a.add_argument("--state-dir", required=True, help="where pod sandboxes and logs are kept")
    a.add_argument("--netns", default=None, help="the node's network namespace (default: the current one)")
    a.add_argument("--port", type=int, default=10250, help="exec/attach/logs/port-forward port")
    a.add_argument("--stream-token-file", default=None,
                   help="the token the API server presents for exec/attach/logs/port-forward "
                        "(default: the kubeconfig's token)")
    a.set_defaults(func=_agent)
    o = sub.add_parser("overlay", help="run a machine's VXLAN overlay (flannel's vxlan backend); `up "
                                       "--advertise-address` and `join` start it")
    o.add_argument("--kubeconfig", required=True, help="how to reach the API server (a node's credentials)")
    o.add_argument("--cluster-name", required=True, help="names the VTEP pkx-<name> (this machine's cluster name)")
    o.add_argument("--public-ip", required=True, help="this machine's address the other machines reach")
    o.add_argument("--host-ip", required=True, help="this machine's address on its node bridge")
    o.add_argument("--node", action="append", default=[], required=True, metavar="NAME,NETNS,POD_CIDR,IP",
                   help="a node on this machine (repeatable)")
    o.set_defaults(func=_overlay)
    x = sub.add_parser("proxy", help="run a node's service proxy (pocketkube's kube-proxy)")
    x.add_argument("--kubeconfig", default=None,
                   help="how to reach the API server; `in-cluster` (the default): the pod's service account")
    x.add_argument("--node-name", required=True)
    x.add_argument("--mode", choices=("nftables", "userspace"), default="nftables")
    x.add_argument("--cluster-name", default=names.DEFAULT_NAME, help="names the nftables table pk-<name>-proxy")
    x.add_argument("--netns", default=None, help="the node's network namespace (default: the current one)")
    x.add_argument("--node-ip", default=None,
                   help="source address of the node's own Service traffic (default: the Node's InternalIP)")
    x.add_argument("--cluster-cidr", default=names.CLUSTER_CIDR, help="the pod range (not masqueraded)")
    x.add_argument("--service-cidr", default=names.SERVICE_CIDR)
    x.set_defaults(func=_proxy)
    t = sub.add_parser("trace", help="follow a packet through the Service rules a node's proxy programs", **examples(
        "pocketkube trace --to 10.96.12.7:80                 # from the host to a ClusterIP",
        "pocketkube trace --from web-6d4cf56db6-x2k4q --to 10.96.12.7:80",
        "pocketkube trace --from node/pocketkube-node-1 --to 172.18.0.2:30080",
        "pocketkube trace --to http://shop.example/cart --header 'X-Canary: always'   # through the Ingress"))
    t.add_argument("--from", dest="source", default="host", metavar="POD|node/NAME|host",
                   help="where the packet starts (default: the host)")
    t.add_argument("--to", required=True, metavar="ADDR:PORT|http[s]://HOST[:PORT]/PATH",
                   help="a Service address, or a URL: the request's way through the Ingress controller too")
    t.add_argument("--host", default=None, help="the HTTP Host (default: the URL's)")
    t.add_argument("--path", default=None, help="the HTTP path (default: the URL's)")
    t.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                   help="a request header (canary rules read them); repeatable")
    t.add_argument("--proto", choices=("tcp", "udp", "sctp"), default="tcp")
    t.add_argument("-n", "--namespace", default="default", help="the namespace of --from POD")
    t.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube/config")
    t.add_argument("--cluster-name", default=None,
                   help="the local cluster whose ranges and nodes to use (default: the one the kubeconfig's "
                        "server is, else pocketkube)")
    t.add_argument("--proxy-mode", choices=("nftables", "userspace"), default=None,
                   help="the proxies' mode (default: read from the kube-proxy DaemonSet's --mode)")
    t.set_defaults(func=_trace)
    _add_ingress_parser(sub)
    d = sub.add_parser("dns", help="run the cluster DNS server (pocketkube's CoreDNS); kube-system/coredns runs this")
    d.add_argument("--kubeconfig", required=True, help="a kubeconfig path, or `in-cluster` (service account)")
    d.add_argument("--listen", default="0.0.0.0", help="address to serve DNS on")
    d.add_argument("--port", type=int, default=53)
    d.add_argument("--zone", default="cluster.local", help="the cluster domain")
    d.add_argument("--ttl", type=int, default=30, help="TTL of cluster records (kubeadm's Corefile: 30)")
    d.add_argument("--pods", choices=("insecure", "verified", "disabled"), default="insecure",
                   help="pod A records (CoreDNS `pods`; kubeadm: insecure)")
    d.add_argument("--upstream", action="append", default=[], metavar="HOST[:PORT]",
                   help="resolver for names outside the cluster (repeatable; default: --resolv-conf's)")
    d.add_argument("--resolv-conf", default="/etc/resolv.conf", help="where the upstream resolvers are listed")
    d.add_argument("--metrics-port", type=int, default=9153, help="Prometheus /metrics (and /health, /ready)")
    d.add_argument("--health-port", type=int, default=8080, help="/health, as CoreDNS's health plugin")
    d.add_argument("--ready-port", type=int, default=8181, help="/ready, as CoreDNS's ready plugin")
    d.set_defaults(func=_dns)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pocketkube.core.tls import system_cas_on_demand

    system_cas_on_demand()  # before anything imports aiohttp
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
