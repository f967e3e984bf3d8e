"""cni0 keeps its MAC while pods come and go (a real bridge in a throwaway network namespace).

A bridge left to choose takes its lowest port's MAC and changes it when that port goes; the
other pods then send to a MAC nobody owns until their ARP entry for the gateway expires
(seconds of lost SYNs to every Service: pocketkube issue 5)."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from pocketkube.node.network import ClusterNetwork

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


def ip(netns: str, *argv: str, stdin: str | None = None) -> str:
    return subprocess.run(["ip", "-n", netns, *argv], input=stdin, capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def netns():
    name = f"pkt-bridge-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def mac(netns: str, link: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "cat", f"/sys/class/net/{link}/address"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_cni0_mac_does_not_follow_its_ports(netns):
    net = ClusterNetwork("dev", 2)
    bridge_lines = [line for line in net.node_batch(net.node(2)).splitlines() if "cni0" in line]
    ip(netns, "-batch", "-", stdin="\n".join(bridge_lines) + "\n")
    before = mac(netns, "cni0")
    # pods' host ends with MACs below and above it: a free bridge would take the lowest
    for i, port_mac in enumerate(["00:00:00:00:00:01", "00:00:00:00:00:02", "fe:00:00:00:00:03"]):
        ip(netns, "link", "add", f"veth{i}", "address", port_mac, "type", "veth", "peer", "name", f"peer{i}")
        ip(netns, "link", "set", f"veth{i}", "master", "cni0", "up")
        assert mac(netns, "cni0") == before
    ip(netns, "link", "del", "veth0")  # the pod holding the lowest MAC goes
    assert mac(netns, "cni0") == before
    ip(netns, "link", "del", "veth1")
    assert mac(netns, "cni0") == before
    assert ip(netns, "-4", "-o", "addr", "show", "cni0").split()[3] == "10.244.2.1/24"
