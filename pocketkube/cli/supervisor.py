"""Keeping things running, at two levels.

`Supervisor` starts a process's components in dependency order and stops them in reverse
(DESIGN.md: one way to start a component: `async start()`, `async stop()`, a `ready` event).

`python -m pocketkube.cli.supervisor RUN_DIR` is the cluster's process supervisor: the one
daemon `up` starts. It reads RUN_DIR/processes.json (`[{name, argv, log, netns}]`: the API
server, one agent per node), starts each process as a daemon of its own (own session, output
appended to its log, inside `netns` when given, `NAME.pid` holding "PID STARTTIME"), and
starts again any that exits, after a back-off (0.1 s doubling to 10 s; reset once a process
has run 10 s). RUN_DIR/supervisor.json tells `up` and `status` what runs: per process its
pid, restarts, last exit status and when it last started. SIGTERM or SIGINT makes it exit
at once, leaving its processes as they are: `down` stops the supervisor first, so nothing
is restarted under it, then stops the processes itself. Standard library only (and
node/network.py's setns), so it stays small.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Protocol

from pocketkube.core.linux import proc_stat, write_atomic

log = logging.getLogger(__name__)

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC_FILE = "processes.json"
STATE_FILE = "supervisor.json"
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 10.0
STABLE_SECONDS = 10.0  # a process that ran this long starts again without waiting
POLL_SECONDS = 0.05


class Component(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Supervisor:
    def __init__(self) -> None:
        self.started: list[Component] = []

    async def start(self, component: Component) -> Component:
        """Start one component; on failure it is stopped too (it may hold a store, sockets or
        tasks from half its start: a component's stop() copes with a partial start), then
        everything started before it."""
        try:
            await component.start()
        except BaseException:
            await _stop(component)
            await self.stop()
            raise
        self.started.append(component)
        return component

    async def stop(self) -> None:
        while self.started:
            await _stop(self.started.pop())


async def _stop(component: Component) -> None:
    try:
        await component.stop()
    except Exception:
        log.exception("stopping %s failed", type(component).__name__)


# ---- daemons and pid files --------------------------------------------------------------------


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), or None if it is gone or a zombie."""
    fields = proc_stat(pid)
    return None if fields is None or fields[0] == b"Z" else fields[19].decode()


def write_file(path: str, text: str, private: bool = False) -> None:
    """Write `path` atomically (a temporary file renamed over it)."""
    write_atomic(path, text, 0o600 if private else 0o644)


def write_pid_file(path: str, pid: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_file(path, f"{pid} {start_time(pid) or 0}\n")


def live_pid(path: str) -> int | None:
    """The PID in a pid file if that very process (same start time) still runs."""
    try:
        with open(path) as f:
            pid_text, started = f.read().split()
        pid = int(pid_text)
    except (FileNotFoundError, ValueError):
        return None
    return pid if start_time(pid) == started else None


def spawn(argv: list[str], log_path: str, pid_path: str, netns: str | None = None, cwd: str = "/") -> subprocess.Popen:
    """Start a daemon in `cwd`: own session (so its group can be signalled), output to its log
    file, its pid file written before this returns."""
    from pocketkube.node import network

    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")) if p)}
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, env=env, cwd=cwd,
                                start_new_session=True,
                                preexec_fn=network.enter_netns(netns) if netns else None)
    write_pid_file(pid_path, proc.pid)
    return proc


def read_state(run_dir: str) -> dict | None:
    """What the supervisor of RUN_DIR last wrote (None before it started its processes)."""
    try:
        with open(os.path.join(run_dir, STATE_FILE)) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def exit_text(returncode: int | None) -> str:
    if returncode is None:
        return ""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


# ---- the process supervisor -------------------------------------------------------------------


class Child:
    """One supervised process."""

    def __init__(self, spec: dict, run_dir: str):
        self.name = spec["name"]
        self.argv = list(spec["argv"])
        self.log = spec["log"]
        self.netns = spec.get("netns")
        self.cwd = spec.get("cwd", "/")
        self.stale = list(spec.get("stale", []))  # files a killed run leaves behind that stop the next (etcd's socket)
        self.pid_path = os.path.join(run_dir, f"{self.name}.pid")
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.last_exit = ""
        self.started_at = 0.0  # time.monotonic()
        self.started_wall = ""
        self.backoff = 0.0
        self.due = 0.0  # when to start it again (time.monotonic())

    def start(self) -> None:
        try:
            for path in self.stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            self.proc = spawn(self.argv, self.log, self.pid_path, self.netns, self.cwd)
        except OSError as exc:  # e.g. the node's namespace is gone: try again later
            self.proc = None
            self.last_exit = f"could not start: {exc}"
            self._schedule(time.monotonic())
            return
        self.started_at = time.monotonic()
        self.started_wall = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def _schedule(self, now: float) -> None:
        self.backoff = min(self.backoff * 2, BACKOFF_MAX) if self.backoff else BACKOFF_INITIAL
        self.due = now + self.backoff

    def check(self, now: float) -> bool:
        """Note an exit, start again when due; returns whether anything changed."""
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                return False
            self.last_exit = exit_text(code)
            self.proc = None
            if now - self.started_at >= STABLE_SECONDS:
                self.backoff = 0.0
            self._schedule(now)
            with open(self.log, "a") as f:
                f.write(f"\n[supervisor] {self.name} exited ({self.last_exit}); starting it again in "
                        f"{self.backoff:g}s\n")
            return True
        if now >= self.due:
            self.restarts += 1
            self.start()
            return True
        return False

    def state(self) -> dict:
        return {"pid": self.proc.pid if self.proc else None, "restarts": self.restarts,
                "last_exit": self.last_exit, "started": self.started_wall}


def supervise(run_dir: str) -> int:
    with open(os.path.join(run_dir, SPEC_FILE)) as f:
        children = [Child(spec, run_dir) for spec in json.load(f)]
    stopping = []

    def stop(signum, _frame) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # SIGHUP (the terminal `up` ran in closing) is caught and dropped, not ignored: an ignored
    # signal stays ignored across exec, in the server, the agent and every pod they start
    signal.signal(signal.SIGHUP, lambda _signum, _frame: None)

    def save() -> None:
        write_file(os.path.join(run_dir, STATE_FILE), json.dumps(
            {"pid": os.getpid(), "processes": {c.name: c.state() for c in children}}) + "\n")

    for child in children:
        if stopping:
            return 0
        child.start()
    save()
    while not stopping:
        time.sleep(POLL_SECONDS)
        now = time.monotonic()
        changed = False
        for child in children:
            if stopping:  # a start is never begun once `down` asked us to go
                break
            changed |= child.check(now)
        if changed:
            save()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pocketkube.cli.supervisor RUN_DIR")
    sys.exit(supervise(sys.argv[1]))
