"""Admission in a real cluster, the way an ingress-nginx-style install manifest does it: two
kube-webhook-certgen Jobs (as their ServiceAccount, with the manifest's RBAC) make the
certificate and patch the webhook configuration; the webhook is a pod behind a Service, and
the API server calls it through the cluster network by its Service reference."""

from __future__ import annotations

import json

import yaml

from tests.e2e.test_cluster_pods import eventually
from tests.integration.test_certgen import rbac  # the manifest's ServiceAccount, Role, ClusterRole

WEBHOOK_PROGRAM = r'''
import json, ssl
from http.server import BaseHTTPRequestHandler, HTTPServer

class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        req = review["request"]
        data = (req.get("object") or {}).get("data") or {}
        response = {"uid": req["uid"], "allowed": "forbidden" not in data}
        if not response["allowed"]:
            response["status"] = {"code": 403, "message": "no key may be called forbidden"}
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": response}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

server = HTTPServer(("0.0.0.0", 8443), Hook)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/certs/cert", "/certs/key")
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
'''


def manifest(ns: str) -> list[dict]:
    certgen = "registry.k8s.io/ingress-nginx/kube-webhook-certgen:v1.5.0"
    docs = list(rbac(ns)) + list(yaml.safe_load_all(f"""
apiVersion: v1
kind: Service
metadata: {{name: webhook, namespace: {ns}}}
spec:
  selector: {{app: webhook}}
  ports: [{{name: https, port: 443, targetPort: 8443}}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: admission-{ns}}}
webhooks:
- name: validate.webhook.example
  clientConfig:
    service: {{namespace: {ns}, name: webhook, path: /validate}}
  rules: [{{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}}]
  namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}}
  failurePolicy: Ignore
  sideEffects: None
  admissionReviewVersions: [v1]
---
apiVersion: batch/v1
kind: Job
metadata: {{name: admission-create, namespace: {ns}}}
spec:
  template:
    spec:
      serviceAccountName: admission
      restartPolicy: OnFailure
      containers:
      - name: create
        image: {certgen}
        args: [create, "--host=webhook,webhook.{ns}.svc", --namespace={ns}, --secret-name=webhook-cert]
"""))
    return docs


def patch_job(ns: str) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "admission-patch", "namespace": ns},
            "spec": {"template": {"spec": {
                "serviceAccountName": "admission", "restartPolicy": "OnFailure",
                "containers": [{"name": "patch", "image": "registry.k8s.io/ingress-nginx/kube-webhook-certgen:v1.5.0",
                                "args": ["patch", f"--webhook-name=admission-{ns}", f"--namespace={ns}",
                                         "--patch-mutating=false", "--secret-name=webhook-cert",
                                         "--patch-failure-policy=Fail"]}]}}}}


def webhook_deployment(ns: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "webhook", "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": "webhook"}}, "template": {
                "metadata": {"labels": {"app": "webhook"}},
                "spec": {"containers": [{"name": "webhook", "image": "python", "command": ["python3", "-c",
                                                                                         WEBHOOK_PROGRAM],
                                         "ports": [{"containerPort": 8443}],
                                         "volumeMounts": [{"name": "certs", "mountPath": "/certs"}]}],
                         "volumes": [{"name": "certs", "secret": {"secretName": "webhook-cert"}}]}}}}


def job_complete(cluster, ns: str, name: str) -> bool:
    job = cluster.kubectl_json("get", "job", name, "-n", ns)
    return any(c["type"] == "Complete" and c["status"] == "True" for c in job.get("status", {}).get("conditions", []))


def test_certgen_jobs_then_the_webhook_is_called_through_its_service(cluster, ns):  # noqa: F811
    try:
        for obj in manifest(ns):
            cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
        eventually(lambda: job_complete(cluster, ns, "admission-create"), timeout=90)
        assert sorted(cluster.kubectl_json("get", "secret", "webhook-cert", "-n", ns)["data"]) == ["ca", "cert", "key"]
        cluster.kubectl("apply", "-f", "-", input=json.dumps(webhook_deployment(ns)))
        cluster.kubectl("apply", "-f", "-", input=json.dumps(patch_job(ns)))
        eventually(lambda: job_complete(cluster, ns, "admission-patch"), timeout=90)
        hook = cluster.kubectl_json("get", "validatingwebhookconfiguration", f"admission-{ns}")["webhooks"][0]
        assert hook["failurePolicy"] == "Fail" and hook["clientConfig"]["caBundle"]
        cluster.kubectl("rollout", "status", "deployment/webhook", "-n", ns, "--timeout=90s", timeout=100)

        def denied():
            cp = cluster.kubectl("create", "configmap", "x", "--from-literal=forbidden=1", "-n", ns, check=False)
            assert 'admission webhook "validate.webhook.example" denied the request: no key may be called ' \
                   'forbidden' in cp.stderr, cp.stderr
            return True
        eventually(denied, timeout=60)
        cluster.kubectl("create", "configmap", "fine", "--from-literal=a=1", "-n", ns)
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", f"admission-{ns}", "--ignore-not-found",
                        check=False)
        cluster.kubectl("delete", "clusterrole,clusterrolebinding", f"admission-{ns}", "--ignore-not-found",
                        check=False)
