"""The load-balancer address pool and which address a LoadBalancer Service gets (pure, no I/O).

What a cloud's load-balancer IPAM (or MetalLB's controller) decides, as data: the pool is a
range inside the node network (`172.18.0.128/26` by default, `pocketkube up
--lb-range` sets it); a Service may ask for one address through `spec.loadBalancerIP` or a
MetalLB / Cilium annotation; otherwise it keeps the address it holds, or gets the lowest
free one. `choose_address` is the whole decision; the controller
(controllers/loadbalancer.py) keeps who holds what, and `up` checks the range against the
node network with `check_pool`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterator

DEFAULT_LB_RANGE = "172.18.0.128/26"  # the upper half of the node network, past any node (64 at most)
# The Services we serve: no spec.loadBalancerClass (the default implementation, as a cloud's),
# or this one.
LB_CLASS = "pocketkube.io/l2"
# Annotations that ask for given addresses (comma-separated), as MetalLB and Cilium read them;
# spec.loadBalancerIP (deprecated, in every old tutorial) is read after them.
REQUEST_ANNOTATIONS = ("metallb.universe.tf/loadBalancerIPs", "metallb.io/loadBalancerIPs",
                       "lbipam.cilium.io/ips", "io.cilium/lb-ipam-ips")


# The label of a load-balancer address on the eth0 of the node announcing it (node/announcer.py
# puts it there; `status` reads it back; the userspace proxy does not take it for a node address).
ANNOUNCED_LABEL = "eth0:lb"


class PoolError(ValueError):
    """A range that cannot be a pool; the message says why."""


@dataclass(frozen=True)
class Pool:
    """Addresses from one or more ranges `A-B` or CIDRs, comma-separated, in this order."""
    text: str
    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, text: str) -> Pool:
        ranges = []
        for part in (p.strip() for p in text.split(",")):
            try:
                if "-" in part:
                    first, last = (ipaddress.IPv4Address(a.strip()) for a in part.split("-", 1))
                else:
                    net = ipaddress.IPv4Network(part, strict=True)
                    first, last = net.network_address, net.broadcast_address
            except ValueError as exc:
                raise PoolError(f"invalid load-balancer range {part!r}: use FIRST-LAST (172.18.0.128-172.18.0.191) "
                                f"or a CIDR (172.18.0.128/25) of IPv4 addresses ({exc})") from None
            if int(last) < int(first):
                raise PoolError(f"invalid load-balancer range {part!r}: {last} comes before {first}")
            ranges.append((int(first), int(last)))
        return cls(text, tuple(ranges))

    def __str__(self) -> str:
        return self.text

    def __contains__(self, ip: object) -> bool:
        try:
            value = int(ipaddress.IPv4Address(str(ip)))
        except ValueError:
            return False
        return any(first <= value <= last for first, last in self.ranges)

    @property
    def size(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)

    def addresses(self) -> Iterator[str]:
        for first, last in self.ranges:
            for value in range(first, last + 1):
                yield str(ipaddress.IPv4Address(value))

    def networks(self) -> list[ipaddress.IPv4Network]:
        """The pool as CIDRs (for routes)."""
        nets: list[ipaddress.IPv4Network] = []
        for first, last in self.ranges:
            nets += ipaddress.summarize_address_range(ipaddress.IPv4Address(first), ipaddress.IPv4Address(last))
        return nets


def check_pool(pool: Pool, node_subnet: ipaddress.IPv4Network, used: dict[str, str],
               other_ranges: dict[str, ipaddress.IPv4Network]) -> None:
    """Raise PoolError unless every pool address lies inside the node network (the host reaches
    it there, on the bridge) and is none of `used` (address -> what holds it: the host, the
    nodes) and is not the node network's own network or broadcast address. `other_ranges`
    (name -> network, e.g. the pod network) get their own message."""
    for net in pool.networks():
        for name, other in other_ranges.items():
            if net.overlaps(other):
                raise PoolError(f"--lb-range {pool} overlaps the {name} {other}; pick addresses inside "
                                f"the node network {node_subnet}, above the nodes' addresses")
        if not net.subnet_of(node_subnet):
            raise PoolError(f"--lb-range {pool} is not inside the node network {node_subnet}: the host reaches "
                            f"load-balancer addresses on the node network's bridge")
    for special in (node_subnet.network_address, node_subnet.broadcast_address):
        if str(special) in pool:
            raise PoolError(f"--lb-range {pool} holds {special}, the node network's "
                            f"{'network' if special == node_subnet.network_address else 'broadcast'} address")
    for address, holder in used.items():
        if address in pool:
            raise PoolError(f"--lb-range {pool} overlaps the node addresses in use: {address} is {holder}")


def wants_load_balancer(svc: dict) -> bool:
    """A Service this implementation gives an address to (type LoadBalancer, no foreign class)."""
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (None, LB_CLASS)


def ingress_ips(svc: dict) -> list[str]:
    return [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if i.get("ip")]


def requested_addresses(svc: dict) -> list[str]:
    """The addresses a Service asks for: the first annotation set, else spec.loadBalancerIP."""
    annotations = (svc.get("metadata") or {}).get("annotations") or {}
    for key in REQUEST_ANNOTATIONS:
        if annotations.get(key, "").strip():
            return [a.strip() for a in annotations[key].split(",") if a.strip()]
    ip = (svc.get("spec") or {}).get("loadBalancerIP") or ""
    return [ip] if ip else []


@dataclass(frozen=True)
class Decision:
    ip: str | None  # the address the Service gets; None: it stays pending
    message: str = ""  # why it stays pending


def choose_address(key: str, svc: dict, pool: Pool, holders: dict[str, str]) -> Decision:
    """The address Service `key` ("namespace/name") should hold, given who holds what
    (address -> key; the Service's own entry, if any, included): the requested address if it
    is in the pool and free; else the one it holds, if still in the pool and its own; else the
    lowest free address."""
    requested = requested_addresses(svc)
    if requested:
        ipv4 = []
        for address in requested:
            try:
                parsed = ipaddress.ip_address(address)
            except ValueError:
                return Decision(None, f"requested address {address!r} is not an IP address")
            if parsed.version == 4:
                ipv4.append(str(parsed))
        if len(ipv4) != 1:
            return Decision(None, f"exactly one IPv4 address may be requested, not {requested}")
        wanted = ipv4[0]
        if wanted not in pool:
            return Decision(None, f"requested address {wanted} is not in the load-balancer pool {pool}")
        holder = holders.get(wanted)
        if holder not in (None, key):
            return Decision(None, f"requested address {wanted} is already used by Service {holder}")
        return Decision(wanted)
    for current in ingress_ips(svc):
        if current in pool and holders.get(current) in (None, key):
            return Decision(current)
    for address in pool.addresses():
        if address not in holders:
            return Decision(address)
    return Decision(None, f"no address left in the load-balancer pool {pool} ({pool.size} addresses, all in use)")
