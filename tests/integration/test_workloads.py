"""Deployments, ReplicaSets and the scheduler with the real kubectl against `pocketkube
server`: create / scale / set image / rollout status, history and undo, scale to 0, and
pods that cannot be scheduled (no node, nodeSelector, taint). A helper plays the kubelet:
it marks bound pods Running and Ready, and finishes the deletion of terminating pods.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

pytestmark = pytest.mark.usefixtures("server")


def eventually(fn, timeout: float = 15, interval: float = 0.2):
    """Call fn until it returns a truthy value (returned) or raises no AssertionError."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            result = fn()
            if result:
                return result
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            if last is not None:
                raise last
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@pytest.fixture(scope="module")
def core(k8s_client):
    client, api_client = k8s_client
    return client.CoreV1Api(api_client)


def make_node(server, core, name: str, labels: dict | None = None, taints: list | None = None) -> None:
    """Register a node as a kubelet does: create it, then report Ready through /status."""
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}}}
    if taints:
        node["spec"] = {"taints": taints}
    server.kubectl("create", "-f", "-", input=json.dumps(node))
    core.patch_node_status(name, {"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status"}],
        "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
        "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"}}})


def pods(server, ns: str, selector: str = "") -> list[dict]:
    args = ["get", "pods", "-n", ns]
    if selector:
        args += ["-l", selector]
    return server.kubectl_json(*args)["items"]


def kubelet_step(core, server, ns: str) -> None:
    """One pass of a fake kubelet: bound pods become Running and Ready; terminating pods go."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for pod in pods(server, ns):
        name = pod["metadata"]["name"]
        if pod["metadata"].get("deletionTimestamp"):
            core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
            continue
        node = pod["spec"].get("nodeName")
        if not node or pod["status"].get("phase") in ("Running", "Succeeded", "Failed"):
            continue  # a finished pod stays finished
        core.patch_namespaced_pod_status(name, ns, {"status": {
            "phase": "Running", "podIP": "10.244.0.10", "hostIP": "172.18.0.2",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now},
                           {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}})


def run_kubelet_until(core, server, ns: str, check, timeout: float = 30):
    def step():
        kubelet_step(core, server, ns)
        return check()
    return eventually(step, timeout)


@pytest.fixture(scope="module")
def node(server, core):
    name = "node-" + uuid.uuid4().hex[:6]
    make_node(server, core, name)
    return name


def test_without_nodes_a_pod_stays_pending(server, ns):
    """Runs before the module's node exists: the scheduler's message for an empty cluster."""
    server.kubectl("run", "lonely", "--image=nginx", "-n", ns)
    out = eventually(lambda: "FailedScheduling" in (o := server.kubectl("describe", "pod", "lonely", "-n", ns)
                                                     .stdout) and o)
    assert "default-scheduler  no nodes available to schedule pods" in out
    assert server.kubectl_json("get", "pod", "lonely", "-n", ns)["status"]["phase"] == "Pending"


def test_create_deployment_makes_a_replicaset_and_a_bound_pod(server, ns, node):
    server.kubectl("create", "deployment", "nginx", "--image=nginx", "-n", ns)

    def one_bound_pod():
        items = pods(server, ns, "app=nginx")
        assert len(items) == 1 and items[0]["spec"].get("nodeName") == node, items
        return items[0]

    pod = eventually(one_bound_pod)
    rs = server.kubectl_json("get", "rs", "-n", ns)["items"]
    assert len(rs) == 1
    rs_name = rs[0]["metadata"]["name"]
    pod_hash = rs[0]["metadata"]["labels"]["pod-template-hash"]
    assert rs_name == f"nginx-{pod_hash}"
    assert rs[0]["spec"]["selector"]["matchLabels"] == {"app": "nginx", "pod-template-hash": pod_hash}
    assert rs[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs[0]["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "1"
    assert rs[0]["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "2"
    owner = rs[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"], owner["blockOwnerDeletion"]) == \
        ("Deployment", "nginx", True, True)
    assert pod["metadata"]["name"].startswith(rs_name + "-") and len(pod["metadata"]["name"]) == len(rs_name) + 6
    assert pod["metadata"]["labels"] == {"app": "nginx", "pod-template-hash": pod_hash}
    assert pod["metadata"]["ownerReferences"][0]["name"] == rs_name
    scheduled = [c for c in pod["status"].get("conditions", []) if c["type"] == "PodScheduled"]
    assert scheduled and scheduled[0]["status"] == "True"
    # the scheduler's events follow its bindings (core/events.py Hold), as kube-scheduler's do
    eventually(lambda: f"Successfully assigned {ns}/{pod['metadata']['name']} to {node}"
               in server.kubectl("describe", "pod", pod["metadata"]["name"], "-n", ns).stdout)
    rs_events = server.kubectl("describe", "rs", rs_name, "-n", ns).stdout
    assert f"Created pod: {pod['metadata']['name']}" in rs_events


def test_scale_rollout_status_set_image_history_undo(server, core, ns, node):
    server.kubectl("create", "deployment", "web", "--image=nginx", "-n", ns)
    server.kubectl("scale", "deployment", "web", "--replicas=3", "-n", ns)
    eventually(lambda: len(pods(server, ns, "app=web")) == 3)
    run_kubelet_until(core, server, ns, lambda: server.kubectl_json("get", "deploy", "web", "-n", ns)
                      ["status"].get("availableReplicas") == 3)
    out = server.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=30s").stdout
    assert 'deployment "web" successfully rolled out' in out
    table = server.kubectl("get", "deploy", "web", "-n", ns).stdout
    assert "3/3" in table.splitlines()[1]
    status = server.kubectl_json("get", "deploy", "web", "-n", ns)["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conditions["Available"]["message"] == "Deployment has minimum availability."
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    first_rs = server.kubectl_json("get", "rs", "-n", ns, "-l", "app=web")["items"][0]["metadata"]["name"]
    assert conditions["Progressing"]["message"] == f'ReplicaSet "{first_rs}" has successfully progressed.'

    server.kubectl("set", "image", "deployment/web", "nginx=nginx:1.27", "-n", ns)
    run_kubelet_until(core, server, ns, lambda: _rolled_out(server, ns, "web", 3, "nginx:1.27"), timeout=60)
    out = server.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=30s").stdout
    assert 'deployment "web" successfully rolled out' in out
    replicasets = {rs["metadata"]["name"]: rs for rs in
                   server.kubectl_json("get", "rs", "-n", ns, "-l", "app=web")["items"]}
    assert len(replicasets) == 2
    assert replicasets[first_rs]["spec"]["replicas"] == 0
    new_rs = next(name for name in replicasets if name != first_rs)
    assert replicasets[new_rs]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    describe = server.kubectl("describe", "deploy", "web", "-n", ns).stdout
    assert f"NewReplicaSet:   {new_rs} (3/3 replicas created)" in describe
    assert f"Scaled up replica set {new_rs} from 0 to 1" in describe
    assert f"Scaled down replica set {first_rs} from 3 to 2" in describe

    history = server.kubectl("rollout", "history", "deployment/web", "-n", ns).stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]

    server.kubectl("rollout", "undo", "deployment/web", "-n", ns)
    run_kubelet_until(core, server, ns, lambda: _rolled_out(server, ns, "web", 3, "nginx"), timeout=60)
    replicasets = {rs["metadata"]["name"]: rs for rs in
                   server.kubectl_json("get", "rs", "-n", ns, "-l", "app=web")["items"]}
    assert replicasets[first_rs]["spec"]["replicas"] == 3
    assert replicasets[first_rs]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert replicasets[first_rs]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    history = server.kubectl("rollout", "history", "deployment/web", "-n", ns).stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"]

    server.kubectl("scale", "deployment", "web", "--replicas=0", "-n", ns)
    run_kubelet_until(core, server, ns, lambda: pods(server, ns, "app=web") == [])
    eventually(lambda: "0/0" in server.kubectl("get", "deploy", "web", "-n", ns).stdout)


def _rolled_out(server, ns: str, name: str, replicas: int, image: str) -> bool:
    d = server.kubectl_json("get", "deploy", name, "-n", ns)
    status = d["status"]
    current = [p for p in pods(server, ns, f"app={name}") if not p["metadata"].get("deletionTimestamp")]
    return status.get("observedGeneration") == d["metadata"]["generation"] and \
        status.get("updatedReplicas") == replicas and status.get("replicas") == replicas and \
        status.get("availableReplicas") == replicas and len(current) == replicas and \
        all(p["spec"]["containers"][0]["image"] == image for p in current)


def test_paused_deployment_waits_for_resume(server, core, ns, node):
    server.kubectl("create", "deployment", "pz", "--image=nginx", "-n", ns)
    run_kubelet_until(core, server, ns, lambda: _rolled_out(server, ns, "pz", 1, "nginx"))
    server.kubectl("rollout", "pause", "deployment/pz", "-n", ns)
    server.kubectl("set", "image", "deployment/pz", "nginx=nginx:1.27", "-n", ns)

    def paused_condition():
        d = server.kubectl_json("get", "deploy", "pz", "-n", ns)
        progressing = next(c for c in d["status"]["conditions"] if c["type"] == "Progressing")
        assert (progressing["status"], progressing["reason"], progressing["message"]) == \
            ("Unknown", "DeploymentPaused", "Deployment is paused"), progressing
        return d["status"]["observedGeneration"] == d["metadata"]["generation"]

    eventually(paused_condition)
    assert len(server.kubectl_json("get", "rs", "-n", ns, "-l", "app=pz")["items"]) == 1
    server.kubectl("rollout", "resume", "deployment/pz", "-n", ns)
    run_kubelet_until(core, server, ns, lambda: _rolled_out(server, ns, "pz", 1, "nginx:1.27"), timeout=60)
    assert len(server.kubectl_json("get", "rs", "-n", ns, "-l", "app=pz")["items"]) == 2


def test_recreate_strategy_replaces_all_pods(server, core, ns, node):
    manifest = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "re"},
        "spec": {"replicas": 2, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": {"app": "re"}},
                 "template": {"metadata": {"labels": {"app": "re"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    server.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))
    run_kubelet_until(core, server, ns, lambda: _rolled_out(server, ns, "re", 2, "nginx"))
    server.kubectl("set", "image", "deployment/re", "c=nginx:1.27", "-n", ns)
    run_kubelet_until(core, server, ns, lambda: _rolled_out(server, ns, "re", 2, "nginx:1.27"), timeout=60)
    events = server.kubectl("describe", "deploy", "re", "-n", ns).stdout
    assert "Scaled down replica set" in events and "from 2 to 0" in events


def test_replicaset_adopts_orphans_and_releases_mismatches(server, core, ns, node):
    orphan = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stray", "labels": {"app": "rs1"}},
              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(orphan))
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs1"},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "rs1"}},
                   "template": {"metadata": {"labels": {"app": "rs1"}},
                                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(rs))

    def adopted_plus_one():
        items = pods(server, ns, "app=rs1")
        assert len(items) == 2, [p["metadata"]["name"] for p in items]
        stray = next(p for p in items if p["metadata"]["name"] == "stray")
        assert stray["metadata"]["ownerReferences"][0]["name"] == "rs1"
        return True

    eventually(adopted_plus_one)
    server.kubectl("label", "pod", "stray", "app=other", "--overwrite", "-n", ns)

    def released_and_replaced():
        stray = server.kubectl_json("get", "pod", "stray", "-n", ns)
        assert not stray["metadata"].get("ownerReferences"), stray["metadata"]
        assert len(pods(server, ns, "app=rs1")) == 2
        return True

    eventually(released_and_replaced)
    run_kubelet_until(core, server, ns, lambda: server.kubectl_json("get", "rs", "rs1", "-n", ns)
                      ["status"].get("availableReplicas") == 2)
    status = server.kubectl_json("get", "rs", "rs1", "-n", ns)["status"]
    assert status["replicas"] == 2 and status["fullyLabeledReplicas"] == 2 and status["readyReplicas"] == 2
    assert status["observedGeneration"] == 1


def test_scale_down_deletes_pending_pods_first(server, core, ns, node):
    server.kubectl("create", "deployment", "sd", "--image=nginx", "--replicas=2", "-n", ns)
    run_kubelet_until(core, server, ns, lambda: server.kubectl_json("get", "deploy", "sd", "-n", ns)
                      ["status"].get("readyReplicas") == 2)
    ready = {p["metadata"]["name"] for p in pods(server, ns, "app=sd")}
    server.kubectl("scale", "deployment", "sd", "--replicas=3", "-n", ns)
    eventually(lambda: len(pods(server, ns, "app=sd")) == 3)
    server.kubectl("scale", "deployment", "sd", "--replicas=2", "-n", ns)

    def newest_went():
        live = {p["metadata"]["name"] for p in pods(server, ns, "app=sd")
                if not p["metadata"].get("deletionTimestamp")}
        assert live == ready, (live, ready)
        return True

    eventually(newest_went)


def test_no_node_leaves_pod_pending_with_failed_scheduling(server, ns):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "picky"},
           "spec": {"nodeSelector": {"disk": "ssd-" + uuid.uuid4().hex[:6]},
                    "containers": [{"name": "c", "image": "nginx"}]}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(pod))

    def failed_scheduling():
        out = server.kubectl("describe", "pod", "picky", "-n", ns).stdout
        assert "FailedScheduling" in out, out
        return out

    out = eventually(failed_scheduling)
    assert "node(s) didn't match Pod's node affinity/selector" in out
    assert "Preemption is not helpful for scheduling." in out
    got = server.kubectl_json("get", "pod", "picky", "-n", ns)
    assert got["status"]["phase"] == "Pending" and not got["spec"].get("nodeName")
    condition = next(c for c in got["status"]["conditions"] if c["type"] == "PodScheduled")
    assert (condition["status"], condition["reason"]) == ("False", "Unschedulable")
    assert condition["message"].startswith("0/")


def test_taint_blocks_until_tolerated_and_new_node_unblocks(server, core, ns):
    label = "zone-" + uuid.uuid4().hex[:6]
    tainted = "tainted-" + uuid.uuid4().hex[:6]
    make_node(server, core, tainted, labels={"zone": label},
              taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t1"},
           "spec": {"nodeSelector": {"zone": label}, "containers": [{"name": "c", "image": "nginx"}]}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(pod))
    out = eventually(lambda: "FailedScheduling" in (o := server.kubectl("describe", "pod", "t1", "-n", ns).stdout)
                     and o)
    assert "1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }" in out

    tolerant = dict(pod, metadata={"name": "t2"})
    tolerant["spec"] = dict(pod["spec"], tolerations=[{"key": "node-role.kubernetes.io/control-plane",
                                                       "operator": "Exists", "effect": "NoSchedule"}])
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(tolerant))
    eventually(lambda: server.kubectl_json("get", "pod", "t2", "-n", ns)["spec"].get("nodeName") == tainted)

    plain = "plain-" + uuid.uuid4().hex[:6]
    make_node(server, core, plain, labels={"zone": label})
    eventually(lambda: server.kubectl_json("get", "pod", "t1", "-n", ns)["spec"].get("nodeName") == plain)


def test_selector_not_matching_template_is_refused(server, ns):
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
                "spec": {"selector": {"matchLabels": {"app": "x"}},
                         "template": {"metadata": {"labels": {"app": "y"}},
                                      "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    cp = server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(manifest), check=False)
    assert cp.returncode != 0
    assert 'The Deployment "bad" is invalid: spec.template.metadata.labels: Invalid value: ' \
           'map[string]string{"app":"y"}: `selector` does not match template `labels`' in cp.stderr
    assert server.kubectl("get", "rs", "-n", ns).stderr.startswith("No resources found")


def test_deleting_owner_midway_leaves_nothing_behind(server, core, ns, node):
    server.kubectl("create", "deployment", "gone", "--image=nginx", "--replicas=20", "-n", ns)
    server.kubectl("delete", "deployment", "gone", "-n", ns, "--cascade=foreground", "--wait=false")

    def all_gone():
        kubelet_step(core, server, ns)
        assert pods(server, ns, "app=gone") == []
        assert server.kubectl_json("get", "rs", "-n", ns, "-l", "app=gone")["items"] == []
        return server.kubectl("get", "deploy", "gone", "-n", ns, check=False).returncode != 0
    eventually(all_gone, timeout=60)
    with open(server.data_dir + "/server.log") as log:
        assert "Traceback" not in log.read()


def test_replication_controller_defaults_scales_and_cascades(server, core, ns, node):
    """The seed-era kind: selector and labels default from the template; kubectl get/scale/delete work."""
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "kubia"},
          "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "kubia"}},
                                               "spec": {"containers": [{"name": "c", "image": "luksa/kubia"}]}}}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(rc))
    stored = server.kubectl_json("get", "rc", "kubia", "-n", ns)
    assert stored["spec"]["selector"] == {"app": "kubia"}
    assert stored["metadata"]["labels"] == {"app": "kubia"}

    def two_pods():
        items = pods(server, ns, "app=kubia")
        assert len(items) == 2, [p["metadata"]["name"] for p in items]
        owner = items[0]["metadata"]["ownerReferences"][0]
        assert (owner["apiVersion"], owner["kind"], owner["name"]) == ("v1", "ReplicationController", "kubia")
        return items

    eventually(two_pods)
    run_kubelet_until(core, server, ns, lambda: server.kubectl_json("get", "rc", "kubia", "-n", ns)
                      ["status"].get("readyReplicas") == 2)
    lines = server.kubectl("get", "rc", "-n", ns, "-o", "wide").stdout.splitlines()
    assert lines[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert lines[1].split()[:4] == ["kubia", "2", "2", "2"] and lines[1].split()[-1] == "app=kubia"
    assert "replicationcontroller/kubia" in server.kubectl("get", "all", "-n", ns).stdout

    server.kubectl("scale", "rc", "kubia", "--replicas=3", "-n", ns)
    eventually(lambda: len(pods(server, ns, "app=kubia")) == 3)
    scale = core.read_namespaced_replication_controller_scale("kubia", ns)
    assert scale.spec.replicas == 3 and scale.status.selector == "app=kubia"
    assert "Created pod: kubia-" in server.kubectl("describe", "rc", "kubia", "-n", ns).stdout

    server.kubectl("delete", "rc", "kubia", "-n", ns)
    run_kubelet_until(core, server, ns, lambda: not pods(server, ns, "app=kubia"))


def test_replication_controller_from_the_python_client_and_bad_specs(server, core, ns):
    from kubernetes import client

    body = client.V1ReplicationController(
        metadata=client.V1ObjectMeta(name="py-rc"),
        spec=client.V1ReplicationControllerSpec(replicas=0, selector={"app": "py"}, template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "py"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]))))
    created = core.create_namespaced_replication_controller(ns, body)  # decodes: status.replicas is set
    assert created.status.replicas == 0 and created.metadata.generation == 1
    assert [rc.metadata.name for rc in core.list_namespaced_replication_controller(ns).items] == ["py-rc"]

    no_template = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "bad"},
                   "spec": {"selector": {"app": "x"}}}
    cp = server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(no_template), check=False)
    assert cp.returncode != 0
    assert 'The ReplicationController "bad" is invalid: spec.template: Required value' in cp.stderr
    mismatch = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "bad"},
                "spec": {"selector": {"app": "x"}, "template": {
                    "metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    cp = server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(mismatch), check=False)
    assert ('spec.template.metadata.labels: Invalid value: map[string]string{"app":"y"}: '
            '`selector` does not match template `labels`') in cp.stderr
    assert [rc.metadata.name for rc in core.list_namespaced_replication_controller(ns).items] == ["py-rc"]


# ---------------------------------------------------------------- Jobs


def finish_pods(core, server, ns: str, selector: str, phase: str, exit_code: int) -> int:
    """The kubelet's part when a Job's container exits: the pod's phase and its terminated state."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    done = 0
    for pod in pods(server, ns, selector):
        if pod["status"].get("phase") in ("Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp"):
            continue
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]["name"]
        core.patch_namespaced_pod_status(name, ns, {"status": {"phase": phase, "containerStatuses": [{
            "name": container, "image": "busybox", "imageID": "", "ready": False, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                                     "startedAt": now, "finishedAt": now}}}]}})
        done += 1
    return done


def job_status(server, ns: str, name: str) -> dict:
    return server.kubectl_json("get", "job", name, "-n", ns).get("status") or {}


def condition(status: dict, kind: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)


def test_kubectl_create_job_runs_to_completion(server, core, ns, node):
    server.kubectl("create", "job", "hello", "--image=busybox", "-n", ns, "--", "echo", "hi")  # a protobuf body
    job = server.kubectl_json("get", "job", "hello", "-n", ns)
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels == {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "hello",
                      "controller-uid": uid, "job-name": "hello"}
    assert (job["spec"]["completions"], job["spec"]["parallelism"], job["spec"]["backoffLimit"]) == (1, 1, 6)
    assert job["spec"]["completionMode"] == "NonIndexed" and job["spec"]["suspend"] is False

    pod = eventually(lambda: pods(server, ns, "job-name=hello"))[0]
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["apiVersion"], owner["kind"], owner["name"], owner["uid"]) == ("batch/v1", "Job", "hello", uid)
    lines = server.kubectl("get", "jobs", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert lines[1].split()[:3] == ["hello", "Running", "0/1"]

    finish_pods(core, server, ns, "job-name=hello", "Succeeded", 0)
    server.kubectl("wait", "--for=condition=complete", "job/hello", "-n", ns, "--timeout=15s")
    status = job_status(server, ns, "hello")
    assert (status["succeeded"], status.get("active", 0), status.get("failed", 0)) == (1, 0, 0)
    assert status["startTime"] and status["completionTime"]
    complete = condition(status, "Complete")
    assert complete["status"] == "True" and complete["reason"] == "CompletionsReached"
    assert complete["message"] == "Reached expected number of succeeded pods"
    assert condition(status, "SuccessCriteriaMet")["status"] == "True"
    lines = server.kubectl("get", "jobs", "-n", ns, "-o", "wide").stdout.splitlines()
    assert lines[1].split()[:3] == ["hello", "Complete", "1/1"]
    assert lines[1].split()[-1] == f"batch.kubernetes.io/controller-uid={uid}"
    describe = server.kubectl("describe", "job", "hello", "-n", ns).stdout
    assert f"Created pod: {pod['metadata']['name']}" in describe and "Job completed" in describe


def test_indexed_job_gives_each_pod_its_index(server, core, ns, node):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "idx"},
           "spec": {"completions": 3, "parallelism": 3, "completionMode": "Indexed",
                    "template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "busybox"}]}}}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(job))
    items = eventually(lambda: len(p := pods(server, ns, "job-name=idx")) == 3 and p)
    indexes = sorted(int(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]) for p in items)
    assert indexes == [0, 1, 2]
    for p in items:
        i = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert p["metadata"]["name"].startswith(f"idx-{i}-") and p["spec"]["hostname"] == f"idx-{i}"
        assert p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == i
        env = p["spec"]["containers"][0]["env"]
        assert env == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
    finish_pods(core, server, ns, "job-name=idx", "Succeeded", 0)
    status = eventually(lambda: (s := job_status(server, ns, "idx")).get("completionTime") and s)
    assert status["completedIndexes"] == "0-2" and status["succeeded"] == 3


def test_failed_pods_past_the_backoff_limit_fail_the_job(server, core, ns, node):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "boom"},
           "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                                                             "containers": [{"name": "c", "image": "busybox"}]}}}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(job))
    eventually(lambda: pods(server, ns, "job-name=boom"))
    finish_pods(core, server, ns, "job-name=boom", "Failed", 1)
    server.kubectl("wait", "--for=condition=failed", "job/boom", "-n", ns, "--timeout=15s")
    status = job_status(server, ns, "boom")
    failed = condition(status, "Failed")
    assert (failed["reason"], failed["message"]) == ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert status["failed"] == 1 and not status.get("completionTime")
    assert len(pods(server, ns, "job-name=boom")) == 1  # no replacement
    assert server.kubectl("get", "job", "boom", "-n", ns).stdout.splitlines()[1].split()[:3] == ["boom", "Failed", "0/1"]


def test_pod_failure_policy_fails_the_job_at_once_or_ignores_the_failure(server, core, ns, node):
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
                        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}]}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pfp"},
           "spec": {"backoffLimit": 6, "podFailurePolicy": policy, "template": template}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(job))
    assert server.kubectl_json("get", "job", "pfp", "-n", ns)["spec"]["podReplacementPolicy"] == "Failed"
    # Exit code 7: ignored, not counted, replaced at once (no back-off).
    eventually(lambda: pods(server, ns, "job-name=pfp"))
    finish_pods(core, server, ns, "job-name=pfp", "Failed", 7)
    eventually(lambda: len(pods(server, ns, "job-name=pfp")) == 2)
    assert job_status(server, ns, "pfp").get("failed", 0) == 0
    # Exit code 42 from container main: the Job fails on the spot, backoffLimit notwithstanding.
    finish_pods(core, server, ns, "job-name=pfp", "Failed", 42)
    server.kubectl("wait", "--for=condition=failed", "job/pfp", "-n", ns, "--timeout=15s")
    status = job_status(server, ns, "pfp")
    failed = condition(status, "Failed")
    culprit = next(p["metadata"]["name"] for p in pods(server, ns, "job-name=pfp")
                   if p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 42)
    assert failed["reason"] == "PodFailurePolicy"
    assert failed["message"] == (f"Container main for pod {ns}/{culprit} failed with exit code 42 "
                                 "matching FailJob rule at index 0")
    assert condition(status, "FailureTarget")["reason"] == "PodFailurePolicy"
    assert status["failed"] == 1 and len(pods(server, ns, "job-name=pfp")) == 2
    assert "PodFailurePolicy" in server.kubectl("describe", "job", "pfp", "-n", ns).stdout


def test_backoff_limit_per_index_fails_an_index_and_then_the_job(server, core, ns, node):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi"},
           "spec": {"completions": 3, "parallelism": 3, "completionMode": "Indexed", "backoffLimitPerIndex": 0,
                    "podFailurePolicy": {"rules": [{"action": "FailIndex", "onExitCodes": {
                        "operator": "In", "values": [5]}}, {"action": "Ignore", "onExitCodes": {
                            "operator": "In", "values": [6]}}]},
                    "template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "busybox"}]}}}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(job))
    assert server.kubectl_json("get", "job", "pi", "-n", ns)["spec"]["backoffLimit"] == 2147483647
    eventually(lambda: len(pods(server, ns, "job-name=pi")) == 3)
    for p in pods(server, ns, "job-name=pi"):
        assert p["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"] == "0"
    index = "batch.kubernetes.io/job-completion-index"
    # Index 2 fails with an ignored code: retried, its new pod carries the ignored count.
    finish_pods(core, server, ns, f"job-name=pi,{index}=2", "Failed", 6)
    retry = eventually(lambda: [p for p in pods(server, ns, f"job-name=pi,{index}=2")
                                if p["status"].get("phase") != "Failed"])[0]
    assert retry["metadata"]["annotations"]["batch.kubernetes.io/job-index-ignored-failure-count"] == "1"
    # Index 1 fails once: past its limit of 0, it is not retried.
    finish_pods(core, server, ns, f"job-name=pi,{index}=1", "Failed", 1)
    eventually(lambda: job_status(server, ns, "pi").get("failedIndexes") == "1")
    finish_pods(core, server, ns, f"job-name=pi,{index}=0", "Succeeded", 0)
    assert not condition(job_status(server, ns, "pi"), "Failed")
    # Index 2 ends with a FailIndex code: every index is done, some failed, so the Job fails.
    finish_pods(core, server, ns, f"job-name=pi,{index}=2", "Failed", 5)
    server.kubectl("wait", "--for=condition=failed", "job/pi", "-n", ns, "--timeout=15s")
    status = job_status(server, ns, "pi")
    assert (status["failedIndexes"], status["completedIndexes"], status["failed"], status["succeeded"]) == \
        ("1,2", "0", 2, 1)
    failed = condition(status, "Failed")
    assert (failed["reason"], failed["message"]) == ("FailedIndexes", "Job has failed indexes")
    assert len(pods(server, ns, f"job-name=pi,{index}=1")) == 1


def test_max_failed_indexes_ends_the_job_early(server, core, ns, node):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "mfi"},
           "spec": {"completions": 4, "parallelism": 2, "completionMode": "Indexed", "backoffLimitPerIndex": 0,
                    "maxFailedIndexes": 0,
                    "template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "busybox"}]}}}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(job))
    eventually(lambda: len(pods(server, ns, "job-name=mfi")) == 2)
    finish_pods(core, server, ns, "job-name=mfi,batch.kubernetes.io/job-completion-index=0", "Failed", 1)
    # Index 1's pod, still running, is deleted; Failed comes once the kubelet has let it go.
    eventually(lambda: (condition(job_status(server, ns, "mfi"), "FailureTarget") or {}).get("reason")
               == "MaxFailedIndexesExceeded")
    run_kubelet_until(core, server, ns, lambda: len(pods(server, ns, "job-name=mfi")) == 1)
    server.kubectl("wait", "--for=condition=failed", "job/mfi", "-n", ns, "--timeout=15s")
    assert [p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            for p in pods(server, ns, "job-name=mfi")] == ["0"]  # indexes 2 and 3 never started
    failed = condition(job_status(server, ns, "mfi"), "Failed")
    assert (failed["reason"], failed["message"]) == \
        ("MaxFailedIndexesExceeded", "Job has exceeded the specified maximal number of failed indexes")


def test_deadline_suspend_resume_and_ttl(server, core, ns, node):
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
    slow = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "slow"},
            "spec": {"activeDeadlineSeconds": 1, "template": template}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(slow))
    eventually(lambda: pods(server, ns, "job-name=slow"))
    # Past the deadline its pod is deleted; Failed comes once the kubelet has let it go.
    eventually(lambda: (condition(job_status(server, ns, "slow"), "FailureTarget") or {}).get("reason")
               == "DeadlineExceeded")
    run_kubelet_until(core, server, ns, lambda: not pods(server, ns, "job-name=slow"))
    failed = condition(eventually(lambda: condition(s := job_status(server, ns, "slow"), "Failed") and s), "Failed")
    assert (failed["reason"], failed["message"]) == ("DeadlineExceeded", "Job was active longer than specified deadline")

    later = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "later"},
             "spec": {"suspend": True, "ttlSecondsAfterFinished": 0, "template": template}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(later))
    eventually(lambda: (condition(job_status(server, ns, "later"), "Suspended") or {}).get("status") == "True")
    assert not pods(server, ns, "job-name=later")
    assert server.kubectl("get", "job", "later", "-n", ns).stdout.splitlines()[1].split()[1] == "Suspended"
    server.kubectl("patch", "job", "later", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    eventually(lambda: pods(server, ns, "job-name=later"))
    assert condition(job_status(server, ns, "later"), "Suspended")["reason"] == "JobResumed"
    finish_pods(core, server, ns, "job-name=later", "Succeeded", 0)
    # ttlSecondsAfterFinished: 0 deletes the finished Job, and its pods with it.
    eventually(lambda: server.kubectl("get", "job", "later", "-n", ns, check=False).returncode != 0)
    run_kubelet_until(core, server, ns, lambda: not pods(server, ns, "job-name=later"))


def test_bad_jobs_get_the_real_errors(server, ns):
    def create(spec: dict):
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad"}, "spec": spec}
        return server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(job), check=False)

    containers = [{"name": "c", "image": "busybox"}]
    cp = create({"template": {"spec": {"containers": containers}}})
    assert ('The Job "bad" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": '
            'supported values: "OnFailure", "Never"') in cp.stderr
    cp = create({"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"restartPolicy": "Never", "containers": containers}}})
    assert "spec.selector: Invalid value:" in cp.stderr and "`selector` not auto-generated" in cp.stderr
    cp = create({"completionMode": "Indexed", "parallelism": 2,
                 "template": {"spec": {"restartPolicy": "Never", "containers": containers}}})
    assert "spec.completions: Required value: when completion mode is Indexed" in cp.stderr
    never = {"template": {"spec": {"restartPolicy": "Never", "containers": containers}}}
    cp = create({"podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0, 2, 1, 2]}}]},
                 **never})
    for message in ('spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator',
                    'spec.podFailurePolicy.rules[0].onExitCodes.values[3]: Duplicate value: 2',
                    'spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: []int32{0, 2, 1, 2}: must be ordered'):
        assert message in cp.stderr, cp.stderr
    cp = create({"podFailurePolicy": {"rules": [{"action": "FailIndex", "onPodConditions": [{"type": "DisruptionTarget"}],
                                                 "onExitCodes": {"operator": "Within", "values": [1],
                                                                 "containerName": "nope"}}]}, **never})
    for message in ('spec.podFailurePolicy.rules[0].action: Invalid value: "FailIndex": requires the backoffLimitPerIndex to be set',
                    'spec.podFailurePolicy.rules[0].onExitCodes.operator: Unsupported value: "Within": supported values: "In", "NotIn"',
                    'spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: "nope": must be one of the container or initContainer names in the pod template',
                    'spec.podFailurePolicy.rules[0]: Invalid value: specifying both OnExitCodes and OnPodConditions is not supported'):
        assert message in cp.stderr, cp.stderr
    cp = create({"podFailurePolicy": {"rules": [{"action": "Count"}]},
                 "template": {"spec": {"restartPolicy": "OnFailure", "containers": containers}}})
    assert ('spec.podFailurePolicy.rules[0]: Invalid value: specifying one of OnExitCodes and OnPodConditions is required'
            in cp.stderr)
    assert ('spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported when '
            'podFailurePolicy is specified') in cp.stderr
    cp = create({"backoffLimitPerIndex": 1, "maxFailedIndexes": 1, **never})
    assert "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode" in cp.stderr
    assert "spec.maxFailedIndexes: Invalid value: 1: requires indexed completion mode" in cp.stderr
    cp = create({"completionMode": "Indexed", "completions": 2, "maxFailedIndexes": 3, **never})
    assert "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified" in cp.stderr
    assert "spec.maxFailedIndexes: Invalid value: 3: must be less than or equal to completions" in cp.stderr
    assert server.kubectl("get", "jobs", "-n", ns).stderr.startswith("No resources found")


def test_cronjob_creates_jobs_on_schedule_and_keeps_its_history(server, core, ns, node):
    server.kubectl("create", "cronjob", "tick", "--image=busybox", "--schedule=*/1 * * * *", "-n", ns,
                   "--", "date")  # a protobuf body
    cj = server.kubectl_json("get", "cronjob", "tick", "-n", ns)
    assert (cj["spec"]["concurrencyPolicy"], cj["spec"]["suspend"], cj["spec"]["successfulJobsHistoryLimit"],
            cj["spec"]["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    lines = server.kubectl("get", "cronjobs", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    assert lines[1].split()[:7] == ["tick", "*/1", "*", "*", "*", "*", "<none>"]
    server.kubectl("create", "job", "by-hand", "--from=cronjob/tick", "-n", ns)
    manual = server.kubectl_json("get", "job", "by-hand", "-n", ns)
    assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert manual["metadata"]["ownerReferences"][0]["name"] == "tick"

    # Every two seconds (robfig's @every is valid in a CronJob): jobs come, finish, and the
    # history keeps the last successfulJobsHistoryLimit of them.
    every = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "often"},
             "spec": {"schedule": "@every 2s", "successfulJobsHistoryLimit": 1, "jobTemplate": {
                 "metadata": {"labels": {"team": "a"}},
                 "spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                                                "containers": [{"name": "c", "image": "busybox"}]}}}}}}
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(every))

    def owned_jobs():
        return [j for j in server.kubectl_json("get", "jobs", "-n", ns, "-l", "team=a")["items"]
                if j["metadata"]["ownerReferences"][0]["name"] == "often"]

    first = eventually(owned_jobs, timeout=20)[0]
    assert first["metadata"]["name"].startswith("often-")
    assert first["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"].endswith("Z")
    assert first["spec"]["backoffLimit"] == 6  # the Job's own defaults, applied when it is created
    cj = server.kubectl_json("get", "cronjob", "often", "-n", ns)
    assert cj["status"]["lastScheduleTime"]
    active_names = [ref["name"] for ref in cj["status"].get("active", [])]
    assert first["metadata"]["name"] in active_names or not active_names

    def finish_jobs() -> int:
        return sum(finish_pods(core, server, ns, f"job-name={j['metadata']['name']}", "Succeeded", 0)
                   for j in owned_jobs())

    def finish_all():
        finish_jobs()
        done = [j for j in owned_jobs() if (condition(j.get("status") or {}, "Complete") or {}).get("status") == "True"]
        return len(done) >= 1 and server.kubectl_json("get", "cronjob", "often", "-n", ns)["status"].get(
            "lastSuccessfulTime")

    eventually(finish_all, timeout=30)
    # Only one finished Job is kept.
    server.kubectl("patch", "cronjob", "often", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    eventually(lambda: finish_jobs() == 0 and len(
        [j for j in owned_jobs() if condition(j.get("status") or {}, "Complete")]) <= 1, timeout=30)
    describe = server.kubectl("describe", "cronjob", "often", "-n", ns).stdout
    assert "Created job often-" in describe and "Saw completed job: often-" in describe
    line = server.kubectl("get", "cronjob", "often", "-n", ns).stdout.splitlines()[1].split()
    assert line[:4] == ["often", "@every", "2s", "<none>"] and line[4] == "True"


def test_bad_cronjobs_get_the_real_errors(server, ns):
    def create(name: str, **spec):
        cj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
              "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                  "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}, **spec}}
        return server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(cj), check=False)

    cp = create("bad", schedule="61 * * * *")
    assert ('The CronJob "bad" is invalid: spec.schedule: Invalid value: "61 * * * *": '
            'end of range (61) above maximum (59): 61') in cp.stderr
    cp = create("bad", timeZone="Mars/Olympus")
    assert 'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus' in cp.stderr
    cp = create("bad", concurrencyPolicy="Sometimes")
    assert 'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"' \
        in cp.stderr
    cp = create("a" * 53)
    assert "must be no more than 52 characters" in cp.stderr
    assert server.kubectl("get", "cronjobs", "-n", ns).stderr.startswith("No resources found")


def test_eviction_spends_the_disruption_budget_and_the_controller_gives_it_back(server, core, ns, node):
    from kubernetes.client.rest import ApiException

    server.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=3", "-n", ns)
    run_kubelet_until(core, server, ns, lambda: len([p for p in pods(server, ns, "app=web")
                                                     if p["status"].get("phase") == "Running"]) == 3)
    server.kubectl("create", "pdb", "web", "--selector=app=web", "--min-available=2", "-n", ns)
    status = eventually(lambda: (s := server.kubectl_json("get", "pdb", "web", "-n", ns)["status"])
                        .get("disruptionsAllowed") == 1 and s)
    assert (status["currentHealthy"], status["desiredHealthy"], status["expectedPods"]) == (3, 2, 3)
    allowed = next(c for c in status["conditions"] if c["type"] == "DisruptionAllowed")
    assert (allowed["status"], allowed["reason"]) == ("True", "SufficientPods")
    assert server.kubectl("get", "pdb", "-n", ns).stdout.splitlines()[1].split()[:4] == ["web", "2", "N/A", "1"]

    first, second = [p["metadata"]["name"] for p in pods(server, ns, "app=web")][:2]
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": first, "namespace": ns}}
    core.create_namespaced_pod_eviction(first, ns, body)
    gone = core.read_namespaced_pod(first, ns)
    assert gone.metadata.deletion_timestamp is not None
    target = next(c for c in gone.status.conditions if c.type == "DisruptionTarget")
    assert (target.status, target.reason, target.message) == ("True", "EvictionByEvictionAPI", "Eviction API: evicting")
    # (disruptedPods held the pod until the controller saw it being deleted; it counts it out now)
    assert server.kubectl_json("get", "pdb", "web", "-n", ns)["status"]["disruptionsAllowed"] == 0

    # The budget is spent: the next eviction is refused with the budget's numbers (kubectl drain retries).
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction(second, ns, {**body, "metadata": {"name": second, "namespace": ns}})
    assert refused.value.status == 429
    answer = json.loads(refused.value.body)
    assert answer["reason"] == "TooManyRequests"
    assert answer["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert answer["details"]["causes"] == [{"reason": "DisruptionBudget",
                                            "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}]
    with pytest.raises(ApiException) as mismatch:
        core.create_namespaced_pod_eviction(second, ns, body)
    assert mismatch.value.status == 400 and "name in URL does not match name in Eviction object" in mismatch.value.body

    # The evicted pod goes, its replacement becomes Ready: the budget allows one disruption again.
    run_kubelet_until(core, server, ns, lambda: len([p for p in pods(server, ns, "app=web")
                                                     if p["status"].get("phase") == "Running"
                                                     and not p["metadata"].get("deletionTimestamp")]) == 3)
    status = eventually(lambda: (s := server.kubectl_json("get", "pdb", "web", "-n", ns)["status"])
                        .get("disruptionsAllowed") == 1 and s)
    assert "disruptedPods" not in status and status["currentHealthy"] == 3
    # A second budget over the same pods: the eviction subresource refuses to choose.
    server.kubectl("create", "pdb", "web2", "--selector=app=web", "--max-unavailable=50%", "-n", ns)
    eventually(lambda: server.kubectl_json("get", "pdb", "web2", "-n", ns)["status"].get("expectedPods") == 3)
    assert server.kubectl_json("get", "pdb", "web2", "-n", ns)["status"]["desiredHealthy"] == 1  # 3 - ceil(1.5)
    with pytest.raises(ApiException) as two:
        core.create_namespaced_pod_eviction(second, ns, {**body, "metadata": {"name": second, "namespace": ns}})
    assert two.value.status == 500
    assert json.loads(two.value.body)["message"] == ("This pod has more than one PodDisruptionBudget, which the "
                                                     "eviction subresource does not support.")
