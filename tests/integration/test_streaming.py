"""kubectl logs, exec, attach, run -it --rm and port-forward end to end: the real kubectl, a
real API server with the streaming proxy, and the agent's real streaming server on
127.0.0.1. Only the PodManager is a stand-in: `FakePods` runs each container as a local
process (no namespaces), and `FakeKubelet` reports pod status the way an agent would.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import pty
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from pocketkube.apiserver import streaming as api_streaming
from pocketkube.apiserver.local import LocalTransport
from pocketkube.apiserver.server import APIServer
from pocketkube.controllers.base import Settings
from pocketkube.controllers.manager import ControllerManager
from pocketkube.core.client import Client
from pocketkube.core.objects import rfc3339
from pocketkube.node.streaming import StreamingServer

pytestmark = pytest.mark.kubectl

KUBECTL = shutil.which("kubectl")
NODE = "fake-node"
SPDY_ENV = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false", "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}


# ---- a PodManager stand-in: containers are plain local processes ---------------------------

@dataclass
class LogLine:
    at: datetime
    data: bytes


class FakeContainer:
    """One container's process, its log lines and its attach fan-out."""

    def __init__(self, argv: list[str], *, tty: bool, stdin: bool, stdin_once: bool, env: dict):
        self.argv, self.tty, self.stdin, self.stdin_once, self.env = argv, tty, stdin, stdin_once, env
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[LogLine] = []
        self.previous_lines: list[LogLine] | None = None
        self.started_at = datetime.now(timezone.utc)
        self.exit_code: int | None = None
        self.finished_at: datetime | None = None
        self.restarts = 0
        self.last_exit: tuple | None = None  # (exit code, started, finished) of the previous run
        self.changed = asyncio.Event()
        self._subscribers: list[asyncio.Queue] = []
        self._partial = b""
        self._master: int | None = None

    async def start(self) -> None:
        self.started_at, self.exit_code, self._partial = datetime.now(timezone.utc), None, b""
        env = {**os.environ, **self.env}
        if self.tty:
            self._master, slave = pty.openpty()
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
            os.close(slave)
            readers = [self._read_fd(self._master)]
        else:
            pipe = asyncio.subprocess.PIPE
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=pipe if self.stdin else asyncio.subprocess.DEVNULL, stdout=pipe, stderr=pipe,
                env=env, start_new_session=True)
            readers = [self._read_stream(self.proc.stdout, 1), self._read_stream(self.proc.stderr, 2)]
        asyncio.ensure_future(self._run(readers))

    async def _run(self, readers) -> None:
        await asyncio.gather(*readers, self.proc.wait())
        self.exit_code, self.finished_at = self.proc.returncode, datetime.now(timezone.utc)
        if self._master is not None:
            os.close(self._master)
            self._master = None
        for q in self._subscribers:
            q.put_nowait(None)
        self.changed.set()

    async def _read_stream(self, reader: asyncio.StreamReader, channel: int) -> None:
        while data := await reader.read(65536):
            self._emit(channel, data)

    async def _read_fd(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.run_in_executor(None, os.read, fd, 65536)
            except OSError:
                return
            if not data:
                return
            self._emit(1, data)

    def _emit(self, channel: int, data: bytes) -> None:
        for q in self._subscribers:
            q.put_nowait((channel, data))
        self._partial += data
        *complete, self._partial = self._partial.split(b"\n")
        now = datetime.now(timezone.utc)
        self.lines += [LogLine(now, line + b"\n") for line in complete]
        self.changed.set()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.exit_code is None

    def kill(self) -> None:
        if self.running:
            os.killpg(self.proc.pid, signal.SIGKILL)

    # the AttachHandle protocol
    async def write_stdin(self, data: bytes) -> None:
        if self._master is not None:
            os.write(self._master, data)
        elif self.proc and self.proc.stdin:
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()

    def close_stdin(self) -> None:
        if self.stdin_once and self.proc and self.proc.stdin:
            self.proc.stdin.close()

    def resize(self, width: int, height: int) -> None:
        if self._master is not None:
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def output(self):
        q: asyncio.Queue = asyncio.Queue()
        self._subscribers.append(q)
        try:
            if not self.running:
                return
            while (item := await q.get()) is not None:
                yield item
        finally:
            self._subscribers.remove(q)


class FakePods:
    """PodManager's streaming interface over FakeContainers (all in this network namespace)."""

    def __init__(self) -> None:
        self.containers: dict[tuple[str, str], FakeContainer] = {}
        self.node_log_files: dict[str, str] = {}  # what the node's /logs/ serves

    def log_files(self) -> dict[str, str]:
        return dict(self.node_log_files)

    def pod_netns_path(self, uid: str) -> str:
        return "/proc/self/ns/net"

    def container_pid(self, uid: str, container: str) -> int | None:
        c = self.containers.get((uid, container))
        return c.proc.pid if c and c.running else None

    def exec_command(self, uid: str, container: str, argv: list[str]) -> list[str]:
        return list(argv)

    def attach(self, uid: str, container: str) -> FakeContainer:
        return self.containers[(uid, container)]

    async def read_logs(self, uid, container, *, follow, tail_lines, since_seconds, timestamps, previous,
                        limit_bytes):
        c = self.containers.get((uid, container))
        if c is None:
            raise LookupError(f'container "{container}" not found')
        lines = c.previous_lines if previous else c.lines
        if lines is None:
            raise LookupError(f'previous terminated container "{container}" not found')
        start = 0
        if since_seconds is not None:
            cutoff = datetime.now(timezone.utc) - timedelta(seconds=since_seconds)
            start = next((i for i, ln in enumerate(lines) if ln.at >= cutoff), len(lines))
        if tail_lines is not None:
            start = max(start, len(lines) - tail_lines)
        budget = limit_bytes if limit_bytes is not None else -1
        pos = start
        while True:
            for ln in lines[pos:]:
                text = (rfc3339(ln.at).replace("Z", "") + ".000000000Z " if timestamps else "").encode() + ln.data
                if budget >= 0:
                    text, budget = text[:budget], budget - len(text[:budget])
                yield text
                if budget == 0:
                    return
            pos = len(lines)
            if not follow or previous or not c.running:
                return
            c.changed.clear()
            await c.changed.wait()


# ---- a kubelet stand-in: runs the fake containers and reports status ----------------------------

def container_argv(spec: dict) -> list[str]:
    """`command` + `args`; without a command, the busybox image's default: sh."""
    if spec.get("command"):
        return list(spec["command"]) + list(spec.get("args") or [])
    return list(spec.get("args") or []) or ["sh"]


class FakeKubelet:
    def __init__(self, client: Client, pods: FakePods):
        self.client, self.pods = client, pods
        self.known: dict[str, dict] = {}  # uid -> last status written
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        self.task.cancel()
        for c in self.pods.containers.values():
            c.kill()

    async def _loop(self) -> None:
        while True:
            try:
                listed = await self.client.list("v1", "pods", field_selector=f"spec.nodeName={NODE}")
                for pod in listed["items"]:
                    await self._sync(pod)
            except Exception as exc:  # keep the stand-in going; a test will see what failed
                print("fake kubelet:", repr(exc), file=sys.stderr)
            await asyncio.sleep(0.05)

    async def _sync(self, pod: dict) -> None:
        m, spec = pod["metadata"], pod["spec"]
        uid = m["uid"]
        if m.get("deletionTimestamp"):
            for c in spec["containers"]:
                if fc := self.pods.containers.get((uid, c["name"])):
                    fc.kill()
            await self.client.delete("v1", "pods", m["name"], m["namespace"], grace_period_seconds=0)
            return
        if (m.get("annotations") or {}).get("test/hold") == "true":
            return  # stays ContainerCreating
        for c in spec["containers"]:
            key = (uid, c["name"])
            fc = self.pods.containers.get(key)
            if fc is None:
                fc = FakeContainer(container_argv(c), tty=bool(c.get("tty")), stdin=bool(c.get("stdin")),
                                   stdin_once=bool(c.get("stdinOnce")), env={"RESTART_COUNT": "0"})
                self.pods.containers[key] = fc
                await fc.start()
            elif not fc.running and spec.get("restartPolicy", "Always") == "Always":
                fc.previous_lines, fc.last_exit = fc.lines, (fc.exit_code, fc.started_at, fc.finished_at)
                fc.lines, fc.restarts = [], fc.restarts + 1
                fc.env["RESTART_COUNT"] = str(fc.restarts)
                await fc.start()
        status = self._status(pod)
        if status != self.known.get(uid):
            await self.client.patch("v1", "pods", m["name"], {"status": status}, m["namespace"],
                                    subresource="status")
            self.known[uid] = status

    def _status(self, pod: dict) -> dict:
        uid = pod["metadata"]["uid"]
        statuses, all_done, all_ok = [], True, True
        for c in pod["spec"]["containers"]:
            fc = self.pods.containers[(uid, c["name"])]
            cs = {"name": c["name"], "image": c["image"], "imageID": "", "ready": fc.running,
                  "restartCount": fc.restarts, "started": fc.running, "containerID": "fake://1",
                  "lastState": {}}
            if fc.running:
                cs["state"] = {"running": {"startedAt": rfc3339(fc.started_at)}}
                all_done = False
            else:
                cs["state"] = {"terminated": self._terminated(fc.exit_code, fc.started_at, fc.finished_at)}
                all_ok = all_ok and fc.exit_code == 0
            if fc.last_exit:
                cs["lastState"] = {"terminated": self._terminated(*fc.last_exit)}
            statuses.append(cs)
        never = pod["spec"].get("restartPolicy") == "Never"
        phase = ("Succeeded" if all_ok else "Failed") if (never and all_done) else "Running"
        ready = "True" if phase == "Running" and all(s["ready"] for s in statuses) else "False"
        return {"phase": phase, "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
                "conditions": [{"type": "Ready", "status": ready}, {"type": "ContainersReady", "status": ready},
                               {"type": "PodScheduled", "status": "True"}],
                "containerStatuses": statuses}

    @staticmethod
    def _terminated(code, started, finished) -> dict:
        return {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "containerID": "fake://1",
                "startedAt": rfc3339(started), "finishedAt": rfc3339(finished)}


# ---- the cluster: API server + controllers + the agent's streaming server, in one thread ------

@dataclass
class Cluster:
    data_dir: str
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    env: dict = field(default_factory=dict)

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        self.server = APIServer(self.data_dir, port=0, datastore="memory")
        await self.server.start()
        api_streaming.install(self.server.handlers, self.server.storage, agent_token=self.server.token)
        self.client = Client(LocalTransport(self.server.handlers), field_manager="test")
        self.controllers = ControllerManager(self.client, settings=Settings(apiserver_port=self.server.port))
        await self.controllers.start()
        self.pods = FakePods()
        self.agent = StreamingServer(self.pods, host="127.0.0.1", port=0, token=self.server.token)
        await self.agent.start()
        await self.client.create("v1", "nodes", {
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": self.agent.port}},
                       "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                       "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})
        self.kubelet = FakeKubelet(self.client, self.pods)
        await self.kubelet.start()

    async def _stop(self) -> None:
        await self.kubelet.stop()
        await self.agent.stop()
        await self.controllers.stop()
        await self.server.stop()

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, env: dict | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        cp = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, timeout=timeout,
                            env={**self.env, **(env or {})})
        if check and cp.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
        return cp


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if KUBECTL is None:
        pytest.fail("kubectl is not installed (scripts/setup installs it)")
    c = Cluster(str(tmp_path_factory.mktemp("pk-stream")))
    thread = threading.Thread(target=c.loop.run_forever, name="cluster", daemon=True)
    thread.start()
    c.call(c._start())
    c.env = {**os.environ, "KUBECONFIG": c.server.kubeconfig_path, "HOME": c.data_dir,
             "KUBECACHEDIR": tempfile.mkdtemp(prefix="kubecache-", dir=c.data_dir)}
    try:
        yield c
    finally:
        c.call(c._stop())
        c.loop.call_soon_threadsafe(c.loop.stop)
        thread.join(10)


def pod_manifest(name: str, command: list[str] | None = None, *, containers: list[dict] | None = None,
                 annotations: dict | None = None, restart: str = "Always", **container_fields) -> dict:
    if containers is None:
        containers = [{"name": "main", "image": "busybox", **({"command": command} if command else {}),
                       **container_fields}]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations or {}, "labels": {"app": name}},
            "spec": {"containers": containers, "restartPolicy": restart}}


def create_pod(cluster: Cluster, manifest: dict, *, running: bool = True) -> dict:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    if running:
        cluster.kubectl("wait", "--for=condition=Ready", f"pod/{manifest['metadata']['name']}", "--timeout=30s")
    return manifest


def wait_for(predicate, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PtyProcess:
    """A process (kubectl -it) on a pseudo-terminal that a test types into."""

    def __init__(self, argv: list[str], env: dict):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True,
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.output = b""

    def read_until(self, needle: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} in output:\n{self.output.decode(errors='replace')}")
            if not self._read(0.2) and self.proc.poll() is not None:
                raise AssertionError(f"exited ({self.proc.returncode}) without {needle!r}:\n{self.output!r}")

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:
            return False
        self.output += data
        return bool(data)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        while self._read(0):  # what is left
            if not select.select([self.master], [], [], 0)[0]:
                break
        if self.proc.poll() is None:
            self.kill()
            raise AssertionError(f"still running:\n{self.output!r}")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


class Background:
    """A long-running kubectl (port-forward, attach -f) read line by line."""

    def __init__(self, argv: list[str], env: dict):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._seen = 0
        self._partial = ""

    def wait_line(self, needle: str, timeout: float = 30) -> str:
        """The first line not seen before that contains needle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while self._seen < len(self.lines):
                line = self.lines[self._seen]
                self._seen += 1
                if needle in line:
                    return line
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                data = os.read(self.proc.stdout.fileno(), 65536)
                if not data:
                    break
                self._partial += data.decode(errors="replace")
                *complete, self._partial = self._partial.split("\n")
                self.lines += complete
        raise AssertionError(f"no {needle!r} in output: {self.lines}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()


# ---- logs ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def talker(cluster):
    """A pod that wrote five lines (three on stdout, two on stderr) and stays up."""
    create_pod(cluster, pod_manifest("talker", ["sh", "-c", "for i in 1 2 3; do echo out-$i; done; "
                                                           "echo err-1 >&2; echo err-2 >&2; exec sleep 3600"]))
    wait_for(lambda: "err-2" in cluster.kubectl("logs", "talker").stdout, "the talker's logs")
    return "talker"


def test_logs_whole(cluster, talker):
    lines = cluster.kubectl("logs", talker).stdout.splitlines()
    assert sorted(lines) == ["err-1", "err-2", "out-1", "out-2", "out-3"]
    assert lines.index("out-1") < lines.index("out-3")


@pytest.mark.parametrize("flags, expected", [
    (["--tail=2"], 2),
    (["--tail=0"], 0),
    (["--tail=-1"], 5),
    (["--since=1h"], 5),
    (["-c", "main"], 5),
])
def test_logs_flags(cluster, talker, flags, expected):
    assert len(cluster.kubectl("logs", talker, *flags).stdout.splitlines()) == expected


def test_logs_timestamps_and_limit(cluster, talker):
    lines = cluster.kubectl("logs", talker, "--timestamps").stdout.splitlines()
    assert len(lines) == 5
    for line in lines:
        stamp, _ = line.split(" ", 1)
        datetime.fromisoformat(stamp.replace("Z", "+00:00").replace(".000000000", ""))
    assert cluster.kubectl("logs", talker, "--limit-bytes=4").stdout in ("out-", "err-")


def test_logs_since_time(cluster, talker):
    since = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(cluster.kubectl("logs", talker, f"--since-time={since}").stdout.splitlines()) == 5


def test_logs_follow_streams_new_lines(cluster):
    create_pod(cluster, pod_manifest("ticker", ["sh", "-c", "echo first; while true; do echo tick; sleep 0.2; done"]))
    follower = Background([KUBECTL, "logs", "-f", "ticker"], cluster.env)
    try:
        follower.wait_line("first")
        follower.wait_line("tick")
        follower.wait_line("tick")  # new lines keep coming on the open connection
    finally:
        follower.stop()


def test_logs_follow_ends_when_container_exits(cluster):
    create_pod(cluster, pod_manifest("short", ["sh", "-c", "echo one; sleep 1; echo two"], restart="Never"),
               running=False)
    wait_for(lambda: "one" in cluster.kubectl("logs", "short", check=False).stdout, "the first line")
    cp = cluster.kubectl("logs", "-f", "short", timeout=30)
    assert cp.stdout.splitlines() == ["one", "two"]


def test_logs_previous(cluster):
    create_pod(cluster, pod_manifest("crasher", ["sh", "-c", 'echo "run $RESTART_COUNT"; '
                                                            '[ "$RESTART_COUNT" = 0 ] && exit 1; exec sleep 3600']))
    wait_for(lambda: "run 1" in cluster.kubectl("logs", "crasher", check=False).stdout, "the restart")
    assert cluster.kubectl("logs", "crasher").stdout == "run 1\n"
    assert cluster.kubectl("logs", "crasher", "--previous").stdout == "run 0\n"


@pytest.mark.parametrize("args, message", [
    (["logs", "nope"], 'error: error from server (NotFound): pods "nope" not found in namespace "default"'),
    (["logs", "talker", "-c", "bad"], "error: container bad is not valid for pod talker"),  # kubectl checks
    (["logs", "talker", "--previous"],
     'Error from server (BadRequest): previous terminated container "main" in pod "talker" not found'),
])
def test_logs_errors(cluster, talker, args, message):
    cp = cluster.kubectl(*args, check=False)
    assert cp.returncode == 1
    assert message in cp.stderr


def test_logs_of_a_container_still_creating(cluster):
    create_pod(cluster, pod_manifest("creating", ["sleep", "60"], annotations={"test/hold": "true"}),
               running=False)
    wait_for(lambda: cluster.kubectl("get", "pod", "creating", "-o", "jsonpath={.spec.nodeName}").stdout == NODE,
             "scheduling")
    cp = cluster.kubectl("logs", "creating", check=False)
    assert cp.returncode == 1
    assert 'Error from server (BadRequest): container "main" in pod "creating" is waiting to start: ' \
           'ContainerCreating' in cp.stderr


def test_logs_several_containers_need_a_name(cluster):
    create_pod(cluster, pod_manifest("pair", containers=[
        {"name": "a", "image": "busybox", "command": ["sh", "-c", "echo from-a; exec sleep 3600"]},
        {"name": "b", "image": "busybox", "command": ["sh", "-c", "echo from-b; exec sleep 3600"]}]))
    wait_for(lambda: cluster.kubectl("logs", "pair", "-c", "b", check=False).stdout == "from-b\n", "b's log")
    cp = cluster.kubectl("logs", "pair", check=False)  # kubectl picks the first and says so
    assert cp.stdout == "from-a\n"
    assert 'Defaulted container "a" out of: a, b' in cp.stderr


# ---- exec -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sleeper(cluster):
    create_pod(cluster, pod_manifest("sleeper", ["sleep", "3600"]))
    return "sleeper"


@pytest.mark.parametrize("env", [{}, SPDY_ENV], ids=["websocket", "spdy"])
def test_exec_output_and_exit_codes(cluster, sleeper, env):
    cp = cluster.kubectl("exec", sleeper, "--", "sh", "-c", "echo to-out; echo to-err >&2", env=env)
    assert cp.stdout == "to-out\n"
    assert cp.stderr == "to-err\n"
    cp = cluster.kubectl("exec", sleeper, "--", "sh", "-c", "echo partial; exit 3", check=False, env=env)
    assert cp.returncode == 3
    assert cp.stdout == "partial\n"
    assert "command terminated with exit code 3" in cp.stderr


@pytest.mark.parametrize("env", [{}, SPDY_ENV], ids=["websocket", "spdy"])
def test_exec_stdin(cluster, sleeper, env):
    cp = cluster.kubectl("exec", "-i", sleeper, "--", "sh", "-c", "tr a-z A-Z; echo done",
                         input="hello\nworld\n", env=env)
    assert cp.stdout == "HELLO\nWORLD\ndone\n"


@pytest.mark.parametrize("command", ["exec", "port-forward"])
def test_the_spdy_fallback_really_speaks_spdy(cluster, sleeper, web_pod, command):
    env = {**cluster.env, **SPDY_ENV}
    if command == "port-forward":
        forward = Background([KUBECTL, "-v=8", "port-forward", "pod/web", f"{free_port()}:{web_pod}"], env)
        try:
            forward.wait_line("Forwarding from")
            log = "\n".join(forward.lines)
        finally:
            forward.stop()
    else:
        log = cluster.kubectl("-v=8", "exec", sleeper, "--", "true", env=SPDY_ENV).stderr
    assert "Upgrade: SPDY/3.1" in log
    assert "Response Status: 101 Switching Protocols" in log


def test_exec_large_output(cluster, sleeper):
    cp = cluster.kubectl("exec", sleeper, "--", "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x")
    assert cp.stdout == "x" * 3_000_000


@pytest.mark.parametrize("env", [{}, SPDY_ENV], ids=["websocket", "spdy"])
def test_exec_tty(cluster, sleeper, env):
    term = PtyProcess([KUBECTL, "exec", "-it", sleeper, "--", "sh"], {**cluster.env, **env})
    try:
        term.type("stty size; echo tty-$((40+2))\n")
        term.read_until(b"tty-42")
        assert b"24 80" in term.output  # the client's terminal size reached the pty
        term.type("exit 4\n")
        assert term.wait() == 4
    finally:
        term.kill()


@pytest.mark.parametrize("args, message", [
    (["exec", "nope", "--", "true"], 'Error from server (NotFound): pods "nope" not found'),
    (["exec", "sleeper", "-c", "bad", "--", "true"],
     "Error from server (BadRequest): container bad is not valid for pod sleeper"),
])
def test_exec_errors(cluster, sleeper, args, message):
    cp = cluster.kubectl(*args, check=False)
    assert cp.returncode == 1
    assert message in cp.stderr


def test_exec_into_a_container_not_running(cluster):
    create_pod(cluster, pod_manifest("waiting", ["sleep", "60"], annotations={"test/hold": "true"}),
               running=False)
    wait_for(lambda: cluster.kubectl("get", "pod", "waiting", "-o", "jsonpath={.spec.nodeName}").stdout == NODE,
             "scheduling")
    cp = cluster.kubectl("exec", "waiting", "--", "true", check=False)
    assert cp.returncode == 1
    assert 'container not found ("main")' in cp.stderr


def test_exec_into_an_unscheduled_pod(cluster):
    manifest = pod_manifest("nowhere", ["sleep", "60"])
    manifest["spec"]["nodeSelector"] = {"no": "such-node"}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    cp = cluster.kubectl("exec", "nowhere", "--", "true", check=False)
    assert cp.returncode == 1
    assert "Error from server (BadRequest): pod nowhere does not have a host assigned" in cp.stderr
    cp = cluster.kubectl("logs", "nowhere")  # nowhere to read from yet: empty, as a real API server
    assert cp.stdout == ""


# ---- attach and run -it --rm ---------------------------------------------------------------------

def test_attach_follows_output(cluster):
    create_pod(cluster, pod_manifest("chatty", ["sh", "-c", "i=0; while true; do echo line-$i; i=$((i+1)); "
                                                           "sleep 0.2; done"]))
    attached = Background([KUBECTL, "attach", "chatty"], cluster.env)
    try:
        first = attached.wait_line("line-")
        attached.wait_line("line-")
        assert first.startswith("line-")
    finally:
        attached.stop()


@pytest.mark.parametrize("env", [{}, SPDY_ENV], ids=["websocket", "spdy"])
def test_attach_stdin_once(cluster, env):
    name = "reader-" + ("ws" if not env else "spdy")
    create_pod(cluster, pod_manifest(name, ["sh", "-c", "while read l; do echo got:$l; done; echo bye"],
                                     stdin=True, stdinOnce=True, restart="Never"))
    cp = cluster.kubectl("attach", "-i", name, input="a\nb\n", env=env)
    assert "got:a\ngot:b\nbye\n" in cp.stdout


def test_run_it_rm(cluster):
    term = PtyProcess([KUBECTL, "run", "-it", "--rm", "--restart=Never", "--image=busybox", "shell", "--", "sh"],
                      cluster.env)
    try:
        term.read_until(b"If you don't see a command prompt, try pressing enter.")
        term.type("echo hello-$((1+1))\n")
        term.read_until(b"hello-2")
        term.type("exit\n")
        assert term.wait() == 0
        assert b'pod "shell" deleted' in term.output
    finally:
        term.kill()
    cp = cluster.kubectl("get", "pod", "shell", check=False)
    assert 'pods "shell" not found' in cp.stderr


# ---- port-forward ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def web_pod(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "index.html").write_text("hello from the pod\n")
    port = free_port()
    manifest = pod_manifest("web", ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                    "--directory", str(root)])
    manifest["spec"]["containers"][0]["ports"] = [{"containerPort": port, "name": "http"}]
    create_pod(cluster, manifest)
    wait_for(lambda: _can_connect(port), "the pod's HTTP server")
    return port


def _can_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("env", [{}, SPDY_ENV], ids=["websocket", "spdy"])
def test_port_forward_pod(cluster, web_pod, env):
    local = free_port()
    forward = Background([KUBECTL, "port-forward", "pod/web", f"{local}:{web_pod}"], {**cluster.env, **env})
    try:
        forward.wait_line(f"Forwarding from 127.0.0.1:{local} -> {web_pod}")
        for _ in range(3):  # each request is a new connection: a new pair of streams
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/index.html", timeout=10) as resp:
                assert resp.read() == b"hello from the pod\n"
        forward.wait_line(f"Handling connection for {local}")
    finally:
        forward.stop()


def test_port_forward_service(cluster, web_pod):
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}))
    local = free_port()
    forward = Background([KUBECTL, "port-forward", "svc/web", f"{local}:80"], cluster.env)
    try:
        forward.wait_line(f"Forwarding from 127.0.0.1:{local} -> {web_pod}")
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10) as resp:
            assert resp.read() == b"hello from the pod\n"
    finally:
        forward.stop()


def test_port_forward_to_a_closed_port(cluster, web_pod):
    closed, local = free_port(), free_port()
    forward = Background([KUBECTL, "port-forward", "pod/web", f"{local}:{closed}"], cluster.env)
    try:
        forward.wait_line(f"Forwarding from 127.0.0.1:{local}")
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=10).read()
        line = forward.wait_line("error")
        assert f"an error occurred forwarding {local} -> {closed}: error forwarding port {closed} to pod " in line
        assert "connect: connection refused" in line
    finally:
        forward.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="setns(2) into another network namespace needs root")
async def test_port_forward_connects_inside_the_pod_network_namespace():
    """A server listening on 127.0.0.1 in its own netns is reached the way the kubelet does it."""
    from pocketkube.node.streaming import connect_in_netns

    port = 18080
    server = await asyncio.create_subprocess_exec(
        "unshare", "--net", "sh", "-c",
        f"ip link set lo up && exec {sys.executable} -c \"import socket; s = socket.socket(); "
        f"s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', {port})); s.listen(); "
        f"print('up', flush=True)\nwhile True: c, _ = s.accept(); c.sendall(b'inside'); c.close()\"",
        stdout=asyncio.subprocess.PIPE, start_new_session=True)
    try:
        assert await asyncio.wait_for(server.stdout.readline(), 10) == b"up\n"
        sock = await connect_in_netns(f"/proc/{server.pid}/ns/net", port)
        reader, writer = await asyncio.open_connection(sock=sock)
        assert await reader.read() == b"inside"
        writer.close()
        with pytest.raises(OSError, match="connection refused"):
            await connect_in_netns(f"/proc/{server.pid}/ns/net", port + 1)
    finally:
        if server.returncode is None:
            os.killpg(server.pid, signal.SIGKILL)
        await server.wait()


# ---- the official Python client: kubernetes.stream over the channel WebSocket protocols ---------

@pytest.fixture(scope="module")
def core_api(cluster):
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=cluster.server.kubeconfig_path)
    yield client.CoreV1Api(api_client)
    api_client.close()


def _final_status(resp) -> dict:
    from kubernetes.stream.ws_client import ERROR_CHANNEL

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        resp.update(timeout=1)
        line = resp.read_channel(ERROR_CHANNEL)
        if line:
            return json.loads(line)
    raise AssertionError("no Status on the error channel")


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_python_client_exec_with_stdin(cluster, sleeper, core_api, binary):
    """The upstream e2e test's interactive shell: text frames (str) or binary frames (bytes) on stdin."""
    from kubernetes.stream import stream

    as_sent = (lambda text: text.encode()) if binary else (lambda text: text)
    resp = stream(core_api.connect_post_namespaced_pod_exec, sleeper, "default", command=["/bin/sh"],
                  stderr=True, stdin=True, stdout=True, tty=False, binary=binary, _preload_content=False)
    resp.write_stdin(as_sent("echo test string 1\n"))
    assert resp.readline_stdout(timeout=5) == as_sent("test string 1")
    assert not resp.peek_stderr()
    resp.write_stdin(as_sent("echo test string 2 >&2\n"))
    assert resp.readline_stderr(timeout=5) == as_sent("test string 2")
    resp.write_stdin(as_sent("exit\n"))
    assert _final_status(resp)["status"] == "Success"
    resp.update(timeout=5)
    assert not resp.is_open()


def test_agent_serves_the_node_log_directory(cluster, tmp_path):
    """The agent's /logs/ (what nodes/NAME/proxy/logs/ reaches): listings and files, as Go's
    http.FileServer serves a directory; only with the cluster token."""
    (tmp_path / "agent.log").write_text("agent started\n")
    (tmp_path / "0.log").write_text("hello from a container\n")
    cluster.pods.node_log_files = {"agent.log": str(tmp_path / "agent.log"),
                                   "pods/default_web_u1/main/0.log": str(tmp_path / "0.log")}
    base = f"http://127.0.0.1:{cluster.agent.port}/logs/"

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    def get(path: str, token: str | None = cluster.server.token) -> tuple[int, str, str]:
        request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Location") or "", err.read().decode()

    try:
        assert get("") == (200, "text/html; charset=utf-8",
                           '<!doctype html>\n<meta name="viewport" content="width=device-width">\n<pre>\n'
                           '<a href="agent.log">agent.log</a>\n<a href="pods/">pods/</a>\n</pre>\n')
        assert '<a href="main/">main/</a>' in get("pods/default_web_u1/")[2]
        assert get("pods/default_web_u1/main/0.log") == (200, "text/plain; charset=utf-8", "hello from a container\n")
        assert get("pods/default_web_u1")[:2] == (301, "default_web_u1/")
        assert get("nope") == (404, "", "404 page not found\n")
        assert get("", token=None)[0] == 401
    finally:
        cluster.pods.node_log_files = {}


def _ws_exec(cluster, core_api, query: str, protocol: str):
    """A WebSocket exec as older clients open it: their own spelling of the query, their subprotocol."""
    from kubernetes.stream.ws_client import WSClient

    url = (cluster.server.url.replace("https://", "wss://") +
           f"/api/v1/namespaces/default/pods/sleeper/exec?{query}")
    headers = {"authorization": f"Bearer {cluster.server.token}", "sec-websocket-protocol": protocol}
    return WSClient(core_api.api_client.configuration, url, headers, True)


def test_python_client_up_to_v32_spells_booleans_True(cluster, sleeper, core_api):
    """stdin written at once, before the client reads anything, reaches the command.

    The answer is read to the end of the session, not with readline_stdout: that client's
    readline gives "" once it has read the close frame, even with the line already in its buffer,
    so a client scheduled after the command has answered and exited (a busy machine, or this
    test's cluster sharing the process) would lose a line the server did send."""
    from kubernetes.stream.ws_client import ERROR_CHANNEL

    resp = _ws_exec(cluster, core_api, "command=sh&command=-c&command=read+l%3B+echo+got+%24l"
                                       "&stdin=True&stdout=True&stderr=True&tty=False", "v4.channel.k8s.io")
    resp.write_stdin("hello\n")
    resp.run_forever(timeout=30)  # a bound on the wait, not a measure
    assert not resp.is_open()
    assert resp.read_stdout() == "got hello\n"
    assert json.loads(resp.read_channel(ERROR_CHANNEL)) == {"metadata": {}, "status": "Success"}


@pytest.mark.parametrize("protocol", ["channel.k8s.io", "base64.channel.k8s.io", "v4.base64.channel.k8s.io"])
def test_exec_over_the_older_and_base64_channel_protocols(cluster, sleeper, core_api, protocol):
    from kubernetes.stream.ws_client import ERROR_CHANNEL, STDOUT_CHANNEL

    resp = _ws_exec(cluster, core_api, "command=sh&command=-c&command=echo+out%3B+exit+3&stdout=1&stderr=1",
                    protocol)
    assert resp.sock.getheaders()["sec-websocket-protocol"] == protocol
    from websocket import ABNF

    raw, errors_seen = "", ""
    while True:  # the frames as sent: base64 forms carry '0'+channel and base64 text
        op, data = resp.sock.recv_data(control_frame=False)
        if op == ABNF.OPCODE_CLOSE:
            break
        channel = data[0] - (ord("0") if "base64" in protocol else 0)
        payload = base64.b64decode(data[1:]) if "base64" in protocol else data[1:]
        if channel == STDOUT_CHANNEL:
            raw += payload.decode()
        elif channel == ERROR_CHANNEL:
            errors_seen += payload.decode()
    assert raw == "out\n"
    if protocol.startswith("v4."):
        assert json.loads(errors_seen)["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    else:  # before v4 the error channel carries the message alone
        assert errors_seen.startswith("command terminated with non-zero exit code: command ")
        assert errors_seen.endswith(" exited with 3")


def test_python_client_port_forward(cluster, web_pod, core_api):
    """Two ports on one WebSocket: the HTTP server answers, the closed port reports its error."""
    from kubernetes.stream import portforward

    closed = free_port()
    pf = portforward(core_api.connect_get_namespaced_pod_portforward, "web", "default",
                     ports=f"{web_pod},{closed}")
    assert pf.connected
    refused = pf.socket(closed)
    refused.setblocking(True)
    assert refused.recv(1024) == b""
    assert f"error forwarding port {closed} to pod " in pf.error(closed)
    assert "connection refused" in pf.error(closed)
    sock = pf.socket(web_pod)
    sock.setblocking(True)
    sock.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"hello from the pod\n")
    sock.close()
    wait_for(lambda: not pf.connected, "the port-forward connection to end")
    assert pf.error(web_pod) is None


def test_port_forward_ports_are_read_as_the_api_server_does(cluster, web_pod):
    """PodPortForwardOptions.ports is a list of uint16, or the request is a 400 before any upgrade."""
    import ssl

    ctx = ssl.create_default_context(cafile=os.path.join(cluster.data_dir, "pki", "ca.crt"))
    req = urllib.request.Request(cluster.server.url + "/api/v1/namespaces/default/pods/web/portforward?ports=80,x",
                                 headers={"Authorization": f"Bearer {cluster.server.token}"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, context=ctx, timeout=10)
    assert exc.value.code == 400
    assert json.loads(exc.value.read())["message"] == \
        'cannot convert to []int32: strconv.ParseUint: parsing "x": invalid syntax'
