"""`pocketkube up | down | status`: a whole cluster on this machine, as kind does it.

`up` makes the node network (node/network.py) and starts the cluster's supervisor
(cli/supervisor.py), which starts `pocketkube server` in the host namespace and one
`pocketkube agent` per node inside that node's namespace (each a daemon in its own session,
with a pid file and a log file under the data dir) and starts again any of them that dies.
`up` waits with a progress display until every node is Ready, and merges a
`pocketkube-NAME` context into the user's kubeconfig. `down` stops all of it (the
supervisor, agents, server, then every process left in the cluster's namespaces), removes
the network, the data it made and the context. `status` says what runs and how often it
was restarted.

Several clusters run at once: `up` chooses each one's node, pod, service and load-balancer
ranges from free space (core/ranges.py, around the host's routes and addresses and the other
records' ranges) and an API port; `status` and `down --all` cover every cluster.

Files: /run/pocketkube/NAME.json records a cluster (data dir, nodes, port, its address ranges:
the one place every component's ranges come from) while it exists;
DATA_DIR (default /var/lib/pocketkube/NAME) holds .pocketkube-cluster (the name, so a data dir
is never mistaken for another's), server/ (the API server's data dir), nodes/<node>/ (agent
state, kubeconfig, agent.log), run/*.pid ("PID STARTTIME", so a reused PID is never
signalled), run/processes.json and run/supervisor.json (the supervisor's), server.log,
supervisor.log; with `--datastore etcd` also etcd/ (the member's data), etcd.log and the
member's unix socket `etcd.sock:0` (its local client listener, see below).

`--datastore etcd`: the supervisor runs one etcd member (Debian's etcd-server) before the
server, serving clients on https://127.0.0.1:2379 (another free port if that one is taken)
with certificates from its own CA (server/pki/etcd/, kubeadm's layout; the server connects
with server/pki/apiserver-etcd-client.*, and etcd requires such a client certificate). Its
peer URL stays on loopback, plain HTTP: one member has no peers. `--etcd-members 3` runs
three members (processes etcd-0..2, data in etcd/member-N, logs etcd-N.log; client ports
2379, 22379, 32379 and peer ports 2380, 22380, 32380 as etcd's own local-cluster example,
others when taken) that talk to each other over TLS with server/pki/etcd/peer.* (each member
checks its peer's certificate against the etcd CA), and the server is given all three.
Each member also listens on a unix socket in the data dir (etcd.sock:0, etcd-N.sock:0; etcd
wants host:port in a unix URL and makes the socket relative to its working directory, which
is the data dir): the API server on this machine reaches etcd there, without TLS, whose boundary
is the data dir's mode 0700 (docs/adr/0016, 0026). etcdctl and any other client keep the HTTPS URL.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field

from pocketkube import addons
from pocketkube.cli import supervisor
from pocketkube.cli.helptext import examples
from pocketkube.cli.supervisor import live_pid, write_file as _write_file
from pocketkube.core import cluster as names
from pocketkube.core.linux import proc_stat
from pocketkube.core import ranges as cluster_ranges
from pocketkube.core.lbpool import ingress_ips
from pocketkube.node import network
from pocketkube.node import pods as node_pods
from pocketkube.node import sandbox as node_sandbox
from pocketkube.node.network import ClusterNetwork

REGISTRY_DIR = "/run/pocketkube"
DATA_ROOT = "/var/lib/pocketkube"
MARKER = ".pocketkube-cluster"
AGENT_COMMAND = (sys.executable, "-m", "pocketkube.cli.main", "agent")
NODE_TOKEN_SECONDS = 365 * 24 * 3600  # as long as kubeadm's kubelet client certificates
SERVER_COMMAND = (sys.executable, "-m", "pocketkube.cli.main", "server")
DEFAULT_API_PORT = 6443  # kubeadm's; another free port when a cluster already has it
ETCD_BINARY = "etcd"
ETCD_CLIENT_PORT, ETCD_PEER_PORT = 2379, 2380  # etcd's (and kubeadm's) defaults, when free
ETCD_UNIX = "unix://"
UNIX_PATH_MAX = 107  # Linux's sun_path holds 108 bytes with the terminating NUL
ETCD_MEMBER_PORTS = (2379, 22379, 32379)  # clients' (peers': +1) of a three-member cluster, etcd's Procfile's
SUPERVISOR_COMMAND = (sys.executable, "-m", "pocketkube.cli.supervisor")
LB_COMMAND = (sys.executable, "-m", "pocketkube.cli.main", "apiserver-lb")
SUPERVISOR_START_SECONDS = 10.0
STOP_GRACE_SECONDS = 10.0  # SIGTERM, then this long, then SIGKILL
POLL_SECONDS = 0.05


class UpError(Exception):
    """A reason to stop with a message and exit code 1."""


# ---- the record of a cluster ----------------------------------------------------------


@dataclass(frozen=True)
class EtcdMember:
    process: str  # the supervisor's name for it
    name: str  # etcd's --name
    client_url: str
    peer_url: str
    data_dir: str
    log: str
    socket: str  # its unix socket listener (etcd_socket's name), in the cluster's data dir

    @property
    def socket_url(self) -> str:
        return ETCD_UNIX + self.socket


@dataclass
class ClusterRecord:
    name: str
    data_dir: str
    nodes: int
    port: int
    lb_range: str = cluster_ranges.DEFAULTS.lb_range
    datastore: str = "sqlite"  # or "etcd"
    # The cluster's address ranges, chosen by `up` (core/ranges.py): every component reads them
    # from here (records written before there was a choice have the defaults).
    node_subnet: str = cluster_ranges.DEFAULTS.node_cidr
    pod_cidr: str = cluster_ranges.DEFAULTS.pod_cidr
    service_cidr: str = cluster_ranges.DEFAULTS.service_cidr
    etcd_url: str = ""  # etcd's (first member's) client URL, with the etcd datastore
    etcd_peer_url: str = ""
    etcd_urls: list[str] = field(default_factory=list)  # every member's, with --etcd-members > 1
    etcd_peer_urls: list[str] = field(default_factory=list)
    # This machine's address other machines reach (`up --advertise-address`; a joined machine's
    # own address): the API server listens there and the VXLAN overlay runs from it.
    advertise_address: str = ""
    # A joined machine (`pocketkube join`, cli/join.py): the API server's URL, and its one node.
    joined: str = ""
    node_index: int = 0
    node_name: str = ""
    # `up --api-servers N` (N > 1, etcd only): the servers' own ports on 127.0.0.1; `port` is then
    # the apiserver-lb's in front of them (cli/apilb.py), the one URL everything uses.
    api_ports: list[int] = field(default_factory=list)

    @staticmethod
    def path(name: str) -> str:
        return os.path.join(REGISTRY_DIR, f"{name}.json")

    @classmethod
    def load(cls, name: str) -> ClusterRecord | None:
        try:
            with open(cls.path(name)) as f:
                return cls(**json.load(f))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def save(self) -> None:
        os.makedirs(REGISTRY_DIR, exist_ok=True)
        _write_file(self.path(self.name), json.dumps(asdict(self)) + "\n")

    def remove(self) -> None:
        _remove(self.path(self.name))

    @property
    def ranges(self) -> cluster_ranges.Ranges:
        d = cluster_ranges.DEFAULTS  # (an empty field: the default)
        return cluster_ranges.Ranges(self.node_subnet or d.node_cidr, self.pod_cidr or d.pod_cidr,
                                     self.service_cidr or d.service_cidr, self.lb_range or d.lb_range)

    @property
    def network(self) -> ClusterNetwork:
        if not self.joined:
            return ClusterNetwork.of(self.name, self.nodes, self.ranges)
        r, net = self.ranges, ipaddress.IPv4Network
        return ClusterNetwork(self.name, self.node_index, node_subnet=net(r.node_cidr), pod_cidr=net(r.pod_cidr),
                              service_cidr=net(r.service_cidr), lb_range=r.lb_range, only=(self.node_index,))

    @property
    def server_dir(self) -> str:
        return os.path.join(self.data_dir, "server")

    @property
    def etcd_dir(self) -> str:
        return os.path.join(self.data_dir, "etcd")

    @property
    def etcd_log(self) -> str:
        return os.path.join(self.data_dir, "etcd.log")

    def etcd_members(self) -> list[EtcdMember]:
        """The cluster's etcd members: none (SQLite), "etcd" alone, or etcd-0, etcd-1, ..."""
        if self.datastore != "etcd":
            return []
        if len(self.etcd_urls) <= 1:
            return [EtcdMember("etcd", self.name, self.etcd_url, self.etcd_peer_url, self.etcd_dir, self.etcd_log,
                               os.path.join(self.data_dir, etcd_socket("etcd")))]
        return [EtcdMember(f"etcd-{i}", f"{self.name}-{i}", url, peer, os.path.join(self.etcd_dir, f"member-{i}"),
                           os.path.join(self.data_dir, f"etcd-{i}.log"), os.path.join(self.data_dir, etcd_socket(f"etcd-{i}")))
                for i, (url, peer) in enumerate(zip(self.etcd_urls, self.etcd_peer_urls))]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def api_servers(self) -> list[tuple[str, int, str]]:
        """(process name, port, log) of each API server: "server" alone, or server-0, server-1, ..."""
        if len(self.api_ports) <= 1:
            return [("server", self.port, self.server_log)]
        return [(f"server-{i}", port, os.path.join(self.data_dir, f"server-{i}.log"))
                for i, port in enumerate(self.api_ports)]

    @property
    def lb_log(self) -> str:
        return os.path.join(self.data_dir, "apiserver-lb.log")

    def node_dir(self, node: network.NodeNetwork) -> str:
        return os.path.join(self.data_dir, "nodes", node.name)

    @property
    def run_dir(self) -> str:
        return os.path.join(self.data_dir, "run")

    def pid_file(self, process: str) -> str:
        return os.path.join(self.run_dir, f"{process}.pid")

    @property
    def supervisor_log(self) -> str:
        return os.path.join(self.data_dir, "supervisor.log")

    @property
    def server_log(self) -> str:
        return os.path.join(self.data_dir, "server.log")

    def agent_log(self, node: network.NodeNetwork) -> str:
        return os.path.join(self.node_dir(node), "agent.log")


def known_clusters() -> list[str]:
    try:
        return sorted(f[:-5] for f in os.listdir(REGISTRY_DIR) if f.endswith(".json"))
    except FileNotFoundError:
        return []


def default_data_dir(name: str) -> str:
    return os.path.join(DATA_ROOT, name)


# ---- processes -------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    _reap(pid)
    return supervisor.start_time(pid) is not None


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our child (`up` run in-process, as tests do)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def descendants(roots: set[int]) -> set[int]:
    """Every process below `roots` in the process tree (pods an agent started, their children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(entry)
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal(pid: int, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_processes(pids: set[int], group_leaders: set[int], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM (to the whole process group for `group_leaders`), wait up to `grace`, SIGKILL."""
    for pid in pids:
        _signal(pid, signal.SIGTERM, pid in group_leaders)
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    for pid in pids:
        if _alive(pid):
            _signal(pid, signal.SIGKILL, pid in group_leaders)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)


# ---- the API, as the CLI sees it -------------------------------------------------------


def _api_get(record: ClusterRecord, path: str, timeout: float = 2.0) -> dict:
    ctx = ssl.create_default_context(cafile=os.path.join(record.server_dir, "pki", "ca.crt"))
    with open(os.path.join(record.server_dir, "token")) as f:
        token = f.read().strip()
    req = urllib.request.Request(record.url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
        return json.load(resp)


def node_ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


# ---- kubeconfigs -----------------------------------------------------------------------


def context_name(name: str) -> str:
    return f"pocketkube-{name}"


def user_kubeconfig_path() -> str:
    """$KUBECONFIG's first file, else ~/.kube/config (as kubectl picks the file to write)."""
    for entry in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry:
            return entry
    return os.path.join(os.path.expanduser("~"), ".kube", "config")


def kubeconfig_dict(name: str, server: str, ca_pem: bytes, token: str) -> dict:
    """A kubeconfig with cluster, user and context all named `name`."""
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {"certificate-authority-data": base64.b64encode(ca_pem).decode(),
                                                 "server": server}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def merge_kubeconfig(config: dict, entry: dict) -> dict:
    """`config` with `entry`'s cluster, user and context added or replaced (same names), and
    its current context made current; other entries untouched."""
    merged = dict(config or {})
    merged.setdefault("apiVersion", "v1")
    merged.setdefault("kind", "Config")
    merged.setdefault("preferences", {})
    for key in ("clusters", "users", "contexts"):
        new = entry[key][0]
        merged[key] = [e for e in (merged.get(key) or []) if e.get("name") != new["name"]] + [new]
    merged["current-context"] = entry["current-context"]
    return merged


def remove_from_kubeconfig(config: dict, name: str) -> tuple[dict, bool]:
    """`config` without the cluster, user and context called `name` (the current context is
    unset if it was that one, as `kind delete` does); and whether anything was removed."""
    result = dict(config or {})
    removed = False
    for key in ("clusters", "users", "contexts"):
        kept = [e for e in (result.get(key) or []) if e.get("name") != name]
        removed |= len(kept) != len(result.get(key) or [])
        result[key] = kept
    if result.get("current-context") == name:
        result["current-context"] = ""
        removed = True
    return result, removed


def _edit_kubeconfig(path: str, edit) -> None:
    """Apply `edit(config) -> config | None` to a kubeconfig file under a lock (None: leave it)."""
    import yaml

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as f:
                config = yaml.safe_load(f) or {}
        except FileNotFoundError:
            config = None
        result = edit(config)
        if result is not None:
            _write_file(path, yaml.safe_dump(result, default_flow_style=False, sort_keys=False), private=True)
    _remove(path + ".lock")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# ---- progress ----------------------------------------------------------------------------


class Progress:
    """One line per step. On a terminal the current step is rewritten in place (with a
    spinner) and ends with ✓ or ✗; otherwise plain lines: a step's outcome, and the
    changes of a counting step (nodes Ready 1/2, ...) as they come."""

    SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, out) -> None:
        self.out = out
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.text = ""  # the current step's text, "" between steps
        self.tick = 0

    def show(self, text: str) -> None:
        if self.tty:
            self.tick += 1
            self.out.write(f"\r\033[K {self.SPINNER[self.tick % len(self.SPINNER)]} {text}")
        elif self.text and text != self.text:
            self.out.write(f" {text}\n")
        self.text = text
        self.out.flush()

    def done(self, text: str | None = None, mark: str = "✓") -> None:
        text = text or self.text
        self.out.write(f"\r\033[K {text} {mark}\n" if self.tty else f" {text} {mark}\n")
        self.out.flush()
        self.text = ""

    def fail(self) -> None:
        self.done(mark="✗")


# ---- up ----------------------------------------------------------------------------------


@dataclass
class UpOptions:
    name: str = names.DEFAULT_NAME
    nodes: int = 1
    data_dir: str | None = None
    port: int | None = None  # the API server's (None: 6443, or a free one when that is taken)
    wait: float = 60.0
    kubeconfig: str | None = None  # the user's kubeconfig to merge into (None: $KUBECONFIG or ~/.kube/config)
    agent_command: tuple[str, ...] = AGENT_COMMAND
    disable: tuple[str, ...] = ()  # built-in add-ons not to apply
    proxy_mode: str = "nftables"
    lb_range: str | None = None  # the load-balancer pool, inside the node network (None: chosen with it)
    node_cidr: str | None = None  # the ranges (None: chosen from free space, core/ranges.py)
    pod_cidr: str | None = None
    service_cidr: str | None = None
    addons: tuple[str, ...] = ()  # optional add-ons to apply too (addons.OPTIONAL)
    datastore: str = "sqlite"  # or "etcd": an etcd member started for the cluster
    etcd_members: int = 1  # with the etcd datastore: 1 or 3 members
    api_servers: int = 1  # with the etcd datastore: 1..3 servers (leader-elected controllers) behind apiserver-lb
    advertise_address: str = ""  # other machines join through this address (cli/join.py)


def require_root(command: str) -> None:
    if not sys.platform.startswith("linux"):
        raise UpError(f"pocketkube {command} runs on Linux only (it uses network namespaces)")
    if os.geteuid() != 0:
        raise UpError(f"pocketkube {command} needs root: it creates network namespaces, a bridge and routes. "
                      f"Run it as root (e.g. `sudo pocketkube {command}`).")


def require_pause_program(command: str) -> None:
    """Every pod's sandbox runs this machine's pause program (catatonit): without it no pod
    starts, so say so before making anything."""
    try:
        node_sandbox.host_program(node_sandbox.PAUSE_PROGRAM)
    except node_sandbox.SandboxError:
        raise UpError(f"pocketkube {command} needs {node_sandbox.PAUSE_PROGRAM}, every pod's pause process "
                      f"(apt-get install {node_sandbox.PAUSE_PROGRAM}; scripts/setup installs it)") from None


def cluster_processes(record: ClusterRecord) -> dict[str, int]:
    """The server's and agents' PIDs that still run, by process name."""
    names = [m.process for m in record.etcd_members()] + ([] if record.joined else [s[0] for s in record.api_servers()])
    names += ["apiserver-lb"] if len(record.api_ports) > 1 else []
    names += [f"agent-{n.name}" for n in record.network.node_list()]
    names += ["overlay"] if record.advertise_address else []
    return {n: pid for n in names if (pid := live_pid(record.pid_file(n)))}


def supervisor_pid(record: ClusterRecord) -> int | None:
    """The cluster's supervisor, if it runs."""
    return live_pid(record.pid_file("supervisor"))


@contextlib.contextmanager
def machine_lock():
    """One `up` or `down` at a time on this machine: each chooses its ranges from what the
    others hold and holds them before the next one looks."""
    os.makedirs(REGISTRY_DIR, exist_ok=True)
    with open(os.path.join(REGISTRY_DIR, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(opts: UpOptions, out=sys.stdout) -> int:
    """`pocketkube up`: returns the exit code; messages go to `out`; raises UpError (or
    ValueError, NetworkError) with the message to print."""
    started = time.monotonic()
    check_datastore_options(opts)
    require_root("up")
    require_pause_program("up")
    names.validate_cluster_name(opts.name)
    ClusterNetwork(opts.name, opts.nodes)  # the node count, checked before anything is done
    with machine_lock():
        return _up(opts, out, started)


def check_datastore_options(opts: UpOptions) -> None:
    """What only the etcd datastore allows."""
    if opts.datastore != "etcd":
        if opts.etcd_members != 1:
            raise UpError("--etcd-members needs --datastore etcd")
        if opts.api_servers > 1:
            raise UpError("--api-servers > 1 needs --datastore etcd (several servers share one etcd; "
                          "SQLite is one server's own file)")
    if not 1 <= opts.api_servers <= 3:
        raise UpError("--api-servers is 1, 2 or 3")


def _up(opts: UpOptions, out, started: float) -> int:
    _refuse_if_running(opts.name)
    found = leftovers(opts.name)
    if found:
        out.write(f"Cleaning up what a previous run of cluster {opts.name!r} left behind ({', '.join(found)})\n")
        teardown(opts.name, kubeconfig=None)
    chosen, notes = cluster_ranges.choose(taken_ranges(opts.name), opts.node_cidr, opts.pod_cidr,
                                          opts.service_cidr, opts.lb_range)
    net = ClusterNetwork.of(opts.name, opts.nodes, chosen)
    port = _api_port(opts.port)
    out.write(f"Address ranges: {cluster_ranges.describe(chosen)}\n")
    for note in notes:
        out.write(f"  {note}\n")
    record = ClusterRecord(opts.name, os.path.abspath(opts.data_dir or default_data_dir(opts.name)), opts.nodes,
                           port, net.lb_range, opts.datastore, node_subnet=chosen.node_cidr,
                           pod_cidr=chosen.pod_cidr, service_cidr=chosen.service_cidr,
                           advertise_address=opts.advertise_address)
    if opts.datastore == "etcd":
        if shutil.which(ETCD_BINARY) is None:
            raise UpError("--datastore etcd needs etcd (apt-get install etcd-server)")
        if opts.etcd_members == 1:
            record.etcd_url = f"https://127.0.0.1:{_free_port(ETCD_CLIENT_PORT)}"
            record.etcd_peer_url = f"http://127.0.0.1:{_free_port(ETCD_PEER_PORT)}"
        else:
            clients = _free_ports(ETCD_MEMBER_PORTS[:opts.etcd_members])
            peers = _free_ports([p + 1 for p in ETCD_MEMBER_PORTS[:opts.etcd_members]], taken=set(clients))
            record.etcd_urls = [f"https://127.0.0.1:{p}" for p in clients]
            record.etcd_peer_urls = [f"https://127.0.0.1:{p}" for p in peers]
            record.etcd_url, record.etcd_peer_url = record.etcd_urls[0], record.etcd_peer_urls[0]
        longest = max(len(m.socket.encode()) for m in record.etcd_members())
        if longest > UNIX_PATH_MAX:
            raise UpError(f"data dir {record.data_dir} is too long for etcd's unix socket in it "
                          f"({longest} bytes, at most {UNIX_PATH_MAX}); pick a shorter --data-dir")
    if opts.api_servers > 1:
        record.api_ports = _free_ports([port + 1 + i for i in range(opts.api_servers)], taken={port})
    prepare_data_dir(record)
    record.save()
    progress = Progress(out)
    try:
        progress.show("Creating node network")
        network.create_network(net)
        progress.done()
        ca_pem, token = _write_credentials(record)
        _start_processes(record, ca_pem, token, opts.agent_command)
        _wait_until_ready(record, progress, opts.wait)
        wanted = [a for a in addons.ADDONS if a not in opts.disable] + [a for a in opts.addons if a not in opts.disable]
        if wanted:
            progress.show("Applying add-ons (" + ", ".join(wanted) + ")")
            _apply_addons(record, wanted, opts.proxy_mode)
            progress.done()
        join_command = ""
        if record.advertise_address:
            from pocketkube.cli import join

            progress.show("Making a bootstrap token for nodes of other machines")
            join_command = join.prepare_cluster(record)
            progress.done()
    except BaseException:
        if progress.text:
            progress.fail()
        _stop_cluster_processes(record)
        network.delete_network(cluster_inventory(record.name))
        record.remove()
        raise
    kubeconfig = opts.kubeconfig or user_kubeconfig_path()
    entry = kubeconfig_dict(context_name(record.name), record.url, ca_pem, token)
    _edit_kubeconfig(kubeconfig, lambda config: merge_kubeconfig(config, entry))
    _print_ready(out, record, time.monotonic() - started, kubeconfig, join_command)
    return 0


def _refuse_if_running(name: str) -> None:
    record = ClusterRecord.load(name)
    if record and (cluster_processes(record) or supervisor_pid(record)):
        raise UpError(f"cluster {name!r} is already running; `pocketkube down --name {name}` first")


def taken_ranges(name: str) -> list[cluster_ranges.Taken]:
    """What cluster `name` must not overlap: the other registered clusters' ranges (first, for
    the clearer message), then every route and address on the host (theirs among them)."""
    taken = []
    for other in known_clusters():
        record = ClusterRecord.load(other)
        if other != name and record:
            taken += cluster_ranges.taken_by_cluster(other, record.ranges)
    return taken + network.taken_on_host()


def _api_port(wanted: int | None) -> int:
    """The API server's port: `wanted` if free (else an error), or 6443 if free, or any free one."""
    if wanted is None:
        return _free_port(DEFAULT_API_PORT)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", wanted))
        except OSError:
            raise UpError(f"port {wanted} on 127.0.0.1 is in use; pick another with --port, or leave --port out "
                          "and a free one is chosen") from None
    return wanted


def _free_port(preferred: int) -> int:
    """`preferred` if nothing listens on it on 127.0.0.1, else a free port the kernel picks."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no owner
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]


def etcd_socket(process: str) -> str:
    """The file name of a member's unix socket listener. etcd 3.4 takes only unix://HOST:PORT
    and makes the socket HOST:PORT in its working directory, so it is run there (see
    etcd_argv) and the name carries a port."""
    return f"{process}.sock:0"


def etcd_argv(name: str, data_dir: str, client_url: str, peer_url: str,
              tls: tuple[str, str, str] | None = None, initial_cluster: str = "",
              peer_tls: tuple[str, str, str] | None = None, cluster_token: str = "", socket: str = "") -> list[str]:
    """One etcd member: on its own, or of `initial_cluster` ("NAME=PEER_URL,..."). `tls`: CA,
    certificate, key: HTTPS for clients, who must present a certificate of that CA;
    `peer_tls` the same between members. `socket` (etcd_socket's name): also a plain-HTTP unix
    socket listener, made in etcd's working directory, which must be one only its owner can
    enter (the data dir, 0700): that mode is the socket's only access control. etcd 3.4 does
    not remove the socket a killed member left: whoever starts it again removes it first."""
    listen = client_url + (f",{ETCD_UNIX}{socket}" if socket else "")
    argv = [ETCD_BINARY, "--name", name, "--data-dir", data_dir,
            "--listen-client-urls", listen, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", initial_cluster or f"{name}={peer_url}", "--logger", "zap", "--log-level", "warn"]
    if cluster_token:
        argv += ["--initial-cluster-token", cluster_token, "--initial-cluster-state", "new"]
    if tls:
        ca, cert, key = tls
        argv += ["--trusted-ca-file", ca, "--cert-file", cert, "--key-file", key, "--client-cert-auth"]
    if peer_tls:
        ca, cert, key = peer_tls
        argv += ["--peer-trusted-ca-file", ca, "--peer-cert-file", cert, "--peer-key-file", key,
                 "--peer-client-cert-auth"]
    return argv


def _free_ports(preferred: list[int], taken: set[int] = frozenset()) -> list[int]:
    """One free port per preferred one (it, when free), none twice."""
    ports: list[int] = []
    for want in preferred:
        port = _free_port(want)
        while port in ports or port in taken:
            port = _free_port(0)
        ports.append(port)
    return ports


def prepare_data_dir(record: ClusterRecord) -> None:
    """Make DATA_DIR ours and empty of a previous run's state: refuse a directory that holds
    anything but a pocketkube data dir of the same cluster."""
    marker = os.path.join(record.data_dir, MARKER)
    if os.path.isdir(record.data_dir) and os.listdir(record.data_dir):
        try:
            with open(marker) as f:
                owner = f.read().strip()
        except FileNotFoundError:
            raise UpError(f"data dir {record.data_dir} is not empty and is not a pocketkube data dir; "
                          "pick an empty or new one with --data-dir") from None
        if owner != record.name:
            raise UpError(f"data dir {record.data_dir} belongs to cluster {owner!r}")
        _remove_data(record.data_dir)
    os.makedirs(record.data_dir, mode=0o700, exist_ok=True)
    os.chmod(record.data_dir, 0o700)  # also an existing one: it is the etcd sockets' access control (etcd_argv)
    _write_file(marker, record.name + "\n")


def _remove_data(data_dir: str) -> None:
    """Remove what pocketkube made in a data dir (never anything else), then the dir if empty."""
    for sub in ("server", "nodes", "run", "etcd"):
        shutil.rmtree(os.path.join(data_dir, sub), ignore_errors=True)
    for leftover in ("server.log", "supervisor.log", "etcd.log", *(f"etcd-{i}.log" for i in range(3)), "overlay.log",
                     etcd_socket("etcd"), *(etcd_socket(f"etcd-{i}") for i in range(3)),
                     *(f"server-{i}.log" for i in range(3)), "apiserver-lb.log", MARKER):
        _remove(os.path.join(data_dir, leftover))
    try:
        os.rmdir(data_dir)
    except OSError:
        pass  # something of the user's is there, or it is gone already


def _write_credentials(record: ClusterRecord) -> tuple[bytes, str]:
    """The CA and the admin token, made before the server starts so agents can start with it."""
    from pocketkube.apiserver import certs

    net = record.network
    hosts = ["127.0.0.1", "localhost", net.host_ip, *([record.advertise_address] if record.advertise_address else []),
             "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local", str(net.service_cidr.network_address + 1)]
    pki = certs.ensure_pki(os.path.join(record.server_dir, "pki"), hosts)
    if record.datastore == "etcd":
        certs.make_etcd_pki(os.path.join(record.server_dir, "pki"), ["127.0.0.1", "localhost"])
    token = secrets.token_urlsafe(32)
    _write_file(os.path.join(record.server_dir, "token"), token + "\n", private=True)
    # What the server presents to the agents for exec, logs and port-forward (not the admin token,
    # which no node holds).
    _write_file(os.path.join(record.server_dir, "kubelet-client-token"), secrets.token_urlsafe(32) + "\n",
                private=True)
    with open(pki.ca_cert, "rb") as f:
        return f.read(), token


def _start_processes(record: ClusterRecord, ca_pem: bytes, token: str, agent_command: tuple[str, ...]) -> None:
    """Write what the supervisor runs (the server, one agent per node) and start it; returns
    once it has started them all."""
    import yaml

    net = record.network
    several_servers = len(record.api_ports) > 1
    server_argv = [*SERVER_COMMAND, "--data-dir", record.server_dir, "--advertise-address", net.host_ip,
                   "--bind", "127.0.0.1", "--lb-range", net.lb_range, "--service-cluster-ip-range", str(net.service_cidr)]
    front = ["127.0.0.1", net.host_ip, *([record.advertise_address] if record.advertise_address else [])]
    if several_servers:  # apiserver-lb listens where one server would; the servers on 127.0.0.1 only
        server_argv += ["--leader-elect", "--advertise-port", str(record.port)]
    else:
        for address in front[1:]:
            server_argv += ["--extra-bind", address]
    processes = []
    if record.datastore == "etcd":
        pki = os.path.join(record.server_dir, "pki")
        tls = (os.path.join(pki, "etcd", "ca.crt"), os.path.join(pki, "etcd", "server.crt"),
               os.path.join(pki, "etcd", "server.key"))
        members = record.etcd_members()
        several = len(members) > 1
        initial = ",".join(f"{m.name}={m.peer_url}" for m in members) if several else ""
        peer_tls = (tls[0], os.path.join(pki, "etcd", "peer.crt"), os.path.join(pki, "etcd", "peer.key"))
        for m in members:
            processes.append({"name": m.process, "log": m.log, "netns": None, "cwd": record.data_dir,
                              "stale": [m.socket], "argv": etcd_argv(
                m.name, m.data_dir, m.client_url, m.peer_url, tls, initial, peer_tls if several else None,
                f"{record.name}-etcd" if several else "", os.path.basename(m.socket))})
        # The server, on this machine, over the members' unix sockets (etcd_argv); TLS files for HTTPS URLs.
        server_argv += ["--datastore", "etcd", "--etcd-servers", ",".join(m.socket_url for m in members),
                        "--etcd-cafile", tls[0],
                        "--etcd-certfile", os.path.join(pki, "apiserver-etcd-client.crt"),
                        "--etcd-keyfile", os.path.join(pki, "apiserver-etcd-client.key")]
    for process, port, log in record.api_servers():
        processes.append({"name": process, "log": log, "netns": None, "argv": [*server_argv, "--port", str(port)]})
    if several_servers:
        processes.append({"name": "apiserver-lb", "log": record.lb_log, "netns": None, "argv": [
            *LB_COMMAND, *(a for address in front for a in ("--listen", f"{address}:{record.port}")),
            *(a for _, port, _ in record.api_servers() for a in ("--server", f"127.0.0.1:{port}"))]})
    from pocketkube.apiserver.tokens import TokenIssuer

    agent_url = f"https://{net.host_ip}:{record.port}"
    issuer = TokenIssuer(os.path.join(record.server_dir, "sa.key"))  # the key the server signs tokens with
    stream_token_file = os.path.join(record.server_dir, "kubelet-client-token")
    for node in net.node_list():
        state_dir = record.node_dir(node)
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        node_pods.mount_pod_state(state_dir)  # pods' state on a tmpfs (docs/adr/0021)
        kubeconfig = os.path.join(state_dir, "kubeconfig")
        # Each agent is system:node:NAME in system:nodes (docs/adr/0007), as a kubelet's client certificate says.
        node_token = issuer.issue_user(f"system:node:{node.name}", ["system:nodes"], NODE_TOKEN_SECONDS)
        _write_file(kubeconfig, yaml.safe_dump(kubeconfig_dict("pocketkube", agent_url, ca_pem, node_token),
                                               sort_keys=False), private=True)
        processes.append({"name": f"agent-{node.name}", "log": record.agent_log(node), "netns": node.netns, "argv": [
            *agent_command, "--kubeconfig", kubeconfig, "--node-name", node.name, "--node-ip", node.ip,
            "--pod-cidr", node.pod_cidr, "--cluster-dns", net.cluster_dns, "--state-dir", state_dir, "--netns", node.netns,
            "--stream-token-file", stream_token_file]})
    if record.advertise_address:  # other machines may join: the VXLAN overlay, with node 1's credentials
        from pocketkube.cli.join import overlay_process

        processes.append(overlay_process(record, os.path.join(record.node_dir(net.node(1)), "kubeconfig"),
                                         [(n.name, n.netns, n.pod_cidr, n.ip) for n in net.node_list()]))
    start_supervisor(record, processes)


def start_supervisor(record: ClusterRecord, processes: list[dict]) -> None:
    """Write what the cluster's supervisor runs and start it; returns once it has started them all."""
    os.makedirs(record.run_dir, exist_ok=True)
    _remove(os.path.join(record.run_dir, supervisor.STATE_FILE))
    _write_file(os.path.join(record.run_dir, supervisor.SPEC_FILE), json.dumps(processes, indent=1) + "\n")
    supervisor.spawn([*SUPERVISOR_COMMAND, record.run_dir], record.supervisor_log, record.pid_file("supervisor"))
    deadline = time.monotonic() + SUPERVISOR_START_SECONDS
    while supervisor.read_state(record.run_dir) is None:
        if supervisor_pid(record) is None or time.monotonic() > deadline:
            raise UpError(f"the cluster's supervisor did not start; the end of {record.supervisor_log}:\n"
                          + _tail(record.supervisor_log))
        time.sleep(POLL_SECONDS)


def addon_objects(record: ClusterRecord, name: str, proxy_mode: str = "nftables") -> list[dict]:
    """An add-on's objects, filled in with this cluster's facts."""
    net = record.network
    return addons.render(name, api_host=net.host_ip, api_port=str(record.port), cluster_name=record.name,
                         proxy_mode=proxy_mode, cluster_cidr=str(net.pod_cidr), service_cidr=str(net.service_cidr),
                         cluster_dns=net.cluster_dns)


def admin_client(record: ClusterRecord):
    """A client with the cluster's admin credentials (what `up` and `addons` apply with)."""
    from pocketkube.core.client import from_kubeconfig

    return from_kubeconfig(os.path.join(record.server_dir, "kubeconfig"), field_manager="pocketkube-addons")


def _apply_addons(record: ClusterRecord, names: list[str], proxy_mode: str) -> None:
    """Server-side apply the built-in add-ons through the cluster's own API."""
    import asyncio

    async def apply_all() -> None:
        client = admin_client(record)
        try:
            for name in names:
                await addons.apply(client, addon_objects(record, name, proxy_mode))
        finally:
            await client.close()

    asyncio.run(apply_all())


def _wait_until_ready(record: ClusterRecord, progress: Progress, timeout: float) -> None:
    """Poll the API until every node is Ready, showing three steps: the server answers,
    the agents registered their Nodes, the Nodes are Ready."""
    nodes = record.network.node_list()
    expected = {n.name for n in nodes}
    steps = ["Starting API server", f"Starting {len(nodes)} node agent" + ("s" if len(nodes) > 1 else ""),
             "Waiting for nodes to be Ready"]
    step = 0
    deadline = time.monotonic() + timeout
    progress.show(steps[0])  # so a process that dies at once still ends a step with ✗
    while True:
        check_processes(record)
        try:
            items = _api_get(record, "/api/v1/nodes", timeout=1.0).get("items") or []
        except (OSError, urllib.error.URLError, ValueError):
            items = None
        registered = [n for n in items or [] if n["metadata"]["name"] in expected]
        if step == 0 and items is not None:
            progress.done(steps[0])
            step = 1
        if step == 1 and len(registered) == len(expected):
            progress.done(steps[1])
            step = 2
        text = steps[step]
        if step == 2:
            ready = sum(node_ready(n) for n in registered)
            text = f"{steps[2]} ({ready}/{len(expected)})"
            if ready == len(expected):
                progress.done(text)
                return
        progress.show(text)
        if time.monotonic() > deadline:
            raise UpError(f"timed out after {timeout:g}s: {text}. Logs: {record.server_log}, "
                          + ", ".join(record.agent_log(n) for n in nodes))
        time.sleep(POLL_SECONDS)


def check_processes(record: ClusterRecord) -> None:
    """Fail at once, with the end of its log, if the server or an agent has exited (the
    supervisor would start it again, but a cluster that cannot start should say why), or
    the supervisor itself is gone."""
    if supervisor_pid(record) is None:
        raise UpError(f"the cluster's supervisor exited while the cluster was starting; the end of "
                      f"{record.supervisor_log}:\n" + _tail(record.supervisor_log))
    logs = {m.process: m.log for m in record.etcd_members()}
    if not record.joined:
        logs.update({process: log for process, _, log in record.api_servers()})
    if len(record.api_ports) > 1:
        logs["apiserver-lb"] = record.lb_log
    if record.advertise_address:
        logs["overlay"] = os.path.join(record.data_dir, "overlay.log")
    logs.update({f"agent-{n.name}": record.agent_log(n) for n in record.network.node_list()})
    processes = (supervisor.read_state(record.run_dir) or {}).get("processes") or {}
    for process, log_path in logs.items():
        state = processes.get(process) or {}
        if state.get("restarts") or state.get("last_exit") or live_pid(record.pid_file(process)) is None:
            raise UpError(f"{process} exited while the cluster was starting; the end of {log_path}:\n"
                          + _tail(log_path))


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _print_ready(out, record: ClusterRecord, seconds: float, kubeconfig: str, join_command: str = "") -> None:
    ctx = context_name(record.name)
    down = "pocketkube down" + ("" if record.name == names.DEFAULT_NAME else f" --name {record.name}")
    out.write(f"Cluster {record.name!r} is ready in {seconds:.1f}s: {record.nodes} node"
              f"{'s' if record.nodes > 1 else ''}, API server {record.url}"
              + (f" (apiserver-lb in front of {', '.join(f'127.0.0.1:{p}' for p in record.api_ports)})"
                 if len(record.api_ports) > 1 else "")
              + (f", etcd {','.join(m.client_url for m in record.etcd_members())}" if record.datastore == "etcd"
                 else "") + "\n"
              f"Set kubectl context to \"{ctx}\" (in {kubeconfig})\n"
              f"You can now use your cluster with:\n\n"
              f"kubectl cluster-info --context {ctx}\n\n"
              + (f"Join nodes of other machines with (as root on each):\n\n{join_command}\n\n" if join_command else "")
              + f"Stop it with `{down}`.\n")
    out.flush()


# ---- down --------------------------------------------------------------------------------


def leftovers(name: str, ranges_of: ClusterRecord | None = None) -> list[str]:
    """What of cluster `name` exists on this machine (processes, network, record); its routes are
    looked for in the ranges of `ranges_of` (a record just removed), else of its record."""
    found: list[str] = []
    record = ClusterRecord.load(name)
    if record:
        if pid := supervisor_pid(record):
            found.append(f"supervisor (pid {pid})")
        found += [f"{process} (pid {pid})" for process, pid in cluster_processes(record).items()]
        found.append(ClusterRecord.path(name))
    found += cluster_inventory(name, ranges_of).describe()
    return found


def cluster_inventory(name: str, record: ClusterRecord | None = None) -> network.Inventory:
    """What of cluster `name`'s network exists, over the ranges of `record` (default: its record
    on file), never touching a range another registered cluster holds. With no record, its routes
    are known only by the default ranges: those are claimed only while no other cluster is on
    the machine."""
    record = record or ClusterRecord.load(name)
    # only clusters whose bridge is in this namespace can hold routes here (a machine of a test
    # LAN is a namespace of its own, beside other clusters on the same box)
    others = {c for c in (set(known_clusters()) | network.running_clusters()) - {name}
              if network.bridge_here(c)}
    held = tuple(net for c in others if (r := ClusterRecord.load(c)) for _, net in r.ranges.networks())
    if record is None and others:
        held = (ipaddress.IPv4Network("0.0.0.0/0"),)
    return network.inventory(name, tuple(known_clusters()), record.network if record else None, held)


def _stop_cluster_processes(record: ClusterRecord) -> None:
    """The supervisor (so nothing is started again), agents, then the server (each with its
    process group and what it started), then every process left in the cluster's namespaces
    (nodes, pods named or held by a process), until none is left."""
    keeper = supervisor_pid(record)
    if keeper:
        stop_processes({keeper}, group_leaders={keeper})
    running = cluster_processes(record)
    members = {m.process for m in record.etcd_members()}
    servers = {running[p] for p, _, _ in record.api_servers() if p in running}
    agents = {pid for process, pid in running.items() if pid not in servers and process not in members}
    below_agents = descendants(agents)
    stop_processes(agents, group_leaders=agents)
    if servers:
        stop_processes(servers, group_leaders=servers)
    etcd = {running[m] for m in members if m in running}
    if etcd:  # after the server, which writes to it until it stops
        stop_processes(etcd, group_leaders=etcd)
    stop_processes({p for p in below_agents if _alive(p)}, group_leaders=set(), grace=2.0)
    for _ in range(5):  # a process may fork while we sweep
        owned = [n for n in network.list_netns() if names.owns_netns(record.name, n)]
        nodes = [n for n in owned if names.cluster_of_netns(n) == record.name]
        left = set(network.pids_in_netns(owned)) | network.pod_pids(nodes)
        left.discard(os.getpid())
        if not left:
            return
        stop_processes(left, group_leaders=set(), grace=2.0)


def teardown(name: str, kubeconfig: str | None) -> list[str]:
    """Stop and remove everything of cluster `name`; the kubeconfig context too unless
    `kubeconfig` is None. Returns what could not be removed."""
    recorded = ClusterRecord.load(name)
    record = recorded or ClusterRecord(name, default_data_dir(name), network.MAX_NODES, 0)
    _stop_cluster_processes(record)
    for node in record.network.node_list():  # pods' holders, containers and cgroups
        if os.path.isdir(record.node_dir(node)):
            node_pods.cleanup_node_state(record.node_dir(node), record.node_name or node.name)
    problems = network.delete_network(cluster_inventory(name))
    marker = os.path.join(record.data_dir, MARKER)
    if os.path.exists(marker):
        _remove_data(record.data_dir)
    record.remove()
    if kubeconfig is not None:
        forget_context(kubeconfig, name)
    remaining = leftovers(name, recorded)
    return problems + [f"still there: {item}" for item in remaining]


def down(name: str, kubeconfig: str | None = None, out=sys.stdout) -> int:
    """`pocketkube down`: returns the exit code."""
    require_root("down")
    names.validate_cluster_name(name)
    with machine_lock():
        return _down(name, kubeconfig or user_kubeconfig_path(), out)


def all_clusters() -> list[str]:
    """Every cluster this machine has a record or a node namespace of."""
    return sorted(set(known_clusters()) | network.running_clusters())


def down_all(kubeconfig: str | None = None, out=sys.stdout) -> int:
    """`pocketkube down --all`: every cluster on this machine, one after the other."""
    require_root("down")
    clusters = all_clusters()
    if not clusters:
        out.write("no pocketkube cluster on this machine; nothing to do\n")
        return 0
    code = 0
    for name in clusters:
        with machine_lock():
            code = max(code, _down(name, kubeconfig or user_kubeconfig_path(), out))
    return code


def _down(name: str, kubeconfig: str, out) -> int:
    if not leftovers(name):
        forget_context(kubeconfig, name)
        out.write(f"cluster {name!r} is not running; nothing to do\n")
        return 0
    out.write(f"Deleting cluster {name!r} ...\n")
    problems = teardown(name, kubeconfig)
    for problem in problems:
        print(f"WARNING: {problem}", file=sys.stderr)
    if not problems:
        out.write(f"Deleted cluster {name!r}\n")
    return 1 if problems else 0


def forget_context(kubeconfig: str, name: str) -> None:
    """Remove cluster `name`'s entries from a kubeconfig file, if it has any."""
    def edit(config: dict | None) -> dict | None:
        if not config:
            return None
        result, removed = remove_from_kubeconfig(config, context_name(name))
        return result if removed else None

    if os.path.exists(kubeconfig):
        _edit_kubeconfig(kubeconfig, edit)


# ---- status ------------------------------------------------------------------------------


def status_all(out=sys.stdout) -> int:
    """`pocketkube status` without --name: every cluster on this machine; 1 if one does not run."""
    clusters = all_clusters()
    if not clusters:
        out.write("no pocketkube cluster on this machine (start one with `pocketkube up`)\n")
        return 1
    return max(status(name, out) for name in clusters)


def status(name: str, out=sys.stdout) -> int:
    """`pocketkube status`: 0 when the cluster runs, 1 when it does not (or crashed)."""
    names.validate_cluster_name(name)
    record = ClusterRecord.load(name)
    running = cluster_processes(record) if record else {}
    keeper = supervisor_pid(record) if record else None
    if not record or not (running or keeper):
        others = [c for c in known_clusters() if c != name]
        extra = f" (clusters on this machine: {', '.join(others)})" if others else ""
        if record or (os.geteuid() == 0 and leftovers(name)):
            out.write(f"cluster {name!r} is not running, but a previous run left things behind; "
                      f"`pocketkube down --name {name}` removes them{extra}\n")
        else:
            out.write(f"cluster {name!r} is not running{extra}\n")
        return 1
    out.write(f"cluster {name!r}: running (data dir {record.data_dir})\n")
    out.write(f"  ranges: {cluster_ranges.describe(record.ranges)}\n")
    if record.joined:
        node = record.network.node(record.node_index)
        out.write(f"  joined to {record.joined} as node {record.node_name}: {node.ip}, pods {node.pod_cidr}, "
                  f"netns {node.netns}, agent {running.get('agent-' + node.name) or 'NOT RUNNING'}, overlay "
                  f"{running.get('overlay') or 'NOT RUNNING'} from {record.advertise_address}\n")
        return 0
    supervised = (supervisor.read_state(record.run_dir) or {}).get("processes") or {}

    def restarts(process: str) -> str:
        state = supervised.get(process) or {}
        if not state.get("restarts"):
            return ""
        return f", restarts {state['restarts']} (last: {state.get('last_exit') or 'unknown'})"

    out.write(f"  supervisor: {f'pid {keeper}' if keeper else 'NOT RUNNING (nothing restarts what dies)'} "
              f"(log {record.supervisor_log})\n")
    for m in record.etcd_members():
        etcd = running.get(m.process)
        out.write(f"  {m.process}: {f'pid {etcd}' if etcd else 'NOT RUNNING'}, {m.client_url}{restarts(m.process)} "
                  f"(log {m.log})\n")
    if len(record.api_ports) > 1:
        holders = _lease_holders(record)
        for process, port, log in record.api_servers():
            pid = running.get(process)
            leads = [lease for lease, port_of_holder in holders.items() if port_of_holder == port]
            out.write(f"  API server {process}: {f'pid {pid}' if pid else 'NOT RUNNING'}, https://127.0.0.1:{port}"
                      f"{restarts(process)}{', holds ' + ' and '.join(leads) if leads else ''} (log {log})\n")
        lb = running.get("apiserver-lb")
        out.write(f"  apiserver-lb: {f'pid {lb}' if lb else 'NOT RUNNING'}, {record.url} -> the first server that "
                  f"answers{restarts('apiserver-lb')} (log {record.lb_log})\n")
    else:
        server = running.get("server")
        out.write(f"  API server: {f'pid {server}' if server else 'NOT RUNNING'}, {record.url}{restarts('server')} "
                  f"(log {record.server_log})\n")
    try:
        nodes = {n["metadata"]["name"]: n for n in _api_get(record, "/api/v1/nodes").get("items") or []}
        pods = len(_api_get(record, "/api/v1/pods").get("items") or [])
    except (OSError, urllib.error.URLError, ValueError) as exc:
        nodes, pods = None, None
        out.write(f"  the API server does not answer: {exc}\n")
    for node in record.network.node_list():
        agent = running.get(f"agent-{node.name}")
        state = "" if nodes is None else (
            "Ready" if node.name in nodes and node_ready(nodes[node.name]) else
            "NotReady" if node.name in nodes else "not registered")
        out.write(f"  node {node.name}: {node.ip}, pods {node.pod_cidr}, netns {node.netns}, "
                  f"agent {f'pid {agent}' if agent else 'NOT RUNNING'}{', ' + state if state else ''}"
                  f"{restarts('agent-' + node.name)}\n")
    if pods is not None:
        out.write(f"  pods: {pods}\n")
        out.write(f"  add-ons: {_addon_states(record)}\n")
    if record.advertise_address:
        overlay = running.get("overlay")
        out.write(f"  other machines join at https://{record.advertise_address}:{record.port}; VXLAN overlay "
                  f"{f'pid {overlay}' if overlay else 'NOT RUNNING'}{restarts('overlay')} "
                  f"(`pocketkube token create --print-join-command`)\n")
    _write_load_balancers(record, out)
    out.write(f"  kubectl cluster-info --context {context_name(name)}\n")
    return 0


def _lease_holders(record: ClusterRecord) -> dict[str, int | None]:
    """Lease name -> the port of the server whose identity holds it (None: unknown or nobody).
    Each `server --leader-elect` names its identity in DATA_DIR/server/leader-identity.PORT."""
    by_identity = {}
    for _, port, _ in record.api_servers():
        try:
            with open(os.path.join(record.server_dir, f"leader-identity.{port}")) as f:
                by_identity[f.read().strip()] = port
        except OSError:
            pass
    holders: dict[str, int | None] = {}
    for lease in ("kube-controller-manager", "kube-scheduler"):
        try:
            holder = (_api_get(record, f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{lease}")
                      .get("spec") or {}).get("holderIdentity")
        except (OSError, urllib.error.URLError, ValueError):
            holder = None
        holders[lease] = by_identity.get(holder)
    return holders


def _addon_states(record: ClusterRecord) -> str:
    """`kube-proxy (1/1 ready), coredns (1/1 ready), ingress (disabled)`, read from the cluster."""
    import asyncio

    async def states() -> list[str]:
        client = admin_client(record)
        try:
            return [f"{a} ({(await addons.workload_ready(client, addon_objects(record, a)))[1]})" for a in addons.KNOWN]
        finally:
            await client.close()

    try:
        return ", ".join(asyncio.run(states()))
    except Exception as exc:  # noqa: BLE001 (status says what it can; the API's errors vary)
        return f"unknown ({exc})"


def _write_load_balancers(record: ClusterRecord, out) -> None:
    """The pool, and each address in use: its Service and the node announcing it (read from
    the nodes' eth0, where the announcing agent puts it)."""
    pool = record.network.lb_pool
    try:
        services = _api_get(record, "/api/v1/services").get("items") or []
    except (OSError, urllib.error.URLError, ValueError):
        services = []
    owners = {ip: f"{s['metadata']['namespace']}/{s['metadata']['name']}" for s in services
              for ip in ingress_ips(s) if ip in pool}
    out.write(f"  load-balancer pool: {pool} ({len(owners)} of {pool.size} in use)\n")
    root = os.geteuid() == 0  # the nodes' addresses are read inside their namespaces
    announced = network.announced_addresses(record.network) if root else {}
    for ip in sorted(owners, key=lambda a: tuple(int(p) for p in a.split("."))):
        nodes = announced.get(ip) or []
        where = (f"announced by {', '.join(nodes)}" if nodes else "announced by no node") if root else ""
        out.write(f"    {ip}  {owners[ip]}  {where}".rstrip() + "\n")


# ---- command line ------------------------------------------------------------------------


def add_parsers(sub) -> None:
    """Register `up`, `down` and `status` on main.py's subcommand parser."""
    p = sub.add_parser("up", help="start a cluster: node network, API server and controllers, one agent per "
                                  "node, the add-ons", **examples(
        "pocketkube up                                # one node, kube-proxy and coredns; sets kubectl's context",
        "pocketkube up --nodes 3 --proxy-mode userspace",
        "pocketkube up --name lab --addons ingress    # also the ingress-nginx controller",
        "pocketkube up --name b                       # a second cluster beside the first, on free ranges",
        "pocketkube up --name c --node-cidr 172.30.0.0/24 --pod-cidr 10.250.0.0/16 --service-cidr 10.208.0.0/12"))
    p.add_argument("--name", default=names.DEFAULT_NAME, help="cluster name (default %(default)s)")
    p.add_argument("--nodes", type=int, default=1, help="number of nodes (default %(default)s)")
    p.add_argument("--data-dir", help=f"where the cluster's data lives (default {DATA_ROOT}/NAME)")
    p.add_argument("--port", type=int, default=None,
                   help=f"API server port on 127.0.0.1 (default {DEFAULT_API_PORT}, or a free one when it is taken)")
    p.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for the nodes to be Ready (default %(default)s)")
    p.add_argument("--disable", action="append", default=[], choices=addons.ADDONS, metavar="ADDON",
                   help="do not apply this built-in add-on (" + ", ".join(addons.ADDONS) + "); repeatable")
    p.add_argument("--addons", action="append", default=[], type=_addon_list, metavar="ADDON[,ADDON]",
                   help="also apply these optional add-ons (" + ", ".join(addons.OPTIONAL) + "); repeatable")
    p.add_argument("--proxy-mode", choices=("nftables", "userspace"), default="nftables",
                   help="how the service proxy routes Service traffic (default %(default)s)")
    p.add_argument("--node-cidr", metavar="CIDR",
                   help="the node network (the host is .1, node N is .(N+1)); default: the first free /24 from "
                        f"{cluster_ranges.DEFAULTS.node_cidr} on, past every route, address and other cluster")
    p.add_argument("--pod-cidr", metavar="CIDR", help="the pod network, a /24 per node; default: the first free "
                                                       f"/16 from {cluster_ranges.DEFAULTS.pod_cidr} on")
    p.add_argument("--service-cidr", metavar="CIDR",
                   help="the Service network (.1 = kubernetes, .10 = kube-dns); default: the first free /12 from "
                        f"{cluster_ranges.DEFAULTS.service_cidr} on")
    p.add_argument("--lb-range", default=None, metavar="FIRST-LAST|CIDR",
                   help="addresses for LoadBalancer Services, inside the node network and above the nodes' "
                        f"addresses (default: the node network's .128/26, {cluster_ranges.DEFAULTS.lb_range} "
                        "for the default ranges)")
    p.add_argument("--advertise-address", default="", metavar="ADDRESS",
                   help="this machine's address other machines reach: the API server listens there too (its "
                        "certificate names it), `up` prints a `pocketkube join` command and runs the VXLAN overlay")
    p.add_argument("--datastore", choices=("sqlite", "etcd"), default="sqlite",
                   help="sqlite (default): the server's own file; etcd: one etcd member started for the cluster, "
                        "over TLS, data under DATA_DIR/etcd")
    p.add_argument("--etcd-members", type=int, choices=(1, 3), default=1,
                   help="with --datastore etcd: 1 (default) or 3 members, TLS between them (peer certificates)")
    p.add_argument("--api-servers", type=int, choices=(1, 2, 3), default=1,
                   help="with --datastore etcd: 1 (default) to 3 API servers, controllers and scheduler leader-elected, "
                        "behind a TCP front (apiserver-lb) on --port that fails over to the next server")
    p.set_defaults(func=_cli(lambda a: up(UpOptions(a.name, a.nodes, a.data_dir, a.port, a.wait,
                                                    disable=tuple(a.disable), proxy_mode=a.proxy_mode,
                                                    lb_range=a.lb_range, datastore=a.datastore,
                                                    etcd_members=a.etcd_members, api_servers=a.api_servers,
                                                    advertise_address=a.advertise_address,
                                                    node_cidr=a.node_cidr, pod_cidr=a.pod_cidr,
                                                    service_cidr=a.service_cidr,
                                                    addons=tuple(n for names in a.addons for n in names)))))
    p = sub.add_parser("down", help="stop a cluster and remove everything it made",
                       **examples("pocketkube down", "pocketkube down --name lab", "pocketkube down --all"))
    which = p.add_mutually_exclusive_group()
    which.add_argument("--name", default=names.DEFAULT_NAME, help="cluster name (default %(default)s)")
    which.add_argument("--all", action="store_true", help="every cluster on this machine")
    p.set_defaults(func=_cli(lambda a: down_all() if a.all else down(a.name)))
    p = sub.add_parser("status", help="say what runs",
                       **examples("pocketkube status              # every cluster: ranges, processes, nodes, add-ons",
                                  "pocketkube status --name lab"))
    p.add_argument("--name", default=None, help="only this cluster (default: every cluster on this machine)")
    p.set_defaults(func=_cli(lambda a: status(a.name) if a.name else status_all()))


def _addon_list(text: str) -> list[str]:
    import argparse

    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in addons.OPTIONAL:
            raise argparse.ArgumentTypeError(f"unknown add-on {n!r}; optional add-ons: {', '.join(addons.OPTIONAL)}")
    return names


def _cli(command):
    def run(args) -> int:
        try:
            return command(args)
        except (UpError, ValueError, network.NetworkError) as exc:  # RangeError is a ValueError
            print(f"ERROR: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    return run
