"""Admission webhooks, pure: which rules select a request, and how a refusal reads."""

from __future__ import annotations

import pytest

from pocketkube.apiserver import webhooks
from pocketkube.apiserver.kinds import registry

PODS = registry.by_resource("", "v1", "pods")
DEPLOYMENTS = registry.by_resource("apps", "v1", "deployments")
NODES = registry.by_resource("", "v1", "nodes")


def rule(resources, ops=("CREATE",), groups=("",), versions=("v1",), scope="*"):
    return {"operations": list(ops), "apiGroups": list(groups), "apiVersions": list(versions),
            "resources": list(resources), "scope": scope}


@pytest.mark.parametrize("r,info,sub,op,want", [
    (rule(["pods"]), PODS, "", "CREATE", True),
    (rule(["pods"]), PODS, "status", "CREATE", False),
    (rule(["pods/status"]), PODS, "status", "CREATE", True),
    (rule(["pods/*"]), PODS, "status", "CREATE", True),
    (rule(["*"]), PODS, "", "CREATE", True),
    (rule(["*"]), PODS, "status", "CREATE", False),
    (rule(["*/*"]), PODS, "status", "CREATE", True),
    (rule(["*/status"]), DEPLOYMENTS, "status", "CREATE", False),  # group "" only
    (rule(["*/status"], groups=["*"]), DEPLOYMENTS, "status", "CREATE", True),
    (rule(["pods"]), PODS, "", "DELETE", False),
    (rule(["pods"], ops=["*"]), PODS, "", "DELETE", True),
    (rule(["*"], scope="Namespaced"), NODES, "", "CREATE", False),
    (rule(["*"], scope="Cluster"), NODES, "", "CREATE", True),
    (rule(["pods"], versions=["v2"]), PODS, "", "CREATE", False),
])
def test_rule_matching(r, info, sub, op, want):
    assert webhooks._rule_matches(r, op, info, sub) is want


def test_refusals_read_as_upstreams():
    e = webhooks._denied("deny.example.com", {"code": 422, "message": "no"})
    assert (e.code, e.message) == (422, 'admission webhook "deny.example.com" denied the request: no')
    e = webhooks._denied("w", None)
    assert (e.code, e.message) == (400, 'admission webhook "w" denied the request without explanation')
    e = webhooks._denied("w", {"code": 200, "reason": "NotAllowed"})
    assert (e.code, e.reason, e.message) == (400, "NotAllowed", 'admission webhook "w" denied the request: NotAllowed')
