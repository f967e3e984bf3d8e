"""Custom resources: the kinds CustomResourceDefinitions define, served like built-in ones.

`CustomResources.sync()` runs before every request; when a CRD changed (the watch cache's
revision of the apiextensions group) it rebuilds one KindInfo per served version of every CRD
and hands them to the registry, so a CRD is served the moment it is stored: discovery,
`kubectl api-resources`, CRUD, watch, Tables and OpenAPI.

Each kind's strategy (`CustomResourceStrategy`) prunes the fields its structural schema does
not declare, fills the schema's defaults, validates against it (crdschema.py), keeps `status`
for the status subresource and maps `spec`/`status` replicas for the scale subresource.
Versions convert with the `None` strategy: only `apiVersion` changes between the stored and
the served form. A Table shows NAME and the CRD's `additionalPrinterColumns` (or AGE).

Deleting a CRD (it carries the `customresourcecleanup` finalizer) deletes its objects, refuses
new ones meanwhile, then lets the CRD go.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import re
from typing import Any

from pocketkube.apiserver import crdschema, printers
from pocketkube.apiserver.kinds import crd as crdkind, registry
from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver.storage import WriteOptions
from pocketkube.apiserver import validation as v
from pocketkube.core import errors
from pocketkube.core.errors import FieldError

log = logging.getLogger(__name__)

CRD_PREFIX = f"/registry/{crdkind.GROUP}/customresourcedefinitions/"
GROUP_PREFIX = f"/registry/{crdkind.GROUP}/"


class CustomResourceStrategy(Strategy):
    def __init__(self, crd: dict, version: dict):
        spec = crd["spec"]
        self.crd_name = crd["metadata"]["name"]
        self.group = spec["group"]
        self.kind = spec["names"]["kind"]
        self.namespaced = spec.get("scope") == "Namespaced"
        self.version = version["name"]
        self.storage_version = crdkind.storage_version(crd)
        self.schema = (version.get("schema") or {}).get("openAPIV3Schema") or {}
        subresources = version.get("subresources") or {}
        self.has_status_subresource = "status" in subresources
        self.scale = subresources.get("scale") if isinstance(subresources.get("scale"), dict) else None
        self.columns = [c for c in version.get("additionalPrinterColumns") or [] if isinstance(c, dict)]
        self.terminating = bool(crd["metadata"].get("deletionTimestamp"))

    # ---- forms ---------------------------------------------------------------------

    def to_storage(self, obj: dict) -> dict:
        return {**obj, "apiVersion": f"{self.group}/{self.storage_version}"}

    def from_storage(self, obj: dict) -> dict:
        return {**obj, "apiVersion": f"{self.group}/{self.version}"}

    # ---- writes --------------------------------------------------------------------

    def unknown_fields(self, obj: dict) -> list[str]:
        """The fields pruning would drop (for fieldValidation Strict and Warn)."""
        probe = {k: val for k, val in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        return crdschema.prune(probe, self.schema)

    def default(self, obj: dict) -> None:
        crdschema.prune(obj, self.schema)
        crdschema.apply_defaults(obj, self.schema)

    def prepare_for_create(self, obj: dict) -> None:
        if self.terminating:
            raise errors.APIError(405, "MethodNotAllowed",
                                  "create not allowed while custom resource definition is terminating")
        if self.has_status_subresource:
            obj.pop("status", None)
        obj["metadata"]["generation"] = 1

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        if self.has_status_subresource:
            if "status" in old:
                obj["status"] = old["status"]
            else:
                obj.pop("status", None)
        ignored = ("apiVersion", "kind", "metadata") + (("status",) if self.has_status_subresource else ())
        gen = old.get("metadata", {}).get("generation", 1) or 1
        keys = (set(obj) | set(old)) - set(ignored)
        if any(obj.get(k) != old.get(k) for k in keys):
            gen += 1
        obj["metadata"]["generation"] = gen

    def validate(self, obj: dict, old: dict | None = None) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, self.namespaced, v.name_is_dns_subdomain)
        # metadata, apiVersion and kind are checked as every object's: the schema's own words on them
        # are left out (root CEL rules still see self.metadata)
        schema = {**self.schema, "properties": {k: s for k, s in (self.schema.get("properties") or {}).items()
                                                if k not in ("metadata", "apiVersion", "kind")}}
        schema.pop("required", None)
        errs += crdschema.validate(obj, schema, "") if old is None else crdschema.validate(obj, schema, "", old)
        for name in self.schema.get("required") or []:
            if name not in obj and name not in ("metadata", "apiVersion", "kind"):
                errs.append(errors.required(name))
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        return v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {}) + \
            self.validate(obj, old)

    # ---- scale ---------------------------------------------------------------------

    def scale_of(self, parent: dict) -> dict:
        spec_replicas = _get_path(parent, self.scale.get("specReplicasPath", ""))
        status_replicas = _get_path(parent, self.scale.get("statusReplicasPath", ""))
        selector = _get_path(parent, self.scale.get("labelSelectorPath") or "") if \
            self.scale.get("labelSelectorPath") else None
        m = parent["metadata"]
        status: dict = {"replicas": status_replicas or 0}
        if selector:
            status["selector"] = selector
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                             if k in m},
                "spec": {"replicas": spec_replicas or 0}, "status": status}

    def set_replicas(self, parent: dict, replicas: int) -> None:
        _set_path(parent, self.scale.get("specReplicasPath", ""), replicas)

    # ---- printing ------------------------------------------------------------------

    def table(self, objects: list[dict], now: _dt.datetime) -> tuple[list[dict], list[list]]:
        name = {"name": "Name", "type": "string", "format": "name", "priority": 0,
                "description": "Name must be unique within a namespace. Is required when creating resources, "
                               "although some resources may allow a client to request the generation of an "
                               "appropriate name automatically. Name is primarily intended for creation "
                               "idempotence and configuration definition. Cannot be updated. More info: "
                               "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"}
        specs = self.columns or [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
        columns = [name] + [{"name": c.get("name", ""), "type": c.get("type", "string"),
                             "format": c.get("format", ""), "description": c.get("description", ""),
                             "priority": c.get("priority", 0)} for c in specs]
        rows = []
        for obj in objects:
            cells: list[Any] = [obj.get("metadata", {}).get("name", "")]
            for c in specs:
                values = jsonpath(obj, c.get("jsonPath", ""))
                if not values:
                    cells.append(None)
                    continue
                value = values[0]
                if c.get("type") == "date":
                    cells.append(printers.translate_timestamp_since(value, now) if isinstance(value, str) else value)
                elif c.get("type") in ("integer", "number", "boolean") and not isinstance(value, (dict, list)):
                    cells.append(value)
                else:
                    cells.append(value if isinstance(value, str) else _go_print(value))
            rows.append(cells)
        return columns, rows


def _go_print(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value).lower() \
        if isinstance(value, bool) else str(value)


# ---- JSON paths ----------------------------------------------------------------------------

_TOKEN = re.compile(r"""\.([A-Za-z0-9_\-]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*["']([^"']*)["']\)\]""")


def jsonpath(obj: Any, path: str) -> list[Any]:
    """The values a printer column's JSONPath selects: `.a.b`, `[0]`, `[*]`, `[?(@.k=="v")]`."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    current = [obj]
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            return []
        pos = m.end()
        nxt: list[Any] = []
        for item in current:
            if m.group(1) is not None:
                if isinstance(item, dict) and m.group(1) in item:
                    nxt.append(item[m.group(1)])
            elif m.group(2) is not None:
                if isinstance(item, list):
                    if m.group(2) == "*":
                        nxt.extend(item)
                    elif int(m.group(2)) < len(item):
                        nxt.append(item[int(m.group(2))])
            else:
                if isinstance(item, list):
                    for el in item:
                        got = jsonpath(el, "." + m.group(3))
                        if got and str(got[0]) == m.group(4):
                            nxt.append(el)
        current = nxt
    return current


def _get_path(obj: dict, path: str) -> Any:
    got = jsonpath(obj, path)
    return got[0] if got else None


def _set_path(obj: dict, path: str, value: Any) -> None:
    keys = [k for k in path.split(".") if k]
    node = obj
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


# ---- the registry of served custom kinds ---------------------------------------------------


class CustomResources:
    def __init__(self, cache, storage):
        self.cache = cache
        self.storage = storage
        self._revision = -1
        self._cleanups: dict[str, asyncio.Task] = {}

    def sync(self) -> None:
        rev = self.cache.prefix_revision(GROUP_PREFIX)
        if rev == self._revision:
            return
        self._revision = rev
        kinds: list[KindInfo] = []
        groups: dict[str, set[str]] = {}
        for crd in self.cache.list(CRD_PREFIX):
            spec = crd.get("spec") or {}
            names = spec.get("names") or {}
            try:
                for ver in spec.get("versions") or []:
                    if not ver.get("served"):
                        continue
                    strategy = CustomResourceStrategy(crd, ver)
                    subs = (("status",) if strategy.has_status_subresource else ()) + (
                        ("scale",) if strategy.scale else ())
                    kinds.append(KindInfo(
                        group=spec["group"], version=ver["name"], kind=names["kind"], resource=names["plural"],
                        singular=names.get("singular") or names["kind"].lower(), namespaced=strategy.namespaced,
                        strategy=strategy, short_names=tuple(names.get("shortNames") or ()),
                        categories=tuple(names.get("categories") or ()), subresources=subs,
                        storage_group=spec["group"]))
                    groups.setdefault(spec["group"], set()).add(ver["name"])
            except (KeyError, TypeError, AttributeError) as exc:
                log.warning("CRD %s is not served: %s", crd["metadata"].get("name"), exc)
            if crd["metadata"].get("deletionTimestamp") and crdkind.CLEANUP_FINALIZER in (
                    crd["metadata"].get("finalizers") or []):
                self._cleanup(crd)
        registry.set_custom(kinds, [(g, sorted(vs, key=registry.version_priority))
                                    for g, vs in sorted(groups.items())])

    def _cleanup(self, crd: dict) -> None:
        name = crd["metadata"]["name"]
        task = self._cleanups.get(name)
        if task is None or task.done():
            try:
                self._cleanups[name] = asyncio.get_running_loop().create_task(self._delete_instances(crd))
            except RuntimeError:
                pass

    async def _delete_instances(self, crd: dict) -> None:
        """Delete every object of a CRD being deleted, then remove its finalizer."""
        spec = crd["spec"]
        name = crd["metadata"]["name"]
        prefix = f"/registry/{spec['group']}/{spec['names']['plural']}/"
        info = registry.by_resource(spec["group"], crdkind.storage_version(crd), spec["names"]["plural"])
        try:
            for _ in range(600):
                left = self.cache.list(prefix)
                if not left or info is None:
                    break
                for obj in left:
                    m = obj["metadata"]
                    if m.get("deletionTimestamp"):
                        continue
                    try:
                        await self.storage.delete(info, m.get("namespace", ""), m["name"], {}, False)
                    except errors.APIError as exc:
                        if exc.code != 404:
                            log.warning("deleting %s %s: %s", spec["names"]["plural"], m["name"], exc.message)
                await asyncio.sleep(0.1)
            crd_info = registry.by_resource(crdkind.GROUP, "v1", "customresourcedefinitions")
            for _ in range(10):
                current = self.cache.get(CRD_PREFIX + name)
                if current is None:
                    return
                new = {**current, "metadata": {**current["metadata"], "finalizers": [
                    f for f in current["metadata"].get("finalizers") or [] if f != crdkind.CLEANUP_FINALIZER]}}
                try:
                    await self.storage.update(crd_info, "", name, new, WriteOptions(field_manager="kube-apiserver"))
                    return
                except errors.APIError as exc:
                    if exc.code == 404:
                        return
                    if exc.code != 409:
                        raise
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("cleaning up CRD %s", name)
