"""The DNS handler's answer caches (pocketkube/dns/server.py: DNSHandler): a cached answer is
byte for byte the answer the slow path gives for the same query, for the query's own ID, name
spelling and EDNS/TC state, and no answer outlives a change of the view it came from."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from pocketkube.dns.records import Records
from pocketkube.dns.server import DNSHandler, Metrics
from pocketkube.dns.view import ClusterView

ZONE = "cluster.local"


def service(name, ip, ns="default", type_="ClusterIP"):
    spec = {"type": type_, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    if ip:
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def endpoint_slice(service_name, ips, ns="default"):
    return {"metadata": {"namespace": ns, "name": f"{service_name}-abcde",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips]}


def setup(ttl=30):
    view = ClusterView()
    view.apply_namespace({"metadata": {"name": "default"}})
    view.apply_service(service("web", "10.96.0.20"))
    view.apply_service(service("db", "None"))  # headless
    view.apply_endpointslice(endpoint_slice("db", ["10.244.0.5"]))
    view.mark_synced()
    records = Records(view, zone=ZONE, ttl=ttl)
    return view, DNSHandler(records, view, Metrics("dns://127.0.0.1:53", ZONE))


def ask(handler, name, ident=1234, rdtype="A", tcp=False, payload=None, want_dnssec=False):
    q = dns.message.make_query(name, rdtype, use_edns=payload is not None, payload=payload or 512,
                               want_dnssec=want_dnssec)
    q.id = ident
    wire = q.to_wire()
    out = handler.handle(wire, tcp)
    assert isinstance(out, bytes)
    return dns.message.from_wire(out), out


def addresses(msg):
    return sorted(rd.address for rrset in msg.answer for rd in rrset if rrset.rdtype == dns.rdatatype.A)


def fresh(view, name, **kw):
    """The same question answered by a handler with empty caches (the slow path)."""
    records = Records(view, zone=ZONE, ttl=30)
    return ask(DNSHandler(records, view, Metrics("dns://127.0.0.1:53", ZONE)), name, **kw)[1]


def test_repeated_query_is_the_slow_paths_answer_with_the_new_id():
    view, h = setup()
    first, raw1 = ask(h, "web.default.svc.cluster.local", ident=1)
    again, raw2 = ask(h, "web.default.svc.cluster.local", ident=0xBEEF)
    assert again.id == 0xBEEF and first.id == 1
    assert raw2[2:] == raw1[2:]
    assert raw2 == fresh(view, "web.default.svc.cluster.local", ident=0xBEEF)
    assert addresses(again) == ["10.96.0.20"]


def test_any_spelling_of_a_name_is_answered_in_its_own_case():
    view, h = setup()
    ask(h, "web.default.svc.cluster.local")
    msg, raw = ask(h, "WeB.Default.SVC.cluster.local", ident=77)
    assert msg.question[0].name.to_text() == "WeB.Default.SVC.cluster.local."
    assert msg.id == 77 and addresses(msg) == ["10.96.0.20"]
    assert raw == fresh(view, "WeB.Default.SVC.cluster.local", ident=77)
    msg2, raw2 = ask(h, "WEB.DEFAULT.SVC.CLUSTER.LOCAL", ident=78)  # a third spelling, from the lowercased cache
    assert msg2.question[0].name.to_text() == "WEB.DEFAULT.SVC.CLUSTER.LOCAL."
    assert raw2 == fresh(view, "WEB.DEFAULT.SVC.CLUSTER.LOCAL", ident=78)


def test_a_service_change_or_removal_is_seen_by_the_next_query():
    view, h = setup()
    assert addresses(ask(h, "web.default.svc.cluster.local")[0]) == ["10.96.0.20"]
    view.apply_service(service("web", "10.96.0.21"))
    assert addresses(ask(h, "web.default.svc.cluster.local")[0]) == ["10.96.0.21"]
    view.delete_service(service("web", "10.96.0.21"))
    gone, _ = ask(h, "web.default.svc.cluster.local")
    assert gone.rcode() == dns.rcode.NXDOMAIN and not gone.answer


def test_a_headless_services_endpoint_change_is_seen_by_the_next_query():
    view, h = setup()
    assert addresses(ask(h, "db.default.svc.cluster.local")[0]) == ["10.244.0.5"]
    view.apply_endpointslice(endpoint_slice("db", ["10.244.0.5", "10.244.0.6"]))
    assert addresses(ask(h, "db.default.svc.cluster.local")[0]) == ["10.244.0.5", "10.244.0.6"]
    view.delete_endpointslice(endpoint_slice("db", []))
    empty, _ = ask(h, "db.default.svc.cluster.local")
    assert not addresses(empty)


def test_a_negative_answer_is_not_kept_once_the_name_exists():
    view, h = setup()
    assert ask(h, "new.default.svc.cluster.local")[0].rcode() == dns.rcode.NXDOMAIN
    view.apply_service(service("new", "10.96.0.30"))
    assert addresses(ask(h, "new.default.svc.cluster.local")[0]) == ["10.96.0.30"]


def test_ttls_are_the_configured_ones_from_the_cache():
    view, h = setup(ttl=5)
    for _ in range(3):
        msg, _ = ask(h, "web.default.svc.cluster.local")
        assert [rrset.ttl for rrset in msg.answer] == [5]
    negative, _ = ask(h, "nope.default.svc.cluster.local")
    assert negative.authority and negative.authority[0].ttl == 5


def test_edns_and_its_do_bit_are_part_of_the_cached_question():
    view, h = setup()
    plain, _ = ask(h, "web.default.svc.cluster.local")
    assert plain.edns == -1
    edns, raw = ask(h, "web.default.svc.cluster.local", payload=1232, want_dnssec=True)
    assert edns.edns == 0 and edns.ednsflags & dns.flags.DO
    assert raw == fresh(view, "web.default.svc.cluster.local", payload=1232, want_dnssec=True)
    edns_no_do, _ = ask(h, "web.default.svc.cluster.local", payload=1232)
    assert edns_no_do.edns == 0 and not edns_no_do.ednsflags & dns.flags.DO
    assert ask(h, "web.default.svc.cluster.local")[0].edns == -1


def test_truncation_follows_each_querys_size_and_transport():
    view = ClusterView()
    view.apply_namespace({"metadata": {"name": "default"}})
    view.apply_service(service("many", "None"))
    view.apply_endpointslice(endpoint_slice("many", [f"10.244.1.{i}" for i in range(1, 61)], ns="default"))
    view.mark_synced()
    h = DNSHandler(Records(view, zone=ZONE, ttl=30), view, Metrics("dns://127.0.0.1:53", ZONE))
    name = "many.default.svc.cluster.local"
    for _ in range(2):  # the second time from the caches
        small, raw = ask(h, name)
        assert small.flags & dns.flags.TC and len(raw) <= 512
        big, _ = ask(h, name, payload=4096)
        assert not big.flags & dns.flags.TC and len(addresses(big)) == 60
        over_tcp, _ = ask(h, name, tcp=True)
        assert not over_tcp.flags & dns.flags.TC and len(addresses(over_tcp)) == 60


def test_each_answer_is_counted_once_in_the_metrics():
    _, h = setup()
    for i in range(5):
        ask(h, "web.default.svc.cluster.local", ident=i)
    text = h.metrics.render()
    line = next(x for x in text.splitlines() if x.startswith("coredns_dns_requests_total") and 'type="A"' in x)
    assert line.endswith(" 5")
    count = next(x for x in text.splitlines() if x.startswith("coredns_dns_request_duration_seconds_count"))
    assert count.endswith(" 5")
