"""`pocketkube up | down | status` on a real machine (root): the network layout, the safety
routes, the kubeconfig context, a second `up`, `up` after a crash, `down` twice, and that
`down` leaves nothing (namespaces, links, routes, nftables tables, processes, cgroups).
And the cluster under stress: an agent killed with SIGKILL is started again and adopts its
pods, the API server restarted under the agents, `down` while 20 pods are starting."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from pocketkube.cli import up as up_cmd
from pocketkube.core import cluster as names
from pocketkube.node import network
from pocketkube.node.sandbox import veth_name

pytestmark = pytest.mark.e2e


def ip_json(*args: str, netns: str | None = None) -> list[dict]:
    argv = ["ip", *(["-n", netns] if netns else []), "-j", *args]
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout or "[]")


def addresses(netns: str | None, dev: str) -> list[str]:
    return [f"{a['local']}/{a['prefixlen']}" for link in ip_json("addr", "show", "dev", dev, netns=netns)
            for a in link["addr_info"] if a["family"] == "inet"]


def route_get(dst: str, netns: str | None = None) -> subprocess.CompletedProcess:
    """What the kernel would do with a packet to `dst` (nothing is sent)."""
    return subprocess.run(["ip", *(["-n", netns] if netns else []), "route", "get", dst],
                          capture_output=True, text=True)


def start_in_netns(netns: str) -> subprocess.Popen:
    """A stray process in a namespace, as a pod's would be (its own session)."""
    return subprocess.Popen(["sleep", "600"], preexec_fn=network.enter_netns(netns), start_new_session=True)


def start_unnamed_pod(node_netns: str) -> subprocess.Popen:
    """A pod as the sandbox makes one: an unnamed namespace held by a process, with `eth0` a
    veth whose peer is on the node's cni0."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "600"], start_new_session=True)
    deadline = time.monotonic() + 5
    while os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
        assert time.monotonic() < deadline, "unshare did not make a namespace"
        time.sleep(0.01)
    peer = "vethe2e" + str(holder.pid % 100000)
    subprocess.run(["ip", "-n", node_netns, "-batch", "-"], check=True, text=True, input=(
        f"link add {peer} type veth peer name eth0 netns {holder.pid}\n"
        f"link set {peer} master cni0 up\n"))
    return holder


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition, what: str, timeout: float = 60.0, interval: float = 0.1):
    """Poll `condition()` until it returns something true (returned); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(interval)


def cgroups_of(cluster) -> list[str]:
    """The cgroups named after one of the cluster's nodes (pocketkube-<node>, the agents'
    containers are below them), anywhere under /sys/fs/cgroup."""
    found = []
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d.startswith("pocketkube-") and cluster.name in d:
                found.append(os.path.join(top, d))
    return found


def what_remains(cluster) -> list[str]:
    """Everything of the cluster still on the machine, checked independently of `down`'s code."""
    name = cluster.name
    found = [f"netns {n}" for n in os.listdir(network.NETNS_DIR) if n.startswith(f"pk-{name}-")] \
        if os.path.isdir(network.NETNS_DIR) else []
    found += [f"link {link['ifname']}" for link in ip_json("link", "show")
              if link.get("ifalias") == f"pocketkube cluster {name}" or name in link["ifname"]
              or link["ifname"] in {cluster.net.bridge} | {n.host_veth for n in cluster.net.node_list()}]
    # Other clusters may run, and one may have taken these ranges once this one was down.
    ours = (cluster.net.node_subnet, cluster.net.pod_cidr, cluster.net.service_cidr)
    theirs = [n for c in up_cmd.known_clusters() if c != name and (r := up_cmd.ClusterRecord.load(c))
              for _, n in r.ranges.networks()]

    def overlaps(dst: str, nets) -> bool:
        return any(ipaddress.ip_network(dst, strict=False).overlaps(n) for n in nets)

    found += [f"route {r['dst']}" for r in ip_json("route", "show", "table", "main")
              if (str(r.get("protocol")) == str(network.ROUTE_PROTOCOL) and overlaps(r["dst"], ours)
                  and not overlaps(r["dst"], theirs))
              or r.get("dev") == cluster.net.bridge]
    found += [f"nft table {t}" for _, t in network.nft_tables() if name in t]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cluster.data_dir in cmdline:
                found.append(f"process {entry}: {cmdline}")
    if os.path.exists(up_cmd.ClusterRecord.path(name)):
        found.append(up_cmd.ClusterRecord.path(name))
    found += [f"cgroup {path}" for path in cgroups_of(cluster)]
    return found


def test_nodes_have_their_namespace_addresses_and_routes_and_no_default_route(cluster):
    net = cluster.net
    for node in net.node_list():
        assert os.path.exists(node.netns_path)
        assert addresses(node.netns, "eth0") == [f"{node.ip}/24"]
        assert addresses(node.netns, "cni0") == [f"{node.pod_gateway}/24"]
        routes = ip_json("route", "show", netns=node.netns)
        # the service range is the proxy's (kube-proxy adds it on cni0 once it runs), not `up`'s
        service = [r for r in routes if r["dst"] == str(net.service_cidr)]
        assert all(r["dev"] == "cni0" and "gateway" not in r for r in service)
        expected = {(str(net.node_subnet), None), (node.pod_cidr, None)}
        expected |= {(other.pod_cidr, other.ip) for other in net.node_list() if other.index != node.index}
        assert {(r["dst"], r.get("gateway")) for r in routes if r not in service} == expected
        assert "Network is unreachable" in route_get("8.8.8.8", node.netns).stderr
        forward = subprocess.run(["sysctl", "-n", "net.ipv4.ip_forward"], capture_output=True, text=True,
                                 preexec_fn=network.enter_netns(node.netns)).stdout.strip()
        assert forward == "1"


def test_host_has_bridge_pod_routes_and_unreachable_routes(cluster):
    net = cluster.net
    assert ip_json("link", "show", "dev", net.bridge)[0]["ifalias"] == f"pocketkube cluster {cluster.name}"
    assert addresses(None, net.bridge) == [f"{net.host_ip}/24"]
    routes = ip_json("route", "show", "table", "main")
    for node in net.node_list():
        assert {"dst": node.pod_cidr, "gateway": node.ip, "dev": net.bridge}.items() <= \
            next(r for r in routes if r["dst"] == node.pod_cidr).items()
        veth = ip_json("link", "show", "dev", node.host_veth)[0]
        assert veth["master"] == net.bridge and veth["ifalias"] == f"pocketkube cluster {cluster.name}"
    unreachable = {r["dst"]: r for r in routes if r.get("type") == "unreachable"}
    pods, services = str(net.pod_cidr), str(net.service_cidr)
    assert set(unreachable) >= {pods, services}
    assert all(unreachable[d]["metric"] == network.UNREACHABLE_METRIC for d in (pods, services))
    # a cluster address no node holds is refused on the spot, never sent to the default route
    assert "No route to host" in route_get(str(net.pod_cidr.network_address + 200 * 256 + 7)).stderr
    assert f"via {net.node(1).ip}" in route_get(str(net.pod_cidr.network_address + 256 + 9)).stdout
    # Service addresses go to node 1, whose proxy delivers them (the host is a client too)
    for dst in (str(net.service_cidr.network_address + 1), str(net.service_cidr.broadcast_address - 1)):
        assert f"via {net.node(1).ip}" in route_get(dst).stdout


def test_nodes_reach_the_api_server_on_the_bridge(cluster):
    probe = ("import socket; s = socket.create_connection(('%s', %d), timeout=3); "
             "print(s.getsockname()[0])" % (cluster.net.host_ip, cluster.port))
    for node in cluster.net.node_list():
        cp = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=10,
                            preexec_fn=network.enter_netns(node.netns))
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout.strip() == node.ip


def test_kubeconfig_context_is_merged_and_current(cluster):
    assert cluster.kubectl("config", "current-context").stdout.strip() == cluster.context
    info = cluster.kubectl("cluster-info", "--context", cluster.context).stdout
    assert f"https://127.0.0.1:{cluster.port}" in info
    names = cluster.kubectl("get", "nodes", "-o", "name").stdout.split()
    assert names == [f"node/{n.name}" for n in cluster.net.node_list()]


def test_status_says_what_runs(cluster):
    cp = cluster.pocketkube("status", "--name", cluster.name)
    assert cp.returncode == 0, cp.stderr
    pids = cluster.pids()
    assert f"API server: pid {pids['server']}, https://127.0.0.1:{cluster.port}" in cp.stdout
    for node in cluster.net.node_list():
        assert f"node {node.name}: {node.ip}" in cp.stdout
        assert f"agent pid {pids['agent-' + node.name]}, Ready" in cp.stdout
    assert "pods: " in cp.stdout


def test_status_of_a_cluster_that_does_not_run(cluster):
    cp = cluster.pocketkube("status", "--name", "no-such-cluster")
    assert cp.returncode == 1
    assert "cluster 'no-such-cluster' is not running" in cp.stdout


def test_nodes_are_ready_with_the_real_agent(cluster):
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == [n.name for n in cluster.net.node_list()]
    assert all(up_cmd.node_ready(n) for n in nodes)
    external = cluster.kubectl("get", "nodes", "-o",
                               'jsonpath={.items[*].status.addresses[?(@.type=="ExternalIP")].address}').stdout
    assert external.split() == [n.ip for n in cluster.net.node_list()]


def test_a_second_up_is_refused_and_changes_nothing(cluster):
    before = cluster.pids()
    cp = cluster.up()
    assert cp.returncode == 1
    assert f"cluster '{cluster.name}' is already running; `pocketkube down --name {cluster.name}` first" in cp.stderr
    assert cluster.pids() == before
    cluster.kubectl("get", "nodes")


def test_up_of_another_cluster_on_this_ones_pod_range_is_refused_and_says_what_to_pass(cluster):
    other = cluster.name + "-b"
    pods = str(cluster.net.pod_cidr)
    cp = cluster.pocketkube("up", "--name", other, "--data-dir", cluster.data_dir + "-b", "--pod-cidr", pods)
    assert cp.returncode == 1
    assert f"--pod-cidr {pods} overlaps cluster '{cluster.name}' (pods {pods}); pass a free range such as" \
        in cp.stderr
    assert not os.path.exists(cluster.data_dir + "-b")
    assert not os.path.exists(up_cmd.ClusterRecord.path(other))


def supervisor_pid(cluster) -> int | None:
    record = up_cmd.ClusterRecord.load(cluster.name)
    return up_cmd.supervisor_pid(record) if record else None


def test_up_after_a_crash_cleans_the_leftovers_and_starts(cluster):
    crashed = cluster.pids()
    keeper = supervisor_pid(cluster)
    assert keeper is not None
    stray = start_in_netns(cluster.net.node(1).netns)
    try:
        for pid in [keeper, *crashed.values()]:  # the supervisor first: nothing is started again
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in crashed.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        status = cluster.pocketkube("status", "--name", cluster.name)
        assert status.returncode == 1 and "left things behind" in status.stdout
        cp = cluster.up()
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert f"Cleaning up what a previous run of cluster '{cluster.name}' left behind" in cp.stdout
        assert stray.wait(10) is not None  # the process in the old node namespace was stopped
        now = cluster.pids()
        assert set(now) == set(crashed) and not set(now.values()) & set(crashed.values())
        names = cluster.kubectl("get", "nodes", "-o", "name").stdout.split()
        assert names == [f"node/{n.name}" for n in cluster.net.node_list()]
    finally:
        stop(stray)
        cluster.ensure_up()


def test_down_removes_everything_and_a_second_down_has_nothing_to_do(cluster):
    pod_netns = names.pod_netns_name(cluster.net.node(1).netns, "deadbeef-0000")
    table = f"pk-{cluster.name}-e2e"
    strays = []
    try:
        subprocess.run(["ip", "netns", "add", pod_netns], check=True)
        subprocess.run(["nft", "add", "table", "inet", table], check=True)
        strays = [start_in_netns(pod_netns), start_in_netns(cluster.net.node(2).netns),
                  start_unnamed_pod(cluster.net.node(1).netns)]
        pids = cluster.pids()
        keeper = supervisor_pid(cluster)
        cp = cluster.down()
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert f"Deleted cluster '{cluster.name}'" in cp.stdout
        assert what_remains(cluster) == []
        assert not any(alive(p) for p in [keeper, *pids.values()])
        assert all(s.wait(10) is not None for s in strays)
        assert not os.path.exists(cluster.data_dir)
        contexts = cluster.kubectl("config", "get-contexts", "-o", "name").stdout.split()
        assert cluster.context not in contexts
        again = cluster.down()
        assert again.returncode == 0
        assert f"cluster '{cluster.name}' is not running; nothing to do" in again.stdout
    finally:
        for stray in strays:
            stop(stray)
        if os.path.exists(os.path.join(network.NETNS_DIR, pod_netns)):
            subprocess.run(["ip", "netns", "del", pod_netns])
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
        cluster.ensure_up()


def test_an_agent_that_dies_fails_up_with_its_log_and_leaves_nothing(cluster):
    try:
        assert cluster.down().returncode == 0
        failing = (sys.executable, "-c", "import sys; print('agent: cannot start', flush=True); sys.exit(3)")
        cp = cluster.up(agent_command=failing)
        assert cp.returncode == 1
        assert "exited while the cluster was starting" in cp.stderr
        assert "agent: cannot start" in cp.stderr  # the end of its log
        assert "✗" in cp.stdout
        assert what_remains(cluster) == []
    finally:
        cluster.ensure_up()


# ---- the cluster under stress -------------------------------------------------------------------


def pod_manifest(name: str, image: str, node: str | None = None, command: list[str] | None = None) -> dict:
    spec: dict = {"containers": [{"name": "main", "image": image, **({"command": command} if command else {})}],
                  "terminationGracePeriodSeconds": 1}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"e2e": "robustness"}},
            "spec": spec}


def apply(cluster, *objects: dict) -> None:
    cluster.kubectl("apply", "-f", "-", input="\n".join(json.dumps(o) for o in objects))


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:  # a pod address of our own cluster
        return resp.read().decode()


def node_links(netns: str) -> set[str]:
    return {link["ifname"] for link in ip_json("link", "show", netns=netns)}


def test_an_agent_killed_with_sigkill_is_started_again_and_adopts_its_pods(cluster):
    node = cluster.net.node(1)
    agent = f"agent-{node.name}"
    try:
        apply(cluster, pod_manifest("adopted-web", "nginx", node.name))
        cluster.kubectl("wait", "--for=condition=Ready", "pod/adopted-web", "--timeout=60s")
        before = cluster.kubectl_json("get", "pod", "adopted-web")
        ip, uid = before["status"]["podIP"], before["metadata"]["uid"]
        assert "Welcome to nginx" in http_get(f"http://{ip}/")
        old = cluster.pids()[agent]

        os.kill(old, signal.SIGKILL)
        new = wait_until(lambda: (p := cluster.pids().get(agent)) and p != old and p, "a new agent")
        status = cluster.pocketkube("status", "--name", cluster.name)
        assert f"agent pid {new}, " in status.stdout and "restarts 1 (last: killed by SIGKILL)" in status.stdout

        # the new agent adopted the pod: same sandbox, same container, not restarted
        cluster.kubectl("wait", "--for=condition=Ready", f"node/{node.name}", "--timeout=60s")
        cluster.kubectl("wait", "--for=condition=Ready", "pod/adopted-web", "--timeout=60s")
        after = cluster.kubectl_json("get", "pod", "adopted-web")
        assert after["metadata"]["uid"] == uid and after["status"]["podIP"] == ip
        assert after["status"]["containerStatuses"][0]["containerID"] == \
            before["status"]["containerStatuses"][0]["containerID"]
        assert after["status"]["containerStatuses"][0]["restartCount"] == 0
        assert "Welcome to nginx" in http_get(f"http://{ip}/")
        assert cluster.kubectl("exec", "adopted-web", "--", "hostname").stdout.strip() == "adopted-web"
        # and it still runs the node: a new pod starts, the adopted one is removed for good
        apply(cluster, pod_manifest("after-restart", "busybox", node.name, ["sleep", "3600"]))
        cluster.kubectl("wait", "--for=condition=Ready", "pod/after-restart", "--timeout=60s")
        cluster.kubectl("delete", "pod", "adopted-web", "--wait=true", "--timeout=60s")
        assert veth_name(uid) not in node_links(node.netns)
        pods_dir = os.path.join(cluster.data_dir, "nodes", node.name, "pods")
        assert uid not in os.listdir(pods_dir)
        assert not any(os.path.exists(os.path.join(c, uid)) for c in cgroups_of(cluster))
    finally:
        cluster.kubectl("delete", "pod", "-l", "e2e=robustness", "--wait=true", "--timeout=60s", check=False)
        cluster.ensure_up()


def test_the_agents_carry_on_when_the_api_server_is_restarted_under_them(cluster):
    try:
        apply(cluster, pod_manifest("before-server-restart", "busybox", command=["sleep", "3600"]))
        cluster.kubectl("wait", "--for=condition=Ready", "pod/before-server-restart", "--timeout=60s")
        old = cluster.pids()["server"]

        os.kill(old, signal.SIGKILL)
        wait_until(lambda: (p := cluster.pids().get("server")) and p != old, "a new API server")
        wait_until(lambda: cluster.kubectl("get", "nodes", check=False).returncode == 0, "the API to answer")
        # the agents reconnected: new pods run on every node, the old one is still Running
        apply(cluster, *(pod_manifest(f"after-server-restart-{n.index}", "busybox", n.name, ["sleep", "3600"])
                         for n in cluster.net.node_list()))
        for n in cluster.net.node_list():
            cluster.kubectl("wait", "--for=condition=Ready", f"pod/after-server-restart-{n.index}", "--timeout=60s")
        cluster.kubectl("wait", "--for=condition=Ready", "pod/before-server-restart", "--timeout=60s")
        nodes = cluster.kubectl_json("get", "nodes")["items"]
        assert all(up_cmd.node_ready(n) for n in nodes)
        status = cluster.pocketkube("status", "--name", cluster.name)
        assert "restarts 1 (last: killed by SIGKILL)" in status.stdout
    finally:
        cluster.kubectl("delete", "pod", "-l", "e2e=robustness", "--wait=true", "--timeout=60s", check=False)
        cluster.ensure_up()


def test_down_while_20_pods_are_starting_leaves_the_machine_clean(cluster):
    try:
        apply(cluster, *(pod_manifest(f"starting-{i}", "busybox", command=["sleep", "3600"]) for i in range(20)))
        keeper, pids = supervisor_pid(cluster), cluster.pids()
        cp = cluster.down()
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert what_remains(cluster) == []
        assert not any(alive(p) for p in [keeper, *pids.values()])
        assert not os.path.exists(cluster.data_dir)
    finally:
        cluster.ensure_up()
