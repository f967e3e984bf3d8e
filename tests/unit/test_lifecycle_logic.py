"""Pure logic of the StatefulSet, DaemonSet, garbage collector and namespace controllers:
ordinals, revision hashes, status arithmetic, node eligibility, rolling-update choices,
garbage-collection decisions, namespace deletion conditions."""

from __future__ import annotations

import datetime as dt

import pytest

from pocketkube.controllers import daemonset as ds_logic
from pocketkube.core import nodefit
from pocketkube.controllers import garbagecollector as gc
from pocketkube.controllers import namespace as ns_logic
from pocketkube.controllers import statefulset as sts_logic

NOW = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def ts(seconds_ago: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, phase: str = "Running", ready: bool = True, revision: str = "", ready_for: float = 3600,
        deleting: bool = False, labels: dict | None = None, node: str = "", created_ago: float = 100) -> dict:
    meta = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "creationTimestamp": ts(created_ago),
            "labels": dict(labels or {})}
    if revision:
        meta["labels"]["controller-revision-hash"] = revision
    if deleting:
        meta["deletionTimestamp"] = ts(0)
    status = {"phase": phase}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                                 "lastTransitionTime": ts(ready_for)}]
    spec = {"nodeName": node} if node else {}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


# ---- StatefulSet ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, parent, ordinal", [
    ("web-0", "web", 0),
    ("web-12", "web", 12),
    ("my-db-3", "my-db", 3),
    ("web", "", -1),
    ("web-", "", -1),
    ("web-x1", "", -1),
    ("-5", "", 5),
])
def test_parent_and_ordinal(name, parent, ordinal):
    assert sts_logic.parent_and_ordinal(name) == (parent, ordinal)


def test_fnv32a_known_values():
    assert sts_logic.fnv32a(b"") == 0x811C9DC5
    assert sts_logic.fnv32a(b"a") == 0xE40C292C
    assert sts_logic.fnv32a(b"foobar") == 0xBF9CF968


def test_template_hash_is_stable_short_and_safe():
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "nginx"}]}}
    same = {"spec": {"containers": [{"image": "nginx", "name": "a"}]}, "metadata": {"labels": {"app": "web"}}}
    h = sts_logic.template_hash(template, 0)
    assert h == sts_logic.template_hash(same, 0)  # key order does not matter
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    other = {**template, "spec": {"containers": [{"name": "a", "image": "nginx:2"}]}}
    assert sts_logic.template_hash(other, 0) != h
    assert sts_logic.template_hash(template, 1) != h  # a collision count gives another name


def test_safe_encode_maps_digits_like_apimachinery():
    # '0' is 48: 48 % 27 = 21 -> '4'; '9' is 57: 57 % 27 = 3 -> 'f'
    assert sts_logic.safe_encode("09") == "4f"


def sts(name="web", replicas=3, strategy=None, service="web", generation=2, start=None, min_ready=0):
    spec = {"replicas": replicas, "serviceName": service, "selector": {"matchLabels": {"app": name}},
            "updateStrategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    if start is not None:
        spec["ordinals"] = {"start": start}
    if min_ready:
        spec["minReadySeconds"] = min_ready
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": "ns", "uid": "sts-uid", "generation": generation},
            "spec": spec}


def test_new_stateful_pod_has_identity_owner_and_revision():
    p = sts_logic.new_stateful_pod(sts(), sts()["spec"]["template"], "web-abc", 2)
    assert p["metadata"]["name"] == "web-2" and "generateName" not in p["metadata"]
    assert p["metadata"]["labels"] == {"app": "web", "statefulset.kubernetes.io/pod-name": "web-2",
                                       "apps.kubernetes.io/pod-index": "2", "controller-revision-hash": "web-abc"}
    assert p["spec"]["hostname"] == "web-2" and p["spec"]["subdomain"] == "web"
    assert p["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                                                 "uid": "sts-uid", "controller": True, "blockOwnerDeletion": True}]
    assert sts_logic.identity_matches(sts(), p, 2)
    assert not sts_logic.identity_matches(sts(), p, 1)


@pytest.mark.parametrize("strategy, ordinal, keeps", [
    ({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}, 1, True),
    ({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}, 2, False),
    ({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}, 0, False),
    ({"type": "OnDelete"}, 0, False),  # recreated pods take the new template
])
def test_keeps_current_revision(strategy, ordinal, keeps):
    assert sts_logic.keeps_current_revision(sts(strategy=strategy), ordinal) is keeps


def test_status_counts_and_promotes_a_complete_rolling_update():
    pods = [pod("web-0", revision="new"), pod("web-1", revision="new"), pod("web-2", revision="new")]
    status = sts_logic.compute_status(sts(), pods, "old", "new", 0, NOW)
    assert status == {"observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "currentReplicas": 3,
                      "updatedReplicas": 3, "currentRevision": "new", "updateRevision": "new",
                      "collisionCount": 0, "availableReplicas": 3}


def test_status_during_an_update_and_with_terminating_and_unready_pods():
    pods = [pod("web-0", revision="old"), pod("web-1", revision="old", deleting=True),
            pod("web-2", phase="Pending", ready=False, revision="new")]
    status = sts_logic.compute_status(sts(), pods, "old", "new", 0, NOW)
    assert status["replicas"] == 3 and status["readyReplicas"] == 2
    assert status["currentReplicas"] == 1 and status["updatedReplicas"] == 1  # terminating counts in neither
    assert status["currentRevision"] == "old" and status["updateRevision"] == "new"


def test_status_on_delete_never_promotes_and_zero_fields_are_omitted():
    pods = [pod("web-0", revision="new")]
    status = sts_logic.compute_status(sts(replicas=1, strategy={"type": "OnDelete"}), pods, "old", "new", 0, NOW)
    assert status["currentRevision"] == "old" and "currentReplicas" not in status
    empty = sts_logic.compute_status(sts(replicas=0), [], "r", "r", 0, NOW)
    assert empty == {"observedGeneration": 2, "replicas": 0, "currentRevision": "r", "updateRevision": "r",
                     "collisionCount": 0, "availableReplicas": 0}


def test_availability_waits_for_min_ready_seconds():
    fresh = pod("web-0", ready_for=3)
    assert sts_logic.available_in(fresh, 10, NOW) == pytest.approx(7)
    assert sts_logic.available_in(pod("web-0", ready_for=30), 10, NOW) == 0.0
    assert sts_logic.available_in(pod("web-0", ready=False), 10, NOW) is None
    status = sts_logic.compute_status(sts(replicas=1, min_ready=10), [fresh], "r", "r", 0, NOW)
    assert status["readyReplicas"] == 1 and status["availableReplicas"] == 0


# ---- DaemonSet -------------------------------------------------------------------------------


def node(name: str, labels: dict | None = None, taints: list | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints} if taints else {}}


def daemonset(template_spec: dict | None = None, max_unavailable=1, generation="1") -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "ns", "uid": "ds-uid", "generation": 1,
                         "annotations": {"deprecated.daemonset.template.generation": generation}},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": {"type": "RollingUpdate",
                                        "rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": 0}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": template_spec or {"containers": [{"name": "c", "image": "i"}]}}}}


def test_daemon_tolerations_are_added_once_and_network_one_for_host_network():
    spec = {"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}, {"key": "mine", "operator": "Exists"}]}
    ds_logic.add_daemon_tolerations(spec)
    keys = [(t["key"], t.get("effect")) for t in spec["tolerations"]]
    assert keys[0] == ("node.kubernetes.io/not-ready", "NoExecute")
    assert "tolerationSeconds" not in spec["tolerations"][0]  # replaced by the unbounded one
    assert len(keys) == 7 and ("mine", None) in keys
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") not in keys
    host = {"hostNetwork": True}
    ds_logic.add_daemon_tolerations(host)
    assert host["tolerations"][-1]["key"] == "node.kubernetes.io/network-unavailable"
    ds_logic.add_daemon_tolerations(host)
    assert len(host["tolerations"]) == 7


def test_node_affinity_replaces_required_terms_and_keeps_preferred():
    preferred = [{"weight": 1, "preference": {"matchExpressions": [{"key": "z", "operator": "Exists"}]}}]
    spec = {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": preferred}}}
    ds_logic.set_node_affinity(spec, "n1")
    node_affinity = spec["affinity"]["nodeAffinity"]
    assert node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] == {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}
    assert node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] == preferred
    assert ds_logic.target_node({"spec": spec}) == "n1"
    assert ds_logic.target_node({"spec": {**spec, "nodeName": "n2"}}) == "n2"
    assert ds_logic.target_node({"spec": {}}) == ""


SSD = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]},
    {"matchExpressions": [{"key": "cpus", "operator": "Gt", "values": ["8"]}]}]}}}}


@pytest.mark.parametrize("template_spec, the_node, expected", [
    ({}, node("n"), (True, True)),
    ({"nodeSelector": {"pool": "a"}}, node("n", {"pool": "a"}), (True, True)),
    ({"nodeSelector": {"pool": "a"}}, node("n", {"pool": "b"}), (False, False)),
    ({"nodeName": "other"}, node("n"), (False, False)),
    (SSD, node("n", {"disk": "ssd"}), (True, True)),
    (SSD, node("n", {"cpus": "16"}), (True, True)),
    (SSD, node("n", {"cpus": "4"}), (False, False)),
    # An untolerated NoSchedule taint: no new pod, but one already there may stay.
    ({}, node("n", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]), (False, True)),
    ({}, node("n", taints=[{"key": "dedicated", "effect": "NoExecute"}]), (False, False)),
    ({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db"}]},
     node("n", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]), (True, True)),
    # The standard DaemonSet tolerations let it run on not-ready and unschedulable nodes.
    ({}, node("n", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                           {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]), (True, True)),
    ({}, node("n", taints=[{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]), (False, True)),
    ({"hostNetwork": True},
     node("n", taints=[{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]), (True, True)),
    ({}, node("n", taints=[{"key": "soft", "effect": "PreferNoSchedule"}]), (True, True)),
])
def test_node_should_run(template_spec, the_node, expected):
    spec = {"containers": [{"name": "c", "image": "i"}], **template_spec}
    assert ds_logic.node_should_run(daemonset(spec), the_node) == expected


@pytest.mark.parametrize("toleration, taint, expected", [
    ({"operator": "Exists"}, {"key": "a", "effect": "NoSchedule"}, True),
    ({"key": "a", "operator": "Exists"}, {"key": "a", "value": "x", "effect": "NoExecute"}, True),
    ({"key": "a", "operator": "Exists", "effect": "NoSchedule"}, {"key": "a", "effect": "NoExecute"}, False),
    ({"key": "a", "value": "x"}, {"key": "a", "value": "x", "effect": "NoSchedule"}, True),
    ({"key": "a", "value": "x"}, {"key": "a", "value": "y", "effect": "NoSchedule"}, False),
    ({"key": "b", "operator": "Exists"}, {"key": "a", "effect": "NoSchedule"}, False),
])
def test_tolerates(toleration, taint, expected):
    assert nodefit.tolerates(toleration, taint) is expected


@pytest.mark.parametrize("value, desired, expected", [(1, 10, 1), (3, 10, 3), ("10%", 10, 1), ("25%", 10, 3),
                                                       ("0%", 10, 1), (0, 5, 1), ("50%", 3, 2)])
def test_resolve_max_unavailable(value, desired, expected):
    assert ds_logic.resolve_max_unavailable(daemonset(max_unavailable=value), desired) == expected


def ds_pod(name: str, node_name: str, hash_: str, ready: bool = True, deleting: bool = False) -> dict:
    return pod(name, labels={"app": "agent", "controller-revision-hash": hash_}, node=node_name, ready=ready,
               deleting=deleting)


def test_rolling_update_deletes_unavailable_old_pods_and_up_to_max_unavailable_others():
    ds = daemonset(max_unavailable=1, generation="2")
    node_to_pods = {
        "n1": [ds_pod("a", "n1", "old")],
        "n2": [ds_pod("b", "n2", "old")],
        "n3": [ds_pod("c", "n3", "old", ready=False)],  # unavailable: replaced whatever the budget
    }
    chosen = [p["metadata"]["name"] for p in ds_logic.rolling_update_deletions(ds, node_to_pods, "new", 3, NOW)]
    assert chosen == ["c", "a"]
    # A new pod that is not available yet uses the whole budget.
    node_to_pods["n3"] = [ds_pod("c2", "n3", "new", ready=False)]
    assert ds_logic.rolling_update_deletions(ds, node_to_pods, "new", 3, NOW) == []
    node_to_pods["n3"] = [ds_pod("c2", "n3", "new")]
    assert [p["metadata"]["name"] for p in ds_logic.rolling_update_deletions(ds, node_to_pods, "new", 3, NOW)] \
        == ["a"]


def test_daemon_status_counts_nodes():
    spec = {"containers": [{"name": "c", "image": "i"}], "nodeSelector": {"pool": "a"}}
    ds = daemonset(spec)
    nodes = [node("n1", {"pool": "a"}), node("n2", {"pool": "a"}), node("n3", {"pool": "a"}), node("n4")]
    node_to_pods = {"n1": [ds_pod("a", "n1", "h")], "n2": [ds_pod("b", "n2", "old", ready=False)],
                    "n4": [ds_pod("d", "n4", "h")]}
    status = ds_logic.daemon_status(ds, nodes, node_to_pods, "h", NOW)
    assert status == {"currentNumberScheduled": 2, "numberMisscheduled": 1, "desiredNumberScheduled": 3,
                      "numberReady": 1, "observedGeneration": 1, "updatedNumberScheduled": 1,
                      "numberAvailable": 1, "numberUnavailable": 2}


def test_pod_updated_by_hash_or_template_generation():
    assert ds_logic.is_pod_updated({"metadata": {"labels": {"controller-revision-hash": "h"}}}, "h", "3")
    assert ds_logic.is_pod_updated({"metadata": {"labels": {"pod-template-generation": "3"}}}, "x", "3")
    assert not ds_logic.is_pod_updated({"metadata": {"labels": {"pod-template-generation": "2"}}}, "x", "3")


# ---- garbage collector -----------------------------------------------------------------------


def obj(uid: str, owners: list[dict] | None = None, finalizers=None, deleting=False) -> dict:
    meta = {"name": uid, "namespace": "ns", "uid": uid, "ownerReferences": owners or []}
    if finalizers:
        meta["finalizers"] = finalizers
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return {"metadata": meta}


def ref(uid: str, block: bool = False) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": uid, "uid": uid, "blockOwnerDeletion": block}


def test_classify_references():
    refs = [ref("alive"), ref("gone"), ref("fg"), ref("bg-deleting")]
    owners = {"alive": obj("alive"), "gone": None, "fg": obj("fg", finalizers=["foregroundDeletion"], deleting=True),
              "bg-deleting": obj("bg-deleting", finalizers=["example.com/x"], deleting=True)}
    solid, dangling, waiting = gc.classify_references(refs, owners)
    assert [r["uid"] for r in solid] == ["alive", "bg-deleting"]
    assert [r["uid"] for r in dangling] == ["gone"]
    assert [r["uid"] for r in waiting] == ["fg"]


@pytest.mark.parametrize("solid, dangling, waiting, has_dependents, finalizers, expected", [
    (["a"], [], [], False, None, gc.Action("none")),
    (["a"], ["b"], ["c"], False, None, gc.Action("remove-refs", ("b", "c"))),
    ([], ["b"], [], False, None, gc.Action("delete", propagation="Background")),
    ([], ["b"], [], True, None, gc.Action("delete", propagation="Background")),
    ([], [], ["c"], True, None, gc.Action("delete", propagation="Foreground")),
    ([], [], ["c"], False, None, gc.Action("delete", propagation="Background")),
    ([], ["b"], [], False, ["orphan"], gc.Action("delete", propagation="Orphan")),
    ([], ["b"], [], False, ["foregroundDeletion"], gc.Action("delete", propagation="Foreground")),
])
def test_decide(solid, dangling, waiting, has_dependents, finalizers, expected):
    dependent = obj("d", finalizers=finalizers)
    action = gc.decide(dependent, [ref(u) for u in solid], [ref(u) for u in dangling], [ref(u) for u in waiting],
                       has_dependents)
    assert action == expected


def test_blocking_and_kinds():
    dependent = obj("d", [ref("a", block=True), ref("b")])
    assert gc.blocks_owner(dependent, "a") and not gc.blocks_owner(dependent, "b")
    assert gc.kind_for_reference({"apiVersion": "apps/v1", "kind": "Deployment"}).resource == "deployments"
    assert gc.kind_for_reference({"apiVersion": "v1", "kind": "Service"}).resource == "services"
    assert gc.kind_for_reference({"apiVersion": "example.com/v1", "kind": "Widget"}) is None
    assert gc.is_orphaning(obj("o", finalizers=["orphan"], deleting=True))
    assert not gc.is_orphaning(obj("o", finalizers=["orphan"]))


# ---- namespace deletion ------------------------------------------------------------------------


def test_namespace_conditions_all_clear():
    conditions = ns_logic.updated_conditions([], ns_logic.failure_conditions(ns_logic.ContentTotals()), "T0")
    assert [(c["type"], c["status"], c["reason"]) for c in conditions] == [
        ("NamespaceDeletionDiscoveryFailure", "False", "ResourcesDiscovered"),
        ("NamespaceDeletionGroupVersionParsingFailure", "False", "ParsedGroupVersions"),
        ("NamespaceDeletionContentFailure", "False", "ContentDeleted"),
        ("NamespaceContentRemaining", "False", "ContentRemoved"),
        ("NamespaceFinalizersRemaining", "False", "ContentHasNoFinalizers"),
    ]


def test_namespace_conditions_with_remaining_content():
    totals = ns_logic.ContentTotals(
        remaining={ns_logic.Resource("v1", "pods"): 2, ns_logic.Resource("apps/v1", "deployments"): 1},
        finalizers={"example.com/hold": 1})
    failures = ns_logic.failure_conditions(totals)
    assert failures["NamespaceContentRemaining"] == (
        "SomeResourcesRemain", "Some resources are remaining: deployments.apps has 1 resource instances, "
                               "pods. has 2 resource instances")
    assert failures["NamespaceFinalizersRemaining"] == (
        "SomeFinalizersRemain",
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
    first = ns_logic.updated_conditions([], failures, "T0")
    # The transition time moves only when the status does.
    same_status = ns_logic.updated_conditions(first, {**failures, "NamespaceContentRemaining": (
        "SomeResourcesRemain", "Some resources are remaining: pods. has 1 resource instances")}, "T1")
    remaining = next(c for c in same_status if c["type"] == "NamespaceContentRemaining")
    assert remaining["lastTransitionTime"] == "T0" and "pods. has 1" in remaining["message"]
    cleared = ns_logic.updated_conditions(same_status, {}, "T2")
    remaining = next(c for c in cleared if c["type"] == "NamespaceContentRemaining")
    assert (remaining["status"], remaining["lastTransitionTime"]) == ("False", "T2")
    other = ns_logic.updated_conditions([{"type": "Custom", "status": "True"}], {}, "T0")
    assert other[0] == {"type": "Custom", "status": "True"} and len(other) == 6


def test_grace_estimate():
    # deleted 10 s ago with 30 s of grace: deletionTimestamp is when the grace ends, 20 s from now
    terminating = {"metadata": {"deletionTimestamp": ts(-20), "deletionGracePeriodSeconds": 30}}
    assert ns_logic.grace_estimate(terminating, NOW.timestamp()) == 20
    assert ns_logic.grace_estimate({"metadata": {}}, NOW.timestamp()) == 0
