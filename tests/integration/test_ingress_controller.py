"""The Ingress controller process against a real API server, with the real kubectl and Debian's
nginx on free loopback ports (no root, no pods: backends without endpoints answer 503, which is
enough to see where a request goes): the DefaultIngressClass admission, routing by host and
path, Events, a configuration nginx refuses (the last good one keeps serving), nginx killed
(started again), and a clean stop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from pocketkube.ingress import certgen
from tests.conftest import ROOT

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed (scripts/setup does it)")


def free_ports(count: int) -> list[int]:
    """`count` consecutive free loopback ports."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        if first + count > 65000:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as s:
                    s.bind(("0.0.0.0", port))
            return list(range(first, first + count))
        except OSError:
            continue
    raise RuntimeError("no free ports")


def http(port: int, host: str, path: str = "/") -> int:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            return int(s.recv(64).split()[1])
    except OSError:
        return 0


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def until(check, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout}s")
        time.sleep(0.1)


def steady(check, what: str, times: int = 3):
    """True `times` polls in a row (old nginx workers may answer right after a reload)."""
    streak = [0]

    def test():
        streak[0] = streak[0] + 1 if check() else 0
        return streak[0] >= times
    until(test, what)


@pytest.fixture(scope="module")
def controller(server, tmp_path_factory):
    work = str(tmp_path_factory.mktemp("ingress-work"))
    http_port, https_port, health, default, _, webhook = free_ports(6)
    ca, cert, key = certgen.generate(["localhost"])
    for name, content in (("ca", ca), ("cert", cert), ("key", key)):
        with open(os.path.join(work, name), "wb") as f:
            f.write(content)
    server.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "nginx", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "k8s.io/ingress-nginx"}}))
    server.kubectl("create", "configmap", "ingress-config", "-n", "default")
    log = open(os.path.join(work, "controller.log"), "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pocketkube.cli.main", "ingress-controller", "--kubeconfig", server.kubeconfig,
         f"--http-port={http_port}", f"--https-port={https_port}", f"--healthz-port={health}",
         f"--default-server-port={default}", f"--work-dir={work}", "--configmap=default/ingress-config",
         f"--validating-webhook=127.0.0.1:{webhook}", f"--validating-webhook-certificate={work}/cert",
         f"--validating-webhook-key={work}/key"],
        stdout=log, stderr=log, cwd=ROOT, start_new_session=True)
    try:
        until(lambda: http(http_port, "nothing.example") == 404, "the controller serving")
        yield {"proc": proc, "http": http_port, "health": health, "work": work, "webhook": webhook}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # our own process group
                proc.wait()
        log.close()


def test_default_class_routing_and_events(server, controller, ns):
    server.kubectl("create", "service", "clusterip", "web", "--tcp=80:8080", "-n", ns)
    server.kubectl("create", "ingress", "web", "-n", ns, "--rule=web.example/app*=web:80",
                   "--rule=web.example/gone*=missing:80")
    ing = server.kubectl_json("get", "ingress", "web", "-n", ns)
    assert ing["spec"]["ingressClassName"] == "nginx"  # the DefaultIngressClass admission
    port = controller["http"]
    steady(lambda: http(port, "web.example", "/app/x") == 503, "a Service without endpoints answers 503")
    assert http(port, "web.example", "/elsewhere") == 404
    assert http(port, "other.example", "/app") == 404
    describe = server.kubectl("describe", "ingress", "web", "-n", ns).stdout
    until(lambda: "Scheduled for sync" in (d := server.kubectl("describe", "ingress", "web", "-n", ns).stdout)
          and f'Service "{ns}/missing" not found' in d, "the Sync and Backend Events")
    # an Ingress of another class is left alone; an explicit class that is ours is taken
    server.kubectl("create", "ingress", "theirs", "-n", ns, "--class=other", "--rule=theirs.example/*=web:80")
    time.sleep(0.5)
    assert http(port, "theirs.example", "/") == 404
    assert "Scheduled for sync" not in server.kubectl("describe", "ingress", "theirs", "-n", ns).stdout
    assert describe


def test_rejected_configuration_keeps_the_last_good_one(server, controller, ns):
    port = controller["http"]
    server.kubectl("create", "service", "clusterip", "api", "--tcp=80:8080", "-n", ns)
    server.kubectl("create", "ingress", "api", "-n", ns, "--rule=api.example/*=api:80")
    steady(lambda: http(port, "api.example") == 503, "api.example routed")
    conf = os.path.join(controller["work"], "nginx.conf")
    good = open(conf).read()
    server.kubectl("patch", "configmap", "ingress-config", "-n", "default", "-p",
                   json.dumps({"data": {"proxy-body-size": "lots"}}))
    server.kubectl("create", "ingress", "api2", "-n", ns, "--rule=api2.example/*=api:80")
    until(lambda: "RejectedConfiguration" in server.kubectl("describe", "ingress", "api2", "-n", ns).stdout,
          "the rejection reported on the Ingress that changed")
    assert open(conf).read() == good                # the last good configuration stays
    assert http(port, "api.example") == 503          # and keeps serving
    assert http(port, "api2.example") == 404
    server.kubectl("patch", "configmap", "ingress-config", "-n", "default", "--type=json", "-p",
                   json.dumps([{"op": "remove", "path": "/data/proxy-body-size"}]))
    steady(lambda: http(port, "api2.example") == 503, "the next good configuration is loaded")


def test_nginx_killed_is_started_again(controller):
    with open(os.path.join(controller["work"], "nginx.pid")) as f:
        master = int(f.read().strip())
    children = open(f"/proc/{master}/stat").read().split()
    assert int(children[3]) == controller["proc"].pid   # nginx is the controller's own child
    os.kill(master, signal.SIGKILL)

    def new_master() -> bool:
        with open(os.path.join(controller["work"], "nginx.pid")) as f:
            text = f.read().strip()
        return bool(text) and int(text) != master
    until(new_master, "a new nginx master")
    until(lambda: http(controller["http"], "nothing.example") == 404, "nginx serving again")
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _parent(int(pid)) == master], \
        "the killed master's workers are gone"
    with socket.create_connection(("127.0.0.1", controller["health"]), timeout=3) as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert s.recv(64).split()[1] == b"200"


def _review(controller, ingress: dict, namespace: str) -> dict:
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=os.path.join(controller["work"], "ca"))
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": "u-1", "namespace": namespace, "operation": "CREATE", "object": ingress}})
    req = urllib.request.Request(f"https://localhost:{controller['webhook']}/networking/v1/ingresses",
                                 data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=context, timeout=10) as resp:
        return json.loads(resp.read())["response"]


def _ingress(name: str, host: str, path: str = "/", **spec) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": host, "http": {"paths": [
                {"path": path, "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}], **spec}}


def test_admission_webhook_refuses_conflicts_and_nginx_errors(server, controller, ns):
    server.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(_ingress("taken", "taken.example")))
    steady(lambda: http(controller["http"], "taken.example") == 503, "taken.example routed")
    answer = _review(controller, _ingress("second", "taken.example"), ns)
    assert answer == {"uid": "u-1", "allowed": False, "status": {
        "status": "Failure", "reason": "BadRequest", "code": 400,
        "message": f'host "taken.example" path "/" is already defined in Ingress {ns}/taken, which is older; '
                   f'this path is ignored'}}
    assert _review(controller, _ingress("fine", "fine.example"), ns) == {"uid": "u-1", "allowed": True}
    assert _review(controller, {**_ingress("theirs", "taken.example"),
                                "spec": {**_ingress("x", "taken.example")["spec"], "ingressClassName": "other"}},
                   ns)["allowed"]
    # the Ingress already stored may change itself
    assert _review(controller, _ingress("taken", "taken.example", "/other"), ns)["allowed"]


def test_kube_webhook_certgen_create_and_patch(server, ns):
    hook = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": f"{ns}-admission"},
            "webhooks": [{"name": "validate.nginx.ingress.kubernetes.io", "sideEffects": "None",
                          "admissionReviewVersions": ["v1"], "failurePolicy": "Ignore",
                          "clientConfig": {"service": {"name": "x", "namespace": ns, "path": "/"}}}]}
    server.kubectl("apply", "-f", "-", input=json.dumps(hook))

    def certgen_run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pocketkube.ingress.certgen", "--kubeconfig", server.kubeconfig,
                               *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    created = certgen_run("create", f"--host=x,x.{ns}.svc", f"--namespace={ns}", "--secret-name=admission")
    assert created.returncode == 0, created.stderr
    secret = server.kubectl_json("get", "secret", "admission", "-n", ns)
    assert set(secret["data"]) == {"ca", "cert", "key"}
    again = certgen_run("create", "--host=x", f"--namespace={ns}", "--secret-name=admission")
    assert again.returncode == 0 and "already exists" in again.stderr
    assert server.kubectl_json("get", "secret", "admission", "-n", ns)["data"] == secret["data"]
    patched = certgen_run("patch", f"--webhook-name={ns}-admission", f"--namespace={ns}", "--patch-mutating=false",
                          "--secret-name=admission", "--patch-failure-policy=Fail")
    assert patched.returncode == 0, patched.stderr
    [webhook] = server.kubectl_json("get", "validatingwebhookconfiguration", f"{ns}-admission")["webhooks"]
    assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca"] and webhook["failurePolicy"] == "Fail"
    server.kubectl("delete", "validatingwebhookconfiguration", f"{ns}-admission")
    missing = certgen_run("patch", "--webhook-name=nope", f"--namespace={ns}", "--secret-name=admission")
    assert missing.returncode == 1 and "not found" in missing.stderr
