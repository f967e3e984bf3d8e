"""Two clusters at once, beside a network that already holds 172.18.0.0/16 (as Docker's second
network and kind's do): a link this test makes, with that route, so `up` must choose other
ranges and say why. Each cluster then carries traffic of its own: a Service answers a pod of the
cluster by its DNS name (the cluster's own kube-dns address) and the host through a NodePort.
Both clusters, the link and everything they made are removed even when the test fails."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
import uuid

import pytest

from pocketkube.cli import up as up_cmd
from pocketkube.core import ranges
from pocketkube.node import network
from tests.e2e.conftest import KUBECTL, ROOT, _skip_reason

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))]
DOCKERS = "172.18.0.0/16"
WAIT = 90.0


def _run(argv: list[str], env: dict, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and cp.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
    return cp


def _until(check, what: str):
    deadline = time.monotonic() + WAIT
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not so after {WAIT:g}s"
        time.sleep(0.3)


@pytest.fixture
def dockers_route():
    """A link holding the route Docker's second network would: 172.18.0.0/16 (a bridge with no
    ports, as Docker's are; the kernel here may lack the dummy type)."""
    link = "pkt-" + uuid.uuid4().hex[:8]
    try:
        subprocess.run(["ip", "link", "add", link, "type", "bridge"], check=True, capture_output=True)
        subprocess.run(["ip", "link", "set", link, "up"], check=True, capture_output=True)
        subprocess.run(["ip", "route", "add", DOCKERS, "dev", link], check=True, capture_output=True)
        yield link
    finally:
        subprocess.run(["ip", "link", "del", link], capture_output=True)


def test_two_clusters_beside_dockers_route_each_with_its_own_ranges_and_traffic(dockers_route, tmp_path):
    tag = uuid.uuid4().hex[:5]
    names = [f"mc{tag}-a", f"mc{tag}-b"]
    records: dict[str, up_cmd.ClusterRecord | None] = {}
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig"), "KUBECACHEDIR": str(tmp_path / "kubecache"),
           "PYTHONPATH": ROOT}
    pocketkube = [sys.executable, "-m", "pocketkube.cli.main"]
    try:
        outputs = {}
        for name in names:
            outputs[name] = _run([*pocketkube, "up", "--name", name, "--data-dir", str(tmp_path / name),
                                  "--wait", "60"], env).stdout
        records.update({name: up_cmd.ClusterRecord.load(name) for name in names})
        a, b = (records[n].ranges for n in names)
        for name, chosen in zip(names, (a, b)):
            # never inside the route that was there first; the note says what was skipped and why
            assert not ipaddress.ip_network(chosen.node_cidr).overlaps(ipaddress.ip_network(DOCKERS))
            assert f"Address ranges: {ranges.describe(chosen)}" in outputs[name]
            assert f"overlaps route {DOCKERS} dev {dockers_route}" in outputs[name], outputs[name]
        # and never each other's
        for (_, one), (_, other) in zip(a.networks(), b.networks()):
            assert not one.overlaps(other)
        assert f"overlaps cluster '{names[0]}'" in outputs[names[1]]

        cp = _run([*pocketkube, "status"], env, check=False)  # (1 if some other cluster here does not run)
        for name in names:
            assert f"cluster '{name}': running" in cp.stdout
            assert f"  ranges: {ranges.describe(records[name].ranges)}" in cp.stdout
            assert "add-ons: kube-proxy (" in cp.stdout and "ingress (disabled)" in cp.stdout

        for name in names:
            _traffic(records[name], env)

        _run([*pocketkube, "down", "--name", names[0]], env)
        assert up_cmd.ClusterRecord.load(names[0]) is None and not up_cmd.leftovers(names[0], records[names[0]])
        assert up_cmd.cluster_processes(records[names[1]])  # b runs on
        _traffic(records[names[1]], env, fresh=False)
    finally:
        for name in names:
            cp = _run([*pocketkube, "down", "--name", name], env, check=False)
            if cp.returncode != 0 or up_cmd.leftovers(name, records.get(name)):
                up_cmd.teardown(name, None)
    for name in names:
        assert not up_cmd.leftovers(name, records[name])
        assert not any(n.startswith(f"pk-{name}-") for n in network.list_netns())


def _traffic(record: up_cmd.ClusterRecord, env: dict, fresh: bool = True) -> None:
    """A NodePort Service `web` (nginx) answers a busybox pod by name and the host on the node."""
    net = record.network

    def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run([KUBECTL, "--context", up_cmd.context_name(record.name), *args], env, check=check)

    if fresh:
        kubectl("create", "deployment", "web", "--image=nginx")
        kubectl("expose", "deployment", "web", "--port=80", "--type=NodePort")
        kubectl("run", "client", "--image=busybox", "--", "sleep", "3600")
    for pod in ("client", "-l app=web"):
        kubectl("wait", "--for=condition=Ready", "pod", *pod.split(), "--timeout=90s")
    web_ip = kubectl("get", "pod", "-l", "app=web", "-o", "jsonpath={.items[0].status.podIP}").stdout
    assert ipaddress.ip_address(web_ip) in net.pod_cidr
    svc_ip = kubectl("get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert ipaddress.ip_address(svc_ip) in net.service_cidr
    resolv = kubectl("exec", "client", "--", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {net.cluster_dns}" in resolv
    # from a pod of the cluster, by name (the cluster's DNS), through the ClusterIP
    _until(lambda: "Welcome to nginx!" in kubectl("exec", "client", "--", "wget", "-q", "-T", "3", "-O-",
                                                   "http://web/", check=False).stdout, f"{record.name}: pod -> web")
    # from the host, through the NodePort on the node's address
    port = kubectl("get", "svc", "web", "-o", "jsonpath={.spec.ports[0].nodePort}").stdout
    url = f"http://{net.node(1).ip}:{port}/"
    _until(lambda: "Welcome to nginx!" in subprocess.run(["curl", "-s", "-m", "3", url], capture_output=True,
                                                          text=True).stdout, f"{record.name}: host -> {url}")
