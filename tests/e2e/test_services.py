"""Services end to end on the real 2-node cluster, through the real kubectl, in both proxy
modes: the kube-proxy DaemonSet's `--mode` argument is switched on the running cluster (as an
admin edits kube-proxy's configuration), and every test runs once per mode.

Requests come from three places, as a user would send them:
- a pod: `kubectl exec <busybox pod> -- wget -qO- URL` (a client pod on each node);
- a node: a command run inside the node's network namespace (`ip netns exec <node netns> ...`);
- the host: the host namespace, which routes the service range through node 1.

The backends are two echo-server pods (jmalloc/echo-server: "Request served by <pod>",
"Client: <ip>:<port>"), one pinned to each node, each with a second container answering UDP
datagrams with its pod name and the client address it saw. Every Service of the module
selects those two pods (or one of them), so the module starts four pods once and reuses them;
the tests of `kubectl expose` / `patch` and of scaling use a small kubia Deployment.

What each mode really does with client addresses: nftables DNATs, so a pod's address reaches
the backend unchanged, external traffic is masqueraded under the Cluster policy and kept under
Local; userspace relays every connection, so the backend always sees the node's address.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
import time
import uuid
from dataclasses import dataclass

import pytest

pytestmark = pytest.mark.e2e

MODES = ["nftables", "userspace"]
WAIT = 60.0  # seconds: pods Ready, a proxy rollout, rules answering
REQUEST_TIMEOUT = 3  # seconds, for wget -T / curl -m
EXTERNAL_HOST = 250  # the node network's .250 (nodes reach it on-link); the host routes it via node 1
AFFINITY_TIMEOUT = 2  # seconds: short, so expiry is seen quickly
UDP_PORT = 5300

UDP_SERVER = textwrap.dedent(f"""
    import socket
    name = socket.gethostname()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", {UDP_PORT}))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(f"{{name}} {{peer[0]}}".encode(), peer)
""")

UDP_CLIENT = ("import socket, sys\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              f"s.settimeout({REQUEST_TIMEOUT})\n"
              "s.sendto(b'hi', (sys.argv[1], int(sys.argv[2])))\n"
              "try:\n    print(s.recvfrom(2048)[0].decode())\n"
              "except OSError as exc:\n    print('no answer:', exc)\n")


def until(check, what: str, timeout: float = WAIT, interval: float = 0.2):
    """Poll `check` until it returns something true; fail saying `what` did not happen."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except (AssertionError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout:g}s (last: {last!r})")
        time.sleep(interval)


# ---- answers --------------------------------------------------------------------------------


@dataclass
class Answer:
    """One request's outcome: `ok` with the text, or the client's exit code and error."""
    ok: bool
    text: str
    code: int = 0

    @property
    def served_by(self) -> str | None:
        m = re.search(r"^Request served by (\S+)", self.text, re.M) or re.search(r"You've hit (\S+)", self.text)
        return m.group(1) if m else None

    @property
    def client_ip(self) -> str | None:
        m = re.search(r"^Client: ([0-9.]+):\d+", self.text, re.M)
        return m.group(1) if m else None


def _run(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def curl(url: str, netns: str | None = None) -> Answer:
    """curl from the host, or from inside a node's network namespace."""
    argv = ["curl", "-sS", "-m", str(REQUEST_TIMEOUT), url]
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    cp = _run(argv)
    return Answer(cp.returncode == 0, cp.stdout if cp.returncode == 0 else cp.stderr, cp.returncode)


MARK = "=== exit "


def wget_batch(cluster, ns: str, pod: str, urls: list[str], container: str | None = None) -> list[Answer]:
    """`wget -qO- -T 3 URL` for each URL, in one `kubectl exec` of a busybox container."""
    script = "".join(f"wget -qO- -T {REQUEST_TIMEOUT} {u} 2>&1; echo '{MARK}'$?\n" for u in urls)
    argv = ["exec", pod, "-n", ns] + (["-c", container] if container else []) + ["--", "sh", "-c", script]
    out = cluster.kubectl(*argv, timeout=30 + len(urls) * (REQUEST_TIMEOUT + 1)).stdout
    answers = []
    parts = re.split(re.escape(MARK) + r"(\d+)\n?", out)
    for text, code in zip(parts[0::2], parts[1::2]):
        answers.append(Answer(code == "0", text, int(code)))
    assert len(answers) == len(urls), f"unexpected output of {pod}: {out!r}"
    return answers


def wget(cluster, ns: str, pod: str, url: str, container: str | None = None) -> Answer:
    return wget_batch(cluster, ns, pod, [url], container)[0]


def udp(cluster, ns: str, ip: str, port: int, *, pod: str | None = None, netns: str | None = None) -> str:
    """One datagram to ip:port and the answer (`<pod name> <client ip>`), or `no answer: ...`."""
    if pod:
        return cluster.kubectl("exec", pod, "-n", ns, "-c", "py", "--", "python3", "-c", UDP_CLIENT, ip,
                               str(port)).stdout.strip()
    argv = ["python3", "-c", UDP_CLIENT, ip, str(port)]
    return _run((["ip", "netns", "exec", netns] if netns else []) + argv).stdout.strip()


# ---- the module's cluster state ---------------------------------------------------------------


def echo_deployment(name: str, node: str, which: str) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "echo", "node": which}},
                 "template": {"metadata": {"labels": {"app": "echo", "node": which}}, "spec": {
                     "nodeSelector": {"kubernetes.io/hostname": node},
                     "terminationGracePeriodSeconds": 1,
                     "containers": [
                         {"name": "echo", "image": "jmalloc/echo-server",
                          "ports": [{"name": "http", "containerPort": 8080}],
                          "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}},
                         {"name": "udp", "image": "python:3.11-slim", "command": ["python3", "-c", UDP_SERVER],
                          "ports": [{"name": "udp-echo", "containerPort": UDP_PORT, "protocol": "UDP"}]}]}}}}


def service(name: str, selector: dict, ports: list[dict], **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": selector, "ports": ports, **spec}}


HTTP = {"name": "http", "port": 80, "targetPort": "http"}


def services(external_ip: str) -> list[dict]:
    return [
        # multi-port, named targetPorts, one of them UDP
        service("echo", {"app": "echo"},
                [HTTP, {"name": "udp", "port": 53, "protocol": "UDP", "targetPort": "udp-echo"}]),
        service("echo-np", {"app": "echo"}, [HTTP], type="NodePort", externalIPs=[external_ip]),
        # only node one's pod: node two has no local endpoint
        service("echo-local", {"app": "echo", "node": "one"}, [HTTP], type="NodePort",
                externalTrafficPolicy="Local", internalTrafficPolicy="Local"),
        service("echo-itp", {"app": "echo"}, [HTTP], internalTrafficPolicy="Local"),
        service("echo-one", {"app": "echo", "node": "one"}, [HTTP]),
        service("sticky", {"app": "echo"}, [HTTP], sessionAffinity="ClientIP",
                sessionAffinityConfig={"clientIP": {"timeoutSeconds": AFFINITY_TIMEOUT}}),
        service("empty", {"app": "nothing-here"}, [HTTP]),
    ]


@dataclass
class Backends:
    ns: str
    nodes: list  # NodeNetwork of node 1 and 2
    echo: dict  # "one"/"two" -> pod name
    echo_ip: dict  # "one"/"two" -> pod IP
    clients: dict  # "one"/"two" -> busybox pod name
    client_ip: dict
    svc: dict  # service name -> its object

    def cluster_ip(self, name: str) -> str:
        return self.svc[name]["spec"]["clusterIP"]

    def node_port(self, name: str) -> int:
        return self.svc[name]["spec"]["ports"][0]["nodePort"]

    def node_addresses(self, which: str) -> set[str]:
        node = self.nodes[0 if which == "one" else 1]
        return {node.ip, node.pod_gateway}


def external_ip(cluster) -> str:
    return str(cluster.net.node_subnet.network_address + EXTERNAL_HOST)


def _ready_pod(cluster, ns: str, selector: str) -> dict:
    def check():
        items = cluster.kubectl_json("get", "pods", "-n", ns, "-l", selector)["items"]
        ready = [p for p in items if not p["metadata"].get("deletionTimestamp") and
                 any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
        return ready[0] if len(ready) == 1 else None
    return until(check, f"one Ready pod with {selector} in {ns}")


@pytest.fixture(scope="module")
def backends(cluster) -> Backends:
    ns = "svc-" + uuid.uuid4().hex[:6]
    cluster.kubectl("create", "namespace", ns)
    nodes = cluster.net.node_list()[:2]
    objects = [echo_deployment("echo-one", nodes[0].name, "one"), echo_deployment("echo-two", nodes[1].name, "two")]
    for which, node in zip(("one", "two"), nodes):
        objects.append({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": f"client-{which}", "labels": {"role": "client", "node": which}},
                        "spec": {"nodeName": node.name, "terminationGracePeriodSeconds": 1,
                                 "containers": [{"name": "bb", "image": "busybox", "command": ["sleep", "86400"]},
                                                # busybox holds no python: an image outside the catalog
                                                # runs with the machine's /usr (python3 there)
                                                {"name": "py", "image": "python:3.11-slim",
                                                 "command": ["sleep", "86400"]}]}})
    ext = external_ip(cluster)
    objects += services(ext)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input="\n".join(json.dumps(o) for o in objects))
    # the host routes the external IP to node 1, as an admin routes external IPs to a node
    route = ["ip", "route", "replace", f"{ext}/32", "via", nodes[0].ip, "dev", cluster.net.bridge]
    subprocess.run(route, check=True, capture_output=True)
    try:
        echo, echo_ip, clients, client_ip = {}, {}, {}, {}
        for which in ("one", "two"):
            pod = _ready_pod(cluster, ns, f"app=echo,node={which}")
            echo[which], echo_ip[which] = pod["metadata"]["name"], pod["status"]["podIP"]
            assert pod["spec"]["nodeName"] == nodes[0 if which == "one" else 1].name
            pod = _ready_pod(cluster, ns, f"role=client,node={which}")
            clients[which], client_ip[which] = pod["metadata"]["name"], pod["status"]["podIP"]
        svc = {s["metadata"]["name"]: cluster.kubectl_json("get", "svc", s["metadata"]["name"], "-n", ns)
               for s in services(ext)}
        yield Backends(ns, nodes, echo, echo_ip, clients, client_ip, svc)
    finally:
        subprocess.run(["ip", "route", "del", f"{ext}/32"], capture_output=True)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# ---- the proxy mode, switched on the running cluster ----------------------------------------

MODE_FLAGS = ("--mode=", "--proxy-mode=")


class ProxyModeUnavailable(RuntimeError):
    """The kube-proxy pods of the wanted mode fail to run (not an AssertionError: `until`
    must not keep polling it)."""


def _mode_arg(ds: dict) -> tuple[int, str, str]:
    """(index, flag, mode) of the proxy container's mode argument."""
    args = ds["spec"]["template"]["spec"]["containers"][0].get("args") or []
    for i, arg in enumerate(args):
        for flag in MODE_FLAGS:
            if arg.startswith(flag):
                return i, flag, arg[len(flag):]
    raise AssertionError(f"the kube-proxy DaemonSet has no mode argument: {args}")


def _proxy_rolled_out(cluster, wanted: str) -> bool:
    """Every node runs one kube-proxy pod with `wanted` among its args, and it is Ready."""
    ds = cluster.kubectl_json("get", "daemonset", "kube-proxy", "-n", "kube-system")
    pods = cluster.kubectl_json("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-proxy")["items"]
    current = [p for p in pods if wanted in p["spec"]["containers"][0].get("args", [])]
    for pod in current:
        for st in pod["status"].get("containerStatuses") or []:
            terminated = (st.get("state") or {}).get("terminated") or (st.get("lastState") or {}).get("terminated")
            if terminated:
                logs = cluster.kubectl("logs", pod["metadata"]["name"], "-n", "kube-system", "--previous",
                                       check=False)
                raise ProxyModeUnavailable(f"kube-proxy with {wanted} exited ({terminated.get('exitCode')}): "
                                           f"{(logs.stdout + logs.stderr).strip()[-500:]}")
    desired = ds["status"].get("desiredNumberScheduled", 0)
    return (desired > 0 and len(pods) == len(current) == desired
            and ds["status"].get("updatedNumberScheduled") == desired
            and all(not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"
                    and all(st.get("ready") for st in p["status"].get("containerStatuses") or [{}])
                    for p in current))


def switch_proxy_mode(cluster, mode: str) -> None:
    """Edit the DaemonSet's mode argument (a JSON patch of that one argument) and wait until
    its rollout replaced the proxy on every node."""
    ds = cluster.kubectl_json("get", "daemonset", "kube-proxy", "-n", "kube-system")
    index, flag, current = _mode_arg(ds)
    if current != mode:
        patch = [{"op": "replace", "path": f"/spec/template/spec/containers/0/args/{index}", "value": flag + mode}]
        cluster.kubectl("patch", "daemonset", "kube-proxy", "-n", "kube-system", "--type=json",
                        "-p", json.dumps(patch))
    until(lambda: _proxy_rolled_out(cluster, flag + mode), f"kube-proxy running with {flag}{mode} on every node")


def relayed(mode: str) -> bool:
    """userspace relays every connection: the backend sees the node, never the client."""
    return mode == "userspace"


@pytest.fixture(scope="module")
def original_proxy_mode(cluster):
    """The mode the cluster came up with, put back at the end for the session's other modules."""
    _, _, original = _mode_arg(cluster.kubectl_json("get", "daemonset", "kube-proxy", "-n", "kube-system"))
    yield original
    switch_proxy_mode(cluster, original)


@pytest.fixture(scope="module", params=MODES)
def mode(request, cluster, original_proxy_mode, backends) -> str:
    """The cluster's proxies in this mode, their rules answering: a pod's request to a
    ClusterIP reaches a backend with the client address this mode gives it."""
    mode = request.param
    switch_proxy_mode(cluster, mode)
    b = backends
    url = f"http://{b.cluster_ip('echo')}/"

    def answering() -> bool:
        answer = wget(cluster, b.ns, b.clients["one"], url)
        expected = b.node_addresses("one") if relayed(mode) else {b.client_ip["one"]}
        assert answer.ok and answer.client_ip in expected, answer
        return True
    until(answering, f"{mode} rules answering for {url}")
    return mode


@pytest.fixture(scope="module")
def kubia(cluster, backends) -> dict:
    """A Deployment exposed and patched to NodePort with the commands the books print."""
    ns = backends.ns
    out = {"create": cluster.kubectl("create", "deployment", "kubia", "--image=luksa/kubia", "--replicas=2",
                                     "-n", ns).stdout,
           "expose": cluster.kubectl("expose", "deployment", "kubia", "--port=80", "--target-port=8080",
                                     "-n", ns).stdout,
           "patch": cluster.kubectl("patch", "svc", "kubia", "-n", ns, "-p", '{"spec":{"type":"NodePort"}}').stdout}
    out["svc"] = cluster.kubectl_json("get", "svc", "kubia", "-n", ns)
    return out


# ---- the tests --------------------------------------------------------------------------------


SOURCES = ["pod on node 1", "pod on node 2", "node 1", "node 2", "host"]


def request_from(cluster, b: Backends, source: str, urls: list[str]) -> list[Answer]:
    if source.startswith("pod"):
        return wget_batch(cluster, b.ns, b.clients["one" if source.endswith("1") else "two"], urls)
    if source.startswith("node"):
        netns = b.nodes[0 if source.endswith("1") else 1].netns
        return [curl(u, netns) for u in urls]
    return [curl(u) for u in urls]


@pytest.mark.parametrize("source", SOURCES)
def test_cluster_ip_node_ports_and_external_ip_answer(cluster, mode, backends, source):
    b = backends
    targets = {"ClusterIP": f"http://{b.cluster_ip('echo')}/",
               "NodePort on node 1": f"http://{b.nodes[0].ip}:{b.node_port('echo-np')}/",
               "NodePort on node 2": f"http://{b.nodes[1].ip}:{b.node_port('echo-np')}/",
               "externalIP": f"http://{external_ip(cluster)}/",
               "ClusterIP of the NodePort Service": f"http://{b.cluster_ip('echo-np')}/"}
    answers = request_from(cluster, b, source, list(targets.values()))
    for (what, url), answer in zip(targets.items(), answers):
        assert answer.ok and answer.served_by in b.echo.values(), (what, url, answer)


def test_client_address_kept_by_local_policy_and_rewritten_by_cluster(cluster, mode, backends):
    b = backends
    host = cluster.net.host_ip
    cluster_policy = curl(f"http://{b.nodes[0].ip}:{b.node_port('echo-np')}/")
    assert cluster_policy.ok, cluster_policy
    assert cluster_policy.client_ip in b.node_addresses("one"), cluster_policy.text
    local = curl(f"http://{b.nodes[0].ip}:{b.node_port('echo-local')}/")
    assert local.ok and local.served_by == b.echo["one"], local
    if relayed(mode):
        assert local.client_ip in b.node_addresses("one"), local.text
    else:
        assert local.client_ip == host, local.text
    # a pod's own address reaches a pod on another node through a ClusterIP
    cross = wget(cluster, b.ns, b.clients["two"], f"http://{b.cluster_ip('echo-one')}/")
    assert cross.ok and cross.served_by == b.echo["one"], cross
    expected = b.node_addresses("two") if relayed(mode) else {b.client_ip["two"]}
    assert cross.client_ip in expected, cross.text


def test_external_traffic_policy_local_drops_on_a_node_without_local_pod(cluster, mode, backends):
    b = backends
    url = f"http://{b.nodes[1].ip}:{b.node_port('echo-local')}/"
    answer = curl(url)
    # dropped (nftables: a drop rule; userspace: the listener's socket filter), not refused
    assert answer.code == 28, f"expected a drop (curl times out), got {answer}"
    served = curl(f"http://{b.nodes[0].ip}:{b.node_port('echo-local')}/")
    assert served.ok and served.served_by == b.echo["one"], served


def test_internal_traffic_policy_local_uses_only_the_node_s_endpoints(cluster, mode, backends):
    b = backends
    itp = f"http://{b.cluster_ip('echo-itp')}/"
    for which in ("one", "two"):
        answers = wget_batch(cluster, b.ns, b.clients[which], [itp] * 6)
        assert [a.served_by for a in answers] == [b.echo[which]] * 6, answers
    # the only endpoint is on node 1: from node 2 there is none to use
    only_one = f"http://{b.cluster_ip('echo-local')}/"
    answer = wget(cluster, b.ns, b.clients["two"], only_one)
    assert not answer.ok, answer
    answer = wget(cluster, b.ns, b.clients["one"], only_one)
    assert answer.ok and answer.served_by == b.echo["one"], answer


def test_session_affinity_holds_then_expires(cluster, mode, backends):
    b = backends
    url = f"http://{b.cluster_ip('sticky')}/"
    answers = wget_batch(cluster, b.ns, b.clients["one"], [url] * 8)
    first = answers[0].served_by
    assert first in b.echo.values(), answers[0]
    assert all(a.served_by == first for a in answers), [a.served_by for a in answers]
    # once the client is idle for longer than timeoutSeconds, its next connection is balanced
    # again: 1 in 2 lands elsewhere, so 12 rounds miss the other pod only 1 time in 4096
    for _ in range(12):
        time.sleep(AFFINITY_TIMEOUT + 1)  # the affinity's own timeout, not a wait for rules
        answer = wget(cluster, b.ns, b.clients["one"], url)
        assert answer.ok, answer
        if answer.served_by != first:
            return
    pytest.fail(f"affinity to {first} did not expire after {AFFINITY_TIMEOUT}s idle (12 rounds)")


def test_hairpin_a_pod_reaches_itself_through_its_service(cluster, mode, backends):
    b = backends
    answer = wget(cluster, b.ns, b.echo["one"], f"http://{b.cluster_ip('echo-one')}/", container="udp")
    assert answer.ok and answer.served_by == b.echo["one"], answer
    # the source is rewritten to the node, or the pod would answer itself directly
    assert answer.client_ip in b.node_addresses("one"), answer.text


def test_service_without_endpoints_refuses_at_once(cluster, mode, backends):
    b = backends
    url = f"http://{b.cluster_ip('empty')}/"
    from_pod = wget(cluster, b.ns, b.clients["one"], url)
    assert not from_pod.ok and "Connection refused" in from_pod.text, from_pod
    for netns in (b.nodes[1].netns, None):
        answer = curl(url, netns)
        assert answer.code == 7, (netns, answer)  # curl's "couldn't connect": refused, not timed out (28)


def test_udp_cluster_ip_with_named_target_port(cluster, mode, backends):
    b = backends
    ip = b.cluster_ip("echo")
    slices = cluster.kubectl_json("get", "endpointslices", "-n", b.ns, "-l", "kubernetes.io/service-name=echo")
    ports = {(p["name"], p["port"], p["protocol"]) for s in slices["items"] for p in s.get("ports") or []}
    assert ports == {("http", 8080, "TCP"), ("udp", UDP_PORT, "UDP")}
    pod_names = set(b.echo.values())

    def answered(**where) -> str:
        text = udp(cluster, b.ns, ip, 53, **where)
        return text if text.split(" ")[0] in pod_names else ""
    from_pod = until(lambda: answered(pod=b.clients["one"]), "a UDP answer from a pod")
    client = from_pod.split(" ")[1]
    assert client in (b.node_addresses("one") if relayed(mode) else {b.client_ip["one"]}), from_pod
    until(lambda: answered(netns=b.nodes[1].netns), "a UDP answer from node 2")
    until(lambda: answered(), "a UDP answer from the host")
    # and cluster DNS, the UDP Service every pod uses
    out = cluster.kubectl("exec", b.clients["two"], "-n", b.ns, "--", "nslookup",
                          "kubernetes.default.svc.cluster.local").stdout
    assert str(cluster.net.service_cidr.network_address + 1) in out, out


def test_expose_and_patch_to_node_port_as_the_books_print_them(cluster, mode, backends, kubia):
    b = backends
    assert kubia["create"].strip() == "deployment.apps/kubia created"
    assert kubia["expose"].strip() == "service/kubia exposed"
    assert kubia["patch"].strip() == "service/kubia patched"
    port = kubia["svc"]["spec"]["ports"][0]
    assert kubia["svc"]["spec"]["type"] == "NodePort" and port["targetPort"] == 8080
    row = cluster.kubectl("get", "svc", "kubia", "-n", b.ns).stdout.splitlines()
    assert row[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert row[1].split()[:5] == ["kubia", "NodePort", kubia["svc"]["spec"]["clusterIP"], "<none>",
                                  f"80:{port['nodePort']}/TCP"]
    for node in b.nodes:
        answer = until(lambda: (a := curl(f"http://{node.ip}:{port['nodePort']}/")).ok and a,
                       f"kubia answering on {node.ip}:{port['nodePort']}")
        assert answer.text.startswith("You've hit kubia-"), answer
    # by name, from a pod, through cluster DNS and the ClusterIP
    answer = until(lambda: (a := wget(cluster, b.ns, b.clients["one"], "http://kubia")).ok and a,
                   "kubia answering at http://kubia from a pod")
    assert answer.text.startswith("You've hit kubia-"), answer


def test_scale_down_the_removed_pod_gets_no_new_connections(cluster, mode, backends, kubia):
    b = backends
    url = f"http://{kubia['svc']['spec']['clusterIP']}/"
    cluster.kubectl("scale", "deployment", "kubia", "--replicas=2", "-n", b.ns)

    def live_pods() -> list[str]:
        items = cluster.kubectl_json("get", "pods", "-n", b.ns, "-l", "app=kubia")["items"]
        return sorted(p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp"))
    seen: set[str] = set()

    def both_serve() -> bool:
        pods = live_pods()
        seen.update(a.served_by for a in wget_batch(cluster, b.ns, b.clients["one"], [url] * 6) if a.ok)
        return len(pods) == 2 and set(pods) <= seen
    until(both_serve, "both kubia pods serving through the ClusterIP")
    before = live_pods()
    assert cluster.kubectl("scale", "deployment", "kubia", "--replicas=1", "-n", b.ns).stdout.strip() == \
        "deployment.apps/kubia scaled"
    survivor = until(lambda: (pods := live_pods()) and len(pods) == 1 and pods[0], "one kubia pod left")
    removed = (set(before) - {survivor}).pop()

    def only_survivor() -> bool:
        answers = wget_batch(cluster, b.ns, b.clients["one"], [url] * 8)
        return all(a.ok and a.served_by == survivor for a in answers)
    until(only_survivor, f"every new connection served by {survivor}")
    answers = wget_batch(cluster, b.ns, b.clients["two"], [url] * 10)  # through the other node's proxy
    assert all(a.ok and a.served_by == survivor for a in answers), (removed, answers)
