"""The userspace proxy for real (root): the `Proxier` in userspace mode, fed by a real API
server, puts the Service addresses on `pk-svc` in a node network namespace the test builds
(proxytopo.py) and relays real connections; the same scenarios as the nftables test, where
a relay differs in one way: the endpoint always sees the node as the client.
Teardown stops the proxier, kills every process the test started and deletes the namespaces.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest
from proxytopo import (BRIDGE_IP, EXTERNAL_IP, NODE_IP, PODS, WAIT, Api, built_topology,
                       check_affinity_holds_then_expires, check_endpoints_move_tcp_and_udp,
                       check_hairpin_and_external_ip, names_seen, new_proxier, proxied_namespace, sh, skip_reason,
                       until)

from pocketkube.core.client import from_kubeconfig

pytestmark = [pytest.mark.e2e]

if skip_reason():
    pytest.skip(skip_reason(), allow_module_level=True)



@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    with built_topology(str(tmp_path_factory.mktemp("proxy-topology"))) as topo:
        yield topo


@pytest.fixture
async def cluster(server, topology):
    """A namespace on the API server, and a userspace Proxier for the test node watching it."""
    async with proxied_namespace(server, topology, "userspace") as api:
        yield api


def dummy_addresses(topology) -> set[str]:
    out = sh("ip", "-n", topology.node, "-j", "-4", "address", "show", "dev", "pk-svc", check=False).stdout
    return {a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", [])}


async def remote_endpoint(cluster, service: str, pod: str) -> None:
    """A second EndpointSlice: `pod` as an endpoint on node-2 (it still answers from here)."""
    await cluster.client.create("discovery.k8s.io/v1", "endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-remote", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [PODS[pod]], "conditions": {"ready": True}, "nodeName": "node-2"}]},
        cluster.namespace)


def nft_tables(topology) -> str:
    return sh("ip", "netns", "exec", topology.node, "nft", "list", "tables").stdout


async def test_cluster_ip_tcp_and_udp_from_pods_node_and_outside(cluster, topology):
    ports = [{"name": "http", "port": 80, "targetPort": "web"},
             {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}]
    await cluster.service("web", "10.96.100.20", ports=ports)
    await cluster.endpoints("web", ["p1", "p2"], ports=(("http", 8080, "TCP"), ("dns", 5353, "UDP")))
    p3 = topology.pods["p3"]
    await until(lambda: topology.curl(p3, "10.96.100.20:80")[0] == 0, "ClusterIP reachable")
    assert "10.96.100.20" in dummy_addresses(topology)
    from_pod = await asyncio.to_thread(names_seen, topology, p3, "10.96.100.20:80", 10)
    assert set(from_pod) == {"p1", "p2"}  # round robin: both within 10 connections
    assert set().union(*from_pod.values()) == {BRIDGE_IP}  # relayed: the endpoint sees the node
    for netns in (topology.node, topology.outside):
        seen = await asyncio.to_thread(names_seen, topology, netns, "10.96.100.20:80", 4)
        assert set(seen) == {"p1", "p2"} and set().union(*seen.values()) == {BRIDGE_IP}
    for netns, source_port in ((p3, 40001), (topology.node, 40002), (topology.outside, 40003)):
        reply = await asyncio.to_thread(topology.udp, netns, "10.96.100.20", 53, source_port)
        assert reply.split()[0] in ("p1", "p2") and reply.split()[1] == BRIDGE_IP, reply


async def test_nodeport_fixed_and_auto_and_local_policy(cluster, topology):
    await cluster.service("np-fixed", "10.96.100.30", type="NodePort",
                          ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30180}])
    await cluster.endpoints("np-fixed", ["p1", "p2"])
    auto = await cluster.service("np-auto", "10.96.100.33", type="NodePort")
    auto_port = auto["spec"]["ports"][0]["nodePort"]
    assert 30000 <= auto_port <= 32767
    await cluster.endpoints("np-auto", ["p2"])
    await cluster.service("np-local", "10.96.100.31", type="NodePort", externalTrafficPolicy="Local",
                          ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30181}])
    await cluster.endpoints("np-local", ["p1"])
    await remote_endpoint(cluster, "np-local", "p2")
    await cluster.service("np-elsewhere", "10.96.100.32", type="NodePort", externalTrafficPolicy="Local",
                          ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30182}])
    await cluster.endpoints("np-elsewhere", ["p2"], node="node-2")
    out = topology.outside
    await until(lambda: topology.curl(out, f"{NODE_IP}:{auto_port}")[0] == 0, "auto NodePort reachable")
    assert (await asyncio.to_thread(topology.curl, out, f"{NODE_IP}:{auto_port}"))[1].startswith("p2")
    fixed = await asyncio.to_thread(names_seen, topology, out, f"{NODE_IP}:30180", 4)
    assert set(fixed) == {"p1", "p2"}
    # every node address: the bridge's too (from a pod)
    code, _ = await asyncio.to_thread(topology.curl, topology.pods["p3"], f"{BRIDGE_IP}:30180")
    assert code == 0
    local_seen = await asyncio.to_thread(names_seen, topology, out, f"{NODE_IP}:30181", 6)
    assert set(local_seen) == {"p1"}  # only the endpoint on this node
    from_pod = await asyncio.to_thread(names_seen, topology, topology.pods["p3"], f"{NODE_IP}:30181", 6)
    assert set(from_pod) == {"p1", "p2"}  # a pod is not an external client: every endpoint
    code, _ = await asyncio.to_thread(topology.curl, out, f"{NODE_IP}:30182", 1)
    assert code == 28  # Local without a local endpoint: dropped (a timeout), not refused
    code, body = await asyncio.to_thread(topology.curl, topology.pods["p3"], f"{NODE_IP}:30182")
    assert code == 0 and body.startswith("p2")  # pods are not external clients
    code, body = await asyncio.to_thread(topology.curl, topology.node, f"{NODE_IP}:30182")
    assert code == 0 and body.startswith("p2")  # nor is the node itself
    code, _ = await asyncio.to_thread(topology.curl, out, "10.96.100.30:30180", 2)
    assert code == 7  # a NodePort is not served on a ClusterIP


async def test_internal_traffic_policy_local(cluster, topology):
    await cluster.service("itp", "10.96.100.35", internalTrafficPolicy="Local")
    await cluster.endpoints("itp", ["p1"])
    p3 = topology.pods["p3"]
    await until(lambda: topology.curl(p3, "10.96.100.35:80")[1].startswith("p1"), "local endpoint reachable")
    await cluster.endpoints("itp", ["p2"], node="node-2")
    await until(lambda: topology.curl(p3, "10.96.100.35:80", 1)[0] == 28, "dropped with no local endpoint")


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
        # 7: refused (accepting then closing would be 52, an empty reply; a drop 28, a timeout)
        assert code == 7, f"{target} from {netns}: curl exit {code}, want 7 (connection refused)"
    # endpoints arrive: the listener opens
    await cluster.endpoints("empty", ["p2"])
    await until(lambda: topology.curl(topology.outside, f"{NODE_IP}:30190")[1].startswith("p2"), "served")


async def test_hairpin_and_external_ip(cluster, topology):
    await check_hairpin_and_external_ip(cluster, topology)
    assert EXTERNAL_IP in dummy_addresses(topology)


async def test_session_affinity_holds_then_expires(cluster, topology):
    await check_affinity_holds_then_expires(cluster, topology, tries=10)  # round robin would alternate


async def test_endpoint_removed_new_connections_and_udp_avoid_it(cluster, topology):
    await check_endpoints_move_tcp_and_udp(cluster, topology, tries=6)


async def test_restart_adopts_addresses_and_new_connections_work(cluster, topology):
    await cluster.service("long", "10.96.100.80")
    await cluster.endpoints("long", ["p1"])
    await cluster.service("gone", "10.96.100.81")
    await cluster.endpoints("gone", ["p2"])
    p3 = topology.pods["p3"]
    await until(lambda: topology.curl(p3, "10.96.100.81:80")[0] == 0, "reachable")
    script = textwrap.dedent("""
        import socket, sys
        s = socket.create_connection(("10.96.100.80", 80), timeout=5)
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        reply = s.makefile("rb")  # the whole first answer: headers and body may come apart
        status, length = reply.readline().decode().strip(), 0
        while (line := reply.readline()) not in (b"\\r\\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        reply.read(length)
        print(status, flush=True)
        sys.stdin.readline()
        try:
            s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
            print("open" if s.recv(4096) else "closed", flush=True)
        except OSError as exc:
            print("closed", exc, flush=True)
    """)
    proc = subprocess.Popen(["ip", "netns", "exec", p3, sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    topology.processes.append(proc)
    assert "200" in await asyncio.to_thread(proc.stdout.readline)
    await cluster.proxier.stop()  # what killing the proxy does: its relays and connections go
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert (await asyncio.to_thread(proc.stdout.readline)).startswith("closed")
    assert topology.curl(p3, "10.96.100.80:80")[0] == 7  # no relay while it is down: refused at once
    assert {"10.96.100.80", "10.96.100.81"} <= dummy_addresses(topology)  # the addresses stay
    await cluster.client.delete("v1", "services", "gone", cluster.namespace)  # changed while it was down
    restarted = new_proxier(cluster.client, topology, "userspace")
    await restarted.start()
    cluster.proxier = restarted
    await asyncio.wait_for(restarted.ready.wait(), WAIT)
    assert restarted.last_sync.full
    # at once after its first sync (curl in a thread: the relays run on this event loop)
    assert (await asyncio.to_thread(topology.curl, p3, "10.96.100.80:80"))[1].startswith("p1")
    addresses = dummy_addresses(topology)
    assert "10.96.100.80" in addresses and "10.96.100.81" not in addresses  # stale one removed


async def test_mode_switch_cleans_the_other_modes_state(cluster, topology):
    await cluster.service("switch", "10.96.100.90")
    await cluster.endpoints("switch", ["p1"])
    p3 = topology.pods["p3"]
    await until(lambda: topology.curl(p3, "10.96.100.90:80")[0] == 0, "reachable in userspace mode")
    await cluster.proxier.stop()
    nft = new_proxier(cluster.client, topology, "nftables")
    await nft.start()
    cluster.proxier = nft
    await asyncio.wait_for(nft.ready.wait(), WAIT)
    assert not dummy_addresses(topology) and "pk-svc" not in sh("ip", "-n", topology.node, "link").stdout
    assert "pk-ptest-proxy" in nft_tables(topology)
    assert (await asyncio.to_thread(topology.curl, p3, "10.96.100.90:80"))[1].split() == ["p1", PODS["p3"]]
    await nft.stop()
    user = new_proxier(cluster.client, topology, "userspace")
    await user.start()
    cluster.proxier = user
    await asyncio.wait_for(user.ready.wait(), WAIT)
    assert "pk-ptest-proxy" not in nft_tables(topology)
    assert (await asyncio.to_thread(topology.curl, p3, "10.96.100.90:80"))[1].split() == ["p1", BRIDGE_IP]


async def test_a_nodeport_in_use_is_reported_and_the_rest_works(cluster, topology):
    holder = subprocess.Popen(["ip", "netns", "exec", topology.node, sys.executable, "-c",
                               "import socket, time; s = socket.socket(); s.bind(('0.0.0.0', 30195)); "
                               "s.listen(); print('up', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    topology.processes.append(holder)
    assert (await asyncio.to_thread(holder.stdout.readline)).strip() == "up"
    try:
        await cluster.service("clash", "10.96.100.95", type="NodePort",
                              ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30195}])
        await cluster.endpoints("clash", ["p1"])
        backend = cluster.proxier.backend
        await until(lambda: any(key[1] == 30195 for key in backend.failed), "the clash reported")
        message = next(m for key, m in backend.failed.items() if key[1] == 30195)
        assert "nodePort" in message and "in use" in message
        code, body = await asyncio.to_thread(topology.curl, topology.pods["p3"], "10.96.100.95:80")
        assert body.startswith("p1")  # the ClusterIP works
    finally:
        holder.kill()
        holder.wait()


LOAD_CLIENT = textwrap.dedent("""
    import json, socket, sys, threading
    target, workers, connections = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ip, port = target.split(":")
    REQUEST = b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
    results = {"ok": 0, "failed": []}
    lock = threading.Lock()

    def response(s):  # one HTTP response: its head, then Content-Length bytes
        data = b""
        while b"\\r\\n\\r\\n" not in data or len(data) < len(data.split(b"\\r\\n\\r\\n")[0]) + 4 + length(data):
            chunk = s.recv(4096)
            if not chunk:
                raise OSError(f"closed after {len(data)} bytes")
            data += chunk
        return data.decode()

    def length(data):
        for line in data.split(b"\\r\\n\\r\\n")[0].split(b"\\r\\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return int(value)
        return 0

    def one(i):
        with socket.create_connection((ip, int(port)), timeout=5) as s:
            s.sendall(REQUEST)  # at once: before the relay has connected to its endpoint
            answers = [response(s)]
            s.sendall(REQUEST)  # the same connection again (keep-alive)
            answers.append(response(s))
            if i % 2:  # half-close: the last request, then our end of the stream
                s.sendall(REQUEST)
                s.shutdown(socket.SHUT_WR)
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                answers.append(data.decode())
        for text in answers:
            if not text.startswith("HTTP/1.") or " 200 " not in text.split("\\r\\n")[0]:
                raise OSError(f"unexpected answer {text[:60]!r}")

    def worker(w):
        for i in range(connections):
            try:
                one(w * connections + i)
                with lock:
                    results["ok"] += 1
            except OSError as exc:
                with lock:
                    results["failed"].append(str(exc))
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(results))
""")


async def test_the_real_proxy_process_relays_every_connection_under_load(server, topology):
    """`pocketkube proxy --mode userspace` as its own process, on the event loop the real one
    uses (uvloop): concurrent connections that send at once, keep-alive and half-close all get
    their answers. (uvloop starts reading a connection right after connection_made even when
    it paused it there, so the first request used to arrive before the endpoint connection
    and the relay closed the client without a byte: curl's "Empty reply from server".)"""
    client = from_kubeconfig(server.kubeconfig, field_manager="e2e")
    namespace = "p-" + uuid.uuid4().hex[:8]
    await client.create("v1", "namespaces", {"metadata": {"name": namespace}})
    api = Api(client, namespace, None)
    argv = [sys.executable, "-m", "pocketkube.cli.main", "proxy", "--mode", "userspace", "--kubeconfig",
            server.kubeconfig, "--node-name", "node-1", "--cluster-name", "ptest", "--netns", topology.node,
            "--node-ip", NODE_IP]
    env = {k: v for k, v in os.environ.items() if k != "POCKETKUBE_LOOP"}  # the default loop: uvloop
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    topology.processes.append(proc)
    try:
        await api.service("loaded", "10.96.100.99")
        await api.endpoints("loaded", ["p1", "p2"])
        p3 = topology.pods["p3"]
        await until(lambda: topology.curl(p3, "10.96.100.99:80")[0] == 0, "the process's relay answering")
        out = sh("ip", "netns", "exec", p3, sys.executable, "-c", LOAD_CLIENT, "10.96.100.99:80", "16", "25",
                 timeout=120).stdout
        results = json.loads(out)
        assert results["failed"] == [] and results["ok"] == 16 * 25, results
        # the endpoints go (the listener closes: refused) and another comes (it opens again)
        await api.endpoints("loaded", [])
        await until(lambda: topology.curl(p3, "10.96.100.99:80")[0] == 7, "refused without endpoints")
        await api.endpoints("loaded", ["p2"])
        await until(lambda: topology.curl(p3, "10.96.100.99:80")[1].startswith("p2"), "the new endpoint answering")
    finally:
        proc.terminate()  # our own child, by its PID
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        await client.delete("v1", "namespaces", namespace)
        await client.close()
    assert "Traceback" not in err, err[-3000:]
