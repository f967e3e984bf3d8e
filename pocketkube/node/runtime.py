"""The container runtime: processes in a pod's sandbox, their cgroups, logs, attach and probes.

A container is one process, a child of the agent, in the sandbox holder's network, UTS and
IPC namespaces, with the environment the kubelet computes, its stdout and stderr appended to
a log file (one file per instance, so `--previous` works), stdin from a pipe for `stdin:
true` and a pseudo-terminal for `tty: true`. Where a cgroup v2 hierarchy is available each
container gets its own cgroup, and stopping the container kills the whole cgroup so nothing
it forked is left behind; otherwise its process group is killed.

PIDs as in Kubernetes: each container instance has its own PID namespace whose PID 1 is its
main process (so `kill 1` in the container ends it, and `kill -9 -1` or `pkill` inside reach
nothing outside); with shareProcessNamespace the containers join the pod's PID namespace
(PID 1: the holder); with hostPID they run in the machine's (the node is the machine here:
`ps` shows every process of it, the agent's included, as on a real node). The node's sandbox
spawner (nsinit.py) starts each main process with
clone(CLONE_PARENT | CLONE_NEWPID), which costs a fork of that small process, not of the
agent: the agent is its parent (it reaps it: exit codes) and records its host PID (adoption
after a restart finds it by that PID). Before exec the process builds its own root from its
image in a mount namespace of its own (nsinit.py), where /proc shows its PID namespace, and
takes the user, groups and capabilities of its securityContext (security.py). Exec sessions
and exec probes join the container's namespaces with the same security (nsinit.py
`--exec`). Being a PID 1, the main process gets SIGTERM only if it handles it (the kernel
drops it otherwise): stopping such a container waits for the grace period, then SIGKILL, as
on a real node.

Exits are seen through pidfds on the event loop (no thread per process). A container's
state is persisted by the pod manager, so a restarted agent adopts running containers (their
exit code is then unknown: reported as Kubernetes reports a lost container).

Logs are plain files; a side index (`<log>.idx`: "offset unix-nanoseconds" lines) records
when each part of a file was first seen (checked every second), which gives `--timestamps`
and `--since` a precision of about a second.
"""

from __future__ import annotations

import asyncio
import bisect
import ctypes
import datetime
import fcntl
import json
import os
import pty
import signal
import socket
import ssl
import struct
import subprocess
import termios
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import AsyncIterator, Callable

from pocketkube.core.linux import process_alive, process_start_ticks, setns
from pocketkube.core.objects import rfc3339
from pocketkube.core.tls import insecure_client_context
from pocketkube.node.spawner import Spawner, nsinit_command

START_ERROR_EXIT_CODE = 128
PROBE_USER_AGENT = "kube-probe/1.32"
FOLLOW_POLL_SECONDS = 0.1
STDOUT_CHANNEL = 1


class StartError(Exception):
    """The container's process could not be started (kubelet: StartError, exit code 128)."""


def rfc3339_nano(ns: int) -> str:
    """Go's RFC3339Nano (trailing zeros of the fraction dropped), as kubectl logs --timestamps."""
    seconds, frac = divmod(ns, 1_000_000_000)
    base = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{frac:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


# ---- cgroups -------------------------------------------------------------------------------

def _cgroup2_mount() -> str | None:
    """A visible cgroup2 mount (one hidden under another mount, as /sys under `ip netns exec`,
    does not count)."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                point = left.split()[4]
                if right.split()[:1] == ["cgroup2"] and os.path.exists(os.path.join(point, "cgroup.procs")):
                    return point
    except OSError:
        pass
    return None


def _own_cgroup() -> str:
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip().rstrip("/")
    except OSError:
        pass
    return ""


def _own_mount_namespace() -> bool:
    """Whether this process runs in another mount namespace than its parent (as the agent
    does under `ip netns exec`)."""
    try:
        return os.readlink("/proc/self/ns/mnt") != os.readlink(f"/proc/{os.getppid()}/ns/mnt")
    except OSError:
        return False


def _mount_stays_here(path: str) -> bool:
    """Whether a mount made at `path` stays in this mount namespace: the mount holding
    `path` is not shared with any peer (true inside `ip netns exec`, which makes / a slave)."""
    best, shared = "", True
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left = line.partition(" - ")[0].split()
                point = left[4]
                if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, shared = point, any(tag.startswith("shared:") for tag in left[6:])
    except OSError:
        return False
    return bool(best) and not shared


def _node_cgroup_name(node_name: str) -> str:
    return "pocketkube-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in node_name)


def cgroup_base(node_name: str) -> str | None:
    """Where the node's container cgroups live in the visible cgroup2 tree (None: none)."""
    mount = _cgroup2_mount()
    return os.path.join(mount + _own_cgroup(), _node_cgroup_name(node_name)) if mount else None


class Cgroups:
    """One cgroup v2 per container under <agent's cgroup>/pocketkube-<node>; best effort:
    `available` is False where the machine does not allow it, and callers fall back to
    process groups."""

    def __init__(self, state_dir: str, node_name: str):
        self.base: str | None = None
        mount = _cgroup2_mount() or self._mount_private(state_dir)
        if mount is None:
            return
        base = os.path.join(mount + _own_cgroup(), _node_cgroup_name(node_name))
        try:
            os.makedirs(base, exist_ok=True)
            if os.path.exists(os.path.join(base, "cgroup.procs")):
                self.base = base
        except OSError:
            pass

    @staticmethod
    def _mount_private(state_dir: str) -> str | None:
        """Inside `ip netns exec` /sys is remounted and the cgroup tree is not visible: mount
        cgroup2 in the agent's own mount namespace (never in the machine's)."""
        target = os.path.join(state_dir, "cgroup")
        if not (_own_mount_namespace() and _mount_stays_here(target)):
            return None
        os.makedirs(target, exist_ok=True)
        if os.path.ismount(target):
            return target
        result = subprocess.run(["mount", "-t", "cgroup2", "cgroup2", target], capture_output=True)
        return target if result.returncode == 0 else None

    @property
    def available(self) -> bool:
        return self.base is not None

    def create(self, uid: str, name: str) -> str | None:
        if self.base is None:
            return None
        path = os.path.join(self.base, uid, name)
        try:
            if os.path.isdir(path):
                kill_cgroup(path)
                remove_cgroup(path)
            os.makedirs(path, exist_ok=True)
            return path
        except OSError:
            return None

    async def remove_pod(self, uid: str) -> None:
        if self.base is not None:
            await remove_cgroup_soon(os.path.join(self.base, uid))

    async def remove_if_empty(self) -> None:
        """The node's cgroup directory goes when no pod cgroup is left in it."""
        if self.base is not None and os.path.isdir(self.base):
            if not any(entry.is_dir() for entry in os.scandir(self.base)):
                await remove_cgroup_soon(self.base)


def cgroup_pids(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(line) for line in f if line.strip()]
    except OSError:
        return []


def kill_cgroup(path: str) -> None:
    """SIGKILL every process of the cgroup (cgroup.kill where the kernel has it)."""
    kill_file = os.path.join(path, "cgroup.kill")
    if os.path.exists(kill_file):
        try:
            with open(kill_file, "w") as f:
                f.write("1")
            return
        except OSError:
            pass
    for _ in range(10):
        pids = cgroup_pids(path)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def remove_cgroup(path: str) -> bool:
    """rmdir a cgroup tree, leaves first, once, without waiting (directories that still hold
    processes stay: the kernel answers EBUSY until their last process is reaped). True when
    nothing of it is left."""
    if not os.path.isdir(path):
        return True
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            remove_cgroup(entry.path)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


async def remove_cgroup_soon(path: str, attempts: int = 50, pause: float = 0.01) -> bool:
    """remove_cgroup, tried again while the cgroup is busy (its processes just got SIGKILL),
    waiting on the event loop between tries, never blocking it."""
    for _ in range(attempts):
        if remove_cgroup(path):
            return True
        await asyncio.sleep(pause)
    return False


# ---- processes -----------------------------------------------------------------------------

@dataclass
class ContainerRecord:
    """What survives an agent restart about one running container instance."""

    name: str
    container_id: str
    pid: int
    start_ticks: int | None
    cgroup: str | None
    log_path: str
    started_at: str
    restart_count: int
    tty: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


# ---- a container's namespaces ----------------------------------------------------------------

class Fanout:
    """Output of a tty container for attach sessions (each gets its own queue)."""

    def __init__(self):
        self.queues: set[asyncio.Queue] = set()

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=256)
        self.queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.queues.discard(queue)

    def publish(self, data: bytes | None) -> None:
        for queue in list(self.queues):
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:
                pass  # a stalled client misses output rather than stalling the container


class GracePeriod:
    """A stop's grace period, which a later, shorter one may cut (never lengthen), as the
    kubelet's pod worker takes the shorter grace period of a second delete: the deadline
    moves to now + the new seconds when that is earlier, and whoever waits wakes."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        self._moved = asyncio.Event()

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def shorten(self, seconds: float) -> bool:
        """Returns whether the deadline moved."""
        deadline = time.monotonic() + seconds
        if deadline >= self.deadline:
            return False
        self.deadline = deadline
        self._moved.set()
        return True

    async def wait_for(self, event: asyncio.Event) -> None:
        """Until `event` is set or the deadline (as it moves) has passed."""
        while not event.is_set() and self.left() > 0:
            self._moved.clear()
            waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._moved.wait())]
            _, pending = await asyncio.wait(waiters, timeout=self.left(), return_when=asyncio.FIRST_COMPLETED)
            for waiter in pending:
                waiter.cancel()


class ContainerProcess:
    """A running (or finished) container instance."""

    def __init__(self, record: ContainerRecord, child: bool = False):
        self.record = record
        self.child = child          # a child of this process: reaped here, its exit code known
        self.reaped = False
        self.exit_code: int | None = None
        self.finished_at: str | None = None
        self.exited = asyncio.Event()
        self.exit_known = child
        self.on_exit: Callable[["ContainerProcess"], None] | None = None
        self.stdin_fd: int | None = None
        self.stdin_once = False
        self.tty_master: int | None = None
        self.fanout = Fanout()
        self._log_file = None
        self._pidfd: int | None = None

    @property
    def pid(self) -> int:
        return self.record.pid

    @property
    def running(self) -> bool:
        return not self.exited.is_set()

    def watch(self) -> None:
        """Be told on the event loop when the process exits."""
        loop = asyncio.get_running_loop()
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            self._finish()
            return
        loop.add_reader(self._pidfd, self._on_pidfd)
        if not self.child and not process_alive(self.pid, self.record.start_ticks):
            self._on_pidfd()

    def _on_pidfd(self) -> None:
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self._finish()

    def _finish(self) -> None:
        if self.exited.is_set():
            return
        if self.child:
            # what the main process left behind dies with it (its PID namespace does that
            # unless shared); the exited, unreaped leader keeps its group id from being reused
            if not self.record.cgroup:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            code = self._reap()
            if code is not None:
                self.exit_code = 128 - code if code < 0 else code
        self.finished_at = rfc3339()
        self.exited.set()
        self._close_stdin()
        if self.tty_master is None:
            self._close_log()
        if self.on_exit is not None:
            self.on_exit(self)
        # a tty's output is drained by its reader, which closes it at end of file

    def detach(self) -> None:
        """Stop watching (the agent stops; the process keeps running)."""
        loop = asyncio.get_running_loop()
        if self._pidfd is not None:
            loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self.tty_master is not None:
            loop.remove_reader(self.tty_master)
            os.close(self.tty_master)
            self.tty_master = None
        self._close_stdin()
        self._close_log()
        self.child = False  # whoever adopts it watches it by pid and start time

    def _close_stdin(self) -> None:
        if self.stdin_fd is not None:
            try:
                os.close(self.stdin_fd)
            except OSError:
                pass
            self.stdin_fd = None

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # tty output pump
    def _pump_tty(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            data = os.read(self.tty_master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._log_file.write(data)
            self._log_file.flush()
            self.fanout.publish(data)
            return
        loop.remove_reader(self.tty_master)
        os.close(self.tty_master)
        self.tty_master = None
        self._close_log()
        self.fanout.publish(None)

    def _reap(self) -> int | None:
        """The exit status of our exited child (waiting up to a second); None if unknown."""
        for _ in range(100):
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.reaped = True
                return None
            if pid:
                self.reaped = True
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.01)
        return None

    def _is_ours(self) -> bool:
        """Whether the pid still names this container's process: a child we have not reaped
        cannot be reused; an adopted one is checked by its start time."""
        if self.child:
            return not self.reaped
        return process_alive(self.pid, self.record.start_ticks)

    def signal(self, sig: int) -> None:
        if self.running and self._is_ours():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill_all(self) -> None:
        """SIGKILL the container and everything it started (its cgroup, else its process
        group while the group leader is known to be ours)."""
        if self.record.cgroup and os.path.isdir(self.record.cgroup):
            kill_cgroup(self.record.cgroup)
        if self._is_ours():
            for kill in (os.kill, os.killpg):
                try:
                    kill(self.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    async def stop(self, grace: float | GracePeriod) -> None:
        """SIGTERM, then SIGKILL after the grace period (seconds, or a GracePeriod a later
        delete may cut); then nothing of it is left."""
        period = grace if isinstance(grace, GracePeriod) else GracePeriod(grace)
        if self.running and period.left() > 0:
            self.signal(signal.SIGTERM)
            await period.wait_for(self.exited)
        self.kill_all()
        try:
            await asyncio.wait_for(self.exited.wait(), 10)
        except asyncio.TimeoutError:
            pass
        if self.record.cgroup:
            kill_cgroup(self.record.cgroup)
            await remove_cgroup_soon(self.record.cgroup)

    # stdin / tty
    async def write_stdin(self, data: bytes) -> None:
        fd = self.tty_master if self.record.tty else self.stdin_fd
        if fd is None:
            raise BrokenPipeError("the container's stdin is closed")
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
                view = view[written:]
            except BlockingIOError:
                await asyncio.sleep(0.01)

    def close_stdin(self) -> None:
        """End of input (stdinOnce, or the attach client closed stdin)."""
        if self.record.tty and self.tty_master is not None:
            try:
                os.write(self.tty_master, b"\x04")
            except OSError:
                pass
        else:
            self._close_stdin()

    def resize(self, width: int, height: int) -> None:
        if self.tty_master is not None:
            fcntl.ioctl(self.tty_master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


async def start_container(*, spawner: Spawner, name: str, container_id: str, holder_pid: int, argv: list[str],
                          env: dict[str, str], working_dir: str, log_path: str, cgroup: str | None,
                          restart_count: int, tty: bool, stdin: bool, stdin_once: bool,
                          pid_namespace: str | None = None, host_pid: bool = False, security: dict | None = None,
                          writable: list[str] | None = None, rootfs: dict) -> ContainerProcess:
    """Start a container's process in the sandbox of `holder_pid` (through the node's
    spawner, as a child of this process), as PID 1 of a new PID namespace, in
    `pid_namespace` (/proc/<holder>/ns/pid: the pod's shared one) or, with `host_pid`, in the
    machine's (the node's: a pod with `hostPID: true`), in a root of its own built
    from `rootfs` (nsinit.RootBuilder's config: its image's holds, /etc, its volumes), with
    `security` (security.process_security) and its volumes' mountPaths `writable` under a
    read-only root; raises StartError when its program is not in its image or cannot start."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    log_file = open(log_path, "ab", buffering=0) if tty else None  # a terminal's output is copied by us
    stdin_read = stdin_write = master = slave = None
    config = {"holder_pid": holder_pid, "pid_namespace": pid_namespace, "host_pid": host_pid, "argv": argv,
              "env": env, "working_dir": working_dir, "cgroup": cgroup, "log_path": log_path,
              "security": security or {}, "writable": writable or [], "rootfs": rootfs}
    try:
        if tty:
            master, slave = pty.openpty()
            config["tty_fd"] = slave
        elif stdin:
            stdin_read, stdin_write = os.pipe()
            config["stdin_fd"] = stdin_read
        try:
            pid = await spawner.start_container(config)
        except OSError as exc:
            message = str(exc)
            raise StartError(message if message.startswith("failed to create containerd task")
                             else f"failed to start container process: {message}") from None
        finally:
            for fd in (slave, stdin_read):
                if fd is not None:
                    os.close(fd)
    except BaseException:
        for fd in (master, stdin_write):
            if fd is not None:
                os.close(fd)
        if log_file is not None:
            log_file.close()
        raise
    record = ContainerRecord(name=name, container_id=container_id, pid=pid, start_ticks=process_start_ticks(pid),
                             cgroup=cgroup, log_path=log_path, started_at=rfc3339(), restart_count=restart_count,
                             tty=tty)
    process = ContainerProcess(record, child=True)
    process.stdin_once = stdin_once
    if stdin_write is not None:
        os.set_blocking(stdin_write, False)
        process.stdin_fd = stdin_write
    if tty:
        os.set_blocking(master, False)
        process.tty_master = master
        process._log_file = log_file
        asyncio.get_running_loop().add_reader(master, process._pump_tty)
    process.watch()
    return process


def adopt_container(record: ContainerRecord) -> ContainerProcess:
    """A container left running by a previous agent (its exit code will be unknown)."""
    process = ContainerProcess(record)
    process.watch()
    return process


def exec_argv(container_pid: int, working_dir: str, env: dict[str, str], argv: list[str],
              cgroup: str | None = None, tty: bool = False, security: dict | None = None) -> list[str]:
    """An argv running `argv` inside the container whose main process is `container_pid`, as
    runc exec does (nsinit.py's `exec_main`): its cgroup, its namespaces (PID included),
    working dir, environment, user and capabilities (`security`); a command whose stdin is a
    terminal leads a session on it (`tty`)."""
    config = {"container_pid": container_pid, "working_dir": working_dir, "env": env, "argv": list(argv),
              "cgroup": cgroup, "tty": tty, "security": security or {}}
    return nsinit_command("--exec", json.dumps(config))


# ---- logs ----------------------------------------------------------------------------------

class LogIndex:
    """When each part of a log file was first seen: `<log>.idx` with "offset ns" lines."""

    def __init__(self, log_path: str):
        self.log_path = log_path
        self.path = log_path + ".idx"
        self.offsets: list[int] = []
        self.times: list[int] = []
        try:
            with open(self.path) as f:
                for line in f:
                    offset, ns = line.split()
                    self.offsets.append(int(offset))
                    self.times.append(int(ns))
        except (OSError, ValueError):
            pass

    def update(self) -> None:
        try:
            size = os.path.getsize(self.log_path)
        except OSError:
            return
        if self.offsets and size <= self.offsets[-1]:
            return
        if size == 0:
            return
        now = time.time_ns()
        self.offsets.append(size)
        self.times.append(now)
        with open(self.path, "a") as f:
            f.write(f"{size} {now}\n")

    def time_of(self, end_offset: int) -> int:
        """When the byte before `end_offset` was first seen."""
        i = bisect.bisect_left(self.offsets, end_offset)
        if i < len(self.times):
            return self.times[i]
        return time.time_ns()


def _split_lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


async def read_log_file(log_path: str, *, follow: bool, tail_lines: int | None, since_seconds: int | None,
                        since_time_ns: int | None = None, timestamps: bool, limit_bytes: int | None,
                        is_running: Callable[[], bool]) -> AsyncIterator[bytes]:
    """kubectl logs over one log file: tail, since, timestamps, limit, follow (until the
    container exits)."""
    index = LogIndex(log_path)
    index.update()
    try:
        with open(log_path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = b""
    position = len(data)
    lines, offset = [], 0
    for line in _split_lines(data):
        offset += len(line)
        lines.append((index.time_of(offset), line))
    cutoff = None
    if since_seconds is not None:
        cutoff = time.time_ns() - since_seconds * 1_000_000_000
    if since_time_ns is not None:
        cutoff = max(cutoff or 0, since_time_ns)
    if cutoff is not None:
        lines = [(ts, line) for ts, line in lines if ts >= cutoff]
    if tail_lines is not None and tail_lines >= 0:
        lines = lines[len(lines) - tail_lines:] if tail_lines else []
    budget = limit_bytes if limit_bytes is not None and limit_bytes > 0 else None

    def render(ts: int, line: bytes) -> bytes:
        """The line as sent: with its timestamp if asked, cut to what is left of limitBytes."""
        nonlocal budget
        chunk = (rfc3339_nano(ts).encode() + b" " + line) if timestamps else line
        if budget is not None:
            chunk = chunk[:budget]
            budget -= len(chunk)
        return chunk

    def spent() -> bool:
        return budget is not None and budget <= 0

    for ts, line in lines:
        yield render(ts, line)
        if spent():
            return
    if not follow:
        return
    pending = b""
    while True:
        running = is_running()
        try:
            with open(log_path, "rb") as f:
                f.seek(position)
                new = f.read()
        except FileNotFoundError:
            new = b""
        position += len(new)
        pending += new
        complete, _, pending = pending.rpartition(b"\n") if b"\n" in pending else (b"", b"", pending)
        if complete:
            now = time.time_ns()
            for line in _split_lines(complete + b"\n"):
                yield render(now, line)
                if spent():
                    return
        if not running and not new:
            if pending:
                yield render(time.time_ns(), pending)
            return
        await asyncio.sleep(FOLLOW_POLL_SECONDS)


# ---- attach --------------------------------------------------------------------------------

class AttachHandle:
    """One attach session to a running container.

    - `stdin` / `tty`: what the container offers.
    - `await write_stdin(data)`: to the container's stdin (its terminal when tty).
    - `close_stdin()`: this session's input ended; the container's stdin is closed for good
      with stdinOnce (a tty gets ^D).
    - `resize(width, height)`: terminal size (tty only).
    - `async for channel, data in output()`: what the container writes from now on, until it
      exits; channel is 1 (stdout: the log file carries stdout and stderr together).
    - `close()`: end the session."""

    def __init__(self, process: ContainerProcess):
        self.process = process
        self.tty = process.record.tty
        self.stdin = process.stdin_fd is not None or (self.tty and process.tty_master is not None)
        self._queue = process.fanout.subscribe() if self.tty else None

    async def write_stdin(self, data: bytes) -> None:
        await self.process.write_stdin(data)

    def close_stdin(self) -> None:
        if self.process.stdin_once:
            self.process.close_stdin()

    def resize(self, width: int, height: int) -> None:
        self.process.resize(width, height)

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        if self._queue is not None:
            while True:
                data = await self._queue.get()
                if data is None:
                    return
                yield STDOUT_CHANNEL, data
        else:
            start = os.path.getsize(self.process.record.log_path)
            position = start
            while True:
                running = self.process.running
                with open(self.process.record.log_path, "rb") as f:
                    f.seek(position)
                    data = f.read()
                if data:
                    position += len(data)
                    yield STDOUT_CHANNEL, data
                elif not running:
                    return
                else:
                    await asyncio.sleep(FOLLOW_POLL_SECONDS / 2)

    def close(self) -> None:
        if self._queue is not None:
            self.process.fanout.unsubscribe(self._queue)
        if self.process.stdin_once:
            self.process.close_stdin()


# ---- probes --------------------------------------------------------------------------------

class NetnsSockets:
    """Sockets created in a given network namespace (the node's, for probes), through one
    thread that entered it; None means the agent's own namespace."""

    def __init__(self, netns_path: str | None):
        self.netns_path = netns_path
        self.executor = ThreadPoolExecutor(1, initializer=self._enter) if netns_path else None

    def _enter(self) -> None:
        setns(self.netns_path)

    async def connect(self, host: str, port: int, timeout: float) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if self.executor is None:
            sock = socket.socket(family, socket.SOCK_STREAM)
        else:
            sock = await asyncio.get_running_loop().run_in_executor(self.executor, socket.socket, family,
                                                                    socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False)


@dataclass
class ProbeResult:
    success: bool
    message: str = ""


def _connect_error(exc: OSError) -> str:
    """Go's wording for a failed connect: `connection refused`, `no route to host`, ..."""
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve_port(port, container: dict) -> int:
    """A probe's port: a number or the name of one of the container's ports."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"unknown port name {port!r}")


async def probe_tcp(sockets: NetnsSockets, host: str, port: int, timeout: float) -> ProbeResult:
    where = f"dial tcp {_host_port(host, port)}"
    try:
        sock = await sockets.connect(host, port, timeout)
    except asyncio.TimeoutError:
        return ProbeResult(False, f"{where}: i/o timeout")
    except OSError as exc:
        return ProbeResult(False, f"{where}: connect: {_connect_error(exc)}")
    sock.close()
    return ProbeResult(True)


async def probe_http(sockets: NetnsSockets, *, scheme: str, host: str, port: int, path: str,
                     headers: list[dict], timeout: float) -> ProbeResult:
    """GET as the kubelet does: success for 200 <= status < 400."""
    url = f"{scheme.lower()}://{_host_port(host, port)}{path}"
    deadline = time.monotonic() + timeout
    try:
        sock = await sockets.connect(host, port, timeout)
    except asyncio.TimeoutError:
        return ProbeResult(False, f'Get "{url}": dial tcp {_host_port(host, port)}: i/o timeout')
    except OSError as exc:
        return ProbeResult(False, f'Get "{url}": dial tcp {_host_port(host, port)}: connect: {_connect_error(exc)}')
    writer = None
    try:
        tls = None
        if scheme.upper() == "HTTPS":
            tls = insecure_client_context()  # the kubelet's HTTPS probes verify nothing
        remaining = max(0.01, deadline - time.monotonic())
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(sock=sock, ssl=tls, server_hostname=host if tls else None), remaining)
        names = {h.get("name", "").lower() for h in headers}
        lines = [f"GET {path} HTTP/1.1"]
        if "host" not in names:
            lines.append(f"Host: {_host_port(host, port)}")
        if "user-agent" not in names:
            lines.append(f"User-Agent: {PROBE_USER_AGENT}")
        if "accept" not in names:
            lines.append("Accept: */*")
        lines += [f"{h['name']}: {h.get('value', '')}" for h in headers]
        lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = await asyncio.wait_for(reader.readline(), max(0.01, deadline - time.monotonic()))
        parts = status_line.decode(errors="replace").split()
        code = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
        if code == 0:
            return ProbeResult(False, f'Get "{url}": malformed HTTP response')
        if 200 <= code < 400:
            return ProbeResult(True)
        return ProbeResult(False, f"HTTP probe failed with statuscode: {code}")
    except asyncio.TimeoutError:
        return ProbeResult(False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while '
                                  f'awaiting headers)')
    except (OSError, ssl.SSLError) as exc:
        return ProbeResult(False, f'Get "{url}": {exc}')
    finally:
        if writer is not None:
            writer.close()
        else:
            sock.close()


async def probe_exec(argv: list[str], command: list[str], timeout: float) -> ProbeResult:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        return ProbeResult(False, f"command {' '.join(command)!r} timed out")
    if proc.returncode == 0:
        return ProbeResult(True)
    return ProbeResult(False, out.decode(errors="replace")[:10240])
