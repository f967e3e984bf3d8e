"""Cluster DNS benchmark: pocketkube DNS beside dnsmasq, same names, same core budget, one run.

- Both servers answer the same N Service names (`svc-<i>.bench.svc.cluster.local`, A records):
  dnsmasq (Debian) from a hosts file with no upstream, pocketkube DNS from a ClusterView fed
  directly with the same Services (the serving path is the one `pocketkube dns` runs; only the
  informers are left out). Each server is pinned to CPU 0 with taskset, dnsperf to CPU 1.
- Throughput: dnsperf (Debian) for --seconds (30) against each, as fast as it can
  (100 queries in flight), queries/s from its report.
- Latency: one query in flight at a time for --latency-seconds, from a small probe pinned to
  CPU 1, each round trip timed -> p50 / p99. (dnsperf reports no percentiles, its -v timings
  at a fixed rate carry its own millisecond scheduling ticks, and under saturation latency is
  only queueing: 100 in flight / queries per second. The probe's own overhead, ~20 us of
  Python, is the same for both servers.)
- Memory: RSS of a fresh process before and after feeding a ClusterView 10,000 Services and
  50,000 endpoints (EndpointSlices of 5), and after also keeping the full API objects as the
  informer caches do.

    .venv/bin/python -m bench.dns [--seconds 30] [--names 1000]
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


def memory(services: int, endpoints: int) -> None:
    """Print RSS: baseline, view filled, view + full objects kept (child process)."""
    from pocketkube.dns.view import ClusterView

    import pocketkube.dns.server  # noqa: F401  (the code a running server has loaded)

    per = endpoints // services
    gc.collect()
    base = rss_mb()
    view = ClusterView()
    view.apply_namespace({"metadata": {"name": "bench"}})
    for i in range(services):
        view.apply_service(service_obj(i))
        view.apply_endpointslice(slice_obj(i, per))
    gc.collect()
    slim = rss_mb()
    kept = [service_obj(i) for i in range(services)] + [slice_obj(i, per) for i in range(services)]
    gc.collect()
    full = rss_mb()
    counts = view.counts()
    print(f"{base:.1f} {slim:.1f} {full:.1f} {counts['services']} {counts['endpoints']} {len(kept)}", flush=True)


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
    p.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--probe", nargs=2, metavar=("ADDR", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe:
        return probe(args.probe[0], int(args.probe[1]), args.names, args.latency_seconds)
    if args.serve is not None:
        return serve(args.serve, args.names)
    if args.memory:
        return memory(args.services, args.endpoints)
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

    mem = subprocess.run([sys.executable, "-m", "bench.dns", "--memory", "--services", str(args.services),
                          "--endpoints", str(args.endpoints)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    base, slim, full, n_svc, n_ep, _ = mem.stdout.split()
    shutil.rmtree(work, ignore_errors=True)

    print(f"\nDNS: {args.names} names, {args.seconds} s per server (dnsperf, 4 clients, 100 in flight), "
          f"server on CPU 0, dnsperf on CPU 1")
    print(f"latency: one query in flight for {args.latency_seconds} s (a Python probe on CPU 1)\n")
    print(f"{'server':<12} {'queries/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>8}")
    for name, r in results.items():
        print(f"{name:<12} {r['qps']:>11.0f} {r['p50'] * 1000:>8.3f} {r['p99'] * 1000:>8.3f} {r['rss']:>8.1f}")
    ratio = results["pocketkube"]["qps"] / results["dnsmasq"]["qps"] if results["dnsmasq"]["qps"] else float("nan")
    print(f"\nratio pocketkube / dnsmasq queries/s: {ratio:.2f}  (goal >= 0.5; p99 goal < 2 ms; "
          f"anchor: CoreDNS ~17,000 queries/s per core with the kubernetes plugin)")
    print(f"\nmemory at {n_svc} Services and {n_ep} endpoints: view {float(slim) - float(base):.1f} MB "
          f"(process {float(slim):.1f} MB); with the informers' full objects {float(full):.1f} MB "
          f"(anchor CoreDNS: (pods + services)/1000 + 54 = {(int(n_ep) + int(n_svc)) / 1000 + 54:.0f} MB)")


def run_pair(addr: str, port: int, queries: str, args, pid: int) -> dict:
    qps, out = dnsperf(addr, port, queries, args.seconds)
    if not qps:
        sys.exit("dnsperf failed:\n" + out)
    lost = [line.strip() for line in out.splitlines() if "Queries lost" in line or "Response codes" in line]
    print(f"{addr}:{port}: " + "; ".join(lost), flush=True)
    rtts = latencies(addr, port, args)
    return {"qps": qps, "p50": pct(rtts, 50), "p99": pct(rtts, 99), "rss": rss_mb(pid)}


if __name__ == "__main__":
    main()
