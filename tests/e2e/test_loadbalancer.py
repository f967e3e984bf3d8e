"""LoadBalancer Services end to end on the real 2-node cluster, in both proxy modes (switched on
the running cluster as test_services.py does): an address from the pool, `curl` from the host
through the node that announces it, Local keeping the client address and announced only where
its pod runs, requested addresses, source ranges, healthCheckNodePort, failover when the
announcing agent is killed, an exhausted pool, and type flips.

Every Service lives in the module's own namespace, deleted at the end (its finalizers are the
controller's, so the addresses come back). Requests go only to the cluster's own addresses.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import signal
import subprocess
import time
import uuid

import pytest

from pocketkube.node import network
from tests.e2e.test_services import (HTTP, MODES, _ready_pod, curl, echo_deployment,  # noqa: F401 (a fixture)
                                     original_proxy_mode, relayed, service, switch_proxy_mode, until)

pytestmark = pytest.mark.e2e


REQUESTED = {"nftables": 190, "userspace": 191}  # the node network's .190 and .191: near the pool's end, one per mode


def lb_ip(cluster, ns: str, name: str) -> str | None:
    svc = cluster.kubectl_json("get", "svc", name, "-n", ns)
    ingress = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    return ingress[0]["ip"] if ingress else None


def announcers(cluster, ip: str) -> list[str]:
    return network.announced_addresses(cluster.net).get(ip, [])


def events(cluster, ns: str, name: str) -> list[dict]:
    return cluster.kubectl_json("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]


def apply(cluster, ns: str, *objects: dict) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input="\n".join(json.dumps(o) for o in objects))


@pytest.fixture(scope="module")
def lb(cluster):
    """The module's namespace with an echo pod on each node; deleted at the end."""
    ns = "lb-" + uuid.uuid4().hex[:6]
    cluster.kubectl("create", "namespace", ns)
    nodes = cluster.net.node_list()[:2]
    try:
        apply(cluster, ns, echo_deployment("echo-one", nodes[0].name, "one"),
              echo_deployment("echo-two", nodes[1].name, "two"))
        pods = {which: _ready_pod(cluster, ns, f"app=echo,node={which}")["metadata"]["name"]
                for which in ("one", "two")}
        yield {"ns": ns, "nodes": nodes, "pods": pods}
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module", params=MODES)
def mode(request, cluster, original_proxy_mode, lb) -> str:
    switch_proxy_mode(cluster, request.param)
    return request.param


def answers(url: str, expect: str | None = None):
    """A check for `until`: curl from the host answers (served by `expect` if given)."""
    def check():
        answer = curl(url)
        return answer if answer.ok and (expect is None or answer.served_by == expect) else None
    return check


def test_address_from_the_pool_answers_from_the_host(cluster, mode, lb):
    ns, name = lb["ns"], f"web-{mode}"
    apply(cluster, ns, service(name, {"app": "echo"}, [HTTP], type="LoadBalancer"))
    ip = until(lambda: lb_ip(cluster, ns, name), f"{name} gets an address", timeout=5)
    assert ip in cluster.net.lb_pool
    row = cluster.kubectl("get", "svc", name, "-n", ns, "--no-headers").stdout.split()
    assert row[1] == "LoadBalancer" and row[3] == ip and re.fullmatch(r"80:3\d{4}/TCP", row[4]), row
    answer = until(answers(f"http://{ip}/"), f"curl http://{ip}/ from the host")
    assert answer.served_by in lb["pods"].values()
    [node] = until(lambda: announcers(cluster, ip), f"one node announces {ip}")
    describe = cluster.kubectl("describe", "svc", name, "-n", ns).stdout
    assert re.search(rf"LoadBalancer Ingress:\s+{re.escape(ip)}", describe), describe
    assert f'announcing from node "{node}" with protocol "layer2"' in describe
    assert "Ensured load balancer" in describe
    status = cluster.pocketkube("status", "--name", cluster.name).stdout
    assert re.search(rf"{re.escape(ip)}\s+{ns}/{name}\s+announced by {node}", status), status
    trace = cluster.pocketkube("trace", "--from", "host", "--to", f"{ip}:80", "--cluster-name", cluster.name)
    assert trace.returncode == 0, trace.stderr
    assert f"node {node} announces it" in trace.stdout and f"on node {node}" in trace.stdout


def test_local_policy_keeps_the_client_and_only_the_pod_s_node_announces(cluster, mode, lb):
    ns, name = lb["ns"], f"local-{mode}"
    one, two = lb["nodes"]
    apply(cluster, ns, service(name, {"app": "echo", "node": "two"}, [HTTP], type="LoadBalancer",
                               externalTrafficPolicy="Local"))
    ip = until(lambda: lb_ip(cluster, ns, name), f"{name} gets an address", timeout=5)
    assert until(lambda: announcers(cluster, ip) == [two.name], f"only {two.name} announces {ip}")
    answer = until(answers(f"http://{ip}/", lb["pods"]["two"]), f"curl http://{ip}/ reaches the pod on node 2")
    if relayed(mode):
        assert answer.client_ip in {two.ip, two.pod_gateway}, answer.text
    else:
        assert answer.client_ip == cluster.net.host_ip, answer.text  # the client's own address
    port = cluster.kubectl_json("get", "svc", name, "-n", ns)["spec"]["healthCheckNodePort"]
    served = curl(f"http://{two.ip}:{port}/healthz")
    assert served.ok and json.loads(served.text) == {"service": {"namespace": ns, "name": name},
                                                      "localEndpoints": 1, "serviceProxyHealthy": True}
    assert json.loads(curl(f"http://{one.ip}:{port}/healthz").text)["localEndpoints"] == 0


def test_health_check_codes(cluster, mode, lb):
    """200 with a local endpoint, 503 without."""
    ns, name = lb["ns"], f"local-{mode}"
    one, two = lb["nodes"]
    port = cluster.kubectl_json("get", "svc", name, "-n", ns)["spec"]["healthCheckNodePort"]
    codes = {}
    for node in (one, two):
        cp = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "3",
                             f"http://{node.ip}:{port}/healthz"], capture_output=True, text=True, timeout=10)
        codes[node.name] = cp.stdout
    assert codes == {one.name: "503", two.name: "200"}


def test_requested_address_and_source_ranges(cluster, mode, lb):
    ns, name = lb["ns"], f"ranges-{mode}"
    requested = str(cluster.net.node_subnet.network_address + REQUESTED[mode])
    apply(cluster, ns, service(name, {"app": "echo"}, [HTTP], type="LoadBalancer",
                               loadBalancerSourceRanges=["192.0.2.0/24"]))
    cluster.kubectl("annotate", "svc", name, "-n", ns, f"metallb.universe.tf/loadBalancerIPs={requested}")
    assert until(lambda: lb_ip(cluster, ns, name) == requested, f"{name} gets {requested}", timeout=5)
    until(lambda: announcers(cluster, requested), f"{requested} announced")
    time.sleep(0.5)  # the proxies' rules for the address
    refused = curl(f"http://{requested}/")
    assert refused.code == 28, f"the host is not in the source ranges: dropped (a timeout), got {refused}"
    cluster.kubectl("patch", "svc", name, "-n", ns, "-p",
                    json.dumps({"spec": {"loadBalancerSourceRanges": ["192.0.2.0/24", f"{cluster.net.host_ip}/32"]}}))
    until(answers(f"http://{requested}/"), "the host, now in the source ranges, gets an answer")
    # a second Service asking for the same address stays pending, and says why
    other = f"taken-{mode}"
    apply(cluster, ns, service(other, {"app": "echo"}, [HTTP], type="LoadBalancer", loadBalancerIP=requested))
    until(lambda: any("already used by Service" in e["message"] for e in events(cluster, ns, other)),
          "a Warning that the requested address is taken")
    assert lb_ip(cluster, ns, other) is None and lb_ip(cluster, ns, name) == requested


def test_failover_when_the_announcing_agent_is_killed(cluster, mode, lb):
    ns, name = lb["ns"], f"web-{mode}"
    ip = lb_ip(cluster, ns, name) or pytest.skip("the first test's Service is missing")
    [owner] = until(lambda: announcers(cluster, ip), f"one node announces {ip}")
    other = next(n.name for n in lb["nodes"] if n.name != owner)
    pid = cluster.pids()[f"agent-{owner}"]
    killed = time.time()
    os.kill(pid, signal.SIGKILL)  # that agent only (the supervisor starts it again)

    def taken_over():
        return any(e["reason"] == "nodeAssigned" and f'"{other}"' in e["message"]
                   and calendar.timegm(time.strptime(e["lastTimestamp"], "%Y-%m-%dT%H:%M:%SZ")) >= int(killed)
                   for e in events(cluster, ns, name))
    until(taken_over, f"{other} announces {ip} after {owner}'s agent was killed", timeout=20)
    until(answers(f"http://{ip}/"), f"{ip} still answers")
    until(lambda: cluster.pids().get(f"agent-{owner}") not in (None, pid), f"{owner}'s agent restarted")
    until(lambda: len(announcers(cluster, ip)) == 1, f"one node announces {ip} again")
    assert curl(f"http://{ip}/").ok


def test_exhausted_pool_then_released(cluster, mode, lb):
    ns = lb["ns"]
    used = sum(1 for s in cluster.kubectl_json("get", "svc", "-A")["items"]
               for i in (s.get("status") or {}).get("loadBalancer", {}).get("ingress") or [] if i.get("ip") in cluster.net.lb_pool)
    count = cluster.net.lb_pool.size - used + 1
    names = [f"fill-{mode}-{i}" for i in range(count)]
    apply(cluster, ns, *[service(n, {"app": "echo"}, [HTTP], type="LoadBalancer") for n in names])
    last = names[-1]
    until(lambda: any(e["reason"] == "SyncLoadBalancerFailed" and "no address left" in e["message"]
                      for e in events(cluster, ns, last)), f"{last} waits: the pool is full", timeout=30)
    assert lb_ip(cluster, ns, last) is None
    freed = lb_ip(cluster, ns, names[0])
    cluster.kubectl("delete", "svc", names[0], "-n", ns)
    assert until(lambda: lb_ip(cluster, ns, last), f"{last} gets the freed address", timeout=10) == freed
    until(answers(f"http://{freed}/"), f"{freed} answers for {last}")
    cluster.kubectl("delete", "svc", *names[1:], "-n", ns)


def test_type_flips_release_and_reuse(cluster, mode, lb):
    ns, name = lb["ns"], f"flip-{mode}"
    apply(cluster, ns, service(name, {"app": "echo"}, [HTTP], type="LoadBalancer"))
    ip = until(lambda: lb_ip(cluster, ns, name), f"{name} gets an address", timeout=5)
    until(lambda: announcers(cluster, ip), f"{ip} announced")
    cluster.kubectl("patch", "svc", name, "-n", ns, "-p", '{"spec":{"type":"NodePort"}}')
    svc = cluster.kubectl_json("get", "svc", name, "-n", ns)
    assert svc["spec"]["ports"][0].get("nodePort") and not svc["status"]["loadBalancer"]
    until(lambda: not announcers(cluster, ip), f"{ip} no longer announced")
    cluster.kubectl("patch", "svc", name, "-n", ns, "-p",
                    '{"spec":{"type":"ClusterIP","ports":[{"name":"http","port":80,"targetPort":"http"}]}}')
    assert "nodePort" not in cluster.kubectl_json("get", "svc", name, "-n", ns)["spec"]["ports"][0]
    cluster.kubectl("patch", "svc", name, "-n", ns, "-p", '{"spec":{"type":"LoadBalancer"}}')
    again = until(lambda: lb_ip(cluster, ns, name), f"{name} gets an address again", timeout=5)
    until(answers(f"http://{again}/"), f"{again} answers")
    reasons = [e["reason"] for e in events(cluster, ns, name)]
    assert {"Type", "DeletingLoadBalancer", "DeletedLoadBalancer", "EnsuredLoadBalancer"} <= set(reasons), reasons
