"""Two real `pocketkube server` processes over one real etcd (ADR 0020): Services created
through both at once, in threads, never share a ClusterIP or a NodePort; the claims are in
etcd under kube-apiserver's keys (/registry/ipaddresses/<ip>, /registry/ranges/servicenodeports),
a requested IP or port the other server handed out is refused with Kubernetes' message, and
a deleted Service's IP and ports can be taken through the other server."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import start_server
from tests.etcdproc import EtcdProcess, etcd_missing
from tests.integration.test_api import Raw

pytestmark = etcd_missing
PER_SERVER = 60


@pytest.fixture
def two_servers(tmp_path):
    etcd = EtcdProcess(str(tmp_path / "etcd"))
    servers = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            servers.append(start_server(str(tmp_path / name), datastore="etcd", controllers=False,
                                        args=("--etcd-servers", etcd.url)))
        yield servers, etcd
    finally:
        for srv in servers:
            srv.stop()
        etcd.stop()


def service(name: str, node_port: bool, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort" if node_port else "ClusterIP", "selector": {"app": name},
                     "ports": [{"port": 80, "targetPort": 8080}], **spec}}


def create(client: Raw, body: dict) -> tuple[int, dict]:
    status, _, reply = client.request("POST", "/api/v1/namespaces/default/services", body)
    return status, reply


def etcdctl(etcd: EtcdProcess, *args: str) -> str:
    tool = shutil.which("etcdctl")
    if tool is None:
        pytest.fail("etcdctl is not installed (scripts/setup installs etcd-client)")
    return subprocess.run([tool, "--endpoints", etcd.url, *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "ETCDCTL_API": "3"}, check=True).stdout


def test_services_created_through_two_servers_at_once_share_no_ip_or_port(two_servers):
    (a, b), etcd = two_servers
    clients = {"a": Raw(a), "b": Raw(b)}
    jobs = [(server, f"svc-{server}-{i}", i % 2 == 0) for i in range(PER_SERVER) for server in "ab"]

    def run(job):
        server, name, node_port = job
        return create(clients[server], service(name, node_port))

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(run, jobs))
    assert [status for status, _ in results] == [201] * len(jobs), [r for r in results if r[0] != 201][:3]

    status, _, listed = clients["a"].request("GET", "/api/v1/namespaces/default/services")
    assert status == 200
    mine = [s for s in listed["items"] if s["metadata"]["name"].startswith("svc-")]
    assert len(mine) == len(jobs)
    ips = [s["spec"]["clusterIP"] for s in mine]
    ports = [p["nodePort"] for s in mine for p in s["spec"]["ports"] if p.get("nodePort")]
    assert len(set(ips)) == len(ips) and "10.96.0.1" not in ips
    assert len(ports) == PER_SERVER and len(set(ports)) == len(ports)

    # Each IP is an IPAddress object naming its Service; the ports are bits of the RangeAllocation.
    keys = set(etcdctl(etcd, "get", "/registry/ipaddresses/", "--prefix", "--keys-only").split())
    assert {f"/registry/ipaddresses/{ip}" for ip in ips} | {"/registry/ipaddresses/10.96.0.1"} <= keys
    one = mine[0]
    claim = json.loads(etcdctl(etcd, "get", f"/registry/ipaddresses/{one['spec']['clusterIP']}", "--print-value-only"))
    assert claim["kind"] == "IPAddress" and claim["spec"]["parentRef"] == {
        "group": "", "resource": "services", "namespace": "default", "name": one["metadata"]["name"]}
    stored = json.loads(etcdctl(etcd, "get", "/registry/ranges/servicenodeports", "--print-value-only"))
    assert stored["kind"] == "RangeAllocation" and stored["range"] == "30000-32767"
    bits = int.from_bytes(base64.b64decode(stored["data"]), "big")
    assert {30000 + i for i in range(bits.bit_length()) if bits >> i & 1} == set(ports)


def test_a_value_the_other_server_holds_is_refused_and_freed_by_a_delete(two_servers):
    (a, b), _ = two_servers
    ca, cb = Raw(a), Raw(b)
    status, first = create(ca, service("first", True))
    assert status == 201, first
    ip, port = first["spec"]["clusterIP"], first["spec"]["ports"][0]["nodePort"]

    status, reply = create(cb, service("same-ip", False, clusterIP=ip))
    assert status == 422
    assert reply["details"]["causes"][0]["message"].endswith(f"failed to allocate IP {ip}: provided IP is already allocated")
    status, reply = create(cb, service("same-port", True, ports=[{"port": 80, "nodePort": port}]))
    assert status == 422
    assert reply["details"]["causes"][0] == {
        "reason": "FieldValueInvalid", "field": "spec.ports[0].nodePort",
        "message": f"Invalid value: {port}: provided port is already allocated"}

    status, _, _ = ca.request("DELETE", "/api/v1/namespaces/default/services/first")
    assert status == 200
    # Server a gives the claims back after the delete; server b then gets both.
    for _ in range(100):
        status, again = create(cb, service("again", True, clusterIP=ip, ports=[{"port": 80, "nodePort": port}]))
        if status == 201:
            break
        assert status == 422, again
        time.sleep(0.05)
    assert status == 201, again
    assert again["spec"]["clusterIP"] == ip and again["spec"]["ports"][0]["nodePort"] == port
