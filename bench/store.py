"""Store benchmark: MemoryStore and SQLiteStore side by side, against the targets.

Run: .venv/bin/python bench/store.py [--keys 10000] [--watchers 100] [--watch-writes 1000]

Measures, for each store, on one event loop:
- creates/s and create p99 (sequential awaited creates of ~300-byte values, one per key);
- get p50/p99 (random existing keys);
- list of all the keys under one prefix (median and worst of 20 lists);
- watch delivery to N watchers: time from the start of a write until the last of the
  N watchers got its event (p50/p99), with every watcher in its own task.
The SQLite file lives in a temporary directory on the same disk as /tmp.
Targets (from the store brief): >= 5,000 creates/s, a 10k-key list well under 50 ms.
Peer: etcd 3.2 with one client writes 583/s at 1.6 ms (etcd op-guide, 8 vCPU SSD).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pocketkube import store as store_pkg  # noqa: E402

VALUE = (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"default"},'
         b'"data":{"key":"' + b"v" * 200 + b'"}}')
PREFIX = "/registry/configmaps/default/"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure_writes_and_reads(store, keys: int) -> dict[str, float]:
    create_times = []
    started = time.perf_counter()
    for index in range(keys):
        before = time.perf_counter()
        await store.create(f"{PREFIX}cm-{index:06d}", VALUE)
        create_times.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started

    get_times = []
    for index in random.Random(1).choices(range(keys), k=keys):
        before = time.perf_counter()
        await store.get(f"{PREFIX}cm-{index:06d}")
        get_times.append(time.perf_counter() - before)

    list_times = []
    for _ in range(20):
        before = time.perf_counter()
        items, _ = await store.list(PREFIX)
        list_times.append(time.perf_counter() - before)
        assert len(items) == keys
    return {
        "creates/s": keys / elapsed,
        "create p99 (us)": percentile(create_times, 0.99) * 1e6,
        "get p50 (us)": percentile(get_times, 0.50) * 1e6,
        "get p99 (us)": percentile(get_times, 0.99) * 1e6,
        f"list {keys} median (ms)": statistics.median(list_times) * 1e3,
        f"list {keys} worst (ms)": max(list_times) * 1e3,
    }


async def measure_watch_delivery(store, watchers: int, writes: int) -> dict[str, float]:
    prefix = "/registry/events/"
    remaining = {"count": 0}
    all_received = asyncio.Event()

    async def consume(watch):
        async for _ in watch:
            remaining["count"] -= 1
            if remaining["count"] == 0:
                all_received.set()

    tasks = [asyncio.create_task(consume(store.watch(prefix, store.revision))) for _ in range(watchers)]
    await asyncio.sleep(0)
    latencies = []
    for index in range(writes):
        remaining["count"] = watchers
        all_received.clear()
        before = time.perf_counter()
        await store.create(f"{prefix}e-{index}", b"{}")
        await all_received.wait()
        latencies.append(time.perf_counter() - before)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        f"watch to {watchers} p50 (ms)": percentile(latencies, 0.50) * 1e3,
        f"watch to {watchers} p99 (ms)": percentile(latencies, 0.99) * 1e3,
    }


async def run(kind: str, data_dir: str, args) -> dict[str, float]:
    store = store_pkg.open_store(kind, os.path.join(data_dir, kind))
    await store.start()
    try:
        results = await measure_writes_and_reads(store, args.keys)
        results.update(await measure_watch_delivery(store, args.watchers, args.watch_writes))
        return results
    finally:
        await store.stop()


def print_table(memory: dict[str, float], sqlite: dict[str, float], keys: int) -> None:
    targets = {"creates/s": ">= 5,000", f"list {keys} median (ms)": "< 50"}
    print(f"{'metric':<26}{'memory':>12}{'sqlite':>12}{'sqlite/memory':>15}  target")
    for metric, memory_value in memory.items():
        sqlite_value = sqlite[metric]
        print(
            f"{metric:<26}{memory_value:>12,.1f}{sqlite_value:>12,.1f}"
            f"{sqlite_value / memory_value:>15.2f}  {targets.get(metric, '')}"
        )
    print("peer: etcd 3.2, one client: 583 writes/s at 1.6 ms (etcd op-guide performance.md)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--watch-writes", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pocketkube-bench-") as data_dir:
        memory = asyncio.run(run("memory", data_dir, args))
        sqlite = asyncio.run(run("sqlite", data_dir, args))
    print_table(memory, sqlite, args.keys)


if __name__ == "__main__":
    main()
