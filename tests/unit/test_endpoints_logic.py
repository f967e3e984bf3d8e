"""The pure logic of the Endpoints, EndpointSlice and mirroring controllers: which pods back a
Service, ports per pod, RepackSubsets, truncation, trigger times, slice placement, mirroring."""

from __future__ import annotations

import datetime as dt

import pytest

from pocketkube.controllers import endpoints as ep
from pocketkube.controllers import endpointslice as eps
from pocketkube.controllers import endpointslicemirroring as mirror
from pocketkube.controllers import endpointutil as util

T0 = "2024-05-01T10:00:00Z"
T1 = "2024-05-01T10:00:07Z"


def pod(name, ip="10.244.1.5", ready=True, labels=None, node="node-1", ports=None, deleting=False,
        phase="Running", hostname=None, subdomain=None, ready_since=T0, namespace="ns", rv="1"):
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "resourceVersion": rv,
                      "labels": {"app": "web"} if labels is None else labels},
         "spec": {"containers": [{"name": "c", "ports": ports or []}]},
         "status": {"phase": phase,
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                    "lastTransitionTime": ready_since}]}}
    if node:
        p["spec"]["nodeName"] = node
    if ip:
        p["status"]["podIP"] = ip
        p["status"]["podIPs"] = [{"ip": ip}]
    if deleting:
        p["metadata"]["deletionTimestamp"] = T1
    if hostname:
        p["spec"]["hostname"] = hostname
    if subdomain:
        p["spec"]["subdomain"] = subdomain
    return p


def service(name="web", ports=None, selector=None, cluster_ip="10.96.0.20", publish=False, labels=None,
            namespace="ns"):
    spec = {"selector": {"app": "web"} if selector is None else selector,
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}] if ports is None else ports,
            "clusterIP": cluster_ip, "ipFamilies": ["IPv4"], "type": "ClusterIP"}
    if publish:
        spec["publishNotReadyAddresses"] = True
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "uid": "svc-uid", "creationTimestamp": T0,
                         "labels": labels or {}},
            "spec": spec}


def nodes(*names, zone=None):
    table = {n: {"metadata": {"name": n, "labels": {util.LABEL_TOPOLOGY_ZONE: zone} if zone else {}}}
             for n in names}
    return table.get


# --- which pods, which ports ----------------------------------------------------------

HTTP = {"name": "http", "containerPort": 8080}


@pytest.mark.parametrize("target_port, protocol, container_ports, want", [
    (8080, "TCP", [], 8080),
    ("http", "TCP", [HTTP], 8080),
    ("http", "UDP", [HTTP], None),  # named ports match the protocol too
    ("metrics", "TCP", [HTTP], None),
    (None, "TCP", [], 80),  # no targetPort: the port itself
])
def test_find_port(target_port, protocol, container_ports, want):
    svc_port = {"port": 80, "protocol": protocol}
    if target_port is not None:
        svc_port["targetPort"] = target_port
    assert util.find_port(pod("a", ports=container_ports), svc_port) == want


def test_find_port_looks_in_sidecars_but_not_plain_init_containers():
    p = pod("a")
    p["spec"]["initContainers"] = [{"name": "init", "ports": [{"name": "early", "containerPort": 1}]},
                                   {"name": "side", "restartPolicy": "Always",
                                    "ports": [{"name": "proxy", "containerPort": 15001}]}]
    assert util.find_port(p, {"targetPort": "proxy", "protocol": "TCP"}) == 15001
    assert util.find_port(p, {"targetPort": "early", "protocol": "TCP"}) is None


@pytest.mark.parametrize("kwargs, include_terminating, want", [
    ({}, False, True),
    ({"ip": None}, True, False),
    ({"phase": "Succeeded"}, True, False),
    ({"phase": "Failed"}, True, False),
    ({"deleting": True}, False, False),
    ({"deleting": True}, True, True),
    ({"ready": False}, False, True),
])
def test_should_pod_be_in_endpoints(kwargs, include_terminating, want):
    assert util.should_pod_be_in_endpoints(pod("a", **kwargs), include_terminating) is want


def test_hostname_only_for_the_service_named_by_the_subdomain():
    assert util.should_set_hostname(pod("mysql-0", hostname="mysql-0", subdomain="web"), service())
    assert not util.should_set_hostname(pod("mysql-0", hostname="mysql-0", subdomain="other"), service())
    assert not util.should_set_hostname(pod("mysql-0", subdomain="web"), service())


@pytest.mark.parametrize("old, new, want", [
    (pod("a", rv="1"), pod("a", rv="1", ready=False), set()),  # a resync: same resourceVersion
    (pod("a", rv="1"), pod("a", rv="2"), set()),  # nothing that matters changed
    (pod("a", rv="1"), pod("a", rv="2", ready=False), {"ns/web"}),
    (pod("a", rv="1"), pod("a", rv="2", ip="10.244.1.9"), {"ns/web"}),
    (pod("a", rv="1"), pod("a", rv="2", deleting=True), {"ns/web"}),
    # only the labels changed: the Services it left or joined
    (pod("a", rv="1"), pod("a", rv="2", labels={"app": "web", "tier": "x"}), {"ns/tier"}),
    (pod("a", rv="1"), pod("a", rv="2", labels={"app": "api"}), {"ns/web", "ns/api"}),
    # labels and readiness changed: every Service either way
    (pod("a", rv="1"), pod("a", rv="2", ready=False, labels={"app": "web", "tier": "x"}), {"ns/web", "ns/tier"}),
])
def test_services_to_update_on_pod_change(old, new, want):
    index = util.ServiceIndex()
    for svc in (service("web"), service("api", selector={"app": "api"}), service("tier", selector={"tier": "x"}),
                service("manual", selector={}), service("elsewhere", namespace="other")):
        index.upsert(svc)
    assert util.services_to_update_on_pod_change(index, old, new) == want


def test_service_index_follows_selector_changes():
    index = util.ServiceIndex()
    index.upsert(service("web", selector={"app": "web", "tier": "front"}))
    assert index.matching("ns", {"app": "web"}) == set()
    assert index.matching("ns", {"app": "web", "tier": "front", "x": "y"}) == {"ns/web"}
    index.upsert(service("web", selector={"app": "web"}))
    assert index.matching("ns", {"app": "web"}) == {"ns/web"}
    index.upsert(service("web", selector={}))  # no selector any more: selects nothing
    assert index.matching("ns", {"app": "web"}) == set()
    index.upsert(service("web"))
    index.remove(service("web"))
    assert index.matching("ns", {"app": "web"}) == set()


def test_pod_index_matches_selectors_within_a_namespace():
    index = util.PodIndex()
    for p in (pod("b"), pod("a"), pod("c", labels={"app": "web", "v": "2"}), pod("d", labels={"app": "api"}),
              pod("e", namespace="other")):
        index.upsert(p)
    assert [p["metadata"]["name"] for p in index.matching("ns", {"app": "web"})] == ["a", "b", "c"]
    assert [p["metadata"]["name"] for p in index.matching("ns", {"app": "web", "v": "2"})] == ["c"]
    index.upsert(pod("c", labels={"app": "api"}))
    index.remove(pod("a"))
    assert [p["metadata"]["name"] for p in index.matching("ns", {"app": "web"})] == ["b"]
    assert index.matching("ns", {}) == []
    assert index.matching("ns", {"app": "none"}) == []


# --- Endpoints --------------------------------------------------------------------------

def address(name, ip, node="node-1", **extra):
    a = {"ip": ip, "nodeName": node, "targetRef": {"kind": "Pod", "namespace": "ns", "name": name,
                                                   "uid": f"uid-{name}"}}
    a.update(extra)
    return a


def test_subsets_split_ready_and_not_ready_and_leave_out_terminating_and_ipless_pods():
    pods = [pod("a", "10.244.1.5"), pod("b", "10.244.1.10"), pod("c", "10.244.2.3", ready=False),
            pod("d", "10.244.2.4", deleting=True), pod("e", None), pod("f", "10.244.2.9", phase="Failed")]
    assert ep.compute_subsets(service(), pods) == [{
        # sorted by IP as bytes, as Kubernetes does
        "addresses": [address("b", "10.244.1.10"), address("a", "10.244.1.5")],
        "notReadyAddresses": [address("c", "10.244.2.3")],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    }]


def test_publish_not_ready_addresses_puts_every_pod_in_addresses_even_terminating():
    pods = [pod("a", "10.244.1.5"), pod("c", "10.244.2.3", ready=False), pod("d", "10.244.2.4", deleting=True)]
    subsets = ep.compute_subsets(service(publish=True), pods)
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.244.1.5", "10.244.2.3", "10.244.2.4"]
    assert "notReadyAddresses" not in subsets[0]


def test_named_target_port_is_resolved_per_pod_and_pods_without_it_are_left_out():
    svc = service(ports=[{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    pods = [pod("a", "10.244.1.5", ports=[{"name": "http", "containerPort": 8080}]),
            pod("b", "10.244.1.6", ports=[{"name": "http", "containerPort": 9090}]),
            pod("c", "10.244.1.7", ports=[{"name": "other", "containerPort": 8080}])]
    subsets = ep.compute_subsets(svc, pods)
    by_port = {s["ports"][0]["port"]: [a["ip"] for a in s["addresses"]] for s in subsets}
    assert by_port == {8080: ["10.244.1.5"], 9090: ["10.244.1.6"]}
    assert all(s["ports"][0]["name"] == "web" for s in subsets)


def test_repack_groups_ports_offered_by_the_same_addresses():
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                         {"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}])
    pods = [pod("a", "10.244.1.5", ports=[{"name": "metrics", "containerPort": 9100}]),
            pod("b", "10.244.1.6")]
    subsets = ep.compute_subsets(svc, pods)
    shapes = sorted((tuple(a["ip"] for a in s["addresses"]), tuple(p["name"] for p in s["ports"]))
                    for s in subsets)
    assert shapes == [(("10.244.1.5",), ("metrics",)), (("10.244.1.5", "10.244.1.6"), ("http",))]


def test_repack_not_ready_wins_and_duplicates_collapse():
    a = address("a", "10.244.1.5")
    port = {"port": 80, "protocol": "TCP"}
    assert ep.repack_subsets([(a, port, True), (a, port, False), (a, port, True)]) == \
        [{"notReadyAddresses": [a], "ports": [port]}]


def test_headless_service_without_ports_keeps_addresses_and_hostnames():
    svc = service("mysql", ports=[], cluster_ip="None")
    pods = [pod("mysql-0", "10.244.1.5", hostname="mysql-0", subdomain="mysql"),
            pod("mysql-1", "10.244.1.6", hostname="mysql-1", subdomain="mysql", ready=False)]
    assert ep.compute_subsets(svc, pods) == [{
        "addresses": [address("mysql-0", "10.244.1.5", hostname="mysql-0")],
        "notReadyAddresses": [address("mysql-1", "10.244.1.6", hostname="mysql-1")],
    }]


def test_non_headless_service_without_ports_gets_nothing():
    assert ep.compute_subsets(service(ports=[]), [pod("a")]) == []


def test_truncation_keeps_1000_ready_addresses_first():
    subsets = [{"addresses": [{"ip": f"10.0.{i // 250}.{i % 250}"} for i in range(900)],
                "notReadyAddresses": [{"ip": f"10.1.{i // 250}.{i % 250}"} for i in range(300)],
                "ports": [{"port": 80, "protocol": "TCP"}]}]
    assert ep.truncate_subsets(subsets)
    assert len(subsets[0]["addresses"]) == 900 and len(subsets[0]["notReadyAddresses"]) == 100
    subsets = [{"addresses": [{"ip": f"10.0.{i // 250}.{i % 250}"} for i in range(1200)]}]
    assert ep.truncate_subsets(subsets) and len(subsets[0]["addresses"]) == 1000
    assert not ep.truncate_subsets([{"addresses": [{"ip": "10.0.0.1"}]}])


def test_endpoints_object_carries_service_labels_headless_label_and_annotations():
    svc = service(cluster_ip="None", labels={"app": "web"})
    subsets = ep.compute_subsets(svc, [pod("a")])
    when = dt.datetime(2024, 5, 1, 10, 0, 7, 250000, tzinfo=dt.timezone.utc)
    new = ep.endpoints_to_write(svc, subsets, None, when)
    assert new["metadata"] == {"name": "web", "namespace": "ns",
                               "labels": {"app": "web", util.LABEL_HEADLESS: ""},
                               "annotations": {util.ANNOTATION_TRIGGER_TIME: "2024-05-01T10:00:07.25Z"}}
    assert new["subsets"] == subsets
    stored = {**new, "metadata": {**new["metadata"], "resourceVersion": "7"}}
    assert ep.endpoints_to_write(svc, subsets, stored, None) is None  # nothing to say
    emptied = ep.endpoints_to_write(svc, [], stored, None)
    assert "subsets" not in emptied and "annotations" not in emptied["metadata"]
    assert emptied["metadata"]["resourceVersion"] == "7"


def test_endpoints_over_capacity_annotation():
    svc = service()
    pods = [pod(f"p{i}", f"10.244.{i // 200}.{i % 200 + 1}") for i in range(1001)]
    new = ep.endpoints_to_write(svc, ep.compute_subsets(svc, pods), None, None)
    assert new["metadata"]["annotations"] == {util.ANNOTATION_OVER_CAPACITY: "truncated"}
    assert sum(len(s["addresses"]) for s in new["subsets"]) == 1000


def test_trigger_time_tracker():
    tracker = util.TriggerTimeTracker()
    svc = service()
    pods = [pod("a", ready_since=T0), pod("b", ready_since=T0)]
    assert tracker.compute(svc, pods) == dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.timezone.utc)  # new Service
    assert tracker.compute(svc, pods) is None  # nothing changed since
    pods[1] = pod("b", ready=False, ready_since=T1)
    assert util.format_trigger_time(tracker.compute(svc, pods)) == T1
    assert tracker.compute(svc, pods[:1]) is None  # a pod going away has no trigger time


def test_kubernetes_service_endpoints_shape():
    e = ep.kubernetes_endpoints("172.18.0.1", 6443)
    assert e["metadata"]["labels"] == {util.LABEL_SKIP_MIRROR: "true"}
    assert e["subsets"] == [{"addresses": [{"ip": "172.18.0.1"}],
                             "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
    s = ep.kubernetes_endpoint_slice("172.18.0.1", 6443)
    assert s["metadata"] == {"name": "kubernetes", "namespace": "default",
                             "labels": {util.LABEL_SERVICE_NAME: "kubernetes"}}
    assert s["addressType"] == "IPv4"
    assert s["endpoints"] == [{"addresses": ["172.18.0.1"], "conditions": {"ready": True}}]


# --- EndpointSlices ---------------------------------------------------------------------

def stored(es, name, generation=1):
    """A planned slice as the API would hand it back."""
    out = eps.wire_form(es)
    out["metadata"] = {**es["metadata"], "name": name, "uid": f"uid-{name}", "generation": generation,
                       "resourceVersion": "5"}
    out["metadata"].pop("generateName", None)
    return out


def test_slice_for_a_service():
    svc = service(labels={"app": "web"})
    pods = [pod("a", "10.244.1.5"), pod("b", "10.244.1.6", ready=False), pod("c", "10.244.1.7", deleting=True)]
    plan = eps.plan_slices(svc, pods, [], nodes("node-1", zone="zone-a"))
    assert not plan.update and not plan.delete and not plan.errors
    [es] = plan.create
    assert es["metadata"] == {
        "generateName": "web-", "namespace": "ns",
        "labels": {"app": "web", util.LABEL_SERVICE_NAME: "web", util.LABEL_MANAGED_BY: eps.CONTROLLER_NAME},
        "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "svc-uid",
                             "controller": True, "blockOwnerDeletion": True}]}
    assert es["addressType"] == "IPv4"
    assert es["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
    conditions = {e["targetRef"]["name"]: e["conditions"] for e in es["endpoints"]}
    assert conditions == {"a": {"ready": True, "serving": True, "terminating": False},
                          "b": {"ready": False, "serving": False, "terminating": False},
                          "c": {"ready": False, "serving": True, "terminating": True}}
    assert es["endpoints"][0] == {"addresses": ["10.244.1.5"],
                                  "conditions": {"ready": True, "serving": True, "terminating": False},
                                  "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"},
                                  "nodeName": "node-1", "zone": "zone-a"}


def test_publish_not_ready_marks_every_endpoint_ready():
    plan = eps.plan_slices(service(publish=True), [pod("b", ready=False)], [], nodes("node-1"))
    assert plan.create[0]["endpoints"][0]["conditions"] == {"ready": True, "serving": False, "terminating": False}


def test_150_pods_make_two_slices_of_100_and_50():
    pods = [pod(f"p{i:03d}", f"10.244.{i // 100}.{i % 100 + 1}") for i in range(150)]
    plan = eps.plan_slices(service(), pods, [], nodes("node-1"))
    assert sorted(len(s["endpoints"]) for s in plan.create) == [50, 100]


def test_a_readiness_change_updates_only_the_slice_holding_that_pod():
    pods = [pod(f"p{i:03d}", f"10.244.{i // 100}.{i % 100 + 1}") for i in range(150)]
    first = eps.plan_slices(service(), pods, [], nodes("node-1"))
    existing = [stored(es, f"web-{i}") for i, es in enumerate(first.create)]
    assert eps.plan_slices(service(), pods, existing, nodes("node-1")) == eps.SlicePlan()  # steady state
    pods[120] = pod("p120", "10.244.1.21", ready=False)
    plan = eps.plan_slices(service(), pods, existing, nodes("node-1"))
    assert not plan.create and not plan.delete
    [es] = plan.update
    holder = next(s for s in existing if any(e["targetRef"]["name"] == "p120" for e in s["endpoints"]))
    assert es["metadata"]["name"] == holder["metadata"]["name"]
    assert next(e for e in es["endpoints"] if e["targetRef"]["name"] == "p120")["conditions"]["ready"] is False


def test_new_endpoints_fill_the_slice_closest_to_full():
    pods = [pod(f"p{i:03d}", f"10.244.{i // 100}.{i % 100 + 1}") for i in range(150)]
    existing = [stored(es, f"web-{i}") for i, es in enumerate(eps.plan_slices(service(), pods, [],
                                                                                nodes("node-1")).create)]
    pods.append(pod("p150", "10.244.9.9"))
    plan = eps.plan_slices(service(), pods, existing, nodes("node-1"))
    [es] = plan.update
    assert len(es["endpoints"]) == 51  # the slice of 100 is full: the one of 50 takes it


def test_pods_with_different_resolved_ports_go_to_different_slices():
    svc = service(ports=[{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    pods = [pod("a", "10.244.1.5", ports=[{"name": "http", "containerPort": 8080}]),
            pod("b", "10.244.1.6", ports=[{"name": "http", "containerPort": 9090}]),
            pod("c", "10.244.1.7")]  # no such port: a slice without ports
    plan = eps.plan_slices(svc, pods, [], nodes("node-1"))
    shapes = sorted((str(s["ports"]), [e["targetRef"]["name"] for e in s["endpoints"]]) for s in plan.create)
    assert shapes == [("[]", ["c"]),
                      ("[{'name': 'web', 'port': 8080, 'protocol': 'TCP'}]", ["a"]),
                      ("[{'name': 'web', 'port': 9090, 'protocol': 'TCP'}]", ["b"])]


def test_no_pods_means_one_placeholder_slice_kept_as_it_is():
    plan = eps.plan_slices(service(), [], [], nodes())
    [placeholder] = plan.create
    assert eps.wire_form(placeholder)["endpoints"] is None and "ports" not in eps.wire_form(placeholder)
    assert eps.plan_slices(service(), [], [stored(placeholder, "web-x")], nodes()) == eps.SlicePlan()


def test_all_pods_gone_recycles_the_last_slice_into_a_placeholder():
    existing = [stored(eps.plan_slices(service(), [pod("a")], [], nodes("node-1")).create[0], "web-abcde")]
    plan = eps.plan_slices(service(), [], existing, nodes("node-1"))
    assert not plan.create and not plan.delete
    [es] = plan.update
    assert es["metadata"]["name"] == "web-abcde" and es["endpoints"] == [] and es["ports"] == []


def test_pod_on_an_unknown_node_is_skipped_with_an_error():
    plan = eps.plan_slices(service(), [pod("a", node="ghost"), pod("b", "10.244.1.6")], [], nodes("node-1"))
    assert [e["targetRef"]["name"] for e in plan.create[0]["endpoints"]] == ["b"]
    assert plan.errors == ["skipping Pod a for Service ns/web: Node ghost Not Found"]


def test_slices_of_another_owner_or_address_type_are_deleted():
    old = stored(eps.plan_slices(service(), [pod("a")], [], nodes("node-1")).create[0], "web-old")
    old["metadata"]["ownerReferences"][0]["uid"] = "previous-service"
    v6 = {**stored(eps.plan_slices(service(), [], [], nodes()).create[0], "web-v6"), "addressType": "IPv6"}
    plan = eps.plan_slices(service(), [pod("a")], [old, v6], nodes("node-1"))
    # neither is reused for the new Service's endpoints: a new slice, owned by it
    assert {s["metadata"]["name"] for s in plan.delete} == {"web-old", "web-v6"} and not plan.update
    assert len(plan.create) == 1 and plan.create[0]["metadata"]["ownerReferences"][0]["uid"] == "svc-uid"


def test_service_label_change_relabels_slices():
    existing = [stored(eps.plan_slices(service(), [pod("a")], [], nodes("node-1")).create[0], "web-1")]
    plan = eps.plan_slices(service(labels={"tier": "front"}), [pod("a")], existing, nodes("node-1"))
    assert plan.update[0]["metadata"]["labels"]["tier"] == "front"


def test_headless_hostnames_in_slices():
    svc = service("mysql", cluster_ip="None", ports=[])
    plan = eps.plan_slices(svc, [pod("mysql-0", hostname="mysql-0", subdomain="mysql")], [], nodes("node-1"))
    [es] = plan.create
    assert es["metadata"]["labels"][util.LABEL_HEADLESS] == ""
    assert es["endpoints"][0]["hostname"] == "mysql-0" and es["ports"] == []


def test_slice_tracker():
    tracker = util.SliceTracker()
    a = {"metadata": {"uid": "a", "generation": 2}}
    assert tracker.should_sync("ns/web", a) and not tracker.stale("ns/web", [a])
    tracker.update("ns/web", a)
    assert not tracker.should_sync("ns/web", a)
    assert tracker.should_sync("ns/web", {"metadata": {"uid": "a", "generation": 3}})
    assert tracker.stale("ns/web", [{"metadata": {"uid": "a", "generation": 1}}])  # older than we wrote
    assert tracker.stale("ns/web", [])  # ours is not in the cache yet
    tracker.expect_deletion("ns/web", a)
    assert tracker.stale("ns/web", [a]) and not tracker.stale("ns/web", [])
    assert tracker.handle_deletion("ns/web", a)
    tracker.update("ns/web", a)
    assert not tracker.handle_deletion("ns/web", a)  # someone else deleted it


# --- mirroring --------------------------------------------------------------------------

def manual_endpoints(subsets, labels=None, annotations=None):
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "db", "namespace": "ns", "uid": "ep-uid", "labels": labels or {},
                         "annotations": annotations or {}},
            "subsets": subsets}


def test_mirror_manual_endpoints():
    e = manual_endpoints(
        [{"addresses": [{"ip": "192.168.1.10"}, {"ip": "192.168.1.11", "nodeName": "node-1"}],
          "notReadyAddresses": [{"ip": "192.168.1.12", "hostname": "db-2"}],
          "ports": [{"port": 5432, "protocol": "TCP"}]}],
        labels={"team": "data"},
        annotations={"note": "x", util.ANNOTATION_LAST_APPLIED: "{}", util.ANNOTATION_TRIGGER_TIME: T0})
    plan = mirror.plan_mirrored_slices(e, [])
    [es] = plan.create
    assert es["metadata"] == {
        "generateName": "db-", "namespace": "ns",
        "labels": {"team": "data", util.LABEL_SERVICE_NAME: "db", util.LABEL_MANAGED_BY: mirror.CONTROLLER_NAME},
        "annotations": {"note": "x"},
        "ownerReferences": [{"apiVersion": "v1", "kind": "Endpoints", "name": "db", "uid": "ep-uid",
                             "controller": True, "blockOwnerDeletion": True}]}
    assert es["ports"] == [{"name": "", "port": 5432, "protocol": "TCP"}]
    assert es["endpoints"] == [
        {"addresses": ["192.168.1.10"], "conditions": {"ready": True}},
        {"addresses": ["192.168.1.11"], "conditions": {"ready": True}, "nodeName": "node-1"},
        {"addresses": ["192.168.1.12"], "conditions": {"ready": False}, "hostname": "db-2"}]
    assert mirror.plan_mirrored_slices(e, [stored(es, "db-abcde")]) == mirror.MirrorPlan()


def test_mirror_updates_in_place_and_splits_by_address_type_and_ports():
    e = manual_endpoints([{"addresses": [{"ip": "192.168.1.10"}], "ports": [{"port": 80, "protocol": "TCP"}]}])
    existing = stored(mirror.plan_mirrored_slices(e, []).create[0], "db-abcde")
    e["subsets"] = [{"addresses": [{"ip": "192.168.1.10"}, {"ip": "192.168.1.20"}],
                     "ports": [{"port": 80, "protocol": "TCP"}]},
                    {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80, "protocol": "TCP"}]}]
    plan = mirror.plan_mirrored_slices(e, [existing])
    assert [s["metadata"]["name"] for s in plan.update] == ["db-abcde"]
    assert len(plan.update[0]["endpoints"]) == 2
    assert [s["addressType"] for s in plan.create] == ["IPv6"]


def test_mirror_skips_invalid_addresses_and_caps_each_subset():
    e = manual_endpoints([{"addresses": [{"ip": "not-an-ip"}] + [{"ip": f"10.1.{i // 250}.{i % 250}"}
                                                                 for i in range(1005)]}])
    plan = mirror.plan_mirrored_slices(e, [])
    assert plan.invalid_addresses == 1 and plan.skipped_addresses == 6
    assert len(plan.create[0]["endpoints"]) == 1000


def test_mirror_nothing_left_deletes_the_slices():
    e = manual_endpoints([{"addresses": [{"ip": "192.168.1.10"}]}])
    existing = stored(mirror.plan_mirrored_slices(e, []).create[0], "db-abcde")
    e["subsets"] = []
    plan = mirror.plan_mirrored_slices(e, [existing])
    assert [s["metadata"]["name"] for s in plan.delete] == ["db-abcde"] and not plan.create


@pytest.mark.parametrize("labels, annotations, want", [
    ({}, {}, True),
    ({util.LABEL_SKIP_MIRROR: "true"}, {}, False),
    ({}, {util.ANNOTATION_LEADER: "{}"}, False),
])
def test_should_mirror(labels, annotations, want):
    assert mirror.should_mirror(manual_endpoints([], labels, annotations)) is want
