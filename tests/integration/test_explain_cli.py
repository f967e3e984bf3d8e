"""`pocketkube explain` as a user runs it, against the real API server and its controllers, with
objects made by the real kubectl: no node runs here, so pods stay unscheduled and what explain
finds is what the API holds (the listening checks need a real cluster: tests/e2e/test_explain.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def explain(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pocketkube.cli.main", "explain", *args], env=server.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_an_ingress_without_controller_and_a_backend_without_ready_endpoints(server, ns):
    server.kubectl("create", "deployment", "web", "--image=nginx", "--port=80", "-n", ns)
    server.kubectl("expose", "deployment", "web", "--port=80", "-n", ns)
    server.kubectl("create", "secret", "generic", "not-tls", "--from-literal=a=b", "-n", ns)
    server.kubectl("create", "ingress", "site", "--rule=shop.example/*=web:80,tls=not-tls",
                   "--rule=shop.example/api=gone:80", "-n", ns)
    cp = explain(server, "ingress/site", "-n", ns, "-o", "json")
    assert cp.returncode == 1, cp.stderr
    found = {f["code"]: f for f in json.loads(cp.stdout)["findings"]}
    assert found["no-controller"]["fix"] == "pocketkube addons enable ingress"
    backends = [f for f in json.loads(cp.stdout)["findings"] if f["code"] == "backend"]
    assert {f["field"] for f in backends} == {"spec.rules[0].http.paths[0].backend",
                                              "spec.rules[0].http.paths[1].backend"}
    assert any(f'Service "{ns}/gone" not found' in f["message"] for f in backends)
    assert any(f'Service "{ns}/web" has no ready endpoints' in f["message"] for f in backends)
    assert "is of type Opaque, not kubernetes.io/tls" in found["tls-secret"]["message"]


def test_exit_codes_and_messages(server, ns):
    cp = explain(server, "svc/nope", "-n", ns)
    assert cp.returncode == 1 and f'Service "nope" not found in namespace "{ns}"' in cp.stdout
    cp = explain(server, "deploy/web")
    assert cp.returncode == 2 and "expected svc/NAME, ingress/NAME, pod/NAME or endpoints/NAME" in cp.stderr
    cp = explain(server, "svc/x", "--kubeconfig", "/nonexistent")
    assert cp.returncode == 2 and cp.stderr.startswith("error:")
