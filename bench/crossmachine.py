"""Pod-to-pod throughput across machines (the VXLAN overlay) against within one machine (root).

Two machines on one box (bench/machines.py: network namespaces on a LAN bridge): `pocketkube
up --nodes 2 --advertise-address` on the first, `pocketkube join` on the second. A client pod on
node 1 of the first machine runs iperf3 (TCP, one stream, --seconds each) against an iperf3
server pod on node 2 of the same machine (the same-machine path: veth, bridge, veth) and one on
the joined machine's node (across: its node, the machine, the VTEP, the LAN, the other VTEP,
...), interleaved same, across, same, across, ... for --rounds rounds. Printed: each path's
median Gbit/s (min–max) and the median of the per-round ratios across/same (goal ≥ 0.8×).
Both "machines" share this box's CPUs, so the overlay's encapsulation costs the same cores
the senders use: on separate machines with a real LAN, the LAN's speed would be the limit.

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

            def run(target: str):
                def once(_round: int) -> float:
                    for attempt in range(10):  # the server may still be binding its port
                        cp = a.kubectl("exec", "client", "--", "iperf3", "-c", ips[target], "-p", str(IPERF_PORT),
                                       "-t", str(args.seconds), "-J", check=False, timeout=args.seconds + 60)
                        result = json.loads(cp.stdout or "{}") if cp.returncode == 0 else {}
                        if "sum_received" in result.get("end", {}):
                            return result["end"]["sum_received"]["bits_per_second"] / 1e9
                        time.sleep(1)
                    raise RuntimeError(f"iperf3 to {target} failed: {cp.stdout[-800:]}{cp.stderr[-500:]}")
                return once

            results = harness.interleave({"same": run("same"), "across": run("across")}, rounds=args.rounds)
        finally:
            problems = lan.close()
            shutil.rmtree(work, ignore_errors=True)
            if problems:
                print("cleanup problems: " + "; ".join(problems), file=sys.stderr)
    label = f"iperf3, 1 TCP stream, {args.seconds}s"
    return [harness.spread_row(f"pod to pod on one machine ({label})", harness.spread(results["same"]), "Gbit/s"),
            harness.spread_row("pod to pod across machines (VXLAN overlay)", harness.spread(results["across"]), "Gbit/s"),
            harness.ratio_row("across machines against one machine", harness.ratio(results["across"], results["same"]),
                              goal=GOAL)]


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
