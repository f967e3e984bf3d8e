"""A Job's podFailurePolicy judged against failed pods (pocketkube/controllers/podfailurepolicy.py):
rule order, exit codes of app and init containers, container names, conditions, the actions."""

from __future__ import annotations

import pytest

from pocketkube.controllers.podfailurepolicy import judge


def failed_pod(*codes: tuple[str, int], init: tuple[str, int] | None = None, conditions=()) -> dict:
    def status(name, code):
        return {"name": name, "state": {"terminated": {"exitCode": code}}}
    return {"metadata": {"name": "job-abc", "namespace": "ns"},
            "status": {"phase": "Failed", "containerStatuses": [status(n, c) for n, c in codes],
                       "initContainerStatuses": [status(*init)] if init else [],
                       "conditions": [{"type": t, "status": s} for t, s in conditions]}}


def exit_rule(action, operator, values, container=None):
    req = {"operator": operator, "values": values}
    if container:
        req["containerName"] = container
    return {"action": action, "onExitCodes": req}


def test_no_policy_and_no_match_count_the_failure():
    pod = failed_pod(("main", 1))
    assert judge(None, pod).counts and judge(None, pod).action is None
    verdict = judge({"rules": [exit_rule("FailJob", "In", [42])]}, pod)
    assert (verdict.counts, verdict.action, verdict.message) == (True, None, None)


def test_fail_job_names_the_container_pod_code_and_rule_index():
    policy = {"rules": [exit_rule("Ignore", "In", [7]), exit_rule("FailJob", "In", [1, 42])]}
    verdict = judge(policy, failed_pod(("main", 42)))
    assert verdict.action == "FailJob" and verdict.counts
    assert verdict.message == "Container main for pod ns/job-abc failed with exit code 42 matching FailJob rule at index 1"


def test_the_first_matching_rule_decides():
    policy = {"rules": [exit_rule("Ignore", "NotIn", [1]), exit_rule("FailJob", "In", [3])]}
    verdict = judge(policy, failed_pod(("main", 3)))
    assert (verdict.action, verdict.counts) == ("Ignore", False)


@pytest.mark.parametrize("operator, values, code, matches", [
    ("In", [1, 2], 2, True), ("In", [1, 2], 3, False),
    ("NotIn", [1, 2], 3, True), ("NotIn", [1, 2], 1, False),
    ("NotIn", [1], 0, False),          # exit code 0 never matches
    ("Bogus", [1], 1, False),          # an unknown operator never matches
])
def test_exit_code_operators(operator, values, code, matches):
    verdict = judge({"rules": [exit_rule("Count", operator, values)]}, failed_pod(("main", code)))
    assert (verdict.action == "Count") is matches


def test_container_name_restricts_the_check_and_init_containers_are_seen():
    policy = {"rules": [exit_rule("FailJob", "In", [5], container="setup")]}
    assert judge(policy, failed_pod(("main", 5))).action is None
    verdict = judge(policy, failed_pod(init=("setup", 5)))
    assert verdict.message.startswith("Container setup for pod ns/job-abc failed with exit code 5")


def test_running_containers_have_no_exit_code_to_match():
    pod = failed_pod(("main", 1))
    pod["status"]["containerStatuses"].append({"name": "side", "state": {"running": {}}})
    assert judge({"rules": [exit_rule("FailJob", "NotIn", [1], container="side")]}, pod).action is None


def test_pod_conditions_match_type_and_status():
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                        {"action": "FailJob", "onPodConditions": [{"type": "ConfigIssue"}]}]}
    assert judge(policy, failed_pod(conditions=[("DisruptionTarget", "True")])).counts is False
    assert judge(policy, failed_pod(conditions=[("DisruptionTarget", "False")])).action is None
    verdict = judge(policy, failed_pod(conditions=[("ConfigIssue", "True")]))
    assert verdict.message == "Pod ns/job-abc has condition ConfigIssue matching FailJob rule at index 1"


def test_fail_index_counts_and_says_so():
    verdict = judge({"rules": [exit_rule("FailIndex", "In", [9])]}, failed_pod(("main", 9)))
    assert (verdict.action, verdict.counts, verdict.message) == ("FailIndex", True, None)
