"""API request handling: URL routing, verbs, subresources, watch streams, errors as Status.

`Handlers.serve(Request) -> Reply | StreamReply` knows nothing of sockets: the aiohttp
adapter (`Handlers.handle`) and the in-process transport (`LocalTransport`, used by the
controllers that run inside the server) both call it, so both see exactly the same API.
The URL layout (kubectl-compat.md 1.3) is parsed into a `Target`; bodies go through
`codec`, objects through `storage`, Tables through `printers`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Mapping

import orjson
from aiohttp import web
from multidict import CIMultiDict, MultiDict, MultiDictProxy

from pocketkube.apiserver import (
    admissionpolicy, authn, authz, codec, discovery, eviction, fieldsets, openapi, printers, reviews, schema, tokens,
    webhooks,
)
from pocketkube.apiserver.cache import WatchCache
from pocketkube.apiserver.kinds import csr as csr_kind, registry
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.apiserver.openapi import OpenAPIV3
from pocketkube.apiserver.storage import Storage, WriteOptions, collection_prefix, object_key, served
from pocketkube.core import errors, selectors
from pocketkube.core.query import query_bool, wants_pretty
from pocketkube.core.objects import deep_copy, rfc3339, rfc3339_at, utc_now

log = logging.getLogger(__name__)

JSON_CT = "application/json"
TABLE_CT = "application/json;as=Table;v=v1;g=meta.k8s.io"
# Objects of a list serialized at a time: the rows of 10,000 objects at once are ~10 MB of small
# short-lived objects, and the few long-lived ones allocated meanwhile pin the allocator's arenas
# they filled (server RSS that stays after the list); per object, the calls cost more.
LIST_CHUNK = 500
USER_KEY = web.RequestKey("user", authn.UserInfo)  # set by the server's authentication middleware
BOOKMARK_INTERVAL = 10.0
NAMESPACE_SUBRESOURCES = ("status", "finalize")
# Bodies above this go out in slices: a socket transport's write buffer is a bytearray that
# never shrinks, so one 20 MB list would pin 20 MB on every keep-alive connection.
LARGE_BODY = 1 << 20
OPTIONS_KIND = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions",
                "DELETE": "DeleteOptions"}
SLICE = 256 * 1024


@dataclass
class Request:
    """One API request, however it arrived."""

    method: str
    path: str
    query: MultiDictProxy | MultiDict
    headers: Mapping[str, str]
    body: bytes = b""
    # Who asks (authn.py); None for the server's own in-process calls.
    user: "authn.UserInfo | None" = None


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    warnings: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamReply:
    """A watch: chunks to send as they come; closing the iterator ends the watch."""

    chunks: AsyncIterator[bytes]
    content_type: str = "application/json"
    warnings: list[str] = field(default_factory=list)


@dataclass
class Target:
    info: KindInfo
    namespace: str | None  # None: all namespaces (or cluster-scoped)
    name: str = ""
    subresource: str = ""


class Handlers:
    def __init__(self, storage: Storage, cache: WatchCache, server_address: str,
                 token_issuer: "tokens.TokenIssuer | None" = None):
        self.storage = storage
        self.evictions = eviction.Evictions(storage)
        self.tokens = token_issuer
        self.cache = cache
        self.server_address = server_address
        self._documents_generation = -1
        self._build_documents()
        # Custom resources (customresources.py): synced with the stored CRDs before each request.
        self.custom_resources = None
        # Extra handlers for subresources served elsewhere (logs, exec, ...): (resource, sub) -> fn
        self.subresource_handlers: dict[tuple[str, str], Callable] = {}
        # resource -> handler(request, target, "[scheme:]name[:port]", prefix, rest) for RESOURCE/NAME/proxy/...
        self.proxy_handlers: dict[str, Callable] = {}
        # RBAC (authz.py); None: every request is allowed (the server's --authorization-mode=AlwaysAllow).
        self.authorizer: authz.RBACAuthorizer | None = None
        self.authenticator: authn.Authenticator | None = None
        # Admission webhooks (webhooks.py) and ValidatingAdmissionPolicies (admissionpolicy.py); None: off.
        self.webhooks: webhooks.Dispatcher | None = None
        self.policies: admissionpolicy.Policies | None = None

    def _build_documents(self) -> None:
        """Discovery and OpenAPI documents, pre-encoded; rebuilt when the served kinds change."""
        if self._documents_generation == registry.generation:
            return
        self.openapi = OpenAPIV3()
        core_doc, groups_doc = (orjson.dumps(discovery.aggregated(core=c)) for c in (True, False))
        self._aggregated_core = (core_doc, discovery.etag(core_doc))
        self._aggregated_groups = (groups_doc, discovery.etag(groups_doc))
        self._documents_generation = registry.generation

    # ---- entry ---------------------------------------------------------------------

    async def serve(self, req: Request) -> Reply | StreamReply:
        """Answer one request; every failure becomes a metav1.Status reply."""
        warnings: list[str] = []
        try:
            req.user = self.authorize(req.method, req.path, req.query, req.headers, req.user)
            reply = await self._route(req, warnings)
        except errors.APIError as exc:
            reply = status_reply(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: answer like the apiserver would, keep serving
            log.exception("internal error on %s %s", req.method, req.path)
            reply = status_reply(errors.internal(str(exc) or exc.__class__.__name__))
        reply.warnings = warnings
        return reply

    def authorize(self, method: str, path: str, query, headers: Mapping[str, str],
                  user: "authn.UserInfo | None") -> "authn.UserInfo":
        """The user the request runs as (after impersonation), or 403 Forbidden."""
        user = user or authn.APISERVER
        if self.authorizer is None:
            return user
        wanted = authn.impersonation_requests(headers)
        if wanted is not None:
            user = self._impersonate(user, *wanted)
        if authn.MASTERS in user.groups:  # the privileged-group authorizer: no need to look further
            return user
        a = authz.attributes(method, path, query, user)
        allowed, reason = self.authorizer.authorize(a)
        if not allowed:
            log.info("forbidden: %s", authz.forbidden_message(a))
            raise authz.forbidden(a, reason)
        return user

    def _impersonate(self, user: "authn.UserInfo", name: str, groups: list[str], uid: str,
                     extra: dict) -> "authn.UserInfo":
        """Impersonate-* headers: the caller needs `impersonate` on each thing it asks to be."""
        checks = []
        sa = authn.split_service_account(name)
        if sa:
            checks.append(("", "serviceaccounts", sa[0], sa[1]))
        else:
            checks.append(("", "users", "", name))
        checks += [("", "groups", "", g) for g in groups]
        if uid:
            checks.append(("authentication.k8s.io", "uids", "", uid))
        for key, values in extra.items():
            checks += [("authentication.k8s.io", f"userextras/{key}", "", v) for v in values]
        for group, resource, namespace, obj_name in checks:
            resource, _, sub = resource.partition("/")
            a = authz.Attributes(user, "impersonate", True, namespace=namespace, group=group, resource=resource,
                                 subresource=sub, name=obj_name)
            allowed, reason = self.authorizer.authorize(a)
            if not allowed:
                raise authz.forbidden(a, reason)
        return authn.impersonated(name, groups, uid, extra)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp adapter: HTTP in, `serve`, HTTP out."""
        raw = self._streaming_subresource(request.path)
        if raw is not None:
            handler, target = raw
            try:
                self.authorize(request.method, request.path, request.query, request.headers, request.get(USER_KEY))
                return await handler(request, target)
            except errors.APIError as exc:
                return status_response(exc)
        proxied = self._proxy_subresource(request.rel_url.raw_path)
        if proxied is not None:
            handler, target, segment, prefix, rest = proxied
            try:
                self.authorize(request.method, request.path, request.query, request.headers, request.get(USER_KEY))
                return await handler(request, target, segment, prefix, rest)
            except errors.APIError as exc:
                return status_response(exc)
        try:
            if request.content_length and request.content_length > codec.MAX_BODY:
                codec.check_body_type(request.method, request.headers.get("Content-Type"))
                raise errors.too_large()
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return status_response(errors.too_large())
        except errors.APIError as exc:
            return status_response(exc)
        reply = await self.serve(Request(request.method, request.path, request.query, request.headers, body,
                                         request.get(USER_KEY)))
        headers = CIMultiDict({"Content-Type": reply.content_type})
        if isinstance(reply, Reply):
            headers.update(reply.headers)
        for w in reply.warnings:
            headers.add("Warning", "299 - " + errors.go_quote(w))
        if isinstance(reply, Reply):
            tail = b""
            if reply.body and reply.content_type.startswith(JSON_CT):
                if wants_pretty(request.query, request.headers.get("User-Agent", "")):
                    reply.body = orjson.dumps(orjson.loads(reply.body), option=orjson.OPT_INDENT_2)
                else:
                    tail = b"\n"  # encoding/json's Encoder ends every document with a newline
            reply.body += tail
            if len(reply.body) <= LARGE_BODY:
                return web.Response(body=reply.body, status=reply.status, headers=headers)
            return await _send_in_slices(request, reply, headers)
        headers["Cache-Control"] = "no-cache, private"
        resp = web.StreamResponse(headers=headers)
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
            async for chunk in reply.chunks:
                await resp.write(chunk)
            await resp.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            await reply.chunks.aclose()
        return resp

    def _streaming_subresource(self, path: str) -> tuple[Callable, Target] | None:
        """exec, attach, portforward and log are served on the raw HTTP connection."""
        parts = [p for p in path.split("/") if p]
        if len(parts) < 6 or parts[-1] not in ("log", "exec", "attach", "portforward"):
            return None
        try:
            t = self._target("", "v1", parts[2:]) if parts[0] == "api" else None
        except errors.APIError:
            return None
        if t is None:
            return None
        handler = self.subresource_handlers.get((t.info.resource, t.subresource))
        return (handler, t) if handler else None

    def _proxy_subresource(self, raw_path: str) -> tuple[Callable, Target, str, str, str] | None:
        """/api/v1/namespaces/NS/RESOURCE/[SCHEME:]NAME[:PORT]/proxy[/PATH] (and the cluster-scoped
        /api/v1/nodes/[SCHEME:]NAME[:PORT]/proxy[/PATH]): the handler, the target, the name segment,
        the path up to /proxy and the rest of the path (raw, as the client sent it)."""
        parts = raw_path.split("/")
        if len(parts) >= 6 and parts[1:4] == ["api", "v1", "nodes"] and parts[5] == "proxy":
            # ["", "api", "v1", "nodes", NAME, "proxy", ...]
            namespace, resource, end = None, "nodes", 6
        elif len(parts) >= 8 and parts[1:4] == ["api", "v1", "namespaces"] and parts[7] == "proxy":
            # ["", "api", "v1", "namespaces", NS, RESOURCE, NAME, "proxy", ...]
            namespace, resource, end = urllib.parse.unquote(parts[4]), parts[5], 8
        else:
            return None
        handler = self.proxy_handlers.get(resource)
        info = registry.by_resource("", "v1", resource)
        if handler is None or info is None:
            return None
        prefix = "/".join(parts[:end])
        target = Target(info, namespace, urllib.parse.unquote(parts[end - 2]), "proxy")
        return handler, target, target.name, prefix, raw_path[len(prefix):]

    async def _route(self, req: Request, warnings: list[str]) -> Reply | StreamReply:
        if self.custom_resources is not None:
            self.custom_resources.sync()
            self._build_documents()
        path = req.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        if not parts:
            return json_response({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3",
                                            "/readyz", "/version"]})
        head = parts[0]
        if head == "api":
            if len(parts) == 1:
                return self._discovery_root(req, core=True)
            if parts[1] != "v1":
                raise errors.not_found_path()
            if len(parts) == 2:
                return json_response(discovery.legacy_resources("", "v1"))
            return await self._resource(req, "", "v1", parts[2:], warnings)
        if head == "apis":
            if len(parts) == 1:
                return self._discovery_root(req, core=False)
            if len(parts) == 2:
                doc = discovery.legacy_group(parts[1])
                if doc is None:
                    raise errors.not_found_path()
                return json_response(doc)
            if len(parts) == 3:
                doc = discovery.legacy_resources(parts[1], parts[2])
                if doc is None:
                    raise errors.not_found_path()
                return json_response(doc)
            return await self._resource(req, parts[1], parts[2], parts[3:], warnings)
        if head == "version" and len(parts) == 1:
            return json_response(discovery.version_info())
        if head in ("healthz", "livez", "readyz"):
            return Reply(200, b"ok", "text/plain")
        if head == "openapi":
            return self._openapi(req, parts)
        raise errors.not_found_path()

    def _discovery_root(self, req: Request, core: bool) -> Reply:
        ct = discovery.aggregated_content_type(req.headers.get("Accept", ""))
        if ct:
            body, tag = self._aggregated_core if core else self._aggregated_groups
            headers = {"ETag": tag, "Vary": "Accept", "Cache-Control": "public"}
            if req.headers.get("If-None-Match") == tag:
                return Reply(304, b"", ct, headers=headers)
            return Reply(200, body, ct, headers=headers)
        if core:
            return json_response(discovery.legacy_api_versions(self.server_address))
        return json_response(discovery.legacy_groups())

    def _openapi(self, req: Request, parts: list[str]) -> Reply:
        if parts[1:] == ["v2"]:
            if "protobuf" in req.headers.get("Accept", ""):
                return Reply(200, openapi.openapi_v2(protobuf=True), openapi.V2_PROTOBUF)
            return Reply(200, openapi.openapi_v2(protobuf=False))
        if len(parts) >= 2 and parts[1] == "v3":
            if len(parts) == 2:
                return Reply(200, self.openapi.index)
            doc = self.openapi.docs.get("/".join(parts[2:]))
            if doc is not None:
                return Reply(200, doc)
        raise errors.not_found_path()

    # ---- resources -----------------------------------------------------------------

    def _target(self, group: str, version: str, parts: list[str]) -> Target:
        namespace: str | None = None
        if parts[0] == "namespaces" and len(parts) >= 3 and not (
                len(parts) == 3 and parts[2] in NAMESPACE_SUBRESOURCES):
            namespace, parts = parts[1], parts[2:]
        resource = parts[0]
        info = registry.by_resource(group, version, resource)
        if info is None or info.resource == "scale":
            raise errors.not_found_path()
        if namespace is not None and not info.namespaced:
            raise errors.not_found_path()
        if len(parts) > 3:
            raise errors.not_found_path()
        name = parts[1] if len(parts) > 1 else ""
        sub = parts[2] if len(parts) > 2 else ""
        if sub and sub not in info.subresources:
            raise errors.not_found_path()
        if info.namespaced and name and namespace is None:
            raise errors.not_found_path()
        return Target(info, namespace, name, sub)

    async def _resource(self, req: Request, group: str, version: str, parts: list[str],
                        warnings: list[str]) -> Reply | StreamReply:
        t = self._target(group, version, parts)
        if not codec.parse_accept(req.headers.get("Accept"), None).acceptable:
            raise errors.not_acceptable([codec.JSON, codec.YAML, codec.PROTOBUF])
        method = req.method
        q = req.query
        if t.subresource == "scale":
            return await self._scale(req, t, warnings)
        if t.subresource == "eviction" and t.info.resource == "pods":
            return await self._eviction(req, t)
        if t.subresource in ("log", "exec", "attach", "portforward", "proxy", "ephemeralcontainers"):
            await self.storage.get(t.info, t.namespace or "", t.name)
            raise errors.APIError(503, "ServiceUnavailable",
                                  f"{t.subresource} needs a node agent; none serves pod {t.name!r} yet")
        if t.info.resource in reviews.RESOURCES and t.info.group in (reviews.AUTHZ_GROUP, reviews.AUTHN_GROUP):
            return self._review(req, t)
        if t.subresource == "binding":
            return await self._binding(req, t)
        if t.subresource == "token":
            return await self._token_request(req, t)
        if not t.name:
            if method == "GET":
                if query_bool(q, "watch"):
                    return await self._watch(req, t)
                return await self._list(req, t)
            if method == "POST":
                return await self._create(req, t, warnings)
            if method == "DELETE":
                return await self._delete_collection(req, t)
            raise errors.method_not_allowed(method.lower(), t.info.resource)
        if method == "GET":
            obj = await self.storage.get(t.info, t.namespace or "", t.name)
            return self._object_response(req, t.info, obj)
        if method == "PUT":
            return await self._update(req, t, warnings)
        if method == "PATCH":
            return await self._patch(req, t, warnings)
        if method == "DELETE" and not t.subresource:
            return await self._delete(req, t)
        raise errors.method_not_allowed(method.lower(), t.info.resource)

    # ---- reads ---------------------------------------------------------------------

    def _matcher(self, info: KindInfo, q) -> Callable[[dict], bool] | None:
        ls = q.get("labelSelector", "")
        fs = q.get("fieldSelector", "")
        label_sel = selectors.parse_label_selector(ls) if ls else None
        field_sel = None
        if fs:
            field_sel = fieldsets.convert_field_selector(selectors.parse_field_selector(fs), info.kind, info.group)
        if label_sel is None and field_sel is None:
            return None
        kind = info.kind

        def match(obj: dict) -> bool:
            if label_sel is not None and not label_sel.matches((obj.get("metadata") or {}).get("labels") or {}):
                return False
            if field_sel is not None and not field_sel.matches(fieldsets.fields_for(kind, obj)):
                return False
            return True

        return match

    async def _list(self, req: Request, t: Target) -> Reply:
        q = req.query
        limit = _int_param(q, "limit", 0)
        result = await self.storage.list(t.info, t.namespace, self._matcher(t.info, q), limit,
                                         q.get("continue", ""))
        accept = codec.parse_accept(req.headers.get("Accept"), q.get("includeObject"))
        list_meta: dict[str, Any] = {"resourceVersion": str(result.revision)}
        if result.continue_token:
            list_meta["continue"] = result.continue_token
            list_meta["remainingItemCount"] = result.remaining
        if accept.table:
            return Reply(200, self._table_json(t.info, result.items, accept, list_meta), TABLE_CT)
        if accept.partial_metadata:
            body = {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
                    "items": [codec.partial_object_metadata(o) for o in result.items]}
            return json_response(body)
        prefix = (b'{"kind":' + orjson.dumps(t.info.list_kind) + b',"apiVersion":' +
                  orjson.dumps(t.info.api_version) + b',"metadata":' + orjson.dumps(list_meta) + b',"items":[')
        items = b",".join(orjson.dumps([_typed(t.info, o) for o in chunk])[1:-1] for chunk in _chunks(result.items))
        return Reply(200, prefix + items + b"]}")

    def _table_json(self, info: KindInfo, objs: list[dict], accept: codec.Accept, list_meta: dict) -> bytes:
        """A list's Table as JSON, its rows made and serialized a chunk of objects at a time (_chunks)."""
        table = self._table(info, [], accept)  # its columns, and "rows": [] last
        table["metadata"] = list_meta
        rows = (orjson.dumps(self._table(info, chunk, accept, with_columns=False)["rows"])[1:-1]
                for chunk in _chunks(objs))
        return orjson.dumps(table)[:-2] + b",".join(rows) + b"]}"

    def _table(self, info: KindInfo, objs: list[dict], accept: codec.Accept, with_columns: bool = True) -> dict:
        custom_table = getattr(info.strategy, "table", None)  # a custom resource's printer columns
        if custom_table is not None:
            columns, cells = custom_table(objs, utc_now())
        else:
            columns, cells = printers.table_for(info.kind, info.group, objs, utc_now())
        rows = []
        for obj, row_cells in zip(objs, cells):
            row: dict[str, Any] = {"cells": row_cells}
            if accept.include_object == "Object":
                row["object"] = _typed(info, obj)
            elif accept.include_object != "None":
                row["object"] = codec.partial_object_metadata(obj)
            rows.append(row)
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
                "columnDefinitions": columns if with_columns else None, "rows": rows}

    def _object_response(self, req: Request, info: KindInfo, obj: dict, status: int = 200) -> Reply:
        accept = codec.parse_accept(req.headers.get("Accept"), req.query.get("includeObject"))
        if accept.table:
            table = self._table(info, [obj], accept)
            table["metadata"] = {"resourceVersion": obj.get("metadata", {}).get("resourceVersion", "")}
            return Reply(status, orjson.dumps(table), TABLE_CT)
        if accept.partial_metadata:
            return json_response(codec.partial_object_metadata(obj), status)
        return Reply(status, _with_type(info, obj))

    async def _watch(self, req: Request, t: Target) -> StreamReply:
        q = req.query
        accept = codec.parse_accept(req.headers.get("Accept"), q.get("includeObject"))
        match = self._matcher(t.info, q)
        rv = q.get("resourceVersion", "")
        after: int | None = None
        if rv not in ("", "0"):
            try:
                after = int(rv)
            except ValueError:
                raise errors.bad_request(f'invalid resource version: "{rv}"') from None
            await self.cache.wait_for(after)
        else:
            await self.cache.wait_fresh()
        watcher, backlog = self.cache.watch(collection_prefix(t.info, t.namespace), after, match)
        timeout = _int_param(q, "timeoutSeconds", 0) or random.randint(1800, 3600)
        bookmarks = query_bool(q, "allowWatchBookmarks")
        return StreamReply(self._watch_stream(t.info, accept, watcher, backlog, timeout, bookmarks))

    async def _watch_stream(self, info: KindInfo, accept: codec.Accept, watcher, backlog, timeout: float,
                            bookmarks: bool) -> AsyncIterator[bytes]:
        """Watch events as JSON lines (Tables when asked), then the end after `timeout`."""
        first_table = [True]

        def encode(etype: str, stored: dict) -> bytes:
            obj = served(info, stored)
            if accept.table:
                table = self._table(info, [obj], accept, with_columns=first_table[0])
                first_table[0] = False
                table["metadata"] = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
                body = table
            elif accept.partial_metadata:
                body = codec.partial_object_metadata(obj)
            else:
                return b'{"type":"' + etype.encode() + b'","object":' + _with_type(info, obj) + b"}\n"
            return orjson.dumps({"type": etype, "object": body}) + b"\n"

        # Two timers per watch, none per event: its end closes the watcher, and with bookmarks
        # one every BOOKMARK_INTERVAL is queued in line with the events.
        loop = asyncio.get_running_loop()
        timers = [loop.call_later(timeout, watcher.close)]
        if bookmarks:
            def bookmark_due() -> None:
                watcher.bookmark_due()
                timers[1] = loop.call_later(BOOKMARK_INTERVAL, bookmark_due)
            timers.append(loop.call_later(BOOKMARK_INTERVAL, bookmark_due))
        try:
            if backlog:
                yield b"".join(encode(ev.type, ev.obj) for ev in backlog)
            else:
                yield b""  # send the headers at once, as the apiserver does
            ev = await watcher.next()
            while ev is not None:
                chunks = []
                while ev is not None:  # this event and what else is ready, in one write
                    if ev.type == "BOOKMARK":
                        chunks.append(self._bookmark(info, accept, ev.revision))
                    else:
                        chunks.append(encode(ev.type, ev.obj))
                    if watcher.queue.empty():
                        break
                    ev = watcher.queue.get_nowait()
                yield b"".join(chunks)
                if ev is not None:
                    ev = await watcher.next()
        finally:
            for timer in timers:
                timer.cancel()
            watcher.close()

    def _bookmark(self, info: KindInfo, accept: codec.Accept, revision: int) -> bytes:
        rv = str(revision)
        if accept.table:
            obj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
                   "columnDefinitions": None, "rows": None}
        else:
            obj = {"kind": info.kind, "apiVersion": info.api_version, "metadata": {"resourceVersion": rv}}
        return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"

    # ---- writes --------------------------------------------------------------------

    def _write_options(self, q, method: str, subresource: str = "", apply: bool = False) -> WriteOptions:
        """The request's Create/Update/Patch options, validated as the apiserver does (422)."""
        kind = OPTIONS_KIND[method]
        errs = []
        for value in q.getall("dryRun", []):
            if value != "All":
                errs.append(errors.not_supported("dryRun", value, ["All"]))
        mode = q.get("fieldValidation")
        if mode is not None and mode not in ("Ignore", "Warn", "Strict", ""):
            errs.append(errors.not_supported("fieldValidation", mode, ["", "Ignore", "Strict", "Warn"]))
        forced = query_bool(q, "force")
        manager = q.get("fieldManager", "")
        if method == "PATCH":
            if forced and not apply:
                errs.append(errors.forbidden("force", "may not be specified for non-apply patch"))
            if apply and not manager:
                errs.append(errors.required("fieldManager", "is required for apply patch"))
        if len(manager) > 128:
            errs.append(errors.too_long("fieldManager", "", 128))
        if errs:
            raise errors.invalid(kind, "meta.k8s.io", "", errs)
        return WriteOptions(dry_run=bool(q.getall("dryRun", [])), field_manager=manager,
                            subresource=subresource, force=forced)

    def _admission(self, t: Target, user: "authn.UserInfo | None", opts: WriteOptions, warnings: list[str]):
        """This write's own admission, run by the storage on the object about to be stored:
        RBAC's escalation check, the admission webhooks (mutating, then validating), then the
        ValidatingAdmissionPolicies. None when none applies."""
        rbac = self._rbac_admission(t, user) or self._approval_admission(t, user, opts)
        hooks = self.webhooks if self.webhooks is not None and self.webhooks.active() else None
        policies = self.policies if self.policies is not None and self.policies.active() else None
        if rbac is None and hooks is None and policies is None:
            return None

        async def admit(obj: dict, old: dict | None) -> None:
            if rbac is not None:
                rbac(obj, old)
            operation, name = "CREATE" if old is None else "UPDATE", obj["metadata"].get("name", "")
            if hooks is not None:
                await hooks.admit(operation, t.info, opts.subresource, t.namespace or "", name, obj, old,
                                  user or authn.APISERVER, opts.dry_run)
            if policies is not None:
                policies.admit(operation, t.info, opts.subresource, t.namespace or "", name, obj, old,
                               user or authn.APISERVER, opts.dry_run, warnings)

        return admit

    def _approval_admission(self, t: Target, user: "authn.UserInfo | None", opts: WriteOptions):
        """For writes to certificatesigningrequests/approval: the `approve` verb on the request's
        signer (`signers`, named for the signerName or its domain with /*), checked on the stored
        request, as upstream's CertificateApproval admission; None otherwise."""
        if self.authorizer is None or user is None or opts.subresource != "approval" \
                or t.info.resource != "certificatesigningrequests":
            return None
        authorizer = self.authorizer

        def admit(obj: dict, old: dict | None) -> None:
            signer = ((old or obj).get("spec") or {}).get("signerName", "")
            for name in (signer, signer.split("/", 1)[0] + "/*"):
                a = authz.Attributes(user, "approve", True, group=t.info.group, resource="signers", name=name)
                if authorizer.authorize(a)[0]:
                    return
            raise errors.forbidden_object(t.info.resource, t.info.group, obj["metadata"].get("name", ""),
                                          f"user not permitted to approve requests with signerName {errors.go_quote(signer)}")

        return admit

    def _rbac_admission(self, t: Target, user: "authn.UserInfo | None"):
        """For writes of Roles, ClusterRoles and their bindings: the escalation check
        (pkg/registry/rbac policybased storage) for this request's user; None otherwise."""
        if self.authorizer is None or t.info.group != authz.GROUP or user is None:
            return None
        authorizer, info, ns = self.authorizer, t.info, t.namespace or ""

        def allowed(verb: str, resource: str, name: str) -> bool:
            a = authz.Attributes(user, verb, True, namespace=ns if resource == "roles" else "", group=authz.GROUP,
                                 resource=resource, name=name)
            return authorizer.authorize(a)[0]

        def admit(obj: dict, old: dict | None) -> None:
            if authn.MASTERS in user.groups or (old is not None and _only_gc_fields(obj, old)):
                return
            name = obj["metadata"].get("name", "")
            if info.resource in ("roles", "clusterroles"):
                if allowed("escalate", info.resource, name):
                    return
                authz.check_no_escalation(authorizer, user, ns, list(obj.get("rules") or []), info.group,
                                          info.resource, name)
                return
            ref = obj.get("roleRef") or {}
            role_resource = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            if allowed("bind", role_resource, ref.get("name", "")):
                return
            role_info = registry.by_resource(authz.GROUP, "v1", role_resource)
            role = self.cache.get(object_key(role_info, ns if role_resource == "roles" else "", ref.get("name", "")))
            if role is None:
                singular = "clusterrole" if role_resource == "clusterroles" else "role"
                raise authz.forbidden_error(info.group, info.resource, name,
                                            f'{singular}.{authz.GROUP} {errors.go_quote(ref.get("name", ""))} not found')
            authz.check_no_escalation(authorizer, user, ns, list(role.get("rules") or []), info.group,
                                      info.resource, name)

        return admit

    def _check_body(self, info: KindInfo, decoded: codec.Decoded, q, warnings: list[str]) -> dict:
        """Type, kind and field checks of a create/update body, per fieldValidation."""
        body = decoded.obj
        if not isinstance(body, dict):
            raise errors.bad_request(schema.cannot_handle_message(
                info.api_version, info.kind,
                f"json: cannot unmarshal {schema.json_kind(body)} into Go value of type struct"))
        av = body.get("apiVersion")
        kind = body.get("kind")
        if av and av != info.api_version:
            raise errors.bad_request(
                f"the API version in the data ({av}) does not match the expected API version ({info.api_version})")
        if kind and kind != info.kind:
            raise errors.bad_request(
                f"{kind} in version \"{info.version}\" cannot be handled as a {info.kind}: "
                f"the kind in the data ({kind}) does not match the expected kind ({info.kind})")
        if decoded.type_error:
            raise errors.bad_request(schema.cannot_handle_message(info.api_version, info.kind, decoded.type_error))
        mode = _validation_mode(q)
        custom_unknown = getattr(info.strategy, "unknown_fields", None)  # a custom resource's schema
        if custom_unknown is not None:
            unknown = [f'unknown field "{u}"' for u in custom_unknown(body)]
            if unknown and mode == "Strict":
                raise errors.bad_request(schema.cannot_handle_message(
                    info.api_version, info.kind, schema.strict_decoding_error(unknown)))
            if mode == "Warn":
                warnings.extend(unknown)
        if decoded.strict_errors:
            if mode == "Strict":
                raise errors.bad_request(schema.cannot_handle_message(
                    info.api_version, info.kind, schema.strict_decoding_error(decoded.strict_errors)))
            if mode == "Warn":
                warnings.extend(decoded.strict_errors)
            body = schema.prune_unknown(info.api_version, info.kind, body)
        body["apiVersion"] = info.api_version
        body["kind"] = info.kind
        return body

    async def _create(self, req: Request, t: Target, warnings: list[str]) -> Reply:
        decoded = codec.decode_body(req.body, req.headers.get("Content-Type"),
                                    (t.info.api_version, t.info.kind))
        obj = self._check_body(t.info, decoded, req.query, warnings)
        if t.info is csr_kind.INFO:  # who asks is the server's to say, not the body's
            csr_kind.set_requestor(obj, req.user or authn.APISERVER)
        opts = self._write_options(req.query, "POST")
        opts.admit = self._admission(t, req.user, opts, warnings)
        created = await self.storage.create(t.info, t.namespace or "", obj, opts)
        return self._object_response(req, t.info, created, 201)

    async def _update(self, req: Request, t: Target, warnings: list[str]) -> Reply:
        decoded = codec.decode_body(req.body, req.headers.get("Content-Type"),
                                    (t.info.api_version, t.info.kind))
        obj = self._check_body(t.info, decoded, req.query, warnings)
        sub = t.subresource
        if sub == "finalize":
            current = await self.storage.get(t.info, "", t.name)
            new = deep_copy(current)
            new.setdefault("spec", {})["finalizers"] = (obj.get("spec") or {}).get("finalizers") or []
            if not new["spec"]["finalizers"]:
                del new["spec"]["finalizers"]
            rv = obj.get("metadata", {}).get("resourceVersion")
            new["metadata"]["resourceVersion"] = rv or current["metadata"]["resourceVersion"]
            obj, sub = new, "finalize"
        opts = self._write_options(req.query, "PUT", sub)
        opts.admit = self._admission(t, req.user, opts, warnings)
        updated, created = await self.storage.update(t.info, t.namespace or "", t.name, obj, opts)
        return self._object_response(req, t.info, updated, 201 if created else 200)

    async def _patch(self, req: Request, t: Target, warnings: list[str]) -> Reply:
        # The apiserver's order: content type (415), options (422), the object (404), the body (400).
        ptype = codec.patch_type(req.headers.get("Content-Type"))
        q = req.query
        opts = self._write_options(q, "PATCH", t.subresource, apply=ptype == "apply")
        opts.admit = self._admission(t, req.user, opts, warnings)
        if ptype != "apply":
            await self.storage.get(t.info, t.namespace or "", t.name)
        ptype, body, dups = codec.decode_patch(req.body, req.headers.get("Content-Type"))
        if ptype == "apply":
            if not isinstance(body, dict):
                raise errors.bad_request("error decoding YAML: the apply patch is not an object")
            type_err = schema.first_type_error(t.info.api_version, t.info.kind, body)
            if type_err:
                raise errors.bad_request(schema.cannot_handle_message(t.info.api_version, t.info.kind, type_err))
        mode = _validation_mode(q)
        info = t.info

        def validate_fields(new: dict, old: dict | None = None) -> None:
            # The top-level fields the patch left as the live object has them were checked when
            # they were stored: a pod's status write does not walk its spec and managedFields.
            changed = new if old is None else {k: v for k, v in new.items() if k not in old or old[k] != v}
            type_err = schema.first_type_error(info.api_version, info.kind, changed)
            if type_err:
                raise errors.invalid("", "", "", [errors.invalid_value(
                    "patch", orjson.dumps(new).decode(), type_err)])
            unknown = [f'unknown field "{u}"' for u in schema.unknown_fields(info.api_version, info.kind, changed)]
            strict = unknown + [f'duplicate field "{d}"' for d in dups]
            if mode == "Strict" and strict:
                raise errors.invalid(info.kind, info.group, t.name, [errors.invalid_value(
                    "patch", orjson.dumps(body).decode(), schema.strict_decoding_error(strict))])
            if mode == "Warn":
                warnings.extend(strict)
            if unknown:
                pruned = schema.prune_unknown(info.api_version, info.kind, new)
                new.clear()
                new.update(pruned)

        updated, created = await self.storage.patch(info, t.namespace or "", t.name, ptype, body, opts,
                                                    validate_fields)
        return self._object_response(req, info, updated, 201 if created else 200)

    async def _delete(self, req: Request, t: Target) -> Reply:
        options = await self._delete_options(req)
        dry = bool(req.query.getall("dryRun", [])) or "All" in (options.get("dryRun") or [])
        hooks = self.webhooks is not None and self.webhooks.active()
        policies = self.policies is not None and self.policies.active()
        if hooks or policies:
            current = await self.storage.get(t.info, t.namespace or "", t.name)
            user = req.user or authn.APISERVER
            if hooks:
                await self.webhooks.admit("DELETE", t.info, "", t.namespace or "", t.name, None, current, user, dry,
                                          {k: v for k, v in options.items() if k not in ("kind", "apiVersion")})
            if policies:
                self.policies.admit("DELETE", t.info, "", t.namespace or "", t.name, None, current, user, dry, [])
        obj, deleted = await self.storage.delete(t.info, t.namespace or "", t.name, options, dry)
        if deleted and t.info.resource not in ("pods", "services", "namespaces", "endpoints"):
            details = {"name": t.name, "kind": t.info.resource, "uid": obj["metadata"].get("uid")}
            if t.info.group:
                details["group"] = t.info.group
            return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "details": details})
        return self._object_response(req, t.info, obj)

    async def _delete_options(self, req: Request) -> dict:
        raw = req.body
        options: dict = {}
        if raw.strip():
            decoded = codec.decode_body(raw, req.headers.get("Content-Type") or JSON_CT,
                                        ("meta/v1", "DeleteOptions"))
            if not isinstance(decoded.obj, dict):
                raise errors.bad_request("DeleteOptions must be a JSON object")
            options = decoded.obj
        q = req.query
        if "gracePeriodSeconds" in q:
            options["gracePeriodSeconds"] = _int_param(q, "gracePeriodSeconds", 0)
        if "propagationPolicy" in q:
            options["propagationPolicy"] = q["propagationPolicy"]
        errs = []
        policy = options.get("propagationPolicy")
        if policy is not None and policy not in ("Orphan", "Background", "Foreground"):
            errs.append(errors.not_supported("propagationPolicy", policy, ["Foreground", "Background", "Orphan",
                                                                           "nil"]))
        for value in q.getall("dryRun", []) + list(options.get("dryRun") or []):
            if value != "All":
                errs.append(errors.not_supported("dryRun", value, ["All"]))
        if errs:
            raise errors.invalid("DeleteOptions", "meta.k8s.io", "", errs)
        return options

    async def _delete_collection(self, req: Request, t: Target) -> Reply:
        if "deletecollection" not in t.info.verbs:
            raise errors.method_not_allowed("deletecollection", t.info.resource)
        options = await self._delete_options(req)
        dry = bool(req.query.getall("dryRun", []))
        result = await self.storage.list(t.info, t.namespace, self._matcher(t.info, req.query))
        deleted = []
        for obj in result.items:
            m = obj["metadata"]
            try:
                gone, _ = await self.storage.delete(t.info, m.get("namespace", ""), m["name"], options, dry)
                deleted.append(gone)
            except errors.APIError as exc:
                if exc.code != 404:
                    raise
        body = {"kind": t.info.list_kind, "apiVersion": t.info.api_version,
                "metadata": {"resourceVersion": str(self.cache.revision)}, "items": deleted}
        return json_response(body)

    # ---- subresources --------------------------------------------------------------

    async def _scale(self, req: Request, t: Target, warnings: list[str]) -> Reply:
        from pocketkube.apiserver import patch as patching

        ns = t.namespace or ""
        if req.method == "GET":
            return json_response(scale_of(await self.storage.get(t.info, ns, t.name), t.info))
        if req.method == "PATCH":
            codec.patch_type(req.headers.get("Content-Type"))
        opts = self._write_options(req.query, req.method if req.method in OPTIONS_KIND else "PUT")
        for _ in range(5):
            parent = await self.storage.get(t.info, ns, t.name)
            scale = scale_of(parent, t.info)
            if req.method == "PUT":
                body = codec.decode_body(req.body, req.headers.get("Content-Type"),
                                         ("autoscaling/v1", "Scale")).obj
                if not isinstance(body, dict):
                    raise errors.bad_request("the body is not a Scale object")
                new_scale = body
            elif req.method == "PATCH":
                ptype, body, _ = codec.decode_patch(req.body, req.headers.get("Content-Type"))
                if ptype == "json":
                    new_scale = patching.json_patch(scale, body)
                elif ptype == "merge":
                    new_scale = patching.merge_patch(scale, body)
                elif ptype == "strategic":
                    new_scale = patching.strategic_merge_patch(scale, body, "Scale")
                else:
                    raise errors.unsupported_media_type(ptype, codec.ACCEPTED_PATCH_TYPES[:3])
            else:
                raise errors.method_not_allowed(req.method.lower(), f"{t.info.resource}/scale")
            if not isinstance(new_scale, dict):
                raise errors.bad_request(schema.cannot_handle_message(
                    "autoscaling/v1", "Scale", f"json: cannot unmarshal {schema.json_kind(new_scale)} into Go value "
                                               "of type v1.Scale"))
            type_err = schema.first_type_error("autoscaling/v1", "Scale", new_scale)
            if type_err and req.method == "PATCH":
                raise errors.invalid("", "", "", [errors.invalid_value("patch", orjson.dumps(new_scale).decode(),
                                                                       type_err)])
            if type_err:
                raise errors.bad_request(schema.cannot_handle_message("autoscaling/v1", "Scale", type_err))
            replicas = (new_scale.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or isinstance(replicas, bool):
                raise errors.bad_request("Scale in version \"v1\" cannot be handled as a Scale: "
                                         "json: cannot unmarshal into Go struct field ScaleSpec.spec.replicas "
                                         "of type int32")
            if replicas < 0:
                raise errors.invalid("Scale", "autoscaling", t.name, [errors.invalid_value(
                    "spec.replicas", replicas, "must be greater than or equal to 0")])
            want_rv = (new_scale.get("metadata") or {}).get("resourceVersion")
            if want_rv and want_rv != parent["metadata"]["resourceVersion"]:
                raise errors.stale(t.info.resource, t.info.group, t.name)
            new_parent = deep_copy(parent)
            if hasattr(t.info.strategy, "set_replicas"):  # a custom resource's specReplicasPath
                t.info.strategy.set_replicas(new_parent, replicas)
            else:
                new_parent["spec"]["replicas"] = replicas
            if not want_rv:
                new_parent["metadata"].pop("resourceVersion", None)
            try:
                updated, _ = await self.storage.update(t.info, ns, t.name, new_parent, opts)
            except errors.APIError as exc:
                if exc.reason == "Conflict" and not want_rv:
                    continue
                raise
            return json_response(scale_of(updated, t.info))
        raise errors.stale(t.info.resource, t.info.group, t.name)

    async def _token_request(self, req: Request, t: Target) -> Reply:
        """POST serviceaccounts/NAME/token: a TokenRequest answered with a signed token."""
        if req.method != "POST":
            raise errors.method_not_allowed(req.method.lower(), "serviceaccounts/token")
        if self.tokens is None:
            raise errors.APIError(503, "ServiceUnavailable", "no token issuer is configured")
        body = codec.decode_body(req.body, req.headers.get("Content-Type"),
                                 ("authentication.k8s.io/v1", "TokenRequest")).obj
        if not isinstance(body, dict):
            raise errors.bad_request(schema.cannot_handle_message(
                "authentication.k8s.io/v1", "TokenRequest",
                f"json: cannot unmarshal {schema.json_kind(body)} into Go value of type v1.TokenRequest"))
        sa = await self.storage.get(t.info, t.namespace or "", t.name)
        spec = body.get("spec") or {}
        seconds = spec.get("expirationSeconds") or tokens.DEFAULT_SECONDS
        if not isinstance(seconds, int) or seconds < tokens.MIN_SECONDS:
            raise errors.invalid("TokenRequest", "authentication.k8s.io", "", [errors.invalid_value(
                "spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes")])
        token, exp = self.tokens.issue(t.namespace or "", sa, list(spec.get("audiences") or []), seconds,
                                       spec.get("boundObjectRef"))
        out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"name": t.name, "namespace": t.namespace, "creationTimestamp": None},
               "spec": {"audiences": list(spec.get("audiences") or []) or [tokens.ISSUER],
                        "expirationSeconds": seconds, "boundObjectRef": spec.get("boundObjectRef")},
               "status": {"token": token, "expirationTimestamp": rfc3339_at(exp)}}
        return json_response(out, 201)

    def _review(self, req: Request, t: Target) -> Reply:
        if req.method != "POST":
            raise errors.method_not_allowed(req.method.lower(), t.info.resource)
        body = codec.decode_body(req.body, req.headers.get("Content-Type"), (t.info.api_version, t.info.kind)).obj
        if not isinstance(body, dict):
            raise errors.bad_request(schema.cannot_handle_message(
                t.info.api_version, t.info.kind,
                f"json: cannot unmarshal {schema.json_kind(body)} into Go value of type v1.{t.info.kind}"))
        out = reviews.answer(t.info, body, req.user or authn.APISERVER, t.namespace, self.authorizer,
                             self.authenticator)
        return json_response(out, 201)

    async def _eviction(self, req: Request, t: Target) -> Reply:
        if req.method != "POST":
            raise errors.method_not_allowed(req.method.lower(), "pods/eviction")
        body = codec.decode_body(req.body, req.headers.get("Content-Type"), ("policy/v1", "Eviction")).obj
        dry_run = self._write_options(req.query, "POST", subresource="eviction").dry_run
        status = await self.evictions.evict(t.namespace or "", t.name, body, dry_run)
        return json_response(status, 201)

    async def _binding(self, req: Request, t: Target) -> Reply:
        if req.method != "POST":
            raise errors.method_not_allowed(req.method.lower(), "pods/binding")
        body = codec.decode_body(req.body, req.headers.get("Content-Type"), ("v1", "Binding")).obj
        if not isinstance(body, dict):
            raise errors.bad_request(schema.cannot_handle_message(
                "v1", "Binding", f"json: cannot unmarshal {schema.json_kind(body)} into Go value of type v1.Binding"))
        target = body.get("target") or {}
        if not isinstance(target, dict):
            raise errors.bad_request(schema.cannot_handle_message(
                "v1", "Binding", f"json: cannot unmarshal {schema.json_kind(target)} into Go struct field "
                                 "Binding.target of type v1.ObjectReference"))
        node = target.get("name", "")
        if not node:
            raise errors.invalid("Binding", "", t.name, [errors.required("target.name")])
        pod = await self.storage.get(t.info, t.namespace or "", t.name)
        current = (pod.get("spec") or {}).get("nodeName")
        if current:
            raise errors.conflict("pods", "", t.name, f"pod {t.name} is already assigned to node \"{current}\"")
        if pod["metadata"].get("deletionTimestamp"):
            raise errors.conflict("pods", "", t.name, f"pod {t.name} is being deleted, cannot be assigned to a host")
        new = deep_copy(pod)
        new["spec"]["nodeName"] = node
        status = new.setdefault("status", {})
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"] + [
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": rfc3339()}]
        await self.storage.update(t.info, t.namespace or "", t.name, new,
                                  self._write_options(req.query, "POST", subresource="binding"))
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201}, 201)


# ---- helpers ---------------------------------------------------------------------------


def scale_of(parent: dict, info: KindInfo | None = None) -> dict:
    if info is not None and hasattr(info.strategy, "scale_of"):  # a custom resource's scale paths
        return info.strategy.scale_of(parent)
    m = parent["metadata"]
    spec = parent.get("spec") or {}
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in m},
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {"replicas": (parent.get("status") or {}).get("replicas", 0),
                   "selector": _scale_selector(parent.get("kind"), spec.get("selector"))},
    }


def _scale_selector(kind: str | None, selector) -> str:
    """Scale.status.selector: the ReplicationController's map selector, or the apps/v1 LabelSelector."""
    if kind == "ReplicationController":
        return selectors.selector_from_set(selector or {})
    return str(selectors.selector_from_object(selector))


async def _send_in_slices(request: web.Request, reply: Reply, headers: CIMultiDict) -> web.StreamResponse:
    resp = web.StreamResponse(status=reply.status, headers=headers)
    resp.content_length = len(reply.body)
    await resp.prepare(request)
    view = memoryview(reply.body)
    for start in range(0, len(view), SLICE):
        await resp.write(view[start:start + SLICE])
    await resp.write_eof()
    return resp


def json_response(body: Any, status: int = 200) -> Reply:
    return Reply(status, orjson.dumps(body))


def status_reply(exc: errors.APIError) -> Reply:
    return Reply(exc.code, orjson.dumps(exc.status()))


def status_response(exc: errors.APIError) -> web.Response:
    """A Status as an aiohttp response (for the HTTP-only paths: auth, streaming subresources)."""
    return web.Response(body=orjson.dumps(exc.status()) + b"\n", status=exc.code, headers={"Content-Type": JSON_CT})


def _only_gc_fields(obj: dict, old: dict) -> bool:
    """rbacregistry.IsOnlyMutatingGCFields: the write changes ownerReferences or finalizers only."""
    def strip(o: dict) -> dict:
        m = {k: v for k, v in (o.get("metadata") or {}).items()
             if k not in ("ownerReferences", "finalizers", "resourceVersion", "managedFields", "generation")}
        return {**o, "metadata": m}
    return strip(obj) == strip(old)


def _typed(info: KindInfo, obj: dict) -> dict:
    if obj.get("kind") == info.kind and obj.get("apiVersion") == info.api_version:
        return obj
    return {"kind": info.kind, "apiVersion": info.api_version, **obj}


def _chunks(items: list, size: int = LIST_CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _with_type(info: KindInfo, obj: dict) -> bytes:
    return orjson.dumps(_typed(info, obj))


def _int_param(q, name: str, default: int) -> int:
    value = q.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f'invalid value for {name}: "{value}"') from None


def _validation_mode(q) -> str:
    """Ignore, Warn or Strict (validated with the write options); Warn when unset."""
    return q.get("fieldValidation") or "Warn"
