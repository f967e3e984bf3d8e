"""What every benchmark in bench/ shares: compared targets run interleaved in rounds, the median
ratio with its min and max (refused when the spread is wider than the effect), the machine's load
before and after, CPU pinning, a process's CPU time and RSS, and the rows a benchmark hands to
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
    median must not be printed as a result (empty when it may)."""

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
    conditions), as a Spread. Refused when fewer than `min_rounds` rounds ran, or when the spread
    (max - min) is wider than the effect (how far the median lies from 1, no difference): then
    the rounds cannot tell the two apart."""
    if len(mine) != len(peer):
        raise ValueError(f"unpaired rounds: {len(mine)} and {len(peer)}")
    pairs = [a / b for a, b in zip(mine, peer) if b]
    s = spread(pairs, min_rounds=min_rounds)
    if len(pairs) < len(mine):
        return Spread(s.median, s.low, s.high, s.rounds,
                      f"{len(mine) - len(pairs)} rounds measured nothing for the peer")
    if s.ok:
        width, effect = s.high - s.low, abs(s.median - 1)
        if width > effect:
            return Spread(s.median, s.low, s.high, s.rounds,
                          f"the spread between rounds ({width:.2f}) is wider than the effect "
                          f"({effect:.2f} from parity): the machine was too noisy to tell them apart")
    return s


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

    @property
    def verdict(self) -> str:
        """"meets", "MISSES ..." saying by how much, "no figure: why", or "" without a goal."""
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
        if self.goal is None:
            return ""
        meets = self.value >= self.goal if self.higher else self.value <= self.goal
        if meets:
            worst = self.low if self.higher else self.high
            if worst is not None and not (worst >= self.goal if self.higher else worst <= self.goal):
                return "meets (median; not every round)"
            return "meets"
        if self.higher:
            short = (1 - self.value / self.goal) * 100 if self.goal else float("inf")
            return f"MISSES by {short:.0f}% ({self.value:{self.fmt}} < {self.goal:g})"
        if self.goal and self.value >= 2 * self.goal:
            return f"MISSES: {self.value / self.goal:.1f}× the goal ({self.value:{self.fmt}} > {self.goal:g})"
        over = (self.value / self.goal - 1) * 100 if self.goal else float("inf")
        return f"MISSES by {over:.0f}% ({self.value:{self.fmt}} > {self.goal:g})"

    def _meets(self, value: float) -> bool:
        return value >= self.goal if self.higher else value <= self.goal

    @staticmethod
    def _fmt(value: float) -> str:
        v = abs(value)
        return ".2f" if v < 10 else ".1f" if v < 100 else ".0f"

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
              note: str = "") -> Row:
    """A Row of a ratio (unit "x"): no value when the Spread was refused, its reason as the note."""
    if not r.ok:
        return Row(name, None, "x", goal, higher, anchor, r.low, r.high, r.refusal)
    return Row(name, r.median, "x", goal, higher, anchor, r.low, r.high, note)


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


# ---- one benchmark's run -----------------------------------------------------------------------


def add_json_argument(parser) -> None:
    """--json FILE: where `python -m bench` reads the benchmark's rows."""
    parser.add_argument("--json", metavar="FILE", help="also write the rows, machine and load to FILE (JSON)")


def add_arguments(parser) -> None:
    """The options every benchmark takes: --json FILE, --rounds N."""
    add_json_argument(parser)
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS,
                        help=f"rounds of interleaved runs (default {MIN_ROUNDS}; fewer refuses the ratios)")


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

    def __enter__(self) -> "Session":
        self.started = time.time()
        self.load_before = load_average()
        print(f"{self.benchmark}: load average {_load_text(self.load_before)} before "
              f"({os.cpu_count()} CPUs)", flush=True)
        return self

    def add(self, *rows: Row) -> None:
        for row in rows:
            row.benchmark = row.benchmark or self.benchmark
            self.rows.append(row)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def __exit__(self, exc_type, exc, tb) -> None:
        self.load_after = load_average()
        print(f"\n{self.benchmark}: load average {_load_text(self.load_after)} after", flush=True)
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
