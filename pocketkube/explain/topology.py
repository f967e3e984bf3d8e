"""The cluster's traffic topology, pure: `build()` turns lists of Nodes, Pods, Services,
EndpointSlices and Ingresses into a `Topology` (nodes with their pods, Services with the
endpoints their slices pick, Ingress rules with the Services they send to), and
`render_text()` draws it for a terminal in at most `width` columns (`pocketkube map`).
`Topology.to_dict()` is the same for a program, and `html_page()` the page that draws it as
SVG in a browser (map.html: live from `pocketkube ui`, or a snapshot file).

Endpoints are read from the EndpointSlices, as the proxy reads them, so the map shows what
traffic does, not what the selector says: a pod that is not ready is drawn with a hollow
marker and its endpoint line as `▷ ... not ready`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from pocketkube.controllers.endpointutil import LABEL_SERVICE_NAME, is_pod_ready
from pocketkube.core.objects import labels_of, name_of, namespace_of

READY, NOT_READY = "●", "○"


@dataclass
class PodView:
    namespace: str
    name: str
    ip: str
    node: str
    ready: bool  # Ready and not terminating: it takes new connections
    state: str  # "Ready", or why not ("CrashLoopBackOff", "Pending", "Terminating", "not ready")


@dataclass
class NodeView:
    name: str
    ip: str
    pod_cidr: str
    ready: bool
    pods: list[PodView] = field(default_factory=list)


@dataclass
class EndpointView:
    address: str
    ports: str      # "8080/TCP"
    ready: bool
    terminating: bool
    pod: str        # the pod's name ("" for an address no pod holds)
    node: str


@dataclass
class ServiceView:
    namespace: str
    name: str
    type: str
    cluster_ip: str
    external: list[str]   # load-balancer addresses and externalIPs
    ports: list[str]      # "80/TCP->8080" (":30080" for a nodePort)
    selector: str
    endpoints: list[EndpointView] = field(default_factory=list)


@dataclass
class RouteView:
    ingress: str          # namespace/name
    host: str
    path: str
    service: str          # the backend Service's name ("" for a resource backend)
    port: str
    tls: bool


@dataclass
class Topology:
    nodes: list[NodeView] = field(default_factory=list)
    unscheduled: list[PodView] = field(default_factory=list)
    services: list[ServiceView] = field(default_factory=list)
    routes: list[RouteView] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _pod_state(pod: dict) -> str:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    if is_pod_ready(pod):
        return "Ready"
    status = pod.get("status") or {}
    for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = s.get("state") or {}
        if state.get("waiting") and state["waiting"].get("reason") not in (None, "PodInitializing"):
            return state["waiting"]["reason"]
        if state.get("terminated"):
            return state["terminated"].get("reason") or "Terminated"
    phase = status.get("phase") or "Pending"
    return "not ready" if phase == "Running" else phase


def _address(node: dict) -> str:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == "InternalIP":
            return a.get("address", "")
    return ""


def _node_ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def _ip_key(text: str) -> tuple:
    return tuple(int(x) if x.isdigit() else 0 for x in text.replace(":", ".").split("."))


def build(nodes: list[dict], pods: list[dict], services: list[dict], slices: list[dict], ingresses: list[dict],
          namespace: str | None = None) -> Topology:
    """The topology of these objects (of one namespace's pods, Services and Ingresses when given)."""
    top = Topology()
    by_node: dict[str, NodeView] = {}
    for n in sorted(nodes, key=name_of):
        view = NodeView(name_of(n), _address(n), (n.get("spec") or {}).get("podCIDR", ""), _node_ready(n))
        by_node[view.name] = view
        top.nodes.append(view)
    for p in sorted(pods, key=lambda p: (namespace_of(p), name_of(p))):
        if namespace and namespace_of(p) != namespace:
            continue
        if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        view = PodView(namespace_of(p), name_of(p), (p.get("status") or {}).get("podIP") or "",
                       (p.get("spec") or {}).get("nodeName") or "",
                       is_pod_ready(p) and not (p.get("metadata") or {}).get("deletionTimestamp"), _pod_state(p))
        (by_node[view.node].pods if view.node in by_node else top.unscheduled).append(view)
    slices_of: dict[tuple[str, str], list[dict]] = {}
    for es in slices:
        svc = labels_of(es).get(LABEL_SERVICE_NAME)
        if svc:
            slices_of.setdefault((namespace_of(es), svc), []).append(es)
    for s in sorted(services, key=lambda s: (namespace_of(s), name_of(s))):
        if namespace and namespace_of(s) != namespace:
            continue
        spec = s.get("spec") or {}
        lb = [i.get("ip") or i.get("hostname") for i in
              ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
        ports = []
        for p in spec.get("ports") or []:
            text = f"{p.get('port')}/{p.get('protocol') or 'TCP'}"
            if p.get("nodePort"):
                text += f":{p['nodePort']}"
            target = p.get("targetPort", p.get("port"))
            if target != p.get("port"):
                text += f"->{target}"
            ports.append(text)
        view = ServiceView(namespace_of(s), name_of(s), spec.get("type") or "ClusterIP",
                           spec.get("clusterIP") or "", [*lb, *(spec.get("externalIPs") or [])], ports,
                           ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())))
        if view.type == "ExternalName":
            view.cluster_ip = spec.get("externalName", "")
        seen: dict[str, EndpointView] = {}
        for es in slices_of.get((view.namespace, view.name), []):
            if es.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
                continue
            port_text = ",".join(f"{p.get('port')}/{p.get('protocol') or 'TCP'}" for p in es.get("ports") or [])
            for e in es.get("endpoints") or []:
                cond = e.get("conditions") or {}
                for a in e.get("addresses") or []:
                    ep = seen.get(a)
                    if ep is None:
                        seen[a] = EndpointView(a, port_text, cond.get("ready") is not False,
                                               bool(cond.get("terminating")),
                                               (e.get("targetRef") or {}).get("name", ""), e.get("nodeName") or "")
                    elif port_text and port_text not in ep.ports.split(","):
                        ep.ports = ",".join(x for x in (ep.ports, port_text) if x)
        view.endpoints = sorted(seen.values(), key=lambda e: _ip_key(e.address))
        top.services.append(view)
    for ing in sorted(ingresses, key=lambda i: (namespace_of(i), name_of(i))):
        if namespace and namespace_of(ing) != namespace:
            continue
        spec = ing.get("spec") or {}
        key = f"{namespace_of(ing)}/{name_of(ing)}"
        tls_hosts = {h for t in spec.get("tls") or [] for h in t.get("hosts") or []}

        def route(host: str, path: str, backend: dict) -> RouteView:
            ref = backend.get("service") or {}
            port = ref.get("port") or {}
            return RouteView(key, host, path, ref.get("name", ""), str(port.get("number") or port.get("name") or ""),
                             host in tls_hosts)

        if spec.get("defaultBackend"):
            top.routes.append(route("*", "(default)", spec["defaultBackend"]))
        for rule in spec.get("rules") or []:
            for p in (rule.get("http") or {}).get("paths") or []:
                top.routes.append(route(rule.get("host") or "*", p.get("path") or "/", p.get("backend") or {}))
    return top


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def _column(text: str, size: int) -> str:
    return _fit(text, size).ljust(size)


def render_text(top: Topology, width: int = 100) -> str:
    """The topology as lines of at most `width` columns."""
    lines: list[str] = []
    pod_width = max(16, min(40, width - 60))
    lines.append(f"NODES ({len(top.nodes)})")
    for n in top.nodes:
        lines.append(f"  {n.name}  {n.ip}  pods {n.pod_cidr or '?'}  {'Ready' if n.ready else 'NotReady'}")
        for p in n.pods:
            mark = READY if p.ready else NOT_READY
            lines.append(f"    {mark} {_column(f'{p.namespace}/{p.name}', pod_width)} {p.ip or '-':<15} {p.state}")
    if top.unscheduled:
        lines.append("  (no node yet)")
        for p in top.unscheduled:
            lines.append(f"    {NOT_READY} {_column(f'{p.namespace}/{p.name}', pod_width)} {'-':<15} {p.state}")
    lines.append("")
    lines.append(f"SERVICES ({len(top.services)})")
    for s in top.services:
        where = s.cluster_ip if s.type != "ExternalName" else f"-> {s.cluster_ip}"
        head = f"  {s.namespace}/{s.name}  {s.type} {where}"
        if s.external:
            head += f"  ext {','.join(s.external)}"
        head += f"  {' '.join(s.ports)}"
        lines.append(head)
        if s.type == "ExternalName":
            continue
        if not s.endpoints:
            lines.append("    └─✗ no endpoints" + (f" (selector {s.selector})" if s.selector else " (no selector)"))
        for i, e in enumerate(s.endpoints):
            branch = "└─" if i == len(s.endpoints) - 1 else "├─"
            arrow = "▶" if e.ready else "▷"
            where = f"{e.address}:{e.ports.split('/')[0]}" if e.ports and "," not in e.ports else e.address
            state = "" if e.ready else ("  terminating" if e.terminating else "  not ready")
            lines.append(f"    {branch}{arrow} {where:<21} {_column(e.pod or '(no pod)', pod_width)} "
                         f"{e.node}{state}")
    if top.routes:
        lines.append("")
        lines.append(f"INGRESS RULES ({len(top.routes)})")
        for r in top.routes:
            scheme = "https" if r.tls else "http"
            target = f"svc {r.service}:{r.port}" if r.service else "(resource backend)"
            lines.append(f"  {r.ingress}  {scheme}://{r.host}{r.path if r.path.startswith('/') else ' ' + r.path}"
                         f"  ─▶ {target}")
    return "\n".join(_fit(line.rstrip(), width) for line in lines) + "\n"


PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "map.html")


def _embedded(value) -> str:
    return json.dumps(value).replace("</", "<\\/")


def html_page(snapshot: Topology | None = None, findings: dict[str, dict] | None = None) -> str:
    """The map page (map.html). Without arguments it draws what `/events` streams (`pocketkube ui`);
    with a snapshot (and each Service's findings, "namespace/name" -> a report as JSON) it is
    a file that needs no server (`pocketkube map --html`)."""
    with open(PAGE) as f:
        page = f.read()
    if snapshot is not None:
        page = page.replace("/*SNAPSHOT*/null", _embedded(snapshot.to_dict()))
        page = page.replace("/*FINDINGS*/null", _embedded(findings or {}))
    return page
