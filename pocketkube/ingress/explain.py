"""Explaining an HTTP request's way through the Ingress controller, for `pocketkube trace --to
http://HOST/PATH`: which controller entry the host reaches (the Ingresses' ADDRESS and the
controller Service's ports), then, from the live objects and the same routes.build() the
controller runs, which server and location nginx picks and why the others did not match,
what nginx answers itself (redirects, 404, 503) or which Service endpoints it proxies to.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from pocketkube.core.client import Client
from pocketkube.ingress import routes

CONTROLLER_LABELS = {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}


class ExplainError(Exception):
    pass


@dataclass
class Request:
    scheme: str
    host: str          # the Host header (no port)
    port: int | None   # as written in the URL
    path: str
    address: str = ""  # the address the client connects to, when the URL names one

    @property
    def default_port(self) -> int:
        return 443 if self.scheme == "https" else 80


def parse_url(url: str, host: str | None = None, path: str | None = None) -> Request:
    """`http[s]://HOST[:PORT]/PATH`, with --host / --path taking precedence."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https"):
        raise ExplainError(f"--to must be an http:// or https:// URL, not {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ExplainError(f"the port in {url!r} is not a number") from None
    name = (parts.hostname or "").lower()
    address = ""
    try:
        address = str(ipaddress.IPv4Address(name))
    except ValueError:
        pass
    request_path = path or (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Request(parts.scheme, (host or name).lower(), port, request_path, address)


async def _objects(client: Client) -> dict[str, list[dict]]:
    found = {}
    for key, (api, resource) in {"ingresses": ("networking.k8s.io/v1", "ingresses"),
                                 "classes": ("networking.k8s.io/v1", "ingressclasses"),
                                 "services": ("v1", "services"),
                                 "slices": ("discovery.k8s.io/v1", "endpointslices"),
                                 "secrets": ("v1", "secrets")}.items():
        found[key] = (await client.list(api, resource)).get("items", [])
    return found


def controller_service(services: list[dict]) -> dict | None:
    """The ingress controller's Service (the add-on's and the upstream manifests' labels)."""
    for svc in services:
        labels = (svc.get("metadata") or {}).get("labels") or {}
        if all(labels.get(k) == v for k, v in CONTROLLER_LABELS.items()) and \
                (svc.get("spec") or {}).get("type") in ("NodePort", "LoadBalancer"):
            return svc
    return None


def entry_point(req: Request, model: routes.Model, ingresses: list[dict], services: list[dict]) -> tuple[str, int, str]:
    """(address, port, why) of where the request enters the cluster."""
    if req.address:
        return req.address, req.port or req.default_port, f"the URL names {req.address}"
    svc = controller_service(services)
    if svc is None:
        raise ExplainError("no ingress controller Service (label app.kubernetes.io/name=ingress-nginx, "
                           "component=controller, of type NodePort or LoadBalancer): enable it with "
                           "`pocketkube addons enable ingress`, or give the address with --to http://ADDRESS/")
    server, _ = routes.select_server(model, req.host)
    addresses = []
    for ing in ingresses:
        if routes.ingress_key(ing) in server.ingresses or (server.host == routes.CATCH_ALL and
                                                            routes.ingress_key(ing) in model.ingresses):
            addresses += [e.get("ip") for e in ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                          if e.get("ip")]
    if not addresses:
        raise ExplainError(f'no Ingress for host "{req.host}" has an ADDRESS yet (`kubectl get ingress`): the '
                           f"controller fills it in when it runs; give the address with --to http://ADDRESS/ "
                           f"and --host {req.host}")
    address = addresses[0]
    lb = [e.get("ip") for e in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
    wanted = req.port or req.default_port
    name = f"{svc['metadata'].get('namespace')}/{svc['metadata']['name']}"
    if address in lb:
        return address, wanted, f"ADDRESS {address} is the load-balancer address of the controller Service {name}"
    for p in (svc.get("spec") or {}).get("ports") or []:
        if p.get("port") == wanted and p.get("nodePort"):
            return address, int(p["nodePort"]), (f"ADDRESS {address} is a node running the controller; port {wanted} "
                                                 f"of the controller Service {name} is NodePort {p['nodePort']}")
    raise ExplainError(f"the controller Service {name} has no port {wanted}")


async def explain(client: Client, req: Request, headers: dict | None = None) -> tuple[str, int, list[str]]:
    """(entry address, entry port, lines explaining the HTTP decision)."""
    objs = await _objects(client)
    model = routes.build(objs["ingresses"], objs["classes"], objs["services"], objs["slices"], objs["secrets"])
    address, port, why_entry = entry_point(req, model, objs["ingresses"], objs["services"])
    d = routes.select(model, req.host, req.path, req.scheme, headers)
    lines = [f"{req.scheme.upper()} request for host {req.host}, path {req.path}: it enters at {address}:{port} "
             f"({why_entry}).", "in the ingress controller's nginx:"]
    lines += [f"  {r}" for r in d.reasons]
    if model.ignored:
        lines.append("  not this controller's: " + "; ".join(f"Ingress {k} ({why})" for k, why in
                                                              sorted(model.ignored.items())))
    tls = d.server.tls
    if req.scheme == "https":
        if tls is None or tls.default:
            why = f" ({tls.problem})" if tls is not None and tls.problem else ""
            lines.append(f"  TLS: the default certificate (Kubernetes Ingress Controller Fake Certificate){why}")
        else:
            lines.append(f"  TLS: the certificate of secret {tls.secret}, chosen by SNI {req.host}")
    if d.redirect:
        lines.append(f"=> nginx answers {d.status} with Location: {d.redirect}")
    elif d.status:
        lines.append(f"=> nginx answers {d.status} itself")
    else:
        up = d.upstream
        eps = ", ".join(f"{ip}:{p}" for ip, p in up.endpoints)
        lines.append(f"=> proxied to Service {up.namespace}/{up.service} port {up.port} (target {up.target}): straight "
                     f"to its ready endpoints, round robin: {eps}")
    return address, port, lines
