"""The three patch types: RFC 6902 and RFC 7386 examples, the strategic merge patches
kubectl sends, and the errors the API server answers with."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketkube.core.errors import APIError
from pocketkube.apiserver.patch import REJECTED_MESSAGE, json_patch, merge_patch, strategic_merge_patch

# ---------------------------------------------------------------------------------------
# RFC 6902
# ---------------------------------------------------------------------------------------

RFC6902_EXAMPLES = [
    ("A.1 add member", {"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}],
     {"baz": "qux", "foo": "bar"}),
    ("A.2 add array element", {"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
     {"foo": ["bar", "qux", "baz"]}),
    ("A.3 remove member", {"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ("A.4 remove array element", {"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}],
     {"foo": ["bar", "baz"]}),
    ("A.5 replace", {"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
     {"baz": "boo", "foo": "bar"}),
    ("A.6 move member", {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ("A.7 move array element", {"foo": ["all", "grass", "cows", "eat"]},
     [{"op": "move", "from": "/foo/1", "path": "/foo/3"}], {"foo": ["all", "cows", "eat", "grass"]}),
    ("A.8 test success", {"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ("A.10 add nested member", {"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    ("A.11 unrecognized members ignored", {"foo": "bar"},
     [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}], {"foo": "bar", "baz": "qux"}),
    ("A.14 ~ escape ordering", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}],
     {"/": 9, "~1": 10}),
    ("A.16 add array value", {"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
    ("copy", {"a": {"b": 1}}, [{"op": "copy", "from": "/a", "path": "/c"}], {"a": {"b": 1}, "c": {"b": 1}}),
    ("~1 escapes a slash in a key", {"metadata": {"labels": {}}},
     [{"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "web"}],
     {"metadata": {"labels": {"app.kubernetes.io/name": "web"}}}),
    ("negative index counts from the end", {"a": [1, 2, 3]}, [{"op": "remove", "path": "/a/-1"}], {"a": [1, 2]}),
    ("replace of a missing member adds it (json-patch v4)", {"a": 1},
     [{"op": "replace", "path": "/b", "value": 2}], {"a": 1, "b": 2}),
    ("copy of a missing member copies null (json-patch v4)", {"a": 1},
     [{"op": "copy", "from": "/nope", "path": "/b"}], {"a": 1, "b": None}),
    ("test of a missing member against null passes", {"a": 1},
     [{"op": "test", "path": "/b", "value": None}], {"a": 1}),
    ("test of the whole document", {"a": 1}, [{"op": "test", "path": "", "value": {"a": 1}}], {"a": 1}),
    ("replace of the whole document", {"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2}),
    ("a null body changes nothing", {"a": 1}, None, {"a": 1}),
]


@pytest.mark.parametrize("name,doc,ops,expected", RFC6902_EXAMPLES, ids=[c[0] for c in RFC6902_EXAMPLES])
def test_json_patch_examples(name, doc, ops, expected):
    before = copy.deepcopy(doc)
    assert json_patch(doc, ops) == expected
    assert doc == before


JSON_PATCH_FAILURES = [
    ("A.9 test failure", {"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}],
     "testing value /baz failed: test failed"),
    ("A.12 add to a missing parent", {"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}],
     'add operation does not apply: doc is missing path: "/baz/bat": missing value'),
    ("A.15 strings are not numbers", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}],
     "testing value /~01 failed: test failed"),
    ("remove of a missing member", {"metadata": {"labels": {}}},
     [{"op": "remove", "path": "/metadata/labels/app"}],
     "error in remove for path: '/metadata/labels/app': Unable to remove nonexistent key: app: missing value"),
    ("remove under a missing parent", {"a": 1}, [{"op": "remove", "path": "/x/y"}],
     'remove operation does not apply: doc is missing path: "/x/y": missing value'),
    ("index past the end", {"a": [1]}, [{"op": "add", "path": "/a/5", "value": 0}],
     "error in add for path: '/a/5': Unable to access invalid index: 5: invalid index referenced"),
    ("index that is not a number", {"a": [1]}, [{"op": "add", "path": "/a/x", "value": 0}],
     "error in add for path: '/a/x': value was not a proper array index: 'x': "
     'strconv.Atoi: parsing "x": invalid syntax'),
    ("replace past the end", {"a": [1]}, [{"op": "replace", "path": "/a/3", "value": 0}],
     "replace operation does not apply: doc is missing key: /a/3: missing value"),
    ("move from a missing member", {"a": 1}, [{"op": "move", "from": "/b", "path": "/c"}],
     "error in move for path: 'b': Unable to remove nonexistent key: b: missing value"),
    ("unknown op", {"a": 1}, [{"op": "frobnicate", "path": "/a"}], "Unexpected kind: frobnicate"),
    ("missing op", {"a": 1}, [{"path": "/a"}], "Unexpected kind: unknown"),
    ("missing path", {"a": 1}, [{"op": "add", "value": 1}], "add operation failed to decode path: missing value"),
    ("path without a slash", {"a": 1}, [{"op": "add", "path": "", "value": 1}],
     'add operation does not apply: doc is missing path: "": missing value'),
]


@pytest.mark.parametrize("name,doc,ops,cause", JSON_PATCH_FAILURES, ids=[c[0] for c in JSON_PATCH_FAILURES])
def test_json_patch_failures_are_the_generic_422(name, doc, ops, cause):
    with pytest.raises(APIError) as raised:
        json_patch(doc, ops)
    assert raised.value.code == 422
    assert raised.value.status() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                     "message": REJECTED_MESSAGE, "reason": "Invalid", "details": {},
                                     "code": 422}
    assert str(raised.value.__cause__) == cause


JSON_PATCH_BAD_BODIES = [
    ("an object", {"op": "add"}, "error decoding patch: json: cannot unmarshal object into Go value of type "
                                 "[]handlers.jsonPatchOp"),
    ("a string", "x", "error decoding patch: json: cannot unmarshal string into Go value of type "
                      "[]handlers.jsonPatchOp"),
    ("an element that is a number", [1], "error decoding patch: json: cannot unmarshal number into Go value "
                                         "of type handlers.jsonPatchOp"),
    ("a path that is a number", [{"op": "add", "path": 5}],
     "error decoding patch: json: cannot unmarshal number into Go struct field jsonPatchOp.path of type string"),
    ("an op that is a bool", [{"op": True}],
     "error decoding patch: json: cannot unmarshal bool into Go struct field jsonPatchOp.op of type string"),
]


@pytest.mark.parametrize("name,ops,message", JSON_PATCH_BAD_BODIES, ids=[c[0] for c in JSON_PATCH_BAD_BODIES])
def test_json_patch_body_that_is_not_operations_is_a_400(name, ops, message):
    with pytest.raises(APIError) as raised:
        json_patch({"a": 1}, ops)
    assert (raised.value.code, raised.value.reason, raised.value.message) == (400, "BadRequest", message)


def test_json_patch_operation_limit_is_a_413():
    with pytest.raises(APIError) as raised:
        json_patch({}, [{"op": "test", "path": "/a", "value": None}] * 10001)
    assert raised.value.code == 413
    assert raised.value.message == ("Request entity too large: The allowed maximum operations in a JSON patch "
                                    "is 10000, got 10001")


def test_json_patch_that_leaves_an_array_cannot_be_decoded():
    with pytest.raises(APIError) as raised:
        json_patch({"a": 1}, [{"op": "replace", "path": "", "value": [1]}])
    assert raised.value.code == 422
    assert raised.value.message.startswith(' "" is invalid: patch: Invalid value: "[1]": couldn\'t get '
                                           "version/kind; json parse error: json: cannot unmarshal array")


def test_kubectl_patch_type_json_scales_a_deployment():
    deployment = _deployment()
    patched = json_patch(deployment, [{"op": "replace", "path": "/spec/replicas", "value": 3},
                                      {"op": "add", "path": "/spec/template/spec/containers/0/env",
                                       "value": [{"name": "MODE", "value": "prod"}]}])
    assert patched["spec"]["replicas"] == 3
    assert patched["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": "prod"}]
    assert deployment["spec"]["replicas"] == 1


def test_json_patch_values_are_copied_not_shared():
    value = {"k": "v"}
    ops = [{"op": "add", "path": "/a", "value": value}, {"op": "add", "path": "/b", "value": value},
           {"op": "add", "path": "/a/extra", "value": 1}]
    assert json_patch({}, ops) == {"a": {"k": "v", "extra": 1}, "b": {"k": "v"}}
    assert value == {"k": "v"}


# ---------------------------------------------------------------------------------------
# RFC 7386
# ---------------------------------------------------------------------------------------

RFC7386_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    # kubectl scale and `kubectl patch --type merge`
    ({"spec": {"replicas": 1, "paused": True}}, {"spec": {"replicas": 3}}, {"spec": {"replicas": 3, "paused": True}}),
]


@pytest.mark.parametrize("doc,patch,expected", RFC7386_EXAMPLES)
def test_merge_patch_examples(doc, patch, expected):
    before = copy.deepcopy(doc)
    assert merge_patch(doc, patch) == expected
    assert doc == before


@pytest.mark.parametrize("patch,message", [
    (None, "Invalid JSON Patch"),
    (["c"], "error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}"),
    ("bar", "error decoding patch: json: cannot unmarshal string into Go value of type map[string]interface {}"),
    (3, "error decoding patch: json: cannot unmarshal number into Go value of type map[string]interface {}"),
])
def test_merge_patch_body_that_is_not_an_object_is_a_400(patch, message):
    with pytest.raises(APIError) as raised:
        merge_patch({"a": "foo"}, patch)
    assert (raised.value.code, raised.value.reason, raised.value.message) == (400, "BadRequest", message)


def test_merge_patch_replaces_lists_whole():
    service = _service()
    patched = merge_patch(service, {"spec": {"ports": [{"port": 8080}]}})
    assert patched["spec"]["ports"] == [{"port": 8080}]


# ---------------------------------------------------------------------------------------
# Strategic merge patch
# ---------------------------------------------------------------------------------------

def _deployment() -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-1", "generation": 1,
                     "labels": {"app": "web"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent",
                         "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                        {"name": "sidecar", "image": "busybox", "command": ["sleep", "3600"]},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "restartPolicy": "Always",
                    "tolerations": [{"key": "a", "operator": "Exists"}],
                },
            },
        },
        "status": {"replicas": 1, "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]},
    }


def _service() -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "uid": "s-1"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                 "selector": {"app": "web"}, "sessionAffinity": "None",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        "status": {"loadBalancer": {}},
    }


def _containers(deployment: dict) -> list:
    return deployment["spec"]["template"]["spec"]["containers"]


def test_apply_changes_an_image_with_set_element_order():
    deployment = _deployment()
    patch = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":1}\n"}},
             "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                                            "containers": [{"image": "nginx:1.27", "name": "web"}]}}}}
    patched = strategic_merge_patch(deployment, patch, "Deployment")
    expected = _deployment()
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{\"new\":1}\n"
    _containers(expected)[0]["image"] = "nginx:1.27"
    assert patched == expected
    assert deployment == _deployment()


def test_apply_set_element_order_reorders_and_keeps_server_only_items():
    deployment = _deployment()
    _containers(deployment).append({"name": "injected", "image": "proxy"})
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}, {"name": "new"}],
        "containers": [{"name": "new", "image": "redis"}]}}}}
    patched = strategic_merge_patch(deployment, patch, "Deployment")
    assert [c["name"] for c in _containers(patched)] == ["sidecar", "web", "new", "injected"]


def test_apply_adds_a_service_port():
    patch = {"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}],
                      "ports": [{"port": 443, "targetPort": 8443}]}}
    patched = strategic_merge_patch(_service(), patch, "Service")
    assert patched["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                                        {"port": 443, "targetPort": 8443}]


def test_apply_removes_a_service_port():
    service = _service()
    service["spec"]["ports"].append({"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"})
    patch = {"spec": {"$setElementOrder/ports": [{"port": 80}], "ports": [{"$patch": "delete", "port": 443}]}}
    patched = strategic_merge_patch(service, patch, "Service")
    assert patched["spec"]["ports"] == _service()["spec"]["ports"]


def test_apply_changes_the_strategy_type_with_retain_keys():
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"}}}
    patched = strategic_merge_patch(_deployment(), patch, "Deployment")
    assert patched["spec"]["strategy"] == {"type": "Recreate"}
    assert patched["spec"]["replicas"] == 1


def test_kubectl_patch_changes_the_service_type():
    patched = strategic_merge_patch(_service(), {"spec": {"type": "NodePort"}}, "Service")
    expected = _service()
    expected["spec"]["type"] = "NodePort"
    assert patched == expected


def test_kubectl_patch_sets_a_node_port_on_the_existing_port():
    patched = strategic_merge_patch(_service(), {"spec": {"ports": [{"port": 80, "nodePort": 30080}]}}, "Service")
    assert patched["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080}]


def test_a_new_item_without_set_element_order_goes_before_the_live_ones():
    # apimachinery's mergeSortedSlice: patch items the live list does not know come first.
    patched = strategic_merge_patch(_service(), {"spec": {"ports": [{"port": 9090, "name": "metrics"}]}}, "Service")
    assert [p["port"] for p in patched["spec"]["ports"]] == [9090, 80]


def test_container_env_merges_by_name():
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [
        {"name": "B", "value": "two"}, {"name": "C", "value": "3"}, {"name": "A", "$patch": "delete"}]}]}}}}
    patched = strategic_merge_patch(_deployment(), patch, "Deployment")
    web = _containers(patched)[0]
    assert web["env"] == [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}]
    assert web["image"] == "nginx:1.25" and web["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_container_ports_merge_by_container_port_and_command_is_atomic():
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "ports": [{"containerPort": 80, "name": "http"}]},
        {"name": "sidecar", "command": ["sleep", "60"]}]}}}}
    patched = strategic_merge_patch(_deployment(), patch, "Deployment")
    assert _containers(patched)[0]["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "http"}]
    assert _containers(patched)[1]["command"] == ["sleep", "60"]


def test_atomic_lists_are_replaced():
    patch = {"spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}}}
    patched = strategic_merge_patch(_deployment(), patch, "Deployment")
    assert patched["spec"]["template"]["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_volume_source_switch_with_retain_keys_in_a_list_item():
    patch = {"spec": {"template": {"spec": {"volumes": [
        {"name": "data", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}}]}}}}
    patched = strategic_merge_patch(_deployment(), patch, "Deployment")
    assert patched["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "configMap": {"name": "cfg"}}]


FINALIZER_CASES = [
    ("merge-list union", ["a", "b"], {"metadata": {"finalizers": ["b", "c"]}}, ["a", "b", "c"]),
    ("delete from the primitive list", ["a", "b", "c"],
     {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}, ["a", "c"]),
    ("set element order", ["a", "b"],
     {"metadata": {"$setElementOrder/finalizers": ["b", "a", "c"], "finalizers": ["c"]}}, ["b", "a", "c"]),
    ("null removes the list", ["a"], {"metadata": {"finalizers": None}}, None),
]


@pytest.mark.parametrize("name,current,patch,expected", FINALIZER_CASES, ids=[c[0] for c in FINALIZER_CASES])
def test_finalizers(name, current, patch, expected):
    pod = {"metadata": {"name": "p", "finalizers": current}}
    assert strategic_merge_patch(pod, patch, "Pod")["metadata"].get("finalizers") == expected


def test_owner_references_merge_by_uid():
    pod = {"metadata": {"name": "p", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs1", "uid": "u1", "controller": True}]}}
    added = strategic_merge_patch(pod, {"metadata": {"ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u2"},
        {"uid": "u1", "blockOwnerDeletion": True}]}}, "Pod")
    assert added["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u2"},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs1", "uid": "u1", "controller": True,
         "blockOwnerDeletion": True}]
    orphaned = strategic_merge_patch(added, {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "u1"}]}},
                                     "Pod")
    assert [r["uid"] for r in orphaned["metadata"]["ownerReferences"]] == ["u2"]


def test_status_conditions_merge_by_type():
    patch = {"status": {"conditions": [{"type": "Progressing", "status": "False", "reason": "Timeout"},
                                       {"type": "ReplicaFailure", "status": "True"}]}}
    patched = strategic_merge_patch(_deployment(), patch, "Deployment")
    assert patched["status"]["conditions"] == [
        {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
        {"type": "Progressing", "status": "False", "reason": "Timeout"},
        {"type": "ReplicaFailure", "status": "True"}]


def test_node_status_addresses_and_conditions_merge_by_type():
    node = {"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.244.1.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}],
                       "conditions": [{"type": "Ready", "status": "False"}]}}
    patch = {"spec": {"podCIDRs": ["fd00::/64"]},
             "status": {"addresses": [{"type": "Hostname", "address": "n1"}],
                        "conditions": [{"type": "Ready", "status": "True"}]}}
    patched = strategic_merge_patch(node, patch, "Node")
    assert patched["spec"]["podCIDRs"] == ["fd00::/64", "10.244.1.0/24"]
    assert patched["status"]["addresses"] == [{"type": "Hostname", "address": "n1"},
                                              {"type": "InternalIP", "address": "172.18.0.2"}]
    assert patched["status"]["conditions"] == [{"type": "Ready", "status": "True"}]


def test_pod_status_ips_merge_by_ip():
    pod = {"metadata": {"name": "p"}, "status": {"podIPs": [{"ip": "10.244.1.5"}], "phase": "Pending"}}
    patched = strategic_merge_patch(pod, {"status": {"phase": "Running", "podIPs": [{"ip": "fd00::5"}],
                                                     "hostIPs": [{"ip": "172.18.0.2"}]}}, "Pod")
    assert patched["status"] == {"podIPs": [{"ip": "fd00::5"}, {"ip": "10.244.1.5"}], "phase": "Running",
                                 "hostIPs": [{"ip": "172.18.0.2"}]}


def test_templates_of_every_workload_merge_containers_by_name():
    for kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"):
        patched = strategic_merge_patch(_deployment(), {"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "image": "alpine"}]}}}}, kind)
        assert [(c["name"], c["image"]) for c in _containers(patched)] == [("web", "nginx:1.25"),
                                                                           ("sidecar", "alpine")], kind


def test_unknown_kinds_replace_every_list():
    obj = {"metadata": {"finalizers": ["a"]}, "spec": {"items": [{"name": "x"}], "m": {"k": 1}}}
    patched = strategic_merge_patch(obj, {"metadata": {"finalizers": ["b"]},
                                          "spec": {"items": [{"name": "y"}], "m": {"j": 2}}}, "Widget")
    assert patched == {"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "y"}], "m": {"k": 1, "j": 2}}}


def test_secret_data_merges_per_key_and_null_deletes_a_key():
    secret = {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "YQ==", "b": "Yg=="}}
    patched = strategic_merge_patch(secret, {"data": {"a": None, "c": "Yw=="}}, "Secret")
    assert patched["data"] == {"b": "Yg==", "c": "Yw=="}


MAP_DIRECTIVES = [
    ("$patch replace in a map", {"spec": {"selector": {"$patch": "replace", "tier": "web"}}},
     {"tier": "web"}),
    ("$patch delete in a map", {"spec": {"selector": {"$patch": "delete"}}}, {}),
    ("$patch merge is the default", {"spec": {"selector": {"tier": "web"}}}, {"app": "web", "tier": "web"}),
]


@pytest.mark.parametrize("name,patch,selector", MAP_DIRECTIVES, ids=[c[0] for c in MAP_DIRECTIVES])
def test_map_directives(name, patch, selector):
    assert strategic_merge_patch(_service(), patch, "Service")["spec"]["selector"] == selector


def test_list_item_replace_directive_replaces_the_whole_list():
    patch = {"spec": {"ports": [{"$patch": "replace"}, {"port": 8443, "name": "https"}]}}
    patched = strategic_merge_patch(_service(), patch, "Service")
    assert patched["spec"]["ports"] == [{"port": 8443, "name": "https"}]


def test_new_values_lose_nulls_and_directives():
    patch = {"spec": {"externalName": None, "newField": {"a": None, "b": 1, "$retainKeys": ["b"],
                                                          "gone": {"$patch": "delete"}}}}
    patched = strategic_merge_patch(_service(), patch, "Service")
    assert patched["spec"]["newField"] == {"b": 1}
    assert "externalName" not in patched["spec"]


def _c(name: str, **fields) -> dict:
    return {"name": name, **fields}


# apimachinery's customStrategicMergePatchTestCaseData, with mergingList -> spec.containers
# (merge key name) and mergingIntList -> metadata.finalizers.
UPSTREAM_CASES = [
    ("unique scalars when merging lists", {"metadata": {"finalizers": ["1", "2"]}},
     {"metadata": {"finalizers": ["2", "3"]}}, {"metadata": {"finalizers": ["1", "2", "3"]}}),
    ("delete all items from merging list", {"spec": {"containers": [_c("1"), _c("2")]}},
     {"spec": {"containers": [{"$patch": "replace"}]}}, {"spec": {"containers": []}}),
    ("preserve the order from the patch", {"spec": {"containers": [_c("1"), _c("2", image="b"), _c("3")]}},
     {"spec": {"containers": [_c("3", image="c"), _c("1", image="a"), _c("2", imagePullPolicy="x")]}},
     {"spec": {"containers": [_c("3", image="c"), _c("1", image="a"), _c("2", image="b", imagePullPolicy="x")]}}),
    ("preserve the order from the patch 2", {"spec": {"containers": [_c("1"), _c("2", image="b"), _c("3")]}},
     {"spec": {"containers": [_c("3", image="c"), _c("1", image="a")]}},
     {"spec": {"containers": [_c("2", image="b"), _c("3", image="c"), _c("1", image="a")]}}),
    ("preserve the order from the patch in a primitive list", {"metadata": {"finalizers": ["1", "2", "3"]}},
     {"metadata": {"finalizers": ["3", "1"]}}, {"metadata": {"finalizers": ["2", "3", "1"]}}),
    ("delete all duplicate entries", {"spec": {"containers": [_c("1"), _c("1"), _c("2", image="a"), _c("3"),
                                                              _c("3")]}},
     {"spec": {"containers": [{"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}]}},
     {"spec": {"containers": [_c("2", image="a")]}}),
    ("$setElementOrder names an item the list does not have", {"spec": {"containers": [_c("1"), _c("3")]}},
     {"spec": {"$setElementOrder/containers": [_c("3"), _c("2"), _c("1")],
               "containers": [_c("3", image="3"), _c("1", image="1")]}},
     {"spec": {"containers": [_c("3", image="3"), _c("1", image="1")]}}),
    ("$setElementOrder alone reorders a primitive list", {"metadata": {"finalizers": ["1", "3"]}},
     {"metadata": {"$setElementOrder/finalizers": ["3", "2", "1"]}}, {"metadata": {"finalizers": ["3", "1"]}}),
]


@pytest.mark.parametrize("name,doc,patch,expected", UPSTREAM_CASES, ids=[c[0] for c in UPSTREAM_CASES])
def test_upstream_strategic_merge_cases(name, doc, patch, expected):
    assert strategic_merge_patch(doc, patch, "Pod") == expected


def test_set_element_order_that_contradicts_the_patch_list_is_rejected():
    doc = {"spec": {"containers": [_c("1"), _c("3"), _c("2")]}}
    patch = {"spec": {"$setElementOrder/containers": [_c("1"), _c("2"), _c("3")],
                      "containers": [_c("3", image="3"), _c("1", image="1")]}}
    with pytest.raises(APIError) as raised:
        strategic_merge_patch(doc, patch, "Pod")
    assert raised.value.code == 500
    assert raised.value.message == ("The order in patch list:\n[map[image:3 name:3] map[image:1 name:1]]\n "
                                    "doesn't match $setElementOrder list:\n[map[name:1] map[name:2] map[name:3]]\n")


def test_a_null_body_changes_nothing():
    assert strategic_merge_patch(_service(), None, "Service") == _service()


SMP_ERRORS = [
    ("body is an array", ["x"], 400, "BadRequest",
     "json: cannot unmarshal array into Go value of type map[string]interface {}"),
    ("body is a string", "x", 400, "BadRequest",
     "json: cannot unmarshal string into Go value of type map[string]interface {}"),
    ("list item without its merge key", {"spec": {"ports": [{"nodePort": 30080}]}}, 500, "",
     "map: map[nodePort:30080] does not contain declared merge key: port"),
    ("$retainKeys that is not a list", {"spec": {"$retainKeys": "type"}}, 400, "BadRequest",
     "invalid patch format of retainKeys"),
    ("$retainKeys that leaves out a patched key", {"spec": {"$retainKeys": ["type"], "clusterIP": "None"}},
     400, "BadRequest", "invalid patch format of retainKeys"),
    ("$setElementOrder without a slash", {"spec": {"$setElementOrderports": []}}, 400, "BadRequest",
     "invalid patch format of setElementOrder list"),
    ("$deleteFromPrimitiveList without a slash", {"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}},
     400, "BadRequest", "invalid patch format of primitive list"),
    ("unknown $patch", {"spec": {"$patch": "bogus"}}, 500, "", "unknown patch type: bogus in map: map[$patch:bogus]"),
    ("$patch merge in a list", {"spec": {"ports": [{"$patch": "merge", "port": 80}]}}, 500, "",
     "merging lists cannot yet be specified in the patch"),
    ("list element types differ", {"metadata": {"finalizers": [1]}}, 500, "",
     "list element types are not identical: [[a] [1]]"),
]


@pytest.mark.parametrize("name,patch,code,reason,message", SMP_ERRORS, ids=[c[0] for c in SMP_ERRORS])
def test_strategic_merge_patch_errors(name, patch, code, reason, message):
    service = _service()
    service["metadata"]["finalizers"] = ["a"]
    with pytest.raises(APIError) as raised:
        strategic_merge_patch(service, patch, "Service")
    assert (raised.value.code, raised.value.reason, raised.value.message) == (code, reason, message)


def test_a_list_of_lists_in_a_merge_list_is_the_generic_422():
    with pytest.raises(APIError) as raised:
        strategic_merge_patch({"metadata": {"finalizers": []}}, {"metadata": {"finalizers": [["a"]]}}, "Pod")
    assert (raised.value.code, raised.value.reason, raised.value.message) == (422, "Invalid", REJECTED_MESSAGE)
    assert str(raised.value.__cause__) == "lists of lists are not supported"


# ---------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12)
JSON_OBJECTS = st.dictionaries(st.sampled_from(["a", "b", "0", "~", "/"]) | st.text(max_size=3), JSON_VALUES,
                               max_size=5)
POINTERS = st.lists(st.sampled_from(["a", "b", "0", "1", "-1", "-", "~0", "~1", "", "99"]) | st.text(max_size=3),
                    max_size=4).map(lambda tokens: "".join("/" + t for t in tokens)) | st.text(max_size=6)
OPERATIONS = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"])},
    optional={"path": POINTERS | JSON_SCALARS, "from": POINTERS, "value": JSON_VALUES})
PATCH_BODIES = st.lists(OPERATIONS | JSON_VALUES, max_size=5) | JSON_VALUES


@given(JSON_OBJECTS)
def test_an_empty_merge_patch_changes_nothing(doc):
    assert merge_patch(doc, {}) == doc


@given(JSON_OBJECTS, st.sampled_from(["Pod", "Deployment", "Service", "Widget"]))
def test_an_empty_strategic_merge_patch_changes_nothing(doc, kind):
    assert strategic_merge_patch(doc, {}, kind) == doc


@settings(max_examples=400)
@given(JSON_OBJECTS, PATCH_BODIES)
def test_json_patch_fails_only_with_api_errors_and_never_mutates(doc, ops):
    before = copy.deepcopy(doc)
    try:
        result = json_patch(doc, ops)
    except APIError as error:
        assert error.code in (400, 413, 422)
    else:
        assert isinstance(result, dict)
    assert doc == before


@settings(max_examples=300)
@given(JSON_OBJECTS, JSON_VALUES, st.sampled_from(["Pod", "Service", "Widget"]))
def test_strategic_merge_patch_fails_only_with_api_errors(doc, patch, kind):
    try:
        strategic_merge_patch(doc, patch, kind)
    except APIError as error:
        assert error.code in (400, 422, 500)
