"""The shared change tracker: folding watch events into previous -> current, collapsing no-op
changes, merging EndpointSlices per service port, and the UDP conntrack bookkeeping."""

from __future__ import annotations

import copy

import pytest

from pocketkube.proxy.changetracker import ChangeTracker
from pocketkube.proxy.servicemap import Endpoint, ServicePortName, categorize_endpoints, service_ports

SPN = ServicePortName("ns", "web", "http", "TCP")
UDP = ServicePortName("ns", "dns", "dns", "UDP")


def service(name="web", cluster_ip="10.96.0.20", port=80, protocol="TCP", port_name=None, **spec):
    port_name = port_name if port_name is not None else ("dns" if protocol == "UDP" else "http")
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": spec.pop("rv", "1")},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip,
                     "ports": [{"name": port_name, "port": port, "protocol": protocol}], **spec}}


def endpoint_slice(name="web", ips=("10.244.1.2",), port=8080, protocol="TCP", slice_name=None, ready=True,
                   port_name=None, rv="1"):
    port_name = port_name if port_name is not None else ("dns" if protocol == "UDP" else "http")
    return {"metadata": {"namespace": "ns", "name": slice_name or f"{name}-abc", "resourceVersion": rv,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": protocol}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}, "nodeName": "node-1"} for ip in ips]}


def test_add_then_delete_before_sync_leaves_nothing_pending():
    t = ChangeTracker("node-1")
    assert t.on_service(None, service())
    assert not t.on_service(service(), None)
    assert not t.pending()
    assert not t.apply()


def test_update_back_to_the_start_collapses():
    t = ChangeTracker("node-1")
    t.on_service(None, service())
    t.apply()
    changed = service(port=81, rv="2")
    assert t.on_service(service(), changed)
    assert not t.on_service(changed, service(rv="3"))
    assert not t.pending()


def test_metadata_only_changes_are_not_changes():
    t = ChangeTracker("node-1")
    t.on_service(None, service())
    t.apply()
    relabelled = copy.deepcopy(service(rv="2"))
    relabelled["metadata"]["labels"] = {"app": "x"}
    assert not t.on_service(service(), relabelled)
    t.on_slice(endpoint_slice())
    t.apply()
    assert not t.on_slice(endpoint_slice(rv="2"))
    assert not t.pending()


def test_apply_folds_everything_at_once():
    t = ChangeTracker("node-1")
    t.on_service(None, service())
    t.on_slice(endpoint_slice(ips=("10.244.1.2", "10.244.2.2")))
    result = t.apply()
    assert result.updated_services == {"ns/web"}
    assert t.services[SPN].cluster_ip == "10.96.0.20"
    assert [str(ep) for ep in t.endpoints[SPN]] == ["10.244.1.2:8080", "10.244.2.2:8080"]
    assert t.endpoints[SPN][0].is_local
    assert not t.apply()


def test_slices_merge_per_port_and_deduplicate():
    t = ChangeTracker("node-1")
    t.on_slice(endpoint_slice(ips=("10.244.1.3", "10.244.1.2"), slice_name="a"))
    t.on_slice(endpoint_slice(ips=("10.244.1.2", "10.244.1.10"), slice_name="b"))
    t.on_slice(endpoint_slice(ips=("10.244.1.9",), slice_name="c", port_name="metrics", port=9090))
    t.apply()
    assert [ep.ip for ep in t.endpoints[SPN]] == ["10.244.1.2", "10.244.1.3", "10.244.1.10"]
    assert [ep.port for ep in t.endpoints[ServicePortName("ns", "web", "metrics", "TCP")]] == [9090]
    t.on_slice(endpoint_slice(slice_name="a"), removed=True)
    t.apply()
    assert [ep.ip for ep in t.endpoints[SPN]] == ["10.244.1.2", "10.244.1.10"]


def test_slice_without_service_label_or_ipv6_is_ignored():
    t = ChangeTracker("node-1")
    unlabelled = endpoint_slice()
    del unlabelled["metadata"]["labels"]
    assert not t.on_slice(unlabelled)
    ipv6 = endpoint_slice()
    ipv6["addressType"] = "IPv6"
    t.on_slice(ipv6)
    t.apply()
    assert t.endpoints == {}


def test_udp_endpoint_gone_is_stale():
    t = ChangeTracker("node-1")
    t.on_service(None, service("dns", "10.96.0.10", 53, "UDP"))
    t.on_slice(endpoint_slice("dns", ("10.244.1.2", "10.244.1.3"), 53, "UDP"))
    t.apply()
    t.on_slice(endpoint_slice("dns", ("10.244.1.3",), 53, "UDP", rv="2"))
    result = t.apply()
    assert [(svc.cluster_ip, str(ep)) for svc, ep in result.stale_endpoints] == [("10.96.0.10", "10.244.1.2:53")]
    assert result.stale_services == []


def test_udp_service_getting_its_first_endpoint_is_stale():
    t = ChangeTracker("node-1")
    t.on_service(None, service("dns", "10.96.0.10", 53, "UDP"))
    t.apply()
    t.on_slice(endpoint_slice("dns", ("10.244.1.2",), 53, "UDP"))
    result = t.apply()
    assert [svc.cluster_ip for svc in result.stale_services] == ["10.96.0.10"]


def test_tcp_changes_need_no_conntrack_cleanup():
    t = ChangeTracker("node-1")
    t.on_service(None, service())
    t.on_slice(endpoint_slice(ips=("10.244.1.2", "10.244.1.3")))
    t.apply()
    t.on_slice(endpoint_slice(ips=("10.244.1.3",), rv="2"))
    t.on_service(service(), None)
    result = t.apply()
    assert not result.stale_endpoints and not result.stale_services and not result.deleted_udp_ports


def test_deleted_udp_port_is_reported():
    t = ChangeTracker("node-1")
    t.on_service(None, service("dns", "10.96.0.10", 53, "UDP"))
    t.apply()
    t.on_service(service("dns", "10.96.0.10", 53, "UDP"), None)
    assert [svc.name for svc in t.apply().deleted_udp_ports] == [UDP]


@pytest.mark.parametrize("spec,expected", [
    ({"sessionAffinity": "ClientIP"}, 10800),
    ({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}, 5),
    ({"sessionAffinity": "None"}, 0),
])
def test_affinity_timeout(spec, expected):
    assert service_ports(service(**spec))[SPN].affinity_seconds == expected


def test_traffic_policies_and_external_addresses():
    svc = service(type="LoadBalancer", externalTrafficPolicy="Local", internalTrafficPolicy="Local",
                  externalIPs=["192.0.2.1"], status=None)
    svc["spec"]["ports"][0]["nodePort"] = 30001
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}, {"hostname": "lb.example"}]}}
    port = service_ports(svc)[SPN]
    assert port.node_port == 30001 and port.external_ips == ("192.0.2.1", "198.51.100.1")
    assert port.external_policy_local and port.internal_policy_local
    assert port.uses_local_endpoints and not port.uses_cluster_endpoints
    cluster_ip_only = service(externalTrafficPolicy="Local")
    assert not service_ports(cluster_ip_only)[SPN].external_policy_local


@pytest.mark.parametrize("endpoints,cluster,local", [
    # (ip, ready, serving, terminating, local)
    ([("a", 1, 1, 0, 1), ("b", 1, 1, 0, 0)], "a b", "a"),
    ([("a", 0, 1, 1, 1), ("b", 1, 1, 0, 0)], "b", "a"),  # local falls back to its terminating one
    ([("a", 0, 1, 1, 1), ("b", 0, 1, 1, 0)], "a b", "a"),
    ([("a", 0, 0, 0, 1), ("b", 0, 0, 1, 0)], "", ""),
])
def test_categorize_endpoints(endpoints, cluster, local):
    svc = service_ports(service(type="NodePort", externalTrafficPolicy="Local"))[SPN]
    svc = type(svc)(**{**svc.__dict__, "node_port": 30001, "external_policy_local": True})
    eps = [Endpoint(ip, 80, bool(r), bool(s), bool(t), "n", bool(lo)) for ip, r, s, t, lo in endpoints]
    cat = categorize_endpoints(eps, svc)
    assert " ".join(ep.ip for ep in cat.cluster) == cluster
    assert " ".join(ep.ip for ep in cat.local) == local
    assert cat.has_any == bool(cluster or local)
