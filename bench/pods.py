"""Node benchmarks (root: real clusters), each figure printed beside its goal in one table.

One function per measurement (MEASUREMENTS); each brings up its own cluster with a unique
name (`bench-<6 hex>`, a private kubeconfig), returns table rows, and takes the cluster down
at the end, even when it fails.

- `pocketkube up` to Ready: wall time of `pocketkube up --nodes N` (network, API server,
  agents, every node Ready, kubeconfig merged), median of --runs runs, for 1 and 2 nodes.
  Goal 3 s; anchors to a working cluster: k3d 20 s, kind 33 s, minikube 51 s.
- Pod startup latency, created -> Running and Ready: from just before the POST of a pod to
  the watch event that shows it Running with Ready=True (p50, p99), for images
  registry.k8s.io/pause and nginx, one pod at a time (--samples, default 30; each pod is
  deleted, and gone, before the next) and 50 pods created at once: --rounds rounds (default
  9) of each image, pause and nginx rounds interleaved, each round's p50 and p99 over its 50
  pods one figure; the rows give the median of the rounds with min and max, and the verdict
  judges every round (ADR 0012); each burst starts on a machine at rest (harness.settled: the
  previous round's teardown, the kernel freeing 50 network namespaces, is over). One warm-up pod per cluster is not counted (it is shown
  on its own line), and the bench's client opens its connections before the bursts: it needs
  one TLS connection per request in flight (kubectl multiplexes its requests over one HTTP/2
  connection), and 50 handshakes at once are the client's cost, not the pods'. Goal p99 <
  500 ms; anchor: Kubernetes' pod startup SLO, 5 s.
- Beside the bursts, what this host's kernel charges for a sandbox's start: a child that
  unshares new network, mount, IPC and UTS namespaces and exits (median ms of 30, before and
  after the bursts). harness.speed's Python loop does not see the kernel's speed, which drifts
  on its own here: one pod at a time took twice as long (p99 55 -> 105 ms) in two runs three
  hours apart at the same Python speed (0.39-0.42x, 0.35-0.39x). A burst is kernel and Python
  work both, so two runs are comparable only where both speeds are alike.
- Container root assembly: what building a container's root from its image costs
  (nsinit.build_root: the writable tmpfs, the held paths, /etc, /dev, /proc, /sys, the
  image's own mounts; each container start does it), timed
  in a forked child in a private mount namespace of its own (nothing else of a pod: no
  network, no holder), --samples times per image (p50, p99). No cluster. It is part of the
  pod startup latency above, whose goal it shares.
- Memory: sum of VmRSS of the API server's processes and of the agent's (the agent and its
  helpers, pods excluded), with none of our pods (the add-ons run) and with 50 idle pods
  (pause, then nginx); separately the pods' own processes (holder and containers; their PSS
  beside, since most of their RSS is shared). Goal: control plane (server + agent) < 200 MB.

- With `--peer GIT-REF` (e.g. main): 50 pause pods at once, p99, this checkout against that
  commit's code (a detached git worktree, run with the same interpreter), side by side in one
  run: --pairs pairs of fresh clusters, this checkout's then the peer's (A B A B ...), each
  pair's ratio, then their median with min and max.

    sudo .venv/bin/python -m bench.pods [--runs 3] [--samples 30] [--rounds 9] [--only NAME] [--peer main]

Only one cluster runs at a time on a machine: when another holds the address ranges, the
bench waits for it (at most --machine-timeout seconds) instead of failing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench import harness  # noqa: E402
from bench.harness import E2E_LOCK, machine_lock, percentile  # noqa: E402,F401  (others import them from here too)
from pocketkube.cli import up as up_cmd  # noqa: E402
from pocketkube.core import client as api  # noqa: E402
from pocketkube.node import images, network, nsinit  # noqa: E402

UP_GOAL_SECONDS = 3.0
UP_ANCHORS = (("k3d", 20.0), ("kind", 33.0), ("minikube", 51.0))
POD_P99_GOAL_MS = 500.0
POD_ANCHORS = (("Kubernetes SLO", 5000.0),)
CONTROL_PLANE_GOAL_MB = 200.0
IMAGES = ("registry.k8s.io/pause", "nginx")
BURST = 50
BENCH_LABEL = "pocketkube-bench"
BUSY_MESSAGES = ("holds the ranges", "already in use on this machine")
BUSY_RETRY_SECONDS = 30.0
WAIT_SECONDS = 120.0


# ---- the table -----------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a figure, and its goal when it has one (lower is better)."""
    what: str
    value: float
    unit: str
    goal: float | None = None
    anchors: tuple[tuple[str, float], ...] = ()
    detail: str = ""

    def render(self) -> str:
        text = f"{self.what:<58} {self.value:>9.{self._decimals()}f} {self.unit:<3}"
        if self.detail:
            text += f" {self.detail}"
        if self.goal is not None:
            ratio = self.goal / self.value if self.value else float("inf")
            verdict = "meets goal" if ratio >= 1 else "MISSES goal"
            text += f"  goal < {self.goal:g} {self.unit}  ratio {ratio:5.2f}x  {verdict}"
        if self.anchors:
            text += "  anchors: " + ", ".join(f"{name} {value:g} {self.unit} ({value / self.value:.0f}x)"
                                             for name, value in self.anchors)
        return text

    def _decimals(self) -> int:
        return 2 if self.unit in ("s", "x") else 1 if self.unit == "MB" else 0

    def to_row(self) -> harness.Row:
        return harness.Row(self.what, self.value, self.unit, self.goal, higher=False,
                           anchor=", ".join(f"{name} {value:g} {self.unit}" for name, value in self.anchors),
                           note=self.detail)


# ---- clusters ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, env: dict, root: str = ROOT) -> subprocess.CompletedProcess:
    """The CLI of the checkout at `root` (this one, or --peer's): its `up` starts that checkout's
    server and agents."""
    return subprocess.run([sys.executable, "-m", "pocketkube.cli.main", *args], capture_output=True, text=True,
                          env=env, cwd=root, timeout=180)


@dataclass
class BenchCluster:
    name: str
    nodes: int
    work: str  # private dir: kubeconfig and data dir
    machine_timeout: float
    root: str = ROOT  # the checkout whose code runs the cluster

    @property
    def env(self) -> dict:
        return {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONPATH": self.root}

    @property
    def kubeconfig(self) -> str:
        return os.path.join(self.work, "kubeconfig")

    def up(self) -> float:
        """`pocketkube up` (the real CLI); returns its wall time in seconds. Waits while another
        cluster holds the machine's ranges."""
        deadline = time.monotonic() + self.machine_timeout
        while True:
            started = time.monotonic()
            cp = _cli("up", "--name", self.name, "--nodes", str(self.nodes), "--port", str(_free_port()),
                      "--data-dir", os.path.join(self.work, "data"), env=self.env, root=self.root)
            elapsed = time.monotonic() - started
            if cp.returncode == 0:
                return elapsed
            if not any(m in cp.stderr for m in BUSY_MESSAGES) or time.monotonic() > deadline:
                raise RuntimeError(f"pocketkube up --name {self.name} failed:\n{cp.stdout}\n{cp.stderr}")
            print(f"  (another cluster runs here: {cp.stderr.strip()}; retrying in {BUSY_RETRY_SECONDS:g}s)",
                  file=sys.stderr, flush=True)
            time.sleep(BUSY_RETRY_SECONDS)

    def down(self) -> None:
        """`pocketkube down`; if it fails or leaves anything, tear down directly."""
        cp = _cli("down", "--name", self.name, env=self.env, root=self.root)
        if cp.returncode != 0 or up_cmd.leftovers(self.name):
            problems = up_cmd.teardown(self.name, self.kubeconfig)
            print(f"  WARNING: pocketkube down --name {self.name} failed ({cp.stdout}{cp.stderr}); "
                  f"teardown: {problems or 'done'}", file=sys.stderr)

    def record(self) -> up_cmd.ClusterRecord:
        record = up_cmd.ClusterRecord.load(self.name)
        if record is None:
            raise RuntimeError(f"cluster {self.name!r} is not running")
        return record


@contextlib.contextmanager
def bench_cluster(args, nodes: int = 1, root: str = ROOT):
    """A cluster of our own (run by the checkout at `root`), up for the block and down after
    it, whatever happens."""
    with machine_lock():
        work = tempfile.mkdtemp(prefix="pk-bench-")
        cluster = BenchCluster("bench-" + uuid.uuid4().hex[:6], nodes, work, args.machine_timeout, root)
        try:
            yield cluster
        finally:
            try:
                cluster.down()
            finally:
                shutil.rmtree(work, ignore_errors=True)


# ---- `pocketkube up` to Ready --------------------------------------------------------------


def measure_up_to_ready(args) -> list[Row]:
    rows = []
    for nodes in (1, 2):
        samples = []
        for _ in range(args.runs):
            with bench_cluster(args, nodes) as cluster:
                samples.append(cluster.up())
        rows.append(Row(f"pocketkube up to Ready, {nodes} node{'s' if nodes > 1 else ''} "
                        f"(median of {args.runs})", statistics.median(samples), "s", UP_GOAL_SECONDS,
                        UP_ANCHORS, detail=f"(min {min(samples):.2f})"))
    return rows


# ---- pods ----------------------------------------------------------------------------------


def pod_manifest(name: str, image: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {BENCH_LABEL: "1"}},
            "spec": {"containers": [{"name": "main", "image": image}], "terminationGracePeriodSeconds": 2}}


def running_and_ready(pod: dict) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


class PodTimer:
    """Watches the bench's pods from before they are created; `ready_at[name]` is when the
    first event showing the pod Running and Ready arrived (time.monotonic)."""

    def __init__(self, client: api.Client, namespace: str):
        self.client = client
        self.namespace = namespace
        self.ready_at: dict[str, float] = {}
        self.present: set[str] = set()
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        listed = await self.client.list("v1", "pods", self.namespace, label_selector=f"{BENCH_LABEL}=1")
        self.present = {p["metadata"]["name"] for p in listed["items"]}
        started = asyncio.Event()
        self._task = asyncio.create_task(self._watch(listed["metadata"]["resourceVersion"], started))
        await started.wait()

    async def _watch(self, resource_version: str, started: asyncio.Event) -> None:
        stream = self.client.watch("v1", "pods", self.namespace, resource_version=resource_version,
                                   label_selector=f"{BENCH_LABEL}=1", timeout_seconds=3600)
        started.set()  # the request goes out on the first iteration, before any pod is created
        async for kind, pod in stream:
            now = time.monotonic()
            name = (pod.get("metadata") or {}).get("name")
            if kind == "BOOKMARK" or name is None:
                continue
            if kind == "DELETED":
                self.present.discard(name)
            else:
                self.present.add(name)
                if name not in self.ready_at and running_and_ready(pod):
                    self.ready_at[name] = now
            self._changed.set()

    async def wait_for(self, done, what: str, timeout: float = WAIT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if self._task and self._task.done():
                raise RuntimeError(f"the pod watch ended: {self._task.exception()!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def _wait_for_admission_prerequisites(client: api.Client, namespace: str) -> None:
    """The namespace's default ServiceAccount and kube-root-ca.crt exist (controllers make
    them just after start; a pod created earlier is refused or waits for its token volume)."""
    deadline = time.monotonic() + WAIT_SECONDS
    for resource, name in (("serviceaccounts", "default"), ("configmaps", "kube-root-ca.crt")):
        while True:
            try:
                await client.get("v1", resource, name, namespace)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def _create_timed(client: api.Client, namespace: str, names: list[str], image: str) -> dict[str, float]:
    """POST the pods all at once; each one's time is taken just before its own POST."""
    posted: dict[str, float] = {}

    async def create(name: str) -> None:
        posted[name] = time.monotonic()
        await client.create("v1", "pods", pod_manifest(name, image), namespace)

    await asyncio.gather(*(create(n) for n in names))
    return posted


async def _open_connections(client: api.Client, namespace: str, count: int) -> None:
    """`count` requests at once, so the client's pool holds that many open connections."""
    await asyncio.gather(*(client.get("v1", "namespaces", namespace) for _ in range(count)))


async def _delete_all(client: api.Client, timer: PodTimer, namespace: str) -> None:
    """Delete the bench's pods and wait until they are gone (not timed)."""
    names = sorted(timer.present)
    results = await asyncio.gather(*(client.delete("v1", "pods", n, namespace) for n in names),
                                   return_exceptions=True)
    for name, result in zip(names, results):
        if isinstance(result, Exception) and getattr(result, "code", None) != 404:
            raise result
    await timer.wait_for(lambda: not timer.present, f"{len(names)} pods to be deleted")


async def _startup_latencies(client: api.Client, timer: PodTimer, namespace: str, image: str,
                             count: int, prefix: str) -> list[float]:
    """Create `count` pods at once; each one's seconds from POST to Running and Ready."""
    names = [f"{prefix}-{i}" for i in range(count)]
    posted = await _create_timed(client, namespace, names, image)
    await timer.wait_for(lambda: all(n in timer.ready_at for n in names),
                         f"{count} {image} pods to be Running and Ready")
    return [timer.ready_at[n] - posted[n] for n in names]


def _short(image: str) -> str:
    return image.rsplit("/", 1)[-1]


def _latency_rows(label: str, samples: list[float]) -> list[Row]:
    ms = [s * 1000 for s in samples]
    return [Row(f"{label}: p50", statistics.median(ms), "ms"),
            Row(f"{label}: p99", percentile(ms, 99), "ms", POD_P99_GOAL_MS, POD_ANCHORS,
                detail=f"(max {max(ms):.0f})")]


async def _pod_startup(cluster: BenchCluster, args) -> list[Row]:
    namespace = "default"
    client = api.from_kubeconfig(cluster.kubeconfig, field_manager="pocketkube-bench")
    timer = PodTimer(client, namespace)
    rows: list[Row] = []
    try:
        await _wait_for_admission_prerequisites(client, namespace)
        await timer.start()
        warm_up = await _startup_latencies(client, timer, namespace, IMAGES[0], 1, "warm-up")
        rows.append(Row("first pod after up (warm-up, not counted below)", warm_up[0] * 1000, "ms"))
        await _delete_all(client, timer, namespace)
        if args.samples:
            for image in IMAGES:
                single = []
                for i in range(args.samples):
                    single += await _startup_latencies(client, timer, namespace, image, 1,
                                                       f"one-{_short(image)}-{i}")
                    await _delete_all(client, timer, namespace)
                rows += _latency_rows(f"pod startup, {_short(image)}, 1 at a time ({len(single)} pods)", single)
        await _open_connections(client, namespace, BURST)
        before = namespace_cost_ms()
        rows += await _burst_rounds(client, timer, namespace, args.rounds)
        await harness.settled()  # the last round's 50 sandboxes freed
        after = namespace_cost_ms()
        rows.append(Row("machine: a process in new network, mount, IPC and UTS namespaces (fork, unshare, "
                        "exit), before the bursts — not ours: what this host's kernel charges for the start of "
                        "a sandbox, beside the CPU speed, to compare runs", before, "ms",
                        detail=f"(after them: {after:.2f} ms; median of {NAMESPACE_SAMPLES})"))
    finally:
        await timer.stop()
        await client.close()
    return rows


async def _burst_rounds(client: api.Client, timer: PodTimer, namespace: str, rounds: int) -> list:
    """`rounds` rounds of BURST pods at once per image, the images interleaved (pause, nginx,
    pause, ...: harness.interleave's order, here inside the client's event loop); each round's
    p50 and p99 is one figure, reported as the median of the rounds with min and max, so that
    Row.verdict judges the goal round by round (ADR 0012). A note lists each round's p99."""
    p50s: dict[str, list[float]] = {image: [] for image in IMAGES}
    p99s: dict[str, list[float]] = {image: [] for image in IMAGES}
    waits: list[float] = []
    for r in range(rounds):
        for image in IMAGES:
            # a burst on a machine at rest: the previous round's teardown (the agent stopping 50
            # pods, the kernel freeing their network namespaces) is over before the next starts
            waits.append(await harness.settled())
            ms = [s * 1000 for s in await _startup_latencies(client, timer, namespace, image, BURST,
                                                             f"burst-{_short(image)}-{r}")]
            await _delete_all(client, timer, namespace)
            p50s[image].append(statistics.median(ms))
            p99s[image].append(percentile(ms, 99))
    rows: list = []
    for image in IMAGES:
        label = f"pod startup, {_short(image)}, {BURST} at once ({rounds} rounds of {BURST})"
        rows.append(harness.spread_row(f"{label}: p50", harness.spread(p50s[image]), "ms"))
        rows.append(harness.spread_row(f"{label}: p99", harness.spread(p99s[image]), "ms", goal=POD_P99_GOAL_MS,
                                       higher=False, anchor=", ".join(f"{n} {v:g} ms" for n, v in POD_ANCHORS)))
        rows.append(f"{_short(image)}, {BURST} at once, p99 by round: "
                    + ", ".join(f"{v:.0f}" for v in p99s[image]) + " ms")
    rows.append("each burst started once the CPUs had been busy less than 15% for 0.25 s (the previous "
                "round's teardown over; harness.settled): waited " + ", ".join(f"{w:.1f}" for w in waits) + " s")
    return rows


async def _burst_latencies(cluster: BenchCluster, args) -> list[float]:
    """--rounds rounds of BURST pause pods created at once (after one warm-up pod): each pod's
    seconds from POST to Running and Ready."""
    namespace = "default"
    client = api.from_kubeconfig(cluster.kubeconfig, field_manager="pocketkube-bench")
    timer = PodTimer(client, namespace)
    samples: list[float] = []
    try:
        await _wait_for_admission_prerequisites(client, namespace)
        await timer.start()
        await _startup_latencies(client, timer, namespace, IMAGES[0], 1, "warm-up")
        await _delete_all(client, timer, namespace)
        await _open_connections(client, namespace, BURST)
        for r in range(args.rounds):
            samples += await _startup_latencies(client, timer, namespace, IMAGES[0], BURST, f"burst-{r}")
            await _delete_all(client, timer, namespace)
    finally:
        await timer.stop()
        await client.close()
    return samples


NAMESPACE_SAMPLES = 30


# forks from a small interpreter of its own: a fork's price grows with the forking process
# (the bench's own, ~100 MB, tripled it)
NAMESPACE_PROBE = f"""
import ctypes, os, statistics, time
libc = ctypes.CDLL(None, use_errno=True)
flags = {nsinit.CLONE_NEWNET | nsinit.CLONE_NEWNS | nsinit.CLONE_NEWIPC | nsinit.CLONE_NEWUTS}
samples = []
for _ in range({NAMESPACE_SAMPLES}):
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.unshare(flags) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    if status:
        raise SystemExit("unshare failed")
    samples.append((time.perf_counter() - started) * 1000)
print(statistics.median(samples))
"""


def namespace_cost_ms() -> float:
    """Median wall milliseconds of a child that unshares new network, mount, IPC and UTS
    namespaces and exits: the kernel's part of every pod sandbox, which harness.speed's Python
    loop does not see (on this host the two drift apart). Each burst round waits for the
    kernel's freeing of them first (harness.settled)."""
    cp = subprocess.run([sys.executable, "-I", "-S", "-c", NAMESPACE_PROBE], capture_output=True, text=True,
                        timeout=120)
    if cp.returncode != 0:
        raise RuntimeError(f"the namespace probe failed: {cp.stderr.strip()}")
    return float(cp.stdout)


@contextlib.contextmanager
def peer_checkout(ref: str):
    """A detached git worktree of `ref` (e.g. main), removed after the block: the code the
    comparison runs beside this checkout's, with the same interpreter and dependencies."""
    path = tempfile.mkdtemp(prefix="pk-bench-peer-")
    os.rmdir(path)
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", path, ref], check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", path], capture_output=True)
        shutil.rmtree(path, ignore_errors=True)


def measure_burst_against_peer(args) -> list[Row]:
    """BURST pause pods at once, p99, this checkout against --peer's commit, side by side in one
    run: harness.interleave over --pairs rounds (this checkout's cluster, then the peer's: A B A B,
    each cluster fresh); the per-round ratio (this / peer) as harness.spread: median, min, max."""
    if not args.peer:
        return []
    rows: list[Row] = []
    with peer_checkout(args.peer) as peer_root:
        peer_commit = subprocess.run(["git", "-C", peer_root, "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip()

        def p99_of(root: str, who: str):
            def run(round_: int) -> float:
                with bench_cluster(args, root=root) as cluster:
                    cluster.up()
                    samples = asyncio.run(_burst_latencies(cluster, args))
                p99 = percentile([s * 1000 for s in samples], 99)
                rows.append(Row(f"round {round_ + 1}: {BURST} pods at once p99, {who}", p99, "ms",
                                detail=f"({len(samples)} pods)"))
                return p99
            return run

        runs = harness.interleave({"this": p99_of(ROOT, "this checkout"),
                                   "peer": p99_of(peer_root, f"{args.peer} ({peer_commit})")}, rounds=args.pairs)
    ratios = harness.spread([a / b for a, b in zip(runs["this"], runs["peer"])], min_rounds=1)
    rows.append(Row(f"{BURST} pods at once p99, this / {args.peer} (median of {ratios.rounds} rounds)",
                    ratios.median, "x", detail=f"(min {ratios.low:.2f}, max {ratios.high:.2f}; "
                                               f"p99 medians {statistics.median(runs['this']):.0f} / "
                                               f"{statistics.median(runs['peer']):.0f} ms)"))
    return rows


def measure_pod_startup(args) -> list[Row]:
    with bench_cluster(args) as cluster:
        cluster.up()
        return asyncio.run(_pod_startup(cluster, args))


# ---- container root assembly ---------------------------------------------------------------

ROOTFS_IMAGES = ("registry.k8s.io/pause", "busybox", "nginx", "luksa/kubia")


def _rootfs_config(work: str, image: str) -> dict:
    """The root config of a container of `image`, as the agent makes it (pods.py `_rootfs`)."""
    pod = {"metadata": {"name": "bench", "namespace": "default", "uid": "bench"}, "spec": {}}
    run_dir, cache = os.path.join(work, "run"), os.path.join(work, "cache")
    resolved = images.resolve(image, None, None, pod, {"name": "c"}, run_dir=run_dir, cache_dir=cache)
    for path, data in resolved.files.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    etc = {"passwd": images.passwd_file(resolved.users), "group": images.group_file(resolved.groups),
           "hosts": "127.0.0.1\tlocalhost\n", "resolv.conf": "nameserver 10.96.0.10\n", "hostname": "bench\n"}
    for sub in ("root", "overlay"):
        os.makedirs(os.path.join(work, sub), exist_ok=True)
    mounts = [{"target": t, "source": s, "readonly": s.startswith(cache), "owned": not s.startswith(cache)}
              for t, s in resolved.mounts.items()]
    return {"root": os.path.join(work, "root"), "overlay_dir": os.path.join(work, "overlay"), "etc": etc,
            "holds": [*images.LIBRARY_DIRS, *resolved.holds], "mounts": mounts, "dirs": ["/"]}


def _assemble_once(config: dict) -> float:
    """Seconds to build the root once, in a forked child whose private mount namespace (and
    every mount in it) ends with it."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        answer = b"error"
        try:
            os.close(read)
            sys_ = nsinit.Syscalls()
            sys_.unshare(nsinit.CLONE_NEWNS)
            sys_.mount(None, "/", None, nsinit.MS_REC | nsinit.MS_PRIVATE)
            started = time.perf_counter()
            nsinit.build_root(sys_, config)
            answer = repr(time.perf_counter() - started).encode()
        finally:
            os.write(write, answer)
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        answer = f.read()
    os.waitpid(pid, 0)
    return float(answer)


def measure_rootfs(args) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="pk-bench-rootfs-") as work:
        for image in ROOTFS_IMAGES:
            config = _rootfs_config(os.path.join(work, _short(image)), image)
            samples = [_assemble_once(config) for _ in range(args.samples)]
            rows += _latency_rows(f"container root assembly, {_short(image)} ({len(samples)} roots)", samples)
    return rows


# ---- memory --------------------------------------------------------------------------------


def _status_kib(pid: int, field: str, path: str = "status") -> int:
    try:
        with open(f"/proc/{pid}/{path}") as f:
            return next((int(line.split()[1]) for line in f if line.startswith(field + ":")), 0)
    except (OSError, ValueError):
        return 0  # gone meanwhile


def vm_rss_mb(pids: set[int]) -> float:
    """Sum of VmRSS of these processes, in MB (10^6 bytes)."""
    return sum(_status_kib(pid, "VmRSS") for pid in pids) * 1024 / 1e6


def pss_mb(pids: set[int]) -> float:
    """Sum of Pss (shared pages divided among their users), in MB: what they cost together."""
    return sum(_status_kib(pid, "Pss", "smaps_rollup") for pid in pids) * 1024 / 1e6


def process_tree(root: int) -> set[int]:
    """`root` and every process below it."""
    return {root} | up_cmd.descendants({root})


def _namespace(pid: int, kind: str) -> str | None:
    """/proc/PID/ns/KIND's identity (`mnt:[4026531841]`), None when the process is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _pod_hostname(pid: int) -> str:
    """The /etc/hostname the pod's processes see (the pod name, except hostNetwork pods)."""
    try:
        with open(f"/proc/{pid}/root/etc/hostname") as f:
            return f.read().strip()
    except OSError:
        return ""


@dataclass
class ClusterProcesses:
    server: set[int]
    agent: set[int]
    pods: dict[str, set[int]]  # the pod's hostname -> its processes

    def pods_named(self, prefix: str) -> set[int]:
        return set().union(*(pids for hostname, pids in self.pods.items() if hostname.startswith(prefix)))


def cluster_processes(cluster: BenchCluster) -> ClusterProcesses:
    """The server's processes; the agent's (the agent and its helpers); and the pods'. A pod's
    processes (its sandbox holder and containers, hostNetwork pods too) are those below the
    agent, or in a pod's network namespace, that live in a mount namespace other than the
    agent's; they are grouped by their IPC namespace (one per pod: the holder's, which its
    containers join) and named by the /etc/hostname its containers see (the pod's name; all
    hostNetwork pods share the machine's; the holder's empty root has none)."""
    record = cluster.record()
    running = up_cmd.cluster_processes(record)
    agents = [pid for name, pid in running.items() if name != "server"]
    below_agents = set().union(*(process_tree(pid) for pid in agents))
    candidates = below_agents | network.pod_pids([n.netns for n in record.network.node_list()])
    agent_namespaces = {_namespace(pid, "mnt") for pid in agents}
    by_namespace: dict[str, set[int]] = {}
    for pid in candidates:
        mounts, ipc = _namespace(pid, "mnt"), _namespace(pid, "ipc")
        if mounts is not None and ipc is not None and mounts not in agent_namespaces:
            by_namespace.setdefault(ipc, set()).add(pid)
    pods: dict[str, set[int]] = {}
    for namespace, pids in by_namespace.items():
        hostname = next((h for pid in sorted(pids) if (h := _pod_hostname(pid))), namespace)
        pods.setdefault(hostname, set()).update(pids)
    in_pods = set().union(*pods.values())
    return ClusterProcesses(server=process_tree(running["server"]) - in_pods, agent=below_agents - in_pods, pods=pods)


async def _fill(cluster: BenchCluster, image: str, count: int, prefix: str, settle: float) -> None:
    """Leave exactly `count` bench pods of `image` running (none: only the add-ons), then idle."""
    client = api.from_kubeconfig(cluster.kubeconfig, field_manager="pocketkube-bench")
    timer = PodTimer(client, "default")
    try:
        await _wait_for_admission_prerequisites(client, "default")
        await timer.start()
        await _delete_all(client, timer, "default")
        if count:
            await _startup_latencies(client, timer, "default", image, count, prefix)
        await asyncio.sleep(settle)  # idle: status writes and probes settle
    finally:
        await timer.stop()
        await client.close()


def _control_plane_row(what: str, memory: ClusterProcesses) -> Row:
    server, agent = vm_rss_mb(memory.server), vm_rss_mb(memory.agent)
    return Row(f"control plane RSS (server + agent), {what}", server + agent, "MB", CONTROL_PLANE_GOAL_MB,
               detail=f"(server {server:.1f} + agent {agent:.1f}, {len(memory.agent)} processes)")


def _pods_row(what: str, pids: set[int], pods: int) -> Row:
    rss = vm_rss_mb(pids)
    return Row(what, rss, "MB", detail=f"({pods} pods, {len(pids)} processes, {rss / max(pods, 1):.2f} MB a pod; "
                                       f"PSS {pss_mb(pids):.1f} MB)")


def measure_memory(args) -> list[Row]:
    rows = []
    with bench_cluster(args) as cluster:
        cluster.up()
        asyncio.run(_fill(cluster, IMAGES[0], 0, "", args.settle))
        empty = cluster_processes(cluster)
        rows.append(_control_plane_row("no pod of ours", empty))
        rows.append(_pods_row("  the add-on pods' processes (kube-system)", set().union(*empty.pods.values()),
                              len(empty.pods)))
        for image in IMAGES:
            prefix = f"idle-{_short(image)}-"
            asyncio.run(_fill(cluster, image, BURST, prefix.rstrip("-"), args.settle))
            full = cluster_processes(cluster)
            rows.append(_control_plane_row(f"{BURST} idle {_short(image)} pods", full))
            rows.append(_pods_row(f"  the {BURST} {_short(image)} pods' processes", full.pods_named(prefix),
                                  sum(h.startswith(prefix) for h in full.pods)))
    return rows


MEASUREMENTS = [measure_up_to_ready, measure_pod_startup, measure_rootfs, measure_memory, measure_burst_against_peer]


# ---- main ----------------------------------------------------------------------------------


def _refuse_to_run() -> str | None:
    if os.geteuid() != 0:
        return "bench/pods.py needs root: it starts real clusters (network namespaces, bridge, routes)"
    return None


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every cluster the bench started is taken down."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run_measurements(title: str, measurements: list, args) -> None:
    """Run each measurement (or only `args.only`), timing it on stderr, then print one table of
    every row with the machine's load before and after (and write it to args.json, if given)."""
    with harness.Session(title, args) as session:
        for measure in measurements:
            if args.only and measure.__name__ != args.only:
                continue
            print(f"running {measure.__name__} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            for row in measure(args):
                if isinstance(row, str):  # how the figures were taken
                    session.note(row)
                else:
                    session.add(row if isinstance(row, harness.Row) else row.to_row())
            print(f"  {measure.__name__} took {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description="pocketkube node benchmarks (root)")
    p.add_argument("--runs", type=int, default=3, help="`up` runs per node count; the median is shown")
    p.add_argument("--samples", type=int, default=30, help="pods created one at a time, per image (0: none)")
    p.add_argument("--rounds", type=int, default=9,  # cheap (~10 s): harness.REROUND_AGREEMENT
                   help=f"rounds of {BURST} pods created at once, per image (interleaved)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds pods stay idle before RSS is read")
    p.add_argument("--machine-timeout", type=float, default=600.0,
                   help="how long to wait while another cluster holds the machine's ranges")
    p.add_argument("--peer", metavar="GIT-REF",
                   help="also compare the 50-pods-at-once p99 with this commit's code (e.g. main), side by side")
    p.add_argument("--pairs", type=int, default=harness.MIN_ROUNDS,
                   help="--peer: rounds of two clusters (this checkout's, then the peer's)")
    p.add_argument("--only", choices=[m.__name__ for m in MEASUREMENTS], help="run one measurement")
    harness.add_json_argument(p)
    args = p.parse_args()
    reason = _refuse_to_run()
    if reason:
        sys.exit(reason)
    _stop_on_sigterm()
    run_measurements("node", MEASUREMENTS, args)

if __name__ == "__main__":
    main()
