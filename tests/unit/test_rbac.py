"""RBAC, pure: request attributes, rule matching, the authorizer over a fake cache, Forbidden
messages, escalation checks, aggregation and the bootstrap policy's reconciliation."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from pocketkube.apiserver import authn, authz, bootstrappolicy
from pocketkube.controllers.clusterroleaggregation import aggregate
from pocketkube.core import errors

G = authz.GROUP
BOB = authn.UserInfo("bob", ("devs", authn.AUTHENTICATED))
SA = authn.service_account_user("web", "default")


class FakeCache:
    """The two calls the authorizer makes of the watch cache."""

    def __init__(self, objects: dict[str, list[dict]]):
        self.objects = objects
        self.revision = 1

    def list(self, prefix: str) -> list[dict]:
        return self.objects.get(prefix.split("/")[3], [])

    def prefix_revision(self, prefix: str) -> int:
        return self.revision


def role(name, rules, ns=""):
    m = {"name": name}
    if ns:
        m["namespace"] = ns
    return {"metadata": m, "rules": rules}


def binding(name, kind, role_name, subjects, ns=""):
    m = {"name": name}
    if ns:
        m["namespace"] = ns
    return {"metadata": m, "roleRef": {"apiGroup": G, "kind": kind, "name": role_name}, "subjects": subjects}


def attrs(method, path, user=BOB, **query):
    return authz.attributes(method, path, MultiDict(query), user)


@pytest.mark.parametrize("method,path,query,want", [
    ("GET", "/api/v1/namespaces/ns/pods", {}, ("list", "ns", "", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "true"}, ("watch", "ns", "", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods/p/log", {}, ("get", "ns", "", "pods", "log", "p")),
    ("POST", "/api/v1/namespaces/ns/pods/p/exec", {}, ("create", "ns", "", "pods", "exec", "p")),
    ("GET", "/api/v1/namespaces/ns", {}, ("get", "ns", "", "namespaces", "", "ns")),
    ("PUT", "/api/v1/namespaces/ns/finalize", {}, ("update", "ns", "", "namespaces", "finalize", "ns")),
    ("DELETE", "/apis/apps/v1/namespaces/ns/deployments", {}, ("deletecollection", "ns", "apps", "deployments", "", "")),
    ("PATCH", "/apis/rbac.authorization.k8s.io/v1/clusterroles/x", {}, ("patch", "", G, "clusterroles", "", "x")),
    ("GET", "/api/v1/namespaces/ns/services/http:web:80/proxy/a/b", {},
     ("get", "ns", "", "services", "proxy", "http:web:80")),
])
def test_request_attributes(method, path, query, want):
    a = attrs(method, path, **query)
    assert a.resource_request
    assert (a.verb, a.namespace, a.group, a.resource, a.subresource, a.name) == want


@pytest.mark.parametrize("path", ["/api", "/apis/apps", "/apis/apps/v1", "/version", "/healthz", "/openapi/v3"])
def test_non_resource_paths(path):
    a = attrs("GET", path)
    assert not a.resource_request and a.verb == "get" and a.path == path


def test_rule_matching():
    r = authz.Rule.of({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]})
    assert r.allows(attrs("GET", "/api/v1/namespaces/a/pods/x"))
    assert r.allows(attrs("GET", "/api/v1/namespaces/a/pods/x/log"))
    assert not r.allows(attrs("GET", "/api/v1/namespaces/a/pods/x/exec"))
    assert not r.allows(attrs("DELETE", "/api/v1/namespaces/a/pods/x"))
    assert not r.allows(attrs("GET", "/apis/apps/v1/namespaces/a/deployments/x"))
    star_sub = authz.Rule.of({"verbs": ["get"], "apiGroups": ["*"], "resources": ["*/scale"]})
    assert star_sub.allows(attrs("GET", "/apis/apps/v1/namespaces/a/deployments/x/scale"))
    assert not star_sub.allows(attrs("GET", "/apis/apps/v1/namespaces/a/deployments/x"))
    named = authz.Rule.of({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]})
    assert named.allows(attrs("GET", "/api/v1/namespaces/n/configmaps/a"))
    assert not named.allows(attrs("GET", "/api/v1/namespaces/n/configmaps/b"))
    assert not named.allows(attrs("GET", "/api/v1/namespaces/n/configmaps"))  # a list has no name
    urls = authz.Rule.of({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]})
    assert urls.allows(attrs("GET", "/healthz")) and urls.allows(attrs("GET", "/apis/apps/v1"))
    assert not urls.allows(attrs("GET", "/version"))


def _authorizer():
    cache = FakeCache({
        "clusterroles": [role("reader", [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}])],
        "roles": [role("cm", [{"verbs": ["*"], "apiGroups": [""], "resources": ["configmaps"]}], ns="web")],
        "clusterrolebindings": [binding("readers", "ClusterRole", "reader", [{"kind": "Group", "name": "devs"}])],
        "rolebindings": [
            binding("cm", "Role", "cm", [{"kind": "ServiceAccount", "name": "default"}], ns="web"),
            binding("broken", "ClusterRole", "missing", [{"kind": "User", "name": "bob"}], ns="web"),
        ],
    })
    return cache, authz.RBACAuthorizer(cache)


def test_authorizer_allows_through_bindings_and_says_which():
    cache, az = _authorizer()
    assert az.authorize(attrs("GET", "/api/v1/namespaces/x/pods")) == (
        True, 'RBAC: allowed by ClusterRoleBinding "readers" of ClusterRole "reader" to Group "devs"')
    assert az.authorize(attrs("DELETE", "/api/v1/namespaces/web/configmaps/c", SA)) == (
        True, 'RBAC: allowed by RoleBinding "cm/web" of Role "cm" to ServiceAccount "default/web"')
    assert az.authorize(attrs("GET", "/api/v1/namespaces/other/configmaps/c", SA)) == (False, "")
    assert az.authorize(attrs("GET", "/api/v1/namespaces/web/secrets/s")) == (
        False, 'RBAC: clusterrole.rbac.authorization.k8s.io "missing" not found')
    masters = authn.UserInfo("root", (authn.MASTERS,))
    assert az.authorize(attrs("DELETE", "/api/v1/nodes/n", masters)) == (True, "")


def test_authorizer_sees_changes():
    cache, az = _authorizer()
    assert not az.authorize(attrs("GET", "/api/v1/namespaces/x/services"))[0]
    cache.objects["clusterroles"][0]["rules"].append({"verbs": ["get"], "apiGroups": [""], "resources": ["services"]})
    cache.revision += 1
    assert az.authorize(attrs("GET", "/api/v1/namespaces/x/services/s"))[0]


def test_forbidden_messages_are_upstreams():
    e = authz.forbidden(attrs("GET", "/api/v1/namespaces/default/services", SA))
    assert e.code == 403 and e.reason == "Forbidden"
    assert e.message == ('services is forbidden: User "system:serviceaccount:web:default" cannot list resource '
                         '"services" in API group "" in the namespace "default"')
    e = authz.forbidden(attrs("GET", "/apis/apps/v1/namespaces/a/deployments/d/scale", SA))
    assert e.message.startswith('deployments.apps "d" is forbidden: User "system:serviceaccount:web:default" cannot '
                                'get resource "deployments/scale" in API group "apps" in the namespace "a"')
    assert e.details == {"name": "d", "group": "apps", "kind": "deployments"}
    e = authz.forbidden(attrs("GET", "/api/v1/nodes"), 'RBAC: clusterrole.rbac.authorization.k8s.io "x" not found')
    assert e.message == ('nodes is forbidden: User "bob" cannot list resource "nodes" in API group "" at the '
                         'cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io "x" not found')
    assert authz.forbidden(attrs("GET", "/apis")).message == 'forbidden: User "bob" cannot get path "/apis"'


def test_escalation_is_refused_with_the_missing_rules():
    cache, az = _authorizer()
    authz.check_no_escalation(az, BOB, "x", [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}],
                              G, "roles", "ok")
    with pytest.raises(errors.APIError) as e:
        authz.check_no_escalation(az, BOB, "x", [
            {"verbs": ["get", "delete"], "apiGroups": ["", "apps"], "resources": ["pods"]},
            {"verbs": ["get"], "nonResourceURLs": ["/metrics"]}], G, "roles", "r")
    assert e.value.code == 403
    assert e.value.message == (
        'roles.rbac.authorization.k8s.io "r" is forbidden: user "bob" (groups=["devs" "system:authenticated"]) is '
        'attempting to grant RBAC permissions not currently held:\n'
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}\n'
        '{APIGroups:["apps"], Resources:["pods"], Verbs:["get" "delete"]}\n'
        '{NonResourceURLs:["/metrics"], Verbs:["get"]}')


def test_aggregation_gathers_rules_of_matching_roles_once():
    sel = {"aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "yes"}}]}}
    target = {"metadata": {"name": "view"}, **sel}
    r1 = {"metadata": {"name": "b", "labels": {"agg": "yes"}}, "rules": [{"verbs": ["get"]}, {"verbs": ["list"]}]}
    r2 = {"metadata": {"name": "a", "labels": {"agg": "yes"}}, "rules": [{"verbs": ["list"]}]}
    r3 = {"metadata": {"name": "c"}, "rules": [{"verbs": ["delete"]}]}
    assert aggregate(target, [r1, r2, r3, target]) == [{"verbs": ["list"]}, {"verbs": ["get"]}]


def test_bootstrap_reconciliation_adds_back_what_is_missing_unless_opted_out():
    wanted = next(o for o in bootstrappolicy.cluster_role_objects() if o["metadata"]["name"] == "system:basic-user")
    existing = {"metadata": {"name": "system:basic-user", "labels": {"mine": "x"}},
                "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}
    new = bootstrappolicy._reconciled(existing, wanted)
    assert new["rules"][0] == existing["rules"][0] and new["rules"][1:] == wanted["rules"]
    assert new["metadata"]["labels"] == {"mine": "x", "kubernetes.io/bootstrapping": "rbac-defaults"}
    assert bootstrappolicy._reconciled(new, wanted) is None
    existing["metadata"]["annotations"] = {bootstrappolicy.AUTOUPDATE: "false"}
    assert bootstrappolicy._reconciled(existing, wanted) is None


def test_every_controller_has_its_bootstrap_role():
    from pocketkube.controllers.registry import CONTROLLERS

    names = {o["metadata"]["name"] for o in bootstrappolicy.cluster_role_binding_objects()}
    for cls in CONTROLLERS:
        user = cls.username()
        sa = authn.split_service_account(user)
        if sa:
            assert sa[0] == "kube-system" and f"system:controller:{sa[1]}" in names, cls.name
        else:
            assert user in ("system:kube-scheduler", "system:apiserver"), cls.name


def test_tokens_give_users():
    from pocketkube.apiserver.tokens import TokenIssuer
    import tempfile, os

    issuer = TokenIssuer(os.path.join(tempfile.mkdtemp(), "k"))
    sa = {"metadata": {"name": "default", "uid": "u1"}}
    token, _ = issuer.issue("web", sa, [], 3600, {"kind": "Pod", "name": "p", "uid": "pu"})
    stored = {"web/default": {"metadata": {"uid": "u1"}}}
    a = authn.Authenticator("admin", issuer, lambda ns, n: stored.get(f"{ns}/{n}"))
    user = a.authenticate(f"Bearer {token}")
    assert user.name == "system:serviceaccount:web:default" and user.uid == "u1"
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:web", "system:authenticated")
    assert user.extra["authentication.kubernetes.io/pod-name"] == ("p",)
    stored["web/default"] = {"metadata": {"uid": "u2"}}  # deleted and made again: the old token is dead
    assert a.authenticate(f"Bearer {token}") is None
    node = a.authenticate("Bearer " + issuer.issue_user("system:node:n1", ["system:nodes"], 60))
    assert node == authn.UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))
    assert a.authenticate("Bearer admin") is authn.ADMIN
    assert a.authenticate("") is authn.ANONYMOUS
    assert a.authenticate("Bearer nope") is None and a.authenticate("Basic x") is None
