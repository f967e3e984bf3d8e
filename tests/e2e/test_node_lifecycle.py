"""A machine that leaves, on a real 2-node cluster: one node's agent is frozen (SIGSTOP to the
agent's PID alone: its pods keep running, as on a machine cut off from the network), the node
goes NotReady after the 40 s grace period with the unreachable taints, the Deployment's pod on
it is evicted once its 5 s toleration passes and comes back on the other node, and the Service
sends nothing to the lost pod. The agent then resumes: the node is Ready again, its taints go
and the evicted pod is finished."""

from __future__ import annotations

import os
import signal

import pytest

from tests.e2e.test_cluster_pods import eventually

pytestmark = pytest.mark.e2e

UNREACHABLE = "node.kubernetes.io/unreachable"
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: mover
spec:
  replicas: 1
  selector:
    matchLabels: {app: mover}
  template:
    metadata:
      labels: {app: mover}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      containers:
      - name: web
        image: nginx
        ports: [{containerPort: 80}]
"""


def ready(obj: dict) -> str | None:
    return next((c["status"] for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)


def taints(cluster, node: str) -> set[tuple[str, str]]:
    spec = cluster.kubectl_json("get", "node", node).get("spec") or {}
    return {(t["key"], t["effect"]) for t in spec.get("taints") or []}


def test_a_node_that_leaves_goes_not_ready_and_its_pod_moves(cluster, ns):
    cluster.ensure_up()
    assert all(ready(n) == "True" for n in cluster.kubectl_json("get", "nodes")["items"])
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=DEPLOYMENT)
    cluster.kubectl("expose", "deployment", "mover", "--port=80", "-n", ns)

    def running_pods() -> list[dict]:
        items = cluster.kubectl_json("get", "pods", "-n", ns, "-l", "app=mover")["items"]
        return [p for p in items if ready(p) == "True" and not p["metadata"].get("deletionTimestamp")]

    victim = eventually(lambda: running_pods(), timeout=60)[0]
    leaving = victim["spec"]["nodeName"]
    staying = next(n.name for n in cluster.net.node_list() if n.name != leaving)

    agent = cluster.pids()[f"agent-{leaving}"]  # the agent process `up` started for that node
    os.kill(agent, signal.SIGSTOP)
    try:
        def node_lost():
            node = cluster.kubectl_json("get", "node", leaving)
            return ready(node) == "Unknown" and {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")} <= \
                taints(cluster, leaving) and node

        node = eventually(node_lost, timeout=120)
        reason = next(c["reason"] for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert reason == "NodeStatusUnknown"
        table = cluster.kubectl("get", "nodes").stdout
        assert any(line.split()[:2] == [leaving, "NotReady"] for line in table.splitlines()), table

        # evicted after its 5 s toleration; the ReplicaSet's replacement runs on the other node
        replacement = eventually(lambda: [p for p in running_pods()
                                          if p["metadata"]["name"] != victim["metadata"]["name"]], timeout=90)
        assert replacement[0]["spec"]["nodeName"] == staying
        gone = cluster.kubectl_json("get", "pod", victim["metadata"]["name"], "-n", ns)
        assert gone["metadata"].get("deletionTimestamp")  # Terminating: its node is not there to finish it
        events = cluster.kubectl_json("get", "events", "-n", ns, "--field-selector",
                                      f"involvedObject.name={victim['metadata']['name']}")["items"]
        assert any(e["reason"] == "TaintManagerEviction" and
                   e["message"] == f"Marking for deletion Pod {ns}/{victim['metadata']['name']}" for e in events)

        def endpoints_only_new() -> bool:
            subsets = cluster.kubectl_json("get", "endpoints", "mover", "-n", ns).get("subsets") or []
            return [a["ip"] for s in subsets for a in s.get("addresses") or []] == [replacement[0]["status"]["podIP"]]

        eventually(endpoints_only_new, timeout=30)
    finally:
        os.kill(agent, signal.SIGCONT)

    # back: Ready, no taints, and the agent finishes the pod that was evicted while it was away
    eventually(lambda: ready(cluster.kubectl_json("get", "node", leaving)) == "True" and not taints(cluster, leaving),
               timeout=90)
    eventually(lambda: cluster.kubectl("get", "pod", victim["metadata"]["name"], "-n", ns,
                                       check=False).returncode != 0, timeout=90)
    # the system pods that stayed on it (kube-proxy's DaemonSet pod at least) are Ready again: the
    # agent writes back the Ready condition the node controller had set to False

    def pods_on_node_ready() -> bool:
        items = cluster.kubectl_json("get", "pods", "-n", "kube-system", "--field-selector",
                                     f"spec.nodeName={leaving}")["items"]
        running = [p for p in items if p["status"].get("phase") == "Running" and not p["metadata"].get(
            "deletionTimestamp")]
        return bool(running) and all(ready(p) == "True" for p in running)

    eventually(pods_on_node_ready, timeout=60)
    events = cluster.kubectl_json("get", "events", "-A", "--field-selector", f"involvedObject.name={leaving}")["items"]
    assert any(e["reason"] == "NodeNotReady" and e["source"].get("component") == "node-controller" for e in events)
