"""`pocketkube explain` and `pocketkube map` on the real cluster: broken Services a user really
writes (a misspelt selector, a targetPort nothing listens on, a readiness probe that fails), the
findings the real CLI prints for them, the fix it offers applied with the real kubectl, and
the map drawing the Services and their endpoints."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import ROOT
from tests.e2e.test_services import until

pytestmark = pytest.mark.e2e

NGINX = {"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"}]}


def deployment(name: str, labels: dict, container: dict, replicas: int = 1) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 0, "containers": [container]}}}}


def service(name: str, selector: dict, target_port) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": target_port}]}}


@pytest.fixture(scope="module")
def broken(cluster):
    """nginx pods (app=nginx) and a pod that never gets Ready, behind a healthy Service and three
    broken ones."""
    sick = dict(NGINX, readinessProbe={"httpGet": {"path": "/healthz-missing", "port": 80}, "periodSeconds": 1})
    objects = [deployment("xp-nginx", {"app": "xp-nginx"}, NGINX, replicas=2),
               deployment("xp-sick", {"app": "xp-sick"}, sick),
               service("xp-web", {"app": "xp-nginx"}, 80),
               service("xp-typo", {"app": "xp-ngnix"}, 80),
               service("xp-port", {"app": "xp-nginx"}, 8080),
               service("xp-sick", {"app": "xp-sick"}, 80)]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    cluster.kubectl("rollout", "status", "deployment/xp-nginx", "--timeout=90s", timeout=100)
    until(lambda: "Readiness probe failed" in cluster.kubectl(
        "get", "events", "--field-selector", "reason=Unhealthy").stdout, "the sick pod's probe failed")
    yield
    cluster.kubectl("delete", "deployment/xp-nginx", "deployment/xp-sick", "service/xp-web", "service/xp-typo",
                    "service/xp-port", "service/xp-sick", "--wait=false", check=False)


def explain(cluster, target: str, *extra: str):
    return cluster.pocketkube("explain", target, *extra)


def test_a_healthy_service_is_one_line(cluster, broken):
    cp = explain(cluster, "svc/xp-web")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert re.fullmatch(r"Service default/xp-web is healthy: ClusterIP 10(\.\d+){3}, 80/TCP -> 80, "
                        r"2 of 2 selected pods Ready\.\n", cp.stdout), cp.stdout


def test_a_misspelt_selector_names_the_pods_with_similar_labels(cluster, broken):
    cp = explain(cluster, "svc/xp-typo")
    assert cp.returncode == 1, cp.stdout + cp.stderr
    out = " ".join(cp.stdout.split())
    assert "error spec.selector: selector app=xp-ngnix matches no pod in namespace default" in out
    assert "have app=xp-nginx where the selector wants app=xp-ngnix" in out
    assert "fix: kubectl patch service xp-typo -n default -p '{\"spec\":{\"selector\":{\"app\":\"xp-nginx\"}}}'" in out


def test_a_target_port_nothing_listens_on_and_its_fix(cluster, broken):
    cp = explain(cluster, "svc/xp-port", "-o", "json")
    assert cp.returncode == 1, cp.stdout + cp.stderr
    report = json.loads(cp.stdout)
    found = {f["code"]: f for f in report["findings"]}
    f = found["target-port-not-listening"]
    assert f["level"] == "error" and f["field"] == "spec.ports[0].targetPort"
    # asked of the pods' own network namespaces: nginx listens on 80
    assert "nothing listens there" in f["message"] and "80/TCP" in f["message"]
    assert "target-port-not-declared" in found  # the pods declare 80 (http), not 8080
    # the offered fix, run as is, makes the Service healthy
    argv = shlex.split(f["fix"])
    assert argv[:5] == ["kubectl", "patch", "service", "xp-port", "-n"]
    cluster.kubectl(*argv[1:])
    cp = until(lambda: (c := explain(cluster, "svc/xp-port")).returncode == 0 and c, "xp-port healthy after the fix")
    assert "is healthy" in cp.stdout


def test_a_failing_readiness_probe_is_quoted(cluster, broken):
    cp = explain(cluster, "svc/xp-sick")
    assert cp.returncode == 1, cp.stdout + cp.stderr
    out = " ".join(cp.stdout.split())
    assert "but none is Ready, so the Service has no ready endpoints" in out
    assert "readiness probe fails: Readiness probe failed: HTTP probe failed with statuscode: 404" in out
    pod = json.loads(cluster.kubectl("get", "pods", "-l", "app=xp-sick", "-o", "json").stdout)["items"][0]
    cp = explain(cluster, f"pod/{pod['metadata']['name']}")
    assert cp.returncode == 1 and "status.conditions[Ready]: not Ready" in cp.stdout
    assert "selected by Service(s) xp-sick" in " ".join(cp.stdout.split())
    cp = explain(cluster, "endpoints/xp-sick")
    assert cp.returncode == 1 and cp.stdout.startswith("Endpoints default/xp-sick:")


def test_the_map_draws_services_and_the_endpoints_they_pick(cluster, broken):
    cp = cluster.pocketkube("map", "-n", "default")
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert all(len(line) <= 100 for line in lines)
    pods = json.loads(cluster.kubectl("get", "pods", "-l", "app=xp-nginx", "-o", "json").stdout)["items"]
    for pod in pods:
        ip = pod["status"]["podIP"]
        assert any(line.startswith(("    ├─▶ ", "    └─▶ ")) and f"{ip}:80 " in line
                   and pod["metadata"]["name"] in line for line in lines), cp.stdout
    start = lines.index(next(line for line in lines if line.startswith("  default/xp-typo ")))
    assert lines[start + 1] == "    └─✗ no endpoints (selector app=xp-ngnix)"
    start = lines.index(next(line for line in lines if line.startswith("  default/xp-sick ")))
    assert lines[start + 1].startswith("    └─▷ ") and lines[start + 1].endswith("not ready")


async def test_the_map_page_in_chromium_draws_ready_pods_and_follows_a_scale_down(cluster, broken, tmp_path):
    from tests.integration.test_map_page import CHROMIUM, Browser

    if CHROMIUM is None:
        pytest.fail("chromium is not installed (scripts/setup installs it)")
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        deployment("xp-page", {"app": "xp-page"}, NGINX, replicas=2), service("xp-page", {"app": "xp-page"}, 80)]}))
    cluster.kubectl("rollout", "status", "deployment/xp-page", "--timeout=90s", timeout=100)
    ui = subprocess.Popen([sys.executable, "-m", "pocketkube.cli.main", "ui", "--port", "0", "-n", "default"],
                          env=cluster.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          start_new_session=True)
    browser = Browser(str(tmp_path / "profile"))
    pods = "document.querySelectorAll('.pod[data-key^=\"default/xp-page-\"][data-ready=\"true\"]').length"
    edges = "document.querySelectorAll('.edge[data-from=\"default/xp-page\"][data-ready=\"true\"]').length"
    try:
        url = ui.stdout.readline().split(" at ", 1)[1].split()[0]
        await browser.connect()
        await browser.call("Page.navigate", url=url)
        await browser.until(f"{pods} === 2 && {edges} === 2", "two ready pods and the Service's lines to them")
        cluster.kubectl("scale", "deployment", "xp-page", "--replicas=1")
        scaled = time.monotonic()
        await browser.until(f"{pods} === 1 && {edges} === 1", "the scale-down drawn")
        print(f"scale-down drawn {time.monotonic() - scaled:.2f}s after kubectl scale returned")
        await browser.click('.service[data-key="default/xp-typo"]')
        text = await browser.until(
            "document.querySelector('#findings [data-code=\"selector-matches-no-pod\"]')?.textContent",
            "xp-typo's findings")
        assert "app=xp-nginx where the selector wants app=xp-ngnix" in text
    finally:
        await browser.close()
        ui.terminate()
        ui.wait(10)
        cluster.kubectl("delete", "deployment/xp-page", "service/xp-page", "--wait=false", check=False)
