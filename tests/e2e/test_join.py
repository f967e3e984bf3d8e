"""Two machines (tests/e2e/machines.py: each a network namespace with its own address on the
test's LAN): `pocketkube up --advertise-address` on the first, `pocketkube join` with the
printed command on the second. Then, in both proxy modes (the kube-proxy DaemonSet's --mode
switched on the running cluster): pods on both machines reach each other over the VXLAN
overlay, and Services (ClusterIP, NodePort on each machine's nodes and on each machine's
address) reach backends on the other machine. A wrong bootstrap token gets the API server's 401.
Last, a machine that leaves the LAN: its node goes NotReady and its pods are evicted after their
toleration.
"""

from __future__ import annotations

import json
import socket

import pytest

from bench.machines import Lan, join_command
from pocketkube.cli import up as up_cmd
from pocketkube.core import ranges as cluster_ranges
from pocketkube.node import network
from test_services import until

pytestmark = pytest.mark.e2e

MODES = ["nftables", "userspace"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_service_range_but_the_default(name: str) -> str:
    """A service range no other cluster on this box (nor a host route) holds, never 10.96.0.0/12."""
    taken = [*up_cmd.taken_ranges(name), cluster_ranges.Taken(
        cluster_ranges.Net(cluster_ranges.DEFAULTS.service_cidr), "the default, avoided on purpose")]
    return str(cluster_ranges.choose(taken)[0].service_cidr)


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    from conftest import _skip_reason

    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    lan = Lan(str(tmp_path_factory.mktemp("pk-join")))
    a, b = lan.machines
    suffix = lan.id
    port = _free_port()
    try:
        a.names.append(f"jv{suffix}a")
        cp = a.pocketkube("up", "--name", a.names[0], "--port", str(port), "--data-dir",
                          str(tmp_path_factory.mktemp("a")), "--advertise-address", a.address, "--wait", "60",
                          # not the default range: the joined machine must learn it (and kube-dns's
                          # address in it) from the cluster, not assume 10.96.0.0/12
                          "--service-cidr", _free_service_range_but_the_default(a.names[0]))
        assert cp.returncode == 0, f"pocketkube up failed:\n{cp.stdout}\n{cp.stderr}"
        args = join_command(cp.stdout)
        assert args[args.index("--server") + 1] == f"https://{a.address}:{port}"
        b.names.append(f"jv{suffix}b")
        b_data = str(tmp_path_factory.mktemp("b"))
        cp = b.pocketkube(*args, "--name", b.names[0], "--data-dir", b_data)
        assert cp.returncode == 0, f"pocketkube join failed:\n{cp.stdout}\n{cp.stderr}"
        b.data_dir = b_data
        yield lan, a, b, port, args
    finally:
        problems = lan.close()
        assert not problems, problems


def test_bad_token_is_refused_with_401(machines):
    _, a, b, port, args = machines
    cp = b.run(["curl", "-sk", "-H", "Authorization: Bearer abcdef.0123456789abcdef",
                f"https://{a.address}:{port}/api/v1/nodes"])
    status = json.loads(cp.stdout)
    assert (status["kind"], status["code"], status["reason"], status["message"]) == \
        ("Status", 401, "Unauthorized", "Unauthorized")
    bad = list(args)
    bad[bad.index("--token") + 1] = "abcdef.0123456789abcdef"
    cp = b.pocketkube(*bad, "--name", "jvbad")
    assert cp.returncode == 1
    assert "401 Unauthorized" in cp.stderr, cp.stderr
    wrong_hash = list(args)
    wrong_hash[wrong_hash.index("--discovery-token-ca-cert-hash") + 1] = "sha256:" + "0" * 64
    cp = b.pocketkube(*wrong_hash, "--name", "jvbad")
    assert cp.returncode == 1 and "cluster CA found in cluster-info ConfigMap is invalid" in cp.stderr, cp.stderr
    assert not up_cmd.leftovers("jvbad")  # a failed join leaves nothing behind


def test_token_create_prints_a_join_command(machines):
    _, a, _, port, args = machines
    cp = a.pocketkube("token", "create", "--name", a.names[0], "--print-join-command", "--ttl", "2h")
    assert cp.returncode == 0, cp.stderr
    made = cp.stdout.split()
    assert made[:3] == ["pocketkube", "join", "--server"] and made[3] == f"https://{a.address}:{port}"
    token = made[made.index("--token") + 1]
    assert token != args[args.index("--token") + 1]
    assert made[made.index("--discovery-token-ca-cert-hash") + 1] == args[args.index("--discovery-token-ca-cert-hash") + 1]
    secret = a.kubectl_json("get", "secret", "-n", "kube-system", f"bootstrap-token-{token.split('.')[0]}")
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    cp = a.pocketkube("token", "create", "--name", a.names[0], "--ttl", "0")
    assert cp.returncode == 0 and len(cp.stdout.strip()) == 23, cp.stdout + cp.stderr
    forever = cp.stdout.strip()
    # `token list` and `token delete`, as kubeadm's
    cp = a.pocketkube("token", "list", "--name", a.names[0])
    lines = cp.stdout.splitlines()
    assert lines[0].split() == ["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA", "GROUPS"], cp.stdout
    listed = {line.split()[0]: line.split() for line in lines[1:]}
    assert {token, forever, args[args.index("--token") + 1]} <= set(listed), cp.stdout
    assert listed[token][1] == "1h" and listed[token][3] == "authentication,signing"
    assert listed[forever][1:3] == ["<forever>", "<never>"]
    cp = a.pocketkube("token", "delete", "--name", a.names[0], token.split(".")[0], forever)
    assert cp.stdout == f'bootstrap token "{token.split(".")[0]}" deleted\nbootstrap token "{forever.split(".")[0]}" deleted\n'
    listed = a.pocketkube("token", "list", "--name", a.names[0]).stdout
    assert token not in listed and forever not in listed
    cp = a.pocketkube("token", "delete", "--name", a.names[0], "not-a-token")
    assert cp.returncode == 1 and "given token didn't match pattern" in cp.stderr, cp.stderr


def test_joined_node_has_its_own_identity(machines):
    _, a, b, _, _ = machines
    nodes = {n["metadata"]["name"]: n for n in a.kubectl_json("get", "nodes")["items"]}
    assert set(nodes) == {f"{a.names[0]}-node-1", b.names[0]}
    joined = nodes[b.names[0]]
    assert joined["metadata"]["annotations"]["pocketkube.io/public-ip"] == b.address
    csrs = a.kubectl_json("get", "csr")["items"]
    mine = [c for c in csrs if c["spec"]["username"].startswith("system:bootstrap:")]
    assert mine and mine[0]["status"]["conditions"][0]["reason"] == "AutoApproved"
    assert "system:bootstrappers" in mine[0]["spec"]["groups"]
    table = a.kubectl("get", "csr", mine[0]["metadata"]["name"]).stdout.split("\n")
    assert table[0].split() == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    assert table[1].split()[2:] == ["kubernetes.io/kube-apiserver-client-kubelet", mine[0]["spec"]["username"],
                                    "<none>", "Approved,Issued"]
    # the joined machine's credentials: the client certificate the controller signed
    cp = b.run(["kubectl", "--kubeconfig", f"{b.data_dir}/server/kubeconfig", "auth", "whoami", "-o", "json"])
    user = json.loads(cp.stdout)["status"]["userInfo"]
    assert user["username"] == f"system:node:{b.names[0]}"
    assert "system:nodes" in user["groups"]


PODS = """
apiVersion: v1
kind: Pod
metadata: {{name: web-{m}, labels: {{app: web, machine: "{m}"}}}}
spec:
  nodeName: {node}
  containers: [{{name: web, image: luksa/kubia, ports: [{{containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client-{m}}}
spec:
  nodeName: {node}
  containers: [{{name: sh, image: busybox, command: [sleep, "3600"]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-{m}}}
spec:
  type: NodePort
  selector: {{app: web, machine: "{m}"}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


@pytest.fixture(scope="module")
def workloads(machines):
    _, a, b, _, _ = machines
    nodes = {"a": f"{a.names[0]}-node-1", "b": b.names[0]}
    a.kubectl("apply", "-f", "-", input="---".join(PODS.format(m=m, node=n) for m, n in nodes.items()))
    a.kubectl("wait", "--for=condition=Ready", "pod", "--all", "--timeout=60s", timeout=90)
    pods = {p["metadata"]["name"]: p for p in a.kubectl_json("get", "pods")["items"]}
    services = {s["metadata"]["name"]: s for s in a.kubectl_json("get", "services")["items"]}
    return nodes, pods, services


def _wget(a, client: str, url: str) -> str:
    cp = a.kubectl("exec", client, "--", "wget", "-qO-", "-T", "3", url, check=False, timeout=30)
    return cp.stdout


def _set_mode(a, mode: str) -> None:
    ds = a.kubectl_json("get", "daemonset", "kube-proxy", "-n", "kube-system")
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    index = next(i for i, arg in enumerate(args) if arg.startswith("--mode="))
    if args[index] != f"--mode={mode}":
        a.kubectl("patch", "daemonset", "kube-proxy", "-n", "kube-system", "--type=json", "-p", json.dumps(
            [{"op": "replace", "path": f"/spec/template/spec/containers/0/args/{index}", "value": f"--mode={mode}"}]))

    def rolled_out() -> bool:
        pods = a.kubectl_json("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-proxy")["items"]
        current = [p for p in pods if f"--mode={mode}" in p["spec"]["containers"][0].get("args", [])
                   and not p["metadata"].get("deletionTimestamp")
                   and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
        return len(current) == 2 and len(pods) == 2

    until(rolled_out, f"kube-proxy in {mode} mode on both machines", timeout=90)


@pytest.mark.parametrize("mode", MODES)
def test_traffic_across_machines(machines, workloads, mode):
    _, a, b, _, _ = machines
    nodes, pods, services = workloads
    _set_mode(a, mode)
    node_ips = {m: next(x["address"] for x in a.kubectl_json("get", "node", n)["status"]["addresses"]
                        if x["type"] == "InternalIP") for m, n in nodes.items()}
    for here, there in (("a", "b"), ("b", "a")):
        client = f"client-{here}"
        want = f"You've hit web-{there}"
        pod_ip = pods[f"web-{there}"]["status"]["podIP"]
        until(lambda: want in _wget(a, client, f"http://{pod_ip}:8080/"), f"pod {here} -> pod {there} by pod IP")
        svc = services[f"web-{there}"]
        cluster_ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
        until(lambda: want in _wget(a, client, f"http://{cluster_ip}/"), f"pod {here} -> ClusterIP of web-{there}")
        until(lambda: want in _wget(a, client, f"http://web-{there}/"), f"pod {here} -> web-{there} by DNS name")
        for m in ("a", "b"):  # NodePort on every node, whichever machine holds it
            until(lambda: want in _wget(a, client, f"http://{node_ips[m]}:{node_port}/"),
                  f"pod {here} -> NodePort {node_port} of web-{there} on node {m}")
        for machine in (a, b):  # and on every machine's own address, from the LAN
            until(lambda: want in machine.run(["curl", "-s", "-m", "3", f"http://{machine.address}:{node_port}/"],
                                              timeout=10).stdout,
                  f"the LAN -> NodePort {node_port} of web-{there} on machine {machine.address}")
            other = b if machine is a else a
            until(lambda: want in other.run(["curl", "-s", "-m", "3", f"http://{machine.address}:{node_port}/"],
                                            timeout=10).stdout,
                  f"machine {other.address} -> NodePort {node_port} of web-{there} on machine {machine.address}")


LEAVING = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  tolerations:
  - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}}
  - {{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}}
  containers: [{{name: sh, image: busybox, command: [sleep, "3600"]}}]
"""


def _ready(a, node: str) -> str:
    conditions = a.kubectl_json("get", "node", node)["status"].get("conditions", [])
    return next((c["status"] for c in conditions if c["type"] == "Ready"), "")


def test_a_machine_that_leaves(machines, workloads):
    """Last in this module: it cuts the second machine off the LAN (its link on the test's switch
    down, as a machine unplugged), then plugs it back. Its node goes NotReady (Ready Unknown,
    after the node lifecycle controller's default 40 s grace period) and is tainted
    unreachable:NoExecute; the pod that tolerates that for 2 s is evicted (marked for deletion:
    Terminating, as upstream, until the node's agent is back to stop it), the pods with the
    default 300 s toleration stay. Back on the LAN, the node is Ready again and the evicted
    pod is gone."""
    lan, a, b, _, _ = machines
    nodes, _, _ = workloads
    node = nodes["b"]
    a.kubectl("apply", "-f", "-", input=LEAVING.format(name="leaving", node=node))
    a.kubectl("wait", "--for=condition=Ready", "pod/leaving", "--timeout=60s", timeout=90)
    assert _ready(a, node) == "True"
    cable = lan.cable(b.index)  # the machine's cable, on the switch's side
    network._run(["ip", "link", "set", cable, "down"], netns=lan.switch)
    try:
        until(lambda: _ready(a, node) == "Unknown", f"node {node} NotReady (Unknown) once its machine left",
              timeout=120)

        def taints() -> set:
            return {(t["key"], t["effect"]) for t in a.kubectl_json("get", "node", node)["spec"].get("taints", [])}

        # NoSchedule at once; NoExecute through the eviction rate limiter (0.1 nodes a second)
        until(lambda: ("node.kubernetes.io/unreachable", "NoExecute") in taints(),
              f"node {node} tainted unreachable:NoExecute", timeout=60)
        assert ("node.kubernetes.io/unreachable", "NoSchedule") in taints()
        until(lambda: a.kubectl_json("get", "pod", "leaving")["metadata"].get("deletionTimestamp"),
              "the pod tolerating unreachable for 2 s evicted", timeout=60)
        leaving = a.kubectl_json("get", "pod", "leaving")
        assert any(c["type"] == "DisruptionTarget" and c["reason"] == "DeletionByTaintManager"
                   for c in leaving["status"]["conditions"]), leaving["status"]["conditions"]
        events = a.kubectl_json("get", "events", "--field-selector", "involvedObject.name=leaving")["items"]
        assert any(e["reason"] == "TaintManagerEviction" and e["message"] == "Marking for deletion Pod default/leaving"
                   for e in events), [(e["reason"], e["message"]) for e in events]
        stayed = a.kubectl_json("get", "pod", "client-b")  # the default toleration: 300 s
        assert not stayed["metadata"].get("deletionTimestamp")
    finally:
        network._run(["ip", "link", "set", cable, "up"], netns=lan.switch)
    until(lambda: _ready(a, node) == "True", f"node {node} Ready again once its machine is back", timeout=120)
    until(lambda: "leaving" not in a.kubectl("get", "pods", "-o", "name").stdout,
          "the evicted pod gone once its node's agent stopped it", timeout=120)
