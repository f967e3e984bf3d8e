"""The cluster zone's records, table-driven as CoreDNS's handler_test.go: a small cluster fed to
the ClusterView, one question per row, expected sections written as zone-file text and compared
(through our wire encoder) with dnspython's parsing of both."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from pocketkube.dns import wire
from pocketkube.dns.records import Records
from pocketkube.dns.view import ClusterView

SERIAL = 1700000000
SOA = f"cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. {SERIAL} 7200 1800 86400 30"


def service(ns, name, cluster_ip, ports=(), ips=None, type_="ClusterIP", external=None):
    spec = {"type": type_, "ports": [dict(zip(("name", "port", "protocol"), p)) for p in ports]}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
        spec["clusterIPs"] = ips or [cluster_ip]
    if external:
        spec["externalName"] = external
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def endpoint_slice(ns, service_name, endpoints, ports=(), name=None, address_type="IPv4"):
    """endpoints: (ip, hostname or None, ready)"""
    return {"metadata": {"namespace": ns, "name": name or f"{service_name}-abcde",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": address_type,
            "ports": [dict(zip(("name", "port", "protocol"), p)) for p in ports],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}, **({"hostname": h} if h else {})}
                          for ip, h, ready in endpoints]}


def cluster() -> ClusterView:
    view = ClusterView(clock=lambda: SERIAL)
    for ns in ("default", "testns", "kube-system"):
        view.apply_namespace({"metadata": {"name": ns}})
    view.apply_service(service("default", "kubernetes", "10.96.0.1", [("https", 443, "TCP")]))
    view.apply_service(service("kube-system", "kube-dns", "10.96.0.10",
                               [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]))
    view.apply_endpointslice(endpoint_slice("kube-system", "kube-dns", [("10.244.0.2", None, True)],
                                            [("dns", 53, "UDP")]))
    view.apply_service(service("testns", "svc1", "10.0.0.1", [("http", 80, "TCP"), (None, 8080, "TCP")]))
    view.apply_endpointslice(endpoint_slice("testns", "svc1", [("172.0.1.1", "pod-a", True)], [("http", 8080, "TCP")]))
    view.apply_service(service("testns", "svc6", "10.0.0.6", [("http", 80, "TCP")], ips=["10.0.0.6", "1234:abcd::6"]))
    view.apply_service(service("testns", "hdls1", "None", [("http", 80, "TCP")]))
    view.apply_endpointslice(endpoint_slice("testns", "hdls1", [("172.0.0.2", "web-0", True), ("172.0.0.3", None, True),
                                                                ("172.0.0.4", "web-2", False)], [("http", 80, "TCP")]))
    view.apply_endpointslice(endpoint_slice("testns", "hdls1", [("172.0.0.5", None, None)], [("http", 80, "TCP")],
                                            name="hdls1-second"))
    view.apply_service(service("testns", "hdls-empty", "None", [("http", 80, "TCP")]))
    view.apply_service(service("testns", "external", None, type_="ExternalName", external="ext.interwebs.test"))
    view.apply_service(service("testns", "ext-svc", None, type_="ExternalName",
                               external="svc1.testns.svc.cluster.local"))
    view.mark_synced()
    return view


# (question, type, rcode, answer, authority, additional)
CASES = [
    # 2.3 ClusterIP services
    ("svc1.testns.svc.cluster.local.", "A", "NOERROR", ["svc1.testns.svc.cluster.local. 30 IN A 10.0.0.1"], [], []),
    ("kubernetes.default.svc.cluster.local.", "A", "NOERROR",
     ["kubernetes.default.svc.cluster.local. 30 IN A 10.96.0.1"], [], []),
    ("svc1.testns.svc.cluster.local.", "AAAA", "NOERROR", [], [SOA], []),
    ("svc6.testns.svc.cluster.local.", "A", "NOERROR", ["svc6.testns.svc.cluster.local. 30 IN A 10.0.0.6"], [], []),
    ("svc6.testns.svc.cluster.local.", "AAAA", "NOERROR",
     ["svc6.testns.svc.cluster.local. 30 IN AAAA 1234:abcd::6"], [], []),
    ("_http._tcp.svc1.testns.svc.cluster.local.", "SRV", "NOERROR",
     ["_http._tcp.svc1.testns.svc.cluster.local. 30 IN SRV 0 100 80 svc1.testns.svc.cluster.local."], [],
     ["svc1.testns.svc.cluster.local. 30 IN A 10.0.0.1"]),
    ("_https._tcp.kubernetes.default.svc.cluster.local.", "SRV", "NOERROR",
     ["_https._tcp.kubernetes.default.svc.cluster.local. 30 IN SRV 0 100 443 kubernetes.default.svc.cluster.local."],
     [], ["kubernetes.default.svc.cluster.local. 30 IN A 10.96.0.1"]),
    ("svc1.testns.svc.cluster.local.", "SRV", "NOERROR",  # no port named: every port, unnamed ones too
     ["svc1.testns.svc.cluster.local. 30 IN SRV 0 50 80 svc1.testns.svc.cluster.local.",
      "svc1.testns.svc.cluster.local. 30 IN SRV 0 50 8080 svc1.testns.svc.cluster.local."], [],
     ["svc1.testns.svc.cluster.local. 30 IN A 10.0.0.1"]),
    ("_https._tcp.svc1.testns.svc.cluster.local.", "SRV", "NXDOMAIN", [], [SOA], []),
    ("_http._udp.svc1.testns.svc.cluster.local.", "SRV", "NXDOMAIN", [], [SOA], []),
    ("_http._tcp.svc1.testns.svc.cluster.local.", "A", "NOERROR",
     ["_http._tcp.svc1.testns.svc.cluster.local. 30 IN A 10.0.0.1"], [], []),
    ("pod-a.svc1.testns.svc.cluster.local.", "A", "NOERROR",  # endpoint names work on ClusterIP services too
     ["pod-a.svc1.testns.svc.cluster.local. 30 IN A 172.0.1.1"], [], []),
    ("svc1.testns.svc.cluster.local.", "TXT", "NOERROR", [], [SOA], []),
    ("svc1.testns.svc.cluster.local.", "MX", "NOERROR", [], [SOA], []),
    ("svc1.testns.svc.cluster.local.", "SOA", "NOERROR", [SOA], [], []),
    ("nosvc.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("nosvc.testns.svc.cluster.local.", "MX", "NXDOMAIN", [], [SOA], []),
    # 2.4 headless services
    ("hdls1.testns.svc.cluster.local.", "A", "NOERROR",
     ["hdls1.testns.svc.cluster.local. 30 IN A 172.0.0.2", "hdls1.testns.svc.cluster.local. 30 IN A 172.0.0.3",
      "hdls1.testns.svc.cluster.local. 30 IN A 172.0.0.5"], [], []),
    ("web-0.hdls1.testns.svc.cluster.local.", "A", "NOERROR",
     ["web-0.hdls1.testns.svc.cluster.local. 30 IN A 172.0.0.2"], [], []),
    ("172-0-0-3.hdls1.testns.svc.cluster.local.", "A", "NOERROR",
     ["172-0-0-3.hdls1.testns.svc.cluster.local. 30 IN A 172.0.0.3"], [], []),
    ("web-2.hdls1.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),  # not ready
    ("web-0.hdls1.testns.svc.cluster.local.", "AAAA", "NOERROR", [], [SOA], []),
    ("_http._tcp.hdls1.testns.svc.cluster.local.", "SRV", "NOERROR",
     ["_http._tcp.hdls1.testns.svc.cluster.local. 30 IN SRV 0 33 80 web-0.hdls1.testns.svc.cluster.local.",
      "_http._tcp.hdls1.testns.svc.cluster.local. 30 IN SRV 0 33 80 172-0-0-3.hdls1.testns.svc.cluster.local.",
      "_http._tcp.hdls1.testns.svc.cluster.local. 30 IN SRV 0 33 80 172-0-0-5.hdls1.testns.svc.cluster.local."], [],
     ["web-0.hdls1.testns.svc.cluster.local. 30 IN A 172.0.0.2",
      "172-0-0-3.hdls1.testns.svc.cluster.local. 30 IN A 172.0.0.3",
      "172-0-0-5.hdls1.testns.svc.cluster.local. 30 IN A 172.0.0.5"]),
    ("hdls-empty.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    # 2.5 ExternalName
    ("external.testns.svc.cluster.local.", "A", "NOERROR",
     ["external.testns.svc.cluster.local. 30 IN CNAME ext.interwebs.test."], [], []),
    ("external.testns.svc.cluster.local.", "CNAME", "NOERROR",
     ["external.testns.svc.cluster.local. 30 IN CNAME ext.interwebs.test."], [], []),
    ("external.testns.svc.cluster.local.", "SRV", "NOERROR", [], [SOA], []),
    ("ext-svc.testns.svc.cluster.local.", "A", "NOERROR",
     ["ext-svc.testns.svc.cluster.local. 30 IN CNAME svc1.testns.svc.cluster.local.",
      "svc1.testns.svc.cluster.local. 30 IN A 10.0.0.1"], [], []),
    ("svc1.testns.svc.cluster.local.", "CNAME", "NOERROR", [], [SOA], []),
    # 2.2 schema version
    ("dns-version.cluster.local.", "TXT", "NOERROR", ['dns-version.cluster.local. 28800 IN TXT "1.1.0"'], [], []),
    ("dns-version.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    # 2.3.3 / 2.4.3 PTR
    ("1.0.0.10.in-addr.arpa.", "PTR", "NOERROR", ["1.0.0.10.in-addr.arpa. 30 IN PTR svc1.testns.svc.cluster.local."],
     [], []),
    ("2.0.0.172.in-addr.arpa.", "PTR", "NOERROR",
     ["2.0.0.172.in-addr.arpa. 30 IN PTR web-0.hdls1.testns.svc.cluster.local."], [], []),
    ("3.0.0.172.in-addr.arpa.", "PTR", "NOERROR",
     ["3.0.0.172.in-addr.arpa. 30 IN PTR 172-0-0-3.hdls1.testns.svc.cluster.local."], [], []),
    ("6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa.", "PTR", "NOERROR",
     ["6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa. 30 IN PTR "
      "svc6.testns.svc.cluster.local."], [], []),
    ("kubernetes.default.svc.cluster.local.", "PTR", "NOERROR", [], [SOA], []),
    # 2.6 pod records (pods insecure)
    ("10-244-1-5.testns.pod.cluster.local.", "A", "NOERROR",
     ["10-244-1-5.testns.pod.cluster.local. 30 IN A 10.244.1.5"], [], []),
    ("1234-abcd-0-0-0-0-0-6.testns.pod.cluster.local.", "AAAA", "NOERROR",
     ["1234-abcd-0-0-0-0-0-6.testns.pod.cluster.local. 30 IN AAAA 1234:abcd::6"], [], []),
    ("10-244-1-5.testns.pod.cluster.local.", "AAAA", "NOERROR", [], [SOA], []),
    ("10-244-1-5.nons.pod.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("not-an-ip.testns.pod.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("10-244-1-256.testns.pod.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("testns.pod.cluster.local.", "A", "NOERROR", [], [SOA], []),
    # names that exist without records, and names that do not exist
    ("cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("svc.cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("pod.cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("testns.svc.cluster.local.", "A", "NOERROR", [], [SOA], []),
    ("nons.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("nosuchname.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("*.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),  # wildcards: gone since CoreDNS 1.9
    ("a.b.c.svc1.testns.svc.cluster.local.", "A", "NXDOMAIN", [], [SOA], []),
    ("cluster.local.", "SOA", "NOERROR", [SOA], [], []),
    # the zone's own servers: kube-dns, whose endpoint is this server's address
    ("cluster.local.", "NS", "NOERROR", ["cluster.local. 30 IN NS kube-dns.kube-system.svc.cluster.local."], [],
     ["kube-dns.kube-system.svc.cluster.local. 30 IN A 10.96.0.10"]),
    ("ns.dns.cluster.local.", "A", "NOERROR", ["ns.dns.cluster.local. 30 IN A 10.96.0.10"], [], []),
    ("cluster.local.", "AXFR", "REFUSED", [], [], []),
]


def ask(records: Records, qname: str, qtype: str) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype, use_edns=0, payload=4096)
    q = wire.parse_query(query.to_wire())
    ans = records.answer(q.labels, q.qtype)
    enc = wire.encode(q, ans.rcode, ans.answer, ans.authority, ans.additional, ans.authoritative, False, 65535)
    return dns.message.from_wire(wire.assemble(q.id, q.question, enc))


def rr_set(rrsets) -> list[tuple]:
    return sorted((rrset.name.to_text().lower(), rrset.ttl, dns.rdatatype.to_text(rrset.rdtype), rd.to_text().lower())
                  for rrset in rrsets for rd in rrset)


def from_zone_text(lines: list[str]) -> list[tuple]:
    rrsets = []
    for line in lines:
        name, ttl, rdclass, rdtype, rdata = line.split(None, 4)
        rrsets.append(dns.rrset.from_text(name, int(ttl), rdclass, rdtype, rdata))
    return rr_set(rrsets)


@pytest.fixture(scope="module")
def records():
    return Records(cluster(), local_ips=("10.244.0.2",))


@pytest.mark.parametrize("qname,qtype,rcode,answer,authority,additional", CASES,
                         ids=[f"{c[1]} {c[0]}" for c in CASES])
def test_records(records, qname, qtype, rcode, answer, authority, additional):
    msg = ask(records, qname, qtype)
    assert dns.rcode.to_text(msg.rcode()) == rcode
    assert rr_set(msg.answer) == from_zone_text(answer)
    assert rr_set(msg.authority) == from_zone_text(authority)
    assert rr_set(msg.additional) == from_zone_text(additional)


def test_answers_are_authoritative_without_recursion(records):
    msg = ask(records, "svc1.testns.svc.cluster.local.", "A")
    assert msg.flags & dns.flags.AA and msg.flags & dns.flags.RD and not msg.flags & dns.flags.RA


@pytest.mark.parametrize("qname", ["SVC1.TestNS.svc.Cluster.Local.", "svc1.TESTNS.SVC.CLUSTER.LOCAL."])
def test_names_are_case_insensitive_and_the_question_is_echoed(records, qname):
    msg = ask(records, qname, "A")
    assert msg.question[0].name.to_text() == qname  # as asked, byte for byte
    assert rr_set(msg.answer) == from_zone_text([f"{qname} 30 IN A 10.0.0.1"])
    assert msg.answer[0].name.to_text() == qname


@pytest.mark.parametrize("qname,qtype", [
    ("example.com.", "A"),                # outside the cluster zone
    ("9.9.9.9.in-addr.arpa.", "PTR"),     # reverse miss: fallthrough
    ("0.10.in-addr.arpa.", "PTR"),        # partial reverse name
    ("1.0.0.10.in-addr.arpa.", "A"),
])
def test_names_that_are_not_ours_are_forwarded(records, qname, qtype):
    ans = records.answer_name(qname, qtype)
    assert ans.forward and not ans.answer


def test_external_name_asks_the_server_to_resolve_its_target(records):
    ans = records.answer_name("external.testns.svc.cluster.local", "A")
    assert ans.external_target == "ext.interwebs.test."
    assert not records.answer_name("ext-svc.testns.svc.cluster.local", "A").external_target


def test_an_unsynced_view_answers_servfail_instead_of_nxdomain():
    view = ClusterView(clock=lambda: SERIAL)
    view.apply_namespace({"metadata": {"name": "testns"}})
    records = Records(view)
    assert records.answer_name("nosvc.testns.svc.cluster.local", "A").rcode == wire.SERVFAIL
    view.mark_synced()
    assert records.answer_name("nosvc.testns.svc.cluster.local", "A").rcode == wire.NXDOMAIN


def test_changes_show_at_once_and_move_the_serial():
    now = [SERIAL]
    view = ClusterView(clock=lambda: now[0])
    view.apply_namespace({"metadata": {"name": "testns"}})
    view.mark_synced()
    records = Records(view)
    assert records.answer_name("new.testns.svc.cluster.local", "A").rcode == wire.NXDOMAIN
    before = view.generation
    now[0] += 7
    view.apply_service(service("testns", "new", "10.0.0.9", [("http", 80, "TCP")]))
    ans = records.answer_name("new.testns.svc.cluster.local", "A")
    assert [rr.data for rr in ans.answer] == ["10.0.0.9"]
    assert view.generation > before and records.soa().data[2] == SERIAL + 7
    view.delete_service(service("testns", "new", "10.0.0.9"))
    assert records.answer_name("new.testns.svc.cluster.local", "A").rcode == wire.NXDOMAIN
    assert not view.services_by_ip("10.0.0.9")


def test_endpoint_slice_updates_replace_the_old_addresses():
    view = cluster()
    records = Records(view)
    view.apply_endpointslice(endpoint_slice("testns", "hdls1", [("172.0.0.9", "web-9", True)], [("http", 80, "TCP")]))
    view.delete_endpointslice(endpoint_slice("testns", "hdls1", [], name="hdls1-second"))
    ans = records.answer_name("hdls1.testns.svc.cluster.local", "A")
    assert [rr.data for rr in ans.answer] == ["172.0.0.9"]
    assert records.answer_name("2.0.0.172.in-addr.arpa", "PTR").forward


def test_pod_modes():
    view = cluster()
    view.apply_pod({"metadata": {"namespace": "testns", "name": "p"}, "status": {"podIP": "10.244.1.5"}})
    verified = Records(view, pod_mode="verified")
    assert verified.answer_name("10-244-1-5.testns.pod.cluster.local", "A").answer
    assert verified.answer_name("10-244-1-6.testns.pod.cluster.local", "A").rcode == wire.NXDOMAIN
    assert verified.answer_name("10-244-1-5.default.pod.cluster.local", "A").rcode == wire.NXDOMAIN
    disabled = Records(view, pod_mode="disabled")
    assert disabled.answer_name("10-244-1-5.testns.pod.cluster.local", "A").rcode == wire.NXDOMAIN


def test_ttl_is_configurable(records):
    five = Records(records.view, ttl=5)
    assert five.answer_name("svc1.testns.svc.cluster.local", "A").answer[0].ttl == 5
    assert five.soa().ttl == 5 and five.soa().data[-1] == 5


@pytest.mark.parametrize("qname, qtype, reason", [
    ("svc1.testns.svc.cluster.local.", "A", "the ClusterIP of Service testns/svc1"),
    ("_http._tcp.svc1.testns.svc.cluster.local.", "SRV", "the ClusterIP of Service testns/svc1, port 'http' (tcp)"),
    ("hdls1.testns.svc.cluster.local.", "A", "the ready endpoints of the headless Service testns/hdls1"),
    ("web-0.hdls1.testns.svc.cluster.local.", "A", "the ready endpoint 'web-0' of Service testns/hdls1"),
    ("external.testns.svc.cluster.local.", "CNAME",
     "Service testns/external is of type ExternalName: an alias of ext.interwebs.test"),
    ("10-244-1-5.testns.pod.cluster.local.", "A", "a pod IP written with dashes, in namespace 'testns'"),
    ("nope.testns.svc.cluster.local.", "A", "no service testns/nope"),
    ("svc1.nons.svc.cluster.local.", "A", "namespace 'nons' does not exist"),
    ("svc1.testns.svc.cluster.local.", "AAAA", "the name exists, with no records of this type"),
    ("example.com.", "A", "outside the cluster zone"),
])
def test_answers_say_why(qname, qtype, reason):
    """Answer.reason, the line explain-dns prints beside each query."""
    assert Records(cluster()).answer_name(qname, qtype).reason == reason
