"""Allocations kept in the store (allocstore, allocators.Shared): the RangeAllocation bitmap
as upstream encodes it, and two API servers' storages over one store (each its own watch
cache and allocators, as two processes over one etcd) handing out small ranges to the last
value without a duplicate, freeing for each other, and repairing leaks and missing claims."""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest

from pocketkube.apiserver import allocators as alloc
from pocketkube.apiserver import allocstore
from pocketkube.apiserver.cache import WatchCache
from pocketkube.apiserver.kinds import registry
from pocketkube.apiserver.kinds import service as svc_kind
from pocketkube.apiserver.storage import Storage, WriteOptions
from pocketkube.core.errors import APIError
from pocketkube.store.memory import MemoryStore

INFO = svc_kind.INFO


@pytest.mark.parametrize("offsets", [set(), {0}, {7, 8}, {1, 200, 2767}, set(range(0, 2768, 3))])
def test_bitmap_round_trip(offsets):
    assert allocstore.decode_bitmap(allocstore.encode_bitmap(offsets)) == offsets


def test_bitmap_is_the_big_endian_integer_with_bit_i_for_offset_i():
    data = base64.b64decode(allocstore.encode_bitmap({0, 9}))
    assert data == bytes([0b10, 0b1])  # big.Int.Bytes(): no leading zero byte
    assert int.from_bytes(data, "big") == (1 << 9) | 1


class Server:
    """One API server's storage and allocators over a shared store."""

    def __init__(self, store, cidr: str, ports: str):
        self.store, self.cidr, self.ports = store, cidr, ports

    async def start(self) -> "Server":
        self.cache = WatchCache(self.store)
        await self.cache.start()
        self.storage = Storage(self.store, self.cache)
        self.allocs = alloc.install(self.storage, self.cidr, self.ports)
        await self.allocs.shared.start()
        return self

    async def stop(self) -> None:
        await self.allocs.shared.stop()
        await self.cache.stop()


@pytest.fixture
async def two():
    store = MemoryStore()
    await store.start()
    ns = registry.by_resource("", "v1", "namespaces")
    cache = WatchCache(store)
    await cache.start()
    await Storage(store, cache).create(ns, "", {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": "default"}}, WriteOptions())
    await cache.stop()
    servers = [await Server(store, "10.96.0.0/28", "30000-30009").start() for _ in range(2)]
    yield servers
    for s in servers:
        await s.stop()
    await store.stop()


def node_port_service(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort", "ports": [{"port": 80}], "selector": {"app": name}, **spec}}


async def test_two_servers_fill_small_ranges_without_a_duplicate(two):
    # 10 node ports, 13 free IPs (a /28 less the network, broadcast and kubernetes addresses).
    results = await asyncio.gather(*(two[i % 2].storage.create(INFO, "default", node_port_service(f"s{i}"),
                                                                WriteOptions()) for i in range(16)),
                                   return_exceptions=True)
    made = [r for r in results if isinstance(r, dict)]
    failed = [r for r in results if not isinstance(r, dict)]
    # Under contention a write can find the range full while another's tentative hold is
    # about to fail; what is left is free for the next writes, through either server.
    for i in range(16, 40):
        try:
            made.append(await two[i % 2].storage.create(INFO, "default", node_port_service(f"s{i}"), WriteOptions()))
        except APIError as exc:
            failed.append(exc)
    assert len(made) == 10
    assert all(isinstance(e, APIError) and e.code == 500
               and e.message.endswith(": range is full") for e in failed), failed
    ips = [s["spec"]["clusterIP"] for s in made]
    ports = [s["spec"]["ports"][0]["nodePort"] for s in made]
    assert len(set(ips)) == 10 and len(set(ports)) == 10
    # The store holds exactly those claims, and each server's bitmap knows them all.
    await asyncio.sleep(0)
    for server in two:
        await server.cache.wait_fresh()
        assert server.allocs.shared.ips.claimed == set(ips) | {"10.96.0.1"}  # as the events told it
        assert set(await server.allocs.shared.ips.load()) == set(ips) | {"10.96.0.1"}  # as stored
        assert server.allocs.shared.ports.stored == {p - 30000 for p in ports}
        assert all(server.allocs.ports.has(p) for p in ports)


async def test_a_delete_through_one_server_frees_for_the_other(two):
    a, b = two
    made = await a.storage.create(INFO, "default", node_port_service("x"), WriteOptions())
    ip, port = made["spec"]["clusterIP"], made["spec"]["ports"][0]["nodePort"]
    # Each refused on its own (with both, the port's refusal may come first: the IP's claim is
    # written with the Service, after the port's, ADR 0025).
    for asked, message in ((dict(clusterIP=ip), "provided IP is already allocated"),
                           (dict(ports=[{"port": 80, "nodePort": port}]), "provided port is already allocated")):
        with pytest.raises(APIError) as exc:
            await b.storage.create(INFO, "default", node_port_service("y", **asked), WriteOptions())
        assert exc.value.code == 422 and message in str(exc.value.details)
    again = node_port_service("y", clusterIP=ip, ports=[{"port": 80, "nodePort": port}])
    await a.storage.delete(INFO, "default", "x", {})
    await a.allocs.shared.ips.drain()
    for _ in range(100):  # b's cache follows a's releases
        await asyncio.sleep(0.01)
        if not b.allocs.ips.has(ip) and not b.allocs.ports.has(port):
            break
    got = await b.storage.create(INFO, "default", again, WriteOptions())
    assert got["spec"]["clusterIP"] == ip and got["spec"]["ports"][0]["nodePort"] == port


async def test_repair_claims_what_services_hold_and_releases_leaks_after_three_looks(two):
    a, b = two
    made = await a.storage.create(INFO, "default", node_port_service("x", clusterIP="10.96.0.5"), WriteOptions())
    ip = made["spec"]["clusterIP"]
    await a.store.delete(allocstore.IPADDRESS_PREFIX + ip)  # a claim lost
    await a.store.create(allocstore.IPADDRESS_PREFIX + "10.96.0.9", orjson.dumps(
        allocstore.ipaddress_object("10.96.0.9", "IPv4", node_port_service("gone"))))  # a server died after claiming
    held = made["spec"]["ports"][0]["nodePort"] - 30000  # random in 30000-30009: the leak must be another
    leaked = next(offset for offset in range(10) if offset != held)
    assert await b.allocs.shared.ports.claim({leaked}) == set()  # ... and after taking a port
    await a.cache.wait_fresh()
    for look in range(allocstore.LEAK_CHECKS):
        await a.allocs.shared.repair()
        await a.allocs.shared.ips.drain()
        await a.cache.wait_fresh()
        claims = set(await a.allocs.shared.ips.load())
        assert ip in claims
        leaked_still = look < allocstore.LEAK_CHECKS - 1
        assert ("10.96.0.9" in claims) == leaked_still
    for _ in range(100):
        await asyncio.sleep(0.01)
        if leaked not in a.allocs.shared.ports.stored:
            break
    assert a.allocs.shared.ports.stored == {held}


async def test_an_unreadable_stored_range_fails_node_port_writes_and_nothing_else(two):
    a, _ = two
    await a.storage.create(INFO, "default", node_port_service("before"), WriteOptions())
    kv = await a.store.get(allocstore.NODE_PORT_RANGE_KEY)
    await a.store.update(allocstore.NODE_PORT_RANGE_KEY, b'{"kind": "RangeAllocation", "data": "!!not base64"}',
                         expected_mod_revision=kv.mod_revision)
    await a.cache.wait_fresh()  # the cache's listener cannot read it either, and carries on
    with pytest.raises(Exception):
        await a.storage.create(INFO, "default", node_port_service("after"), WriteOptions())
    cluster_ip = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "plain"},
                  "spec": {"ports": [{"port": 80}], "selector": {"app": "plain"}}}
    made = await a.storage.create(INFO, "default", cluster_ip, WriteOptions())
    assert made["spec"]["clusterIP"].startswith("10.96.0.")
    await a.cache.wait_fresh()
    assert a.cache.get("/registry/core/services/default/plain") is not None


async def unseen_claim(server: Server, ip: str) -> None:
    """Another server's claim of `ip` that `server` has not seen yet (its cache lags)."""
    await server.store.create(allocstore.IPADDRESS_PREFIX + ip, b'{"theirs": true}')
    await server.cache.wait_fresh()
    server.allocs.shared.ips.claimed.discard(ip)
    server.allocs.ips.release(ip)


def cluster_ip_service(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"port": 80}], "selector": {"app": name}, **spec}}


async def test_the_claim_is_stored_with_the_service_in_one_write(two):
    a, _ = two
    before = a.store.revision
    made = await a.storage.create(INFO, "default", cluster_ip_service("x"), WriteOptions())
    ip = made["spec"]["clusterIP"]
    claim = await a.store.get(allocstore.IPADDRESS_PREFIX + ip)
    assert orjson.loads(claim.value)["spec"]["parentRef"] == {"group": "", "resource": "services",
                                                              "namespace": "default", "name": "x"}
    # One create_all: the Service first (its revision is its resourceVersion), then the claim.
    assert int(made["metadata"]["resourceVersion"]) == before + 1 and claim.mod_revision == before + 2
    assert a.store.revision == before + 2
    assert ip in a.allocs.shared.ips.claimed


async def test_a_picked_ip_another_server_claimed_unseen_is_picked_again(two, monkeypatch):
    _, b = two
    theirs = "10.96.0.7"
    await unseen_claim(b, theirs)
    picks = iter([theirs])
    allocate_next = b.allocs.ips.allocate_next

    def first_theirs() -> str:  # the random pick lands on the claimed IP first
        ip = next(picks, None)
        if ip is None:
            return allocate_next()
        b.allocs.ips.allocate(ip)
        return ip

    monkeypatch.setattr(b.allocs.ips, "allocate_next", first_theirs)
    made = await b.storage.create(INFO, "default", cluster_ip_service("x"), WriteOptions())
    ip = made["spec"]["clusterIP"]
    assert ip != theirs and made["spec"]["clusterIPs"] == [ip]
    assert (await b.store.get(allocstore.IPADDRESS_PREFIX + theirs)).value == b'{"theirs": true}'
    assert orjson.loads((await b.store.get(allocstore.IPADDRESS_PREFIX + ip)).value)["spec"]["parentRef"]["name"] == "x"
    assert b.allocs.ips.has(theirs) and theirs in b.allocs.shared.ips.claimed  # known now


async def test_a_requested_ip_another_server_claimed_unseen_is_refused(two):
    _, b = two
    await unseen_claim(b, "10.96.0.7")
    revision = b.store.revision
    with pytest.raises(APIError) as exc:
        await b.storage.create(INFO, "default", cluster_ip_service("x", clusterIP="10.96.0.7"), WriteOptions())
    assert exc.value.code == 422 and "provided IP is already allocated" in str(exc.value.details)
    assert b.store.revision == revision  # nothing written


async def test_an_existing_service_is_already_exists_and_its_new_ip_is_not_kept(two):
    a, b = two
    await a.storage.create(INFO, "default", cluster_ip_service("x", clusterIP="10.96.0.5"), WriteOptions())
    await b.cache.wait_fresh()
    revision = b.store.revision
    held = set(b.allocs.shared.ips.claimed)
    with pytest.raises(APIError) as exc:
        await b.storage.create(INFO, "default", cluster_ip_service("x", clusterIP="10.96.0.9"), WriteOptions())
    assert exc.value.code == 409 and exc.value.reason == "AlreadyExists"
    assert b.store.revision == revision and await b.store.get(allocstore.IPADDRESS_PREFIX + "10.96.0.9") is None
    assert not b.allocs.ips.has("10.96.0.9") and b.allocs.shared.ips.claimed == held
