"""The official `kubernetes` Python client against a real pocketkube API server, used as the
client's own e2e tests use it (kubernetes-client/python kubernetes/e2e_test and
kubernetes/base/dynamic/test_*.py; scripts/python-client-e2e runs those themselves).
Exec and port-forward through `kubernetes.stream` are in test_streaming.py."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
import uuid
from urllib.parse import urlparse

import pytest


def raw_get(server, path: str, headers: dict | None = None, method: str = "GET", body: bytes | None = None):
    """(status, headers, body bytes) of a request, read to the end."""
    u = urlparse(server.url)
    conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=30,
                                       context=ssl.create_default_context(cafile=server.ca))
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {server.token}", **(headers or {})})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.headers, body


def configmap(name: str, value: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"e2e-tests": "true"}},
            "data": {"key": value, "config": "dummy"}}


def test_watch_from_a_lists_resource_version(k8s_client, ns):
    """The upstream test_watch_configmaps: every event after the LIST, through watch.Watch()."""
    client, api_client = k8s_client
    from kubernetes import watch

    api = client.CoreV1Api(api_client)
    api.create_namespaced_config_map(ns, configmap("a", "a"))
    rv = api.list_namespaced_config_map(ns, label_selector="e2e-tests=true").metadata.resource_version
    b = configmap("b", "b")
    api.create_namespaced_config_map(ns, b)
    b["data"]["config"] = "{}"
    api.patch_namespaced_config_map("b", ns, b)
    api.delete_collection_namespaced_config_map(ns, label_selector="e2e-tests=true")
    seen = [(ev["type"], ev["object"].metadata.name)
            for ev in watch.Watch().stream(api.list_namespaced_config_map, ns, resource_version=rv,
                                           timeout_seconds=2, label_selector="e2e-tests=true")]
    assert seen[:2] == [("ADDED", "b"), ("MODIFIED", "b")]
    assert sorted(seen[2:]) == [("DELETED", "a"), ("DELETED", "b")]


@pytest.mark.parametrize("spelling", ["True", "true", "1", "t", "TRUE"])
def test_watch_spelled_as_any_client_does_is_a_watch(server, ns, spelling):
    """Clients up to v32 send watch=True: a stream of events, not a list."""
    status, headers, body = raw_get(server, f"/api/v1/namespaces/{ns}/configmaps?watch={spelling}"
                                            f"&timeoutSeconds=1")
    assert status == 200
    events = [json.loads(line) for line in body.splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "kube-root-ca.crt")]


@pytest.mark.parametrize("spelling", ["false", "False", "FALSE", "0"])
def test_watch_false_is_a_list(server, ns, spelling):
    status, _, body = raw_get(server, f"/api/v1/namespaces/{ns}/configmaps?watch={spelling}")
    assert status == 200 and json.loads(body)["kind"] == "ConfigMapList"


def test_pretty_output(k8s_client, server, ns):
    client, api_client = k8s_client
    deadline = time.monotonic() + 30
    # v32's spelling of pretty; the root CA publisher writes kube-root-ca.crt soon after the namespace
    while not client.CoreV1Api(api_client).list_namespaced_config_map(ns, pretty="True").items:
        assert time.monotonic() < deadline, "kube-root-ca.crt was never published in the namespace"
        time.sleep(0.1)
    _, _, pretty = raw_get(server, f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt?pretty=True")
    _, _, plain = raw_get(server, f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt")
    assert pretty.startswith(b'{\n  "apiVersion": "v1",\n  "kind": "ConfigMap",\n')
    assert json.loads(pretty) == json.loads(plain) and plain.count(b"\n") == 1 and plain.endswith(b"}\n")
    _, _, curl = raw_get(server, f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt",
                         {"User-Agent": "curl/8.5.0"})
    assert curl == pretty


def test_force_is_read_as_a_query_boolean(k8s_client, server, ns):
    """force=x is true (nothing in the query conversion fails): a non-apply patch may not force."""
    client, api_client = k8s_client
    client.CoreV1Api(api_client).create_namespaced_config_map(ns, configmap("forced", "a"))
    status, _, body = raw_get(server, f"/api/v1/namespaces/{ns}/configmaps/forced?force=x", method="PATCH",
                              body=b'{"data":{"key":"b"}}',
                              headers={"Content-Type": "application/merge-patch+json"})
    assert status == 422
    assert json.loads(body)["message"] == \
        'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch'


AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"


@pytest.mark.parametrize("path", ["/api", "/apis"])
def test_aggregated_discovery_is_byte_stable_with_an_etag(server, path):
    status, headers, first = raw_get(server, path, {"Accept": AGGREGATED})
    _, again_headers, again = raw_get(server, path, {"Accept": AGGREGATED})
    assert status == 200 and first == again
    tag = headers["ETag"]
    assert tag == again_headers["ETag"] and tag.startswith('"') and len(tag) == 130  # SHA-512, hex, quoted
    assert headers["Vary"] == "Accept" and headers["Cache-Control"] == "public"
    status, headers, body = raw_get(server, path, {"Accept": AGGREGATED, "If-None-Match": tag})
    assert (status, body, headers["ETag"]) == (304, b"", tag)
    status, _, body = raw_get(server, path, {"Accept": AGGREGATED, "If-None-Match": '"stale"'})
    assert status == 200 and body == first
    _, legacy_headers, _ = raw_get(server, path)
    assert "ETag" not in legacy_headers  # only the aggregated documents carry one


def test_every_listed_group_version_serves_resources(server):
    _, _, body = raw_get(server, "/apis")
    for group in json.loads(body)["groups"]:
        for version in group["versions"]:
            status, _, doc = raw_get(server, f"/apis/{version['groupVersion']}")
            assert status == 200 and json.loads(doc)["resources"], version["groupVersion"]


def test_dynamic_client_discovery_cache_is_written_once(k8s_client, tmp_path):
    """The upstream test_init_cache_from_file: a second client finds all it needs in the cache."""
    _, api_client = k8s_client
    from kubernetes.dynamic import DynamicClient

    cache = tmp_path / "discovery.json"
    first = DynamicClient(api_client, cache_file=str(cache)).resources.get(api_version="v1", kind="Node")
    written = cache.read_bytes()
    mtime = cache.stat().st_mtime_ns
    second = DynamicClient(api_client, cache_file=str(cache)).resources.get(api_version="v1", kind="Node")
    assert cache.stat().st_mtime_ns == mtime and cache.read_bytes() == written
    assert first.to_dict() == second.to_dict()
    deploy = DynamicClient(api_client, cache_file=str(cache)).resources.get(kind="Deployment")
    assert deploy.group_version == "apps/v1" and sorted(deploy.subresources) == ["scale", "status"]


def test_daemonset_create_answers_the_required_status_integers(k8s_client, ns):
    """The upstream test_create_daemonset: the client refuses a DaemonSetStatus without them."""
    client, api_client = k8s_client
    apps = client.AppsV1Api(api_client)
    template = {"metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx-app", "image": "nginx:1.15.4"}]}}
    created = apps.create_namespaced_daemon_set(ns, {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ds", "labels": {"app": "nginx"}},
        "spec": {"selector": {"matchLabels": {"app": "nginx"}}, "template": template,
                 "updateStrategy": {"type": "RollingUpdate"}}})
    status = created.status
    assert (status.current_number_scheduled, status.desired_number_scheduled, status.number_misscheduled,
            status.number_ready) == (0, 0, 0, 0)
    assert apps.read_namespaced_daemon_set("ds", ns).spec.template.spec.containers[0].name == "nginx-app"
    rs = apps.create_namespaced_replica_set(ns, {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "nginx"}}, "template": template}})
    assert rs.status.replicas == 0
    sts = apps.create_namespaced_stateful_set(ns, {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "sts"},
        "spec": {"replicas": 0, "serviceName": "sts", "selector": {"matchLabels": {"app": "nginx"}},
                 "template": template}})
    assert sts.status.replicas == 0
    apps.delete_namespaced_daemon_set("ds", ns, body=client.V1DeleteOptions())


def test_create_from_yaml_reports_conflicts_as_the_servers_status(k8s_client, ns, tmp_path):
    """The upstream multi-conflict test: each error is `Error from server (Conflict): ` and the body
    exactly as kube-apiserver sends it (compact, in metav1.Status field order, one newline)."""
    client, api_client = k8s_client
    from kubernetes import utils

    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "triple-nginx"},
                  "spec": {"selector": {"matchLabels": {"app": "nginx"}},
                           "template": {"metadata": {"labels": {"app": "nginx"}},
                                        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.15.4"}]}}}}
    manifest = tmp_path / "triple-nginx.yaml"
    manifest.write_text("\n---\n".join([json.dumps(deployment)] * 3))
    with pytest.raises(utils.FailToCreateError) as exc:
        utils.create_from_yaml(api_client, str(manifest), namespace=ns)
    one = ('Error from server (Conflict): {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
           '"message":"deployments.apps \\"triple-nginx\\" already exists","reason":"AlreadyExists",'
           '"details":{"name":"triple-nginx","group":"apps","kind":"deployments"},"code":409}\n')
    assert str(exc.value) == one + one
    assert client.AppsV1Api(api_client).read_namespaced_deployment("triple-nginx", ns).metadata.name == \
        "triple-nginx"
