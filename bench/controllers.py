"""Controller benchmarks, each printed beside its goal and anchor in one table.

Each measurement is one function that starts its own `pocketkube server` (SQLite datastore)
in a subprocess, drives it over HTTPS as kubectl and kubelets do, and returns table rows.

- endpoint propagation: pod Ready -> EndpointSlice updated (p50/p99), 1,000 Services x 10 pods;
  the samples are taken in --sample-rounds rounds on one server, each round's p50 and p99 a figure.
- deployment fan-out: 1,000 Deployments of 3 replicas until all 3,000 pods exist (and are bound),
  --rounds times, each on a fresh server.
Each row is the median of the rounds with their min and max (bench/harness.py), at the yardstick
CPU speed (harness.speed() before and after each round: this guest's CPU speed drifts by itself,
by ~20% within minutes, and these CPU-bound figures with it). There is no peer in the same run:
the goals are absolute, the anchors what upstream publishes.

    .venv/bin/python -m bench.controllers [--services 1000] [--pods-per-service 10] [--samples 550]
                                          [--sample-rounds 11] [--deployments 1000] [--replicas 3]
                                          [--only NAME] [--rounds 9] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import os
import random
import shutil
import ssl
import sys
import tempfile
import time

import aiohttp
import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import harness  # noqa: E402
from bench.harness import Row, percentile  # noqa: E402
from tests.conftest import start_server  # noqa: E402

JSON = {"Content-Type": "application/json"}
MERGE = {"Content-Type": "application/merge-patch+json"}
NODE = "bench-node"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
PODS = "/api/v1/namespaces/default/pods"


async def session_for(srv) -> aiohttp.ClientSession:
    ctx = ssl.create_default_context(cafile=srv.ca)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0),
                                 headers={"Authorization": f"Bearer {srv.token}"})


async def send_all(session, requests: list[tuple[str, str, bytes, dict]], concurrency: int = 32) -> None:
    """Run (method, url, body, headers) requests, `concurrency` at a time; any failure raises."""
    queue = list(reversed(requests))

    async def worker():
        while queue:
            method, url, body, headers = queue.pop()
            async with session.request(method, url, data=body, headers=headers) as r:
                if r.status >= 300:
                    raise RuntimeError(f"{method} {url}: {r.status} {await r.text()}")
                await r.read()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


# --- endpoint propagation ---------------------------------------------------------------

def _pod_ip(index: int) -> str:
    return str(ipaddress.IPv4Address("10.244.0.0") + index + 1)


def _pod_status(ip: str, ready: bool) -> bytes:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return orjson.dumps({"status": {"phase": "Running", "hostIP": "172.18.0.2", "podIP": ip, "podIPs": [{"ip": ip}],
                                    "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                    "lastTransitionTime": now}]}})


async def _populate(session, url: str, services: int, per_service: int) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}
    await send_all(session, [("POST", f"{url}/api/v1/nodes", orjson.dumps(node), JSON)])
    await send_all(session, [
        ("POST", f"{url}/api/v1/namespaces/default/services", orjson.dumps({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{s:04d}"},
            "spec": {"selector": {"app": f"svc-{s:04d}"}, "ports": [{"port": 80, "targetPort": 8080}]}}), JSON)
        for s in range(services)])
    await send_all(session, [
        ("POST", f"{url}{PODS}", orjson.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"svc-{s:04d}-{r}", "labels": {"app": f"svc-{s:04d}"}},
            "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "nginx",
                                                       "ports": [{"containerPort": 8080}]}]}}), JSON)
        for s in range(services) for r in range(per_service)])
    await send_all(session, [
        ("PATCH", f"{url}{PODS}/svc-{s:04d}-{r}/status", _pod_status(_pod_ip(s * per_service + r), False), MERGE)
        for s in range(services) for r in range(per_service)])


async def _wait_for_slices(session, url: str, services: int, per_service: int, timeout: float) -> str:
    """Poll until every Service has a slice holding all its (not ready) pods; returns the
    list's resourceVersion to watch from."""
    deadline = time.monotonic() + timeout
    while True:
        async with session.get(f"{url}{SLICES}") as r:
            body = orjson.loads(await r.read())
        full = sum(1 for es in body["items"] if len(es.get("endpoints") or []) == per_service)
        if full == services:
            return body["metadata"]["resourceVersion"]
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {full} of {services} Services have their slices after {timeout}s")
        await asyncio.sleep(0.5)


async def _watch_ready(session, url: str, rv: str, waiting: dict[str, asyncio.Future]) -> None:
    """Resolve waiting[ip] with the arrival time of the first slice event showing it ready."""
    async with session.get(f"{url}{SLICES}", params={"watch": "true", "resourceVersion": rv},
                           timeout=aiohttp.ClientTimeout(total=None)) as r:
        async for line in r.content:
            arrived = time.perf_counter()
            event = orjson.loads(line)
            for endpoint in (event.get("object") or {}).get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready"):
                    for ip in endpoint.get("addresses") or []:
                        future = waiting.get(ip)
                        if future is not None and not future.done():
                            future.set_result(arrived)


async def endpoint_propagation(args) -> tuple[list[Row], list[str]]:
    """Pod Ready -> EndpointSlice updated: from the status PATCH to the watch event of the
    slice saying ready, one pod at a time, with 1,000 Services x 10 pods in the cluster; the
    samples in `args.sample_rounds` rounds, each round's p50 and p99 one figure."""
    data = tempfile.mkdtemp(prefix="pk-bench-ctl-")
    srv = start_server(data, datastore="sqlite")
    try:
        async with await session_for(srv) as session:
            t0 = time.perf_counter()
            await _populate(session, srv.url, args.services, args.pods_per_service)
            rv = await _wait_for_slices(session, srv.url, args.services, args.pods_per_service, timeout=300)
            setup = time.perf_counter() - t0
            waiting: dict[str, asyncio.Future] = {}
            watcher = asyncio.create_task(_watch_ready(session, srv.url, rv, waiting))
            await asyncio.sleep(0.2)
            picks = random.Random(7).sample([(s, r) for s in range(args.services)
                                             for r in range(args.pods_per_service)], args.samples)
            latencies, speeds = [], []
            per_round = max(1, len(picks) // args.sample_rounds)
            for index, (s, r) in enumerate(picks):
                if index % per_round == 0:
                    speeds.append(harness.speed())
                ip = _pod_ip(s * args.pods_per_service + r)
                waiting[ip] = asyncio.get_running_loop().create_future()
                sent = time.perf_counter()
                async with session.patch(f"{srv.url}{PODS}/svc-{s:04d}-{r}/status", data=_pod_status(ip, True),
                                         headers=MERGE) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"status patch: {resp.status} {await resp.text()}")
                    await resp.read()
                arrived = await asyncio.wait_for(waiting[ip], 30)
                latencies.append((arrived - sent) * 1000)
            speeds.append(harness.speed())
            watcher.cancel()
    finally:
        srv.stop()
        shutil.rmtree(data, ignore_errors=True)
    scale = f"{args.services:,} Services x {args.pods_per_service} pods"
    # each round at the yardstick CPU speed: the mean of the speeds measured before and after it
    rounds = [[v * (speeds[i] + speeds[min(i + 1, len(speeds) - 1)]) / 2
               for v in latencies[i * per_round:(i + 1) * per_round]] for i in range(args.sample_rounds)]
    rounds = [r for r in rounds if r]
    return [
        harness.spread_row(f"endpoint propagation p50 ({scale})",
                           harness.spread([percentile(r, 50) for r in rounds]), "ms", goal=100, higher=False),
        harness.spread_row(f"endpoint propagation p99 ({scale})",
                           harness.spread([percentile(r, 99) for r in rounds]), "ms", goal=100, higher=False,
                           anchor="k8s network programming latency SLO p99 <= 30 s"),
    ], [f"endpoint propagation: {args.services * args.pods_per_service:,} pods and {args.services:,} Services "
        f"created, their slices written, in {setup:.1f} s; {len(latencies)} samples in {len(rounds)} rounds "
        f"of {per_round}"]


# --- deployment fan-out --------------------------------------------------------------------

def _deployment(name: str, replicas: int) -> bytes:
    return orjson.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}})


async def _ready_node(session, url: str, name: str, max_pods: int) -> None:
    """A node as a kubelet registers it: created, then reported Ready with room for the pods."""
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    status = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                         "message": "kubelet is posting ready status"}],
                         "capacity": {"cpu": "64", "memory": "256Gi", "pods": str(max_pods)},
                         "allocatable": {"cpu": "64", "memory": "256Gi", "pods": str(max_pods)}}}
    await send_all(session, [("POST", f"{url}/api/v1/nodes", orjson.dumps(node), JSON)])
    await send_all(session, [("PATCH", f"{url}/api/v1/nodes/{name}/status", orjson.dumps(status), MERGE)])


async def _count_pods(session, url: str) -> tuple[int, int, str]:
    """(pods, pods bound to a node, resourceVersion) from one list of the pods' metadata."""
    async with session.get(f"{url}{PODS}") as r:
        body = orjson.loads(await r.read())
    bound = sum(1 for p in body["items"] if (p.get("spec") or {}).get("nodeName"))
    return len(body["items"]), bound, body["metadata"]["resourceVersion"]


async def _watch_pod_counts(session, url: str, rv: str, want: int, created_at: dict[str, float]) -> None:
    """Record when each pod is first seen created and when it is first seen bound."""
    async with session.get(f"{url}{PODS}", params={"watch": "true", "resourceVersion": rv},
                           timeout=aiohttp.ClientTimeout(total=None)) as r:
        async for line in r.content:
            event = orjson.loads(line)
            pod = event.get("object") or {}
            name = (pod.get("metadata") or {}).get("name")
            if event.get("type") == "ADDED" and name not in created_at:
                created_at[name] = time.perf_counter()
            if (pod.get("spec") or {}).get("nodeName") and "bound:" + name not in created_at:
                created_at["bound:" + name] = time.perf_counter()
                if sum(1 for k in created_at if k.startswith("bound:")) >= want:
                    return


async def deployment_fanout_once(args) -> tuple[dict[str, float], str]:
    """1,000 Deployments of 3 replicas, created through the API with keep-alive, on a fresh
    server: the time from the first create until every pod exists, and until every pod is bound
    to the node."""
    data = tempfile.mkdtemp(prefix="pk-bench-deploy-")
    srv = start_server(data, datastore="sqlite")
    want = args.deployments * args.replicas
    try:
        async with await session_for(srv) as session:
            await _ready_node(session, srv.url, NODE, want + 100)
            _, _, rv = await _count_pods(session, srv.url)
            seen: dict[str, float] = {}
            watcher = asyncio.create_task(_watch_pod_counts(session, srv.url, rv, want, seen))
            await asyncio.sleep(0.2)
            t0 = time.perf_counter()
            await send_all(session, [
                ("POST", f"{srv.url}/apis/apps/v1/namespaces/default/deployments",
                 _deployment(f"web-{d:04d}", args.replicas), JSON) for d in range(args.deployments)])
            posted = time.perf_counter() - t0
            await asyncio.wait_for(watcher, args.timeout)
            created = sorted(t for k, t in seen.items() if not k.startswith("bound:"))
            bound = sorted(t for k, t in seen.items() if k.startswith("bound:"))
            if len(created) < want:
                raise RuntimeError(f"only {len(created)} of {want} pods seen created")
            all_created = created[want - 1] - t0
            all_bound = bound[want - 1] - t0
            pods, bound_now, _ = await _count_pods(session, srv.url)
            if pods != want:
                raise RuntimeError(f"{pods} pods exist, expected exactly {want} (duplicates or losses)")
    finally:
        srv.stop()
        shutil.rmtree(data, ignore_errors=True)
    return ({"created": all_created, "per_second": want / all_created, "bound": all_bound},
            f"the {args.deployments:,} Deployment creates took {posted:.1f} s; {pods:,} pods exist, "
            f"{bound_now:,} bound, no duplicates")


async def deployment_fanout(args) -> tuple[list[Row], list[str]]:
    """deployment_fanout_once, `args.rounds` times, each on a fresh server."""
    runs = []
    for _ in range(args.rounds):
        speed_before = harness.speed()
        figures, note = await deployment_fanout_once(args)
        speed = (speed_before + harness.speed()) / 2  # at the yardstick CPU speed, as the other rows
        runs.append(({"created": figures["created"] * speed, "per_second": figures["per_second"] / speed,
                      "bound": figures["bound"] * speed}, f"{note}; CPU speed {speed:.2f}x the yardstick"))
    want = args.deployments * args.replicas
    scale = f"{args.deployments:,} Deployments x {args.replicas}"

    def figure(key: str) -> harness.Spread:
        return harness.spread([r[key] for r, _ in runs])

    return [
        harness.spread_row(f"all pods created ({scale})", figure("created"), "s", goal=20, higher=False,
                           anchor="kwok CI 10,000 pods Running in 120 s (83 pods/s)"),
        harness.spread_row(f"pods created per second ({scale})", figure("per_second"), "/s", goal=want / 20),
        harness.spread_row(f"all pods bound to the node ({scale})", figure("bound"), "s", goal=20, higher=False),
    ], [f"deployment fan-out, round {i + 1}: {note}" for i, (_, note) in enumerate(runs)]


MEASUREMENTS = [endpoint_propagation, deployment_fanout]


def main_with(args) -> None:
    with harness.Session("controllers", args) as session:
        for measure in MEASUREMENTS:
            if args.only and measure.__name__ != args.only:
                continue
            rows, notes = asyncio.run(measure(args))
            session.add(*rows)
            for note in notes:
                session.note(note)
        session.note("pocketkube server on SQLite, driven over HTTPS as kubectl and kubelets do")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--pods-per-service", type=int, default=10)
    p.add_argument("--samples", type=int, default=550)
    p.add_argument("--sample-rounds", type=int, default=11,
                   help="rounds the endpoint propagation samples are taken in (cheap: 11, harness.REROUND_AGREEMENT)")
    p.add_argument("--deployments", type=int, default=1000)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for the deployments' pods")
    p.add_argument("--only", choices=[m.__name__ for m in MEASUREMENTS], help="run one measurement")
    harness.add_arguments(p, rounds=9)  # --rounds: deployment fan-outs, each on a fresh server (~20 s each)
    main_with(p.parse_args())


if __name__ == "__main__":
    main()
