"""API server benchmark: pocketkube's server on SQLite and on etcd in interleaved rounds
(creates/s, get and list latency at 10k objects, watch fan-out latency to 100 watchers, server
RSS: medians over rounds with min and max, beside their fixed goals, and etcd / SQLite as
ratios, goal for creates/s >= 0.5x); the same beside upstream kube-apiserver on etcd in
interleaved rounds, as ratios (the rows handed to `python -m bench`); then what RBAC
authorization costs a GET and a create.

The SQLite/etcd part runs two real `pocketkube server` processes (one on SQLite, one on
Debian's etcd started as `pocketkube up --datastore etcd` starts it: TLS with client
certificates on TCP, the server on etcd's unix socket) and drives them over HTTPS with keep-alive connections, as kubectl and
controllers do. The authorization part runs
an API server in this process and switches its authorizer off and on between interleaved
rounds (requests as a ServiceAccount bound to the rules of `edit`, so RBAC resolves its rules), printing the
median ratio on/off and its spread. Last, a custom resource's create and Table list beside a
built-in kind's.

    .venv/bin/python -m bench.api [--services 10000] [--watchers 100] [--rounds 9] [--json FILE]
                                  [--authorization-mode RBAC|AlwaysAllow] [--only main|peer|authz|crd]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp
import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import harness  # noqa: E402
from bench.harness import rss_mb  # noqa: E402
from tests.conftest import start_server  # noqa: E402

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def service(name: str) -> bytes:
    return orjson.dumps({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": name, "labels": {"app": name, "bench": "yes"}},
                         "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}})


async def create_many(session, url: str, names: list[str], concurrency: int = 32) -> float:
    queue = list(reversed(names))

    async def worker():
        while queue:
            name = queue.pop()
            async with session.post(f"{url}/api/v1/namespaces/default/services", data=service(name),
                                    headers={"Content-Type": "application/json"}) as r:
                if r.status != 201:
                    raise RuntimeError(f"create {name}: {r.status} {await r.text()}")
                await r.read()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0


async def timed(session, method: str, url: str, n: int, headers=None) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.request(method, url, headers=headers) as r:
            await r.read()
            assert r.status == 200, r.status
        out.append((time.perf_counter() - t0) * 1000)
    return out


def cpu_seconds(pids) -> float:
    """User + system CPU time the processes have used so far (all their threads)."""
    return sum(harness.cpu_seconds(pid) for pid in pids)


async def watch_latency(session, url: str, watchers: int, events: int, prefix: str = "w",
                        cpu: dict | None = None) -> list[float]:
    """Latency from each create's send to each watcher's reading of its event (ms). With `cpu`
    ({"pids": [...]}), also the servers' CPU time from the watchers being open to the last
    event read, as cpu["seconds"]."""
    async with session.get(f"{url}/api/v1/namespaces/default/configmaps?limit=1") as rv_resp:
        rv = (await rv_resp.json())["metadata"]["resourceVersion"]
    sent: dict[str, float] = {}
    lat: list[float] = []
    ready = asyncio.Event()
    opened = 0

    async def watcher():
        nonlocal opened
        async with session.get(f"{url}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}",
                               timeout=aiohttp.ClientTimeout(total=None)) as r:
            opened += 1
            if opened == watchers:
                ready.set()
            seen = 0
            async for line in r.content:
                ev = orjson.loads(line)
                name = ev["object"]["metadata"]["name"]
                lat.append((time.perf_counter() - sent[name]) * 1000)
                seen += 1
                if seen == events:
                    return

    tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
    await asyncio.wait_for(ready.wait(), 30)
    await asyncio.sleep(0.2)
    cpu0 = cpu_seconds(cpu["pids"]) if cpu is not None else 0.0
    for i in range(events):
        name = f"{prefix}{i}"
        sent[name] = time.perf_counter()
        async with session.post(f"{url}/api/v1/namespaces/default/configmaps",
                                data=orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                                   "metadata": {"name": name}}),
                                headers={"Content-Type": "application/json"}) as r:
            await r.read()
        await asyncio.sleep(0.02)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    if cpu is not None:
        cpu["seconds"] = cpu_seconds(cpu["pids"]) - cpu0
    return lat


# ---- pocketkube on SQLite and on etcd -------------------------------------------------------

# (label, metric key, unit, goal, True if higher is better, anchor) of each backend's rows: the
# median over rounds with min and max, judged against the fixed goal.
BACKEND_ROWS = (
    ("creates/s (Services, 32 clients)", "creates", "/s", 1000, True, "k8s SLO p99<=1s per mutating call"),
    ("get p50", "get_p50", "ms", 10, False, ""),
    ("get p99", "get_p99", "ms", 20, False, "k3s/SQLite avg 170 ms"),
    ("list all Services JSON p50", "list_p50", "ms", 300, False, ""),
    ("list all Services as Table p50", "table_p50", "ms", 300, False, ""),
    ("list all Services as Table p99", "table_p99", "ms", 300, False, ""),
    ("watch delivery p50", "watch_p50", "ms", 20, False, ""),
    ("watch delivery p99", "watch_p99", "ms", 20, False, ""),
    ("server RSS after the lists", "rss_listed", "MB", 150, False, "k3s server ~1.6 GB with workload"),
    ("server RSS after the watchers", "rss_watched", "MB", 150, False, ""),
)
# The etcd backend's rows (its other figures are printed as notes) and their ratio rows to SQLite's.
ETCD_ROWS = ("creates", "list_p50", "watch_p99")


def start_backends(data: str) -> tuple[dict, list]:
    """pocketkube's server on SQLite and on etcd (Debian's etcd, started as `pocketkube up
    --datastore etcd` starts it: up.etcd_argv, TLS with client certificates for TCP clients, the
    server on its unix socket), each API server
    alone (no controllers), the data of both under `data`. Returns the targets (name -> url,
    ca, token, pids: the server's, then etcd's) and what to stop."""
    from pocketkube.apiserver.certs import make_etcd_pki
    from tests.etcdproc import EtcdProcess

    stop: list = []
    for part in ("sqlite", "on-etcd"):
        os.makedirs(os.path.join(data, part))
    try:
        sqlite = start_server(os.path.join(data, "sqlite"), datastore="sqlite", controllers=False)
        stop.append(sqlite)
        pki = make_etcd_pki(os.path.join(data, "etcd-pki"), ["127.0.0.1", "localhost"])
        etcd = EtcdProcess(os.path.join(data, "etcd"), pki=pki)
        stop.append(etcd)
        on_etcd = start_server(os.path.join(data, "on-etcd"), datastore="etcd", controllers=False, args=(
            "--etcd-servers", etcd.socket_url, "--etcd-cafile", pki.ca_cert, "--etcd-certfile", pki.client_cert,
            "--etcd-keyfile", pki.client_key))
        stop.append(on_etcd)
    except BaseException:
        for thing in reversed(stop):
            thing.stop()
        raise
    targets = {"SQLite": (sqlite.url, sqlite.ca, sqlite.token, [sqlite.proc.pid]),
               "etcd": (on_etcd.url, on_etcd.ca, on_etcd.token, [on_etcd.proc.pid, etcd.proc.pid])}
    return targets, stop


async def backend_comparison(args, session: harness.Session) -> None:
    """pocketkube's API server on SQLite and on etcd, interleaved rounds (SQLite etcd SQLite etcd
    ...), the same client (this process, aiohttp over HTTPS with keep-alive) and requests, both
    servers (and etcd) pinned to one CPU and the client to the other. Loading: each round creates
    1/rounds of the Services in each (creates/s); measuring at all of them: each round times
    GETs, lists (JSON and Table), a watch fan-out, and takes the RSS. Every figure is the median
    over rounds with min and max, judged against its fixed goal; etcd's creates/s, list and
    watch p99 also as the per-round ratio etcd / SQLite."""
    server_cpu, client_cpu = harness.server_and_client_cpus()
    cpus = harness.usable_cpus()
    data = tempfile.mkdtemp(prefix="pk-bench-backends-")
    try:
        targets, stop = start_backends(data)
        try:
            for _, _, _, pids in targets.values():
                for pid in pids:
                    pin_all_threads(pid, server_cpu)
            harness.pin(client_cpu)
            try:
                results, loaded = await compared_rounds(targets, args, server_cpu)
            finally:
                os.sched_setaffinity(0, cpus)
        finally:
            for thing in reversed(stop):
                thing.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    n = f"{args.services:,}"
    for name in targets:
        for what, key, unit, goal, higher, anchor in BACKEND_ROWS:
            if name == "etcd" and key not in ETCD_ROWS:
                continue
            session.add(harness.spread_row(f"{what} at {n}, {name}", harness.spread(results[name][key]), unit,
                                           goal=goal, higher=higher, anchor=anchor))
        session.add(harness.Row(f"server RSS with {n} Services loaded, {name} (one reading)", loaded[name], "MB",
                                150, False, "k3s server ~1.6 GB with workload"))
    session.add(harness.ratio_row(f"creates/s at {n}, etcd / SQLite",
                                  harness.ratio(results["etcd"]["creates"], results["SQLite"]["creates"]),
                                  goal=0.5, higher=True, anchor="kube-apiserver on etcd: see the rows beside it"))
    for what, key in (("list all Services JSON p50", "list_p50"), ("watch delivery p99", "watch_p99")):
        session.add(harness.ratio_row(f"{what} at {n}, etcd / SQLite",
                                      harness.ratio(results["etcd"][key], results["SQLite"][key]), higher=False))
    session.note(f"pocketkube on SQLite and on etcd (Debian's etcd, as `up --datastore etcd`: the server on its unix "
                 f"socket; data of both under {tempfile.gettempdir()}, on disk): {n} Services, {args.watchers} watchers, {args.rounds} "
                 f"interleaved rounds, API servers alone, servers on CPU {server_cpu}, client on CPU {client_cpu}; "
                 f"medians, SQLite / etcd; {speed_text(results)}:")
    for what, key, unit, *_ in BACKEND_ROWS:
        session.note(f"  {what:<34} {statistics.median(results['SQLite'][key]):>9.1f} {unit:<3} / "
                     f"{statistics.median(results['etcd'][key]):>9.1f} {unit}")


def _sessions(targets: dict) -> dict[str, aiohttp.ClientSession]:
    """One HTTPS session per target (url, CA file, bearer token, pids), trusting its CA."""
    sessions = {}
    for name, (_, ca, token, _) in targets.items():
        conn = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca), limit=0)
        sessions[name] = aiohttp.ClientSession(connector=conn, headers={"Authorization": f"Bearer {token}"})
    return sessions


# Figures that are CPU time of the servers (times, and creates/s as their inverse), reported at
# the yardstick CPU speed (ADR 0012: this guest's CPU speed drifts by itself, ~20% in minutes).
TIMES = ("create_cpu", "get_p50", "get_p99", "list_p50", "table_p50", "table_p99", "watch_p50", "watch_p99",
         "watch_cpu")
RATES = ("creates",)


def at_yardstick(figures: dict[str, float], speed: float) -> dict[str, float]:
    """A round's figures at the yardstick CPU speed (`speed`: harness.speed over the round)."""
    return {key: value * speed if key in TIMES else value / speed if key in RATES else value
            for key, value in figures.items()} | {"speed": speed}


async def load_round(session, url: str, pids: list[int], names: list[str], cpu: int) -> dict[str, float]:
    """Create `names` with 32 clients: creates/s and the servers' CPU per create (us)."""
    before, cpu0 = harness.speed(cpu), cpu_seconds(pids)
    took = await create_many(session, url, names)
    figures = {"creates": len(names) / took, "create_cpu": (cpu_seconds(pids) - cpu0) / len(names) * 1e6}
    return at_yardstick(figures, (before + harness.speed(cpu)) / 2)


async def read_round(session, url: str, pids: list[int], watchers: int, prefix: str, cpu: int) -> dict[str, float]:
    """One measuring round at the loaded objects: 300 GETs, 5 JSON lists, 8 Table lists, a watch
    fan-out (`watchers` x 50 events, the servers' CPU per event delivered), RSS after the lists and
    after the watchers (the server's, and with `pids[1:]`, e.g. its etcd)."""
    before = harness.speed(cpu)
    get = await timed(session, "GET", f"{url}/api/v1/namespaces/default/services/svc-00042", 300)
    lst = await timed(session, "GET", f"{url}/api/v1/namespaces/default/services", 5)
    tbl = await timed(session, "GET", f"{url}/api/v1/namespaces/default/services", 8, headers={"Accept": TABLE})
    rss_listed = rss_mb(pids[0])
    used = {"pids": pids}
    lat = await watch_latency(session, url, watchers, 50, prefix=prefix, cpu=used)
    figures = {"get_p50": statistics.median(get), "get_p99": pct(get, 99), "list_p50": statistics.median(lst),
               "table_p50": statistics.median(tbl), "table_p99": pct(tbl, 99),
               "watch_p50": statistics.median(lat), "watch_p99": pct(lat, 99),
               "watch_cpu": used["seconds"] / (50 * watchers) * 1e6,
               "rss_listed": rss_listed, "rss_watched": rss_mb(pids[0]), "rss": sum(rss_mb(pid) for pid in pids)}
    return at_yardstick(figures, (before + harness.speed(cpu)) / 2)


async def compared_rounds(targets: dict, args, cpu: int) -> tuple[dict[str, dict[str, list[float]]], dict[str, float]]:
    """The targets interleaved (A B A B ...): loading, each round creates 1/rounds of the Services
    in each (load_round); measuring at all of them, `args.rounds` read_rounds in each. Returns
    each target's figures per round, and its server's RSS once loaded."""
    results: dict[str, dict[str, list[float]]] = {name: {} for name in targets}
    sessions = _sessions(targets)

    def keep(name: str, figures: dict[str, float]) -> None:
        for key, value in figures.items():
            results[name].setdefault(key, []).append(value)

    try:
        per_round = -(-args.services // args.rounds)
        for r in range(args.rounds):
            names = [f"svc-{i:05d}" for i in range(r * per_round, min(args.services, (r + 1) * per_round))]
            for name, (url, _, _, pids) in targets.items():
                keep(name, await load_round(sessions[name], url, pids, names, cpu))
        loaded = {name: rss_mb(pids[0]) for name, (_, _, _, pids) in targets.items()}
        for r in range(args.rounds):
            for name, (url, _, _, pids) in targets.items():
                keep(name, await read_round(sessions[name], url, pids, args.watchers, f"w{r}-", cpu))
    finally:
        for s in sessions.values():
            await s.close()
    return results, loaded


def speed_text(results: dict[str, dict[str, list[float]]]) -> str:
    speeds = [v for figures in results.values() for v in figures["speed"]]
    return (f"CPU-bound figures (times, creates/s) at the yardstick CPU speed, measured on the servers' CPU before "
            f"and after each round (this run: {statistics.median(speeds):.2f}x, {min(speeds):.2f}-{max(speeds):.2f})")


# ---- beside upstream kube-apiserver ---------------------------------------------------------

# (name, metric key, True if higher is better) of each row of the comparison.
PEER_ROWS = (
    ("creates/s (Services, 32 clients)", "creates", True),
    ("server CPU per create", "create_cpu", False),
    ("get p50", "get_p50", False),
    ("get p99", "get_p99", False),
    ("list all Services JSON p50", "list_p50", False),
    ("list all Services as Table p50", "table_p50", False),
    ("watch delivery p50", "watch_p50", False),
    ("watch delivery p99", "watch_p99", False),
    ("server CPU per event delivered", "watch_cpu", False),
    ("RSS (kube-apiserver: + etcd)", "rss", False),
    ("RSS (kube-apiserver alone)", "rss_watched", False),
)


def pin_all_threads(pid: int, cpu: int) -> None:
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True, stdout=subprocess.DEVNULL)


async def peer_comparison(args, session: harness.Session) -> list[harness.Row]:
    """pocketkube's server (SQLite) beside upstream kube-apiserver v1.20.2 on etcd, one run, the
    same client (this process, aiohttp over HTTPS with keep-alive), the same requests and bodies,
    the same authorization mode and identity (`kubernetes-admin` in `system:masters`). Both
    servers (kube-apiserver with its etcd) are pinned to one CPU and the client to another, their
    data on tmpfs (see bench/kube_apiserver.py). Rounds interleave the two (A B A B ...):
    loading, each round creates 1/rounds of the Services in each (creates/s); measuring, each
    round times GETs, lists and a watch fan-out on each, then takes the RSS. Every figure is
    printed as the median over rounds of the per-round ratio pocketkube / kube-apiserver, with
    min and max."""
    from bench.kube_apiserver import KubeAPIServer

    server_cpu, client_cpu = harness.server_and_client_cpus()
    cpus = harness.usable_cpus()
    data = tempfile.mkdtemp(prefix="pk-bench-peer-", dir="/dev/shm")
    pk = start_server(data, datastore="sqlite", controllers=False,
                      args=("--authorization-mode", args.authorization_mode))
    try:
        pin_all_threads(pk.proc.pid, server_cpu)
        with KubeAPIServer(cpu=server_cpu, authorization_mode=args.authorization_mode) as ka:
            harness.pin(client_cpu)
            try:
                targets = {"pocketkube": (pk.url, pk.ca, pk.token, [pk.proc.pid]),
                           "kube-apiserver": (ka.url, ka.ca, ka.token, ka.pids)}
                results, _ = await compared_rounds(targets, args, server_cpu)
            finally:
                os.sched_setaffinity(0, cpus)
    finally:
        pk.stop()
        shutil.rmtree(data, ignore_errors=True)
    n = f"{args.services:,}"
    session.note(f"beside kube-apiserver v1.20.2 + etcd 3.4: {n} Services, {args.watchers} watchers, "
                 f"{args.rounds} interleaved rounds, authorization {args.authorization_mode}, servers on CPU "
                 f"{server_cpu}, client on CPU {client_cpu}; {speed_text(results)}; medians of pocketkube / kube-apiserver:")
    rows = []
    for what, key, higher in PEER_ROWS:
        mine, peer = results["pocketkube"][key], results["kube-apiserver"][key]
        unit = {"creates": "/s", "rss": "MB", "rss_watched": "MB", "create_cpu": "us", "watch_cpu": "us"}.get(key, "ms")
        rows.append(harness.ratio_row(f"{what} at {n}, pocketkube / kube-apiserver", harness.ratio(mine, peer),
                                      goal=1.0, higher=higher, anchor="kube-apiserver v1.20.2 + etcd, same run"))
        session.note(f"  {what:<34} {statistics.median(mine):>9.1f} {unit:<3} / {statistics.median(peer):>9.1f} {unit}")
    return rows


async def authz_overhead(session: harness.Session, rounds: int = 15, per_round: int = 200) -> None:
    """GET and create latency with RBAC on and off in one in-process server, interleaved."""
    from pocketkube.apiserver.server import APIServer

    data = tempfile.mkdtemp(prefix="pk-bench-authz-")
    server = APIServer(data, port=0, datastore="sqlite")
    await server.start()
    rbac = server.handlers.authorizer
    try:
        ctx = ssl.create_default_context(cafile=server.pki.ca_cert)
        admin = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0)) as s:
            url = server.url

            async def call(method, path, body=None, headers=admin, want=(200, 201)):
                async with s.request(method, url + path, data=body, headers=headers) as r:
                    out = await r.read()
                    if r.status not in want:
                        raise RuntimeError(f"{method} {path}: {r.status} {out[:300]!r}")
                    return orjson.loads(out)

            await call("POST", "/api/v1/namespaces", orjson.dumps({"metadata": {"name": "bench"}}))
            await call("POST", "/api/v1/namespaces/bench/serviceaccounts", orjson.dumps({"metadata": {"name": "dev"}}))
            for part in ("edit", "view"):  # edit's rules (the aggregation controller does not run here)
                await call("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/bench/rolebindings", orjson.dumps({
                    "metadata": {"name": f"dev-{part}"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": f"system:aggregate-to-{part}"},
                    "subjects": [{"kind": "ServiceAccount", "name": "dev", "namespace": "bench"}]}))
            token = (await call("POST", "/api/v1/namespaces/bench/serviceaccounts/dev/token",
                                orjson.dumps({"spec": {}})))["status"]["token"]
            dev = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            await call("POST", "/api/v1/namespaces/bench/configmaps", orjson.dumps({"metadata": {"name": "c"}}), dev)
            counter = [0]

            async def measure() -> tuple[float, float]:
                gets, creates = [], []
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    await call("GET", "/api/v1/namespaces/bench/configmaps/c", headers=dev)
                    gets.append(time.perf_counter() - t0)
                    counter[0] += 1
                    body = orjson.dumps({"metadata": {"name": f"c{counter[0]}"}})
                    t0 = time.perf_counter()
                    await call("POST", "/api/v1/namespaces/bench/configmaps", body, dev)
                    creates.append(time.perf_counter() - t0)
                return statistics.median(gets), statistics.median(creates)

            await measure()  # warm up both paths
            results: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
            for i in range(rounds):
                for mode in (("on", "off") if i % 2 == 0 else ("off", "on")):
                    server.handlers.authorizer = rbac if mode == "on" else None
                    results[mode].append(await measure())
            server.handlers.authorizer = rbac
        for what, idx in (("GET ConfigMap", 0), ("create ConfigMap", 1)):
            on = [m[idx] for m in results["on"]]
            off = [m[idx] for m in results["off"]]
            session.add(harness.ratio_row(f"{what} latency, RBAC authorization on / off", harness.ratio(on, off),
                                          goal=1.10, higher=False, anchor="upstream: RBAC resolved per request too"))
            session.note(f"RBAC: {what} median {statistics.median(on) * 1000:.2f} ms on, "
                         f"{statistics.median(off) * 1000:.2f} ms off ({rounds} interleaved rounds of {per_round}, "
                         "as a ServiceAccount bound to edit, in-process server, SQLite)")
    finally:
        await server.stop()
        shutil.rmtree(data, ignore_errors=True)


async def custom_resource_speed(session: harness.Session, rounds: int = 8, per_round: int = 250) -> None:
    """Create and list-as-Table latency of a custom resource beside a built-in kind (ConfigMaps),
    interleaved rounds in one in-process server."""
    from pocketkube.apiserver.server import APIServer

    data = tempfile.mkdtemp(prefix="pk-bench-crd-")
    server = await _started(APIServer(data, port=0, datastore="sqlite"))
    try:
        ctx = ssl.create_default_context(cafile=server.pki.ca_cert)
        headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0), headers=headers) as s:
            async def call(method, path, body=None, accept="application/json"):
                async with s.request(method, server.url + path, data=body, headers={"Accept": accept}) as r:
                    out = await r.read()
                    if r.status not in (200, 201):
                        raise RuntimeError(f"{method} {path}: {r.status} {out[:300]!r}")

            await call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", orjson.dumps({
                "metadata": {"name": "widgets.bench.example.com"},
                "spec": {"group": "bench.example.com", "scope": "Namespaced",
                         "names": {"plural": "widgets", "kind": "Widget"},
                         "versions": [{"name": "v1", "served": True, "storage": True,
                                       "additionalPrinterColumns": [{"name": "Size", "type": "integer",
                                                                     "jsonPath": ".spec.size"}],
                                       "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                           "spec": {"type": "object", "properties": {
                                               "size": {"type": "integer", "minimum": 0},
                                               "color": {"type": "string", "default": "red"}}}}}}}]}}))
            kinds = {
                "ConfigMap": ("/api/v1/namespaces/default/configmaps",
                              lambda n: {"metadata": {"name": n}, "data": {"size": "1"}}),
                "Widget": ("/apis/bench.example.com/v1/namespaces/default/widgets",
                           lambda n: {"apiVersion": "bench.example.com/v1", "kind": "Widget",
                                      "metadata": {"name": n}, "spec": {"size": 1}}),
            }
            creates: dict[str, list[float]] = {k: [] for k in kinds}
            lists: dict[str, list[float]] = {k: [] for k in kinds}
            for i in range(rounds):
                for kind in (list(kinds) if i % 2 == 0 else list(reversed(kinds))):
                    path, make = kinds[kind]
                    t0 = time.perf_counter()
                    for j in range(per_round):
                        await call("POST", path, orjson.dumps(make(f"o-{i}-{j}")))
                    creates[kind].append((time.perf_counter() - t0) / per_round)
                    t0 = time.perf_counter()
                    await call("GET", path, accept=TABLE)
                    lists[kind].append(time.perf_counter() - t0)
        n = rounds * per_round
        for what, values in (("create", creates), ("list as Table", lists)):
            session.add(harness.ratio_row(f"custom resource {what}, Widget / ConfigMap",
                                          harness.ratio(values["Widget"], values["ConfigMap"]),
                                          goal=1.5, higher=False))
            session.note(f"custom resource {what}: Widget {statistics.median(values['Widget']) * 1000:.2f} ms, "
                         f"ConfigMap {statistics.median(values['ConfigMap']) * 1000:.2f} ms ({rounds} interleaved "
                         f"rounds of {per_round} creates then a Table list; {n:,} of each at the end, in-process "
                         "server, SQLite)")
    finally:
        await server.stop()
        shutil.rmtree(data, ignore_errors=True)


async def _started(server):
    await server.start()
    return server


def main() -> None:
    p = argparse.ArgumentParser()
    harness.add_arguments(p, rounds=9)  # --json FILE, --rounds N (of both comparisons; 9: REROUND_AGREEMENT)
    p.add_argument("--services", type=int, default=10_000)
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--authorization-mode", choices=("RBAC", "AlwaysAllow"), default="RBAC",
                   help="both servers' authorization mode (peer)")
    p.add_argument("--only", choices=("main", "peer", "authz", "crd"), default=None)
    args = p.parse_args()
    with harness.Session("api", args) as session:
        if args.only in (None, "main"):
            with harness.machine_lock():
                asyncio.run(backend_comparison(args, session))
        if args.only in (None, "peer"):
            with harness.machine_lock():  # no cluster, but a benchmark beside another measures both
                session.add(*asyncio.run(peer_comparison(args, session)))
        if args.only in (None, "authz"):
            asyncio.run(authz_overhead(session))
        if args.only in (None, "crd"):
            asyncio.run(custom_resource_speed(session))


if __name__ == "__main__":
    main()
