"""The pod runtime for real (root): sandboxes in network namespaces, containers, restarts,
probes, termination, adoption after an agent crash, and cleanup.

Each test gets its own node: a network namespace `pk-test-<random>` with a `cni0` bridge
(10.244.1.1/24), and a PodManager working in it with a state dir under pytest's tmp_path.
Traffic stays inside that namespace. Teardown terminates every pod, kills whatever a test
left, deletes the namespace, and checks nothing of the test remains.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from pocketkube.node.pods import PodManager, cleanup_node_state
from pocketkube.core.linux import process_alive

pytestmark = [pytest.mark.e2e]

REQUIRED = ("ip", "nsenter", "busybox", "nginx", "curl", "unshare")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _skip_reason() -> str | None:
    if sys.platform != "linux":
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root (network namespaces, mounts)"
    missing = [p for p in REQUIRED if shutil.which(p) is None and not os.path.exists(f"/usr/sbin/{p}")]
    if missing:
        return f"needs {', '.join(missing)} (scripts/setup installs them)"
    return None


if _skip_reason():
    pytest.skip(_skip_reason(), allow_module_level=True)


def run(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and cp.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {cp.stderr}")
    return cp


class FakeEnv:
    """EnvResolver stand-in: fixed cluster env and volume files."""

    def __init__(self, files: dict | None = None):
        self.files = files or {}

    async def container_env(self, pod, container, pod_ip=None):
        env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
        for var in container.get("env") or []:
            env[var["name"]] = var.get("value", "")
        return env

    async def volume_files(self, pod, volume):
        return self.files.get(volume["name"], {})

    def token_renew_at(self, uid):
        return None  # its files hold no token that expires

    def forget_pod(self, uid):
        pass


class Node:
    """A node-like namespace and a PodManager working in it."""

    def __init__(self, netns: str, state_dir: str):
        self.netns = netns
        self.state_dir = state_dir
        self.name = f"{netns}-node"
        self.events: list[tuple[str, str, str, str]] = []
        self.env = FakeEnv()
        self.manager = self.new_manager()

    def new_manager(self) -> PodManager:
        return PodManager(node_name=self.name, node_ip="172.18.0.2", pod_cidr="10.244.1.0/24",
                          state_dir=self.state_dir, netns=self.netns,
                          on_event=lambda pod, t, reason, msg: self.events.append(
                              (pod["metadata"]["name"], t, reason, msg)))

    async def sync(self, pod: dict) -> dict:
        return await self.manager.sync(pod, self.env)

    async def wait(self, pod: dict, predicate, timeout: float = 30, what: str = "") -> dict:
        deadline = time.monotonic() + timeout
        status = {}
        while time.monotonic() < deadline:
            status = await self.sync(pod)
            if predicate(status):
                return status
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what or 'condition'}: {json.dumps(status, indent=1)}")

    async def running(self, pod: dict, ready: bool = True, timeout: float = 30) -> dict:
        def ok(s):
            cs = s.get("containerStatuses") or []
            return s["phase"] == "Running" and all(c["ready"] or not ready for c in cs) and \
                all("running" in c["state"] for c in cs)
        return await self.wait(pod, ok, timeout, "Running")

    async def logs(self, pod: dict, container: str | None = None, **kw) -> str:
        name = container or pod["spec"]["containers"][0]["name"]
        return b"".join([c async for c in self.manager.read_logs(pod["metadata"]["uid"], name, **kw)]).decode()

    def curl(self, url: str) -> str:
        """GET from the node's namespace (retried while the program in the pod starts listening)."""
        for _ in range(50):
            cp = run("ip", "netns", "exec", self.netns, "curl", "-s", "-m", "5", url, check=False)
            if cp.returncode != 7:  # 7: connection refused
                break
            time.sleep(0.1)
        assert cp.returncode == 0, f"curl {url} failed ({cp.returncode}): {cp.stderr}"
        return cp.stdout

    def links(self) -> list[str]:
        out = run("ip", "-n", self.netns, "-o", "link").stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]

    def event_reasons(self, pod_name: str) -> list[str]:
        return [reason for name, _, reason, _ in self.events if name == pod_name]


def make_pod(name: str, containers: list[dict], **spec) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {"containers": containers, "terminationGracePeriodSeconds": 2, **spec},
            "status": {"qosClass": "BestEffort",
                       "conditions": [{"type": "PodScheduled", "status": "True"}]}}


def busybox(name: str, script: str, **extra) -> dict:
    return {"name": name, "image": "busybox:1.36", "command": ["sh", "-c", script], **extra}


def holder_pids(state_dir: str) -> list[int]:
    pids = []
    pods = os.path.join(state_dir, "pods")
    for uid in os.listdir(pods) if os.path.isdir(pods) else []:
        try:
            with open(os.path.join(pods, uid, "sandbox.json")) as f:
                info = json.load(f)
            if process_alive(info["holder_pid"], info["holder_start"]):
                pids.append(info["holder_pid"])
        except (OSError, ValueError):
            pass
    return pids


def host_pid(container_pid: int, ns_pid: int) -> int:
    """The host PID of process `ns_pid` of the PID namespace of `container_pid`."""
    namespace = os.readlink(f"/proc/{container_pid}/ns/pid")
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                with open(f"/proc/{entry}/status") as f:
                    nspid = next(line for line in f if line.startswith("NSpid:")).split()
                if int(nspid[-1]) == ns_pid:
                    return int(entry)
        except OSError:
            continue
    raise AssertionError(f"no process {ns_pid} in {namespace}")


def start_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


@pytest.fixture
async def node(tmp_path):
    netns = "pk-test-" + secrets.token_hex(3)
    run("ip", "netns", "add", netns)
    node = None
    try:
        for cmd in (["link", "add", "cni0", "type", "bridge"], ["addr", "add", "10.244.1.1/24", "dev", "cni0"],
                    ["link", "set", "cni0", "up"], ["link", "set", "lo", "up"]):
            run("ip", "-n", netns, *cmd)
        node = Node(netns, str(tmp_path / "node"))
        await node.manager.start()
        yield node
    finally:
        if node is not None:
            for uid in node.manager.running_pods():
                try:
                    await asyncio.wait_for(node.manager.terminate({"metadata": {"uid": uid}}, 0), 30)
                except Exception:
                    pass
            await node.manager.stop()
            cleanup_node_state(node.state_dir, node.name)
            leftovers = holder_pids(node.state_dir)
        run("ip", "netns", "del", netns, check=False)
    if node is not None:
        assert leftovers == [], f"holders left behind: {leftovers}"


# ---- tests --------------------------------------------------------------------------------

async def test_nginx_pod_answers_from_the_node(node):
    pod = make_pod("nginx", [{"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}])
    status = await node.running(pod)
    ip = status["podIP"]
    assert ip.startswith("10.244.1.") and status["podIPs"] == [{"ip": ip}]
    assert status["hostIP"] == "172.18.0.2" and status["qosClass"] == "BestEffort"
    assert "Welcome to nginx!" in node.curl(f"http://{ip}/")
    types = [c["type"] for c in status["conditions"]]
    assert types == ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    cs = status["containerStatuses"][0]
    assert cs["image"] == "docker.io/library/nginx:1.25" and cs["containerID"].startswith("pocketkube://")
    assert cs["started"] is True and cs["restartCount"] == 0
    logs = await node.logs(pod)
    assert '"GET / HTTP/1.1" 200' in logs  # the access log goes to stdout
    assert ["Pulled", "Created", "Started"] == node.event_reasons("nginx")


async def test_busybox_reaches_nginx_and_sees_its_own_hostname_and_dns(node):
    nginx = make_pod("web", [{"name": "nginx", "image": "nginx"}])
    ip = (await node.running(nginx))["podIP"]
    client = make_pod("client", [busybox("bb", f"wget -O- http://{ip}/; hostname; cat /etc/resolv.conf /etc/hosts; "
                                               "echo done")], restartPolicy="Never")
    await node.wait(client, lambda s: s["phase"] == "Succeeded", what="client Succeeded")
    out = await node.logs(client)
    assert "Welcome to nginx!" in out and f"Connecting to {ip}" in out  # busybox's wget
    lines = out.splitlines()
    assert "client" in lines
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in lines
    assert "nameserver 10.96.0.10" in lines and "options ndots:5" in lines
    assert "# Kubernetes-managed hosts file." in lines
    status = await node.sync(client)
    assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"
    assert status["podIP"]  # the IP stays in the status after the sandbox is gone


async def test_crashing_container_backs_off(node):
    pod = make_pod("crasher", [busybox("c", "echo run; exit 3")])
    uid = pod["metadata"]["uid"]
    status = await node.wait(pod, lambda s: s["containerStatuses"][0]["state"].get("waiting", {}).get("reason")
                             == "CrashLoopBackOff", what="CrashLoopBackOff")
    cs = status["containerStatuses"][0]
    assert cs["restartCount"] == 1  # the first restart is immediate, the second waits
    assert cs["state"]["waiting"]["message"] == \
        f"back-off 10s restarting failed container=c pod=crasher_default({uid})"
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert status["phase"] == "Running" and cs["ready"] is False
    assert "BackOff" in node.event_reasons("crasher")
    assert (await node.logs(pod)).strip() == "run"
    assert (await node.logs(pod, previous=True)).strip() == "run"


async def test_missing_command_is_a_start_error(node):
    pod = make_pod("nocmd", [{"name": "c", "image": "busybox", "command": ["no-such-program"]}],
                   restartPolicy="Never")
    status = await node.wait(pod, lambda s: s["phase"] == "Failed", what="Failed")
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "StartError" and term["exitCode"] == 128
    assert 'exec: "no-such-program": executable file not found in $PATH' in term["message"]


async def running_stubborn_pod(node, name: str) -> dict:
    """A running pod whose container ignores SIGTERM (its trap set)."""
    pod = make_pod(name, [busybox("c", "trap '' TERM; echo ready; while true; do sleep 1; done")])
    await node.running(pod)
    for _ in range(100):  # the trap is set once it says so
        if "ready" in await node.logs(pod):
            return pod
        await asyncio.sleep(0.05)
    raise AssertionError("the container never said it was ready")


async def test_container_ignoring_sigterm_is_killed_after_grace(node):
    pod = await running_stubborn_pod(node, "stubborn")
    slot = node.manager.workers[pod["metadata"]["uid"]].slot("c")
    process = slot.process
    cgroup = process.record.cgroup
    await node.manager.terminate(pod, 2)
    assert process.exit_code == 137  # it had to be SIGKILLed
    assert not os.path.exists(f"/proc/{process.pid}") or not process_alive(process.pid, process.record.start_ticks)
    if cgroup:
        assert not os.path.exists(cgroup)
    assert "Killing" in node.event_reasons("stubborn")


async def test_a_shorter_grace_period_cuts_a_stop_under_way(node):
    """`kubectl delete pod` (a long grace period), then `kubectl delete pod --grace-period=0`
    while the first waits: the kubelet takes the shorter one, so the pod goes now, not after
    the first grace period (here 600 s: the wait below is 30)."""
    pod = await running_stubborn_pod(node, "slow-to-go")
    uid = pod["metadata"]["uid"]
    process = node.manager.workers[uid].slot("c").process
    stopping = asyncio.create_task(node.manager.terminate(pod, 600))
    for _ in range(100):
        worker = node.manager.stopping.get(uid)
        if worker is not None and worker.grace is not None:  # the grace period runs
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # the SIGTERM went, and the container ignored it
    assert not stopping.done()
    assert not node.manager.shorten_grace(uid, 900)  # never longer
    assert node.manager.shorten_grace(uid, 0)
    await asyncio.wait_for(stopping, 30)
    assert process.exit_code == 137
    assert not node.manager.shorten_grace(uid, 0)  # gone: nothing to cut


async def test_children_die_with_the_container(node):
    pod = make_pod("forker", [busybox("c", "sleep 3600 & sleep 3600 & echo $! > /tmp/child; wait")])
    await node.running(pod)
    await asyncio.sleep(0.3)
    worker = node.manager.workers[pod["metadata"]["uid"]]
    in_container = int(open(f"/proc/{worker.slot('c').process.pid}/root/tmp/child").read())
    child = host_pid(worker.slot("c").process.pid, in_container)
    ticks = open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[19]
    await node.manager.terminate(pod, 1)
    assert not process_alive(child, int(ticks))


async def test_liveness_probe_on_closed_port_restarts_the_container(node):
    probe = {"tcpSocket": {"port": 8081}, "periodSeconds": 1, "failureThreshold": 1}
    pod = make_pod("unhealthy", [busybox("c", "sleep 3600", livenessProbe=probe)],
                   terminationGracePeriodSeconds=1)
    status = await node.wait(pod, lambda s: s["containerStatuses"][0]["restartCount"] >= 1, timeout=30,
                             what="a restart")
    assert status["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] in (137, 143)
    messages = [msg for name, _, reason, msg in node.events if name == "unhealthy" and reason == "Unhealthy"]
    assert any(m.startswith("Liveness probe failed: dial tcp 10.244.1.") and
               m.endswith(":8081: connect: connection refused") for m in messages), messages
    killing = [msg for name, _, reason, msg in node.events if name == "unhealthy" and reason == "Killing"]
    assert "Container c failed liveness probe, will be restarted" in killing


async def test_failing_readiness_keeps_the_pod_unready(node):
    probe = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1}
    pod = make_pod("notready", [{"name": "nginx", "image": "nginx", "readinessProbe": probe}])
    await node.wait(pod, lambda s: any(r == "Unhealthy" for r in node.event_reasons("notready")),
                    what="a readiness failure")
    status = await node.running(pod, ready=False)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["ContainersReady"]["message"] == "containers with unready status: [nginx]"
    assert status["containerStatuses"][0]["ready"] is False


async def test_readiness_probe_success_makes_the_pod_ready(node):
    probe = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}
    pod = make_pod("ready", [{"name": "nginx", "image": "nginx", "readinessProbe": probe,
                              "ports": [{"name": "http", "containerPort": 80}]}])
    status = await node.running(pod, ready=True)
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"


async def test_unknown_image_is_an_image_pull_error_then_back_off(node):
    pod = make_pod("ghost", [{"name": "c", "image": "foo/bar"}])
    status = await node.wait(pod, lambda s: "waiting" in s["containerStatuses"][0]["state"] and
                             s["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull",
                             what="ErrImagePull")
    message = status["containerStatuses"][0]["state"]["waiting"]["message"]
    assert message.startswith('failed to pull image "foo/bar": image not in the pocketkube catalog (known: nginx')
    assert status["phase"] == "Pending"
    status = await node.wait(pod, lambda s: s["containerStatuses"][0]["state"]["waiting"]["reason"]
                             == "ImagePullBackOff", timeout=15, what="ImagePullBackOff")
    assert status["containerStatuses"][0]["state"]["waiting"]["message"] == 'Back-off pulling image "foo/bar"'
    reasons = node.event_reasons("ghost")
    assert reasons[:3] == ["Pulling", "Failed", "Failed"] and "BackOff" in reasons


async def test_volumes_hostname_fqdn_and_service_account(node):
    node.env.files = {"config": {"app.conf": b"color=blue\n"},
                      "kube-api-access-abcde": {"token": b"t0ken", "ca.crt": b"CA", "namespace": b"default"}}
    sa_mount = "/var/run/secrets/kubernetes.io/serviceaccount"
    script = (f"echo hello > /data/shared; cat /etc/config/app.conf; cat {sa_mount}/token; echo; "
              "cat /etc/hosts | tail -1; hostname; pwd; sleep 3600")
    pod = make_pod("vols", [
        busybox("writer", script, workingDir="/work/dir", volumeMounts=[
            {"name": "data", "mountPath": "/data"}, {"name": "config", "mountPath": "/etc/config"},
            {"name": "kube-api-access-abcde", "mountPath": sa_mount, "readOnly": True}]),
        busybox("reader", "sleep 3600", volumeMounts=[{"name": "data", "mountPath": "/data"}])],
        hostname="db-0", subdomain="db",
        volumes=[{"name": "data", "emptyDir": {}}, {"name": "config", "configMap": {"name": "cfg"}},
                 {"name": "kube-api-access-abcde", "projected": {"sources": []}}])
    status = await node.running(pod)
    await asyncio.sleep(0.5)
    out = (await node.logs(pod, "writer")).splitlines()
    assert out[:2] == ["color=blue", "t0ken"]
    assert out[2] == f"{status['podIP']}\tdb-0.db.default.svc.cluster.local\tdb-0"
    assert out[3:5] == ["db-0", "/work/dir"]
    exec_argv = node.manager.exec_command(pod["metadata"]["uid"], "reader", ["cat", "/data/shared"])
    assert run(*exec_argv).stdout == "hello\n"
    mounts = status["containerStatuses"][1]["volumeMounts"]
    assert mounts == [{"name": "data", "mountPath": "/data"}]
    # nothing of this was created on the machine itself
    assert not os.path.exists("/etc/config") and not os.path.exists("/data/shared")


async def test_init_containers_run_first_in_order(node):
    pod = make_pod("init", [busybox("app", "cat /data/order; sleep 3600", volumeMounts=[
        {"name": "d", "mountPath": "/data"}])],
        initContainers=[busybox("first", "echo first >> /data/order", volumeMounts=[{"name": "d", "mountPath": "/data"}]),
                        busybox("second", "echo second >> /data/order", volumeMounts=[{"name": "d", "mountPath": "/data"}])],
        volumes=[{"name": "d", "emptyDir": {}}])
    status = await node.running(pod)
    assert [s["state"]["terminated"]["reason"] for s in status["initContainerStatuses"]] == ["Completed"] * 2
    await asyncio.sleep(0.3)
    assert (await node.logs(pod, "app")).split() == ["first", "second"]


async def test_failed_init_container_with_restart_never_fails_the_pod(node):
    pod = make_pod("badinit", [busybox("app", "sleep 3600")], restartPolicy="Never",
                   initContainers=[busybox("init", "exit 2")])
    status = await node.wait(pod, lambda s: s["phase"] == "Failed", what="Failed")
    initialized = {c["type"]: c for c in status["conditions"]}["Initialized"]
    assert initialized["status"] == "False" and initialized["message"] == "containers with incomplete status: [init]"
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"


async def test_tty_stdin_attach(node):
    pod = make_pod("shell", [{"name": "sh", "image": "busybox", "stdin": True, "tty": True}])
    await node.running(pod)
    handle = node.manager.attach(pod["metadata"]["uid"], "sh")
    assert handle.tty and handle.stdin
    output = handle.output()
    await handle.write_stdin(b"echo $((6*7)); hostname\n")
    seen = b""

    async def collect():
        nonlocal seen
        async for channel, data in output:
            assert channel == 1
            seen += data
            if b"42" in seen and b"shell" in seen.split(b"42", 1)[1]:
                return
    await asyncio.wait_for(collect(), 10)
    handle.close()


async def test_stdin_without_tty_is_a_pipe_to_the_container(node):
    pod = make_pod("reader", [busybox("c", "read line; echo got $line; sleep 3600", stdin=True)])
    await node.running(pod)
    handle = node.manager.attach(pod["metadata"]["uid"], "c")
    assert handle.stdin and not handle.tty
    await handle.write_stdin(b"hello\n")
    await wait_for_log(node, pod, "got hello")
    handle.close()


async def test_host_network_pod_uses_the_node_namespace(node):
    pod = make_pod("hostnet", [busybox("c", "ip -o link; cat /etc/hosts | head -1; sleep 3600")], hostNetwork=True)
    status = await node.running(pod)
    assert status["podIP"] == "172.18.0.2"
    await asyncio.sleep(0.3)
    out = await node.logs(pod)
    assert "cni0" in out and "# Kubernetes-managed hosts file (host network)." in out
    assert not any(link.startswith("veth") for link in node.links())


async def test_agnhost_pod_has_upstreams_layout(node):
    """The agnhost image as the e2e suite execs into it: /agnhost runs the bundled program,
    /bin/sh is busybox's, nc is netcat-openbsd's (nc -u), /uploads and the certificate exist;
    netexec answers over HTTP and UDP from the node."""
    image = "k8s.gcr.io/e2e-test-images/agnhost:2.21"
    script = ("/agnhost dns-suffix; ls -d /uploads; head -1 /localhost.crt; readlink /bin/sh; "
              "nc -h 2>&1 | grep -c -- -u; /agnhost-2 entrypoint-tester x; sleep 3600")
    pod = make_pod("agn", [{"name": "netexec", "image": image, "args": ["netexec", "--http-port=8080"]},
                           {"name": "shell", "image": image, "command": ["sh", "-c", script]}])
    ip = (await node.running(pod))["podIP"]
    assert node.curl(f"http://{ip}:8080/hostname") == "agn"
    assert json.loads(node.curl(f"http://{ip}:8080/dial?request=hostname&protocol=udp&host=127.0.0.1&port=8081")) \
        == {"responses": ["agn"]}
    await asyncio.sleep(0.5)
    lines = (await node.logs(pod, "shell")).splitlines()
    assert lines[:3] == ["default.svc.cluster.local,svc.cluster.local,cluster.local", "/uploads",
                         "-----BEGIN CERTIFICATE-----"]
    assert lines[3] == shutil.which("busybox") and int(lines[4]) >= 1
    assert lines[5] == "[/agnhost-2 entrypoint-tester x]"


async def test_fifty_pods_at_once(node):
    pods = [make_pod(f"p{i}", [{"name": "pause", "image": "registry.k8s.io/pause:3.9"}]) for i in range(50)]
    statuses = await asyncio.gather(*(node.running(p, timeout=60) for p in pods))
    ips = {s["podIP"] for s in statuses}
    assert len(ips) == 50
    assert len([link for link in node.links() if link.startswith("veth")]) == 50
    logs = os.path.join(node.state_dir, "pod-logs")
    assert len(os.listdir(logs)) == 50  # one file on disk per pod: its container's log
    await asyncio.gather(*(node.manager.terminate(p, 1) for p in pods))
    assert [link for link in node.links() if link.startswith("veth")] == []
    assert node.manager.runtime.sandboxes.ipam.allocations == {}
    assert holder_pids(node.state_dir) == []
    assert os.listdir(logs) == [] and os.listdir(os.path.join(node.state_dir, "pods")) == ["ipam.json"]


CRASHING_AGENT = textwrap.dedent("""
    import asyncio, json, sys
    sys.path.insert(0, {root!r})
    from pocketkube.node.pods import PodManager
    from tests.e2e.test_pods_runtime import FakeEnv

    async def main():
        m = PodManager(node_name={name!r}, node_ip="172.18.0.2", pod_cidr="10.244.1.0/24",
                       state_dir={state!r}, netns={netns!r})
        await m.start()
        pods = json.loads(sys.argv[1])
        while True:
            statuses = [await m.sync(p, FakeEnv()) for p in pods]
            if all(s["phase"] == "Running" and s["containerStatuses"][0]["ready"] for s in statuses):
                print(json.dumps(statuses), flush=True)
                await asyncio.sleep(3600)
            await asyncio.sleep(0.05)
    asyncio.run(main())
""")


async def test_agent_killed_then_restarted_adopts_its_pods(node):
    await node.manager.stop()
    keep = make_pod("keep", [{"name": "nginx", "image": "nginx"}])
    lost = make_pod("lost", [busybox("c", "sleep 3600")])
    script = CRASHING_AGENT.format(root=ROOT, name=node.name, state=node.state_dir, netns=node.netns)
    agent = subprocess.Popen([sys.executable, "-c", script, json.dumps([keep, lost])], stdout=subprocess.PIPE,
                             cwd=ROOT, start_new_session=True)
    try:
        line = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, agent.stdout.readline), 60)
        before = {s["podIP"]: s for s in json.loads(line)}
    finally:
        agent.send_signal(signal.SIGKILL)  # the agent dies; its pods do not
        agent.wait()
    keep_ip = next(ip for ip, s in before.items() if s["containerStatuses"][0]["name"] == "nginx")
    assert "Welcome to nginx!" in node.curl(f"http://{keep_ip}/")
    # while no agent runs, the sandbox of `lost` dies
    with open(os.path.join(node.state_dir, "pods", lost["metadata"]["uid"], "sandbox.json")) as f:
        os.kill(json.load(f)["holder_pid"], signal.SIGKILL)
    await asyncio.sleep(0.2)
    node.manager = node.new_manager()
    await node.manager.start()
    assert set(node.manager.running_pods()) == {keep["metadata"]["uid"], lost["metadata"]["uid"]}
    status = await node.running(keep)
    cs = status["containerStatuses"][0]
    assert status["podIP"] == keep_ip and cs["restartCount"] == 0
    assert cs["containerID"] == before[keep_ip]["containerStatuses"][0]["containerID"]
    assert "Welcome to nginx!" in node.curl(f"http://{keep_ip}/")
    cmdline = exec_in(node, keep, "nginx", "cat", "/proc/1/cmdline").stdout  # exec finds the adopted one
    assert cmdline.startswith("nginx: master process")
    # the dead sandbox was cleaned; the pod gets a new one and its container restarts
    status = await node.running(lost)
    assert status["containerStatuses"][0]["restartCount"] == 1
    assert status["containerStatuses"][0]["lastState"]["terminated"]["reason"] == "ContainerStatusUnknown"
    assert len(set(node.manager.runtime.sandboxes.ipam.allocations)) == 2


async def test_terminate_leaves_nothing_behind(node):
    pod = make_pod("tidy", [{"name": "nginx", "image": "nginx"}, busybox("side", "sleep 3600")])
    await node.running(pod)
    worker = node.manager.workers[pod["metadata"]["uid"]]
    pids = [s.process.pid for s in worker.all_slots()] + [worker.sandbox.holder_pid]
    cgroups = [s.process.record.cgroup for s in worker.all_slots() if s.process.record.cgroup]
    await node.manager.terminate(pod, 2)
    await asyncio.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{pid}/stat") and "pocketkube" in open(f"/proc/{pid}/cmdline").read()
                   for pid in pids)
    assert node.links() == ["lo", "cni0"]
    assert not os.path.exists(os.path.join(node.state_dir, "pods", pod["metadata"]["uid"]))
    assert not any(os.path.exists(c) for c in cgroups)
    assert node.manager.running_pods() == []


async def test_changed_image_restarts_the_container(node):
    pod = make_pod("swap", [{"name": "app", "image": "luksa/kubia"}])
    ip = (await node.running(pod))["podIP"]
    assert node.curl(f"http://{ip}:8080/") == "You've hit swap\n"
    pod["spec"]["containers"][0]["image"] = "luksa/kubia:v2"
    status = await node.wait(pod, lambda s: s["containerStatuses"][0]["restartCount"] == 1 and
                             s["containerStatuses"][0]["ready"], what="restart with the new image")
    assert status["containerStatuses"][0]["image"] == "docker.io/luksa/kubia:v2"
    assert node.curl(f"http://{ip}:8080/") == "This is v2 running in pod swap\n"


# ---- PID namespaces: what a container reaches --------------------------------------------
#
# Signals sent from inside a pod in these tests go through `guarded`, which refuses to run
# them in the machine's PID namespace, and only after `assert_pid_1_is` proved with a
# harmless read that PID 1 there is the pod's own process.

MACHINE_PID_NAMESPACE = os.readlink("/proc/self/ns/pid")
GUARD = 'test "$(readlink /proc/self/ns/pid)" != "$0" || exit 99; '


def exec_in(node: Node, pod: dict, container: str, *argv: str) -> subprocess.CompletedProcess:
    command = node.manager.exec_command(pod["metadata"]["uid"], container, list(argv))
    # an exec joins the container's namespaces, its PID namespace included (nsinit.py --exec)
    assert command[-2] == "--exec" and json.loads(command[-1])["container_pid"] > 0, command
    return run(*command, check=False)


def guarded(node: Node, pod: dict, container: str, script: str) -> subprocess.CompletedProcess:
    cp = exec_in(node, pod, container, "sh", "-c", GUARD + script, MACHINE_PID_NAMESPACE)
    assert cp.returncode != 99, "refused: the exec ran in the machine's PID namespace"
    return cp


def assert_pid_1_is(node: Node, pod: dict, container: str, argv: list[str]) -> None:
    cp = exec_in(node, pod, container, "cat", "/proc/1/cmdline")
    assert cp.returncode == 0 and cp.stdout.split("\0")[:-1] == argv, (cp.stdout, cp.stderr)
    own = exec_in(node, pod, container, "readlink", "/proc/self/ns/pid").stdout.strip()
    assert own.startswith("pid:[") and own != MACHINE_PID_NAMESPACE


def ps_commands(node: Node, pod: dict, container: str) -> dict[int, str]:
    """`ps` in the container (busybox): pid -> command."""
    cp = exec_in(node, pod, container, "ps")
    assert cp.returncode == 0, cp.stderr
    rows = [line.split(None, 2) for line in cp.stdout.splitlines()[1:]]
    return {int(pid): command for pid, _user, command in rows}


async def wait_for_log(node: Node, pod: dict, text: str) -> None:
    for _ in range(200):
        if text in await node.logs(pod):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} never logged")


async def test_a_container_is_pid_1_of_its_own_pid_namespace(node):
    script = "sleep 3601 & while true; do sleep 1; done"
    pod = make_pod("pid1", [busybox("c", script)])
    await node.running(pod)
    main = node.manager.container_pid(pod["metadata"]["uid"], "c")
    assert_pid_1_is(node, pod, "c", ["sh", "-c", script])
    assert host_pid(main, 1) == main  # PID 1 inside is the main process the agent started
    with open(f"/proc/{main}/stat") as f:
        assert int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid()  # as its child
    commands = ps_commands(node, pod, "c")
    assert commands[1] == f"sh -c {script}"
    assert "sleep 3601" in commands.values()
    assert set(commands.values()) <= {f"sh -c {script}", "sleep 3601", "sleep 1", "ps"}, commands
    # its own /proc, with runc's read-only paths
    cp = exec_in(node, pod, "c", "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
    assert cp.returncode != 0 and "Read-only file system" in cp.stderr
    # exec probes run there too
    probe = {"exec": {"command": ["sh", "-c", "test $$ -lt 100 && grep -q 3601 /proc/*/cmdline"]}, "periodSeconds": 1}
    ready = make_pod("probed", [busybox("c", "sleep 3601", readinessProbe=probe)])
    await node.running(ready, ready=True)


async def test_kill_1_in_a_container_restarts_it_and_spares_the_machine(node):
    script = "trap 'echo terminated; exit 143' TERM; echo started; sleep 3600 & wait"
    pod = make_pod("victim", [busybox("c", script)])
    await node.running(pod)
    await wait_for_log(node, pod, "started")  # the trap is set
    machine_init = start_ticks(1)
    assert_pid_1_is(node, pod, "c", ["sh", "-c", script])
    cp = guarded(node, pod, "c", "kill 1")
    assert cp.returncode in (0, 137, -signal.SIGKILL), cp.stderr  # it may die with the namespace's init
    status = await node.wait(pod, lambda s: s["containerStatuses"][0]["restartCount"] == 1 and
                             "running" in s["containerStatuses"][0]["state"], what="the restart")
    last = status["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 143 and last["reason"] == "Error"
    assert (await node.logs(pod, previous=True)).split() == ["started", "terminated"]
    assert "Killing" not in node.event_reasons("victim")  # the container ended itself
    assert start_ticks(1) == machine_init


async def test_killing_everything_inside_a_pod_reaches_nothing_outside_it(node):
    marker = subprocess.Popen(["sleep", "300"])  # a process of the machine, named as the pod's
    try:
        neighbour = make_pod("neighbour", [busybox("c", "sleep 3600")])
        script = "sleep 3601 & while true; do sleep 1; done"
        pod = make_pod("killer", [busybox("c", script)])
        await asyncio.gather(node.running(neighbour), node.running(pod))
        neighbour_pid = node.manager.container_pid(neighbour["metadata"]["uid"], "c")
        neighbour_ticks = start_ticks(neighbour_pid)
        machine_init = start_ticks(1)
        assert_pid_1_is(node, pod, "c", ["sh", "-c", script])
        assert guarded(node, pod, "c", "pkill sleep").returncode == 0
        assert "sleep 3601" not in ps_commands(node, pod, "c").values()
        guarded(node, pod, "c", "sleep 3602 >/dev/null 2>&1 & sleep 3603 >/dev/null 2>&1 &")
        assert {"sleep 3602", "sleep 3603"} <= set(ps_commands(node, pod, "c").values())
        guarded(node, pod, "c", "kill -9 -1")
        await asyncio.sleep(0.2)
        left = ps_commands(node, pod, "c")
        assert "sleep 3602" not in left.values() and "sleep 3603" not in left.values()
        assert left[1] == f"sh -c {script}"  # the kernel spares the namespace's init
        assert marker.poll() is None
        assert process_alive(neighbour_pid, neighbour_ticks)
        assert start_ticks(1) == machine_init
        status = await node.sync(pod)
        assert status["containerStatuses"][0]["restartCount"] == 0
    finally:
        marker.kill()
        marker.wait()


async def test_shared_process_namespace_shows_every_container_under_the_pause(node):
    pod = make_pod("shared", [busybox("a", "sleep 3601"), busybox("b", "sleep 3602")], shareProcessNamespace=True)
    await node.running(pod)
    worker = node.manager.workers[pod["metadata"]["uid"]]
    holder = worker.sandbox.holder_pid
    assert exec_in(node, pod, "b", "cat", "/proc/1/cmdline").stdout.split("\0")[0] == "pocketkube-pause"
    assert host_pid(worker.slot("a").process.pid, 1) == holder
    commands = ps_commands(node, pod, "b").values()
    assert "sleep 3601" in commands and "sleep 3602" in commands
    assert "sleep 3602" in ps_commands(node, pod, "a").values()
    # the pause reaps what is orphaned in the pod
    exec_in(node, pod, "a", "sh", "-c", "sleep 0.1 & exit 0")
    await asyncio.sleep(0.5)
    assert "Z" not in process_states(os.readlink(f"/proc/{holder}/ns/pid"))
    # `kill 1` there ends the pause: the kubelet makes a new sandbox and restarts the containers
    assert guarded(node, pod, "b", "kill 1").returncode in (0, 137, -signal.SIGKILL)
    status = await node.wait(pod, lambda s: all(c["restartCount"] == 1 and "running" in c["state"]
                                                for c in s["containerStatuses"]), what="the restarts")
    assert "SandboxChanged" in node.event_reasons("shared")
    assert node.manager.workers[pod["metadata"]["uid"]].sandbox.holder_pid != holder
    assert {c["lastState"]["terminated"]["exitCode"] for c in status["containerStatuses"]} == {137}


def process_states(namespace: str) -> list[str]:
    """The states (R, S, Z, ...) of the processes in the PID namespace `namespace`."""
    states = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                with open(f"/proc/{entry}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
        except OSError:
            continue
    return states
