"""The node lifecycle and taint eviction controllers' decisions, with a fake clock: when a
node's heartbeats count as stopped, what its conditions and taints become, zone states, the
tainting rate limiter, and when a pod is evicted from its tolerations."""

from __future__ import annotations

import pytest

from pocketkube.controllers import nodelifecycle as nl
from pocketkube.controllers import tainteviction as te
from pocketkube.controllers.scheduler import node_taints
from pocketkube.core.objects import rfc3339_at

T0 = 1_700_000_000.0


def node(ready: str | None = "True", heartbeat: float = T0, *, taints=None, unschedulable=False,
         conditions: dict | None = None, created: float = T0 - 100, labels=None) -> dict:
    conds = []
    for kind, status in {**({"Ready": ready} if ready else {}), **(conditions or {})}.items():
        conds.append({"type": kind, "status": status, "lastHeartbeatTime": rfc3339_at(heartbeat),
                      "lastTransitionTime": rfc3339_at(created), "reason": "KubeletReady", "message": "ok"})
    spec = {"taints": taints} if taints else {}
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": {"name": "n1", "creationTimestamp": rfc3339_at(created), "labels": labels or {}},
            "spec": spec, "status": {"conditions": conds}}


def lease(renew: float) -> dict:
    return {"spec": {"renewTime": rfc3339_at(renew).replace("Z", ".000000Z")}}


# ---- the grace period ---------------------------------------------------------------------------


def test_a_renewed_lease_keeps_a_node_healthy_without_new_status():
    n = node(heartbeat=T0)
    first = nl.assess(None, n, lease(T0), T0, grace=40)
    assert first.write is None and first.health.probe == T0
    # the status heartbeat never changes again, but the Lease is renewed every 10 s
    health = first.health
    for t in range(10, 200, 10):
        result = nl.assess(health, n, lease(T0 + t), T0 + t, grace=40)
        assert result.write is None, t
        health = result.health
    assert health.probe == T0 + 190


def test_no_heartbeat_for_the_grace_period_marks_the_conditions_unknown():
    n = node(conditions={"MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False",
                         "NetworkUnavailable": "False"})
    health = nl.assess(None, n, lease(T0), T0, grace=40).health
    assert nl.assess(health, n, lease(T0), T0 + 40, grace=40).write is None  # exactly the grace period: not yet
    result = nl.assess(health, n, lease(T0), T0 + 41, grace=40)
    assert result.observed["status"] == "True" and result.current["status"] == "Unknown"
    by_type = {c["type"]: c for c in result.write}
    for kind in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
        assert by_type[kind]["status"] == "Unknown"
        assert by_type[kind]["reason"] == "NodeStatusUnknown"
        assert by_type[kind]["message"] == "Kubelet stopped posting node status."
        assert by_type[kind]["lastTransitionTime"] == rfc3339_at(T0 + 41)
        assert by_type[kind]["lastHeartbeatTime"] == rfc3339_at(T0)  # kept: the last one the kubelet posted
    assert by_type["NetworkUnavailable"]["status"] == "False"  # managed elsewhere, left alone
    # once written, the next pass sees Unknown and writes nothing more
    stored = {**n, "status": {"conditions": result.write}}
    again = nl.assess(result.health, stored, lease(T0), T0 + 46, grace=40)
    assert again.write is None and again.observed["status"] == "Unknown" and again.current["status"] == "Unknown"


def test_a_new_status_heartbeat_counts_as_much_as_a_lease():
    health = nl.assess(None, node(heartbeat=T0), None, T0, grace=40).health
    health = nl.assess(health, node(heartbeat=T0 + 30), None, T0 + 30, grace=40).health
    assert nl.assess(health, node(heartbeat=T0 + 30), None, T0 + 65, grace=40).write is None
    assert nl.assess(health, node(heartbeat=T0 + 30), None, T0 + 71, grace=40).write is not None


def test_a_node_that_never_posted_status_gets_the_startup_grace_period():
    n = node(ready=None, created=T0)
    result = nl.assess(None, n, None, T0 + 59, grace=40, startup_grace=60)
    assert result.write is None and result.current is None and result.observed["status"] == "Unknown"
    result = nl.assess(result.health, n, None, T0 + 61, grace=40, startup_grace=60)
    by_type = {c["type"]: c for c in result.write}
    assert {c["reason"] for c in result.write} == {"NodeStatusNeverUpdated"}
    assert by_type["Ready"]["message"] == "Kubelet never posted node status."
    assert by_type["Ready"]["lastHeartbeatTime"] == rfc3339_at(T0)  # the creation time


# ---- which taints ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ready, key", [("False", "node.kubernetes.io/not-ready"),
                                        ("Unknown", "node.kubernetes.io/unreachable"), ("True", None)])
def test_no_schedule_taints_follow_the_ready_condition(ready, key):
    assert nl.no_schedule_taints(node(ready)) == ([{"key": key, "effect": "NoSchedule"}] if key else [])


def test_no_schedule_taints_of_pressure_and_cordon():
    n = node("True", conditions={"MemoryPressure": "True", "DiskPressure": "False", "PIDPressure": "True"},
             unschedulable=True)
    assert [t["key"] for t in nl.no_schedule_taints(n)] == [
        "node.kubernetes.io/memory-pressure", "node.kubernetes.io/pid-pressure", "node.kubernetes.io/unschedulable"]


def test_no_schedule_diff_keeps_other_taints_and_removes_stale_ones():
    n = node("True", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
                             {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
                             {"key": "dedicated", "value": "db", "effect": "NoSchedule"}], unschedulable=True)
    add, remove = nl.no_schedule_diff(n)
    assert add == [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
    assert remove == [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]


def test_swapped_taints_mirror_the_ready_condition():
    taints = [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "t1"},
              {"key": "a", "effect": "NoSchedule"}]
    out = nl.swapped_taints(taints, [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute", "timeAdded": "t2"}],
                            [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}])
    assert out == [{"key": "a", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute", "timeAdded": "t2"}]
    # adding a taint already there keeps the first one (and its timeAdded)
    assert nl.swapped_taints(out, [{"key": "a", "effect": "NoSchedule", "timeAdded": "t3"}], []) == out


def test_the_scheduler_counts_condition_taints_before_they_are_written():
    assert node_taints(node("Unknown")) == [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]
    written = node("Unknown", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule",
                                       "timeAdded": "t"}])
    assert node_taints(written) == written["spec"]["taints"]


# ---- zones and the tainting rate --------------------------------------------------------------------


def ready(status):
    return {"type": "Ready", "status": status}


@pytest.mark.parametrize("statuses, state", [
    (["True", "True"], "Normal"),
    (["True", "Unknown"], "Normal"),
    (["Unknown", "False"], "FullDisruption"),
    (["True", "Unknown", "Unknown", "False"], "PartialDisruption"),  # 3 of 4 >= 55%
    (["True", "True", "Unknown", "Unknown", "False"], "PartialDisruption"),  # 3 of 5 = 60%
    (["True", "True", "True", "Unknown", "Unknown", "False"], "Normal"),  # 3 of 6 = 50%
    (["True", "Unknown", "Unknown"], "Normal"),  # no more than 2 NotReady
])
def test_zone_state(statuses, state):
    assert nl.zone_state([ready(s) for s in statuses]) == (statuses.count("Unknown") + statuses.count("False"), state)


def test_zone_state_counts_a_node_without_ready_as_not_ready():
    assert nl.zone_state([None]) == (1, "FullDisruption")


def test_zone_key_and_partial_disruption_rate():
    assert nl.zone_key(node()) == ""
    assert nl.zone_key(node(labels={"topology.kubernetes.io/zone": "a", "topology.kubernetes.io/region": "r"})) \
        == "r:\x00:a"
    assert nl.zone_qps("Normal", 3) == 0.1
    assert nl.zone_qps("PartialDisruption", 10) == 0.0
    assert nl.zone_qps("PartialDisruption", 51) == 0.01


def test_taint_queue_lets_one_node_through_every_ten_seconds():
    now = [T0]
    queue = nl.TaintQueue(0.1, lambda: now[0])
    for name in ("a", "b", "c"):
        assert queue.add(name)
    assert not queue.add("a")
    assert queue.take() == ["a"]
    now[0] += 5
    assert queue.take() == []
    now[0] += 5
    assert queue.take() == ["b"]
    queue.swap_limiter(0)
    now[0] += 100
    assert queue.take() == []
    assert queue.remove("c") and not queue.remove("c")


# ---- taint-based eviction ------------------------------------------------------------------------------

UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}


def toleration(key, seconds=None, operator="Exists"):
    out = {"key": key, "operator": operator, "effect": "NoExecute"}
    if seconds is not None:
        out["tolerationSeconds"] = seconds
    return out


@pytest.mark.parametrize("tolerations, delay", [
    ([], 0.0),  # not tolerated: at once
    ([toleration("node.kubernetes.io/unreachable", 300)], 300.0),  # DefaultTolerationSeconds
    ([toleration("node.kubernetes.io/unreachable", 5), toleration("", 60)], 5.0),  # the first match is used
    ([toleration("node.kubernetes.io/unreachable")], None),  # forever
    ([toleration("node.kubernetes.io/unreachable", 0)], 0.0),
    ([toleration("node.kubernetes.io/unreachable", -3)], 0.0),
    ([toleration("node.kubernetes.io/not-ready", 300)], 0.0),  # tolerates another taint only
    ([{"operator": "Exists"}], None),  # tolerates everything
])
def test_eviction_delay(tolerations, delay):
    assert te.eviction_delay([UNREACHABLE], tolerations) == delay


def test_the_smallest_toleration_of_several_taints_wins():
    tolerations = [toleration("node.kubernetes.io/unreachable", 300), toleration("node.kubernetes.io/not-ready", 30)]
    assert te.eviction_delay([UNREACHABLE, NOT_READY], tolerations) == 30.0
    assert te.eviction_delay([UNREACHABLE, NOT_READY], tolerations[:1]) == 0.0


def test_a_scheduled_eviction_keeps_its_time():
    first = te.reschedule(None, 300, T0)
    assert first == te.Scheduled(T0, T0 + 300)
    assert te.reschedule(first, 5, T0 + 10) is None  # seen again later: unchanged
    assert te.reschedule(first, 5, T0) == te.Scheduled(T0, T0 + 5)  # the same instant: the new time


# ---- the agent back after the node was given up ------------------------------------------------------


def test_the_agent_writes_ready_again_when_someone_else_changed_it():
    from pocketkube.node.agent import NodeAgent

    agent = NodeAgent.__new__(NodeAgent)
    agent._ready_mismatch = {}
    ours = {"conditions": [{"type": "Ready", "status": "True"}]}
    agent._statuses = {"u1": ours}

    def stored(version: str, status: str) -> dict:
        return {"metadata": {"uid": "u1", "resourceVersion": version},
                "status": {"conditions": [{"type": "Ready", "status": status}]}}

    agent._reconcile_ready(stored("5", "True"))
    assert agent._statuses["u1"] is ours
    # the watch may still lag behind our own write: one look at a differing version changes nothing
    agent._reconcile_ready(stored("6", "False"))
    assert agent._statuses["u1"] is ours
    agent._reconcile_ready(stored("7", "True"))  # it caught up
    agent._reconcile_ready(stored("8", "False"))  # the node controller's MarkPodsNotReady
    agent._reconcile_ready(stored("8", "False"))  # still so a resync later: forget our write
    assert "u1" not in agent._statuses and not agent._ready_mismatch
