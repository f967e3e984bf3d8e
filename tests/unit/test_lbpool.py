"""The load-balancer pool and the address decision (core/lbpool.py)."""

from __future__ import annotations

import ipaddress

import pytest

from pocketkube.core.lbpool import DEFAULT_LB_RANGE, Pool, PoolError, check_pool, choose_address, wants_load_balancer

NODES = ipaddress.IPv4Network("172.18.0.0/24")
USED = {"172.18.0.1": "the host", "172.18.0.2": "node pocketkube-node-1", "172.18.0.3": "node pocketkube-node-2"}
OTHERS = {"pod network": ipaddress.IPv4Network("10.244.0.0/16"), "service network": ipaddress.IPv4Network("10.96.0.0/12")}


def svc(name="web", ips=(), requested=None, annotations=None, **spec):
    meta = {"name": name, "namespace": "default", "annotations": annotations or {}}
    body = {"type": "LoadBalancer", **spec}
    if requested:
        body["loadBalancerIP"] = requested
    return {"metadata": meta, "spec": body,
            "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}


def test_parse_ranges_and_cidrs():
    pool = Pool.parse("172.18.0.10-172.18.0.12, 172.18.0.64/31")
    assert list(pool.addresses()) == ["172.18.0.10", "172.18.0.11", "172.18.0.12", "172.18.0.64", "172.18.0.65"]
    assert pool.size == 5 and "172.18.0.11" in pool and "172.18.0.13" not in pool and "nonsense" not in pool
    assert [str(n) for n in pool.networks()] == ["172.18.0.10/31", "172.18.0.12/32", "172.18.0.64/31"]
    assert Pool.parse(DEFAULT_LB_RANGE).size == 64


@pytest.mark.parametrize("text, message", [
    ("172.18.0.20-172.18.0.10", "comes before"),
    ("banana", "use FIRST-LAST"),
    ("172.18.0.1/24", "use FIRST-LAST"),  # host bits set
    ("fd00::1-fd00::2", "use FIRST-LAST"),
])
def test_parse_refuses(text, message):
    with pytest.raises(PoolError, match=message):
        Pool.parse(text)


def test_default_pool_fits_the_default_network_with_the_most_nodes():
    used = {f"172.18.0.{i}": "a node" for i in range(1, 66)}  # the host and 64 nodes
    check_pool(Pool.parse(DEFAULT_LB_RANGE), NODES, used, OTHERS)


@pytest.mark.parametrize("text, message", [
    ("172.18.0.2-172.18.0.9", "172.18.0.2 is node pocketkube-node-1"),
    ("10.244.1.0/28", "overlaps the pod network 10.244.0.0/16"),
    ("192.168.7.0/28", "not inside the node network 172.18.0.0/24"),
    ("172.18.0.250-172.18.0.255", "broadcast"),
])
def test_check_pool_refuses(text, message):
    with pytest.raises(PoolError, match=message):
        check_pool(Pool.parse(text), NODES, USED, OTHERS)


POOL = Pool.parse("172.18.0.200-172.18.0.202")


def test_lowest_free_then_keeps_its_own():
    assert choose_address("default/web", svc(), POOL, {"172.18.0.200": "default/a"}).ip == "172.18.0.201"
    mine = svc(ips=["172.18.0.202"])
    assert choose_address("default/web", mine, POOL, {"172.18.0.202": "default/web"}).ip == "172.18.0.202"
    # An address outside the (changed) pool is replaced.
    assert choose_address("default/web", svc(ips=["172.18.0.9"]), POOL, {}).ip == "172.18.0.200"


def test_exhausted():
    full = {ip: f"default/s{i}" for i, ip in enumerate(POOL.addresses())}
    decision = choose_address("default/web", svc(), POOL, full)
    assert decision.ip is None and "no address left in the load-balancer pool 172.18.0.200-172.18.0.202 (3" in decision.message


def test_requests():
    assert choose_address("default/web", svc(requested="172.18.0.202"), POOL, {}).ip == "172.18.0.202"
    by_annotation = svc(annotations={"metallb.universe.tf/loadBalancerIPs": "172.18.0.201"}, requested="172.18.0.202")
    assert choose_address("default/web", by_annotation, POOL, {}).ip == "172.18.0.201"  # the annotation wins
    taken = choose_address("default/web", svc(requested="172.18.0.202"), POOL, {"172.18.0.202": "other/x"})
    assert taken.ip is None and taken.message == "requested address 172.18.0.202 is already used by Service other/x"
    outside = choose_address("default/web", svc(annotations={"io.cilium/lb-ipam-ips": "10.0.0.1"}), POOL, {})
    assert outside.ip is None and "not in the load-balancer pool" in outside.message
    two = choose_address("default/web", svc(annotations={"lbipam.cilium.io/ips": "172.18.0.200,172.18.0.201"}),
                         POOL, {})
    assert two.ip is None and "exactly one IPv4 address" in two.message
    # A requested address wins over the one held (the request changed): the old one is given back.
    moved = svc(ips=["172.18.0.200"], requested="172.18.0.201")
    assert choose_address("default/web", moved, POOL, {"172.18.0.200": "default/web"}).ip == "172.18.0.201"


def test_which_services():
    assert wants_load_balancer(svc())
    assert wants_load_balancer(svc(loadBalancerClass="pocketkube.io/l2"))
    assert not wants_load_balancer(svc(loadBalancerClass="example.com/other"))
    assert not wants_load_balancer({"spec": {"type": "NodePort"}})
