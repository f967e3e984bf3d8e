"""The cluster zone's record logic: a question in, an answer out, over a read-only ClusterView.

Pure: no I/O, no clock. It implements the Kubernetes DNS-Based Service Discovery
specification (schema 1.1.0) the way CoreDNS's `kubernetes` plugin does, configured as
kubeadm's Corefile configures it:

    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }

so TTL 30 (kubeadm's setting; CoreDNS's own default is 5), pod records answered for any
IP-shaped name in an existing namespace, and misses in the reverse zones handed on (the server
forwards them). Names are parsed once into a `RecordRequest` (CoreDNS parse.go); its five shapes
under `<zone>`:

    _port._proto.service.namespace.svc|pod    SRV by named port (A/AAAA too)
    endpoint.service.namespace.svc|pod        one endpoint by hostname (or IP-derived name)
    service.namespace.svc|pod                 the Service (or a pod IP: a-b-c-d.namespace.pod)
    namespace.svc|pod, svc, pod               exist: NOERROR with no data
    anything else                             NXDOMAIN

NXDOMAIN versus NODATA follows CoreDNS exactly: a name that exists with other types gives
NOERROR and an empty answer; both carry the zone's SOA in the authority section
(`ns.dns.<zone>. hostmaster.<zone>. <serial> 7200 1800 86400 <ttl>`, the serial being the
view's last change as Unix seconds). CoreDNS 1.9 dropped wildcard queries, so `*` is an
ordinary label that matches nothing.
"""

from __future__ import annotations

import ipaddress
import math
from socket import AF_INET, AF_INET6, inet_pton
from dataclasses import dataclass, field
from typing import Iterable, Protocol

from pocketkube.dns import wire
from pocketkube.dns.wire import RR

SCHEMA_VERSION = "1.1.0"
SCHEMA_TTL = 28800
KUBEADM_TTL = 30
REVERSE_ZONES = (("in-addr", "arpa"), ("ip6", "arpa"))
MAX_CNAME_CHAIN = 8


# ---------------------------------------------------------------------------------------------
# What the view holds: slim copies of the API objects (CoreDNS's object.Service / Endpoints)


@dataclass(frozen=True, slots=True)
class Port:
    name: str
    protocol: str
    port: int  # -1: the object has no ports (CoreDNS's sentinel: no SRV, but A still answers)


NO_PORTS = (Port("", "", -1),)


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    headless: bool
    cluster_ips: tuple[str, ...]
    external_name: str            # set for type ExternalName
    ports: tuple[Port, ...]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One ready address of a Service (from an EndpointSlice)."""

    ip: str
    hostname: str
    ports: tuple[Port, ...]

    @property
    def dns_hostname(self) -> str:
        """The spec's _hostname_: the endpoint's hostname, else one derived from its IP."""
        if self.hostname:
            return self.hostname
        return self.ip.replace(".", "-") if "." in self.ip else self.ip.replace(":", "-")


class ClusterView(Protocol):
    """All the record logic may know about the cluster (read-only, answered from memory)."""

    synced: bool
    serial: int  # Unix seconds of the last change: the SOA serial

    def namespace_exists(self, name: str) -> bool: ...
    def service(self, namespace: str, name: str) -> Service | None: ...
    def endpoints(self, namespace: str, service: str) -> Iterable[Endpoint]: ...
    def services_by_ip(self, ip: str) -> list[Service]: ...
    def endpoints_by_ip(self, ip: str) -> list[tuple[Service | None, str, str, Endpoint]]:
        """(service or None, namespace, service name, endpoint) for each endpoint with ip."""
    def pod_namespaces(self, ip: str) -> Iterable[str]: ...


# ---------------------------------------------------------------------------------------------
# Answers


@dataclass
class Answer:
    rcode: int
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    authoritative: bool = True
    forward: bool = False            # not ours (outside the zones, or a reverse miss): forward it
    external_target: str = ""        # a CNAME left the zone: resolve this name upstream and append
    reason: str = ""                 # one line for `explain-dns` and logs

    def to_text(self, qname: str) -> str:
        """dig-like text of the sections, for humans and test failure messages."""
        lines = [f"rcode {wire.RCODE_NAMES.get(self.rcode, self.rcode)}" + (" (forward)" if self.forward else "")]
        for title, rrs in (("answer", self.answer), ("authority", self.authority), ("additional", self.additional)):
            lines += [f"{title}: {rr.to_text(qname)}" for rr in rrs]
        return "\n".join(lines)


class _NameError(Exception):
    """CoreDNS's errNoItems / errInvalidRequest / errNsNotExposed: the name does not exist."""


@dataclass(frozen=True, slots=True)
class RecordRequest:
    pod_or_svc: str = ""
    namespace: str = ""
    service: str = ""
    endpoint: str = ""
    port: str = ""
    protocol: str = ""


def parse_request(rel: tuple[str, ...]) -> RecordRequest:
    """The labels under the zone, read as one of the five shapes (module docstring)."""
    if rel in ((), ("svc",), ("pod",)):
        return RecordRequest()
    kind = rel[-1]
    if kind not in ("svc", "pod"):
        raise _NameError("not a svc or pod name")
    n = len(rel)
    namespace = rel[-2] if n >= 2 else ""
    service = rel[-3] if n >= 3 else ""
    if n <= 3:
        return RecordRequest(kind, namespace, service)
    if n == 4:
        return RecordRequest(kind, namespace, service, endpoint=rel[0])
    if n == 5:
        return RecordRequest(kind, namespace, service, port=_strip_underscore(rel[0]),
                             protocol=_strip_underscore(rel[1]))
    raise _NameError("too many labels")


def _strip_underscore(label: str) -> str:
    return label[1:] if label.startswith("_") else label


@dataclass(frozen=True, slots=True)
class _Target:
    """CoreDNS's msg.Service: an address (or a name, for ExternalName) and where it lives."""

    host: str
    port: int
    domain: str  # the record's own name: `svc.ns.svc.zone.` or `host.svc.ns.svc.zone.`


def _is_ip(host: str) -> int:
    """4 or 6 for an IP address, 0 for a name (inet_pton: the parser ipaddress would be, at a
    tenth of the cost on the answer path)."""
    try:
        inet_pton(AF_INET, host)
        return 4
    except (OSError, ValueError):
        pass
    try:
        inet_pton(AF_INET6, host)
        return 6
    except (OSError, ValueError):
        return 0


class Records:
    """Answers questions for one cluster zone (and its reverse zones) from a ClusterView."""

    def __init__(self, view: ClusterView, zone: str = "cluster.local", ttl: int = KUBEADM_TTL,
                 pod_mode: str = "insecure", local_ips: tuple[str, ...] = ()):
        if pod_mode not in ("disabled", "insecure", "verified"):
            raise ValueError(f"pods: unknown mode {pod_mode!r}")
        self.view = view
        self.zone = zone.strip(".").lower()
        self.zone_labels = tuple(self.zone.split("."))
        self.ttl = ttl
        self.pod_mode = pod_mode
        self.local_ips = local_ips

    # -- entry point -----------------------------------------------------------------------

    def answer(self, labels: tuple[str, ...], qtype: int) -> Answer:
        """The answer to one question (labels lowercase, as wire.Query gives them)."""
        z = len(self.zone_labels)
        if len(labels) >= z and labels[len(labels) - z:] == self.zone_labels:
            return self._zone_answer(labels, labels[:len(labels) - z], qtype)
        for reverse in REVERSE_ZONES:
            if labels[-2:] == reverse:
                return self._reverse_answer(labels, qtype)
        return Answer(wire.NOERROR, authoritative=False, forward=True, reason="outside the cluster zone")

    def answer_name(self, name: str, qtype: int | str) -> Answer:
        """Convenience for tests and explain-dns: a dotted name and a type number or name."""
        if isinstance(qtype, str):
            qtype = wire.TYPES_BY_NAME[qtype.upper()]
        return self.answer(tuple(lb.lower() for lb in name.rstrip(".").split(".") if lb), qtype)

    # -- the forward zone ------------------------------------------------------------------

    def _zone_answer(self, labels: tuple[str, ...], rel: tuple[str, ...], qtype: int) -> Answer:
        qname = ".".join(labels) + "."
        extra: list[RR] = []
        try:
            if qtype in (wire.AXFR, wire.IXFR):
                return Answer(wire.REFUSED, authoritative=False, reason="zone transfers are not allowed")
            if qtype == wire.TXT:
                records = self._txt(rel)
            elif qtype == wire.NS and not rel:
                records, extra = self._ns()
            elif qtype == wire.SOA:
                records = [self.soa()]
            elif qtype in (wire.A, wire.AAAA):
                records = self._address(rel, qname, qtype, [])
            elif qtype == wire.CNAME:
                records = self._cname(rel)
            elif qtype == wire.SRV:
                records, extra = self._srv(rel)
            else:  # PTR, MX and every other type: find out whether the name exists
                self._services(rel, wire.A)
                records = []
        except _NameError as exc:
            if not self.view.synced:
                return Answer(wire.SERVFAIL, authority=[self.soa()], reason="the cluster view is not synced yet")
            return Answer(wire.NXDOMAIN, authority=[self.soa()], reason=str(exc))
        if not records:
            return Answer(wire.NOERROR, authority=[self.soa()], reason="the name exists, with no records of this type")
        external = ""
        if qtype in (wire.A, wire.AAAA) and records[-1].type == wire.CNAME and not self._in_zone(records[-1].data):
            external = records[-1].data
        return Answer(wire.NOERROR, records, [], extra, external_target=external, reason=self._found(rel))

    def _found(self, rel: tuple[str, ...]) -> str:
        """Why a name has records, in a few words (for explain-dns)."""
        try:
            r = parse_request(rel)
        except _NameError:
            r = RecordRequest()
        if r.pod_or_svc == "pod":
            return f"a pod IP written with dashes, in namespace {r.namespace!r}"
        if r.pod_or_svc != "svc" or not r.service:
            return "found in the cluster zone"
        svc = self.view.service(r.namespace, r.service)
        what = f"Service {r.namespace}/{r.service}"
        if svc is None:
            return f"found in the cluster zone ({what})"
        if svc.external_name:
            found = f"{what} is of type ExternalName: an alias of {svc.external_name}"
        elif r.endpoint:
            found = f"the ready endpoint {r.endpoint!r} of {what}"
        elif svc.headless:
            found = f"the ready endpoints of the headless {what}"
        else:
            found = f"the ClusterIP of {what}"
        return found + (f", port {r.port!r} ({r.protocol})" if r.port else "")

    def soa(self) -> RR:
        zone = self.zone + "."
        return RR(zone, wire.SOA, min(self.ttl, 300),
                  (f"ns.dns.{zone}", f"hostmaster.{zone}", self.view.serial & 0xFFFFFFFF, 7200, 1800, 86400, self.ttl))

    def _in_zone(self, name: str) -> bool:
        labels = tuple(name.rstrip(".").lower().split("."))
        return labels[-len(self.zone_labels):] == self.zone_labels

    def _txt(self, rel: tuple[str, ...]) -> list[RR]:
        # CoreDNS answers TXT only for dns-version; any other TXT question is NODATA.
        if rel == ("dns-version",):
            return [RR(None, wire.TXT, SCHEMA_TTL, (SCHEMA_VERSION,))]
        return []

    def _nameservers(self) -> list[tuple[str, str]]:
        """(name, ip) of this server: the Service whose endpoints are our own IPs (kube-dns),
        else `ns.dns.<zone>` with the local IPs (CoreDNS nsAddrs)."""
        found = []
        for ip in self.local_ips:
            for svc, ns, name, ep in self.view.endpoints_by_ip(ip):
                if svc is None:
                    continue
                domain = f"{svc.name}.{svc.namespace}.svc.{self.zone}."
                if svc.headless:
                    found.append((f"{ep.dns_hostname}.{domain}", ep.ip))
                else:
                    found += [(domain, cip) for cip in svc.cluster_ips]
        return found or [(f"ns.dns.{self.zone}.", ip) for ip in self.local_ips]

    def _ns(self) -> tuple[list[RR], list[RR]]:
        records, extra, seen = [], [], set()
        for name, ip in self._nameservers():
            extra.append(RR(name, wire.A if _is_ip(ip) == 4 else wire.AAAA, self.ttl, ip))
            if name not in seen:
                seen.add(name)
                records.append(RR(None, wire.NS, self.ttl, name))
        return records, extra

    def _services(self, rel: tuple[str, ...], qtype: int) -> list[_Target]:
        """CoreDNS Services(): the targets a name stands for; raises _NameError when it does
        not exist."""
        if rel == ("ns", "dns"):  # CoreDNS isDefaultNS: this server's own addresses
            if qtype not in (wire.A, wire.AAAA):
                return []
            return [_Target(ip, 0, f"ns.dns.{self.zone}.") for _, ip in self._nameservers()]
        r = parse_request(rel)
        if not r.pod_or_svc:
            return []
        if not self.view.namespace_exists(r.namespace):
            raise _NameError(f"namespace {r.namespace!r} does not exist")
        if r.pod_or_svc == "pod":
            return self._pods(r)
        return self._find_services(r)

    def _pods(self, r: RecordRequest) -> list[_Target]:
        if self.pod_mode == "disabled":
            raise _NameError("pod records are disabled")
        podname = r.service
        if not podname:
            return []
        if podname.count("-") == 3 and "--" not in podname:
            ip = podname.replace("-", ".")
        else:
            ip = podname.replace("-", ":")
        version = _is_ip(ip)
        if not version:
            raise _NameError(f"{podname!r} is not an IP address written with dashes")
        ip = str(ipaddress.ip_address(ip))
        domain = f"{podname}.{r.namespace}.pod.{self.zone}."
        if self.pod_mode == "insecure":
            return [_Target(ip, 0, domain)]
        if r.namespace in self.view.pod_namespaces(ip):
            return [_Target(ip, 0, domain)]
        raise _NameError(f"no pod with IP {ip} in namespace {r.namespace!r}")

    def _find_services(self, r: RecordRequest) -> list[_Target]:
        if not r.service:
            return []
        svc = self.view.service(r.namespace, r.service)
        if svc is None:
            raise _NameError(f"no service {r.namespace}/{r.service}")
        domain = f"{svc.name}.{svc.namespace}.svc.{self.zone}."
        targets: list[_Target] = []
        if svc.external_name:
            if r.endpoint or _is_ip(svc.external_name):
                raise _NameError("an ExternalName service has no endpoints")
            return [_Target(svc.external_name.rstrip(".") + ".", 0, domain)]
        if svc.headless or r.endpoint:
            for ep in self.view.endpoints(svc.namespace, svc.name):
                if r.endpoint and r.endpoint != ep.dns_hostname.lower():
                    continue
                for p in ep.ports:
                    if _port_matches(r, p):
                        targets.append(_Target(ep.ip, p.port, f"{ep.dns_hostname}.{domain}"))
            if not targets:
                raise _NameError("no ready endpoint matches")
            return targets
        for p in svc.ports:
            if _port_matches(r, p):
                targets += [_Target(ip, p.port, domain) for ip in svc.cluster_ips]
        if not targets and not any(_port_matches(r, p) for p in svc.ports):
            raise _NameError("no port matches")
        return targets

    def _address(self, rel: tuple[str, ...], qname: str, qtype: int, previous: list[RR]) -> list[RR]:
        """A or AAAA records, following CNAMEs inside the zone (CoreDNS plugin.A / AAAA)."""
        want = 4 if qtype == wire.A else 6
        records: list[RR] = []
        seen: set[str] = set()
        for t in self._services(rel, qtype):
            version = _is_ip(t.host)
            if version == want and t.host not in seen:
                seen.add(t.host)
                records.append(RR(None if not previous else qname, qtype, self.ttl, t.host))
            elif not version:
                if t.host.rstrip(".").lower() == qname.rstrip(".") or len(previous) >= MAX_CNAME_CHAIN:
                    continue
                cname = RR(None if not previous else qname, wire.CNAME, self.ttl, t.host)
                if any(p.data == cname.data for p in previous):
                    continue
                if self._in_zone(t.host):
                    target_labels = tuple(t.host.rstrip(".").lower().split("."))
                    rel2 = target_labels[:len(target_labels) - len(self.zone_labels)]
                    try:
                        more = self._address(rel2, t.host, qtype, previous + [cname])
                    except _NameError:
                        continue
                    if more:
                        records += [cname, *more]
                    continue
                records.append(cname)
        return records

    def _cname(self, rel: tuple[str, ...]) -> list[RR]:
        targets = self._services(rel, wire.CNAME)
        if targets and not _is_ip(targets[0].host):
            return [RR(None, wire.CNAME, self.ttl, targets[0].host)]
        return []

    def _srv(self, rel: tuple[str, ...]) -> tuple[list[RR], list[RR]]:
        """SRV records with the targets' addresses as additional records (CoreDNS plugin.SRV:
        priority 0, the weight 100 shared out evenly, ExternalName services left out)."""
        targets = [t for t in self._services(rel, wire.SRV) if _is_ip(t.host)]
        weight = max(1, math.floor(100 / len(targets))) if targets else 0
        records, extra = [], []
        seen_srv, seen_addr = set(), set()
        for t in targets:
            if t.port == -1:
                continue
            if (t.domain, t.port) not in seen_srv:
                seen_srv.add((t.domain, t.port))
                records.append(RR(None, wire.SRV, self.ttl, (0, weight, t.port, t.domain)))
            if (t.domain, t.host) not in seen_addr:
                seen_addr.add((t.domain, t.host))
                extra.append(RR(t.domain, wire.A if _is_ip(t.host) == 4 else wire.AAAA, self.ttl, t.host))
        return records, extra

    # -- the reverse zones -------------------------------------------------------------------

    def _reverse_answer(self, labels: tuple[str, ...], qtype: int) -> Answer:
        ip = reverse_to_ip(labels)
        if qtype != wire.PTR or not ip:
            return Answer(wire.NOERROR, authoritative=False, forward=True,
                          reason="not a PTR question for a full address: handed on (fallthrough)")
        names = self._ptr_names(ip)
        if not names:
            return Answer(wire.NOERROR, authoritative=False, forward=True,
                          reason=f"no Service or endpoint has {ip}: handed on (fallthrough)")
        return Answer(wire.NOERROR, [RR(None, wire.PTR, self.ttl, n) for n in names],
                      reason=f"{ip} belongs to the cluster")

    def _ptr_names(self, ip: str) -> list[str]:
        """The Service with this ClusterIP, else every endpoint with this IP (CoreDNS
        serviceRecordForIP)."""
        for svc in self.view.services_by_ip(ip):
            return [f"{svc.name}.{svc.namespace}.svc.{self.zone}."]
        names: list[str] = []
        for _, ns, name, ep in self.view.endpoints_by_ip(ip):
            n = f"{ep.dns_hostname}.{name}.{ns}.svc.{self.zone}."
            if n not in names:
                names.append(n)
        return names


def _port_matches(r: RecordRequest, p: Port) -> bool:
    return (not r.port or r.port == p.name.lower()) and (not r.protocol or r.protocol == p.protocol.lower())


def reverse_to_ip(labels: tuple[str, ...]) -> str:
    """The address a full reverse name stands for (`5.1.244.10.in-addr.arpa` -> 10.244.1.5),
    or "" for partial or malformed names."""
    if labels[-2:] == ("in-addr", "arpa") and len(labels) == 6:
        octets = labels[3::-1]
        if all(o.isdigit() and o.isascii() and len(o) <= 3 and int(o) <= 255 and (o == "0" or o[0] != "0")
               for o in octets):
            return ".".join(octets)
        return ""
    if labels[-2:] == ("ip6", "arpa") and len(labels) == 34:
        nibbles = labels[31::-1]
        if all(len(n) == 1 and n in "0123456789abcdef" for n in nibbles):
            raw = "".join(nibbles)
            return str(ipaddress.IPv6Address(":".join(raw[i:i + 4] for i in range(0, 32, 4))))
    return ""
