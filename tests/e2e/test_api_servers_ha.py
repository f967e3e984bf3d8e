"""`pocketkube up --datastore etcd --etcd-members 3 --api-servers 2` on a real machine (root),
real processes all through (ADR 0018, 0020), a cluster of its own beside the session's:

- `status` lists both servers, apiserver-lb and which server holds the Leases;
- 2 x 100 Services created at once through both servers' own ports, a third of them
  NodePort: no ClusterIP or NodePort handed out twice;
- one etcd member SIGKILLed (by its PID) under a stream of writes through the API: every
  acknowledged write is stored and the API keeps serving;
- the server holding kube-controller-manager's Lease SIGKILLed (by its PID): another
  identity holds the Lease within the lease duration and the controllers act again (a
  Deployment created after the kill gets a Ready pod and its Service's endpoints);
- `down` stops every process and leaves nothing behind.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import ssl
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from pocketkube.cli import up as up_cmd
from tests.e2e.conftest import Cluster, _free_port
from tests.e2e.test_up_down import alive, wait_until, what_remains

pytestmark = pytest.mark.e2e
LEASE_DURATION = 15  # core/leaderelection.py, upstream's


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not installed (scripts/setup installs etcd-server)")
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    base = tmp_path_factory.mktemp("pk-ha")
    name = "ha-" + uuid.uuid4().hex[:6]
    env = {**os.environ, "KUBECONFIG": str(base / "kubeconfig"), "KUBECACHEDIR": str(base / "kubecache"),
           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
    handle = Cluster(name=name, nodes=1, port=_free_port(), data_dir=str(base / "data"),
                     kubeconfig=str(base / "kubeconfig"), env=env)
    try:
        cp = handle.pocketkube("up", "--name", name, "--nodes", "1", "--port", str(handle.port), "--data-dir",
                               handle.data_dir, "--wait", "120", "--datastore", "etcd", "--etcd-members", "3",
                               "--api-servers", "2", timeout=300)
        if cp.returncode != 0:
            pytest.fail(f"pocketkube up failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
        yield handle
    finally:
        pids = handle.pids()
        cp = handle.down()
        remains = what_remains(handle)
        if cp.returncode != 0 or up_cmd.leftovers(name):
            up_cmd.teardown(name, handle.kubeconfig)
            print(f"pocketkube down --name {name} failed:\n{cp.stdout}\n{cp.stderr}", file=sys.stderr)
        assert cp.returncode == 0 and remains == [] and not any(alive(p) for p in pids.values()), \
            (cp.stdout + cp.stderr, remains)


class Api:
    """HTTPS with the admin token to one port (a server's own, or apiserver-lb's)."""

    def __init__(self, record: up_cmd.ClusterRecord, port: int):
        self.port = port
        self.ctx = ssl.create_default_context(cafile=os.path.join(record.server_dir, "pki", "ca.crt"))
        with open(os.path.join(record.server_dir, "token")) as f:
            self.token = f.read().strip()

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body),
                         headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                                  "Accept": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        return resp.status, (json.loads(data) if data else {})


def lease_holder(api: Api, lease: str) -> str:
    try:
        status, body = api.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{lease}")
    except OSError:
        return ""
    return (body.get("spec") or {}).get("holderIdentity", "") if status == 200 else ""


def test_status_names_both_servers_the_front_and_the_lease_holder(ha):
    record = up_cmd.ClusterRecord.load(ha.name)
    assert len(record.api_ports) == 2
    pids = ha.pids()
    assert {"server-0", "server-1", "apiserver-lb", "etcd-0", "etcd-1", "etcd-2"} <= set(pids)
    lb = Api(record, record.port)
    wait_until(lambda: lease_holder(lb, "kube-controller-manager"), "a kube-controller-manager Lease holder")

    def status_with_holder() -> str | None:
        out = ha.pocketkube("status", "--name", ha.name).stdout
        return out if "holds kube-controller-manager" in out else None

    out = wait_until(status_with_holder, "status naming the Lease holder", 30, 1)
    for i, port in enumerate(record.api_ports):
        assert f"API server server-{i}: pid {pids[f'server-{i}']}, https://127.0.0.1:{port}" in out
    assert f"apiserver-lb: pid {pids['apiserver-lb']}, {record.url}" in out


def test_services_created_through_both_servers_at_once_share_no_ip_or_port(ha):
    record = up_cmd.ClusterRecord.load(ha.name)
    apis = [Api(record, port) for port in record.api_ports]
    jobs = [(i, n) for n in range(100) for i in range(2)]

    def create(job):
        i, n = job
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"dup-{i}-{n}"},
                "spec": {"type": "NodePort" if n % 3 == 0 else "ClusterIP", "selector": {"app": "none"},
                         "ports": [{"port": 80}]}}
        return apis[i].request("POST", "/api/v1/namespaces/default/services", body)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(create, jobs))
    try:
        assert [status for status, _ in results] == [201] * len(jobs), [r for r in results if r[0] != 201][:3]
        services = [svc for _, svc in results]
        ips = [s["spec"]["clusterIP"] for s in services]
        ports = [p["nodePort"] for s in services for p in s["spec"]["ports"] if p.get("nodePort")]
        assert len(set(ips)) == len(ips) == 200
        assert len(set(ports)) == len(ports) == 68
        # What each server reads agrees with what was handed out.
        _, listed = apis[1].request("GET", "/api/v1/namespaces/default/services")
        stored = {s["metadata"]["name"]: s["spec"]["clusterIP"] for s in listed["items"]}
        assert all(stored[s["metadata"]["name"]] == s["spec"]["clusterIP"] for s in services)
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda job: apis[job[0]].request(
                "DELETE", f"/api/v1/namespaces/default/services/dup-{job[0]}-{job[1]}"), jobs))


def test_an_etcd_member_killed_under_writes_loses_no_acknowledged_write(ha):
    record = up_cmd.ClusterRecord.load(ha.name)
    api = Api(record, record.port)
    acked: list[str] = []
    failed: list[str] = []
    killed = threading.Event()
    after_kill: list[str] = []

    def writer():
        for n in range(400):
            name = f"stream-{n}"
            try:
                status, _ = api.request("POST", "/api/v1/namespaces/default/configmaps",
                                        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                                         "data": {"n": str(n)}})
            except OSError as exc:
                failed.append(f"{name}: {exc}")
                continue
            if status == 201:
                acked.append(name)
                if killed.is_set():
                    after_kill.append(name)
            else:
                failed.append(f"{name}: {status}")

    thread = threading.Thread(target=writer)
    thread.start()
    wait_until(lambda: len(acked) >= 50, "50 writes before the kill", 120)
    victim = ha.pids()["etcd-0"]  # the member the API servers' first URL names
    os.kill(victim, signal.SIGKILL)
    killed.set()
    thread.join(300)
    assert not thread.is_alive()
    assert after_kill, f"no write was acknowledged after etcd-0 was killed: {failed[-5:]}"
    _, listed = api.request("GET", "/api/v1/namespaces/default/configmaps")
    stored = {c["metadata"]["name"]: c["data"]["n"] for c in listed["items"] if c["metadata"]["name"].startswith("stream-")}
    assert [n for n in acked if stored.get(n) != n.split("-")[1]] == []
    for name in stored:
        api.request("DELETE", f"/api/v1/namespaces/default/configmaps/{name}")


def test_killing_the_leader_hands_the_lease_over_and_controllers_resume(ha):
    record = up_cmd.ClusterRecord.load(ha.name)
    lb = Api(record, record.port)
    holder = wait_until(lambda: lease_holder(lb, "kube-controller-manager"), "a Lease holder")
    identities = {}
    for process, port, _ in record.api_servers():
        with open(os.path.join(record.server_dir, f"leader-identity.{port}")) as f:
            identities[f.read().strip()] = process
    leader = identities[holder]
    os.kill(ha.pids()[leader], signal.SIGKILL)
    # Within the lease duration (plus the retry period and slack for a busy machine) someone else holds it.

    def another_holder() -> str | None:
        now = lease_holder(lb, "kube-controller-manager")
        return now if now and now != holder else None

    new_holder = wait_until(another_holder, "another kube-controller-manager Lease holder", LEASE_DURATION + 30, 0.5)
    assert new_holder != holder
    ha.kubectl("create", "deployment", "after-kill", "--image=nginx")
    ha.kubectl("expose", "deployment", "after-kill", "--port=80")
    try:
        wait_until(lambda: ha.kubectl("get", "pod", "-l", "app=after-kill", "-o", "name").stdout.strip(),
                   "the Deployment's pod (the ReplicaSet controllers of the new leader)", 60, 0.5)
        ha.kubectl("wait", "--for=condition=Ready", "pod", "-l", "app=after-kill", "--timeout=120s", timeout=150)
        pod_ip = ha.kubectl("get", "pod", "-l", "app=after-kill", "-o", "jsonpath={.items[0].status.podIP}").stdout
        wait_until(lambda: pod_ip in ha.kubectl("get", "endpoints", "after-kill", "-o",
                                                "jsonpath={.subsets[*].addresses[*].ip}").stdout,
                   "the Service's endpoints", 60, 0.5)
    finally:
        ha.kubectl("delete", "deployment,service", "after-kill", "--wait=false", check=False)
