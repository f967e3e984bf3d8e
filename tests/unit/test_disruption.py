"""PodDisruptionBudget facts shared by the eviction subresource and the disruption controller."""

from __future__ import annotations

import datetime as _dt

from pocketkube.core.disruption import budget_covers, pod_is_healthy, with_disruption_condition


def pod(labels, ns="a", ready=True):
    return {"metadata": {"name": "p", "namespace": ns, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pdb(selector, ns="a"):
    spec = {} if selector is None else {"selector": selector}
    return {"metadata": {"name": "b", "namespace": ns}, "spec": spec}


def test_a_budget_covers_pods_of_its_namespace_that_its_selector_matches():
    assert budget_covers(pdb({"matchLabels": {"app": "web"}}), pod({"app": "web"}))
    assert not budget_covers(pdb({"matchLabels": {"app": "web"}}), pod({"app": "db"}))
    assert not budget_covers(pdb({"matchLabels": {"app": "web"}}, ns="b"), pod({"app": "web"}))
    assert budget_covers(pdb({}), pod({"any": "thing"}))          # policy/v1: empty matches all
    assert not budget_covers(pdb(None), pod({"any": "thing"}))    # missing matches none


def test_healthy_means_ready():
    assert pod_is_healthy(pod({})) and not pod_is_healthy(pod({}, ready=False))
    assert not pod_is_healthy({"metadata": {}})


def test_the_condition_follows_the_allowance_and_keeps_its_transition_time():
    t0 = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)
    t1 = t0 + _dt.timedelta(seconds=9)
    status = {"disruptionsAllowed": 1}
    status["conditions"] = with_disruption_condition(status, 3, t0)
    assert status["conditions"] == [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                                     "message": "", "observedGeneration": 3,
                                     "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    assert with_disruption_condition(status, 3, t1)[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    status["disruptionsAllowed"] = 0
    spent = with_disruption_condition(status, 3, t1)[0]
    assert (spent["status"], spent["reason"], spent["lastTransitionTime"]) == \
        ("False", "InsufficientPods", "2026-01-01T00:00:09Z")
    failed = with_disruption_condition({"disruptionsAllowed": 5}, 1, t1, "SyncFailed", "found no controllers")
    assert (failed[0]["status"], failed[0]["reason"], failed[0]["message"]) == ("False", "SyncFailed",
                                                                               "found no controllers")
