"""Who announces a load-balancer address (node/announcer.py, pure parts): the same plan on
every node, Local only where a ready endpoint is, gratuitous ARP frames, liveness."""

from __future__ import annotations

import struct
import time

from pocketkube.node import announcer
from pocketkube.node.announcer import Members, arp_frames, plan, ready_nodes_by_service, winner


def lb(name: str, ip: str, policy: str = "Cluster", created: str = "2026-01-01T00:00:00Z", **spec) -> dict:
    return {"metadata": {"namespace": "default", "name": name, "creationTimestamp": created},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy, **spec},
            "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}}


def slice_of(service: str, *endpoints: tuple[str, bool]) -> dict:
    return {"metadata": {"namespace": "default", "name": f"{service}-x",
                         "labels": {"kubernetes.io/service-name": service}},
            "endpoints": [{"addresses": ["10.244.9.9"], "nodeName": node, "conditions": {"ready": ready}}
                          for node, ready in endpoints]}


NODES = {"pk-node-1", "pk-node-2", "pk-node-3"}


def test_every_live_node_is_a_candidate_for_cluster_and_the_choice_is_stable():
    decided = plan([lb("web", "172.18.0.130")], {}, NODES)
    node, svc = decided["172.18.0.130"]
    assert node == winner("172.18.0.130", NODES) and svc["metadata"]["name"] == "web"
    # the same facts give the same answer wherever they are computed; a dead winner hands over
    assert plan([lb("web", "172.18.0.130")], {}, set(NODES))["172.18.0.130"][0] == node
    assert plan([lb("web", "172.18.0.130")], {}, NODES - {node})["172.18.0.130"][0] != node
    # different addresses spread over the nodes
    owners = {plan([lb("w", f"172.18.0.{i}")], {}, NODES)[f"172.18.0.{i}"][0] for i in range(128, 160)}
    assert owners == NODES


def test_local_only_where_a_ready_endpoint_is():
    ready = ready_nodes_by_service([slice_of("web", ("pk-node-2", True), ("pk-node-3", False))])
    assert ready == {"default/web": {"pk-node-2"}}
    assert plan([lb("web", "172.18.0.130", "Local")], ready, NODES)["172.18.0.130"][0] == "pk-node-2"
    assert plan([lb("web", "172.18.0.130", "Local")], ready, NODES - {"pk-node-2"}) == {}
    assert plan([lb("web", "172.18.0.130", "Local")], {}, NODES) == {}


def test_not_ours_or_going_is_not_announced():
    going = lb("web", "172.18.0.130")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:01Z"
    assert plan([going, lb("other", "172.18.0.131", loadBalancerClass="example.com/x")], {}, NODES) == {}
    # two Services showing one address (a stale status): the older one is announced
    older, newer = lb("a", "172.18.0.132", created="2026-01-01T00:00:00Z"), lb("b", "172.18.0.132",
                                                                               created="2026-01-02T00:00:00Z")
    assert plan([newer, older], {}, NODES)["172.18.0.132"][1] is older


def test_gratuitous_arp_frames():
    mac = bytes.fromhex("020000aabbcc")
    request, reply = arp_frames(mac, "172.18.0.130")
    for frame, op, target in ((request, 1, b"\0" * 6), (reply, 2, b"\xff" * 6)):
        assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac and frame[12:14] == b"\x08\x06"
        assert struct.unpack("!HHBBH", frame[14:22]) == (1, 0x0800, 6, 4, op)
        assert frame[22:28] == mac and frame[28:32] == bytes([172, 18, 0, 130])  # sender
        assert frame[32:38] == target and frame[38:42] == bytes([172, 18, 0, 130])  # target: the same address


def test_members_alive_leave_and_silence(monkeypatch):
    changes = []
    members = Members("pk-node-1", lambda: changes.append(1))
    assert members.alive() == {"pk-node-1"}
    members.datagram_received(b"pk-l2 alive pk-node-2", ("172.18.0.3", 7946))
    members.datagram_received(b"garbage", ("172.18.0.9", 7946))
    assert members.alive() == {"pk-node-1", "pk-node-2"} and changes == [1]
    members.datagram_received(b"pk-l2 leave pk-node-2", ("172.18.0.3", 7946))
    assert members.alive() == {"pk-node-1"} and changes == [1, 1]
    members.datagram_received(b"pk-l2 alive pk-node-2", ("172.18.0.3", 7946))
    members.datagram_received(b"pk-l2 join pk-node-2", ("172.18.0.3", 7946))  # restarted: not a candidate yet
    assert members.alive() == {"pk-node-1"}
    members.datagram_received(b"pk-l2 alive pk-node-3", ("172.18.0.4", 7946))
    later = time.monotonic() + announcer.DEAD_SECONDS + 0.1
    monkeypatch.setattr(announcer.time, "monotonic", lambda: later)
    assert members.alive() == {"pk-node-1"}
