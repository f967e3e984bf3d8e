"""An install manifest of the shape projects publish (our own, modelled on the kinds and fields
an ingress controller's bare-metal manifest uses) applies with the real kubectl, every object is
stored, and webhook configurations get kube-apiserver's validation."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.integration.test_endpoints import eventually

pytestmark = pytest.mark.usefixtures("server")


def manifest(ns: str, suffix: str) -> list[dict]:
    labels = {"app.kubernetes.io/name": "edge", "app.kubernetes.io/component": "controller"}
    rbac = "rbac.authorization.k8s.io/v1"
    job_spec = {"template": {"metadata": {"labels": labels}, "spec": {
        "restartPolicy": "OnFailure", "serviceAccountName": "edge-admission",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
        "containers": [{"name": "create", "image": "registry.example/certgen:v1",
                        "args": ["create", "--host=edge-admission", "--namespace=" + ns],
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}}]}}}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "edge", "namespace": ns}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "edge-admission", "namespace": ns}},
        {"apiVersion": rbac, "kind": "Role", "metadata": {"name": "edge", "namespace": ns},
         "rules": [{"apiGroups": [""], "resources": ["configmaps", "pods", "secrets", "endpoints"],
                    "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["edge-leader"],
                    "verbs": ["get", "update"]}]},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": "edge-" + suffix},
         "rules": [{"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingressclasses"],
                    "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["update"]}]},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": "edge", "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "edge"},
         "subjects": [{"kind": "ServiceAccount", "name": "edge", "namespace": ns}]},
        {"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": "edge-" + suffix},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edge-" + suffix},
         "subjects": [{"kind": "ServiceAccount", "name": "edge", "namespace": ns}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "edge", "namespace": ns},
         "data": {"allow-snippet-annotations": "false"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "edge", "namespace": ns},
         "spec": {"type": "NodePort", "selector": labels,
                  "ports": [{"name": "http", "port": 80, "targetPort": "http", "appProtocol": "http"},
                            {"name": "https", "port": 443, "targetPort": "https", "appProtocol": "https"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "edge", "namespace": ns},
         "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                  "spec": {"serviceAccountName": "edge", "containers": [{
                      "name": "controller", "image": "registry.example/edge:v1", "args": ["/edge", "--election-id=x"],
                      "ports": [{"name": "http", "containerPort": 80}, {"name": "https", "containerPort": 443}]}]}}}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "edge-create", "namespace": ns},
         "spec": {**job_spec, "ttlSecondsAfterFinished": 0}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "edge-" + suffix},
         "spec": {"controller": "example.com/edge"}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": "edge-" + suffix},
         "webhooks": [{"name": "validate.edge.example.com", "matchPolicy": "Equivalent",
                       "rules": [{"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"],
                                  "operations": ["CREATE", "UPDATE"], "resources": ["ingresses"]}],
                       "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                       "clientConfig": {"service": {"namespace": ns, "name": "edge-admission",
                                                    "path": "/networking/v1/ingresses"}}}]},
    ]


def test_an_install_manifest_applies_whole(server, ns):
    suffix = uuid.uuid4().hex[:6]
    doc = {"apiVersion": "v1", "kind": "List", "items": manifest(ns, suffix)}
    out = server.kubectl("apply", "-f", "-", input=json.dumps(doc)).stdout
    for line in ("serviceaccount/edge created", "role.rbac.authorization.k8s.io/edge created",
                 f"clusterrole.rbac.authorization.k8s.io/edge-{suffix} created",
                 "rolebinding.rbac.authorization.k8s.io/edge created",
                 f"clusterrolebinding.rbac.authorization.k8s.io/edge-{suffix} created",
                 "job.batch/edge-create created", f"ingressclass.networking.k8s.io/edge-{suffix} created",
                 f"validatingwebhookconfiguration.admissionregistration.k8s.io/edge-{suffix} created"):
        assert line in out, out
    hook = server.kubectl_json("get", "validatingwebhookconfiguration", "edge-" + suffix)["webhooks"][0]
    assert hook["timeoutSeconds"] == 10 and hook["namespaceSelector"] == {} and hook["objectSelector"] == {}
    assert hook["clientConfig"]["service"]["port"] == 443 and hook["rules"][0]["scope"] == "*"
    lines = server.kubectl("get", "validatingwebhookconfigurations", "edge-" + suffix).stdout.splitlines()
    assert lines[0].split() == ["NAME", "WEBHOOKS", "AGE"] and lines[1].split()[:2] == ["edge-" + suffix, "1"]
    again = server.kubectl("apply", "-f", "-", input=json.dumps(doc)).stdout
    assert "job.batch/edge-create unchanged" in again or "job.batch/edge-create configured" in again
    server.kubectl("delete", "-f", "-", input=json.dumps(doc))


def test_bad_webhook_configurations_get_the_real_errors(server):
    bad = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
           "metadata": {"name": "bad-" + uuid.uuid4().hex[:6]},
           "webhooks": [{"name": "short", "timeoutSeconds": 31, "admissionReviewVersions": [],
                         "rules": [{"operations": ["READ"], "apiGroups": ["*", "apps"], "apiVersions": ["v1"],
                                    "resources": ["deployments"]}],
                         "clientConfig": {"url": "http://example.invalid/x"}}]}
    cp = server.kubectl("create", "-f", "-", input=json.dumps(bad), check=False)
    assert cp.returncode != 0
    for text in ('webhooks[0].name: Invalid value: "short": should be a domain with at least three segments '
                 'separated by dots',
                 'webhooks[0].rules[0].operations[0]: Unsupported value: "READ"',
                 "webhooks[0].rules[0].apiGroups: Invalid value:",
                 "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun",
                 "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
                 "webhooks[0].clientConfig.url: Invalid value:",
                 "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1"):
        assert text in cp.stderr, (text, cp.stderr)


def test_quotas_limit_ranges_and_network_policies_are_stored_and_printed(server, ns):
    server.kubectl("create", "quota", "compute", "--hard=pods=10,requests.cpu=1,limits.memory=2Gi", "-n", ns)
    quota = server.kubectl_json("get", "quota", "compute", "-n", ns)
    assert quota["spec"]["hard"] == {"pods": "10", "requests.cpu": "1", "limits.memory": "2Gi"}
    assert server.kubectl("get", "resourcequotas", "-n", ns).stdout.splitlines()[0].split() == \
        ["NAME", "REQUEST", "LIMIT", "AGE"]
    limits = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults"},
              "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}}]}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(limits))
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"},
              "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                       "ingress": [{"ports": [{"port": 5432}]}]}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(policy))
    stored = server.kubectl_json("get", "netpol", "deny", "-n", ns)
    assert stored["spec"]["policyTypes"] == ["Ingress"]
    assert stored["spec"]["ingress"][0]["ports"][0]["protocol"] == "TCP"
    assert server.kubectl("get", "networkpolicies", "-n", ns).stdout.splitlines()[1].split()[:2] == ["deny", "app=db"]
    described = server.kubectl("describe", "ns", ns).stdout
    assert "Resource Quotas" in described and "Resource Limits" in described
    bad = {**limits, "metadata": {"name": "bad"}, "spec": {"limits": [{"type": "Node"}]}}
    cp = server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(bad), check=False)
    assert 'spec.limits[0].type: Unsupported value: "Node": supported values: "Container", "Pod", ' \
           '"PersistentVolumeClaim"' in cp.stderr


def metrics_manifest(ns: str, group: str) -> list[dict]:
    """Our own manifest of the shape metrics-server publishes: RBAC that aggregates into `view`,
    the auth-delegator and extension-apiserver-authentication-reader bindings, a Deployment and
    Service, and the APIService that registers its API."""
    rbac = "rbac.authorization.k8s.io/v1"
    sa = [{"kind": "ServiceAccount", "name": "metrics", "namespace": ns}]
    labels = {"k8s-app": "metrics"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "metrics", "namespace": ns}},
        {"apiVersion": rbac, "kind": "ClusterRole",
         "metadata": {"name": f"{ns}:aggregated-metrics-reader",
                      "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true",
                                 "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                                 "rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
         "rules": [{"apiGroups": [group], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": f"{ns}:metrics"},
         "rules": [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                   {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": rbac, "kind": "RoleBinding",
         "metadata": {"name": f"{ns}-auth-reader", "namespace": "kube-system"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "extension-apiserver-authentication-reader"}, "subjects": sa},
        {"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": f"{ns}:auth-delegator"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
         "subjects": sa},
        {"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": f"{ns}:metrics"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"{ns}:metrics"},
         "subjects": sa},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "metrics", "namespace": ns, "labels": labels},
         "spec": {"selector": labels, "ports": [{"name": "https", "port": 443, "targetPort": "https"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "metrics", "namespace": ns},
         "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
             "serviceAccountName": "metrics", "priorityClassName": "system-cluster-critical",
             "containers": [{"name": "metrics", "image": "registry.example/metrics:v1",
                             "args": ["--secure-port=10250", "--kubelet-preferred-address-types=InternalIP"],
                             "ports": [{"name": "https", "containerPort": 10250}]}]}}}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": f"v1beta1.{group}"},
         "spec": {"group": group, "version": "v1beta1", "insecureSkipTLSVerify": True, "groupPriorityMinimum": 100,
                  "versionPriority": 100, "service": {"name": "metrics", "namespace": ns}}},
    ]


def test_a_metrics_server_shaped_manifest_applies_and_its_rbac_works(server, ns):
    group = f"metrics-{ns}.example.com"
    docs = metrics_manifest(ns, group)
    cp = server.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    assert cp.stdout.count("created") == len(docs)
    try:
        who = ("--as", f"system:serviceaccount:{ns}:metrics")
        assert server.kubectl("auth", "can-i", "get", "nodes/metrics", *who).stdout.strip() == "yes"
        assert server.kubectl("auth", "can-i", "create", "subjectaccessreviews.authorization.k8s.io",
                              *who).stdout.strip() == "yes"
        assert server.kubectl("auth", "can-i", "get", "configmaps/extension-apiserver-authentication",
                              "-n", "kube-system", *who).stdout.strip() == "yes"
        assert server.kubectl("auth", "can-i", "delete", "pods", *who, check=False).stdout.strip() == "no"
        eventually(lambda: any(group in (r.get("apiGroups") or [])
                               for r in server.kubectl_json("get", "clusterrole", "view")["rules"]))
        line = server.kubectl("get", "apiservice", f"v1beta1.{group}").stdout.splitlines()[1].split()
        assert line[1:4] == [f"{ns}/metrics", "False", "(FailedDiscoveryCheck)"]
    finally:
        for kind, name in (("apiservice", f"v1beta1.{group}"), ("clusterrole", f"{ns}:aggregated-metrics-reader"),
                           ("clusterrole", f"{ns}:metrics"), ("clusterrolebinding", f"{ns}:auth-delegator"),
                           ("clusterrolebinding", f"{ns}:metrics")):
            server.kubectl("delete", kind, name, "--ignore-not-found")
        server.kubectl("delete", "rolebinding", f"{ns}-auth-reader", "-n", "kube-system", "--ignore-not-found")
