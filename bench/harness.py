"""What every benchmark in bench/ shares: compared targets run interleaved in rounds, the median
ratio with its min and max (judged round by round against its goal; refused when it has none and
the spread is wider than its distance from parity), the machine's load
before and after, CPU pinning, a process's CPU time and RSS, the CPU's speed against a yardstick
(speed(): the guest's CPU drifts by itself, so CPU-bound absolute figures are scaled to it), and the rows a benchmark hands to
`python -m bench` (bench/__main__.py) for docs/benchmarks.md.

A benchmark:

    from bench import harness
    p = argparse.ArgumentParser(); harness.add_arguments(p); args = p.parse_args()
    with harness.Session("dns", args) as session:          # prints the load before and after
        runs = harness.interleave({"pocketkube": run_ours, "dnsmasq": run_peer}, rounds=5)
        r = harness.ratio(runs["pocketkube"], runs["dnsmasq"])   # per round, paired
        session.add(harness.ratio_row("queries/CPU-s, pocketkube / dnsmasq", r, goal=0.5,
                                      anchor="CoreDNS ~17k q/s per core"))
    # --json FILE: the rows, the machine and the load, for the runner

Only pure logic and /proc reads here: no benchmark's servers or clients.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")

MIN_ROUNDS = 5
# How often a re-run's median lands inside this run's min–max, both ways, when nothing changed
# between the runs (independent rounds, simulated): the min–max of few rounds is narrower than
# what a re-run gets, so a figure worth re-checking runs more rounds when they are cheap.
REROUND_AGREEMENT = {5: 0.72, 7: 0.87, 9: 0.94, 11: 0.97, 15: 0.995}
E2E_LOCK = "/tmp/pocketkube-e2e.lock"  # one cluster or benchmark at a time (tests/e2e/conftest.py)


# ---- statistics ----------------------------------------------------------------------------


def percentile(samples: Iterable[float], p: float) -> float:
    """The p-th percentile (0 < p < 100), linear interpolation between closest ranks; nan when
    there are no samples."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Spread:
    """The median of some per-round figures with their min and max. `refusal` says why the
    median must not be printed as a result (empty when it may): too few rounds, or none."""

    median: float
    low: float
    high: float
    rounds: int
    refusal: str = ""

    @property
    def ok(self) -> bool:
        return not self.refusal

    def text(self, fmt: str = ".2f", unit: str = "") -> str:
        core = f"{self.median:{fmt}}{unit} (min {self.low:{fmt}}, max {self.high:{fmt}}, {self.rounds} rounds)"
        return core if self.ok else f"no figure: {self.refusal} [{core}]"


def spread(values: list[float], *, min_rounds: int = MIN_ROUNDS) -> Spread:
    """Median, min, max of per-round values; refused below `min_rounds` rounds."""
    if not values:
        return Spread(float("nan"), float("nan"), float("nan"), 0, "no rounds ran")
    s = Spread(statistics.median(values), min(values), max(values), len(values))
    if len(values) < min_rounds:
        return Spread(s.median, s.low, s.high, s.rounds, f"{len(values)} rounds, fewer than {min_rounds}")
    return s


def ratio(mine: list[float], peer: list[float], *, min_rounds: int = MIN_ROUNDS) -> Spread:
    """mine[i] / peer[i] for each round i (paired: the two ran minutes apart at most, in the same
    conditions), as a Spread. Refused when fewer than `min_rounds` rounds ran or a round measured
    nothing for the peer. Whether the rounds agree well enough to print it is judged by
    ratio_row, against the goal when the row has one, else against parity."""
    if len(mine) != len(peer):
        raise ValueError(f"unpaired rounds: {len(mine)} and {len(peer)}")
    pairs = [a / b for a, b in zip(mine, peer) if b]
    s = spread(pairs, min_rounds=min_rounds)
    if len(pairs) < len(mine):
        return Spread(s.median, s.low, s.high, s.rounds,
                      f"{len(mine) - len(pairs)} rounds measured nothing for the peer")
    return s


def parity_refusal(s: Spread) -> str:
    """Why a ratio without a goal must not be printed ("" when it may): its claim is the
    difference itself, so the rounds' spread (max - min) must be narrower than the effect (the
    median's distance from 1, no difference), or the next run may well contradict it."""
    width, effect = s.high - s.low, abs(s.median - 1)
    if width > effect:
        return (f"the spread between rounds ({width:.2f}) is wider than the effect ({effect:.2f} from "
                f"parity): the machine was too noisy to tell them apart")
    return ""


def interleave(targets: dict[str, Callable[[int], T]], rounds: int = MIN_ROUNDS,
               between: Callable[[], None] | None = None) -> dict[str, list[T]]:
    """Run each target once per round in turn (A B A B ...), `rounds` rounds: target(round)
    returns that round's figure (a number, or a record of several). Interleaving spreads the machine's changing load over all of
    them instead of giving one the quiet minutes."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    results: dict[str, list[T]] = {name: [] for name in targets}
    for r in range(rounds):
        for name, run in targets.items():
            results[name].append(run(r))
            if between is not None:
                between()
    return results


# ---- rows ----------------------------------------------------------------------------------


@dataclass
class Row:
    """One figure of the table: `value` in `unit` beside its goal (`higher` says which way is
    better) and an anchor (what a known peer does, as text). A value of None is a figure the
    benchmark refused or could not take; `note` says why. min/max: the spread over rounds."""

    name: str
    value: float | None
    unit: str = ""
    goal: float | None = None
    higher: bool = True
    anchor: str = ""
    low: float | None = None
    high: float | None = None
    note: str = ""
    benchmark: str = ""
    limit: float | None = None  # the most the figure can physically be (ratio_row)

    @property
    def verdict(self) -> str:
        """"meets" (every round does), "undecided: ..." (the median meets, a round does not),
        "MISSES ..." saying by how much, "no figure: why", "no verdict: ..." (above its physical
        limit), or "" without a goal."""
        if self.value is None or self.value != self.value:
            text = "no figure" + (f": {self.note}" if self.note else "")
            if self.goal is not None and self.low is not None and self.high is not None:
                if self._meets(self.low) and self._meets(self.high):
                    text += f"; yet every round meets the goal ({self.low:{self._fmt(self.low)}}–" \
                            f"{self.high:{self._fmt(self.high)}})"
                elif not self._meets(self.low) and not self._meets(self.high):
                    text += f"; every round MISSES the goal ({self.low:{self._fmt(self.low)}}–" \
                            f"{self.high:{self._fmt(self.high)}})"
            return text
        if self.limit is not None and self.value > self.limit:
            return (f"no verdict: above its physical limit ({self.value:{self.fmt}} > {self.limit:g}): "
                    f"the load generator, not the path, was measured")
        if self.goal is None:
            return ""
        # "meets" only when every round does; a median on one side with a round on the other is
        # undecided (the next run may land on either side), a median that misses says by how much
        best, worst = (self.high, self.low) if self.higher else (self.low, self.high)
        if self._meets(self.value):
            if worst is not None and not self._meets(worst):
                return f"undecided: the median meets, the worst round ({worst:{self._fmt(worst)}}) does not"
            return "meets"
        if self.higher:
            short = (1 - self.value / self.goal) * 100 if self.goal else float("inf")
            text = f"MISSES by {short:.0f}% ({self.value:{self.fmt}} < {self.goal:g})"
        elif self.goal and self.value >= 2 * self.goal:
            text = f"MISSES: {self.value / self.goal:.1f}× the goal ({self.value:{self.fmt}} > {self.goal:g})"
        else:
            over = (self.value / self.goal - 1) * 100 if self.goal else float("inf")
            text = f"MISSES by {over:.0f}% ({self.value:{self.fmt}} > {self.goal:g})"
        if best is not None and self._meets(best):
            text += f"; the best round ({best:{self._fmt(best)}}) meets"
        return text

    def _meets(self, value: float) -> bool:
        return value >= self.goal if self.higher else value <= self.goal

    @staticmethod
    def _fmt(value: float) -> str:
        v = abs(value)
        return ".4f" if 0 < v < 0.1 else ".2f" if v < 10 else ".1f" if v < 100 else ".0f"

    @property
    def fmt(self) -> str:
        return self._fmt(self.value if self.value is not None else 0)

    def value_text(self) -> str:
        if self.value is None or self.value != self.value:
            return "n/a"
        text = f"{self.value:{self.fmt}}{self.unit if self.unit in ('x', '%') else ''}"
        if self.low is not None and self.high is not None:
            text += f" ({self.low:{self.fmt}}–{self.high:{self.fmt}})"
        return text + (f" {self.unit}" if self.unit not in ("x", "%", "") else "")

    def goal_text(self) -> str:
        if self.goal is None:
            return ""
        unit = self.unit if self.unit in ("x", "%") else f" {self.unit}" if self.unit else ""
        return f"{'≥' if self.higher else '≤'} {self.goal:g}{unit}"

    def render(self) -> str:
        text = f"{self.name:<58} {self.value_text():>24}"
        if self.goal is not None:
            text += f"  goal {self.goal_text()}"
        verdict = self.verdict
        if verdict:
            text += f"  {verdict}"
        if self.anchor:
            text += f"  anchor: {self.anchor}"
        if self.note and self.value is not None:
            text += f"  ({self.note})"
        return text

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}

    @classmethod
    def from_dict(cls, data: dict) -> "Row":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def ratio_row(name: str, r: Spread, *, goal: float | None = None, higher: bool = True, anchor: str = "",
              note: str = "", limit: float | None = None) -> Row:
    """A Row of a ratio (unit "x"). No value when the Spread was refused (its reason as the
    note), or, for a ratio without a goal, when its rounds cannot tell the two apart
    (parity_refusal). A ratio with a goal keeps its value: Row.verdict judges every round against
    the goal (ADR 0012: a goal near parity, as 0.95 or 1.1, would otherwise never print).
    `limit`: the most the ratio can physically be (1.0 against the direct path); a median above
    it means the load generator, not the path, was measured, and the verdict says so."""
    refusal = r.refusal or (parity_refusal(r) if goal is None else "")
    if refusal:
        return Row(name, None, "x", goal, higher, anchor, r.low, r.high, refusal, limit=limit)
    return Row(name, r.median, "x", goal, higher, anchor, r.low, r.high, note, limit=limit)


def spread_row(name: str, s: Spread, unit: str, *, goal: float | None = None, higher: bool = True,
               anchor: str = "", note: str = "") -> Row:
    """A Row of a median over rounds (no value when the Spread was refused)."""
    if not s.ok:
        return Row(name, None, unit, goal, higher, anchor, s.low, s.high, s.refusal)
    return Row(name, s.median, unit, goal, higher, anchor, s.low, s.high, note)


# ---- the machine -----------------------------------------------------------------------------


@contextlib.contextmanager
def machine_lock():
    """Hold the machine-wide lock that e2e tests, benchmarks and scripts/conformance take: clusters
    share the default address ranges, and a benchmark beside another measures both."""
    with open(E2E_LOCK, "a") as lock:
        print(f"  waiting for {E2E_LOCK} ...", file=sys.stderr, flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def cpu_times(stat_line: str | None = None) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs so far, from /proc/stat's first line (or the given
    one): idle and iowait are not busy; guest time is already inside user."""
    if stat_line is None:
        with open("/proc/stat") as f:
            stat_line = f.readline()
    ticks = [int(v) for v in stat_line.split()[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(ticks)
    return total - ticks[3] - ticks[4], total


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of the CPUs' time that was busy between two cpu_times() readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


async def settled(window: float = 0.25, busy_below: float = 0.15, timeout: float = 15.0) -> float:
    """Wait until the machine's CPUs were busy less than `busy_below` of a `window` (the work a
    previous round left behind, e.g. the kernel freeing 50 network namespaces, has ended), at
    most `timeout` seconds; returns the seconds waited."""
    import asyncio  # only this helper is async

    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        before = cpu_times()
        await asyncio.sleep(window)
        if busy_share(before, cpu_times()) < busy_below or loop.time() - started > timeout:
            return loop.time() - started


def machine() -> dict:
    """Cores, kernel, Python: what the table says the figures were taken on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)), "cpu": model,
            "kernel": platform.release(), "python": platform.python_version()}


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def server_and_client_cpus() -> tuple[int, int]:
    """(CPU for the measured server, CPU for the load generator): different ones when there are
    two or more, else the same one."""
    cpus = usable_cpus()
    return (cpus[0], cpus[1]) if len(cpus) > 1 else (cpus[0], cpus[0])


def pin(cpu: int, pid: int = 0) -> None:
    """Pin a process (0: this one) to one CPU."""
    os.sched_setaffinity(pid, {cpu})


def taskset(cpu: int) -> list[str]:
    """A command prefix that runs a program pinned to one CPU (util-linux's taskset)."""
    return ["taskset", "-c", str(cpu)]


def cpu_seconds(pid: int | str = "self") -> float:
    """CPU time a process has used so far, user + system: the sum over its live threads of the
    scheduler's nanosecond count (/proc/PID/task/*/schedstat), else /proc/PID/stat in clock
    ticks (10 ms, too coarse for a run of a few seconds at low load)."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_queue_seconds(pid: int | str = "self") -> float:
    """Time a process's live threads have spent runnable but waiting for a CPU so far (the
    second field of /proc/PID/task/*/schedstat): what other work on its CPU cost it; nan when
    the kernel does not keep it."""
    try:
        return sum(int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[1])
                   for tid in os.listdir(f"/proc/{pid}/task")) / 1e9
    except (OSError, ValueError, IndexError):
        return float("nan")


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ---- the machine's speed -------------------------------------------------------------------

# CPU seconds the reference loop (reference_cpu_seconds) takes at the yardstick speed: this
# 2-core KVM machine's usual figure. The guest's CPU speed drifts by itself (host neighbours):
# the loop took 33-44 ms within two minutes at the same load inside the guest, and so did
# every CPU-bound figure in proportion (ADR 0012).
REFERENCE_CPU_S = 0.036


def reference_cpu_seconds(repeats: int = 3) -> float:
    """CPU seconds of this thread for a fixed pure-Python loop (string formatting and dict
    stores, as a server's hot path does), the best of `repeats`: how fast the CPU runs now."""
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time()
        d: dict[str, int] = {}
        for i in range(200_000):
            d[f"k{i % 5000}"] = i * 3
        best = min(best, time.thread_time() - started)
    return best


def speed(cpu: int | None = None) -> float:
    """How fast this CPU runs now against the yardstick (above 1: faster). Multiply a CPU time
    measured now by it to get the time at the yardstick speed; divide a rate by it. `cpu`: measure
    on that CPU (where the measured servers run), this thread pinned there meanwhile."""
    if cpu is None:
        return REFERENCE_CPU_S / reference_cpu_seconds()
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        return REFERENCE_CPU_S / reference_cpu_seconds()
    finally:
        os.sched_setaffinity(0, allowed)


# ---- one benchmark's run -----------------------------------------------------------------------


def add_json_argument(parser) -> None:
    """--json FILE: where `python -m bench` reads the benchmark's rows."""
    parser.add_argument("--json", metavar="FILE", help="also write the rows, machine and load to FILE (JSON)")


def add_arguments(parser, rounds: int = MIN_ROUNDS) -> None:
    """The options every benchmark takes: --json FILE, --rounds N (default `rounds`: a benchmark
    whose rounds are cheap takes more, see REROUND_AGREEMENT)."""
    add_json_argument(parser)
    parser.add_argument("--rounds", type=int, default=rounds,
                        help=f"rounds of interleaved runs (default {rounds}; fewer than {MIN_ROUNDS} refuses the ratios)")


@dataclass
class Session:
    """One benchmark's run: prints the load average on entry and exit, collects rows, prints
    them as a table and writes them to args.json (when given) on a clean exit."""

    benchmark: str
    args: object = None
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # the yardstick CPU speed (speed()) on entry and exit: a run far from 1.0x was taken on a host
    # that gave this guest less CPU, which scaling corrects only roughly (ADR 0012)
    speed_before: float = 0.0
    speed_after: float = 0.0

    def __enter__(self) -> "Session":
        self.started = time.time()
        self.load_before = load_average()
        self.speed_before = speed()
        print(f"{self.benchmark}: load average {_load_text(self.load_before)} before "
              f"({os.cpu_count()} CPUs), CPU speed {self.speed_before:.2f}x the yardstick", flush=True)
        return self

    def add(self, *rows: Row) -> None:
        for row in rows:
            row.benchmark = row.benchmark or self.benchmark
            self.rows.append(row)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def __exit__(self, exc_type, exc, tb) -> None:
        self.load_after = load_average()
        self.speed_after = speed()
        print(f"\n{self.benchmark}: load average {_load_text(self.load_after)} after, CPU speed "
              f"{self.speed_after:.2f}x the yardstick", flush=True)
        if exc_type is not None:
            return
        for row in self.rows:
            print("  " + row.render())
        for text in self.notes:
            print("  " + text)
        path = getattr(self.args, "json", None)
        if path:
            write_json(path, self)
        sys.stdout.flush()

    def to_dict(self) -> dict:
        return {"benchmark": self.benchmark, "started": self.started, "seconds": time.time() - self.started,
                "machine": machine(), "load_before": list(self.load_before), "load_after": list(self.load_after),
                "speed_before": self.speed_before, "speed_after": self.speed_after,
                "rows": [r.to_dict() for r in self.rows], "notes": list(self.notes)}


def _load_text(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def write_json(path: str, session: Session) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(session.to_dict(), f, indent=1)
    os.replace(tmp, path)


def read_json(path: str) -> dict:
    """A benchmark's --json output, its rows as Row objects."""
    with open(path) as f:
        data = json.load(f)
    data["rows"] = [Row.from_dict(r) for r in data.get("rows", [])]
    return data
