"""`pocketkube explain`'s checks over fake objects (explain/findings.py): each finding the
checks make, by its code, the field it names and the fix it offers, and the healthy case."""

from __future__ import annotations

import base64
import json

import pytest

from pocketkube.explain import findings as fx
from pocketkube.explain.findings import Cluster, edit_distance, explain, render_json, render_text
from pocketkube.ingress.certificates import make_self_signed

NS = "default"


def pod(name, labels=None, ready=True, ip="10.244.1.5", node="pk-node-1", ports=(), ns=NS, waiting=None,
        probe=None, phase="Running"):
    container = {"name": "app", "image": "nginx", "ports": [dict(p) for p in ports]}
    if probe:
        container["readinessProbe"] = probe
    state = {"waiting": waiting} if waiting else {"running": {}}
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": labels or {"app": "web"}},
            "spec": {"nodeName": node, "containers": [container]},
            "status": {"phase": phase, "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [{"name": "app", "ready": ready, "state": state}]}}


def service(name="web", selector=None, ports=None, ns=NS, **spec):
    body = {"selector": {"app": "web"} if selector is None else selector, "clusterIP": "10.96.0.20",
            "type": "ClusterIP",
            "ports": ports if ports is not None else [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    body.update(spec)
    if not body["selector"]:
        del body["selector"]
    return {"metadata": {"name": name, "namespace": ns}, "spec": body, "status": {}}


def node(name, ip):
    return {"metadata": {"name": name}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def endpoints_for(svc, pods, port=8080, port_name=""):
    """The Endpoints and EndpointSlice the controllers would write."""
    ready = [p for p in pods if fx.is_pod_ready(p)]
    unready = [p for p in pods if not fx.is_pod_ready(p)]
    subset = {"ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}
    if ready:
        subset["addresses"] = [{"ip": p["status"]["podIP"]} for p in ready]
    if unready:
        subset["notReadyAddresses"] = [{"ip": p["status"]["podIP"]} for p in unready]
    name, ns = svc["metadata"]["name"], svc["metadata"]["namespace"]
    ep = {"metadata": {"name": name, "namespace": ns}, "subsets": [subset] if pods else []}
    es = {"metadata": {"name": f"{name}-abc", "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
          "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
          "endpoints": [{"addresses": [p["status"]["podIP"]], "nodeName": p["spec"]["nodeName"],
                         "conditions": {"ready": fx.is_pod_ready(p)}} for p in pods]}
    return ep, es


def cluster(svc, pods, listening=None, port=8080, port_name="", **extra):
    ep, es = endpoints_for(svc, [p for p in pods if fx.find_port(p, svc["spec"]["ports"][0]) is not None
                                 and p["metadata"]["namespace"] == svc["metadata"]["namespace"]
                                 and all(p["metadata"]["labels"].get(k) == v
                                         for k, v in (svc["spec"].get("selector") or {}).items())],
                           port, port_name)
    return Cluster(services=[svc], pods=pods, endpoints=[ep], slices=[es],
                   nodes=[node("pk-node-1", "172.18.0.2"), node("pk-node-2", "172.18.0.3")],
                   listening=listening or {}, **extra)


def codes(report, level=None):
    return [f.code for f in report.findings if level is None or f.level == level]


def one(report, code):
    found = [f for f in report.findings if f.code == code]
    assert len(found) == 1, [(f.code, f.message) for f in report.findings]
    return found[0]


WEB_PORTS = [{"containerPort": 8080, "protocol": "TCP", "name": "http"}]


def healthy_cluster():
    pods = [pod("web-1", ports=WEB_PORTS), pod("web-2", ip="10.244.2.5", node="pk-node-2", ports=WEB_PORTS)]
    return cluster(service(), pods, listening={"default/web-1": {("TCP", 8080)}, "default/web-2": {("TCP", 8080)}})


def test_a_healthy_service_says_so_in_one_line():
    report = explain("Service", NS, "web", healthy_cluster())
    assert report.healthy, [f.message for f in report.problems]
    text = render_text(report)
    assert text == ("Service default/web is healthy: ClusterIP 10.96.0.20, 80/TCP -> 8080, "
                    "2 of 2 selected pods Ready.\n")
    # the notes are still there for scripts
    data = json.loads(render_json(report))
    assert data["healthy"] is True and {"cluster-ip", "dns"} <= {f["code"] for f in data["findings"]}


def test_a_missing_service():
    report = explain("Service", NS, "nope", healthy_cluster())
    assert codes(report) == ["not-found"] and not report.healthy


@pytest.mark.parametrize("a, b, distance", [("nginx", "ngnix", 1), ("nginx", "nginx", 0), ("app", "ap", 1),
                                             ("web", "api", 3), ("", "abc", 3)])
def test_edit_distance(a, b, distance):
    assert edit_distance(a, b) == distance


def test_selector_matching_no_pod_names_pods_with_similar_labels_and_the_fix():
    pods = [pod("nginx-1", labels={"app": "ngnix"}), pod("nginx-2", labels={"app": "ngnix"}),
            pod("db-1", labels={"app": "postgres"})]
    report = explain("Service", NS, "web", cluster(service(selector={"app": "nginx"}), pods))
    f = one(report, "selector-matches-no-pod")
    assert f.level == "error" and f.field == "spec.selector" and f.object == "Service default/web"
    assert "pods nginx-1, nginx-2 have app=ngnix where the selector wants app=nginx" in f.message
    assert "db-1" not in f.message
    assert f.fix.startswith("kubectl patch service web -n default -p '{\"spec\":{\"selector\":{\"app\":\"ngnix\"}}}'")
    assert f.check == "kubectl get pods -n default --show-labels"


def test_selector_with_a_misspelt_key_and_pods_in_another_namespace():
    pods = [pod("web-1", labels={"ap": "web"}), pod("other", labels={"app": "web"}, ns="prod")]
    report = explain("Service", NS, "web", cluster(service(), pods))
    f = one(report, "selector-matches-no-pod")
    assert "has ap=web where the selector wants app=web" in f.message
    assert "Pods in other namespaces match (prod/other)" in f.message
    assert '{"spec":{"selector":{"app":null,"ap":"web"}}}' in f.fix


def test_pods_match_but_none_is_ready_with_each_reason():
    probe = {"httpGet": {"path": "/healthz", "port": 8080}}
    pods = [pod("web-1", ready=False, probe=probe, ports=WEB_PORTS),
            pod("web-2", ready=False, waiting={"reason": "CrashLoopBackOff", "message": "back-off 10s"})]
    events = [{"involvedObject": {"kind": "Pod", "name": "web-1", "namespace": NS, "uid": "uid-web-1"},
               "reason": "Unhealthy", "message": "Readiness probe failed: HTTP probe failed with statuscode: 500",
               "lastTimestamp": "2026-01-01T00:00:00Z"}]
    report = explain("Service", NS, "web", cluster(service(), pods, events=events))
    f = one(report, "no-ready-pods")
    assert f.level == "error"
    assert "pod web-1: container app runs but its readiness probe fails: Readiness probe failed: HTTP probe " \
           "failed with statuscode: 500" in f.message
    assert "pod web-2: container app is waiting: CrashLoopBackOff (back-off 10s)" in f.message
    assert f.check == "kubectl describe pod web-1 -n default"


def test_some_pods_not_ready_is_a_warning():
    pods = [pod("web-1"), pod("web-2", ready=False, ip="10.244.1.6")]
    report = explain("Service", NS, "web", cluster(service(), pods))
    assert one(report, "some-pods-not-ready").level == "warning"


def test_target_port_nobody_listens_on_with_the_port_they_do_listen_on():
    pods = [pod("web-1"), pod("web-2", ip="10.244.1.6")]
    svc = service(ports=[{"port": 80, "targetPort": 8081, "protocol": "TCP"}])
    report = explain("Service", NS, "web", cluster(svc, pods, port=8081,
                                                   listening={"default/web-1": {("TCP", 80)},
                                                              "default/web-2": {("TCP", 80)}}))
    f = one(report, "target-port-not-listening")
    assert f.level == "error" and f.field == "spec.ports[0].targetPort"
    assert "nothing listens there in pods web-1, web-2 (they listen on 80/TCP)" in f.message
    assert f.fix == ("kubectl patch service web -n default --type=json -p "
                     "'[{\"op\":\"replace\",\"path\":\"/spec/ports/0/targetPort\",\"value\":80}]'")


def test_a_program_listening_on_loopback_only():
    report = explain("Service", NS, "web", cluster(service(), [pod("web-1")], listening={"default/web-1": set()},
                                                   loopback={"default/web-1": {("TCP", 8080)}}))
    f = one(report, "target-port-not-listening")
    assert "web-1 listen(s) on 8080/TCP on 127.0.0.1 only" in f.message and "must listen on 0.0.0.0" in f.message


def test_target_port_not_declared_is_a_warning_unless_it_listens():
    svc = service(ports=[{"port": 80, "targetPort": 9090, "protocol": "TCP"}])
    report = explain("Service", NS, "web", cluster(svc, [pod("web-1", ports=WEB_PORTS)], port=9090))
    assert one(report, "target-port-not-declared").level == "warning"
    assert "pods web-1 listen on was not asked" in one(report, "listening-not-asked").message
    report = explain("Service", NS, "web", cluster(svc, [pod("web-1", ports=WEB_PORTS)], port=9090,
                                                   listening={"default/web-1": {("TCP", 9090)}}))
    assert one(report, "target-port-not-declared").level == "info"
    assert report.healthy


def test_named_target_port_missing_in_all_or_some_pods():
    svc = service(ports=[{"port": 80, "targetPort": "web", "protocol": "TCP"}])
    report = explain("Service", NS, "web", cluster(svc, [pod("web-1", ports=WEB_PORTS)]))
    f = one(report, "named-port-missing")
    assert f.level == "error" and "no selected pod declares (they declare http 8080/TCP)" in f.message
    assert '"path":"/spec/ports/0/targetPort","value":8080' in f.fix
    pods = [pod("web-1", ports=[{"containerPort": 8080, "name": "web"}]), pod("web-2", ip="10.244.1.6")]
    report = explain("Service", NS, "web", cluster(svc, pods, port_name=""))
    f = one(report, "named-port-missing-in-some")
    assert f.level == "warning" and "pods web-2 do not declare" in f.message and "1 of 2 pods" in f.message


def test_protocol_mismatch_named_and_numbered_and_listening():
    udp_pod = pod("dns-1", labels={"app": "dns"}, ports=[{"containerPort": 53, "name": "dns", "protocol": "UDP"}])
    svc = service("dns", selector={"app": "dns"}, ports=[{"port": 53, "targetPort": "dns", "protocol": "TCP"}])
    f = one(explain("Service", NS, "dns", cluster(svc, [udp_pod], port=53)), "protocol-mismatch")
    assert f.field == "spec.ports[0].protocol" and "declare 'dns' as UDP" in f.message
    assert '"path":"/spec/ports/0/protocol","value":"UDP"' in f.fix
    svc = service("dns", selector={"app": "dns"}, ports=[{"port": 53, "targetPort": 53, "protocol": "TCP"}])
    f = one(explain("Service", NS, "dns", cluster(svc, [udp_pod], port=53)), "protocol-mismatch")
    assert "declare port 53 as UDP" in f.message
    plain = pod("dns-1", labels={"app": "dns"})
    report = explain("Service", NS, "dns", cluster(svc, [plain], port=53, listening={"default/dns-1": {("UDP", 53)}}))
    f = one(report, "protocol-mismatch")
    assert f.level == "error" and "port 53 is open for UDP, not TCP" in f.message


def test_selectorless_service_without_and_with_manual_endpoints():
    svc = service("ext", selector={})
    report = explain("Service", NS, "ext", Cluster(services=[svc]))
    f = one(report, "selectorless-without-endpoints")
    assert f.level == "error" and f.field == "spec.selector"
    manual = {"metadata": {"name": "ext", "namespace": NS},
              "subsets": [{"addresses": [{"ip": "172.18.0.50"}], "ports": [{"port": 8080, "protocol": "TCP"}]}]}
    mirrored = {"metadata": {"name": "ext-1", "namespace": NS, "labels": {"kubernetes.io/service-name": "ext"}},
                "addressType": "IPv4", "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["172.18.0.50"], "conditions": {"ready": True}}]}
    report = explain("Service", NS, "ext", Cluster(services=[svc], endpoints=[manual], slices=[mirrored]))
    assert report.healthy and "selectorless" in codes(report)


def test_endpoints_and_slices_that_disagree():
    c = healthy_cluster()
    c.slices[0]["endpoints"].pop()
    report = explain("Service", NS, "web", c)
    f = one(report, "endpoints-slices-disagree")
    assert f.level == "warning" and "only in Endpoints: 10.244.2.5:8080" in f.message
    report = explain("Endpoints", NS, "web", c)
    assert one(report, "endpoints-slices-disagree").object == "Service default/web"
    assert report.target == "Endpoints default/web"


def test_endpoints_healthy_and_without_service():
    report = explain("Endpoints", NS, "web", healthy_cluster())
    assert report.healthy and render_text(report).startswith("Endpoints default/web is healthy")
    c = healthy_cluster()
    c.services = []
    assert codes(explain("Endpoints", NS, "web", c)) == ["no-service"]


def test_internal_traffic_policy_local_with_a_node_without_endpoint_drops():
    svc = service(internalTrafficPolicy="Local")
    report = explain("Service", NS, "web", cluster(svc, [pod("web-1")]))
    f = one(report, "internal-local-drops")
    assert f.level == "warning" and "pk-node-2" in f.message and "dropped" in f.message
    assert '{"spec":{"internalTrafficPolicy":"Cluster"}}' in f.fix


def test_node_port_external_local_drops_on_nodes_without_endpoint_and_lb_states():
    svc = service(type="NodePort", externalTrafficPolicy="Local",
                  ports=[{"port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}])
    report = explain("Service", NS, "web", cluster(svc, [pod("web-1")]))
    assert "172.18.0.2:30080" in one(report, "node-port").message
    f = one(report, "external-local-drops")
    assert f.field == "spec.externalTrafficPolicy" and "pk-node-2" in f.message and "from the host" in f.message
    svc["spec"]["type"] = "LoadBalancer"
    assert one(explain("Service", NS, "web", cluster(svc, [pod("web-1")])), "lb-pending").level == "warning"
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "172.18.0.200"}]}}
    report = explain("Service", NS, "web", cluster(svc, [pod("web-1", ready=False)]))
    assert one(report, "lb-unannounced").level == "error"
    assert "172.18.0.200" in one(report, "lb-address").message


def test_cluster_policy_external_ips_affinity_headless_and_dns_notes():
    svc = service(type="NodePort", externalIPs=["172.18.0.2", "192.0.2.9"], sessionAffinity="ClientIP",
                  ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}])
    report = explain("Service", NS, "web", cluster(svc, [pod("web-1")], port_name="http"))
    assert report.healthy
    assert "external-cluster" in codes(report)
    ext = [f.message for f in report.findings if f.code == "external-ip"]
    assert "the host reaches it" in ext[0] and "clients must send it to a node themselves" in ext[1]
    assert "10800s" in one(report, "affinity").message
    dns = one(report, "dns").message
    assert "web.default.svc.cluster.local" in dns and "short name web only from pods in namespace default" in dns
    assert "_http._tcp.web.default.svc.cluster.local" in dns
    headless = service(clusterIP="None")
    assert "headless" in codes(explain("Service", NS, "web", cluster(headless, [pod("web-1")])))


def test_external_name_service():
    svc = {"metadata": {"name": "db", "namespace": NS}, "spec": {"type": "ExternalName", "externalName": "db.example"}}
    report = explain("Service", NS, "db", Cluster(services=[svc]))
    assert report.healthy and "CNAME to db.example" in report.summary


def test_pod_explain_not_ready_undeclared_listening_and_near_selector():
    p = pod("web-1", labels={"app": "wbe"}, ready=False, ports=WEB_PORTS,
            waiting={"reason": "ImagePullBackOff", "message": 'image "ngin" is not in the catalog'})
    c = Cluster(services=[service()], pods=[p], listening={"default/web-1": set()})
    report = explain("Pod", NS, "web-1", c)
    assert set(codes(report)) == {"pod-not-ready", "declared-port-not-listening", "labels-near-selector"}
    assert "ImagePullBackOff" in one(report, "pod-not-ready").message
    assert one(report, "labels-near-selector").fix.startswith("kubectl label pod web-1 -n default --overwrite app=web")
    good = healthy_cluster()
    report = explain("Pod", NS, "web-1", good)
    assert report.healthy and report.summary.endswith("behind Service web.")


def _tls_secret(name, host):
    cert, key = make_self_signed(host, [host])
    return {"metadata": {"name": name, "namespace": NS}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}}


CONTROLLER = {"metadata": {"name": "ingress-nginx-controller-1", "namespace": "ingress-nginx", "labels": {}},
              "spec": {"containers": [{"name": "controller", "image": "registry.k8s.io/ingress-nginx/controller:v1",
                                       "args": ["/nginx-ingress-controller",
                                                "--controller-class=k8s.io/ingress-nginx", "--ingress-class=nginx"]}]},
              "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
NGINX_CLASS = {"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}


def ingress(name="site", host="shop.example", service_name="web", tls_secret=None, path="/", class_name="nginx",
            created="2026-01-01T00:00:00Z"):
    spec = {"rules": [{"host": host, "http": {"paths": [{"path": path, "pathType": "Prefix", "backend": {
        "service": {"name": service_name, "port": {"number": 80}}}}]}}]}
    if class_name:
        spec["ingressClassName"] = class_name
    if tls_secret:
        spec["tls"] = [{"hosts": [host], "secretName": tls_secret}]
    return {"metadata": {"name": name, "namespace": NS, "creationTimestamp": created}, "spec": spec}


def ingress_cluster(*ingresses, secrets=()):
    c = healthy_cluster()
    c.pods.append(CONTROLLER)
    c.ingresses = list(ingresses)
    c.ingress_classes = [NGINX_CLASS]
    c.secrets = list(secrets)
    return c


def test_ingress_healthy_with_tls():
    c = ingress_cluster(ingress(tls_secret="shop-tls"), secrets=[_tls_secret("shop-tls", "shop.example")])
    report = explain("Ingress", NS, "site", c)
    assert report.healthy, [f.message for f in report.problems]
    assert "owned by controller ingress-nginx/ingress-nginx-controller-1" in one(report, "owner").message
    assert "10.244.1.5:8080" in one(report, "backend-ok").message
    assert render_text(report).count("\n") == 1


def test_ingress_without_controller_or_owner():
    c = ingress_cluster(ingress(class_name="traefik"))
    f = one(explain("Ingress", NS, "site", c), "no-owner")
    assert 'IngressClass "traefik" does not exist' in f.message
    assert f.fix == "kubectl patch ingress site -n default -p '{\"spec\":{\"ingressClassName\":\"nginx\"}}'"
    c.pods.remove(CONTROLLER)
    assert one(explain("Ingress", NS, "site", c), "no-controller").fix == "pocketkube addons enable ingress"


def test_ingress_backend_problems_tls_problems_and_conflicts():
    wrong = _tls_secret("shop-tls", "other.example")
    c = ingress_cluster(ingress(service_name="nope", tls_secret="shop-tls"),
                        ingress("older", created="2025-01-01T00:00:00Z"), secrets=[wrong])
    report = explain("Ingress", NS, "site", c)
    f = one(report, "backend")
    assert f.field == "spec.rules[0].http.paths[0].backend" and 'Service "default/nope" not found' in f.message
    assert f.check == "pocketkube explain svc/nope -n default"
    assert "not shop.example" in one(report, "tls-secret").message
    assert "already defined in Ingress default/older" in one(report, "conflict").message
    c.secrets = []
    assert one(explain("Ingress", NS, "site", c), "tls-secret").fix.startswith("kubectl create secret tls shop-tls")


def test_render_text_lists_problems_with_fixes_and_notes_within_100_columns():
    pods = [pod("nginx-1", labels={"app": "ngnix"})]
    text = render_text(explain("Service", NS, "web", cluster(service(selector={"app": "nginx"}), pods)))
    lines = text.splitlines()
    assert lines[0] == "Service default/web: 1 error(s), 0 warning(s)"
    assert lines[1].startswith("error   spec.selector: selector app=nginx matches no pod")
    assert any(line.startswith("        fix: kubectl patch service web") for line in lines)
    assert "what it does:" in lines
    assert any(line.startswith("  - spec.clusterIP: ClusterIP 10.96.0.20:80") for line in lines)
    data = json.loads(render_json(explain("Service", NS, "web", cluster(service(selector={"app": "nginx"}), pods))))
    assert data["healthy"] is False and data["summary"] == lines[0]
    assert all(len(line) <= 100 for line in lines if "kubectl" not in line)


@pytest.mark.parametrize("text, expected", [("svc/web", ("Service", "web")), ("ingress/a", ("Ingress", "a")),
                                            ("po/x", ("Pod", "x")), ("endpoints/e", ("Endpoints", "e"))])
def test_parse_target(text, expected):
    assert fx.parse_target(text) == expected


@pytest.mark.parametrize("text", ["web", "deploy/web", "svc/"])
def test_parse_target_refuses(text):
    with pytest.raises(ValueError):
        fx.parse_target(text)
