"""RBAC objects with the real kubectl: `kubectl create role|clusterrole|rolebinding|
clusterrolebinding` (protobuf bodies), what `get` prints, the defaults, and validation errors.
What the objects grant is tested in test_rbac_authz.py."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("server")


def test_kubectl_create_roles_and_bindings(server, ns):
    server.kubectl("create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods", "-n", ns)
    role = server.kubectl_json("get", "role", "pod-reader", "-n", ns)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    server.kubectl("create", "rolebinding", "read-pods", "--role=pod-reader", "--user=jane",
                   "--serviceaccount=" + ns + ":robot", "--group=devs", "-n", ns)
    binding = server.kubectl_json("get", "rolebinding", "read-pods", "-n", ns)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"}
    assert {s["kind"]: s for s in binding["subjects"]}["User"]["apiGroup"] == "rbac.authorization.k8s.io"
    lines = server.kubectl("get", "rolebindings", "-n", ns, "-o", "wide").stdout.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert lines[1].split()[:2] == ["read-pods", "Role/pod-reader"]
    assert lines[1].split()[-3:] == ["jane", "devs", f"{ns}/robot"]
    assert server.kubectl("get", "roles", "-n", ns).stdout.splitlines()[0].split() == ["NAME", "CREATED", "AT"]

    name = "reader-" + ns
    server.kubectl("create", "clusterrole", name, "--verb=get", "--resource=nodes", "--non-resource-url=/logs")
    server.kubectl("create", "clusterrolebinding", name, "--clusterrole=" + name, "--user=jane")
    assert server.kubectl("get", "clusterrolebinding", name).stdout.splitlines()[1].split()[1] == f"ClusterRole/{name}"
    server.kubectl("delete", "clusterrolebinding", name)
    server.kubectl("delete", "clusterrole", name)


def test_bad_rbac_objects_get_the_real_errors(server, ns):
    def create(obj: dict):
        return server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(obj), check=False)

    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "bad"},
            "rules": [{"apiGroups": [""], "resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/x"]}]}
    cp = create(role)
    assert 'rules[0].verbs: Required value: verbs must contain at least one value' in cp.stderr
    assert 'rules[1].nonResourceURLs: Invalid value: []string{"/x"}: namespaced rules cannot apply to ' \
           'non-resource URLs' in cp.stderr
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "bad"},
               "roleRef": {"kind": "Pod", "name": "x"}, "subjects": [{"kind": "Robot", "name": "r"}]}
    cp = create(binding)
    assert 'roleRef.kind: Unsupported value: "Pod": supported values: "Role", "ClusterRole"' in cp.stderr
    assert 'subjects[0].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"' \
        in cp.stderr
    good = {**binding, "metadata": {"name": "ok"}, "roleRef": {"kind": "Role", "name": "a"},
            "subjects": [{"kind": "User", "name": "jane"}]}
    create(good)
    changed = {**good, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "b"}}
    cp = server.kubectl("replace", "-n", ns, "-f", "-", input=json.dumps(changed), check=False)
    assert "cannot change roleRef" in cp.stderr
    assert server.kubectl_json("get", "rolebinding", "ok", "-n", ns)["roleRef"]["name"] == "a"
