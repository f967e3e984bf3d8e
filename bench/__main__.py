"""Run the benchmarks in bench/ in one go and write docs/benchmarks.md.

    .venv/bin/python -m bench [--only dns,store] [--list] [--timeout 3600] [--render-only]
    .venv/bin/python -m bench --compare OLD.json [NEW.json]   # two runs' rows side by side

Each benchmark runs as its own process (`python -m bench.NAME` with QUICK's arguments: short
but honest, at least 5 interleaved rounds where it compares targets), one after another, its
output shown as it goes and kept in docs/benchmarks/NAME.log. A benchmark that takes --json
hands over its rows (bench/harness.py); the table in docs/benchmarks.md shows each figure with
its spread beside its goal and anchor, and says plainly when one misses and by how much. One
that does not take --json yet is shown by the last lines it printed. docs/benchmarks.json
keeps every benchmark's last run, so `--only` refreshes some and keeps the others (each with
its own date and load).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pkgutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import harness  # noqa: E402

DOC = os.path.join(ROOT, "docs", "benchmarks.md")
STATE = os.path.join(ROOT, "docs", "benchmarks.json")
LOGS = os.path.join(ROOT, "docs", "benchmarks")
NOT_BENCHMARKS = {"harness", "__main__", "kube_apiserver", "machines"}  # kube_apiserver: bench.api's peer; machines: a helper
# Arguments for a run of the whole set: each benchmark's defaults unless said here.
QUICK: dict[str, list[str]] = {
    # 9 shorter rounds: the min–max of 5 holds a re-run's median only 72% of the time (harness.REROUND_AGREEMENT)
    "dns": ["--rounds", "9", "--seconds", "4", "--rate-seconds", "3"],
    "dataplane": ["--duration", "3", "--rounds", "9"],  # x 3 targets x 2 modes of wrk
}
TAIL_LINES = 40


def benchmarks() -> list[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(m.name for m in pkgutil.iter_modules([here]) if m.name not in NOT_BENCHMARKS)


def takes_json(name: str) -> bool:
    cp = subprocess.run([sys.executable, "-m", f"bench.{name}", "--help"], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)
    return "--json" in cp.stdout


def run_one(name: str, timeout: float) -> dict:
    """Run one benchmark; its session dict (from --json), or one made of what it printed."""
    os.makedirs(LOGS, exist_ok=True)
    log_path = os.path.join(LOGS, f"{name}.log")
    with_json = takes_json(name)
    fd, json_path = tempfile.mkstemp(prefix=f"pk-bench-{name}-", suffix=".json")
    os.close(fd)
    os.unlink(json_path)
    cmd = [sys.executable, "-m", f"bench.{name}", *QUICK.get(name, [])] + (["--json", json_path] if with_json else [])
    print(f"==> {' '.join(cmd[1:])}", flush=True)
    started = time.time()
    load_before = harness.load_average()
    lines: list[str] = []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        # the benchmark's own process group (it cleans up on SIGTERM), when it takes too long
        timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGTERM))
        timer.start()
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                log.write(line)
                lines.append(line.rstrip("\n"))
            code = proc.wait()
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
        finally:
            timer.cancel()
        if code != 0 and time.time() - started >= timeout:
            code = f"stopped after {timeout:.0f} s"
    base = {"benchmark": name, "started": started, "seconds": time.time() - started, "machine": harness.machine(),
            "load_before": list(load_before), "load_after": list(harness.load_average()), "rows": [], "notes": [],
            "exit": code, "output": []}
    if with_json and code == 0 and os.path.exists(json_path):
        with open(json_path) as f:
            data = json.load(f)
        os.unlink(json_path)
        return {**base, **data, "exit": code}
    if os.path.exists(json_path):
        os.unlink(json_path)
    base["output"] = lines[-TAIL_LINES:]
    return base


def load_state() -> dict:
    try:
        with open(STATE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def render(state: dict) -> str:
    """docs/benchmarks.md from every benchmark's last run."""
    runs = sorted(state.values(), key=lambda r: r["benchmark"])
    latest = max(runs, key=lambda r: r["started"]) if runs else None
    out = ["# Benchmarks", "",
           "Written by `.venv/bin/python -m bench` (bench/__main__.py) from each benchmark's last run; "
           "`--only NAME` re-runs some. Ratios are medians of interleaved rounds (A B A B ...) with their "
           "min–max; \"meets\" means every round met the goal, \"undecided\" that the median did and a "
           "round did not; a ratio without a goal is not printed when its rounds cannot tell the two apart. "
           "Each benchmark's full output of its last run is in docs/benchmarks/NAME.log.", ""]
    if latest:
        m = latest["machine"]
        out += [f"Machine: {m['cores']} cores ({m.get('cpu') or 'unknown CPU'}), Linux {m['kernel']}, "
                f"Python {m['python']}.", ""]
    out += ["| benchmark | run (UTC) | load before → after (CPU speed) | figure | value (min–max) | goal | verdict | anchor |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    misses, unjudged = [], []
    for run in runs:
        when = dt.datetime.fromtimestamp(run["started"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        load = f"{run['load_before'][0]:.2f} → {run['load_after'][0]:.2f}" + _speed_text(run)
        rows = [harness.Row.from_dict(r) for r in run.get("rows", [])]
        if run.get("exit") not in (0, None):
            out.append(f"| {run['benchmark']} | {when} | {load} | *did not finish: exit {run['exit']}* | | | | |")
        elif not rows:
            out.append(f"| {run['benchmark']} | {when} | {load} | *no rows: its printed output is below* | | | | |")
        for row in rows:
            note = f" — {row.note}" if row.note and row.value is not None else ""
            out.append(f"| {run['benchmark']} | {when} | {load} | {_cell(row.name + note)} | {row.value_text()} | "
                       f"{row.goal_text()} | {_cell(row.verdict)} | {_cell(row.anchor)} |")
            verdict = row.verdict
            if row.goal is None or verdict.startswith("meets"):
                continue
            line = f"- **{run['benchmark']}**: {row.name}: {verdict}"
            if verdict.startswith("MISSES") or "every round MISSES" in verdict:
                misses.append(line)
            else:
                unjudged.append(line)
    out += ["", "## Misses", ""]
    out += misses or ["None: no figure with a goal misses it."]
    if unjudged:
        out += ["", "## Figures the last run could not give or decide (too noisy, too few rounds, rounds on both "
                "sides of the goal, or above a physical limit)", "", *unjudged]
    notes = [f"- **{run['benchmark']}**: {note}" for run in runs for note in run.get("notes", [])]
    if notes:
        out += ["", "## Notes", "", *notes]
    printed = [r for r in runs if r.get("output")]
    if printed:
        out += ["", "## Benchmarks that do not hand over rows yet (the last lines they printed)", ""]
        for run in printed:
            out += [f"### {run['benchmark']} (exit {run.get('exit')})", "", "```text", *run["output"], "```", ""]
    return "\n".join(out).rstrip() + "\n"


def _runs(path: str) -> dict[str, dict]:
    """Benchmark name -> run, from docs/benchmarks.json (every benchmark's last run) or from one
    benchmark's --json output."""
    with open(path) as f:
        data = json.load(f)
    return {data["benchmark"]: data} if "rows" in data else data


def _speed_text(run: dict) -> str:
    """"; CPU 0.83x → 0.56x": the yardstick CPU speed on the benchmark's entry and exit, when recorded."""
    if not run.get("speed_before"):
        return ""
    return f"; CPU {run['speed_before']:.2f}x → {run['speed_after']:.2f}x"


def compare(old: dict[str, dict], new: dict[str, dict]) -> tuple[list[str], int, int]:
    """The rows two runs both have, side by side: a row agrees when each run's median lies within
    the other run's min–max (what the issue asks of a re-run); rows without a spread or without
    a figure in either run are shown, not counted. (lines, rows that agree, rows counted)."""
    lines, agree, counted = [], 0, 0
    for name in sorted(set(old) & set(new)):
        if old[name].get("speed_before") and new[name].get("speed_before"):
            lines.append(f"{name:<12} CPU speed on entry → exit: {_speed_text(old[name])[6:]} | {_speed_text(new[name])[6:]}")
        rows_new = {r["name"]: harness.Row.from_dict(r) for r in new[name].get("rows", [])}
        for data in old[name].get("rows", []):
            a, b = harness.Row.from_dict(data), rows_new.get(data["name"])
            if b is None:
                continue
            if None in (a.value, b.value, a.low, a.high, b.low, b.high) or a.value != a.value or b.value != b.value:
                mark = "(not compared: no figure or no spread)"
            else:
                counted += 1
                ok = a.low <= b.value <= a.high and b.low <= a.value <= b.high
                agree += ok
                mark = "agrees" if ok else "DISAGREES"
            lines.append(f"{name:<12} {a.name[:64]:<64} {a.value_text():>26} | {b.value_text():>26}  {mark}")
    return lines, agree, counted


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated benchmark names (default: all of them)")
    p.add_argument("--list", action="store_true", help="print the benchmarks and their arguments, run nothing")
    p.add_argument("--timeout", type=float, default=3600, help="seconds one benchmark may take")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite docs/benchmarks.md from docs/benchmarks.json, run nothing")
    p.add_argument("--compare", nargs="+", metavar="JSON",
                   help="compare the rows of two runs (docs/benchmarks.json files or one benchmark's --json "
                        "output; one file: against docs/benchmarks.json), run nothing")
    args = p.parse_args()
    if args.compare:
        old, new = (args.compare + [STATE])[:2]
        lines, agree, counted = compare(_runs(old), _runs(new))
        print("\n".join(lines))
        print(f"\n{agree} of {counted} rows with a spread in both runs agree (each median within the other's min–max)")
        return
    if args.render_only:
        with open(DOC, "w") as f:
            f.write(render(load_state()))
        return
    names = benchmarks()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            sys.exit(f"no such benchmark: {', '.join(unknown)} (there are: {', '.join(names)})")
        names = wanted
    if args.list:
        for name in names:
            print(f"{name:<14} python -m bench.{name} {' '.join(QUICK.get(name, []))}")
        return
    state = load_state()
    print(f"python -m bench: {', '.join(names)}; {harness.machine()['cores']} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in harness.load_average())}", flush=True)
    for name in names:
        state[name] = run_one(name, args.timeout)
        with open(STATE, "w") as f:
            json.dump(state, f, indent=1)
        with open(DOC, "w") as f:
            f.write(render(state))
    print(f"\nwrote {os.path.relpath(DOC, ROOT)}")


if __name__ == "__main__":
    main()
