"""`up --api-servers N` (ADR 0020): what only the etcd datastore allows, the processes and
arguments a record with several servers describes, and apiserver-lb's failover over real
loopback sockets (bytes passed both ways untouched, the next server when one refuses)."""

from __future__ import annotations

import asyncio

import pytest

from pocketkube.cli import apilb
from pocketkube.cli import up as up_cmd


@pytest.mark.parametrize("datastore, members, servers, message", [
    ("sqlite", 1, 2, "--api-servers > 1 needs --datastore etcd (several servers share one etcd; "
                     "SQLite is one server's own file)"),
    ("sqlite", 3, 1, "--etcd-members needs --datastore etcd"),
    ("etcd", 1, 4, "--api-servers is 1, 2 or 3"),
])
def test_options_only_etcd_allows(datastore, members, servers, message):
    with pytest.raises(up_cmd.UpError) as exc:
        up_cmd.check_datastore_options(up_cmd.UpOptions(datastore=datastore, etcd_members=members,
                                                        api_servers=servers))
    assert str(exc.value) == message


@pytest.mark.parametrize("datastore, members, servers", [("sqlite", 1, 1), ("etcd", 3, 3), ("etcd", 1, 2)])
def test_options_accepted(datastore, members, servers):
    up_cmd.check_datastore_options(up_cmd.UpOptions(datastore=datastore, etcd_members=members, api_servers=servers))


def test_a_record_with_several_servers_names_each_and_the_front():
    one = up_cmd.ClusterRecord("c", "/d", 1, 6443, datastore="etcd")
    assert one.api_servers() == [("server", 6443, "/d/server.log")]
    two = up_cmd.ClusterRecord("c", "/d", 1, 6443, datastore="etcd", api_ports=[6444, 6445])
    assert two.api_servers() == [("server-0", 6444, "/d/server-0.log"), ("server-1", 6445, "/d/server-1.log")]
    assert two.url == "https://127.0.0.1:6443" and two.lb_log == "/d/apiserver-lb.log"


async def _echo_server(tag: bytes):
    async def handle(reader, writer):
        while data := await reader.read(1024):
            writer.write(tag + data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


async def _through(front_port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", front_port)
    writer.write(payload)
    await writer.drain()
    reply = await reader.read(1024)
    writer.close()
    return reply


async def test_the_front_sticks_to_a_server_and_fails_over_to_the_next():
    first, first_port = await _echo_server(b"A:")
    second, second_port = await _echo_server(b"B:")
    balancer = apilb.Balancer([("127.0.0.1", first_port), ("127.0.0.1", second_port)])
    front = await asyncio.start_server(balancer.handle, "127.0.0.1", 0)
    port = front.sockets[0].getsockname()[1]
    try:
        assert await _through(port, b"hello") == b"A:hello"
        assert await _through(port, b"again") == b"A:again"
        first.close()
        await first.wait_closed()
        assert await _through(port, b"after") == b"B:after"
        assert balancer.current == 1
    finally:
        front.close()
        second.close()


async def test_no_server_answering_closes_the_client_connection():
    balancer = apilb.Balancer([("127.0.0.1", _closed_port())])
    front = await asyncio.start_server(balancer.handle, "127.0.0.1", 0)
    port = front.sockets[0].getsockname()[1]
    try:
        assert await _through(port, b"anyone?") == b""
    finally:
        front.close()
