"""The node's sandbox spawner and container init: the code that runs in the new processes
of a pod, before exec. Run on its own (spawner.nsinit_command: `python -I -S`, standard library
only) it is the spawner: a small process that forks one child per sandbox request, which unshares, builds
the root, mounts, pivots and execs the holder (a fork costs far less than starting an
interpreter per pod). It starts the containers' main processes too, as children of the agent
(clone(CLONE_PARENT)) in their own PID namespace (or the pod's). With `--exec CONFIG` it
runs one exec session or exec probe in a container's namespaces (`exec_main`). The agent
talks to it through spawner.py; sandbox.py says what a sandbox is.

The holder is the pod's pause process: this machine's `catatonit -P` (Debian's catatonit,
podman's pause: a small static program that waits for SIGTERM or SIGINT, reaping any child it
is given), opened before the pivot and exec'd by its open file, in a root of its own that is
an empty read-only tmpfs: it loads nothing and reads nothing, so nothing of the machine need
be in its root (containerd's sandbox root holds the pause image's one program alike).

PIDs: each container gets its own PID namespace, as Kubernetes does by default. With
`shareProcessNamespace: true` the holder is PID 1 of a PID namespace for the whole pod (the
containers join it) and reaps the orphans of the pod, as the pause process does.

Each container's root is built from its image, not from the machine (`RootBuilder`; the
catalog, images/__init__.py, says what an image holds; docs/adr/0009 why), in a mount
namespace of its own, at each start (a restarted container gets a fresh writable layer, as
a new container would): a tmpfs as its writable layer, the shared libraries and the image's
programs and data bound read-only at their paths, its /etc (the image's passwd and group, the
pod's hosts, resolv.conf and hostname, nsswitch.conf), a minimal /dev with the pod's /dev/shm,
/proc for its PID namespace, a read-only /sys for the pod's network namespace, and its volumes
at their mountPaths. Nothing else of the machine (/root, /home, /var/lib, /run, /etc/shadow,
other pods or containers) is in it. A mountPath under a held directory gets a copy-on-write
overlay there, so nothing is ever created outside the pod's own state directory.

In its root a container gets runc's masked and read-only paths of /proc and /sys, a read-only
root if asked, and becomes the user, groups and capabilities its securityContext asks for
(security.py computes them; `apply_security` applies them, with no_new_privs and the seccomp
filter). Exec sessions and exec probes go the same way (`exec_main`, run as `nsinit.py
--exec`). Pods with their own network namespace get containerd's sysctls for unprivileged
ports and ping.
"""

from __future__ import annotations

import _signal
import ctypes
import errno
import fcntl
import importlib.util
import json
import os
import platform
import selectors
import signal
import stat
import sys
import termios

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2
CLONE_PARENT = 0x00008000
PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
CLONE_SYSCALL = {"x86_64": 56, "aarch64": 220, "riscv64": 220, "ppc64le": 120, "s390x": 120}
PR_SET_CHILD_SUBREAPER = 36
HOLDER_NAME = "pocketkube-pause"
# the holder's program: catatonit's pause mode (leaves on SIGTERM / SIGINT, reaps children)
PAUSE_ARGS = ("-P",)


# ---- the sandbox init (runs in its own process, standard library only) -----------------------

class Syscalls:
    """The few system calls Python's os module does not offer."""

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        for name in ("setns", "unshare", "mount", "umount2", "syscall", "prctl"):
            getattr(self.libc, name)  # looked up once here, not in each forked child

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    def unshare(self, flags: int) -> None:
        self._check(self.libc.unshare(flags), "unshare")

    def setns(self, path: str, nstype: int) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            self.setns_fd(fd, nstype, path)
        finally:
            os.close(fd)

    def setns_fd(self, fd: int, nstype: int, what: str = "") -> None:
        self._check(self.libc.setns(fd, nstype), f"setns {what or fd}")

    def clone(self, flags: int) -> int:
        """fork() with clone flags (CLONE_PARENT, CLONE_NEWPID): 0 in the child, its pid in
        the caller. Only for a single-threaded caller that execs or exits in the child."""
        number = CLONE_SYSCALL.get(platform.machine())
        if number is None:
            raise OSError(errno.ENOSYS, f"clone: unknown architecture {platform.machine()}")
        args = (0, flags) if platform.machine() == "s390x" else (flags, 0)  # s390 swaps them
        pid = self.libc.syscall(number, ctypes.c_ulong(args[0]), ctypes.c_ulong(args[1]), None, None, None)
        if pid < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"clone: {os.strerror(err)}")
        return pid

    def become_subreaper(self) -> None:
        self._check(self.libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None):
        self._check(self.libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
                    f"mount {source or fstype} on {target}")

    def umount(self, target: str, flags: int) -> None:
        self._check(self.libc.umount2(_b(target), flags), f"umount {target}")

    def sethostname(self, name: str) -> None:
        raw = name.encode()
        self._check(self.libc.sethostname(raw, len(raw)), "sethostname")

    def pivot_root(self, new_root: str) -> None:
        """pivot_root(".", ".") inside new_root, then drop the old root (runc's way)."""
        number = PIVOT_ROOT_SYSCALL.get(platform.machine())
        if number is None:
            raise OSError(errno.ENOSYS, f"pivot_root: unknown architecture {platform.machine()}")
        os.chdir(new_root)
        self._check(self.libc.syscall(number, b".", b"."), "pivot_root")
        self.umount(".", MNT_DETACH)
        os.chdir("/")


def _b(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore"}
# the directories of every pod's root (modes as in a Debian or busybox image)
ROOT_DIRS = {"/etc": 0o755, "/proc": 0o555, "/sys": 0o555, "/tmp": 0o1777, "/run": 0o755, "/var": 0o755,
             "/var/tmp": 0o1777, "/root": 0o700, "/home": 0o755, "/usr": 0o755, "/usr/local": 0o755,
             "/usr/local/bin": 0o755, "/usr/bin": 0o755, "/usr/sbin": 0o755, "/mnt": 0o755, "/opt": 0o755,
             "/srv": 0o755}
# top-level names that are links on a merged-/usr machine (Debian: /bin -> usr/bin); a pod gets the same links
USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
ROOT_SIZE = "1g"  # the pod's writable layer (a tmpfs: a limit, not a reservation)


class RootBuilder:
    """Builds a container's root (or the holder's) under `root` (a path of the current mount
    namespace) from what its image holds, never from the machine's whole tree:

    - a tmpfs (the container's writable layer) with the usual top-level directories, and /bin,
      /sbin, /lib, /lib64 as links into /usr where this machine has them so;
    - `etc`: its /etc files (passwd, group, hosts, resolv.conf, hostname, nsswitch.conf);
    - `holds`: this machine's paths the image holds (libraries, programs, data), each bound
      read-only at the same path (a path under another held directory comes with it);
    - /dev: a small tmpfs with the usual device nodes, a devpts of its own and the pod's
      /dev/shm (`shm`), /proc for the current PID namespace, /sys (the current network
      namespace's) read-only;
    - `mounts` (volumes, the image's own files): `bind()`; a target under a held directory
      gets a copy-on-write overlay there, so nothing is ever created outside the pod."""

    def __init__(self, sys_: Syscalls, config: dict):
        self.sys = sys_
        self.config = config
        self.root = config["root"]
        self.layers = config["overlay_dir"]
        self.owned: set[str] = {"/"}   # pod paths under which creating things stays in the pod
        self.foreign: set[str] = set()  # pod paths bound from the machine (held paths, hostPath volumes)
        self.overlays = 0
        self.layers_mounted = False

    def host(self, pod_path: str) -> str:
        return self.root + pod_path if pod_path != "/" else self.root

    def build(self) -> None:
        self.sys.mount("tmpfs", self.root, "tmpfs", MS_NOSUID, f"mode=755,size={ROOT_SIZE}")
        targets = {m["target"].rstrip("/") for m in self.config.get("mounts", [])}
        for name in USR_LINKS:
            if os.path.islink("/" + name) and "/" + name not in targets:
                os.symlink(os.readlink("/" + name), self.host("/" + name))
        for path, mode in ROOT_DIRS.items():
            if not os.path.lexists(self.host(path)):
                os.mkdir(self.host(path))
            os.chmod(self.host(path), mode)
        for name, content in self.config.get("etc", {}).items():
            with open(self.host("/etc/" + name), "w") as f:
                f.write(content)
        for path in held_paths(self.config.get("holds", [])):
            self.bind(path, path, readonly=True, owned=False)
            if path.startswith("/root/"):  # pyenv's Python: every user of the pod must reach it
                os.chmod(self.host("/root"), 0o755)
        self.dev()
        self.sys.mount("proc", self.host("/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        # read-only for this mount only (a privileged container makes its copy writable)
        self.sys.mount("sysfs", self.host("/sys"), "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        self.sys.mount(None, self.host("/sys"), None,
                       MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)

    def dev(self) -> None:
        """A container's /dev: the usual nodes, a devpts of its own, the pod's /dev/shm."""
        dev = self.host("/dev")
        os.mkdir(dev)
        self.sys.mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=65536k")
        # made as runc makes them outside a user namespace (mknod, the machine's numbers and
        # modes), not bound: a bind mount costs a container ~0.1 ms at start and at exit each
        for node in DEV_NODES:
            try:
                machine = os.stat("/dev/" + node)
            except FileNotFoundError:
                continue
            os.mknod(f"{dev}/{node}", machine.st_mode, machine.st_rdev)
            os.chmod(f"{dev}/{node}", stat.S_IMODE(machine.st_mode))  # past the umask
        for name, target in DEV_LINKS.items():
            os.symlink(target, f"{dev}/{name}")
        # a devpts of its own: the machine's terminals (other pods', the user's) are not in it;
        # a tty container's terminal is the agent's, handed over as an open file
        os.mkdir(f"{dev}/pts")
        self.sys.mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                       "newinstance,ptmxmode=0666,mode=0620,gid=5")
        os.mkdir(f"{dev}/shm")
        if self.config.get("shm"):  # the sandbox's: the pod's containers share it, as their IPC namespace
            self.sys.mount(self.config["shm"], f"{dev}/shm", None, MS_BIND)
        else:
            self.sys.mount("tmpfs", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k")

    def resolve(self, pod_path: str) -> str:
        """The pod path `pod_path` names once symlinks are followed inside the pod's root."""
        parts = [p for p in pod_path.split("/") if p]
        resolved: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            if part == ".":
                continue
            host = self.host("/" + "/".join(resolved + [part]))
            if os.path.islink(host):
                hops += 1
                if hops > 40:
                    raise OSError(errno.ELOOP, f"too many symlinks in {pod_path}")
                link = os.readlink(host)
                if link.startswith("/"):
                    resolved = []
                parts = [p for p in link.split("/") if p] + parts
                continue
            resolved.append(part)
        return "/" + "/".join(resolved)

    def is_owned(self, pod_path: str) -> bool:
        """Whether creating entries in this existing directory stays inside the pod: the root
        tmpfs itself, the overlays, the pod's /etc and its volumes, not what is bound from the
        machine (held paths, hostPath volumes). The deepest mount above `pod_path` decides."""
        def depth(paths: set[str]) -> int:
            return max((len(p) for p in paths if p == "/" or pod_path == p or pod_path.startswith(p + "/")),
                       default=-1)
        return depth(self.owned) >= depth(self.foreign)

    def ensure_dir(self, pod_dir: str) -> str:
        """Make `pod_dir` exist without creating anything outside the pod; returns it resolved."""
        pod_dir = self.resolve(pod_dir)
        if os.path.isdir(self.host(pod_dir)):
            return pod_dir
        ancestor = os.path.dirname(pod_dir)
        while not os.path.isdir(self.host(ancestor)):
            ancestor = os.path.dirname(ancestor)
        if not self.is_owned(ancestor):
            self.overlay(ancestor, lower=self.host(ancestor))
        os.makedirs(self.host(pod_dir), exist_ok=True)
        return pod_dir

    def overlay(self, pod_dir: str, lower: str) -> None:
        """A copy-on-write layer at `pod_dir` over `lower` (its upper dir on the pod's layer
        tmpfs, so the kernel sees no overlapping layers)."""
        if not self.layers_mounted:
            self.sys.mount("tmpfs", self.layers, "tmpfs", MS_NOSUID, f"mode=700,size={ROOT_SIZE}")
            self.layers_mounted = True
        self.overlays += 1
        upper, work = f"{self.layers}/{self.overlays}/upper", f"{self.layers}/{self.overlays}/work"
        os.makedirs(upper)
        os.makedirs(work)
        self.sys.mount("overlay", self.host(pod_dir), "overlay", 0,
                       f"lowerdir={lower},upperdir={upper},workdir={work}")
        self.owned.add(pod_dir)

    def bind(self, target: str, source: str, readonly: bool, owned: bool) -> None:
        target = self.resolve(target)
        if not os.path.exists(source):
            raise OSError(errno.ENOENT, f"{source}: no such file or directory")
        if not os.path.lexists(self.host(target)):
            parent = self.ensure_dir(os.path.dirname(target))
            if not self.is_owned(parent):
                self.overlay(parent, lower=self.host(parent))
            target = parent.rstrip("/") + "/" + os.path.basename(target)
            if os.path.isdir(source):
                os.mkdir(self.host(target))
            else:
                open(self.host(target), "w").close()
        self.sys.mount(source, self.host(target), None, MS_BIND | MS_REC)
        if readonly:
            self.sys.mount(None, self.host(target), None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        (self.owned if owned else self.foreign).add(target)


def held_paths(holds: list[str]) -> list[str]:
    """The paths to bind for `holds`: existing ones, named through their directory's real path
    (/bin/sh is /usr/bin/sh on a merged-/usr machine), without those under another one."""
    paths = []
    for path in holds:
        if os.path.lexists(path):
            paths.append(os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path)).rstrip("/")
                         or "/")
    kept: list[str] = []
    for path in sorted(set(paths)):
        if not any(path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


# what containerd sets in a pod's own network namespace (enable_unprivileged_ports and _icmp):
# any user may bind ports below 1024 and ping
UNPRIVILEGED_SYSCTLS = {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}


def sandbox_init(sys_: Syscalls, config: dict) -> None:
    """Set up the namespaces and the holder's root described by `config` (then the caller
    execs the holder)."""
    if config.get("join_netns"):
        sys_.setns(config["join_netns"], CLONE_NEWNET)
    network = config.get("network")
    node_link = _node_netlink(sys_, network) if network else None
    flags = CLONE_NEWNS | CLONE_NEWIPC
    if config.get("new_uts"):
        flags |= CLONE_NEWUTS
    if config.get("new_net"):
        flags |= CLONE_NEWNET
    sys_.unshare(flags)
    if config.get("new_net"):
        for name, value in UNPRIVILEGED_SYSCTLS.items():
            with open("/proc/sys/" + name.replace(".", "/"), "w") as f:
                f.write(value)
    if node_link is not None:
        _wire_network(node_link, network)
    sys_.mount(None, "/", None, MS_REC | MS_PRIVATE)
    # the holder's root: empty and read-only (its program is exec'd by its open file)
    sys_.mount("tmpfs", config["root"], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=555,size=4k")
    if config.get("new_uts"):
        sys_.sethostname(config["hostname"])
    sys_.pivot_root(config["root"])


def netlink_module():
    """netlink.py beside this file (standard library only), loaded by its path: this script
    cannot import the package. Loaded once by the spawner, before it forks."""
    global NETLINK
    if NETLINK is None:
        spec = importlib.util.spec_from_file_location(
            "pocketkube_nsinit_netlink", os.path.join(os.path.dirname(os.path.abspath(__file__)), "netlink.py"))
        NETLINK = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(NETLINK)
    return NETLINK


NETLINK = None


def _node_netlink(sys_: Syscalls, network: dict):
    """A netlink socket of the node's network namespace (`network["node_netns"]`, or this
    process' own), opened before the pod's is made: the veth's node end is made through it."""
    node_netns = network.get("node_netns")
    if node_netns and os.stat(node_netns)[1:3] != os.stat("/proc/self/ns/net")[1:3]:
        sys_.setns(node_netns, CLONE_NEWNET)
    return netlink_module().Netlink()


def _wire_network(node_link, network: dict) -> None:
    """In the pod's new network namespace: the veth pair (its node end on the bridge, `eth0`
    here), the address, lo and eth0 up, the default route (netlink.wire_pod)."""
    pod_netns = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        with netlink_module().Netlink() as pod_link:
            netlink_module().wire_pod(node_link, pod_link, pod_netns, network["veth"], network["bridge"],
                                      network["ip"], network["prefix_len"], network["gateway"])
    except OSError as exc:
        raise OSError(f"failed to set up the pod network: {exc.strerror or exc}") from None
    finally:
        os.close(pod_netns)
        node_link.close()


def build_root(sys_: Syscalls, config: dict) -> None:
    """The pod's root at config["root"], in the current (private) mount namespace: the image
    part, then the volumes and the images' own mounts, then the working dirs."""
    builder = RootBuilder(sys_, config)
    builder.build()
    for mount in sorted(config.get("mounts", []), key=lambda m: m["target"].count("/")):
        builder.bind(mount["target"], mount["source"], mount.get("readonly", False), mount.get("owned", False))
    for directory in config.get("dirs", []):
        builder.ensure_dir(directory)


def default_signals() -> None:
    """Every signal back to its default action and none blocked, as a container's process
    starts under runc: exec keeps an ignored signal ignored, so whatever the agent or its
    supervisor ignored (SIGHUP, say) would otherwise reach the pod's programs. With the C
    module's plain numbers (the signal module's enums cost a pod ~1 ms in a fresh fork)."""
    for number in range(1, _signal.NSIG):
        if number in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        try:
            if _signal.getsignal(number) != _signal.SIG_DFL:
                _signal.signal(number, _signal.SIG_DFL)
        except (OSError, ValueError):  # the C library's own realtime signals
            pass
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


def _become_holder(sys_: Syscalls, request_id: str, config: dict) -> None:
    """In a fresh child of the spawner: set the sandbox up, report, exec the holder. With
    `new_pid` the holder is PID 1 of a new PID namespace: the first child forked after
    unshare(CLONE_NEWPID), reported by its parent (which alone knows its pid here)."""
    default_signals()
    report = 1
    try:
        os.setsid()
        if config.get("new_pid"):
            report = _fork_pid_namespace_init(request_id)
        # the holder's program is the machine's, opened here: the pod's root need not hold it
        pause = fcntl.fcntl(os.open(config["pause"], os.O_RDONLY), fcntl.F_DUPFD_CLOEXEC, 100)
        null = os.open("/dev/null", os.O_RDWR)  # its stdio (its root has no /dev)
        sandbox_init(sys_, config)
        os.write(report, f"{request_id} ok {os.getpid()}\n".encode())
        for fd in (0, 1, 2, report):
            os.dup2(null, fd)
        # Nothing else of the spawner's may live on in the holder: an inherited copy of the
        # spawner's stdout kept the agent waiting for EOF at stop (`down` took 10 s longer).
        os.dup2(pause, 3, inheritable=False)
        os.closerange(4, os.sysconf("SC_OPEN_MAX"))
        os.execve(3, [HOLDER_NAME, *PAUSE_ARGS], {})
    except BaseException as exc:  # reported to the agent, which fails the sandbox with it
        message = " ".join(str(exc).split())[:3000]
        os.write(report, f"{request_id} error {message}\n".encode())
    os._exit(1)


def _fork_pid_namespace_init(request_id: str) -> int:
    """Returns, in the new PID namespace's init only, the fd on which it reports; the parent
    relays that report with the init's real pid and exits."""
    Syscalls().unshare(CLONE_NEWPID)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        return write_end
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        answer = reader.readline().decode(errors="replace").strip()
    _, _, rest = answer.partition(" ")
    status, _, _ = rest.partition(" ")
    if status == "ok":
        rest = f"ok {pid}"
    elif not rest:
        rest = "error the sandbox init exited"
    os.write(1, f"{request_id} {rest}\n".encode())
    os._exit(0)


# the holder's namespaces a container joins (not its mount namespace: a container has a root of its own)
SANDBOX_NAMESPACES = (("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET))


def _start_container(sys_: Syscalls, config: dict) -> tuple[int, int]:
    """Start a container's main process as a child of the agent (CLONE_PARENT: the agent
    reaps it and gets its exit code) and as PID 1 of a new PID namespace, or in the pod's
    (`pid_namespace`), or in the machine's (`host_pid`). Returns its pid and a pipe that ends once it has exec'd its program,
    carrying why not if it could not (`ContainerStarts` waits for it)."""
    error_read, error_write = os.pipe()
    flags = CLONE_PARENT | signal.SIGCHLD  # the exit signal goes to the agent
    own_pid_namespace = None
    pid = -1
    try:
        if config.get("pid_namespace"):
            own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY)
            sys_.setns(config["pid_namespace"], CLONE_NEWPID)  # for the next child only
        elif not config.get("host_pid"):
            flags |= CLONE_NEWPID  # hostPID: the spawner's, which is the machine's
        try:
            pid = sys_.clone(flags)
        finally:
            if own_pid_namespace is not None and pid != 0:
                sys_.setns_fd(own_pid_namespace, CLONE_NEWPID, "back to the spawner's PID namespace")
                os.close(own_pid_namespace)
    except OSError:
        os.close(error_read)
        os.close(error_write)
        raise
    if pid == 0:
        os.close(error_read)
        try:
            _become_container(sys_, config, error_write)
        except BaseException as exc:
            os.write(error_write, " ".join(str(exc).split()).encode(errors="replace")[:3000])
        os._exit(127)
    os.close(error_write)
    return pid, error_read


class ContainerStarts:
    """The spawner's containers that are starting: it goes on serving requests meanwhile and
    answers `<id> ok <pid>` once one has exec'd its program, or `<id> error <pid or 0>
    <message>` (the agent reaps a failed child)."""

    def __init__(self, selector: selectors.BaseSelector):
        self.selector = selector

    def start(self, sys_: Syscalls, request_id: str, config: dict) -> None:
        try:
            pid, errors = _start_container(sys_, config)
        except OSError as exc:
            _answer(f"{request_id} error 0 {exc}")
            return
        self.selector.register(errors, selectors.EVENT_READ, (request_id, pid, []))

    def readable(self, fd: int, starting: tuple[str, int, list]) -> None:
        request_id, pid, message = starting
        data = os.read(fd, 4096)
        if data:
            message.append(data)
            return
        self.selector.unregister(fd)
        os.close(fd)
        text = b"".join(message).decode(errors="replace")
        _answer(f"{request_id} error {pid} {text}" if text else f"{request_id} ok {pid}")


def _answer(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _become_container(sys_: Syscalls, config: dict, error_fd: int) -> None:
    """In the container's fresh process: its stdio (the agent's pipe or terminal through
    /proc/<agent>/fd), a session of its own (the terminal as its controlling one), its
    cgroup, the sandbox's IPC, UTS and network namespaces, then a mount namespace of its own
    where it builds and enters its root (`config["rootfs"]`, a RootBuilder config: its image,
    its volumes), runc's masked and read-only paths, its program looked up in its PATH there,
    its working dir, user and rights, and exec."""
    default_signals()
    agent_fd = "/proc/{}/fd/{}".format
    if config.get("tty_fd") is not None:
        terminal = os.open(agent_fd(config["agent_pid"], config["tty_fd"]), os.O_RDWR)
        stdio = (terminal, terminal, terminal)
    else:
        stdin = (os.open(agent_fd(config["agent_pid"], config["stdin_fd"]), os.O_RDONLY)
                 if config.get("stdin_fd") is not None else os.open("/dev/null", os.O_RDONLY))
        log = os.open(config["log_path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        stdio = (stdin, log, log)
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    os.closerange(3, error_fd)  # nothing else of the spawner's lives on in the container
    os.closerange(error_fd + 1, os.sysconf("SC_OPEN_MAX"))
    os.setsid()
    if config.get("tty_fd") is not None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if config.get("cgroup"):
        try:
            with open(os.path.join(config["cgroup"], "cgroup.procs"), "w") as procs:
                procs.write("0")
        except OSError:
            pass  # best effort, as cgroups are
    security = config.get("security") or {}
    if security.get("uid") and config.get("tty_fd") is None:
        os.fchown(1, security["uid"], security["gid"])  # the container's stdout, opened again as /dev/stdout
    holder = config["holder_pid"]
    namespaces = [(name, nstype, os.open(f"/proc/{holder}/ns/{name}", os.O_RDONLY))
                  for name, nstype in SANDBOX_NAMESPACES]
    for name, nstype, fd in namespaces:
        sys_.setns_fd(fd, nstype, f"the pod's {name} namespace")
        os.close(fd)
    # its own root, from its image, in a mount namespace of its own (its /proc is for its PID
    # namespace, its /sys for the pod's network namespace: both joined above)
    sys_.unshare(CLONE_NEWNS)
    sys_.mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates anywhere
    build_root(sys_, config["rootfs"])
    sys_.pivot_root(config["rootfs"]["root"])
    container_mounts(sys_, security, config.get("writable") or [])
    program = find_program(config["argv"][0], config["env"].get("PATH", ""))
    if program is None:
        raise ContainerStartError(start_error_message(config["argv"][0]))
    os.chdir(config["working_dir"])
    apply_security(sys_, security)
    os.execve(program, config["argv"], config["env"])


class ContainerStartError(Exception):
    """Why a container's program cannot start, in the runtime's words (reported as is)."""


def start_error_message(program: str) -> str:
    """The message containerd gives when the program is missing."""
    if "/" in program:
        why = f'exec: "{program}": stat {program}: no such file or directory'
    else:
        why = f'exec: "{program}": executable file not found in $PATH'
    return ("failed to create containerd task: failed to create shim task: OCI runtime create failed: "
            f"runc create failed: unable to start container process: {why}: unknown")


def container_mounts(sys_: Syscalls, security: dict, writable: list[str]) -> None:
    """In the container's own root: runc's masked and read-only paths, /sys writable only when
    privileged, and with readOnlyRootFilesystem every mount but the volumes (`writable`), /dev,
    /proc and /sys made read-only."""
    if security.get("privileged"):
        sys_.mount(None, "/sys", None, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for path in security.get("masked_paths", ()):
        if os.path.isdir(path):
            sys_.mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0")
        elif os.path.exists(path):
            sys_.mount("/dev/null", path, None, MS_BIND)
    for path in security.get("readonly_paths", ()):
        if os.path.lexists(path):
            sys_.mount(path, path, None, MS_BIND | MS_REC)
            sys_.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if security.get("readonly_rootfs"):
        kept = [p.rstrip("/") or "/" for p in (*writable, "/dev", "/proc", "/sys")]
        for point, flags in _mounts_with_flags():
            if any(point == k or point.startswith(k + "/") for k in kept):
                continue
            sys_.mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)


def _mounts_with_flags() -> list[tuple[str, int]]:
    """This mount namespace's mount points with their nosuid/nodev/noexec flags (a read-only
    remount must repeat them)."""
    names = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            flags = 0
            for option in fields[5].split(","):
                flags |= names.get(option, 0)
            found.append((fields[4].replace("\\040", " "), flags))
    return found


PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def apply_security(sys_: Syscalls, security: dict) -> None:
    """Become the container's process as security.py computed it (runc's order): the seccomp
    filter while still root, the bounding set, no ambient capabilities, groups, gid, uid
    (keeping the capabilities across it), the effective and permitted sets, no_new_privs."""
    if not security:
        return
    libc = sys_.libc
    if security.get("seccomp"):
        program = bytes.fromhex(security["seccomp"])
        buffer = ctypes.create_string_buffer(program)
        fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
        sys_._check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")
    caps = security["caps"]
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    for cap in range(last_cap + 1):
        if not caps & (1 << cap):
            sys_._check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)  # older kernels lack it
    os.setgroups(security["groups"])
    os.setresgid(security["gid"], security["gid"], security["gid"])
    if security["uid"] != 0:
        sys_._check(libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
        os.setresuid(security["uid"], security["uid"], security["uid"])
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    low, high = caps & 0xFFFFFFFF, caps >> 32
    data = (ctypes.c_uint32 * 6)(low, low, 0, high, high, 0)  # effective, permitted, inheritable
    sys_._check(libc.capset(header, data), "capset")
    if security.get("no_new_privs"):
        sys_._check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def find_program(program: str, path_env: str) -> str | None:
    """Where `program` is in this mount namespace, looked up as runc does (PATH without a slash)."""
    if "/" in program:
        return program if os.access(program, os.X_OK) and not os.path.isdir(program) else None
    for directory in path_env.split(":"):
        candidate = os.path.join(directory or ".", program)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def exec_main(config: dict) -> int:
    """`nsinit.py --exec CONFIG`: a command in a running container (kubectl exec, exec probes),
    as runc exec does it: the container's cgroup and namespaces (its PID namespace for a
    child, which runs the command), its working dir, environment and security (user,
    capabilities, no_new_privs, seccomp); a command on a terminal leads its own session there.
    Exits with the command's status."""
    sys_ = Syscalls()
    if config.get("cgroup"):
        try:
            with open(os.path.join(config["cgroup"], "cgroup.procs"), "w") as procs:
                procs.write("0")
        except OSError:
            pass
    target = config["container_pid"]
    fds = [(name, nstype, os.open(f"/proc/{target}/ns/{name}", os.O_RDONLY))
           for name, nstype in (("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET),
                                ("pid", CLONE_NEWPID), ("mnt", CLONE_NEWNS))]
    for name, nstype, fd in fds:
        sys_.setns_fd(fd, nstype, f"the container's {name} namespace")
        os.close(fd)
    pid = os.fork()
    if pid == 0:
        try:
            if config.get("tty") and os.isatty(0):
                os.setsid()
                fcntl.ioctl(0, termios.TIOCSCTTY, 1)
            os.chdir(config["working_dir"])
            argv, env = config["argv"], config["env"]
            program = find_program(argv[0], env.get("PATH", ""))
            if program is None:
                why = (f"stat {argv[0]}: no such file or directory" if "/" in argv[0]
                       else "executable file not found in $PATH")
                os.write(2, f'OCI runtime exec failed: exec failed: unable to start container process: exec: '
                            f'"{argv[0]}": {why}: unknown\n'.encode())
                os._exit(127)
            default_signals()
            apply_security(sys_, config.get("security") or {})
            os.execve(program, argv, env)
        except BaseException as exc:
            os.write(2, f"OCI runtime exec failed: {exc}\n".encode(errors="replace"))
        os._exit(126)
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
        signal.signal(number, forward)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def spawner_main() -> int:
    """The node's sandbox spawner: one small process that forks a holder per request line
    (`<id> <config json>`), so a pod costs a fork, not an interpreter start; holders report
    on stdout themselves (one short line, written atomically). It also starts containers
    (config kind "container") as children of the agent: a fork of this small process costs
    far less than one of the agent. Exits at the end of its input (its agent is gone); the
    holders live on."""
    def reap(_signum, _frame):
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    signal.signal(signal.SIGCHLD, reap)
    sys_ = Syscalls()
    netlink_module()  # imported once here, not in each forked child
    sys_.become_subreaper()  # holders whose parent exited (shared PID namespaces) stay ours to reap
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    containers = ContainerStarts(selector)
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.fd != 0:
                containers.readable(key.fd, key.data)
                continue
            chunk = os.read(0, 65536)
            if not chunk:
                return 0
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                request_id, _, payload = line.decode().strip().partition(" ")
                if not payload:
                    continue
                config = json.loads(payload)
                if config.get("kind") == "container":
                    containers.start(sys_, request_id, config)
                elif os.fork() == 0:
                    _become_holder(sys_, request_id, config)


def main(args: list[str]) -> int:
    """`--exec CONFIG`: one exec session or exec probe (`exec_main`); no arguments: the spawner."""
    if args[:1] == ["--exec"]:
        return exec_main(json.loads(args[1]))
    return spawner_main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
