"""`pocketkube up --datastore etcd` on a real machine (root): the supervisor runs one etcd
member over TLS with the cluster's etcd CA, the API server keeps the cluster in it under
kube-apiserver's key layout (etcdctl with the API server's client certificate shows it), the
nodes come up Ready, `status` names etcd, and `down` stops etcd and removes its data. The
server reaches etcd on the member's unix socket in the data dir (mode 0700); a member killed
by SIGKILL is started again by the supervisor despite the socket it left. The session's shared
cluster (SQLite) is taken down for this test and brought back after it."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess

import pytest

from pocketkube.cli import up as up_cmd
from tests.e2e.test_up_down import alive, wait_until, what_remains

pytestmark = pytest.mark.e2e


def test_up_with_the_etcd_datastore_runs_etcd_over_tls_and_down_removes_it(cluster):
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        pytest.skip("etcd is not installed (scripts/setup installs etcd-server and etcd-client)")
    cp = cluster.down()
    assert cp.returncode == 0, cp.stdout + cp.stderr
    try:
        cp = cluster.pocketkube("up", "--name", cluster.name, "--nodes", str(cluster.nodes), "--port",
                                str(cluster.port), "--data-dir", cluster.data_dir, "--wait", "60",
                                "--datastore", "etcd", timeout=180)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        record = up_cmd.ClusterRecord.load(cluster.name)
        assert record.datastore == "etcd" and record.etcd_url.startswith("https://127.0.0.1:")
        assert f"etcd {record.etcd_url}" in cp.stdout
        pids = cluster.pids()
        assert {"etcd", "server"} <= set(pids)
        status = cluster.pocketkube("status", "--name", cluster.name)
        assert f"etcd: pid {pids['etcd']}, {record.etcd_url}" in status.stdout

        cluster.kubectl("create", "configmap", "in-etcd", "--from-literal=a=1")
        wait_until(lambda: all(any(c["type"] == "Ready" and c["status"] == "True"
                                   for c in n.get("status", {}).get("conditions", []))
                               for n in cluster.kubectl_json("get", "nodes")["items"]), "nodes Ready")
        pki = os.path.join(record.server_dir, "pki")

        def etcdctl(*args: str, client: bool = True) -> subprocess.CompletedProcess:
            certs = ["--cert", os.path.join(pki, "apiserver-etcd-client.crt"),
                     "--key", os.path.join(pki, "apiserver-etcd-client.key")] if client else []
            return subprocess.run(["etcdctl", "--endpoints", record.etcd_url, "--cacert",
                                   os.path.join(pki, "etcd", "ca.crt"), *certs, *args],
                                  capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"})

        keys = etcdctl("get", "/registry/", "--prefix", "--keys-only").stdout.split()
        assert "/registry/configmaps/default/in-etcd" in keys
        assert "/registry/services/specs/default/kubernetes" in keys
        assert {f"/registry/minions/{node.name}" for node in cluster.net.node_list()} <= set(keys)
        assert etcdctl("get", "/registry/", "--prefix", "--keys-only", client=False).returncode != 0

        # The server is on the member's unix socket, guarded by the data dir's mode.
        (member,) = record.etcd_members()
        assert stat.S_ISSOCK(os.stat(member.socket).st_mode)
        assert os.path.dirname(member.socket) == record.data_dir
        assert stat.S_IMODE(os.stat(record.data_dir).st_mode) == 0o700
        with open(f"/proc/{pids['server']}/cmdline", "rb") as f:
            server_argv = f.read().decode().split("\0")
        assert server_argv[server_argv.index("--etcd-servers") + 1] == member.socket_url

        # A killed member leaves its socket; the supervisor removes it and starts etcd again.
        os.kill(pids["etcd"], signal.SIGKILL)
        wait_until(lambda: cluster.pids().get("etcd") not in (None, pids["etcd"]), "etcd started again")
        def create_after_kill() -> bool:
            cp = cluster.kubectl("create", "configmap", "after-kill", check=False)
            return cp.returncode == 0 or "AlreadyExists" in cp.stderr  # an earlier try's answer lost

        wait_until(create_after_kill, "a write through the server after etcd's restart")
        assert "/registry/configmaps/default/after-kill" in etcdctl("get", "/registry/configmaps/", "--prefix",
                                                                    "--keys-only").stdout.split()
    finally:
        pids = cluster.pids()
        cp = cluster.down()
        down_ok = cp.returncode == 0
        remains = what_remains(cluster)
        cluster.ensure_up()
    assert down_ok, cp.stdout + cp.stderr
    assert remains == []
    assert not any(alive(pid) for pid in pids.values())
