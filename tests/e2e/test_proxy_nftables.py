"""The nftables proxy for real (root): the `Proxier` component, fed by a real API server,
programs its table into a node network namespace the test builds (proxytopo.py), and real
connections go through it. Teardown stops the proxier, kills every process the test
started and deletes the namespaces.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest
from proxytopo import (NODE_IP, OUTSIDE_IP, PODS, WAIT, built_topology, check_affinity_holds_then_expires,
                       check_endpoints_move_tcp_and_udp, check_hairpin_and_external_ip, names_seen, new_proxier,
                       proxied_namespace, skip_reason, until)

pytestmark = [pytest.mark.e2e]

if skip_reason():
    pytest.skip(skip_reason(), allow_module_level=True)


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    with built_topology(str(tmp_path_factory.mktemp("proxy-topology"))) as topo:
        yield topo


@pytest.fixture
async def cluster(server, topology):
    """A namespace on the API server, and an nftables Proxier for the test node watching it."""
    async with proxied_namespace(server, topology, "nftables") as api:
        yield api


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
    await check_hairpin_and_external_ip(cluster, topology)


async def test_session_affinity_holds_then_expires(cluster, topology):
    await check_affinity_holds_then_expires(cluster, topology, tries=20)


async def test_scale_down_stops_new_connections_and_flushes_udp(cluster, topology):
    await check_endpoints_move_tcp_and_udp(cluster, topology, tries=10)


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
    restarted = new_proxier(cluster.client, topology, "nftables")
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
    real_apply, refused, after = runner.apply, [], []

    async def refuse_once(script: str) -> None:
        if not refused:
            refused.append(script)
            raise NftError("/dev/stdin:1:1-3: Error: injected by the test")
        after.append(script)
        await real_apply(script)

    runner.apply = refuse_once
    await cluster.service("later", "10.96.100.91")
    await cluster.endpoints("later", ["p2"])
    await until(lambda: refused, "a refused sync")
    assert topology.curl(p3, "10.96.100.90:80")[0] == 0  # the last good rules still serve
    await until(lambda: topology.curl(p3, "10.96.100.91:80")[1].startswith("p2"), "the retry programs it")
    # the first transaction after the refused one rebuilds the whole table (partial ones may follow)
    assert any(line.startswith("flush table ") for line in after[0].splitlines())
