"""The one API client of pocketkube, over two transports.

`Client` speaks the Kubernetes REST API (paths, verbs, Status errors, watch streams) over
a `Transport`: `HTTPTransport` for every process that is not the API server (agents, the
proxy, DNS, the CLI), and the API server's own in-process transport for the controllers
that run inside it (apiserver/local.py), which skips only the socket. Controller code is
the same either way.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any, AsyncIterator, Protocol
from urllib.parse import quote

import orjson

from pocketkube.core import errors
from pocketkube.core.tls import insecure_client_context

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class Transport(Protocol):
    async def request(self, method: str, path: str, query: list[tuple[str, str]], body: bytes | None,
                      content_type: str | None) -> tuple[int, bytes]:
        """One request; returns (HTTP status, body)."""

    def watch(self, path: str, query: list[tuple[str, str]]) -> AsyncIterator[bytes]:
        """A watch stream: yields one JSON event per item. Raises APIError when refused."""

    async def close(self) -> None: ...


def resource_path(api_version: str, resource: str, namespace: str | None = None, name: str = "",
                  subresource: str = "") -> str:
    """`/api/v1/namespaces/ns/pods/name/status`, `/apis/apps/v1/deployments`, ..."""
    root = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    path = f"{root}/namespaces/{quote(namespace, safe='')}/{resource}" if namespace else f"{root}/{resource}"
    if name:
        path += "/" + quote(name, safe="")
    if subresource:
        path += "/" + subresource
    return path


def error_from(status: int, body: bytes) -> errors.APIError:
    """The APIError a Status body describes (or a generic one for other bodies)."""
    try:
        s = orjson.loads(body)
    except orjson.JSONDecodeError:
        s = None
    if isinstance(s, dict) and s.get("kind") == "Status":
        return errors.APIError(int(s.get("code") or status), s.get("reason", ""), s.get("message", ""),
                               s.get("details"))
    text = body.decode(errors="replace")[:500]
    return errors.APIError(status, "", text or f"the server responded with status {status}")


class Client:
    def __init__(self, transport: Transport, field_manager: str = "pocketkube"):
        self.transport = transport
        self.field_manager = field_manager

    async def close(self) -> None:
        await self.transport.close()

    async def _call(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
                    body: Any = None, content_type: str = JSON) -> dict:
        data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
        status, raw = await self.transport.request(method, path, query or [], data,
                                                   content_type if data is not None else None)
        if status >= 300:
            raise error_from(status, raw)
        return orjson.loads(raw) if raw else {}

    def _write_query(self, dry_run: bool, field_manager: str | None) -> list[tuple[str, str]]:
        q = [("fieldManager", field_manager or self.field_manager)]
        if dry_run:
            q.append(("dryRun", "All"))
        return q

    async def version(self) -> dict:
        """GET /version (the server's version.Info)."""
        return await self._call("GET", "/version")

    async def get_path(self, path: str) -> dict:
        """GET any path of the API (discovery: /apis, /apis/GROUP, /api/v1)."""
        return await self._call("GET", path)

    async def get(self, api_version: str, resource: str, name: str, namespace: str | None = None,
                  subresource: str = "") -> dict:
        return await self._call("GET", resource_path(api_version, resource, namespace, name, subresource))

    async def list(self, api_version: str, resource: str, namespace: str | None = None,
                   label_selector: str = "", field_selector: str = "") -> dict:
        q = []
        if label_selector:
            q.append(("labelSelector", label_selector))
        if field_selector:
            q.append(("fieldSelector", field_selector))
        return await self._call("GET", resource_path(api_version, resource, namespace), q)

    async def create(self, api_version: str, resource: str, obj: dict, namespace: str | None = None,
                     dry_run: bool = False, field_manager: str | None = None, subresource: str = "",
                     name: str = "") -> dict:
        path = resource_path(api_version, resource, namespace, name, subresource)
        return await self._call("POST", path, self._write_query(dry_run, field_manager), obj)

    async def update(self, api_version: str, resource: str, obj: dict, namespace: str | None = None,
                     subresource: str = "", field_manager: str | None = None) -> dict:
        name = obj["metadata"]["name"]
        path = resource_path(api_version, resource, namespace, name, subresource)
        return await self._call("PUT", path, self._write_query(False, field_manager), obj)

    async def patch(self, api_version: str, resource: str, name: str, patch: Any, namespace: str | None = None,
                    patch_type: str = MERGE_PATCH, subresource: str = "", field_manager: str | None = None,
                    force: bool = False) -> dict:
        q = self._write_query(False, field_manager)
        if force:
            q.append(("force", "true"))
        path = resource_path(api_version, resource, namespace, name, subresource)
        return await self._call("PATCH", path, q, patch, patch_type)

    async def delete(self, api_version: str, resource: str, name: str, namespace: str | None = None,
                     propagation_policy: str | None = None, grace_period_seconds: int | None = None,
                     preconditions: dict | None = None) -> dict:
        opts: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            opts["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            opts["preconditions"] = preconditions
        return await self._call("DELETE", resource_path(api_version, resource, namespace, name), None, opts)

    async def watch(self, api_version: str, resource: str, namespace: str | None = None,
                    resource_version: str = "", label_selector: str = "", field_selector: str = "",
                    timeout_seconds: int = 300, bookmarks: bool = True) -> AsyncIterator[tuple[str, dict]]:
        """(type, object) pairs: ADDED, MODIFIED, DELETED, BOOKMARK. An ERROR event raises
        the APIError it carries (410 Expired: list again)."""
        q = [("watch", "true"), ("timeoutSeconds", str(timeout_seconds))]
        if resource_version:
            q.append(("resourceVersion", resource_version))
        if bookmarks:
            q.append(("allowWatchBookmarks", "true"))
        if label_selector:
            q.append(("labelSelector", label_selector))
        if field_selector:
            q.append(("fieldSelector", field_selector))
        stream = self.transport.watch(resource_path(api_version, resource, namespace), q)
        try:
            async for line in stream:
                ev = orjson.loads(line)
                if ev.get("type") == "ERROR":
                    raise error_from(ev["object"].get("code", 500), orjson.dumps(ev["object"]))
                yield ev["type"], ev["object"]
        finally:
            await stream.aclose()


IDLE_CONNECTION_SECONDS = 60.0  # well below the API server's idle limit (aiohttp's, 3630 s): it never closes one first


class HTTPTransport:
    """HTTPS with a bearer token, keep-alive connections (aiohttp). With `token_file` (a pod's
    projected service account token, which the kubelet renews before it expires) the token is
    read again when it is a minute old, as client-go's in-cluster config does."""

    TOKEN_FILE_SECONDS = 60.0

    def __init__(self, server: str, token: str, ca_file: str | None = None, insecure: bool = False,
                 token_file: str | None = None, cert_file: str | None = None, key_file: str | None = None):
        import aiohttp

        self.server = server.rstrip("/")
        self.token = token
        self._token_file = token_file
        self._token_read = time.monotonic()
        if server.startswith("https"):
            # insecure: a kubeconfig's insecure-skip-tls-verify (from_kubeconfig refuses it beside a CA)
            ctx = insecure_client_context() if insecure else ssl.create_default_context(cafile=ca_file)
            if cert_file:  # a client certificate (a joined node's), read now
                ctx.load_cert_chain(cert_file, key_file)
        else:
            ctx = False
        # Idle connections are kept a minute (aiohttp's default is 15 s; the API server keeps
        # them an hour): an agent's burst after a quiet spell reuses the connections of the last
        # one instead of opening ~20 new TLS connections at once (each a handshake on both sides).
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=64, keepalive_timeout=IDLE_CONNECTION_SECONDS),
            headers={"Accept": JSON},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))

    def _auth(self) -> dict[str, str]:
        if self._token_file and time.monotonic() - self._token_read > self.TOKEN_FILE_SECONDS:
            try:
                with open(self._token_file) as f:
                    self.token = f.read().strip() or self.token
            except OSError:
                pass
            self._token_read = time.monotonic()
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def request(self, method, path, query, body, content_type):
        headers = self._auth()
        if content_type:
            headers["Content-Type"] = content_type
        async with self._session.request(method, self.server + path, params=query, data=body,
                                          headers=headers, timeout=_timeout(60)) as resp:
            return resp.status, await resp.read()

    async def watch(self, path, query):
        async with self._session.get(self.server + path, params=query, headers=self._auth()) as resp:
            if resp.status >= 300:
                raise error_from(resp.status, await resp.read())
            async for line in resp.content:
                if line.strip():
                    yield line

    async def close(self) -> None:
        await self._session.close()


def _timeout(seconds: float):
    import aiohttp

    return aiohttp.ClientTimeout(total=seconds)


def from_kubeconfig(path: str, field_manager: str = "pocketkube") -> Client:
    """A client for the current context of a kubeconfig (a CA, or insecure-skip-tls-verify; a
    token or a client certificate)."""
    import base64
    import os
    import tempfile

    import yaml

    with open(path) as f:
        cfg = yaml.safe_load(f)
    ctx_name = cfg.get("current-context")
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    insecure = bool(cluster.get("insecure-skip-tls-verify"))
    if insecure and (cluster.get("certificate-authority") or cluster.get("certificate-authority-data")):
        raise RuntimeError("specifying a root certificates file with the insecure flag is not allowed")  # client-go's
    # the transport reads the CA and the client certificate when it is made: files holding the
    # kubeconfig's *-data are needed only until then
    made: list[str] = []

    def file_of(path_key: str, data_key: str, entry: dict, suffix: str) -> str | None:
        if not entry.get(data_key):
            return entry.get(path_key)
        fd, name = tempfile.mkstemp(prefix="pk-", suffix=suffix)
        made.append(name)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(entry[data_key]))
        return name

    try:
        return Client(HTTPTransport(
            cluster["server"], user.get("token", ""),
            file_of("certificate-authority", "certificate-authority-data", cluster, ".crt"), insecure=insecure,
            cert_file=file_of("client-certificate", "client-certificate-data", user, ".crt"),
            key_file=file_of("client-key", "client-key-data", user, ".key")), field_manager)
    finally:
        for name in made:
            os.unlink(name)


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def from_in_cluster(field_manager: str = "pocketkube", directory: str = SERVICE_ACCOUNT_DIR) -> Client:
    """A client from inside a pod, as client-go's InClusterConfig: the API server at
    KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT, the service account's token and ca.crt."""
    import os

    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise RuntimeError("unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and "
                           "KUBERNETES_SERVICE_PORT must be defined")
    with open(os.path.join(directory, "token")) as f:
        token = f.read().strip()
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return Client(HTTPTransport(server, token, os.path.join(directory, "ca.crt"),
                                token_file=os.path.join(directory, "token")), field_manager)


async def wait_for_api(client: Client, timeout: float = 30.0) -> None:
    """Retry a cheap request until the API answers (components that start before it): /version,
    which every identity may read, and which proves the credential (401 otherwise)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    next_report = loop.time() + 5
    while True:
        try:
            await client.version()
            return
        except Exception as exc:
            if loop.time() > deadline:
                raise
            if loop.time() > next_report:  # say why a component does not start yet
                logging.getLogger(__name__).warning("waiting for the API server: %s", exc)
                next_report = loop.time() + 5
            await asyncio.sleep(0.2)
