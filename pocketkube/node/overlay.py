"""The VXLAN overlay between machines, as flannel's vxlan backend builds it: one VTEP per machine.

Each machine that holds nodes of a cluster spread over several machines runs one `Overlay`
(`pocketkube overlay`, started by `up --advertise-address` and by `join`) in its own (the
machine's) network namespace. It

- makes the VTEP `pkx-<cluster>`: the kernel's vxlan link, VNI 1, UDP 8472 (flannel's and the
  kernel's port), bound to the machine's address (`--public-ip`), no learning, its MTU 50 below
  the underlay's (the VXLAN, UDP, IP and Ethernet headers), its address the network address of
  its first node's pod /24 (flannel's `flannel.1` takes its node's subnet .0), its MAC fixed
  from that address so a restart changes nothing;
- sends the NodePorts of the machine's own address to its first node (nftables table
  `pk-<cluster>-machine`), so a NodePort answers on every machine's address;
- writes on each of its nodes the annotations flannel writes (under pocketkube.io/): the
  machine's address (`public-ip`) and the VTEP (`backend-data`: VNI, VtepMAC, VtepIP);
- watches the Nodes and, for each node of another machine: a route to its pod /24 and to its
  node address through the VTEP (`via <its VTEP address> onlink`), a permanent neighbour entry
  for that VTEP address and an FDB entry sending that MAC to the other machine; and, inside each
  node of this machine, routes to those addresses via this machine's bridge address (with the
  VTEP's MTU, so a pod's first full-size packet gets "fragmentation needed" at its node).

What it adds goes with what holds it: the VTEP (alias `pocketkube cluster <name>`, so
`down` removes it; its routes and entries go with it), the node namespaces, and the table
(named for the cluster, which `down` removes). Pure parts
(`remotes`, `machine_plan`, `node_plan`) are unit-tested; `sync` applies a plan, removing what
is no longer wanted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from dataclasses import dataclass

from pocketkube.core import errors
from pocketkube.core.cluster import interface_name, link_alias
from pocketkube.core.informer import Informer
from pocketkube.node.network import ROUTE_PROTOCOL, _quote, _run

log = logging.getLogger(__name__)

VNI = 1
VXLAN_PORT = 8472
OVERHEAD = 50  # outer Ethernet 14 + IP 20 + UDP 8 + VXLAN 8
NODE_PORTS = "30000-32767"  # the API server's --service-node-port-range
PUBLIC_IP = "pocketkube.io/public-ip"
BACKEND_DATA = "pocketkube.io/backend-data"
BACKEND_TYPE = "pocketkube.io/backend-type"


def vtep_name(cluster: str) -> str:
    return interface_name("pkx-", cluster)


def vtep_address(pod_cidr: str) -> str:
    return str(ipaddress.ip_network(pod_cidr, strict=False).network_address)


def vtep_mac(address: str) -> str:
    """Locally administered, from the VTEP address: stable across restarts."""
    return "02:01:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)


def annotations(public_ip: str, vtep_ip: str) -> dict[str, str]:
    return {PUBLIC_IP: public_ip, BACKEND_TYPE: "vxlan",
            BACKEND_DATA: json.dumps({"VNI": VNI, "VtepMAC": vtep_mac(vtep_ip), "VtepIP": vtep_ip},
                                     separators=(",", ":"))}


@dataclass(frozen=True)
class Remote:
    """A node of another machine, as its annotations and status say."""
    name: str
    pod_cidr: str
    node_ip: str
    public_ip: str
    vtep_ip: str
    vtep_mac: str


def remotes(nodes: list[dict], public_ip: str) -> list[Remote]:
    """The nodes of other machines that can be reached (annotated, with a pod range and an
    InternalIP), sorted by name."""
    found = []
    for node in nodes:
        meta = node.get("metadata") or {}
        notes = meta.get("annotations") or {}
        theirs = notes.get(PUBLIC_IP)
        if not theirs or theirs == public_ip:
            continue
        try:
            data = json.loads(notes.get(BACKEND_DATA) or "{}")
        except ValueError:
            continue
        pod_cidr = (node.get("spec") or {}).get("podCIDR")
        ips = [a["address"] for a in (node.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalIP"]
        if not (pod_cidr and ips and data.get("VtepMAC") and data.get("VtepIP")):
            continue
        found.append(Remote(meta["name"], pod_cidr, ips[0], theirs, data["VtepIP"], data["VtepMAC"]))
    return sorted(found, key=lambda r: r.name)


@dataclass(frozen=True)
class MachinePlan:
    routes: dict[str, str]  # destination -> `ip route replace` arguments
    neighbours: dict[str, str]  # VTEP address -> MAC
    fdb: dict[str, str]  # MAC -> machine address


def machine_plan(vtep: str, peers: list[Remote]) -> MachinePlan:
    routes, neighbours, fdb = {}, {}, {}
    for r in peers:
        for dst in (r.pod_cidr, f"{r.node_ip}/32"):
            routes[dst] = f"{dst} via {r.vtep_ip} dev {vtep} onlink proto {ROUTE_PROTOCOL}"
        neighbours[r.vtep_ip] = r.vtep_mac
        fdb[r.vtep_mac] = r.public_ip
    return MachinePlan(routes, neighbours, fdb)


def node_plan(host_ip: str, mtu: int, peers: list[Remote]) -> dict[str, str]:
    """Routes inside each node of this machine: destination -> `ip route replace` arguments."""
    return {dst: f"{dst} via {host_ip} dev eth0 mtu {mtu} proto {ROUTE_PROTOCOL}"
            for r in peers for dst in (r.pod_cidr, f"{r.node_ip}/32")}


def _json(argv: list[str], netns: str | None = None) -> list[dict]:
    return json.loads(_run(argv, netns=netns).stdout or "[]")


def _dst(route: dict) -> str:
    dst = route.get("dst", "")
    return dst if "/" in dst else f"{dst}/32"


def underlay_mtu(address: str) -> int:
    """The MTU of the link holding `address` on this machine."""
    for link in _json(["ip", "-j", "addr", "show"]):
        if any(info.get("local") == address for info in link.get("addr_info") or []):
            return int(link.get("mtu") or 1500)
    raise errors.APIError(500, "InternalError", f"no link on this machine holds {address}")


def machine_table(cluster: str, public_ip: str, node_ip: str, ports: str = NODE_PORTS) -> str:
    """nftables: the VXLAN packets untracked; NodePorts on the machine's own address (from the
    LAN, and from the machine itself) go to its first node (whose proxy serves them, in either
    mode), masqueraded behind the bridge address so the answer comes back here."""
    name = f"pk-{cluster}-machine"
    return "\n".join([
        f"table ip {name}", f"delete table ip {name}", f"table ip {name} {{",
        "  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;",
        f"    ip daddr {public_ip} meta l4proto {{ tcp, udp }} th dport {ports} dnat to {node_ip}", "  }",
        "  chain output {", "    type nat hook output priority -100; policy accept;",
        f"    ip daddr {public_ip} meta l4proto {{ tcp, udp }} th dport {ports} dnat to {node_ip}", "  }",
        "  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;",
        f"    ip daddr {node_ip} meta l4proto {{ tcp, udp }} th dport {ports} ct status dnat masquerade", "  }",
        # the overlay's own UDP needs no connection tracking (nothing rewrites it): skip its cost
        "  chain vxlan-in {", "    type filter hook prerouting priority raw; policy accept;",
        f"    udp dport {VXLAN_PORT} notrack", "  }",
        "  chain vxlan-out {", "    type filter hook output priority raw; policy accept;",
        f"    udp dport {VXLAN_PORT} notrack", "  }",
        "}", ""])


def ensure_vtep(cluster: str, public_ip: str, vtep_ip: str, node_ip: str) -> int:
    """Make the VTEP (or keep the one there) and the NodePort table; returns the VTEP's MTU.
    Also turns on forwarding in this namespace: the machine now routes between its nodes and
    the VTEP."""
    name = vtep_name(cluster)
    mtu = underlay_mtu(public_ip) - OVERHEAD
    present = [link for link in _json(["ip", "-j", "-d", "link", "show"]) if link["ifname"] == name]
    if present:
        info = (present[0].get("linkinfo") or {}).get("info_data") or {}
        if info.get("local") != public_ip or present[0].get("address") != vtep_mac(vtep_ip):
            _run(["ip", "link", "del", name])
            present = []
    lines = []
    if not present:
        lines += [f"link add {name} type vxlan id {VNI} local {public_ip} dstport {VXLAN_PORT} nolearning",
                  f"link set {name} address {vtep_mac(vtep_ip)} alias {_quote(link_alias(cluster))}"]
    lines += [f"link set {name} mtu {mtu} up", f"addr replace {vtep_ip}/32 dev {name}"]
    _run(["ip", "-batch", "-"], "\n".join(lines) + "\n")
    _run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    _run(["nft", "-f", "-"], machine_table(cluster, public_ip, node_ip))
    return mtu


def sync(cluster: str, host_ip: str, mtu: int, local_netns: list[str], peers: list[Remote]) -> None:
    """Make the machine's VTEP entries and its nodes' routes what `peers` need, and no more."""
    vtep = vtep_name(cluster)
    plan = machine_plan(vtep, peers)
    have = {_dst(r) for r in _json(["ip", "-j", "route", "show", "dev", vtep, "proto", str(ROUTE_PROTOCOL)])}
    lines = [f"route replace {args}" for args in plan.routes.values()]
    lines += [f"route del {dst} dev {vtep}" for dst in sorted(have - set(plan.routes))]
    have_neigh = {n["dst"] for n in _json(["ip", "-j", "neigh", "show", "dev", vtep]) if "dst" in n}
    lines += [f"neigh replace {ip} lladdr {mac} dev {vtep} nud permanent" for ip, mac in plan.neighbours.items()]
    lines += [f"neigh del {ip} dev {vtep}" for ip in sorted(have_neigh - set(plan.neighbours))]
    _run(["ip", "-batch", "-"], "\n".join(lines) + "\n" if lines else "\n")
    have_fdb = {f["mac"] for f in _json(["bridge", "-j", "fdb", "show", "dev", vtep]) if f.get("dst")}
    fdb = [f"fdb replace {mac} dev {vtep} dst {ip} self permanent" for mac, ip in plan.fdb.items()]
    fdb += [f"fdb del {mac} dev {vtep} self" for mac in sorted(have_fdb - set(plan.fdb))]
    if fdb:
        _run(["bridge", "-batch", "-"], "\n".join(fdb) + "\n")
    wanted = node_plan(host_ip, mtu, peers)
    for netns in local_netns:
        have = {_dst(r) for r in _json(["ip", "-j", "route", "show", "proto", str(ROUTE_PROTOCOL)], netns=netns)}
        lines = [f"route replace {args}" for args in wanted.values()]
        lines += [f"route del {dst}" for dst in sorted(have - set(wanted))]
        if lines:
            _run(["ip", "-batch", "-"], "\n".join(lines) + "\n", netns=netns)


class Overlay:
    """The component: the VTEP, the local nodes' annotations, and a sync at every Node change."""

    def __init__(self, client, *, cluster: str, public_ip: str, host_ip: str, local: dict[str, tuple[str, str]],
                 first_node_ip: str):
        """`local`: this machine's nodes, name -> (network namespace, pod CIDR); NodePorts on
        `public_ip` go to `first_node_ip`."""
        self.client = client
        self.cluster = cluster
        self.public_ip = public_ip
        self.host_ip = host_ip
        self.local = local
        self.vtep_ip = vtep_address(sorted(local.values(), key=lambda v: v[1])[0][1])
        self.first_node_ip = first_node_ip
        self.mtu = 0
        self.ready = asyncio.Event()
        self.nodes = Informer(client, "v1", "nodes")
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._last: list[Remote] | None = None

    async def start(self) -> None:
        self.mtu = await asyncio.to_thread(ensure_vtep, self.cluster, self.public_ip, self.vtep_ip, self.first_node_ip)
        self.nodes.add_handlers(lambda n: self._changed.set(), lambda o, n: self._changed.set(),
                                lambda n: self._changed.set())
        await self.nodes.start()
        await self.nodes.wait_synced(30)
        self._tasks = [asyncio.create_task(self._annotate(), name="overlay-annotate"),
                       asyncio.create_task(self._loop(), name="overlay-sync")]
        self._changed.set()
        self.ready.set()
        log.info("overlay: VTEP %s %s (MTU %d) on %s", vtep_name(self.cluster), self.vtep_ip, self.mtu, self.public_ip)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.nodes.stop()

    async def _annotate(self) -> None:
        """Annotate each local node once it is registered (its agent creates it), and again if
        the annotations are lost."""
        want = annotations(self.public_ip, self.vtep_ip)
        while True:
            for name in self.local:
                node = self.nodes.get(name)
                if node is None:
                    continue
                notes = (node.get("metadata") or {}).get("annotations") or {}
                if all(notes.get(k) == v for k, v in want.items()):
                    continue
                try:
                    await self.client.patch("v1", "nodes", name, {"metadata": {"annotations": want}},
                                            field_manager="pocketkube-overlay")
                except errors.APIError as exc:
                    log.warning("overlay: annotating node %s failed: %s", name, exc)
            await asyncio.sleep(1.0)

    async def _loop(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            peers = remotes(self.nodes.list(), self.public_ip)
            if peers == self._last:
                continue
            try:
                await asyncio.to_thread(sync, self.cluster, self.host_ip, self.mtu,
                                        [netns for netns, _ in self.local.values()], peers)
                self._last = peers
                log.info("overlay: %d remote nodes: %s", len(peers), ", ".join(p.name for p in peers) or "none")
            except Exception as exc:  # a node namespace being made or removed: try again soon
                log.warning("overlay: sync failed: %s", exc)
                await asyncio.sleep(1.0)
                self._changed.set()
