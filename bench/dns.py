"""Cluster DNS benchmark: pocketkube DNS beside dnsmasq, same names, same core, interleaved rounds.

- Both servers answer the same N Service names (`svc-<i>.bench.svc.cluster.local`, A records):
  dnsmasq (Debian) from a hosts file with no upstream, pocketkube DNS from a ClusterView fed
  directly with the same Services (the serving path is the one `pocketkube dns` runs, on the
  event loop every pocketkube process runs on; only the informers are left out). Both servers
  run the whole time, pinned to one CPU; every load generator runs pinned to another.
- Rounds (--rounds, at least 5): each round runs, for dnsmasq then pocketkube (A B A B ...):
  1. A fixed rate (--rate, 10,000 queries/s) for --rate-seconds from a paced sender that keeps
     its schedule (a SCHED_FIFO task when run as root, sleeping until just before each send and
     spinning the rest): the latency of each query from just before its send to the kernel's
     receive timestamp of its answer (SO_TIMESTAMPNS, so the sender's own scheduling is left
     out) -> p50 / p99 for each server, a query never answered counting as 5 s (a client's
     retry); queries per CPU-second of the server at that rate; and how long each server waited
     for its CPU while another task held it (schedstat). The sender's own lateness is counted:
     a run it fell behind in (a burst of owed queries would be measured as the server's
     queueing; on this guest, when the hypervisor held the sender's CPU for milliseconds) is run
     again, up to --rate-tries times a round; a round it still fell behind in is left out of the
     p99 rows (fewer than 5 rounds left: no figure). How many runs were run again, and which
     rounds the p99 is of, is printed.
  2. dnsperf (Debian) for --seconds as fast as it can (100 queries in flight). The figure is
     queries per CPU-second of the server (queries answered / the server's CPU time from
     /proc): the client cannot cap it, unlike queries/s, which on this machine is often
     dnsperf's own limit (then both servers show nearly the same queries/s, whatever they cost).
     Every answer must be NOERROR: a server answering errors fast would otherwise look fast.
  The ratios pocketkube / dnsmasq are taken per round and reported as the median with min and
  max (bench/harness.py refuses a ratio when the rounds disagree by more than the effect).
- Memory: RSS of a fresh process before and after the DNS server's informers list 10,000
  Services and 50,000 endpoints (EndpointSlices of 5) into its view (a stand-in client hands
  over the lists; informers, transforms and view are the real code), once with the informer
  transform that strips objects to what DNS reads, once caching the full objects.

    .venv/bin/python -m bench.dns [--rounds 5] [--seconds 5] [--rate-seconds 3] [--names 1000]
                                  [--memory-only | --no-memory] [--json FILE]
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

from bench import harness  # noqa: E402
from bench.harness import rss_mb  # noqa: E402

ZONE_SUFFIX = "bench.svc.cluster.local"
DNSMASQ_ADDR, POCKET_ADDR = "127.0.0.2", "127.0.0.3"
LOST_QUERY_MS = 5000.0  # resolv.conf's default timeout: what a query lost costs a client


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


# -- child modes ---------------------------------------------------------------------------------

def serve(port: int, names: int) -> None:
    """Run pocketkube DNS over a view holding `names` Services (child process); prints "ready"
    and the class of the event loop it runs on."""
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
        loop = asyncio.get_running_loop()
        print(f"ready {type(loop).__module__}.{type(loop).__name__}", flush=True)
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


# -- load generators -------------------------------------------------------------------------------

def free_udp_port(addr: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def query(ident: int, name: str) -> bytes:
    from pocketkube.dns import wire

    return wire.build_query(ident, name, wire.A)


def wait_for_udp(addr: str, port: int, timeout: float = 10) -> None:
    """Until the server answers a query for svc-0 with NOERROR."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((addr, port))
        s.settimeout(0.5)
        while True:
            s.send(query(7, f"svc-0.{ZONE_SUFFIX}"))
            try:
                reply = s.recv(4096)
                if reply[:2] == b"\x00\x07" and reply[3] & 0xF == 0:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no DNS answer from {addr}:{port}")
            time.sleep(0.1)


def dnsperf(addr: str, port: int, queries: str, seconds: float, cpu: int) -> dict:
    """dnsperf as fast as it can: {"completed", "lost", "qps", "noerror", "codes"}."""
    cmd = harness.taskset(cpu) + ["dnsperf", "-s", addr, "-p", str(port), "-d", queries, "-l", f"{seconds:g}",
                                  "-c", "4", "-q", "100"]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    out = {"completed": 0, "lost": 0, "qps": 0.0, "noerror": 0, "codes": ""}
    for line in cp.stdout.splitlines():
        line = line.strip()
        if line.startswith("Queries completed:"):
            out["completed"] = int(line.split()[2])
        elif line.startswith("Queries lost:"):
            out["lost"] = int(line.split()[2])
        elif line.startswith("Queries per second:"):
            out["qps"] = float(line.split(":")[1])
        elif line.startswith("Response codes:"):
            out["codes"] = line.split(":", 1)[1].strip()
            words = out["codes"].replace(",", " ").split()
            if "NOERROR" in words:
                out["noerror"] = int(words[words.index("NOERROR") + 1])
    if not out["completed"]:
        sys.exit("dnsperf failed:\n" + cp.stdout + cp.stderr)
    return out


LATE_NS = 100_000  # a query sent this far behind its schedule: the sender, not the server, was slow
LATE_SHARE_REFUSED = 0.005  # more late sends than this: the run's p99 would be the sender's, not refused silently
SPIN_NS = 30_000  # the sender sleeps until this close to a send, then spins on the clock


def rate_probe(addr: str, port: int, names: int, rate: float, seconds: float) -> None:
    """Child mode: send queries at a fixed rate, print one JSON line: sent, received, bad
    (not NOERROR with an answer), the sender's own lateness (late: sends more than LATE_NS
    behind their schedule; lateness p99 and max in ms), whether it ran as a real-time task, and
    the latency percentiles in ms.

    The sender keeps its schedule: as a SCHED_FIFO task where it may (root; it sleeps in
    select() until SPIN_NS before each send and spins the rest, so it never holds its CPU for
    long and is never throttled), else as an ordinary one; either way its lateness is counted,
    and the parent refuses the latency figures of a run it fell behind in. A late sender sends
    the queries it owes in a burst, and the burst's queueing is then measured as the server's.
    Latency: from the send (its clock read just before it) to the kernel's receive timestamp of
    the answer (SO_TIMESTAMPNS: when the sender gets to read it does not count); a query
    unanswered after the run and one more second counts as LOST_QUERY_MS."""
    import ctypes
    import ctypes.util
    import json
    import select
    import struct

    realtime = False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        realtime = True
    except (PermissionError, OSError, AttributeError):
        try:  # wake from select() on time, not up to 50 us late (the default timer slack)
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
        except (OSError, AttributeError):
            pass
    so_timestampns = getattr(socket, "SO_TIMESTAMPNS", 35)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, so_timestampns, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.connect((addr, port))
    tails = [query(0, f"svc-{i}.{ZONE_SUFFIX}")[2:] for i in range(names)]
    total = int(rate * seconds)
    interval = 1e9 / rate
    sent_at = [0] * 65536
    lat: list[int] = []
    lateness: list[int] = []
    bad = seq = 0
    clock = time.time_ns  # CLOCK_REALTIME, the clock of SO_TIMESTAMPNS
    recvmsg, send, dontwait = sock.recvmsg, sock.send, socket.MSG_DONTWAIT
    gc.disable()  # (nothing cyclic here; a collection would be a pause of the sender)
    start = clock() + 20_000_000
    next_at = start
    drain_until = None
    while True:
        now = clock()
        if seq < total:
            if next_at <= now:
                ident = seq & 0xFFFF
                lateness.append(now - next_at)
                sent_at[ident] = now
                send(ident.to_bytes(2, "big") + tails[seq % names])
                seq += 1
                next_at = start + seq * interval
                continue
            wait = (next_at - now - SPIN_NS) / 1e9
        else:
            if drain_until is None:
                drain_until = now + 1_000_000_000
            if len(lat) + bad >= total or now > drain_until:
                break
            wait = 0.01
        if wait > 0:
            select.select([sock], [], [], wait)
        while True:
            try:
                data, anc, _, _ = recvmsg(4096, 64, dontwait)
            except BlockingIOError:
                break
            received = None
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == so_timestampns:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    received = sec * 1_000_000_000 + nsec
            ident = int.from_bytes(data[:2], "big")
            sent = sent_at[ident]
            if not sent:
                continue  # a duplicate, or an answer to a query already given up
            sent_at[ident] = 0
            if data[3] & 0xF or data[6:8] == b"\x00\x00":
                bad += 1
                continue
            lat.append((received or clock()) - sent)
            if seq < total and clock() >= next_at:
                break  # a send is due: answers wait in the socket, their timestamps are taken
    # a query never answered counts as the 5 s a glibc client waits before it asks again: a
    # server that drops queries under a pause must not look faster than one that queues them
    ms = [x / 1e6 for x in lat] + [LOST_QUERY_MS] * (seq - len(lat) - bad)
    late_ms = [x / 1e6 for x in lateness]
    print(json.dumps({"sent": seq, "received": len(lat) + bad, "bad": bad, "realtime": realtime,
                      "late": sum(1 for x in lateness if x > LATE_NS),
                      "late_p99": harness.percentile(late_ms, 99), "late_max": max(late_ms, default=0.0),
                      "seconds": (next_at - start) / 1e9,
                      "p50": harness.percentile(ms, 50), "p99": harness.percentile(ms, 99),
                      "p999": harness.percentile(ms, 99.9), "max": max(ms) if ms else float("nan")}))


def sender_fell_behind(probe: dict) -> bool:
    """Whether a fixed-rate run's sender was late on more than LATE_SHARE_REFUSED of its sends."""
    return probe["late"] > LATE_SHARE_REFUSED * probe["sent"]


def fixed_rate(addr: str, port: int, args, cpu: int) -> dict:
    import json

    cp = subprocess.run(harness.taskset(cpu) + [sys.executable, "-m", "bench.dns", "--rate-probe", addr, str(port),
                                                "--names", str(args.names), "--rate", str(args.rate),
                                                "--rate-seconds", str(args.rate_seconds)],
                        cwd=ROOT, capture_output=True, text=True, timeout=args.rate_seconds + 60)
    if cp.returncode != 0:
        sys.exit("rate probe failed:\n" + cp.stderr)
    return json.loads(cp.stdout)


# -- the benchmark ---------------------------------------------------------------------------------

class Target:
    """One running server and what each round measured of it."""

    def __init__(self, name: str, addr: str, port: int, proc: subprocess.Popen):
        self.name, self.addr, self.port, self.proc = name, addr, port, proc
        self.rounds: list[dict] = []

    def round(self, queries: str, args, server_cpu: int, client_cpu: int) -> dict:
        pid = self.proc.pid
        # the fixed rate first: a server fresh from a saturating run would carry its CPU use into
        # the scheduler's choices (the other core's work is not pinned) and wait longer to run
        for tries in range(1, args.rate_tries + 1):
            speed_before = harness.speed(server_cpu)
            cpu0, waited0 = harness.cpu_seconds(pid), harness.run_queue_seconds(pid)
            probe = fixed_rate(self.addr, self.port, args, client_cpu)
            cpu1, waited1 = harness.cpu_seconds(pid), harness.run_queue_seconds(pid)
            # the latencies at the fixed rate are CPU work (the server's, the kernel's UDP path) at the
            # yardstick CPU speed, as ADR 0012 scales such figures: this guest's CPU drifts by itself
            speed = (speed_before + harness.speed(server_cpu)) / 2
            behind = sender_fell_behind(probe)
            if not behind:
                break
            # a run the sender fell behind in measured the sender, not the server: run it again
            print(f"  {self.name:<10} {args.rate:g} q/s: the sender fell behind its schedule ({probe['late']} of "
                  f"{probe['sent']} sends >{LATE_NS // 1000} us late, max {probe['late_max'] * 1000:.0f} us)"
                  + (": again" if tries < args.rate_tries else ""), flush=True)
        perf = dnsperf(self.addr, self.port, queries, args.seconds, client_cpu)
        cpu2 = harness.cpu_seconds(pid)
        r = {"qps": perf["qps"], "completed": perf["completed"], "lost": perf["lost"], "codes": perf["codes"],
             "noerror": perf["noerror"], "cpu": cpu2 - cpu1, "cpu_share": (cpu2 - cpu1) / args.seconds,
             "per_cpu": perf["completed"] / (cpu2 - cpu1) if cpu2 > cpu1 else float("nan"),
             "rate_per_cpu": probe["received"] / (cpu1 - cpu0) if cpu1 > cpu0 else float("nan"),
             # per second of the run: how long the server was runnable but another task held its CPU
             "rate_waited_ms": (waited1 - waited0) * 1000 / args.rate_seconds,
             "rate_cpu_ms": (cpu1 - cpu0) * 1000 / args.rate_seconds, "rate_speed": speed,
             "rate_p50_at_yardstick": probe["p50"] * speed, "rate_p99_at_yardstick": probe["p99"] * speed,
             "rate_tries": tries, "rate_fell_behind": behind, **{
                 f"rate_{k}": v for k, v in probe.items()}}
        print(f"  {self.name:<10} {r['qps']:>9.0f} q/s at {r['cpu_share'] * 100:3.0f}% CPU = {r['per_cpu']:>7.0f} "
              f"q/CPU-s ({perf['codes']}; lost {perf['lost']});  {args.rate:g} q/s: p50 {probe['p50']:.3f} ms "
              f"p99 {probe['p99']:.3f} ms, {r['rate_per_cpu']:.0f} q/CPU-s, {probe['bad']} bad, "
              f"{probe['sent'] - probe['received']} lost; server waited for its CPU {r['rate_waited_ms']:.0f} "
              f"ms/s, ran {r['rate_cpu_ms']:.0f} ms/s; sender {'real-time' if probe['realtime'] else 'ordinary'}, "
              f"{probe['late']} sent >{LATE_NS // 1000} us late (lateness p99 {probe['late_p99'] * 1000:.0f} us, "
              f"max {probe['late_max'] * 1000:.0f} us)", flush=True)
        if perf["noerror"] != perf["completed"]:
            sys.exit(f"{self.name} answered something other than NOERROR: {perf['codes']}")
        self.rounds.append(r)
        return r

    def values(self, key: str) -> list[float]:
        return [r[key] for r in self.rounds]


def on_schedule(targets: list[Target], key: str, tries: int) -> list[harness.Spread]:
    """Each target's spread of `key` over the rounds whose fixed-rate run the sender kept its
    schedule in: a sender behind it sends what it owes in a burst, and the queueing that causes
    would be measured as the server's latency. A round it still fell behind in after `tries`
    tries is left out; with fewer than MIN_ROUNDS left, the spread is refused and says why."""
    late = [r for target in targets for r in target.rounds if r["rate_fell_behind"]]
    spreads = []
    for target in targets:
        kept = harness.spread([r[key] for r in target.rounds if not r["rate_fell_behind"]])
        if not kept.ok and late:
            kept = harness.Spread(kept.median, kept.low, kept.high, kept.rounds, (
                f"the fixed-rate sender fell behind its schedule in {len(late)} of "
                f"{sum(len(t.rounds) for t in targets)} runs after {tries} tries each (more than "
                f"{LATE_SHARE_REFUSED:.1%} of its sends >{LATE_NS // 1000} us late; worst "
                f"{max(r['rate_late'] for r in late)} of {late[0]['rate_sent']}), leaving {kept.rounds} "
                f"rounds of {target.name}, fewer than {harness.MIN_ROUNDS}"))
        spreads.append(kept)
    return spreads


def start_dnsmasq(hosts: str, cpu: int) -> Target:
    port = free_udp_port(DNSMASQ_ADDR)
    # hosts file only, no upstream, TTL 30 as ours
    proc = subprocess.Popen(harness.taskset(cpu) + [
        "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        f"--addn-hosts={hosts}", "-p", str(port), f"--listen-address={DNSMASQ_ADDR}", "--bind-interfaces",
        "--local-ttl=30", "--pid-file=", "--cache-size=10000", "--user=root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return Target("dnsmasq", DNSMASQ_ADDR, port, proc)


def start_pocketkube(names: int, cpu: int) -> tuple[Target, str]:
    port = free_udp_port(POCKET_ADDR)
    proc = subprocess.Popen(harness.taskset(cpu) + [sys.executable, "-m", "bench.dns", "--serve", str(port),
                                                    "--names", str(names)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    ready = proc.stdout.readline().split()
    return Target("pocketkube", POCKET_ADDR, port, proc), ready[1] if len(ready) > 1 else "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_arguments(p)
    p.add_argument("--seconds", type=float, default=5, help="dnsperf run per server per round")
    p.add_argument("--rate", type=float, default=10_000, help="queries/s of the fixed-rate latency run")
    p.add_argument("--rate-seconds", type=float, default=3, help="fixed-rate run per server per round")
    p.add_argument("--rate-tries", type=int, default=3,
                   help="fixed-rate runs a round at most, while the sender falls behind its schedule in them")
    p.add_argument("--names", type=int, default=1000, help="Service names in the query file")
    p.add_argument("--services", type=int, default=10000, help="memory: Services in the view")
    p.add_argument("--endpoints", type=int, default=50000, help="memory: endpoints in the view")
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument("--memory", choices=("transform", "full"), help=argparse.SUPPRESS)
    p.add_argument("--memory-only", action="store_true", help="only the memory figures")
    p.add_argument("--no-memory", action="store_true", help="leave out the memory figures")
    p.add_argument("--rate-probe", nargs=2, metavar=("ADDR", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rate_probe:
        return rate_probe(args.rate_probe[0], int(args.rate_probe[1]), args.names, args.rate, args.rate_seconds)
    if args.serve is not None:
        return serve(args.serve, args.names)
    if args.memory:
        return memory(args.services, args.endpoints, args.memory == "transform")
    with harness.Session("dns", args) as session:
        if not args.memory_only:
            for tool in ("dnsperf", "dnsmasq", "taskset"):
                if not shutil.which(tool):
                    sys.exit(f"{tool} is not installed: apt-get install -y dnsperf dnsmasq util-linux")
            with harness.machine_lock():  # no cluster, but a benchmark beside another measures both
                session.add(*throughput_and_latency(args, session))
        if not args.no_memory:
            session.add(*memory_rows(memory_figures(args)))


def throughput_and_latency(args, session: harness.Session) -> list[harness.Row]:
    server_cpu, client_cpu = harness.server_and_client_cpus()
    work = tempfile.mkdtemp(prefix="pk-dnsbench-")
    hosts = os.path.join(work, "hosts")
    queries = os.path.join(work, "queries")
    with open(hosts, "w") as h, open(queries, "w") as q:
        for i in range(args.names):
            h.write(f"{service_ip(i + 1)} svc-{i}.{ZONE_SUFFIX}\n")
            q.write(f"svc-{i}.{ZONE_SUFFIX} A\n")
    peer = mine = None
    try:
        peer = start_dnsmasq(hosts, server_cpu)
        mine, loop = start_pocketkube(args.names, server_cpu)
        wait_for_udp(peer.addr, peer.port)
        wait_for_udp(mine.addr, mine.port)
        print(f"DNS: {args.names} names; servers on CPU {server_cpu}, load generators on CPU {client_cpu}; "
              f"pocketkube DNS on {loop}; {args.rounds} rounds of {args.rate:g} queries/s for "
              f"{args.rate_seconds:g} s then dnsperf {args.seconds:g} s, per server", flush=True)
        harness.interleave({"dnsmasq": lambda r: peer.round(queries, args, server_cpu, client_cpu),
                            "pocketkube": lambda r: mine.round(queries, args, server_cpu, client_cpu)},
                           rounds=args.rounds)
    finally:
        for target in (peer, mine):
            if target is not None:
                target.proc.terminate()
                target.proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    anchor = "CoreDNS (kubernetes plugin) ~17,000 queries/s per core"
    per_cpu = harness.ratio(mine.values("per_cpu"), peer.values("per_cpu"), min_rounds=5)
    at_rate = harness.ratio(mine.values("rate_per_cpu"), peer.values("rate_per_cpu"), min_rounds=5)
    mine_abs = harness.spread(mine.values("per_cpu"))
    p99, peer_p99 = on_schedule([mine, peer], "rate_p99_at_yardstick", args.rate_tries)

    def kept(spread: harness.Spread, target: Target) -> str:
        """Which rounds a p99 row is of, when some were left out."""
        if not spread.ok or spread.rounds == len(target.rounds):
            return ""
        return f"; the {spread.rounds} of {len(target.rounds)} rounds the sender kept its schedule in"
    session.note(f"pocketkube DNS ran on {loop}; dnsperf queries/s (capped by dnsperf on its one core when a server "
                 f"is below 100% CPU): pocketkube {harness.spread(mine.values('qps')).text('.0f')} at "
                 f"{harness.spread(mine.values('cpu_share')).median * 100:.0f}% CPU, dnsmasq "
                 f"{harness.spread(peer.values('qps')).text('.0f')} at "
                 f"{harness.spread(peer.values('cpu_share')).median * 100:.0f}% CPU")
    late = sum(mine.values("rate_late")) + sum(peer.values("rate_late"))
    sent = sum(mine.values("rate_sent")) + sum(peer.values("rate_sent"))
    realtime = all(mine.values("rate_realtime") + peer.values("rate_realtime"))
    session.note(f"fixed-rate sender ({'SCHED_FIFO' if realtime else 'an ordinary task: not root'}, pinned to CPU "
                 f"{client_cpu}): {late} of {sent} queries sent more than {LATE_NS // 1000} us behind schedule, "
                 f"lateness p99 {harness.spread(mine.values('rate_late_p99') + peer.values('rate_late_p99')).median * 1000:.0f} us"
                 f" (in the runs kept; {sum(mine.values('rate_tries')) + sum(peer.values('rate_tries')) - len(mine.rounds) - len(peer.rounds)}"
                 f" runs were run again because it fell behind in them, up to {args.rate_tries} tries a round)")
    session.note(f"at {args.rate:,.0f} q/s, per second: pocketkube ran {harness.spread(mine.values('rate_cpu_ms')).text('.0f', ' ms')} "
                 f"and waited for its CPU {harness.spread(mine.values('rate_waited_ms')).text('.0f', ' ms')}; dnsmasq ran "
                 f"{harness.spread(peer.values('rate_cpu_ms')).text('.0f', ' ms')} and waited "
                 f"{harness.spread(peer.values('rate_waited_ms')).text('.0f', ' ms')} (time another task held the "
                 f"servers' CPU: what sets the tail when the machine is busy)")
    lost = sum(r["rate_sent"] - r["rate_received"] for r in mine.rounds)
    peer_lost = sum(r["rate_sent"] - r["rate_received"] for r in peer.rounds)
    if peer_p99.median > 1.0:
        session.note(f"dnsmasq, on the same CPU in the same rounds, had a p99 of {peer_p99.median:.2f} ms at "
                     f"{args.rate:,.0f} q/s ({peer_lost} queries unanswered): the machine's other work, not only "
                     f"the server, sets this run's latency (load average above)")
    return [
        harness.ratio_row("DNS queries per CPU-second of the server, pocketkube / dnsmasq (dnsperf, saturating)",
                          per_cpu, goal=0.5, anchor=anchor,
                          note=f"pocketkube {mine_abs.median:,.0f} q/CPU-s, dnsmasq "
                               f"{harness.spread(peer.values('per_cpu')).median:,.0f}"),
        harness.ratio_row(f"DNS queries per CPU-second at {args.rate:,.0f} q/s, pocketkube / dnsmasq", at_rate,
                          goal=0.5, anchor=anchor),
        harness.spread_row(f"DNS p99 latency at {args.rate:,.0f} q/s, pocketkube, at the yardstick CPU speed", p99, "ms",
                           goal=1.0, higher=False, anchor=f"dnsmasq {peer_p99.median:.3f} ms in the same rounds",
                           note=f"p50 {harness.spread(mine.values('rate_p50_at_yardstick')).median:.3f} ms; as "
                                f"measured: p99 {harness.spread(mine.values('rate_p99')).median:.3f} ms, CPU speed "
                                f"{harness.spread(mine.values('rate_speed')).median:.2f}x"
                                + (f"; {lost} queries unanswered" if lost else "") + kept(p99, mine)),
        harness.spread_row(f"DNS p99 latency at {args.rate:,.0f} q/s, dnsmasq (same rounds, same CPU), at the yardstick "
                           "CPU speed", peer_p99, "ms", higher=False,
                           note=f"p50 {harness.spread(peer.values('rate_p50_at_yardstick')).median:.3f} ms"
                                + (f"; {peer_lost} queries unanswered" if peer_lost else "") + kept(peer_p99, peer)),
    ]


def memory_rows(mem: dict[str, tuple[float, float, int, int]]) -> list[harness.Row]:
    base, slim, n_svc, n_ep = mem["transform"]
    full_base, full, _, _ = mem["full"]
    anchor = f"CoreDNS (pods + services)/1000 + 54 = {(n_ep + n_svc) / 1000 + 54:.0f} MB"
    return [harness.Row(f"DNS memory at {n_svc:,} Services, {n_ep:,} endpoints (informers + view)", slim - base, "MB",
                        anchor=anchor, note=f"process {slim:.1f} MB"),
            harness.Row("DNS memory, same, caching the full objects (no informer transform)", full - full_base,
                        "MB", note=f"process {full:.1f} MB")]


if __name__ == "__main__":
    main()
