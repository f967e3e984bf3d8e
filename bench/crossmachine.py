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
decapsulates, routes and delivers. So each path runs in two modes per round (ADR 0019):
- "receive on its own CPU" (the goal, ≥ 0.8×): the sending iperf3 on the first usable CPU, the
  receiving iperf3 (`iperf3 -A n,m`) and receive packet steering (RPS) of the first link of the
  receiving side on the second: the receiving machine's `lan0` across machines and, by the same
  rule, the receiving node's `eth0` within one machine. Such a pipeline runs at the pace of its
  slower half, here the sending one (its CPU ~95% ours on a quiet machine), and any other work
  on either CPU stalls it; so beside the goal's ratio of Gbit/s, the same ratio per second of the
  sending iperf3's CPU (Gbit/s over the share of its CPU it got: what the path does with a CPU
  of its own; informational, as it would flatter a path whose receiving half were the slower),
  which held at 0.82-0.85x in runs at load 1.3 and at load 4;
- "whole path on one CPU" (no steering, both iperf3 on the first CPU): what the path costs in
  all, informational, with its CPU seconds per GB: both iperf3 processes (the softirq work of a
  veth runs in the context that raised it) and ksoftirqd, which others' load does not inflate.
Each round runs each path once per mode (same, across), --rounds rounds (15): this guest's CPU
speed swings within seconds (a pure-Python yardstick read 0.4-0.7x around runs minutes apart,
uncorrelated with them), both ways, so the two paths of a round run seconds apart and many short
rounds, not a few long ones, carry the swings into the printed min–max (5 rounds of the median
of 3 runs printed a spread narrower than a re-run's, harness.REROUND_AGREEMENT). --runs > 1 runs
each path that many times a round and counts the median one.
Ratios are per round and by the clock (both runs seconds apart): scaling each run by the
yardstick speed measured around it added that measurement's noise. Each run's figures are
printed as it ends (Gbit/s, yardstick speed, the iperf3 processes' CPU, each CPU's busy share).
On failure, iperf3's error comes with each namespace's route and neighbour entry for the server.

    sudo .venv/bin/python -m bench.crossmachine [--rounds 15] [--seconds 4] [--runs 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

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


def cpu_ticks() -> dict[int, tuple[int, int]]:
    """Each CPU's (busy, total) clock ticks so far (/proc/stat's cpuN lines)."""
    with open("/proc/stat") as f:
        return {int(line[3:line.index(" ")]): harness.cpu_times(line) for line in f
                if line.startswith("cpu") and line[3].isdigit()}


def softirqd_seconds() -> float:
    """CPU seconds the kernel's ksoftirqd threads have used so far: softirq work deferred out of
    the context that raised it, which no iperf3 process is charged for."""
    total = 0.0
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().startswith("ksoftirqd/"):
                    total += harness.cpu_seconds(pid)
        except (OSError, ValueError):
            continue
    return total


@dataclass
class Sample:
    """One iperf3 run: what it moved, what it cost, and the state of the CPUs meanwhile."""
    gbps: float  # as the clock measured it
    speed: float  # yardstick speed of the path's CPUs, before and after (harness.speed(cpu))
    busy: dict[int, float]  # each CPU's busy share during the run (everything on it, ours included)
    sender_cpu: float  # the sending iperf3's CPU, % of one CPU (getrusage: its sends' softirq included)
    receiver_cpu: float  # the receiving iperf3's, likewise
    softirqd_s: float  # ksoftirqd's CPU seconds during the run
    seconds: float
    gigabytes: float

    @property
    def at_yardstick(self) -> float:
        """Gbit/s at the yardstick CPU speed: a stream over veths is CPU-bound (ADR 0012)."""
        return self.gbps / self.speed

    @property
    def cpu_s_per_gb(self) -> float:
        """CPU seconds per GB moved, at the yardstick speed, of what the path ran in: both iperf3
        processes (the softirq work they raise runs in their context) and ksoftirqd. Complete
        only when no receive steering moves work to other CPUs' interrupts."""
        cpu = (self.sender_cpu + self.receiver_cpu) / 100 * self.seconds + self.softirqd_s
        return cpu * self.speed / self.gigabytes if self.gigabytes else float("nan")

    def text(self) -> str:
        busy = "/".join(f"{self.busy[c] * 100:.0f}" for c in sorted(self.busy))
        return (f"{self.gbps:5.1f} Gbit/s by the clock at speed {self.speed:.2f}x = {self.at_yardstick:5.1f}; "
                f"{self.cpu_s_per_gb:.3f} CPU-s/GB; iperf3 CPU sender {self.sender_cpu:.0f}% receiver "
                f"{self.receiver_cpu:.0f}%, ksoftirqd {self.softirqd_s:.2f}s; CPUs busy {busy}%")


class Lab:
    """Two machines (bench/machines.py), a cluster of two nodes on the first and the second
    joined, a client pod on node 1, iperf3 servers on node 2 ("same") and on the joined machine
    ("across"). A context manager: everything goes at exit, also after a failure."""

    def __init__(self, work: str):
        self.work = work
        self.lan: Lan | None = None

    def __enter__(self) -> "Lab":
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        self.lan = Lan(self.work)
        a, b = self.a, self.b = self.lan.machines
        port = _free_port()
        a.names.append(f"xb{self.lan.id}a")
        cp = a.pocketkube("up", "--name", a.names[0], "--nodes", "2", "--port", str(port), "--data-dir",
                          os.path.join(self.work, "a"), "--advertise-address", a.address, "--wait", "60")
        if cp.returncode != 0:
            raise RuntimeError(f"pocketkube up failed:\n{cp.stdout}\n{cp.stderr}")
        b.names.append(f"xb{self.lan.id}b")
        cp = b.pocketkube(*join_command(cp.stdout), "--name", b.names[0], "--data-dir", os.path.join(self.work, "b"))
        if cp.returncode != 0:
            raise RuntimeError(f"pocketkube join failed:\n{cp.stdout}\n{cp.stderr}")
        nodes = {"client": f"{a.names[0]}-node-1", "same": f"{a.names[0]}-node-2", "across": b.names[0]}
        a.kubectl("apply", "-f", "-", input="\n".join(json.dumps(p) for p in _pods(nodes)))
        a.kubectl("wait", "--for=condition=Ready", "pod", "--all", "--timeout=90s", timeout=120)
        self.ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in a.kubectl_json("get", "pods")["items"]}
        # the first link of each path's receiving side (see the docstring)
        self.receiving = {"same": (cluster.node_netns(a.names[0], 2), "eth0"), "across": (b.netns, "lan0")}
        self.namespaces = [a.netns, b.netns] + [n for n in network.list_netns()
                                                if cluster.owns_netns(a.names[0], n) or cluster.owns_netns(b.names[0], n)]

    def __exit__(self, *exc) -> None:
        if self.lan is not None:
            problems = self.lan.close()
            self.lan = None
            if problems:
                print("cleanup problems: " + "; ".join(problems), file=sys.stderr)

    def run(self, target: str, seconds: int, sender: int, receiver: int | None, steer_to: list[int]) -> Sample:
        """iperf3 from the client to `target` for `seconds`, its sender pinned to CPU `sender`
        and its receiver to `receiver` (None: where the scheduler puts it), receive steering on `target`'s first receiving link to
        `steer_to` (none: off) and off elsewhere."""
        for path, (netns, link) in self.receiving.items():
            steer(netns, link, cpu_mask(steer_to) if steer_to and path == target else "0")
        cpus = sorted({sender, *steer_to} | ({receiver} if receiver is not None else set()))
        pinned = f"{sender},{receiver}" if receiver is not None else str(sender)
        for attempt in range(10):  # the server may still be binding its port
            speed = [harness.speed(c) for c in cpus]
            ticks, softirqd = cpu_ticks(), softirqd_seconds()
            cp = self.a.kubectl("exec", "client", "--", "iperf3", "-c", self.ips[target], "-p", str(IPERF_PORT),
                                "-t", str(seconds), "-J", "-A", pinned, check=False,
                                timeout=seconds + 60)
            softirqd, after = softirqd_seconds() - softirqd, cpu_ticks()
            speed += [harness.speed(c) for c in cpus]
            result = json.loads(cp.stdout or "{}") if cp.returncode == 0 else {}
            end = result.get("end", {})
            if "sum_received" in end:
                received, use = end["sum_received"], end.get("cpu_utilization_percent", {})
                return Sample(received["bits_per_second"] / 1e9, statistics.mean(speed),
                              {c: harness.busy_share(ticks[c], after[c]) for c in ticks},
                              use.get("host_total", 0.0), use.get("remote_total", 0.0), softirqd,
                              received["seconds"], received["bytes"] / 1e9)
            error = result.get("error") or (cp.stdout[-300:] + cp.stderr[-300:]).strip()
            print(f"  iperf3 to {target} ({self.ips[target]}), attempt {attempt + 1}: {error}\n"
                  + where_to(self.ips[target], self.namespaces), file=sys.stderr, flush=True)
            time.sleep(1)
        raise RuntimeError(f"iperf3 to {target} failed: {cp.stdout[-800:]}{cp.stderr[-500:]}")


def measure(args) -> list[harness.Row]:
    if shutil.which("iperf3") is None:
        sys.exit("bench.crossmachine needs iperf3 (scripts/setup installs it)")
    work = tempfile.mkdtemp(prefix="pk-xbench-")
    cpus = harness.usable_cpus()
    # the sender on one CPU, its receiver and the receive side's softirq on another: "the other
    # machine's CPU"; the whole path on the sender's CPU for the cost per byte
    sender, receiver = cpus[0], (cpus[1:] or cpus)[0]
    modes = {"split": (sender, receiver, [receiver]), "one CPU": (sender, sender, [])}
    try:
        with harness.machine_lock(), Lab(work) as lab:
            def round_(r: int) -> dict[str, list[Sample]]:
                print(f"round {r + 1}: load average {' '.join(f'{x:.2f}' for x in harness.load_average())}", flush=True)
                runs: dict[str, list[Sample]] = {}
                for mode, (snd, rcv, steer_to) in modes.items():
                    for _ in range(args.runs):
                        for target in ("same", "across"):
                            sample = lab.run(target, args.seconds, snd, rcv, steer_to)
                            print(f"  {mode:7} {target:6} {sample.text()}", flush=True)
                            runs.setdefault(f"{target}, {mode}", []).append(sample)
                return runs
            samples = [round_(r) for r in range(args.rounds)]  # each round interleaves its runs
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows(samples, args.seconds, args.runs)


def rows(samples: list[dict[str, list[Sample]]], seconds: int, runs: int) -> list[harness.Row]:
    """Each path's Gbit/s (at the yardstick speed) and the per-round ratio across/same with the
    receive side on a CPU of its own (the goal's) and with the whole path on one CPU
    (informational), and that mode's CPU seconds per GB; each path's figure in a round is the
    median over its `runs` runs there. Beside the goal's ratio, the same ratio per second of the
    sending iperf3's CPU (informational): in that mode the sending half sets the pace (its CPU ~95% ours on a
    quiet machine), so Gbit/s over the share of its CPU the sender got is what the path does with
    a CPU of its own, whatever else the machine ran (ADR 0019).
    Ratios are of figures from one round, by the clock: the yardstick speed, measured over each
    run, is the noisier of the two."""
    def of(key: str, value) -> list[float]:
        return [statistics.median(value(s) for s in round_[key]) for round_ in samples]
    label = f"iperf3, 1 TCP stream, {seconds}s, at the yardstick CPU speed"
    split, whole = "receive on its own CPU", "whole path on one CPU"
    if runs > 1:
        label += f", median of {runs} runs a round"
    result = []
    for mode, text, goal in (("split", split, GOAL), ("one CPU", whole, None)):
        result += [
            harness.spread_row(f"pod to pod on one machine ({label}; {text})",
                               harness.spread(of(f"same, {mode}", lambda s: s.at_yardstick)), "Gbit/s"),
            harness.spread_row(f"pod to pod across machines (VXLAN overlay; {label}; {text})",
                               harness.spread(of(f"across, {mode}", lambda s: s.at_yardstick)), "Gbit/s"),
            harness.ratio_row(f"across machines against one machine ({text})",
                              harness.ratio(of(f"across, {mode}", lambda s: s.gbps), of(f"same, {mode}", lambda s: s.gbps)),
                              goal=goal)]
    def per_sender_cpu(s: Sample) -> float:
        return s.gbps / (s.sender_cpu / 100) if s.sender_cpu else float("nan")
    result.insert(3, harness.ratio_row(
        f"across machines against one machine ({split}; per second of the sending iperf3's CPU)",
        harness.ratio(of("across, split", per_sender_cpu), of("same, split", per_sender_cpu))))
    per_gb = "CPU-s per GB, both iperf3 and ksoftirqd, at the yardstick CPU speed; whole path on one CPU"
    result += [
        harness.spread_row(f"pod to pod on one machine ({per_gb})",
                           harness.spread(of("same, one CPU", lambda s: s.cpu_s_per_gb)), "CPU-s/GB", higher=False),
        harness.spread_row(f"pod to pod across machines ({per_gb})",
                           harness.spread(of("across, one CPU", lambda s: s.cpu_s_per_gb)), "CPU-s/GB", higher=False),
        # GB per CPU-second across against within: what the overlay costs per byte, which no
        # client caps; same round, so by the clock (the speed cancels)
        harness.ratio_row("across machines against one machine (GB per CPU-second, whole path on one CPU)",
                          harness.ratio(of("same, one CPU", lambda s: s.cpu_s_per_gb / s.speed),
                                        of("across, one CPU", lambda s: s.cpu_s_per_gb / s.speed)))]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description="pod-to-pod throughput across machines against within one (root)")
    p.add_argument("--seconds", type=int, default=4, help="seconds of each iperf3 run")
    p.add_argument("--runs", type=int, default=1,
                   help="runs of each path in each mode per round (interleaved); the median one counts")
    harness.add_arguments(p, rounds=15)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/crossmachine.py needs root: it creates network namespaces, a bridge and two clusters")
    with harness.Session("crossmachine", args) as session:
        session.add(*measure(args))


if __name__ == "__main__":
    main()
