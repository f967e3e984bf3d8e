"""The load-balancer controller against a real `pocketkube server` and the real kubectl: an
address from the pool in under a second, `kubectl get svc` / `describe`, the cloud
controller's Events, requested addresses, a pool of two, type flips, foreign classes,
allocateLoadBalancerNodePorts, and addresses kept across a restart (sqlite)."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import start_server

pytestmark = pytest.mark.kubectl

POOL = "172.18.0.240-172.18.0.241"  # two addresses: exhaustion is easy to reach


def eventually(fn, timeout: float = 10, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


@pytest.fixture
def small(tmp_path):
    srv = start_server(str(tmp_path), datastore="sqlite", args=("--lb-range", POOL))
    try:
        yield srv
    finally:
        srv.stop()


def lb_ip(server, name: str, ns: str = "default") -> str | None:
    svc = server.kubectl_json("get", "svc", name, "-n", ns)
    ingress = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    return ingress[0]["ip"] if ingress else None


def events(server, name: str, ns: str = "default") -> list[tuple[str, str, str]]:
    items = server.kubectl_json("get", "events", "-n", ns, "--field-selector",
                                f"involvedObject.name={name}")["items"]
    return [(e["type"], e["reason"], e["message"]) for e in sorted(items, key=lambda e: e["firstTimestamp"])]


def lb_service(name: str, **spec) -> str:
    import json

    annotations = spec.pop("annotations", None)
    meta = {"name": name, **({"annotations": annotations} if annotations else {})}
    body = {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}], **spec}
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": body})


def test_address_events_describe_release_and_restart(small, tmp_path):
    started = time.monotonic()
    small.kubectl("create", "service", "loadbalancer", "web", "--tcp=80:8080")
    assert eventually(lambda: lb_ip(small, "web")) == "172.18.0.240"
    assert time.monotonic() - started < 5  # kubectl itself takes most of it
    row = small.kubectl("get", "svc", "web", "--no-headers").stdout.split()
    assert row[:4] == ["web", "LoadBalancer", row[2], "172.18.0.240"] and re.fullmatch(r"80:3\d{4}/TCP", row[4])
    svc = small.kubectl_json("get", "svc", "web")
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": "172.18.0.240", "ipMode": "VIP"}]
    assert svc["metadata"]["finalizers"] == ["service.kubernetes.io/load-balancer-cleanup"]
    describe = small.kubectl("describe", "svc", "web").stdout
    assert re.search(r"LoadBalancer Ingress:\s+172\.18\.0\.240 \(VIP\)", describe), describe
    assert eventually(lambda: [r for _, r, _ in events(small, "web")] == ["EnsuringLoadBalancer", "EnsuredLoadBalancer"])
    assert "Ensured load balancer" in small.kubectl("describe", "svc", "web").stdout

    # The address is in the object: a restarted server (same store) keeps it, and hands out the other.
    small.stop()
    again = start_server(str(tmp_path), datastore="sqlite", args=("--lb-range", POOL))
    try:
        assert lb_ip(again, "web") == "172.18.0.240"
        again.kubectl("create", "service", "loadbalancer", "second", "--tcp=81:8080")
        assert eventually(lambda: lb_ip(again, "second")) == "172.18.0.241"
        again.kubectl("delete", "svc", "web")  # waits for the finalizer to go
        assert eventually(lambda: ("Normal", "DeletedLoadBalancer", "Deleted load balancer") in events(again, "web"))
        again.kubectl("create", "service", "loadbalancer", "third", "--tcp=82:8080")
        assert eventually(lambda: lb_ip(again, "third")) == "172.18.0.240"
    finally:
        again.stop()


def test_exhausted_pool_waits_then_gets_the_freed_address(small):
    for name in ("a", "b", "c"):
        small.kubectl("apply", "-f", "-", input=lb_service(name))
    assert eventually(lambda: lb_ip(small, "a") and lb_ip(small, "b"))
    assert eventually(lambda: any(r == "SyncLoadBalancerFailed" for _, r, _ in events(small, "c")))
    warning = next(e for e in events(small, "c") if e[1] == "SyncLoadBalancerFailed")
    assert warning[0] == "Warning" and "no address left in the load-balancer pool" in warning[2], warning
    assert "<pending>" in small.kubectl("get", "svc", "c", "--no-headers").stdout
    freed = lb_ip(small, "a")
    # LoadBalancer -> NodePort frees the address (the nodePort stays), -> ClusterIP frees the nodePort.
    small.kubectl("patch", "svc", "a", "-p", '{"spec":{"type":"NodePort"}}')
    assert eventually(lambda: lb_ip(small, "c")) == freed
    a = small.kubectl_json("get", "svc", "a")
    assert a["spec"]["ports"][0]["nodePort"] and a["status"]["loadBalancer"] == {}
    assert "service.kubernetes.io/load-balancer-cleanup" not in (a["metadata"].get("finalizers") or [])
    assert eventually(lambda: {"Type", "DeletingLoadBalancer", "DeletedLoadBalancer"}
                      <= {r for _, r, _ in events(small, "a")})
    assert ("Normal", "Type", "LoadBalancer -> NodePort") in events(small, "a")
    small.kubectl("patch", "svc", "a", "-p", '{"spec":{"type":"ClusterIP","ports":[{"port":80,"targetPort":8080}]}}')
    assert "nodePort" not in small.kubectl_json("get", "svc", "a")["spec"]["ports"][0]
    # Back to LoadBalancer: pending again (the pool is full), until b goes.
    small.kubectl("patch", "svc", "a", "-p", '{"spec":{"type":"LoadBalancer"}}')
    assert eventually(lambda: sum(r == "SyncLoadBalancerFailed" for _, r, _ in events(small, "a")))
    b_ip = lb_ip(small, "b")
    small.kubectl("delete", "svc", "b")
    assert eventually(lambda: lb_ip(small, "a")) == b_ip


def test_requested_addresses(small):
    small.kubectl("apply", "-f", "-", input=lb_service("asks", loadBalancerIP="172.18.0.241"))
    assert eventually(lambda: lb_ip(small, "asks")) == "172.18.0.241"
    # Taken: pending with a clear Warning; the holder keeps it.
    small.kubectl("apply", "-f", "-", input=lb_service(
        "also", annotations={"metallb.universe.tf/loadBalancerIPs": "172.18.0.241"}))
    assert eventually(lambda: any("already used by Service default/asks" in m for _, _, m in events(small, "also")))
    assert lb_ip(small, "also") is None and lb_ip(small, "asks") == "172.18.0.241"
    # Outside the pool: pending, and it says so.
    small.kubectl("apply", "-f", "-", input=lb_service("outside", annotations={"io.cilium/lb-ipam-ips": "10.1.2.3"}))
    assert eventually(lambda: any("not in the load-balancer pool 172.18.0.240-172.18.0.241" in m
                                  for _, _, m in events(small, "outside")))
    assert lb_ip(small, "outside") is None
    # The holder goes: the waiting one gets the address it asked for.
    small.kubectl("delete", "svc", "asks")
    assert eventually(lambda: lb_ip(small, "also")) == "172.18.0.241"


def test_foreign_class_and_no_node_ports(small):
    small.kubectl("apply", "-f", "-", input=lb_service("theirs", loadBalancerClass="example.com/other"))
    small.kubectl("apply", "-f", "-", input=lb_service("noports", allocateLoadBalancerNodePorts=False))
    assert eventually(lambda: lb_ip(small, "noports"))
    noports = small.kubectl_json("get", "svc", "noports")
    assert "nodePort" not in noports["spec"]["ports"][0]
    assert small.kubectl("get", "svc", "noports", "--no-headers").stdout.split()[4] == "80/TCP"
    time.sleep(0.3)
    theirs = small.kubectl_json("get", "svc", "theirs")
    assert lb_ip(small, "theirs") is None and not theirs["metadata"].get("finalizers")
    assert events(small, "theirs") == []


def test_server_refuses_a_bad_range(tmp_path):
    with pytest.raises(RuntimeError, match="invalid load-balancer range 'banana'"):
        start_server(str(tmp_path), args=("--lb-range", "banana"))
