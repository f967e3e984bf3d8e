"""Store benchmark: MemoryStore and SQLiteStore side by side, against the targets.

Run: .venv/bin/python -m bench.store [--keys 10000] [--watchers 100] [--watch-writes 1000]
                                      [--rounds 5] [--json FILE]

Measures, for each store, on one event loop, in interleaved rounds (memory, SQLite, memory, ...;
a fresh store each round), each figure the median of the rounds with their min and max:
- creates/s and create p99 (sequential awaited creates of ~300-byte values, one per key);
- get p50/p99 (random existing keys);
- list of all the keys under one prefix (median and worst of 20 lists);
- watch delivery to N watchers: time from the start of a write until the last of the
  N watchers got its event (p50/p99), with every watcher in its own task.
The SQLite file lives in a temporary directory on the same disk as /tmp.
Goals (from the store brief), for SQLite, the default datastore: >= 5,000 creates/s, a 10k-key
list under 50 ms. The memory store (tests only) is shown beside it without goals. Anchor: etcd 3.2
with one client writes 583/s at 1.6 ms (etcd op-guide, 8 vCPU SSD).
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

from bench import harness  # noqa: E402
from bench.harness import percentile  # noqa: E402
from pocketkube import store as store_pkg  # noqa: E402

VALUE = (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"default"},'
         b'"data":{"key":"' + b"v" * 200 + b'"}}')
PREFIX = "/registry/configmaps/default/"
ETCD_ANCHOR = "etcd 3.2, one client: 583 writes/s at 1.6 ms (etcd op-guide)"


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
        "create p99 (us)": percentile(create_times, 99) * 1e6,
        "get p50 (us)": percentile(get_times, 50) * 1e6,
        "get p99 (us)": percentile(get_times, 99) * 1e6,
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
        f"watch to {watchers} p50 (ms)": percentile(latencies, 50) * 1e3,
        f"watch to {watchers} p99 (ms)": percentile(latencies, 99) * 1e3,
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


# figure -> (unit, goal, higher is better) for SQLite's rows; the memory store shows only the figures with a goal, without it
def figures(keys: int, watchers: int) -> dict[str, tuple[str, float | None, bool]]:
    return {
        "creates/s": ("/s", 5000, True),
        "create p99 (us)": ("us", None, False),
        "get p50 (us)": ("us", None, False),
        "get p99 (us)": ("us", None, False),
        f"list {keys} median (ms)": ("ms", 50, False),
        f"list {keys} worst (ms)": ("ms", None, False),
        f"watch to {watchers} p50 (ms)": ("ms", None, False),
        f"watch to {watchers} p99 (ms)": ("ms", None, False),
    }


def rows(results: dict[str, list[dict[str, float]]], keys: int, watchers: int) -> list[harness.Row]:
    out = []
    for kind in ("sqlite", "memory"):
        for figure, (unit, goal, higher) in figures(keys, watchers).items():
            if kind == "memory" and goal is None:
                continue  # the memory store (tests only) is shown beside SQLite's goals, not in full
            name = f"{kind}: {figure.rsplit(' (', 1)[0]}"
            out.append(harness.spread_row(name, harness.spread([r[figure] for r in results[kind]]), unit,
                                          goal=goal if kind == "sqlite" else None, higher=higher,
                                          anchor=ETCD_ANCHOR if kind == "sqlite" and figure == "creates/s" else ""))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--watch-writes", type=int, default=1_000)
    harness.add_arguments(parser)
    args = parser.parse_args()
    with harness.Session("store", args) as session, \
            tempfile.TemporaryDirectory(prefix="pocketkube-bench-") as data_dir:
        def one(kind):
            def run_round(r: int) -> dict[str, float]:
                return asyncio.run(run(kind, os.path.join(data_dir, f"round{r}"), args))
            return run_round
        results = harness.interleave({"memory": one("memory"), "sqlite": one("sqlite")}, rounds=args.rounds)
        session.add(*rows(results, args.keys, args.watchers))
        session.note(f"{args.keys:,} keys of ~300 bytes, {args.watchers} watchers x {args.watch_writes:,} writes, "
                     f"{args.rounds} interleaved rounds (memory, SQLite), a fresh store each round; "
                     f"SQLite file on the same disk as /tmp")


if __name__ == "__main__":
    main()
