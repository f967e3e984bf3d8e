"""The pod worker as a state machine over a fake runtime: tables of events (a container exits,
time passes, a probe answers, the pod is terminated, the agent restarts) and the pod status
the worker reports after each, the way the proxy is tested over its fake runner. The real
runtime is tested for real in tests/e2e/test_pods_runtime.py.

Each step is driven by hand: `step()` runs one reconcile pass under the worker's lock (what
the worker's task does when woken) and returns the status snapshot it reports.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from pocketkube.node import probes, runtime
from pocketkube.node.podworker import NodeContext, PodWorker
from pocketkube.node.runtime import GracePeriod

UID = "uid-1"


class FakeSandbox:
    def __init__(self, uid: str, ip: str):
        self.uid = uid
        self.ip = ip
        self.holder_pid = 4242
        self.living = True

    def alive(self) -> bool:
        return self.living


class FakeContainer:
    """A container 'process': it runs until the test makes it exit (or it is stopped)."""

    pids = itertools.count(100)

    def __init__(self, request, ignores_sigterm: bool = False):
        self.pid = next(self.pids)
        self.record = runtime.ContainerRecord(
            name=request.name, container_id=request.container_id, pid=self.pid, start_ticks=1, cgroup=None,
            log_path=request.log_path, started_at="2026-01-01T00:00:00Z", restart_count=request.restart_count)
        self.running = True
        self.exit_known = False
        self.exit_code: int | None = None
        self.finished_at: str | None = None
        self.on_exit = None
        self.ignores_sigterm = ignores_sigterm
        self.stopped_with: list[float] = []
        self.detached = False

    def exit(self, code: int | None) -> None:
        self.running = False
        self.exit_known = code is not None
        self.exit_code = code
        self.finished_at = "2026-01-01T00:01:00Z"
        if self.on_exit is not None:
            self.on_exit(self)

    async def stop(self, grace: float | GracePeriod) -> None:
        grace_seconds = grace.left() if isinstance(grace, GracePeriod) else grace
        self.stopped_with.append(grace_seconds)
        if self.running:
            self.exit(137 if self.ignores_sigterm or grace_seconds <= 0 else 0)

    def detach(self) -> None:
        self.detached = True


class FakeRuntime:
    """podruntime.PodRuntime in memory: what ran, what was asked, scripted handler answers."""

    capabilities = 0

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.containers: list[FakeContainer] = []
        self.calls: list[str] = []
        self.handlers: dict[tuple[str, str], list[bool]] = {}  # (container, handler kind) -> answers
        self.fail_start: dict[str, str] = {}  # container -> StartError message
        self.ignores_sigterm: set[str] = set()
        self.ended: list[str] = []
        self.requests: list = []

    def pod_dir(self, uid: str) -> str:
        return str(self.tmp_path / "pods" / uid)

    async def create_sandbox(self, pod: dict) -> FakeSandbox:
        uid = pod["metadata"]["uid"]
        self.calls.append("create sandbox")
        self.sandboxes[uid] = FakeSandbox(uid, "10.244.1.7")
        return self.sandboxes[uid]

    async def destroy_sandbox(self, sandbox: FakeSandbox, keep_pod_files: bool = False) -> None:
        self.calls.append("destroy sandbox")
        sandbox.living = False

    def find_sandbox(self, uid: str):
        return self.sandboxes.get(uid)

    def pods(self) -> list[str]:
        return sorted(self.sandboxes)

    def retain(self, uids: set[str]) -> None:
        pass

    async def forget_sandbox(self, uid: str, sandbox) -> None:
        self.calls.append("forget sandbox")

    async def start_container(self, pod: dict, sandbox: FakeSandbox, request) -> FakeContainer:
        self.calls.append(f"start {request.name}")
        self.requests.append(request)
        if request.name in self.fail_start:
            raise runtime.StartError(self.fail_start[request.name])
        container = FakeContainer(request, request.name in self.ignores_sigterm)
        self.containers.append(container)
        return container

    def adopt_container(self, record: dict):
        found = [c for c in self.containers if c.pid == record["pid"] and c.running]
        return found[0] if found else None

    def kill_container(self, record: dict) -> None:
        self.calls.append(f"kill {record['name']}")

    def kill_sandbox(self, sandbox) -> None:
        self.calls.append("kill sandbox")

    async def container_ended(self, container: FakeContainer) -> None:
        self.ended.append(container.record.container_id)

    async def remove_pod(self, uid: str) -> None:
        self.calls.append("remove pod")

    async def run_handler(self, pod, pod_ip, container, spec, working_dir, env, security, handler, timeout):
        kind = next(k for k in ("exec", "httpGet", "tcpSocket", "sleep") if k in handler)
        self.calls.append(f"{kind} {spec['name']}")
        answers = self.handlers.get((spec["name"], kind)) or [True]
        ok = answers.pop(0) if len(answers) > 1 else answers[0]
        return runtime.ProbeResult(ok, "" if ok else "HTTP probe failed with statuscode: 500")

    def exec_argv(self, container, working_dir, env, security, argv, tty=False):
        return list(argv)

    async def close(self) -> None:
        pass


class FakeEnv:
    def __init__(self):
        self.renew_at: float | None = None
        self.volume_writes = 0

    async def container_env(self, pod, container, pod_ip=None):
        return {}

    async def volume_files(self, pod, volume):
        self.volume_writes += 1
        return {"token": f"token-{self.volume_writes}".encode()}

    def token_renew_at(self, uid):
        return self.renew_at

    def forget_pod(self, uid):
        pass


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_pod(containers, *, policy="Always", init=(), **spec) -> dict:
    return {"metadata": {"name": "web", "namespace": "default", "uid": UID},
            "spec": {"restartPolicy": policy, "containers": list(containers), "initContainers": list(init), **spec}}


def busybox(name: str, **extra) -> dict:
    return {"name": name, "image": "busybox", "command": ["sleep", "3600"], **extra}


class Harness:
    def __init__(self, tmp_path, pod: dict, fake: FakeRuntime | None = None):
        self.events: list[tuple[str, str]] = []
        self.fake = fake or FakeRuntime(tmp_path)
        self.env = FakeEnv()
        self.clock = Clock()
        cache = tmp_path / "images"
        cache.mkdir(exist_ok=True)
        self.node = NodeContext(node_ip="172.18.0.2", cluster_domain="cluster.local", state_dir=str(tmp_path),
                                cache_dir=str(cache), on_event=lambda pod, t, reason, msg: self.events.append((reason, msg)),
                                changed=lambda worker: worker.refresh_status())
        self.worker = PodWorker(UID, self.node, self.fake)
        self.worker.clock = self.clock
        self.worker.reported = True
        self.worker.set_spec(pod, self.env)

    async def step(self) -> dict:
        async with self.worker.lock:
            await self.worker.reconcile()
        return self.worker.refresh_status()

    def running(self, name: str) -> FakeContainer:
        return [c for c in self.fake.containers if c.record.name == name and c.running][-1]


def summary(status: dict, name: str = "c") -> tuple:
    """(phase, the container's state[: reason], restartCount, ready)"""
    cs = next(c for c in status.get("containerStatuses", []) + status.get("initContainerStatuses", [])
              if c["name"] == name)
    (state, detail), = cs["state"].items()
    return status["phase"], f"{state}: {detail['reason']}" if detail.get("reason") else state, cs["restartCount"], \
        cs["ready"]


# ---- restart policies --------------------------------------------------------------------------

@pytest.mark.parametrize("policy, exits, expected", [
    # policy, exit codes in turn, (phase, state, restarts, ready) after each exit
    ("Always", [0], [("Running", "running", 1, True)]),
    ("Always", [1, 1], [("Running", "running", 1, True), ("Running", "waiting: CrashLoopBackOff", 1, False)]),
    ("OnFailure", [1], [("Running", "running", 1, True)]),
    ("OnFailure", [0], [("Succeeded", "terminated: Completed", 0, False)]),
    ("Never", [1], [("Failed", "terminated: Error", 0, False)]),
    ("Never", [0], [("Succeeded", "terminated: Completed", 0, False)]),
    ("Always", [None], [("Running", "running", 1, True)]),  # lost: ContainerStatusUnknown, started again
])
async def test_restart_policy(tmp_path, policy, exits, expected):
    h = Harness(tmp_path, make_pod([busybox("c")], policy=policy))
    assert summary(await h.step()) == ("Running", "running", 0, True)
    for code, want in zip(exits, expected):
        h.running("c").exit(code)
        assert summary(await h.step()) == want
    if expected[-1][0] in ("Succeeded", "Failed"):
        assert h.fake.calls[-2:] == ["destroy sandbox", "remove pod"]  # the pod ended: its sandbox goes


async def test_crash_loop_back_off_then_a_restart_once_it_has_passed(tmp_path):
    h = Harness(tmp_path, make_pod([busybox("c")]))
    await h.step()
    h.running("c").exit(1)
    await h.step()                        # first restart: no back-off yet
    h.running("c").exit(1)
    status = await h.step()
    waiting = status["containerStatuses"][0]["state"]["waiting"]
    assert waiting == {"reason": "CrashLoopBackOff",
                       "message": f"back-off 10s restarting failed container=c pod=web_default({UID})"}
    assert status["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 1
    assert ("BackOff", f"Back-off restarting failed container c in pod web_default({UID})") in h.events
    h.clock.now += 9
    assert summary(await h.step())[1] == "waiting: CrashLoopBackOff"
    h.clock.now += 1
    assert summary(await h.step()) == ("Running", "running", 2, True)
    h.running("c").exit(1)
    await h.step()
    h.clock.now += 10                     # the back-off doubled: 20 s now
    status = await h.step()
    assert status["containerStatuses"][0]["state"]["waiting"]["message"].startswith("back-off 20s ")


async def test_an_exit_is_collected_once_under_the_lock_and_the_snapshot_is_pure(tmp_path):
    h = Harness(tmp_path, make_pod([busybox("c")], policy="Never"))
    await h.step()
    h.running("c").exit(3)
    before = h.worker.refresh_status()    # not collected yet: the snapshot does not collect it
    assert summary(before) == ("Running", "running", 0, True)
    assert h.fake.ended == []
    assert summary(await h.step()) == ("Failed", "terminated: Error", 0, False)
    await h.step()
    assert len(h.fake.ended) == 1


async def test_a_start_error_counts_as_an_exit_with_code_128(tmp_path):
    h = Harness(tmp_path, make_pod([busybox("c")], policy="Never"))
    h.fake.fail_start["c"] = 'exec: "sleep": executable file not found in $PATH'
    status = await h.step()
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert (status["phase"], terminated["reason"], terminated["exitCode"]) == ("Failed", "StartError", 128)
    assert ("Failed", 'Error: exec: "sleep": executable file not found in $PATH') in h.events


@pytest.mark.parametrize("spec, host_pid", [({}, False), ({"hostPID": True}, True)])
async def test_the_request_carries_what_the_runtime_needs(tmp_path, spec, host_pid):
    mounts = [{"name": "data", "mountPath": "/data"}, {"name": "conf", "mountPath": "/etc/app", "readOnly": True}]
    h = Harness(tmp_path, make_pod([busybox("c", volumeMounts=mounts)], volumes=[
        {"name": "data", "emptyDir": {}}, {"name": "conf", "emptyDir": {}}], **spec))
    await h.step()
    request, = h.fake.requests
    assert (request.name, request.instance, request.restart_count, request.host_pid) == ("c", 0, 0, host_pid)
    assert request.writable == ["/data"]
    assert {m["target"]: m["readonly"] for m in request.mounts if m["target"] in ("/data", "/etc/app")} == \
        {"/data": False, "/etc/app": True}
    assert request.log_path.endswith(f"pod-logs/{UID}_c_0.log")


# ---- init containers ---------------------------------------------------------------------------

@pytest.mark.parametrize("policy, init_exit, expected_app, expected_phase", [
    ("Always", 0, "running", "Running"),
    ("Never", 1, "waiting: PodInitializing", "Failed"),
    ("OnFailure", 1, "waiting: PodInitializing", "Pending"),  # the init container is retried
])
async def test_init_containers_run_first_each_to_success(tmp_path, policy, init_exit, expected_app, expected_phase):
    h = Harness(tmp_path, make_pod([busybox("c")], policy=policy, init=[busybox("setup")]))
    status = await h.step()
    assert summary(status, "setup") == ("Pending", "running", 0, False)
    assert summary(status, "c") == ("Pending", "waiting: PodInitializing", 0, False)
    initialized = next(c for c in status["conditions"] if c["type"] == "Initialized")
    assert initialized["message"] == "containers with incomplete status: [setup]"
    h.running("setup").exit(init_exit)
    status = await h.step()
    assert summary(status, "c")[1] == expected_app
    assert status["phase"] == expected_phase
    assert h.fake.calls.count("start c") == (1 if init_exit == 0 else 0)


# ---- probes ------------------------------------------------------------------------------------

async def eventually(check, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not true in time"
        await asyncio.sleep(0.01)


async def test_readiness_follows_its_probe(tmp_path, monkeypatch):
    monkeypatch.setattr(probes, "PROBE_WARMUP_SECONDS", 0.0)
    probe = {"httpGet": {"port": 80}, "periodSeconds": 1, "failureThreshold": 1}
    h = Harness(tmp_path, make_pod([busybox("c", readinessProbe=probe)]))
    h.fake.handlers[("c", "httpGet")] = [True, False]
    assert summary(await h.step()) == ("Running", "running", 0, False)  # not ready before its probe says so
    await eventually(lambda: h.worker.snapshot["containerStatuses"][0]["ready"])
    await eventually(lambda: not h.worker.snapshot["containerStatuses"][0]["ready"])
    assert ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 500") in h.events
    await h.worker.end_tasks()


async def test_a_failed_liveness_probe_restarts_the_container_with_the_probes_grace(tmp_path, monkeypatch):
    monkeypatch.setattr(probes, "PROBE_WARMUP_SECONDS", 0.0)
    probe = {"tcpSocket": {"port": 80}, "failureThreshold": 1, "terminationGracePeriodSeconds": 7}
    h = Harness(tmp_path, make_pod([busybox("c", livenessProbe=probe)]))
    h.fake.handlers[("c", "tcpSocket")] = [False]
    await h.step()
    first = h.running("c")
    await eventually(lambda: not first.running)
    assert first.stopped_with == [7]
    assert ("Killing", "Container c failed liveness probe, will be restarted") in h.events
    assert summary(await h.step()) == ("Running", "running", 1, True)
    await h.worker.end_tasks()


async def test_a_startup_probe_holds_started_and_ready(tmp_path, monkeypatch):
    monkeypatch.setattr(probes, "PROBE_WARMUP_SECONDS", 0.0)
    h = Harness(tmp_path, make_pod([busybox("c", startupProbe={"exec": {"command": ["true"]}})]))
    status = await h.step()
    assert (status["containerStatuses"][0]["started"], status["containerStatuses"][0]["ready"]) == (False, False)
    await eventually(lambda: h.worker.snapshot["containerStatuses"][0]["started"])
    await eventually(lambda: h.worker.snapshot["containerStatuses"][0]["ready"])
    await h.worker.end_tasks()


# ---- termination -------------------------------------------------------------------------------

@pytest.mark.parametrize("grace, pre_stop, stopped_with", [
    (30, False, 30),
    (1, False, 2),       # the kubelet's minimum grace period
    (0, False, 0),       # force: SIGKILL at once
    (30, True, 30),      # preStop runs first, inside the grace period
])
async def test_termination_grace(tmp_path, grace, pre_stop, stopped_with):
    lifecycle = {"lifecycle": {"preStop": {"exec": {"command": ["nginx", "-s", "quit"]}}}} if pre_stop else {}
    h = Harness(tmp_path, make_pod([busybox("c", **lifecycle)]))
    await h.step()
    container = h.running("c")
    await h.worker.terminate(grace)
    assert container.stopped_with and container.stopped_with[0] == pytest.approx(stopped_with, abs=1)
    assert ("exec c" in h.fake.calls) is (pre_stop and grace > 0)
    assert ("Killing", "Stopping container c") in h.events
    assert h.fake.calls[-2:] == ["destroy sandbox", "remove pod"]
    assert not (tmp_path / "pods" / UID).exists()


async def test_a_grace_period_is_cut_never_lengthened():
    """GracePeriod: a second, shorter grace period wakes the stop that waits; a longer one is
    refused (the kubelet keeps the shorter)."""
    period, exited = GracePeriod(600), asyncio.Event()
    waiting = asyncio.create_task(period.wait_for(exited))
    await asyncio.sleep(0.01)
    assert not period.shorten(900) and period.left() > 590
    assert period.shorten(0) and period.left() == 0
    await asyncio.wait_for(waiting, 5)
    # a process that exits in time ends the wait before its deadline
    period, exited = GracePeriod(600), asyncio.Event()
    waiting = asyncio.create_task(period.wait_for(exited))
    exited.set()
    await asyncio.wait_for(waiting, 5)
    assert period.left() > 590


# ---- adoption after an agent restart -----------------------------------------------------------

async def test_a_restarted_agent_adopts_what_runs_and_reports_what_ended_meanwhile(tmp_path):
    pod = make_pod([busybox("c"), busybox("d")], policy="OnFailure")
    first = Harness(tmp_path, pod)
    await first.step()
    first.running("c").exit(1)
    await first.step()                                       # c restarted once
    await first.worker.detach()                               # the agent stops; the pod runs on
    c_id = first.running("c").record.container_id
    first.running("d").running = False                        # d dies while no agent watches
    second = Harness(tmp_path, pod, fake=first.fake)
    adopted = await PodWorker.adopt(UID, second.node, first.fake)
    assert adopted is not None and adopted.sandbox is first.fake.sandboxes[UID]
    second.worker = adopted
    adopted.clock = second.clock
    adopted.set_spec(pod, second.env)
    c, d = adopted.slots
    assert (c.process.record.container_id, c.restart_count) == (c_id, 1)   # watched again, count kept
    assert d.terminated["reason"] == "ContainerStatusUnknown" and d.terminated["exitCode"] == 137
    status = await second.step()
    assert summary(status, "c") == ("Running", "running", 1, True)
    assert summary(status, "d") == ("Running", "running", 1, True)         # OnFailure: 137 is restarted


async def test_a_pod_whose_sandbox_died_while_the_agent_was_down_is_cleaned(tmp_path):
    pod = make_pod([busybox("c")])
    first = Harness(tmp_path, pod)
    await first.step()
    await first.worker.detach()
    first.fake.sandboxes[UID].living = False
    adopted = await PodWorker.adopt(UID, first.node, first.fake)
    assert adopted.sandbox is None
    assert first.fake.calls[-3:] == ["kill c", "kill sandbox", "forget sandbox"]


# ---- service-account tokens --------------------------------------------------------------------

async def test_token_volumes_are_written_again_when_their_token_is_due(tmp_path):
    volume = {"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
    pod = make_pod([busybox("c", volumeMounts=[{"name": "kube-api-access", "mountPath": "/var/run/secrets"}])],
                   volumes=[volume])
    h = Harness(tmp_path, pod)
    h.env.renew_at = h.clock.now + 100
    await h.step()
    assert h.env.volume_writes == 1
    await h.step()
    assert h.env.volume_writes == 1                           # not due yet
    h.clock.now += 100
    await h.step()
    assert h.env.volume_writes == 2
    token = tmp_path / "pods" / UID / "volumes" / "kube-api-access" / "token"
    assert token.read_bytes() == b"token-2"
