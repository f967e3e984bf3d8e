"""Cluster DNS benchmark: pocketkube DNS beside dnsmasq, same names, same core budget, one run.

- Both servers answer the same N Service names (`svc-<i>.bench.svc.cluster.local`, A records):
  dnsmasq (Debian) from a hosts file with no upstream, pocketkube DNS from a ClusterView fed
  directly with the same Services (the serving path is the one `pocketkube dns` runs; only the
  informers are left out). Each server is pinned to CPU 0 with taskset, dnsperf to CPU 1.
- Throughput: dnsperf (Debian) for --seconds (30) against each, as fast as it can
  (100 queries in flight), queries/s from its report.
- CPU: the server's CPU time over the dnsperf run (from /proc), so queries per CPU-second
  compare the servers even when dnsperf, on its one core, is what limits the queries/s.
- Latency: one query in flight at a time for --latency-seconds, from a small probe pinned to
  CPU 1, each round trip timed -> p50 / p99. (dnsperf reports no percentiles, its -v timings
  at a fixed rate carry its own millisecond scheduling ticks, and under saturation latency is
  only queueing: 100 in flight / queries per second. The probe's own overhead, ~20 us of
  Python, is the same for both servers.)
- Memory: RSS of a fresh process before and after the DNS server's informers list 10,000
  Services and 50,000 endpoints (EndpointSlices of 5) into its view (a stand-in client hands
  over the lists; informers, transforms and view are the real code), once with the informer
  transform that strips objects to what DNS reads, once caching the full objects.

    .venv/bin/python -m bench.dns [--seconds 30] [--names 1000] [--memory-only]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ZONE_SUFFIX = "bench.svc.cluster.local"
DNSMASQ_ADDR, POCKET_ADDR = "127.0.0.2", "127.0.0.3"


def service_ip(i: int) -> str:
    return f"10.96.{(i >> 8) & 0xFF}.{i & 0xFF}" if i < 65536 else f"10.{97 + (i >> 16)}.{(i >> 8) & 0xFF}.{i & 0xFF}"


def service_obj(i: int) -> dict:
    ip = service_ip(i + 1)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "bench", "name": f"svc-{i}", "uid": f"uid-{i:08d}", "resourceVersion": str(i),
                         "creationTimestamp": "2025-01-01T00:00:00Z", "labels": {"app": f"svc-{i}"}},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"],
                     "ipFamilyPolicy": "SingleStack", "selector": {"app": f"svc-{i}"}, "sessionAffinity": "None",
                     "internalTrafficPolicy": "Cluster",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]},
            "status": {"loadBalancer": {}}}


def slice_obj(i: int, per: int) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": "bench", "name": f"svc-{i}-abcde", "uid": f"uid-s-{i:08d}",
                         "resourceVersion": str(i), "generateName": f"svc-{i}-",
                         "labels": {"kubernetes.io/service-name": f"svc-{i}",
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": f"svc-{i}",
                                              "uid": f"uid-{i:08d}", "controller": True,
                                              "blockOwnerDeletion": True}]},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.{244 + ((i * per + j) >> 16)}.{((i * per + j) >> 8) & 0xFF}."
                                         f"{(i * per + j) & 0xFF}"],
                           "conditions": {"ready": True, "serving": True, "terminating": False},
                           "nodeName": "node-1",
                           "targetRef": {"kind": "Pod", "namespace": "bench", "name": f"svc-{i}-pod-{j}",
                                         "uid": f"uid-p-{i:08d}-{j}"}}
                          for j in range(per)]}


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# -- child modes ---------------------------------------------------------------------------------

def serve(port: int, names: int) -> None:
    """Run pocketkube DNS over a view holding `names` Services (child process)."""
    from pocketkube.cli.main import _run
    from pocketkube.dns.server import DNSServer
    from pocketkube.dns.view import ClusterView

    async def run() -> None:
        view = ClusterView()
        view.apply_namespace({"metadata": {"name": "bench"}})
        for i in range(names):
            view.apply_service(service_obj(i))
        view.mark_synced()
        server = DNSServer(view, address=POCKET_ADDR, port=port, metrics_port=None, upstreams=[])
        await server.start()
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop()

    _run(run())


class ListOnlyClient:
    """Stands in for the API client in the memory child: lists the benchmark's Services,
    EndpointSlices and one Namespace (full objects, as the API sends them); watches stay
    silent. Everything after the list is the real code: informers, transforms, the view."""

    def __init__(self, services: int, per: int):
        self.services, self.per = services, per

    async def list(self, api_version, resource, namespace=None, label_selector="", field_selector=""):
        if resource == "namespaces":
            items = [{"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": "bench", "uid": "uid-ns", "resourceVersion": "1",
                                   "labels": {"kubernetes.io/metadata.name": "bench"}},
                      "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}]
        elif resource == "services":
            items = [service_obj(i) for i in range(self.services)]
        else:
            items = [slice_obj(i, self.per) for i in range(self.services)]
        return {"items": items, "metadata": {"resourceVersion": str(self.services + 1)}}

    async def watch(self, *args, **kwargs):
        await asyncio.Event().wait()
        yield "BOOKMARK", {}


def memory(services: int, endpoints: int, transform: bool) -> None:
    """Print RSS before and after the DNS server's informers list `services` Services and
    their EndpointSlices (`endpoints` endpoints in all) into the view, with or without the
    informer transform (child process: a fresh heap for each figure)."""
    from pocketkube.cli.main import _tune_malloc
    from pocketkube.core.informer import InformerFactory
    from pocketkube.dns.view import ClusterView

    import pocketkube.dns.server  # noqa: F401  (the code a running server has loaded)

    _tune_malloc()
    per = endpoints // services
    gc.collect()
    base = rss_mb()

    async def fill() -> tuple[float, dict, int]:
        view = ClusterView()
        factory = InformerFactory(ListOnlyClient(services, per))
        view.attach(factory)
        if not transform:
            for api_version, resource in (("v1", "namespaces"), ("v1", "services"),
                                          ("discovery.k8s.io/v1", "endpointslices")):
                factory.informer(api_version, resource).set_transform(None)
        await factory.start()
        await factory.wait_synced(120)
        view.mark_synced()
        gc.collect()
        _malloc_trim()
        cached = sum(len(factory.informer(*key).store) for key in (("v1", "services"),
                                                                    ("discovery.k8s.io/v1", "endpointslices")))
        filled = rss_mb()
        await factory.stop()
        return filled, view.counts(), cached

    filled, counts, cached = asyncio.run(fill())
    print(f"{base:.1f} {filled:.1f} {counts['services']} {counts['endpoints']} {cached}", flush=True)


def _malloc_trim() -> None:
    """Hand freed heap back to the system (the parsed list is garbage by now), so RSS shows
    what is kept."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def memory_figures(args) -> dict[str, tuple[float, float, int, int]]:
    """{"transform": (base, filled, services, endpoints), "full": ...} from two children."""
    figures = {}
    for mode in ("transform", "full"):
        mem = subprocess.run([sys.executable, "-m", "bench.dns", "--memory", mode, "--services", str(args.services),
                              "--endpoints", str(args.endpoints)], cwd=ROOT, capture_output=True, text=True,
                             timeout=600)
        if mem.returncode != 0:
            sys.exit("memory child failed:\n" + mem.stderr)
        base, filled, n_svc, n_ep, _ = mem.stdout.split()
        figures[mode] = (float(base), float(filled), int(n_svc), int(n_ep))
    return figures


# -- the benchmark ---------------------------------------------------------------------------------

def free_udp_port(addr: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def wait_for_udp(addr: str, port: int, timeout: float = 10) -> None:
    import dns.message
    import dns.query

    deadline = time.monotonic() + timeout
    while True:
        try:
            dns.query.udp(dns.message.make_query(f"svc-0.{ZONE_SUFFIX}", "A"), addr, port=port, timeout=0.5)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def dnsperf(addr: str, port: int, queries: str, seconds: int) -> tuple[float, str]:
    cmd = ["taskset", "-c", "1", "dnsperf", "-s", addr, "-p", str(port), "-d", queries, "-l", str(seconds),
           "-c", "4", "-q", "100"]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    qps = 0.0
    for line in cp.stdout.splitlines():
        if "Queries per second:" in line:
            qps = float(line.split(":")[1])
    return qps, cp.stdout + cp.stderr


def probe(addr: str, port: int, names: int, seconds: float) -> None:
    """Child mode: one query at a time, print each round trip in seconds, one per line."""
    import dns.message

    wires = [dns.message.make_query(f"svc-{i}.{ZONE_SUFFIX}", "A").to_wire() for i in range(names)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((addr, port))
    sock.settimeout(1.0)
    out = []
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        packet = wires[i % names]
        i += 1
        t0 = time.perf_counter_ns()
        sock.send(packet)
        try:
            while sock.recv(4096)[:2] != packet[:2]:
                pass
        except socket.timeout:
            continue
        out.append((time.perf_counter_ns() - t0) / 1e9)
    sys.stdout.write("\n".join(f"{x:.9f}" for x in out) + "\n")


def latencies(addr: str, port: int, args) -> list[float]:
    cp = subprocess.run(["taskset", "-c", "1", sys.executable, "-m", "bench.dns", "--probe", addr, str(port),
                         "--names", str(args.names), "--latency-seconds", str(args.latency_seconds)],
                        cwd=ROOT, capture_output=True, text=True, timeout=args.latency_seconds + 60)
    return [float(x) for x in cp.stdout.split()]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=30, help="dnsperf run per server (throughput)")
    p.add_argument("--latency-seconds", type=int, default=10)
    p.add_argument("--names", type=int, default=1000, help="Service names in the query file")
    p.add_argument("--services", type=int, default=10000, help="memory: Services in the view")
    p.add_argument("--endpoints", type=int, default=50000, help="memory: endpoints in the view")
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument("--memory", choices=("transform", "full"), help=argparse.SUPPRESS)
    p.add_argument("--memory-only", action="store_true", help="print only the memory figures")
    p.add_argument("--probe", nargs=2, metavar=("ADDR", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe:
        return probe(args.probe[0], int(args.probe[1]), args.names, args.latency_seconds)
    if args.serve is not None:
        return serve(args.serve, args.names)
    if args.memory:
        return memory(args.services, args.endpoints, args.memory == "transform")
    if args.memory_only:
        return print_memory(memory_figures(args))
    for tool in ("dnsperf", "dnsmasq", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed: apt-get install -y dnsperf dnsmasq util-linux")

    work = tempfile.mkdtemp(prefix="pk-dnsbench-")
    hosts = os.path.join(work, "hosts")
    queries = os.path.join(work, "queries")
    with open(hosts, "w") as h, open(queries, "w") as q:
        for i in range(args.names):
            h.write(f"{service_ip(i + 1)} svc-{i}.{ZONE_SUFFIX}\n")
            q.write(f"svc-{i}.{ZONE_SUFFIX} A\n")

    results = {}
    # dnsmasq: hosts file only, no upstream, no cache churn, TTL 30 as ours
    port = free_udp_port(DNSMASQ_ADDR)
    dnsmasq = subprocess.Popen(["taskset", "-c", "0", "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                                "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", "-p", str(port),
                                f"--listen-address={DNSMASQ_ADDR}", "--bind-interfaces", "--local-ttl=30",
                                "--pid-file=", "--cache-size=10000", "--user=root"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_udp(DNSMASQ_ADDR, port)
        results["dnsmasq"] = run_pair(DNSMASQ_ADDR, port, queries, args, dnsmasq.pid)
    finally:
        dnsmasq.terminate()
        dnsmasq.wait()

    port = free_udp_port(POCKET_ADDR)
    pocket = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "bench.dns", "--serve", str(port),
                               "--names", str(args.names)], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        pocket.stdout.readline()
        wait_for_udp(POCKET_ADDR, port)
        results["pocketkube"] = run_pair(POCKET_ADDR, port, queries, args, pocket.pid)
    finally:
        pocket.terminate()
        pocket.wait()

    mem = memory_figures(args)
    shutil.rmtree(work, ignore_errors=True)

    print(f"\nDNS: {args.names} names, {args.seconds} s per server (dnsperf, 4 clients, 100 in flight), "
          f"server on CPU 0, dnsperf on CPU 1")
    print(f"latency: one query in flight for {args.latency_seconds} s (a Python probe on CPU 1)\n")
    print(f"{'server':<12} {'queries/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>8} {'CPU %':>6} "
          f"{'queries/CPU-s':>14}")
    for name, r in results.items():
        print(f"{name:<12} {r['qps']:>11.0f} {r['p50'] * 1000:>8.3f} {r['p99'] * 1000:>8.3f} {r['rss']:>8.1f} "
              f"{r['cpu'] * 100:>6.0f} {r['qps'] / r['cpu'] if r['cpu'] else float('nan'):>14.0f}")
    mine, peer = results["pocketkube"], results["dnsmasq"]
    ratio = mine["qps"] / peer["qps"] if peer["qps"] else float("nan")
    per_cpu = (mine["qps"] / mine["cpu"]) / (peer["qps"] / peer["cpu"]) if mine["cpu"] and peer["cpu"] else float("nan")
    print(f"\nratio pocketkube / dnsmasq queries/s: {ratio:.2f}  (goal >= 0.5; p99 goal < 2 ms; "
          f"anchor: CoreDNS ~17,000 queries/s per core with the kubernetes plugin)")
    print(f"ratio per CPU-second of the server: {per_cpu:.2f}  (a server below 100% CPU is not the bottleneck: "
          f"dnsperf on its one core is)")
    print_memory(mem)


def print_memory(mem: dict[str, tuple[float, float, int, int]]) -> None:
    base, slim, n_svc, n_ep = mem["transform"]
    full_base, full, _, _ = mem["full"]
    print(f"\nmemory at {n_svc} Services and {n_ep} endpoints (informers + view, after the lists): "
          f"{slim - base:.1f} MB (process {slim:.1f} MB) with the informer transform; "
          f"{full - full_base:.1f} MB (process {full:.1f} MB) caching the full objects "
          f"(anchor CoreDNS: (pods + services)/1000 + 54 = {(n_ep + n_svc) / 1000 + 54:.0f} MB)")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_pair(addr: str, port: int, queries: str, args, pid: int) -> dict:
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    qps, out = dnsperf(addr, port, queries, args.seconds)
    cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
    if not qps:
        sys.exit("dnsperf failed:\n" + out)
    lost = [line.strip() for line in out.splitlines() if "Queries lost" in line or "Response codes" in line]
    print(f"{addr}:{port}: " + "; ".join(lost), flush=True)
    rtts = latencies(addr, port, args)
    return {"qps": qps, "p50": pct(rtts, 50), "p99": pct(rtts, 99), "rss": rss_mb(pid), "cpu": cpu}


if __name__ == "__main__":
    main()
