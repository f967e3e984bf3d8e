"""What the proxy knows of one Service port and its endpoints, backend-agnostic.

The shared view of kube-proxy's serviceport.go, endpoint.go and topology.go: a Service object
becomes one `ServicePort` per spec.ports entry, EndpointSlices become `Endpoint`s per service
port, and `categorize_endpoints` says which of those a node may use under the Service's
traffic policies (ready endpoints, falling back to serving+terminating ones). Pure functions
over API dicts; no I/O.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import NamedTuple

DEFAULT_AFFINITY_SECONDS = 10800  # spec.sessionAffinityConfig.clientIP.timeoutSeconds default
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"  # v1.IsHeadlessService
PROTOCOLS = ("TCP", "UDP", "SCTP")


class ServicePortName(NamedTuple):
    """Which service port: namespace, Service name, port name ("" when unnamed), protocol."""
    namespace: str
    name: str
    port: str
    protocol: str

    @property
    def service(self) -> str:
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port}" if self.port else f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePort:
    """One port of a Service, as the data plane needs it."""
    name: ServicePortName
    cluster_ip: str
    port: int
    protocol: str  # TCP, UDP or SCTP
    node_port: int = 0
    external_ips: tuple[str, ...] = ()  # spec.externalIPs and status.loadBalancer.ingress IPs
    lb_ips: tuple[str, ...] = ()  # the load-balancer ingress IPs among them (ipMode VIP or unset)
    source_ranges: tuple[str, ...] = ()  # spec.loadBalancerSourceRanges: who may use lb_ips
    affinity_seconds: int = 0  # 0: no session affinity; else ClientIP with this timeout
    external_policy_local: bool = False  # externalTrafficPolicy Local (externally accessible only)
    health_check_port: int = 0  # spec.healthCheckNodePort (LoadBalancer with externalTrafficPolicy Local)
    internal_policy_local: bool = False  # internalTrafficPolicy Local

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        """Whether some traffic to this port is spread over the whole cluster's endpoints."""
        return not self.internal_policy_local or (self.externally_accessible and not self.external_policy_local)

    @property
    def uses_local_endpoints(self) -> bool:
        """Whether some traffic to this port goes only to this node's endpoints."""
        return self.internal_policy_local or (self.externally_accessible and self.external_policy_local)


@dataclass(frozen=True)
class Endpoint:
    """One endpoint address:port of a service port, with its EndpointSlice conditions."""
    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""
    is_local: bool = False  # on the node this proxy runs for

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


def should_skip_service(service: dict) -> bool:
    """ExternalName and headless Services, and those another proxy serves, get no rules.
    As kube-proxy's informers select `!service-proxy-name,!headless`, a Service labelled
    service.kubernetes.io/headless is left alone even with a cluster IP."""
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return True
    cluster_ip = spec.get("clusterIP")
    if not cluster_ip or cluster_ip == "None":
        return True
    labels = (service.get("metadata") or {}).get("labels") or {}
    return PROXY_NAME_LABEL in labels or HEADLESS_LABEL in labels


def _ipv4(address: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(address), ipaddress.IPv4Address)
    except ValueError:
        return False


def _cidrs(ranges: list[str]) -> list[str]:
    """The IPv4 CIDRs of loadBalancerSourceRanges, normalised ("10.0.0.1/8" -> "10.0.0.0/8")."""
    found = []
    for text in ranges:
        try:
            net = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            continue
        if net.version == 4:
            found.append(str(net))
    return found


def service_ports(service: dict | None) -> dict[ServicePortName, ServicePort]:
    """The service ports of a Service object (empty for None or a skipped Service)."""
    if service is None or should_skip_service(service):
        return {}
    meta, spec = service.get("metadata") or {}, service.get("spec") or {}
    cluster_ip = spec["clusterIP"]
    if not _ipv4(cluster_ip):
        return {}
    external = [ip for ip in spec.get("externalIPs") or [] if _ipv4(ip)]
    lb_ips = []
    for ingress in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        # ipMode Proxy: the load balancer forwards to the nodes itself, so kube-proxy leaves its IP alone
        if _ipv4(ingress.get("ip") or "") and ingress.get("ipMode", "VIP") == "VIP" and ingress["ip"] not in lb_ips:
            lb_ips.append(ingress["ip"])
    external += [ip for ip in lb_ips if ip not in external]
    source_ranges = tuple(_cidrs(spec.get("loadBalancerSourceRanges") or []))
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        client_ip = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        affinity = int(client_ip.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS)
    node_ports_apply = spec.get("type") in ("NodePort", "LoadBalancer")
    result = {}
    for entry in spec.get("ports") or []:
        protocol = entry.get("protocol") or "TCP"
        if protocol not in PROTOCOLS:
            continue
        name = ServicePortName(meta.get("namespace", ""), meta.get("name", ""), entry.get("name") or "", protocol)
        node_port = int(entry.get("nodePort") or 0) if node_ports_apply else 0
        accessible = bool(node_port or external)
        result[name] = ServicePort(
            name=name, cluster_ip=cluster_ip, port=int(entry["port"]), protocol=protocol, node_port=node_port,
            external_ips=tuple(external), lb_ips=tuple(lb_ips), source_ranges=source_ranges if lb_ips else (),
            affinity_seconds=affinity,
            external_policy_local=accessible and spec.get("externalTrafficPolicy") == "Local",
            internal_policy_local=spec.get("internalTrafficPolicy") == "Local",
            health_check_port=int(spec.get("healthCheckNodePort") or 0) if spec.get("type") == "LoadBalancer" else 0)
    return result


@dataclass(frozen=True)
class SliceInfo:
    """The parts of one EndpointSlice the proxy uses (so no-op updates compare equal)."""
    ports: tuple[tuple[str, str, int], ...]  # (name, protocol, port)
    endpoints: tuple[tuple[str, bool, bool, bool, str], ...]  # (ip, ready, serving, terminating, node)


def slice_service(slice_obj: dict) -> str | None:
    """"namespace/name" of the Service an EndpointSlice belongs to (None: not a Service's)."""
    meta = slice_obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return f"{meta.get('namespace', '')}/{name}" if name else None


def slice_info(slice_obj: dict) -> SliceInfo | None:
    """The proxy's view of an IPv4 EndpointSlice (None for other address types)."""
    if slice_obj.get("addressType") != "IPv4":
        return None
    ports = tuple((p.get("name") or "", p.get("protocol") or "TCP", int(p["port"]))
                  for p in slice_obj.get("ports") or [] if p.get("port") is not None)
    endpoints = []
    for ep in slice_obj.get("endpoints") or []:
        addresses = ep.get("addresses") or []
        if not addresses:
            continue
        conditions = ep.get("conditions") or {}
        ready = conditions.get("ready") is not False  # nil means ready
        serving = conditions.get("serving")
        serving = ready if serving is None else bool(serving)
        terminating = bool(conditions.get("terminating"))
        endpoints.append((addresses[0], ready, serving, terminating, ep.get("nodeName") or ""))
    return SliceInfo(ports, tuple(endpoints))


def endpoints_by_port(namespace: str, name: str, slices: list[SliceInfo],
                      node_name: str) -> dict[ServicePortName, tuple[Endpoint, ...]]:
    """Merge one Service's slices into endpoints per service port (first copy of an ip:port
    wins; sorted so that the same slices always give the same rules)."""
    merged: dict[ServicePortName, dict[tuple[str, int], Endpoint]] = {}
    for info in slices:
        for port_name, protocol, port in info.ports:
            by_address = merged.setdefault(ServicePortName(namespace, name, port_name, protocol), {})
            for ip, ready, serving, terminating, node in info.endpoints:
                by_address.setdefault((ip, port), Endpoint(ip, port, ready, serving, terminating, node,
                                                           bool(node) and node == node_name))
    return {spn: tuple(sorted(eps.values(), key=_endpoint_order)) for spn, eps in merged.items() if eps}


def _endpoint_order(ep: Endpoint) -> tuple:
    return (ipaddress.IPv4Address(ep.ip), ep.port)


@dataclass
class Categorized:
    """Which endpoints a node uses for a service port (kube-proxy's CategorizeEndpoints)."""
    cluster: list[Endpoint] = field(default_factory=list)  # for Cluster traffic policy
    local: list[Endpoint] = field(default_factory=list)  # for Local traffic policy
    has_any: bool = False  # usable endpoints exist somewhere (else: reject rather than drop)

    @property
    def reachable(self) -> list[Endpoint]:
        if not self.local or self.local is self.cluster:
            return self.cluster  # (most services: no hashing of every endpoint)
        if not self.cluster:
            return self.local
        seen = dict.fromkeys(self.cluster)
        seen.update(dict.fromkeys(self.local))
        return list(seen)


def categorize_endpoints(endpoints: tuple[Endpoint, ...] | list[Endpoint], svc: ServicePort) -> Categorized:
    """Ready endpoints; when none is ready, the serving ones that are terminating (so a rolling
    update with every old pod terminating still answers). Local lists apply the same rule to
    this node's endpoints alone."""
    result = Categorized()
    if svc.uses_cluster_endpoints:
        result.cluster = [ep for ep in endpoints if ep.ready]
        if not result.cluster:
            result.cluster = [ep for ep in endpoints if ep.serving and ep.terminating]
        result.has_any = bool(result.cluster)
    if not svc.uses_local_endpoints:
        return result
    usable = [ep for ep in endpoints if ep.ready or (ep.serving and ep.terminating)]
    result.has_any = result.has_any or bool(usable)
    local_ready = [ep for ep in endpoints if ep.is_local and ep.ready]
    result.local = local_ready or [ep for ep in endpoints if ep.is_local and ep.serving and ep.terminating]
    return result


@functools.lru_cache(maxsize=1 << 16)
def port_hash(name: ServicePortName) -> str:
    """8 characters that make chain names unique even when cut short (kube-proxy's scheme:
    the first 8 base32 characters of the SHA-256, which only its first 5 bytes make)."""
    digest = hashlib.sha256(f"{name.namespace}/{name.name}/{name.protocol}/{name.port}".encode()).digest()
    return base64.b32encode(digest[:5]).decode()


def chain_base(svc: ServicePort) -> str:
    """`<hash>-<namespace>/<name>/<protocol>/<port name or number>`: the tail of every chain
    and set name of one service port, readable in `nft list ruleset`."""
    port = svc.name.port or str(svc.port)
    return f"{port_hash(svc.name)}-{svc.name.namespace}/{svc.name.name}/{svc.protocol.lower()}/{port}"
