"""What a pod sees of the machine and what it may do, checked from inside real pods (root):
its root is its image (no /root, /home, /var/lib/pocketkube, /etc/shadow, checkout, other
pods), and its securityContext holds (user, groups, capabilities, no_new_privs, read-only
root, runAsNonRoot, seccomp RuntimeDefault, the service-account token's owner).

Each test gets its own node namespace from test_pods_runtime's `node` fixture, which removes
every pod, namespace and process it made.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from test_pods_runtime import ROOT, busybox, exec_in, make_pod, node  # noqa: F401  (node: the fixture)

pytestmark = [pytest.mark.e2e]

DEFAULT_CAPS = "00000000a80425fb"  # containerd's default set


async def logs_when_done(node, pod: dict, container: str | None = None) -> str:
    """The container's output once it printed its last line (`END`)."""
    for _ in range(200):
        out = await node.logs(pod, container)
        if "END" in out:
            return out
        await asyncio.sleep(0.05)
    raise AssertionError(f"no END in {out!r}")


def status_fields(out: str) -> dict[str, str]:
    return {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in out.splitlines() if ":" in line}


async def test_the_pod_sees_its_image_not_the_machine(node):
    secret_paths = ["/root/.kube", "/etc/shadow", "/var/lib/pocketkube", node.state_dir, os.path.join(ROOT, ".git"),
                    os.path.join(ROOT, "tests"), "/run/netns", "/usr/sbin/nginx"]
    secret_paths += [os.path.join("/home", name) for name in os.listdir("/home")]
    script = ("for p in " + " ".join(secret_paths) + "; do test -e $p && echo SEES $p; done; "
              "ls /root | wc -l; head -1 /etc/passwd; echo hi > /written && cat /written; ls /dev/pts; "
              "stat -c '%n %F %t,%T %a' /dev/null /dev/zero /dev/urandom /dev/tty; head -c 8 /dev/urandom | wc -c; "
              "echo END; sleep 3600")
    other = make_pod("other", [busybox("c", "sleep 3600")])
    await node.running(other)
    pod = make_pod("looker", [busybox("c", script)])
    await node.running(pod)
    out = await logs_when_done(node, pod)
    assert "SEES" not in out, out
    assert out.splitlines()[:4] == ["0", "root:x:0:0:root:/root:/bin/sh", "hi", "ptmx"]  # no terminal of the machine
    # the usual device nodes, with the machine's numbers and modes (as runc makes them)
    assert out.splitlines()[4:9] == ["/dev/null character special file 1,3 666",
                                     "/dev/zero character special file 1,5 666",
                                     "/dev/urandom character special file 1,9 666",
                                     "/dev/tty character special file 5,0 666", "8"], out
    assert not os.path.exists("/written")
    # another pod's files are nowhere in this one
    other_dir = os.path.join(node.state_dir, "pods", other["metadata"]["uid"])
    assert exec_in(node, pod, "c", "ls", other_dir).returncode != 0
    # a program the image does not hold: the runtime's error
    missing = make_pod("nonginx", [busybox("c", "x", command=["nginx"])], restartPolicy="Never")
    status = await node.wait(missing, lambda s: "terminated" in s["containerStatuses"][0]["state"], what="StartError")
    message = status["containerStatuses"][0]["state"]["terminated"]["message"]
    assert 'exec: "nginx": executable file not found in $PATH' in message


async def test_user_groups_capabilities_and_no_new_privs(node):
    script = ("id; grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status; touch /data/f; "
              "stat -c 'file group %g' /data/f; mount -t tmpfs t /mnt 2>&1 || echo mount refused; "
              "cat /var/run/secrets/kubernetes.io/serviceaccount/token; echo; "
              "stat -c '%a %u' /var/run/secrets/kubernetes.io/serviceaccount/..data/token; "
              "echo x > /dev/null && echo null writable; echo END; sleep 3600")
    node.env.files = {"kube-api-access-x": {"token": b"t0ken", "namespace": b"default"}}
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    pod = make_pod("ids", [busybox("c", script, securityContext={
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
        volumeMounts=[{"name": "data", "mountPath": "/data"}, {"name": "kube-api-access-x", "mountPath": sa,
                                                               "readOnly": True}])],
        securityContext={"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000]},
        volumes=[{"name": "data", "emptyDir": {}},
                 {"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
                     {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}])
    await node.running(pod)
    out = await logs_when_done(node, pod)
    lines = out.splitlines()
    assert lines[0] == "uid=1000 gid=3000 groups=2000,3000,4000"
    fields = status_fields(out)
    assert fields["CapEff"] == fields["CapPrm"] == "0000000000000000"
    assert fields["CapBnd"] == "0000000000000400"  # NET_BIND_SERVICE only
    assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "0"
    assert "file group 2000" in lines and "mount refused" in lines and "null writable" in lines
    assert "t0ken" in lines and "640 1000" in lines  # the token: the pod's user reads it, others do not
    # an exec session is the same user with the same rights
    cp = exec_in(node, pod, "c", "sh", "-c", "id; grep NoNewPrivs /proc/self/status")
    assert cp.stdout.splitlines() == ["uid=1000 gid=3000 groups=2000,3000,4000", "NoNewPrivs:\t1"], cp.stderr


async def test_signals_start_at_their_defaults_whatever_the_agent_ignores(node):
    """An ignored signal stays ignored across exec (and a blocked one blocked across fork):
    what the agent's process ignored (its supervisor's SIGHUP) must not reach the pod's
    programs or exec sessions, which start as under runc, nothing ignored or blocked."""
    ignored = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        # the spawner starts with the first pod and inherits both, as would exec's process
        pod = make_pod("signals", [busybox("c", "grep -E '^Sig(Ign|Blk):' /proc/self/status; echo END; sleep 3600")])
        await node.running(pod)
        out = await logs_when_done(node, pod)
        cp = exec_in(node, pod, "c", "grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status")
    finally:
        signal.signal(signal.SIGHUP, ignored)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    assert status_fields(out) == {"SigBlk": "0000000000000000", "SigIgn": "0000000000000000"}, out
    assert status_fields(cp.stdout) == {"SigBlk": "0000000000000000", "SigIgn": "0000000000000000"}, cp


async def test_root_gets_the_runtime_default_capabilities_and_privileged_all(node):
    script = ("grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; id -u; mount -t tmpfs t /mnt 2>&1 || "
              "echo mount refused; unshare -n true 2>&1 || echo unshare refused; "
              "nsenter -t 1 -n true 2>&1 || echo setns refused; echo END; sleep 3600")
    pod = make_pod("caps", [busybox("plain", script),
                            busybox("priv", script, securityContext={"privileged": True}),
                            busybox("odd", script, securityContext={"capabilities": {"add": ["NOT_A_CAP"]}})])
    await node.running(pod)
    plain = await logs_when_done(node, pod, "plain")
    assert status_fields(plain)["CapEff"] == DEFAULT_CAPS and status_fields(plain)["NoNewPrivs"] == "0"
    assert "mount refused" in plain and "unshare refused" in plain and "setns refused" in plain
    privileged = await logs_when_done(node, pod, "priv")
    with open("/proc/self/status") as f:  # every capability the node agent has
        assert status_fields(privileged)["CapEff"] == status_fields(f.read())["CapBnd"]
    assert "mount refused" not in privileged  # mounted in the container's own mount namespace
    # an unknown capability is ignored, as runc does
    assert status_fields(await logs_when_done(node, pod, "odd"))["CapEff"] == DEFAULT_CAPS


async def test_host_pid_only_when_the_spec_asks(node):
    """hostPID: the container runs in the machine's PID namespace (the node is the machine), so
    it sees this test's process and is not PID 1; without it, it sees only its own processes."""
    me = os.getpid()
    # `$$$$`: Kubernetes turns `$$` into `$`, so the shell sees `$$`, its own pid
    script = f"test -d /proc/{me} && echo SEES-MACHINE; echo self=$$$$; echo END; sleep 3600"
    shared = make_pod("hostpid", [busybox("c", script)], hostPID=True)
    own = make_pod("ownpid", [busybox("c", script)])
    await node.running(shared)
    await node.running(own)
    shared_out, own_out = await logs_when_done(node, shared), await logs_when_done(node, own)
    assert "SEES-MACHINE" in shared_out and "self=1" not in shared_out.splitlines()
    assert "SEES-MACHINE" not in own_out and "self=1" in own_out.splitlines()
    cp = exec_in(node, shared, "c", "sh", "-c", f"test -d /proc/{me} && echo yes")
    assert cp.stdout.strip() == "yes", cp.stderr
    # SIGTERM ends it: its shell is not a PID 1, which the kernel would shield from the signal
    process = node.manager.workers[shared["metadata"]["uid"]].slot("c").process
    await node.manager.terminate(shared, 10)
    assert process.exit_code == 143


async def test_read_only_root_refuses_writes_and_volumes_accept_them(node):
    script = ("touch /x 2>&1; touch /etc/x 2>&1; echo ok > /cache/f && cat /cache/f; echo ok > /dev/shm/f && "
              "echo shm ok; echo END; sleep 3600")
    pod = make_pod("ro", [busybox("c", script, securityContext={"readOnlyRootFilesystem": True},
                                  volumeMounts=[{"name": "cache", "mountPath": "/cache"}])],
                   volumes=[{"name": "cache", "emptyDir": {}}])
    await node.running(pod)
    lines = (await logs_when_done(node, pod)).splitlines()
    assert lines[:2] == ["touch: /x: Read-only file system", "touch: /etc/x: Read-only file system"]
    assert lines[2:4] == ["ok", "shm ok"]


async def test_run_as_non_root_and_seccomp_runtime_default(node):
    refused = make_pod("nonroot", [busybox("c", "sleep 3600")], securityContext={"runAsNonRoot": True})
    status = await node.wait(refused, lambda s: (s["containerStatuses"][0]["state"].get("waiting") or {}).get(
        "reason") == "CreateContainerConfigError", what="CreateContainerConfigError")
    message = status["containerStatuses"][0]["state"]["waiting"]["message"]
    assert message == (f"container has runAsNonRoot and image will run as root (pod: "
                       f"\"nonroot_default({refused['metadata']['uid']})\", container: c)")
    script = ("id; grep -E '^Seccomp:' /proc/self/status; unshare -U true 2>&1 || echo userns refused; "
              "echo END; sleep 3600")
    pod = make_pod("filtered", [busybox("c", script), busybox("free", script, securityContext={
        "seccompProfile": {"type": "Unconfined"}})],
                   securityContext={"runAsNonRoot": True, "runAsUser": 1000,
                                    "seccompProfile": {"type": "RuntimeDefault"}})
    await node.running(pod)
    filtered = await logs_when_done(node, pod, "c")
    assert filtered.splitlines()[0] == "uid=1000 gid=0(root) groups=0(root)"  # no passwd entry: it still runs
    assert "Seccomp:\t2" in filtered and "userns refused" in filtered
    free = await logs_when_done(node, pod, "free")
    assert "Seccomp:\t0" in free and "userns refused" not in free


async def test_non_root_images_serve_as_their_upstream_user(node):
    pod = make_pod("unpriv", [{"name": "nginx", "image": "nginxinc/nginx-unprivileged:1.25"},
                              {"name": "pause", "image": "registry.k8s.io/pause:3.9"}])
    ip = (await node.running(pod))["podIP"]
    assert "Welcome to nginx!" in node.curl(f"http://{ip}:8080/")
    assert exec_in(node, pod, "nginx", "id").stdout.strip() == "uid=101(nginx) gid=101(nginx) groups=101(nginx)"
    with open(f"/proc/{node.manager.container_pid(pod['metadata']['uid'], 'pause')}/status") as f:
        assert "Uid:\t65535\t65535\t65535\t65535" in f.read()


async def test_each_container_has_its_image_and_a_fresh_layer_at_each_start(node):
    script = "test -e /marker && echo again || echo first; touch /marker; sleep 0.2; exit 1"
    pod = make_pod("mixed", [{"name": "web", "image": "nginx:1.25"},
                             busybox("side", "test -e /usr/sbin/nginx && echo SEES nginx; echo END; sleep 3600"),
                             busybox("crasher", script)])
    ip = (await node.running(pod, ready=False))["podIP"]
    assert "Welcome to nginx!" in node.curl(f"http://{ip}/")
    assert "SEES" not in await logs_when_done(node, pod, "side")  # the sidecar's image is busybox only
    await node.wait(pod, lambda s: s["containerStatuses"][2]["restartCount"] >= 1, what="a restart")
    assert (await node.logs(pod, "crasher")).split() == ["first"]
    assert (await node.logs(pod, "crasher", previous=True)).split() == ["first"]  # no /marker of the last one


async def test_an_image_pulled_after_the_sandbox_runs_from_its_own_root(node):
    pod = make_pod("late", [{"name": "web", "image": "example.test/missing:1"}])
    worker = node.manager.workers.get
    await node.wait(pod, lambda s: (s["containerStatuses"][0]["state"].get("waiting") or {}).get("reason")
                    in ("ErrImagePull", "ImagePullBackOff") and worker(pod["metadata"]["uid"]).sandbox is not None,
                    what="the pull error, with the sandbox made")
    holder = worker(pod["metadata"]["uid"]).sandbox.holder_pid
    pod["spec"]["containers"][0]["image"] = "nginx:1.25"  # the user fixes the image
    ip = (await node.running(pod))["podIP"]
    assert "Welcome to nginx!" in node.curl(f"http://{ip}/")
    assert worker(pod["metadata"]["uid"]).sandbox.holder_pid == holder


@pytest.mark.parametrize("image, args, port, answer", [
    ("hashicorp/http-echo", ["-text=hi"], 5678, "hi"),
    ("gcr.io/google-samples/hello-app:2.0", None, 8080, "Version: 2.0.0"),
    ("ealen/echo-server", None, 80, '"method": "GET"'),
    ("kicbase/echo-server:1.0", None, 8080, "Request served by"),
    ("httpd:2.4", None, 80, "It works!"),
])
async def test_catalog_servers_answer_from_their_own_roots(node, image, args, port, answer):
    container = {"name": "c", "image": image, **({"args": args} if args else {})}
    ip = (await node.running(make_pod("srv", [container])))["podIP"]
    assert answer in node.curl(f"http://{ip}:{port}/")


async def test_catalog_tools_run_from_their_own_roots(node):
    pod = make_pod("tools", [
        {"name": "curl", "image": "curlimages/curl", "command": ["sh", "-c", "curl --version | head -1; sleep 3600"]},
        {"name": "deb", "image": "debian:12", "command": ["bash", "-c", "ls /usr/bin/apt* >/dev/null 2>&1; "
                                                                         "echo bash $BASH_VERSION; sleep 3600"]},
        {"name": "alp", "image": "alpine:3.19", "command": ["sh", "-c", "wget --help 2>&1 | head -1; sleep 3600"]}])
    await node.running(pod)
    await asyncio.sleep(0.5)
    assert (await node.logs(pod, "curl")).startswith("curl ")
    assert (await node.logs(pod, "deb")).startswith("bash ")
    assert "BusyBox" in await node.logs(pod, "alp")
