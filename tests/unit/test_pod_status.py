"""Pure parts of the pod runtime: phase and conditions as the kubelet computes them,
container statuses, crash and image back-off, restart policy, resolv.conf and /etc/hosts,
IPAM, the volume file layout and log reading."""

from __future__ import annotations

import os

import pytest

from pocketkube.node import nsinit, runtime
from pocketkube.node.ipam import Ipam, IpamError
from pocketkube.node.podfiles import hosts_file, pod_hostname, resolv_conf
from pocketkube.node.podstatus import (ContainerView, container_status, crash_backoff_message, generate_pod_status,
                                       go_duration, kubelet_conditions, pod_phase, should_restart,
                                       with_transition_times)
from pocketkube.node.podworker import Backoff
from pocketkube.node.volumes import write_volume_files

T0 = "2024-01-01T00:00:00Z"


def pod(policy="Always", **spec):
    return {"metadata": {"name": "web", "namespace": "shop", "uid": "1234"},
            "spec": {"restartPolicy": policy, **spec}, "status": {}}


def running(name="c", ready=True):
    return ContainerView(name=name, image="i", state="running", started_at=T0, ready=ready, started=True)


def waiting(name="c", reason="ContainerCreating", last_exit=None):
    last = {"exitCode": last_exit, "reason": "Error"} if last_exit is not None else None
    return ContainerView(name=name, image="i", state="waiting", reason=reason, last_terminated=last)


def terminated(name="c", code=0):
    return ContainerView(name=name, image="i", state="terminated", exit_code=code, started_at=T0, finished_at=T0)


# ---- phase -------------------------------------------------------------------------------

@pytest.mark.parametrize("policy, init, containers, phase", [
    ("Always", [], [waiting()], "Pending"),
    ("Always", [], [running()], "Running"),
    ("Always", [], [running("a"), waiting("b")], "Pending"),
    ("Always", [], [waiting(reason="CrashLoopBackOff", last_exit=1)], "Running"),
    ("Always", [], [terminated(code=0)], "Running"),
    ("Never", [], [terminated(code=0)], "Succeeded"),
    ("Never", [], [terminated(code=1)], "Failed"),
    ("Never", [], [terminated("a", 0), terminated("b", 2)], "Failed"),
    ("Never", [], [running("a"), terminated("b", 2)], "Running"),
    ("OnFailure", [], [terminated(code=0)], "Succeeded"),
    ("OnFailure", [], [terminated(code=1)], "Running"),
    ("OnFailure", [], [waiting(reason="CrashLoopBackOff", last_exit=1)], "Running"),
    ("Always", [running("init")], [waiting(reason="PodInitializing")], "Pending"),
    ("Always", [terminated("init", 0)], [running()], "Running"),
    ("Never", [terminated("init", 1)], [waiting(reason="PodInitializing")], "Failed"),
    ("Always", [waiting("init", "CrashLoopBackOff", last_exit=1)], [waiting(reason="PodInitializing")], "Pending"),
    ("Always", [waiting("init", "ErrImagePull")], [waiting(reason="PodInitializing")], "Pending"),
])
def test_pod_phase(policy, init, containers, phase):
    assert pod_phase(pod(policy), init, containers) == phase


# ---- conditions ----------------------------------------------------------------------------

def conditions(p, phase, sandbox, init, views):
    return {c["type"]: c for c in kubelet_conditions(p, phase, sandbox, init, views)}


def test_conditions_of_a_ready_pod():
    conds = kubelet_conditions(pod(), "Running", True, [], [running()])
    assert [c["type"] for c in conds] == ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"]
    assert all(c["status"] == "True" and c["lastProbeTime"] is None for c in conds)


def test_unready_containers_are_named():
    conds = conditions(pod(), "Running", True, [], [running("a", ready=False), running("b"), waiting("c")])
    for kind in ("Ready", "ContainersReady"):
        assert conds[kind]["status"] == "False" and conds[kind]["reason"] == "ContainersNotReady"
        assert conds[kind]["message"] == "containers with unready status: [a c]"


def test_incomplete_init_containers_are_named():
    conds = conditions(pod(), "Pending", True, [terminated("one", 0), running("two"), waiting("three")],
                       [waiting(reason="PodInitializing")])
    assert conds["Initialized"]["status"] == "False"
    assert conds["Initialized"]["reason"] == "ContainersNotInitialized"
    assert conds["Initialized"]["message"] == "containers with incomplete status: [two three]"


def test_completed_pod_is_not_ready_with_reason_pod_completed():
    conds = conditions(pod("Never"), "Succeeded", False, [], [terminated()])
    assert conds["Ready"]["reason"] == "PodCompleted" and conds["ContainersReady"]["reason"] == "PodCompleted"
    assert conds["PodReadyToStartContainers"]["status"] == "False"


def test_readiness_gate_holds_ready_false():
    p = pod(readinessGates=[{"conditionType": "example.com/lb"}])
    conds = conditions(p, "Running", True, [], [running()])
    assert conds["ContainersReady"]["status"] == "True" and conds["Ready"]["status"] == "False"
    assert conds["Ready"]["message"] == 'corresponding condition of pod readiness gate "example.com/lb" does not exist.'
    p["status"]["conditions"] = [{"type": "example.com/lb", "status": "True"}]
    assert conditions(p, "Running", True, [], [running()])["Ready"]["status"] == "True"


def test_transition_times_are_kept_while_the_status_holds():
    before = [{"type": "Ready", "status": "True", "lastTransitionTime": T0},
              {"type": "Initialized", "status": "False", "lastTransitionTime": T0}]
    now = "2024-01-01T00:01:00Z"
    after = with_transition_times([{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}],
                                  before, now)
    assert after[0]["lastTransitionTime"] == T0 and after[1]["lastTransitionTime"] == now


def test_generated_status_keeps_scheduler_conditions_and_qos():
    p = pod()
    p["status"] = {"qosClass": "Burstable", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    status = generate_pod_status(p, init_views=[], views=[running()], sandbox_ready=True, pod_ip="10.244.1.5",
                                 host_ip="172.18.0.2", start_time=T0, terminal_phase=None, previous_conditions=[],
                                 now=T0)
    assert status["phase"] == "Running" and status["qosClass"] == "Burstable"
    assert [c["type"] for c in status["conditions"]][-1] == "PodScheduled"
    assert status["podIPs"] == [{"ip": "10.244.1.5"}] and status["hostIPs"] == [{"ip": "172.18.0.2"}]
    assert status["startTime"] == T0 and "initContainerStatuses" not in status


def test_terminal_phase_is_sticky():
    status = generate_pod_status(pod("Never"), init_views=[], views=[waiting()], sandbox_ready=False, pod_ip=None,
                                 host_ip="h", start_time=T0, terminal_phase="Failed", previous_conditions=[], now=T0)
    assert status["phase"] == "Failed" and "podIP" not in status


# ---- container statuses -----------------------------------------------------------------------

def test_container_status_shapes():
    creating = container_status(waiting())
    assert creating["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert creating["lastState"] == {} and creating["started"] is False and "containerID" not in creating
    run = container_status(ContainerView(name="c", image="docker.io/library/nginx:latest", image_id="x@sha256:1",
                                         container_id="pocketkube://ab", state="running", started_at=T0,
                                         ready=True, started=True, restart_count=2,
                                         last_terminated={"exitCode": 1, "reason": "Error"}))
    assert run["state"] == {"running": {"startedAt": T0}} and run["containerID"] == "pocketkube://ab"
    assert run["lastState"] == {"terminated": {"exitCode": 1, "reason": "Error"}} and run["restartCount"] == 2
    done = container_status(ContainerView(name="c", image="i", container_id="pocketkube://cd", state="terminated",
                                          exit_code=0, started_at=T0, finished_at=T0))
    assert done["state"]["terminated"] == {"exitCode": 0, "reason": "Completed", "startedAt": T0, "finishedAt": T0,
                                           "containerID": "pocketkube://cd"}


# ---- back-off and restart policy --------------------------------------------------------------

def test_crash_backoff_doubles_to_five_minutes():
    b = Backoff()
    now = 1000.0
    seen = []
    for _ in range(8):
        b.next("c", now, now)
        seen.append(b.get("c"))
        now += 1
    assert seen == [10, 20, 40, 80, 160, 300, 300, 300]


def test_crash_backoff_window_and_reset():
    b = Backoff()
    assert not b.in_backoff_since("c", 100.0, 100.0)  # first crash: restart at once
    b.next("c", 100.0, 100.0)
    assert b.in_backoff_since("c", 105.0, 106.0)      # second crash: wait 10 s from its finish
    assert not b.in_backoff_since("c", 105.0, 115.5)
    assert not b.in_backoff_since("c", 100.0 + 601, 100.0 + 601)  # quiet for 2 x max: forgotten
    b.next("c", 701.0, 701.0)
    assert b.get("c") == 10


def test_image_backoff_counts_from_the_last_pull():
    b = Backoff()
    b.next("img", 0.0, 0.0)
    assert b.in_backoff_since_update("img", 9.9) and not b.in_backoff_since_update("img", 10.1)


@pytest.mark.parametrize("seconds, text", [(10, "10s"), (20, "20s"), (80, "1m20s"), (160, "2m40s"),
                                           (300, "5m0s"), (3600, "1h0m0s")])
def test_go_duration(seconds, text):
    assert go_duration(seconds) == text


def test_crash_backoff_message():
    assert crash_backoff_message(40, "app", pod()) == "back-off 40s restarting failed container=app pod=web_shop(1234)"


@pytest.mark.parametrize("policy, code, is_init, restart", [
    ("Always", 0, False, True), ("Always", 1, False, True),
    ("OnFailure", 0, False, False), ("OnFailure", 2, False, True),
    ("Never", 1, False, False), ("Never", 0, False, False),
    ("Always", 0, True, False), ("Always", 1, True, True), ("OnFailure", 1, True, True), ("Never", 1, True, False),
])
def test_should_restart(policy, code, is_init, restart):
    assert should_restart(policy, code, is_init) is restart


# ---- resolv.conf and hosts ----------------------------------------------------------------------

NODE_RESOLV = "nameserver 192.168.1.1\nsearch corp.example\noptions timeout:2\n"


@pytest.mark.parametrize("spec, expected", [
    ({}, "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\n"
         "options ndots:5\n"),
    ({"hostNetwork": True}, "search corp.example\nnameserver 192.168.1.1\noptions timeout:2\n"),
    ({"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"},
     "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\n"
     "options ndots:5\n"),
    ({"dnsPolicy": "Default"}, "search corp.example\nnameserver 192.168.1.1\noptions timeout:2\n"),
    ({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["a.b"],
                                         "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}},
     "search a.b\nnameserver 1.1.1.1\noptions ndots:2 edns0\n"),
    ({"dnsConfig": {"options": [{"name": "ndots", "value": "1"}], "nameservers": ["10.96.0.10", "9.9.9.9"]}},
     "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\n"
     "nameserver 9.9.9.9\noptions ndots:1\n"),
])
def test_resolv_conf(spec, expected):
    assert resolv_conf(pod(**spec), "10.96.0.10", "cluster.local", NODE_RESOLV) == expected


BOILERPLATE = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
               "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")


def test_hosts_file():
    assert hosts_file(pod(), "10.244.1.5", "cluster.local") == BOILERPLATE + "10.244.1.5\tweb\n"


def test_hosts_file_with_subdomain_and_aliases():
    p = pod(hostname="db-0", subdomain="db", hostAliases=[{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]}])
    assert hosts_file(p, "10.244.1.6", "cluster.local") == (
        BOILERPLATE + "10.244.1.6\tdb-0.db.shop.svc.cluster.local\tdb-0\n"
        "\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n")


def test_host_network_hosts_file_is_the_nodes():
    text = hosts_file(pod(hostNetwork=True), "172.18.0.2", "cluster.local", "127.0.0.1 localhost\n")
    assert text == "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"


def test_hostname_is_truncated_to_63_characters():
    p = pod()
    p["metadata"]["name"] = "a" * 62 + "-bcd"
    assert pod_hostname(p, "cluster.local") == ("a" * 62, None)


# ---- IPAM ---------------------------------------------------------------------------------------

def test_ipam_round_robin_persistence_and_release(tmp_path):
    path = str(tmp_path / "ipam.json")
    ipam = Ipam(path, "10.244.1.0/24")
    assert ipam.gateway == "10.244.1.1"
    assert [ipam.allocate(u) for u in ("a", "b")] == ["10.244.1.2", "10.244.1.3"]
    assert ipam.allocate("a") == "10.244.1.2"  # idempotent
    ipam.release("a")
    assert ipam.allocate("c") == "10.244.1.4"  # a released IP is not handed out again at once
    again = Ipam(path, "10.244.1.0/24")      # a restarted agent knows what is taken
    assert again.allocations == {"10.244.1.3": "b", "10.244.1.4": "c"}
    again.retain({"c"})
    assert Ipam(path, "10.244.1.0/24").allocations == {"10.244.1.4": "c"}


def test_ipam_exhaustion(tmp_path):
    ipam = Ipam(str(tmp_path / "ipam.json"), "10.244.1.0/29")
    for i in range(5):
        ipam.allocate(f"u{i}")
    with pytest.raises(IpamError, match="exhausted"):
        ipam.allocate("one-too-many")


# ---- volume files and logs ----------------------------------------------------------------------

def test_volume_files_use_the_atomic_writer_layout(tmp_path):
    directory = str(tmp_path / "vol")
    write_volume_files(directory, {"app.conf": b"a=1\n", "nested/x": b"x"}, 0o640)
    assert os.readlink(os.path.join(directory, "app.conf")) == "..data/app.conf"
    assert open(os.path.join(directory, "app.conf")).read() == "a=1\n"
    assert open(os.path.join(directory, "nested", "x")).read() == "x"
    assert os.stat(os.path.join(directory, "..data", "app.conf")).st_mode & 0o777 == 0o640
    write_volume_files(directory, {"app.conf": b"a=2\n"}, 0o644)
    assert open(os.path.join(directory, "app.conf")).read() == "a=2\n"
    assert not os.path.lexists(os.path.join(directory, "nested"))
    assert len([e for e in os.listdir(directory) if e.startswith("..") and e != "..data"]) == 1


async def read(path, **kw):
    options = dict(follow=False, tail_lines=None, since_seconds=None, timestamps=False, limit_bytes=None,
                   is_running=lambda: False)
    options.update(kw)
    return b"".join([c async for c in runtime.read_log_file(path, **options)])


async def test_log_reading_tail_limit_and_timestamps(tmp_path):
    path = str(tmp_path / "0.log")
    with open(path, "wb") as f:
        f.write(b"one\ntwo\nthree\n")
    assert await read(path) == b"one\ntwo\nthree\n"
    assert await read(path, tail_lines=2) == b"two\nthree\n"
    assert await read(path, tail_lines=0) == b""
    assert await read(path, limit_bytes=5) == b"one\nt"
    stamped = (await read(path, timestamps=True)).decode().splitlines()
    assert all(line.endswith(word) and line.split(" ")[0].endswith("Z")
               for line, word in zip(stamped, ["one", "two", "three"]))
    assert await read(path, since_seconds=60) == b"one\ntwo\nthree\n"


@pytest.mark.parametrize("ns, text", [(1_700_000_000_000_000_000, "2023-11-14T22:13:20Z"),
                                      (1_700_000_000_120_000_000, "2023-11-14T22:13:20.12Z"),
                                      (1_700_000_000_000_000_001, "2023-11-14T22:13:20.000000001Z")])
def test_rfc3339_nano(ns, text):
    assert runtime.rfc3339_nano(ns) == text


def test_start_error_messages():
    assert nsinit.start_error_message("foo").endswith(
        'unable to start container process: exec: "foo": executable file not found in $PATH: unknown')
    assert 'exec: "/bin/foo": stat /bin/foo: no such file or directory' in nsinit.start_error_message("/bin/foo")
