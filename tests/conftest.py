"""Shared fixtures: a real pocketkube API server in a subprocess, and the real kubectl."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUBECTL = shutil.which("kubectl")


@dataclass
class RunningServer:
    proc: subprocess.Popen
    data_dir: str
    url: str
    kubeconfig: str
    env: dict = field(default_factory=dict)

    @property
    def token(self) -> str:
        with open(os.path.join(self.data_dir, "token")) as f:
            return f.read().strip()

    @property
    def ca(self) -> str:
        return os.path.join(self.data_dir, "pki", "ca.crt")

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run the real kubectl against this server; returns the CompletedProcess."""
        if KUBECTL is None:
            pytest.fail("kubectl is not installed (scripts/setup installs it)")
        run_env = {**self.env, **(env or {})}
        cp = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True,
                            timeout=timeout, env=run_env)
        if check and cp.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({cp.returncode}):\n"
                                 f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
        return cp

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(data_dir: str, datastore: str = "memory", port: int = 0,
                 controllers: bool = True, args: tuple[str, ...] = ()) -> RunningServer:
    """Start `pocketkube server` (with more `args`) in its own process group and wait for it to listen."""
    log = open(os.path.join(data_dir, "server.log"), "ab")
    extra = ([] if controllers else ["--no-controllers"]) + list(args)
    if not any(a.startswith("--node-monitor-grace-period") for a in args):
        # The tests play the kubelet without its heartbeat: their Nodes stay as posted unless a test
        # asks for the node lifecycle controller's grace period (tests/integration/test_node_lifecycle.py).
        extra += ["--node-monitor-grace-period", "1h"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pocketkube.cli.main", "server", "--data-dir", data_dir,
         "--port", str(port), "--datastore", datastore, *extra],
        stdout=subprocess.PIPE, stderr=log, cwd=ROOT, start_new_session=True)
    url = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        if "listening on" in line:
            url = line.strip().rsplit(" ", 1)[-1]
            break
    if not url:
        proc.kill()
        proc.wait()
        with open(os.path.join(data_dir, "server.log")) as f:
            raise RuntimeError("pocketkube server did not start:\n" + f.read()[-4000:])
    kubeconfig = os.path.join(data_dir, "kubeconfig")
    cache = tempfile.mkdtemp(prefix="kubecache-", dir=data_dir)
    env = {**os.environ, "KUBECONFIG": kubeconfig, "KUBECACHEDIR": cache, "HOME": data_dir}
    return RunningServer(proc, data_dir, url, kubeconfig, env)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One API server (memory datastore) per test module."""
    srv = start_server(str(tmp_path_factory.mktemp("pk")))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def api_server(tmp_path_factory):
    """The API server alone (no controllers), for tests of the API itself."""
    srv = start_server(str(tmp_path_factory.mktemp("pk-api")), controllers=False)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def ns(server):
    """A fresh namespace for one test, so tests sharing a server do not see each other."""
    name = "t-" + uuid.uuid4().hex[:8]
    server.kubectl("create", "namespace", name)
    return name


@pytest.fixture(scope="module")
def k8s_client(server):
    """The official kubernetes Python client, configured from the server's kubeconfig."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=server.kubeconfig)
    yield client, api_client
    api_client.close()


@pytest.fixture
def etcd_server(tmp_path):
    """A throwaway etcd on a free loopback port (tests/etcdproc.py), stopped after the test."""
    from tests.etcdproc import EtcdProcess

    etcd = EtcdProcess(str(tmp_path / "etcd"))
    try:
        yield etcd
    finally:
        etcd.stop()
