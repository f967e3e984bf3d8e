"""Pod-to-pod throughput across machines (the VXLAN overlay) against within one machine (root).

Two machines on one box (bench/machines.py: network namespaces on a LAN bridge): `pocketkube
up --nodes 2 --advertise-address` on the first, `pocketkube join` on the second. A client pod on
node 1 of the first machine runs iperf3 (TCP, one stream, --seconds each) against an iperf3
server pod on node 2 of the same machine (the same-machine path: veth, bridge, veth) and one on
the joined machine's node (across: its node, the machine, the VTEP, the LAN, the other VTEP,
...), interleaved same, across, same, across, ... for --rounds rounds. Printed: each path's
median Gbit/s (min–max) and the median of the per-round ratios across/same.

Where the receive side runs. A veth hands each packet to the next namespace on the CPU that sent
it, so on one box one CPU carries the whole path, both "machines" included; two real machines
split it: the receiving machine's NIC raises its interrupt on that machine's CPU, which then
decapsulates, routes and delivers. So each path runs twice per round (ADR 0019):
- "receive on its own CPU" (the goal, ≥ 0.8×): the sending iperf3 on the first usable CPU and
  receive packet steering (RPS) to the others on the first link of the receiving side, the
  receiving machine's `lan0` across machines and, by the same rule, the receiving node's `eth0`
  within one machine, whose path has no machine boundary: each path's sending and receiving
  halves run side by side on different CPUs, as on hardware;
- "whole path on the sending CPU" (no steering, as the kernel leaves veths): what the path costs
  in all, one CPU's worth of work per byte; informational.
On failure, iperf3's error comes with each namespace's route and neighbour entry for the server.

    sudo .venv/bin/python -m bench.crossmachine [--rounds 5] [--seconds 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench import harness  # noqa: E402
from bench.machines import Lan, join_command  # noqa: E402
from pocketkube.core import cluster  # noqa: E402
from pocketkube.node import network  # noqa: E402

GOAL = 0.8
IPERF_PORT = 5201


def _pods(nodes: dict[str, str]) -> list[dict]:
    def pod(name: str, node: str, command: list[str]) -> dict:
        # an image outside the catalog runs with this machine's /usr: iperf3 is Debian's
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "main", "image": "debian:bookworm-slim", "command": command}]}}
    return [pod("client", nodes["client"], ["sleep", "86400"]),
            pod("same", nodes["same"], ["iperf3", "-s", "-p", str(IPERF_PORT)]),
            pod("across", nodes["across"], ["iperf3", "-s", "-p", str(IPERF_PORT)])]


def cpu_mask(cpus: list[int]) -> str:
    """The sysfs form of a CPU set (`rps_cpus`): hex, in comma-separated groups of 32 CPUs."""
    digits = f"{sum(1 << c for c in cpus):x}"
    groups = [digits[max(0, end - 8):end] for end in range(len(digits), 0, -8)]
    return ",".join(reversed(groups))


def steer(netns: str, link: str, mask: str) -> None:
    """Receive packet steering of `link` in `netns` to `mask` ("0": off). Through `ip netns exec`,
    which mounts the namespace's own /sys."""
    network._run(["ip", "netns", "exec", netns, "sh", "-c",
                  f'for q in /sys/class/net/{link}/queues/rx-*; do echo {mask} > "$q/rps_cpus"; done'])


def where_to(ip: str, namespaces: list[str]) -> str:
    """Each namespace's route and neighbour entry toward `ip`: what a failed run leaves to read."""
    lines = []
    for netns in namespaces:
        route = network._run(["ip", "-o", "route", "get", ip], netns=netns, check=False)
        neigh = network._run(["ip", "neigh", "show"], netns=netns, check=False)
        lines.append(f"  {netns}: {(route.stdout or route.stderr).strip()} | neigh: "
                     + "; ".join(n for n in neigh.stdout.splitlines() if "FAILED" in n or "INCOMPLETE" in n or ip in n))
    return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(args) -> list[harness.Row]:
    if shutil.which("iperf3") is None:
        sys.exit("bench.crossmachine needs iperf3 (scripts/setup installs it)")
    work = tempfile.mkdtemp(prefix="pk-xbench-")
    with harness.machine_lock():
        lan = Lan(work)
        try:
            a, b = lan.machines
            port = _free_port()
            a.names.append(f"xb{lan.id}a")
            cp = a.pocketkube("up", "--name", a.names[0], "--nodes", "2", "--port", str(port), "--data-dir",
                              os.path.join(work, "a"), "--advertise-address", a.address, "--wait", "60")
            if cp.returncode != 0:
                raise RuntimeError(f"pocketkube up failed:\n{cp.stdout}\n{cp.stderr}")
            b.names.append(f"xb{lan.id}b")
            cp = b.pocketkube(*join_command(cp.stdout), "--name", b.names[0], "--data-dir", os.path.join(work, "b"))
            if cp.returncode != 0:
                raise RuntimeError(f"pocketkube join failed:\n{cp.stdout}\n{cp.stderr}")
            nodes = {"client": f"{a.names[0]}-node-1", "same": f"{a.names[0]}-node-2", "across": b.names[0]}
            a.kubectl("apply", "-f", "-", input="\n".join(json.dumps(p) for p in _pods(nodes)))
            a.kubectl("wait", "--for=condition=Ready", "pod", "--all", "--timeout=90s", timeout=120)
            ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in a.kubectl_json("get", "pods")["items"]}

            # the first link of each path's receiving side (see the docstring)
            receiving = {"same": (cluster.node_netns(a.names[0], 2), "eth0"), "across": (b.netns, "lan0")}
            # the sender on one CPU, the receive side steered to the others: "another machine's CPU"
            cpus = harness.usable_cpus()
            sender_cpu, receive_cpus = cpus[0], cpu_mask(cpus[1:] or cpus)
            namespaces = [a.netns, b.netns] + [n for n in network.list_netns()
                                               if cluster.owns_netns(a.names[0], n) or cluster.owns_netns(b.names[0], n)]

            def run(target: str, split: bool):
                def once(_round: int) -> float:
                    for path, (netns, link) in receiving.items():
                        steer(netns, link, receive_cpus if split and path == target else "0")
                    pinned = ["-A", str(sender_cpu)] if split else []
                    before = harness.speed()
                    for attempt in range(10):  # the server may still be binding its port
                        cp = a.kubectl("exec", "client", "--", "iperf3", "-c", ips[target], "-p", str(IPERF_PORT),
                                       "-t", str(args.seconds), "-J", *pinned, check=False, timeout=args.seconds + 60)
                        result = json.loads(cp.stdout or "{}") if cp.returncode == 0 else {}
                        if "sum_received" in result.get("end", {}):
                            # at the yardstick CPU speed: a stream over veths is CPU-bound (ADR 0012)
                            speed = (before + harness.speed()) / 2
                            return result["end"]["sum_received"]["bits_per_second"] / 1e9 / speed
                        error = result.get("error") or (cp.stdout[-300:] + cp.stderr[-300:]).strip()
                        print(f"  iperf3 to {target} ({ips[target]}), attempt {attempt + 1}: {error}\n"
                              + where_to(ips[target], namespaces), file=sys.stderr, flush=True)
                        time.sleep(1)
                    raise RuntimeError(f"iperf3 to {target} failed: {cp.stdout[-800:]}{cp.stderr[-500:]}")
                return once

            results = harness.interleave({"same": run("same", True), "across": run("across", True),
                                          "same, one CPU": run("same", False),
                                          "across, one CPU": run("across", False)}, rounds=args.rounds)
        finally:
            problems = lan.close()
            shutil.rmtree(work, ignore_errors=True)
            if problems:
                print("cleanup problems: " + "; ".join(problems), file=sys.stderr)
    return rows(results, args.seconds)


def rows(results: dict[str, list[float]], seconds: int) -> list[harness.Row]:
    """Both paths' Gbit/s and their per-round ratio, with the receive side steered to its own CPU
    (the goal's) and with the whole path on the sending CPU (informational)."""
    label = f"iperf3, 1 TCP stream, {seconds}s, at the yardstick CPU speed"
    split, whole = "receive on its own CPU", "whole path on the sending CPU"
    return [harness.spread_row(f"pod to pod on one machine ({label}; {split})", harness.spread(results["same"]), "Gbit/s"),
            harness.spread_row(f"pod to pod across machines (VXLAN overlay; {label}; {split})", harness.spread(results["across"]),
                               "Gbit/s"),
            harness.ratio_row(f"across machines against one machine ({split})",
                              harness.ratio(results["across"], results["same"]), goal=GOAL),
            harness.spread_row(f"pod to pod on one machine ({label}; {whole})", harness.spread(results["same, one CPU"]),
                               "Gbit/s"),
            harness.spread_row(f"pod to pod across machines ({label}; {whole})", harness.spread(results["across, one CPU"]),
                               "Gbit/s"),
            harness.ratio_row(f"across machines against one machine ({whole})",
                              harness.ratio(results["across, one CPU"], results["same, one CPU"]))]


def main() -> None:
    p = argparse.ArgumentParser(description="pod-to-pod throughput across machines against within one (root)")
    p.add_argument("--seconds", type=int, default=5, help="seconds of each iperf3 run")
    harness.add_arguments(p)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/crossmachine.py needs root: it creates network namespaces, a bridge and two clusters")
    with harness.Session("crossmachine", args) as session:
        session.add(*measure(args))


if __name__ == "__main__":
    main()
