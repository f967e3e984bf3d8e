"""Service ClusterIP and NodePort allocation, done inside the API server's Service storage.

What Kubernetes' ipallocator, portallocator and service storage (alloc.go) do, with the
same rules and messages:

- `IPRange` / `PortRange`: bitmaps over the service CIDR (network and broadcast address
  never handed out) and the NodePort range. The first min(max(16, size/16), 256)
  addresses (ports: min(max(16, size/32), 128)) are the static band: dynamic allocation
  picks a random free value above it and falls back to the band only when the rest is full.
- `ServiceAllocators`: which Service types get cluster IPs, nodePorts and a
  healthCheckNodePort, ipFamilies / ipFamilyPolicy filling, type changes, release on
  delete, and `restore()` from the stored Services (the store is the source of truth, so
  a restart never hands out an IP or port twice).
- Every allocation of one write happens synchronously (no await) and is settled by
  `finish(stored)`: kept if the write was stored, undone otherwise; what the old object
  held is released only once the new one is stored (better to leak than hand out twice).
- `install()` wires this into `Storage`; `ensure_kubernetes_service()` writes the
  `kubernetes` Service in `default` (10.96.0.1:443) as the apiserver does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from typing import Callable, Iterable

from pocketkube.apiserver import allocstore
from pocketkube.apiserver.kinds import registry
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.apiserver.kinds.service import _validate_cluster_ips as validate_cluster_ip_fields
from pocketkube.apiserver.kinds.service import needs_health_check, needs_node_port
from pocketkube.apiserver.storage import Storage, WriteOptions, collection_prefix
from pocketkube.apiserver.validation import parse_ip_sloppy
from pocketkube.core import cluster, errors
from pocketkube.core.errors import FieldError, invalid_value
from pocketkube.core.objects import deep_copy
from pocketkube.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SERVICE_CIDR = cluster.SERVICE_CIDR
NODE_PORT_RANGE = "30000-32767"
KUBERNETES_SERVICE = ("default", "kubernetes")
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
DRY_RUN_FIRST_PORT = 32768  # portallocator's dummy base for dry-run nodePorts
PERSIST_ROUNDS = 20  # picks again after conflicts with other servers before giving up


class AllocationError(Exception):
    """An allocation the range refuses; str() is Kubernetes' text."""


class RangeFull(AllocationError):
    def __init__(self) -> None:
        super().__init__("range is full")


class AlreadyAllocated(AllocationError):
    def __init__(self, what: str) -> None:
        super().__init__(f"provided {what} is already allocated")


class NotInRange(AllocationError):
    pass


def static_band_size(range_size: int, minimum: int, maximum: int, step: int) -> int:
    """calculateRangeOffset: min(max(minimum, range_size/step), maximum); 0 for tiny ranges."""
    if range_size <= minimum:
        return 0
    return min(max(minimum, range_size // step), maximum)


class Bitmap:
    """Offsets 0..size-1, taken or free. Dynamic picks start at a random offset of the
    upper part [band, size) and scan forward (wrapping); the band [0, band) is used
    only when the upper part is full."""

    def __init__(self, size: int, band: int, rng: random.Random | None = None):
        self.size = size
        self.band = band
        self._rng = rng or random.Random()
        self._taken: set[int] = set()

    @property
    def used(self) -> int:
        return len(self._taken)

    @property
    def free(self) -> int:
        return self.size - len(self._taken)

    def has(self, offset: int) -> bool:
        return offset in self._taken

    def allocate(self, offset: int) -> bool:
        """Take `offset`; False when it was already taken."""
        if offset in self._taken:
            return False
        self._taken.add(offset)
        return True

    def allocate_next(self) -> int | None:
        if len(self._taken) >= self.size:
            return None
        offset = self._scan(self.band, self.size)
        if offset is None:
            offset = self._scan(0, self.band)
        if offset is not None:
            self._taken.add(offset)
        return offset

    def release(self, offset: int) -> None:
        self._taken.discard(offset)

    def replace(self, offsets: Iterable[int]) -> None:
        self._taken = {o for o in offsets if 0 <= o < self.size}

    def _scan(self, low: int, high: int) -> int | None:
        span = high - low
        if span <= 0:
            return None
        start = self._rng.randrange(span)
        for i in range(span):
            offset = low + (start + i) % span
            if offset not in self._taken:
                return offset
        return None


class IPRange:
    """The service CIDR. Offset 0 is the address after the network address; the
    broadcast address (IPv4) is past the end. IPv6 ranges are capped at 65536 addresses."""

    def __init__(self, cidr: str, rng: random.Random | None = None):
        self.network = ipaddress.ip_network(cidr)
        self.cidr = str(self.network)
        self.family = "IPv6" if self.network.version == 6 else "IPv4"
        total = self.network.num_addresses
        size = min(total - 1, 65536) if self.network.version == 6 else total - 2
        self._base = int(self.network.network_address) + 1
        self.bitmap = Bitmap(max(size, 0), static_band_size(total, 16, 256, 16), rng)

    def offset(self, ip: str) -> int | None:
        """The bitmap offset of `ip`, or None when it is not an address this range hands out."""
        if self.network.version == 4:
            try:  # the canonical dotted quad, in C; anything else (leading zeros...) the sloppy way
                value = int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
            except (OSError, TypeError, ValueError):
                value = None
            if value is not None:
                offset = value - self._base
                return offset if 0 <= offset < self.bitmap.size else None
        addr = parse_ip_sloppy(ip)
        if addr is None or addr.version != self.network.version or addr not in self.network:
            return None
        offset = int(addr) - self._base
        return offset if 0 <= offset < self.bitmap.size else None

    def address(self, offset: int) -> str:
        return str(ipaddress.ip_address(self._base + offset))

    def contains(self, ip: str) -> bool:
        return self.offset(ip) is not None

    def has(self, ip: str) -> bool:
        offset = self.offset(ip)
        return offset is not None and self.bitmap.has(offset)

    def allocate(self, ip: str) -> None:
        offset = self.offset(ip)
        if offset is None:
            raise self.not_in_range(ip)
        if not self.bitmap.allocate(offset):
            raise AlreadyAllocated("IP")

    def not_in_range(self, ip: str) -> NotInRange:
        addr = parse_ip_sloppy(ip)
        return NotInRange(f"the provided IP ({addr if addr is not None else ip}) is not in the valid range. "
                          f"The range of valid IPs is {self.cidr}")

    def allocate_next(self) -> str:
        offset = self.bitmap.allocate_next()
        if offset is None:
            raise RangeFull()
        return self.address(offset)

    def release(self, ip: str) -> None:
        offset = self.offset(ip)
        if offset is not None:
            self.bitmap.release(offset)


class PortRange:
    """The NodePort range, "30000-32767" (both ends included)."""

    def __init__(self, spec: str, rng: random.Random | None = None):
        first, _, last = spec.partition("-")
        self.base = int(first)
        size = int(last or first) - self.base + 1
        self.spec = f"{self.base}-{self.base + size - 1}"
        self.bitmap = Bitmap(size, static_band_size(size, 16, 128, 32), rng)

    def contains(self, port: int) -> bool:
        return self.base <= port < self.base + self.bitmap.size

    def has(self, port: int) -> bool:
        return self.contains(port) and self.bitmap.has(port - self.base)

    def allocate(self, port: int) -> None:
        if not self.contains(port):
            raise NotInRange(f"provided port is not in the valid range. The range of valid ports is {self.spec}")
        if not self.bitmap.allocate(port - self.base):
            raise AlreadyAllocated("port")

    def allocate_next(self) -> int:
        offset = self.bitmap.allocate_next()
        if offset is None:
            raise RangeFull()
        return self.base + offset

    def release(self, port: int) -> None:
        if self.contains(port):
            self.bitmap.release(port - self.base)


Refuse = Callable[[AllocationError], Exception]  # an allocation error -> the APIError the write answers


class Transaction:
    """The allocations of one write. Taking is immediate; releasing what the old object
    held waits for `finish(True)`; `finish(False)` gives back what was taken. A dry run
    takes nothing, with Kubernetes' placeholder answers (the network address, ports
    counting up from 32769). With allocations shared through the store, `persist()`
    claims what was taken before the object is written: a picked value another server
    holds is picked again, a requested one is refused with the usual message."""

    def __init__(self, owner: "ServiceAllocators", dry_run: bool, svc: dict):
        self._owner = owner
        self.dry_run = dry_run
        self.svc = svc
        self.ips_taken: list[str] = []
        self.ports_taken: list[int] = []
        self.ips_to_release: list[str] = []
        self.ports_to_release: list[int] = []
        self.claimed: set[tuple[str, object]] = set()  # ("ip", ip) / ("port", port) written to the store
        self._refuse: dict[tuple[str, object], Refuse] = {}
        self._picked: set[tuple[str, object]] = set()  # dynamic: may be picked again
        self.joint: list[str] = []  # IPs whose claims go into the object's own store write
        self._refusals = 0

    def __call__(self, stored: bool) -> None:
        self.finish(stored)

    def take_ip(self, ip: str, refuse: Refuse) -> None:
        ips = self._owner.ips
        try:
            if self.dry_run:
                if not ips.contains(ip):
                    raise ips.not_in_range(ip)
                return
            if self._owner.claimed_elsewhere(ip):
                raise AlreadyAllocated("IP")
            ips.allocate(ip)
        except AllocationError as exc:
            raise refuse(exc) from None
        self.ips_taken.append(ip)
        self._refuse[("ip", ip)] = refuse

    def take_next_ip(self, refuse: Refuse) -> str:
        if self.dry_run:
            return str(self._owner.ips.network.network_address)
        try:
            ip = self._owner.ips.allocate_next()
            while self._owner.claimed_elsewhere(ip):  # another server's claim already in the cache
                ip = self._owner.ips.allocate_next()
        except AllocationError as exc:
            raise refuse(exc) from None
        self.ips_taken.append(ip)
        self._refuse[("ip", ip)] = refuse
        self._picked.add(("ip", ip))
        return ip

    def take_port(self, port: int, refuse: Refuse) -> None:
        try:
            if self.dry_run:
                if self._owner.ports.has(port) or port in self.ports_taken:
                    raise AlreadyAllocated("port")
            else:
                self._owner.ports.allocate(port)
        except AllocationError as exc:
            raise refuse(exc) from None
        self.ports_taken.append(port)
        self._refuse[("port", port)] = refuse

    def take_next_port(self, refuse: Refuse) -> int:
        try:
            if self.dry_run:
                port = max(self.ports_taken, default=DRY_RUN_FIRST_PORT) + 1
            else:
                port = self._owner.ports.allocate_next()
        except AllocationError as exc:
            raise refuse(exc) from None
        self.ports_taken.append(port)
        self._refuse[("port", port)] = refuse
        self._picked.add(("port", port))
        return port

    def release_ip_later(self, ip: str) -> None:
        self.ips_to_release.append(ip)

    def release_port_later(self, port: int) -> None:
        self.ports_to_release.append(port)

    async def persist(self, joint: bool = False) -> dict[str, bytes]:
        """Claim in the store what this write took (allocstore); called right before the write.
        joint: the cluster IPs' claims are not written here but returned (key -> value), to be
        created in the object's own store write (Storage.create: one create_all, ADR 0025);
        `refused()` then hands back those another server holds."""
        shared = self._owner.shared
        if shared is None or self.dry_run:
            return {}
        for _ in range(PERSIST_ROUNDS):
            lost: list[tuple[str, object]] = []
            for ip in [] if joint else [ip for ip in self.ips_taken if ("ip", ip) not in self.claimed]:
                if await shared.ips.claim(ip, self.svc):
                    self.claimed.add(("ip", ip))
                else:
                    lost.append(("ip", ip))
            ports = {p for p in self.ports_taken if ("port", p) not in self.claimed}
            base = self._owner.ports.base
            theirs = {base + o for o in await shared.ports.claim({p - base for p in ports})}
            if not theirs:
                self.claimed |= {("port", p) for p in ports}
            lost += [("port", p) for p in sorted(theirs)]
            if not lost:
                break
            for what in lost:
                self._pick_again(what)
        else:
            raise self._conflicting()
        if not joint:
            return {}
        self.joint = [ip for ip in self.ips_taken if ("ip", ip) not in self.claimed]
        return {shared.ips.key(ip): shared.ips.value(ip, self.svc) for ip in self.joint}

    async def refused(self, keys: frozenset[str]) -> dict[str, bytes]:
        """The object's store write with the joint claims was refused, these keys existing: an
        IP another server holds is picked again where this write picked it, or refused with
        Kubernetes' message where the object asked for it. Returns the claims to write now."""
        shared = self._owner.shared
        if shared is None:
            return {}
        self._refusals += 1
        if self._refusals > PERSIST_ROUNDS:
            raise self._conflicting()
        for ip in self.joint:
            if shared.ips.key(ip) in keys and await shared.ips.held_elsewhere(ip):
                self._pick_again(("ip", ip))
        return await self.persist(joint=True)

    @staticmethod
    def _conflicting() -> Exception:
        return errors.internal("failed to allocate: the allocations kept conflicting with other API servers")

    def _pick_again(self, what: tuple[str, object]) -> None:
        """`what` belongs to another server (it stays taken in our bitmap): pick another
        value where this write picked it, or refuse it where the object asked for it."""
        kind, value = what
        refuse = self._refuse.pop(what)
        taken = self.ips_taken if kind == "ip" else self.ports_taken
        taken.remove(value)
        if what not in self._picked:
            raise refuse(AlreadyAllocated("IP" if kind == "ip" else "port"))
        self._picked.discard(what)
        spec = self.svc["spec"]
        if kind == "ip":
            new_ip = self.take_next_ip(refuse)
            spec["clusterIPs"] = [new_ip if ip == value else ip for ip in spec.get("clusterIPs") or []]
            if spec.get("clusterIP") == value:
                spec["clusterIP"] = new_ip
        else:
            new_port = self.take_next_port(refuse)
            for port in spec.get("ports") or []:
                if port.get("nodePort") == value:
                    port["nodePort"] = new_port
            if spec.get("healthCheckNodePort") == value:
                spec["healthCheckNodePort"] = new_port

    def finish(self, stored: bool) -> None:
        if self.dry_run:
            return
        owner = self._owner
        owner.open.discard(self)
        if stored and self.joint and owner.shared is not None:
            owner.shared.ips.claimed.update(self.joint)  # stored with the object
        if stored:
            for ip in self.ips_to_release:
                owner.release_ip(ip, shared=True)
            for port in self.ports_to_release:
                owner.release_port(port, shared=True)
        else:
            for ip in self.ips_taken:
                owner.release_ip(ip, shared=("ip", ip) in self.claimed)
            for port in self.ports_taken:
                owner.release_port(port, shared=("port", port) in self.claimed)
        self.ips_taken, self.ports_taken, self.ips_to_release, self.ports_to_release = [], [], [], []
        self.joint = []


class ServiceAllocators:
    """Cluster IPs and nodePorts of every Service, as the Service storage keeps them.

    The first address of the CIDR (10.96.0.1) is held from the start for the
    `kubernetes` Service in `default`: only that Service can take it, and it is never
    released."""

    def __init__(self, service_cidr: str = SERVICE_CIDR, node_port_range: str = NODE_PORT_RANGE,
                 rng: random.Random | None = None):
        self.ips = IPRange(service_cidr, rng)
        self.ports = PortRange(node_port_range, rng)
        self.kubernetes_ip = self.ips.address(0)
        self.ips.allocate(self.kubernetes_ip)
        self.shared: Shared | None = None  # set by install(): allocations claimed in the store
        self.open: set[Transaction] = set()  # transactions not finished yet (what they took is in flight)

    # ---- state ----------------------------------------------------------------------

    def restore(self, services: Iterable[dict]) -> list[str]:
        """Mark what stored Services hold (server start). Returns one warning per value
        two Services claim or that lies outside the ranges (the first claimant keeps it)."""
        warnings: list[str] = []
        for svc in services:
            name = "{}/{}".format(svc.get("metadata", {}).get("namespace", ""), svc.get("metadata", {}).get("name", ""))
            for ip in _held_ips(svc.get("spec") or {}):
                if ip == self.kubernetes_ip and _is_kubernetes_service(svc):
                    continue
                try:
                    self.ips.allocate(ip)
                except AllocationError as exc:
                    warnings.append(f"service {name}: cluster IP {ip}: {exc}")
            for port in _held_ports(svc.get("spec") or {}):
                try:
                    self.ports.allocate(port)
                except AllocationError as exc:
                    warnings.append(f"service {name}: node port {port}: {exc}")
        for warning in warnings:
            log.warning("restoring allocations: %s", warning)
        return warnings

    def release_ip(self, ip: str, shared: bool = True) -> None:
        """Give back `ip`; `shared`: also its claim in the store (one this server made or a
        stored Service held)."""
        if ip != self.kubernetes_ip:
            self.ips.release(ip)
            if shared and self.shared is not None and self.ips.contains(ip):
                self.shared.ips.release(ip)

    def release_port(self, port: int, shared: bool = True) -> None:
        self.ports.release(port)
        if shared and self.shared is not None and self.ports.contains(port):
            self.shared.ports.release({port - self.ports.base})

    def claimed_elsewhere(self, ip: str) -> bool:
        """The watch cache already shows another server's claim of `ip` (it is marked taken here too)."""
        if self.shared is None or not self.shared.ips.known(ip):
            return False
        offset = self.ips.offset(ip)
        if offset is not None:
            self.ips.bitmap.allocate(offset)
        return True

    def release(self, service: dict) -> None:
        """releaseAllocatedResources: give back a deleted Service's IPs and ports."""
        spec = service.get("spec") or {}
        for ip in _held_ips(spec):
            self.release_ip(ip)
        for port in _held_ports(spec):
            self.release_port(port)

    # ---- storage hooks ---------------------------------------------------------------

    def begin(self, operation: str, info: KindInfo, obj: dict, old: dict | None,
              dry_run: bool) -> Callable[[bool], None] | None:
        """Allocate for a Service being created or updated (Storage reservation hook).
        Fills obj in place, raises APIError, returns the transaction's `finish`."""
        if info.group or info.resource != "services":
            return None
        txn = Transaction(self, dry_run, obj)
        if not dry_run:
            self.open.add(txn)
        try:
            if old is None:
                self._allocate_create(obj, txn)
            else:
                self._allocate_update(obj, old, txn)
        except Exception:
            txn.finish(False)
            raise
        return txn

    def on_deleted(self, info: KindInfo, obj: dict) -> None:
        if not info.group and info.resource == "services":
            self.release(obj)

    # ---- create and update (alloc.go) ---------------------------------------------

    def _allocate_create(self, svc: dict, txn: Transaction) -> None:
        spec = svc.setdefault("spec", {})
        self._init_ip_families(svc, None)
        self._allocate_cluster_ips(svc, txn)
        if spec.get("type") in NODE_PORT_TYPES:
            _init_node_ports(svc, txn)
        if needs_health_check(spec):
            _allocate_health_check_port(spec, txn)

    def _allocate_update(self, svc: dict, old: dict, txn: Transaction) -> None:
        spec, old_spec = svc.setdefault("spec", {}), old.get("spec") or {}
        self._init_ip_families(svc, old_spec)
        self._update_cluster_ips(svc, old_spec, txn)
        if old_spec.get("type") in NODE_PORT_TYPES and spec.get("type") in ("ExternalName", "ClusterIP"):
            for port in _node_ports(old_spec):
                txn.release_port_later(port)
        if spec.get("type") in NODE_PORT_TYPES:
            _update_node_ports(svc, old_spec, txn)
        if not needs_health_check(old_spec) and needs_health_check(spec):
            _allocate_health_check_port(spec, txn)
        elif needs_health_check(old_spec) and not needs_health_check(spec) and old_spec.get("healthCheckNodePort"):
            txn.release_port_later(old_spec["healthCheckNodePort"])

    def _init_ip_families(self, svc: dict, old_spec: dict | None) -> None:
        """initIPFamilyFields on a single-family cluster: default ipFamilyPolicy and
        ipFamilies, refuse what this cluster cannot give."""
        spec, name = svc["spec"], svc.get("metadata", {}).get("name", "")
        if spec.get("type") == "ExternalName" or _same_prefer_dual_stack(spec, old_spec):
            return
        headless_selectorless = spec.get("clusterIP") == "None" and not spec.get("selector")
        if spec.get("ipFamilyPolicy") is None:
            if old_spec and old_spec.get("ipFamilyPolicy"):
                spec["ipFamilyPolicy"] = old_spec["ipFamilyPolicy"]
            else:
                spec["ipFamilyPolicy"] = "RequireDualStack" if headless_selectorless else "SingleStack"
        loose = validate_cluster_ip_fields(spec)
        if loose:
            raise errors.invalid("Service", "", name, loose)
        policy = spec["ipFamilyPolicy"]
        cluster_ips = spec.get("clusterIPs") or []
        families = spec["ipFamilies"] = list(spec.get("ipFamilies") or [])
        errs: list[FieldError] = []
        if old_spec is not None:
            errs += _reduction_errors(spec, old_spec)
        if policy == "SingleStack":
            if len(cluster_ips) == 2:
                errs.append(invalid_value("spec.ipFamilyPolicy", policy,
                                          "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"))
            if len(families) == 2:
                errs.append(invalid_value("spec.ipFamilyPolicy", policy,
                                          "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"))
        for i, ip in enumerate(cluster_ips):
            if ip == "None":
                break
            if i >= len(families):
                family = _family_of(ip)
                if family != self.ips.family:
                    errs.append(invalid_value(f"spec.clusterIPs[{i}]", cluster_ips, f"{family} is not configured on this cluster"))
                else:
                    families.append(family)
        if errs:
            raise errors.invalid("Service", "", name, errs)
        if headless_selectorless:
            if not families:
                families.append(self.ips.family)
            if len(families) < 2 and policy != "SingleStack":
                families.append("IPv6" if families[0] == "IPv4" else "IPv4")
            return
        if policy == "RequireDualStack":
            errs.append(invalid_value("spec.ipFamilyPolicy", policy, "this cluster is not configured for dual-stack services"))
        for i, family in enumerate(families):
            if family != self.ips.family:
                errs.append(invalid_value(f"spec.ipFamilies[{i}]", family, "not configured on this cluster"))
        if errs:
            raise errors.invalid("Service", "", name, errs)
        if not families:
            families.append(self.ips.family)

    def _allocate_cluster_ips(self, svc: dict, txn: Transaction) -> None:
        """allocClusterIPs: one IP for the cluster's family, the requested one or the next free."""
        spec = svc["spec"]
        if spec.get("type") == "ExternalName" or _is_headless(spec):
            return
        cluster_ips = list(spec.get("clusterIPs") or [])
        for i, _family in enumerate(spec.get("ipFamilies") or []):
            if i >= len(cluster_ips):
                cluster_ips.append("")
            requested = cluster_ips[i]
            if not requested:
                cluster_ips[i] = txn.take_next_ip(
                    lambda exc: errors.internal(f"failed to allocate a serviceIP: {exc}"))
            elif not (requested == self.kubernetes_ip and _is_kubernetes_service(svc)):
                shown = list(cluster_ips)
                txn.take_ip(requested, lambda exc, requested=requested, shown=shown: errors.invalid(
                    "Service", "", svc.get("metadata", {}).get("name", ""), [
                        invalid_value("spec.clusterIPs", shown, f"failed to allocate IP {requested}: {exc}")]))
        spec["clusterIPs"] = cluster_ips
        if cluster_ips:
            spec["clusterIP"] = cluster_ips[0]

    def _update_cluster_ips(self, svc: dict, old_spec: dict, txn: Transaction) -> None:
        """updateClusterIPs: ExternalName -> other types allocates, the reverse releases."""
        spec = svc["spec"]
        if old_spec.get("type") == "ExternalName" and spec.get("type") != "ExternalName":
            self._allocate_cluster_ips(svc, txn)
        elif spec.get("type") == "ExternalName":
            for ip in _held_ips(old_spec):  # none for headless or ExternalName
                txn.release_ip_later(ip)


# ---- nodePorts --------------------------------------------------------------------------

def _init_node_ports(svc: dict, txn: Transaction) -> None:
    """initNodePorts: ports sharing a port number share a nodePort; requested ones are
    taken as asked, the others allocated (unless the type does not allocate them)."""
    spec = svc["spec"]
    ports = spec.get("ports") or []
    by_port_number: dict[int, int] = {}
    for i, port in enumerate(ports):
        if not port.get("nodePort") and not needs_node_port(spec):
            continue
        given = by_port_number.get(port.get("port"))
        if not given:
            requested = _requested_node_port(port.get("port"), ports)
            if requested:
                _take_node_port(svc, txn, i, requested)
                port["nodePort"] = requested
            else:
                port["nodePort"] = _take_next_node_port(txn)
            by_port_number[port.get("port")] = port["nodePort"]
        elif port.get("nodePort") != given:
            if not port.get("nodePort"):
                port["nodePort"] = given
            else:
                _take_node_port(svc, txn, i, port["nodePort"])


def _update_node_ports(svc: dict, old_spec: dict, txn: Transaction) -> None:
    """updateNodePorts: keep the old object's ports, take new requested ones, allocate the
    missing ones, release (on commit) the old ones no longer used."""
    spec = svc["spec"]
    old_numbers = _node_ports(old_spec)
    taken_here: set[int] = set()
    seen: set[tuple[str, int]] = set()
    for i, port in enumerate(spec.get("ports") or []):
        if not port.get("nodePort") and not needs_node_port(spec):
            continue
        number = port.get("nodePort")
        if number:
            if number not in old_numbers and number not in taken_here:
                _take_node_port(svc, txn, i, number)
                taken_here.add(number)
        else:
            number = port["nodePort"] = _take_next_node_port(txn)
        key = (port.get("protocol") or "TCP", number)
        if key in seen:
            raise errors.APIError(500, "", f"duplicate nodePort: {{{key[0]} {key[1]}}}")
        seen.add(key)
    still_used = set(_node_ports(spec))
    for number in old_numbers:
        if number not in still_used:
            txn.release_port_later(number)


def _allocate_health_check_port(spec: dict, txn: Transaction) -> None:
    requested = spec.get("healthCheckNodePort") or 0
    if requested:
        txn.take_port(requested, lambda exc: errors.internal(
            f"failed to allocate requested HealthCheck NodePort {requested}: {exc}"))
        return
    spec["healthCheckNodePort"] = txn.take_next_port(
        lambda exc: errors.internal(f"failed to allocate a HealthCheck NodePort 0: {exc}"))


def _take_node_port(svc: dict, txn: Transaction, index: int, port: int) -> None:
    txn.take_port(port, lambda exc: errors.invalid("Service", "", svc.get("metadata", {}).get("name", ""), [
        invalid_value(f"spec.ports[{index}].nodePort", port, str(exc))]))


def _take_next_node_port(txn: Transaction) -> int:
    return txn.take_next_port(lambda exc: errors.internal(f"failed to allocate a nodePort: {exc}"))


def _requested_node_port(port_number: int | None, ports: list[dict]) -> int:
    """findRequestedNodePort: the nodePort asked for by any entry with this port number."""
    return next((p["nodePort"] for p in ports if p.get("port") == port_number and p.get("nodePort")), 0)


# ---- helpers ------------------------------------------------------------------------------

def _node_ports(spec: dict) -> list[int]:
    return [p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort")]


def _held_ports(spec: dict) -> list[int]:
    """Every port a stored Service holds, once each (TCP and UDP of one port number share
    a nodePort): its nodePorts and its healthCheckNodePort."""
    ports = _node_ports(spec)
    if spec.get("healthCheckNodePort"):
        ports.append(spec["healthCheckNodePort"])
    return list(dict.fromkeys(ports))


def _held_ips(spec: dict) -> list[str]:
    if spec.get("type") == "ExternalName" or _is_headless(spec):
        return []
    return [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None"]


def _is_headless(spec: dict) -> bool:
    ips = spec.get("clusterIPs") or []
    return bool(ips) and ips[0] == "None"


def _is_kubernetes_service(svc: dict) -> bool:
    m = svc.get("metadata") or {}
    return (m.get("namespace"), m.get("name")) == KUBERNETES_SERVICE


def _family_of(ip: str) -> str:
    addr = parse_ip_sloppy(ip)
    if addr is None:
        return "unknown"
    return "IPv6" if addr.version == 6 else "IPv4"


def _same_prefer_dual_stack(spec: dict, old_spec: dict | None) -> bool:
    """isMatchingPreferDualStackClusterIPFields: an unchanged PreferDualStack Service is
    neither upgraded nor downgraded."""
    return (old_spec is not None and spec.get("ipFamilyPolicy") == "PreferDualStack"
            and old_spec.get("ipFamilyPolicy") in (None, "PreferDualStack")
            and spec.get("type") == old_spec.get("type") and spec.get("type") in ("ClusterIP", *NODE_PORT_TYPES)
            and (spec.get("clusterIPs") or []) == (old_spec.get("clusterIPs") or [])
            and (spec.get("ipFamilies") or []) == (old_spec.get("ipFamilies") or []))


def _reduction_errors(spec: dict, old_spec: dict) -> list[FieldError]:
    """Update only: SingleStack trims a second IP / family; other policies may not drop one."""
    errs: list[FieldError] = []
    for field, noun in (("clusterIPs", "secondary cluster IP"), ("ipFamilies", "secondary IP family")):
        new, old = spec.get(field) or [], old_spec.get(field) or []
        if spec["ipFamilyPolicy"] == "SingleStack":
            if new == old and len(new) > 1:
                spec[field] = new[:1]
        elif new and len(new) < len(old):
            errs.append(invalid_value("spec.ipFamilyPolicy", spec["ipFamilyPolicy"], f"must be 'SingleStack' to release the {noun}"))
    return errs


# ---- wiring ---------------------------------------------------------------------------------

class Shared:
    """This server's side of the allocations kept in the store (allocstore): the IP claims,
    the NodePort range, and the repair loop that keeps them and the local bitmaps true."""

    def __init__(self, owner: ServiceAllocators, storage: Storage, repair_interval: float):
        self.owner, self.cache, self.repair_interval = owner, storage.cache, repair_interval
        self.ips = allocstore.IPAddressClaims(storage.store, owner.ips.family)
        self.ports = allocstore.PortRangeClaims(storage.store, owner.ports.spec, self._mark_ports, self._free_ports)
        self._leaks: dict[tuple, int] = {}  # ("ip", ip, claim's revision) / ("port", port) -> repairs seen leaked
        self._loop: asyncio.Task | None = None
        # Follow other servers' claims and releases as the watch cache sees them.
        storage.cache.follow_only(allocstore.IPADDRESS_PREFIX, self._ip_event)
        storage.cache.follow_only(allocstore.RANGES_PREFIX, self._range_event)

    def _mark_ports(self, offsets: set[int]) -> None:
        for offset in offsets:
            self.owner.ports.bitmap.allocate(offset)

    def _free_ports(self, offsets: set[int]) -> None:
        base = self.owner.ports.base
        in_flight = self._in_flight()[1]
        for offset in offsets:
            if base + offset not in in_flight:
                self.owner.ports.bitmap.release(offset)

    def _ip_event(self, ev) -> None:
        ip = ev.key.rsplit("/", 1)[1]
        if ev.type == "DELETED":
            self.ips.claimed.discard(ip)
        else:
            self.ips.claimed.add(ip)
        offset = self.owner.ips.offset(ip)
        if offset is None or ip == self.owner.kubernetes_ip:
            return
        if ev.type != "DELETED":
            self.owner.ips.bitmap.allocate(offset)
        elif ip not in self._in_flight()[0]:
            self.owner.ips.bitmap.release(offset)

    def _range_event(self, ev) -> None:
        if ev.key == allocstore.NODE_PORT_RANGE_KEY:
            self.ports.adopt_object(None if ev.type == "DELETED" else ev.obj, ev.revision)

    async def start(self) -> None:
        await self.ips.claim(self.owner.kubernetes_ip, kubernetes_service(self.owner.kubernetes_ip, 0))
        await self.repair()
        self._loop = asyncio.get_running_loop().create_task(self._repair_forever())

    async def stop(self) -> None:
        if self._loop is not None:
            await cancel_and_wait(self._loop)
        await self.ips.drain()
        await self.ports.stop()

    async def _repair_forever(self) -> None:
        while True:
            await asyncio.sleep(self.repair_interval)
            try:
                await self.repair()
            except Exception as exc:  # the store away: next time
                log.warning("repairing the service allocations: %s", exc)

    async def repair(self) -> None:
        """Claim what stored Services hold and nobody claimed; release claims no Service
        holds, seen so LEAK_CHECKS times in a row; then rebuild the local bitmaps."""
        owner = self.owner
        held_ips, held_ports = self._held()
        claims = await self.ips.load()
        for ip, svc in held_ips.items():
            if ip not in claims and not await self.ips.claim(ip, svc):
                log.warning("repair: cluster IP %s of service %s/%s is claimed by another object", ip,
                            svc["metadata"].get("namespace"), svc["metadata"].get("name"))
        stored_ports = await self.ports.load()
        missing = {p - owner.ports.base for p in held_ports} - stored_ports
        if missing:
            await self.ports.claim(missing)
        held_ips, held_ports = self._held()  # again: Services written while we awaited
        in_flight_ips, in_flight_ports = self._in_flight()
        leaked: set[tuple[str, object]] = set()
        for ip, revision in claims.items():
            if ip not in held_ips and ip not in in_flight_ips and ip != owner.kubernetes_ip:
                leaked.add(("ip", ip, revision))  # a claim made again starts counting again
        for offset in self.ports.stored:
            port = owner.ports.base + offset
            if port not in held_ports and port not in in_flight_ports:
                leaked.add(("port", port))
        self._leaks = {what: self._leaks.get(what, 0) + 1 for what in leaked}
        for what, seen in list(self._leaks.items()):
            if seen >= allocstore.LEAK_CHECKS:
                log.info("repair: releasing leaked %s %s", what[0], what[1])
                del self._leaks[what]
                if what[0] == "ip":
                    self.ips.release(what[1], expected=what[2])  # unless claimed again meanwhile
                else:
                    self.ports.release({what[1] - owner.ports.base})
        self._rebuild_bitmaps()

    def _held(self) -> tuple[dict[str, dict], set[int]]:
        ips: dict[str, dict] = {}
        ports: set[int] = set()
        for svc in self.cache.list(collection_prefix(registry.by_resource("", "v1", "services"), None)):
            spec = svc.get("spec") or {}
            for ip in _held_ips(spec):
                if self.owner.ips.contains(ip):
                    ips.setdefault(ip, svc)
            ports.update(p for p in _held_ports(spec) if self.owner.ports.contains(p))
        return ips, ports

    def _in_flight(self) -> tuple[set[str], set[int]]:
        ips: set[str] = set()
        ports: set[int] = set()
        for txn in self.owner.open:
            ips.update(txn.ips_taken)
            ports.update(txn.ports_taken)
        return ips, ports

    def _rebuild_bitmaps(self) -> None:
        """Synchronous: what Services, claims (ours and other servers') and open writes hold."""
        owner = self.owner
        held_ips, held_ports = self._held()
        in_flight_ips, in_flight_ports = self._in_flight()
        claimed = set(self.ips.claimed)
        ip_offsets = {owner.ips.offset(ip) for ip in (*held_ips, *in_flight_ips, *claimed, owner.kubernetes_ip)}
        owner.ips.bitmap.replace(o for o in ip_offsets if o is not None)
        port_offsets = {p - owner.ports.base for p in (*held_ports, *in_flight_ports)}
        owner.ports.bitmap.replace(port_offsets | self.ports.stored | self.ports.pending)


def install(storage: Storage, service_cidr: str = SERVICE_CIDR, node_port_range: str = NODE_PORT_RANGE,
            shared: bool = True, repair_interval: float = allocstore.REPAIR_INTERVAL) -> ServiceAllocators:
    """Build the allocators from the Services in the watch cache and hook them into
    `storage` (reservations + on_deleted). Call after the cache has started, before serving,
    then `await allocators.shared.start()` (claims in the store; every backend, one path)."""
    allocators = ServiceAllocators(service_cidr, node_port_range)
    allocators.restore(storage.cache.list(collection_prefix(registry.by_resource("", "v1", "services"), None)))
    if shared:
        allocators.shared = Shared(allocators, storage, repair_interval)
    storage.reservations.append(allocators.begin)
    storage.on_deleted.append(allocators.on_deleted)
    return allocators


def kubernetes_service(cluster_ip: str, target_port: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": KUBERNETES_SERVICE[1], "namespace": KUBERNETES_SERVICE[0],
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": target_port}]},
    }


async def ensure_kubernetes_service(storage: Storage, allocators: ServiceAllocators, target_port: int) -> dict:
    """Create the `kubernetes` Service in `default`, or bring its ports back to
    443 -> target_port (the apiserver's port) as the apiserver's reconciler does."""
    info = registry.by_resource("", "v1", "services")
    want = kubernetes_service(allocators.kubernetes_ip, target_port)
    opts = WriteOptions(field_manager="kube-apiserver")
    namespace, name = KUBERNETES_SERVICE
    try:
        current = await storage.get(info, namespace, name)
    except errors.APIError as exc:
        if exc.code != 404:
            raise
        try:
            return await storage.create(info, namespace, want, opts)
        except errors.APIError as exc2:
            if exc2.code != 409:
                raise
            current = await storage.get(info, namespace, name)
    spec = current.get("spec") or {}
    if spec.get("type") == "ClusterIP" and spec.get("ports") == want["spec"]["ports"]:
        return current
    updated = deep_copy(current)
    updated["spec"].update(type="ClusterIP", ports=want["spec"]["ports"])
    result, _ = await storage.update(info, namespace, name, updated, opts)
    return result
