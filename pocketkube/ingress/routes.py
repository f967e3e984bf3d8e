"""Route selection, as pure functions over API objects: which Ingresses are this controller's,
which nginx server (host) and location (path) each rule becomes, which Service endpoints each
location reaches, which TLS certificate each host presents, and what is wrong (`Problem`s the
controller reports as Events). nginxconf.py renders a `Model`; `select()` answers "where does
this request go, and why" from the same `Model`, for `pocketkube trace`.

Paths become nginx locations as ingress-nginx makes them, so nginx's own location choice gives
the Ingress API's precedence: `Exact /p` is `location = /p`; `Prefix /p` is `location = /p` plus
`location /p/` (element-wise: `/p/q` matches, `/pq` does not; a trailing slash is ignored; an
Exact path with the same text takes the `=` location); `ImplementationSpecific /p` is nginx's
plain prefix `location /p`. nginx picks an exact location first, then the longest prefix, so
the longest path wins. When any Ingress of a host asks for `use-regex` or `rewrite-target`,
every non-Exact path of that host is a case-insensitive regex location `~* ^PATH`, tried in
order of path length, longest first (ingress-nginx's rule).

Hosts: a rule's host is a server_name; `*.foo.com` matches exactly one label (a regex server
name, since nginx's own wildcard matches several); a rule without host joins the catch-all
server `_`, which answers requests for any other host. A host whose paths do not cover `/`
sends the rest to the defaultBackend of its oldest Ingress that has one, else to the default
backend (404). Several Ingresses for one host merge; a host and path claimed twice goes to the
older Ingress.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from pocketkube.ingress import annotations as ann

CONTROLLER_CLASS = "k8s.io/ingress-nginx"
INGRESS_CLASS = "nginx"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
CATCH_ALL = "_"
DEFAULT_BACKEND = "upstream-default-backend"


@dataclass(frozen=True)
class Settings:
    """The controller's flags and ConfigMap options that change routing."""

    controller_class: str = CONTROLLER_CLASS
    ingress_class: str = INGRESS_CLASS
    watch_without_class: bool = False
    ssl_redirect: bool = True
    redirect_code: int = 308
    proxy_body_size: str = "1m"


@dataclass(frozen=True)
class Problem:
    """Something to report as an Event on an Ingress (`ingress` is "namespace/name")."""

    ingress: str
    reason: str
    message: str
    type: str = "Warning"


@dataclass
class Upstream:
    """A Service port and its ready endpoints (nginx `upstream NAME`)."""

    name: str
    namespace: str = ""
    service: str = ""
    port: str = ""                 # the Ingress backend's port: number or name, as text
    endpoints: list[tuple[str, int]] = field(default_factory=list)
    problem: str = ""              # why there are no endpoints (nginx answers 503)
    service_port: int = 0
    target: str = ""               # the Service port's targetPort, for explanations

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_BACKEND


@dataclass
class CanaryRoute:
    ingress: str
    canary: ann.Canary
    upstream: Upstream


@dataclass
class Route:
    """One nginx location of one server."""

    ingress: str                   # "namespace/name" of the Ingress that defined it ("" for the 404)
    host: str
    path: str                      # as the Ingress wrote it
    path_type: str                 # Exact, Prefix, ImplementationSpecific, or "" for a server's root fallback
    modifier: str                  # "=", "" (prefix) or "~*" (regex)
    location: str                  # nginx's location argument
    upstream: Upstream
    annotations: ann.Annotations = field(default_factory=ann.Annotations)
    canaries: list[CanaryRoute] = field(default_factory=list)
    rule: int = -1                 # index in spec.rules (-1: defaultBackend or the 404)
    path_index: int = -1
    redirect_to_https: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return self.modifier, self.location

    def describe(self) -> str:
        where = f"location {self.modifier + ' ' if self.modifier else ''}{self.location}"
        if not self.ingress:
            return f"{where} (the default backend)"
        what = f"{self.path_type} {self.path}" if self.path_type else "spec.defaultBackend"
        return f"{where} (Ingress {self.ingress}, {what})"


@dataclass
class TLS:
    secret: str = ""               # "namespace/name", "" for the default certificate
    cert_pem: bytes = b""
    key_pem: bytes = b""
    problem: str = ""

    @property
    def default(self) -> bool:
        return not self.cert_pem


@dataclass
class Server:
    host: str                      # "_" for the catch-all server
    routes: list[Route] = field(default_factory=list)
    tls: TLS | None = None
    regex: bool = False
    ingresses: list[str] = field(default_factory=list)

    @property
    def wildcard(self) -> bool:
        return self.host.startswith("*.")

    def server_name(self) -> str:
        """nginx's server_name: `*.foo.com` matches exactly one label, so it is a regex."""
        if self.wildcard:
            return "~^[^.]+" + re.escape(self.host[1:]).replace("\\-", "-") + "$"
        return self.host


@dataclass
class Model:
    servers: dict[str, Server] = field(default_factory=dict)   # host -> Server ("_" included)
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    ingresses: list[str] = field(default_factory=list)          # this controller's, oldest first
    ignored: dict[str, str] = field(default_factory=dict)       # other Ingresses -> why not ours

    @property
    def catch_all(self) -> Server:
        return self.servers[CATCH_ALL]


def ingress_key(obj: dict) -> str:
    m = obj.get("metadata") or {}
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


def _age(obj: dict) -> tuple:
    m = obj.get("metadata") or {}
    return m.get("creationTimestamp") or "", m.get("namespace", ""), m.get("name", "")


# ---- which Ingresses are ours ----------------------------------------------------------------


def is_default_class(ingress_class: dict) -> bool:
    annotations = (ingress_class.get("metadata") or {}).get("annotations") or {}
    return annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"


def class_decision(ingress: dict, classes: dict[str, dict], settings: Settings) -> tuple[bool, str]:
    """(ours, why) as ingress-nginx decides: the legacy annotation first, then
    spec.ingressClassName (an IngressClass naming this controller), then Ingresses without a
    class only with --watch-ingress-without-class (the API server gives new Ingresses the
    default class)."""
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    legacy = annotations.get(LEGACY_CLASS_ANNOTATION)
    if legacy is not None:
        if legacy == settings.ingress_class:
            return True, f'annotation {LEGACY_CLASS_ANNOTATION}: "{legacy}"'
        return False, f'annotation {LEGACY_CLASS_ANNOTATION} is "{legacy}", not "{settings.ingress_class}"'
    name = (ingress.get("spec") or {}).get("ingressClassName")
    if name:
        found = classes.get(name)
        if found is None:
            return False, f'IngressClass "{name}" does not exist'
        controller = (found.get("spec") or {}).get("controller", "")
        if controller == settings.controller_class:
            return True, f'ingressClassName "{name}" (controller {controller})'
        return False, f'IngressClass "{name}" belongs to controller {controller}, not {settings.controller_class}'
    if settings.watch_without_class:
        return True, "no class, and the controller watches Ingresses without a class"
    return False, "no ingressClassName (and no default IngressClass when it was created)"


# ---- backends ---------------------------------------------------------------------------------


def upstream_name(namespace: str, service: str, port: str) -> str:
    return f"{namespace}-{service}-{port}"


def _backend_port(backend: dict) -> str:
    port = ((backend.get("service") or {}).get("port")) or {}
    return str(port.get("number") or port.get("name") or "")


def resolve_upstream(namespace: str, backend: dict, services: dict[str, dict],
                     slices: dict[str, list[dict]]) -> Upstream:
    """The Service port an Ingress backend names and its ready endpoints (pod IP, target port)."""
    service_ref = backend.get("service") or {}
    name = service_ref.get("name", "")
    port = _backend_port(backend)
    up = Upstream(upstream_name(namespace, name, port), namespace, name, port)
    if backend.get("resource") is not None:
        up.problem = "resource backends are not supported by ingress-nginx"
        return up
    svc = services.get(f"{namespace}/{name}")
    if svc is None:
        up.problem = f'Service "{namespace}/{name}" not found'
        return up
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        up.problem = f'Service "{namespace}/{name}" is of type ExternalName, which pocketkube\'s controller does not proxy'
        return up
    wanted = (service_ref.get("port") or {})
    service_port = None
    for p in spec.get("ports") or []:
        if (p.get("protocol") or "TCP") != "TCP":
            continue
        if wanted.get("number") and p.get("port") == wanted["number"]:
            service_port = p
        elif wanted.get("name") and p.get("name") == wanted["name"]:
            service_port = p
    if service_port is None:
        up.problem = f'Service "{namespace}/{name}" has no port {port}'
        return up
    up.service_port = int(service_port.get("port") or 0)
    up.target = str(service_port.get("targetPort", up.service_port))
    port_name = service_port.get("name") or ""
    seen = set()
    for eps in slices.get(f"{namespace}/{name}", ()):
        number = next((p.get("port") for p in eps.get("ports") or []
                       if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == "TCP"), None)
        if not number:
            continue
        for endpoint in eps.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or []:
                if (address, number) not in seen:
                    seen.add((address, number))
                    up.endpoints.append((address, int(number)))
    up.endpoints.sort(key=lambda e: (tuple(int(x) if x.isdigit() else 0 for x in e[0].split(".")), e[1]))
    if not up.endpoints:
        up.problem = f'Service "{namespace}/{name}" has no ready endpoints for port {port}'
    return up


# ---- TLS --------------------------------------------------------------------------------------


def host_covered(pattern: str, host: str) -> bool:
    """A certificate name (or TLS host) covers a host: equal, or `*.x` for one label of x."""
    pattern, host = pattern.lower(), host.lower()
    if pattern == host:
        return True
    if pattern.startswith("*.") and not host.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return False


def check_certificate(secret: dict | None, ref: str, host: str) -> TLS:
    """A TLS secret's certificate for `host`, or why the default certificate is used."""
    if secret is None:
        return TLS(ref, problem=f'secret "{ref}" not found; using the default certificate')
    if secret.get("type") != "kubernetes.io/tls":
        return TLS(ref, problem=f'secret "{ref}" is of type {secret.get("type") or "Opaque"}, not '
                                f'kubernetes.io/tls; using the default certificate')
    data = secret.get("data") or {}
    try:
        cert_pem = base64.b64decode(data.get("tls.crt") or "")
        key_pem = base64.b64decode(data.get("tls.key") or "")
    except (ValueError, TypeError):
        return TLS(ref, problem=f'secret "{ref}" holds data that is not base64; using the default certificate')
    from pocketkube.ingress import certificates

    error = certificates.check_pair(cert_pem, key_pem, host)
    if error:
        return TLS(ref, problem=f'secret "{ref}": {error}; using the default certificate')
    return TLS(ref, cert_pem=cert_pem, key_pem=key_pem)


# ---- the model --------------------------------------------------------------------------------


def _locations(path: str, path_type: str, regex: bool) -> list[tuple[str, str]]:
    """The nginx locations (modifier, argument) a path becomes."""
    if path_type == "Exact":
        return [("=", path or "/")]
    path = path or "/"
    if regex:
        return [("~*", "^" + path)]
    if path_type == "Prefix":
        trimmed = path.rstrip("/")
        return [("", "/")] if not trimmed else [("=", trimmed), ("", trimmed + "/")]
    return [("", path)]


def build(ingresses: list[dict], classes: list[dict], services: list[dict], slices: list[dict],
          secrets: list[dict], settings: Settings = Settings()) -> Model:
    """Everything the nginx configuration and the tracer need, from the API objects."""
    model = Model()
    by_class = {(c.get("metadata") or {}).get("name", ""): c for c in classes}
    svc_map = {ingress_key(s): s for s in services}
    slice_map: dict[str, list[dict]] = {}
    for s in slices:
        m = s.get("metadata") or {}
        svc = (m.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc and s.get("addressType", "IPv4") == "IPv4":
            slice_map.setdefault(f"{m.get('namespace', '')}/{svc}", []).append(s)
    secret_map = {ingress_key(s): s for s in secrets}
    default_up = Upstream(DEFAULT_BACKEND)
    model.upstreams[DEFAULT_BACKEND] = default_up

    def upstream(namespace: str, backend: dict) -> Upstream:
        up = resolve_upstream(namespace, backend, svc_map, slice_map)
        return model.upstreams.setdefault(up.name, up)

    ours: list[tuple[dict, ann.Annotations]] = []
    for ing in sorted(ingresses, key=_age):
        accepted, why = class_decision(ing, by_class, settings)
        if not accepted:
            model.ignored[ingress_key(ing)] = why
            continue
        parsed = ann.parse((ing.get("metadata") or {}).get("annotations"))
        model.ingresses.append(ingress_key(ing))
        model.problems += [Problem(ingress_key(ing), "AnnotationParsing", p) for p in parsed.problems]
        ours.append((ing, parsed))

    def server(host: str) -> Server:
        return model.servers.setdefault(host, Server(host))

    server(CATCH_ALL)
    # regex mode is a property of the host, asked for by any of its Ingresses
    for ing, parsed in ours:
        if parsed.use_regex or parsed.rewrite_target is not None:
            for rule in (ing.get("spec") or {}).get("rules") or []:
                server(rule.get("host") or CATCH_ALL).regex = True

    canaries: list[tuple[dict, ann.Annotations]] = []
    for ing, parsed in ours:
        if parsed.canary is not None:
            canaries.append((ing, parsed))
            continue
        _add_rules(model, ing, parsed, server, upstream)
    for ing, parsed in canaries:
        _add_canary(model, ing, parsed, server, upstream)

    # the catch-all's root: the oldest rule-less Ingress's defaultBackend, else the 404
    catch_all_backend = None
    for ing, parsed in ours:
        spec = ing.get("spec") or {}
        if spec.get("defaultBackend") and not spec.get("rules") and parsed.canary is None:
            catch_all_backend = (ing, parsed)
            break
    by_key = {ingress_key(ing): (ing, parsed) for ing, parsed in ours}
    for host, srv in model.servers.items():
        mine = [by_key[k] for k in srv.ingresses]  # this host's Ingresses, oldest first
        _add_tls(model, srv, mine, secret_map)
        if not any(r.key == ("", "/") for r in srv.routes):
            fallback = catch_all_backend if host == CATCH_ALL else _host_default(mine)
            if fallback is not None:
                ing, parsed = fallback
                ns = (ing.get("metadata") or {}).get("namespace", "")
                srv.routes.append(Route(ingress_key(ing), host, "", "", "", "/",
                                        upstream(ns, ing["spec"]["defaultBackend"]), parsed))
            else:
                srv.routes.append(Route("", host, "/", "", "", "/", default_up))
        for route in srv.routes:
            redirect = route.annotations.ssl_redirect
            if redirect is None:
                redirect = settings.ssl_redirect
            route.redirect_to_https = route.annotations.force_ssl_redirect or bool(srv.tls is not None and redirect
                                                                                    and route.ingress)
        srv.routes.sort(key=_location_order)
    for up in model.upstreams.values():
        if up.problem:
            for route in _routes_using(model, up):
                if route.ingress:
                    model.problems.append(Problem(route.ingress, "Backend", up.problem + "; requests get 503"))
    model.problems = list(dict.fromkeys(model.problems))
    return model


def _location_order(route: Route) -> tuple:
    """Exact locations, then regex locations longest first (the order nginx tries them),
    then prefixes longest first (nginx picks the longest anyway)."""
    rank = {"=": 0, "~*": 1, "": 2}[route.modifier]
    return rank, -len(route.location), route.location


def _routes_using(model: Model, up: Upstream):
    for srv in model.servers.values():
        for route in srv.routes:
            if route.upstream is up:
                yield route
            for canary in route.canaries:
                if canary.upstream is up:
                    yield Route(canary.ingress, route.host, route.path, route.path_type, route.modifier,
                                route.location, up)


def _rule_paths(ing: dict):
    for i, rule in enumerate((ing.get("spec") or {}).get("rules") or []):
        host = (rule.get("host") or "").lower() or CATCH_ALL
        for j, p in enumerate(((rule.get("http") or {}).get("paths")) or []):
            yield i, j, host, p


def _add_rules(model: Model, ing: dict, parsed: ann.Annotations, server, upstream) -> None:
    key = ingress_key(ing)
    ns = (ing.get("metadata") or {}).get("namespace", "")
    for i, j, host, p in _rule_paths(ing):
        srv = server(host)
        if key not in srv.ingresses:
            srv.ingresses.append(key)
        path, path_type = p.get("path") or "/", p.get("pathType") or "ImplementationSpecific"
        up = upstream(ns, p.get("backend") or {})
        for modifier, location in _locations(path, path_type, srv.regex):
            if modifier == "~*":
                try:
                    re.compile(location)
                except re.error as exc:
                    model.problems.append(Problem(key, "Path", f'path "{path}" of host {host} is not a valid '
                                                               f'regular expression ({exc}); the path is skipped'))
                    continue
            route = Route(key, host, path, path_type, modifier, location, up, parsed, rule=i, path_index=j)
            existing = next((r for r in srv.routes if r.key == route.key), None)
            if existing is None:
                srv.routes.append(route)
            elif existing.path_type == "Prefix" and path_type == "Exact" and modifier == "=":
                srv.routes[srv.routes.index(existing)] = route  # Exact beats Prefix on the same path
            elif path_type == "Prefix" and existing.path_type == "Exact" and modifier == "=":
                continue
            elif existing.ingress != key:
                model.problems.append(Problem(
                    key, "Conflict", f'host "{_shown(host)}" path "{path}" is already defined in Ingress '
                                     f'{existing.ingress}, which is older; this path is ignored'))
            else:
                model.problems.append(Problem(key, "Conflict", f'host "{_shown(host)}" path "{path}" is defined twice '
                                                                f"in this Ingress; the first one is used"))


def _add_canary(model: Model, ing: dict, parsed: ann.Annotations, server, upstream) -> None:
    key = ingress_key(ing)
    ns = (ing.get("metadata") or {}).get("namespace", "")
    for _i, _j, host, p in _rule_paths(ing):
        srv = server(host)
        path, path_type = p.get("path") or "/", p.get("pathType") or "ImplementationSpecific"
        up = upstream(ns, p.get("backend") or {})
        found = False
        for modifier, location in _locations(path, path_type, srv.regex):
            for route in srv.routes:
                if route.key == (modifier, location) and route.ingress != key:
                    route.canaries.append(CanaryRoute(key, parsed.canary, up))
                    found = True
        if not found:
            model.problems.append(Problem(key, "Canary", f'canary for host "{_shown(host)}" path "{path}" has no main '
                                                         f"Ingress with the same host and path; it is ignored"))


def _host_default(mine: list[tuple[dict, ann.Annotations]]):
    """The oldest of a host's Ingresses with a defaultBackend."""
    for ing, parsed in mine:
        if (ing.get("spec") or {}).get("defaultBackend") and parsed.canary is None:
            return ing, parsed
    return None


def _add_tls(model: Model, srv: Server, mine, secret_map: dict[str, dict]) -> None:
    if srv.host == CATCH_ALL:
        return
    for ing, parsed in mine:
        if parsed.canary is not None:
            continue
        ns = (ing.get("metadata") or {}).get("namespace", "")
        for entry in (ing.get("spec") or {}).get("tls") or []:
            hosts = [h.lower() for h in entry.get("hosts") or []]
            if not any(h == srv.host or host_covered(h, srv.host) for h in hosts):
                continue
            name = entry.get("secretName") or ""
            if not name:
                srv.tls = TLS()
                return
            ref = f"{ns}/{name}"
            srv.tls = check_certificate(secret_map.get(ref), ref, srv.host)
            if srv.tls.problem:
                model.problems.append(Problem(ingress_key(ing), "TLSSecret", srv.tls.problem))
            return


def _shown(host: str) -> str:
    return "*" if host == CATCH_ALL else host


# ---- where does a request go ------------------------------------------------------------------


@dataclass
class Decision:
    server: Server
    route: Route
    reasons: list[str]
    upstream: Upstream
    canary: CanaryRoute | None = None
    redirect: str = ""             # the Location of a redirect answer, if any
    status: int = 0                # the answer nginx itself gives (301, 308, 403, 404, 503), 0 = proxied


def select_server(model: Model, host: str) -> tuple[Server, str]:
    host = host.lower().rstrip(".")
    if host in model.servers and host != CATCH_ALL:
        return model.servers[host], f'host "{host}" matches server_name {host}'
    for srv in model.servers.values():
        if srv.wildcard and host_covered(srv.host, host):
            return srv, f'host "{host}" matches the wildcard {srv.host} (one label)'
    hosts = sorted(h for h in model.servers if h != CATCH_ALL)
    return model.catch_all, (f'host "{host}" matches no rule host ({", ".join(hosts) or "none"}): the catch-all '
                             f"server answers")


def select_route(server: Server, path: str) -> tuple[Route, list[str]]:
    """nginx's location choice: an exact match, else regexes in order if the longest prefix
    does not stop them, else the longest prefix."""
    reasons = []
    for route in server.routes:
        if route.modifier == "=" and route.location == path:
            return route, [f"{route.describe()} matches {path} exactly"]
    prefixes = [r for r in server.routes if r.modifier == "" and path.startswith(r.location)]
    longest = max(prefixes, key=lambda r: len(r.location), default=None)
    for route in server.routes:
        if route.modifier == "~*":
            if re.search(route.location, path, re.IGNORECASE):
                return route, reasons + [f"{route.describe()} matches {path} (regex, tried longest first)"]
            reasons.append(f"{route.describe()} does not match {path}")
    others = [r for r in server.routes if r.modifier == "=" and r.location != path]
    reasons += [f"{r.describe()} would need exactly {r.location}" for r in others[:5]]
    if longest is None:
        raise LookupError(f"no location of server {server.host} matches {path}")
    shorter = [r for r in prefixes if r is not longest]
    missed = [r for r in server.routes if r.modifier == "" and r not in prefixes]
    reasons += [f"{r.describe()} is a prefix too, but shorter" for r in shorter[:5]]
    reasons += [f"{r.describe()} is not a prefix of {path}" for r in missed[:5]]
    return longest, reasons + [f"{longest.describe()} is the longest prefix of {path}"]


def select(model: Model, host: str, path: str, scheme: str = "http", headers: dict | None = None) -> Decision:
    """Where nginx sends a request, with the reasons, from the same model nginx.conf was made from."""
    srv, why_server = select_server(model, host.partition(":")[0] if not host.startswith("[") else host)
    route, reasons = select_route(srv, path or "/")
    decision = Decision(srv, route, [why_server] + reasons, route.upstream)
    a = route.annotations
    if route.redirect_to_https and scheme == "http":
        decision.status = 308
        decision.redirect = f"https://{host.partition(':')[0]}{path}"
        decision.reasons.append("the host has TLS (or force-ssl-redirect): plain HTTP is redirected to HTTPS")
        return decision
    if a.permanent_redirect:
        decision.status, decision.redirect = a.permanent_redirect_code, a.permanent_redirect
        return decision
    if a.temporal_redirect:
        decision.status, decision.redirect = 302, a.temporal_redirect
        return decision
    if a.denied:
        decision.status = 503
        decision.reasons.append(f"the location refuses every request: {a.denied}")
        return decision
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    for canary in route.canaries:
        c = canary.canary
        value = headers.get(c.by_header.lower()) if c.by_header else None
        if value is not None and ((c.by_header_value and value == c.by_header_value)
                                  or (not c.by_header_value and value == "always")):
            decision.canary, decision.upstream = canary, canary.upstream
            decision.reasons.append(f"header {c.by_header}: {value} selects the canary Ingress {canary.ingress}")
            break
        if value == "never" and not c.by_header_value:
            decision.reasons.append(f"header {c.by_header}: never keeps the main Ingress")
            break
        if c.weight:
            decision.reasons.append(f"canary Ingress {canary.ingress} takes {c.weight} of {c.weight_total} requests "
                                    f"by weight; this one may go there")
    if decision.upstream.is_default:
        decision.status = 404
        decision.reasons.append("no Ingress path matches: the default backend answers 404")
    elif decision.upstream.problem:
        decision.status = 503
        decision.reasons.append(decision.upstream.problem + ": nginx answers 503")
    return decision
