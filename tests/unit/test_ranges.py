"""Choosing a cluster's address ranges from free space (core/ranges.py), over route and address
tables as `ip -j` prints them: Docker's networks, another pocketkube cluster, explicit flags."""

from __future__ import annotations

import ipaddress

import pytest

from pocketkube.core import ranges
from pocketkube.core.ranges import RangeError, Ranges, Taken, choose, taken_by_cluster, taken_on_host

# A host with Docker: its default bridge, a user-defined network (or kind's) and the uplink.
DOCKER_ROUTES = [
    {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0", "flags": []},
    {"dst": "172.17.0.0/16", "dev": "docker0", "protocol": "kernel", "scope": "link", "prefsrc": "172.17.0.1",
     "flags": ["linkdown"]},
    {"dst": "172.18.0.0/16", "dev": "br-5f1d2c", "protocol": "kernel", "scope": "link", "prefsrc": "172.18.0.1"},
    {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link", "prefsrc": "192.0.2.2"},
    {"type": "local", "dst": "172.18.0.1", "table": "local", "dev": "br-5f1d2c"},
]
ADDRESSES = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.0.2.2", "prefixlen": 24}]},
]


def test_nothing_in_the_way_keeps_todays_ranges():
    chosen, notes = choose(taken_on_host([{"dst": "default", "dev": "eth0"}], ADDRESSES))
    assert chosen == Ranges("172.18.0.0/24", "10.244.0.0/16", "10.96.0.0/12", "172.18.0.128/26")
    assert chosen == ranges.DEFAULTS and chosen.cluster_dns == "10.96.0.10" and notes == []


def test_dockers_networks_are_skipped_and_the_note_says_why():
    chosen, notes = choose(taken_on_host(DOCKER_ROUTES, ADDRESSES))
    assert chosen.node_cidr == "172.19.0.0/24" and chosen.lb_range == "172.19.0.128/26"
    assert (chosen.pod_cidr, chosen.service_cidr) == ("10.244.0.0/16", "10.96.0.0/12")
    assert notes == ["nodes: skipped 172.18.0.0/24 (and 255 more after it): overlaps route 172.18.0.0/16 "
                     "dev br-5f1d2c; chose 172.19.0.0/24"]


def test_another_cluster_is_skipped_by_its_record_and_by_its_routes():
    first, _ = choose([])
    taken = taken_by_cluster("a", first)
    second, notes = choose(taken)
    assert second == Ranges("172.18.1.0/24", "10.245.0.0/16", "10.112.0.0/12", "172.18.1.128/26")
    assert "services: skipped 10.96.0.0/12: overlaps cluster 'a' (services 10.96.0.0/12); chose 10.112.0.0/12" \
        in notes
    # the same cluster seen only through the routes it left on the host
    routes = [{"dst": "10.244.0.0/16", "type": "unreachable", "metric": 4242, "protocol": "242"},
              {"dst": "10.96.0.0/12", "dev": "pk0", "gateway": "172.18.0.2", "protocol": "242"},
              {"dst": "172.18.0.0/24", "dev": "pk0", "protocol": "kernel"}]
    assert choose(taken_on_host(routes, []))[0] == second
    third, notes = choose(taken + taken_by_cluster("b", second))
    assert third.node_cidr == "172.18.2.0/24" and third.service_cidr == "10.128.0.0/12"
    assert notes[0] == ("nodes: skipped 172.18.0.0/24 (and 1 more after it): overlaps cluster 'a' (nodes 172.18.0.0/24); "
                        "overlaps cluster 'b' (nodes 172.18.1.0/24); chose 172.18.2.0/24")


def test_a_route_in_another_table_and_an_address_without_a_route_count_too():
    routes = [{"dst": "10.96.0.0/16", "dev": "wg0", "table": "51820"}]
    addresses = [{"ifname": "tun0", "addr_info": [{"family": "inet", "local": "10.244.7.1", "prefixlen": 32}]}]
    chosen, notes = choose(taken_on_host(routes, addresses))
    assert (chosen.pod_cidr, chosen.service_cidr) == ("10.245.0.0/16", "10.112.0.0/12")
    assert any("route 10.96.0.0/16 dev wg0 table 51820" in n for n in notes)
    assert any("address 10.244.7.1/32 on tun0" in n for n in notes)


def test_explicit_ranges_are_kept_and_the_rest_chosen_around_them():
    chosen, notes = choose(taken_on_host(DOCKER_ROUTES, ADDRESSES), node_cidr="172.30.5.0/24",
                           pod_cidr="10.250.0.0/16", service_cidr="10.244.0.0/15")
    assert chosen == Ranges("172.30.5.0/24", "10.250.0.0/16", "10.244.0.0/15", "172.30.5.128/26")
    chosen, _ = choose([], pod_cidr="10.96.0.0/16")  # the service range moves out of its way
    assert chosen.service_cidr == "10.112.0.0/12"
    # a free pod range is chosen around an explicit service range that holds the default one
    chosen, _ = choose([], service_cidr="10.240.0.0/12")
    assert chosen.pod_cidr == "10.224.0.0/16"
    chosen, _ = choose([], lb_range="172.18.0.200-172.18.0.210")
    assert chosen.lb_range == "172.18.0.200-172.18.0.210"


@pytest.mark.parametrize("kwargs, taken, message", [
    ({"node_cidr": "172.18.0.0/24"}, DOCKER_ROUTES,
     "--node-cidr 172.18.0.0/24 overlaps route 172.18.0.0/16 dev br-5f1d2c; pass a free range such as "
     "--node-cidr 172.19.0.0/24, or leave the flag out and one is chosen"),
    ({"pod_cidr": "10.96.0.0/16", "service_cidr": "10.96.0.0/12"}, [],
     "--service-cidr 10.96.0.0/12 overlaps this cluster's pods (10.96.0.0/16); pass a free range such as "
     "--service-cidr 10.112.0.0/12"),
    ({"service_cidr": "172.17.0.0/16"}, DOCKER_ROUTES,
     "--service-cidr 172.17.0.0/16 overlaps route 172.17.0.0/16 dev docker0; pass a free range such as "
     "--service-cidr 10.96.0.0/12"),
    ({"node_cidr": "172.18.0.0/25"}, [], "the node network needs at least a /24"),
    ({"pod_cidr": "10.244.0.0/20"}, [], "the pod network needs at least a /17"),
    ({"service_cidr": "10.0.0.0/8"}, [], "must be between a /12 and a /28"),
    ({"service_cidr": "10.96.0.1/12"}, [], "is not an IPv4 network in CIDR form"),
])
def test_a_range_that_cannot_be_used_is_refused_with_what_to_pass(kwargs, taken, message):
    with pytest.raises(RangeError) as err:
        choose(taken_on_host(taken, []), **kwargs)
    assert message in str(err.value)


def test_an_explicit_range_held_by_another_cluster_names_it():
    with pytest.raises(RangeError, match=r"--pod-cidr 10.244.0.0/16 overlaps cluster 'a' \(pods 10.244.0.0/16\); "
                                         r"pass a free range such as --pod-cidr 10.245.0.0/16"):
        choose(taken_by_cluster("a", ranges.DEFAULTS), pod_cidr="10.244.0.0/16")


def test_no_free_range_left_says_which_flag_gives_one():
    everything = [Taken(ipaddress.IPv4Network("172.16.0.0/12"), "route 172.16.0.0/12 dev vpn0")]
    with pytest.raises(RangeError, match="no free nodes range is left on this machine; give one with --node-cidr"):
        choose(everything)
