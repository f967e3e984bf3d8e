"""Service ClusterIP / NodePort allocation: the bitmaps (bands, exhaustion, release), the
Service rules of alloc.go (types, type changes, messages, dry run), restoring from stored
Services, and the storage hooks under concurrent writes."""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import random

import pytest

from pocketkube.apiserver import allocators as alloc
from pocketkube.apiserver.allocators import (AlreadyAllocated, Bitmap, IPRange, NotInRange, PortRange, RangeFull,
                                             ServiceAllocators, static_band_size)
from pocketkube.apiserver.cache import WatchCache
from pocketkube.apiserver.kinds import registry
from pocketkube.apiserver.kinds import service as svc_kind
from pocketkube.apiserver.storage import Storage, WriteOptions
from pocketkube.core.errors import APIError
from pocketkube.store.memory import MemoryStore

INFO = svc_kind.INFO


# ---- bitmaps ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size, minimum, maximum, step, band", [
    (2 ** 20, 16, 256, 16, 256),    # /12 service CIDR
    (2 ** 12, 16, 256, 16, 256),    # /20: 4096/16 = 256
    (2 ** 10, 16, 256, 16, 64),     # /22
    (256, 16, 256, 16, 16),         # /24: never below 16
    (16, 16, 256, 16, 0),           # /28: too small for a band
    (2768, 16, 128, 32, 86),        # NodePorts 30000-32767
    (100_000, 16, 128, 32, 128),    # ports: never above 128
])
def test_static_band_size(size, minimum, maximum, step, band):
    assert static_band_size(size, minimum, maximum, step) == band


def test_bitmap_dynamic_prefers_the_upper_band_then_falls_back():
    bitmap = Bitmap(40, 10, random.Random(1))
    upper = [bitmap.allocate_next() for _ in range(30)]
    assert sorted(upper) == list(range(10, 40))
    lower = [bitmap.allocate_next() for _ in range(10)]
    assert sorted(lower) == list(range(10))
    assert bitmap.allocate_next() is None
    bitmap.release(3)
    assert bitmap.free == 1 and bitmap.allocate_next() == 3


def test_bitmap_static_allocation_and_release():
    bitmap = Bitmap(8, 0)
    assert bitmap.allocate(5) is True
    assert bitmap.allocate(5) is False
    assert bitmap.has(5) and bitmap.used == 1
    bitmap.release(5)
    bitmap.release(5)  # releasing a free offset is a no-op
    assert not bitmap.has(5) and bitmap.allocate(5) is True


def test_ip_range_never_hands_out_network_or_broadcast():
    ips = IPRange("10.0.0.0/29", random.Random(2))
    got = {ips.allocate_next() for _ in range(6)}
    assert got == {f"10.0.0.{i}" for i in range(1, 7)}
    with pytest.raises(RangeFull, match="^range is full$"):
        ips.allocate_next()
    for edge in ("10.0.0.0", "10.0.0.7"):
        with pytest.raises(NotInRange) as exc:
            ips.allocate(edge)
        assert str(exc.value) == (f"the provided IP ({edge}) is not in the valid range. "
                                  "The range of valid IPs is 10.0.0.0/29")


def test_ip_range_static_and_dynamic_bands_of_the_service_cidr():
    ips = IPRange("10.96.0.0/12", random.Random(3))
    assert ips.bitmap.size == 2 ** 20 - 2 and ips.bitmap.band == 256
    network = ipaddress.ip_network("10.96.0.0/12")
    lowest_dynamic = ipaddress.ip_address("10.96.1.1")  # offset 256: past 10.96.0.1 .. 10.96.1.0
    for _ in range(200):
        ip = ipaddress.ip_address(ips.allocate_next())
        assert ip in network and ip >= lowest_dynamic
    ips.allocate("10.96.0.10")
    with pytest.raises(AlreadyAllocated, match="^provided IP is already allocated$"):
        ips.allocate("10.96.0.10")
    ips.release("10.96.0.10")
    ips.allocate("10.96.0.10")
    with pytest.raises(NotInRange):
        ips.allocate("10.112.0.1")


def test_port_range_bands_messages_and_exhaustion():
    ports = PortRange("30000-32767", random.Random(4))
    assert ports.bitmap.size == 2768 and ports.bitmap.band == 86
    for _ in range(100):
        assert 30086 <= ports.allocate_next() <= 32767
    ports.allocate(30080)
    with pytest.raises(AlreadyAllocated, match="^provided port is already allocated$"):
        ports.allocate(30080)
    with pytest.raises(NotInRange) as exc:
        ports.allocate(29999)
    assert str(exc.value) == "provided port is not in the valid range. The range of valid ports is 30000-32767"
    small = PortRange("30000-30002")
    assert sorted(small.allocate_next() for _ in range(3)) == [30000, 30001, 30002]
    with pytest.raises(RangeFull):
        small.allocate_next()


# ---- Service rules ---------------------------------------------------------------------------

def service(name: str, type_: str = "ClusterIP", namespace: str = "default", **spec) -> dict:
    body = {"ports": [{"port": 80}], "selector": {"app": name}, "type": type_, **spec}
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": body}
    INFO.strategy.default(obj)
    INFO.strategy.prepare_for_create(obj)
    return obj


def updated(old: dict, **spec) -> dict:
    new = copy.deepcopy(old)
    new["spec"].update(spec)
    for key, value in spec.items():
        if value is None:
            del new["spec"][key]
    INFO.strategy.default(new)
    INFO.strategy.prepare_for_update(new, old)
    return new


def create(allocs: ServiceAllocators, obj: dict, dry_run: bool = False, stored: bool = True) -> dict:
    finish = allocs.begin("CREATE", INFO, obj, None, dry_run)
    finish(stored)
    assert not INFO.strategy.validate(obj)
    return obj


def update(allocs: ServiceAllocators, new: dict, old: dict, stored: bool = True) -> dict:
    allocs.begin("UPDATE", INFO, new, old, False)(stored)
    assert not INFO.strategy.validate_update(new, old)
    return new


@pytest.fixture
def allocs():
    return ServiceAllocators(rng=random.Random(5))


def test_cluster_ip_service_gets_a_dynamic_ip_and_families(allocs):
    obj = create(allocs, service("web"))
    spec = obj["spec"]
    ip = ipaddress.ip_address(spec["clusterIP"])
    assert ip in ipaddress.ip_network("10.96.0.0/12") and ip >= ipaddress.ip_address("10.96.1.1")
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    assert allocs.ips.has(spec["clusterIP"])


def test_requested_ip_taken_or_out_of_range_is_refused_with_kubernetes_text(allocs):
    create(allocs, service("a", clusterIP="10.96.0.50"))
    with pytest.raises(APIError) as exc:
        create(allocs, service("b", clusterIP="10.96.0.50"))
    assert exc.value.code == 422
    assert exc.value.message == ('Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.50"}: '
                                 'failed to allocate IP 10.96.0.50: provided IP is already allocated')
    with pytest.raises(APIError) as exc:
        create(allocs, service("c", clusterIP="10.0.0.5"))
    assert exc.value.message == ('Service "c" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.5"}: '
                                 'failed to allocate IP 10.0.0.5: the provided IP (10.0.0.5) is not in the valid '
                                 'range. The range of valid IPs is 10.96.0.0/12')


def test_kubernetes_ip_is_reserved_for_the_kubernetes_service(allocs):
    with pytest.raises(APIError, match="provided IP is already allocated"):
        create(allocs, service("impostor", clusterIP="10.96.0.1"))
    with pytest.raises(APIError, match="provided IP is already allocated"):
        create(allocs, service("kubernetes", namespace="other", clusterIP="10.96.0.1"))
    obj = create(allocs, alloc_kubernetes_service())
    assert obj["spec"]["clusterIP"] == "10.96.0.1"
    allocs.release(obj)
    assert allocs.ips.has("10.96.0.1")  # never handed to anyone else


def alloc_kubernetes_service() -> dict:
    obj = alloc.kubernetes_service("10.96.0.1", 6443)
    INFO.strategy.default(obj)
    INFO.strategy.prepare_for_create(obj)
    return obj


@pytest.mark.parametrize("spec, ips", [
    ({"type": "ExternalName", "externalName": "example.com", "selector": None}, None),
    ({"clusterIP": "None"}, ["None"]),
])
def test_headless_and_external_name_get_no_cluster_ip(allocs, spec, ips):
    obj = service("x", **{k: v for k, v in spec.items() if v is not None})
    if "selector" in spec:
        del obj["spec"]["selector"]
    create(allocs, obj)
    assert obj["spec"].get("clusterIPs") == ips
    assert allocs.ips.bitmap.used == 1  # only the kubernetes address


def test_headless_without_selector_defaults_to_require_dual_stack_families(allocs):
    obj = {"metadata": {"name": "h", "namespace": "default"},
           "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 80}], "type": "ClusterIP"}}
    allocs.begin("CREATE", INFO, obj, None, False)(True)
    assert obj["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    assert obj["spec"]["ipFamilies"] == ["IPv4", "IPv6"]


@pytest.mark.parametrize("spec, message", [
    ({"ipFamilyPolicy": "RequireDualStack"},
     'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services'),
    ({"ipFamilies": ["IPv6"]}, 'spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster'),
    ({"ipFamilies": ["IPv4", "IPv6"]},
     "spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when "
     "multiple IP families are specified"),
])
def test_families_this_cluster_cannot_serve_are_refused(allocs, spec, message):
    with pytest.raises(APIError) as exc:
        create(allocs, service("fam", **spec))
    assert exc.value.message == f'Service "fam" is invalid: {message}'
    assert allocs.ips.bitmap.used == 1


def test_prefer_dual_stack_on_a_single_stack_cluster_gets_one_ip(allocs):
    obj = create(allocs, service("pds", ipFamilyPolicy="PreferDualStack"))
    assert obj["spec"]["ipFamilies"] == ["IPv4"] and len(obj["spec"]["clusterIPs"]) == 1


def test_node_port_requested_taken_or_out_of_range(allocs):
    create(allocs, service("np", "NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert allocs.ports.has(30080)
    with pytest.raises(APIError) as exc:
        create(allocs, service("np2", "NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert exc.value.message == ('Service "np2" is invalid: spec.ports[0].nodePort: Invalid value: 30080: '
                                 'provided port is already allocated')
    with pytest.raises(APIError) as exc:
        create(allocs, service("np3", "NodePort", ports=[{"port": 80, "nodePort": 40000}]))
    assert exc.value.message == ('Service "np3" is invalid: spec.ports[0].nodePort: Invalid value: 40000: '
                                 'provided port is not in the valid range. The range of valid ports is 30000-32767')
    # the failed creates gave back the cluster IPs they had taken
    assert allocs.ips.bitmap.used == 2


def test_node_ports_are_shared_by_same_port_number_and_allocated_above_the_band(allocs):
    obj = create(allocs, service("dns", "NodePort", ports=[
        {"name": "udp", "port": 53, "protocol": "UDP"}, {"name": "tcp", "port": 53, "protocol": "TCP"},
        {"name": "http", "port": 80}]))
    ports = obj["spec"]["ports"]
    assert ports[0]["nodePort"] == ports[1]["nodePort"] != ports[2]["nodePort"]
    assert all(30086 <= p["nodePort"] <= 32767 for p in ports)
    assert allocs.ports.bitmap.used == 2


def test_load_balancer_gets_node_ports_unless_disabled_and_health_check_port_when_local(allocs):
    lb = create(allocs, service("lb", "LoadBalancer", externalTrafficPolicy="Local"))
    assert lb["spec"]["ports"][0]["nodePort"] and lb["spec"]["healthCheckNodePort"]
    assert allocs.ports.bitmap.used == 2
    bare = create(allocs, service("bare", "LoadBalancer", allocateLoadBalancerNodePorts=False))
    assert "nodePort" not in bare["spec"]["ports"][0] and "healthCheckNodePort" not in bare["spec"]
    allocs.release(lb)
    assert allocs.ports.bitmap.used == 0


def test_taken_health_check_port_is_an_internal_error(allocs):
    create(allocs, service("np", "NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    with pytest.raises(APIError) as exc:
        create(allocs, service("lb", "LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=30080))
    assert exc.value.code == 500
    assert exc.value.message == ("Internal error occurred: failed to allocate requested HealthCheck NodePort 30080: "
                                 "provided port is already allocated")
    assert allocs.ports.bitmap.used == 1  # the lb's own nodePort was given back


def test_a_failed_write_gives_everything_back(allocs):
    create(allocs, service("np", "NodePort", ports=[{"port": 80, "nodePort": 30080}]), stored=False)
    assert allocs.ips.bitmap.used == 1 and allocs.ports.bitmap.used == 0
    create(allocs, service("np", "NodePort", ports=[{"port": 80, "nodePort": 30080}]))


def test_dry_run_takes_nothing_and_answers_placeholders(allocs):
    obj = create(allocs, service("dry", "NodePort", ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81}]), dry_run=True)
    assert obj["spec"]["clusterIP"] == "10.96.0.0"
    assert [p["nodePort"] for p in obj["spec"]["ports"]] == [32769, 32770]
    assert allocs.ips.bitmap.used == 1 and allocs.ports.bitmap.used == 0
    create(allocs, service("np", "NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    with pytest.raises(APIError, match="provided port is already allocated"):
        create(allocs, service("dry2", "NodePort", ports=[{"port": 80, "nodePort": 30080}]), dry_run=True)


def test_exhausted_ranges_are_internal_errors():
    allocs = ServiceAllocators("10.0.0.0/30", "30000-30000")
    create(allocs, service("one"))  # 10.0.0.1 is the kubernetes address; .2 is the last one
    with pytest.raises(APIError) as exc:
        create(allocs, service("two"))
    assert exc.value.code == 500
    assert exc.value.message == "Internal error occurred: failed to allocate a serviceIP: range is full"
    allocs = ServiceAllocators("10.0.0.0/24", "30000-30000")
    create(allocs, service("np", "NodePort"))
    with pytest.raises(APIError) as exc:
        create(allocs, service("np2", "NodePort"))
    assert exc.value.message == "Internal error occurred: failed to allocate a nodePort: range is full"


# ---- type changes ----------------------------------------------------------------------------

def test_cluster_ip_to_node_port_keeps_the_ip_and_allocates_a_port(allocs):
    old = create(allocs, service("web"))
    new = update(allocs, updated(old, type="NodePort"), old)
    assert new["spec"]["clusterIP"] == old["spec"]["clusterIP"]
    assert allocs.ports.has(new["spec"]["ports"][0]["nodePort"])


def test_node_port_to_cluster_ip_releases_only_once_stored(allocs):
    old = create(allocs, service("np", "NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    new = updated(old, type="ClusterIP")
    assert "nodePort" not in new["spec"]["ports"][0]
    finish = allocs.begin("UPDATE", INFO, new, old, False)
    assert allocs.ports.has(30080)  # not yet: the write may still fail
    finish(False)
    assert allocs.ports.has(30080)
    update(allocs, updated(old, type="ClusterIP"), old)
    assert not allocs.ports.has(30080)
    create(allocs, service("again", "NodePort", ports=[{"port": 80, "nodePort": 30080}]))


def test_changing_node_ports_takes_new_and_releases_old(allocs):
    old = create(allocs, service("np", "NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    new = update(allocs, updated(old, ports=[{"port": 80, "nodePort": 30081, "protocol": "TCP", "targetPort": 80}]), old)
    assert new["spec"]["ports"][0]["nodePort"] == 30081
    assert allocs.ports.has(30081) and not allocs.ports.has(30080)


def test_external_name_to_cluster_ip_allocates_and_back_releases(allocs):
    old = service("en", "ExternalName", externalName="example.com")
    create(allocs, old)
    new = update(allocs, updated(old, type="ClusterIP", externalName=None), old)
    ip = new["spec"]["clusterIP"]
    assert allocs.ips.has(ip) and new["spec"]["ipFamilies"] == ["IPv4"]
    back = update(allocs, updated(new, type="ExternalName", externalName="example.com"), new)
    assert "clusterIP" not in back["spec"] and not allocs.ips.has(ip)


def test_load_balancer_local_to_cluster_releases_health_check_port(allocs):
    old = create(allocs, service("lb", "LoadBalancer", externalTrafficPolicy="Local"))
    hc = old["spec"]["healthCheckNodePort"]
    new = update(allocs, updated(old, externalTrafficPolicy="Cluster"), old)
    assert "healthCheckNodePort" not in new["spec"] and not allocs.ports.has(hc)
    assert allocs.ports.has(new["spec"]["ports"][0]["nodePort"])


# ---- restore ---------------------------------------------------------------------------------

def test_restore_marks_what_stored_services_hold():
    first = ServiceAllocators(rng=random.Random(6))
    stored = [create(first, service(f"s{i}", "NodePort")) for i in range(20)]
    stored.append(create(first, service("lb", "LoadBalancer", externalTrafficPolicy="Local")))
    stored.append(create(first, alloc_kubernetes_service()))
    again = ServiceAllocators(rng=random.Random(6))  # same random sequence as the first
    assert again.restore(stored) == []
    held_ports = {p["nodePort"] for o in stored for p in o["spec"]["ports"] if p.get("nodePort")}
    held_ports.add(stored[20]["spec"]["healthCheckNodePort"])
    assert len(held_ports) == 22
    assert all(again.ports.has(port) for port in held_ports)
    assert all(again.ips.has(o["spec"]["clusterIP"]) for o in stored)
    fresh = create(again, service("new", "NodePort"))
    assert fresh["spec"]["clusterIP"] not in {o["spec"]["clusterIP"] for o in stored}
    assert fresh["spec"]["ports"][0]["nodePort"] not in held_ports


def test_restore_counts_a_node_port_shared_by_tcp_and_udp_once():
    dns = create(ServiceAllocators(), service("dns", "NodePort", ports=[
        {"name": "udp", "port": 53, "protocol": "UDP", "nodePort": 30053},
        {"name": "tcp", "port": 53, "protocol": "TCP", "nodePort": 30053}]))
    again = ServiceAllocators()
    assert again.restore([dns]) == []
    assert again.ports.has(30053) and again.ports.bitmap.used == 1


def test_restore_reports_double_claims():
    a = service("a", clusterIP="10.96.0.50")
    b = service("b", clusterIP="10.96.0.50")
    allocs = ServiceAllocators()
    warnings = allocs.restore([a, b])
    assert warnings == ["service default/b: cluster IP 10.96.0.50: provided IP is already allocated"]


# ---- storage hooks ---------------------------------------------------------------------------

@pytest.fixture
async def storage():
    store = MemoryStore()
    await store.start()
    cache = WatchCache(store)
    await cache.start()
    st = Storage(store, cache)
    ns_info = registry.by_resource("", "v1", "namespaces")
    await st.create(ns_info, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}},
                    WriteOptions())
    allocs = alloc.install(st)
    yield st, allocs
    await cache.stop()
    await store.stop()


def raw_service(name: str, node_port: int | None = None, type_: str = "NodePort") -> dict:
    port = {"port": 80, **({"nodePort": node_port} if node_port else {})}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": type_, "ports": [port], "selector": {"app": name}}}


async def test_concurrent_creates_of_one_node_port_have_exactly_one_winner(storage):
    st, allocs = storage
    results = await asyncio.gather(*(st.create(INFO, "default", raw_service(f"s{i}", 30080), WriteOptions())
                                     for i in range(50)), return_exceptions=True)
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if isinstance(r, APIError)]
    assert len(winners) == 1 and len(losers) == 49
    assert all(e.code == 422 and e.message.endswith("provided port is already allocated") for e in losers)
    assert allocs.ips.bitmap.used == 2 and allocs.ports.bitmap.used == 1  # nothing leaked


async def test_storage_releases_on_delete_and_on_failed_write(storage):
    st, allocs = storage
    created = await st.create(INFO, "default", raw_service("a", 30080), WriteOptions())
    with pytest.raises(APIError) as exc:  # same name: the store refuses, the allocations are undone
        await st.create(INFO, "default", raw_service("a", 30081), WriteOptions())
    assert exc.value.code == 409 and not allocs.ports.has(30081)
    with pytest.raises(APIError) as exc:  # validation fails after allocation
        bad = raw_service("b", 30082)
        bad["spec"]["sessionAffinity"] = "Sometimes"
        await st.create(INFO, "default", bad, WriteOptions())
    assert exc.value.code == 422 and not allocs.ports.has(30082) and allocs.ips.bitmap.used == 2
    await st.create(INFO, "default", raw_service("dry", 30083), WriteOptions(dry_run=True))
    assert not allocs.ports.has(30083) and allocs.ips.bitmap.used == 2
    await st.delete(INFO, "default", "a", {})
    assert not allocs.ports.has(30080) and not allocs.ips.has(created["spec"]["clusterIP"])


async def test_storage_patch_type_change(storage):
    st, allocs = storage
    await st.create(INFO, "default", raw_service("web", type_="ClusterIP"), WriteOptions())
    patched, _ = await st.patch(INFO, "default", "web", "merge", {"spec": {"type": "NodePort"}}, WriteOptions())
    node_port = patched["spec"]["ports"][0]["nodePort"]
    assert allocs.ports.has(node_port)
    await st.patch(INFO, "default", "web", "merge", {"spec": {"type": "ClusterIP"}}, WriteOptions())
    assert not allocs.ports.has(node_port)


async def test_kubernetes_service_is_created_and_its_port_reconciled(storage):
    st, allocs = storage
    first = await alloc.ensure_kubernetes_service(st, allocs, 6443)
    assert first["spec"]["clusterIP"] == "10.96.0.1"
    assert first["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]
    assert first["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
    assert "selector" not in first["spec"]
    moved = await alloc.ensure_kubernetes_service(st, allocs, 7443)
    assert moved["spec"]["ports"][0]["targetPort"] == 7443
    assert moved["metadata"]["uid"] == first["metadata"]["uid"]
