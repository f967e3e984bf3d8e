"""A node that stops renewing its Lease, against `pocketkube server --node-monitor-grace-period 3s`
with the real kubectl and the kubernetes Python client: it goes NotReady (Unknown conditions,
the unreachable taints, NodeNotReady events), its pods turn NotReady and leave the Endpoints,
a pod tolerating it for 5 s is evicted, one tolerating it forever stays, the scheduler keeps new
pods off it; when it comes back the taints go. And a NoExecute taint nobody tolerates evicts at once.

No kubelet runs here: the test plays the node agents (Nodes, their status and Leases) and the
kubelet's pod status writes.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
import uuid

import pytest

from tests.conftest import start_server
from tests.integration.test_lifecycle import eventually

pytestmark = pytest.mark.kubectl

UNREACHABLE = "node.kubernetes.io/unreachable"


def now_micro() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_seconds() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeNode:
    """What a node agent does for the control plane: the Node, its Ready status, its Lease."""

    def __init__(self, core, coordination, name: str):
        self.core, self.coordination, self.name = core, coordination, name
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name}}}
        self.core.create_node(node)
        self.post_status()
        self.coordination.create_namespaced_lease("kube-node-lease", {
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()}})

    def post_status(self) -> None:
        stamp = now_seconds()
        status = {"status": {"conditions": [
            {"type": kind, "status": value, "reason": reason, "message": reason, "lastHeartbeatTime": stamp,
             "lastTransitionTime": stamp} for kind, value, reason in (
                ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID"),
                ("Ready", "True", "KubeletReady"))],
            "addresses": [{"type": "InternalIP", "address": "172.18.0.77"}]}}
        self.core.patch_node_status(self.name, status)

    def renew(self) -> None:
        self.coordination.patch_namespaced_lease(self.name, "kube-node-lease", {"spec": {"renewTime": now_micro()}})


class Heartbeat:
    """Renews some nodes' Leases every half second until stopped (the agents' heartbeats)."""

    def __init__(self, *nodes: FakeNode):
        self.nodes = list(nodes)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(0.5):
            for node in list(self.nodes):
                try:
                    node.renew()
                except Exception:  # a failed renewal is a missed heartbeat, as for a real agent
                    pass

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)


@pytest.fixture(scope="module")
def short_grace_server(tmp_path_factory):
    srv = start_server(str(tmp_path_factory.mktemp("pk-nodes")),
                       args=("--node-monitor-grace-period", "3s", "--node-monitor-period", "1s"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def apis(short_grace_server):
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=short_grace_server.kubeconfig)
    yield client.CoreV1Api(api_client), client.CoordinationV1Api(api_client)
    api_client.close()


def pod(name: str, node: str, tolerations: list | None = None, labels: dict | None = None) -> dict:
    spec = {"containers": [{"name": "c", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def run_pod(core, ns: str, name: str, ip: str) -> None:
    """The kubelet's status for a running, ready pod."""
    stamp = now_seconds()
    core.patch_namespaced_pod_status(name, ns, {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                                                           "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": stamp},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": stamp}]}})


def condition(obj: dict, kind: str) -> dict:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def events(server, ns: str, name: str) -> list[tuple[str, str, str]]:
    items = server.kubectl_json("get", "events", *(["-n", ns] if ns else ["-A"]), "--field-selector",
                                f"involvedObject.name={name}")["items"]
    return [(e["reason"], e["message"], (e.get("source") or {}).get("component", "")) for e in items]


@pytest.fixture
def fake_nodes(short_grace_server, apis):
    """make(count, prefix) -> (nodes, a fresh namespace, the Heartbeat renewing the nodes' Leases);
    all gone at the end."""
    made: list[tuple[Heartbeat, list[FakeNode], str]] = []

    def make(count: int, prefix: str) -> tuple[list[FakeNode], str, Heartbeat]:
        suffix = uuid.uuid4().hex[:5]
        nodes = [FakeNode(*apis, f"{prefix}-{suffix}-{i}") for i in range(count)]
        ns = f"t-{suffix}"
        short_grace_server.kubectl("create", "namespace", ns)
        made.append((Heartbeat(*nodes), nodes, ns))
        return nodes, ns, made[-1][0]

    yield make
    for beat, nodes, ns in made:
        beat.stop()
        short_grace_server.kubectl("delete", "namespace", ns, "--wait=false")
        for node in nodes:
            short_grace_server.kubectl("delete", "node", node.name, "--ignore-not-found")


def test_a_node_that_stops_renewing_its_lease(short_grace_server, apis, fake_nodes):
    server, (core, _) = short_grace_server, apis
    (steady, leaving), ns, beat = fake_nodes(2, "node")
    forever = [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]
    five = [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]
    for name, tolerations, ip in (("five", five, "10.244.9.5"), ("forever", forever, "10.244.9.6"),
                                  ("default", None, "10.244.9.7")):
        core.create_namespaced_pod(ns, pod(name, leaving.name, tolerations, {"app": "web"}))
        run_pod(core, ns, name, ip)
    # DefaultTolerationSeconds gave the pod without tolerations 300 s
    default = core.read_namespaced_pod("default", ns).to_dict()
    assert {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "toleration_seconds": 300,
            "value": None} in default["spec"]["tolerations"]
    server.kubectl("create", "service", "clusterip", "web", "-n", ns, "--tcp=80:80")
    server.kubectl("set", "selector", "service", "web", "app=web", "-n", ns)

    def endpoints() -> tuple[list[str], list[str]]:
        subsets = server.kubectl_json("get", "endpoints", "web", "-n", ns).get("subsets") or []
        return (sorted(a["ip"] for s in subsets for a in s.get("addresses") or []),
                sorted(a["ip"] for s in subsets for a in s.get("notReadyAddresses") or []))

    eventually(lambda: endpoints() == (["10.244.9.5", "10.244.9.6", "10.244.9.7"], []))
    assert "NotReady" not in server.kubectl("get", "nodes").stdout

    # the node leaves: no more Lease renewals, no more status
    beat.nodes.remove(leaving)

    def node_unreachable():
        node = server.kubectl_json("get", "node", leaving.name)
        taints = {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or []}
        return {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")} <= taints and node

    node = eventually(node_unreachable)
    for kind in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
        c = condition(node, kind)
        assert (c["status"], c["reason"], c["message"]) == ("Unknown", "NodeStatusUnknown",
                                                             "Kubelet stopped posting node status.")
    assert all("timeAdded" in t for t in node["spec"]["taints"])
    table = server.kubectl("get", "nodes").stdout.splitlines()
    assert [line.split()[1] for line in table if line.startswith(leaving.name)] == ["NotReady"]
    assert [line.split()[1] for line in table if line.startswith(steady.name)] == ["Ready"]
    described = server.kubectl("describe", "node", leaving.name).stdout
    assert f"{UNREACHABLE}:NoExecute" in described and f"{UNREACHABLE}:NoSchedule" in described
    assert "NodeStatusUnknown" in described and "Kubelet stopped posting node status." in described
    assert ("NodeNotReady", f"Node {leaving.name} status is now: NodeNotReady", "node-controller") in \
        eventually(lambda: events(server, "", leaving.name))
    assert ("RegisteredNode", f"Node {leaving.name} event: Registered Node {leaving.name} in Controller",
            "node-controller") in events(server, "", leaving.name)

    # its pods are NotReady (MarkPodsNotReady), so the Endpoints move them to notReadyAddresses
    eventually(lambda: condition(core.read_namespaced_pod("forever", ns).to_dict(), "Ready")["status"] == "False")
    assert ("NodeNotReady", "Node is not ready", "node-controller") in events(server, ns, "forever")
    eventually(lambda: endpoints()[0] == [] and set(endpoints()[1]) >= {"10.244.9.6", "10.244.9.7"})

    # tolerationSeconds 5: deleted once the 5 s passed (it stays Terminating: no kubelet finishes it)
    evicted = eventually(lambda: (p := core.read_namespaced_pod("five", ns).to_dict())["metadata"][
        "deletion_timestamp"] and p, timeout=30)
    taint = next(t for t in node["spec"]["taints"] if (t["key"], t["effect"]) == (UNREACHABLE, "NoExecute"))
    tainted_at = _dt.datetime.fromisoformat(taint["timeAdded"].replace("Z", "+00:00"))
    # not before the 5 s (deletionTimestamp is the delete + its grace, so no earlier; whole seconds)
    assert (evicted["metadata"]["deletion_timestamp"] - tainted_at).total_seconds() >= 4
    assert ("TaintManagerEviction", f"Marking for deletion Pod {ns}/five", "taint-eviction-controller") in \
        eventually(lambda: events(server, ns, "five"))
    disruption = condition(evicted, "DisruptionTarget")
    assert (disruption["status"], disruption["reason"], disruption["message"]) == (
        "True", "DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint")
    # tolerating forever (and the default 300 s): still there, not being deleted
    for name in ("forever", "default"):
        assert core.read_namespaced_pod(name, ns).metadata.deletion_timestamp is None

    # the scheduler keeps a new pod off it: the unreachable NoSchedule taint is not tolerated
    pinned = pod("pinned", "", None)
    pinned["spec"]["nodeSelector"] = {"kubernetes.io/hostname": leaving.name}
    core.create_namespaced_pod(ns, pinned)
    scheduled = eventually(lambda: [c for c in (core.read_namespaced_pod("pinned", ns).status.conditions or [])
                                    if c.type == "PodScheduled" and c.status == "False"])
    assert f"untolerated taint {{{UNREACHABLE}: }}" in scheduled[0].message

    # it comes back: status and Lease again; the taints go, the pod tolerating forever was never evicted
    leaving.post_status()
    beat.nodes.append(leaving)

    def healed():
        node = server.kubectl_json("get", "node", leaving.name)
        return condition(node, "Ready")["status"] == "True" and not (node.get("spec") or {}).get("taints")

    eventually(healed)
    assert core.read_namespaced_pod("forever", ns).metadata.deletion_timestamp is None
    eventually(lambda: core.read_namespaced_pod("pinned", ns).spec.node_name == leaving.name)


def test_a_no_execute_taint_evicts_at_once_or_after_the_toleration(short_grace_server, apis, fake_nodes):
    server, (core, _) = short_grace_server, apis
    nodes, ns, _ = fake_nodes(2, "taint")
    target = nodes[0].name
    core.create_namespaced_pod(ns, pod("plain", target))
    core.create_namespaced_pod(ns, pod("patient", target, [{"key": "maintenance", "operator": "Exists",
                                                             "effect": "NoExecute", "tolerationSeconds": 3600}]))
    core.create_namespaced_pod(ns, pod("other-node", nodes[1].name))
    server.kubectl("taint", "node", target, "maintenance=now:NoExecute")
    eventually(lambda: core.read_namespaced_pod("plain", ns).metadata.deletion_timestamp is not None)
    assert ("TaintManagerEviction", f"Marking for deletion Pod {ns}/plain", "taint-eviction-controller") in \
        eventually(lambda: events(server, ns, "plain"))
    # the patient pod's deletion was scheduled in the same pass; the taint going cancels it
    server.kubectl("taint", "node", target, "maintenance=now:NoExecute-")
    assert ("TaintManagerEviction", f"Cancelling deletion of Pod {ns}/patient", "taint-eviction-controller") in \
        eventually(lambda: events(server, ns, "patient"))
    for name in ("patient", "other-node"):
        assert core.read_namespaced_pod(name, ns).metadata.deletion_timestamp is None
    assert condition(server.kubectl_json("get", "node", target), "Ready")["status"] == "True"  # Ready all along


def test_cordon_shows_the_unschedulable_taint(short_grace_server, fake_nodes):
    server = short_grace_server
    (node,), _, _ = fake_nodes(1, "cordon")
    server.kubectl("cordon", node.name)
    eventually(lambda: [t for t in (server.kubectl_json("get", "node", node.name).get("spec") or {}).get("taints") or []
                        if t["key"] == "node.kubernetes.io/unschedulable" and t["effect"] == "NoSchedule"])
    assert "node.kubernetes.io/unschedulable:NoSchedule" in server.kubectl("describe", "node", node.name).stdout
    server.kubectl("uncordon", node.name)
    eventually(lambda: not (server.kubectl_json("get", "node", node.name).get("spec") or {}).get("taints"))


def test_node_monitor_flags_are_validated(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    cp = subprocess.run([sys.executable, "-m", "pocketkube.cli.main", "server", "--data-dir", str(tmp_path),
                         "--node-monitor-grace-period", "forty"], capture_output=True, text=True, cwd=ROOT)
    assert cp.returncode == 2 and 'invalid duration "forty"' in cp.stderr, cp.stderr
