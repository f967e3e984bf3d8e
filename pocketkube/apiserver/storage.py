"""The generic registry: create, get, list, update, patch and delete for every kind.

This is where a write becomes an object in the store, the way Kubernetes' generic
registry Store does it: admission (namespace exists and is not terminating, defaults),
the kind's strategy (prepare, validate), metadata the server owns (uid,
creationTimestamp, generation, resourceVersion, managedFields), optimistic concurrency,
finalizers and graceful deletion. Reads are served from the watch cache.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as _dt
import random
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from pocketkube.apiserver import fieldmanager, schema
from pocketkube.apiserver import patch as patching
from pocketkube.apiserver.allocstore import ETCD_KEYS
from pocketkube.apiserver.cache import WatchCache
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.core import errors
from pocketkube.core.objects import deep_copy, meta, new_uid, parse_time, rfc3339, utc_now
from pocketkube.store.base import Compacted, KeyExists, KeyNotFound, RevisionMismatch, Store

# kube-apiserver's answer (410) to a continue token whose revision etcd has compacted.
CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list.")
GENERATE_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
# Resources whose DELETE answers with the deleted object rather than a Status.
RETURNS_DELETED_OBJECT = {"pods", "services", "namespaces", "endpoints"}
# Kinds an update (PUT) may create when the object is missing (AllowCreateOnUpdate).
CREATE_ON_UPDATE = {"endpoints", "events", "leases", "nodes", "endpointslices"}
SERVER_METADATA = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def _storage_base(info: KindInfo) -> str:
    group = info.group if info.storage_group is None else info.storage_group
    return f"/registry/{group or 'core'}/{info.resource}/"


def object_key(info: KindInfo, namespace: str, name: str) -> str:
    base = _storage_base(info)
    return f"{base}{namespace}/{name}" if info.namespaced else f"{base}{name}"


def collection_prefix(info: KindInfo, namespace: str | None) -> str:
    base = _storage_base(info)
    return f"{base}{namespace}/" if info.namespaced and namespace else base


# kube-apiserver's etcd layout: a built-in resource lives under /registry/<resource>/ (its group
# left out), but for these (upstream's SpecialDefaultResourcePrefixes); the API extension
# servers' groups and custom resources keep /registry/<group>/<resource>/ as here.
ETCD_SPECIAL_PREFIXES = {
    ("", "replicationcontrollers"): "controllers",
    ("", "endpoints"): "services/endpoints",
    ("", "nodes"): "minions",
    ("", "services"): "services/specs",
    ("networking.k8s.io", "ingresses"): "ingress",
}
ETCD_GROUP_KEPT = ("apiextensions.k8s.io", "apiregistration.k8s.io")


class EtcdKeyLayout:
    """Our keys (/registry/<group or core>/<resource>/...) <-> kube-apiserver's in etcd, so
    `etcdctl get /registry/services/specs/ --prefix --keys-only` lists the Services. A
    store.etcd.KeyCodec; it maps whole keys, resource prefixes (or deeper) and the root."""

    def __init__(self, kinds: list[KindInfo]):
        self._to: dict[str, str] = {}  # "/registry/core/services/" -> "/registry/services/specs/"
        for info in kinds:
            group = info.group if info.storage_group is None else info.storage_group
            if group in ETCD_GROUP_KEPT:
                continue
            ours = _storage_base(info)
            self._to[ours] = f"/registry/{ETCD_SPECIAL_PREFIXES.get((group, info.resource), info.resource)}/"
        self._to.update(ETCD_KEYS)  # the allocations shared between servers (IPAddress, RangeAllocation)
        self._from = {theirs: ours for ours, theirs in self._to.items()}
        if len(self._from) != len(self._to):
            raise ValueError("two built-in resources share an etcd prefix")

    def to_etcd(self, key: str) -> str:
        return self._swap(key, self._to)

    def from_etcd(self, key: str) -> str:
        return self._swap(key, self._from)

    @staticmethod
    def _swap(key: str, table: dict[str, str]) -> str:
        # A resource prefix is "/registry/" and one or two more segments ("/registry/services/specs/").
        for segments in (4, 3):
            parts = key.split("/", segments)
            if len(parts) > segments:
                head = "/".join(parts[:segments]) + "/"
                if head in table:
                    return table[head] + key[len(head):]
        return key


def etcd_key_layout() -> EtcdKeyLayout:
    from pocketkube.apiserver.kinds import registry as kinds

    return EtcdKeyLayout(kinds.BUILT_IN)


def served(info: KindInfo, stored: dict) -> dict:
    """A stored object in the form `info` serves (identity for most kinds)."""
    if info.storage_group is None:
        return stored
    return info.strategy.from_storage(stored)


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_manager: str = ""
    subresource: str = ""  # "" or "status"
    force: bool = False  # server-side apply
    # This request's own admission (RBAC escalation checks: they need the user): (obj, old) -> None or APIError.
    admit: Callable[[dict, dict | None], Any] | None = None


@dataclass
class ListResult:
    items: list[dict]
    revision: int
    continue_token: str = ""
    remaining: int | None = None


Admission = Callable[[str, KindInfo, dict, dict | None], Any]
# begin(operation, info, obj, old, dry_run) -> finish(stored) or None; see Storage.reservations.
Reservation = Callable[[str, KindInfo, dict, dict | None, bool], Callable[[bool], None] | None]


class _Reserved:
    """The reservations' finishes of one write (Storage.reservations). `persist()` awaits each
    one's async `persist(joint)`; with joint=True they may return claims (key -> value) to be
    created in the object's own store write (create_all: a Service and its cluster IPs' claims
    in one write, ADR 0025), and `refused(keys)` tells them which of those existed, for them to
    pick again or refuse; it returns the claims to write then."""

    def __init__(self) -> None:
        self.finishes: list[Callable[[bool], None]] = []

    async def persist(self, joint: bool = False) -> dict[str, bytes]:
        claims: dict[str, bytes] = {}
        for finish in self.finishes:
            persist = getattr(finish, "persist", None)
            if persist is not None:
                claims.update(await persist(joint))
        return claims

    async def refused(self, keys: frozenset[str]) -> dict[str, bytes]:
        claims: dict[str, bytes] = {}
        for finish in self.finishes:
            refused = getattr(finish, "refused", None)  # a finish that returns claims has one
            if refused is not None:
                claims.update(await refused(keys))
        return claims


class Storage:
    """Generic CRUD over the store, with the watch cache for reads."""

    def __init__(self, store: Store, cache: WatchCache):
        self.store = store
        self.cache = cache
        # Hooks run on create and update after defaults (operation, info, obj, old);
        # they may mutate obj or raise APIError. Later issues add allocators here.
        self.admission: list[Admission] = []
        # Hooks that hold something for the object being written (cluster IPs, node ports), as
        # Kubernetes' BeginCreate/BeginUpdate: run after admission, before validation; they
        # must not await (so two concurrent writes of this server cannot take the same thing),
        # may mutate obj or raise APIError, and return None or finish(stored), called with True
        # once the write is stored (or the dry run passed), False if it failed. A finish with
        # an async `persist(joint)` has it awaited right before the store write (claims kept in
        # the store, shared with other API servers: allocstore); it may mutate obj or raise
        # APIError; on a create (joint=True) it may return claims to store with the object and
        # have an async `refused(keys)` (see _Reserved).
        self.reservations: list[Reservation] = []
        # Called with (info, object) after an object is removed from the store.
        self.on_deleted: list[Callable[[KindInfo, dict], None]] = []

    # ---- reads -------------------------------------------------------------------------

    async def get(self, info: KindInfo, namespace: str, name: str) -> dict:
        await self.cache.wait_fresh()
        obj = self.cache.get(object_key(info, namespace, name))
        if obj is None:
            raise errors.not_found(info.resource, info.group, name)
        return served(info, obj)

    async def list(self, info: KindInfo, namespace: str | None, match: Callable[[dict], bool] | None,
                   limit: int = 0, continue_token: str = "") -> ListResult:
        await self.cache.wait_fresh()
        prefix = collection_prefix(info, namespace)
        items = self.cache.list(prefix)
        if info.storage_group is not None:
            items = [served(info, o) for o in items]
        revision = self.cache.revision
        start_after = ""
        if continue_token:
            revision, start_after = _decode_continue(continue_token)
            items = await self._snapshot(info, prefix, revision, start_after, items)
            if revision < 0:  # the "inconsistent" token of a 410: the rest of the current state
                revision = self.cache.revision
            items = [o for o in items if _sort_key(info, o) > start_after]
        if match is not None:
            items = [o for o in items if match(o)]
        if limit > 0 and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            token = _encode_continue(revision, _sort_key(info, items[-1]))
            return ListResult(items, revision, token, rest)
        return ListResult(items, revision)

    async def _snapshot(self, info: KindInfo, prefix: str, revision: int, start_after: str,
                        current: list[dict]) -> list[dict]:
        """The objects under prefix as they were at `revision`, for a `continue`d list: read
        from a store that keeps history readable (etcd's list_at), else the current ones.
        Compacted history is 410 Expired with an inconsistent token (revision -1), as upstream."""
        list_at = getattr(self.store, "list_at", None)
        if list_at is None or revision < 0 or revision == self.cache.revision:
            return current
        try:
            kvs, _ = await list_at(prefix, revision)
        except Compacted:
            raise errors.APIError(410, "Expired", CONTINUE_TOO_OLD,
                                  list_meta={"continue": _encode_continue(-1, start_after)}) from None
        items = sorted((_decode(kv.value, kv.mod_revision) for kv in kvs), key=lambda o: _sort_key(info, o))
        return [served(info, o) for o in items] if info.storage_group is not None else items

    # ---- create ------------------------------------------------------------------------

    async def create(self, info: KindInfo, namespace: str, obj: dict, opts: WriteOptions) -> dict:
        m = meta(obj)
        if info.namespaced:
            if m.get("namespace") and m["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request")
            m["namespace"] = namespace
        else:
            m.pop("namespace", None)
        if not m.get("name") and m.get("generateName"):
            m["name"] = m["generateName"] + "".join(random.choices(GENERATE_NAME_CHARS, k=5))
        if m.get("resourceVersion"):
            raise errors.internal("resourceVersion should not be set on objects to be created")
        if info.namespaced:
            await self._check_namespace(namespace)
        for field in ("uid", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            m.pop(field, None)
        schema.zero_null_structs(info.api_version, info.kind, obj)
        info.strategy.default(obj)
        m["uid"] = new_uid()  # before the strategy: a Job's generated selector names it
        info.strategy.prepare_for_create(obj)
        m["creationTimestamp"] = rfc3339()
        if opts.field_manager or not m.get("managedFields"):
            _set_managed_fields(m, fieldmanager.update_managed_fields(
                None, obj, opts.field_manager or "unknown", "Update", info.api_version, m["creationTimestamp"]))
        for hook in self.admission:
            await _maybe_await(hook("CREATE", info, obj, None))
        if opts.admit is not None:
            await _maybe_await(opts.admit(obj, None))
        schema.zero_required_status(info.api_version, info.kind, obj)
        async with self._reserving("CREATE", info, obj, None, opts.dry_run) as reserved:
            self._validate(info, obj, None)
            key = object_key(info, namespace, m["name"])
            if opts.dry_run:
                if self.cache.get(key) is not None:
                    raise errors.already_exists(info.resource, info.group, m["name"])
                return obj
            claims = await reserved.persist(joint=True)
            while True:
                value = _encode(info, obj)
                try:
                    if not claims:
                        kv = await self.store.create(key, value)
                    else:  # the object first: its revision is its resourceVersion (ADR 0025)
                        kv = (await self.store.create_all([(key, value), *claims.items()]))[0]
                    break
                except KeyExists as exc:
                    if not exc.keys & claims.keys():
                        raise errors.already_exists(info.resource, info.group, m["name"]) from None
                    claims = await reserved.refused(exc.keys)
        m["resourceVersion"] = str(kv.mod_revision)
        return obj

    @contextlib.asynccontextmanager
    async def _reserving(self, operation: str, info: KindInfo, obj: dict, old: dict | None, dry_run: bool):
        """Run the reservations; settle them when the block has stored the write or failed.
        The block awaits the `persist` of the _Reserved it is given right before it writes
        (reservations kept in the store claim there). A cancelled write settles nothing:
        holding a value too long beats handing it out twice."""
        reserved = _Reserved()
        try:
            for reserve in self.reservations:
                finish = reserve(operation, info, obj, old, dry_run)
                if finish is not None:
                    reserved.finishes.append(finish)
            yield reserved
        except Exception:
            for finish in reserved.finishes:
                finish(False)
            raise
        for finish in reserved.finishes:
            finish(True)

    async def _check_namespace(self, namespace: str) -> None:
        from pocketkube.apiserver.kinds import registry as kinds

        ns = self.cache.get(object_key(kinds.by_resource("", "v1", "namespaces"), "", namespace))
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if ns.get("metadata", {}).get("deletionTimestamp") or ns.get("status", {}).get("phase") == "Terminating":
            raise errors.APIError(
                403, "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
                {"name": namespace, "kind": "namespaces",
                 "causes": [{"reason": errors.NAMESPACE_TERMINATING,
                             "message": f"namespace {namespace} is being terminated",
                             "field": "metadata.namespace"}]})

    def _validate(self, info: KindInfo, obj: dict, old: dict | None) -> None:
        errs = info.strategy.validate(obj) if old is None else info.strategy.validate_update(obj, old)
        if errs:
            raise errors.invalid(info.kind, info.group, meta(obj).get("name") or "", errs)

    # ---- update and patch ------------------------------------------------------------

    async def update(self, info: KindInfo, namespace: str, name: str, obj: dict, opts: WriteOptions) -> tuple[dict, bool]:
        """PUT. Returns (object, created)."""
        m = meta(obj)
        if not m.get("name"):
            raise errors.bad_request(f"the name of the object ({name} based on URL) was undeterminable: "
                                     "name must be provided")
        if m["name"] != name:
            raise errors.bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                     % (m["name"], name))
        if info.namespaced and m.get("namespace") and m["namespace"] != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request")
        key = object_key(info, namespace, name)
        want_rv = m.get("resourceVersion")
        for _ in range(10):  # an unconditional PUT retries when a concurrent write wins
            kv = await self.store.get(key)
            if kv is None:
                if info.resource in CREATE_ON_UPDATE and not opts.subresource:
                    m.pop("resourceVersion", None)
                    m["name"] = name
                    return await self.create(info, namespace, obj, opts), True
                raise errors.not_found(info.resource, info.group, name)
            if want_rv and want_rv != str(kv.mod_revision):
                raise errors.stale(info.resource, info.group, name)
            old = served(info, _decode(kv.value, kv.mod_revision))
            try:
                return await self._write_update(info, key, deep_copy(obj), old, kv.mod_revision, opts), False
            except _Retry:
                continue
        raise errors.stale(info.resource, info.group, name)

    async def patch(self, info: KindInfo, namespace: str, name: str, patch_type: str, body: Any,
                    opts: WriteOptions, validate_fields: Callable[..., None] | None = None) -> tuple[dict, bool]:
        """PATCH: read, apply the patch, write; retried on a concurrent write."""
        key = object_key(info, namespace, name)
        for _ in range(10):
            kv = await self.store.get(key)
            if kv is None:
                if patch_type == "apply":
                    obj = fieldmanager.apply(None, body, opts.field_manager, opts.force, info.api_version, rfc3339(),
                                             kind=info.kind, subresource=opts.subresource)
                    obj.setdefault("metadata", {})["name"] = name
                    if info.namespaced:
                        obj["metadata"]["namespace"] = namespace
                    if validate_fields:
                        validate_fields(obj)
                    obj.setdefault("apiVersion", info.api_version)
                    obj.setdefault("kind", info.kind)
                    opts_apply = WriteOptions(opts.dry_run, "", opts.subresource)
                    return await self.create(info, namespace, obj, opts_apply), True
                raise errors.not_found(info.resource, info.group, name)
            old = served(info, _decode(kv.value, kv.mod_revision))
            current = served(info, _decode(kv.value, kv.mod_revision))  # the copy to patch (cheaper than deep_copy)
            if patch_type == "json":
                new = patching.json_patch(current, body)
            elif patch_type == "merge":
                new = patching.merge_patch(current, body)
            elif patch_type == "strategic":
                new = patching.strategic_merge_patch(current, body, info.kind)
            elif patch_type == "apply":
                new = fieldmanager.apply(current, body, opts.field_manager, opts.force, info.api_version, rfc3339(),
                                         kind=info.kind, subresource=opts.subresource)
            else:
                raise errors.unsupported_media_type(patch_type, [])
            if not isinstance(new, dict):
                raise errors.bad_request("the patch produced an object that is not a JSON object")
            if validate_fields:
                validate_fields(new, old)
            new["apiVersion"] = info.api_version
            new["kind"] = info.kind
            nm = meta(new)
            if nm.get("name") != name:
                raise errors.bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                                         % (nm.get("name"), name))
            want_rv = nm.get("resourceVersion")
            if want_rv and want_rv != str(kv.mod_revision):
                raise errors.stale(info.resource, info.group, name)
            try:
                manager_op = "Apply" if patch_type == "apply" else "Update"
                return await self._write_update(info, key, new, old, kv.mod_revision, opts, manager_op), False
            except _Retry:
                continue
        raise errors.stale(info.resource, info.group, name)

    async def _write_update(self, info: KindInfo, key: str, obj: dict, old: dict, mod_revision: int,
                            opts: WriteOptions, operation: str = "Update") -> dict:
        m = meta(obj)
        om = old["metadata"]
        for field in SERVER_METADATA:
            if field in om:
                m[field] = om[field]
            else:
                m.pop(field, None)
        m["name"] = om["name"]
        if "namespace" in om:
            m["namespace"] = om["namespace"]
        schema.zero_null_structs(info.api_version, info.kind, obj)
        info.strategy.default(obj)
        if opts.subresource == "finalize":
            # Only spec.finalizers changes through namespaces/NAME/finalize.
            finalizers = (obj.get("spec") or {}).get("finalizers")
            obj["spec"], obj["status"] = deep_copy(old.get("spec") or {}), deep_copy(old.get("status") or {})
            if finalizers:
                obj["spec"]["finalizers"] = finalizers
            else:
                obj["spec"].pop("finalizers", None)
        elif opts.subresource in ("status", "approval"):  # approval: CertificateSigningRequests' conditions
            if opts.subresource == "status":
                info.strategy.prepare_for_status_update(obj, old)
            else:
                info.strategy.prepare_for_approval_update(obj, old)
            m["labels"], m["annotations"] = m.get("labels"), m.get("annotations")
            for k in ("labels", "annotations"):
                if m[k] is None:
                    m.pop(k)
        elif opts.subresource != "binding":  # a binding sets nodeName and PodScheduled, nothing else
            info.strategy.prepare_for_update(obj, old)
        schema.zero_required_status(info.api_version, info.kind, obj)
        # A binding is no field manager's write: Kubernetes' BindingREST assigns the node
        # through the storage directly, so the pod's managedFields stay as they were (no
        # entry owns spec.nodeName or the PodScheduled condition; kubernetes#127508).
        if operation == "Update" and opts.subresource != "binding":
            _set_managed_fields(m, fieldmanager.update_managed_fields(
                old, obj, opts.field_manager or "unknown", "Update", info.api_version, rfc3339(),
                opts.subresource))
        for hook in self.admission:
            await _maybe_await(hook("UPDATE", info, obj, old))
        if opts.admit is not None:
            await _maybe_await(opts.admit(obj, old))
        async with self._reserving("UPDATE", info, obj, old, opts.dry_run) as reserved:
            if opts.subresource != "binding":
                self._validate(info, obj, old)
            m["resourceVersion"] = om["resourceVersion"]
            if obj == old:
                return old  # a no-op write changes nothing, not even the resourceVersion
            # Finalizers gone from an object being deleted: it is deleted now.
            if m.get("deletionTimestamp") and not m.get("finalizers") and not _graceful_pending(info, obj) \
                    and not _namespace_finalizers(info, obj):
                if opts.dry_run:
                    return obj
                return await self._delete_now(info, key, obj, mod_revision)
            if opts.dry_run:
                return obj
            m.pop("resourceVersion", None)
            await reserved.persist()
            try:
                kv = await self.store.update(key, _encode(info, obj), expected_mod_revision=mod_revision)
            except RevisionMismatch:
                if om.get("resourceVersion") and meta(obj).get("resourceVersion"):
                    raise errors.stale(info.resource, info.group, om["name"]) from None
                raise _Retry() from None
            except KeyNotFound:
                raise errors.not_found(info.resource, info.group, om["name"]) from None
        m["resourceVersion"] = str(kv.mod_revision)
        return obj

    # ---- delete --------------------------------------------------------------------

    async def delete(self, info: KindInfo, namespace: str, name: str, options: dict,
                     dry_run: bool = False) -> tuple[dict, bool]:
        """DELETE. Returns (object, deleted_now)."""
        key = object_key(info, namespace, name)
        for _ in range(10):
            kv = await self.store.get(key)
            if kv is None:
                raise errors.not_found(info.resource, info.group, name)
            obj = served(info, _decode(kv.value, kv.mod_revision))
            m = obj["metadata"]
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != m.get("uid"):
                raise errors.conflict(info.resource, info.group, name,
                                      f"Precondition failed: UID in precondition: {pre['uid']}, "
                                      f"UID in object meta: {m.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != m.get("resourceVersion"):
                raise errors.conflict(info.resource, info.group, name,
                                      f"Precondition failed: ResourceVersion in precondition: "
                                      f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                      f"{m.get('resourceVersion')}")
            finalizers = list(m.get("finalizers") or [])
            policy = options.get("propagationPolicy")
            if policy is None and options.get("orphanDependents") is not None:
                policy = "Orphan" if options["orphanDependents"] else "Background"
            if policy is None:
                policy = info.strategy.default_gc_policy
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            elif policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            grace = _grace_period(info, obj, options)
            if m.get("deletionTimestamp"):
                # Already being deleted: only an explicitly shorter grace period changes anything
                # (BeforeDelete): it ends now, or its deletionTimestamp moves earlier.
                current = m.get("deletionGracePeriodSeconds")
                if options.get("gracePeriodSeconds") is None or current is None or grace >= current:
                    return obj, False
                if grace == 0 and not finalizers and info.resource == "pods":
                    return (obj if dry_run else await self._delete_now(info, key, obj, kv.mod_revision)), True
                m["deletionTimestamp"] = rfc3339(parse_time(m["deletionTimestamp"]) + _dt.timedelta(
                    seconds=grace - current))
                m["deletionGracePeriodSeconds"] = grace
                if dry_run:
                    return obj, False
                try:
                    return await self._write_deleting(info, key, obj, kv.mod_revision), False
                except _Retry:
                    continue
            if finalizers or grace or _namespace_finalizers(info, obj):
                m["finalizers"] = finalizers or m.get("finalizers")
                if not m["finalizers"]:
                    m.pop("finalizers")
                # when the grace period ends, as upstream stores it (the delete time + grace)
                m["deletionTimestamp"] = rfc3339(utc_now() + _dt.timedelta(seconds=grace or 0))
                m["deletionGracePeriodSeconds"] = grace or 0
                if info.resource == "namespaces":
                    obj.setdefault("status", {})["phase"] = "Terminating"
                if dry_run:
                    return obj, False
                try:
                    return await self._write_deleting(info, key, obj, kv.mod_revision), False
                except _Retry:
                    continue
            if dry_run:
                return obj, True
            try:
                return await self._delete_now(info, key, obj, kv.mod_revision), True
            except _Retry:
                continue
        raise errors.stale(info.resource, info.group, name)

    async def _write_deleting(self, info: KindInfo, key: str, obj: dict, mod_revision: int) -> dict:
        """Store `obj` as being deleted (its deletionTimestamp set); _Retry if another write won."""
        m = obj["metadata"]
        m.pop("resourceVersion", None)
        try:
            kv = await self.store.update(key, _encode(info, obj), expected_mod_revision=mod_revision)
        except RevisionMismatch:
            raise _Retry() from None
        m["resourceVersion"] = str(kv.mod_revision)
        return obj

    async def _delete_now(self, info: KindInfo, key: str, obj: dict, mod_revision: int) -> dict:
        try:
            kv = await self.store.delete(key, expected_mod_revision=mod_revision)
        except RevisionMismatch:
            raise _Retry() from None
        except KeyNotFound:
            raise errors.not_found(info.resource, info.group, obj["metadata"]["name"]) from None
        obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
        for callback in self.on_deleted:
            callback(info, obj)
        return obj


class _Retry(Exception):
    """A concurrent write won; read again and retry."""


def _set_managed_fields(m: dict, entries: list[dict]) -> None:
    if entries:
        m["managedFields"] = entries
    else:
        m.pop("managedFields", None)


def _grace_period(info: KindInfo, obj: dict, options: dict) -> int:
    """Graceful deletion applies to pods bound to a node that are not finished."""
    if info.resource != "pods":
        return 0
    spec = obj.get("spec") or {}
    phase = (obj.get("status") or {}).get("phase")
    if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
        return 0
    grace = options.get("gracePeriodSeconds")
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds", 30)
    return max(int(grace), 0)


def _graceful_pending(info: KindInfo, obj: dict) -> bool:
    """A pod with a grace period is removed by its node agent, not by the last finalizer."""
    return info.resource == "pods" and bool(obj["metadata"].get("deletionGracePeriodSeconds"))


def _namespace_finalizers(info: KindInfo, obj: dict) -> bool:
    """A namespace goes only once its spec.finalizers (the namespace controller's) are gone."""
    return info.resource == "namespaces" and bool((obj.get("spec") or {}).get("finalizers"))


def _encode(info: KindInfo, obj: dict) -> bytes:
    """The stored bytes: the storage form, without resourceVersion (derived on reads)."""
    stored = obj if info.storage_group is None else info.strategy.to_storage(obj)
    m = stored.get("metadata", {})
    rv = m.pop("resourceVersion", None)
    try:
        return orjson.dumps(stored)
    finally:
        if rv is not None:
            m["resourceVersion"] = rv


def _decode(value: bytes, revision: int) -> dict:
    obj = orjson.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


def _sort_key(info: KindInfo, obj: dict) -> str:
    m = obj.get("metadata", {})
    return f"{m.get('namespace', '')}/{m.get('name', '')}" if info.namespaced else m.get("name", "")


def _encode_continue(revision: int, start_after: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start_after})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        return int(data["rv"]), str(data["start"])
    except Exception:
        raise errors.bad_request("continue key is not valid: illegal base64 data at input byte 0") from None


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value):
        return await value
    return value
