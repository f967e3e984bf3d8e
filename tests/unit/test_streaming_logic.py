"""The pure parts of streaming: which container a request means, why logs cannot be read,
terminal sizes, exit Statuses; and exec sessions run for real against a recording client."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pocketkube.apiserver import streaming as api
from pocketkube.core import errors
from pocketkube.node import streaming as node


def pod(containers=("c",), init=(), statuses=None, name="p") -> dict:
    spec = {"containers": [{"name": n} for n in containers]}
    if init:
        spec["initContainers"] = [{"name": n} for n in init]
    return {"metadata": {"name": name}, "spec": spec, "status": {"containerStatuses": statuses or []}}


@pytest.mark.parametrize("the_pod, requested, expected", [
    (pod(), "", "c"),
    (pod(("a", "b")), "b", "b"),
    (pod(("a",), init=("setup",)), "setup", "setup"),
])
def test_resolve_container(the_pod, requested, expected):
    assert api.resolve_container(the_pod, requested) == expected


@pytest.mark.parametrize("the_pod, requested, message", [
    (pod(), "x", "container x is not valid for pod p"),
    (pod(("a", "b"), init=("setup",)), "",
     "a container name must be specified for pod p, choose one of: [setup a b]"),
])
def test_resolve_container_errors(the_pod, requested, message):
    with pytest.raises(errors.APIError) as exc:
        api.resolve_container(the_pod, requested)
    assert (exc.value.code, exc.value.reason, exc.value.message) == (400, "BadRequest", message)


RUNNING = {"name": "c", "state": {"running": {}}, "lastState": {}}
RESTARTED = {"name": "c", "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1}}}


def waiting(reason):
    return {"name": "c", "state": {"waiting": {"reason": reason}}, "lastState": {}}


@pytest.mark.parametrize("statuses, previous, message", [
    ([RUNNING], False, None),
    ([RESTARTED], True, None),
    ([{"name": "c", "state": {"terminated": {"exitCode": 0}}}], False, None),
    ([RUNNING], True, 'previous terminated container "c" in pod "p" not found'),
    ([], False, 'container "c" in pod "p" is waiting to start: ContainerCreating'),
    ([waiting("ContainerCreating")], False, 'container "c" in pod "p" is waiting to start: ContainerCreating'),
    ([waiting("ErrImagePull")], False, 'container "c" in pod "p" is waiting to start: image can\'t be pulled'),
    ([waiting("ImagePullBackOff")], False,
     'container "c" in pod "p" is waiting to start: trying and failing to pull image'),
    ([dict(waiting("CrashLoopBackOff"), lastState={"terminated": {"exitCode": 2}})], False, None),
])
def test_log_status_error(statuses, previous, message):
    assert api.log_status_error(pod(statuses=statuses), "c", previous) == message


def test_since_seconds():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert api.since_seconds({"sinceSeconds": "30"}, now) == "30"
    assert api.since_seconds({"sinceTime": "2025-01-01T11:59:00Z"}, now) == "60"
    assert api.since_seconds({"sinceTime": "2025-01-01T13:00:00Z"}, now) == "1"  # the future: everything new
    assert api.since_seconds({}, now) is None
    with pytest.raises(errors.APIError):
        api.since_seconds({"sinceTime": "yesterday"}, now)


def test_resize_decoder_handles_split_and_joined_messages():
    d = node.ResizeDecoder()
    assert d.feed(b'{"Width":80,') == []
    assert d.feed(b'"Height":24}\n{"Width":100,"Height":30}\n') == [(80, 24), (100, 30)]
    assert d.feed(b"  \n") == []


def test_exit_status():
    assert node.exit_status(0, ["true"]) == {"metadata": {}, "status": "Success"}
    failed = node.exit_status(3, ["sh", "-c", "exit 3"])
    assert failed["status"] == "Failure" and failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


class Recorder(node.Channels):
    """A client that sends given stdin and sizes, and records output and the Status."""

    def __init__(self, stdin: list[bytes] = (), sizes: list[tuple[int, int]] = ()):
        super().__init__()
        for chunk in stdin:
            self.stdin.put_nowait(chunk)
        self.stdin.put_nowait(None)
        for size in sizes:
            self.resizes.put_nowait(size)
        self.out: dict[int, bytes] = {1: b"", 2: b""}

    async def send(self, channel: int, data: bytes) -> None:
        self.out[channel] += data

    async def finish(self, status: dict) -> None:
        self.status = status


async def test_exec_pipes_keeps_streams_apart_and_reports_the_exit_code():
    client = Recorder(stdin=[b"abc\n"])
    status = await node.run_exec(["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 5"], client,
                                 stdin=True, stdout=True, stderr=True, tty=False)
    assert client.out == {1: b"ABC\n", 2: b"oops\n"}
    assert status["details"]["causes"][0]["message"] == "5"


async def test_exec_tty_merges_output_and_applies_the_size():
    client = Recorder(sizes=[(132, 43)])
    status = await node.run_exec(["sh", "-c", "stty size; echo err >&2"], client,
                                 stdin=False, stdout=True, stderr=False, tty=True)
    assert status["status"] == "Success"
    assert client.out[1].replace(b"\r\n", b"\n") == b"43 132\nerr\n"


async def test_exec_of_a_missing_program_is_an_internal_error():
    status = await node.run_exec(["/nonexistent/program"], Recorder(), stdin=False, stdout=True, stderr=True,
                                 tty=False)
    assert status["status"] == "Failure" and status["code"] == 500


async def test_exec_is_killed_when_the_client_goes_away():
    client = Recorder()
    client.gone.set()
    status = await node.run_exec(["sleep", "60"], client, stdin=False, stdout=True, stderr=True, tty=False)
    assert status["details"]["causes"][0]["message"] == "137"  # SIGKILL, as runc reports it
