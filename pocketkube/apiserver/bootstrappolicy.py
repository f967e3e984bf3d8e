"""The RBAC objects every cluster starts with, and their reconciliation at start.

Our own data, written after reading Kubernetes' bootstrap policy (plugin/pkg/auth/authorizer/
rbac/bootstrappolicy: policy.go, controller_policy.go, namespace_policy.go) for a 1.32
cluster: the user-facing roles (cluster-admin, admin, edit, view and the aggregate-to-* parts
the aggregation controller folds into the last three), the discovery and self-review roles,
the roles of the node, kube-proxy, the scheduler, the controller manager and of each
controller (`system:controller:NAME`, bound to the ServiceAccount kube-system/NAME that
controller runs as), and the bindings that give them.

One pocketkube addition, named `system:pocketkube:lb-speaker`: its node agent also announces
load-balancer addresses (MetalLB's speaker does that upstream, with a role of its own). And one
difference: `system:node` is bound to the `system:nodes` group, as there is no Node authorizer.

`reconcile(storage)` runs at every start, as kube-apiserver's RBAC post-start hook does:
missing objects are created; existing ones whose `rbac.authorization.kubernetes.io/autoupdate`
annotation is not "false" get back the rules, subjects, labels and annotations they lack
(what users added is kept).
"""

from __future__ import annotations

import logging

from pocketkube.core import errors

log = logging.getLogger(__name__)

GROUP = "rbac.authorization.k8s.io"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
CONTROLLER_PREFIX = "system:controller:"

READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete", "deletecollection")
READ_WRITE = READ + WRITE

CORE, APPS, AUTHN, AUTHZ, AUTOSCALING, BATCH = "", "apps", "authentication.k8s.io", "authorization.k8s.io", \
    "autoscaling", "batch"
COORD, DISCOVERY, EXT, POLICY, NETWORKING, EVENTS = "coordination.k8s.io", "discovery.k8s.io", "extensions", \
    "policy", "networking.k8s.io", "events.k8s.io"
STORAGE, CERTS, ADMISSION = "storage.k8s.io", "certificates.k8s.io", "admissionregistration.k8s.io"


def rule(verbs, groups, resources, names=()) -> dict:
    out = {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}
    if names:
        out["resourceNames"] = list(names)
    return out


def urls(verbs, paths) -> dict:
    return {"verbs": list(verbs), "nonResourceURLs": list(paths)}


EVENTS_RULE = rule(("create", "update", "patch"), (CORE, EVENTS), ("events",))


def _aggregated(name: str, selector_label: str, labels: dict | None = None) -> dict:
    return {"name": name, "labels": labels or {},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {selector_label: "true"}}]}}


def _role(name: str, rules: list[dict], labels: dict | None = None) -> dict:
    return {"name": name, "rules": rules, "labels": labels or {}}


_AGG = "rbac.authorization.k8s.io/aggregate-to-"

NODE_RULES = [
    rule(("create",), (AUTHN,), ("tokenreviews",)),
    rule(("create",), (AUTHZ,), ("subjectaccessreviews", "localsubjectaccessreviews")),
    rule(READ, (CORE,), ("services",)),
    rule(("create", "get", "list", "watch"), (CORE,), ("nodes",)),
    rule(("update", "patch"), (CORE,), ("nodes/status",)),
    rule(("update", "patch"), (CORE,), ("nodes",)),
    rule(("create", "update", "patch"), (CORE,), ("events",)),
    rule(READ, (CORE,), ("pods",)),
    rule(("create", "delete"), (CORE,), ("pods",)),
    rule(("update", "patch"), (CORE,), ("pods/status",)),
    rule(("create",), (CORE,), ("pods/eviction",)),
    rule(READ, (CORE,), ("secrets", "configmaps")),
    rule(("get",), (CORE,), ("persistentvolumeclaims", "persistentvolumes")),
    rule(("get",), (CORE,), ("endpoints",)),
    rule(("create", "get", "list", "watch"), (CERTS,), ("certificatesigningrequests",)),
    rule(("get", "create", "update", "patch", "delete"), (COORD,), ("leases",)),
    rule(("get",), (STORAGE,), ("volumeattachments",)),
    rule(("create",), (CORE,), ("serviceaccounts/token",)),
    rule(("get", "update", "patch"), (CORE,), ("persistentvolumeclaims/status",)),
    rule(("get", "watch", "list"), (STORAGE,), ("csidrivers",)),
    rule(("get", "create", "update", "patch", "delete"), (STORAGE,), ("csinodes",)),
    rule(READ, ("node.k8s.io",), ("runtimeclasses",)),
]

CLUSTER_ROLES: list[dict] = [
    _role("cluster-admin", [rule(("*",), ("*",), ("*",)), urls(("*",), ("*",))]),
    _role("system:discovery", [urls(("get",), ("/livez", "/readyz", "/healthz", "/version", "/version/",
                                               "/openapi", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*"))]),
    _role("system:monitoring", [urls(("get",), ("/metrics", "/metrics/slis", "/livez", "/readyz", "/healthz",
                                                "/livez/*", "/readyz/*", "/healthz/*"))]),
    _role("system:basic-user", [rule(("create",), (AUTHZ,), ("selfsubjectaccessreviews", "selfsubjectrulesreviews")),
                                rule(("create",), (AUTHN,), ("selfsubjectreviews",))]),
    _role("system:public-info-viewer", [urls(("get",), ("/livez", "/readyz", "/healthz", "/version", "/version/"))]),
    _aggregated("admin", _AGG + "admin"),
    _aggregated("edit", _AGG + "edit", {_AGG + "admin": "true"}),
    _aggregated("view", _AGG + "view", {_AGG + "edit": "true"}),
    _role("system:aggregate-to-admin", [
        rule(("create",), (AUTHZ,), ("localsubjectaccessreviews",)),
        rule(READ_WRITE, (GROUP,), ("roles", "rolebindings")),
    ], {_AGG + "admin": "true"}),
    _role("system:aggregate-to-edit", [
        rule(READ, (CORE,), ("pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets",
                             "services/proxy")),
        rule(("impersonate",), (CORE,), ("serviceaccounts",)),
        rule(WRITE, (CORE,), ("pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward")),
        rule(("create",), (CORE,), ("pods/eviction",)),
        rule(WRITE, (CORE,), ("replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts",
                              "services", "services/proxy", "persistentvolumeclaims", "configmaps", "secrets",
                              "events")),
        rule(("create",), (CORE,), ("serviceaccounts/token",)),
        rule(WRITE, (APPS,), ("statefulsets", "statefulsets/scale", "daemonsets", "deployments",
                              "deployments/scale", "deployments/rollback", "replicasets", "replicasets/scale")),
        rule(WRITE, (AUTOSCALING,), ("horizontalpodautoscalers",)),
        rule(WRITE, (BATCH,), ("jobs", "cronjobs")),
        rule(WRITE, (EXT,), ("daemonsets", "deployments", "deployments/scale", "deployments/rollback",
                             "ingresses", "replicasets", "replicasets/scale", "replicationcontrollers/scale",
                             "networkpolicies")),
        rule(WRITE, (POLICY,), ("poddisruptionbudgets",)),
        rule(WRITE, (NETWORKING,), ("networkpolicies", "ingresses")),
        rule(WRITE, (COORD,), ("leases",)),
    ], {_AGG + "edit": "true"}),
    _role("system:aggregate-to-view", [
        rule(READ, (CORE,), ("pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts",
                             "services", "services/status", "endpoints", "persistentvolumeclaims",
                             "persistentvolumeclaims/status", "configmaps")),
        rule(READ, (CORE,), ("limitranges", "resourcequotas", "bindings", "events", "pods/status",
                             "resourcequotas/status", "namespaces/status", "replicationcontrollers/status",
                             "pods/log")),
        rule(READ, (CORE,), ("namespaces",)),
        rule(READ, (DISCOVERY,), ("endpointslices",)),
        rule(READ, (APPS,), ("controllerrevisions", "statefulsets", "statefulsets/status", "statefulsets/scale",
                             "daemonsets", "daemonsets/status", "deployments", "deployments/status",
                             "deployments/scale", "replicasets", "replicasets/status", "replicasets/scale")),
        rule(READ, (AUTOSCALING,), ("horizontalpodautoscalers", "horizontalpodautoscalers/status")),
        rule(READ, (BATCH,), ("jobs", "cronjobs", "cronjobs/status", "jobs/status")),
        rule(READ, (EXT,), ("daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                            "deployments/status", "ingresses", "ingresses/status", "replicasets",
                            "replicasets/scale", "replicasets/status", "replicationcontrollers/scale",
                            "networkpolicies")),
        rule(READ, (POLICY,), ("poddisruptionbudgets", "poddisruptionbudgets/status")),
        rule(READ, (NETWORKING,), ("networkpolicies", "ingresses", "ingresses/status")),
        rule(READ, (COORD,), ("leases",)),
    ], {_AGG + "view": "true"}),
    _role("system:heapster", [rule(READ, (CORE,), ("events", "pods", "nodes", "namespaces")),
                              rule(READ, (EXT,), ("deployments",))]),
    _role("system:node", NODE_RULES),
    _role("system:node-problem-detector", [rule(("get",), (CORE,), ("nodes",)),
                                           rule(("patch",), (CORE,), ("nodes/status",)), EVENTS_RULE]),
    _role("system:kubelet-api-admin", [
        rule(READ, (CORE,), ("nodes",)), rule(("proxy",), (CORE,), ("nodes",)),
        rule(("*",), (CORE,), ("nodes/proxy", "nodes/metrics", "nodes/spec", "nodes/stats", "nodes/log"))]),
    _role("system:node-bootstrapper", [rule(("create", "get", "list", "watch"), (CERTS,),
                                            ("certificatesigningrequests",))]),
    _role("system:auth-delegator", [rule(("create",), (AUTHN,), ("tokenreviews",)),
                                    rule(("create",), (AUTHZ,), ("subjectaccessreviews",))]),
    _role("system:kube-aggregator", [rule(READ, (CORE,), ("services", "endpoints"))]),
    _role("system:kube-controller-manager", [
        EVENTS_RULE,
        rule(("create",), (COORD,), ("leases",)),
        rule(("get", "update"), (COORD,), ("leases",), ("kube-controller-manager",)),
        rule(("create",), (CORE,), ("secrets", "serviceaccounts")),
        rule(("delete",), (CORE,), ("secrets",)),
        rule(("get",), (CORE,), ("namespaces", "secrets", "serviceaccounts", "configmaps")),
        rule(("update",), (CORE,), ("secrets", "serviceaccounts")),
        rule(("create",), (AUTHN,), ("tokenreviews",)),
        rule(("create",), (AUTHZ,), ("subjectaccessreviews",)),
        rule(("list", "watch"), ("*",), ("*",)),
        rule(("create",), (CORE,), ("serviceaccounts/token",)),
    ]),
    _role("system:kube-dns", [rule(("list", "watch"), (CORE,), ("endpoints", "services"))]),
    _role("system:persistent-volume-provisioner", [
        rule(("get", "list", "watch", "create", "delete"), (CORE,), ("persistentvolumes",)),
        rule(("get", "list", "watch", "update"), (CORE,), ("persistentvolumeclaims",)),
        rule(READ, (STORAGE,), ("storageclasses",)),
        rule(("watch",), (CORE,), ("events",)), EVENTS_RULE]),
    _role("system:volume-scheduler", [rule(READ + ("update", "patch"), (CORE,), ("persistentvolumes",)),
                                      rule(READ, (STORAGE,), ("storageclasses",)),
                                      rule(READ + ("update", "patch"), (CORE,), ("persistentvolumeclaims",))]),
    _role("system:certificates.k8s.io:certificatesigningrequests:nodeclient", [
        rule(("create",), (CERTS,), ("certificatesigningrequests/nodeclient",))]),
    _role("system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", [
        rule(("create",), (CERTS,), ("certificatesigningrequests/selfnodeclient",))]),
    _role("system:service-account-issuer-discovery", [urls(("get",), ("/.well-known/openid-configuration",
                                                                      "/.well-known/openid-configuration/",
                                                                      "/openid/v1/jwks", "/openid/v1/jwks/"))]),
    _role("system:node-proxier", [
        rule(("list", "watch"), (CORE,), ("services", "endpoints")),
        rule(READ, (CORE,), ("nodes",)),
        EVENTS_RULE,
        rule(("list", "watch"), (DISCOVERY,), ("endpointslices",)),
    ]),
    _role("system:kube-scheduler", [
        EVENTS_RULE,
        rule(("create",), (COORD,), ("leases",)),
        rule(("get", "update"), (COORD,), ("leases",), ("kube-scheduler",)),
        rule(READ, (CORE,), ("nodes",)),
        rule(("get", "list", "watch", "delete"), (CORE,), ("pods",)),
        rule(("create",), (CORE,), ("pods/binding", "bindings")),
        rule(("patch", "update"), (CORE,), ("pods/status",)),
        rule(READ, (CORE,), ("services", "replicationcontrollers")),
        rule(READ, (APPS, EXT), ("replicasets",)),
        rule(READ, (APPS,), ("statefulsets",)),
        rule(READ, (POLICY,), ("poddisruptionbudgets",)),
        rule(READ, (CORE,), ("persistentvolumeclaims", "persistentvolumes")),
        rule(("create",), (AUTHN,), ("tokenreviews",)),
        rule(("create",), (AUTHZ,), ("subjectaccessreviews",)),
        rule(READ, (STORAGE,), ("csinodes", "csidrivers", "csistoragecapacities")),
        rule(READ, (CORE,), ("namespaces",)),
        rule(READ, ("resource.k8s.io",), ("*",)),
    ]),
    # pocketkube: the node agent announces LoadBalancer addresses on the node network, as
    # MetalLB's speaker does (whose ClusterRole grants the same reads).
    _role("system:pocketkube:lb-speaker", [
        rule(READ, (CORE,), ("services", "endpoints", "nodes")),
        rule(READ, (DISCOVERY,), ("endpointslices",)),
        EVENTS_RULE,
    ]),
]

# controller name -> its rules; bound to ServiceAccount kube-system/<name>.
CONTROLLER_ROLES: dict[str, list[dict]] = {
    "clusterrole-aggregation-controller": [
        rule(("escalate", "get", "list", "watch", "update", "patch"), (GROUP,), ("clusterroles",))],
    "cronjob-controller": [
        rule(("get", "list", "watch", "update"), (BATCH,), ("cronjobs",)),
        rule(("get", "list", "watch", "create", "update", "delete", "patch"), (BATCH,), ("jobs",)),
        rule(("update",), (BATCH,), ("cronjobs/status",)),
        rule(("update",), (BATCH,), ("cronjobs/finalizers",)),
        rule(("list", "delete"), (CORE,), ("pods",)),
        EVENTS_RULE],
    "daemon-set-controller": [
        rule(READ, (EXT, APPS), ("daemonsets",)),
        rule(("update",), (EXT, APPS), ("daemonsets/status",)),
        rule(("update",), (EXT, APPS), ("daemonsets/finalizers",)),
        rule(("list", "watch"), (CORE,), ("nodes",)),
        rule(("list", "watch", "create", "delete", "patch"), (CORE,), ("pods",)),
        rule(("create",), (CORE,), ("pods/binding",)),
        rule(("get", "list", "watch", "create", "delete", "update", "patch"), (APPS,), ("controllerrevisions",)),
        EVENTS_RULE],
    "deployment-controller": [
        rule(("get", "list", "watch", "update"), (EXT, APPS), ("deployments",)),
        rule(("update",), (EXT, APPS), ("deployments/status",)),
        rule(("update",), (EXT, APPS), ("deployments/finalizers",)),
        rule(("get", "list", "watch", "create", "update", "patch", "delete"), (APPS, EXT), ("replicasets",)),
        rule(("get", "list", "watch", "update"), (CORE,), ("pods",)),
        EVENTS_RULE],
    "disruption-controller": [
        rule(READ, (EXT, APPS), ("deployments",)),
        rule(READ, (APPS, EXT), ("replicasets",)),
        rule(READ, (CORE,), ("replicationcontrollers",)),
        rule(READ, (POLICY,), ("poddisruptionbudgets",)),
        rule(READ, (APPS,), ("statefulsets",)),
        rule(("update",), (POLICY,), ("poddisruptionbudgets/status",)),
        rule(("get",), ("*",), ("*/scale",)),
        EVENTS_RULE],
    "endpoint-controller": [
        rule(READ, (CORE,), ("services", "pods")),
        rule(("get", "list", "create", "update", "delete"), (CORE,), ("endpoints",)),
        rule(("create",), (CORE,), ("endpoints/restricted",)),
        EVENTS_RULE],
    "endpointslice-controller": [
        rule(READ, (CORE,), ("services", "pods", "nodes")),
        rule(("update",), (CORE,), ("services/finalizers",)),
        rule(("get", "list", "create", "update", "delete"), (DISCOVERY,), ("endpointslices",)),
        EVENTS_RULE],
    "endpointslicemirroring-controller": [
        rule(READ, (CORE,), ("services", "endpoints")),
        rule(("update",), (CORE,), ("services/finalizers",)),
        rule(("update",), (CORE,), ("endpoints/finalizers",)),
        rule(("get", "list", "create", "update", "delete"), (DISCOVERY,), ("endpointslices",)),
        EVENTS_RULE],
    "generic-garbage-collector": [
        rule(("get", "list", "watch", "patch", "update", "delete"), ("*",), ("*",)), EVENTS_RULE],
    "horizontal-pod-autoscaler": [
        rule(READ, (AUTOSCALING,), ("horizontalpodautoscalers",)),
        rule(("update",), (AUTOSCALING,), ("horizontalpodautoscalers/status",)),
        rule(("get", "update"), ("*",), ("*/scale",)),
        rule(("list",), (CORE,), ("pods",)),
        rule(("list",), ("metrics.k8s.io",), ("pods",)),
        rule(("get", "list"), ("custom.metrics.k8s.io",), ("*",)),
        rule(("get", "list"), ("external.metrics.k8s.io",), ("*",)),
        EVENTS_RULE],
    "job-controller": [
        rule(("get", "list", "watch", "update", "patch"), (BATCH,), ("jobs",)),
        rule(("update", "patch"), (BATCH,), ("jobs/status",)),
        rule(("update",), (BATCH,), ("jobs/finalizers",)),
        rule(("list", "watch", "create", "delete", "patch"), (CORE,), ("pods",)),
        EVENTS_RULE],
    "namespace-controller": [
        rule(("get", "list", "watch", "delete"), (CORE,), ("namespaces",)),
        rule(("update",), (CORE,), ("namespaces/finalize", "namespaces/status")),
        rule(("get", "list", "delete", "deletecollection"), ("*",), ("*",))],
    # also the taint eviction controller's: "taint-manager uses existing cluster role from node-controller"
    "node-controller": [
        rule(("get", "list", "update", "delete", "patch", "watch"), (CORE,), ("nodes",)),
        rule(("patch", "update"), (CORE,), ("nodes/status",)),
        rule(("patch", "update"), (CORE,), ("pods/status",)),
        rule(("delete", "get", "list", "watch"), (CORE,), ("pods",)),
        EVENTS_RULE],
    "pod-garbage-collector": [
        rule(("list", "watch", "delete"), (CORE,), ("pods",)),
        rule(("get", "list"), (CORE,), ("nodes",)),
        rule(("patch",), (CORE,), ("pods/status",))],
    "replicaset-controller": [
        rule(("get", "list", "watch", "update"), (APPS, EXT), ("replicasets",)),
        rule(("update",), (APPS, EXT), ("replicasets/status",)),
        rule(("update",), (APPS, EXT), ("replicasets/finalizers",)),
        rule(("list", "watch", "patch", "create", "delete"), (CORE,), ("pods",)),
        EVENTS_RULE],
    "replication-controller": [
        rule(("get", "list", "watch", "update"), (CORE,), ("replicationcontrollers",)),
        rule(("update",), (CORE,), ("replicationcontrollers/status",)),
        rule(("update",), (CORE,), ("replicationcontrollers/finalizers",)),
        rule(("list", "watch", "patch", "create", "delete"), (CORE,), ("pods",)),
        EVENTS_RULE],
    "resourcequota-controller": [
        rule(("list", "watch"), ("*",), ("*",)),
        rule(("update",), (CORE,), ("resourcequotas/status",)),
        EVENTS_RULE],
    "route-controller": [
        rule(("list", "watch"), (CORE,), ("nodes",)),
        rule(("patch",), (CORE,), ("nodes/status",)),
        EVENTS_RULE],
    "service-account-controller": [
        rule(("create",), (CORE,), ("serviceaccounts",)), EVENTS_RULE],
    "service-controller": [
        rule(READ, (CORE,), ("services",)),
        rule(("patch", "update"), (CORE,), ("services/status",)),
        rule(("list", "watch"), (CORE,), ("nodes",)),
        EVENTS_RULE],
    "statefulset-controller": [
        rule(("list", "watch"), (CORE,), ("pods",)),
        rule(READ, (APPS,), ("statefulsets",)),
        rule(("update",), (APPS,), ("statefulsets/status",)),
        rule(("update",), (APPS,), ("statefulsets/finalizers",)),
        rule(("get", "create", "delete", "update", "patch"), (CORE,), ("pods",)),
        rule(("get", "create", "delete", "update", "patch", "list", "watch"), (APPS,), ("controllerrevisions",)),
        rule(("get", "create"), (CORE,), ("persistentvolumeclaims",)),
        rule(("update", "delete"), (CORE,), ("persistentvolumeclaims",)),
        EVENTS_RULE],
    "ttl-controller": [
        rule(("update", "patch", "list", "watch"), (CORE,), ("nodes",)), EVENTS_RULE],
    "ttl-after-finished-controller": [
        rule(("get", "list", "watch", "delete"), (BATCH,), ("jobs",)), EVENTS_RULE],
    "certificate-controller": [
        rule(("delete", "get", "list", "watch"), (CERTS,), ("certificatesigningrequests",)),
        rule(("update",), (CERTS,), ("certificatesigningrequests/approval", "certificatesigningrequests/status")),
        rule(("approve", "sign"), (CERTS,), ("signers",), ("kubernetes.io/kube-apiserver-client-kubelet",)),
        rule(("create",), (AUTHZ,), ("subjectaccessreviews",)), EVENTS_RULE],
    "root-ca-cert-publisher": [
        rule(("create", "update"), (CORE,), ("configmaps",)), EVENTS_RULE],
    "ephemeral-volume-controller": [
        rule(READ, (CORE,), ("pods",)),
        rule(("update",), (CORE,), ("pods/finalizers",)),
        rule(("get", "list", "watch", "create"), (CORE,), ("persistentvolumeclaims",)),
        EVENTS_RULE],
    "pvc-protection-controller": [
        rule(("get", "list", "watch", "update"), (CORE,), ("persistentvolumeclaims",)),
        rule(("list", "watch", "get"), (CORE,), ("pods",)),
        EVENTS_RULE],
    "pv-protection-controller": [
        rule(("get", "list", "watch", "update"), (CORE,), ("persistentvolumes",)), EVENTS_RULE],
    "legacy-service-account-token-cleaner": [
        rule(("get",), (CORE,), ("configmaps",), ("kube-apiserver-legacy-service-account-token-tracking",)),
        rule(("patch", "delete"), (CORE,), ("secrets",)),
        EVENTS_RULE],
    "validatingadmissionpolicy-status-controller": [
        rule(("get", "list", "watch"), (ADMISSION,), ("validatingadmissionpolicies",)),
        rule(("get", "patch", "update"), (ADMISSION,), ("validatingadmissionpolicies/status",)),
        EVENTS_RULE],
}


def _cluster_binding(name: str, role: str, subjects: list[dict]) -> dict:
    return {"name": name, "role": role, "subjects": subjects}


def group(name: str) -> dict:
    return {"kind": "Group", "apiGroup": GROUP, "name": name}


def user(name: str) -> dict:
    return {"kind": "User", "apiGroup": GROUP, "name": name}


def service_account(namespace: str, name: str) -> dict:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


CLUSTER_ROLE_BINDINGS: list[dict] = [
    _cluster_binding("cluster-admin", "cluster-admin", [group("system:masters")]),
    _cluster_binding("system:monitoring", "system:monitoring", [group("system:monitoring")]),
    _cluster_binding("system:discovery", "system:discovery", [group("system:authenticated")]),
    _cluster_binding("system:basic-user", "system:basic-user", [group("system:authenticated")]),
    _cluster_binding("system:public-info-viewer", "system:public-info-viewer",
                     [group("system:authenticated"), group("system:unauthenticated")]),
    _cluster_binding("system:node-proxier", "system:node-proxier", [user("system:kube-proxy")]),
    _cluster_binding("system:kube-controller-manager", "system:kube-controller-manager",
                     [user("system:kube-controller-manager")]),
    _cluster_binding("system:kube-dns", "system:kube-dns", [service_account("kube-system", "kube-dns")]),
    _cluster_binding("system:kube-scheduler", "system:kube-scheduler", [user("system:kube-scheduler")]),
    _cluster_binding("system:volume-scheduler", "system:volume-scheduler", [user("system:kube-scheduler")]),
    # Upstream leaves this binding without subjects and lets the Node authorizer authorize
    # nodes; pocketkube has no Node authorizer, so the nodes group holds the role (any node
    # may then read any pod's secrets, as before Kubernetes 1.7).
    _cluster_binding("system:node", "system:node", [group("system:nodes")]),
    _cluster_binding("system:service-account-issuer-discovery", "system:service-account-issuer-discovery",
                     [group("system:serviceaccounts")]),
    _cluster_binding("system:pocketkube:lb-speaker", "system:pocketkube:lb-speaker", [group("system:nodes")]),
]

# namespace -> Roles and RoleBindings (namespace_policy.go)
NAMESPACED_ROLES: dict[str, list[dict]] = {
    "kube-system": [
        _role("extension-apiserver-authentication-reader", [
            rule(("get", "list", "watch"), (CORE,), ("configmaps",), ("extension-apiserver-authentication",))]),
        _role("system::leader-locking-kube-controller-manager", [
            rule(("watch",), (CORE,), ("configmaps",)),
            rule(("get", "update"), (CORE,), ("configmaps",), ("kube-controller-manager",))]),
        _role("system::leader-locking-kube-scheduler", [
            rule(("watch",), (CORE,), ("configmaps",)),
            rule(("get", "update"), (CORE,), ("configmaps",), ("kube-scheduler",))]),
        _role("system:controller:bootstrap-signer", [rule(READ, (CORE,), ("secrets",))]),
        _role("system:controller:cloud-provider", [rule(("create", "get", "list", "watch"), (CORE,),
                                                        ("configmaps",))]),
        _role("system:controller:token-cleaner", [rule(("delete",) + READ, (CORE,), ("secrets",)), EVENTS_RULE]),
    ],
    "kube-public": [
        _role("system:controller:bootstrap-signer", [
            rule(READ, (CORE,), ("configmaps",)),
            rule(("update",), (CORE,), ("configmaps",), ("cluster-info",)), EVENTS_RULE]),
    ],
}
NAMESPACED_ROLE_BINDINGS: dict[str, list[dict]] = {
    "kube-system": [
        {"name": "system::extension-apiserver-authentication-reader",
         "role": "extension-apiserver-authentication-reader",
         "subjects": [user("system:kube-controller-manager"), user("system:kube-scheduler")]},
        {"name": "system::leader-locking-kube-controller-manager",
         "role": "system::leader-locking-kube-controller-manager",
         "subjects": [user("system:kube-controller-manager"),
                      service_account("kube-system", "kube-controller-manager")]},
        {"name": "system::leader-locking-kube-scheduler", "role": "system::leader-locking-kube-scheduler",
         "subjects": [user("system:kube-scheduler"), service_account("kube-system", "kube-scheduler")]},
        {"name": "system:controller:bootstrap-signer", "role": "system:controller:bootstrap-signer",
         "subjects": [service_account("kube-system", "bootstrap-signer")]},
        {"name": "system:controller:cloud-provider", "role": "system:controller:cloud-provider",
         "subjects": [service_account("kube-system", "cloud-provider")]},
        {"name": "system:controller:token-cleaner", "role": "system:controller:token-cleaner",
         "subjects": [service_account("kube-system", "token-cleaner")]},
    ],
    "kube-public": [
        {"name": "system:controller:bootstrap-signer", "role": "system:controller:bootstrap-signer",
         "subjects": [service_account("kube-system", "bootstrap-signer")]},
    ],
}


def _metadata(name: str, labels: dict, namespace: str = "") -> dict:
    m = {"name": name, "labels": {**LABELS, **labels}, "annotations": {AUTOUPDATE: "true"}}
    if namespace:
        m["namespace"] = namespace
    return m


def cluster_role_objects() -> list[dict]:
    out = []
    for r in CLUSTER_ROLES:
        obj = {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole", "metadata": _metadata(r["name"], r["labels"])}
        if "aggregationRule" in r:
            obj["aggregationRule"] = r["aggregationRule"]
            obj["rules"] = None
        else:
            obj["rules"] = r["rules"]
        out.append(obj)
    for name, rules in CONTROLLER_ROLES.items():
        out.append({"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole",
                    "metadata": _metadata(CONTROLLER_PREFIX + name, {}), "rules": rules})
    return out


def cluster_role_binding_objects() -> list[dict]:
    out = []
    bindings = CLUSTER_ROLE_BINDINGS + [
        _cluster_binding(CONTROLLER_PREFIX + name, CONTROLLER_PREFIX + name, [service_account("kube-system", name)])
        for name in CONTROLLER_ROLES]
    for b in bindings:
        out.append({"apiVersion": f"{GROUP}/v1", "kind": "ClusterRoleBinding", "metadata": _metadata(b["name"], {}),
                    "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": b["role"]},
                    "subjects": b["subjects"]})
    return out


def role_objects() -> list[dict]:
    return [{"apiVersion": f"{GROUP}/v1", "kind": "Role", "metadata": _metadata(r["name"], r["labels"], ns),
             "rules": r["rules"]} for ns, roles in NAMESPACED_ROLES.items() for r in roles]


def role_binding_objects() -> list[dict]:
    return [{"apiVersion": f"{GROUP}/v1", "kind": "RoleBinding", "metadata": _metadata(b["name"], {}, ns),
             "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": b["role"]}, "subjects": b["subjects"]}
            for ns, bindings in NAMESPACED_ROLE_BINDINGS.items() for b in bindings]


def _reconciled(existing: dict, wanted: dict) -> dict | None:
    """The existing object with what `wanted` adds (rules, subjects, labels, annotations), or
    None when nothing is missing or the object opted out of auto-update."""
    m = existing.get("metadata") or {}
    if (m.get("annotations") or {}).get(AUTOUPDATE) == "false":
        return None
    new = {**existing, "metadata": {**m}}
    changed = False
    for key in ("labels", "annotations"):
        merged = {**(m.get(key) or {})}
        for k, v in wanted["metadata"].get(key, {}).items():
            if k not in merged:
                merged[k] = v
                changed = True
        new["metadata"][key] = merged
    if "aggregationRule" in wanted:
        have = (existing.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
        missing = [s for s in wanted["aggregationRule"]["clusterRoleSelectors"] if s not in have]
        if missing:
            new["aggregationRule"] = {"clusterRoleSelectors": have + missing}
            changed = True
    for key in ("rules", "subjects"):
        if wanted.get(key):
            have = existing.get(key) or []
            missing = [x for x in wanted[key] if x not in have]
            if missing:
                new[key] = have + missing
                changed = True
    return new if changed else None


async def reconcile(storage, registry, write_options) -> None:
    """Create the missing bootstrap objects; add back what the existing ones lack."""
    work = [("clusterroles", cluster_role_objects()), ("clusterrolebindings", cluster_role_binding_objects()),
            ("roles", role_objects()), ("rolebindings", role_binding_objects())]
    for resource, objects in work:
        info = registry.by_resource(GROUP, "v1", resource)
        for obj in objects:
            m = obj["metadata"]
            ns = m.get("namespace", "")
            try:
                existing = await storage.get(info, ns, m["name"])
            except errors.APIError as exc:
                if exc.code != 404:
                    raise
                try:
                    await storage.create(info, ns, obj, write_options)
                except errors.APIError as exc2:
                    if exc2.code != 409:
                        log.warning("bootstrap %s %s: %s", resource, m["name"], exc2.message)
                continue
            new = _reconciled(existing, obj)
            if new is not None:
                try:
                    await storage.update(info, ns, m["name"], new, write_options)
                except errors.APIError as exc:
                    log.warning("reconciling %s %s: %s", resource, m["name"], exc.message)
