"""Pure logic of the workload controllers and the scheduler: the pod-template-hash, rolling
update arithmetic (fenceposts with percentages and Kubernetes' rounding, new ReplicaSet
size, proportional scaling), revisions, Deployment conditions, the order in which surplus
pods are deleted, ReplicaSet status, and the scheduler's filters and FitError message."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest

from pocketkube.controllers import deployment as dep
from pocketkube.controllers import podcontrol, scheduler
from pocketkube.controllers.replicaset import calculate_status
from pocketkube.core.quantity import parse_quantity

NOW = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def stamp(seconds_ago: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment(replicas=10, surge="25%", unavailable="25%", strategy="RollingUpdate", generation=1, **spec):
    s = {"replicas": replicas, "strategy": {"type": strategy}, "progressDeadlineSeconds": 600,
         "selector": {"matchLabels": {"app": "web"}},
         "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    if strategy == "RollingUpdate":
        s["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    s.update(spec)
    return {"metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": generation},
            "spec": s, "status": {}}


def replicaset(name, replicas, created="2025-01-01T00:00:00Z", available=0, ready=None, status_replicas=None,
               annotations=None, uid=None):
    return {"metadata": {"name": name, "uid": uid or name, "creationTimestamp": created,
                         "annotations": dict(annotations or {})},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas if status_replicas is None else status_replicas,
                       "readyReplicas": available if ready is None else ready, "availableReplicas": available}}


# ---- the pod-template-hash ------------------------------------------------------------------


def test_fnv32a_matches_the_reference_vectors():
    assert dep.fnv32a(b"") == 0x811C9DC5
    assert dep.fnv32a(b"a") == 0xE40C292C
    assert dep.fnv32a(b"foobar") == 0xBF9CF968


def test_safe_encode_maps_digits_into_the_vowel_free_alphabet():
    assert dep.safe_encode("0123456789") == "456789bcdf"


def test_compute_hash_is_stable_and_changes_with_template_and_collision_count():
    template = deployment()["spec"]["template"]
    first = dep.compute_hash(template)
    assert first == dep.compute_hash(dict(template))
    assert set(first) <= set("456789bcdf") and 1 <= len(first) <= 10
    assert dep.compute_hash(template, 1) != first
    assert dep.compute_hash(template, 1) != dep.compute_hash(template, 2)
    changed = {**template, "spec": {"containers": [{"name": "c", "image": "other"}]}}
    assert dep.compute_hash(changed) != first


def test_templates_equal_ignoring_hash_and_zero_values():
    template = deployment()["spec"]["template"]
    with_hash = {"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}, "creationTimestamp": None},
                 "spec": {**template["spec"], "volumes": []}}
    assert dep.templates_equal_ignoring_hash(template, with_hash)
    assert not dep.templates_equal_ignoring_hash(template, {**with_hash, "spec": {"containers": []}})


# ---- rolling update arithmetic ---------------------------------------------------------------


@pytest.mark.parametrize("surge, unavailable, desired, expected", [
    ("25%", "25%", 10, (3, 2)),      # surge rounds up, unavailable down
    ("25%", "25%", 1, (1, 0)),
    ("25%", "25%", 4, (1, 1)),
    ("50%", "50%", 3, (2, 1)),
    ("0%", "0%", 10, (0, 1)),        # both zero: unavailable becomes 1
    (0, 0, 5, (0, 1)),
    (2, "10%", 5, (2, 0)),
    ("10%", 3, 5, (1, 3)),
    ("100%", "100%", 7, (7, 7)),
    (None, None, 3, (0, 1)),
])
def test_resolve_fenceposts(surge, unavailable, desired, expected):
    assert dep.resolve_fenceposts(surge, unavailable, desired) == expected


def test_scaled_value_rejects_strings_that_are_not_percentages():
    with pytest.raises(ValueError, match="string is not a percentage"):
        dep.scaled_value("5", 10, True)


@pytest.mark.parametrize("d, expected_unavailable, expected_surge", [
    (deployment(replicas=10), 2, 3),
    (deployment(replicas=0), 0, 0),
    (deployment(replicas=2, unavailable="100%"), 2, 1),
    (deployment(replicas=3, unavailable=5, surge=0), 3, 0),  # capped at replicas
    (deployment(replicas=5, strategy="Recreate"), 0, 0),
])
def test_max_unavailable_and_max_surge(d, expected_unavailable, expected_surge):
    assert dep.max_unavailable(d) == expected_unavailable
    assert dep.max_surge(d) == expected_surge


@pytest.mark.parametrize("d, sizes, new_size, expected", [
    (deployment(replicas=10), [10], 0, 3),     # room for maxSurge (3) new pods
    (deployment(replicas=10), [10], 3, 3),     # at 13 already: wait
    (deployment(replicas=10), [8], 3, 5),      # old scaled down to 8: up to 13 total
    (deployment(replicas=10), [0], 9, 10),     # never above spec.replicas
    (deployment(replicas=4, strategy="Recreate"), [4], 0, 4),
])
def test_new_rs_new_replicas(d, sizes, new_size, expected):
    new_rs = replicaset("new", new_size)
    old = [replicaset(f"old{i}", n) for i, n in enumerate(sizes)]
    assert dep.new_rs_new_replicas(d, old + [new_rs], new_rs) == expected


def test_proportional_scaling_of_a_rollout_in_flight():
    # Scaling 10 -> 15 (maxSurge 3, so 13 -> 18 pods) while old has 8 and new has 5.
    d = deployment(replicas=15, surge=3, unavailable=2)
    old = replicaset("old", 8, created="2025-01-01T00:00:00Z", annotations={dep.MAX_REPLICAS_ANNOTATION: "13"})
    new = replicaset("new", 5, created="2025-01-01T00:01:00Z", annotations={dep.MAX_REPLICAS_ANNOTATION: "13"})
    result = [(rs["metadata"]["name"], size, op) for rs, size, op in dep.proportional_sizes(d, [new, old])]
    assert result == [("old", 11, "up"), ("new", 7, "up")]


def test_proportional_scaling_down_takes_leftovers_from_the_largest():
    d = deployment(replicas=5, surge=1, unavailable=0)
    old = replicaset("old", 6, created="2025-01-01T00:00:00Z", annotations={dep.MAX_REPLICAS_ANNOTATION: "11"})
    new = replicaset("new", 5, created="2025-01-01T00:01:00Z", annotations={dep.MAX_REPLICAS_ANNOTATION: "11"})
    result = {rs["metadata"]["name"]: size for rs, size, _ in dep.proportional_sizes(d, [old, new])}
    assert result == {"old": 3, "new": 3}
    assert sum(result.values()) == 5 + 1


def test_find_active_or_latest():
    newest = replicaset("b", 0, created="2025-01-02T00:00:00Z")
    oldest = replicaset("a", 0, created="2025-01-01T00:00:00Z")
    assert dep.find_active_or_latest(None, [oldest, newest]) is newest
    active = replicaset("c", 2)
    assert dep.find_active_or_latest(newest, [active, oldest]) is active
    assert dep.find_active_or_latest(replicaset("n", 1), [active]) is None


# ---- revisions and annotations ----------------------------------------------------------------


def test_new_replicaset_annotations_on_create_copy_the_deployment_annotations():
    d = deployment(replicas=3)
    d["metadata"]["annotations"] = {"kubernetes.io/change-cause": "kubectl set image",
                                    dep.LAST_APPLIED_ANNOTATION: "{}", dep.REVISION_ANNOTATION: "7"}
    rs = {"metadata": {}}
    assert dep.set_new_replicaset_annotations(d, rs, "2", exists=False)
    assert rs["metadata"]["annotations"] == {
        "kubernetes.io/change-cause": "kubectl set image", dep.REVISION_ANNOTATION: "2",
        dep.DESIRED_REPLICAS_ANNOTATION: "3", dep.MAX_REPLICAS_ANNOTATION: "4"}


def test_rollback_keeps_the_old_revision_in_the_history():
    d = deployment()
    rs = {"metadata": {"annotations": {dep.REVISION_ANNOTATION: "1"}}}
    assert dep.set_new_replicaset_annotations(d, rs, "3", exists=True)
    assert rs["metadata"]["annotations"][dep.REVISION_HISTORY_ANNOTATION] == "1"
    assert dep.set_new_replicaset_annotations(d, rs, "5", exists=True)
    assert rs["metadata"]["annotations"][dep.REVISION_HISTORY_ANNOTATION] == "1,3"
    assert not dep.set_new_replicaset_annotations(d, rs, "4", exists=True)


# ---- status and conditions ---------------------------------------------------------------------


def test_status_of_a_complete_rollout():
    d = deployment(replicas=3)
    new = replicaset("web-abc", 3, available=3)
    status = dep.rollout_status(d, [new], new, NOW)
    assert (status["replicas"], status["updatedReplicas"], status["readyReplicas"], status["availableReplicas"],
            status["unavailableReplicas"], status["observedGeneration"]) == (3, 3, 3, 3, 0, 1)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conditions["Available"]["message"] == "Deployment has minimum availability."
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conditions["Progressing"]["message"] == 'ReplicaSet "web-abc" has successfully progressed.'
    assert [c["type"] for c in status["conditions"]] == ["Available", "Progressing"]


def test_status_while_rolling_and_when_the_deadline_passes():
    d = deployment(replicas=4)
    d["status"] = {"replicas": 4, "updatedReplicas": 0, "availableReplicas": 4,
                   "conditions": [dep.new_condition("Progressing", "True", dep.NEW_RS_REASON, "x",
                                                    NOW - dt.timedelta(seconds=700))]}
    old, new = replicaset("old", 3, available=3), replicaset("new", 2, available=0)
    status = dep.rollout_status(d, [old, new], new, NOW)
    progressing = dep.get_condition(status, "Progressing")
    assert (progressing["reason"], progressing["message"]) == ("ReplicaSetUpdated", 'ReplicaSet "new" is progressing.')
    assert status["unavailableReplicas"] == 2
    d["status"] = {**status, "conditions": [dep.new_condition("Progressing", "True", dep.RS_UPDATED_REASON, "x",
                                                              NOW - dt.timedelta(seconds=700))]}
    timed_out = dep.get_condition(dep.rollout_status(d, [old, new], new, NOW), "Progressing")
    assert (timed_out["status"], timed_out["reason"], timed_out["message"]) == \
        ("False", "ProgressDeadlineExceeded", 'ReplicaSet "new" has timed out progressing.')


def test_available_false_below_minimum():
    d = deployment(replicas=4)  # maxUnavailable 1: needs 3 available
    status = dep.calculate_status([replicaset("a", 4, available=2)], None, d, NOW)
    available = dep.get_condition(status, "Available")
    assert (available["status"], available["reason"], available["message"]) == \
        ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")


def test_set_condition_keeps_transition_time_and_moves_changed_condition_last():
    status = {"conditions": []}
    dep.set_condition(status, dep.new_condition("Progressing", "True", "A", "a", NOW - dt.timedelta(hours=1)))
    dep.set_condition(status, dep.new_condition("Available", "True", "B", "b", NOW))
    dep.set_condition(status, dep.new_condition("Progressing", "True", "C", "c", NOW))
    assert [c["type"] for c in status["conditions"]] == ["Available", "Progressing"]
    assert status["conditions"][1]["lastTransitionTime"] == stamp(3600)
    assert status["conditions"][1]["lastUpdateTime"] == stamp(0)


# ---- which pods a scale-down deletes first ------------------------------------------------------


def pod(name, node="n1", phase="Running", ready_since=None, created=100, restarts=0, cost=None, uid=None):
    p = {"metadata": {"name": name, "uid": uid or name, "creationTimestamp": stamp(created)},
         "spec": {"nodeName": node} if node else {},
         "status": {"phase": phase, "containerStatuses": [{"restartCount": restarts}]}}
    if ready_since is not None:
        p["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": stamp(ready_since)}]
    if cost is not None:
        p["metadata"]["annotations"] = {podcontrol.POD_DELETION_COST_ANNOTATION: str(cost)}
    return p


@pytest.mark.parametrize("first, second, rank_first, rank_second, why", [
    (pod("a", node=None), pod("b", ready_since=10), 0, 0, "unassigned before assigned"),
    (pod("a", phase="Pending"), pod("b", phase="Running"), 0, 0, "pending before running"),
    (pod("a", phase="Unknown"), pod("b", phase="Running"), 0, 0, "unknown before running"),
    (pod("a"), pod("b", ready_since=10), 0, 0, "not ready before ready"),
    (pod("a", ready_since=10, cost=-5), pod("b", ready_since=10), 0, 0, "lower deletion cost first"),
    (pod("a", ready_since=10), pod("b", ready_since=10), 3, 1, "doubled up on a node first"),
    (pod("a", ready_since=10), pod("b", ready_since=5000), 0, 0, "ready for less time first"),
    (pod("a", restarts=4), pod("b", restarts=1), 0, 0, "more restarts first"),
    (pod("a", created=10), pod("b", created=5000), 0, 0, "newer first"),
])
def test_deletion_order(first, second, rank_first, rank_second, why):
    assert podcontrol.deletion_precedes(first, rank_first, second, rank_second, NOW), why
    assert not podcontrol.deletion_precedes(second, rank_second, first, rank_first, NOW), why


def test_same_log_bucket_falls_back_to_uid():
    a, b = pod("a", created=1000, uid="b-uid"), pod("b", created=1001, uid="a-uid")
    assert podcontrol.deletion_precedes(b, 0, a, 0, NOW)


def test_pods_to_delete_ranks_by_colocation():
    pods = [pod("on-busy-1", node="busy", ready_since=99), pod("on-busy-2", node="busy", ready_since=99),
            pod("alone", node="quiet", ready_since=99), pod("pending", phase="Pending")]
    chosen = podcontrol.pods_to_delete(pods, pods, 2, NOW)
    assert chosen[0]["metadata"]["name"] == "pending"
    assert chosen[1]["metadata"]["name"].startswith("on-busy")


# ---- ReplicaSet status ----------------------------------------------------------------------------


def test_replicaset_status_counts_and_failure_condition():
    rs = {"metadata": {"generation": 2}, "status": {},
          "spec": {"replicas": 3, "minReadySeconds": 30, "template": {"metadata": {"labels": {"app": "a", "t": "1"}}}}}
    pods = [
        {"metadata": {"labels": {"app": "a", "t": "1"}}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2000-01-01T00:00:00Z"}]}},
        {"metadata": {"labels": {"app": "a", "t": "1"}}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2999-01-01T00:00:00Z"}]}},
        {"metadata": {"labels": {"app": "a"}}, "status": {}},
    ]
    status = calculate_status(rs, pods, None)
    assert (status["replicas"], status["fullyLabeledReplicas"], status["readyReplicas"],
            status["availableReplicas"]) == (3, 2, 2, 1)
    failed = calculate_status(rs, pods[:1], RuntimeError("quota exceeded"))
    condition = failed["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"], condition["message"]) == \
        ("ReplicaFailure", "True", "FailedCreate", "quota exceeded")
    assert calculate_status({**rs, "status": failed}, pods, None)["conditions"] == []


def test_expectations_wait_for_own_writes():
    e = podcontrol.Expectations()
    assert e.satisfied("ns/rs")
    e.expect_creations("ns/rs", 2)
    e.creation_observed("ns/rs")
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert e.satisfied("ns/rs")
    e.expect_deletions("ns/rs", ["ns/p1"])
    assert not e.satisfied("ns/rs")
    e.deletion_observed("ns/rs", "ns/p1")
    assert e.satisfied("ns/rs")


async def test_slow_start_batch_stops_after_a_failing_batch():
    calls = []

    async def create():
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")

    successes, error = await podcontrol.slow_start_batch(10, 1, create)
    assert len(calls) == 3 and successes == 2 and str(error) == "boom"  # batches of 1 and 2


# ---- the scheduler -----------------------------------------------------------------------------------


def node(name, labels=None, taints=None, ready="True", unschedulable=False, pods="110"):
    n = {"metadata": {"name": name, "labels": labels or {}}, "spec": {},
         "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": pods}}}
    if ready is not None:
        n["status"]["conditions"] = [{"type": "Ready", "status": ready}]
    if taints:
        n["spec"]["taints"] = taints
    if unschedulable:
        n["spec"]["unschedulable"] = True
    return n


def spod(**spec):
    return {"metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "i"}], **spec}, "status": {"phase": "Pending"}}


@pytest.mark.parametrize("p, n, reasons", [
    (spod(), node("a"), []),
    (spod(), node("a", unschedulable=True), ["node(s) were unschedulable"]),
    (spod(), node("a", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
     ["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]),
    (spod(tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]),
     node("a", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]), []),
    (spod(), node("a", taints=[{"key": "gpu", "value": "yes", "effect": "PreferNoSchedule"}]), []),
    (spod(tolerations=[{"key": "gpu", "operator": "Equal", "value": "no", "effect": "NoExecute"}]),
     node("a", taints=[{"key": "gpu", "value": "yes", "effect": "NoExecute"}]),
     ["node(s) had untolerated taint {gpu: yes}"]),
    (spod(), node("a", ready="False"), ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]),
    (spod(), node("a", ready="Unknown"), ["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]),
    (spod(nodeSelector={"disk": "ssd"}), node("a", labels={"disk": "hdd"}),
     ["node(s) didn't match Pod's node affinity/selector"]),
    (spod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]}}}),
     node("a"), []),
    (spod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}]}}}),
     node("a", labels={"cores": "4"}), ["node(s) didn't match Pod's node affinity/selector"]),
    (spod(containers=[{"name": "c", "image": "i", "resources": {"requests": {"cpu": "3", "memory": "512Mi"}}}]),
     node("a"), ["Insufficient cpu"]),
    (spod(), node("a", pods="0"), ["Too many pods"]),
])
def test_filters(p, n, reasons):
    got, _ = scheduler.unfit_reasons(p, scheduler.pod_demand(p), n, scheduler.NodeUsage())
    assert got == reasons


def test_host_port_conflict():
    p = spod(containers=[{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 80}]}])
    usage = scheduler.NodeUsage()
    usage.put("default/other", scheduler.pod_demand(p))
    assert scheduler.unfit_reasons(p, scheduler.pod_demand(p), node("a"), usage) == \
        (["node(s) didn't have free ports for the requested pod ports"], True)


@pytest.mark.parametrize("failures, message", [
    ({"a": (["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"], False)},
     "0/1 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. "
     "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."),
    ({"a": (["node(s) didn't match Pod's node affinity/selector"], False),
      "b": (["node(s) didn't match Pod's node affinity/selector"], False),
      "c": (["node(s) had untolerated taint {node-role.kubernetes.io/master: }"], False)},
     "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/master: }, "
     "2 node(s) didn't match Pod's node affinity/selector. "
     "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."),
    ({"a": (["node(s) had untolerated taint {machine-check-exception: memory}"], False),
      "b": (["Insufficient cpu"], True), "c": (["Insufficient cpu"], True)},
     "0/3 nodes are available: 1 node(s) had untolerated taint {machine-check-exception: memory}, "
     "2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
     "2 No preemption victims found for incoming pod."),
])
def test_fit_error_message(failures, message):
    assert scheduler.fit_error_message(len(failures), failures) == message


@pytest.mark.parametrize("text, value", [
    ("100m", Fraction(1, 10)), ("2", 2), ("1Gi", 2**30), ("1.5G", 1_500_000_000), ("1e3", 1000),
    ("512Ki", 512 * 1024), ("bad", None),
])
def test_parse_quantity(text, value):
    assert parse_quantity(text) == value


def test_needs_scheduling_only_own_unbound_live_pods():
    assert scheduler.needs_scheduling(spod())
    assert not scheduler.needs_scheduling(spod(nodeName="a"))
    assert not scheduler.needs_scheduling(spod(schedulerName="other"))
    assert not scheduler.needs_scheduling({**spod(), "status": {"phase": "Succeeded"}})
