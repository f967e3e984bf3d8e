"""A synthetic /openapi/v3: enough for `kubectl apply` to trust server-side validation.

Each group version document lists, per kind, its paths with a PATCH operation carrying
`x-kubernetes-group-version-kind` and the `fieldValidation` parameter, so kubectl sends
`fieldValidation=Strict` and validates nothing itself (kubectl-compat.md section B).
Strategic merge patch is left out of the PATCH request bodies on purpose: kubectl then
computes apply patches from its compiled-in types. Component schemas come from
`schema.openapi_v3_components`, so `kubectl explain` has something to read.

/openapi/v2 is a Swagger 2.0 document with no definitions, in JSON or in the gnostic protobuf
kubectl asks for. kubectl reads it only for what /openapi/v3 does not cover: a `kind: List` of
objects (then it validates each item against v2 and, finding no schema, leaves validation to
the server, which checks each item strictly when it is sent) and kinds the server does not
serve (then kubectl's own "no matches for kind" error follows, as on a real cluster).
"""

from __future__ import annotations

import hashlib

import orjson

from pocketkube.apiserver import schema
from pocketkube.apiserver.kinds import registry

_QUERY = ["dryRun", "fieldManager", "fieldValidation", "pretty"]


def _params(names: list[str]) -> list[dict]:
    return [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}} for n in names]


def _gvk(info) -> dict:
    return {"group": info.group, "version": info.version, "kind": info.kind}


def group_version_doc(group: str, version: str) -> dict:
    gv = f"{group}/{version}" if group else version
    root = f"/apis/{group}/{version}" if group else f"/api/{version}"
    paths: dict[str, dict] = {}
    for info in registry.ALL_KINDS:
        if info.group != group or info.version != version or info.resource == "scale":
            continue
        ns = "/namespaces/{namespace}" if info.namespaced else ""
        coll = f"{root}{ns}/{info.resource}"
        item = coll + "/{name}"
        body = {"content": {"application/json": {"schema": {}}, "application/yaml": {"schema": {}}}}
        patch_body = {"content": {"application/json-patch+json": {"schema": {}},
                                  "application/merge-patch+json": {"schema": {}},
                                  "application/apply-patch+yaml": {"schema": {}}}}
        paths[coll] = {
            "get": {"x-kubernetes-action": "list", "x-kubernetes-group-version-kind": _gvk(info),
                    "responses": {"200": {"description": "OK"}}},
            "post": {"x-kubernetes-action": "post", "x-kubernetes-group-version-kind": _gvk(info),
                     "parameters": _params(_QUERY), "requestBody": body,
                     "responses": {"201": {"description": "Created"}}},
        }
        paths[item] = {
            "get": {"x-kubernetes-action": "get", "x-kubernetes-group-version-kind": _gvk(info),
                    "responses": {"200": {"description": "OK"}}},
            "put": {"x-kubernetes-action": "put", "x-kubernetes-group-version-kind": _gvk(info),
                    "parameters": _params(_QUERY), "requestBody": body,
                    "responses": {"200": {"description": "OK"}}},
            "patch": {"x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": _gvk(info),
                      "parameters": _params(_QUERY + ["force"]), "requestBody": patch_body,
                      "responses": {"200": {"description": "OK"}}},
            "delete": {"x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": _gvk(info),
                       "responses": {"200": {"description": "OK"}}},
        }
    custom = any(isinstance(getattr(i.strategy, "schema", None), dict) for i in registry.ALL_KINDS
                 if i.group == group and i.version == version)
    components = schema.openapi_v3_components(gv, (_OBJECT_META,) if custom else ())
    for info in registry.ALL_KINDS:  # custom resources: their CRD's schema, for `kubectl explain`
        crd_schema = getattr(info.strategy, "schema", None)
        if info.group == group and info.version == version and isinstance(crd_schema, dict):
            name = ".".join(reversed(group.split("."))) + f".{version}.{info.kind}"
            props = {**(crd_schema.get("properties") or {})}
            props.setdefault("apiVersion", {"type": "string", "description": _API_VERSION_DOC})
            props.setdefault("kind", {"type": "string", "description": _KIND_DOC})
            props["metadata"] = {"allOf": [{"$ref": "#/components/schemas/" + _OBJECT_META}],
                                 "description": "Standard object's metadata. More info: https://git.k8s.io/"
                                                "community/contributors/devel/sig-architecture/api-conventions.md"
                                                "#metadata"}
            components.setdefault("schemas", {})[name] = {
                **crd_schema, "properties": props, "x-kubernetes-group-version-kind": [_gvk(info)]}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": components,
    }


_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_API_VERSION_DOC = ("APIVersion defines the versioned schema of this representation of an object. Servers should "
                    "convert recognized schemas to the latest internal value, and may reject unrecognized values. "
                    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
                    "#resources")
_KIND_DOC = ("Kind is a string value representing the REST resource this object represents. Servers may infer "
             "this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
             "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")


V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"  # kubectl asks for ...v2@v1.0+protobuf
_V2_INFO = {"title": "Kubernetes", "version": "v1.32.0"}


def _proto_string(field: int, value: str) -> bytes:
    data = value.encode()
    return bytes([field << 3 | 2, len(data)]) + data  # every string here is under 128 bytes


def openapi_v2(protobuf: bool) -> bytes:
    """The definitions-free Swagger 2.0 document (openapi.v2.Document: swagger = 1, info = 2
    with title = 1 and version = 2)."""
    if not protobuf:
        return orjson.dumps({"swagger": "2.0", "info": _V2_INFO, "paths": {}, "definitions": {}})
    info = _proto_string(1, _V2_INFO["title"]) + _proto_string(2, _V2_INFO["version"])
    return _proto_string(1, "2.0") + bytes([2 << 3 | 2, len(info)]) + info


class OpenAPIV3:
    """Pre-encoded documents and the index that points at them by content hash."""

    def __init__(self) -> None:
        self.docs: dict[str, bytes] = {}
        index: dict[str, dict] = {}
        for group, versions in registry.groups():
            for version in versions:
                key = f"apis/{group}/{version}" if group else f"api/{version}"
                raw = orjson.dumps(group_version_doc(group, version))
                digest = hashlib.sha512(raw).hexdigest()[:128].upper()
                self.docs[key] = raw
                index[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
        self.index = orjson.dumps({"paths": index})
