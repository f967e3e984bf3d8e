"""pods/proxy, services/proxy and nodes/proxy: the API server's HTTP proxy into the cluster.

`GET /api/v1/namespaces/NS/pods/[SCHEME:]NAME[:PORT]/proxy/PATH` (what `kubectl proxy` users and
the Kubernetes basics tutorial curl) and `.../services/[SCHEME:]NAME[:PORT]/proxy/PATH` are
forwarded, with the request's method, query, headers (less the caller's credentials) and body,
to the pod's IP, or to a ready endpoint of the Service's port, as kube-apiserver's ProxyREST
does: the pod's first declared port when none is named, a Service port by name or number,
`https:` to the backend without verifying its certificate. The answer comes back as it is,
except that links in an HTML page and a redirect's Location that point at the backend are
rewritten to go through the proxy again (apimachinery's proxy Transport), and CORS headers are
dropped. A backend that does not answer is a 503 "error trying to reach service: ...".

`/api/v1/nodes/NAME[:PORT]/proxy/PATH` goes to the node's InternalIP, on the node agent's
port (status.daemonEndpoints.kubeletEndpoint, or the one named), as the kubelet's port is
reached: the agent's /logs/, /containerLogs/... Our agents serve plain HTTP and take the
cluster token, which is presented to the agent's own port only.

Only addresses of the cluster's own pods (and nodes) are dialed: a pod's own IP, or an endpoint address
whose targetRef names a pod that has it (manual Endpoints pointing elsewhere are skipped, as
upstream's isValidAddress does).
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import posixpath
import random
import re
import urllib.parse
import zlib

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from pocketkube.apiserver.kinds import registry
from pocketkube.apiserver.storage import Storage
from pocketkube.apiserver.streaming import relay_body
from pocketkube.core import errors
from pocketkube.core.tls import insecure_client_context

CONNECT_TIMEOUT = 10.0
RESPONSE_TIMEOUT = 30.0  # no answer head within this: the backend is as good as unreachable
MAX_HTML = 16 << 20  # larger pages are passed on without rewriting their links
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# Not passed on to the backend: hop-by-hop headers, and the caller's credentials for the API.
REQUEST_DROPPED = {"host", "authorization", "connection", "keep-alive", "proxy-connection", "te", "trailer",
                   "transfer-encoding", "upgrade", "content-length", "proxy-authorization"}
RESPONSE_DROPPED = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                    "content-length", "date", "server"}
_CORS_PREFIX = "access-control-"

# Elements and the attributes of theirs that hold URLs (apimachinery's atomsToAttrs).
URL_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href"}), "applet": frozenset({"codebase"}), "area": frozenset({"href"}),
    "audio": frozenset({"src"}), "base": frozenset({"href"}), "blockquote": frozenset({"cite"}),
    "body": frozenset({"background"}), "button": frozenset({"formaction"}), "command": frozenset({"icon"}),
    "del": frozenset({"cite"}), "embed": frozenset({"src"}), "form": frozenset({"action"}),
    "frame": frozenset({"longdesc", "src"}), "head": frozenset({"profile"}), "html": frozenset({"manifest"}),
    "iframe": frozenset({"longdesc", "src"}), "img": frozenset({"longdesc", "src", "usemap"}),
    "input": frozenset({"src", "usemap", "formaction"}), "ins": frozenset({"cite"}), "link": frozenset({"href"}),
    "object": frozenset({"classid", "codebase", "data", "usemap"}), "q": frozenset({"cite"}),
    "script": frozenset({"src"}), "source": frozenset({"src"}), "video": frozenset({"poster", "src"}),
}
_TAG = re.compile(r"<([A-Za-z][A-Za-z0-9]*)(\s[^<>]*?)?(/?)>")
_ATTR = re.compile(r"""(\s)([^\s"'<>/=]+)(\s*=\s*)("[^"]*"|'[^']*'|[^\s"'=<>`]+)""")


def install(handlers, storage: Storage, agent_token: str = "") -> "ClusterProxy":
    proxy = ClusterProxy(storage, agent_token)
    handlers.proxy_handlers["pods"] = proxy.pod
    handlers.proxy_handlers["services"] = proxy.service
    handlers.proxy_handlers["nodes"] = proxy.node
    return proxy


def split_scheme_name_port(segment: str) -> tuple[str, str, str]:
    """utilnet.SplitSchemeNamePort: NAME, NAME:PORT or SCHEME:NAME:PORT, scheme "", http or https."""
    parts = segment.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, (name, port) = "", parts
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        raise ValueError(segment)
    if not name or scheme not in ("", "http", "https"):
        raise ValueError(segment)
    return scheme, name, port


def proxyable(ip: str) -> str | None:
    """proxyutil.IsProxyableIP: why this address may not be dialed, or None."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"address not allowed: {ip!r} is not a valid IP"
    if address.is_loopback or address.is_link_local or address.is_multicast or address.is_unspecified:
        return "address not allowed"
    return None


def rewrite_url(target: str, prefix: str, backend_host: str) -> str:
    """apimachinery's Transport.rewriteURL: an absolute path on the backend goes through the proxy."""
    try:
        url = urllib.parse.urlsplit(target)
    except ValueError:
        return target
    if (url.netloc and url.netloc != backend_host) or not url.path.startswith("/"):
        return target
    path = url.path
    if not path.startswith(prefix):
        path = posixpath.normpath(prefix + "/" + url.path)
        if path.startswith("//"):
            path = "/" + path.lstrip("/")
        if url.path.endswith("/") and not path.endswith("/"):
            path += "/"
    return urllib.parse.urlunsplit(("", "", path, url.query, url.fragment))


def rewrite_html(page: str, rewrite) -> str:
    """Each URL attribute of the elements that hold links, through `rewrite`; the rest as it is."""
    def tag(m: re.Match) -> str:
        attrs = URL_ATTRIBUTES.get(m.group(1).lower())
        if not attrs or not m.group(2):
            return m.group(0)

        def attribute(a: re.Match) -> str:
            if a.group(2).lower() not in attrs:
                return a.group(0)
            raw = a.group(4)
            quote = raw[0] if raw[0] in "\"'" else '"'
            value = raw[1:-1] if raw[0] in "\"'" else raw
            return f"{a.group(1)}{a.group(2)}{a.group(3)}{quote}{rewrite(value)}{quote}"

        return f"<{m.group(1)}{_ATTR.sub(attribute, m.group(2))}{m.group(3)}>"

    return _TAG.sub(tag, page)


class ClusterProxy:
    def __init__(self, storage: Storage, agent_token: str = ""):
        self.storage = storage
        self.agent_token = agent_token
        self._nodes = registry.by_resource("", "v1", "nodes")
        self._pods = registry.by_resource("", "v1", "pods")
        self._services = registry.by_resource("", "v1", "services")
        self._endpoints = registry.by_resource("", "v1", "endpoints")
        self._insecure = insecure_client_context()

    # ---- where to ------------------------------------------------------------------------

    async def pod(self, request: web.Request, target, segment: str, prefix: str, rest: str) -> web.StreamResponse:
        scheme, name, port = self._split(segment, "pod")
        pod = await self.storage.get(self._pods, target.namespace or "", name)
        if not port:
            port = next((str(p["containerPort"]) for c in (pod.get("spec") or {}).get("containers") or []
                         for p in c.get("ports") or [] if p.get("containerPort")), "")
        ip = (pod.get("status") or {}).get("podIP") or ""
        if problem := proxyable(ip):
            raise errors.bad_request(problem)
        return await self._forward(request, scheme or "http", ip, port, prefix, rest)

    async def service(self, request: web.Request, target, segment: str, prefix: str,
                      rest: str) -> web.StreamResponse:
        scheme, name, port = self._split(segment, "service")
        namespace = target.namespace or ""
        if port.isdigit():
            svc = await self.storage.get(self._services, namespace, name)
            named = next((p.get("name", "") for p in (svc.get("spec") or {}).get("ports") or []
                          if p.get("port") == int(port)), None)
            if named is None:
                raise errors.APIError(503, "ServiceUnavailable", f'no service port {port} found for service "{name}"')
            port = named
        endpoints = await self.storage.get(self._endpoints, namespace, name)
        subsets = [s for s in endpoints.get("subsets") or [] if s.get("addresses")]
        if not subsets:
            raise errors.APIError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
        random.shuffle(subsets)
        for subset in subsets:
            for endpoint_port in subset.get("ports") or []:
                if endpoint_port.get("name", "") != port:
                    continue
                addresses = list(subset["addresses"])
                random.shuffle(addresses)
                for address in addresses:
                    if await self._is_pod_address(namespace, address):
                        return await self._forward(request, scheme or "http", address["ip"],
                                                   str(endpoint_port["port"]), prefix, rest)
        raise errors.APIError(503, "ServiceUnavailable", f'no endpoints available for service "{segment}"')

    async def node(self, request: web.Request, target, segment: str, prefix: str, rest: str) -> web.StreamResponse:
        scheme, name, port = self._split(segment, "node")
        node = await self.storage.get(self._nodes, "", name)
        status = node.get("status") or {}
        agent_port = str(((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 10250)
        ip = next((a.get("address", "") for kind in ("InternalIP", "ExternalIP")
                   for a in status.get("addresses") or [] if a.get("type") == kind), "")
        if problem := proxyable(ip):
            raise errors.bad_request(problem)
        port = port or agent_port
        credentials = {"Authorization": f"Bearer {self.agent_token}"} if self.agent_token and port == agent_port else {}
        return await self._forward(request, scheme or "http", ip, port, prefix, rest, credentials)

    @staticmethod
    def _split(segment: str, kind: str) -> tuple[str, str, str]:
        try:
            return split_scheme_name_port(segment)
        except ValueError:
            raise errors.bad_request(f"invalid {kind} request {segment!r}") from None

    async def _is_pod_address(self, namespace: str, address: dict) -> bool:
        """isValidAddress: the address belongs to the pod its targetRef names."""
        ref = address.get("targetRef") or {}
        if ref.get("kind") != "Pod" or proxyable(address.get("ip", "")):
            return False
        try:
            pod = await self.storage.get(self._pods, ref.get("namespace") or namespace, ref.get("name", ""))
        except errors.APIError:
            return False
        status = pod.get("status") or {}
        ips = {status.get("podIP")} | {p.get("ip") for p in status.get("podIPs") or []}
        return address["ip"] in ips

    # ---- the forwarding --------------------------------------------------------------------

    async def _forward(self, request: web.Request, scheme: str, ip: str, port: str, prefix: str,
                       rest: str, credentials: dict[str, str] | None = None) -> web.StreamResponse:
        if request.method not in METHODS:
            raise errors.method_not_allowed(request.method.lower(), "proxy")
        if not rest:
            # The backend's root is PREFIX/, as kube-apiserver redirects.
            query = request.rel_url.raw_query_string
            return web.Response(status=301, headers={"Location": prefix + "/" + ("?" + query if query else "")})
        host = f"[{ip}]" if ":" in ip else ip
        backend = f"{host}:{port}" if port else host
        url = f"{scheme}://{backend}{rest}"
        if request.rel_url.raw_query_string:
            url += "?" + request.rel_url.raw_query_string
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in REQUEST_DROPPED)
        peer = request.remote or ""
        forwarded = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded}, {peer}" if forwarded else peer
        headers.update(credentials or {})
        body = await request.read() if request.can_read_body else None
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=RESPONSE_TIMEOUT)
        try:
            async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
                async with session.request(request.method, url, headers=headers, data=body, allow_redirects=False,
                                           ssl=self._insecure if scheme == "https" else None) as upstream:
                    return await self._answer(request, upstream, prefix, backend)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise errors.APIError(503, "ServiceUnavailable",
                                  f"error trying to reach service: {_dial_reason(backend, exc)}") from None

    async def _answer(self, request: web.Request, upstream: aiohttp.ClientResponse, prefix: str,
                      backend: str) -> web.StreamResponse:
        headers = CIMultiDict((k, v) for k, v in upstream.headers.items()
                              if k.lower() not in RESPONSE_DROPPED and not k.lower().startswith(_CORS_PREFIX))
        if "Location" in headers:
            headers["Location"] = rewrite_url(headers["Location"], prefix, backend)
        media = (upstream.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        encoding = (upstream.headers.get("Content-Encoding") or "").lower()
        length = upstream.content_length
        if media == "text/html" and encoding in ("", "gzip", "deflate") and (length or 0) <= MAX_HTML:
            raw = await upstream.read()
            page = _decode(raw, encoding)
            if page is not None:
                charset = upstream.charset or "utf-8"
                text = rewrite_html(page.decode(charset, "replace"),
                                    lambda value: rewrite_url(value, prefix, backend)).encode(charset, "replace")
                return web.Response(status=upstream.status, headers=headers, body=_encode(text, encoding))
            return web.Response(status=upstream.status, headers=headers, body=raw)
        resp = web.StreamResponse(status=upstream.status, headers=headers)
        if length is not None:
            resp.content_length = length
        await resp.prepare(request)
        await relay_body(upstream, resp)
        return resp


def _decode(raw: bytes, encoding: str) -> bytes | None:
    try:
        if encoding == "gzip":
            return gzip.decompress(raw)
        if encoding == "deflate":
            return zlib.decompress(raw)
    except (OSError, zlib.error, EOFError):
        return None
    return raw


def _encode(text: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(text)
    if encoding == "deflate":
        return zlib.compress(text)
    return text


def _dial_reason(backend: str, exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"dial tcp {backend}: i/o timeout"
    cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
        return f"dial tcp {backend}: connect: connection refused"
    return str(cause) or cause.__class__.__name__
