"""Node benchmarks (root: a real cluster), each printed beside its goal and anchors in one table.

One function per measurement; each returns table rows and cleans up after itself.

- `pocketkube up` to Ready: wall time of `pocketkube up --nodes N` (network, API server,
  agents, every node Ready, kubeconfig merged), median of --runs runs, for 1 and 2 nodes.
  Goal 3 s; anchors to a working cluster: k3d 20 s, kind 33 s, minikube 51 s.

    sudo .venv/bin/python -m bench.pods [--runs 3] [--only NAME] [--standin-agent]

--standin-agent times `up` with tests/e2e/standin_agent.py in place of `pocketkube agent`
(a Node registered Ready, nothing more): for while the real agent cannot run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from pocketkube.cli import up as up_cmd  # noqa: E402
from pocketkube.node import network  # noqa: E402

STANDIN_AGENT = os.path.join(ROOT, "tests", "e2e", "standin_agent.py")
UP_GOAL_SECONDS = 3.0
UP_ANCHORS = (("k3d", 20.0), ("kind", 33.0), ("minikube", 51.0))
BENCH_CLUSTER = "bench-up"


def row(what: str, value: float, unit: str, goal: float, anchors: tuple[tuple[str, float], ...] = ()) -> str:
    """One line: the value, the goal (lower is better), the ratio, and the anchors' ratios."""
    ratio = goal / value
    verdict = "meets goal" if ratio >= 1 else "MISSES goal"
    peers = ", ".join(f"{name} {seconds:g} {unit} ({seconds / value:.0f}x)" for name, seconds in anchors)
    return (f"{what:<50} {value:>8.2f} {unit:<3} goal {goal:g} {unit}  ratio {ratio:5.2f}x  {verdict}"
            + (f"  anchors: {peers}" if peers else ""))


def _run_up(name: str, nodes: int, data_dir: str, env: dict, standin: bool) -> subprocess.CompletedProcess:
    if not standin:
        argv = [sys.executable, "-m", "pocketkube.cli.main", "up", "--name", name, "--nodes", str(nodes),
                "--data-dir", data_dir, "--port", str(_free_port())]
    else:
        options = {"name": name, "nodes": nodes, "data_dir": data_dir, "port": _free_port(),
                   "agent_command": (sys.executable, STANDIN_AGENT)}
        argv = [sys.executable, "-c", "import sys; from pocketkube.cli import up; "
                f"sys.exit(up._cli(lambda o: up.up(up.UpOptions(**o)))({options!r}))"]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_up(nodes: int, runs: int, standin: bool) -> float:
    """Median seconds of `pocketkube up --nodes N` until it returns with every node Ready;
    `down` after each run (not timed)."""
    work = tempfile.mkdtemp(prefix="pk-bench-up-")
    env = {**os.environ, "KUBECONFIG": os.path.join(work, "kubeconfig"), "PYTHONPATH": ROOT}
    samples = []
    try:
        for _ in range(runs):
            started = time.monotonic()
            cp = _run_up(BENCH_CLUSTER, nodes, os.path.join(work, "data"), env, standin)
            elapsed = time.monotonic() - started
            if cp.returncode != 0:
                raise RuntimeError(f"pocketkube up failed:\n{cp.stdout}\n{cp.stderr}")
            samples.append(elapsed)
            down = subprocess.run([sys.executable, "-m", "pocketkube.cli.main", "down", "--name", BENCH_CLUSTER],
                                  capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
            if down.returncode != 0:
                raise RuntimeError(f"pocketkube down failed:\n{down.stdout}\n{down.stderr}")
    finally:
        if up_cmd.leftovers(BENCH_CLUSTER):
            up_cmd.teardown(BENCH_CLUSTER, env["KUBECONFIG"])
        shutil.rmtree(work, ignore_errors=True)
    return statistics.median(samples)


def measure_up_to_ready(args) -> list[str]:
    rows = []
    agent = " (stand-in agent)" if args.standin_agent else ""
    for nodes in (1, 2):
        seconds = time_up(nodes, args.runs, args.standin_agent)
        rows.append(row(f"pocketkube up to Ready, {nodes} node{'s' if nodes > 1 else ''}{agent}", seconds, "s",
                        UP_GOAL_SECONDS, UP_ANCHORS))
    return rows


MEASUREMENTS = [measure_up_to_ready]


def _refuse_to_run() -> str | None:
    if os.geteuid() != 0:
        return "bench/pods.py needs root: it starts real clusters (network namespaces, bridge, routes)"
    others = network.running_clusters() | {c for c in up_cmd.known_clusters()
                                           if (r := up_cmd.ClusterRecord.load(c)) and up_cmd.cluster_processes(r)}
    if others:
        return f"a pocketkube cluster runs here ({', '.join(sorted(others))}); stop it first"
    return None


def main() -> None:
    p = argparse.ArgumentParser(description="pocketkube node benchmarks (root)")
    p.add_argument("--runs", type=int, default=3, help="runs per measurement; the median is shown")
    p.add_argument("--only", choices=[m.__name__ for m in MEASUREMENTS], help="run one measurement")
    p.add_argument("--standin-agent", action="store_true",
                   help="time `up` with tests/e2e/standin_agent.py instead of `pocketkube agent`")
    args = p.parse_args()
    reason = _refuse_to_run()
    if reason:
        sys.exit(reason)
    lines = []
    for measure in MEASUREMENTS:
        if args.only and measure.__name__ != args.only:
            continue
        lines += measure(args)
    print("\npocketkube node benchmark")
    for line in lines:
        print("  " + line)


if __name__ == "__main__":
    main()
