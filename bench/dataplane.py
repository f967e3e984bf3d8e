"""Service data-plane benchmarks (root), each figure printed beside its goal in one table.

Part "sync" (this file, for now): how long the nftables proxy takes to program its table,
into a throwaway network namespace (`pk-pbench-<6 hex>`, deleted at the end; nothing else
is touched):
- full sync of 1,000 and 10,000 Services x 5 endpoints: the backend's sync (rule generation
  and `nft -f`; the change tracker's apply of the 10,000 new Services is shown beside it),
  into an empty namespace (cold) and again over the table it made (a re-sync, as after a
  failure or on the periodic full sync); goal < 2 s at 10,000;
- partial sync at 10,000 Services: one Service added, one Service's endpoints changed
  (median and p99 of --samples, tracker apply included); goal < 50 ms; anchor: kube-proxy's
  nftables mode took ~141 ms to add one Service at 10,000 (kubernetes/kubernetes PR #126013);
- the same table laid out as kube-proxy's nftables mode lays it out (a chain per endpoint,
  an anonymous `numgen ... vmap` per Service), timed as `nft -f` alone in this kernel: the
  peer that explains why pocketkube folds endpoint chains into the Service chain.

    sudo .venv/bin/python -m bench.dataplane [--samples 20] [--only sync]

The wrk throughput part and network programming latency need a cluster; they come later.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.pods import Row, percentile  # noqa: E402
from pocketkube.proxy.changetracker import ChangeTracker  # noqa: E402
from pocketkube.proxy.nftables import NftablesBackend, NftablesConfig, NftRunner  # noqa: E402
from pocketkube.proxy.servicemap import chain_base  # noqa: E402

FULL_GOAL_S = 2.0
PARTIAL_GOAL_MS = 50.0
KUBE_PROXY_ADD_ONE_MS = (("kube-proxy nftables", 141.0),)
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
    """Records how long each `nft -f` took."""

    def __init__(self, netns: str):
        super().__init__(netns)
        self.nft_seconds: list[float] = []

    async def apply(self, script: str) -> None:
        started = time.perf_counter()
        await super().apply(script)
        self.nft_seconds.append(time.perf_counter() - started)


async def _full_and_partial(count: int, samples: int, partial: bool) -> list[Row]:
    rows = []
    with Namespace() as netns:
        tracker = ChangeTracker("node-0")
        runner = TimedRunner(netns)
        backend = NftablesBackend(NftablesConfig(node_name="node-0"), runner)
        for i in range(count):
            tracker.on_service(None, service(i))
            tracker.on_slice(endpoint_slice(i))
        label = f"{count:,} Services x {ENDPOINTS} endpoints"
        goal = FULL_GOAL_S if count >= 10_000 else None
        started = time.perf_counter()
        result = tracker.apply()
        applied = time.perf_counter() - started
        for how, runs in (("cold", 1), ("re-sync over its own table, median of 3", 3)):
            totals = []
            for _ in range(runs):
                backend.needs_full_sync = True
                started = time.perf_counter()
                await backend.sync(tracker.services, tracker.endpoints, result)
                totals.append(time.perf_counter() - started)
            detail = f"(nft {runner.nft_seconds[-1]:.2f} s" + (f"; tracker apply before it {applied:.2f} s)"
                                                               if how == "cold" else ")")
            rows.append(Row(f"full sync, {label} ({how})", statistics.median(totals), "s", goal, detail=detail))
        if not partial:
            return rows
        added, changed = [], []
        for k in range(samples):
            new = count + k
            tracker.on_service(None, service(new))
            tracker.on_slice(endpoint_slice(new))
            started = time.perf_counter()
            await backend.sync(tracker.services, tracker.endpoints, tracker.apply())
            added.append((time.perf_counter() - started) * 1000)
            tracker.on_slice(endpoint_slice(k, generation=count * ENDPOINTS + k))
            started = time.perf_counter()
            await backend.sync(tracker.services, tracker.endpoints, tracker.apply())
            changed.append((time.perf_counter() - started) * 1000)
        for what, values in (("add one Service", added), ("change one Service's endpoints", changed)):
            rows.append(Row(f"partial sync at {label}: {what}, median", statistics.median(values), "ms",
                            PARTIAL_GOAL_MS, KUBE_PROXY_ADD_ONE_MS if what.startswith("add") else ()))
            rows.append(Row(f"partial sync at {label}: {what}, p99", percentile(values, 99), "ms",
                            PARTIAL_GOAL_MS))
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


async def _kube_proxy_peer(count: int) -> list[Row]:
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
    label = f"{count:,} Services x {ENDPOINTS} endpoints"
    return [Row(f"peer: kube-proxy's layout, nft -f of {label}", full, "s", FULL_GOAL_S),
            Row(f"peer: kube-proxy's layout, nft -f adding one Service at {count:,}", add_one, "ms",
                PARTIAL_GOAL_MS)]


def sync(args) -> list[Row]:
    async def run() -> list[Row]:
        rows = await _full_and_partial(1_000, args.samples, partial=False)
        rows += await _full_and_partial(10_000, args.samples, partial=True)
        if not args.skip_peer:
            rows += await _kube_proxy_peer(10_000)
        return rows

    return asyncio.run(run())


MEASUREMENTS = [sync]


def main() -> None:
    p = argparse.ArgumentParser(description="pocketkube service data-plane benchmarks (root)")
    p.add_argument("--samples", type=int, default=20, help="partial syncs measured of each kind")
    p.add_argument("--skip-peer", action="store_true", help="skip kube-proxy's layout (it takes ~20 s)")
    p.add_argument("--only", choices=[m.__name__ for m in MEASUREMENTS], help="run one part")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/dataplane.py needs root: it creates network namespaces and nftables tables in them")
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    for measure in MEASUREMENTS:
        if args.only and measure.__name__ != args.only:
            continue
        print(f"running {measure.__name__} ...", file=sys.stderr, flush=True)
        rows += measure(args)
    print(f"\npocketkube data-plane benchmark ({os.cpu_count()} CPUs; 1-minute load average {load_before:.1f} "
          f"before, {os.getloadavg()[0]:.1f} after)")
    for row in rows:
        print("  " + row.render())


if __name__ == "__main__":
    main()
