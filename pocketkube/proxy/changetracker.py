"""The change tracker every proxy backend shares (kube-proxy's servicechangetracker.go,
endpointschangetracker.go and endpointslicecache.go in one place).

Watch events are folded into a pending `previous -> current` per Service and per
EndpointSlice; an update that ends where it started leaves nothing pending. `apply()` moves
every pending change into `services` and `endpoints` at once and returns an `UpdateResult`
saying which Services changed and which UDP conntrack entries went stale, so a backend can
rewrite only what changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pocketkube.proxy.servicemap import (Endpoint, ServicePort, ServicePortName, SliceInfo, endpoints_by_port,
                                         service_ports, slice_info, slice_service)


class PortMap(dict):
    """service port -> value, indexed by Service ("namespace/name") so that one Service's
    ports are found without scanning them all. Change it only through `put` and `remove`."""

    def __init__(self) -> None:
        super().__init__()
        self._by_service: dict[str, set[ServicePortName]] = {}

    def put(self, spn: ServicePortName, value) -> None:
        self[spn] = value
        self._by_service.setdefault(spn.service, set()).add(spn)

    def remove(self, spn: ServicePortName):
        value = self.pop(spn, None)
        ports = self._by_service.get(spn.service)
        if ports is not None:
            ports.discard(spn)
            if not ports:
                del self._by_service[spn.service]
        return value

    def ports_of(self, service: str) -> list[ServicePortName]:
        return sorted(self._by_service.get(service, ()))

    def service_names(self) -> set[str]:
        return set(self._by_service)


@dataclass
class UpdateResult:
    """What one `apply()` changed."""
    # "namespace/name" of every Service whose ports or endpoints changed.
    updated_services: set[str] = field(default_factory=set)
    # UDP endpoints that went away (their conntrack entries must go: UDP has no connection end).
    stale_endpoints: list[tuple[ServicePort, Endpoint]] = field(default_factory=list)
    # UDP service ports that had no endpoints and now have some (entries made while traffic
    # was rejected would keep blackholing it).
    stale_services: list[ServicePort] = field(default_factory=list)
    # UDP service ports that were deleted.
    deleted_udp_ports: list[ServicePort] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.updated_services)


class ChangeTracker:
    """Pending Service and EndpointSlice changes, and the applied state they fold into."""

    def __init__(self, node_name: str):
        self.node_name = node_name
        self.services: PortMap = PortMap()  # ServicePortName -> ServicePort
        self.endpoints: PortMap = PortMap()  # ServicePortName -> tuple[Endpoint, ...]
        # pending Service changes: "ns/name" -> (ports before the first pending event, ports now)
        self._service_changes: dict[str, tuple[dict, dict]] = {}
        # applied slices per Service, and pending slice changes (None: slice deleted)
        self._slices: dict[str, dict[str, SliceInfo]] = {}
        self._slice_changes: dict[str, dict[str, SliceInfo | None]] = {}

    # ---- events -----------------------------------------------------------------------

    def on_service(self, previous: dict | None, current: dict | None) -> bool:
        """Record a Service add (previous None), update or delete (current None). Returns
        whether anything is pending for that Service afterwards."""
        obj = current if current is not None else previous
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        before, _ = self._service_changes.get(key, (None, None))
        if before is None:
            before = service_ports(previous)
        after = service_ports(current)
        if before == after:
            self._service_changes.pop(key, None)
            return False
        self._service_changes[key] = (before, after)
        return True

    def on_slice(self, slice_obj: dict, removed: bool = False) -> bool:
        """Record an EndpointSlice add/update, or its removal. Returns whether anything is
        pending for its Service afterwards."""
        service = slice_service(slice_obj)
        if service is None:
            return False
        info = None if removed else slice_info(slice_obj)
        name = (slice_obj.get("metadata") or {}).get("name", "")
        pending = self._slice_changes.setdefault(service, {})
        applied = self._slices.get(service, {})
        if applied.get(name) == info:
            pending.pop(name, None)
        else:
            pending[name] = info
        if not pending:
            del self._slice_changes[service]
            return False
        return True

    def pending(self) -> bool:
        return bool(self._service_changes or self._slice_changes)

    # ---- applying ---------------------------------------------------------------------

    def apply(self) -> UpdateResult:
        """Fold every pending change into `services` / `endpoints`."""
        result = UpdateResult()
        old_services = {}
        for key, (before, after) in self._service_changes.items():
            result.updated_services.add(key)
            for spn, svc in before.items():
                old_services[spn] = svc
                self.services.remove(spn)
            for spn, svc in after.items():
                self.services.put(spn, svc)
            for spn, svc in before.items():
                if spn not in after and svc.protocol == "UDP":
                    result.deleted_udp_ports.append(svc)
        self._service_changes.clear()
        changed_slices = set(self._slice_changes)
        old_endpoints: dict[ServicePortName, tuple[Endpoint, ...]] = {}
        endpoint_ports: set[ServicePortName] = set()
        for service in changed_slices:
            applied = self._slices.setdefault(service, {})
            for name, info in self._slice_changes.pop(service, {}).items():
                if info is None:
                    applied.pop(name, None)
                else:
                    applied[name] = info
            if not applied:
                del self._slices[service]
            namespace, name = service.split("/", 1)
            fresh = endpoints_by_port(namespace, name, list(applied.values()), self.node_name)
            before = {spn: self.endpoints.remove(spn) for spn in self.endpoints.ports_of(service)}
            for spn, endpoints in fresh.items():
                self.endpoints.put(spn, endpoints)
            old_endpoints.update(before)
            endpoint_ports |= set(before) | set(fresh)
            if before != fresh:
                result.updated_services.add(service)
        self._find_stale_udp(result, old_services, old_endpoints, endpoint_ports)
        return result

    def _find_stale_udp(self, result: UpdateResult, old_services: dict, old_endpoints: dict,
                        endpoint_ports: set[ServicePortName]) -> None:
        for spn in endpoint_ports:
            svc = self.services.get(spn) or old_services.get(spn)
            if svc is None or svc.protocol != "UDP":
                continue
            before, now = old_endpoints.get(spn, ()), self.endpoints.get(spn, ())
            addresses = {(ep.ip, ep.port) for ep in now}
            result.stale_endpoints += [(svc, ep) for ep in before if (ep.ip, ep.port) not in addresses]
            if spn in self.services and not _usable(before) and _usable(now):
                result.stale_services.append(self.services[spn])


def _usable(endpoints) -> bool:
    return any(ep.ready or (ep.serving and ep.terminating) for ep in endpoints)
