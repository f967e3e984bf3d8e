"""ResourceQuotas against `pocketkube server`: the controller writes status.hard and
status.used; the API server refuses a create past status.hard with kube's 403 message; a
ReplicationController held back by a quota shows the ReplicaFailure condition, and loses it
once scaled within the quota (the upstream conformance spec's steps). Pods do not run here.
"""

from __future__ import annotations

import json
import threading

import pytest
from kubernetes.client.rest import ApiException

from tests.integration.test_workloads import eventually

pytestmark = pytest.mark.usefixtures("server")


@pytest.fixture(scope="module")
def core(k8s_client):
    client, api_client = k8s_client
    return client.CoreV1Api(api_client)


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def quota(server, ns: str, hard: dict) -> dict:
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"}, "spec": {"hard": hard}}))
    return eventually(lambda: (q := server.kubectl_json("get", "quota", "q", "-n", ns)).get("status", {}).get("hard") == hard and q)


def used(server, ns: str) -> dict:
    return server.kubectl_json("get", "quota", "q", "-n", ns)["status"]["used"]


def test_status_counts_what_the_namespace_holds(server, core, ns):
    core.create_namespaced_config_map(ns, {"metadata": {"name": "one"}})
    core.create_namespaced_service(ns, {"metadata": {"name": "np"}, "spec": {
        "type": "NodePort", "ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "b"}]}})
    q = quota(server, ns, {"pods": "5", "configmaps": "4", "services": "3", "services.nodeports": "4",
                           "count/secrets": "9", "requests.cpu": "1"})
    # the root CA ConfigMap each namespace gets, and ours; requests.cpu is not counted (no entry)
    assert q["status"]["used"] == {"pods": "0", "configmaps": "2", "services": "1", "services.nodeports": "2",
                                   "count/secrets": "0"}
    core.create_namespaced_pod(ns, pod("p1"))
    eventually(lambda: used(server, ns)["pods"] == "1")
    core.patch_namespaced_pod_status("p1", ns, {"status": {"phase": "Succeeded"}})  # finished: frees its unit
    eventually(lambda: used(server, ns)["pods"] == "0")
    described = server.kubectl("describe", "quota", "q", "-n", ns).stdout
    assert "services.nodeports  2     4" in described


def test_a_create_past_the_quota_is_forbidden(server, core, ns):
    quota(server, ns, {"pods": "2"})
    core.create_namespaced_pod(ns, pod("a"))
    core.create_namespaced_pod(ns, pod("b"))
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(ns, pod("c"))
    assert refused.value.status == 403
    status = json.loads(refused.value.body)
    assert status["reason"] == "Forbidden"
    assert status["message"] == ('pods "c" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, '
                                 'limited: pods=2')
    assert status["details"] == {"name": "c", "kind": "pods"}
    cp = server.kubectl("run", "d", "-n", ns, "--image=busybox", check=False)
    assert cp.returncode == 1
    assert 'Error from server (Forbidden): pods "d" is forbidden: exceeded quota: q' in cp.stderr
    core.delete_namespaced_pod("a", ns, grace_period_seconds=0)
    eventually(lambda: core.create_namespaced_pod(ns, pod("c")))


def test_creates_at_once_cannot_all_take_the_last_units(server, core, ns):
    quota(server, ns, {"configmaps": "6"})  # the namespace's root CA ConfigMap holds one
    results: list[int] = []

    def create(i: int) -> None:
        try:
            core.create_namespaced_config_map(ns, {"metadata": {"name": f"cm-{i}"}})
            results.append(201)
        except ApiException as exc:
            results.append(exc.status)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201] * 5 + [403] * 7
    eventually(lambda: used(server, ns)["configmaps"] == "6")


def test_replication_controller_held_back_by_a_quota_says_so(server, core, ns):
    quota(server, ns, {"pods": "2"})
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "condition-test"},
          "spec": {"replicas": 3, "selector": {"name": "condition-test"}, "template": {
              "metadata": {"labels": {"name": "condition-test"}},
              "spec": {"containers": [{"name": "httpd", "image": "httpd"}]}}}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(rc))

    def failure():
        got = server.kubectl_json("get", "rc", "condition-test", "-n", ns)
        return next((c for c in got["status"].get("conditions") or [] if c["type"] == "ReplicaFailure"), None)

    condition = eventually(failure)
    assert condition["reason"] == "FailedCreate"
    assert "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2" in condition["message"]
    server.kubectl("scale", "rc", "condition-test", "-n", ns, "--replicas=2")
    eventually(lambda: failure() is None and server.kubectl_json("get", "rc", "condition-test", "-n", ns)[
        "status"].get("observedGeneration") == 2)
