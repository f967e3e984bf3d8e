"""Pods on a real cluster, through the real kubectl: they run in their own network
namespaces, answer on their IPs from the host, the nodes and other pods, and exec, logs,
`run -i --rm` and restarts behave as on a real cluster."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import time

import pytest

pytestmark = pytest.mark.e2e


def eventually(check, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (AssertionError, subprocess.CalledProcessError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"not true after {timeout}s (last: {last})")


def pods(cluster, ns: str, selector: str) -> list[dict]:
    return cluster.kubectl_json("get", "pods", "-n", ns, "-l", selector)["items"]


def ready_ips(cluster, ns: str, selector: str, count: int) -> list[str]:
    def check():
        items = pods(cluster, ns, selector)
        ready = [p for p in items if any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in p["status"].get("conditions", []))]
        return [p["status"]["podIP"] for p in ready] if len(ready) == count else None
    return eventually(check)


def test_deployment_pods_answer_from_host_nodes_and_pods(cluster, ns):
    cluster.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2", "-n", ns)
    cluster.kubectl("expose", "deployment", "web", "--port=80", "-n", ns)
    ips = ready_ips(cluster, ns, "app=web", 2)
    assert all(ipaddress.ip_address(ip) in cluster.net.pod_cidr for ip in ips)
    nodes = {p["spec"]["nodeName"] for p in pods(cluster, ns, "app=web")}
    assert nodes <= {n.name for n in cluster.net.node_list()}
    # from the host, through the host's route to each node's pod range
    for ip in ips:
        out = subprocess.run(["curl", "-s", "-m", "5", f"http://{ip}/"], capture_output=True, text=True).stdout
        assert "<title>Welcome to nginx!</title>" in out
    # from inside each node's network namespace
    for node in cluster.net.node_list():
        for ip in ips:
            out = subprocess.run(["ip", "netns", "exec", node.netns, "curl", "-s", "-m", "5", f"http://{ip}/"],
                                 capture_output=True, text=True).stdout
            assert "Welcome to nginx!" in out, (node.netns, ip)
    # from a pod: kubectl run -i --rm with a scripted stdin
    script = "".join(f"wget -qO- http://{ip} | grep -o '<title>.*</title>'\n" for ip in ips) + "exit\n"
    cp = cluster.kubectl("run", "-i", "--rm", "--restart=Never", "client", "--image=busybox", "-n", ns,
                         "--", "sh", input=script, timeout=60)
    assert cp.stdout.count("<title>Welcome to nginx!</title>") == 2
    assert f'pod "client" deleted' in cp.stdout + cp.stderr
    # the Endpoints list both pods
    ep = cluster.kubectl_json("get", "endpoints", "web", "-n", ns)
    assert sorted(a["ip"] for a in ep["subsets"][0]["addresses"]) == sorted(ips)
    # and nginx logged the requests
    logs = "".join(cluster.kubectl("logs", p["metadata"]["name"], "-n", ns).stdout
                   for p in pods(cluster, ns, "app=web"))
    assert '"GET / HTTP/1.1" 200' in logs


def test_exec_hostname_resolv_conf_env_and_service_account(cluster, ns):
    cluster.kubectl("create", "service", "clusterip", "my-nginx", "--tcp=80:80", "-n", ns)
    cluster.kubectl("run", "bb", "--image=busybox", "-n", ns, "--", "sleep", "3600")
    eventually(lambda: cluster.kubectl_json("get", "pod", "bb", "-n", ns)["status"]["phase"] == "Running")
    assert cluster.kubectl("exec", "bb", "-n", ns, "--", "hostname").stdout.strip() == "bb"
    resolv = cluster.kubectl("exec", "bb", "-n", ns, "--", "cat", "/etc/resolv.conf").stdout
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert f"nameserver {cluster.net.cluster_dns}" in resolv and "options ndots:5" in resolv
    env = cluster.kubectl("exec", "bb", "-n", ns, "--", "env").stdout
    svc_ip = cluster.kubectl_json("get", "svc", "my-nginx", "-n", ns)["spec"]["clusterIP"]
    assert f"MY_NGINX_SERVICE_HOST={svc_ip}" in env and "MY_NGINX_SERVICE_PORT=80" in env
    assert f"KUBERNETES_SERVICE_HOST={cluster.net.service_cidr.network_address + 1}" in env
    sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert cluster.kubectl("exec", "bb", "-n", ns, "--", "cat", f"{sa_dir}/namespace").stdout == ns
    token = cluster.kubectl("exec", "bb", "-n", ns, "--", "cat", f"{sa_dir}/token").stdout
    assert token.count(".") == 2
    assert "BEGIN CERTIFICATE" in cluster.kubectl("exec", "bb", "-n", ns, "--", "cat", f"{sa_dir}/ca.crt").stdout
    # the token authenticates against the API, as a pod's in-cluster client would use it: it is the
    # namespace's default ServiceAccount, which may read nothing until a binding says so
    as_pod = ("-n", ns, f"--token={token}", "--kubeconfig=/dev/null", f"--server=https://127.0.0.1:{cluster.port}",
              "--insecure-skip-tls-verify")
    cp = cluster.kubectl("get", "svc", "my-nginx", *as_pod, check=False)
    assert cp.stderr.strip() == (f'Error from server (Forbidden): services "my-nginx" is forbidden: User '
                                 f'"system:serviceaccount:{ns}:default" cannot get resource "services" in API group "" '
                                 f'in the namespace "{ns}"')
    cluster.kubectl("create", "rolebinding", "pod-view", "--clusterrole=view", f"--serviceaccount={ns}:default",
                    "-n", ns)
    assert "my-nginx" in cluster.kubectl("get", "svc", "my-nginx", *as_pod).stdout
    bad = cluster.kubectl("exec", "bb", "-n", ns, "--", "sh", "-c", "exit 3", check=False)
    assert bad.returncode == 3 and "command terminated with exit code 3" in bad.stderr


def test_python_client_exec_with_stdin_and_port_forward(cluster, ns):
    """The official client's WebSocket exec (stdin as text frames) and port-forward (channel pairs)
    into real pods, as its own e2e tests use them."""
    from kubernetes import client, config
    from kubernetes.stream import portforward, stream

    cluster.kubectl("run", "sh", "--image=busybox", "-n", ns, "--", "sleep", "3600")
    cluster.kubectl("run", "web", "--image=nginx", "-n", ns)
    for pod in ("sh", "web"):
        eventually(lambda: cluster.kubectl_json("get", "pod", pod, "-n", ns)["status"]["phase"] == "Running")
    api_client = config.new_client_from_config(config_file=cluster.kubeconfig)
    api = client.CoreV1Api(api_client)
    try:
        resp = stream(api.connect_post_namespaced_pod_exec, "sh", ns, command=["/bin/sh"], stderr=True,
                      stdin=True, stdout=True, tty=False, _preload_content=False)
        resp.write_stdin("echo test string 1\n")
        assert resp.readline_stdout(timeout=5) == "test string 1"
        resp.write_stdin("hostname >&2\n")
        assert resp.readline_stderr(timeout=5) == "sh"
        resp.write_stdin("exit\n")
        resp.run_forever(timeout=10)
        assert resp.returncode == 0

        def fetch() -> bytes:
            pf = portforward(api.connect_get_namespaced_pod_portforward, "web", ns, ports="80")
            sock = pf.socket(80)
            sock.setblocking(True)
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
            sock.close()
            return reply

        assert b"<h1>Welcome to nginx!</h1>" in eventually(fetch)  # nginx may still be starting
    finally:
        api_client.close()


def test_failing_container_restarts_with_back_off(cluster, ns):
    cluster.kubectl("run", "crash", "--image=busybox", "-n", ns, "--", "sh", "-c", "echo started; exit 3")

    def crashlooping():
        st = cluster.kubectl_json("get", "pod", "crash", "-n", ns)["status"]["containerStatuses"][0]
        return st["restartCount"] >= 1 and st["lastState"]["terminated"]["exitCode"] == 3
    eventually(crashlooping, timeout=45)
    assert cluster.kubectl("logs", "crash", "-n", ns, "--previous").stdout.strip() == "started"

    def events_written():  # the node's events are sent in the background, behind its status writes
        events = cluster.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=crash").stdout
        return "BackOff" in events or "Started" in events
    eventually(events_written, timeout=30)


def test_unknown_image_is_image_pull_back_off(cluster, ns):
    cluster.kubectl("run", "nope", "--image=example.com/no/such:1.0", "-n", ns)

    def pulling_failed():
        st = cluster.kubectl_json("get", "pod", "nope", "-n", ns)["status"]["containerStatuses"][0]
        return st["state"].get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff") and st
    st = eventually(pulling_failed)
    assert "pocketkube catalog" in st["state"]["waiting"]["message"]
    row = cluster.kubectl("get", "pod", "nope", "-n", ns).stdout.splitlines()[1]
    assert "ErrImagePull" in row or "ImagePullBackOff" in row


def test_deleted_pods_go_and_their_namespaces_with_them(cluster, ns):
    cluster.kubectl("run", "gone", "--image=nginx", "-n", ns)
    eventually(lambda: cluster.kubectl_json("get", "pod", "gone", "-n", ns)["status"].get("podIP"))
    ip = cluster.kubectl_json("get", "pod", "gone", "-n", ns)["status"]["podIP"]
    cp = cluster.kubectl("delete", "pod", "gone", "-n", ns, timeout=90)
    assert cp.stdout.strip() == 'pod "gone" deleted'
    out = subprocess.run(["curl", "-s", "-m", "2", f"http://{ip}/"], capture_output=True, text=True)
    assert "Welcome" not in out.stdout


def test_200_pods_for_one_node_fill_it_and_the_rest_wait(cluster, ns):
    """A node takes its allocatable pods (110, the kubelet's default) and no more: the rest stay
    Pending with the scheduler's 1.32 message; deleting them all leaves nothing running."""
    node = cluster.kubectl_json("get", "nodes")["items"][0]["metadata"]["name"]
    capacity = int(cluster.kubectl_json("get", "node", node)["status"]["allocatable"]["pods"])
    assert capacity == 110
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "many"},
                "spec": {"replicas": 200, "selector": {"matchLabels": {"app": "many"}},
                         "template": {"metadata": {"labels": {"app": "many"}},
                                      "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                                               "containers": [{"name": "p", "image": "registry.k8s.io/pause"}]}}}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))

    def settled():
        bound = [p for p in cluster.kubectl_json("get", "pods", "-A", "--field-selector",
                                                 f"spec.nodeName={node}")["items"]
                 if p["status"].get("phase") in ("Pending", "Running")]
        mine = pods(cluster, ns, "app=many")
        running = [p for p in mine if p["status"].get("phase") == "Running"]
        waiting = [p for p in mine if not p["spec"].get("nodeName")]
        judged = all(any(c["type"] == "PodScheduled" for c in p["status"].get("conditions", []))
                     for p in waiting)  # the scheduler has looked at every waiting pod
        if len(mine) == 200 and len(bound) == capacity and len(running) + len(waiting) == 200 and judged:
            return running, waiting
        return None
    running, waiting = eventually(settled, timeout=90)
    assert running and waiting
    condition = next(c for c in waiting[0]["status"]["conditions"] if c["type"] == "PodScheduled")
    assert condition["status"] == "False" and condition["reason"] == "Unschedulable"
    assert "Too many pods" in condition["message"]
    ips = {p["status"]["podIP"] for p in running}
    assert len(ips) == len(running)  # one address each from the node's /24
    cluster.kubectl("delete", "deployment", "many", "-n", ns)
    eventually(lambda: not pods(cluster, ns, "app=many"), timeout=240)  # 110 pods stopping on a slow host


def test_api_server_proxies_to_pods_and_services(cluster, ns):
    """The Kubernetes basics tutorial: `kubectl proxy`, then curl .../pods/NAME/proxy/ and the
    Service's proxy; HTML links to the backend come back through the proxy."""
    page = '<html><body><a href="/rewriteme">test</a> <a href="https://example.invalid/x">away</a></body></html>'
    script = f"mkdir -p /tmp/www && echo '{page}' > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "site", "labels": {"app": "site"}},
           "spec": {"containers": [{"name": "web", "image": "busybox", "command": ["sh", "-c", script],
                                    "ports": [{"containerPort": 8080}]}]}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod))
    cluster.kubectl("create", "deployment", "web", "--image=nginx", "-n", ns)
    cluster.kubectl("expose", "deployment", "web", "--port=80", "--name=web", "-n", ns)
    ready_ips(cluster, ns, "app=site", 1)
    ready_ips(cluster, ns, "app=web", 1)

    base = f"/api/v1/namespaces/{ns}"
    # The pod's first declared port; links to its own paths go through the proxy again.
    out = eventually(lambda: cluster.kubectl("get", "--raw", f"{base}/pods/site/proxy/").stdout)
    assert f'<a href="{base}/pods/site/proxy/rewriteme">test</a>' in out
    assert '<a href="https://example.invalid/x">away</a>' in out
    assert f'href="{base}/pods/http:site:8080/proxy/rewriteme"' in \
        cluster.kubectl("get", "--raw", f"{base}/pods/http:site:8080/proxy/").stdout
    # A Service by port number and by (empty) port name: one of its ready endpoints answers.
    for segment in ("web:80", "web", "http:web:"):
        out = eventually(lambda: cluster.kubectl("get", "--raw", f"{base}/services/{segment}/proxy/").stdout)
        assert "Welcome to nginx!" in out, segment

    # Bad input gets kube-apiserver's errors.
    cp = cluster.kubectl("get", "--raw", f"{base}/services/web:81/proxy/", check=False)
    assert 'no service port 81 found for service "web"' in cp.stderr
    cp = cluster.kubectl("get", "--raw", f"{base}/pods/site:9/proxy/", check=False)
    assert "error trying to reach service: dial tcp" in cp.stderr and ":9: connect: connection refused" in cp.stderr
    cp = cluster.kubectl("get", "--raw", f"{base}/pods/ftp:site:80/proxy/", check=False)
    assert "invalid pod request" in cp.stderr
    cp = cluster.kubectl("get", "--raw", f"{base}/pods/nosuch/proxy/", check=False)
    assert 'pods "nosuch" not found' in cp.stderr

    # `kubectl proxy`, as the tutorial runs it, and curl through it.
    port_cp = subprocess.Popen(["kubectl", "--context", cluster.context, "proxy", "--port=0"],
                               stdout=subprocess.PIPE, text=True, env=cluster.env)
    try:
        line = port_cp.stdout.readline()  # "Starting to serve on 127.0.0.1:PORT"
        address = line.strip().rsplit(" ", 1)[-1]
        out = subprocess.run(["curl", "-s", "-m", "10", f"http://{address}{base}/services/web:80/proxy/"],
                             capture_output=True, text=True).stdout
        assert "Welcome to nginx!" in out
    finally:
        port_cp.terminate()
        port_cp.wait(timeout=10)


def test_node_proxy_reaches_the_agents_log_directory(cluster, ns):
    """nodes/NAME/proxy/logs/, as the e2e Proxy specs read it: the node's log directory with the
    agent's log and /var/log/pods' layout of the containers' logs."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker", "labels": {"app": "talker"}},
           "spec": {"containers": [{"name": "main", "image": "busybox",
                                    "command": ["sh", "-c", "echo said-by-talker; exec sleep 3600"]}]}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod))
    ready_ips(cluster, ns, "app=talker", 1)
    got = cluster.kubectl_json("get", "pod", "talker", "-n", ns)
    node, uid = got["spec"]["nodeName"], got["metadata"]["uid"]
    listing = cluster.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/logs/").stdout
    assert '<a href="agent.log">agent.log</a>' in listing and '<a href="pods/">pods/</a>' in listing
    pod_dir = f"{ns}_talker_{uid}"
    assert f'<a href="{pod_dir}/">' in cluster.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/logs/pods/").stdout
    port = cluster.kubectl_json("get", "node", node)["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    text = eventually(lambda: cluster.kubectl(
        "get", "--raw", f"/api/v1/nodes/{node}:{port}/proxy/logs/pods/{pod_dir}/main/0.log").stdout)
    assert "said-by-talker" in text


def test_jobs_run_real_pods_to_completion(cluster, ns):
    """`kubectl create job` and an Indexed Job: real busybox processes exit, the node reports the
    pods Succeeded, the Job completes, and each indexed pod saw its own index."""
    cluster.kubectl("create", "job", "hello", "--image=busybox", "-n", ns, "--", "sh", "-c", "echo hello from $HOSTNAME")
    cluster.kubectl("wait", "--for=condition=complete", "job/hello", "-n", ns, "--timeout=60s", timeout=90)
    assert "hello from hello-" in cluster.kubectl("logs", "job/hello", "-n", ns).stdout
    indexed = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "idx"},
               "spec": {"completions": 3, "parallelism": 2, "completionMode": "Indexed",
                        "template": {"spec": {"restartPolicy": "Never", "containers": [{
                            "name": "c", "image": "busybox",
                            "command": ["sh", "-c", "echo index=$JOB_COMPLETION_INDEX host=$(hostname)"]}]}}}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(indexed))
    cluster.kubectl("wait", "--for=condition=complete", "job/idx", "-n", ns, "--timeout=90s", timeout=120)
    job = cluster.kubectl_json("get", "job", "idx", "-n", ns)
    assert job["status"]["succeeded"] == 3 and job["status"]["completedIndexes"] == "0-2"
    outputs = set()
    for pod in pods(cluster, ns, "job-name=idx"):
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        log = cluster.kubectl("logs", pod["metadata"]["name"], "-n", ns).stdout.strip()
        assert log == f"index={index} host=idx-{index}"
        outputs.add(log)
    assert len(outputs) == 3
    failing = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fails"},
               "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{
                   "name": "c", "image": "busybox", "command": ["sh", "-c", "exit 3"]}]}}}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(failing))
    cluster.kubectl("wait", "--for=condition=failed", "job/fails", "-n", ns, "--timeout=60s", timeout=90)
    status = cluster.kubectl_json("get", "job", "fails", "-n", ns)["status"]
    assert status["failed"] == 1


def test_pod_failure_policy_reads_real_exit_codes(cluster, ns):
    """A real process exits 42; the node reports that exit code and the Job's podFailurePolicy
    fails the Job at once (not after its 6 retries); exit code 3 is ignored and retried."""
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pfp"},
           "spec": {"backoffLimit": 6, "podFailurePolicy": {"rules": [
               {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
               {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}}]},
               "template": {"spec": {"restartPolicy": "Never", "containers": [{
                   "name": "main", "image": "busybox",
                   # The first pod exits 3 (ignored); its replacement finds the mark and exits 42.
                   "command": ["sh", "-c", "if [ -e /data/seen ]; then exit 42; fi; touch /data/seen; exit 3"],
                   "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                   "volumes": [{"name": "data", "hostPath": {"path": f"/tmp/pk-e2e-{ns}", "type": "DirectoryOrCreate"}}]}}}}
    try:
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job))
        cluster.kubectl("wait", "--for=condition=failed", "job/pfp", "-n", ns, "--timeout=90s", timeout=120)
        status = cluster.kubectl_json("get", "job", "pfp", "-n", ns)["status"]
        failed = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert failed["reason"] == "PodFailurePolicy"
        assert "failed with exit code 42 matching FailJob rule at index 0" in failed["message"]
        codes = sorted(p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
                       for p in pods(cluster, ns, "job-name=pfp"))
        assert codes == [3, 42] and status["failed"] == 1
    finally:
        shutil.rmtree(f"/tmp/pk-e2e-{ns}", ignore_errors=True)


def test_kubectl_drain_respects_the_disruption_budget(cluster, ns):
    """`kubectl drain` evicts a node's pods through the eviction subresource: the budget lets one
    go at a time, the Deployment replaces it on the other node, and the node ends up empty of
    them; evicted pods carry the DisruptionTarget condition."""
    cluster.kubectl("create", "deployment", "drained", "--image=nginx", "--replicas=2", "-n", ns)
    cluster.kubectl("rollout", "status", "deployment/drained", "-n", ns, "--timeout=90s", timeout=120)
    cluster.kubectl("create", "pdb", "drained", "--selector=app=drained", "--min-available=1", "-n", ns)
    for _ in range(100):
        if cluster.kubectl_json("get", "pdb", "drained", "-n", ns).get("status", {}).get("disruptionsAllowed") == 1:
            break
        time.sleep(0.1)
    before = pods(cluster, ns, "app=drained")
    node = before[0]["spec"]["nodeName"]
    try:
        cp = cluster.kubectl("drain", node, "--pod-selector=app=drained", "--ignore-daemonsets",
                             "--delete-emptydir-data", "--timeout=120s", timeout=150)
        assert f"node/{node} cordoned" in cp.stdout and f"node/{node} drained" in cp.stdout
        for pod in before:
            if pod["spec"]["nodeName"] == node:
                assert f"pod/{pod['metadata']['name']} evicted" in cp.stdout
        assert cluster.kubectl_json("get", "node", node)["spec"]["unschedulable"] is True
        cluster.kubectl("rollout", "status", "deployment/drained", "-n", ns, "--timeout=90s", timeout=120)
        after = [p for p in pods(cluster, ns, "app=drained") if not p["metadata"].get("deletionTimestamp")]
        assert len(after) == 2 and all(p["spec"]["nodeName"] != node for p in after)
    finally:
        cluster.kubectl("uncordon", node)


def test_an_evicted_job_pod_is_ignored_by_its_pod_failure_policy(cluster, ns):
    """The documented use of podFailurePolicy: a pod evicted (DisruptionTarget) does not count
    towards backoffLimit 0; the node writes the pod's terminal phase before it goes, the Job
    sees a Failed pod with the condition, ignores it and starts another."""
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "evicted"},
           "spec": {"backoffLimit": 0, "podFailurePolicy": {"rules": [
               {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
               "template": {"spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                                     "containers": [{"name": "main", "image": "busybox",
                                                     "command": ["sleep", "3600"]}]}}}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job))
    cluster.kubectl("wait", "--for=condition=ready", "pod", "-l", "job-name=evicted", "-n", ns, "--timeout=60s",
                    timeout=90)
    first = pods(cluster, ns, "job-name=evicted")[0]["metadata"]["name"]
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": first, "namespace": ns}}
    cluster.kubectl("create", "--raw", f"/api/v1/namespaces/{ns}/pods/{first}/eviction", "-f", "-",
                    input=json.dumps(eviction))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        others = [p for p in pods(cluster, ns, "job-name=evicted") if p["metadata"]["name"] != first]
        if others and others[0]["status"].get("phase") == "Running":
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"no replacement: {cluster.kubectl('describe', 'job', 'evicted', '-n', ns).stdout}")
    status = cluster.kubectl_json("get", "job", "evicted", "-n", ns)["status"]
    assert status.get("failed", 0) == 0 and not any(c["type"] == "Failed" for c in status.get("conditions") or [])


def test_a_deleted_pod_reports_its_terminal_phase_before_it_goes(cluster, ns):
    """As the kubelet does since 1.27: a deleted pod's containers are stopped, its final status
    (phase Failed, the containers' terminated states) is written, and then it is removed, so
    controllers watching it (a Job's) see how it ended."""
    from conftest import KUBECTL

    cluster.kubectl("run", "ending", "--image=busybox", "-n", ns, "--", "sleep", "3600")
    cluster.kubectl("wait", "--for=condition=ready", "pod/ending", "-n", ns, "--timeout=60s", timeout=90)
    watch = subprocess.Popen([KUBECTL, "get", "pod", "ending", "-n", ns, "--watch", "--output-watch-events",
                              "-o", "json"], stdout=subprocess.PIPE, text=True, env=cluster.env)
    try:
        time.sleep(0.5)
        cluster.kubectl("delete", "pod", "ending", "-n", ns, "--grace-period=1", "--wait=true", timeout=90)
        time.sleep(0.5)
    finally:
        watch.terminate()
        out = watch.communicate(timeout=10)[0]
    events, decoder, at = [], json.JSONDecoder(), 0
    while at < len(out):
        if out[at].isspace():
            at += 1
            continue
        event, at = decoder.raw_decode(out, at)
        events.append(event)
    phases = [(e["type"], e["object"]["status"].get("phase")) for e in events]
    assert ("MODIFIED", "Failed") in phases and phases[-1][0] == "DELETED", phases
    final = next(e["object"]["status"] for e in events if e["object"]["status"].get("phase") == "Failed")
    terminated = final["containerStatuses"][0]["state"].get("terminated")
    assert terminated is not None, final
    assert terminated["exitCode"] in (137, 143) and terminated["reason"] == "Error"


def test_a_second_delete_with_a_shorter_grace_period_ends_the_wait(cluster, ns):
    """`sleep` as PID 1 ignores SIGTERM, so `kubectl delete pod` waits out the 30 s grace period;
    a second delete with --grace-period=1 meanwhile makes the pod go at once, as the kubelet
    takes the shorter period (kubectl's own --timeout, 20 s, is shorter than the first)."""
    cluster.kubectl("run", "lingering", "--image=busybox", "-n", ns, "--", "sleep", "3600")
    cluster.kubectl("wait", "--for=condition=ready", "pod/lingering", "-n", ns, "--timeout=60s", timeout=90)
    cluster.kubectl("delete", "pod", "lingering", "-n", ns, "--wait=false")
    eventually(lambda: cluster.kubectl_json("get", "pod", "lingering", "-n", ns)["metadata"].get("deletionTimestamp"))
    cp = cluster.kubectl("delete", "pod", "lingering", "-n", ns, "--grace-period=1", "--timeout=20s", check=False,
                         timeout=60)
    assert cp.returncode == 0, cp.stderr
    gone = cluster.kubectl("get", "pod", "lingering", "-n", ns, check=False)
    assert "NotFound" in gone.stderr
