"""The nftables proxy for real (root): the `Proxier` component, fed by a real API server,
programs its table into a node network namespace the test builds, and real connections go
through it.

The topology is the test's own (names `pk-ptest-<hex>-*`, nothing in the host namespace):
- node: `cni0` 10.244.1.1/24 (br_netfilter on, hairpin on its ports, as the runtime does),
  `eth0` 192.168.77.2/24 towards "outside";
- pods p1 10.244.1.2 and p2 10.244.1.3 serve HTTP on 8080 and UDP on 5353, answering with
  their name and the client address they see; pod p3 10.244.1.4 is a client;
- outside: 192.168.77.1, routing the service range and an external IP through the node (as
  the host routes through node 1).
Teardown stops the proxier, kills every process the test started and deletes the namespaces.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from pocketkube.core.client import from_kubeconfig
from pocketkube.proxy.proxier import Proxier

pytestmark = [pytest.mark.e2e]

NODE_IP, OUTSIDE_IP = "192.168.77.2", "192.168.77.1"
PODS = {"p1": "10.244.1.2", "p2": "10.244.1.3", "p3": "10.244.1.4"}
EXTERNAL_IP = "192.0.2.10"
WAIT = 15.0

SERVER = textwrap.dedent("""
    import http.server, socket, sys, threading
    name = sys.argv[1]
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            body = f"{name} {self.client_address[0]}\\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 5353))
    def serve_udp():
        while True:
            data, peer = udp.recvfrom(2048)
            udp.sendto(f"{name} {peer[0]}".encode(), peer)
    threading.Thread(target=serve_udp, daemon=True).start()
    http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
""")

UDP_CLIENT = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sys.argv[3])))
    s.settimeout(2)
    s.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(2048)[0].decode())
    except socket.timeout:
        print("timeout")
""")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    for tool in ("ip", "nft", "curl", "conntrack"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists("/proc/sys/net/bridge"):
        return "br_netfilter is not loaded"
    return None


if _skip_reason():
    pytest.skip(_skip_reason(), allow_module_level=True)


def sh(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    cp = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and cp.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {cp.stderr.strip()}")
    return cp


class Topology:
    def __init__(self) -> None:
        prefix = f"pk-ptest-{secrets.token_hex(3)}"
        self.node, self.outside = f"{prefix}-node", f"{prefix}-out"
        self.pods = {name: f"{prefix}-{name}" for name in PODS}
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen] = []
        self.script_dir = ""

    def create(self, script_dir: str) -> None:
        self.script_dir = script_dir
        for ns in (self.node, self.outside, *self.pods.values()):
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        node = ["ip", "-n", self.node]
        sh(*node, "link", "add", "cni0", "type", "bridge")
        sh(*node, "addr", "add", "10.244.1.1/24", "dev", "cni0")
        sh(*node, "link", "set", "cni0", "up")
        sh(*node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", self.outside)
        sh(*node, "addr", "add", f"{NODE_IP}/24", "dev", "eth0")
        sh(*node, "link", "set", "eth0", "up")
        out = ["ip", "-n", self.outside]
        sh(*out, "addr", "add", f"{OUTSIDE_IP}/24", "dev", "eth0")
        sh(*out, "link", "set", "eth0", "up")
        sh(*out, "route", "add", "10.96.0.0/12", "via", NODE_IP)
        sh(*out, "route", "add", f"{EXTERNAL_IP}/32", "via", NODE_IP)
        for sysctl in ("net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"):
            sh("ip", "netns", "exec", self.node, "sysctl", "-qw", sysctl)
        for name, ns in self.pods.items():
            veth = f"v{name}"
            sh(*node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh(*node, "link", "set", veth, "master", "cni0")
            sh(*node, "link", "set", veth, "type", "bridge_slave", "hairpin", "on")
            sh(*node, "link", "set", veth, "up")
            sh("ip", "-n", ns, "addr", "add", f"{PODS[name]}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", "10.244.1.1")
        server = os.path.join(script_dir, "server.py")
        with open(server, "w") as f:
            f.write(SERVER)
        with open(os.path.join(script_dir, "udp_client.py"), "w") as f:
            f.write(UDP_CLIENT)
        for name in ("p1", "p2"):
            self.processes.append(subprocess.Popen(["ip", "netns", "exec", self.pods[name], sys.executable,
                                                    server, name], stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL))
        for name in ("p1", "p2"):
            self.wait_listening(name)

    def wait_listening(self, name: str) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.curl(self.pods["p3"], f"{PODS[name]}:8080")[0] == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"pod {name}'s server did not start")

    def destroy(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)
        left = set(sh("ip", "netns", "list").stdout.split()) & set(self.namespaces)
        assert not left, f"namespaces left behind: {left}"

    def curl(self, netns: str, target: str, timeout: float = 3) -> tuple[int, str]:
        """(curl's exit status, body): 0 ok, 7 refused, 28 timed out."""
        cp = sh("ip", "netns", "exec", netns, "curl", "-s", "-m", str(timeout), f"http://{target}/", check=False,
                timeout=timeout + 10)
        return cp.returncode, cp.stdout.strip()

    def udp(self, netns: str, ip: str, port: int, source_port: int) -> str:
        return sh("ip", "netns", "exec", netns, sys.executable, os.path.join(self.script_dir, "udp_client.py"),
                  ip, str(port), str(source_port)).stdout.strip()


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    topo = Topology()
    try:
        topo.create(str(tmp_path_factory.mktemp("proxy-topology")))
        yield topo
    finally:
        topo.destroy()


@pytest.fixture
async def cluster(server, topology):
    """A namespace on the API server, and a Proxier for the test node watching it."""
    client = from_kubeconfig(server.kubeconfig, field_manager="e2e")
    namespace = "p-" + uuid.uuid4().hex[:8]
    await client.create("v1", "namespaces", {"metadata": {"name": namespace}})
    proxier = Proxier(client, node_name="node-1", cluster_name="ptest", netns=topology.node, node_ip=NODE_IP)
    await proxier.start()
    await asyncio.wait_for(proxier.ready.wait(), WAIT)
    api = Api(client, namespace, proxier)
    try:
        yield api
    finally:
        await api.proxier.stop()
        await client.delete("v1", "namespaces", namespace)
        await client.close()


class Api:
    def __init__(self, client, namespace: str, proxier: Proxier):
        self.client, self.namespace, self.proxier = client, namespace, proxier

    async def service(self, name: str, cluster_ip: str, **spec) -> dict:
        ports = spec.pop("ports", [{"name": "http", "port": 80, "targetPort": 8080}])
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"clusterIP": cluster_ip, "ports": ports, **spec}}
        return await self.client.create("v1", "services", body, self.namespace)

    async def endpoints(self, service: str, pods: list[str], node: str = "node-1",
                        ports=(("http", 8080, "TCP"),)) -> None:
        body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{service}-manual",
                             "labels": {"kubernetes.io/service-name": service,
                                        "endpointslice.kubernetes.io/managed-by": "e2e"}},
                "addressType": "IPv4",
                "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
                "endpoints": [{"addresses": [PODS[p]], "conditions": {"ready": True}, "nodeName": node}
                              for p in pods]}
        try:
            current = await self.client.get("discovery.k8s.io/v1", "endpointslices", f"{service}-manual",
                                            self.namespace)
        except Exception:
            await self.client.create("discovery.k8s.io/v1", "endpointslices", body, self.namespace)
            return
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await self.client.update("discovery.k8s.io/v1", "endpointslices", body, self.namespace)


async def until(check, what: str):
    """Poll `check()` (sync, returns truthy when done) until WAIT seconds have passed."""
    deadline = time.monotonic() + WAIT
    last = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: still {last!r} after {WAIT}s")


def names_seen(topology: Topology, netns: str, target: str, tries: int = 30) -> dict[str, set[str]]:
    """pod name -> client addresses it saw, over `tries` new connections."""
    seen: dict[str, set[str]] = {}
    for _ in range(tries):
        code, body = topology.curl(netns, target)
        assert code == 0, f"curl {target} from {netns}: exit {code}"
        pod, client = body.split()
        seen.setdefault(pod, set()).add(client)
    return seen


async def test_cluster_ip_from_pods_node_and_outside(cluster, topology):
    await cluster.service("web", "10.96.100.20")
    await cluster.endpoints("web", ["p1", "p2"])
    await until(lambda: topology.curl(topology.pods["p3"], "10.96.100.20:80")[0] == 0, "ClusterIP reachable")
    from_pod = await asyncio.to_thread(names_seen, topology, topology.pods["p3"], "10.96.100.20:80")
    assert set(from_pod) == {"p1", "p2"}  # spread over both (30 tries: 2^-29 to miss one)
    assert set().union(*from_pod.values()) == {PODS["p3"]}  # pod to pod: the source is kept
    from_node = await asyncio.to_thread(names_seen, topology, topology.node, "10.96.100.20:80", 6)
    assert set().union(*from_node.values()) == {"10.244.1.1"}  # masqueraded
    from_outside = await asyncio.to_thread(names_seen, topology, topology.outside, "10.96.100.20:80", 6)
    assert set().union(*from_outside.values()) == {"10.244.1.1"}


async def test_nodeport_cluster_masquerades_and_local_keeps_the_client(cluster, topology):
    await cluster.service("np-cluster", "10.96.100.30", type="NodePort",
                          ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30180}])
    await cluster.endpoints("np-cluster", ["p1", "p2"])
    await cluster.service("np-local", "10.96.100.31", type="NodePort", externalTrafficPolicy="Local",
                          ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30181}])
    await cluster.endpoints("np-local", ["p1"])
    await cluster.service("np-elsewhere", "10.96.100.32", type="NodePort", externalTrafficPolicy="Local",
                          ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30182}])
    await cluster.endpoints("np-elsewhere", ["p2"], node="node-2")
    await until(lambda: topology.curl(topology.outside, f"{NODE_IP}:30181")[0] == 0, "NodePort reachable")
    cluster_seen = await asyncio.to_thread(names_seen, topology, topology.outside, f"{NODE_IP}:30180", 6)
    assert set().union(*cluster_seen.values()) == {"10.244.1.1"}
    local_seen = await asyncio.to_thread(names_seen, topology, topology.outside, f"{NODE_IP}:30181", 6)
    assert local_seen == {"p1": {OUTSIDE_IP}}  # only the local pod, client address preserved
    code, _ = await asyncio.to_thread(topology.curl, topology.outside, f"{NODE_IP}:30182", 1)
    assert code == 28  # Local without a local endpoint: dropped, not refused
    code, body = await asyncio.to_thread(topology.curl, topology.pods["p3"], f"{NODE_IP}:30182")
    assert code == 0 and body.startswith("p2")  # pods are not external clients


async def test_no_endpoints_is_refused_at_once(cluster, topology):
    await cluster.service("empty", "10.96.100.40", type="NodePort",
                          ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30190}])
    await cluster.service("canary", "10.96.100.41")
    await cluster.endpoints("canary", ["p1"])
    await until(lambda: topology.curl(topology.pods["p3"], "10.96.100.41:80")[0] == 0, "canary reachable")
    for netns, target in ((topology.pods["p3"], "10.96.100.40:80"), (topology.node, "10.96.100.40:80"),
                          (topology.outside, "10.96.100.40:80"), (topology.outside, f"{NODE_IP}:30190"),
                          (topology.pods["p3"], "10.96.100.41:81")):
        code, _ = await asyncio.to_thread(topology.curl, netns, target)
        assert code == 7, f"{target} from {netns}: curl exit {code}, want 7 (connection refused)"


async def test_hairpin_and_external_ip(cluster, topology):
    await cluster.service("self", "10.96.100.50", externalIPs=[EXTERNAL_IP])
    await cluster.endpoints("self", ["p1"])
    await until(lambda: topology.curl(topology.pods["p1"], "10.96.100.50:80")[0] == 0, "hairpin works")
    code, body = await asyncio.to_thread(topology.curl, topology.pods["p1"], "10.96.100.50:80")
    assert (code, body) == (0, "p1 10.244.1.1")  # reaching itself: masqueraded to the bridge address
    code, body = await asyncio.to_thread(topology.curl, topology.outside, f"{EXTERNAL_IP}:80")
    assert (code, body) == (0, "p1 10.244.1.1")


async def test_session_affinity_holds_then_expires(cluster, topology):
    await cluster.service("sticky", "10.96.100.60", sessionAffinity="ClientIP",
                          sessionAffinityConfig={"clientIP": {"timeoutSeconds": 1}})
    await cluster.endpoints("sticky", ["p1", "p2"])
    await until(lambda: topology.curl(topology.pods["p3"], "10.96.100.60:80")[0] == 0, "sticky reachable")
    seen = await asyncio.to_thread(names_seen, topology, topology.pods["p3"], "10.96.100.60:80", 20)
    assert len(seen) == 1
    first = next(iter(seen))

    def moved() -> bool:
        time.sleep(1.5)  # let the client's entry expire
        return topology.curl(topology.pods["p3"], "10.96.100.60:80")[1].split()[0] != first
    await until(moved, "a new endpoint after the affinity timeout")


async def test_scale_down_stops_new_connections_and_flushes_udp(cluster, topology):
    ports = [{"name": "http", "port": 80, "targetPort": 8080},
             {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}]
    await cluster.service("both", "10.96.100.70", ports=ports)
    slice_ports = (("http", 8080, "TCP"), ("dns", 5353, "UDP"))
    await cluster.endpoints("both", ["p1"], ports=slice_ports)
    p3 = topology.pods["p3"]
    await until(lambda: topology.udp(p3, "10.96.100.70", 53, 40000).startswith("p1"), "UDP to p1")
    await cluster.endpoints("both", ["p2"], ports=slice_ports)
    # same source port: without the conntrack flush the old entry would keep it on p1
    await until(lambda: topology.udp(p3, "10.96.100.70", 53, 40000).startswith("p2"), "UDP moved to p2")
    seen = await asyncio.to_thread(names_seen, topology, p3, "10.96.100.70:80", 10)
    assert set(seen) == {"p2"}


async def test_restart_keeps_established_connections_and_adopts_the_table(cluster, topology):
    await cluster.service("long", "10.96.100.80")
    await cluster.endpoints("long", ["p1"])
    p3 = topology.pods["p3"]
    await until(lambda: topology.curl(p3, "10.96.100.80:80")[0] == 0, "reachable")
    # one curl, two requests on one connection, the proxy restarting between them
    script = textwrap.dedent("""
        import socket, sys
        s = socket.create_connection(("10.96.100.80", 80), timeout=5)
        def ask():
            s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
            data = b""
            while b"\\r\\n\\r\\n" not in data:
                data += s.recv(4096)
            head, body = data.split(b"\\r\\n\\r\\n", 1)
            length = int(head.lower().split(b"content-length:")[1].split(b"\\r\\n")[0])
            while len(body) < length:
                body += s.recv(4096)
            return body.decode().strip()
        print(ask(), flush=True)
        sys.stdin.readline()
        print(ask(), flush=True)
    """)
    proc = subprocess.Popen(["ip", "netns", "exec", p3, sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    topology.processes.append(proc)
    assert (await asyncio.to_thread(proc.stdout.readline)).startswith("p1")
    await cluster.proxier.stop()
    assert topology.curl(p3, "10.96.100.80:80")[0] == 0  # the rules outlive the proxy
    restarted = Proxier(cluster.client, node_name="node-1", cluster_name="ptest", netns=topology.node,
                        node_ip=NODE_IP)
    await restarted.start()
    cluster.proxier = restarted
    try:
        await asyncio.wait_for(restarted.ready.wait(), WAIT)
        assert restarted.last_sync.full
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert (await asyncio.to_thread(proc.stdout.readline)).startswith("p1")
        assert topology.curl(p3, "10.96.100.80:80")[0] == 0
    finally:
        await restarted.stop()


async def test_refused_sync_keeps_the_last_good_rules_and_retries_in_full(cluster, topology):
    from pocketkube.proxy.nftables import NftError

    await cluster.service("kept", "10.96.100.90")
    await cluster.endpoints("kept", ["p1"])
    p3 = topology.pods["p3"]
    await until(lambda: topology.curl(p3, "10.96.100.90:80")[0] == 0, "reachable")
    runner = cluster.proxier.runner
    real_apply, refused = runner.apply, []

    async def refuse_once(script: str) -> None:
        if not refused:
            refused.append(script)
            raise NftError("/dev/stdin:1:1-3: Error: injected by the test")
        await real_apply(script)

    runner.apply = refuse_once
    await cluster.service("later", "10.96.100.91")
    await cluster.endpoints("later", ["p2"])
    await until(lambda: refused, "a refused sync")
    assert topology.curl(p3, "10.96.100.90:80")[0] == 0  # the last good rules still serve
    await until(lambda: topology.curl(p3, "10.96.100.91:80")[1].startswith("p2"), "the retry programs it")
    assert cluster.proxier.last_sync.full
