"""A cluster's address ranges, chosen from free space as kind does (pure: no I/O).

A cluster has four ranges: the node network (the host is .1, node N is .(N+1)), the pod
network (node N holds its Nth /24), the service network (.1 = `kubernetes`, .10 = kube-dns)
and the load-balancer pool (a part of the node network above the nodes). `choose` takes
what is already in use on the machine (`Taken`: the host's routes and addresses, read by
node/network.py, and the ranges of the other registered clusters) and returns the first
candidate of each kind that overlaps none of it, with a note for each candidate it passed
over and why. The first candidates are the defaults (DESIGN.md, "The network"), so the
default cluster on a machine with nothing in the way keeps them. A range given explicitly
(`up --node-cidr/--pod-cidr/--service-cidr/--lb-range`) is kept as given, or refused with a
`RangeError` naming what it overlaps and a free range to pass instead.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterator

from pocketkube.core.cluster import CLUSTER_CIDR, NODE_SUBNET, SERVICE_CIDR

Net = ipaddress.IPv4Network
MAX_NODES = 64  # node N is .(N+1) of the node network: below the pool's .128


class RangeError(ValueError):
    """A range that cannot be used; the message says why and what to pass instead."""


@dataclass(frozen=True)
class Taken:
    """An address range in use on this machine, and by what (`route 172.18.0.0/16 dev br-1`,
    `cluster 'a' (pods)`)."""
    network: Net
    what: str


@dataclass(frozen=True)
class Ranges:
    node_cidr: str
    pod_cidr: str
    service_cidr: str
    lb_range: str

    @property
    def cluster_dns(self) -> str:
        """kube-dns's ClusterIP: the service range's 10th address (10.96.0.10)."""
        return cluster_dns(self.service_cidr)

    def networks(self) -> list[tuple[str, Net]]:
        """(what, range) of the node, pod and service networks (the pool lies inside the first)."""
        return [("nodes", Net(self.node_cidr)), ("pods", Net(self.pod_cidr)), ("services", Net(self.service_cidr))]


def cluster_dns(service_cidr: str) -> str:
    return str(Net(service_cidr, strict=False).network_address + 10)


def default_lb_range(node_cidr: str) -> str:
    """The pool when none is given: the first quarter of the node network's upper half
    (172.18.0.128/26 of 172.18.0.0/24), past the nodes."""
    net = Net(node_cidr)
    upper = list(net.subnets(prefixlen_diff=1))[1]
    return str(next(upper.subnets(prefixlen_diff=1)))


DEFAULTS = Ranges(NODE_SUBNET, CLUSTER_CIDR, SERVICE_CIDR, default_lb_range(NODE_SUBNET))


def node_candidates() -> Iterator[Net]:
    """172.18.0.0/24, 172.18.1.0/24, ... 172.31.255.0/24: the private 172.16/12 block past
    Docker's default bridge (172.17.0.0/16), /24 at a time."""
    for second in range(18, 32):
        for third in range(256):
            yield Net(f"172.{second}.{third}.0/24")


def pod_candidates() -> Iterator[Net]:
    """10.244.0.0/16 (kubeadm's, flannel's and kind's) up to 10.255.0.0/16, then 10.224-10.243."""
    for second in [*range(244, 256), *range(224, 244)]:
        yield Net(f"10.{second}.0.0/16")


def service_candidates() -> Iterator[Net]:
    """10.96.0.0/12 (kubeadm's default) and the /12s above it, below the pod candidates."""
    for second in range(96, 224, 16):
        yield Net(f"10.{second}.0.0/12")


def _overlaps(net: Net, taken: list[Taken]) -> Taken | None:
    return next((t for t in taken if t.network.version == net.version and t.network.overlaps(net)), None)


def _pick(kind: str, candidates: Iterator[Net], taken: list[Taken], notes: list[str]) -> Net:
    """The first candidate that overlaps nothing taken; a note says what the ones passed over overlap."""
    skipped: list[Net] = []
    why: list[str] = []
    for net in candidates:
        hit = _overlaps(net, taken)
        if hit is None:
            if skipped:
                more = f" (and {len(skipped) - 1} more after it)" if len(skipped) > 1 else ""
                notes.append(f"{kind}: skipped {skipped[0]}{more}: {'; '.join(why)}; chose {net}")
            return net
        skipped.append(net)
        reason = f"overlaps {hit.what}"
        if reason not in why:
            why.append(reason)
    raise RangeError(f"no free {kind} range is left on this machine; give one with --{_FLAGS[kind]}")


_FLAGS = {"nodes": "node-cidr", "pods": "pod-cidr", "services": "service-cidr"}


def parse(kind: str, text: str) -> Net:
    """An explicit range, checked for its shape: IPv4, and big enough for its use."""
    flag = _FLAGS[kind]
    try:
        net = Net(text, strict=True)
    except ValueError as exc:
        raise RangeError(f"--{flag} {text!r} is not an IPv4 network in CIDR form ({exc})") from None
    if kind == "nodes" and net.prefixlen > 24:
        raise RangeError(f"--{flag} {text}: the node network needs at least a /24 (the host, {MAX_NODES} nodes "
                         "and the load-balancer pool)")
    if kind == "pods" and net.prefixlen > 24 - 7:
        raise RangeError(f"--{flag} {text}: the pod network needs at least a /17 (one /24 per node, "
                         f"{MAX_NODES} nodes at most)")
    if kind == "services" and not 12 <= net.prefixlen <= 28:
        raise RangeError(f"--{flag} {text}: the service network must be between a /12 and a /28 "
                         "(as kube-apiserver's --service-cluster-ip-range)")
    return net


def choose(taken: list[Taken], node_cidr: str | None = None, pod_cidr: str | None = None,
           service_cidr: str | None = None, lb_range: str | None = None) -> tuple[Ranges, list[str]]:
    """The cluster's ranges and the notes on what was passed over. Explicit ranges are checked
    against `taken` and against each other; the others are the first free candidates."""
    notes: list[str] = []
    chosen: list[Taken] = []
    given = {"nodes": node_cidr, "pods": pod_cidr, "services": service_cidr}
    candidates = {"nodes": node_candidates, "pods": pod_candidates, "services": service_candidates}
    # explicit ones first: the free ones are then chosen around them
    for kind in sorted(given, key=lambda k: given[k] is None):
        if given[kind] is not None:
            net = parse(kind, given[kind])
            hit = _overlaps(net, taken + chosen)
            if hit is not None:
                free = next((c for c in candidates[kind]() if _overlaps(c, taken + chosen) is None), None)
                raise RangeError(f"--{_FLAGS[kind]} {net} overlaps {hit.what}"
                                 + (f"; pass a free range such as --{_FLAGS[kind]} {free}, or leave the flag out "
                                    "and one is chosen" if free else ""))
        else:
            net = _pick(kind, candidates[kind](), taken + chosen, notes)
        chosen.append(Taken(net, f"this cluster's {kind} ({net})"))
    by_kind = {kind: str(t.network) for kind, t in zip(sorted(given, key=lambda k: given[k] is None), chosen)}
    return Ranges(by_kind["nodes"], by_kind["pods"], by_kind["services"],
                  lb_range or default_lb_range(by_kind["nodes"])), notes


def describe(ranges: Ranges) -> str:
    return (f"nodes {ranges.node_cidr}, pods {ranges.pod_cidr}, services {ranges.service_cidr} "
            f"(DNS {ranges.cluster_dns}), load balancers {ranges.lb_range}")


def taken_on_host(routes: list[dict], addresses: list[dict]) -> list[Taken]:
    """What the host's routes (`ip -j -4 route show table all`) and addresses (`ip -j -4 addr`)
    hold: every route but the default and the local table's, every address's network."""
    taken: list[Taken] = []
    for route in routes:
        dst, table = route.get("dst"), str(route.get("table") or "main")
        if not dst or dst == "default" or table == "local":
            continue
        try:
            net = Net(dst, strict=False)
        except ValueError:
            continue
        kind = route.get("type") or "unicast"
        words = ["route", dst] + ([kind] if kind != "unicast" else []) + (
            [f"dev {route['dev']}"] if route.get("dev") else []) + ([f"table {table}"] if table != "main" else [])
        taken.append(Taken(net, " ".join(words)))
    for link in addresses:
        for info in link.get("addr_info") or []:
            if info.get("family", "inet") != "inet" or "local" not in info:
                continue
            try:
                net = Net(f"{info['local']}/{info.get('prefixlen', 32)}", strict=False)
            except ValueError:
                continue
            if not net.is_loopback:
                taken.append(Taken(net, f"address {info['local']}/{net.prefixlen} on {link.get('ifname', '?')}"))
    return taken


def taken_by_cluster(name: str, ranges: Ranges) -> list[Taken]:
    """What another registered cluster holds."""
    return [Taken(net, f"cluster {name!r} ({kind} {net})") for kind, net in ranges.networks()]
