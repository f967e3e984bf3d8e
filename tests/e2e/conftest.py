"""e2e fixtures: one real cluster (`pocketkube up`, root, real network namespaces) for the
whole session, with a unique name, taken down at the end even when tests fail.

`cluster` gives its name, data dir, kubeconfig (a private file: the user's is never touched),
`kubectl(...)`, `pocketkube(...)` (the CLI with the right environment) and `up()` / `down()`
for the tests of the life cycle itself.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass

import pytest

from pocketkube.cli import up as up_cmd
from pocketkube.node import network

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KUBECTL = shutil.which("kubectl")


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "e2e tests need Linux (network namespaces)"
    if os.geteuid() != 0:
        return "e2e tests need root: they create network namespaces, a bridge and routes"
    try:
        cp = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns` is unavailable: {exc}"
    if cp.returncode != 0:
        return f"`ip netns` is unavailable: {cp.stderr.strip()}"
    return None  # other clusters may run: `up` chooses ranges none of them holds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    name: str
    nodes: int
    port: int
    data_dir: str
    kubeconfig: str
    env: dict
    _net: network.ClusterNetwork | None = None

    @property
    def net(self) -> network.ClusterNetwork:
        """The cluster's network over the ranges `up` chose (its record's; after `down`, the last seen)."""
        record = up_cmd.ClusterRecord.load(self.name)
        if record:
            self._net = record.network
        return self._net or network.ClusterNetwork(self.name, self.nodes)

    @property
    def context(self) -> str:
        return up_cmd.context_name(self.name)

    def pocketkube(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """The real CLI: `python -m pocketkube.cli.main ARGS`."""
        return subprocess.run([sys.executable, "-m", "pocketkube.cli.main", *args], capture_output=True,
                              text=True, timeout=timeout, env=self.env, cwd=ROOT)

    def up(self, agent_command: tuple[str, ...] | None = None) -> subprocess.CompletedProcess:
        """`pocketkube up` for this cluster: the real CLI, or, with another `agent_command`
        in place of `pocketkube agent`, `up.up()` in a child process."""
        if agent_command is None:
            return self.pocketkube("up", "--name", self.name, "--nodes", str(self.nodes), "--port",
                                   str(self.port), "--data-dir", self.data_dir, "--wait", "60")
        options = {"name": self.name, "nodes": self.nodes, "port": self.port, "data_dir": self.data_dir,
                   "wait": 60.0, "agent_command": agent_command}
        code = ("import sys; from pocketkube.cli import up; "
                f"sys.exit(up._cli(lambda options: up.up(up.UpOptions(**options)))({options!r}))")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env=self.env, cwd=ROOT)

    def down(self) -> subprocess.CompletedProcess:
        return self.pocketkube("down", "--name", self.name)

    def ensure_up(self) -> None:
        """Bring the cluster back (a life-cycle test took it down or crashed it)."""
        record = up_cmd.ClusterRecord.load(self.name)
        if record and len(up_cmd.cluster_processes(record)) == 1 + self.nodes:
            return
        cp = self.up()
        assert cp.returncode == 0, f"pocketkube up failed:\n{cp.stdout}\n{cp.stderr}"

    def pids(self) -> dict[str, int]:
        """The server's and agents' PIDs that run now, by process name."""
        record = up_cmd.ClusterRecord.load(self.name)
        return up_cmd.cluster_processes(record) if record else {}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
        if KUBECTL is None:
            pytest.fail("kubectl is not installed (scripts/setup installs it)")
        cp = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, timeout=timeout,
                            env=self.env)
        if check and cp.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({cp.returncode}):\n"
                                 f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
        return cp

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A running cluster of 2 nodes, shared by the whole session; `down` at the end. It runs
    beside any other cluster (a user's, another e2e run's) on ranges `up` chooses: no lock
    (docs/adr/0017)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("pk-e2e")
    name = "e2e-" + uuid.uuid4().hex[:6]
    env = {**os.environ, "KUBECONFIG": str(base / "kubeconfig"), "KUBECACHEDIR": str(base / "kubecache"),
           "PYTHONPATH": ROOT}
    handle = Cluster(name=name, nodes=2, port=_free_port(), data_dir=str(base / "data"),
                     kubeconfig=str(base / "kubeconfig"), env=env)
    try:
        cp = handle.up()
        if cp.returncode != 0:
            pytest.fail(f"pocketkube up failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
        yield handle
    finally:
        cp = handle.down()
        if cp.returncode != 0 or up_cmd.leftovers(name):
            up_cmd.teardown(name, handle.kubeconfig)  # last resort: never leave a cluster behind
            print(f"pocketkube down --name {name} failed:\n{cp.stdout}\n{cp.stderr}", file=sys.stderr)


@pytest.fixture
def ns(cluster):
    """A fresh namespace in the shared cluster, deleted (without waiting) after the test."""
    name = "e2e-" + uuid.uuid4().hex[:6]
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
