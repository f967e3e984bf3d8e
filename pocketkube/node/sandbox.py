"""Pod sandboxes: the namespaces a pod's containers share (pocketkube's pause container).

A sandbox is one holder process, `sleep infinity` renamed `pocketkube-pause`, that owns the
pod's network, UTS, IPC and mount namespaces; containers join them (runtime.py). The network
namespace is unnamed: it lives exactly as long as the processes in it, so a pod killed by
any means leaves no namespace or veth behind (`pod_netns_path` is /proc/<holder>/ns/net).

PIDs: each container gets its own PID namespace, as Kubernetes does by default. With
`shareProcessNamespace: true` the holder is PID 1 of a PID namespace for the whole pod (the
containers join it), and then it is a small shell loop that reaps the orphans of the pod
and exits on SIGTERM or SIGINT, as the pause process does.

The pod's root is a small tmpfs whose top-level entries are recursive bind mounts of this
machine's (/usr, /etc, ...), except its private /tmp, /run and /dev/shm, a fresh /sys for
its network namespace, and whatever the images ask for (busybox applets as /bin). On top go
/etc/resolv.conf, /etc/hosts and /etc/hostname as the kubelet writes them, and the volumes at
their mountPaths. A mountPath missing on this machine gets an overlay on its nearest existing
directory, so nothing is ever created outside the pod's own state directory. The holder
pivots into that root, so anything joining its mount namespace sees the pod's filesystem.

The network: a veth pair, one end `veth<8 hex>` on the node's cni0, the other `eth0` in the
pod with an IP of the node's pod /24 (IPAM persisted in the state dir), lo up, default route
via the cni0 gateway. hostNetwork pods stay in the node's network and UTS namespaces.

Run as a script (`python -I -S sandbox.py`) this module is the node's sandbox spawner: a
small process that forks one child per sandbox request, which unshares, builds the root,
mounts, pivots and execs the holder (a fork costs far less than starting an interpreter per
pod). It starts the containers' main processes too, as children of the agent
(clone(CLONE_PARENT)) in their own PID namespace (or the pod's), each in a mount namespace
of its own (a copy of the pod's) with a fresh /proc for that PID namespace. That part
(everything above `HOSTS_HEADER`) uses only the standard library.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import platform
import selectors
import signal
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
PF_EXITING = 0x4  # in /proc/<pid>/stat's flags
HOLDER_NAME = "pocketkube-pause"
# the holder of a shared PID namespace: PID 1 of the pod, reaping orphans (a shell waiting
# for any child reaps them all), leaving on SIGTERM / SIGINT as the pause process does
REAPER_SCRIPT = 'trap "exit 0" INT TERM; while :; do {sleep} 2147483647 & wait $!; done'


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
KERNEL_TOPS = ("proc", "sys", "dev")


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4].replace("\\040", " ") for line in f]


class RootBuilder:
    """Builds the pod's root under `root` (a path of the current mount namespace).

    Every top-level directory of the machine appears as a copy-on-write overlay (upper
    layer on a tmpfs of the pod), so a pod may write anywhere and the machine's files never
    change; directories holding other mounts are bind-mounted read-only instead. /tmp and
    /run come from the pod's state directory, /dev is a small tmpfs with the usual device
    nodes, /proc/sys is read-only and network pods get their own sysfs."""

    def __init__(self, sys_: Syscalls, config: dict):
        self.sys = sys_
        self.config = config
        self.root = config["root"]
        self.layers = config["overlay_dir"]
        self.owned: set[str] = {"/"}   # pod paths under which creating things stays in the pod
        self.overlays = 0
        self.mount_points = _mount_points()

    def host(self, pod_path: str) -> str:
        return self.root + pod_path if pod_path != "/" else self.root

    def build(self) -> None:
        self.sys.mount("tmpfs", self.root, "tmpfs", MS_NOSUID, "mode=755,size=16m")
        self.sys.mount("tmpfs", self.layers, "tmpfs", MS_NOSUID, "mode=700,size=1g")
        replaced = {entry["target"]: entry for entry in self.config.get("top", [])}
        names = set(os.listdir("/")) | {t.strip("/") for t in replaced}
        for name in sorted(names):
            self.top_entry(name, replaced.get("/" + name))
        self.proc_sys_readonly()

    def has_submounts(self, path: str) -> bool:
        return any(point.startswith(path + "/") for point in self.mount_points)

    def top_entry(self, name: str, replacement: dict | None) -> None:
        host_path, target = "/" + name, self.host("/" + name)
        if replacement is not None:
            os.mkdir(target)
            self.sys.mount(replacement["source"], target, None, MS_BIND | MS_REC)
            if replacement.get("readonly"):
                self.sys.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
            else:
                self.owned.add(host_path)
        elif os.path.islink(host_path):
            os.symlink(os.readlink(host_path), target)
        elif name == "dev":
            self.dev()
        elif name == "sys" and self.config.get("fresh_sysfs"):
            os.mkdir(target)
            self.sys.mount("sysfs", target, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        elif os.path.isdir(host_path):
            os.mkdir(target)
            if name in KERNEL_TOPS or self.has_submounts(host_path):
                self.sys.mount(host_path, target, None, MS_BIND | MS_REC)
                if name != "proc":
                    self.sys.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
            else:
                self.overlay("/" + name, lower=host_path)
        elif os.path.isfile(host_path):
            open(target, "w").close()
            self.sys.mount(host_path, target, None, MS_BIND)
            self.sys.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)

    def dev(self) -> None:
        """A container's /dev: the usual nodes, the machine's ptys, a private /dev/shm."""
        dev = self.host("/dev")
        os.mkdir(dev)
        self.sys.mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=65536k")
        for node in DEV_NODES:
            if os.path.exists("/dev/" + node):
                open(f"{dev}/{node}", "w").close()
                self.sys.mount("/dev/" + node, f"{dev}/{node}", None, MS_BIND)
        for name, target in DEV_LINKS.items():
            os.symlink(target, f"{dev}/{name}")
        for name, fstype, options in (("pts", None, None), ("shm", "tmpfs", "mode=1777,size=65536k")):
            os.mkdir(f"{dev}/{name}")
            if fstype is None:
                self.sys.mount("/dev/pts", f"{dev}/pts", None, MS_BIND)
            else:
                self.sys.mount(fstype, f"{dev}/{name}", fstype, MS_NOSUID | MS_NODEV, options)

    def proc_sys_readonly(self) -> None:
        target = self.host("/proc/sys")
        if os.path.isdir(target):
            self.sys.mount(target, target, None, MS_BIND | MS_REC)
            self.sys.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)

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
        tmpfs itself, the overlays, the pod's private directories and its volumes."""
        if pod_path == "/":
            return True
        return any(pod_path == p or pod_path.startswith(p + "/") for p in self.owned if p != "/")

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
        self.overlays += 1
        upper, work = f"{self.layers}/{self.overlays}/upper", f"{self.layers}/{self.overlays}/work"
        os.makedirs(upper)
        os.makedirs(work)
        self.sys.mount("overlay", self.host(pod_dir), "overlay", 0,
                       f"lowerdir={lower},upperdir={upper},workdir={work}")
        self.owned.add(pod_dir)

    def bind(self, target: str, source: str, readonly: bool, owned: bool) -> None:
        target = self.resolve(target)
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
        if owned:
            self.owned.add(target)


def sandbox_init(config: dict) -> None:
    """Set up the namespaces and root described by `config`, then exec the holder."""
    sys_ = Syscalls()
    if config.get("join_netns"):
        sys_.setns(config["join_netns"], CLONE_NEWNET)
    flags = CLONE_NEWNS | CLONE_NEWIPC
    if config.get("new_uts"):
        flags |= CLONE_NEWUTS
    if config.get("new_net"):
        flags |= CLONE_NEWNET
    sys_.unshare(flags)
    sys_.mount(None, "/", None, MS_REC | MS_PRIVATE)
    builder = RootBuilder(sys_, config)
    builder.build()
    for mount in sorted(config.get("mounts", []), key=lambda m: m["target"].count("/")):
        builder.bind(mount["target"], mount["source"], mount.get("readonly", False), mount.get("owned", False))
    for directory in config.get("dirs", []):
        builder.ensure_dir(directory)
    if config.get("new_uts"):
        sys_.sethostname(config["hostname"])
    sys_.pivot_root(builder.root)


def _become_holder(request_id: str, config: dict) -> None:
    """In a fresh child of the spawner: set the sandbox up, report, exec the holder. With
    `new_pid` the holder is PID 1 of a new PID namespace: the first child forked after
    unshare(CLONE_NEWPID), reported by its parent (which alone knows its pid here)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    report = 1
    try:
        os.setsid()
        if config.get("new_pid"):
            report = _fork_pid_namespace_init(request_id)
        sandbox_init(config)
        holder = config["holder"]
        null = os.open("/dev/null", os.O_RDWR)
        os.write(report, f"{request_id} ok {os.getpid()}\n".encode())
        for fd in (0, 1, 2, report):
            os.dup2(null, fd)
        # Nothing else of the spawner's may live on in the holder: an inherited copy of the
        # spawner's stdout kept the agent waiting for EOF at stop (`down` took 10 s longer).
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.execv(holder[0], [HOLDER_NAME, *holder[1:]])
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


# what runc makes read-only in a container's /proc
READONLY_PROC_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# the holder's namespaces a container joins (the mount namespace last: paths are the agent's until then)
SANDBOX_NAMESPACES = (("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET), ("mnt", CLONE_NEWNS))


def _start_container(sys_: Syscalls, config: dict) -> tuple[int, int]:
    """Start a container's main process as a child of the agent (CLONE_PARENT: the agent
    reaps it and gets its exit code) and as PID 1 of a new PID namespace, or in the pod's
    (`pid_namespace`). Returns its pid and a pipe that ends once it has exec'd its program,
    carrying why not if it could not (`ContainerStarts` waits for it)."""
    error_read, error_write = os.pipe()
    flags = CLONE_PARENT | signal.SIGCHLD  # the exit signal goes to the agent
    own_pid_namespace = None
    pid = -1
    try:
        if config.get("pid_namespace"):
            own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY)
            sys_.setns(config["pid_namespace"], CLONE_NEWPID)  # for the next child only
        else:
            flags |= CLONE_NEWPID
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
    cgroup, the sandbox's IPC, UTS, network and mount namespaces, then a mount namespace of
    its own (private) where the pod's /proc is replaced by a fresh one for the container's
    PID namespace with runc's read-only paths, its working dir, and exec."""
    for number in (signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ):  # as Python found them
        signal.signal(number, signal.SIG_DFL)
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
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2 and int(name) != error_fd:
            try:
                os.close(int(name))
            except OSError:
                pass
    os.setsid()
    if config.get("tty_fd") is not None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if config.get("cgroup"):
        try:
            with open(os.path.join(config["cgroup"], "cgroup.procs"), "w") as procs:
                procs.write("0")
        except OSError:
            pass  # best effort, as cgroups are
    holder = config["holder_pid"]
    namespaces = [(name, nstype, os.open(f"/proc/{holder}/ns/{name}", os.O_RDONLY))
                  for name, nstype in SANDBOX_NAMESPACES]
    for name, nstype, fd in namespaces:
        sys_.setns_fd(fd, nstype, f"the pod's {name} namespace")
        os.close(fd)
    sys_.unshare(CLONE_NEWNS)
    sys_.mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates anywhere
    sys_.umount("/proc", MNT_DETACH)
    sys_.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for path in READONLY_PROC_PATHS:
        if os.path.lexists(path):
            sys_.mount(path, path, None, MS_BIND | MS_REC)
            sys_.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(config["working_dir"])
    os.execve(config["program"], config["argv"], config["env"])


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
                    _become_holder(request_id, config)


# ---- the agent's side ---------------------------------------------------------------------

HOSTS_HEADER = "# Kubernetes-managed hosts file."
HOSTS_BOILERPLATE = ("127.0.0.1\tlocalhost\n"
                     "::1\tlocalhost ip6-localhost ip6-loopback\n"
                     "fe00::0\tip6-localnet\n"
                     "fe00::0\tip6-mcastprefix\n"
                     "fe00::1\tip6-allnodes\n"
                     "fe00::2\tip6-allrouters\n")
MAX_DNS_SEARCH = 32
MAX_NAMESERVERS = 3


class SandboxError(Exception):
    """The sandbox could not be created (kubelet: FailedCreatePodSandBox)."""


def pod_hostname(pod: dict, cluster_domain: str) -> tuple[str, str | None]:
    """The pod's hostname (spec.hostname or the pod name, at most 63 characters) and, with
    spec.subdomain, its FQDN <hostname>.<subdomain>.<ns>.svc.<cluster domain>."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    hostname = spec.get("hostname") or meta.get("name", "")
    if len(hostname) > 63:
        hostname = hostname[:63].rstrip("-.")
    subdomain = spec.get("subdomain")
    fqdn = f"{hostname}.{subdomain}.{meta.get('namespace', 'default')}.svc.{cluster_domain}" if subdomain else None
    return hostname, fqdn


def hosts_file(pod: dict, pod_ip: str, cluster_domain: str, node_hosts: str = "") -> str:
    """/etc/hosts as the kubelet writes it (managedHostsFileContent); hostNetwork pods get the
    node's hosts file under a header."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        text = "# Kubernetes-managed hosts file (host network).\n" + node_hosts
    else:
        hostname, fqdn = pod_hostname(pod, cluster_domain)
        text = HOSTS_HEADER + "\n" + HOSTS_BOILERPLATE
        text += f"{pod_ip}\t{fqdn}\t{hostname}\n" if fqdn else f"{pod_ip}\t{hostname}\n"
    aliases = spec.get("hostAliases") or []
    if aliases:
        text += "\n# Entries added by HostAliases.\n"
        for alias in aliases:
            text += alias.get("ip", "") + "\t" + "\t".join(alias.get("hostnames") or []) + "\n"
    return text


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf."""
    servers, searches, options = [], [], []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            searches = fields[1:]
        elif fields[0] == "options":
            options += fields[1:]
    return servers, searches, options


def _merge_options(base: list[str], extra: list[dict]) -> list[str]:
    merged: dict[str, str] = {}
    for opt in base:
        name, _, value = opt.partition(":")
        merged[name] = opt
    for opt in extra:
        name = opt.get("name", "")
        merged[name] = f"{name}:{opt['value']}" if opt.get("value") is not None else name
    return list(merged.values())


def resolv_conf(pod: dict, cluster_dns: str, cluster_domain: str, node_resolv: str = "") -> str:
    """/etc/resolv.conf for the pod's dnsPolicy (ClusterFirst, ClusterFirstWithHostNet,
    Default, None) and dnsConfig, as the kubelet's DNS configurer builds it."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    host_servers, host_search, host_options = parse_resolv_conf(node_resolv)
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        ns = (pod.get("metadata") or {}).get("namespace", "default")
        servers = [cluster_dns]
        searches = [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain] + host_search
        options = ["ndots:5"]
    elif policy == "Default":
        servers, searches, options = host_servers, list(host_search), list(host_options)
    else:
        servers, searches, options = [], [], []
    config = spec.get("dnsConfig") or {}
    servers = list(dict.fromkeys(servers + list(config.get("nameservers") or [])))[:MAX_NAMESERVERS]
    searches = list(dict.fromkeys(searches + list(config.get("searches") or [])))[:MAX_DNS_SEARCH]
    options = _merge_options(options, config.get("options") or [])
    lines = []
    if searches:
        lines.append("search " + " ".join(searches))
    lines += [f"nameserver {server}" for server in servers]
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


class Ipam:
    """Pod IPs of the node's /24 (host-local style: round robin from .2, .1 is the gateway),
    persisted as {ip: uid} so a restarted agent never hands out an IP a live pod holds."""

    def __init__(self, path: str, cidr: str):
        import ipaddress

        self.path = path
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.gateway = str(self.network.network_address + 1)
        self.prefix_len = self.network.prefixlen
        self.allocations: dict[str, str] = {}
        self.last = ""
        if os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            self.allocations = dict(saved.get("allocations") or {})
            self.last = saved.get("last", "")

    def _save(self) -> None:
        write_atomic(self.path, json.dumps({"allocations": self.allocations, "last": self.last}).encode())

    def _candidates(self) -> list[str]:
        hosts = [str(ip) for ip in self.network.hosts()][1:]  # skip the gateway
        if self.last in hosts:
            start = hosts.index(self.last) + 1
            hosts = hosts[start:] + hosts[:start]
        return hosts

    def allocate(self, uid: str) -> str:
        for ip, owner in self.allocations.items():
            if owner == uid:
                return ip
        for ip in self._candidates():
            if ip not in self.allocations:
                self.allocations[ip] = uid
                self.last = ip
                self._save()
                return ip
        raise SandboxError(f"failed to allocate an IP for the pod: the range {self.network} is exhausted")

    def release(self, uid: str) -> None:
        kept = {ip: owner for ip, owner in self.allocations.items() if owner != uid}
        if kept != self.allocations:
            self.allocations = kept
            self._save()

    def retain(self, uids: set[str]) -> None:
        """Forget every allocation whose pod is not in `uids` (after adoption)."""
        kept = {ip: owner for ip, owner in self.allocations.items() if owner in uids}
        if kept != self.allocations:
            self.allocations = kept
            self._save()


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def process_start_ticks(pid: int) -> int | None:
    """A process's start time (clock ticks since boot): with the pid, it names a process
    for good, even if the pid is reused later. None for a process that is gone, a zombie
    or exiting (the init of a PID namespace exits only once the others are reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X") or int(fields[6]) & PF_EXITING:
        return None
    return int(fields[19])


def process_alive(pid: int, start_ticks: int | None) -> bool:
    return pid > 0 and start_ticks is not None and process_start_ticks(pid) == start_ticks


def remove_tree(path: str) -> None:
    """rm -rf that never crosses into a mount point (a pod's mounts live in its own mount
    namespace, but this stays safe even if one were visible here)."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    if os.path.ismount(path):
        return
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            remove_tree(entry.path)
        else:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def veth_name(uid: str) -> str:
    import hashlib

    return "veth" + hashlib.sha256(uid.encode()).hexdigest()[:8]


class SandboxInfo:
    """A live sandbox, as persisted in pods/<uid>/sandbox.json."""

    FIELDS = ("uid", "name", "namespace", "holder_pid", "holder_start", "ip", "veth", "host_network", "created",
              "shared_pid_namespace")

    def __init__(self, **values):
        for name in self.FIELDS:
            setattr(self, name, values.get(name))

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}

    def alive(self) -> bool:
        return process_alive(self.holder_pid or 0, self.holder_start)

    @property
    def netns_path(self) -> str:
        return f"/proc/{self.holder_pid}/ns/net"

    @property
    def root_path(self) -> str:
        return f"/proc/{self.holder_pid}/root"

    @property
    def pid_namespace_path(self) -> str | None:
        """The pod's PID namespace (shareProcessNamespace), None when each container has its own."""
        return f"/proc/{self.holder_pid}/ns/pid" if self.shared_pid_namespace else None


def _kill_unwanted(answer: "asyncio.Future[str]") -> None:
    """The answer to a request given up on (cancelled, timed out): kill what it started."""
    status, _, detail = ("" if answer.cancelled() else answer.result()).partition(" ")
    pid = detail.split(" ", 1)[0]
    if not pid.isdigit() or int(pid) <= 0:
        return
    if status == "ok":
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.waitpid(int(pid), 0)  # a container's process is this process' child
    except ChildProcessError:
        pass


class Spawner:
    """The agent's side of the sandbox spawner process (started on first use, and again
    if it died)."""

    def __init__(self):
        self.proc = None
        self.pending: dict[str, object] = {}
        self.counter = 0
        self.reader = None
        self.starting = None

    async def _ensure(self) -> None:
        import asyncio

        if self.starting is None:
            self.starting = asyncio.Lock()
        async with self.starting:  # one spawner, however many pods ask at once
            if self.proc is not None and self.proc.returncode is None and not self.proc.stdout.at_eof():
                return
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", os.path.abspath(__file__), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            self.reader = asyncio.create_task(self._read(self.proc), name="sandbox-spawner")

    async def _read(self, proc) -> None:
        while line := await proc.stdout.readline():
            request_id, _, rest = line.decode(errors="replace").strip().partition(" ")
            future = self.pending.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result(rest)
        for future in self.pending.values():
            if not future.done():
                future.set_result("error the sandbox spawner exited")
        self.pending.clear()

    async def _request(self, config: dict) -> tuple[str, str]:
        """Send one request; returns the answer's status ("ok" or "error") and the rest."""
        import asyncio

        await self._ensure()
        self.counter += 1
        request_id = str(self.counter)
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        self.proc.stdin.write(f"{request_id} {json.dumps(config)}\n".encode())
        try:
            await self.proc.stdin.drain()
            answer = await asyncio.wait_for(asyncio.shield(future), 30)
        except BaseException:
            future.add_done_callback(_kill_unwanted)  # what starts after all must not live on
            raise
        status, _, detail = answer.partition(" ")
        return status, detail

    async def spawn(self, config: dict) -> int:
        """Start a holder for `config`; returns its pid."""
        status, detail = await self._request(config)
        if status != "ok":
            raise SandboxError("failed to create pod sandbox: " + detail)
        return int(detail)

    async def start_container(self, config: dict) -> int:
        """Start a container's main process (`_start_container`: holder_pid, pid_namespace,
        program, argv, env, working_dir, cgroup, log_path, stdin_fd / tty_fd: fds of this
        process, open until this returns); returns its pid, a child of this process. Raises
        OSError with the reason it could not start (a failed child is reaped here)."""
        status, detail = await self._request({**config, "kind": "container", "agent_pid": os.getpid()})
        if status == "ok":
            return int(detail)
        pid, _, message = detail.partition(" ")
        if not pid.isdigit():
            raise OSError(detail)
        if int(pid) > 0:
            try:
                os.waitpid(int(pid), 0)
            except ChildProcessError:
                pass
        raise OSError(message)

    async def close(self) -> None:
        """Stop the spawner (the holders it started keep running)."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.stdin.close()
            await self.proc.wait()
        if self.reader is not None:
            await self.reader
        self.proc = None


class SandboxManager:
    """Creates, finds and removes the sandboxes of one node."""

    def __init__(self, *, state_dir: str, node_ip: str, pod_cidr: str, netns: str | None,
                 cluster_dns: str, cluster_domain: str):
        self.state_dir = state_dir
        self.pods_dir = os.path.join(state_dir, "pods")
        os.makedirs(self.pods_dir, exist_ok=True)
        self.node_ip = node_ip
        self.netns = netns
        self.cluster_dns = cluster_dns
        self.cluster_domain = cluster_domain
        self.ipam = Ipam(os.path.join(state_dir, "ipam.json"), pod_cidr)
        self.spawner = Spawner()

    # paths
    def pod_dir(self, uid: str) -> str:
        return os.path.join(self.pods_dir, uid)

    def node_netns_path(self) -> str | None:
        return f"/run/netns/{self.netns}" if self.netns else None

    # files the pod sees
    def write_dns_files(self, pod: dict, ip: str) -> dict[str, str]:
        """resolv.conf, hosts and hostname of the pod, in its state dir; returns pod path -> file."""
        etc = os.path.join(self.pod_dir(pod["metadata"]["uid"]), "etc")
        os.makedirs(etc, exist_ok=True)
        hostname, _ = pod_hostname(pod, self.cluster_domain)
        if (pod.get("spec") or {}).get("hostNetwork"):
            hostname = _read("/proc/sys/kernel/hostname").strip()
        files = {
            "/etc/resolv.conf": resolv_conf(pod, self.cluster_dns, self.cluster_domain, _read("/etc/resolv.conf")),
            "/etc/hosts": hosts_file(pod, ip, self.cluster_domain, _read("/etc/hosts")),
            "/etc/hostname": hostname + "\n",
        }
        paths = {}
        for pod_path, content in files.items():
            host_path = os.path.join(etc, os.path.basename(pod_path))
            write_atomic(host_path, content.encode())
            paths[pod_path] = host_path
        return paths

    async def create(self, pod: dict, mounts: list[dict], dirs: list[str], top: list[dict]) -> SandboxInfo:
        """Start the holder with the pod's namespaces and root, then wire its network.
        `mounts`: [{target, source, readonly, owned}] bind mounts; `dirs`: pod directories
        that must exist (working dirs); `top`: [{target, source, readonly}] replacements of
        top-level directories."""
        import asyncio

        meta = pod["metadata"]
        uid = meta["uid"]
        host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        shared_pids = bool((pod.get("spec") or {}).get("shareProcessNamespace"))
        pod_dir = self.pod_dir(uid)
        for sub in ("root", "tmp", "run", "overlay"):
            os.makedirs(os.path.join(pod_dir, sub), exist_ok=True)
        os.chmod(os.path.join(pod_dir, "tmp"), 0o1777)
        ip = self.node_ip if host_network else self.ipam.allocate(uid)
        dns_files = self.write_dns_files(pod, ip)
        hostname, _ = pod_hostname(pod, self.cluster_domain)
        all_mounts = [{"target": t, "source": s, "readonly": False, "owned": False} for t, s in dns_files.items()]
        all_mounts += _interpreter_mounts() + mounts
        config = {
            "root": os.path.join(pod_dir, "root"),
            "overlay_dir": os.path.join(pod_dir, "overlay"),
            "new_net": not host_network,
            "new_uts": not host_network,
            "join_netns": self.node_netns_path() if host_network else None,
            "fresh_sysfs": not host_network,
            "hostname": hostname,
            "top": [{"target": "/tmp", "source": os.path.join(pod_dir, "tmp")},
                    {"target": "/run", "source": os.path.join(pod_dir, "run")}] + top,
            "mounts": all_mounts,
            "dirs": dirs,
            "new_pid": shared_pids,
            "holder": ([host_program("sh"), "-c", REAPER_SCRIPT.format(sleep=host_program("sleep"))] if shared_pids
                       else [host_program("sleep"), "infinity"]),
        }
        info = SandboxInfo(uid=uid, name=meta.get("name"), namespace=meta.get("namespace"), ip=ip,
                           veth=None if host_network else veth_name(uid), host_network=host_network,
                           created=_now(), shared_pid_namespace=shared_pids)
        try:
            info.holder_pid = await self.spawner.spawn(config)
            info.holder_start = process_start_ticks(info.holder_pid)
            if not host_network:
                await self._wire_network(info)
        except BaseException as exc:
            await self.destroy(info)
            if isinstance(exc, (SandboxError, asyncio.CancelledError)):
                raise
            raise SandboxError(str(exc)) from None
        write_atomic(os.path.join(pod_dir, "sandbox.json"), json.dumps(info.to_dict()).encode())
        return info

    async def _wire_network(self, info: SandboxInfo) -> None:
        """veth on cni0 (hairpin, up), eth0 in the pod with its IP, lo up, default route via
        the gateway: netlink requests from a thread (netlink.py), no `ip` forks."""
        import asyncio

        from pocketkube.node import netlink

        try:
            await asyncio.get_running_loop().run_in_executor(
                None, netlink.wire_pod, self.node_netns_path(), info.netns_path, info.holder_pid, info.veth,
                "cni0", info.ip, self.ipam.prefix_len, self.ipam.gateway)
        except OSError as exc:
            raise SandboxError(f"failed to set up the pod network: {exc.strerror or exc}") from None

    async def destroy(self, info: SandboxInfo) -> None:
        """Kill the holder (its namespaces and veth go with it once the containers are
        gone), release the IP and remove the sandbox's files (not the logs)."""
        import asyncio

        if info.holder_pid and info.alive():
            try:
                os.kill(info.holder_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for _ in range(200):
                if not info.alive():
                    break
                await asyncio.sleep(0.005)
        if not info.host_network:
            if info.veth:  # the kernel removes it with the namespace, but asynchronously
                import logging

                from pocketkube.node import netlink

                try:
                    netlink.delete_link(self.node_netns_path(), info.veth)
                except OSError as exc:
                    logging.getLogger(__name__).warning("removing %s: %s", info.veth, exc)
            self.ipam.release(info.uid)
        pod_dir = self.pod_dir(info.uid)
        for sub in ("root", "tmp", "run", "overlay", "etc", "volumes", "containers", "sandbox.json"):
            remove_tree(os.path.join(pod_dir, sub))

    def load(self, uid: str) -> SandboxInfo | None:
        try:
            with open(os.path.join(self.pod_dir(uid), "sandbox.json")) as f:
                return SandboxInfo(**json.load(f))
        except (OSError, ValueError):
            return None

    def known_uids(self) -> list[str]:
        return sorted(name for name in os.listdir(self.pods_dir) if os.path.isdir(os.path.join(self.pods_dir, name)))


def _interpreter_mounts() -> list[dict]:
    """The project's interpreter and code stay visible in a pod when they live under /tmp or
    /run (which pods get privately): the bundled image programs run with them."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)), here}
    mounts = []
    for path in sorted(paths):
        if path.startswith(("/tmp/", "/run/")) and not any(path.startswith(m["target"] + "/") for m in mounts):
            mounts.append({"target": path, "source": path, "readonly": True, "owned": False})
    return mounts


def host_program(program: str) -> str:
    import shutil

    found = shutil.which(program, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if found is None:
        raise SandboxError(f"{program} is not installed")
    return found


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


if __name__ == "__main__":
    sys.exit(spawner_main())
