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

import ipaddress
import logging
import random
from typing import Callable, Iterable

from pocketkube.apiserver.kinds import registry
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.apiserver.kinds.service import _validate_cluster_ips as validate_cluster_ip_fields
from pocketkube.apiserver.kinds.service import needs_health_check, needs_node_port
from pocketkube.apiserver.storage import Storage, WriteOptions, collection_prefix
from pocketkube.apiserver.validation import parse_ip_sloppy
from pocketkube.core import cluster, errors
from pocketkube.core.errors import FieldError, invalid_value
from pocketkube.core.objects import deep_copy

log = logging.getLogger(__name__)

SERVICE_CIDR = cluster.SERVICE_CIDR
NODE_PORT_RANGE = "30000-32767"
KUBERNETES_SERVICE = ("default", "kubernetes")
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
DRY_RUN_FIRST_PORT = 32768  # portallocator's dummy base for dry-run nodePorts


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


class Transaction:
    """The allocations of one write. Taking is immediate; releasing what the old object
    held waits for `finish(True)`; `finish(False)` gives back what was taken. A dry run
    takes nothing, with Kubernetes' placeholder answers (the network address, ports
    counting up from 32769)."""

    def __init__(self, owner: "ServiceAllocators", dry_run: bool):
        self._owner = owner
        self.dry_run = dry_run
        self.ips_taken: list[str] = []
        self.ports_taken: list[int] = []
        self.ips_to_release: list[str] = []
        self.ports_to_release: list[int] = []

    def take_ip(self, ip: str) -> None:
        ips = self._owner.ips
        if self.dry_run:
            if not ips.contains(ip):
                raise ips.not_in_range(ip)
            return
        ips.allocate(ip)
        self.ips_taken.append(ip)

    def take_next_ip(self) -> str:
        if self.dry_run:
            return str(self._owner.ips.network.network_address)
        ip = self._owner.ips.allocate_next()
        self.ips_taken.append(ip)
        return ip

    def take_port(self, port: int) -> None:
        if self.dry_run:
            if self._owner.ports.has(port) or port in self.ports_taken:
                raise AlreadyAllocated("port")
        else:
            self._owner.ports.allocate(port)
        self.ports_taken.append(port)

    def take_next_port(self) -> int:
        if self.dry_run:
            port = max(self.ports_taken, default=DRY_RUN_FIRST_PORT) + 1
        else:
            port = self._owner.ports.allocate_next()
        self.ports_taken.append(port)
        return port

    def release_ip_later(self, ip: str) -> None:
        self.ips_to_release.append(ip)

    def release_port_later(self, port: int) -> None:
        self.ports_to_release.append(port)

    def finish(self, stored: bool) -> None:
        if self.dry_run:
            return
        ips, ports = (self.ips_to_release, self.ports_to_release) if stored else (self.ips_taken, self.ports_taken)
        for ip in ips:
            self._owner.release_ip(ip)
        for port in ports:
            self._owner.ports.release(port)
        self.ips_taken, self.ports_taken, self.ips_to_release, self.ports_to_release = [], [], [], []


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

    def release_ip(self, ip: str) -> None:
        if ip != self.kubernetes_ip:
            self.ips.release(ip)

    def release(self, service: dict) -> None:
        """releaseAllocatedResources: give back a deleted Service's IPs and ports."""
        spec = service.get("spec") or {}
        for ip in _held_ips(spec):
            self.release_ip(ip)
        for port in _held_ports(spec):
            self.ports.release(port)

    # ---- storage hooks ---------------------------------------------------------------

    def begin(self, operation: str, info: KindInfo, obj: dict, old: dict | None,
              dry_run: bool) -> Callable[[bool], None] | None:
        """Allocate for a Service being created or updated (Storage reservation hook).
        Fills obj in place, raises APIError, returns the transaction's `finish`."""
        if info.group or info.resource != "services":
            return None
        txn = Transaction(self, dry_run)
        try:
            if old is None:
                self._allocate_create(obj, txn)
            else:
                self._allocate_update(obj, old, txn)
        except Exception:
            txn.finish(False)
            raise
        return txn.finish

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
                try:
                    cluster_ips[i] = txn.take_next_ip()
                except AllocationError as exc:
                    raise errors.internal(f"failed to allocate a serviceIP: {exc}") from None
            elif not (requested == self.kubernetes_ip and _is_kubernetes_service(svc)):
                try:
                    txn.take_ip(requested)
                except AllocationError as exc:
                    raise errors.invalid("Service", "", svc.get("metadata", {}).get("name", ""), [
                        invalid_value("spec.clusterIPs", cluster_ips,
                                      f"failed to allocate IP {requested}: {exc}")]) from None
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
        try:
            txn.take_port(requested)
        except AllocationError as exc:
            raise errors.internal(f"failed to allocate requested HealthCheck NodePort {requested}: {exc}") from None
        return
    try:
        spec["healthCheckNodePort"] = txn.take_next_port()
    except AllocationError as exc:
        raise errors.internal(f"failed to allocate a HealthCheck NodePort 0: {exc}") from None


def _take_node_port(svc: dict, txn: Transaction, index: int, port: int) -> None:
    try:
        txn.take_port(port)
    except AllocationError as exc:
        raise errors.invalid("Service", "", svc.get("metadata", {}).get("name", ""), [
            invalid_value(f"spec.ports[{index}].nodePort", port, str(exc))]) from None


def _take_next_node_port(txn: Transaction) -> int:
    try:
        return txn.take_next_port()
    except AllocationError as exc:
        raise errors.internal(f"failed to allocate a nodePort: {exc}") from None


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

def install(storage: Storage, service_cidr: str = SERVICE_CIDR, node_port_range: str = NODE_PORT_RANGE) -> ServiceAllocators:
    """Build the allocators from the Services in the watch cache and hook them into
    `storage` (reservations + on_deleted). Call after the cache has started, before serving."""
    allocators = ServiceAllocators(service_cidr, node_port_range)
    allocators.restore(storage.cache.list(collection_prefix(registry.by_resource("", "v1", "services"), None)))
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
