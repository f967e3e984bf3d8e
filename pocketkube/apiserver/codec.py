"""Content negotiation: request bodies in, response bodies out.

Request bodies arrive as JSON, YAML, Kubernetes protobuf or one of the four patch types;
responses are JSON objects, meta.k8s.io Tables or PartialObjectMetadata, chosen from
the Accept header as the apiserver does (kubectl-compat.md 1.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import yaml

from pocketkube.apiserver import protobuf, schema
from pocketkube.core import errors

MAX_BODY = 3 * 1024 * 1024  # the apiserver's request body limit
JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = protobuf.PROTOBUF_CONTENT_TYPE
ACCEPTED_BODY_TYPES = [JSON, YAML, PROTOBUF]
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
ACCEPTED_PATCH_TYPES = list(PATCH_TYPES)


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


@dataclass
class Decoded:
    """A decoded object body, with what a strict Go decoder would have said about it:
    unknown or duplicate fields (`unknown field "spec.x"`, in body order) and the first
    wrong JSON type, if any (which wins over the strict errors, as in Go)."""

    obj: object
    strict_errors: list[str]
    type_error: str | None = None


def decode_body(body: bytes, content_type: str | None, expected: tuple[str, str]) -> Decoded:
    """An object body (create, update) for the (apiVersion, kind) the URL names.
    Raises 415 for unknown types, 400 for data that does not parse."""
    if len(body) > MAX_BODY:
        raise errors.too_large()
    mt = media_type(content_type) or JSON  # no Content-Type: the first supported type, as the apiserver does
    api_version, kind = expected
    if mt == JSON:
        try:
            r = schema.decode_json(api_version, kind, body)
        except ValueError as exc:
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {_short(exc)}") from None
        except RecursionError:
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {TOO_DEEP}") from None
        obj = without_lone_surrogates(r.obj) if _may_hold_surrogates(body) else r.obj
        return Decoded(obj, r.strict_errors, r.type_error)
    if mt == YAML:
        obj = _yaml(body)
        if not isinstance(obj, dict):
            return Decoded(obj, [])
        type_error = schema.first_type_error(api_version, kind, obj)
        if type_error:
            return Decoded(obj, [], type_error)
        return Decoded(obj, [f'unknown field "{f}"' for f in schema.unknown_fields(api_version, kind, obj)])
    if mt == PROTOBUF:
        return Decoded(protobuf.decode(body, expected), [])
    raise errors.unsupported_media_type(mt, ACCEPTED_BODY_TYPES)


def patch_type(content_type: str | None) -> str:
    """json, merge, strategic or apply; 415 for anything else."""
    mt = media_type(content_type)
    kind = PATCH_TYPES.get(mt)
    if kind is None:
        raise errors.unsupported_media_type(mt, ACCEPTED_PATCH_TYPES)
    return kind


def check_body_type(method: str, content_type: str | None) -> None:
    """415 before the body is read, as the apiserver negotiates the decoder first."""
    if method == "PATCH":
        patch_type(content_type)
    elif method in ("POST", "PUT"):
        mt = media_type(content_type) or JSON
        if mt not in ACCEPTED_BODY_TYPES:
            raise errors.unsupported_media_type(mt, ACCEPTED_BODY_TYPES)


def decode_patch(body: bytes, content_type: str | None) -> tuple[str, object, list[str]]:
    """A PATCH body: (patch type, parsed body, duplicate fields)."""
    if len(body) > MAX_BODY:
        raise errors.too_large()
    kind = patch_type(content_type)
    if kind == "apply":
        return kind, _yaml(body), []
    try:
        obj, dups = schema.parse_json_strict(body)
        if _may_hold_surrogates(body):
            obj = without_lone_surrogates(obj)
    except ValueError as exc:
        raise errors.bad_request(f"error decoding patch: {_short(exc)}") from None
    except RecursionError:
        raise errors.bad_request(f"error decoding patch: {TOO_DEEP}") from None
    return kind, obj, dups


TOO_DEEP = "exceeded max depth"
MAX_YAML_ALIASES = 1000


def without_lone_surrogates(value):
    """Go's decoder turns an unpaired UTF-16 surrogate escape ("\\ud800") into U+FFFD;
    Python keeps it, and then no encoder can write the string back. Same result as Go."""
    if isinstance(value, str):
        if any("\ud800" <= ch <= "\udfff" for ch in value):
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, dict):
        return {without_lone_surrogates(k): without_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_lone_surrogates(v) for v in value]
    return value


def _may_hold_surrogates(body: bytes) -> bool:
    return b"\\ud" in body or b"\\uD" in body


def _yaml(body: bytes) -> object:
    try:
        aliases = 0
        for event in yaml.parse(body, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_YAML_ALIASES:
                    raise errors.bad_request("error converting YAML to JSON: yaml: document contains "
                                             "excessive aliasing")
        obj = yaml.safe_load(body)
        return _jsonable(obj)
    except yaml.YAMLError as exc:
        raise errors.bad_request(f"error converting YAML to JSON: {_short(exc)}") from None
    except RecursionError:
        raise errors.bad_request(f"error converting YAML to JSON: yaml: {TOO_DEEP}") from None


def _jsonable(value):
    """YAML may hold dates or non-string keys; the API sees what JSON would carry."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


@dataclass(frozen=True)
class Accept:
    """What the client asked to get back."""

    table: bool = False
    partial_metadata: bool = False
    include_object: str = "Metadata"  # for tables: None | Metadata | Object
    acceptable: bool = True  # False: nothing the client accepts can be served (406)


def parse_accept(header: str | None, include_object: str | None) -> Accept:
    """The first acceptable choice in Accept order: a Table, PartialObjectMetadata or plain
    JSON (YAML and protobuf requests are answered in JSON when JSON is also acceptable)."""
    include = include_object or "Metadata"
    if not header or not header.strip():
        return Accept(include_object=include)
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        mt = fields[0].lower()
        params = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        if mt in (JSON, "*/*", "application/*"):
            as_ = params.get("as")
            if as_ is None:
                return Accept(include_object=include)
            if params.get("g") != "meta.k8s.io":
                continue
            if as_ == "Table" and params.get("v") in ("v1", "v1beta1"):
                return Accept(table=True, include_object=include)
            if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
                return Accept(partial_metadata=True, include_object=include)
        elif mt == YAML:
            return Accept(include_object=include)
    return Accept(include_object=include, acceptable=False)


def dumps(obj: object) -> bytes:
    return orjson.dumps(obj)


def partial_object_metadata(obj: dict) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}
