"""OpenAPI v3 schemas of CustomResourceDefinitions: is a schema structural, is an object
valid against it, and what pruning and defaulting do to an object (k8s.io/apiextensions-
apiserver pkg/apiserver/schema: structural, pruning, defaulting; kube-openapi's validate for the
messages).

Validation covers type (with `nullable`, `x-kubernetes-int-or-string`), enum, the string
(minLength, maxLength, pattern), number (minimum, maximum and their exclusive forms,
multipleOf), array (minItems, maxItems, uniqueItems, `x-kubernetes-list-type: set|map`) and
object (required, minProperties, maxProperties, additionalProperties) keywords. CEL rules
(`x-kubernetes-validations`) and `format` are not checked.
"""

from __future__ import annotations

import re
from typing import Any

from pocketkube.core import errors
from pocketkube.core.errors import FieldError

_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# ---- structural ------------------------------------------------------------------------


def structural_errors(schema: dict, path: str) -> list[FieldError]:
    """Why `schema` is not structural (empty when it is), as the CRD's validation reports it."""
    errs: list[FieldError] = []
    if not isinstance(schema, dict):
        return [errors.required(path, "must not be empty")]
    root_type = schema.get("type")
    if root_type != "object" and not schema.get("x-kubernetes-preserve-unknown-fields"):
        if not root_type:
            errs.append(errors.required(f"{path}.type", "must not be empty at the root"))
        else:
            errs.append(errors.invalid_value(f"{path}.type", root_type, "must be object at the root"))
    _walk_structural(schema, path, errs, root=True)
    meta = (schema.get("properties") or {}).get("metadata")
    if isinstance(meta, dict):
        for key in (meta.get("properties") or {}):
            if key not in ("name", "generateName"):
                errs.append(errors.forbidden(f"{path}.properties[metadata].properties[{key}]",
                                             "must not be specified"))
    return errs


def _walk_structural(node: dict, path: str, errs: list[FieldError], root: bool = False) -> None:
    props = node.get("properties")
    if props is not None and node.get("additionalProperties") not in (None, False):
        errs.append(errors.forbidden(f"{path}.additionalProperties",
                                     "additionalProperties and properties are mutual exclusive"))
    if isinstance(props, dict):
        for name, sub in props.items():
            sub_path = f"{path}.properties[{name}]"
            if not isinstance(sub, dict):
                continue
            if not sub.get("type") and not _escape(sub):
                errs.append(errors.required(f"{sub_path}.type", "must not be empty for specified object fields"))
            _walk_structural(sub, sub_path, errs)
    items = node.get("items")
    if isinstance(items, dict):
        if not items.get("type") and not _escape(items):
            errs.append(errors.required(f"{path}.items.type", "must not be empty for specified array items"))
        _walk_structural(items, f"{path}.items", errs)
    elif node.get("type") == "array" and items is None:
        errs.append(errors.required(f"{path}.items", "must be specified"))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        if not extra.get("type") and not _escape(extra):
            errs.append(errors.required(f"{path}.additionalProperties.type",
                                        "must not be empty for specified additionalProperties"))
        _walk_structural(extra, f"{path}.additionalProperties", errs)


def _escape(node: dict) -> bool:
    return bool(node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields"))


# ---- validation ------------------------------------------------------------------------


def validate(value: Any, schema: dict, path: str) -> list[FieldError]:
    """The field errors of `value` against `schema` at `path` ("spec", "spec.size", ...)."""
    errs: list[FieldError] = []
    _validate(value, schema or {}, path, errs)
    return errs


def _in_body(path: str) -> str:
    return path or "body"


def _validate(value: Any, s: dict, path: str, errs: list[FieldError]) -> None:
    if value is None:
        if s.get("nullable") or not s.get("type"):
            return
        errs.append(errors.invalid_value(path, "null", f'{_in_body(path)} in body must be of type {s["type"]}: "null"'))
        return
    want = s.get("type")
    got = _type_of(value)
    if s.get("x-kubernetes-int-or-string"):
        if got not in ("integer", "string"):
            errs.append(errors.invalid_value(path, got, f'{_in_body(path)} in body must be of type integer,string: '
                                                        f'"{got}"'))
            return
    elif want and not (got == want or (want == "number" and got == "integer")):
        errs.append(errors.invalid_value(path, got, f'{_in_body(path)} in body must be of type {want}: "{got}"'))
        return
    enum = s.get("enum")
    if enum and value not in enum:
        errs.append(errors.not_supported(path, value, [e if isinstance(e, str) else str(e) for e in enum]))
    if isinstance(value, str):
        _validate_string(value, s, path, errs)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _validate_number(value, s, path, errs)
    elif isinstance(value, list):
        _validate_array(value, s, path, errs)
    elif isinstance(value, dict):
        _validate_object(value, s, path, errs)


def _validate_string(value: str, s: dict, path: str, errs: list[FieldError]) -> None:
    if "maxLength" in s and len(value) > s["maxLength"]:
        errs.append(errors.too_long(path, value, s["maxLength"]))
    if "minLength" in s and len(value) < s["minLength"]:
        errs.append(errors.invalid_value(path, value, f"{_in_body(path)} in body should be at least "
                                                      f"{s['minLength']} chars long"))
    pattern = s.get("pattern")
    if pattern:
        try:
            ok = re.search(pattern, value) is not None
        except re.error:
            ok = True
        if not ok:
            errs.append(errors.invalid_value(path, value, f"{_in_body(path)} in body should match '{pattern}'"))


def _num(v: float) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _validate_number(value: float, s: dict, path: str, errs: list[FieldError]) -> None:
    where = _in_body(path)
    if "minimum" in s:
        if s.get("exclusiveMinimum") and value <= s["minimum"]:
            errs.append(errors.invalid_value(path, value, f"{where} in body should be greater than {_num(s['minimum'])}"))
        elif value < s["minimum"]:
            errs.append(errors.invalid_value(
                path, value, f"{where} in body should be greater than or equal to {_num(s['minimum'])}"))
    if "maximum" in s:
        if s.get("exclusiveMaximum") and value >= s["maximum"]:
            errs.append(errors.invalid_value(path, value, f"{where} in body should be less than {_num(s['maximum'])}"))
        elif value > s["maximum"]:
            errs.append(errors.invalid_value(
                path, value, f"{where} in body should be less than or equal to {_num(s['maximum'])}"))
    m = s.get("multipleOf")
    if m and (value / m) != int(value / m):
        errs.append(errors.invalid_value(path, value, f"{where} in body should be a multiple of {_num(m)}"))


def _validate_array(value: list, s: dict, path: str, errs: list[FieldError]) -> None:
    if "maxItems" in s and len(value) > s["maxItems"]:
        errs.append(errors.too_many(path, len(value), s["maxItems"]))
    if "minItems" in s and len(value) < s["minItems"]:
        errs.append(errors.invalid_value(path, len(value), f"{_in_body(path)} in body should have at least "
                                                           f"{s['minItems']} items"))
    list_type = s.get("x-kubernetes-list-type")
    if s.get("uniqueItems") or list_type == "set":
        seen: list = []
        for i, item in enumerate(value):
            if item in seen:
                errs.append(errors.duplicate(f"{path}[{i}]", item))
            seen.append(item)
    if list_type == "map":
        keys = s.get("x-kubernetes-list-map-keys") or []
        seen_keys: list = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                k = {key: item.get(key) for key in keys}
                if k in seen_keys:
                    errs.append(errors.duplicate(f"{path}[{i}]", k))
                seen_keys.append(k)
    items = s.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _validate(item, items, f"{path}[{i}]", errs)


def _validate_object(value: dict, s: dict, path: str, errs: list[FieldError]) -> None:
    props = s.get("properties") or {}
    for name in s.get("required") or []:
        if name not in value:
            errs.append(errors.required(f"{path}.{name}" if path else name))
    if "maxProperties" in s and len(value) > s["maxProperties"]:
        errs.append(errors.too_many(path, len(value), s["maxProperties"]))
    if "minProperties" in s and len(value) < s["minProperties"]:
        errs.append(errors.invalid_value(path, len(value), f"{_in_body(path)} in body should have at least "
                                                           f"{s['minProperties']} properties"))
    extra = s.get("additionalProperties")
    for key, item in value.items():
        sub_path = f"{path}.{key}" if path else key
        if key in props:
            if not (not path and key == "metadata"):
                _validate(item, props[key], sub_path, errs)
        elif isinstance(extra, dict):
            _validate(item, extra, f"{path}[{key}]" if path else key, errs)


# ---- pruning and defaults --------------------------------------------------------------


def prune(obj: Any, schema: dict, path: str = "", root: bool = True) -> list[str]:
    """Remove (in place) the fields the schema does not declare; returns their paths."""
    pruned: list[str] = []
    _prune(obj, schema or {}, path, pruned, root)
    return pruned


def _prune(value: Any, s: dict, path: str, pruned: list[str], root: bool = False) -> None:
    if isinstance(value, dict):
        if s.get("x-kubernetes-preserve-unknown-fields") and not s.get("properties"):
            return
        props = s.get("properties") or {}
        extra = s.get("additionalProperties")
        for key in list(value):
            if root and key in ("apiVersion", "kind", "metadata"):
                continue
            sub_path = f"{path}.{key}" if path else key
            if key in props:
                _prune(value[key], props[key], sub_path, pruned)
            elif isinstance(extra, dict):
                _prune(value[key], extra, sub_path, pruned)
            elif extra is True or s.get("x-kubernetes-preserve-unknown-fields"):
                continue
            else:
                del value[key]
                pruned.append(sub_path)
    elif isinstance(value, list):
        items = s.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                _prune(item, items, f"{path}[{i}]", pruned)


def apply_defaults(value: Any, s: dict) -> None:
    """Fill `default`s (in place) for fields missing from present objects, recursively."""
    if isinstance(value, dict):
        props = s.get("properties") or {}
        for key, sub in props.items():
            if key not in value and isinstance(sub, dict) and "default" in sub:
                value[key] = _copy(sub["default"])
        for key, item in value.items():
            if key in props and isinstance(props[key], dict):
                apply_defaults(item, props[key])
            elif isinstance(s.get("additionalProperties"), dict):
                apply_defaults(item, s["additionalProperties"])
    elif isinstance(value, list) and isinstance(s.get("items"), dict):
        for item in value:
            apply_defaults(item, s["items"])


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v
