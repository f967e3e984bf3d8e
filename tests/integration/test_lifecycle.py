"""Object lifecycles with the real kubectl against `pocketkube server`: StatefulSets (ordinal
names, ordered start and stop, rolling updates), DaemonSets (one pod per eligible node),
garbage collection through ownerReferences (background, foreground, orphan), namespace
deletion and the `default` ServiceAccount.

Pods do not run here: the tests play the kubelet (pod status through /status, removal of
terminating pods) and the node agent (Node objects).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

pytestmark = pytest.mark.kubectl


# ---- helpers ---------------------------------------------------------------------------


def eventually(fn, timeout: float = 20, interval: float = 0.1):
    """fn() until it returns something truthy without failing an assertion."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = fn()
            if result:
                return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {getattr(fn, '__name__', fn)}")
        time.sleep(interval)


def get(server, ns, *what) -> dict | None:
    cp = server.kubectl("get", *what, *(["-n", ns] if ns else []), "-o", "json", check=False)
    if cp.returncode != 0:
        assert "NotFound" in cp.stderr or "not found" in cp.stderr, cp.stderr
        return None
    return json.loads(cp.stdout)


def pods(server, ns, selector: str = "") -> dict[str, dict]:
    args = ["pods"] + (["-l", selector] if selector else [])
    return {p["metadata"]["name"]: p for p in get(server, ns, *args)["items"]}


def apply(server, ns, manifest: str) -> None:
    server.kubectl("apply", *(["-n", ns] if ns else []), "-f", "-", input=manifest)


def make_ready(server, ns, name: str) -> None:
    """What a kubelet reports once the pod's containers run and pass readiness."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {"status": {"phase": "Running", "podIP": "10.244.1.10", "hostIP": "172.18.0.2",
                         "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now},
                                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}}
    server.kubectl("patch", "pod", name, "-n", ns, "--subresource=status", "--type=merge",
                   "-p", json.dumps(status))


def is_ready(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in pod["status"].get("conditions") or [])


def ready_all(server, ns, selector: str) -> dict[str, dict]:
    """Marks every live, not yet ready pod ready; returns the pods as they were."""
    current = pods(server, ns, selector)
    for name, pod in current.items():
        if not is_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
            make_ready(server, ns, name)
    return current


def finish_terminating(server, ns, selector: str = "") -> None:
    """The kubelet's last step for pods being deleted gracefully."""
    for name, pod in pods(server, ns, selector).items():
        if pod["metadata"].get("deletionTimestamp"):
            server.kubectl("delete", "pod", name, "-n", ns, "--grace-period=0", "--force", "--wait=false",
                           check=False)


def kubelet_pass(server, ns, selector: str) -> dict[str, dict]:
    """One round of a kubelet on every node: ready pods start, terminating pods finish."""
    finish_terminating(server, ns, selector)
    return ready_all(server, ns, selector)


def create_node(server, name: str, labels: dict | None = None, taints: list | None = None) -> None:
    """What a node agent does when it joins: a Node, then its Ready status."""
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints} if taints else {}}
    apply(server, None, json.dumps(node))
    status = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                         "message": "kubelet is posting ready status"}],
                         "addresses": [{"type": "InternalIP", "address": "172.18.0.9"}]}}
    server.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


@pytest.fixture
def node_factory(server):
    """create_node for one test; the nodes go when it ends, so later tests find none (the
    scheduler would bind their pods, which then need a kubelet to be deleted)."""
    created: list[str] = []

    def make(name: str, labels: dict | None = None, taints: list | None = None) -> str:
        create_node(server, name, labels, taints)
        created.append(name)
        return name

    yield make
    for name in created:
        server.kubectl("delete", "node", name, "--ignore-not-found")


def events_for(server, ns, name: str) -> list[tuple[str, str]]:
    items = get(server, ns, "events", "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["reason"], e["message"]) for e in items]


STATEFULSET = """\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: mysql
spec:
  serviceName: mysql
  replicas: {replicas}
  podManagementPolicy: {policy}
  updateStrategy: {strategy}
  selector:
    matchLabels: {{app: mysql}}
  template:
    metadata:
      labels: {{app: mysql}}
    spec:
      {node}
      containers:
      - name: mysql
        image: {image}
"""


def statefulset(replicas=3, policy="OrderedReady", strategy="{type: RollingUpdate}", image="mysql:8",
                node_name="") -> str:
    node = f"nodeName: {node_name}" if node_name else ""
    return STATEFULSET.format(replicas=replicas, policy=policy, strategy=strategy, image=image, node=node)


def start_statefulset(server, ns, replicas=3, **kwargs) -> None:
    """Creates the set and plays the kubelet until every replica runs and is ready."""
    apply(server, ns, statefulset(replicas=replicas, **kwargs))

    def all_ready():
        current = ready_all(server, ns, "app=mysql")
        return len(current) == replicas and all(is_ready(p) for p in current.values())

    eventually(all_ready, timeout=30)


# ---- StatefulSet -----------------------------------------------------------------------------


def test_statefulset_starts_pods_in_order_with_stable_identity(server, ns):
    server.kubectl("create", "service", "clusterip", "mysql", "--clusterip=None", "-n", ns)
    apply(server, ns, statefulset(replicas=3))

    first = eventually(lambda: pods(server, ns, "app=mysql"))
    # OrderedReady: nothing else starts while mysql-0 is not Running and Ready.
    assert list(first) == ["mysql-0"]
    sts = get(server, ns, "statefulset", "mysql")
    pod = first["mysql-0"]
    assert pod["spec"]["hostname"] == "mysql-0"
    assert pod["spec"]["subdomain"] == "mysql"
    labels = pod["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "mysql-0"
    assert labels["apps.kubernetes.io/pod-index"] == "0"
    assert labels["app"] == "mysql"
    assert labels["controller-revision-hash"].startswith("mysql-")
    assert pod["metadata"]["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "mysql", "uid": sts["metadata"]["uid"],
        "controller": True, "blockOwnerDeletion": True}]

    make_ready(server, ns, "mysql-0")
    assert list(eventually(lambda: len(pods(server, ns, "app=mysql")) == 2 and pods(server, ns, "app=mysql"))) \
        == ["mysql-0", "mysql-1"]
    make_ready(server, ns, "mysql-1")
    eventually(lambda: "mysql-2" in pods(server, ns, "app=mysql"))
    make_ready(server, ns, "mysql-2")

    out = server.kubectl("rollout", "status", "statefulset/mysql", "-n", ns, "--timeout=30s").stdout
    # The server defaults partition to 0, so kubectl reports a partitioned roll out, as with a real cluster.
    assert "partitioned roll out complete: 3 new pods have been updated..." in out
    revision = labels["controller-revision-hash"]

    status = get(server, ns, "statefulset", "mysql")["status"]
    assert {k: status.get(k) for k in ("replicas", "readyReplicas", "currentReplicas", "updatedReplicas",
                                       "availableReplicas", "currentRevision", "updateRevision",
                                       "collisionCount", "observedGeneration")} == {
        "replicas": 3, "readyReplicas": 3, "currentReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
        "currentRevision": revision, "updateRevision": revision, "collisionCount": 0, "observedGeneration": 1}
    assert server.kubectl("get", "sts", "mysql", "-n", ns, "--no-headers").stdout.split()[1] == "3/3"

    def created_events():
        found = events_for(server, ns, "mysql")
        for i in range(3):
            assert ("SuccessfulCreate", f"create Pod mysql-{i} in StatefulSet mysql successful") in found
        return True

    eventually(created_events)


def test_statefulset_scales_down_in_reverse_order(server, ns):
    # Bound pods are deleted gracefully: each stays Terminating until the kubelet (the test)
    # removes it, so the order is observable.
    start_statefulset(server, ns, replicas=3, node_name="node-a")
    server.kubectl("scale", "statefulset", "mysql", "--replicas=1", "-n", ns)

    terminating = lambda: {n for n, p in pods(server, ns, "app=mysql").items()  # noqa: E731
                           if p["metadata"].get("deletionTimestamp")}
    assert eventually(terminating) == {"mysql-2"}
    assert "mysql-1" not in terminating()  # waits for mysql-2 to be gone
    finish_terminating(server, ns, "app=mysql")
    assert eventually(lambda: terminating() == {"mysql-1"} and terminating())
    finish_terminating(server, ns, "app=mysql")
    eventually(lambda: list(pods(server, ns, "app=mysql")) == ["mysql-0"])
    eventually(lambda: get(server, ns, "statefulset", "mysql")["status"]["replicas"] == 1)
    found = events_for(server, ns, "mysql")
    assert ("SuccessfulDelete", "delete Pod mysql-2 in StatefulSet mysql successful") in found


def test_statefulset_parallel_policy_starts_all_at_once(server, ns):
    apply(server, ns, statefulset(replicas=3, policy="Parallel"))
    eventually(lambda: sorted(pods(server, ns, "app=mysql")) == ["mysql-0", "mysql-1", "mysql-2"])
    server.kubectl("scale", "statefulset", "mysql", "--replicas=0", "-n", ns)
    eventually(lambda: not pods(server, ns, "app=mysql"))


def test_statefulset_rolling_update_in_reverse_order_down_to_partition(server, ns):
    start_statefulset(server, ns, replicas=3)
    old = get(server, ns, "statefulset", "mysql")["status"]["currentRevision"]
    server.kubectl("patch", "statefulset", "mysql", "-n", ns, "--type=merge", "-p",
                   json.dumps({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 1}}}}))
    server.kubectl("set", "image", "statefulset/mysql", "mysql=mysql:9", "-n", ns)
    new = eventually(lambda: (r := get(server, ns, "statefulset", "mysql")["status"]["updateRevision"]) != old and r)

    # The highest ordinal goes first; mysql-1 keeps the old revision until mysql-2 is ready again.
    def revisions():
        return {name: p["metadata"]["labels"]["controller-revision-hash"]
                for name, p in pods(server, ns, "app=mysql").items()}

    eventually(lambda: finish_terminating(server, ns, "app=mysql") or revisions().get("mysql-2") == new)
    assert revisions()["mysql-1"] == old
    image = pods(server, ns, "app=mysql")["mysql-2"]["spec"]["containers"][0]["image"]
    assert image == "mysql:9"

    def rolled_to_partition():
        current = kubelet_pass(server, ns, "app=mysql")
        return revisions() == {"mysql-0": old, "mysql-1": new, "mysql-2": new} and all(
            is_ready(p) for p in current.values())

    eventually(rolled_to_partition, timeout=30)
    out = server.kubectl("rollout", "status", "statefulset/mysql", "-n", ns, "--timeout=30s").stdout
    assert "partitioned roll out complete: 2 new pods have been updated..." in out

    server.kubectl("patch", "statefulset", "mysql", "-n", ns, "--type=merge", "-p",
                   json.dumps({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}))

    def complete():
        assert all(is_ready(p) for p in kubelet_pass(server, ns, "app=mysql").values())
        status = get(server, ns, "statefulset", "mysql")["status"]
        return set(revisions().values()) == {new} and status.get("currentRevision") == new \
            and status.get("readyReplicas") == 3

    eventually(complete, timeout=30)
    out = server.kubectl("rollout", "status", "statefulset/mysql", "-n", ns, "--timeout=30s").stdout
    assert "partitioned roll out complete: 3 new pods have been updated..." in out


def test_statefulset_on_delete_waits_for_the_user(server, ns):
    start_statefulset(server, ns, replicas=2, strategy="{type: OnDelete}")
    old = get(server, ns, "statefulset", "mysql")["status"]["currentRevision"]
    server.kubectl("set", "image", "statefulset/mysql", "mysql=mysql:9", "-n", ns)
    new = eventually(lambda: (r := get(server, ns, "statefulset", "mysql")["status"]["updateRevision"]) != old and r)
    status = get(server, ns, "statefulset", "mysql")["status"]
    assert status["currentRevision"] == old and status["currentReplicas"] == 2 and "updatedReplicas" not in status
    assert all(p["metadata"]["labels"]["controller-revision-hash"] == old
               for p in pods(server, ns, "app=mysql").values())
    old_uid = pods(server, ns)["mysql-0"]["metadata"]["uid"]
    server.kubectl("delete", "pod", "mysql-0", "-n", ns)

    def recreated():
        pod = pods(server, ns).get("mysql-0")
        return pod and pod["metadata"]["uid"] != old_uid and pod

    pod = eventually(recreated)
    assert pod["metadata"]["labels"]["controller-revision-hash"] == new
    assert pod["spec"]["containers"][0]["image"] == "mysql:9"


# ---- DaemonSet -------------------------------------------------------------------------------

DAEMONSET = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {{app: agent}}
  template:
    metadata:
      labels: {{app: agent}}
    spec:
      nodeSelector: {{pool: "{pool}"}}
      containers:
      - name: agent
        image: {image}
"""


def ds_pods_by_node(server, ns) -> dict[str, dict]:
    result = {}
    for pod in pods(server, ns, "app=agent").values():
        if pod["metadata"].get("deletionTimestamp"):
            continue
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"]
        assert len(terms) == 1 and terms[0]["matchFields"][0]["key"] == "metadata.name"
        node = terms[0]["matchFields"][0]["values"][0]
        assert node not in result, f"two pods for node {node}"
        result[node] = pod
    return result


def test_daemonset_runs_one_pod_per_eligible_node(server, ns, node_factory):
    pool = uuid.uuid4().hex[:8]
    nodes = [f"{pool}-{i}" for i in range(5)]
    node_factory(nodes[0], {"pool": pool})
    node_factory(nodes[1], {"pool": pool})
    node_factory(nodes[2], {"pool": pool}, taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    node_factory(nodes[3], {"pool": "elsewhere"})
    apply(server, ns, DAEMONSET.format(pool=pool, image="fluentd:1"))

    placed = eventually(lambda: (found := ds_pods_by_node(server, ns)) and sorted(found) == nodes[:2] and found)
    ds = get(server, ns, "daemonset", "agent")
    pod = placed[nodes[0]]
    assert pod["metadata"]["name"].startswith("agent-")
    assert pod["metadata"]["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": ds["metadata"]["uid"],
        "controller": True, "blockOwnerDeletion": True}]
    labels = pod["metadata"]["labels"]
    assert labels["pod-template-generation"] == "1" and labels["controller-revision-hash"]
    tolerations = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
    assert {("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"), ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule")} <= tolerations

    def status_is(**want):
        status = get(server, ns, "daemonset", "agent")["status"]
        return all(status.get(k, 0) == v for k, v in want.items())

    eventually(lambda: status_is(desiredNumberScheduled=2, currentNumberScheduled=2, numberReady=0,
                                 numberMisscheduled=0, updatedNumberScheduled=2, numberUnavailable=2))
    for p in placed.values():
        make_ready(server, ns, p["metadata"]["name"])
    eventually(lambda: status_is(desiredNumberScheduled=2, numberReady=2, numberAvailable=2, numberUnavailable=0))
    out = server.kubectl("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=30s").stdout
    assert 'daemon set "agent" successfully rolled out' in out
    found = events_for(server, ns, "agent")
    assert ("SuccessfulCreate", f"Created pod: {pod['metadata']['name']}") in found

    # A new node gets a pod; a removed node's pod goes.
    node_factory(nodes[4], {"pool": pool})
    eventually(lambda: sorted(ds_pods_by_node(server, ns)) == sorted([nodes[0], nodes[1], nodes[4]]))
    server.kubectl("delete", "node", nodes[0])
    # No kubelet will finish a pod of a node that is gone: it goes at once.
    eventually(lambda: sorted(ds_pods_by_node(server, ns)) == sorted([nodes[1], nodes[4]])
               and not any(p["metadata"].get("deletionTimestamp") for p in pods(server, ns, "app=agent").values()))
    eventually(lambda: status_is(desiredNumberScheduled=2, currentNumberScheduled=2))
    # A node that stops matching the selector loses its pod.
    server.kubectl("label", "node", nodes[4], "pool=other", "--overwrite")
    eventually(lambda: finish_terminating(server, ns, "app=agent") or sorted(ds_pods_by_node(server, ns)) == [nodes[1]])


def test_daemonset_rolling_update_replaces_pods_within_max_unavailable(server, ns, node_factory):
    pool = uuid.uuid4().hex[:8]
    nodes = [node_factory(f"{pool}-{i}", {"pool": pool}) for i in range(3)]
    apply(server, ns, DAEMONSET.format(pool=pool, image="fluentd:1"))

    def all_ready(image):
        kubelet_pass(server, ns, "app=agent")
        placed = ds_pods_by_node(server, ns)
        return sorted(placed) == nodes and all(
            is_ready(p) and p["spec"]["containers"][0]["image"] == image for p in placed.values())

    eventually(lambda: all_ready("fluentd:1"), timeout=30)
    server.kubectl("set", "image", "daemonset/agent", "agent=fluentd:2", "-n", ns)

    # maxUnavailable 1: while the first new pod is not ready, the other two old pods stay.
    def one_replaced():
        finish_terminating(server, ns, "app=agent")
        current = pods(server, ns, "app=agent").values()
        new = [p for p in current if p["spec"]["containers"][0]["image"] == "fluentd:2"]
        return len(new) == 1 and new

    eventually(one_replaced)
    old_live = [p for p in pods(server, ns, "app=agent").values()
                if p["spec"]["containers"][0]["image"] == "fluentd:1" and not p["metadata"].get("deletionTimestamp")]
    assert len(old_live) == 2
    eventually(lambda: all_ready("fluentd:2"), timeout=30)
    out = server.kubectl("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=30s").stdout
    assert 'daemon set "agent" successfully rolled out' in out
    status = get(server, ns, "daemonset", "agent")["status"]
    assert status["updatedNumberScheduled"] == 3 and status["observedGeneration"] == 2


# ---- garbage collection ------------------------------------------------------------------------


def configmap(name: str, owners: list[dict] | None = None, finalizers: list[str] | None = None) -> str:
    meta = {"name": name}
    if owners:
        meta["ownerReferences"] = owners
    if finalizers:
        meta["finalizers"] = finalizers
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}})


def owner_ref(obj: dict, block: bool = False) -> dict:
    ref = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
           "uid": obj["metadata"]["uid"]}
    if block:
        ref["blockOwnerDeletion"] = True
    return ref


def test_dependent_of_an_owner_that_no_longer_exists_is_collected(server, ns):
    # As when an owner is deleted while its controller is still creating children.
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gone", "uid": str(uuid.uuid4())}}
    apply(server, ns, configmap("child", [owner_ref(ghost)]))
    apply(server, ns, configmap("bystander"))
    eventually(lambda: get(server, ns, "configmap", "child") is None)
    assert get(server, ns, "configmap", "bystander") is not None


def test_background_deletion_collects_the_whole_chain(server, ns):
    apply(server, ns, configmap("root"))
    root = get(server, ns, "configmap", "root")
    apply(server, ns, configmap("mid", [owner_ref(root)]))
    mid = get(server, ns, "configmap", "mid")
    apply(server, ns, configmap("leaf", [owner_ref(mid)]))
    # A dependent with a second owner that stays keeps living, without the gone owner.
    apply(server, ns, configmap("keeper"))
    keeper = get(server, ns, "configmap", "keeper")
    apply(server, ns, configmap("shared", [owner_ref(root), owner_ref(keeper)]))

    server.kubectl("delete", "configmap", "root", "-n", ns)
    eventually(lambda: get(server, ns, "configmap", "mid") is None and get(server, ns, "configmap", "leaf") is None)
    shared = eventually(lambda: (s := get(server, ns, "configmap", "shared"))
                        and [r["name"] for r in s["metadata"]["ownerReferences"]] == ["keeper"] and s)
    assert shared["metadata"]["ownerReferences"][0]["uid"] == keeper["metadata"]["uid"]


def test_foreground_deletion_waits_for_blocking_dependents(server, ns):
    apply(server, ns, configmap("owner"))
    owner = get(server, ns, "configmap", "owner")
    apply(server, ns, configmap("blocker", [owner_ref(owner, block=True)], finalizers=["example.com/hold"]))

    server.kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=foreground", "--wait=false")
    blocker = eventually(lambda: (b := get(server, ns, "configmap", "blocker"))
                         and b["metadata"].get("deletionTimestamp") and b)
    held = get(server, ns, "configmap", "owner")
    assert held["metadata"]["deletionTimestamp"] and held["metadata"]["finalizers"] == ["foregroundDeletion"]

    assert blocker["metadata"]["finalizers"] == ["example.com/hold"]
    server.kubectl("patch", "configmap", "blocker", "-n", ns, "--type=json",
                   "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')
    eventually(lambda: get(server, ns, "configmap", "owner") is None)
    assert get(server, ns, "configmap", "blocker") is None


def test_orphan_deletion_keeps_dependents_without_the_reference(server, ns):
    apply(server, ns, configmap("owner"))
    owner = get(server, ns, "configmap", "owner")
    apply(server, ns, configmap("child", [owner_ref(owner, block=True)]))
    server.kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=orphan", timeout=30)
    assert get(server, ns, "configmap", "owner") is None
    child = get(server, ns, "configmap", "child")
    assert child is not None and not child["metadata"].get("ownerReferences")


def test_deleting_a_statefulset_in_foreground_waits_for_its_pods(server, ns):
    start_statefulset(server, ns, replicas=2, policy="Parallel", node_name="node-a")
    server.kubectl("delete", "statefulset", "mysql", "-n", ns, "--cascade=foreground", "--wait=false")
    eventually(lambda: all(p["metadata"].get("deletionTimestamp") for p in pods(server, ns, "app=mysql").values()))
    sts = get(server, ns, "statefulset", "mysql")
    assert sts is not None and "foregroundDeletion" in sts["metadata"]["finalizers"]
    finish_terminating(server, ns, "app=mysql")
    eventually(lambda: get(server, ns, "statefulset", "mysql") is None)
    assert not pods(server, ns, "app=mysql")


def test_deleting_a_daemonset_collects_its_pods(server, ns, node_factory):
    pool = uuid.uuid4().hex[:8]
    node_factory(f"{pool}-0", {"pool": pool})
    apply(server, ns, DAEMONSET.format(pool=pool, image="fluentd:1"))
    eventually(lambda: len(pods(server, ns, "app=agent")) == 1)
    server.kubectl("delete", "daemonset", "agent", "-n", ns)
    eventually(lambda: finish_terminating(server, ns, "app=agent") or not pods(server, ns, "app=agent"))


def test_deleting_a_service_collects_its_endpointslices(server, ns):
    server.kubectl("create", "service", "clusterip", "db", "--tcp=5432", "-n", ns)
    svc = get(server, ns, "service", "db")
    ref = {**owner_ref(svc), "controller": True, "blockOwnerDeletion": True}
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": "db-manual", "ownerReferences": [ref]},
              "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.7"]}], "ports": [{"port": 5432}]}
    apply(server, ns, json.dumps(slice_))
    server.kubectl("delete", "service", "db", "-n", ns)
    eventually(lambda: get(server, ns, "endpointslice", "db-manual") is None)


def test_kubectl_delete_deployment_cascades(server, ns):
    def create(name):
        server.kubectl("create", "deployment", name, "--image=nginx", "--replicas=2", "-n", ns)
        return eventually(lambda: len(pods(server, ns, f"app={name}")) == 2
                          and get(server, ns, "replicasets", "-l", f"app={name}")["items"])

    create("web")
    server.kubectl("delete", "deployment", "web", "-n", ns, timeout=30)
    eventually(lambda: finish_terminating(server, ns, "app=web") or (
        not get(server, ns, "replicasets", "-l", "app=web")["items"] and not pods(server, ns, "app=web")))

    create("orphans")
    server.kubectl("delete", "deployment", "orphans", "-n", ns, "--cascade=orphan", timeout=30)
    sets = get(server, ns, "replicasets", "-l", "app=orphans")["items"]
    assert len(sets) == 1 and not sets[0]["metadata"].get("ownerReferences")
    left = pods(server, ns, "app=orphans")
    assert len(left) == 2
    assert all(r["kind"] == "ReplicaSet" for p in left.values() for r in p["metadata"]["ownerReferences"])

    create("fg")
    server.kubectl("delete", "deployment", "fg", "-n", ns, "--cascade=foreground", timeout=30)
    assert get(server, ns, "deployment", "fg") is None
    assert not get(server, ns, "replicasets", "-l", "app=fg")["items"]
    assert not pods(server, ns, "app=fg")


# ---- namespaces and service accounts ----------------------------------------------------------------


def test_deleting_a_namespace_removes_what_it_holds(server):
    name = "gone-" + uuid.uuid4().hex[:6]
    server.kubectl("create", "namespace", name)
    server.kubectl("create", "configmap", "settings", "--from-literal=a=b", "-n", name)
    server.kubectl("create", "secret", "generic", "token", "--from-literal=t=x", "-n", name)
    server.kubectl("create", "service", "clusterip", "web", "--tcp=80", "-n", name)
    apply(server, name, statefulset(replicas=1))
    eventually(lambda: pods(server, name, "app=mysql"))

    server.kubectl("delete", "namespace", name, timeout=60)  # waits until the namespace is gone
    assert get(server, None, "namespace", name) is None
    for kind in ("configmaps", "secrets", "services", "statefulsets", "pods", "serviceaccounts", "endpointslices"):
        assert get(server, name, kind)["items"] == [], kind


def test_terminating_namespace_waits_for_pods_and_refuses_new_content(server, k8s_client):
    name = "term-" + uuid.uuid4().hex[:6]
    server.kubectl("create", "namespace", name)
    server.kubectl("run", "web", "--image=nginx", "-n", name, "--overrides",
                   json.dumps({"spec": {"nodeName": "node-a"}}))
    server.kubectl("delete", "namespace", name, "--wait=false")

    def content_remaining():
        ns = get(server, None, "namespace", name)
        conditions = {c["type"]: c for c in ns["status"].get("conditions") or []}
        remaining = conditions.get("NamespaceContentRemaining")
        return ns["status"]["phase"] == "Terminating" and remaining and remaining["status"] == "True" and conditions

    conditions = eventually(content_remaining)
    assert conditions["NamespaceContentRemaining"]["reason"] == "SomeResourcesRemain"
    assert conditions["NamespaceContentRemaining"]["message"] == \
        "Some resources are remaining: pods. has 1 resource instances"
    for ctype, reason in (("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered"),
                          ("NamespaceDeletionGroupVersionParsingFailure", "ParsedGroupVersions"),
                          ("NamespaceDeletionContentFailure", "ContentDeleted"),
                          ("NamespaceFinalizersRemaining", "ContentHasNoFinalizers")):
        assert (conditions[ctype]["status"], conditions[ctype]["reason"]) == ("False", reason)
    ns = get(server, None, "namespace", name)
    assert ns["spec"]["finalizers"] == ["kubernetes"]

    cp = server.kubectl("create", "configmap", "late", "-n", name, check=False)
    assert cp.returncode != 0
    assert f"unable to create new content in namespace {name} because it is being terminated" in cp.stderr
    client, api_client = k8s_client
    with pytest.raises(client.ApiException) as refused:
        client.CoreV1Api(api_client).create_namespaced_config_map(name, {"metadata": {"name": "late"}})
    assert refused.value.status == 403
    body = json.loads(refused.value.body)
    assert body["reason"] == "Forbidden"
    assert body["details"]["causes"][0]["reason"] == "NamespaceTerminating"

    assert pods(server, name)["web"]["metadata"]["deletionTimestamp"]
    finish_terminating(server, name)
    eventually(lambda: get(server, None, "namespace", name) is None)


def test_every_namespace_gets_a_default_service_account(server, ns):
    for namespace in (ns, "default", "kube-system"):
        eventually(lambda: get(server, namespace, "serviceaccount", "default"))
    uid = get(server, ns, "serviceaccount", "default")["metadata"]["uid"]
    server.kubectl("delete", "serviceaccount", "default", "-n", ns)
    eventually(lambda: (sa := get(server, ns, "serviceaccount", "default")) and sa["metadata"]["uid"] != uid)


def test_graceful_delete_stamps_when_the_grace_ends_and_only_shortens(server, ns):
    """deletionTimestamp is the delete time plus the grace period (BeforeDelete); a later delete
    may only shorten it, and a longer or unspecified one leaves it as it is."""
    import datetime as dt

    def stamp(pod):
        m = pod["metadata"]
        return dt.datetime.fromisoformat(m["deletionTimestamp"].replace("Z", "+00:00")), \
            m["deletionGracePeriodSeconds"]

    server.kubectl("run", "web", "--image=nginx", "-n", ns, "--overrides",
                   json.dumps({"spec": {"nodeName": "node-a", "terminationGracePeriodSeconds": 60}}))
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    server.kubectl("delete", "pod", "web", "-n", ns, "--wait=false")
    after = dt.datetime.now(dt.timezone.utc)
    ends, grace = stamp(pods(server, ns)["web"])
    assert grace == 60
    assert before + dt.timedelta(seconds=60) <= ends <= after + dt.timedelta(seconds=60)

    server.kubectl("delete", "pod", "web", "-n", ns, "--grace-period=90", "--wait=false")  # longer: no change
    assert stamp(pods(server, ns)["web"]) == (ends, 60)
    server.kubectl("delete", "pod", "web", "-n", ns, "--wait=false")  # the default again: no change
    assert stamp(pods(server, ns)["web"]) == (ends, 60)
    server.kubectl("delete", "pod", "web", "-n", ns, "--grace-period=5", "--wait=false")  # shorter: moves earlier
    assert stamp(pods(server, ns)["web"]) == (ends - dt.timedelta(seconds=55), 5)

    server.kubectl("delete", "pod", "web", "-n", ns, "--grace-period=0", "--force", "--wait=false")
    assert "web" not in pods(server, ns)
