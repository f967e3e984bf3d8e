"""explain-dns's pure parts: the names a pod's resolver asks (search list and ndots, glibc's
order), the walk through them, the verdict, and the whole explanation over a small cluster
answered by the real record logic (the server is not asked: no route into a cluster)."""

from __future__ import annotations

import pytest

from pocketkube.cli.explain_dns import Inputs, explain_lookup
from pocketkube.dns import explain, wire
from pocketkube.dns.records import Records
from pocketkube.dns.view import ClusterView
from pocketkube.dns.wire import RR

URL = "https://127.0.0.1:6443"
K8S_SEARCH = ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]


@pytest.mark.parametrize("name, ndots, expected", [
    ("my-nginx", 5, ["my-nginx.default.svc.cluster.local.", "my-nginx.svc.cluster.local.",
                     "my-nginx.cluster.local.", "my-nginx."]),
    # 4 dots < ndots 5: the famous extra queries before the full name itself
    ("my-nginx.default.svc.cluster.local", 5,
     ["my-nginx.default.svc.cluster.local.default.svc.cluster.local.",
      "my-nginx.default.svc.cluster.local.svc.cluster.local.",
      "my-nginx.default.svc.cluster.local.cluster.local.", "my-nginx.default.svc.cluster.local."]),
    # a trailing dot: absolute, nothing else
    ("my-nginx.default.svc.cluster.local.", 5, ["my-nginx.default.svc.cluster.local."]),
    # at least ndots dots: as is first, then the search list
    ("a.b.c.d.e.f", 5, ["a.b.c.d.e.f.", "a.b.c.d.e.f.default.svc.cluster.local.", "a.b.c.d.e.f.svc.cluster.local.",
                        "a.b.c.d.e.f.cluster.local."]),
    ("example.com", 1, ["example.com.", "example.com.default.svc.cluster.local.", "example.com.svc.cluster.local.",
                        "example.com.cluster.local."]),
    ("web", 1, ["web.default.svc.cluster.local.", "web.svc.cluster.local.", "web.cluster.local.", "web."]),
])
def test_candidates_follow_ndots(name, ndots, expected):
    assert explain.candidates(name, K8S_SEARCH, ndots) == expected


def test_candidates_without_search_list_and_with_duplicates():
    assert explain.candidates("web", [], 5) == ["web."]
    assert explain.candidates("web", ["a.test", "a.test.", ""], 1) == ["web.a.test.", "web."]


@pytest.mark.parametrize("options, ndots", [([], 1), (["ndots:5"], 5), (["ndots:2", "timeout:1", "ndots:3"], 3),
                                             (["ndots:30"], 15), (["ndots:x"], 1), (["attempts:2"], 1)])
def test_ndots_option(options, ndots):
    assert explain.ndots_option(options) == ndots


def test_order_rule_names_the_rule():
    assert "< ndots 5" in explain.order_rule("my-nginx", 5) and "search domain first" in explain.order_rule("a", 5)
    assert ">= ndots 1" in explain.order_rule("a.b", 1)
    assert "absolute" in explain.order_rule("a.b.", 5)


def scripted(answers: dict[str, int]):
    asked = []

    def ask(name):
        asked.append(name)
        rcode = answers.get(name, wire.NXDOMAIN)
        records = [RR(None, wire.A, 30, "10.96.0.7")] if rcode == wire.NOERROR and name.startswith("web.") else []
        return explain.Step(name, rcode, records, "scripted")
    return ask, asked


def test_walk_stops_at_the_first_answer_and_goes_on_after_nxdomain_nodata_servfail():
    names = ["x.a.", "x.b.", "x.c.", "web.d.", "x."]
    ask, asked = scripted({"x.b.": wire.NOERROR, "x.c.": wire.SERVFAIL, "web.d.": wire.NOERROR})
    steps = explain.walk(names, ask)
    assert asked == ["x.a.", "x.b.", "x.c.", "web.d."]
    assert [s.outcome for s in steps] == ["NXDOMAIN", "NOERROR, no records (NODATA)", "SERVFAIL", "NOERROR"]
    assert explain.verdict(steps, names) == "resolved by query 4: web.d → 10.96.0.7"


def test_walk_stops_at_refused():
    ask, asked = scripted({"x.b.": wire.REFUSED})
    steps = explain.walk(["x.a.", "x.b.", "x."], ask)
    assert asked == ["x.a.", "x.b."]
    assert explain.verdict(steps, ["x.a.", "x.b.", "x."]).startswith("stopped at query 2 (x.b.): REFUSED ends")


def test_verdicts_when_nothing_resolves():
    names = ["x.a.", "x."]
    ask, _ = scripted({})
    assert explain.verdict(explain.walk(names, ask), names) == "NXDOMAIN for every candidate: x.a., x."
    ask, _ = scripted({"x.": wire.NOERROR})
    assert explain.verdict(explain.walk(names, ask), names) == (
        "no candidate resolved: x.a. NXDOMAIN; x. NOERROR, no records (NODATA)")


def test_summary_of_a_cname_chain_and_srv():
    chain = [RR(None, wire.CNAME, 30, "www.example.test."), RR("www.example.test.", wire.A, 300, "192.0.2.1")]
    assert explain.summary(chain) == "CNAME www.example.test. → 192.0.2.1"
    srv = [RR(None, wire.SRV, 30, (0, 100, 80, "web.default.svc.cluster.local."))]
    assert explain.summary(srv) == "0 100 80 web.default.svc.cluster.local."
    step = explain.Step("ext.default.svc.cluster.local.", wire.NOERROR, chain[:1])
    assert explain.verdict([step], [step.query]).endswith("(only an alias came back: the target's own address "
                                                           "was not found)")


# --- the whole explanation, answered by the record logic ---------------------------------------

def small_cluster() -> ClusterView:
    view = ClusterView(clock=lambda: 1700000000)
    for ns in ("default", "kube-system", "shop"):
        view.apply_namespace({"metadata": {"name": ns}})
    view.apply_service({"metadata": {"namespace": "default", "name": "my-nginx"},
                        "spec": {"clusterIP": "10.96.3.4", "ports": [{"name": "http", "port": 80}]}})
    view.apply_service({"metadata": {"namespace": "shop", "name": "cart"},
                        "spec": {"clusterIP": "10.96.3.9", "ports": [{"name": "http", "port": 80}]}})
    view.mark_synced()
    return view


def pod(ns="default", policy=None, config=None, host_network=False):
    spec = {}
    if policy:
        spec["dnsPolicy"] = policy
    if config:
        spec["dnsConfig"] = config
    if host_network:
        spec["hostNetwork"] = True
    return {"metadata": {"namespace": ns, "name": "bb"}, "spec": spec}


def never_asked(*args):
    raise AssertionError("the server must not be asked without a route into the cluster")


def no_route(address):
    return ""


def test_explains_a_search_list_hit_from_the_record_logic():
    out = explain_lookup("my-nginx", "A", Inputs(pod(), "pod default/bb", "10.96.0.10", small_cluster()),
                         "nameserver 10.255.255.53\n", ask=never_asked, route=no_route)
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in out
    assert "options ndots:5" in out and "nameserver 10.96.0.10" in out
    assert "does not route 10.96.0.10 into this cluster, so nothing was sent" in out
    assert "1. my-nginx.default.svc.cluster.local. A → NOERROR" in out
    assert "my-nginx.default.svc.cluster.local. 30 IN A 10.96.3.4" in out
    assert "why: the ClusterIP of Service default/my-nginx" in out
    assert "not asked: my-nginx.svc.cluster.local., my-nginx.cluster.local., my-nginx." in out
    assert out.rstrip().endswith("resolved by query 1: my-nginx.default.svc.cluster.local → 10.96.3.4")


def test_explains_another_namespace_and_a_miss():
    view = small_cluster()
    out = explain_lookup("cart", "A", Inputs(pod(), "pod default/bb", "10.96.0.10", view), "", never_asked, no_route)
    assert "1. cart.default.svc.cluster.local. A → NXDOMAIN" in out
    assert "why: no service default/cart" in out
    assert "2. cart.svc.cluster.local. A → NOERROR, no records (NODATA)" not in out  # `svc` + ns "cart": no such ns
    assert "why: namespace 'cart' does not exist" in out
    assert "4. cart. A → SERVFAIL" in out and "would forward it" in out
    assert out.rstrip().endswith("no candidate resolved: cart.default.svc.cluster.local. NXDOMAIN; "
                                 "cart.svc.cluster.local. NXDOMAIN; cart.cluster.local. NXDOMAIN; cart. SERVFAIL")
    found = explain_lookup("cart.shop", "A", Inputs(pod(), "pod default/bb", "10.96.0.10", view), "",
                           never_asked, no_route)
    assert found.rstrip().endswith("resolved by query 2: cart.shop.svc.cluster.local → 10.96.3.9")


def test_dns_config_and_host_network_change_the_resolver():
    view = small_cluster()
    config = {"searches": ["corp.test"], "options": [{"name": "ndots", "value": "1"}]}
    out = explain_lookup("my-nginx.default", "A", Inputs(pod(config=config), "pod default/bb", "10.96.0.10", view),
                         "", never_asked, no_route)
    assert "options ndots:1" in out and "corp.test" in out
    assert "1. my-nginx.default. A" in out  # 1 dot >= ndots 1: as is first
    default = explain_lookup("my-nginx", "A", Inputs(pod(host_network=True), "pod default/bb", "10.96.0.10", view),
                             "search lan.test\nnameserver 10.255.255.53\n", never_asked, lambda a: URL)
    assert "asks 10.255.255.53, not the cluster DNS" in default
    assert "1. my-nginx.lan.test. A → SERVFAIL" in default


def test_answers_come_from_the_server_when_it_is_routed():
    asked = []

    def server(address, port, name, qtype):
        asked.append((address, port, name, qtype))
        return wire.NOERROR, [RR(name, wire.A, 30, "10.96.3.4")]
    out = explain_lookup("my-nginx", "A", Inputs(pod(), "pod default/bb", "10.96.0.10", small_cluster(), URL), "",
                         ask=server, route=lambda address: URL)
    assert asked == [("10.96.0.10", 53, "my-nginx.default.svc.cluster.local.", wire.A)]
    assert "answers: the cluster DNS server 10.96.0.10:53 (Service kube-system/kube-dns), asked from this host" in out
    assert "why: the ClusterIP of Service default/my-nginx" in out


def test_another_clusters_dns_is_never_asked():
    out = explain_lookup("my-nginx", "A", Inputs(pod(), "pod default/bb", "10.96.0.10", small_cluster(), URL), "",
                         ask=never_asked, route=lambda address: "https://127.0.0.1:7000")
    assert "does not route 10.96.0.10 into this cluster" in out


def test_falls_back_to_the_record_logic_when_the_server_is_silent():
    out = explain_lookup("my-nginx", "A", Inputs(pod(), "pod default/bb", "10.96.0.10", small_cluster(), URL), "",
                         ask=lambda *a: None, route=lambda address: URL)
    assert "did not answer from this host" in out
    assert out.rstrip().endswith("resolved by query 1: my-nginx.default.svc.cluster.local → 10.96.3.4")


def test_records_reason_is_what_explain_shows():
    records = Records(small_cluster())
    assert records.answer_name("nope.default.svc.cluster.local", "A").reason == "no service default/nope"


def test_says_where_the_server_fell_silent():
    calls = []

    def flaky(address, port, name, qtype):
        calls.append(name)
        return (wire.NXDOMAIN, []) if len(calls) == 1 else None
    out = explain_lookup("cart.shop", "A", Inputs(pod(), "pod default/bb", "10.96.0.10", small_cluster(), URL), "",
                         ask=flaky, route=lambda address: URL)
    assert calls == ["cart.shop.default.svc.cluster.local.", "cart.shop.svc.cluster.local."]
    assert "until it fell silent at query 2" in out
    assert out.rstrip().endswith("resolved by query 2: cart.shop.svc.cluster.local → 10.96.3.9")
