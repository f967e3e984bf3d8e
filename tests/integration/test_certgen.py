"""kube-webhook-certgen's Jobs (pocketkube/ingress/certgen.py), as install manifests run them
(ingress-nginx): `create` makes the webhook's certificate into a Secret, `patch` puts its CA into
the webhook configuration, each as a ServiceAccount with only the manifest's RBAC. The API
server then calls the webhook with it."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer

import yaml

from tests.conftest import ROOT
from tests.integration.test_webhooks import CALLS, _Hook


def rbac(ns: str) -> list[dict]:
    return yaml.safe_load_all(f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: admission, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: admission, namespace: {ns}}}
rules:
- {{apiGroups: [""], resources: [secrets], verbs: [get, create]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: admission, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: admission}}
subjects: [{{kind: ServiceAccount, name: admission, namespace: {ns}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: admission-{ns}}}
rules:
- {{apiGroups: [admissionregistration.k8s.io], resources: [validatingwebhookconfigurations], verbs: [get, update]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: admission-{ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admission-{ns}}}
subjects: [{{kind: ServiceAccount, name: admission, namespace: {ns}}}]
""")


def test_create_then_patch_then_the_webhook_is_called(server, ns, tmp_path):
    for obj in rbac(ns):
        server.kubectl("apply", "-f", "-", input=json.dumps(obj))
    token = server.kubectl("create", "token", "admission", "-n", ns).stdout.strip()
    cfg = yaml.safe_load(open(server.kubeconfig))
    cfg["users"][0]["user"] = {"token": token}
    kubeconfig = tmp_path / "sa-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(cfg))

    def certgen(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pocketkube.ingress.certgen", f"--kubeconfig={kubeconfig}",
                               *args, f"--namespace={ns}", "--secret-name=admission"],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)

    cp = certgen("create", "--host=localhost,admission.example")
    assert cp.returncode == 0, cp.stderr
    again = certgen("create", "--host=localhost")  # a second run keeps it
    assert again.returncode == 0 and "already exists" in again.stdout + again.stderr
    data = server.kubectl_json("get", "secret", "admission", "-n", ns)["data"]
    assert sorted(data) == ["ca", "cert", "key"]
    (tmp_path / "cert").write_bytes(base64.b64decode(data["cert"]))
    (tmp_path / "key").write_bytes(base64.b64decode(data["key"]))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tmp_path / "cert"), str(tmp_path / "key"))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    name = f"admission-{ns}"
    try:
        config = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                  "metadata": {"name": name},
                  "webhooks": [{"name": "validate.admission.example", "failurePolicy": "Ignore",
                                "clientConfig": {"url": f"https://localhost:{httpd.server_address[1]}/deny"},
                                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                           "resources": ["configmaps"]}],
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                                "sideEffects": "None", "admissionReviewVersions": ["v1"]}]}
        server.kubectl("apply", "-f", "-", input=json.dumps(config))
        # without the CA the call fails and Ignore lets the write through
        server.kubectl("create", "configmap", "before", "--from-literal=forbidden=1", "-n", ns)
        cp = certgen("patch", f"--webhook-name={name}", "--patch-mutating=false", "--patch-failure-policy=Fail")
        assert cp.returncode == 0, cp.stderr
        hook = server.kubectl_json("get", "validatingwebhookconfiguration", name)["webhooks"][0]
        assert hook["clientConfig"]["caBundle"] == data["ca"] and hook["failurePolicy"] == "Fail"
        cp = server.kubectl("create", "configmap", "after", "--from-literal=forbidden=1", "-n", ns, check=False)
        assert "denied the request: the key 'forbidden' is not allowed" in cp.stderr
        assert any(c["request"]["name"] == "after" for c in CALLS)
    finally:
        httpd.shutdown()
        httpd.server_close()
        server.kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")
        server.kubectl("delete", "clusterrole,clusterrolebinding", f"admission-{ns}", "--ignore-not-found")
