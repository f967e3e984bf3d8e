"""The images of Kubernetes' e2e suite on the real cluster, used as the suite uses them: two
agnhost netexec pods (one per node) /dial each other over HTTP and UDP, a hostNetwork agnhost
pod reaches them with `nc -u` and curl (the suite's node-to-pod checks), serve-hostname answers
raw TCP and UDP, porter serves its environment over HTTP and TLS, and httpd says "It works!".
Every request goes to a pod address of this test's own cluster."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.test_cluster_pods import eventually

pytestmark = pytest.mark.e2e

AGNHOST = "k8s.gcr.io/e2e-test-images/agnhost:2.21"


def pod(name: str, node: str, args: list[str] | None = None, command: list[str] | None = None,
        image: str = AGNHOST, host_network: bool = False, env: dict | None = None, probe_port: int | None = None) -> dict:
    container = {"name": "c", "image": image}
    if args:
        container["args"] = args
    if command:
        container["command"] = command
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if probe_port:
        container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": probe_port}, "periodSeconds": 1}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"test": "images"}},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "hostNetwork": host_network,
                     "terminationGracePeriodSeconds": 0, "containers": [container]}}


@pytest.fixture(scope="module")
def images_ns(cluster):
    """The pods of the module, started once: netexec on each node, a hostNetwork agnhost on
    node 1, serve-hostname raw, porter and httpd on node 2."""
    ns = "images-" + uuid.uuid4().hex[:6]
    cluster.kubectl("create", "namespace", ns)
    node1, node2 = [n.name for n in cluster.net.node_list()][:2]
    pods = [
        pod("netexec-1", node1, ["netexec", "--http-port=8080", "--udp-port=8081"], probe_port=8080),
        pod("netexec-2", node2, ["netexec", "--http-port=8080", "--udp-port=8081"], probe_port=8080),
        pod("host-exec", node1, host_network=True),
        pod("raw-hostname", node2, command=["/agnhost", "serve-hostname", "--http=false", "--tcp", "--udp"]),
        pod("porter", node2, command=["/agnhost", "porter"],
            env={"SERVE_PORT_80": '<a href="/rewriteme">test</a>', "SERVE_TLS_PORT_443": "tls baz"}),
        pod("httpd", node2, image="docker.io/library/httpd:2.4.38-alpine"),
    ]
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                     "items": pods}))
    try:
        def all_ready():
            items = cluster.kubectl_json("get", "pods", "-n", ns)["items"]
            ready = {p["metadata"]["name"]: p["status"].get("podIP") for p in items
                     if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))}
            return ready if len(ready) == len(pods) else None
        yield ns, eventually(all_ready, timeout=90)
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def exec_sh(cluster, ns: str, pod_name: str, command: str) -> str:
    return cluster.kubectl("exec", pod_name, "-n", ns, "--", "/bin/sh", "-c", command, timeout=60).stdout


def dial(cluster, ns, ips, from_pod: str, to_pod: str, protocol: str, port: int) -> dict:
    """What the suite's DialFromContainer runs: curl netexec's /dial inside the client pod."""
    url = (f"http://{ips[from_pod]}:8080/dial?request=hostname&protocol={protocol}&host={ips[to_pod]}"
           f"&port={port}&tries=1")
    return json.loads(exec_sh(cluster, ns, from_pod, f"curl -g -q -s '{url}'"))


@pytest.mark.parametrize("protocol, port", [("http", 8080), ("udp", 8081)])
def test_netexec_pods_dial_each_other(cluster, images_ns, protocol, port):
    ns, ips = images_ns
    assert dial(cluster, ns, ips, "netexec-1", "netexec-2", protocol, port) == {"responses": ["netexec-2"]}
    assert dial(cluster, ns, ips, "netexec-2", "netexec-1", protocol, port) == {"responses": ["netexec-1"]}


def test_netexec_dial_reports_errors(cluster, images_ns):
    ns, ips = images_ns
    answer = dial(cluster, ns, ips, "netexec-1", "netexec-2", "http", 8099)
    assert list(answer) == ["errors"] and "connection refused" in answer["errors"][0]


def test_node_to_pod_as_the_suite_checks_it(cluster, images_ns):
    """DialFromNode: `nc -u` and curl from a hostNetwork agnhost pod to each netexec pod."""
    ns, ips = images_ns
    for target in ("netexec-1", "netexec-2"):
        ip = ips[target]
        udp = eventually(lambda: exec_sh(cluster, ns, "host-exec", f"echo hostName | nc -w 1 -u {ip} 8081"),
                         timeout=60)
        assert udp.strip() == target
        http = exec_sh(cluster, ns, "host-exec",
                       f"curl -g -q -s --max-time 15 --connect-timeout 1 http://{ip}:8080/hostName")
        assert http == target


def test_serve_hostname_raw_tcp_and_udp(cluster, images_ns):
    ns, ips = images_ns
    ip = ips["raw-hostname"]
    assert exec_sh(cluster, ns, "netexec-1", f"/agnhost connect --timeout=3s {ip}:9376 && echo connected") == \
        "connected\n"
    assert exec_sh(cluster, ns, "netexec-1", f"nc -w 2 {ip} 9376 </dev/null") == "raw-hostname"
    assert exec_sh(cluster, ns, "netexec-1", f"echo hostname | nc -w 1 -u {ip} 9376") == "raw-hostname"
    refused = cluster.kubectl("exec", "netexec-1", "-n", ns, "--", "/agnhost", "connect", f"{ip}:9999",
                              check=False)
    assert (refused.returncode, refused.stderr.splitlines()[0]) == (1, "REFUSED")


def test_porter_and_httpd(cluster, images_ns):
    ns, ips = images_ns
    assert exec_sh(cluster, ns, "netexec-1", f"curl -s http://{ips['porter']}/") == '<a href="/rewriteme">test</a>'
    assert exec_sh(cluster, ns, "netexec-1", f"curl -s -k https://{ips['porter']}:443/") == "tls baz"
    assert exec_sh(cluster, ns, "netexec-1", f"wget -q -T 5 -O - http://{ips['httpd']}/") == \
        "<html><body><h1>It works!</h1></body></html>\n"
    exec_sh(cluster, ns, "httpd", "mv -v /usr/local/apache2/htdocs/index.html /tmp/")  # as the StatefulSet tests
    assert "404" in exec_sh(cluster, ns, "netexec-1", f"curl -s -o /dev/null -w '%{{http_code}}' http://{ips['httpd']}/")
