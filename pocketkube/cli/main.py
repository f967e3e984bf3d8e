"""`pocketkube` entry point: parses the command line and runs the asked-for command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys


def _server(args: argparse.Namespace) -> int:
    from pocketkube.apiserver.local import LocalTransport
    from pocketkube.apiserver.server import APIServer
    from pocketkube.cli.supervisor import Supervisor
    from pocketkube.controllers.base import Settings
    from pocketkube.controllers.manager import ControllerManager
    from pocketkube.core.client import Client

    async def run() -> None:
        sup = Supervisor()
        server = await sup.start(APIServer(args.data_dir, port=args.port, datastore=args.datastore,
                                           bind=args.bind, extra_addresses=tuple(args.extra_bind)))
        if not args.no_controllers:
            client = Client(LocalTransport(server.handlers), field_manager="kube-controller-manager")
            with open(server.pki.ca_cert, "rb") as f:
                root_ca = f.read()
            settings = Settings(apiserver_address=args.advertise_address, apiserver_port=server.port,
                                root_ca=root_ca)
            await sup.start(ControllerManager(client, settings=settings))
        print(f"pocketkube API server listening on {server.url}", flush=True)
        print(f"  export KUBECONFIG={server.kubeconfig_path}", flush=True)
        await _until_signalled()
        await sup.stop()

    _run(run())
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
                                  stream_token=client.transport.token))
        print(f"pocketkube agent for node {args.node_name} ready on {args.node_ip}:{args.port}", flush=True)
        await _until_signalled()
        await sup.stop()
        await client.close()

    _run(run())
    return 0


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
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pocketkube", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("server", help="run the API server (and, later, the controllers)")
    p.add_argument("--data-dir", required=True, help="where the store, certificates and kubeconfig live")
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    p.add_argument("--extra-bind", action="append", default=[], metavar="ADDRESS",
                   help="another address to listen on (repeatable; `up` adds the node bridge's)")
    p.add_argument("--datastore", choices=("sqlite", "memory"), default="sqlite")
    p.add_argument("--no-controllers", action="store_true", help="serve the API only")
    p.add_argument("--advertise-address", default="127.0.0.1",
                   help="the address the `kubernetes` Service's endpoints point at")
    p.set_defaults(func=_server)
    from pocketkube.cli import up

    up.add_parsers(sub)
    a = sub.add_parser("agent", help="run a node agent (pocketkube's kubelet); `up` starts these")
    a.add_argument("--kubeconfig", required=True, help="how to reach the API server")
    a.add_argument("--node-name", required=True)
    a.add_argument("--node-ip", required=True, help="this node's address (InternalIP)")
    a.add_argument("--pod-cidr", required=True, help="this node's pod range, e.g. 10.244.1.0/24")
    a.add_argument("--state-dir", required=True, help="where pod sandboxes and logs are kept")
    a.add_argument("--netns", default=None, help="the node's network namespace (default: the current one)")
    a.add_argument("--port", type=int, default=10250, help="exec/attach/logs/port-forward port")
    a.set_defaults(func=_agent)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
