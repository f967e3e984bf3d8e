"""Service data-plane benchmarks (root), each figure printed beside its goal in one table.

Part "sync": how long the nftables proxy takes to program its table, into a throwaway
network namespace per round (`pk-pbench-<6 hex>`, deleted at the end; nothing else is
touched), with the machine's other core kept busy, as on a user's laptop: this process is
pinned to one CPU and a busy loop it starts (and stops) to the other; the load average is
printed before and after.
- full sync of 1,000 and 10,000 Services x 5 endpoints: the backend's sync (rule generation
  and the nft transaction through libnftables; the change tracker's apply of the 10,000 new
  Services, the split between generating the text and nft, and the CPU time of the process,
  which other load cannot inflate, are shown beside it), into an
  empty namespace (cold) and again over the table it made (a re-sync, as after a failure or
  on the periodic full sync); goal < 2 s at 10,000;
- partial sync at 10,000 Services: one Service added, one Service's endpoints changed
  (the median over rounds of each round's median and p99, tracker apply included, with the CPU time
  and the time spent runnable while another task held the CPU at the same percentile beside
  them); goal < 50 ms
  median, < 100 ms p99; anchor: kube-proxy's nftables mode took ~141 ms to add one Service
  at 10,000 (kubernetes/kubernetes PR #126013);
- the same table laid out as kube-proxy's nftables mode lays it out (a chain per endpoint,
  an anonymous `numgen ... vmap` per Service), timed as `nft -f` alone in this kernel: the
  peer that explains why pocketkube folds endpoint chains into the Service chain.
Every figure is the median of --sync-rounds rounds, with the min and max of the rounds beside it:
the sync's own time (wall time less the time it waited for its pinned CPU while another task held
it, which depends on whatever else the machine runs) at the yardstick CPU speed (bench/harness.py speed(), measured before and after each round: this
guest's CPU speed drifts by itself, by ~20% within minutes, and these CPU-bound figures with it).

    sudo .venv/bin/python -m bench.dataplane --only sync [--sync-rounds 11] [--samples 20] [--skip-peer] [--json FILE]

Part "throughput" (a cluster): wrk from a client pod to one nginx pod directly (the physical
limit), through its ClusterIP and through Debian's haproxy (the userspace peer), interleaved in
--rounds rounds in each proxy mode; ratios are the median of the rounds' ratios with min and max
(refused when the rounds disagree more than the effect). Part "latency" (a cluster): pod Ready
-> reached through the ClusterIP, in each mode.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench import harness  # noqa: E402
from bench.pods import (  # noqa: E402
    BENCH_LABEL, BenchCluster, PodTimer, Row, machine_lock, percentile, run_measurements, running_and_ready,
)
from pocketkube.core import client as api  # noqa: E402
from pocketkube.node import network  # noqa: E402
from pocketkube.proxy.changetracker import ChangeTracker  # noqa: E402
from pocketkube.proxy.nftables import NftablesBackend, NftablesConfig, NftRunner  # noqa: E402
from pocketkube.proxy.proxier import keep_out_of_collections  # noqa: E402
from pocketkube.proxy.servicemap import chain_base  # noqa: E402

FULL_GOAL_S = 2.0
PARTIAL_GOAL_MS = 50.0
PARTIAL_P99_GOAL_MS = 100.0
KUBE_PROXY_ADD_ONE = "kube-proxy's nftables mode ~141 ms (kubernetes/kubernetes PR #126013)"
ENDPOINTS = 5


def service(i: int) -> dict:
    return {"metadata": {"namespace": "bench", "name": f"svc-{i}"},
            "spec": {"type": "ClusterIP", "clusterIP": f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


def endpoint_slice(i: int, generation: int = 0) -> dict:
    base = i * ENDPOINTS + generation
    return {"metadata": {"namespace": "bench", "name": f"svc-{i}-abc",
                         "labels": {"kubernetes.io/service-name": f"svc-{i}"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.{128 + (base + e) // 65536}.{(base + e) // 256 % 256}.{(base + e) % 256}"],
                           "conditions": {"ready": True}, "nodeName": f"node-{e % 3}"}
                          for e in range(ENDPOINTS)]}


class Namespace:
    """A throwaway network namespace."""

    def __init__(self) -> None:
        self.name = f"pk-pbench-{secrets.token_hex(3)}"

    def __enter__(self) -> str:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        return self.name

    def __exit__(self, *exc) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)


class TimedRunner(NftRunner):
    """Records how long each nft transaction took: its own time, as the syncs (less the time
    this process waited for its CPU meanwhile)."""

    def __init__(self, netns: str):
        super().__init__(netns)
        self.nft_seconds: list[float] = []

    async def apply(self, script: str) -> None:
        waited, started = harness.run_queue_seconds(), time.perf_counter()
        await super().apply(script)
        self.nft_seconds.append(time.perf_counter() - started - (harness.run_queue_seconds() - waited))


class OtherCoreBusy:
    """Pin this process to its first CPU and keep a second one busy with a spinning child
    (ours, stopped by its PID at the end): the proxy measured as on a laptop doing other work."""

    def __init__(self) -> None:
        self._saved = harness.usable_cpus()
        self.mine, self.other = harness.server_and_client_cpus()
        self._proc: subprocess.Popen | None = None
        self.load_before = self.load_after = (0.0, 0.0, 0.0)

    def __enter__(self) -> "OtherCoreBusy":
        self.load_before = harness.load_average()
        harness.pin(self.mine)
        if self.other != self.mine:
            self._proc = subprocess.Popen([*harness.taskset(self.other), "sh", "-c", "while :; do :; done"])
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
        os.sched_setaffinity(0, set(self._saved))
        self.load_after = harness.load_average()

    def describe(self) -> str:
        busy = (f"CPU {self.other} kept busy by a spinning process" if self.other != self.mine
                else "one CPU only, nothing else loaded")
        return (f"pinned to CPU {self.mine}, {busy}; 1-minute load {self.load_before[0]:.1f} before, "
                f"{self.load_after[0]:.1f} after")


@dataclass
class SyncRound:
    """One round's figures (seconds for full syncs, milliseconds for partial ones)."""
    apply: float = 0.0
    cold: float = 0.0
    cold_nft: float = 0.0
    resync: float = 0.0
    resync_nft: float = 0.0
    cold_cpu: float = 0.0  # CPU seconds of this process (every thread, user and system)
    resync_cpu: float = 0.0
    added: list[float] | None = None
    changed: list[float] | None = None
    added_cpu: list[float] | None = None  # CPU milliseconds of each partial sync
    changed_cpu: list[float] | None = None
    added_waited: list[float] | None = None  # milliseconds it was runnable while another task held the CPU
    changed_waited: list[float] | None = None
    speed: float = 1.0  # harness.speed() over the round: every time above is scaled by it

    def scaled(self, speed: float) -> "SyncRound":
        """These figures at the yardstick CPU speed (they are CPU-bound: Python and nft's kernel
        work on a pinned CPU; waiting for the CPU is left as measured)."""
        out = SyncRound(speed=speed)
        for name in ("apply", "cold", "cold_nft", "resync", "resync_nft", "cold_cpu", "resync_cpu"):
            setattr(out, name, getattr(self, name) * speed)
        for name in ("added", "changed", "added_cpu", "changed_cpu"):
            values = getattr(self, name)
            setattr(out, name, None if values is None else [v * speed for v in values])
        out.added_waited, out.changed_waited = self.added_waited, self.changed_waited
        return out


async def _sync_round(count: int, samples: int) -> SyncRound:
    """One round's figures: the syncs' own time (wall time less the time this process waited
    for its CPU while another task held it: what else the machine runs, which no re-run
    repeats; shown beside the partial syncs) at the yardstick CPU speed (harness.speed before
    and after the round: this guest's CPU speed drifts by itself, ~20% within minutes)."""
    speed_before = harness.speed()
    figures = SyncRound()
    with Namespace() as netns:
        tracker = ChangeTracker("node-0")
        runner = TimedRunner(netns)
        backend = NftablesBackend(NftablesConfig(node_name="node-0"), runner)
        try:
            for i in range(count):
                tracker.on_service(None, service(i))
                tracker.on_slice(endpoint_slice(i))
            waited, started = harness.run_queue_seconds(), time.perf_counter()
            result = tracker.apply()
            figures.apply = time.perf_counter() - started - (harness.run_queue_seconds() - waited)
            for attr in ("cold", "resync"):
                backend.needs_full_sync = True
                waited = harness.run_queue_seconds()
                cpu, started = time.process_time(), time.perf_counter()
                await backend.sync(tracker.services, tracker.endpoints, result)
                # its own time: not the time it waited for its CPU while another task held it
                setattr(figures, attr, time.perf_counter() - started - (harness.run_queue_seconds() - waited))
                setattr(figures, attr + "_cpu", time.process_time() - cpu)
                keep_out_of_collections()  # what the proxier does after a full sync
                setattr(figures, attr + "_nft", runner.nft_seconds[-1])
            if samples:
                figures.added, figures.changed, figures.added_cpu, figures.changed_cpu = [], [], [], []
                figures.added_waited, figures.changed_waited = [], []

            async def timed(wall: list[float], cpu: list[float], waited: list[float]) -> None:
                waited_before = harness.run_queue_seconds()
                cpu_started, started = time.process_time(), time.perf_counter()
                await backend.sync(tracker.services, tracker.endpoints, tracker.apply())
                elapsed, queued = time.perf_counter() - started, harness.run_queue_seconds() - waited_before
                wall.append((elapsed - queued) * 1000)  # its own time, as for the full syncs
                cpu.append((time.process_time() - cpu_started) * 1000)
                waited.append(queued * 1000)

            for k in range(samples):
                new = count + k
                tracker.on_service(None, service(new))
                tracker.on_slice(endpoint_slice(new))
                await timed(figures.added, figures.added_cpu, figures.added_waited)
                tracker.on_slice(endpoint_slice(k, generation=count * ENDPOINTS + k))
                await timed(figures.changed, figures.changed_cpu, figures.changed_waited)
        finally:
            await backend.stop()
    del tracker, backend
    gc.unfreeze()  # (this round's record goes; the next round starts clean)
    gc.collect()
    return figures.scaled((speed_before + harness.speed()) / 2)


def sync_rows(count: int, rounds: list[SyncRound]) -> list[harness.Row]:
    """The harness's rows for `rounds` of one size: medians over rounds with their min and max
    (partial syncs: the median over rounds of each round's median and p99)."""
    label = f"{count:,} Services x {ENDPOINTS} endpoints"
    goal = FULL_GOAL_S if count >= 10_000 else None
    rows = []
    for attr, how in (("cold", "cold"), ("resync", "re-sync over its own table")):
        totals = harness.spread([getattr(r, attr) for r in rounds])
        nft = statistics.median(getattr(r, attr + "_nft") for r in rounds)
        cpu = statistics.median(getattr(r, attr + "_cpu") for r in rounds)
        note = f"nft {nft:.2f} s, generating {totals.median - nft:.2f} s; CPU {cpu:.2f} s; " \
               f"at the yardstick CPU speed (this run: {statistics.median(r.speed for r in rounds):.2f}x)"
        if attr == "cold":
            note += f"; tracker apply before it {statistics.median(r.apply for r in rounds):.2f} s"
        rows.append(harness.spread_row(f"proxy full sync, {label} ({how})", totals, "s", goal=goal, higher=False,
                                       note=note))
    if rounds[0].added is None:
        return rows
    for attr, what in (("added", "add one Service"), ("changed", "change one Service's endpoints")):
        per_round = [getattr(r, attr) for r in rounds]
        pooled = [v for values in per_round for v in values]
        cpu_pooled = [v for r in rounds for v in (getattr(r, attr + "_cpu") or [0.0])]
        waited_pooled = [v for r in rounds for v in (getattr(r, attr + "_waited") or [0.0])]
        for stat, goal, figure in (("median", PARTIAL_GOAL_MS, statistics.median),
                                   ("p99", PARTIAL_P99_GOAL_MS, lambda v: harness.percentile(v, 99))):
            by_round = harness.spread([figure(values) for values in per_round])
            anchor = KUBE_PROXY_ADD_ONE if attr == "added" and stat == "median" else ""
            # the CPU time at the same percentile: a wall time far above it was spent waiting for the CPU
            rows.append(harness.spread_row(
                f"proxy partial sync at {label}: {what}, {stat}", by_round, "ms", goal=goal, higher=False,
                anchor=anchor, note=f"the median of {len(rounds)} rounds' {stat}s; over all {len(pooled)} samples "
                                    f"{figure(pooled):.0f} ms, CPU {figure(cpu_pooled):.0f} ms; besides, waiting for the "
                                    f"CPU {figure(waited_pooled):.0f} ms"))
    return rows


# ---- the peer: kube-proxy's layout of the same table --------------------------------------

def kube_proxy_layout(count: int, first: int = 0, table: str = "ip kp") -> list[str]:
    """kube-proxy's nftables layout for services first..first+count: a service chain with an
    anonymous `numgen random mod N vmap` to one chain per endpoint (hairpin mark + DNAT)."""
    lines = []
    if first == 0:
        lines += [f"add table {table}",
                  f"add map {table} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}",
                  f"add chain {table} mark-for-masquerade",
                  f"add rule {table} mark-for-masquerade mark set mark or 0x4000",
                  f"add chain {table} services",
                  f"add rule {table} services ip daddr . meta l4proto . th dport vmap @service-ips",
                  f"add chain {table} nat-prerouting {{ type nat hook prerouting priority dstnat ; }}",
                  f"add rule {table} nat-prerouting jump services"]
    tracker = ChangeTracker("node-0")
    for i in range(first, first + count):
        tracker.on_service(None, service(i))
        tracker.on_slice(endpoint_slice(i))
    tracker.apply()
    for spn, svc in tracker.services.items():
        chain = f"service-{chain_base(svc)}"
        eps = tracker.endpoints[spn]
        ep_chains = [f"endpoint-{chain_base(svc)}__{ep.ip}/{ep.port}" for ep in eps]
        lines.append(f"add chain {table} {chain}")
        lines += [f"add chain {table} {name}" for name in ep_chains]
        lines.append(f"add rule {table} {chain} ip daddr {svc.cluster_ip} tcp dport 80 "
                     f"ip saddr != 10.244.0.0/16 jump mark-for-masquerade")
        vmap = ", ".join(f"{n} : goto {name}" for n, name in enumerate(ep_chains))
        lines.append(f"add rule {table} {chain} numgen random mod {len(eps)} vmap {{ {vmap} }}")
        for ep, name in zip(eps, ep_chains):
            lines.append(f"add rule {table} {name} ip saddr {ep.ip} jump mark-for-masquerade")
            lines.append(f"add rule {table} {name} meta l4proto tcp dnat to {ep.ip}:{ep.port}")
        lines.append(f"add element {table} service-ips {{ {svc.cluster_ip} . tcp . 80 : goto {chain} }}")
    return lines


async def _kube_proxy_peer(count: int) -> list[harness.Row]:
    with Namespace() as netns:
        runner = NftRunner(netns)
        script = "\n".join(kube_proxy_layout(count)) + "\n"
        started = time.perf_counter()
        await runner.apply(script)
        full = time.perf_counter() - started
        one = "\n".join(kube_proxy_layout(1, first=count)) + "\n"
        started = time.perf_counter()
        await runner.apply(one)
        add_one = (time.perf_counter() - started) * 1000
        runner.close()
    label = f"{count:,} Services x {ENDPOINTS} endpoints"
    return [harness.Row(f"peer: kube-proxy's layout, nft of {label}", full, "s", FULL_GOAL_S, higher=False,
                        note="one run"),
            harness.Row(f"peer: kube-proxy's layout, nft adding one Service at {count:,}", add_one, "ms",
                        PARTIAL_GOAL_MS, higher=False, note="one run")]


def sync(args) -> list:
    """Rounds of the 1,000 and 10,000 Service syncs (interleaved), then the peer, all with the
    other core busy, under the machine's benchmark lock."""
    async def run() -> list:
        small, large = [], []
        for _ in range(args.sync_rounds):
            small.append(await _sync_round(1_000, 0))
            large.append(await _sync_round(10_000, args.samples))
        rows = sync_rows(1_000, small) + sync_rows(10_000, large)
        if not args.skip_peer:
            rows += await _kube_proxy_peer(10_000)
        return rows

    with machine_lock(), OtherCoreBusy() as busy:
        rows = asyncio.run(run())
    return rows + [f"proxy sync: {busy.describe()}"]


# ---- a cluster for the traffic measurements -------------------------------------------------

CLUSTER_NAME = "pkbench"
WAIT = 60.0
HAPROXY_PORT = 18080
MODE_FLAGS = ("--mode=", "--proxy-mode=")
THROUGHPUT_GOALS = {"nftables": ("direct", 0.95), "userspace": ("haproxy", 0.5)}
GO_USERSPACE_ANCHOR = 0.36  # the old Go userspace proxy: 36% of direct (anchors-perf.md)
PROGRAMMING_P99_GOAL_MS = 200.0
KUBE_PROXY_PROGRAMMING_P50 = (("kube-proxy p50", 1500.0),)

BENCH_OBJECTS = [
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"},
     "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nginx"}},
              "template": {"metadata": {"labels": {"app": "nginx"}},
                           "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                                    "ports": [{"containerPort": 80}]}]}}}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx"},
     "spec": {"selector": {"app": "nginx"}, "ports": [{"port": 80}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "latency"},
     "spec": {"selector": {"app": "latency"}, "ports": [{"port": 80, "targetPort": 5678}]}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "labels": {"app": "client"}},
     "spec": {"terminationGracePeriodSeconds": 1,
              # wrk and curl: an image outside the catalog runs with this machine's /usr (busybox holds neither)
              "containers": [{"name": "client", "image": "debian:bookworm-slim", "command": ["sleep", "86400"]}]}},
]


class ModeUnavailable(RuntimeError):
    """The proxy pods of a mode do not run, or its rules do not answer."""


def until(check, what: str, timeout: float = WAIT, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise ModeUnavailable(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class DataplaneCluster:
    """`pocketkube up --name pkbench` (1 node, or `nodes`) with one nginx pod behind a Service
    and a busybox client pod, held under the machine's e2e lock and taken down at the end."""

    def __init__(self, args, nodes: int = 1):
        self.args = args
        self.nodes = nodes
        self.work = tempfile.mkdtemp(prefix="pk-bench-")
        self.cluster = BenchCluster(CLUSTER_NAME, nodes, self.work, args.machine_timeout)
        self.net = network.ClusterNetwork(CLUSTER_NAME, nodes)
        self.node = self.net.node(1)
        self._lock = None

    def __enter__(self) -> "DataplaneCluster":
        self._lock = machine_lock()
        self._lock.__enter__()
        try:
            self.cluster.up()
            self.net = self.cluster.record().network  # the ranges `up` chose (another cluster may hold the first)
            self.node = self.net.node(1)
            self.kubectl("apply", "-f", "-", input="\n".join(json.dumps(o) for o in BENCH_OBJECTS))
            self.nginx_ip = self._ready_pod("app=nginx")["status"]["podIP"]
            self._ready_pod("app=client")
            self.service_ip = self.kubectl_json("get", "svc", "nginx")["spec"]["clusterIP"]
            self.latency_ip = self.kubectl_json("get", "svc", "latency")["spec"]["clusterIP"]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.cluster.down()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
            self._lock.__exit__(None, None, None)

    def kubectl(self, *args: str, input: str | None = None) -> str:
        cp = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, timeout=60,
                            env=self.cluster.env)
        if cp.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {cp.stderr.strip()}")
        return cp.stdout

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def _ready_pod(self, selector: str) -> dict:
        def ready():
            items = self.kubectl_json("get", "pods", "-l", selector)["items"]
            return next((p for p in items if running_and_ready(p)), None)
        return until(ready, f"a Ready pod with {selector}")

    def client_argv(self, *argv: str) -> list[str]:
        """A command run in the client pod (`kubectl exec`): wrk, curl, the poller."""
        return ["kubectl", "exec", "client", "--", *argv]

    def in_client(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(self.client_argv(*argv), capture_output=True, text=True, timeout=timeout,
                              env=self.cluster.env)

    def answers(self, url: str) -> bool:
        return self.in_client("curl", "-s", "-o", "/dev/null", "-m", "2", url).returncode == 0

    def switch_mode(self, mode: str) -> None:
        """Edit the kube-proxy DaemonSet's mode argument, wait for its rollout and for this
        mode's rules to answer (userspace: the Service address on the node's pk-svc)."""
        ds = self.kubectl_json("get", "daemonset", "kube-proxy", "-n", "kube-system")
        args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
        index, flag = next((i, f) for i, a in enumerate(args) for f in MODE_FLAGS if a.startswith(f))
        if args[index] != flag + mode:
            patch = [{"op": "replace", "path": f"/spec/template/spec/containers/0/args/{index}", "value": flag + mode}]
            self.kubectl("patch", "daemonset", "kube-proxy", "-n", "kube-system", "--type=json", "-p", json.dumps(patch))

        def rolled_out() -> bool:
            pods = self.kubectl_json("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-proxy")["items"]
            for p in pods:
                for st in p["status"].get("containerStatuses") or []:
                    if flag + mode in p["spec"]["containers"][0]["args"] and (
                            st.get("restartCount") or "terminated" in (st.get("state") or {})):
                        raise ModeUnavailable(f"kube-proxy --mode {mode} exits")
            return len(pods) == self.nodes and all(
                flag + mode in p["spec"]["containers"][0]["args"] and not p["metadata"].get("deletionTimestamp")
                and running_and_ready(p) for p in pods)
        until(rolled_out, f"kube-proxy running in {mode} mode")

        def relay_address() -> bool:
            cp = subprocess.run(["ip", "-n", self.node.netns, "-o", "addr", "show"], capture_output=True, text=True)
            return f"inet {self.service_ip}/32" in cp.stdout
        until(lambda: (relay_address() == (mode == "userspace")) and self.answers(f"http://{self.service_ip}/"),
              f"the {mode} rules answering")


# ---- throughput: wrk against direct, nftables, userspace and haproxy -------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass
class WrkResult:
    rps: float
    p99_ms: float
    errors: str = ""
    speed: float = 1.0  # harness.speed() over the run

    @property
    def rps_at_yardstick(self) -> float:
        """Requests/s at the yardstick CPU speed: wrk, nginx and the kernel's path are CPU-bound,
        and this guest's CPU speed drifts by itself (ADR 0012); ratios of a round need no scaling."""
        return self.rps / self.speed


def parse_wrk(out: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+([0-9.]+)(us|ms|s)\s*$", out, re.M)
    if not rps or not p99:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    errors = "; ".join(m.group(0).strip() for m in re.finditer(r"^\s*(Socket errors:.*|Non-2xx.*)$", out, re.M))
    return WrkResult(float(rps.group(1)), float(p99.group(1)) * _UNITS[p99.group(2)], errors)


class Haproxy:
    """Debian's haproxy in the node's namespace, TCP mode, one thread (as the userspace relay
    is one asyncio thread), balancing to the nginx pod: the userspace peer."""

    def __init__(self, dc: DataplaneCluster):
        self.dc = dc
        self.config = os.path.join(dc.work, "haproxy.cfg")
        self.proc: subprocess.Popen | None = None
        self.url = f"http://{dc.node.pod_gateway}:{HAPROXY_PORT}/"

    def __enter__(self) -> "Haproxy":
        with open(self.config, "w") as f:
            f.write("global\n  nbthread 1\n  maxconn 4096\n"
                    "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n"
                    f"listen nginx\n  bind {self.dc.node.pod_gateway}:{HAPROXY_PORT}\n  balance roundrobin\n"
                    f"  server nginx-0 {self.dc.nginx_ip}:80\n")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.dc.node.netns, "haproxy", "-db", "-f", self.config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        until(lambda: self.proc.poll() is not None or self.dc.answers(self.url), "haproxy answering")
        if self.proc.poll() is not None:
            raise RuntimeError(f"haproxy exited: {self.proc.stderr.read().decode()}")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # our own child, by its PID (ip netns exec execs haproxy)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_wrk(dc: DataplaneCluster, url: str, args, host: str | None = None) -> WrkResult:
    """wrk from the client pod (--threads, --connections, --duration; `host`: a Host header),
    with the CPU speed over the run."""
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    if host:
        argv += ["-H", f"Host: {host}"]
    before = harness.speed()
    cp = dc.in_client(*argv, url, timeout=args.duration + 60)
    if cp.returncode != 0:
        raise RuntimeError(f"wrk failed: {cp.stderr.strip()}")
    result = parse_wrk(cp.stdout)
    result.speed = (before + harness.speed()) / 2
    return result


def throughput(args) -> list:
    """wrk from the client pod, the same threads, connections and duration for every target,
    all on the same nginx pod, in interleaved rounds (--rounds): direct, nftables, haproxy in
    the nftables mode; then direct, userspace, haproxy in the userspace mode. Each ratio is the
    median of the rounds' ratios (each round's targets ran seconds apart), with min and max."""
    if shutil.which("wrk") is None or shutil.which("haproxy") is None:
        sys.exit("the throughput part needs wrk and haproxy (scripts/setup installs them)")
    label = f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s"
    rows: list = []
    with DataplaneCluster(args) as dc:
        direct_url, service_url = f"http://{dc.nginx_ip}:80/", f"http://{dc.service_ip}:80/"

        def wrk(url: str):
            return lambda _round: run_wrk(dc, url, args)

        # explicit ports: the client image has no /etc/services for wrk to look "http" up in
        dc.switch_mode("nftables")
        with Haproxy(dc) as haproxy:
            kernel = harness.interleave({"direct": wrk(direct_url), "nftables": wrk(service_url),
                                         "haproxy": wrk(haproxy.url)}, rounds=args.rounds)
        try:
            dc.switch_mode("userspace")
            with Haproxy(dc) as haproxy:
                user = harness.interleave({"direct": wrk(direct_url), "userspace": wrk(service_url),
                                           "haproxy": wrk(haproxy.url)}, rounds=args.rounds)
        except ModeUnavailable as exc:
            user = None
            rows.append(harness.Row("ClusterIP via userspace / haproxy", None, "x", 0.5,
                                    note=f"mode unavailable: {exc}"))

    def rps(runs: list[WrkResult]) -> list[float]:
        return [r.rps for r in runs]

    def summary(name: str, runs: list[WrkResult]) -> str:
        errors = sorted({r.errors for r in runs if r.errors})
        return (f"{name}: {statistics.median(rps(runs)):.0f} req/s, p99 {statistics.median(r.p99_ms for r in runs):.2f} ms"
                + (f" [{'; '.join(errors)}]" if errors else ""))

    rows.insert(0, harness.spread_row(f"direct pod IP, the physical limit ({label}), at the yardstick CPU speed",
                                      harness.spread([r.rps_at_yardstick for r in kernel["direct"]]), "req/s"))
    rows.insert(1, harness.ratio_row("ClusterIP via nftables / direct",
                                     harness.ratio(rps(kernel["nftables"]), rps(kernel["direct"])), goal=0.95,
                                     limit=1.0))  # nothing is faster than the direct path: above it, wrk was measured
    rows.insert(2, harness.ratio_row("peer: haproxy (Debian, TCP mode, 1 thread) / direct",
                                     harness.ratio(rps(kernel["haproxy"]), rps(kernel["direct"]))))
    notes = [f"throughput, {args.rounds} interleaved rounds of {label} from a client pod, nftables mode: "
             + "; ".join(summary(n, kernel[n]) for n in ("direct", "nftables", "haproxy"))]
    if user is not None:
        rows.append(harness.ratio_row("ClusterIP via userspace / haproxy",
                                      harness.ratio(rps(user["userspace"]), rps(user["haproxy"])), goal=0.5))
        rows.append(harness.ratio_row("ClusterIP via userspace / direct",
                                      harness.ratio(rps(user["userspace"]), rps(user["direct"])),
                                      anchor=f"the Go userspace proxy gave {GO_USERSPACE_ANCHOR:.2f}x direct"))
        notes.append("throughput, userspace mode: " + "; ".join(summary(n, user[n])
                                                                for n in ("direct", "userspace", "haproxy")))
    notes.append("a ratio above 1 against direct means wrk, not the data plane, was the bottleneck")
    return rows + notes


# ---- network programming latency: pod Ready -> traffic through the ClusterIP reaches it -------

POLLER = """
import socket, sys, time
ip, port, expect, deadline = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), time.monotonic() + float(sys.argv[4])
print("polling", flush=True)
while time.monotonic() < deadline:
    try:
        with socket.create_connection((ip, port), timeout=0.5) as s:
            s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        if expect in data:
            print(repr(time.monotonic()), flush=True)
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.001)
print("timeout", flush=True)
"""


def latency_pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "latency", BENCH_LABEL: "1"}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "echo", "image": "hashicorp/http-echo", "args": [f"-text={name}"],
                                     "readinessProbe": {"tcpSocket": {"port": 5678}, "periodSeconds": 1}}]}}


async def _programming_latencies(dc: DataplaneCluster, mode: str, samples: int) -> list[float]:
    """Seconds from the watch event that shows each pod Ready to the first answer from it
    through the Service's ClusterIP, seen by a client polling every millisecond from the
    client pod (both clocks are the machine's CLOCK_MONOTONIC)."""
    client = api.from_kubeconfig(dc.cluster.kubeconfig, field_manager="pocketkube-bench")
    timer = PodTimer(client, "default")
    latencies = []
    try:
        await timer.start()
        for i in range(samples):
            name = f"latency-{mode}-{i}"
            poller = subprocess.Popen(dc.client_argv("python3", "-c", POLLER, dc.latency_ip, "80", name, "30"),
                                      stdout=subprocess.PIPE, text=True, env=dc.cluster.env)
            try:
                assert poller.stdout.readline().strip() == "polling"
                await client.create("v1", "pods", latency_pod(name), "default")
                await timer.wait_for(lambda: name in timer.ready_at, f"{name} Ready", timeout=WAIT)
                reached = await asyncio.to_thread(poller.stdout.readline)
                if reached.strip() == "timeout":
                    raise RuntimeError(f"{name} was not reached through {dc.latency_ip} within 30 s of Ready")
                latencies.append(float(reached) - timer.ready_at[name])
            finally:
                if poller.poll() is None:
                    poller.kill()  # our own child
                poller.wait()
            await client.delete("v1", "pods", name, "default")
            await timer.wait_for(lambda: name not in timer.present, f"{name} deleted", timeout=WAIT)
    finally:
        await timer.stop()
        await client.close()
    return latencies


def latency(args) -> list[Row]:
    rows: list = []
    with DataplaneCluster(args) as dc:
        for mode in ("nftables", "userspace"):
            try:
                dc.switch_mode(mode)
            except ModeUnavailable as exc:
                rows.append(harness.Row(f"programming latency, {mode}", None, "ms", note=f"mode unavailable: {exc}"))
                continue
            ms = [s * 1000 for s in asyncio.run(_programming_latencies(dc, mode, args.latency_samples))]
            label = f"programming latency, {mode}: pod Ready -> reached via ClusterIP"
            rows.append(Row(f"{label}, p50", statistics.median(ms), "ms", None, KUBE_PROXY_PROGRAMMING_P50))
            rows.append(Row(f"{label}, p99", percentile(ms, 99), "ms", PROGRAMMING_P99_GOAL_MS,
                            detail=f"({len(ms)} samples, max {max(ms):.0f})"))
    return rows


MEASUREMENTS = [sync, throughput, latency]


def main() -> None:
    p = argparse.ArgumentParser(description="pocketkube service data-plane benchmarks (root)")
    p.add_argument("--samples", type=int, default=20, help="partial syncs measured of each kind, per round")
    p.add_argument("--sync-rounds", type=int, default=11,
                   help="rounds of the sync part (~6 s each; 11: the min–max holds a re-run's median, "
                        "harness.REROUND_AGREEMENT)")
    p.add_argument("--skip-peer", action="store_true", help="skip kube-proxy's layout (it takes ~20 s)")
    p.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    p.add_argument("--threads", type=int, default=1, help="wrk threads, the same for every target")
    p.add_argument("--connections", type=int, default=16, help="wrk connections, the same for every target")
    p.add_argument("--latency-samples", type=int, default=30, help="pods timed per mode (programming latency)")
    p.add_argument("--machine-timeout", type=float, default=600.0,
                   help="seconds to wait while another cluster holds the machine's ranges")
    p.add_argument("--only", choices=[m.__name__ for m in MEASUREMENTS], help="run one part")
    harness.add_arguments(p)  # --json, and --rounds for the throughput part
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/dataplane.py needs root: it creates network namespaces and nftables tables in them")
    run_measurements("dataplane", MEASUREMENTS, args)


if __name__ == "__main__":
    main()
