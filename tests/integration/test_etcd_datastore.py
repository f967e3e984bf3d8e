"""`pocketkube server --datastore etcd`: a real etcd (tests/etcdproc.py), the real kubectl and
etcdctl. Objects land under kube-apiserver's key layout, resourceVersions are etcd revisions,
watches and deletes work, a paginated list continues at its first page's revision, and a
continue token whose revision etcd compacted away is 410 Expired."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, start_server
from tests.etcdproc import EtcdProcess, etcd_missing
from tests.integration.test_api import Raw

pytestmark = etcd_missing
ETCDCTL = shutil.which("etcdctl")


@pytest.fixture
def cluster(tmp_path):
    etcd = EtcdProcess(str(tmp_path / "etcd"))
    (tmp_path / "server").mkdir()
    try:
        srv = start_server(str(tmp_path / "server"), datastore="etcd", args=("--etcd-servers", etcd.url))
        try:
            yield srv, etcd
        finally:
            srv.stop()
    finally:
        etcd.stop()


def etcdctl(etcd: EtcdProcess, *args: str) -> str:
    if ETCDCTL is None:
        pytest.fail("etcdctl is not installed (scripts/setup installs etcd-client)")
    cp = subprocess.run([ETCDCTL, "--endpoints", etcd.url, *args], capture_output=True, text=True, timeout=30,
                        env={**os.environ, "ETCDCTL_API": "3"}, check=True)
    return cp.stdout


def test_kubectl_crud_and_watch_land_in_etcd_under_the_kube_layout(cluster, tmp_path):
    srv, etcd = cluster
    srv.kubectl("create", "namespace", "shop")
    srv.kubectl("-n", "shop", "create", "deployment", "web", "--image=nginx")
    srv.kubectl("-n", "shop", "create", "service", "clusterip", "web", "--tcp=80:8080")
    srv.kubectl("-n", "shop", "create", "configmap", "cfg", "--from-literal=a=1")

    keys = etcdctl(etcd, "get", "/registry/services/specs/", "--prefix", "--keys-only").split()
    assert "/registry/services/specs/shop/web" in keys and "/registry/services/specs/default/kubernetes" in keys
    assert etcdctl(etcd, "get", "/registry/deployments/shop/web", "--keys-only").split() == [
        "/registry/deployments/shop/web"]
    assert etcdctl(etcd, "get", "/registry/namespaces/shop", "--keys-only").split() == ["/registry/namespaces/shop"]

    # resourceVersion is the etcd key's mod_revision; the stored value is the object.
    cm = srv.kubectl_json("-n", "shop", "get", "configmap", "cfg")
    stored = json.loads(etcdctl(etcd, "get", "/registry/configmaps/shop/cfg", "-w", "json"))
    assert int(cm["metadata"]["resourceVersion"]) == stored["kvs"][0]["mod_revision"]
    assert srv.kubectl("-n", "shop", "get", "svc", "web", "-o", "jsonpath={.spec.ports[0].targetPort}").stdout == "8080"
    names = srv.kubectl("get", "configmaps", "-A", "-o", "name").stdout.split()
    assert "configmap/cfg" in names

    # A watch (kubectl get -w) sees the changes made after it listed.
    out = open(tmp_path / "watch.out", "w+")
    watcher = subprocess.Popen([shutil.which("kubectl"), "-n", "shop", "get", "configmaps", "-w",
                                "--output-watch-events"],
                               stdout=out, stderr=subprocess.STDOUT, env=srv.env, start_new_session=True)

    def wait_for_output(word: str) -> list[str]:
        for _ in range(600):
            out.seek(0)
            lines = out.read().splitlines()
            if any(line.split()[:2] == [word, "cfg"] for line in lines if line.strip()):
                return lines
            time.sleep(0.05)
        pytest.fail(f"kubectl get -w showed no {word} event: {lines}")

    try:
        wait_for_output("ADDED")
        srv.kubectl("-n", "shop", "label", "configmap", "cfg", "seen=yes")
        wait_for_output("MODIFIED")
        srv.kubectl("-n", "shop", "delete", "configmap", "cfg")
        wait_for_output("DELETED")
    finally:
        os.killpg(watcher.pid, signal.SIGTERM)
        watcher.wait(10)
    assert etcdctl(etcd, "get", "/registry/configmaps/shop/cfg", "--keys-only").strip() == ""

    srv.kubectl("-n", "shop", "delete", "service", "web")
    assert "/registry/services/specs/shop/web" not in etcdctl(etcd, "get", "/registry/services/specs/", "--prefix",
                                                               "--keys-only").split()


def test_a_service_and_its_cluster_ip_claim_are_one_etcd_revision(cluster):
    """ADR 0025: one transaction for both keys, one revision; the Service's resourceVersion is
    it, and a watch resumed there (or just before) sees each Service event exactly once."""
    srv, etcd = cluster
    srv.kubectl("create", "service", "clusterip", "one", "--tcp=80:8080")
    svc = srv.kubectl_json("get", "service", "one")
    ip, rv = svc["spec"]["clusterIP"], int(svc["metadata"]["resourceVersion"])
    [spec] = json.loads(etcdctl(etcd, "get", "/registry/services/specs/default/one", "-w", "json"))["kvs"]
    [claim] = json.loads(etcdctl(etcd, "get", f"/registry/ipaddresses/{ip}", "-w", "json"))["kvs"]
    assert spec["create_revision"] == spec["mod_revision"] == claim["create_revision"] == claim["mod_revision"] == rv
    assert json.loads(base64.b64decode(claim["value"]))["spec"]["parentRef"]["name"] == "one"
    srv.kubectl("label", "service", "one", "seen=yes")

    def events_after(revision: int) -> list[tuple[str, str]]:
        out = srv.kubectl("get", "--raw", "/api/v1/namespaces/default/services?watch=1&timeoutSeconds=2"
                          f"&resourceVersion={revision}").stdout
        return [(e["type"], e["object"]["metadata"]["name"]) for e in map(json.loads, out.splitlines())]

    assert events_after(rv - 1) == [("ADDED", "one"), ("MODIFIED", "one")]
    assert events_after(rv) == [("MODIFIED", "one")]


def test_continue_reads_at_the_first_pages_revision_and_expires_after_compaction(cluster):
    srv, etcd = cluster
    raw = Raw(srv)
    srv.kubectl("create", "namespace", "pages")
    base = "/api/v1/namespaces/pages/configmaps"
    for index in range(6):
        status, _, _ = raw.request("POST", base, {"apiVersion": "v1", "kind": "ConfigMap",
                                                  "metadata": {"name": f"c{index}"}})
        assert status == 201
    status, _, first = raw.request("GET", f"{base}?limit=3")
    assert status == 200
    names = [item["metadata"]["name"] for item in first["items"]]
    token = first["metadata"]["continue"]
    # Changes after the first page are not in the rest of this list: it is one snapshot.
    assert raw.request("DELETE", f"{base}/c4")[0] == 200
    assert raw.request("POST", base, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c9"}})[0] == 201
    while token:
        status, _, page = raw.request("GET", f"{base}?limit=3&continue={token}")
        assert status == 200
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        names += [item["metadata"]["name"] for item in page["items"]]
        token = page["metadata"].get("continue")
    assert names == ["c0", "c1", "c2", "c3", "c4", "c5", "kube-root-ca.crt"]

    # Once etcd compacted that revision, the token is 410 Expired with an inconsistent one.
    status, _, first = raw.request("GET", f"{base}?limit=2")
    revision = json.loads(etcdctl(etcd, "get", "/registry/namespaces/pages", "-w", "json"))["header"]["revision"]
    raw.request("POST", base, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c10"}})
    etcdctl(etcd, "compaction", str(revision + 1))
    status, _, body = raw.request("GET", f"{base}?limit=2&continue={first['metadata']['continue']}")
    assert (status, body["reason"]) == (410, "Expired")
    assert body["message"].startswith("The provided continue parameter is too old")
    status, _, rest = raw.request("GET", f"{base}?continue={body['metadata']['continue']}")
    assert status == 200
    # The rest of the current state after the first page (c0, c1), c10 included.
    assert [item["metadata"]["name"] for item in rest["items"]] == ["c10", "c2", "c3", "c5", "c9", "kube-root-ca.crt"]


def test_the_server_carries_on_after_etcd_restarts(cluster):
    """etcd killed (SIGKILL, by PID) and started again on its data: the server's watch cache
    re-lists and re-watches, so what was written before is there and new writes are served."""
    srv, etcd = cluster
    srv.kubectl("create", "configmap", "before", "--from-literal=a=1")
    etcd.kill()
    etcd.start()
    for _ in range(100):  # the first writes may fail while the server reconnects
        if srv.kubectl("create", "configmap", "after", "--from-literal=a=1", check=False).returncode == 0:
            break
        time.sleep(0.1)
    names = srv.kubectl("get", "configmaps", "-o", "name").stdout.split()
    assert {"configmap/before", "configmap/after"} <= set(names)
    srv.kubectl("delete", "configmap", "before")
    assert "configmap/before" not in srv.kubectl("get", "configmaps", "-o", "name").stdout.split()


def test_a_server_whose_etcd_does_not_answer_says_so_and_exits(tmp_path):
    """Nothing listens at --etcd-servers: after the start-up wait the server prints one error
    line naming the endpoint (not a traceback) and exits 1."""
    (tmp_path / "server").mkdir()
    cp = subprocess.run([sys.executable, "-m", "pocketkube.cli.main", "server", "--data-dir", str(tmp_path / "server"),
                         "--port", "0", "--datastore", "etcd", "--etcd-servers", "http://127.0.0.1:1"],
                        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert cp.returncode == 1, cp.stderr
    assert "error: etcd is not reachable at http://127.0.0.1:1" in cp.stderr
    assert "Traceback" not in cp.stderr
