"""ingress-nginx's bare-metal install applied as people apply it (`kubectl apply -f` of one
manifest, ours with the upstream's kinds, names, images, arguments, volumes and probes): every
object is created, the two kube-webhook-certgen Jobs complete (a Secret with the webhook's
certificate, the CA patched into the ValidatingWebhookConfiguration), the controller runs with
its webhook, the API server calls the webhook on `kubectl apply` of an Ingress (a conflicting
one is denied with the controller's reason), and traffic is routed. Everything is deleted at
the end."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from tests.e2e.test_ingress import Entry, apply, echo, eventually, ingress, rule
from tests.e2e.test_services import _ready_pod, until

pytestmark = pytest.mark.e2e

MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "manifests", "ingress-nginx-baremetal.yaml")


@pytest.fixture(scope="module")
def installed(cluster):
    until(lambda: cluster.kubectl("get", "namespace", "ingress-nginx", check=False).returncode == 1,
          "no ingress-nginx namespace left from other tests", timeout=120)
    applied = cluster.kubectl("apply", "-f", MANIFEST, check=False, timeout=120)
    ns = "man-" + uuid.uuid4().hex[:6]
    try:
        assert applied.returncode == 0, applied.stdout + applied.stderr
        cluster.kubectl("create", "namespace", ns)
        yield {"applied": applied.stdout, "ns": ns}
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cluster.kubectl("delete", "-f", MANIFEST, "--wait=false", check=False, timeout=120)


def test_every_object_is_created_and_the_jobs_complete(cluster, installed):
    for line in ("namespace/ingress-nginx created", "clusterrole.rbac.authorization.k8s.io/ingress-nginx created",
                 "job.batch/ingress-nginx-admission-create created", "ingressclass.networking.k8s.io/nginx created",
                 "validatingwebhookconfiguration.admissionregistration.k8s.io/ingress-nginx-admission created"):
        assert line in installed["applied"], installed["applied"]
    for job in ("ingress-nginx-admission-create", "ingress-nginx-admission-patch"):
        cluster.kubectl("wait", "-n", "ingress-nginx", "--for=condition=complete", f"job/{job}", "--timeout=120s",
                        timeout=150)
    secret = cluster.kubectl_json("get", "secret", "-n", "ingress-nginx", "ingress-nginx-admission")
    [hook] = cluster.kubectl_json("get", "validatingwebhookconfiguration", "ingress-nginx-admission")["webhooks"]
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca"] and hook["failurePolicy"] == "Fail"
    rolled = cluster.kubectl("rollout", "status", "-n", "ingress-nginx", "deployment/ingress-nginx-controller",
                             "--timeout=180s", timeout=200, check=False)
    if rolled.returncode != 0:
        selector = "app.kubernetes.io/component=controller"
        pods = cluster.kubectl("describe", "pods", "-n", "ingress-nginx", "-l", selector, check=False).stdout
        logs = cluster.kubectl("logs", "-n", "ingress-nginx", "-l", selector, "--tail=40", check=False)
        previous = cluster.kubectl("logs", "-n", "ingress-nginx", "-l", selector, "--tail=40", "--previous",
                                   check=False)
        pytest.fail(f"the controller did not become available:\n{pods}\n{logs.stdout}{logs.stderr}\n"
                    f"before its restart:\n{previous.stdout}{previous.stderr}")


def test_the_webhook_is_called_and_traffic_is_routed(cluster, installed):
    ns = installed["ns"]
    apply(cluster, ns, *echo("one", "from-one"))
    _ready_pod(cluster, ns, "app=one")
    ok = cluster.kubectl("apply", "-n", ns, "-f", "-", check=False,
                         input=json.dumps(ingress("first", [rule("man.example", ("/", "Prefix", "one"))],
                                                  ingressClassName="nginx")))
    assert ok.returncode == 0, ok.stderr
    denied = cluster.kubectl("apply", "-n", ns, "-f", "-", check=False,
                             input=json.dumps(ingress("second", [rule("man.example", ("/", "Prefix", "one"))],
                                                      ingressClassName="nginx")))
    assert denied.returncode == 1, denied.stdout
    assert ('admission webhook "validate.nginx.ingress.kubernetes.io" denied the request: host "man.example" '
            f'path "/" is already defined in Ingress {ns}/first') in denied.stderr, denied.stderr
    svc = cluster.kubectl_json("get", "svc", "-n", "ingress-nginx", "ingress-nginx-controller")
    ports = {p["name"]: p["nodePort"] for p in svc["spec"]["ports"]}
    entry = Entry(cluster.net.node_list()[0].ip, ports["http"], ports["https"])
    eventually(lambda: entry.text("man.example"), "from-one", "the manifest's controller routes man.example")
    node_ips = {n.ip for n in cluster.net.node_list()}
    until(lambda: (row := cluster.kubectl("get", "ingress", "first", "-n", ns, "--no-headers").stdout.split())
          and row[3] in node_ips, "the Ingress gets an ADDRESS")
