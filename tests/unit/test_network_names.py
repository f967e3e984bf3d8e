"""The cluster network's names and addresses (node/network.py), and the pure parts of
`pocketkube up`: kubeconfig merging and the progress display (cli/up.py)."""

from __future__ import annotations

import io
import ipaddress
import os

import pytest
import yaml

from pocketkube.cli import up
from pocketkube.core import cluster as names
from pocketkube.node import network
from pocketkube.node.network import ClusterNetwork


@pytest.mark.parametrize("name", ["pocketkube", "a", "e2e-1a2b3c", "x" * 20, "my-cluster-2"])
def test_valid_cluster_names(name):
    names.validate_cluster_name(name)


@pytest.mark.parametrize("name", ["", "x" * 21, "-a", "a-", "Upper", "a_b", "a.b", "a b", "ä"])
def test_invalid_cluster_names(name):
    with pytest.raises(ValueError, match="invalid cluster name"):
        names.validate_cluster_name(name)


@pytest.mark.parametrize("nodes", [0, -1, network.MAX_NODES + 1])
def test_node_count_is_bounded(nodes):
    with pytest.raises(ValueError, match="--nodes"):
        ClusterNetwork("c", nodes)


@pytest.mark.parametrize("name, bridge", [
    ("pocketkube", "pk0"),
    ("dev", "pk-dev"),
    ("abcdefghijkl", "pk-abcdefghijkl"),  # exactly 15
])
def test_bridge_names(name, bridge):
    assert ClusterNetwork(name).bridge == bridge


def test_node_layout_of_the_default_cluster():
    net = ClusterNetwork("pocketkube", 3)
    assert net.host_ip == "172.18.0.1"
    rows = [(n.index, n.name, n.netns, n.ip, n.pod_cidr, n.pod_gateway) for n in net.node_list()]
    assert rows == [
        (1, "pocketkube-node-1", "pk-pocketkube-n1", "172.18.0.2", "10.244.1.0/24", "10.244.1.1"),
        (2, "pocketkube-node-2", "pk-pocketkube-n2", "172.18.0.3", "10.244.2.0/24", "10.244.2.1"),
        (3, "pocketkube-node-3", "pk-pocketkube-n3", "172.18.0.4", "10.244.3.0/24", "10.244.3.1"),
    ]
    assert net.unreachable_ranges == ("10.244.0.0/16", "10.96.0.0/12", "172.18.0.128/26")  # pods, Services, LB pool


def test_node_index_out_of_range():
    with pytest.raises(ValueError):
        ClusterNetwork("c", 2).node(3)


def test_names_fit_the_kernel_limits():
    longest = "x" * names.MAX_NAME_LENGTH
    net = ClusterNetwork(longest, network.MAX_NODES)
    for node in net.node_list():
        assert len(node.host_veth) <= 15
        assert len(node.netns) < 32
    assert len(net.bridge) <= 15
    assert len(names.pod_netns_name(net.node(1).netns, "0123abcd-ef01-2345-6789-abcdef012345")) < 40


def test_cut_interface_names_stay_distinct_and_stable():
    a = names.interface_name("pkv-", "cluster-alpha", "-n1")
    b = names.interface_name("pkv-", "cluster-alphb", "-n1")
    assert a != b
    assert a == names.interface_name("pkv-", "cluster-alpha", "-n1")
    assert a.startswith("pkv-clu") and a.endswith("-n1") and len(a) == 15
    net = ClusterNetwork("cluster-alpha", 12)
    assert len({n.host_veth for n in net.node_list()}) == 12


def test_short_interface_names_are_kept_whole():
    assert names.interface_name("pkv-", "dev", "-n2") == "pkv-dev-n2"


@pytest.mark.parametrize("cluster, netns, owned", [
    ("dev", "pk-dev-n1", True),
    ("dev", "pk-dev-n12", True),
    ("dev", "pk-dev-p-0123abcd", True),
    ("dev", "pk-dev-x-n1", False),  # cluster dev-x's node
    ("dev", "pk-dev-n1-n1", False),  # cluster dev-n1's node
    ("dev", "pk-dev-p-p-0123abcd", False),  # cluster dev-p's pod
    ("dev", "pk-dev-p-ab-p-12", False),  # cluster dev-p-ab's pod
    ("dev", "pk-dev", False),
    ("dev", "pk-devn1", False),
    ("dev", "cni-1234", False),
    ("dev-n1", "pk-dev-n1-n1", True),
])
def test_namespace_ownership(cluster, netns, owned):
    assert names.owns_netns(cluster, netns) is owned


@pytest.mark.parametrize("cluster, table, others, owned", [
    ("dev", "pk-dev", (), True),
    ("dev", "pk-dev-proxy", (), True),
    ("dev", "pk-dev_proxy", (), True),
    ("dev", "pk-devx", (), False),
    ("dev", "pk-dev-x", ("dev-x",), False),  # the longer name claims it
    ("dev", "pk-dev-x-proxy", ("dev-x",), False),
    ("dev", "pk-dev-proxy", ("dev-x",), True),
    ("dev", "kube-proxy", (), False),
    ("dev", "filter", (), False),
])
def test_nft_table_ownership(cluster, table, others, owned):
    assert names.owns_nft_table(cluster, table, others) is owned


def test_pod_netns_name_follows_its_node():
    assert names.pod_netns_name("pk-dev-n2", "0123ABCD-ef01-2345") == "pk-dev-p-0123abcd"
    assert names.owns_netns("dev", names.pod_netns_name("pk-dev-n2", "0123abcd-ef01"))
    with pytest.raises(ValueError):
        names.pod_netns_name("eth0", "0123abcd")


@pytest.mark.parametrize("netns, cluster", [
    ("pk-dev-n1", "dev"), ("pk-dev-n1-n2", "dev-n1"), ("pk-dev-p-0123abcd", None), ("other", None)])
def test_cluster_of_netns(netns, cluster):
    assert names.cluster_of_netns(netns) == cluster


def test_host_batch_makes_bridge_veths_routes_and_unreachable_routes():
    net = ClusterNetwork("dev", 2)
    lines = net.host_batch().splitlines()
    assert lines[:2] == ["netns add pk-dev-n1", "netns add pk-dev-n2"]
    assert "addr add 172.18.0.1/24 dev pk-dev" in lines
    assert "link add pkv-dev-n1 type veth peer name eth0 netns pk-dev-n1" in lines
    assert 'link set pkv-dev-n2 alias "pocketkube cluster dev" master pk-dev up' in lines
    assert f"route add 10.244.2.0/24 via 172.18.0.3 dev pk-dev proto {network.ROUTE_PROTOCOL}" in lines
    assert (f"route add unreachable 10.244.0.0/16 metric {network.UNREACHABLE_METRIC} "
            f"proto {network.ROUTE_PROTOCOL}") in lines
    assert (f"route add unreachable 10.96.0.0/12 metric {network.UNREACHABLE_METRIC} "
            f"proto {network.ROUTE_PROTOCOL}") in lines
    # The load-balancer pool: on the bridge (the announcing node answers ARP), refused under it.
    assert f"route add 172.18.0.128/26 dev pk-dev proto {network.ROUTE_PROTOCOL}" in lines
    assert (f"route add unreachable 172.18.0.128/26 metric {network.UNREACHABLE_METRIC} "
            f"proto {network.ROUTE_PROTOCOL}") in lines
    assert not any("default" in line for line in lines)


def test_lb_range_is_checked_against_the_cluster():
    assert ClusterNetwork("dev", 2, lb_range="172.18.0.4-172.18.0.9").lb_pool.size == 6
    with pytest.raises(ValueError, match="172.18.0.3 is node dev-node-2"):
        ClusterNetwork("dev", 2, lb_range="172.18.0.3-172.18.0.9")
    with pytest.raises(ValueError, match="overlaps the pod network 10.244.0.0/16"):
        ClusterNetwork("dev", 2, lb_range="10.244.9.0/28")
    with pytest.raises(ValueError, match="172.18.0.1 is the host's address"):
        ClusterNetwork("dev", 2, lb_range="172.18.0.1/32")


def test_node_batch_has_no_default_route():
    net = ClusterNetwork("dev", 3)
    lines = net.node_batch(net.node(2)).splitlines()
    assert "addr add 172.18.0.3/24 dev eth0" in lines
    assert "addr add 10.244.2.1/24 dev cni0" in lines
    routes = [line for line in lines if line.startswith("route")]
    assert routes == ["route add 10.244.1.0/24 via 172.18.0.2 dev eth0",
                      "route add 10.244.3.0/24 via 172.18.0.4 dev eth0"]


def test_ranges_cover_every_node_and_pod_address():
    net = ClusterNetwork("dev", network.MAX_NODES)
    for node in net.node_list():
        assert ipaddress.ip_address(node.ip) in net.node_subnet
        assert ipaddress.ip_network(node.pod_cidr).subnet_of(net.pod_cidr)


# ---- kubeconfig merging (kind's shape: cluster, user and context named pocketkube-NAME) ----


def _entry(name="pocketkube-dev", server="https://127.0.0.1:6443", token="t1"):
    return up.kubeconfig_dict(name, server, b"CA", token)


def test_merge_into_an_empty_kubeconfig():
    merged = up.merge_kubeconfig(None, _entry())
    assert merged["current-context"] == "pocketkube-dev"
    assert merged["contexts"] == [{"name": "pocketkube-dev",
                                   "context": {"cluster": "pocketkube-dev", "user": "pocketkube-dev"}}]
    assert merged["clusters"][0]["cluster"] == {"certificate-authority-data": "Q0E=",
                                                "server": "https://127.0.0.1:6443"}
    assert merged["users"] == [{"name": "pocketkube-dev", "user": {"token": "t1"}}]


def test_merge_keeps_other_entries_and_replaces_ours():
    existing = {"apiVersion": "v1", "kind": "Config", "current-context": "prod",
                "clusters": [{"name": "prod", "cluster": {"server": "https://prod"}},
                             {"name": "pocketkube-dev", "cluster": {"server": "https://old"}}],
                "users": [{"name": "prod", "user": {"token": "p"}}],
                "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod"}}],
                "extensions": [{"name": "x"}]}
    merged = up.merge_kubeconfig(existing, _entry(token="t2"))
    assert [c["name"] for c in merged["clusters"]] == ["prod", "pocketkube-dev"]
    assert merged["clusters"][1]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert [u["name"] for u in merged["users"]] == ["prod", "pocketkube-dev"]
    assert merged["current-context"] == "pocketkube-dev"
    assert merged["extensions"] == [{"name": "x"}]
    assert existing["current-context"] == "prod"  # the input is not modified


@pytest.mark.parametrize("current, after", [("pocketkube-dev", ""), ("prod", "prod")])
def test_remove_from_kubeconfig(current, after):
    config = up.merge_kubeconfig({"clusters": [{"name": "prod", "cluster": {}}], "users": [], "contexts": []},
                                 _entry())
    config["current-context"] = current
    result, removed = up.remove_from_kubeconfig(config, "pocketkube-dev")
    assert removed
    assert [c["name"] for c in result["clusters"]] == ["prod"]
    assert result["users"] == [] and result["contexts"] == []
    assert result["current-context"] == after


def test_remove_what_is_not_there():
    config = {"clusters": [{"name": "prod"}], "users": [], "contexts": [], "current-context": "prod"}
    result, removed = up.remove_from_kubeconfig(config, "pocketkube-dev")
    assert not removed and result["clusters"] == [{"name": "prod"}]


def test_user_kubeconfig_path(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path}/a:{tmp_path}/b")
    assert up.user_kubeconfig_path() == f"{tmp_path}/a"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert up.user_kubeconfig_path() == f"{tmp_path}/.kube/config"


def test_edit_kubeconfig_writes_privately(tmp_path):
    path = str(tmp_path / "kube" / "config")
    up._edit_kubeconfig(path, lambda config: up.merge_kubeconfig(config, _entry()))
    up.forget_context(path, "dev")
    assert os.stat(path).st_mode & 0o777 == 0o600
    with open(path) as f:
        assert yaml.safe_load(f)["contexts"] == []


# ---- progress display ----


def test_plain_progress_prints_outcomes_and_count_changes():
    out = io.StringIO()
    progress = up.Progress(out)
    progress.show("Creating node network")
    progress.done()
    progress.show("Waiting for nodes to be Ready (0/2)")
    progress.show("Waiting for nodes to be Ready (0/2)")
    progress.show("Waiting for nodes to be Ready (1/2)")
    progress.done("Waiting for nodes to be Ready (2/2)")
    progress.show("Starting API server")
    progress.fail()
    assert out.getvalue().splitlines() == [
        " Creating node network ✓",
        " Waiting for nodes to be Ready (1/2)",
        " Waiting for nodes to be Ready (2/2) ✓",
        " Starting API server ✗",
    ]


def test_terminal_progress_rewrites_one_line():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    progress = up.Progress(out)
    progress.show("Waiting for nodes to be Ready (0/1)")
    progress.done("Waiting for nodes to be Ready (1/1)")
    text = out.getvalue()
    assert text.count("\n") == 1
    assert text.endswith("\r\033[K Waiting for nodes to be Ready (1/1) ✓\n")


# ---- without root ----


@pytest.mark.parametrize("command", [["up", "--name", "never"], ["down", "--name", "never"]])
def test_without_root_up_and_down_exit_at_once(command, monkeypatch, capsys):
    from pocketkube.cli import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(up, "REGISTRY_DIR", "/nonexistent/pocketkube")  # nothing may be written
    assert main.main(command) == 1
    err = capsys.readouterr().err
    assert f"ERROR: pocketkube {command[0]} needs root" in err
