"""Tests for pocketkube.apiserver.protobuf: real kubectl bodies, hand-built edge cases, errors, fuzz."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketkube.apiserver import protobuf
from pocketkube.core.errors import APIError
from pocketkube.apiserver.protobuf import KINDS, PROTOBUF_CONTENT_TYPE, SCHEMA, decode

FIXTURES = Path(__file__).parent / "fixtures" / "protobuf"
FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.bin"))


# ---- a minimal protobuf encoder for hand-built bodies ----

def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | 0x80 if value else low)
        if not value:
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def num(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def msg(number: int, payload: bytes) -> bytes:
    return key(number, 2) + varint(len(payload)) + payload


def text(number: int, value: str) -> bytes:
    return msg(number, value.encode())


def entry(number: int, map_key: str, value: bytes) -> bytes:
    """A map entry whose value is already encoded as field 2."""
    return msg(number, text(1, map_key) + value)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + msg(1, text(1, api_version) + text(2, kind)) + msg(2, raw)


def pod(spec: bytes = b"", metadata: bytes = text(1, "p")) -> bytes:
    return envelope("v1", "Pod", msg(1, metadata) + msg(2, spec))


def container(*fields: bytes) -> bytes:
    return msg(2, text(1, "c") + text(2, "nginx") + b"".join(fields))


# ---- real bodies captured from kubectl 1.32 ----

@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_decodes_captured_kubectl_body(name):
    body = (FIXTURES / f"{name}.bin").read_bytes()
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    assert decode(body) == expected


def test_fixtures_cover_every_create_command():
    assert set(FIXTURE_NAMES) >= {
        "deployment_web", "deployment_zero", "service_clusterip", "service_headless", "service_nodeport",
        "service_loadbalancer", "service_externalname", "secret_tls", "secret_generic", "configmap",
        "namespace", "serviceaccount", "ingress"}


def test_tls_secret_data_is_the_files_base64():
    obj = decode((FIXTURES / "secret_tls.bin").read_bytes())
    assert base64.b64decode(obj["data"]["tls.crt"]) == (FIXTURES / "secret_tls.crt").read_bytes()
    assert base64.b64decode(obj["data"]["tls.key"]) == (FIXTURES / "secret_tls.key").read_bytes()


def test_content_type_constant():
    assert PROTOBUF_CONTENT_TYPE == "application/vnd.kubernetes.protobuf"


# ---- hand-built bodies: scalars ----

@pytest.mark.parametrize("field, encoded, expected", [
    ("priority", num(25, -5), -5),                                  # int32 sent as a 10-byte varint
    ("priority", num(25, 2**31 - 1), 2**31 - 1),
    ("priority", num(25, 2**32 + 7), 7),                            # int32 keeps the low 32 bits
    ("priority", num(25, 0), 0),                                    # pointer: zero kept
    ("terminationGracePeriodSeconds", num(4, 2**62 + 1), 2**62 + 1),
    ("terminationGracePeriodSeconds", num(4, -1), -1),
    ("terminationGracePeriodSeconds", num(4, -(2**63)), -(2**63)),
    ("hostNetwork", num(11, 1), True),
    ("hostNetwork", num(11, 300), True),                           # any non-zero varint is true
    ("enableServiceLinks", num(30, 0), False),                     # pointer bool: false kept
    ("nodeName", text(10, "n1"), "n1"),
    ("nodeName", msg(10, b"\xff\xfeok"), "\ufffd\ufffdok"),        # invalid UTF-8 replaced as Go's JSON does
])
def test_pod_spec_scalars(field, encoded, expected):
    assert decode(pod(encoded))["spec"][field] == expected


@pytest.mark.parametrize("encoded, absent", [
    (num(11, 0), "hostNetwork"),            # non-pointer false
    (text(10, ""), "nodeName"),             # non-pointer empty string
    (num(11, 1) + num(11, 0), "hostNetwork"),  # a later zero overwrites, as in Go
])
def test_zero_non_pointer_scalars_are_omitted(encoded, absent):
    assert absent not in decode(pod(encoded))["spec"]


def test_large_int64_generation():
    obj = decode(pod(metadata=text(1, "p") + num(7, 2**63 - 1)))
    assert obj["metadata"]["generation"] == 2**63 - 1


@pytest.mark.parametrize("time_payload, expected", [
    (num(1, 1704164645), "2024-01-02T03:04:05Z"),
    (num(1, 1704164645) + num(2, 999), "2024-01-02T03:04:05Z"),   # nanos ignored
    (num(1, 0), "1970-01-01T00:00:00Z"),
    (num(1, -86400), "1969-12-31T00:00:00Z"),
    (num(1, 253402300799), "9999-12-31T23:59:59Z"),
])
def test_time_as_rfc3339(time_payload, expected):
    obj = decode(pod(metadata=text(1, "p") + msg(8, time_payload)))
    assert obj["metadata"]["creationTimestamp"] == expected


@pytest.mark.parametrize("time_payload", [b"", num(1, -62135596800)])
def test_zero_time_is_dropped(time_payload):
    obj = decode(pod(metadata=text(1, "p") + msg(8, time_payload) + msg(9, time_payload)))
    assert obj["metadata"] == {"name": "p"}


# ---- hand-built bodies: special types, maps, repeated, inline ----

def deployment(spec: bytes) -> bytes:
    return envelope("apps/v1", "Deployment", msg(1, text(1, "d")) + msg(2, spec))


@pytest.mark.parametrize("int_or_string, expected", [
    (num(1, 0) + num(2, 0), 0),
    (num(2, 25), 25),
    (num(1, 1) + text(3, "25%"), "25%"),
    (num(1, 1), ""),
])
def test_pointer_int_or_string_kept_even_at_zero(int_or_string, expected):
    strategy = text(1, "RollingUpdate") + msg(2, msg(1, int_or_string))
    obj = decode(deployment(num(1, 2) + msg(4, strategy)))
    assert obj["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": expected}}
    assert obj["spec"]["replicas"] == 2


def service(spec: bytes) -> bytes:
    return envelope("v1", "Service", msg(1, text(1, "s")) + msg(2, spec))


def test_service_port_target_port_forms():
    ports = (msg(1, text(1, "http") + num(3, 80) + msg(4, num(1, 1) + text(3, "web")))
             + msg(1, num(3, 81) + msg(4, num(2, 8081)) + text(6, "h2c"))
             + msg(1, num(3, 82) + msg(4, b"") + num(5, 0)))
    obj = decode(service(ports + entry(2, "app", text(2, "web")) + num(20, 0) + text(17, "SingleStack")))
    assert obj["spec"] == {
        "ports": [{"name": "http", "port": 80, "targetPort": "web"},
                  {"port": 81, "targetPort": 8081, "appProtocol": "h2c"},
                  {"port": 82}],
        "selector": {"app": "web"},
        "allocateLoadBalancerNodePorts": False,
        "ipFamilyPolicy": "SingleStack",
    }


def test_service_session_affinity_and_load_balancer_status():
    spec = text(7, "ClientIP") + msg(14, msg(1, num(1, 10800)))
    status = msg(1, msg(1, text(1, "172.18.0.10") + text(3, "VIP") + msg(4, num(1, 80) + text(2, "TCP"))))
    obj = decode(envelope("v1", "Service", msg(1, text(1, "s")) + msg(2, spec) + msg(3, status)))
    assert obj["spec"] == {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}}
    assert obj["status"] == {"loadBalancer": {"ingress": [
        {"ip": "172.18.0.10", "ipMode": "VIP", "ports": [{"port": 80, "protocol": "TCP"}]}]}}


def quantity(value: str) -> bytes:
    """A map entry value holding a resource.Quantity."""
    return msg(2, text(1, value))


def test_container_resources_env_probes_and_mounts():
    resources = msg(8, entry(1, "cpu", quantity("500m")) + entry(2, "memory", quantity("64Mi")) + entry(2, "x", b""))
    env = (msg(7, text(1, "A") + text(2, "1"))
           + msg(7, text(1, "B") + msg(3, msg(4, msg(1, text(1, "sec")) + text(2, "k") + num(3, 0))))
           + msg(7, text(1, "C") + msg(3, msg(2, text(2, "limits.cpu") + msg(3, text(1, "1m"))))))
    env_from = msg(19, text(1, "P_") + msg(2, msg(1, text(1, "cm"))))
    probe = msg(10, msg(1, msg(2, text(1, "/healthz") + msg(2, num(2, 8080)))) + num(2, 3) + num(4, 0))
    readiness = msg(11, msg(1, msg(3, msg(1, num(1, 1) + text(3, "http")))) + num(7, 0))
    startup = msg(22, msg(1, msg(1, text(1, "cat") + text(1, "/ready"))))
    lifecycle = msg(12, msg(2, msg(4, num(1, 5))))
    mounts = msg(9, text(1, "data") + text(3, "/data") + num(2, 1) + text(5, "None"))
    security = msg(15, num(2, 0) + num(4, 1000) + msg(1, text(1, "NET_ADMIN") + text(2, "ALL")))
    spec = container(text(3, "sh"), text(4, "-c"), text(4, "sleep 1"), resources, env, env_from, probe,
                     readiness, startup, lifecycle, mounts, security, msg(6, num(3, 80) + text(4, "TCP")))
    assert decode(pod(spec))["spec"]["containers"] == [{
        "name": "c", "image": "nginx", "command": ["sh"], "args": ["-c", "sleep 1"],
        "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi", "x": "0"}},
        "env": [{"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k", "optional": False}}},
                {"name": "C", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}}],
        "envFrom": [{"prefix": "P_", "configMapRef": {"name": "cm"}}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 3},
        "readinessProbe": {"tcpSocket": {"port": "http"}, "terminationGracePeriodSeconds": 0},
        "startupProbe": {"exec": {"command": ["cat", "/ready"]}},
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True, "mountPropagation": "None"}],
        "securityContext": {"privileged": False, "runAsUser": 1000,
                            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}},
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
    }]


def test_volumes_are_inlined():
    volumes = (msg(1, text(1, "a") + msg(2, msg(2, b"")))
               + msg(1, text(1, "b") + msg(2, msg(19, msg(1, text(1, "cm")) + num(3, 0o644)
                                                        + msg(2, text(1, "k") + text(2, "p")))))
               + msg(1, text(1, "c") + msg(2, msg(6, text(1, "s") + num(4, 1))))
               + msg(1, text(1, "d") + msg(2, msg(1, text(1, "/tmp") + text(2, ""))))
               + msg(1, text(1, "e") + msg(2, msg(26, msg(1, msg(4, text(3, "token") + num(2, 3600)))))))
    assert decode(pod(volumes))["spec"]["volumes"] == [
        {"name": "a", "emptyDir": {}},
        {"name": "b", "configMap": {"name": "cm", "defaultMode": 0o644, "items": [{"key": "k", "path": "p"}]}},
        {"name": "c", "secret": {"secretName": "s", "optional": True}},
        {"name": "d", "hostPath": {"path": "/tmp", "type": ""}},
        {"name": "e", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}]}},
    ]


def test_packed_and_unpacked_repeated_int64():
    packed = msg(4, varint(1000) + varint(-1) + varint(2**40))
    unpacked = num(4, 5)
    obj = decode(pod(msg(14, packed + unpacked)))
    assert obj["spec"]["securityContext"]["supplementalGroups"] == [1000, -1, 2**40, 5]


def test_tolerations_and_node_selector():
    spec = (msg(22, text(1, "k") + text(2, "Exists") + text(4, "NoExecute") + num(5, 0))
            + entry(7, "disk", text(2, "ssd")) + entry(7, "disk", text(2, "hdd")) + entry(7, "", b""))
    obj = decode(pod(spec))["spec"]
    assert obj["tolerations"] == [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}]
    assert obj["nodeSelector"] == {"disk": "hdd", "": ""}


def test_secret_bytes_immutable_and_string_data():
    raw = (msg(1, text(1, "s")) + entry(2, "bin", msg(2, b"\x00\xff\x10")) + entry(2, "empty", b"")
           + entry(4, "plain", text(2, "v")) + num(5, 0) + text(3, "Opaque"))
    assert decode(envelope("v1", "Secret", raw)) == {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"bin": "AP8Q", "empty": ""}, "stringData": {"plain": "v"}, "immutable": False, "type": "Opaque"}


def test_object_meta_owner_references_and_managed_fields():
    owner = msg(13, text(5, "apps/v1") + text(1, "ReplicaSet") + text(3, "rs") + text(4, "u1") + num(6, 1) + num(7, 0))
    managed = msg(17, text(1, "kubectl") + text(2, "Update") + msg(4, num(1, 1704164645)) + text(6, "FieldsV1")
                  + msg(7, msg(1, b'{"f:metadata":{}}')))
    meta = text(1, "p") + text(3, "ns") + entry(11, "app", text(2, "web")) + entry(12, "a", text(2, "b")) \
        + text(14, "f1") + owner + managed + num(10, 0)
    assert decode(pod(metadata=meta))["metadata"] == {
        "name": "p", "namespace": "ns", "labels": {"app": "web"}, "annotations": {"a": "b"}, "finalizers": ["f1"],
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1",
                             "controller": True, "blockOwnerDeletion": False}],
        "managedFields": [{"manager": "kubectl", "operation": "Update", "time": "2024-01-02T03:04:05Z",
                           "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}],
        "deletionGracePeriodSeconds": 0,
    }


def test_a_repeated_message_field_merges():
    obj = decode(envelope("v1", "Pod", msg(1, text(1, "p")) + msg(1, entry(11, "a", text(2, "b")))))
    assert obj["metadata"] == {"name": "p", "labels": {"a": "b"}}


@pytest.mark.parametrize("api_version, kind, raw, expected", [
    ("apps/v1", "StatefulSet",
     msg(2, num(1, 0) + text(5, "db") + msg(7, text(1, "RollingUpdate") + msg(2, num(1, 0)))
         + msg(4, msg(1, text(1, "data")) + msg(2, text(1, "ReadWriteOnce") + msg(2, entry(2, "storage", quantity("1Gi")))))),
     {"replicas": 0, "serviceName": "db", "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
      "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}),
    ("apps/v1", "DaemonSet",
     msg(2, msg(3, text(1, "RollingUpdate") + msg(2, msg(2, num(2, 0)))) + num(6, 10)),
     {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0}}, "revisionHistoryLimit": 10}),
    ("apps/v1", "ReplicaSet", msg(2, num(1, 1) + num(4, 0)), {"replicas": 1}),
])
def test_apps_kinds(api_version, kind, raw, expected):
    assert decode(envelope(api_version, kind, raw))["spec"] == expected


def test_endpoint_slice_pointer_fields():
    endpoint = msg(2, text(1, "10.244.1.5") + msg(2, num(1, 1) + num(2, 1) + num(3, 0)) + text(6, "node1")
                   + msg(4, text(1, "Pod") + text(3, "web-1") + text(2, "default")))
    port = msg(3, text(1, "") + text(2, "TCP") + num(3, 80))
    obj = decode(envelope("discovery.k8s.io/v1", "EndpointSlice", msg(1, text(1, "web-abc")) + text(4, "IPv4") + endpoint + port))
    assert obj == {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web-abc"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True, "serving": True, "terminating": False},
                       "nodeName": "node1", "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default"}}],
        "ports": [{"name": "", "protocol": "TCP", "port": 80}],
    }


def test_endpoints_and_ingress_class_and_node():
    subset = msg(2, msg(1, text(1, "10.244.1.5") + text(4, "node1")) + msg(3, text(1, "") + num(2, 80) + text(3, "TCP")))
    assert decode(envelope("v1", "Endpoints", msg(1, text(1, "web")) + subset))["subsets"] == [
        {"addresses": [{"ip": "10.244.1.5", "nodeName": "node1"}], "ports": [{"port": 80, "protocol": "TCP"}]}]
    params = msg(2, text(1, "k8s.io/ingress-nginx") + msg(2, text(1, "") + text(2, "Cfg") + text(3, "c")))
    assert decode(envelope("networking.k8s.io/v1", "IngressClass", msg(1, text(1, "nginx")) + params))["spec"] == {
        "controller": "k8s.io/ingress-nginx", "parameters": {"apiGroup": "", "kind": "Cfg", "name": "c"}}
    status = msg(3, msg(6, msg(1, num(1, 10250))) + msg(5, text(1, "InternalIP") + text(2, "172.18.0.2"))
                 + entry(1, "pods", quantity("110")))
    assert decode(envelope("v1", "Node", msg(1, text(1, "n1")) + msg(2, num(4, 1) + text(7, "10.244.1.0/24")) + status)) == {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "spec": {"unschedulable": True, "podCIDRs": ["10.244.1.0/24"]},
        "status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                   "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}], "capacity": {"pods": "110"}},
    }


def test_unknown_fields_of_every_wire_type_are_skipped():
    unknown = (num(99, 7) + key(98, 1) + b"\x00" * 8 + key(97, 5) + b"\x00" * 4 + text(96, "x")
               + key(95, 3) + num(1, 1) + key(94, 3) + key(94, 4) + key(95, 4))
    assert decode(pod(metadata=text(1, "p") + unknown)) == {"apiVersion": "v1", "kind": "Pod",
                                                             "metadata": {"name": "p"}, "spec": {}}


def test_expected_kind_fills_an_empty_type_meta():
    body = b"k8s\x00" + msg(1, b"") + msg(2, msg(1, text(1, "web")))
    assert decode(body, expected=("apps/v1", "Deployment")) == {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}


def test_envelope_content_fields_are_ignored():
    body = envelope("v1", "ConfigMap", msg(1, text(1, "cm"))) + text(3, "") + text(4, "application/vnd.kubernetes.protobuf")
    assert decode(body) == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}


# ---- errors ----

GOOD_POD = pod(text(10, "n1"))


@pytest.mark.parametrize("body, message", [
    (b"", "empty data"),
    (b'{"kind":"Pod"}', "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"),
    (b"k8s", "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"),
    (b"k8s\x00", "empty body"),
    (b"k8s\x00\x0a", "unexpected EOF"),                                     # key, then no length
    (b"k8s\x00\x0a\x05ab", "unexpected EOF"),                              # length past the end
    (b"k8s\x00\x0a" + b"\xff" * 9 + b"\x01", "proto: negative length found during unmarshaling"),
    (b"k8s\x00" + key(9, 0) + b"\x80" * 10 + b"\x01", "proto: integer overflow"),  # an 11-byte varint
    (b"k8s\x00" + key(9, 0) + b"\x80", "unexpected EOF"),                  # truncated varint
    (b"k8s\x00" + b"\xff" * 10 + b"\x01", "proto: integer overflow"),      # an 11-byte key
    (b"k8s\x00" + num(1, 5), "proto: wrong wireType = 0 for field TypeMeta"),
    (b"k8s\x00\x00", "proto: Unknown: illegal tag 0 (wire type 0)"),
    (b"k8s\x00\x0c", "proto: Unknown: wiretype end group for non-group"),
    (b"k8s\x00" + key(9, 6), "proto: illegal wireType 6"),
    (b"k8s\x00" + key(9, 3) + num(1, 1), "unexpected EOF"),                 # unterminated group
    (b"k8s\x00" + key(9, 4), "proto: Unknown: wiretype end group for non-group"),
    (pod(metadata=key(1, 0) + b"\x01"), "proto: wrong wireType = 0 for field Name"),
    (pod(metadata=text(1, "p") + key(8, 0) + b"\x01"), "proto: wrong wireType = 0 for field CreationTimestamp"),
    (pod(num(25, 1) + key(25, 2)), "proto: wrong wireType = 2 for field Priority"),
    (pod(key(25, 0)), "unexpected EOF"),
    (envelope("v1", "Pod", msg(1, msg(8, num(1, 2**62)))), "Time.MarshalJSON: year outside of range [0,9999]"),
    (envelope("v1", "Service", msg(2, msg(1, msg(4, num(1, 2))))), "impossible IntOrString.Type"),
    (envelope("storage.k8s.io/v1", "StorageClass", b""),
     'no kind "StorageClass" is registered for version "storage.k8s.io/v1" in scheme '
     '"pkg/api/legacyscheme/scheme.go:30"'),
    (envelope("v1", "", b""), "Object 'Kind' is missing in 'runtime.TypeMeta{APIVersion:\"v1\", Kind:\"\"}'"),
    (envelope("", "Pod", b""), "Object 'apiVersion' is missing in 'runtime.TypeMeta{APIVersion:\"\", Kind:\"Pod\"}'"),
])
def test_bad_bodies_are_400_bad_request(body, message):
    with pytest.raises(APIError) as caught:
        decode(body)
    assert (caught.value.code, caught.value.reason, caught.value.message) == (400, "BadRequest", message)


@pytest.mark.parametrize("body, message", [
    (b'{"kind":"Deployment","apiVersion":"apps/v1"}',
     "the object provided is unrecognized (must be of type Deployment): provided data does not appear to be a "
     'protobuf message, expected prefix [107 56 115 0] ({"kind":"Deployment","apiVersi ...)'),
    (b"k8s\x00\x0a", "the object provided is unrecognized (must be of type Deployment): unexpected EOF (6b3873000a)"),
    (b"", "the object provided is unrecognized (must be of type Deployment): empty data (<empty>)"),
    (envelope("apps/v1", "Deployment", msg(1, num(1, 1))),
     'Deployment in version "v1" cannot be handled as a Deployment: proto: wrong wireType = 0 for field Name'),
    (envelope("v1", "Service", b""),
     'Service in version "v1" cannot be handled as a Deployment: '
     "converting (v1.Service) to (apps.Deployment): unknown conversion"),
    (envelope("apps/v1", "Widget", b""),
     'Widget in version "v1" cannot be handled as a Deployment: '
     'no kind "Widget" is registered for version "apps/v1" in scheme "pkg/api/legacyscheme/scheme.go:30"'),
])
def test_errors_worded_as_the_create_handler_when_the_kind_is_known(body, message):
    with pytest.raises(APIError) as caught:
        decode(body, expected=("apps/v1", "Deployment"))
    assert (caught.value.code, caught.value.message) == (400, message)


def test_summary_of_a_long_binary_body_is_hex_and_truncated():
    body = b"k8s\x00\x0a\x7f" + b"a" * 40
    with pytest.raises(APIError) as caught:
        decode(body, expected=("v1", "Secret"))
    assert caught.value.message.endswith("(" + body[:30].hex() + " ...)")


def test_other_kind_in_the_core_group_is_refused():
    with pytest.raises(APIError, match=r"converting \(v1.ConfigMap\) to \(core.Secret\): unknown conversion"):
        decode(envelope("v1", "ConfigMap", b""), expected=("v1", "Secret"))


@pytest.mark.parametrize("api_version", ["v1", "apps/v1", "meta.k8s.io/v1"])
def test_delete_options_decode_in_any_group_version(api_version):
    """client-go sends DELETE bodies as DeleteOptions of the resource's group version."""
    raw = (num(1, 0) + msg(2, text(1, "uid-1") + text(2, "42")) + text(4, "Foreground")
           + text(5, "All"))
    obj = decode(envelope(api_version, "DeleteOptions", raw), expected=("meta/v1", "DeleteOptions"))
    assert obj["kind"] == "DeleteOptions"
    assert obj["gracePeriodSeconds"] == 0  # a pointer: kept at zero
    assert obj["preconditions"] == {"uid": "uid-1", "resourceVersion": "42"}
    assert obj["propagationPolicy"] == "Foreground"
    assert obj["dryRun"] == ["All"]
    assert "orphanDependents" not in obj


def test_another_kind_as_delete_options_is_refused():
    with pytest.raises(APIError, match=r"cannot be handled as a DeleteOptions"):
        decode(envelope("v1", "ConfigMap", b""), expected=("meta/v1", "DeleteOptions"))


# ---- schema sanity ----

def test_every_referenced_message_exists_and_the_schema_is_acyclic():
    """Acyclic means recursion depth is bounded by the schema, whatever the body."""
    scalar_or_map = protobuf._SCALAR_TYPES | set(protobuf._MAP_VALUE_TYPES)
    visiting, done = set(), set()

    def visit(name: str) -> None:
        assert name in SCHEMA, name
        assert name not in visiting, f"cycle through {name}"
        if name in done:
            return
        visiting.add(name)
        for field in SCHEMA[name].values():
            if field.type not in scalar_or_map:
                visit(field.type)
        visiting.remove(name)
        done.add(name)

    for message in [*KINDS.values(), *protobuf.OPTIONS_KINDS.values()]:
        visit(message)


def test_json_names_are_unique_per_message_including_inlined_fields():
    def names(message: str) -> list[str]:
        out = []
        for field in SCHEMA[message].values():
            out += names(field.type) if field.inline else [field.json]
        return out

    for message in SCHEMA:
        assert len(names(message)) == len(set(names(message))), message


# ---- fuzz ----

@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_api_error(data):
    for body in (data, b"k8s\x00" + data):
        try:
            assert isinstance(decode(body), dict)
        except APIError as err:
            assert err.code == 400


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(KINDS)), st.binary(max_size=400), st.booleans())
def test_random_objects_only_raise_api_error(gvk, raw, with_expected):
    expected = ("v1", "Pod") if with_expected else None
    try:
        obj = decode(envelope(*gvk, raw), expected=expected)
    except APIError as err:
        assert err.code == 400
    else:
        json.dumps(obj)
        assert (obj["apiVersion"], obj["kind"]) == gvk


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIXTURE_NAMES), st.data())
def test_mutated_kubectl_bodies_only_raise_api_error(name, data):
    body = bytearray((FIXTURES / f"{name}.bin").read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(4, len(body) - 1))
        body[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(4, len(body)))
    try:
        json.dumps(decode(bytes(body[:cut])))
    except APIError as err:
        assert err.code == 400
