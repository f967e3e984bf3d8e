"""The userspace proxy's pure logic: endpoint choice (round robin, ClientIP affinity and its
expiry under an injected clock, traffic policies Local, terminating fallback), the listeners
a service port needs, the socket filter program, and `pocketkube trace` on a userspace node."""

from __future__ import annotations

import pytest

from pocketkube.proxy.servicemap import Endpoint, ServicePort, ServicePortName
from pocketkube.proxy.trace import NodeInfo, trace_in_cluster, userspace_trace
from pocketkube.proxy.userspace import (DROP_ALL, DROP_EXTERNAL, EXTERNAL, INTERNAL, ClientClassifier,
                                        EndpointChooser, RelaySpec, socket_filter)

NAME = ServicePortName("default", "web", "http", "TCP")
A = Endpoint("10.244.1.2", 8080, node_name="node-1", is_local=True)
B = Endpoint("10.244.2.2", 8080, node_name="node-2")
C = Endpoint("10.244.2.3", 8080, node_name="node-2")


def port(**kw) -> ServicePort:
    return ServicePort(name=NAME, cluster_ip="10.96.0.20", port=80, protocol="TCP", **kw)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_round_robin_visits_every_endpoint_in_turn():
    chooser = EndpointChooser(port(), (A, B, C))
    picks = [chooser.choose("10.244.1.9", INTERNAL, True) for _ in range(6)]
    assert picks == [A, B, C, A, B, C]


def test_failed_endpoints_are_skipped_and_none_left_is_none():
    chooser = EndpointChooser(port(), (A, B))
    assert chooser.choose("c", INTERNAL, True, exclude={A}) == B
    assert chooser.choose("c", INTERNAL, True, exclude={A, B}) is None


def test_affinity_holds_until_the_timeout_then_may_move():
    clock = Clock()
    chooser = EndpointChooser(port(affinity_seconds=10), (A, B, C), clock=clock)
    first = chooser.choose("10.244.1.9", INTERNAL, True)
    for _ in range(5):
        clock.now += 9  # each connection refreshes the entry
        assert chooser.choose("10.244.1.9", INTERNAL, True) == first
    other = chooser.choose("10.244.1.10", INTERNAL, True)  # another client: round robin
    assert other != first
    clock.now += 10.5  # no connection for longer than the timeout
    assert chooser.choose("10.244.1.9", INTERNAL, True) == C  # chosen afresh: round robin's next
    chooser.expire()
    assert "10.244.1.10" not in chooser._affinity


def test_affinity_forgets_an_endpoint_that_failed_or_went_away():
    chooser = EndpointChooser(port(affinity_seconds=10), (A, B), clock=Clock())
    first = chooser.choose("c", INTERNAL, True)
    chooser.forget("c")
    assert chooser.choose("c", INTERNAL, True) != first
    remaining = chooser.choose("c", INTERNAL, True)
    chooser.update(port(affinity_seconds=10), tuple(ep for ep in (A, B) if ep != remaining))
    assert chooser.choose("c", INTERNAL, True) != remaining


def test_terminating_endpoints_are_a_fallback_only():
    terminating = Endpoint("10.244.2.9", 8080, ready=False, serving=True, terminating=True, node_name="node-2")
    gone = Endpoint("10.244.2.8", 8080, ready=False, serving=False, terminating=True, node_name="node-2")
    chooser = EndpointChooser(port(), (A, terminating))
    assert {chooser.choose("c", INTERNAL, True) for _ in range(4)} == {A}
    chooser.update(port(), (terminating, gone))
    assert {chooser.choose("c", INTERNAL, True) for _ in range(4)} == {terminating}


def test_internal_traffic_policy_local():
    chooser = EndpointChooser(port(internal_policy_local=True), (A, B))
    assert chooser.candidates(INTERNAL, True) == [A]
    chooser.update(port(internal_policy_local=True), (B,))
    assert chooser.candidates(INTERNAL, True) == []
    [spec] = chooser.relays(["192.168.77.2"])
    assert spec.drop == DROP_ALL  # endpoints elsewhere: dropped, not refused


def test_external_traffic_policy_local_keeps_pods_and_node_on_every_endpoint():
    svc = port(node_port=30080, external_policy_local=True)
    chooser = EndpointChooser(svc, (A, B))
    assert chooser.candidates(EXTERNAL, False) == [A]
    assert chooser.candidates(EXTERNAL, True) == [A, B]
    assert chooser.candidates(INTERNAL, True) == [A, B]
    chooser.update(svc, (B,))
    assert chooser.candidates(EXTERNAL, False) == []
    specs = chooser.relays(["192.168.77.2", "10.244.1.1"])
    assert specs == [RelaySpec("10.96.0.20", 80, "TCP", NAME, INTERNAL),
                     RelaySpec("192.168.77.2", 30080, "TCP", NAME, EXTERNAL, DROP_EXTERNAL),
                     RelaySpec("10.244.1.1", 30080, "TCP", NAME, EXTERNAL, DROP_EXTERNAL)]


def test_relays_none_without_endpoints_and_one_per_address():
    svc = port(external_ips=("192.0.2.10",), node_port=30080)
    assert EndpointChooser(svc, ()).relays(["192.168.77.2"]) == []  # no listener: the kernel refuses
    specs = EndpointChooser(svc, (A,)).relays(["192.168.77.2"])
    assert [(s.ip, s.port, s.kind, s.drop) for s in specs] == [
        ("10.96.0.20", 80, INTERNAL, None), ("192.0.2.10", 80, EXTERNAL, None), ("192.168.77.2", 30080, EXTERNAL, None)]
    sctp = ServicePort(name=NAME._replace(protocol="SCTP"), cluster_ip="10.96.0.20", port=80, protocol="SCTP")
    assert EndpointChooser(sctp, (A,)).relays([]) == []


def test_client_classifier():
    internal = ClientClassifier("10.244.0.0/16", ["192.168.77.2"])
    assert internal("10.244.3.4") and internal("192.168.77.2")
    assert not internal("192.168.77.1") and not internal("not an address")


def test_socket_filter_programs():
    assert socket_filter(DROP_ALL, "10.244.0.0/16") == [(0x06, 0, 0, 0)]
    program = socket_filter(DROP_EXTERNAL, "10.244.0.0/16")
    assert program[1] == (0x15, 4, 0, 1)  # arrived on lo: the node itself -> accept
    assert program[3][3] == 0xFFFF0000 and program[4][3] == 0x0AF40000  # source in the pod range
    for i, (code, jt, jf, _) in enumerate(program):  # every jump lands inside the program
        assert i + 1 + max(jt, jf) < len(program) or code == 0x06


def run_filter(program, source: str, ifindex: int = 2) -> bool:
    """A classic BPF interpreter for the instructions socket_filter uses: accepted or not."""
    import ipaddress

    a, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x20:  # ld [k]: the ancillary ifindex, or the IPv4 source address
            a = ifindex if k == (-0x1000 + 8) & 0xFFFFFFFF else int(ipaddress.IPv4Address(source))
        elif code == 0x54:
            a &= k
        elif code == 0x15:
            pc += jt if a == k else jf
        elif code == 0x06:
            return k != 0
        pc += 1


def test_socket_filter_source_ranges():
    allow = ("172.18.0.1/32", "198.51.100.0/24")
    alone = socket_filter(None, "10.244.0.0/16", allow)
    assert run_filter(alone, "172.18.0.1") and run_filter(alone, "198.51.100.77")
    assert not run_filter(alone, "172.18.0.2") and not run_filter(alone, "10.244.1.5")
    # with the Local policy's filter after it: both must let the client through
    both = socket_filter(DROP_EXTERNAL, "10.244.0.0/16", ("172.18.0.1/32", "10.244.0.0/16"))
    assert not run_filter(both, "172.18.0.1")  # allowed source, but external and no local endpoint
    assert run_filter(both, "10.244.2.3")  # a pod
    assert not run_filter(both, "192.0.2.1")
    svc = port(external_ips=("172.18.0.130",), lb_ips=("172.18.0.130",), source_ranges=allow, node_port=30080)
    specs = {s.ip: s for s in EndpointChooser(svc, (A,)).relays(["192.168.77.2"])}
    assert specs["172.18.0.130"].allow == allow and specs["192.168.77.2"].allow == ()


# ---- trace on a userspace node --------------------------------------------------------------

NODE = NodeInfo("pk-node-1", "172.18.0.2", {"172.18.0.2", "10.244.1.1"})
SERVICES = [
    {"metadata": {"namespace": "default", "name": "web"},
     "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "sessionAffinity": "ClientIP",
              "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}},
    {"metadata": {"namespace": "default", "name": "local"},
     "spec": {"type": "NodePort", "clusterIP": "10.96.0.22", "externalTrafficPolicy": "Local",
              "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30082}]}},
    {"metadata": {"namespace": "default", "name": "empty"},
     "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.21", "ports": [{"port": 80, "protocol": "TCP"}]}},
]


def slice_of(service: str, *endpoints: tuple[str, str]) -> dict:
    return {"metadata": {"namespace": "default", "name": f"{service}-1",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": node}
                          for ip, node in endpoints]}


SLICES = [slice_of("web", ("10.244.1.5", "pk-node-1"), ("10.244.2.5", "pk-node-2")),
          slice_of("local", ("10.244.2.6", "pk-node-2"))]


def trace(source: str, to: str, from_node: bool = False, proto: str = "tcp"):
    address, port_text = to.rsplit(":", 1)
    return userspace_trace(NODE, SERVICES, SLICES, source, address, int(port_text), proto, from_node)


def test_trace_relay_candidates_and_affinity():
    result = trace("10.244.1.9", "10.96.0.20:80")
    assert result.summary() == "10.244.1.5:8080, 10.244.2.5:8080"
    assert result.masqueraded() is True
    from pocketkube.proxy.trace import format_trace
    text = format_trace(result)
    assert "listener 10.96.0.20:80/tcp of default/web:http (ClusterIP)" in text
    assert "candidates: 10.244.1.5:8080, 10.244.2.5:8080" in text
    assert "ClientIP affinity" in text and "10800s" in text
    assert "source rewritten to the node (userspace relays always proxy)" in text


def test_trace_external_policy_local_drops_outsiders_only():
    assert trace("172.18.0.1", "172.18.0.2:30082").summary() == "DROP"
    assert trace("10.244.1.9", "172.18.0.2:30082").summary() == "10.244.2.6:8080"
    assert trace("172.18.0.2", "172.18.0.2:30082", from_node=True).summary() == "10.244.2.6:8080"


def test_trace_no_relay_is_refused_and_unknown_service_address_has_no_route():
    refused = trace("10.244.1.9", "10.96.0.21:80")
    assert refused.summary() == "REJECT" and refused.outcomes[0].reject_with == "tcp reset"
    assert trace("10.244.1.9", "10.96.0.20:81").summary() == "REJECT"  # a port it does not serve
    assert trace("10.244.1.9", "172.18.0.2:30999").summary() == "REJECT"
    assert trace("10.244.1.9", "10.96.0.99:80").summary() == "NO ROUTE"
    assert trace("10.244.1.9", "10.244.2.5:8080").summary() == "10.244.2.5:8080"  # not a Service: routed


class FakeClient:
    def __init__(self, mode: str | None):
        self.mode = mode

    async def list(self, api_version, resource, namespace=None, label_selector="", field_selector=""):
        node = {"metadata": {"name": "pk-node-1"}, "spec": {"podCIDR": "10.244.1.0/24"},
                "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]}}
        items = {"nodes": [node], "services": SERVICES, "endpointslices": SLICES}[resource]
        return {"items": items, "metadata": {"resourceVersion": "1"}}

    async def get(self, api_version, resource, name, namespace=None, subresource=""):
        from pocketkube.core import errors
        if resource != "daemonsets" or self.mode is None:
            raise errors.APIError(404, "NotFound", f'{resource} "{name}" not found')
        return {"spec": {"template": {"spec": {"containers": [{"args": ["--kubeconfig=in-cluster",
                                                                        f"--mode={self.mode}"]}]}}}}


@pytest.mark.parametrize("mode,expect", [("userspace", "relayed to 10.244."), ("nftables", "DNAT to 10.244."),
                                         (None, "DNAT to 10.244.")])
async def test_trace_in_cluster_reads_the_mode_from_the_daemonset(mode, expect):
    text = await trace_in_cluster(FakeClient(mode), source="host", to="10.96.0.20:80", cluster_name="pk")
    assert expect in text
    assert text.splitlines()[0].startswith("on node pk-node-1" + (" (userspace proxy)" if mode == "userspace" else ","))
