"""The ClusterView the DNS records read: Services, EndpointSlices, Namespaces (and Pods, only
for `pods verified`) kept in memory as slim copies, fed by informers.

As CoreDNS's dnsControl, it converts each API object on arrival into the few fields DNS needs
(records.Service, records.Endpoint) and indexes them by name and by IP, so every question is
answered from dictionaries. Informer handlers update it synchronously, so an answer changes as
soon as the watch event arrives. `generation` counts changes (the server's answer cache is
keyed on it) and `serial` is the Unix second of the last change (the SOA serial, as CoreDNS's
Modified()).

The informers behind the view keep copies too (for re-lists and updates): `attach` gives each
one a transform (`DNS_TRANSFORMS`, client-go's SetTransform) that converts every object on
arrival, so an informer's store holds only the key, the resourceVersion and the converted form
(the same object the view then indexes), never the full Services, EndpointSlices and Pods
(managed fields, annotations, selectors, target refs, ...).

Only ready endpoints are kept (`conditions.ready` true or unset, as CoreDNS reads
EndpointSlices; the EndpointSlice controller already marks endpoints of Services with
publishNotReadyAddresses ready). Slices of address type FQDN and slices without the
`kubernetes.io/service-name` label are ignored.
"""

from __future__ import annotations

import ipaddress
import sys
import time
from typing import Callable, Iterable

from pocketkube.core.informer import InformerFactory
from pocketkube.dns.records import NO_PORTS, Endpoint, Port, Service

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

ServiceKey = tuple[str, str]


def _canonical_ip(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


def to_service(obj: dict) -> Service:
    """The DNS-relevant part of a v1 Service."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    cluster_ip = spec.get("clusterIP") or ""
    ips = spec.get("clusterIPs") or ([cluster_ip] if cluster_ip else [])
    external = _fresh(spec.get("externalName") or "") if spec.get("type") == "ExternalName" else ""
    ports = tuple(Port(sys.intern(p.get("name") or ""), sys.intern(p.get("protocol") or "TCP"), int(p.get("port") or 0))
                  for p in spec.get("ports") or ()) or NO_PORTS
    return Service(namespace=sys.intern(_fresh(meta.get("namespace", ""))), name=meta.get("name", "").lower(),
                   headless=cluster_ip == "None",
                   cluster_ips=tuple(_canonical_ip(ip) for ip in ips if ip and ip != "None") if not external else (),
                   external_name=external, ports=ports)


def to_endpoints(obj: dict) -> tuple[ServiceKey, tuple[Endpoint, ...]] | None:
    """(service key, ready endpoints) of a discovery/v1 EndpointSlice, or None when it does not
    serve DNS (no service label, or FQDN addresses)."""
    meta = obj.get("metadata") or {}
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service or obj.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
        return None
    ports = tuple(Port(sys.intern(p.get("name") or ""), sys.intern(p.get("protocol") or "TCP"),
                       -1 if p.get("port") is None else int(p["port"]))
                  for p in obj.get("ports") or ()) or NO_PORTS
    endpoints = []
    for e in obj.get("endpoints") or ():
        if (e.get("conditions") or {}).get("ready") is False:
            continue
        hostname = sys.intern((e.get("hostname") or "").lower())
        endpoints.extend(Endpoint(_canonical_ip(ip), hostname, ports) for ip in e.get("addresses") or ())
    return (sys.intern(_fresh(meta.get("namespace", ""))), service.lower()), tuple(endpoints)


CONVERTED = "_dns"  # the key under which a transformed object carries its converted form


def _fresh(text: str) -> str:
    """A copy of a string that does not keep the parsed API list it came from alive (one kept
    string would pin the allocator's arena around it, and with it the freed list's memory)."""
    return (text + "\0")[:-1]


def _slim_meta(meta: dict) -> dict:
    """The metadata the informer's store reads: its key and resourceVersion."""
    slim = {"name": _fresh(meta.get("name", "")), "resourceVersion": _fresh(meta.get("resourceVersion", ""))}
    if "namespace" in meta:
        slim["namespace"] = sys.intern(_fresh(meta["namespace"]))
    return slim


def slim_namespace(obj: dict) -> dict:
    """Informer transform: a Namespace as DNS needs it (its name)."""
    return {"metadata": _slim_meta(obj.get("metadata") or {})}


def slim_service(obj: dict) -> dict:
    """Informer transform: a Service's key and its converted form (records.Service), the very
    object the view then holds."""
    return {"metadata": _slim_meta(obj.get("metadata") or {}), CONVERTED: to_service(obj)}


def slim_endpointslice(obj: dict) -> dict:
    """Informer transform: an EndpointSlice's key and its converted form (to_endpoints)."""
    return {"metadata": _slim_meta(obj.get("metadata") or {}), CONVERTED: to_endpoints(obj)}


def slim_pod(obj: dict) -> dict:
    """Informer transform: a Pod as `pods verified` needs it (its IP)."""
    return {"metadata": _slim_meta(obj.get("metadata") or {}),
            "status": {"podIP": _fresh((obj.get("status") or {}).get("podIP") or "")}}


def _key(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


class ClusterView:
    """records.ClusterView over in-memory indexes; `apply_*` / `delete_*` are the informer
    handlers (also usable directly, as the tests and the memory benchmark do)."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self.synced = False
        self.generation = 0
        self.serial = int(clock())
        self._namespaces: set[str] = set()
        self._services: dict[ServiceKey, Service] = {}
        self._services_by_ip: dict[str, list[ServiceKey]] = {}
        self._slices: dict[tuple[str, str], tuple[ServiceKey, tuple[Endpoint, ...]]] = {}
        self._slices_by_service: dict[ServiceKey, list[tuple[str, str]]] = {}
        self._slices_by_ip: dict[str, list[tuple[str, str]]] = {}
        self._pod_ips: dict[tuple[str, str], str] = {}
        self._pods_by_ip: dict[str, list[str]] = {}

    def mark_synced(self) -> None:
        """The informers have listed everything: misses are real NXDOMAINs from now on."""
        self.synced = True
        self._changed()

    def _changed(self) -> None:
        self.generation += 1
        self.serial = int(self._clock())

    # -- ClusterView (read side) ------------------------------------------------------------

    def namespace_exists(self, name: str) -> bool:
        return name in self._namespaces

    def service(self, namespace: str, name: str) -> Service | None:
        return self._services.get((namespace, name))

    def endpoints(self, namespace: str, service: str) -> Iterable[Endpoint]:
        for slice_key in self._slices_by_service.get((namespace, service), ()):
            yield from self._slices[slice_key][1]

    def services_by_ip(self, ip: str) -> list[Service]:
        return [self._services[k] for k in self._services_by_ip.get(ip, ())]

    def endpoints_by_ip(self, ip: str) -> list[tuple[Service | None, str, str, Endpoint]]:
        found = []
        for slice_key in self._slices_by_ip.get(ip, ()):
            (ns, name), endpoints = self._slices[slice_key]
            svc = self._services.get((ns, name))
            found += [(svc, ns, name, ep) for ep in endpoints if ep.ip == ip]
        return found

    def pod_namespaces(self, ip: str) -> Iterable[str]:
        return self._pods_by_ip.get(ip, ())

    def counts(self) -> dict[str, int]:
        return {"namespaces": len(self._namespaces), "services": len(self._services),
                "endpointslices": len(self._slices),
                "endpoints": sum(len(eps) for _, eps in self._slices.values()), "pods": len(self._pod_ips)}

    # -- feeding (write side) -----------------------------------------------------------------

    def apply_namespace(self, obj: dict) -> None:
        name = (obj.get("metadata") or {}).get("name", "")
        if name not in self._namespaces:
            self._namespaces.add(name)
            self._changed()

    def delete_namespace(self, obj: dict) -> None:
        self._namespaces.discard((obj.get("metadata") or {}).get("name", ""))
        self._changed()

    def apply_service(self, obj: dict) -> None:
        svc = obj[CONVERTED] if CONVERTED in obj else to_service(obj)
        key = (svc.namespace, svc.name)
        old = self._services.get(key)
        if old == svc:
            return
        if old is not None:
            _unindex(self._services_by_ip, old.cluster_ips, key)
        self._services[key] = svc
        _index(self._services_by_ip, svc.cluster_ips, key)
        self._changed()

    def delete_service(self, obj: dict) -> None:
        key = _key(obj)
        old = self._services.pop(key, None)
        if old is not None:
            _unindex(self._services_by_ip, old.cluster_ips, key)
        self._changed()

    def apply_endpointslice(self, obj: dict) -> None:
        key = _key(obj)
        converted = obj[CONVERTED] if CONVERTED in obj else to_endpoints(obj)
        old = self._slices.get(key)
        if old == converted:
            return
        self._remove_slice(key)
        if converted is not None:
            service_key, endpoints = converted
            self._slices[key] = converted
            self._slices_by_service.setdefault(service_key, []).append(key)
            _index(self._slices_by_ip, {ep.ip for ep in endpoints}, key)
        self._changed()

    def delete_endpointslice(self, obj: dict) -> None:
        self._remove_slice(_key(obj))
        self._changed()

    def _remove_slice(self, key: tuple[str, str]) -> None:
        old = self._slices.pop(key, None)
        if old is None:
            return
        service_key, endpoints = old
        siblings = self._slices_by_service.get(service_key, [])
        if key in siblings:
            siblings.remove(key)
        if not siblings:
            self._slices_by_service.pop(service_key, None)
        _unindex(self._slices_by_ip, {ep.ip for ep in endpoints}, key)

    def apply_pod(self, obj: dict) -> None:
        key = _key(obj)
        ip = _canonical_ip((obj.get("status") or {}).get("podIP") or "")
        if self._pod_ips.get(key) == ip:
            return
        self.delete_pod(obj)
        if ip:
            self._pod_ips[key] = ip
            _index(self._pods_by_ip, (ip,), key[0])
        self._changed()

    def delete_pod(self, obj: dict) -> None:
        key = _key(obj)
        ip = self._pod_ips.pop(key, None)
        if ip:
            _unindex(self._pods_by_ip, (ip,), key[0])
            self._changed()

    def attach(self, factory: InformerFactory, watch_pods: bool = False) -> None:
        """Register this view's handlers on the factory's informers (Namespaces, Services,
        EndpointSlices, and Pods when watch_pods: CoreDNS's `pods verified`)."""
        feeds = [("v1", "namespaces", self.apply_namespace, self.delete_namespace),
                 ("v1", "services", self.apply_service, self.delete_service),
                 ("discovery.k8s.io/v1", "endpointslices", self.apply_endpointslice, self.delete_endpointslice)]
        if watch_pods:
            feeds.append(("v1", "pods", self.apply_pod, self.delete_pod))
        for api_version, resource, apply, delete in feeds:
            factory.informer(api_version, resource, transform=DNS_TRANSFORMS[resource]).add_handlers(
                on_add=apply, on_update=lambda old, new, apply=apply: apply(new), on_delete=delete)


DNS_TRANSFORMS = {"namespaces": slim_namespace, "services": slim_service, "endpointslices": slim_endpointslice,
                  "pods": slim_pod}


def _index(index: dict[str, list], ips: Iterable[str], key) -> None:
    for ip in ips:
        index.setdefault(ip, []).append(key)


def _unindex(index: dict[str, list], ips: Iterable[str], key) -> None:
    for ip in ips:
        keys = index.get(ip)
        if keys and key in keys:
            keys.remove(key)
            if not keys:
                del index[ip]
