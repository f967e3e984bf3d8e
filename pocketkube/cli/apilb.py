"""`pocketkube apiserver-lb`: the TCP front of several API servers (`up --api-servers N`, ADR 0020).

Upstream puts a load balancer in front of the kube-apiservers of an HA cluster; k3s agents
run one of their own (a TCP proxy that sticks to one server and fails over to the next).
This is that: it listens on the cluster's API address(es) and port, and hands each
connection, bytes untouched (TLS end to end, client certificates included), to the
server that last accepted one, or the next in the list that does. A dead server refuses
connections at once, so kubectl, agents and add-ons keep the one URL they have; their
open watches end with the server and are re-opened through the next.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 2.0
CHUNK = 64 * 1024


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: want HOST:PORT")
    return host, int(port)


class Balancer:
    def __init__(self, servers: list[tuple[str, int]]):
        if not servers:
            raise ValueError("no servers")
        self.servers = servers
        self.current = 0  # the server that last accepted a connection

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The first server, from the current one on, that accepts a connection."""
        errors = []
        for step in range(len(self.servers)):
            index = (self.current + step) % len(self.servers)
            host, port = self.servers[index]
            try:
                streams = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                errors.append(f"{host}:{port}: {exc or 'timeout'}")
                continue
            if index != self.current:
                log.info("API server %s:%d does not answer; now %s:%d", *self.servers[self.current], host, port)
                self.current = index
            return streams
        raise OSError("no API server accepts connections: " + "; ".join(errors))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self.connect()
        except OSError as exc:
            log.warning("%s", exc)
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        pass
    finally:
        writer.close()


async def serve(listen: list[tuple[str, int]], servers: list[tuple[str, int]]) -> None:
    balancer = Balancer(servers)
    listeners = [await asyncio.start_server(balancer.handle, host, port, reuse_address=True) for host, port in listen]
    print("apiserver-lb listening on " + ", ".join(f"{h}:{p}" for h, p in listen) + " for "
          + ", ".join(f"{h}:{p}" for h, p in servers), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for listener in listeners:
        listener.close()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.listen, args.server))
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("apiserver-lb", help="TCP front of several API servers (`up --api-servers N` runs it)")
    p.add_argument("--listen", type=_hostport, action="append", required=True, metavar="HOST:PORT",
                   help="where clients connect (repeatable)")
    p.add_argument("--server", type=_hostport, action="append", required=True, metavar="HOST:PORT",
                   help="an API server, in the order tried (repeatable)")
    p.set_defaults(func=run)
