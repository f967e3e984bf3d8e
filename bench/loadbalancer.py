"""LoadBalancer benchmarks (root: a real 2-node cluster), each figure beside its goal.

- Service created -> first successful `curl` from the host: for each of --services (50)
  LoadBalancer Services created one after another (a POST through the API client), the time
  from just before the POST until an HTTP request from the host to its EXTERNAL-IP gets
  nginx's answer (address allocated, announced on the node network, proxy rules in place);
  the host polls the status every 5 ms, then connects every 5 ms (0.2 s timeout). p50 and
  p99. Goal p99 < 1 s; anchors: cloud-provider-kind a few seconds, cloud load balancers tens of
  seconds to minutes.
- Failover gap: the agent of the node announcing an address is killed (SIGKILL, by its PID; the
  cluster's supervisor starts it again) while wrk loads the address from the host and a probe
  sends a new request every 20 ms; the gap is the longest time without a successful probe
  around the kill, and "moved" the time until the host's neighbour entry for the address
  holds the other node's MAC. Median of --failovers. Goal < 3 s.
- Throughput: wrk from the host through the LB address and through the NodePort of the node
  announcing it (the same node, the same pod), interleaved A B A B (--pairs), in nftables and
  userspace mode; the median ratio LB/NodePort with its spread (min-max of the pairs).
  Goal >= 0.95x.

    sudo .venv/bin/python -m bench.loadbalancer [--services 50] [--failovers 3] [--pairs 11] [--duration 3] [--only NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench import harness  # noqa: E402
from bench.dataplane import DataplaneCluster, ModeUnavailable, parse_wrk, until  # noqa: E402
from bench.pods import Row, percentile, run_measurements  # noqa: E402
from pocketkube.core import client as api  # noqa: E402
from pocketkube.node import network  # noqa: E402

CREATE_P99_GOAL_S = 1.0
CREATE_ANCHORS = (("cloud-provider-kind", 3.0), ("cloud LB", 60.0))
FAILOVER_GOAL_S = 3.0
THROUGHPUT_GOAL = 0.95
POLL = 0.005
PROBE_EVERY = 0.02


def lb_service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "selector": {"app": "nginx"}, "ports": [{"port": 80}]}}


def http_ok(ip: str, port: int = 80, timeout: float = 0.2) -> bool:
    """One HTTP request from the host on a new connection: nginx's answer or not."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def ingress_ip(svc: dict) -> str | None:
    ingress = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    return ingress[0].get("ip") if ingress else None


def announcer(dc: DataplaneCluster, ip: str) -> str | None:
    holders = network.announced_addresses(dc.net).get(ip) or []
    return holders[0] if len(holders) == 1 else None


def wait_for_nginx(dc: DataplaneCluster) -> None:
    dc.kubectl("scale", "deployment", "nginx", "--replicas=2")
    until(lambda: all(p["status"].get("podIP") and any(c["type"] == "Ready" and c["status"] == "True"
                                                       for c in p["status"].get("conditions") or [])
                      for p in dc.kubectl_json("get", "pods", "-l", "app=nginx")["items"])
          and len(dc.kubectl_json("get", "pods", "-l", "app=nginx")["items"]) == 2, "2 nginx pods Ready")


# ---- Service created -> first answer from the host ------------------------------------------


async def _create_to_curl(dc: DataplaneCluster, count: int) -> list[float]:
    client = api.from_kubeconfig(dc.cluster.kubeconfig, field_manager="pocketkube-bench")
    samples = []
    try:
        for i in range(count):
            name = f"lb-{i}"
            started = time.monotonic()
            await client.create("v1", "services", lb_service(name), namespace="default")
            ip = None
            while ip is None:
                ip = ingress_ip(await client.get("v1", "services", name, namespace="default"))
                if ip is None:
                    await asyncio.sleep(POLL)
                if time.monotonic() - started > 30:
                    raise RuntimeError(f"{name} got no address in 30 s")
            while not await asyncio.to_thread(http_ok, ip):
                await asyncio.sleep(POLL)
                if time.monotonic() - started > 30:
                    raise RuntimeError(f"{name} ({ip}) did not answer in 30 s")
            samples.append(time.monotonic() - started)
        for i in range(count):
            await client.delete("v1", "services", f"lb-{i}", namespace="default")
    finally:
        await client.close()
    return samples


def create_to_curl(args) -> list[Row]:
    with DataplaneCluster(args, nodes=2) as dc:
        wait_for_nginx(dc)
        samples = asyncio.run(_create_to_curl(dc, args.services))
    detail = f"(n={len(samples)}, max {max(samples):.2f} s)"
    return [Row(f"LB Service created -> first curl from the host, p50", percentile(samples, 50), "s",
                detail=detail),
            Row(f"LB Service created -> first curl from the host, p99", percentile(samples, 99), "s",
                CREATE_P99_GOAL_S, CREATE_ANCHORS)]


# ---- failover -------------------------------------------------------------------------------


class Probe(threading.Thread):
    """A new request every PROBE_EVERY seconds; keeps the times of the successful ones."""

    def __init__(self, ip: str):
        super().__init__(daemon=True)
        self.ip, self.ok_times, self.failures, self.stop = ip, [], 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if http_ok(self.ip):
                self.ok_times.append(time.monotonic())
            else:
                self.failures += 1
            time.sleep(PROBE_EVERY)

    def longest_gap(self, start: float, end: float) -> float:
        times = [t for t in self.ok_times if start <= t <= end]
        return max((b - a for a, b in zip(times, times[1:])), default=end - start)


def neighbour_mac(dc: DataplaneCluster, ip: str) -> str:
    cp = subprocess.run(["ip", "-j", "neigh", "show", ip, "dev", dc.net.bridge], capture_output=True, text=True)
    entries = json.loads(cp.stdout or "[]")
    return entries[0].get("lladdr", "") if entries else ""


def node_mac(node: network.NodeNetwork) -> str:
    cp = subprocess.run(["ip", "-n", node.netns, "-j", "link", "show", "eth0"], capture_output=True, text=True)
    return json.loads(cp.stdout)[0]["address"]


def failover(args) -> list[Row]:
    gaps, moves, failures = [], [], []
    with DataplaneCluster(args, nodes=2) as dc:
        wait_for_nginx(dc)
        dc.kubectl("apply", "-f", "-", input=json.dumps(lb_service("failover")))
        ip = until(lambda: ingress_ip(dc.kubectl_json("get", "svc", "failover")), "an address")
        until(lambda: http_ok(ip), f"{ip} answering")
        nodes = {n.name: n for n in dc.net.node_list()}
        for _ in range(args.failovers):
            owner = until(lambda: announcer(dc, ip), f"one node announcing {ip}")
            until(lambda: neighbour_mac(dc, ip) == node_mac(nodes[owner]), "the host's neighbour entry settled")
            other_mac = next(node_mac(n) for name, n in nodes.items() if name != owner)
            pid = agent_pid(dc, owner)
            probe = Probe(ip)
            wrk = subprocess.Popen(["wrk", "-t1", "-c8", f"-d{args.failover_seconds}s", "--latency", f"http://{ip}/"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            probe.start()
            time.sleep(1.0)
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)  # that agent only, by its PID
            try:
                until(lambda: neighbour_mac(dc, ip) == other_mac, "the host's traffic moved to the other node",
                      timeout=10, interval=0.01)
                moves.append(time.monotonic() - killed)
            except ModeUnavailable:
                moves.append(float("nan"))
            out, _ = wrk.communicate(timeout=args.failover_seconds + 30)
            probe.stop.set()
            probe.join()
            gaps.append(probe.longest_gap(killed - 0.5, killed + args.failover_seconds - 1.5))
            failures.append(f"probe failures {probe.failures}; wrk {parse_wrk_errors(out)}")
            until(lambda: agent_pid(dc, owner) not in (None, pid), f"{owner}'s agent restarted")
            time.sleep(2.0)  # let it announce again
    detail = f"(n={len(gaps)}, each: {', '.join(f'{g:.2f}' for g in gaps)} s; {'; '.join(failures)})"
    return [Row("failover: longest gap without an answer after the agent is killed", statistics.median(gaps), "s",
                FAILOVER_GOAL_S, detail=detail),
            Row("failover: kill -> the host's traffic goes to the other node", statistics.median(moves), "s",
                FAILOVER_GOAL_S, detail=f"(each: {', '.join(f'{m:.2f}' for m in moves)} s)")]


def agent_pid(dc: DataplaneCluster, node_name: str) -> int | None:
    from pocketkube.cli import up as up_cmd

    return up_cmd.cluster_processes(dc.cluster.record()).get(f"agent-{node_name}")


def parse_wrk_errors(out: str) -> str:
    try:
        result = parse_wrk(out)
    except RuntimeError:
        return "no result"
    return f"{result.rps:.0f} req/s" + (f", {result.errors}" if result.errors else ", no errors")


# ---- throughput -----------------------------------------------------------------------------


def throughput(args) -> list:
    rows: list = []
    with DataplaneCluster(args, nodes=2) as dc:
        wait_for_nginx(dc)
        dc.kubectl("apply", "-f", "-", input=json.dumps(lb_service("wrk")))
        for mode in ("nftables", "userspace"):
            dc.switch_mode(mode)
            svc = dc.kubectl_json("get", "svc", "wrk")
            ip, node_port = ingress_ip(svc), svc["spec"]["ports"][0]["nodePort"]
            owner = until(lambda: announcer(dc, ip), f"one node announcing {ip}")
            node_ip = next(n.ip for n in dc.net.node_list() if n.name == owner)
            targets = {"lb": f"http://{ip}/", "nodeport": f"http://{node_ip}:{node_port}/"}
            until(lambda: http_ok(ip) and http_ok(node_ip, node_port), "both answering")
            results: dict[str, list[float]] = {"lb": [], "nodeport": []}
            for _ in range(args.pairs):
                for which in ("lb", "nodeport"):  # A B A B
                    cp = subprocess.run(["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
                                         "--latency", targets[which]], capture_output=True, text=True,
                                        timeout=args.duration + 60)
                    results[which].append(parse_wrk(cp.stdout).rps)
            rows.append(harness.ratio_row(
                f"{mode}: wrk through the LB address / its node's NodePort (from the host)",
                harness.ratio(results["lb"], results["nodeport"]), goal=THROUGHPUT_GOAL,
                note=f"LB {statistics.median(results['lb']):.0f} req/s, "
                     f"NodePort {statistics.median(results['nodeport']):.0f} req/s"))
    return rows


MEASUREMENTS = [create_to_curl, failover, throughput]


def main() -> None:
    p = argparse.ArgumentParser(description="pocketkube LoadBalancer benchmarks (root)")
    p.add_argument("--services", type=int, default=50, help="LoadBalancer Services created and timed")
    p.add_argument("--failovers", type=int, default=3, help="announcing agents killed")
    p.add_argument("--failover-seconds", type=int, default=6, help="wrk and probe duration around each kill")
    # 11 short pairs, not 3 long ones: the min–max of few rounds is narrower than a re-run's
    # (harness.REROUND_AGREEMENT); fewer than harness.MIN_ROUNDS refuses the ratio
    p.add_argument("--pairs", type=int, default=11, help="LB/NodePort wrk pairs per mode (interleaved)")
    p.add_argument("--duration", type=int, default=3, help="seconds of each wrk run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--machine-timeout", type=float, default=600.0,
                   help="seconds to wait while another cluster holds the machine's ranges")
    p.add_argument("--only", choices=[m.__name__ for m in MEASUREMENTS], help="run one part")
    harness.add_json_argument(p)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/loadbalancer.py needs root: it starts a cluster")
    run_measurements("LoadBalancer", MEASUREMENTS, args)


if __name__ == "__main__":
    main()
