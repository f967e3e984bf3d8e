"""Store benchmark: MemoryStore and SQLiteStore side by side, against the targets.

Run: .venv/bin/python -m bench.store [--keys 10000] [--watchers 100] [--watch-writes 1000]
                                      [--rounds 15] [--json FILE]

Measures, for each store, on one event loop, in interleaved rounds (memory, SQLite, memory, ...;
a fresh store each round), each figure the median of the rounds with their min and max, in the
store's own time (the loop thread's CPU time, which other work on the machine cannot inflate,
plus, for creates/s, the time it was blocked on its own disk), scaled to the yardstick CPU speed
(bench/harness.py speed(): this guest's CPU speed drifts by itself, by ~20% within minutes):
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
    """Seconds of the store's own time: the loop thread's CPU time (time.thread_time) per
    operation, which other tasks on the machine cannot inflate; creates/s adds the time the
    thread was blocked on its own disk (SQLite's checkpoints fsync), which is the store's cost
    too, but not the time it waited for a CPU another task held."""
    create_cpu = []
    waited_before, cpu_started, started = harness.run_queue_seconds(), time.thread_time(), time.perf_counter()
    for index in range(keys):
        before = time.thread_time()
        await store.create(f"{PREFIX}cm-{index:06d}", VALUE)
        create_cpu.append(time.thread_time() - before)
    wall, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
    blocked = max(0.0, wall - cpu - (harness.run_queue_seconds() - waited_before))

    get_cpu = []
    for index in random.Random(1).choices(range(keys), k=keys):
        before = time.thread_time()
        await store.get(f"{PREFIX}cm-{index:06d}")
        get_cpu.append(time.thread_time() - before)

    list_cpu = []
    for _ in range(20):
        before = time.thread_time()
        items, _ = await store.list(PREFIX)
        list_cpu.append(time.thread_time() - before)
        assert len(items) == keys
    return {"cpu": cpu, "blocked": blocked, "wall": wall, "create": create_cpu, "get": get_cpu, "list": list_cpu}


async def measure_watch_delivery(store, watchers: int, writes: int) -> list[float]:
    """The loop thread's CPU time from the start of each write until the last of the watchers
    got its event (everything runs on that one thread)."""
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
        before = time.thread_time()
        await store.create(f"{prefix}e-{index}", b"{}")
        await all_received.wait()
        latencies.append(time.thread_time() - before)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return latencies


async def run(kind: str, data_dir: str, args) -> dict[str, float]:
    """One round's figures, CPU times scaled to the yardstick speed (harness.speed, measured
    before and after the round: the guest's CPU speed drifts by itself)."""
    store = store_pkg.open_store(kind, os.path.join(data_dir, kind))
    await store.start()
    try:
        speed_before = harness.speed()
        figures = await measure_writes_and_reads(store, args.keys)
        watch = await measure_watch_delivery(store, args.watchers, args.watch_writes)
        speed = (speed_before + harness.speed()) / 2
    finally:
        await store.stop()
    keys, watchers = args.keys, args.watchers
    return {
        "creates/s": keys / (figures["cpu"] * speed + figures["blocked"]),
        "create p99 (us)": percentile(figures["create"], 99) * speed * 1e6,
        "get p50 (us)": percentile(figures["get"], 50) * speed * 1e6,
        "get p99 (us)": percentile(figures["get"], 99) * speed * 1e6,
        f"list {keys} median (ms)": statistics.median(figures["list"]) * speed * 1e3,
        f"list {keys} worst (ms)": max(figures["list"]) * speed * 1e3,
        f"watch to {watchers} p50 (ms)": percentile(watch, 50) * speed * 1e3,
        f"watch to {watchers} p99 (ms)": percentile(watch, 99) * speed * 1e3,
        "speed": speed,
        "creates/s as measured": keys / figures["wall"],
        "blocked (ms)": figures["blocked"] * 1e3,
    }


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
    harness.add_arguments(parser, rounds=15)  # ~1 s a round: enough for the min–max to hold a re-run's median
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
        raw = {kind: harness.spread([r["creates/s as measured"] for r in results[kind]]) for kind in results}
        session.note("figures are the store's own time (its thread's CPU time, plus for creates/s the time it "
                     "was blocked on its disk) at the yardstick CPU speed (bench/harness.py speed(): the rounds "
                     f"ran at {harness.spread([r['speed'] for r in results['sqlite']]).text('.2f', 'x')} of it); "
                     f"creates/s by the clock, as measured: SQLite {raw['sqlite'].text('.0f')}, memory "
                     f"{raw['memory'].text('.0f')}; SQLite blocked on its disk "
                     f"{harness.spread([r['blocked (ms)'] for r in results['sqlite']]).text('.0f', ' ms')} per round")


if __name__ == "__main__":
    main()
