"""Admission webhooks called by the API server, with the real kubectl: a validating webhook
that denies, a mutating one whose JSONPatch lands, selectors, dry run, and the bad webhooks
(slow, garbage, wrong certificate, nothing listening) under both failure policies.

The webhook is an HTTPS server in this test process on 127.0.0.1 with its own CA."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pocketkube.apiserver import certs

CALLS: list[dict] = []


class _Hook(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        req = review["request"]
        CALLS.append({"path": self.path, "request": req})
        path = self.path.split("?")[0]
        response: dict = {"uid": req["uid"], "allowed": True}
        if path == "/slow":
            time.sleep(3)
        if path == "/garbage":
            self._send(b"this is not an admission review")
            return
        if path == "/wrong-uid":
            response["uid"] = "not-the-uid"
        if path == "/deny":
            data = (req.get("object") or {}).get("data") or {}
            if "forbidden" in data:
                response = {"uid": req["uid"], "allowed": False,
                            "status": {"code": 422, "message": "the key 'forbidden' is not allowed"}}
        if path == "/mutate":
            ops = [{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        self._send(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                               "response": response}).encode())

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def hook_server(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("hook"))
    pki = certs.ensure_pki(d, ["127.0.0.1", "localhost"])
    other = certs.ensure_pki(str(tmp_path_factory.mktemp("other-ca")), ["127.0.0.1"])
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    with open(pki.ca_cert, "rb") as f:
        ca = base64.b64encode(f.read()).decode()
    with open(other.ca_cert, "rb") as f:
        wrong_ca = base64.b64encode(f.read()).decode()
    try:
        yield {"url": f"https://127.0.0.1:{httpd.server_address[1]}", "ca": ca, "wrong_ca": wrong_ca}
    finally:
        httpd.shutdown()
        httpd.server_close()


def webhook_config(name: str, kind: str, ns: str, url: str, ca: str, **hook) -> dict:
    entry = {"name": f"{name}.example.com", "clientConfig": {"url": url, "caBundle": ca},
             "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                        "resources": ["configmaps"]}],
             "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
             "sideEffects": "None", "admissionReviewVersions": ["v1"], **hook}
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name},
            "webhooks": [entry]}


@pytest.fixture
def configure(server):
    made: list[tuple[str, str]] = []

    def apply(obj: dict) -> None:
        server.kubectl("apply", "-f", "-", input=json.dumps(obj))
        made.append((obj["kind"].lower(), obj["metadata"]["name"]))

    yield apply
    for kind, name in made:
        server.kubectl("delete", kind, name, "--ignore-not-found")


def test_validating_webhook_denies_with_its_message(server, ns, hook_server, configure):
    configure(webhook_config(f"deny-{ns}", "ValidatingWebhookConfiguration", ns, hook_server["url"] + "/deny",
                             hook_server["ca"]))
    server.kubectl("create", "configmap", "fine", "--from-literal=a=1", "-n", ns)
    cp = server.kubectl("create", "configmap", "bad", "--from-literal=forbidden=1", "-n", ns, check=False)
    assert cp.returncode == 1
    assert cp.stderr.strip() == (f'error: failed to create configmap: admission webhook "deny-{ns}.example.com" '
                                 "denied the request: the key 'forbidden' is not allowed")
    assert server.kubectl("get", "configmap", "bad", "-n", ns, check=False).returncode == 1
    seen = [c["request"] for c in CALLS if c["request"].get("namespace") == ns and c["request"]["name"] == "bad"]
    assert seen and seen[-1]["operation"] == "CREATE" and seen[-1]["userInfo"]["username"] == "kubernetes-admin"
    assert seen[-1]["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert "timeout=10s" in [c["path"] for c in CALLS if c["request"]["name"] == "bad"][-1]
    # other namespaces are not selected: no call, no denial
    server.kubectl("create", "configmap", "bad", "--from-literal=forbidden=1", "-n", "default")
    server.kubectl("delete", "configmap", "bad", "-n", "default")


def test_mutating_webhook_patch_is_applied(server, ns, hook_server, configure):
    configure(webhook_config(f"mutate-{ns}", "MutatingWebhookConfiguration", ns, hook_server["url"] + "/mutate",
                             hook_server["ca"]))
    server.kubectl("create", "configmap", "m", "--from-literal=a=1", "-n", ns)
    cm = server.kubectl_json("get", "configmap", "m", "-n", ns)
    assert cm["metadata"]["labels"] == {"mutated": "yes"}
    assert cm["data"] == {"a": "1"}


@pytest.mark.parametrize("path,ca,message", [
    ("/slow", "ca", 'failed to call webhook: Post "{url}/slow?timeout=1s": context deadline exceeded'),
    ("/garbage", "ca", "received invalid webhook response"),
    ("/wrong-uid", "ca", 'received invalid webhook response: expected response.uid='),
    ("/deny", "wrong_ca", 'failed to call webhook: Post "{url}/deny?timeout=1s": tls: failed to verify certificate'),
])
def test_broken_webhooks_fail_closed_or_are_ignored(server, ns, hook_server, configure, path, ca, message):
    name = f"broken-{ns}"
    configure(webhook_config(name, "ValidatingWebhookConfiguration", ns, hook_server["url"] + path, hook_server[ca],
                             timeoutSeconds=1, failurePolicy="Fail"))
    t0 = time.monotonic()
    cp = server.kubectl("create", "configmap", "x", "--from-literal=a=1", "-n", ns, check=False)
    assert time.monotonic() - t0 < 10
    assert cp.returncode == 1
    want = message.format(url=hook_server["url"])
    assert cp.stderr.startswith('error: failed to create configmap: Internal error occurred: failed calling webhook '
                                f'"{name}.example.com": ')
    assert want in cp.stderr
    configure(webhook_config(name, "ValidatingWebhookConfiguration", ns, hook_server["url"] + path, hook_server[ca],
                             timeoutSeconds=1, failurePolicy="Ignore"))
    server.kubectl("create", "configmap", "x", "--from-literal=a=1", "-n", ns)


def test_nothing_listening_and_a_missing_service(server, ns, hook_server, configure):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    configure(webhook_config(f"gone-{ns}", "ValidatingWebhookConfiguration", ns, f"https://127.0.0.1:{port}/x",
                             hook_server["ca"]))
    cp = server.kubectl("create", "configmap", "x", "-n", ns, check=False)
    assert f'Post "https://127.0.0.1:{port}/x?timeout=10s": dial tcp 127.0.0.1:{port}: connect: connection refused' \
        in cp.stderr
    svc_hook = webhook_config(f"gone-{ns}", "ValidatingWebhookConfiguration", ns, "", hook_server["ca"])
    svc_hook["webhooks"][0]["clientConfig"] = {"service": {"namespace": ns, "name": "no-such-svc", "path": "/v"},
                                               "caBundle": hook_server["ca"]}
    configure(svc_hook)
    cp = server.kubectl("create", "configmap", "x", "-n", ns, check=False)
    assert 'failed calling webhook "gone-' in cp.stderr and 'service "no-such-svc" not found' in cp.stderr
    # the configuration itself is never sent to a webhook: it can always be deleted
    server.kubectl("delete", "validatingwebhookconfiguration", f"gone-{ns}")


def test_dry_run_is_refused_for_webhooks_with_side_effects(server, ns, hook_server, configure):
    configure(webhook_config(f"effects-{ns}", "ValidatingWebhookConfiguration", ns, hook_server["url"] + "/ok",
                             hook_server["ca"], sideEffects="NoneOnDryRun"))
    server.kubectl("create", "configmap", "d", "-n", ns, "--dry-run=server")
    obj = webhook_config(f"effects-{ns}", "ValidatingWebhookConfiguration", ns, hook_server["url"] + "/ok",
                         hook_server["ca"])
    obj["webhooks"][0]["sideEffects"] = "Some"
    cp = server.kubectl("create", "-f", "-", input=json.dumps(obj), check=False)
    assert cp.returncode == 1  # v1 accepts only None and NoneOnDryRun: no webhook with side effects exists
