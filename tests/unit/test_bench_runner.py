"""bench/__main__.py: which modules are benchmarks, and docs/benchmarks.md from their runs."""

from bench import __main__ as runner
from bench.harness import Row

MACHINE = {"cores": 2, "usable_cores": 2, "cpu": "Some CPU", "kernel": "6.1.0", "python": "3.11.7"}


def run(name, rows=(), notes=(), exit=0, output=()):
    return {"benchmark": name, "started": 1_700_000_000, "machine": MACHINE, "load_before": [0.5, 0, 0],
            "load_after": [1.25, 0, 0], "rows": [r.to_dict() for r in rows], "notes": list(notes), "exit": exit,
            "output": list(output)}


def test_every_module_but_the_harness_and_the_runner_is_a_benchmark():
    names = runner.benchmarks()
    assert "dns" in names and "harness" not in names and "__main__" not in names


def test_the_table_shows_each_figure_its_goal_and_how_far_it_misses():
    state = {"dns": run("dns", [Row("q/CPU-s ratio", 0.72, "x", goal=0.5, anchor="CoreDNS", low=0.66, high=0.77),
                                Row("p99", 3.0, "ms", goal=1.0, higher=False)], notes=["ran on uvloop.Loop"]),
             "store": run("store", output=["creates/s 9000"]),
             "pods": run("pods", exit="stopped after 3600 s")}
    text = runner.render(state)
    assert "2 cores (Some CPU), Linux 6.1.0" in text
    assert "| dns | 2023-11-14 22:13 | 0.50 → 1.25 | q/CPU-s ratio | 0.72x (0.66–0.77) | ≥ 0.5x | meets | CoreDNS |" in text
    assert "- **dns**: p99: MISSES: 3.0× the goal (3.00 > 1)" in text
    assert "- **dns**: ran on uvloop.Loop" in text
    assert "*did not finish: exit stopped after 3600 s*" in text
    assert "### store (exit 0)" in text and "creates/s 9000" in text


def test_no_misses_is_said_plainly():
    text = runner.render({"dns": run("dns", [Row("r", 0.9, "x", goal=0.5)])})
    assert "None: no figure with a goal misses it." in text


def test_a_figure_refused_for_noise_is_listed_apart_from_the_misses():
    text = runner.render({"dns": run("dns", [Row("r", None, "x", goal=0.5, low=0.7, high=1.1, note="noisy")])})
    misses, unjudged = text.split("## Misses")[1].split("## Figures the last run could not give")
    assert "None: no figure with a goal misses it." in misses
    assert "- **dns**: r: no figure: noisy; yet every round meets the goal (0.70–1.10)" in unjudged


def test_compare_says_which_rows_a_rerun_contradicts(tmp_path):
    old = {"store": run("store", [Row("creates/s", 30000, "/s", low=28000, high=33000),
                                  Row("list", 16.0, "ms", low=15.0, high=17.0),
                                  Row("one run", 5.0, "ms"),
                                  Row("gone", 1.0, "ms", low=0.5, high=1.5)])}
    new = run("store", [Row("creates/s", 31000, "/s", low=29000, high=34000),
                        Row("list", 14.4, "ms", low=14.1, high=14.7),
                        Row("one run", 6.0, "ms")])
    lines, agree, counted = runner.compare(old, {"store": new})
    assert (agree, counted) == (1, 2)
    assert any("creates/s" in line and line.endswith("agrees") for line in lines)
    assert any("list" in line and line.endswith("DISAGREES") for line in lines)
    assert any("one run" in line and "not compared" in line for line in lines)
    single = tmp_path / "store.json"
    single.write_text(__import__("json").dumps(new))
    assert set(runner._runs(str(single))) == {"store"}


def test_the_cpu_speed_of_each_run_is_shown_in_the_table_and_the_comparison():
    slow = {**run("store", [Row("creates/s", 30000, "/s", low=28000, high=33000)]), "speed_before": 0.83,
            "speed_after": 0.56}
    fast = {**run("store", [Row("creates/s", 31000, "/s", low=29000, high=34000)]), "speed_before": 1.02,
            "speed_after": 1.1}
    assert "0.50 → 1.25; CPU 0.83x → 0.56x" in runner.render({"store": slow})
    lines, _, _ = runner.compare({"store": slow}, {"store": fast})
    assert lines[0] == "store        CPU speed on entry → exit: 0.83x → 0.56x | 1.02x → 1.10x"
    assert runner._speed_text(run("store")) == ""  # runs from before the speed was recorded
