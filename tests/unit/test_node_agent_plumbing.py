"""The node agent's plumbing, without a cluster: the netlink messages (netlink.py), the
service account token cache (env.py) and the process supervisor's restarts
(cli/supervisor.py, with real short-lived processes)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import struct
import subprocess
import sys
import time

import pytest

from pocketkube.cli import supervisor
from pocketkube.node import env as node_env
from pocketkube.node import netlink

# ---- netlink ---------------------------------------------------------------------------------


def test_attributes_are_padded_to_four_bytes_and_nested_ones_flagged():
    a = netlink.attr(3, b"eth0\0")
    assert struct.unpack_from("=HH", a) == (9, 3) and len(a) == 12 and a[9:] == b"\0\0\0"
    n = netlink.nested(18, a)
    assert struct.unpack_from("=HH", n) == (4 + 12, 18 | netlink.NLA_F_NESTED)


class FakeSocket:
    """Answers each request with an NLMSG_ERROR carrying `code` (0 = ACK)."""

    def __init__(self, code: int = 0):
        self.code = code
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def recv(self, size: int) -> bytes:
        _, _, _, seq, _ = struct.unpack_from("=IHHII", self.sent[-1])
        body = struct.pack("=i", self.code) + self.sent[-1][:16]
        return struct.pack("=IHHII", 16 + len(body), netlink.NLMSG_ERROR, 0, seq, 0) + body


def fake_netlink(code: int = 0) -> netlink.Netlink:
    nl = netlink.Netlink.__new__(netlink.Netlink)
    nl.sock, nl.seq = FakeSocket(code), 0
    return nl


def parse_attrs(data: bytes) -> dict[int, bytes]:
    attrs, offset = {}, 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        attrs[kind & ~netlink.NLA_F_NESTED] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return attrs


def test_a_veth_is_created_up_on_its_bridge_with_its_peer_in_the_pods_namespace():
    nl = fake_netlink()
    nl.add_veth("veth1234abcd", "eth0", 4242, master=7)
    msg = nl.sock.sent[0]
    length, kind, flags, _, _ = struct.unpack_from("=IHHII", msg)
    assert length == len(msg) and kind == netlink.RTM_NEWLINK
    assert flags & (netlink.NLM_F_CREATE | netlink.NLM_F_EXCL | netlink.NLM_F_ACK) == \
        netlink.NLM_F_CREATE | netlink.NLM_F_EXCL | netlink.NLM_F_ACK
    _, _, _, ifi_flags, ifi_change = struct.unpack_from("=BxHiII", msg, 16)
    assert ifi_flags & netlink.IFF_UP and ifi_change & netlink.IFF_UP
    attrs = parse_attrs(msg[32:])
    assert attrs[netlink.IFLA_IFNAME] == b"veth1234abcd\0"
    assert struct.unpack("=I", attrs[netlink.IFLA_MASTER]) == (7,)
    info = parse_attrs(attrs[netlink.IFLA_LINKINFO])
    assert info[netlink.IFLA_INFO_KIND] == b"veth\0"
    peer = parse_attrs(parse_attrs(info[netlink.IFLA_INFO_DATA])[netlink.VETH_INFO_PEER][16:])
    assert peer[netlink.IFLA_IFNAME] == b"eth0\0"
    assert struct.unpack("=I", peer[netlink.IFLA_NET_NS_PID]) == (4242,)


def test_a_veths_peer_can_be_placed_by_an_open_namespace_file():
    """The holder's init names the pod's namespace by its open /proc/self/ns/net."""
    nl = fake_netlink()
    nl.add_veth("veth1234abcd", "eth0", peer_netns_fd=9, master=7)
    info = parse_attrs(parse_attrs(nl.sock.sent[0][32:])[netlink.IFLA_LINKINFO])
    peer = parse_attrs(parse_attrs(info[netlink.IFLA_INFO_DATA])[netlink.VETH_INFO_PEER][16:])
    assert struct.unpack("=I", peer[netlink.IFLA_NET_NS_FD]) == (9,) and netlink.IFLA_NET_NS_PID not in peer


def test_the_kernels_refusal_is_an_oserror_with_its_errno():
    with pytest.raises(netlink.NetlinkError) as info:
        fake_netlink(-errno.EEXIST).add_address(3, "10.244.1.5", 24)
    assert info.value.errno == errno.EEXIST and "add address 10.244.1.5/24" in str(info.value)


def test_deleting_a_link_that_is_gone_is_not_an_error():
    assert fake_netlink(-errno.ENODEV).delete_link("veth00000000") is False
    assert fake_netlink(0).delete_link("veth00000000") is True


# ---- service account tokens ------------------------------------------------------------------------


class TokenClient:
    def __init__(self, fail: bool = False):
        self.requests: list[dict] = []
        self.fail = fail

    async def create(self, api_version, resource, body, namespace=None, name=None, subresource=None):
        assert (resource, subresource) == ("serviceaccounts", "token")
        self.requests.append({"namespace": namespace, "name": name, **body["spec"]})
        await asyncio.sleep(0.01)
        if self.fail:
            raise RuntimeError("the API server is not there")
        return {"status": {"token": f"token-{len(self.requests)}"}}


def pod(name: str, sa: str = "default", namespace: str = "default") -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "uid": "uid-" + name},
            "spec": {"serviceAccountName": sa}}


async def test_each_pod_gets_its_own_token_bound_to_it_and_its_containers_share_it():
    client = TokenClient()
    resolver = node_env.EnvResolver(client, services=None)
    src = {"path": "token", "expirationSeconds": 3607}
    files = await asyncio.gather(*(resolver._token_file(pod("p0"), src) for _ in range(5)))
    assert files == [{"token": b"token-1"}] * 5  # one pod's containers: one request
    assert client.requests == [{"namespace": "default", "name": "default", "audiences": [], "expirationSeconds": 3607,
                                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p0", "uid": "uid-p0"}}]
    assert await resolver._token_file(pod("p1"), src) == {"token": b"token-2"}  # another pod: its own
    await resolver._token_file(pod("other", sa="builder"), src)
    await resolver._token_file(pod("aud"), {**src, "audience": "vault"})
    assert [(r["name"], r["audiences"]) for r in client.requests[2:]] == [("builder", []), ("default", ["vault"])]


async def test_a_token_is_renewed_after_most_of_its_lifetime(monkeypatch):
    client = TokenClient()
    resolver = node_env.EnvResolver(client, services=None)
    src = {"path": "token", "expirationSeconds": 3607}
    assert await resolver._token_file(pod("a"), src) == {"token": b"token-1"}
    assert await resolver._token_file(pod("a"), src) == {"token": b"token-1"}
    monkeypatch.setattr(node_env, "TOKEN_REFRESH_FRACTION", 0.0)  # renewed as soon as it is issued
    assert await resolver._token_file(pod("a"), src) == {"token": b"token-1"}  # still the old deadline
    resolver._tokens.clear()
    assert await resolver._token_file(pod("a"), src) == {"token": b"token-2"}
    assert await resolver._token_file(pod("a"), src) == {"token": b"token-3"}


async def test_a_pods_tokens_say_when_they_are_due_and_go_with_the_pod(monkeypatch):
    client = TokenClient()
    resolver = node_env.EnvResolver(client, services=None)
    assert resolver.token_renew_at("uid-a") is None
    before = time.monotonic()
    await resolver._token_file(pod("a"), {"path": "token", "expirationSeconds": 3600})
    await resolver._token_file(pod("a"), {"path": "vault", "audience": "vault", "expirationSeconds": 1000})
    await resolver._token_file(pod("b"), {"path": "token", "expirationSeconds": 600})
    after = time.monotonic()
    fraction = node_env.TOKEN_REFRESH_FRACTION
    assert before + 1000 * fraction <= resolver.token_renew_at("uid-a") <= after + 1000 * fraction  # the earliest
    resolver.forget_pod("uid-a")
    assert resolver.token_renew_at("uid-a") is None
    assert before + 600 * fraction <= resolver.token_renew_at("uid-b") <= after + 600 * fraction
    assert await resolver._token_file(pod("a"), {"path": "token", "expirationSeconds": 3600}) == {"token": b"token-4"}


async def test_a_failed_token_request_is_not_cached():
    client = TokenClient(fail=True)
    resolver = node_env.EnvResolver(client, services=None)
    src = {"path": "token"}
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await resolver._token_file(pod("a"), src)
    assert len(client.requests) == 2
    client.fail = False
    assert await resolver._token_file(pod("a"), src) == {"token": b"token-3"}


# ---- the process supervisor ---------------------------------------------------------------------


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return result


def test_a_process_that_exits_is_started_again_after_a_growing_back_off(tmp_path):
    child = supervisor.Child({"name": "flaky", "argv": ["sh", "-c", "exit 3"], "log": str(tmp_path / "flaky.log")},
                             str(tmp_path))
    child.start()
    first = child.proc.pid
    assert supervisor.live_pid(str(tmp_path / "flaky.pid")) in (first, None)  # it may be gone already
    wait_for(lambda: child.check(time.monotonic()))
    assert child.proc is None and child.last_exit == "exit code 3" and child.backoff == supervisor.BACKOFF_INITIAL
    assert "flaky exited (exit code 3)" in (tmp_path / "flaky.log").read_text()
    assert not child.check(child.due - 0.01)  # not before its time
    assert child.check(child.due) and child.restarts == 1 and child.proc.pid != first
    wait_for(lambda: child.check(time.monotonic()))
    assert child.backoff == 2 * supervisor.BACKOFF_INITIAL


def test_a_process_starts_in_its_cwd_after_its_stale_files_are_removed(tmp_path):
    """As `up` runs etcd: in the data dir (where it makes its unix socket), the socket a killed
    run left removed before every start."""
    work = tmp_path / "work"
    work.mkdir()
    stale = work / "etcd.sock:0"
    stale.write_text("left by a killed run")
    child = supervisor.Child({"name": "member", "argv": ["sh", "-c", "test ! -e 'etcd.sock:0' && pwd > where"],
                              "log": str(tmp_path / "member.log"), "cwd": str(work), "stale": [str(stale)]},
                             str(tmp_path))
    child.start()
    assert child.proc.wait() == 0
    assert (work / "where").read_text().strip() == str(work)


def test_the_supervisor_restarts_a_killed_process_and_leaves_its_processes_when_told_to_go(tmp_path):
    run_dir = str(tmp_path)
    spec = [{"name": "sleeper", "argv": ["sleep", "60"], "log": str(tmp_path / "sleeper.log"), "netns": None}]
    (tmp_path / supervisor.SPEC_FILE).write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, "-m", "pocketkube.cli.supervisor", run_dir],
                            env={**os.environ, "PYTHONPATH": supervisor.PACKAGE_ROOT})
    started: list[int] = []
    try:
        first = wait_for(lambda: ((supervisor.read_state(run_dir) or {}).get("processes") or {})
                         .get("sleeper", {}).get("pid"))
        started.append(first)
        os.kill(first, signal.SIGKILL)
        state = wait_for(lambda: (s := supervisor.read_state(run_dir)["processes"]["sleeper"])["restarts"] == 1
                         and s["pid"] and s)
        started.append(state["pid"])
        assert state["pid"] != first and state["last_exit"] == "killed by SIGKILL"
        assert supervisor.live_pid(str(tmp_path / "sleeper.pid")) == state["pid"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert supervisor.live_pid(str(tmp_path / "sleeper.pid")) == state["pid"]  # `down` stops it, not us
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
