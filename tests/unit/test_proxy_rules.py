"""The nftables rules the proxy generates, checked by following packets through them with
the tracer (kube-proxy's packetFlowTest style): where a first packet ends up (endpoints it may
reach, REJECT, DROP, or untouched) and whether it is masqueraded."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import pytest

from pocketkube.proxy.changetracker import ChangeTracker
from pocketkube.proxy.nftables import NftablesConfig, build_ruleset
from pocketkube.proxy.ruleset import Dnat, RandomOneIn, render_rule
from pocketkube.proxy.trace import Tracer, format_trace

NODE = "node-1"
NODE_IP = "172.18.0.2"
NODE_ADDRESSES = {NODE_IP, "10.244.1.1"}
HOST = "172.18.0.1"
POD = "10.244.1.50"  # a client pod on this node
REMOTE_POD = "10.244.2.50"  # a client pod on another node
OUTSIDE = "203.0.113.9"  # a client outside the cluster


def service(name: str, cluster_ip: str, ports=(("http", 80, "TCP", 0),), **spec) -> dict:
    return {"metadata": {"namespace": "ns", "name": name},
            "spec": {"type": spec.pop("type", "ClusterIP"), "clusterIP": cluster_ip,
                     "ports": [{"name": n, "port": p, "protocol": proto, **({"nodePort": np} if np else {})}
                               for n, p, proto, np in ports], **spec}}


def endpoint(ip: str, node: str = NODE, ready: bool = True, serving: bool | None = None,
             terminating: bool = False) -> dict:
    conditions = {"ready": ready, "terminating": terminating}
    if serving is not None:
        conditions["serving"] = serving
    return {"addresses": [ip], "conditions": conditions, "nodeName": node}


def endpoint_slice(service_name: str, endpoints: list[dict], ports=(("http", 8080, "TCP"),), suffix="a") -> dict:
    return {"metadata": {"namespace": "ns", "name": f"{service_name}-{suffix}",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]}


def ruleset_for(services: list[dict], slices: list[dict], node: str = NODE):
    tracker = ChangeTracker(node)
    for svc in services:
        tracker.on_service(None, svc)
    for es in slices:
        tracker.on_slice(es)
    tracker.apply()
    return build_ruleset(NftablesConfig(node_name=node), tracker.services, tracker.endpoints)


@dataclass
class Flow:
    name: str
    source: str
    dest: str
    port: int
    output: str  # endpoints reached ("a:p, b:p"), "REJECT", "DROP", or the untouched destination
    masq: bool | None  # None: not checked (dropped / rejected) or differs per endpoint
    proto: str = "tcp"
    from_node: bool = False


def run_flows(ruleset, flows: list[Flow], affinity=None) -> None:
    tracer = Tracer(ruleset, NODE_ADDRESSES, affinity)
    for flow in flows:
        trace = tracer.trace(flow.source, flow.dest, flow.port, flow.proto, from_node=flow.from_node)
        detail = f"flow {flow.name!r}:\n{format_trace(trace)}"
        assert trace.summary() == flow.output, detail
        if flow.masq is not None:
            assert trace.masqueraded() is flow.masq, detail


SERVICES = [
    service("web", "10.96.0.20", (("http", 80, "TCP", 30080),), type="NodePort"),
    service("local", "10.96.0.21", (("http", 80, "TCP", 30081),), type="NodePort", externalTrafficPolicy="Local"),
    service("remote-only", "10.96.0.22", (("http", 80, "TCP", 30082),), type="NodePort",
            externalTrafficPolicy="Local"),
    service("empty", "10.96.0.23", (("http", 80, "TCP", 30083),), type="NodePort"),
    service("ext", "10.96.0.24", externalIPs=["192.0.2.10"]),
    service("itp", "10.96.0.25", internalTrafficPolicy="Local"),
    service("dns", "10.96.0.10", (("dns", 53, "UDP", 0), ("dns-tcp", 53, "TCP", 0))),
]
SLICES = [
    endpoint_slice("web", [endpoint("10.244.1.2"), endpoint("10.244.2.2", "node-2")]),
    endpoint_slice("local", [endpoint("10.244.1.3"), endpoint("10.244.2.3", "node-2")]),
    endpoint_slice("remote-only", [endpoint("10.244.2.4", "node-2")]),
    endpoint_slice("ext", [endpoint("10.244.2.5", "node-2")]),
    endpoint_slice("itp", [endpoint("10.244.2.6", "node-2")]),
    endpoint_slice("dns", [endpoint("10.244.1.7"), endpoint("10.244.2.7", "node-2")],
                   (("dns", 5353, "UDP"), ("dns-tcp", 5353, "TCP"))),
]


def test_packet_flows():
    run_flows(ruleset_for(SERVICES, SLICES), [
        # ClusterIP, Cluster policy
        Flow("pod to ClusterIP", POD, "10.96.0.20", 80, "10.244.1.2:8080, 10.244.2.2:8080", False),
        Flow("remote pod to ClusterIP", REMOTE_POD, "10.96.0.20", 80, "10.244.1.2:8080, 10.244.2.2:8080", False),
        Flow("host to ClusterIP (routed via this node)", HOST, "10.96.0.20", 80,
             "10.244.1.2:8080, 10.244.2.2:8080", True),
        Flow("node to ClusterIP", NODE_IP, "10.96.0.20", 80, "10.244.1.2:8080, 10.244.2.2:8080", True,
             from_node=True),
        Flow("ClusterIP, wrong port", POD, "10.96.0.20", 81, "REJECT", None),
        Flow("unallocated ClusterIP", POD, "10.96.0.99", 80, "DROP", None),
        Flow("pod IP: not ours", POD, "10.244.2.2", 8080, "10.244.2.2:8080", False),
        # NodePort, Cluster policy: always masqueraded
        Flow("outside to NodePort", OUTSIDE, NODE_IP, 30080, "10.244.1.2:8080, 10.244.2.2:8080", True),
        Flow("pod to NodePort", POD, NODE_IP, 30080, "10.244.1.2:8080, 10.244.2.2:8080", True),
        Flow("NodePort on cni0's address", OUTSIDE, "10.244.1.1", 30080, "10.244.1.2:8080, 10.244.2.2:8080", True),
        Flow("node to own NodePort", NODE_IP, NODE_IP, 30080, "10.244.1.2:8080, 10.244.2.2:8080", True,
             from_node=True),
        Flow("node to 127.0.0.1:NodePort: not supported", NODE_IP, "127.0.0.1", 30080, "127.0.0.1:30080", False,
             from_node=True),
        # NodePort, Local policy: local endpoints, client address kept
        Flow("outside to Local NodePort", OUTSIDE, NODE_IP, 30081, "10.244.1.3:8080", False),
        Flow("pod to Local NodePort: every endpoint", POD, NODE_IP, 30081, "10.244.1.3:8080, 10.244.2.3:8080",
             False),
        Flow("node to Local NodePort: every endpoint, masqueraded", NODE_IP, NODE_IP, 30081,
             "10.244.1.3:8080, 10.244.2.3:8080", True, from_node=True),
        Flow("Local NodePort, no local endpoint: dropped", OUTSIDE, NODE_IP, 30082, "DROP", None),
        Flow("Local NodePort, no local endpoint, from a pod", POD, NODE_IP, 30082, "10.244.2.4:8080", False),
        Flow("ClusterIP of a Local NodePort Service", POD, "10.96.0.22", 80, "10.244.2.4:8080", False),
        # no endpoints at all: refused at once, every way in
        Flow("no endpoints: ClusterIP", POD, "10.96.0.23", 80, "REJECT", None),
        Flow("no endpoints: ClusterIP from the node", NODE_IP, "10.96.0.23", 80, "REJECT", None, from_node=True),
        Flow("no endpoints: NodePort", OUTSIDE, NODE_IP, 30083, "REJECT", None),
        Flow("no endpoints: UDP too", POD, "10.96.0.23", 80, "REJECT", None, proto="udp"),
        # externalIPs
        Flow("outside to externalIP", OUTSIDE, "192.0.2.10", 80, "10.244.2.5:8080", True),
        Flow("pod to externalIP", POD, "192.0.2.10", 80, "10.244.2.5:8080", True),
        Flow("externalIP, other port", OUTSIDE, "192.0.2.10", 81, "192.0.2.10:81", False),
        # internalTrafficPolicy Local with endpoints elsewhere only: dropped
        Flow("internal Local, no local endpoint", POD, "10.96.0.25", 80, "DROP", None),
        # multi-port, named target ports, UDP
        Flow("UDP port", POD, "10.96.0.10", 53, "10.244.1.7:5353, 10.244.2.7:5353", False, proto="udp"),
        Flow("TCP port of the same Service", POD, "10.96.0.10", 53, "10.244.1.7:5353, 10.244.2.7:5353", False),
        Flow("SCTP is not a port of it", POD, "10.96.0.10", 53, "REJECT", None, proto="sctp"),
    ])


def lb_service(name: str, cluster_ip: str, ip: str, node_port: int, ip_mode: str = "VIP", **spec) -> dict:
    svc = service(name, cluster_ip, (("http", 80, "TCP", node_port),), type="LoadBalancer", **spec)
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": ip_mode}]}}
    return svc


def test_load_balancer_addresses():
    """An ingress IP is an external address with the NodePort's traffic policy;
    loadBalancerSourceRanges drops other clients of that address only; ipMode Proxy is left alone."""
    services = [lb_service("lb", "10.96.0.30", "172.18.0.130", 30090),
                lb_service("lb-local", "10.96.0.31", "172.18.0.131", 30091, externalTrafficPolicy="Local"),
                lb_service("lb-ranges", "10.96.0.32", "172.18.0.132", 30092,
                           loadBalancerSourceRanges=["172.18.0.1/32", "198.51.100.7/32"]),
                lb_service("lb-proxy-mode", "10.96.0.33", "172.18.0.133", 30093, ip_mode="Proxy")]
    slices = [endpoint_slice(name, [endpoint("10.244.1.9"), endpoint("10.244.2.9", "node-2")])
              for name in ("lb", "lb-local", "lb-ranges", "lb-proxy-mode")]
    both = "10.244.1.9:8080, 10.244.2.9:8080"
    run_flows(ruleset_for(services, slices), [
        Flow("host to LB IP", HOST, "172.18.0.130", 80, both, True),
        Flow("host to Local LB IP: local endpoint, client address kept", HOST, "172.18.0.131", 80,
             "10.244.1.9:8080", False),
        Flow("pod to Local LB IP: every endpoint", POD, "172.18.0.131", 80, both, False),
        Flow("allowed source", HOST, "172.18.0.132", 80, both, True),
        Flow("allowed source, second range", "198.51.100.7", "172.18.0.132", 80, both, True),
        Flow("other source: dropped", OUTSIDE, "172.18.0.132", 80, "DROP", None),
        Flow("other source, from the node itself: dropped", NODE_IP, "172.18.0.132", 80, "DROP", None,
             from_node=True),
        Flow("source ranges do not cover the NodePort", OUTSIDE, NODE_IP, 30092, both, True),
        Flow("ipMode Proxy: not the proxy's", HOST, "172.18.0.133", 80, "172.18.0.133:80", False),
    ])
    chains = ruleset_for(services, slices).chains
    rendered = "\n".join(render_rule(r) for r in chains[next(c for c in chains if "/lb-ranges/" in c
                                                            and c.startswith("firewall-"))].rules)
    assert rendered == "ip saddr != { 172.18.0.1/32, 198.51.100.7/32 } drop"


def test_hairpin_is_masqueraded_only_when_the_pod_reaches_itself():
    rs = ruleset_for(SERVICES, SLICES)
    trace = Tracer(rs, NODE_ADDRESSES).trace("10.244.1.2", "10.96.0.20", 80)
    by_endpoint = {o.destination: o.masquerade for o in trace.outcomes}
    assert by_endpoint == {"10.244.1.2:8080": True, "10.244.2.2:8080": False}


def test_endpoints_are_chosen_uniformly():
    slices = [endpoint_slice("web", [endpoint(f"10.244.1.{i}") for i in range(2, 7)])]
    trace = Tracer(ruleset_for(SERVICES[:1], slices), NODE_ADDRESSES).trace(POD, "10.96.0.20", 80)
    assert len(trace.outcomes) == 5
    assert {o.probability for o in trace.outcomes} == {Fraction(1, 5)}


def test_cascade_is_one_random_rule_per_endpoint_but_the_last():
    slices = [endpoint_slice("web", [endpoint(f"10.244.1.{i}") for i in range(2, 5)])]
    rs = ruleset_for(SERVICES[:1], slices)
    chain = next(c for name, c in rs.chains.items() if name.startswith("service-") and "/" in name)
    draws = [next((e.modulus for e in rule if isinstance(e, RandomOneIn)), None) for rule in chain.rules]
    targets = [next(e.address for e in rule if isinstance(e, Dnat)) for rule in chain.rules]
    assert draws == [3, 2, None]
    assert targets == ["10.244.1.2", "10.244.1.3", "10.244.1.4"]


@pytest.mark.parametrize("conditions,expected", [
    # (ready, serving, terminating) per endpoint -> what a client reaches
    ([(True, True, False), (False, False, False)], "10.244.1.2:8080"),
    ([(False, False, False), (False, False, False)], "REJECT"),
    ([(False, True, True), (True, True, False)], "10.244.1.3:8080"),  # ready wins over terminating
    ([(False, True, True), (False, False, True)], "10.244.1.2:8080"),  # none ready: serving+terminating
    ([(False, False, True), (False, False, True)], "REJECT"),  # terminating, not serving: unusable
])
def test_ready_endpoints_with_terminating_fallback(conditions, expected):
    eps = [endpoint(f"10.244.1.{i + 2}", ready=r, serving=s, terminating=t) for i, (r, s, t) in enumerate(conditions)]
    rs = ruleset_for(SERVICES[:1], [endpoint_slice("web", eps)])
    run_flows(rs, [Flow("pod to ClusterIP", POD, "10.96.0.20", 80, expected, None)])


def test_session_affinity_returns_a_known_client_to_its_endpoint():
    svc = service("sticky", "10.96.0.30", sessionAffinity="ClientIP",
                  sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    eps = endpoint_slice("sticky", [endpoint("10.244.1.2"), endpoint("10.244.2.2", "node-2")])
    rs = ruleset_for([svc], [eps])
    sets = sorted(name for name in rs.sets if name.startswith("affinity-"))
    assert len(sets) == 2 and all(rs.sets[name].timeout == 60 for name in sets)
    second = next(name for name in sets if "10.244.2.2" in name)
    run_flows(rs, [Flow("new client: random", POD, "10.96.0.30", 80, "10.244.1.2:8080, 10.244.2.2:8080", False)])
    run_flows(rs, [Flow("known client: same endpoint", POD, "10.96.0.30", 80, "10.244.2.2:8080", False)],
              affinity={second: {POD}})
    run_flows(rs, [Flow("another client: random", REMOTE_POD, "10.96.0.30", 80,
                        "10.244.1.2:8080, 10.244.2.2:8080", False)], affinity={second: {POD}})
    trace = Tracer(rs, NODE_ADDRESSES).trace(POD, "10.96.0.30", 80)
    assert all(any("remembered" in step.note for step in o.steps) for o in trace.outcomes)


def test_external_ip_claimed_twice_goes_to_the_first_service():
    a = service("a", "10.96.0.40", externalIPs=["192.0.2.50"])
    b = service("b", "10.96.0.41", externalIPs=["192.0.2.50"])
    rs = ruleset_for([b, a], [endpoint_slice("a", [endpoint("10.244.1.2")]),
                              endpoint_slice("b", [endpoint("10.244.1.3")])])
    run_flows(rs, [Flow("shared externalIP", OUTSIDE, "192.0.2.50", 80, "10.244.1.2:8080", True),
                   Flow("b still has its ClusterIP", POD, "10.96.0.41", 80, "10.244.1.3:8080", False)])


def test_skipped_services_get_no_rules():
    headless = service("headless", "None")
    external_name = service("mail", "", type="ExternalName", externalName="mail.example.com")
    other_proxy = service("other", "10.96.0.50")
    other_proxy["metadata"]["labels"] = {"service.kubernetes.io/service-proxy-name": "foo"}
    labelled_headless = service("labelled", "10.96.0.51")  # a cluster IP, but the label says headless
    labelled_headless["metadata"]["labels"] = {"service.kubernetes.io/headless": ""}
    rs = ruleset_for([headless, external_name, other_proxy, labelled_headless],
                     [endpoint_slice("other", [endpoint("10.244.1.2")]), endpoint_slice("labelled", [endpoint("10.244.1.3")])])
    assert not [name for name in rs.chains if "/" in name]
    run_flows(rs, [Flow("other proxy's Service", POD, "10.96.0.50", 80, "DROP", None),
                   Flow("Service labelled headless", POD, "10.96.0.51", 80, "DROP", None)])


def test_render_is_nft_syntax_for_every_rule():
    text = ruleset_for(SERVICES, SLICES).render()
    assert "numgen random mod 2 0 meta l4proto tcp dnat to 10.244.1.2:8080" in text
    assert "tcp . 30080 : goto external-" in text
    assert "ip saddr . ip daddr @hairpin-endpoints jump mark-for-masquerade" in text
    assert "tcp . 30082 : drop" in text and "tcp . 30083 : goto reject-chain" in text
