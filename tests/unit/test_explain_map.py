"""`pocketkube map`'s drawing (explain/topology.py) over fake objects, and the parsing of what a
pod's network namespace listens on (/proc/net/{tcp,udp}, fib_trie) by `explain`'s gathering."""

from __future__ import annotations

from pocketkube.cli.explain import parse_fib_trie, parse_proc_net, sockets_by_address
from pocketkube.explain import topology

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0
   1: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0
   2: 0501F40A:1F90 0201F40A:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0
"""
TCP6 = """  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A
   1: 0000000000000000FFFF00000501F40A:0BB9 00000000000000000000000000000000:0000 0A
"""
UDP = """  sl  local_address rem_address   st
   0: 00000000:0035 00000000:0000 07
   1: 0501F40A:D431 0A00600A:0035 01
"""
FIB = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 10.244.1.0
        /24 link UNICAST
     |-- 10.244.1.5
        /32 host LOCAL
Local:
  +-- 127.0.0.0/8 2 0 2
     |-- 127.0.0.1
        /32 host LOCAL
"""


def test_proc_net_parsing_and_what_a_pod_address_reaches():
    assert parse_proc_net(TCP, "TCP") == [("0.0.0.0", 8080), ("127.0.0.1", 80)]
    assert parse_proc_net(TCP6, "TCP") == [("::", 3000), ("::ffff:10.244.1.5", 3001)]
    assert parse_proc_net(UDP, "UDP") == [("0.0.0.0", 53)]
    assert parse_fib_trie(FIB) == {"10.244.1.5", "127.0.0.1"}
    sockets = [("TCP", a, p) for a, p in parse_proc_net(TCP, "TCP") + parse_proc_net(TCP6, "TCP")]
    reachable, loopback = sockets_by_address(sockets, {"10.244.1.5"})
    assert reachable == {("TCP", 8080), ("TCP", 3000), ("TCP", 3001)} and loopback == {("TCP", 80)}


def _objects():
    nodes = [{"metadata": {"name": f"pk-node-{i}"}, "spec": {"podCIDR": f"10.244.{i}.0/24"},
              "status": {"addresses": [{"type": "InternalIP", "address": f"172.18.0.{i + 1}"}],
                         "conditions": [{"type": "Ready", "status": "True"}]}} for i in (1, 2)]

    def pod(name, ip, node, ready=True, waiting=None):
        return {"metadata": {"name": name, "namespace": "default"}, "spec": {"nodeName": node},
                "status": {"phase": "Running", "podIP": ip,
                           "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                           "containerStatuses": [{"name": "c", "state": {"waiting": waiting} if waiting else {}}]}}

    pods = [pod("web-1", "10.244.1.5", "pk-node-1"), pod("web-2", "10.244.2.5", "pk-node-2", ready=False,
                                                          waiting={"reason": "CrashLoopBackOff"}),
            {"metadata": {"name": "pending", "namespace": "default"}, "spec": {}, "status": {"phase": "Pending"}}]
    services = [{"metadata": {"name": "web", "namespace": "default"},
                 "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "selector": {"app": "web"},
                          "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}]}},
                {"metadata": {"name": "empty", "namespace": "default"},
                 "spec": {"clusterIP": "10.96.0.21", "selector": {"app": "ngnix"}, "ports": [{"port": 80}]}}]
    slices = [{"metadata": {"name": "web-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4", "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
               "endpoints": [{"addresses": ["10.244.1.5"], "nodeName": "pk-node-1", "targetRef": {"name": "web-1"},
                              "conditions": {"ready": True}},
                             {"addresses": ["10.244.2.5"], "nodeName": "pk-node-2", "targetRef": {"name": "web-2"},
                              "conditions": {"ready": False}}]}]
    ingresses = [{"metadata": {"name": "site", "namespace": "default"},
                  "spec": {"tls": [{"hosts": ["shop.example"]}], "rules": [{"host": "shop.example", "http": {"paths": [
                      {"path": "/", "pathType": "Prefix",
                       "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}]
    return nodes, pods, services, slices, ingresses


def test_map_draws_nodes_pods_services_endpoints_and_rules():
    top = topology.build(*_objects())
    text = topology.render_text(top, 100)
    lines = text.splitlines()
    assert all(len(line) <= 100 for line in lines)
    assert lines[0] == "NODES (2)"
    assert lines[1] == "  pk-node-1  172.18.0.2  pods 10.244.1.0/24  Ready"
    assert lines[2].startswith("    ● default/web-1") and lines[2].split()[-2:] == ["10.244.1.5", "Ready"]
    assert any(line.startswith("    ○ default/web-2") and line.endswith("CrashLoopBackOff") for line in lines)
    assert any("(no node yet)" in line for line in lines) and any("default/pending" in line for line in lines)
    assert "  default/web  NodePort 10.96.0.20  80/TCP:30080->8080" in lines
    assert any(line.startswith("    ├─▶ 10.244.1.5:8080") and "web-1" in line and line.endswith("pk-node-1")
               for line in lines)
    assert any(line.startswith("    └─▷ 10.244.2.5:8080") and line.endswith("pk-node-2  not ready") for line in lines)
    assert "    └─✗ no endpoints (selector app=ngnix)" in lines
    assert "  default/site  https://shop.example/  ─▶ svc web:80" in lines
    assert top.to_dict()["services"][1]["endpoints"][1]["ready"] is False


def test_map_of_one_namespace_and_narrow_terminals():
    nodes, pods, services, slices, ingresses = _objects()
    pods.append({"metadata": {"name": "coredns-1", "namespace": "kube-system"}, "spec": {"nodeName": "pk-node-1"},
                 "status": {"phase": "Running", "podIP": "10.244.1.2"}})
    assert "coredns" in topology.render_text(topology.build(nodes, pods, services, slices, ingresses))
    text = topology.render_text(topology.build(nodes, pods, services, slices, ingresses, namespace="default"), 60)
    assert "coredns" not in text and all(len(line) <= 60 for line in text.splitlines())
