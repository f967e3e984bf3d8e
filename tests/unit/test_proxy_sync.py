"""The nftables backend's transactions, against a fake nft: a full sync replaces the table
atomically and adopts what it finds, a partial sync touches only the changed Services'
chains and elements, a refused transaction keeps the record unchanged and makes the next
sync a full one, and UDP changes clean conntrack."""

from __future__ import annotations

import pytest

from pocketkube.proxy.changetracker import ChangeTracker
from pocketkube.proxy.nftables import NftablesBackend, NftablesConfig, NftError


class FakeRunner:
    def __init__(self, existing=None):
        self.scripts: list[str] = []
        self.conntrack: list[list[str]] = []
        self.existing = existing  # (chains, sets) the "kernel" has, or None
        self.refuse = False

    async def apply(self, script: str) -> None:
        if self.refuse:
            raise NftError("Error: Could not process rule: No such file or directory")
        self.scripts.append(script)

    async def list_names(self, table: str):
        return self.existing

    async def conntrack_delete(self, args: list[str]) -> None:
        self.conntrack.append(args)


def service(name, ip, protocol="TCP", port=80, **spec):
    return {"metadata": {"namespace": "ns", "name": name},
            "spec": {"type": "ClusterIP", "clusterIP": ip, **spec,
                     "ports": [{"name": "p", "port": port, "protocol": protocol}]}}


def endpoint_slice(name, ips, protocol="TCP"):
    return {"metadata": {"namespace": "ns", "name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "p", "port": 8080, "protocol": protocol}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "node-1"} for ip in ips]}


@pytest.fixture
def setup():
    tracker = ChangeTracker("node-1")
    runner = FakeRunner()
    backend = NftablesBackend(NftablesConfig(node_name="node-1"), runner)

    async def sync():
        return await backend.sync(tracker.services, tracker.endpoints, tracker.apply())

    for i in range(5):
        tracker.on_service(None, service(f"s{i}", f"10.96.0.{10 + i}"))
        tracker.on_slice(endpoint_slice(f"s{i}", [f"10.244.1.{10 + i}"]))
    return tracker, runner, backend, sync


async def test_first_sync_is_full_and_atomic(setup):
    tracker, runner, backend, sync = setup
    stats = await sync()
    assert stats.full and stats.services == 5
    script = runner.scripts[0]
    assert script.startswith("add table ip pk-pocketkube-proxy\nflush table ip pk-pocketkube-proxy\n")
    assert script.count("\nchain service-") == 5  # in one `table ip pk-pocketkube-proxy { }` block
    assert "\ntable ip pk-pocketkube-proxy {\n" in script
    assert "delete" not in script


async def test_partial_sync_touches_only_the_changed_service(setup):
    tracker, runner, backend, sync = setup
    await sync()
    tracker.on_slice(endpoint_slice("s2", ["10.244.1.12", "10.244.1.99"]))
    stats = await sync()
    assert not stats.full and stats.services == 1
    script = runner.scripts[-1]
    assert "ns/s2/" in script
    assert not any(f"ns/s{i}/" in script for i in (0, 1, 3, 4))
    assert "flush chain" in script and "dnat to 10.244.1.99:8080" in script
    assert "hairpin-endpoints { 10.244.1.99 . 10.244.1.99 }" in script
    assert "flush table" not in script


async def test_service_losing_its_endpoints_moves_to_reject(setup):
    tracker, runner, backend, sync = setup
    await sync()
    tracker.on_slice(endpoint_slice("s1", []))
    await sync()
    lines = runner.scripts[-1].splitlines()
    assert lines.index(next(x for x in lines if x.startswith("delete element ip pk-pocketkube-proxy service-ips"))) \
        < lines.index(next(x for x in lines if x.startswith("delete chain")))
    assert any("no-endpoint-services { 10.96.0.11 . tcp . 80 : goto reject-chain }" in x for x in lines)


async def test_unchanged_service_resync_sends_nothing(setup):
    tracker, runner, backend, sync = setup
    await sync()
    tracker.on_slice(endpoint_slice("s1", ["10.244.1.11", "10.244.1.50"]))
    tracker.on_slice(endpoint_slice("s1", ["10.244.1.11"]))  # back to where it was: nothing pending
    before = len(runner.scripts)
    await sync()
    assert len(runner.scripts) == before


async def test_refused_sync_keeps_the_record_and_forces_a_full_one(setup):
    tracker, runner, backend, sync = setup
    await sync()
    runner.refuse = True
    tracker.on_service(None, service("new", "10.96.0.50"))
    with pytest.raises(NftError):
        await sync()
    assert backend.needs_full_sync
    runner.refuse = False
    stats = await sync()
    assert stats.full and stats.services == 6
    assert "10.96.0.50 . tcp . 80 : goto reject-chain" in runner.scripts[-1]


async def test_adoption_deletes_what_is_no_longer_wanted():
    runner = FakeRunner(existing=({"services", "service-OLD-ns/gone/tcp/p", "nat-prerouting"},
                                  {"service-ips", "affinity-OLD-ns/gone/tcp/p__10.244.1.2/8080/60s"}))
    backend = NftablesBackend(NftablesConfig(node_name="node-1"), runner)
    tracker = ChangeTracker("node-1")
    tracker.on_service(None, service("s", "10.96.0.10"))
    await backend.sync(tracker.services, tracker.endpoints, tracker.apply())
    script = runner.scripts[0]
    assert "delete chain ip pk-pocketkube-proxy service-OLD-ns/gone/tcp/p" in script
    assert "delete set ip pk-pocketkube-proxy affinity-OLD-ns/gone/tcp/p__10.244.1.2/8080/60s" in script
    assert "flush map ip pk-pocketkube-proxy service-ips" in script
    assert "delete chain ip pk-pocketkube-proxy nat-prerouting" not in script


async def test_affinity_timeout_change_replaces_the_sets(setup):
    tracker, runner, backend, sync = setup
    tracker.on_service(None, service("sticky", "10.96.0.60", sessionAffinity="ClientIP",
                                     sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}))
    tracker.on_slice(endpoint_slice("sticky", ["10.244.1.60"]))
    await sync()
    tracker.on_service(service("sticky", "10.96.0.60", sessionAffinity="ClientIP",
                               sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
                       service("sticky", "10.96.0.60", sessionAffinity="ClientIP",
                               sessionAffinityConfig={"clientIP": {"timeoutSeconds": 5}}))
    await sync()
    script = runner.scripts[-1]
    assert "delete set ip pk-pocketkube-proxy affinity-" in script and "/60s" in script
    assert "timeout 5s" in script


async def test_udp_endpoint_removal_flushes_its_conntrack_entries(setup):
    tracker, runner, backend, sync = setup
    tracker.on_service(None, service("dns", "10.96.0.10", "UDP", 53, type="NodePort"))
    await sync()
    tracker.on_slice(endpoint_slice("dns", ["10.244.1.2", "10.244.1.3"], "UDP"))
    await sync()
    assert ["-p", "udp", "--orig-dst", "10.96.0.10"] in runner.conntrack  # first endpoints: old entries go
    runner.conntrack.clear()
    tracker.on_slice(endpoint_slice("dns", ["10.244.1.3"], "UDP"))
    await sync()
    assert runner.conntrack == [["-p", "udp", "--orig-dst", "10.96.0.10", "--dst-nat", "10.244.1.2"]]


def _body(script: str) -> list[str]:
    """A full sync's lines without the adoption part (flushes of sets the kernel held), one
    line per element, in any order."""
    lines, chain = [], None
    for line in script.splitlines():
        if line.startswith("chain ") and line.endswith(" {"):  # a chain of the table block: its rules follow
            chain = line.split()[1]
            lines.append(line)
        elif line == "}":
            chain = None
        elif chain is not None:
            lines.append(f"{chain}: {line}")
        elif line.startswith("add element"):
            head, _, elements = line.partition(" { ")
            lines += [f"{head} {element}" for element in elements.removesuffix(" }").split(", ")]
        elif not line.startswith(("flush map", "flush set")):
            lines.append(line)
    return sorted(lines)


async def test_full_resync_after_changes_equals_a_fresh_build(setup):
    """The full sync that reuses unchanged Services' rules and updates the element table in
    place writes what a proxy starting from nothing would write."""
    tracker, runner, backend, sync = setup
    tracker.on_service(None, service("shared", "10.96.0.70", externalIPs=["192.0.2.1"]))
    tracker.on_service(None, service("other", "10.96.0.71", externalIPs=["192.0.2.1"]))  # one key, two claims
    await sync()
    tracker.on_slice(endpoint_slice("s1", ["10.244.1.11", "10.244.1.51"]))
    tracker.on_service(service("s3", "10.96.0.13"), None)
    tracker.on_service(service("shared", "10.96.0.70", externalIPs=["192.0.2.1"]), None)  # "other" wins now
    await sync()
    reused_before = backend._parts["ns/s0"]
    backend.needs_full_sync = True
    await sync()
    assert backend._parts["ns/s0"] is reused_before
    fresh = FakeRunner()
    await NftablesBackend(NftablesConfig(node_name="node-1"), fresh).sync(tracker.services, tracker.endpoints,
                                                                         tracker.apply())
    assert _body(runner.scripts[-1]) == _body(fresh.scripts[0])
    assert "192.0.2.1 . tcp . 80 : goto reject-chain" in runner.scripts[-1]
