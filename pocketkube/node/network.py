"""The cluster network on the host: names, addresses and the plumbing that makes and removes it.

Owns the layout of DESIGN.md ("The network"), over the cluster's own ranges (core/ranges.py
chooses them, the cluster record keeps them; the defaults below): the host bridge (`pk0` for
the default cluster, `pk-<name>` otherwise) holding the node network's .1 (172.18.0.1/24); one
network namespace per node (`pk-<name>-n<N>`) with `eth0` = .(N+1) (a veth whose host side is
on the bridge), a `cni0` bridge holding the .1 of the node's pod /24 (10.244.N.1/24), routes to
the other nodes' pod /24s and NO default route; on the host, each node's pod /24 via that node
and `unreachable` routes for the cluster's pod and service ranges and pool, so a packet for a
cluster address is delivered inside the cluster or refused. `taken_on_host` reads what the
host's routes and addresses hold, for `up` to choose around.

Every name carries the cluster name: namespaces by their name (`pk-<name>-n<N>` for nodes,
`pk-<name>-p-<hex>` for pods), host links by their alias (`pocketkube cluster <name>`; their
names are cut to 15 characters), nftables tables by their name (`pk-<name>` or
`pk-<name>-<what>` / `pk-<name>_<what>`). `delete_network` removes exactly what
`inventory` finds for one cluster name; the host's own interfaces and routes are never touched.

All plumbing goes through iproute2 (`ip -batch -`), nftables (`nft`) and sysctl; inside a
node's namespace through setns(2) in the child before exec (never `ip netns exec`, whose
private mount namespace would hide the pod namespaces an agent bind-mounts under /run/netns).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from dataclasses import dataclass

from pocketkube.core import ranges as cluster_ranges
from pocketkube.core.cluster import (cluster_of_netns, host_bridge, interface_name, link_alias, node_netns,
                                     owns_netns, owns_nft_table, validate_cluster_name)
from pocketkube.core.lbpool import ANNOUNCED_LABEL, Pool, check_pool
from pocketkube.core.linux import setns

NODE_SUBNET = ipaddress.IPv4Network(cluster_ranges.DEFAULTS.node_cidr)
POD_CIDR = ipaddress.IPv4Network(cluster_ranges.DEFAULTS.pod_cidr)
SERVICE_CIDR = ipaddress.IPv4Network(cluster_ranges.DEFAULTS.service_cidr)
UNREACHABLE_METRIC = 4242  # high: any specific route (a node's pod /24, the proxy's) wins
ROUTE_PROTOCOL = 242  # tags the routes pocketkube adds on the host (`ip route ... proto 242`)
MAX_NODES = cluster_ranges.MAX_NODES
NETNS_DIR = "/run/netns"

class NetworkError(RuntimeError):
    """A plumbing command failed; the message holds the command's own error."""


@dataclass(frozen=True)
class NodeNetwork:
    """One node's names and addresses."""
    index: int  # 1-based
    name: str  # the Node object's name: <cluster>-node-<N>
    netns: str
    host_veth: str
    ip: str  # eth0's address in the node subnet
    prefixlen: int  # of the node subnet
    pod_cidr: str  # 10.244.N.0/24
    pod_gateway: str  # 10.244.N.1, on cni0

    @property
    def netns_path(self) -> str:
        return os.path.join(NETNS_DIR, self.netns)


@dataclass(frozen=True)
class ClusterNetwork:
    """The names and addresses of cluster `name` with `nodes` nodes (pure: no I/O)."""
    name: str
    nodes: int = 1
    node_subnet: ipaddress.IPv4Network = NODE_SUBNET
    pod_cidr: ipaddress.IPv4Network = POD_CIDR
    service_cidr: ipaddress.IPv4Network = SERVICE_CIDR
    lb_range: str = cluster_ranges.DEFAULTS.lb_range  # the load-balancer pool, inside node_subnet
    # The nodes on this machine, when not all of 1..nodes (a joined machine holds one node of
    # a cluster whose other nodes are elsewhere: `pocketkube join`).
    only: tuple[int, ...] = ()

    @classmethod
    def of(cls, name: str, nodes: int, ranges: cluster_ranges.Ranges) -> ClusterNetwork:
        """Cluster `name`'s network over its chosen ranges (the record's, `up`'s choice)."""
        net = ipaddress.IPv4Network
        return cls(name, nodes, net(ranges.node_cidr), net(ranges.pod_cidr), net(ranges.service_cidr), ranges.lb_range)

    def __post_init__(self) -> None:
        validate_cluster_name(self.name)
        if not 1 <= self.nodes <= MAX_NODES:
            raise ValueError(f"--nodes must be between 1 and {MAX_NODES}, not {self.nodes}")
        if self.nodes >= 2 ** (24 - self.pod_cidr.prefixlen):
            raise ValueError(f"the pod network {self.pod_cidr} holds no /24 for node {self.nodes}")
        used = {self.host_ip: "the host's address on the node network"}
        used.update({str(self.node_subnet.network_address + 1 + i): f"node {self.name}-node-{i}"
                     for i in range(1, self.nodes + 1)})
        check_pool(self.lb_pool, self.node_subnet, used,
                   {"pod network": self.pod_cidr, "service network": self.service_cidr})

    @property
    def lb_pool(self) -> Pool:
        return Pool.parse(self.lb_range)

    @property
    def bridge(self) -> str:
        return host_bridge(self.name)

    @property
    def host_ip(self) -> str:
        """The host's address on the bridge: agents reach the API server there."""
        return str(self.node_subnet.network_address + 1)

    @property
    def link_alias(self) -> str:
        return link_alias(self.name)

    @property
    def cluster_dns(self) -> str:
        """kube-dns's ClusterIP, the 10th address of the service network."""
        return cluster_ranges.cluster_dns(str(self.service_cidr))

    @property
    def unreachable_ranges(self) -> tuple[str, ...]:
        """The ranges refused on the host when nothing more specific delivers them: the pod and
        service networks, and the load-balancer pool (which the bridge delivers while it exists)."""
        return (str(self.pod_cidr), str(self.service_cidr), *(str(n) for n in self.lb_pool.networks()))

    @property
    def ranges(self) -> tuple[ipaddress.IPv4Network, ...]:
        return (self.node_subnet, self.pod_cidr, self.service_cidr)

    def node(self, index: int) -> NodeNetwork:
        if not 1 <= index <= self.nodes:
            raise ValueError(f"node {index} is not in 1..{self.nodes}")
        pod_net = list(self.pod_cidr.subnets(new_prefix=24))[index]
        return NodeNetwork(
            index=index, name=f"{self.name}-node-{index}", netns=node_netns(self.name, index),
            host_veth=interface_name("pkv-", self.name, f"-n{index}"),
            ip=str(self.node_subnet.network_address + 1 + index), prefixlen=self.node_subnet.prefixlen,
            pod_cidr=str(pod_net), pod_gateway=str(pod_net.network_address + 1))

    def node_list(self) -> list[NodeNetwork]:
        """The nodes on this machine."""
        return [self.node(i) for i in (self.only or range(1, self.nodes + 1))]

    def host_batch(self) -> str:
        """`ip -batch` lines for the host side: namespaces, bridge, veths, routes."""
        lines = [f"netns add {n.netns}" for n in self.node_list()]
        lines += [f"link add {self.bridge} type bridge",
                  f"link set {self.bridge} alias {_quote(self.link_alias)}",
                  f"addr add {self.host_ip}/{self.node_subnet.prefixlen} dev {self.bridge}",
                  f"link set {self.bridge} up"]
        for n in self.node_list():
            lines += [f"link add {n.host_veth} type veth peer name eth0 netns {n.netns}",
                      f"link set {n.host_veth} alias {_quote(self.link_alias)} master {self.bridge} up"]
        lines += [f"route add {n.pod_cidr} via {n.ip} dev {self.bridge} proto {ROUTE_PROTOCOL}"
                  for n in self.node_list()]
        # The host is a client like any other: Service addresses go to its first node, whose proxy
        # rules deliver them (DESIGN.md, "The network").
        lines.append(f"route add {self.service_cidr} via {self.node_list()[0].ip} dev {self.bridge} proto {ROUTE_PROTOCOL}")
        # Load-balancer addresses are on the node network: the node announcing one answers ARP
        # for it on the bridge. The pool's own routes sit above its unreachable ones, as above.
        lines += [f"route add {n} dev {self.bridge} proto {ROUTE_PROTOCOL}" for n in self.lb_pool.networks()]
        lines += [f"route add unreachable {r} metric {UNREACHABLE_METRIC} proto {ROUTE_PROTOCOL}"
                  for r in self.unreachable_ranges]
        return "\n".join(lines) + "\n"

    def node_batch(self, node: NodeNetwork) -> str:
        """`ip -batch` lines run inside `node`'s namespace: eth0, cni0, routes to the other
        nodes' pods. No default route: nothing inside a node can reach the outside."""
        lines = ["link set lo up",
                 f"addr add {node.ip}/{node.prefixlen} dev eth0",
                 "link set eth0 up",
                 f"link add cni0 address {bridge_mac(node.pod_gateway)} type bridge",
                 f"addr add {node.pod_gateway}/24 dev cni0",
                 "link set cni0 up"]
        lines += [f"route add {other.pod_cidr} via {other.ip} dev eth0"
                  for other in self.node_list() if other.index != node.index]
        return "\n".join(lines) + "\n"


def bridge_mac(gateway: str) -> str:
    """cni0's own MAC, fixed (locally administered, from the gateway address): a bridge left
    to pick one takes its lowest port's and changes it when that pod goes, and every other
    pod keeps sending to the gone MAC (flooded, never routed) until its ARP entry for the
    gateway expires: seconds of lost packets to Services and other nodes."""
    return "02:00:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(gateway).packed)


def _quote(text: str) -> str:
    return '"' + text + '"'


# ---- plumbing -----------------------------------------------------------------------------


def enter_netns(netns: str):
    """A `preexec_fn` that moves the child into network namespace `netns` (a name under
    /run/netns, or a path such as /proc/PID/ns/net) before exec."""
    path = netns if netns.startswith("/") else os.path.join(NETNS_DIR, netns)

    return lambda: setns(path)


def _run(argv: list[str], stdin: str | None = None, netns: str | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    cp = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                        preexec_fn=enter_netns(netns) if netns else None)
    if check and cp.returncode != 0:
        where = f" in {netns}" if netns else ""
        raise NetworkError(f"`{' '.join(argv)}`{where} failed: {(cp.stderr or cp.stdout).strip()}")
    return cp


def create_network(net: ClusterNetwork) -> None:
    """Make the whole network of `net` (the caller removed leftovers first). On failure
    raises NetworkError; the caller removes what was made with `delete_network`."""
    _run(["ip", "-batch", "-"], net.host_batch())
    for node in net.node_list():
        _run(["ip", "-batch", "-"], net.node_batch(node), netns=node.netns)
        # arp_ignore=1: a node answers ARP on eth0 only for eth0's own addresses, so only the
        # node announcing a load-balancer address answers for it (userspace mode holds Service
        # addresses on pk-svc on every node, which the default would answer for too).
        _run(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.eth0.arp_ignore=1"], netns=node.netns)


@dataclass
class Inventory:
    """What exists on this machine that belongs to one cluster."""
    netns: list[str]
    links: list[str]  # host links
    routes: list[str]  # host routes, as `ip route del` arguments
    nft_tables: list[tuple[str, str]]  # (family, name) in the host namespace

    def empty(self) -> bool:
        return not (self.netns or self.links or self.routes or self.nft_tables)

    def describe(self) -> list[str]:
        return ([f"netns {n}" for n in self.netns] + [f"link {n}" for n in self.links]
                + [f"route {r}" for r in self.routes] + [f"nftables table {f} {t}" for f, t in self.nft_tables])


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def bridge_here(cluster: str) -> bool:
    """Whether cluster `cluster`'s node network bridge is in this network namespace."""
    return any(link["ifname"] == host_bridge(cluster) for link in _links())


def _links() -> list[dict]:
    return json.loads(_run(["ip", "-j", "link", "show"]).stdout or "[]")


def _routes() -> list[dict]:
    return json.loads(_run(["ip", "-j", "route", "show", "table", "main"]).stdout or "[]")


def nft_tables() -> list[tuple[str, str]]:
    cp = _run(["nft", "-j", "list", "tables"], check=False)
    if cp.returncode != 0:
        return []  # nftables missing or unusable: we cannot have made tables either
    return [(item["table"]["family"], item["table"]["name"])
            for item in json.loads(cp.stdout or "{}").get("nftables", []) if "table" in item]


def _our_route(route: dict, net: ClusterNetwork) -> bool:
    """An unreachable route pocketkube added for one of `net`'s ranges, or for a load-balancer
    pool inside its node network (`up --lb-range` chose it)."""
    if not (route.get("type") == "unreachable" and route.get("metric") == UNREACHABLE_METRIC
            and str(route.get("protocol")) == str(ROUTE_PROTOCOL)):
        return False
    try:
        inside_nodes = ipaddress.ip_network(route.get("dst") or "", strict=False).subnet_of(net.node_subnet)
    except (ValueError, TypeError):
        inside_nodes = False
    return route.get("dst") in net.unreachable_ranges or inside_nodes


def running_clusters() -> set[str]:
    """Clusters that have a node namespace on this machine."""
    return {c for c in map(cluster_of_netns, list_netns()) if c}


def inventory(cluster: str, known_clusters: tuple[str, ...] = (), net: ClusterNetwork | None = None,
              others_hold: tuple[ipaddress.IPv4Network, ...] = ()) -> Inventory:
    """Everything of `cluster` on this machine: its namespaces, its host links (by alias, or
    by the names it would give them), its unreachable routes (for the ranges of `net`, its
    recorded network, default: the default ranges; never one inside a range another cluster
    holds, `others_hold`), its nftables tables."""
    net = net or ClusterNetwork(cluster, MAX_NODES)
    names = {net.bridge} | {interface_name("pkv-", cluster, f"-n{i}") for i in range(1, MAX_NODES + 1)}
    links = [link["ifname"] for link in _links()
             if link.get("ifalias") == link_alias(cluster) or link["ifname"] in names]
    routes = [f"unreachable {r['dst']} metric {UNREACHABLE_METRIC}" for r in _routes()
              if _our_route(r, net) and not any(ipaddress.ip_network(r["dst"], strict=False).overlaps(o)
                                                for o in others_hold)]
    other_names = tuple(set(known_clusters) | (running_clusters() - {cluster}))
    tables = [(f, t) for f, t in nft_tables() if owns_nft_table(cluster, t, other_names)]
    return Inventory(netns=[n for n in list_netns() if owns_netns(cluster, n)],
                     links=sorted(links), routes=routes, nft_tables=tables)


def delete_network(found: Inventory) -> list[str]:
    """Remove what `inventory` found: pod namespaces, then nodes (their veths go with them),
    then the host links still there, the routes, the tables. Best effort on every item;
    returns the errors."""
    problems: list[str] = []
    pods_first = sorted(found.netns, key=lambda n: re.search(r"-n\d+$", n) is not None)
    problems += _batch([f"netns del {n}" for n in pods_first])
    present = {link["ifname"] for link in _links()}
    problems += _batch([f"link del {link}" for link in found.links if link in present])
    problems += _batch([f"route del {r}" for r in found.routes])
    for family, table in found.nft_tables:
        cp = _run(["nft", "delete", "table", family, table], check=False)
        if cp.returncode != 0:
            problems.append(cp.stderr.strip())
    return problems


_GONE_ALREADY = ("Cannot find device", "No such process", "No such file or directory", "Command failed -:")


def _batch(lines: list[str]) -> list[str]:
    """Run `ip` commands, going on after a failure; returns the errors, except those saying
    the thing is gone already (a node's veth goes with its namespace, asynchronously)."""
    if not lines:
        return []
    cp = _run(["ip", "-force", "-batch", "-"], "\n".join(lines) + "\n", check=False)
    return [line for line in cp.stderr.splitlines() if line.strip() and not any(gone in line for gone in _GONE_ALREADY)]


def taken_on_host() -> list[cluster_ranges.Taken]:
    """The address ranges the host's routes (every table) and addresses hold now."""
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
    addresses = json.loads(_run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]")
    return cluster_ranges.taken_on_host(routes, addresses)


def announced_addresses(net: ClusterNetwork) -> dict[str, list[str]]:
    """Load-balancer address -> the nodes that hold it on their eth0 (announce it)."""
    found: dict[str, list[str]] = {}
    for node in net.node_list():
        cp = _run(["ip", "-j", "-4", "addr", "show", "dev", "eth0"], netns=node.netns, check=False)
        if cp.returncode != 0:
            continue
        for link in json.loads(cp.stdout or "[]"):
            for info in link.get("addr_info") or []:
                if info.get("label") == ANNOUNCED_LABEL:
                    found.setdefault(info["local"], []).append(node.name)
    return found


def netns_inodes(names: list[str]) -> dict[tuple[int, int], str]:
    """(device, inode) of each named namespace that can be opened -> its name."""
    inodes = {}
    for name in names:
        try:
            st = os.stat(os.path.join(NETNS_DIR, name))
        except OSError:
            continue
        inodes[(st.st_dev, st.st_ino)] = name
    return inodes


def pids_in_netns(names: list[str]) -> dict[int, str]:
    """Every process whose network namespace is one of `names` (as `ip netns pids`, in one pass
    over /proc for all of them) -> the namespace's name."""
    inodes = netns_inodes(names)
    found: dict[int, str] = {}
    if not inodes:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue  # gone, or a kernel thread
        name = inodes.get((st.st_dev, st.st_ino))
        if name is not None:
            found[int(entry)] = name
    return found


def _veth_pairs(netns: str, master: str | None = None) -> set[tuple[int, int]]:
    """(ifindex, peer ifindex) of the veths in a namespace (those on bridge `master` if given)."""
    cp = _run(["ip", "-j", "link", "show", "type", "veth"], netns=netns, check=False)
    if cp.returncode != 0:
        return set()
    return {(link["ifindex"], link["link_index"]) for link in json.loads(cp.stdout or "[]")
            if "link_index" in link and (master is None or link.get("master") == master)}


def _interfaces(pid: int) -> set[str]:
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            return {line.split(":", 1)[0].strip() for line in f.readlines()[2:]}
    except OSError:
        return set()


def pod_pids(node_netns: list[str]) -> set[int]:
    """Processes of the pods of these nodes, named namespace or not: those whose network
    namespace holds only lo and a veth whose peer is on a node's cni0 (pods whose namespace
    is held by a process, as the sandbox does, have no name to find them by)."""
    on_cni0 = set().union(*(_veth_pairs(n, "cni0") for n in node_netns)) if node_netns else set()
    if not on_cni0:
        return set()
    host = os.stat("/proc/self/ns/net").st_ino
    named = {ino for _, ino in netns_inodes(list_netns())}
    by_netns: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ino = os.stat(f"/proc/{entry}/ns/net").st_ino
            except OSError:
                continue
            if ino != host and ino not in named:
                by_netns.setdefault(ino, []).append(int(entry))
    found: set[int] = set()
    for pids in by_netns.values():
        if _interfaces(pids[0]) - {"lo"} != {"eth0"}:
            continue
        pod_side = _veth_pairs(f"/proc/{pids[0]}/ns/net")
        if any((peer, index) in on_cni0 for index, peer in pod_side):
            found.update(pids)
    return found
