"""Per-kind defaults, validation and write strategy against what a real 1.32 cluster stores and says."""

import copy

import pytest

from pocketkube.apiserver.kinds import registry
from pocketkube.core.errors import invalid

LABEL_1123 = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
              "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
              "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
LABEL_1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
              "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
              "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")


def kind(group, k):
    info = registry.by_kind(group, "v1", k)
    assert info is not None
    return info


def create(group, k, obj):
    """default -> prepare_for_create -> validate, as the API server runs them."""
    info = kind(group, k)
    obj = copy.deepcopy(obj)
    obj.setdefault("metadata", {})
    info.strategy.default(obj)
    info.strategy.prepare_for_create(obj)
    return obj, info.strategy.validate(obj)


def update(group, k, new, old):
    info = kind(group, k)
    new = copy.deepcopy(new)
    info.strategy.default(new)
    info.strategy.prepare_for_update(new, old)
    return new, info.strategy.validate_update(new, old)


def message(group, k, name, errors):
    return invalid(k, group, name, errors).message


def service(name="web", **spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def deployment(name="web", **spec):
    base = {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}
    base.update(spec)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"}, "spec": base}


# ------------------------------------------------------------------ registry


def test_registry_lookups_and_discovery_facts():
    assert registry.by_resource("", "v1", "services").short_names == ("svc",)
    assert registry.by_resource("apps", "v1", "deployments").subresources == ("status", "scale")
    assert registry.by_kind("autoscaling", "v1", "Scale").verbs == ("get", "patch", "update")
    assert "deletecollection" not in registry.by_resource("", "v1", "namespaces").verbs
    assert registry.by_resource("", "v1", "pods").categories == ("all",)
    assert registry.by_resource("networking.k8s.io", "v1", "ingressclasses").namespaced is False
    assert registry.by_resource("apps", "v1", "nope") is None
    assert [g for g, _ in registry.groups()] == ["", "apiregistration.k8s.io", "apps", "events.k8s.io",
                                                  "authentication.k8s.io",
                                                  "authorization.k8s.io", "autoscaling", "batch",
                                                  "certificates.k8s.io", "networking.k8s.io", "policy", "rbac.authorization.k8s.io",
                                                  "admissionregistration.k8s.io", "apiextensions.k8s.io",
                                                  "scheduling.k8s.io", "coordination.k8s.io", "discovery.k8s.io"]
    assert dict(registry.groups())["autoscaling"] == ["v2", "v1"]


# ------------------------------------------------------------------ defaults


def test_service_from_kubectl_expose_is_stored_as_a_real_cluster_stores_it():
    sent = service(ports=[{"port": 80, "protocol": "TCP", "targetPort": 8080}], selector={"app": "web"})
    sent["metadata"]["labels"] = {"app": "web"}
    stored, errors = create("", "Service", sent)
    assert errors == []
    assert stored["spec"] == {
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
        "selector": {"app": "web"},
        "sessionAffinity": "None",
        "type": "ClusterIP",
        "internalTrafficPolicy": "Cluster",
        "ipFamilyPolicy": "SingleStack",
        "ipFamilies": ["IPv4"],
    }
    assert stored["status"] == {"loadBalancer": {}}
    assert "generation" not in stored["metadata"]


def test_headless_service_from_kubectl_create_service():
    sent = service(type="ClusterIP", clusterIP="None", selector={"app": "web"})
    stored, errors = create("", "Service", sent)
    assert errors == []
    assert stored["spec"]["clusterIPs"] == ["None"]
    assert stored["spec"]["ipFamilies"] == ["IPv4"]


def test_service_type_defaults():
    stored, errors = create("", "Service", service(type="LoadBalancer", ports=[{"port": 80}],
                                                   sessionAffinity="ClientIP"))
    assert errors == []
    spec = stored["spec"]
    assert spec["externalTrafficPolicy"] == "Cluster"
    assert spec["allocateLoadBalancerNodePorts"] is True
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert spec["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}
    stored, _ = create("", "Service", service(type="ExternalName", externalName="example.com"))
    assert "internalTrafficPolicy" not in stored["spec"] and "ipFamilies" not in stored["spec"]


def test_deployment_from_kubectl_create_deployment():
    sent = deployment(replicas=1, strategy={})
    sent["metadata"]["labels"] = {"app": "web"}
    sent["status"] = {}
    stored, errors = create("apps", "Deployment", sent)
    assert errors == []
    assert stored["spec"] == {
        "progressDeadlineSeconds": 600,
        "replicas": 1,
        "revisionHistoryLimit": 10,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
        "template": {
            "metadata": {"creationTimestamp": None, "labels": {"app": "web"}},
            "spec": {
                "containers": [{"image": "nginx", "imagePullPolicy": "Always", "name": "nginx", "resources": {},
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File"}],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "securityContext": {}, "terminationGracePeriodSeconds": 30,
            },
        },
    }
    assert stored["metadata"]["generation"] == 1
    assert stored["status"] == {}


def test_pod_from_kubectl_run():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nginx", "namespace": "default"},
           "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                                    "ports": [{"containerPort": 80}],
                                    "readinessProbe": {"httpGet": {"port": 80}}}]}}
    stored, errors = create("", "Pod", pod)
    assert errors == []
    spec = stored["spec"]
    container = spec["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert container["readinessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                           "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    assert spec["enableServiceLinks"] is True and spec["priority"] == 0
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert spec["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    ]
    assert stored["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert "generation" not in stored["metadata"]


@pytest.mark.parametrize("resources, qos", [
    ({}, "BestEffort"),
    ({"requests": {"cpu": "100m"}}, "Burstable"),
    ({"limits": {"cpu": "500m", "memory": "128Mi"}}, "Guaranteed"),
])
def test_pod_qos_class(resources, qos):
    pod = {"metadata": {"name": "p", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]}}
    stored, _ = create("", "Pod", pod)
    assert stored["status"]["qosClass"] == qos


def test_statefulset_and_daemonset_defaults():
    sts = deployment(serviceName="web")
    sts["kind"] = "StatefulSet"
    stored, errors = create("apps", "StatefulSet", sts)
    assert errors == []
    assert stored["spec"]["podManagementPolicy"] == "OrderedReady"
    assert stored["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert stored["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    ds = deployment()
    stored, errors = create("apps", "DaemonSet", ds)
    assert errors == []
    assert stored["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert stored["metadata"]["annotations"] == {"deprecated.daemonset.template.generation": "1"}


def test_namespace_and_secret_defaults():
    stored, errors = create("", "Namespace", {"metadata": {"name": "dev"}})
    assert errors == []
    assert stored["metadata"]["labels"] == {"kubernetes.io/metadata.name": "dev"}
    assert stored["spec"] == {"finalizers": ["kubernetes"]}
    assert stored["status"] == {"phase": "Active"}
    stored, errors = create("", "Secret", {"metadata": {"name": "s", "namespace": "default"},
                                           "stringData": {"user": "admin"}})
    assert errors == []
    assert stored["type"] == "Opaque" and stored["data"] == {"user": "YWRtaW4="} and "stringData" not in stored


# ------------------------------------------------------------------ invalid objects: exact messages


@pytest.mark.parametrize("obj, expected", [
    (service(ports=[{"port": 0, "targetPort": 8080}]),
     'Service "web" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive'),
    (service(),
     'Service "web" is invalid: spec.ports: Required value'),
    (service(ports=[{"port": 0}]),
     'Service "web" is invalid: [spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive, '
     'spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive]'),
    (service(name="no-domain.com", ports=[{"port": 80}]),
     f'Service "no-domain.com" is invalid: metadata.name: Invalid value: "no-domain.com": {LABEL_1035}'),
    (service(ports=[{"name": "HTTP", "port": 80}]),
     f'Service "web" is invalid: spec.ports[0].name: Invalid value: "HTTP": {LABEL_1123}'),
    (service(ports=[{"port": 80}, {"port": 81}]),
     'Service "web" is invalid: [spec.ports[0].name: Required value, spec.ports[1].name: Required value]'),
    (service(ports=[{"port": 80, "protocol": "HTTP"}]),
     'Service "web" is invalid: spec.ports[0].protocol: Unsupported value: "HTTP": supported values: '
     '"SCTP", "TCP", "UDP"'),
    (service(type="Balanced", ports=[{"port": 80}]),
     'Service "web" is invalid: spec.type: Unsupported value: "Balanced": supported values: "ClusterIP", '
     '"ExternalName", "LoadBalancer", "NodePort"'),
    (service(clusterIP="10.96.0", ports=[{"port": 80}]),
     'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: "10.96.0": must be a valid IP address, '
     '(e.g. 10.9.8.7 or 2001:db8::ffff)'),
    (service(type="ExternalName"),
     'Service "web" is invalid: spec.externalName: Required value'),
    (service(type="ExternalName", externalName="example.com", clusterIP="10.96.0.5"),
     'Service "web" is invalid: spec.clusterIPs: Forbidden: may not be set for ExternalName services'),
    (service(ports=[{"port": 80, "nodePort": 30080}]),
     "Service \"web\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
    (service(sessionAffinity="Sticky", ports=[{"port": 80}]),
     'Service "web" is invalid: spec.sessionAffinity: Unsupported value: "Sticky": supported values: '
     '"ClientIP", "None"'),
    (service(externalTrafficPolicy="Local", ports=[{"port": 80}]),
     'Service "web" is invalid: spec.externalTrafficPolicy: Invalid value: "Local": may only be set for '
     'externally-accessible services'),
    (service(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
     'Service "web" is invalid: spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", '
     'AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'),
])
def test_invalid_services(obj, expected):
    _, errors = create("", "Service", obj)
    assert message("", "Service", obj["metadata"]["name"], errors) == expected


def test_service_cluster_ip_change_is_rejected_and_external_name_switch_is_allowed():
    old, _ = create("", "Service", service(ports=[{"port": 80}]))
    old["spec"]["clusterIP"] = "10.96.0.20"
    old["spec"]["clusterIPs"] = ["10.96.0.20"]
    changed = copy.deepcopy(old)
    changed["spec"]["clusterIP"] = "10.96.0.99"
    _, errors = update("", "Service", changed, old)
    assert message("", "Service", "web", errors) == (
        'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: []string{"10.96.0.99"}: may not change once set')
    to_external = copy.deepcopy(old)
    to_external["spec"].update(type="ExternalName", externalName="db.example.com")
    stored, errors = update("", "Service", to_external, old)
    assert errors == []
    assert "clusterIP" not in stored["spec"] and "ipFamilies" not in stored["spec"]


def test_service_patch_to_nodeport_keeps_cluster_ip_and_defaults_policy():
    old, _ = create("", "Service", service(ports=[{"port": 80}]))
    old["spec"].update(clusterIP="10.96.0.20", clusterIPs=["10.96.0.20"])
    patched = copy.deepcopy(old)
    patched["spec"]["type"] = "NodePort"
    stored, errors = update("", "Service", patched, old)
    assert errors == []
    assert stored["spec"]["externalTrafficPolicy"] == "Cluster"
    back = copy.deepcopy(stored)
    back["spec"]["type"] = "ClusterIP"
    stored2, errors = update("", "Service", back, stored)
    assert errors == [] and "externalTrafficPolicy" not in stored2["spec"]


def pod(**spec):
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": spec}


@pytest.mark.parametrize("obj, expected", [
    (pod(), 'Pod "p" is invalid: spec.containers: Required value'),
    (pod(containers=[{"name": "web", "image": ""}]), 'Pod "p" is invalid: spec.containers[0].image: Required value'),
    (pod(containers=[{"name": "Web", "image": "nginx"}]),
     f'Pod "p" is invalid: spec.containers[0].name: Invalid value: "Web": {LABEL_1123}'),
    (pod(containers=[{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]),
     'Pod "p" is invalid: spec.containers[1].name: Duplicate value: "a"'),
    (pod(containers=[{"name": "a", "image": "x", "ports": [{"containerPort": 70000}]}]),
     'Pod "p" is invalid: spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and '
     '65535, inclusive'),
    (pod(containers=[{"name": "a", "image": "x"}], restartPolicy="Sometimes"),
     'Pod "p" is invalid: spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", '
     '"OnFailure", "Never"'),
    (pod(containers=[{"name": "a", "image": "x", "livenessProbe": {"periodSeconds": 5}}]),
     'Pod "p" is invalid: spec.containers[0].livenessProbe: Required value: must specify a handler type'),
    (pod(containers=[{"name": "a", "image": "x",
                      "readinessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}}]),
     'Pod "p" is invalid: spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 '
     'handler type'),
    (pod(containers=[{"name": "a", "image": "x"}], volumes=[{"name": "v"}, {"name": "v"}]),
     'Pod "p" is invalid: spec.volumes[1].name: Duplicate value: "v"'),
    (pod(containers=[{"name": "a", "image": "x", "env": [{"name": "A=B"}]}]),
     'Pod "p" is invalid: spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name '
     "must consist only of printable ASCII characters other than '='"),
    (pod(containers=[{"name": "a", "image": "x",
                      "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]),
     'Pod "p" is invalid: spec.containers[0].resources.requests[cpu]: Invalid value: "2": must be less than or '
     'equal to cpu limit of 1'),
    (pod(containers=[{"name": "a", "image": "x"}], hostPID=True, shareProcessNamespace=True),
     'Pod "p" is invalid: spec.securityContext.shareProcessNamespace: Invalid value: true: ShareProcessNamespace and '
     'HostPID cannot both be enabled'),
])
def test_invalid_pods(obj, expected):
    _, errors = create("", "Pod", obj)
    assert message("", "Pod", "p", errors) == expected


def test_pod_update_may_change_only_the_image():
    old, _ = create("", "Pod", pod(containers=[{"name": "a", "image": "nginx"}]))
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.27"
    _, errors = update("", "Pod", new, old)
    assert errors == []
    new["spec"]["restartPolicy"] = "Never"
    _, errors = update("", "Pod", new, old)
    assert len(errors) == 1
    assert str(errors[0]).startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
        "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
        "negative)\n")


@pytest.mark.parametrize("spec, expected", [
    ({"selector": None},
     'Deployment.apps "web" is invalid: [spec.selector: Required value, spec.template.metadata.labels: Invalid '
     'value: map[string]string{"app":"web"}: `selector` does not match template `labels`]'),
    ({"selector": {"matchLabels": {"app": "other"}}},
     'Deployment.apps "web" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
     '`selector` does not match template `labels`'),
    ({"replicas": -1},
     'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0'),
    ({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}},
     'Deployment.apps "web" is invalid: spec.strategy.rollingUpdate.maxUnavailable: Invalid value: '
     'intstr.IntOrString{Type:0, IntVal:0, StrVal:""}: may not be 0 when `maxSurge` is 0'),
    ({"revisionHistoryLimit": -2},
     'Deployment.apps "web" is invalid: spec.revisionHistoryLimit: Invalid value: -2: must be greater than or '
     'equal to 0'),
    ({"strategy": {"type": "Blue"}},
     'Deployment.apps "web" is invalid: spec.strategy.type: Unsupported value: "Blue": supported values: '
     '"Recreate", "RollingUpdate"'),
])
def test_invalid_deployments(spec, expected):
    obj = deployment(**spec)
    if spec.get("selector", 1) is None:
        del obj["spec"]["selector"]
    _, errors = create("apps", "Deployment", obj)
    assert message("apps", "Deployment", "web", errors) == expected


def test_deployment_selector_is_immutable_and_generation_follows_annotations():
    old, _ = create("apps", "Deployment", deployment())
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "web2"}}
    new["spec"]["template"]["metadata"]["labels"] = {"app": "web2"}
    _, errors = update("apps", "Deployment", new, old)
    assert message("apps", "Deployment", "web", errors) == (
        'Deployment.apps "web" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:'
        'map[string]string{"app":"web2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable')
    annotated = copy.deepcopy(old)
    annotated["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    stored, errors = update("apps", "Deployment", annotated, old)
    assert errors == [] and stored["metadata"]["generation"] == 2
    rs, _ = create("apps", "ReplicaSet", deployment())
    rs_annotated = copy.deepcopy(rs)
    rs_annotated["metadata"]["annotations"] = {"x": "y"}
    stored, _ = update("apps", "ReplicaSet", rs_annotated, rs)
    assert stored["metadata"]["generation"] == 1


def test_status_is_kept_on_main_resource_updates():
    old, _ = create("apps", "Deployment", deployment())
    old["status"] = {"replicas": 1}
    new = copy.deepcopy(old)
    new["status"] = {"replicas": 99}
    stored, _ = update("apps", "Deployment", new, old)
    assert stored["status"] == {"replicas": 1} and stored["metadata"]["generation"] == 1


def test_statefulset_forbidden_update():
    sts = deployment(serviceName="web")
    old, _ = create("apps", "StatefulSet", sts)
    new = copy.deepcopy(old)
    new["spec"]["serviceName"] = "other"
    _, errors = update("apps", "StatefulSet", new, old)
    assert [str(e) for e in errors] == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]


def test_endpoints_validation():
    obj = {"metadata": {"name": "web", "namespace": "default"},
           "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 80}, {"port": 81, "name": "b"}]}]}
    _, errors = create("", "Endpoints", obj)
    assert message("", "Endpoints", "web", errors) == (
        'Endpoints "web" is invalid: [subsets[0].addresses[0].ip: Invalid value: "127.0.0.1": may not be in the '
        'loopback range (127.0.0.0/8, ::1/128), subsets[0].ports[0].name: Required value]')
    _, errors = create("", "Endpoints", {"metadata": {"name": "web", "namespace": "default"}, "subsets": [{}]})
    assert [str(e) for e in errors] == ["subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"]


def test_endpointslice_validation():
    base = {"metadata": {"name": "web-abc", "namespace": "default"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.1.5"]}], "ports": [{"name": "", "port": 80}]}
    stored, errors = create("discovery.k8s.io", "EndpointSlice", base)
    assert errors == [] and stored["ports"][0]["protocol"] == "TCP" and stored["metadata"]["generation"] == 1
    bad = copy.deepcopy(base)
    bad["endpoints"] = [{"addresses": ["fd00::1"]}]
    _, errors = create("discovery.k8s.io", "EndpointSlice", bad)
    assert [str(e) for e in errors] == ['endpoints[0].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address']
    too_many = copy.deepcopy(base)
    too_many["endpoints"] = [{"addresses": ["10.244.1.5"]}] * 1001
    _, errors = create("discovery.k8s.io", "EndpointSlice", too_many)
    assert [str(e) for e in errors] == ["endpoints: Too many: 1001: must have at most 1000 items"]
    changed = copy.deepcopy(stored)
    changed["addressType"] = "IPv6"
    changed["endpoints"] = [{"addresses": ["fd00::1"]}]
    _, errors = update("discovery.k8s.io", "EndpointSlice", changed, stored)
    assert [str(e) for e in errors] == ['addressType: Invalid value: "IPv6": field is immutable']


def ingress_with(path):
    return {"metadata": {"name": "web", "namespace": "default"},
            "spec": {"rules": [{"host": "web.example.com", "http": {"paths": [path]}}]}}


@pytest.mark.parametrize("path, expected", [
    ({"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
     'Ingress.networking.k8s.io "web" is invalid: spec.rules[0].http.paths[0].pathType: Required value: pathType '
     'must be specified'),
    ({"path": "api", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
     'Ingress.networking.k8s.io "web" is invalid: spec.rules[0].http.paths[0].path: Invalid value: "api": must be '
     'an absolute path'),
    ({"path": "/", "pathType": "Regex", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
     'Ingress.networking.k8s.io "web" is invalid: spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": '
     'supported values: "Exact", "ImplementationSpecific", "Prefix"'),
    ({"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80, "name": "http"}}}},
     'Ingress.networking.k8s.io "web" is invalid: spec.rules[0].http.paths[0].backend: Invalid value: "": cannot set '
     'both port name & port number'),
    ({"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web"}}},
     'Ingress.networking.k8s.io "web" is invalid: spec.rules[0].http.paths[0].backend: Required value: port name or '
     'number is required'),
])
def test_invalid_ingress_paths(path, expected):
    _, errors = create("networking.k8s.io", "Ingress", ingress_with(path))
    assert message("networking.k8s.io", "Ingress", "web", errors) == expected


def test_ingress_hosts_and_status():
    ok = ingress_with({"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}})
    ok["spec"]["rules"][0]["host"] = "*.example.com"
    stored, errors = create("networking.k8s.io", "Ingress", ok)
    assert errors == [] and stored["status"] == {"loadBalancer": {}} and stored["metadata"]["generation"] == 1
    bad = copy.deepcopy(ok)
    bad["spec"]["rules"][0]["host"] = "10.0.0.1"
    _, errors = create("networking.k8s.io", "Ingress", bad)
    assert str(errors[0]) == 'spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address'


def test_secret_validation():
    _, errors = create("", "Secret", {"metadata": {"name": "tls", "namespace": "default"}, "type": "kubernetes.io/tls",
                                      "data": {"tls.crt": "YQ=="}})
    assert message("", "Secret", "tls", errors) == 'Secret "tls" is invalid: data[tls.key]: Required value'
    _, errors = create("", "Secret", {"metadata": {"name": "s", "namespace": "default"}, "data": {"bad key": "YQ=="}})
    assert str(errors[0]).startswith('data[bad key]: Invalid value: "bad key": a valid config key must consist of')
    big = {"metadata": {"name": "s", "namespace": "default"}, "stringData": {"k": "x" * (1024 * 1024 + 1)}}
    _, errors = create("", "Secret", big)
    assert [str(e) for e in errors] == ["data: Too long: may not be more than 1048576 bytes"]
    old, _ = create("", "Secret", {"metadata": {"name": "s", "namespace": "default"}, "immutable": True,
                                   "data": {"a": "YQ=="}})
    new = copy.deepcopy(old)
    new["data"] = {"a": "Yg=="}
    _, errors = update("", "Secret", new, old)
    assert [str(e) for e in errors] == ["data: Forbidden: field is immutable when `immutable` is set"]


def test_namespace_name_and_node_taints():
    _, errors = create("", "Namespace", {"metadata": {"name": "Dev"}})
    assert message("", "Namespace", "Dev", errors) == (
        f'Namespace "Dev" is invalid: metadata.name: Invalid value: "Dev": {LABEL_1123}')
    _, errors = create("", "Node", {"metadata": {"name": "n1"},
                                    "spec": {"taints": [{"key": "k", "effect": "Never"}], "podCIDRs": ["10.244.1.0/24"]}})
    assert [str(e) for e in errors] == [
        'metadata.taints[0].effect: Unsupported value: "Never": supported values: "NoSchedule", "PreferNoSchedule", '
        '"NoExecute"']


def test_lease_and_configmap():
    _, errors = create("coordination.k8s.io", "Lease", {"metadata": {"name": "l", "namespace": "kube-node-lease"},
                                                         "spec": {"leaseDurationSeconds": 0}})
    assert [str(e) for e in errors] == ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    _, errors = create("", "ConfigMap", {"metadata": {"name": "c", "namespace": "default"},
                                         "data": {"a": "1"}, "binaryData": {"a": "MQ=="}})
    assert [str(e) for e in errors] == ['data[a]: Invalid value: "a": duplicate of key present in binaryData',
                                        'binaryData[a]: Invalid value: "a": duplicate of key present in data']
