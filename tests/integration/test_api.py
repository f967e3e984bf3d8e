"""The API over raw HTTP and through the official `kubernetes` Python client: status codes,
metav1.Status bodies, watch semantics, optimistic concurrency and bad input."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import uuid
from urllib.parse import urlparse

import pytest


class Raw:
    """A minimal HTTPS client that returns (status, headers, parsed body)."""

    def __init__(self, server, token: str | None = "default"):
        u = urlparse(server.url)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=server.ca)
        self.token = server.token if token == "default" else token

    def request(self, method: str, path: str, body=None, content_type: str = "application/json",
                accept: str = "application/json"):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=30)
        headers = {"Accept": accept}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            headers["Content-Type"] = content_type
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data.decode(errors="replace")
        return resp.status, dict(resp.getheaders()), parsed


@pytest.fixture(scope="module")
def raw(server):
    return Raw(server)


def svc(name: str, port=80, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": port}], **spec}}


def test_anonymous_requests_are_forbidden_but_public_info(server):
    """No credentials: system:anonymous, which RBAC lets read /version and the health checks only."""
    anon = Raw(server, token=None)
    for path in ("/version", "/healthz", "/livez", "/readyz"):
        status, _, _ = anon.request("GET", path)
        assert status == 200, path
    status, _, body = anon.request("GET", "/apis")
    assert status == 403
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": 'forbidden: User "system:anonymous" cannot get path "/apis"', "reason": "Forbidden",
                    "details": {}, "code": 403}
    status, _, body = anon.request("GET", "/api/v1/namespaces/default/services")
    assert status == 403
    assert body["message"] == ('services is forbidden: User "system:anonymous" cannot list resource "services" in '
                               'API group "" in the namespace "default"')
    assert body["details"] == {"kind": "services"}


def test_a_wrong_token_is_401_for_every_path(server):
    bad = Raw(server, token="wrong")
    for path in ("/api/v1/namespaces", "/apis", "/version", "/api/v1/namespaces/default/services"):
        status, _, body = bad.request("GET", path)
        assert status == 401
        assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


def test_create_get_conflict_and_not_found_statuses(raw, ns):
    base = f"/api/v1/namespaces/{ns}/services"
    status, _, created = raw.request("POST", base, svc("a"))
    assert status == 201
    m = created["metadata"]
    assert m["uid"] and m["creationTimestamp"] and m["resourceVersion"]
    assert created["spec"]["sessionAffinity"] == "None" and created["spec"]["type"] == "ClusterIP"
    assert created["spec"]["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}
    status, _, body = raw.request("POST", base, svc("a"))
    assert status == 409 and body["reason"] == "AlreadyExists"
    assert body["message"] == 'services "a" already exists'
    assert body["details"] == {"name": "a", "kind": "services"}
    stale = dict(created)
    stale["metadata"] = dict(m, resourceVersion="1")
    status, _, body = raw.request("PUT", f"{base}/a", stale)
    assert status == 409 and body["reason"] == "Conflict"
    assert body["message"] == ('Operation cannot be fulfilled on services "a": the object has been modified; '
                               'please apply your changes to the latest version and try again')
    status, _, body = raw.request("GET", f"{base}/zzz")
    assert status == 404 and body["message"] == 'services "zzz" not found'
    status, _, body = raw.request("GET", "/apis/apps/v1/namespaces/default/deployments/zzz")
    assert body["message"] == 'deployments.apps "zzz" not found'
    assert body["details"] == {"name": "zzz", "group": "apps", "kind": "deployments"}


def test_bad_bodies_get_statuses_and_store_nothing(raw, ns):
    base = f"/api/v1/namespaces/{ns}/services"
    for body, ctype, code in [
        (b"{not json", "application/json", 400),
        (b"[1,2]", "application/json", 400),
        (b"a: [", "application/yaml", 400),
        (b"\x00\x01garbage", "application/vnd.kubernetes.protobuf", 400),
        (json.dumps(svc("t")).encode(), "text/plain", 415),
        (b"{" + b'"a":"' + b"x" * (4 * 1024 * 1024) + b'"}', "application/json", 413),
    ]:
        status, _, resp = raw.request("POST", base, body, content_type=ctype)
        assert status == code, (body[:40], resp)
        assert resp["kind"] == "Status" and resp["code"] == code
    long = svc("x" * 300)
    status, _, resp = raw.request("POST", base, long)
    assert status == 422 and resp["reason"] == "Invalid"
    assert resp["details"]["causes"][0]["field"] == "metadata.name"
    status, _, resp = raw.request("POST", f"/api/v1/namespaces/{ns}/widgets", svc("w"))
    assert status == 404
    status, _, resp = raw.request("POST", "/apis/apps/v2/namespaces/default/deployments", {})
    assert status == 404
    status, _, listed = raw.request("GET", base)
    assert listed["items"] == []


def test_patch_types_and_patch_errors(raw, ns):
    base = f"/api/v1/namespaces/{ns}/services"
    raw.request("POST", base, svc("p"))
    status, _, body = raw.request("PATCH", f"{base}/p", {"metadata": {"labels": {"x": "1"}}},
                                  content_type="application/merge-patch+json")
    assert status == 200 and body["metadata"]["labels"] == {"x": "1"}
    status, _, body = raw.request("PATCH", f"{base}/p", [{"op": "add", "path": "/metadata/labels/y", "value": "2"}],
                                  content_type="application/json-patch+json")
    assert status == 200 and body["metadata"]["labels"] == {"x": "1", "y": "2"}
    status, _, body = raw.request("PATCH", f"{base}/p",
                                  {"spec": {"ports": [{"port": 443, "name": "https"}]}},
                                  content_type="application/strategic-merge-patch+json")
    assert status == 422  # two ports now need names
    status, _, body = raw.request("PATCH", f"{base}/p", [{"op": "remove", "path": "/nope"}],
                                  content_type="application/json-patch+json")
    assert status in (400, 422) and body["kind"] == "Status"
    status, _, body = raw.request("PATCH", f"{base}/p", {"a": 1}, content_type="application/xml")
    assert status == 415
    status, _, got = raw.request("GET", f"{base}/p")
    assert [p["port"] for p in got["spec"]["ports"]] == [80]


def test_status_subresource_only_writes_status(raw, ns):
    base = f"/api/v1/namespaces/{ns}/services"
    # a class of another implementation: pocketkube's load-balancer controller leaves its status alone
    raw.request("POST", base, svc("st", type="LoadBalancer", loadBalancerClass="example.com/elsewhere"))
    status, _, body = raw.request("PATCH", f"{base}/st/status",
                                  {"status": {"loadBalancer": {"ingress": [{"ip": "172.18.0.200"}]}},
                                   "spec": {"type": "ClusterIP"}},
                                  content_type="application/merge-patch+json")
    assert status == 200
    assert body["status"]["loadBalancer"]["ingress"] == [{"ip": "172.18.0.200"}]
    assert body["spec"]["type"] == "LoadBalancer"
    status, _, body = raw.request("PATCH", f"{base}/st", {"status": {"loadBalancer": {}}},
                                  content_type="application/merge-patch+json")
    assert body["status"]["loadBalancer"]["ingress"] == [{"ip": "172.18.0.200"}]


def test_generation_and_scale_subresource(raw, ns):
    base = f"/apis/apps/v1/namespaces/{ns}/deployments"
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "g"},
           "spec": {"selector": {"matchLabels": {"app": "g"}},
                    "template": {"metadata": {"labels": {"app": "g"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    status, _, body = raw.request("POST", base, dep)
    assert status == 201 and body["metadata"]["generation"] == 1 and body["spec"]["replicas"] == 1
    status, _, scale = raw.request("GET", f"{base}/g/scale")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 1} and scale["status"]["selector"] == "app=g"
    assert scale["status"]["replicas"] in (0, 1)  # the Deployment's status, which its controller may have set
    status, _, scale = raw.request("PATCH", f"{base}/g/scale", {"spec": {"replicas": 4}},
                                   content_type="application/merge-patch+json")
    assert status == 200 and scale["spec"]["replicas"] == 4
    status, _, body = raw.request("GET", f"{base}/g")
    assert body["metadata"]["generation"] == 2 and body["spec"]["replicas"] == 4
    bad = dict(scale, metadata=dict(scale["metadata"], resourceVersion="2"))
    status, _, body = raw.request("PUT", f"{base}/g/scale", bad)
    assert status == 409


def test_selector_errors_are_400(raw):
    status, _, body = raw.request("GET", "/api/v1/pods?labelSelector=a%20in%20(")
    assert status == 400 and body["reason"] == "BadRequest"
    status, _, body = raw.request("GET", "/api/v1/pods?fieldSelector=spec.bogus%3Dx")
    assert status == 400


def test_missing_namespace_and_list_in_missing_namespace(raw):
    status, _, body = raw.request("POST", "/api/v1/namespaces/nowhere/services", svc("x"))
    assert status == 404 and body["message"] == 'namespaces "nowhere" not found'
    status, _, body = raw.request("GET", "/api/v1/namespaces/nowhere/services")
    assert status == 200 and body["items"] == [] and body["kind"] == "ServiceList"


def test_pagination_with_limit_and_continue(raw, ns):
    base = f"/api/v1/namespaces/{ns}/configmaps"
    for i in range(7):
        raw.request("POST", base, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}})
    seen, token = [], ""
    while True:
        status, _, page = raw.request("GET", f"{base}?limit=3" + (f"&continue={token}" if token else ""))
        seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
    # every namespace also holds kube-root-ca.crt, as on a real cluster
    assert seen == [f"c{i}" for i in range(7)] + ["kube-root-ca.crt"]


def test_python_client_crud_and_watch(k8s_client, ns):
    client, api_client = k8s_client
    core = client.CoreV1Api(api_client)
    from kubernetes import watch

    body = client.V1Service(metadata=client.V1ObjectMeta(name="py", labels={"team": "a"}),
                            spec=client.V1ServiceSpec(selector={"app": "py"},
                                                      ports=[client.V1ServicePort(port=8080)]))
    created = core.create_namespaced_service(ns, body)
    assert created.spec.ports[0].target_port == 8080
    listed = core.list_namespaced_service(ns, label_selector="team=a")
    assert [s.metadata.name for s in listed.items] == ["py"]
    rv = listed.metadata.resource_version
    events = []

    def consume():
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_service, ns, resource_version=rv, timeout_seconds=5):
            events.append((ev["type"], ev["object"].metadata.name))
            if len(events) == 2:
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    core.patch_namespaced_service("py", ns, {"metadata": {"labels": {"team": "b"}}})
    core.delete_namespaced_service("py", ns)
    t.join(10)
    assert events == [("MODIFIED", "py"), ("DELETED", "py")]
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as exc:
        core.read_namespaced_service("py", ns)
    assert exc.value.status == 404


def test_discovery_short_names_and_categories(server):
    out = server.kubectl("api-resources", "-o", "wide").stdout
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    for resource, short in [("services", "svc"), ("endpoints", "ep"), ("pods", "po"), ("deployments", "deploy"),
                            ("replicasets", "rs"), ("statefulsets", "sts"), ("daemonsets", "ds"),
                            ("ingresses", "ing"), ("namespaces", "ns"), ("nodes", "no")]:
        assert short in lines[resource].split(), resource
    assert "endpointslices" in lines and "leases" in lines and "ingressclasses" in lines
    ver = server.kubectl("version", "-o", "json").stdout
    assert json.loads(ver)["serverVersion"]["minor"] == "32"


def test_null_list_items_decode_as_zero_structs(raw, ns):
    """encoding/json turns `[null]` in a list of structs into a zero struct: defaults, then validation."""
    base = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
    status, _, body = raw.request("POST", base, {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "nulls"},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.5"]}], "ports": [None]})
    assert status == 201 and body["ports"] == [{"protocol": "TCP"}]
    status, _, body = raw.request("POST", f"/api/v1/namespaces/{ns}/services",
                                  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nulls"},
                                   "spec": {"ports": [None]}})
    assert status == 422
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.ports[0].port", "spec.ports[0].targetPort"]


def protobuf_delete_options(api_version: str, uid: str, policy: str) -> bytes:
    """client-go's DELETE body: `k8s\\0` + runtime.Unknown{typeMeta, raw: DeleteOptions{preconditions, policy}}."""
    def field(number: int, payload: bytes) -> bytes:  # length-delimited; every length here is < 128
        return bytes([number << 3 | 2, len(payload)]) + payload

    options = field(2, field(1, uid.encode())) + field(4, policy.encode())
    type_meta = field(1, api_version.encode()) + field(2, b"DeleteOptions")
    return b"k8s\x00" + field(1, type_meta) + field(2, options)


def test_delete_with_a_protobuf_delete_options_body(raw, ns):
    """What every Go client sends: DeleteOptions in the resource's group version, as protobuf."""
    base = f"/apis/apps/v1/namespaces/{ns}/deployments"
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "pb-del"},
           "spec": {"selector": {"matchLabels": {"app": "x"}},
                    "template": {"metadata": {"labels": {"app": "x"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    status, _, created = raw.request("POST", base, dep)
    assert status == 201
    pb = "application/vnd.kubernetes.protobuf"
    status, _, body = raw.request("DELETE", f"{base}/pb-del", protobuf_delete_options("apps/v1", "wrong", "Background"),
                                  content_type=pb)
    assert status == 409 and body["reason"] == "Conflict", body
    assert "Precondition failed: UID in precondition: wrong" in body["message"]
    status, _, body = raw.request("DELETE", f"{base}/pb-del",
                                  protobuf_delete_options("v1", created["metadata"]["uid"], "Background"),
                                  content_type=pb)
    assert status == 200 and body["status"] == "Success", body
    status, _, _ = raw.request("GET", f"{base}/pb-del")
    assert status == 404


def test_a_deployment_status_write_keeps_its_labels(raw, ns):
    """deploymentStatusStrategy: labels sent to /status are ignored (the upstream Deployment
    lifecycle conformance test patches them there and expects them unchanged)."""
    base = f"/apis/apps/v1/namespaces/{ns}/deployments"
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "lbl", "labels": {"t": "updated"}},
           "spec": {"selector": {"matchLabels": {"app": "x"}},
                    "template": {"metadata": {"labels": {"app": "x"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    assert raw.request("POST", base, dep)[0] == 201
    status, _, body = raw.request("PATCH", f"{base}/lbl/status",
                                  {"metadata": {"labels": {"t": "patched-status"}}, "status": {"readyReplicas": 0}},
                                  content_type="application/strategic-merge-patch+json")
    assert status == 200, body
    assert body["metadata"]["labels"] == {"t": "updated"}
    assert raw.request("GET", f"{base}/lbl")[2]["metadata"]["labels"] == {"t": "updated"}


def test_scale_put_with_a_protobuf_body(raw, ns):
    """client-go's UpdateScale (the StatefulSet scale conformance spec) sends autoscaling/v1 Scale
    as protobuf."""
    base = f"/apis/apps/v1/namespaces/{ns}/statefulsets"
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "pbs"},
           "spec": {"serviceName": "pbs", "selector": {"matchLabels": {"app": "pbs"}},
                    "template": {"metadata": {"labels": {"app": "pbs"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    assert raw.request("POST", base, sts)[0] == 201

    def field(number: int, payload: bytes) -> bytes:  # length-delimited; every length here is < 128
        return bytes([number << 3 | 2, len(payload)]) + payload

    scale = field(1, field(1, b"pbs") + field(3, ns.encode())) + field(2, bytes([1 << 3, 3]))  # spec.replicas=3
    body = b"k8s\x00" + field(1, field(1, b"autoscaling/v1") + field(2, b"Scale")) + field(2, scale)
    status, _, reply = raw.request("PUT", f"{base}/pbs/scale", body, content_type="application/vnd.kubernetes.protobuf")
    assert status == 200, reply
    assert reply["spec"]["replicas"] == 3
    assert raw.request("GET", f"{base}/pbs")[2]["spec"]["replicas"] == 3
