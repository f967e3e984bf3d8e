"""RBAC authorization with the real kubectl: who you are (`auth whoami`), what you may do
(`auth can-i`, `--list`, impersonation with `--as`), the 403s a real cluster gives, escalation
refused, the bootstrap policy and the aggregated roles, and anonymous access."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest

from tests.integration.test_endpoints import eventually

pytestmark = pytest.mark.usefixtures("server")


def sa(ns: str, name: str = "default") -> str:
    return f"system:serviceaccount:{ns}:{name}"


def test_whoami_admin_and_service_account(server, ns):
    out = server.kubectl("auth", "whoami").stdout.split()
    assert out == ["ATTRIBUTE", "VALUE", "Username", "kubernetes-admin", "Groups",
                   "[system:masters", "system:authenticated]"]
    server.kubectl("create", "serviceaccount", "robot", "-n", ns)
    token = server.kubectl("create", "token", "robot", "-n", ns).stdout.strip()
    who = json.loads(server.kubectl("auth", "whoami", "--token", token, "-o", "json").stdout)
    assert who["kind"] == "SelfSubjectReview"
    assert who["status"]["userInfo"]["username"] == sa(ns, "robot")
    assert who["status"]["userInfo"]["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{ns}",
                                                   "system:authenticated"]
    cp = server.kubectl("get", "secrets", "-n", ns, "--token", token, check=False)
    assert cp.returncode == 1
    assert cp.stderr.strip() == (f'Error from server (Forbidden): secrets is forbidden: User "{sa(ns, "robot")}" '
                                 f'cannot list resource "secrets" in API group "" in the namespace "{ns}"')
    server.kubectl("delete", "serviceaccount", "robot", "-n", ns)
    cp = server.kubectl("get", "pods", "-n", ns, "--token", token, check=False)  # its token died with it
    assert "error: You must be logged in to the server (Unauthorized)" in cp.stderr


def test_default_service_account_may_do_nothing_until_bound(server, ns):
    cp = server.kubectl("get", "services", "-n", ns, "--as", sa(ns), check=False)
    assert cp.returncode == 1
    assert cp.stderr.strip() == (f'Error from server (Forbidden): services is forbidden: User "{sa(ns)}" cannot '
                                 f'list resource "services" in API group "" in the namespace "{ns}"')
    assert server.kubectl("auth", "can-i", "list", "services", "-n", ns, "--as", sa(ns),
                          check=False).stdout.strip() == "no"
    server.kubectl("create", "rolebinding", "dev-view", "--clusterrole=view", f"--serviceaccount={ns}:default",
                   "-n", ns)
    assert server.kubectl("auth", "can-i", "list", "services", "-n", ns, "--as", sa(ns)).stdout.strip() == "yes"
    assert server.kubectl("auth", "can-i", "get", "secrets", "-n", ns, "--as", sa(ns),
                          check=False).stdout.strip() == "no"
    assert server.kubectl("auth", "can-i", "list", "services", "-n", "default", "--as", sa(ns),
                          check=False).stdout.strip() == "no"
    server.kubectl("get", "services", "-n", ns, "--as", sa(ns))
    rules = server.kubectl("auth", "can-i", "--list", "-n", ns, "--as", sa(ns)).stdout
    assert "deployments.apps" in rules and "selfsubjectaccessreviews.authorization.k8s.io" in rules


def test_binding_to_a_missing_role_says_so(server, ns):
    server.kubectl("create", "rolebinding", "ghost", "--clusterrole=no-such-role", "--user=jane", "-n", ns)
    cp = server.kubectl("auth", "can-i", "get", "pods", "-n", ns, "--as", "jane", check=False)
    assert cp.stdout.strip() == 'no - RBAC: clusterrole.rbac.authorization.k8s.io "no-such-role" not found'


def test_escalation_is_refused(server, ns):
    server.kubectl("create", "serviceaccount", "boss", "-n", ns)
    server.kubectl("create", "rolebinding", "boss-admin", "--clusterrole=admin", f"--serviceaccount={ns}:boss",
                   "-n", ns)
    boss = ("--as", sa(ns, "boss"), "-n", ns)
    server.kubectl("create", "role", "cm-reader", "--verb=get", "--resource=configmaps", *boss)
    cp = server.kubectl("create", "role", "node-reader", "--verb=get,list", "--resource=nodes", *boss, check=False)
    assert cp.returncode == 1
    assert cp.stderr.strip() == (
        f'Error from server (Forbidden): roles.rbac.authorization.k8s.io "node-reader" is forbidden: user '
        f'"{sa(ns, "boss")}" (groups=["system:serviceaccounts" "system:serviceaccounts:{ns}" '
        f'"system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
        '{APIGroups:[""], Resources:["nodes"], Verbs:["get" "list"]}')
    cp = server.kubectl("create", "rolebinding", "grab", "--clusterrole=cluster-admin", "--user=x", *boss, check=False)
    assert cp.returncode == 1 and "is attempting to grant RBAC permissions not currently held" in cp.stderr
    server.kubectl("create", "rolebinding", "give-view", "--clusterrole=view", "--user=x", *boss)
    assert server.kubectl("auth", "can-i", "create", "pods", "--as", "x", "-n", ns, check=False).stdout.strip() == "no"


def test_impersonation_needs_the_impersonate_verb(server, ns):
    server.kubectl("create", "serviceaccount", "plain", "-n", ns)
    token = server.kubectl("create", "token", "plain", "-n", ns).stdout.strip()
    cp = server.kubectl("get", "pods", "-n", ns, "--token", token, "--as", "jane", check=False)
    assert cp.returncode == 1
    assert cp.stderr.strip() == (f'Error from server (Forbidden): users "jane" is forbidden: User "{sa(ns, "plain")}" '
                                 'cannot impersonate resource "users" in API group "" at the cluster scope')


def test_bootstrap_policy_and_aggregation(server, ns):
    crb = server.kubectl_json("get", "clusterrolebinding", "cluster-admin")
    assert crb["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}]
    assert crb["metadata"]["labels"] == {"kubernetes.io/bootstrapping": "rbac-defaults"}
    names = server.kubectl("get", "clusterroles", "-o", "name").stdout.split()
    for want in ("admin", "edit", "view", "system:discovery", "system:basic-user", "system:public-info-viewer",
                 "system:node", "system:node-proxier", "system:kube-controller-manager", "system:kube-scheduler",
                 "system:controller:deployment-controller"):
        assert f"clusterrole.rbac.authorization.k8s.io/{want}" in names
    name = "widgets-view-" + ns
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list"]}]}))

    def aggregated():
        for role in ("view", "edit", "admin"):
            rules = server.kubectl_json("get", "clusterrole", role)["rules"]
            assert {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list"]} in rules, role
        return True
    eventually(aggregated)
    server.kubectl("delete", "clusterrole", name)
    eventually(lambda: all(r.get("apiGroups") != ["example.com"]
                           for r in server.kubectl_json("get", "clusterrole", "view")["rules"]))


def test_anonymous_may_read_version_and_health_only(server):
    ctx = ssl.create_default_context(cafile=server.ca)
    with urllib.request.urlopen(server.url + "/version", context=ctx, timeout=10) as resp:
        assert json.load(resp)["major"] == "1"
    with urllib.request.urlopen(server.url + "/readyz", context=ctx, timeout=10) as resp:
        assert resp.status == 200
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server.url + "/api/v1/namespaces/default/pods", context=ctx, timeout=10)
    assert e.value.code == 403
    assert json.load(e.value)["message"] == ('pods is forbidden: User "system:anonymous" cannot list resource "pods" '
                                             'in API group "" in the namespace "default"')


def test_subject_access_review_for_another_user(server, ns):
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": "jane", "groups": ["system:masters"],
                       "resourceAttributes": {"verb": "delete", "resource": "nodes"}}}
    out = json.loads(server.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review)).stdout)
    assert out["status"]["allowed"] is True
    review["spec"] = {"user": "jane", "resourceAttributes": {"verb": "delete", "resource": "nodes"}}
    out = json.loads(server.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review)).stdout)
    assert out["status"] == {"allowed": False}
    review["spec"] = {"resourceAttributes": {"verb": "get", "resource": "pods"}}
    cp = server.kubectl("create", "-f", "-", input=json.dumps(review), check=False)
    assert "at least one of user or group must be specified" in cp.stderr
