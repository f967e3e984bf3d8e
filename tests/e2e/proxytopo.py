"""The test node topology the proxy e2e tests share (test_proxy_nftables.py,
test_proxy_userspace.py): the same scenarios run through either mode.

The topology is the test's own (names `pk-ptest-<hex>-*`, nothing in the host namespace):
- node: `cni0` 10.244.1.1/24 (br_netfilter on, hairpin on its ports, as the runtime does),
  `eth0` 192.168.77.2/24 towards "outside";
- pods p1 10.244.1.2 and p2 10.244.1.3 serve HTTP on 8080 and UDP on 5353, answering with
  their name and the client address they see; pod p3 10.244.1.4 is a client;
- outside: 192.168.77.1, routing the service range and an external IP through the node (as
  the host routes through node 1).
Teardown kills every process the test started and deletes the namespaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
import uuid

from pocketkube.core.client import from_kubeconfig
from pocketkube.proxy.proxier import Proxier

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


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    for tool in ("ip", "nft", "curl", "conntrack"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists("/proc/sys/net/bridge"):
        return "br_netfilter is not loaded"
    return None


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


@contextlib.contextmanager
def built_topology(script_dir: str):
    """A Topology for the duration of a `with` (a module fixture's body)."""
    topo = Topology()
    try:
        topo.create(script_dir)
        yield topo
    finally:
        topo.destroy()


@contextlib.asynccontextmanager
async def proxied_namespace(server, topology: Topology, mode: str):
    """A namespace on the API server, and a Proxier in `mode` for the test node watching it."""
    client = from_kubeconfig(server.kubeconfig, field_manager="e2e")
    namespace = "p-" + uuid.uuid4().hex[:8]
    await client.create("v1", "namespaces", {"metadata": {"name": namespace}})
    proxier = new_proxier(client, topology, mode)
    await proxier.start()
    await asyncio.wait_for(proxier.ready.wait(), WAIT)
    api = Api(client, namespace, proxier)
    try:
        yield api
    finally:
        await api.proxier.stop()
        await client.delete("v1", "namespaces", namespace)
        await client.close()


def new_proxier(client, topology: Topology, mode: str) -> Proxier:
    return Proxier(client, node_name="node-1", cluster_name="ptest", mode=mode, netns=topology.node, node_ip=NODE_IP)


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




# ---- scenarios both proxy modes must pass ---------------------------------------------------

BRIDGE_IP = "10.244.1.1"  # cni0's address: the source a pod sees when reached through itself


async def check_hairpin_and_external_ip(cluster, topology: Topology) -> None:
    """A pod reaches itself through its own Service (masqueraded to the bridge address), and
    the Service's externalIP answers from outside."""
    await cluster.service("self", "10.96.100.50", externalIPs=[EXTERNAL_IP])
    await cluster.endpoints("self", ["p1"])
    await until(lambda: topology.curl(topology.pods["p1"], "10.96.100.50:80")[0] == 0, "hairpin works")
    code, body = await asyncio.to_thread(topology.curl, topology.pods["p1"], "10.96.100.50:80")
    assert (code, body) == (0, f"p1 {BRIDGE_IP}")
    code, body = await asyncio.to_thread(topology.curl, topology.outside, f"{EXTERNAL_IP}:80")
    assert (code, body) == (0, f"p1 {BRIDGE_IP}")


async def check_affinity_holds_then_expires(cluster, topology: Topology, tries: int) -> None:
    """ClientIP affinity with a 1 s timeout: `tries` connections reach one pod, then the
    client may move once its entry has expired."""
    await cluster.service("sticky", "10.96.100.60", sessionAffinity="ClientIP",
                          sessionAffinityConfig={"clientIP": {"timeoutSeconds": 1}})
    await cluster.endpoints("sticky", ["p1", "p2"])
    p3 = topology.pods["p3"]
    await until(lambda: topology.curl(p3, "10.96.100.60:80")[0] == 0, "sticky reachable")
    seen = await asyncio.to_thread(names_seen, topology, p3, "10.96.100.60:80", tries)
    assert len(seen) == 1
    first = next(iter(seen))

    def moved() -> bool:
        time.sleep(1.5)  # let the client's entry expire
        return topology.curl(p3, "10.96.100.60:80")[1].split()[0] != first
    await until(moved, "a new endpoint after the affinity timeout")


async def check_endpoints_move_tcp_and_udp(cluster, topology: Topology, tries: int) -> None:
    """The endpoint replaced (p1 -> p2): UDP from the same client address and port moves too
    (no stale conntrack entry or relay session keeps it on p1), and `tries` new TCP
    connections all reach p2."""
    ports = [{"name": "http", "port": 80, "targetPort": 8080},
             {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}]
    await cluster.service("both", "10.96.100.70", ports=ports)
    slice_ports = (("http", 8080, "TCP"), ("dns", 5353, "UDP"))
    await cluster.endpoints("both", ["p1"], ports=slice_ports)
    p3 = topology.pods["p3"]
    await until(lambda: topology.udp(p3, "10.96.100.70", 53, 40000).startswith("p1"), "UDP to p1")
    await cluster.endpoints("both", ["p2"], ports=slice_ports)
    await until(lambda: topology.udp(p3, "10.96.100.70", 53, 40000).startswith("p2"), "UDP moved to p2")
    seen = await asyncio.to_thread(names_seen, topology, p3, "10.96.100.70:80", tries)
    assert set(seen) == {"p2"}
