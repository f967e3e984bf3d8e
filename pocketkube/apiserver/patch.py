"""The three PATCH body types of the Kubernetes API, applied to plain JSON objects.

Owns `json_patch` (application/json-patch+json, RFC 6902), `merge_patch`
(application/merge-patch+json, RFC 7386) and `strategic_merge_patch`
(application/strategic-merge-patch+json), with the merge keys and strategies of the
built-in types in scope. Pure functions: the inputs are never mutated, the result is a
new object.

The behaviour follows the code the API server runs, quirks included: evanphx/json-patch
v4 for the first two (as called by apiserver's handlers/patch.go) and apimachinery's
strategicpatch for the third. Failures raise `APIError` with the code, reason and message
the API server answers with (the handler's default `fieldValidation=Warn`, i.e. strict
decoding of the patch body). Where the server reports only a generic 422, the library's
own text is kept as the exception's `__cause__`.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from pocketkube.apiserver.schema import json_kind
from pocketkube.core.objects import deep_copy
from pocketkube.core.errors import APIError, bad_request, go_quote, invalid, invalid_value, too_large

__all__ = ["json_patch", "merge_patch", "strategic_merge_patch"]

# What NewGenericServerResponse(422, ...) says when the patch itself cannot be applied.
REJECTED_MESSAGE = "the server rejected our request due to an error in our request"
MAX_JSON_PATCH_OPERATIONS = 10000


class PatchFailure(Exception):
    """The patch library's own description of why a patch did not apply."""


def _rejected() -> APIError:
    return APIError(422, "Invalid", REJECTED_MESSAGE, {})


# ---------------------------------------------------------------------------------------
# JSON values as Go sees them
# ---------------------------------------------------------------------------------------

def _go_type(value: Any) -> str:
    """The Go type a decoded JSON value has (apiserver decodes integers as int64)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    return type(value).__name__


def _same(a: Any, b: Any) -> bool:
    """JSON equality that keeps types apart (1 != 1.0, true != 1), as Go's == does."""
    if _go_type(a) != _go_type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _go_float(value: float) -> str:
    """fmt's %v of a float64: shortest digits, exponent form outside [1e-4, 1e6)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # position of the decimal point in `digits`
    text = "-" if sign else ""
    if point - 1 < -4 or point - 1 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        exp = point - 1
        return f"{text}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{text}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return text + digits + "0" * (point - len(digits))
    return f"{text}{digits[:point]}.{digits[point:]}"


def _go_format(value: Any, verb: str = "v") -> str:
    """fmt's %v (or %s) of a decoded JSON value: map[k:v] with sorted keys, [a b]."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_format(value[k], verb)}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_format(v, verb) for v in value) + "]"
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>" if verb == "v" else "%!s(<nil>)"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = _go_float(value)
    else:
        text = str(value)
    return text if verb == "v" else f"%!s({_go_type(value)}={text})"


# ---------------------------------------------------------------------------------------
# RFC 6902: application/json-patch+json
# ---------------------------------------------------------------------------------------

def json_patch(doc: dict, ops: Any) -> dict:
    """Apply a JSON patch (a list of operations) the way the API server does.

    Operations: add, remove, replace, move, copy, test; "-" appends to an array; pointer
    tokens unescape ~1 then ~0; negative array indices count from the end. Like
    evanphx/json-patch v4, `replace` of a missing object member adds it, `copy` from a
    missing member copies null, and a `test` of a missing member against null passes.
    A body that is not a list of operations is a 400; an operation that does not apply
    is the generic 422 (the library's text is on `__cause__`).
    """
    _check_operation_shapes(ops)
    if ops is None:
        return _copy(doc)
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise too_large("Request entity too large: The allowed maximum operations in a JSON patch "
                        f"is {MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}")
    root = [_copy(doc)]
    try:
        for op in ops:
            _apply_operation(root, op if isinstance(op, dict) else {})
    except PatchFailure as failure:
        raise _rejected() from failure
    if not isinstance(root[0], dict):
        raise _not_an_object(root[0])
    return root[0]


def _check_operation_shapes(ops: Any) -> None:
    """The strict decode into []jsonPatchOp the handler does first: wrong types are 400s."""
    prefix = "error decoding patch: json: cannot unmarshal"
    if ops is None:
        return
    if not isinstance(ops, list):
        raise bad_request(f"{prefix} {json_kind(ops)} into Go value of type []handlers.jsonPatchOp")
    for op in ops:
        if op is None:
            continue
        if not isinstance(op, dict):
            raise bad_request(f"{prefix} {json_kind(op)} into Go value of type handlers.jsonPatchOp")
        for name, value in op.items():
            if name in ("op", "path", "from") and value is not None and not isinstance(value, str):
                raise bad_request(f"{prefix} {json_kind(value)} into Go struct field "
                                  f"jsonPatchOp.{name} of type string")


def _not_an_object(result: Any) -> APIError:
    """A patch that turned the object into an array cannot be decoded back into a kind."""
    text = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
    detail = ("couldn't get version/kind; json parse error: json: cannot unmarshal array into Go "
              'value of type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
              'Kind string "json:\\"kind,omitempty\\"" }')
    return invalid("", "", "", [invalid_value("patch", text, detail)])


def _apply_operation(root: list, op: dict) -> None:
    kind = op.get("op")
    if not isinstance(kind, str):
        kind = "unknown"
    operation = _OPERATIONS.get(kind)
    if operation is None:
        raise PatchFailure(f"Unexpected kind: {kind}")
    operation(root, op)


def _op_add(root: list, op: dict) -> None:
    path = op.get("path")
    if path is None:
        raise PatchFailure("add operation failed to decode path: missing value")
    container, key = _locate(root[0], path, f'add operation does not apply: doc is missing path: "{path}"')
    try:
        _insert(container, key, copy.deepcopy(op.get("value")))
    except PatchFailure as failure:
        raise PatchFailure(f"error in add for path: '{path}': {failure}") from None


def _op_remove(root: list, op: dict) -> None:
    path = op.get("path")
    if path is None:
        raise PatchFailure("remove operation failed to decode path: missing value")
    container, key = _locate(root[0], path, f'remove operation does not apply: doc is missing path: "{path}"')
    try:
        _delete(container, key)
    except PatchFailure as failure:
        raise PatchFailure(f"error in remove for path: '{path}': {failure}") from None


def _op_replace(root: list, op: dict) -> None:
    path = op.get("path")
    if path is None:
        raise PatchFailure("replace operation failed to decode path: operation missing path field: missing value")
    value = copy.deepcopy(op.get("value"))
    if path == "":
        if not isinstance(value, (dict, list)):
            raise PatchFailure("replace operation value must be object or array: %!w(<nil>)")
        root[0] = value
        return
    container, key = _locate(root[0], path, f"replace operation does not apply: doc is missing path: {path}")
    try:
        _lookup_member(container, key)
    except PatchFailure:
        raise PatchFailure(f"replace operation does not apply: doc is missing key: {path}: missing value") from None
    try:
        _overwrite(container, key, value)
    except PatchFailure as failure:
        raise PatchFailure(f"error in remove for path: '{path}': {failure}") from None


def _op_move(root: list, op: dict) -> None:
    source = op.get("from")
    if source is None:
        raise PatchFailure("move operation failed to decode from: operation, missing from field: missing value")
    container, key = _locate(root[0], source, f"move operation does not apply: doc is missing from path: {source}")
    try:
        value = _lookup_member(container, key)
        _delete(container, key)
    except PatchFailure as failure:
        raise PatchFailure(f"error in move for path: '{key}': {failure}") from None
    path = op.get("path")
    if path is None:
        raise PatchFailure("move operation failed to decode path: operation missing path field: missing value")
    container, key = _locate(root[0], path, f"move operation does not apply: doc is missing destination path: {path}")
    try:
        _insert(container, key, value)
    except PatchFailure as failure:
        raise PatchFailure(f"error in move for path: '{path}': {failure}") from None


def _op_copy(root: list, op: dict) -> None:
    source = op.get("from")
    if source is None:
        raise PatchFailure("copy operation failed to decode from: operation, missing from field: missing value")
    container, key = _locate(root[0], source, f"copy operation does not apply: doc is missing from path: {source}")
    try:
        value = _lookup_member(container, key)
    except PatchFailure as failure:
        raise PatchFailure(f"error in copy for from: '{source}': {failure}") from None
    path = op.get("path")
    if path is None:
        raise PatchFailure("copy operation failed to decode path: missing value")
    container, key = _locate(root[0], path, f"copy operation does not apply: doc is missing destination path: {path}")
    try:
        _insert(container, key, copy.deepcopy(value))
    except PatchFailure as failure:
        raise PatchFailure(f"error while adding value during copy: {failure}") from None


def _op_test(root: list, op: dict) -> None:
    path = op.get("path")
    if path is None:
        raise PatchFailure("test operation failed to decode path: operation missing path field: missing value")
    failed = PatchFailure(f"testing value {path} failed: test failed")
    if path == "":
        if "value" in op and _same(root[0], op["value"]):
            return
        raise failed
    container, key = _locate(root[0], path, f"test operation does not apply: is missing path: {path}")
    try:
        actual = _lookup_member(container, key)
    except PatchFailure as failure:
        raise PatchFailure(f"error in test for path: '{path}': {failure}") from None
    expected = op.get("value")
    if actual is None and expected is None:
        return
    if expected is None or not _same(actual, expected):
        raise failed


_OPERATIONS = {"add": _op_add, "remove": _op_remove, "replace": _op_replace,
               "move": _op_move, "copy": _op_copy, "test": _op_test}

_POINTER_ESCAPE = re.compile(r"~[01]")
_GO_INT = re.compile(r"[+-]?[0-9]+\Z")


def _unescape(token: str) -> str:
    return _POINTER_ESCAPE.sub(lambda m: "/" if m.group() == "~1" else "~", token)


def _locate(root: Any, path: str, missing: str) -> tuple[Any, str]:
    """The container that holds the pointer's last token, and that token.

    As in json-patch v4, the part before the first "/" is ignored, and a path without
    any "/" finds nothing.
    """
    tokens = path.split("/")
    if len(tokens) < 2:
        raise PatchFailure(f"{missing}: missing value")
    node = root
    for token in tokens[1:-1]:
        try:
            node = _lookup_member(node, _unescape(token))
        except PatchFailure:
            node = None
        if not isinstance(node, (dict, list)):
            raise PatchFailure(f"{missing}: missing value")
    return node, _unescape(tokens[-1])


def _array_index(token: str) -> int:
    """Go's strconv.Atoi, with its error text."""
    if not _GO_INT.match(token):
        raise PatchFailure(f"strconv.Atoi: parsing {go_quote(token)}: invalid syntax")
    if len(token.lstrip("+-").lstrip("0")) > 19 or not -(2 ** 63) <= int(token) < 2 ** 63:
        raise PatchFailure(f"strconv.Atoi: parsing {go_quote(token)}: value out of range")
    return int(token)


def _invalid_index(index: int) -> PatchFailure:
    return PatchFailure(f"Unable to access invalid index: {index}: invalid index referenced")


def _lookup_member(container: Any, key: str) -> Any:
    """The member at `key`; a missing object member reads as null, as in json-patch v4."""
    if isinstance(container, dict):
        return container.get(key)
    index = _array_index(key)
    if index < 0:
        if index < -len(container):
            raise _invalid_index(index)
        index += len(container)
    if index >= len(container):
        raise _invalid_index(index)
    return container[index]


def _insert(container: Any, key: str, value: Any) -> None:
    if isinstance(container, dict):
        container[key] = value
        return
    if key == "-":
        container.append(value)
        return
    try:
        index = _array_index(key)
    except PatchFailure as failure:
        raise PatchFailure(f"value was not a proper array index: '{key}': {failure}") from None
    size = len(container) + 1
    if index >= size or index < -size:
        raise _invalid_index(index)
    container.insert(index + size if index < 0 else index, value)


def _overwrite(container: Any, key: str, value: Any) -> None:
    if isinstance(container, dict):
        container[key] = value
        return
    index = _array_index(key)
    if index < -len(container):
        raise _invalid_index(index)
    container[index] = value


def _delete(container: Any, key: str) -> None:
    if isinstance(container, dict):
        if key not in container:
            raise PatchFailure(f"Unable to remove nonexistent key: {key}: missing value")
        del container[key]
        return
    index = _array_index(key)
    if index >= len(container) or index < -len(container):
        raise _invalid_index(index)
    del container[index]


# ---------------------------------------------------------------------------------------
# RFC 7386: application/merge-patch+json
# ---------------------------------------------------------------------------------------

def merge_patch(doc: dict, patch: Any) -> dict:
    """Apply a JSON merge patch: maps merge recursively, null deletes a member, any other
    value (arrays included) replaces. Nulls inside a value that is added are pruned, as
    json-patch v4 does. The patch body must be an object: null is a 400 "Invalid JSON
    Patch", any other non-object a 400 decoding error.
    """
    if patch is None:
        raise bad_request("Invalid JSON Patch")
    if not isinstance(patch, dict):
        raise bad_request(f"error decoding patch: json: cannot unmarshal {json_kind(patch)} "
                          "into Go value of type map[string]interface {}")
    result = _copy(doc)
    _merge_members(result, _copy(patch))
    return result


def _copy(value: Any) -> Any:
    """A deep copy: through orjson for JSON-shaped data (every object and body the server
    decoded; several times faster, and each status write of a pod copies the whole pod),
    copy.deepcopy for anything else."""
    try:
        return deep_copy(value)
    except TypeError:  # orjson.JSONEncodeError too: a value JSON has no form for
        return copy.deepcopy(value)


def _merge_members(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif key not in target:
            target[key] = _prune_nulls(value)
        else:
            target[key] = _merged_value(target[key], value)


def _merged_value(current: Any, value: Any) -> Any:
    if not isinstance(current, dict):
        return _prune_nulls(value)
    if not isinstance(value, dict):
        return value
    _merge_members(current, value)
    return current


def _prune_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value if v is not None]
    return value


# ---------------------------------------------------------------------------------------
# Strategic merge patch: application/strategic-merge-patch+json
# ---------------------------------------------------------------------------------------

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"


@dataclass(frozen=True)
class _Field:
    """The patch metadata of one field (its Go struct tags).

    `strategy` "merge" merges a list by `merge_key` (a list of primitives when the key
    is empty); every other list is replaced whole. Maps always merge. `schema` holds the
    fields of the value, or of each list element. The `retainKeys` strategy needs no
    entry: like apimachinery, the server honours `$retainKeys` wherever it appears.
    """

    strategy: str = ""
    merge_key: str = ""
    schema: Mapping[str, "_Field"] | None = None


_ATOMIC = _Field()
_BY_TYPE = _Field("merge", "type")
_BY_NAME = _Field("merge", "name")
_CONDITIONS = {"conditions": _BY_TYPE}

_OBJECT_META = {"finalizers": _Field("merge"), "ownerReferences": _Field("merge", "uid")}
_CONTAINER = {
    "ports": _Field("merge", "containerPort"),
    "env": _BY_NAME,
    "volumeMounts": _Field("merge", "mountPath"),
    "volumeDevices": _Field("merge", "devicePath"),
}
_POD_SPEC = {
    "volumes": _BY_NAME,  # merge,retainKeys
    "initContainers": _Field("merge", "name", _CONTAINER),
    "containers": _Field("merge", "name", _CONTAINER),
    "ephemeralContainers": _Field("merge", "name", _CONTAINER),
    "imagePullSecrets": _BY_NAME,
    "hostAliases": _Field("merge", "ip"),
    "topologySpreadConstraints": _Field("merge", "topologyKey"),
    "schedulingGates": _BY_NAME,
    "resourceClaims": _BY_NAME,  # merge,retainKeys
}
_POD_STATUS = {
    "conditions": _BY_TYPE,
    "podIPs": _Field("merge", "ip"),
    "hostIPs": _Field("merge", "ip"),
    "resourceClaimStatuses": _BY_NAME,  # merge,retainKeys
}
_METADATA = {"metadata": _Field(schema=_OBJECT_META)}
_POD_TEMPLATE = {**_METADATA, "spec": _Field(schema=_POD_SPEC)}
# Deployment, ReplicaSet, StatefulSet, DaemonSet. DeploymentSpec.strategy is retainKeys;
# DaemonSetSpec.updateStrategy carries no patch tags in apps/v1.
_WORKLOAD = {**_METADATA,
             "spec": _Field(schema={"template": _Field(schema=_POD_TEMPLATE)}),
             "status": _Field(schema=_CONDITIONS)}

_KINDS: dict[str, Mapping[str, _Field]] = {
    "Pod": {**_METADATA, "spec": _Field(schema=_POD_SPEC), "status": _Field(schema=_POD_STATUS)},
    "Service": {**_METADATA, "spec": _Field(schema={"ports": _Field("merge", "port")}),
                "status": _Field(schema=_CONDITIONS)},
    "Namespace": {**_METADATA, "status": _Field(schema=_CONDITIONS)},
    "Node": {**_METADATA, "spec": _Field(schema={"podCIDRs": _Field("merge")}),
             "status": _Field(schema={"conditions": _BY_TYPE, "addresses": _BY_TYPE})},
    "ServiceAccount": {**_METADATA, "secrets": _BY_NAME},
    "Deployment": _WORKLOAD,
    "ReplicaSet": _WORKLOAD,
    "StatefulSet": _WORKLOAD,
    "DaemonSet": _WORKLOAD,
    "ReplicationController": _WORKLOAD,
    "Job": _WORKLOAD,
    "CronJob": {**_METADATA, "spec": _Field(schema={"jobTemplate": _Field(schema={
        **_METADATA, "spec": _Field(schema={"template": _Field(schema=_POD_TEMPLATE)})})})},
    "ValidatingWebhookConfiguration": {**_METADATA, "webhooks": _BY_NAME},
    "MutatingWebhookConfiguration": {**_METADATA, "webhooks": _BY_NAME},
    # Only ObjectMeta has merge lists; Endpoints subsets, EndpointSlice endpoints/ports,
    # Ingress rules/tls are atomic, Secret/ConfigMap data are maps.
    **{kind: _METADATA for kind in ("Endpoints", "Secret", "ConfigMap", "Event", "EndpointSlice",
                                    "Ingress", "IngressClass", "Lease", "Scale", "Role", "ClusterRole",
                                    "RoleBinding", "ClusterRoleBinding", "ResourceQuota", "LimitRange",
                                    "NetworkPolicy")},
}


class _MergeError(Exception):
    """A strategicpatch error; `code` is how interpretStrategicMergePatchError reports it."""

    def __init__(self, message: str, code: int = 500):
        super().__init__(message)
        self.code = code


def _bad_format(what: str) -> _MergeError:
    return _MergeError(f"invalid patch format of {what}", 400)


def _bad_arg_type(expected: str, actual: Any) -> _MergeError:
    received = "%!s(<nil>)" if actual is None else _go_type(actual)
    return _MergeError(f"expected a {expected}, but received a {received}")


def _no_merge_key(item: dict, merge_key: str) -> _MergeError:
    return _MergeError(f"map: {_go_format(item)} does not contain declared merge key: {merge_key}")


def _bad_patch_type(directive: Any, item: dict) -> _MergeError:
    return _MergeError(f"unknown patch type: {_go_format(directive, 's')} in map: {_go_format(item)}")


_MAP = "map[string]interface {}"
_SLICE = "[]interface {}"


def strategic_merge_patch(doc: dict, patch: Any, kind: str) -> dict:
    """Apply a strategic merge patch to an object of kind `kind`.

    Maps merge and null deletes a key. A list with the merge strategy merges by its merge
    key (items missing from the object are added; an item `{"$patch": "delete", key}`
    deletes; an item `{"$patch": "replace"}` replaces the whole list); a merge list of
    primitives is a set union. Order, as apimachinery computes it: `$setElementOrder`
    first, then patch order, then live order, so without `$setElementOrder` new items
    land before the live ones. Every other list is replaced. Directives: `$patch`
    replace/delete/merge in maps, `$retainKeys`, `$setElementOrder/<list>` and
    `$deleteFromPrimitiveList/<list>`. Unknown kinds have no merge lists.
    A null body changes nothing; a body that is not an object is a 400.
    """
    if patch is None:
        return copy.deepcopy(doc)
    if not isinstance(patch, dict):
        raise bad_request(f"json: cannot unmarshal {json_kind(patch)} into Go value of type "
                          "map[string]interface {}")
    try:
        return _merge_map(copy.deepcopy(doc), copy.deepcopy(patch), _KINDS.get(kind))
    except _MergeError as error:
        if error.code == 400:
            raise bad_request(str(error)) from None
        if error.code == 422:
            raise _rejected() from PatchFailure(str(error))
        raise APIError(500, "", str(error)) from None


def _field(schema: Mapping[str, _Field] | None, key: str) -> _Field:
    return schema.get(key, _ATOMIC) if schema else _ATOMIC


def _is_directive_key(key: str) -> bool:
    return key in (DIRECTIVE, RETAIN_KEYS) or key.startswith((SET_ELEMENT_ORDER, DELETE_FROM_PRIMITIVE_LIST))


def _as_decoded(value: Any) -> Any:
    """A patch value taken whole, as decoding it into the typed object leaves it:
    null members and directive keys gone."""
    if isinstance(value, dict):
        return {k: _as_decoded(v) for k, v in value.items() if v is not None and not _is_directive_key(k)}
    if isinstance(value, list):
        return [_as_decoded(v) for v in value]
    return value


def _without_directives(value: Any) -> tuple[bool, Any]:
    """apimachinery's discardNullValuesFromPatch + removeDirectives for a value that is
    new to the object: maps carrying `$patch` are dropped. Returns (keep, value)."""
    if isinstance(value, dict):
        if value.get(DIRECTIVE) is not None:
            return False, None
        kept = {}
        for key, member in value.items():
            if member is None or _is_directive_key(key):
                continue
            keep, member = _without_directives(member)
            if keep:
                kept[key] = member
        return True, kept
    if isinstance(value, list):
        return True, [v for keep, v in map(_without_directives, value) if keep]
    return True, value


def _merge_map(original: dict, patch: dict, schema: Mapping[str, _Field] | None) -> dict:
    if DIRECTIVE in patch:
        return _map_directive(patch)
    _apply_retain_keys(original, patch)
    _merge_ordered_lists(original, patch, schema)
    for key, value in patch.items():
        deletion_list = key.startswith(DELETE_FROM_PRIMITIVE_LIST)
        if deletion_list:
            key = _directive_target(key, DELETE_FROM_PRIMITIVE_LIST, "primitive list")
        if value is None:
            original.pop(key, None)
            continue
        if key not in original or _go_type(original[key]) != _go_type(value):
            if not deletion_list:
                keep, value = _without_directives(value)
                if keep:
                    original[key] = value
            continue
        current, field = original[key], _field(schema, key)
        if isinstance(current, dict):
            original[key] = _merge_map(current, value, field.schema)
        elif isinstance(current, list):
            original[key] = _merge_list_field(current, value, field, deletion_list)
        else:
            original[key] = value
    return original


def _map_directive(patch: dict) -> dict:
    directive = patch[DIRECTIVE]
    if directive == "replace":
        return _as_decoded({k: v for k, v in patch.items() if k != DIRECTIVE})
    if directive == "delete":
        return {}
    raise _bad_patch_type(directive, patch)


def _directive_target(key: str, prefix: str, what: str) -> str:
    """`$setElementOrder/containers` -> `containers`."""
    head, slash, target = key.partition("/")
    if not slash or head != prefix:
        raise _bad_format(what)
    return target


def _apply_retain_keys(original: dict, patch: dict) -> None:
    if RETAIN_KEYS not in patch:
        return
    retained = patch.pop(RETAIN_KEYS)
    if not isinstance(retained, list):
        raise _bad_format("retainKeys")
    names = {k for k in retained if isinstance(k, str)}
    for key, value in patch.items():
        if value is None or key.startswith((DELETE_FROM_PRIMITIVE_LIST, SET_ELEMENT_ORDER)):
            continue
        if key not in names:
            raise _bad_format("retainKeys")
    for key in [k for k in original if k not in names]:
        del original[key]


def _merge_ordered_lists(original: dict, patch: dict, schema: Mapping[str, _Field] | None) -> None:
    """Merge each list that has a `$setElementOrder/<list>` and put it in that order."""
    for directive_key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(directive_key)
        if not isinstance(order, list):
            raise _bad_arg_type(_SLICE, order)
        key = _directive_target(directive_key, SET_ELEMENT_ORDER, "setElementOrder list")
        current, patched = original.get(key, []), patch.get(key, [])
        for value in (current, patched):
            if not isinstance(value, list):
                raise _bad_arg_type(_SLICE, value)
        field = _field(schema, key)
        _check_order_covers_patch(patched, order, field.merge_key)
        if key in original and key in patch:
            merged = _merge_list_field(current, patched, field, False)
        elif key in patch:
            merged = _without_directives(patched)[1]
        elif key in original:
            merged = current
        else:
            continue
        if field.merge_key:
            in_order, others = _partition_maps(merged, order, field.merge_key)
        else:
            in_order, others = _partition_primitives(merged, order)
        element_kind = _element_type(current, patched)
        original[key] = _normalize_order(in_order, others, order, current, field.merge_key, element_kind)
        patch.pop(key, None)


def _check_order_covers_patch(patched: list, order: list, merge_key: str) -> None:
    """validatePatchWithSetOrderList: patch items must appear in the order list, in order."""
    if not order or not patched:
        return
    items = _split_deletions(patched)[0] if merge_key else patched
    item_index = order_index = 0
    while item_index < len(items) and order_index < len(order):
        item = items[item_index]
        if isinstance(item, dict) and DIRECTIVE in item:
            item_index += 1
            continue
        if _merge_keys_equal(item, order[order_index], merge_key):
            item_index += 1
        order_index += 1
    if item_index < len(items) and order_index >= len(order):
        raise _MergeError(f"The order in patch list:\n{_go_format(patched)}\n doesn't match "
                          f"{SET_ELEMENT_ORDER} list:\n{_go_format(order)}\n")


def _merge_keys_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _same(left, right)
    for item in (left, right):
        if not isinstance(item, dict):
            raise _bad_arg_type(_MAP, item)
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
    return _same(left[merge_key], right[merge_key])


def _merge_list_field(current: list, patched: list, field: _Field, deletion_list: bool) -> list:
    if field.strategy == "merge" or deletion_list:
        return _merge_list(current, patched, field, deletion_list)
    return _as_decoded(patched)


def _merge_list(current: list, patched: list, field: _Field, deletion_list: bool) -> list:
    if not current and not patched:
        return current
    element_kind = _element_type(current, patched)
    merge_key = field.merge_key
    if element_kind != _MAP:
        if deletion_list:
            return [v for v in current if not any(_same(v, d) for d in patched)]
        merged = _deduplicate(current + patched)
    else:
        if not merge_key:
            # Only []string fields have the merge strategy without a merge key.
            raise _MergeError("cannot merge lists without merge key for string")
        current, patched = _apply_item_directives(current, patched, merge_key)
        merged = _merge_items(current, patched, merge_key, field.schema)
    if merge_key:
        in_patch, server_only = _partition_maps(merged, patched, merge_key)
    else:
        in_patch, server_only = _partition_primitives(merged, patched)
    return _normalize_order(in_patch, server_only, patched, current, merge_key, element_kind)


def _element_type(*lists: list) -> str:
    """sliceElementType: every element of every list has the same type, and is no list."""
    found = ""
    for items in lists:
        for item in items:
            kind = _go_type(item)
            if not found:
                found = kind
                if kind == _SLICE:
                    raise _MergeError("lists of lists are not supported", 422)
            elif kind != found:
                raise _MergeError(f"list element types are not identical: {_go_format(list(lists))}")
    if not found:
        raise _MergeError("no elements in any of the given slices")
    return found


def _deduplicate(items: list) -> list:
    """deduplicateScalars, which moves the last element into each duplicate's place."""
    items = list(items)
    last = len(items) - 1
    i = 0
    while i < last:
        j = i + 1
        while j <= last:
            if _same(items[i], items[j]):
                items[j] = items[last]
                items.pop()
                last -= 1
            else:
                j += 1
        i += 1
    return items


def _apply_item_directives(current: list, patched: list, merge_key: str) -> tuple[list, list]:
    """Apply `$patch` list items: delete by merge key, or replace the whole list."""
    plain, replace = [], False
    for item in patched:
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            current = _without_key_value(current, merge_key, item[merge_key])
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _MergeError("merging lists cannot yet be specified in the patch")
        else:
            raise _bad_patch_type(directive, item)
    if replace:
        return [_as_decoded(item) for item in plain], []
    return current, plain


def _without_key_value(items: list, merge_key: str, value: Any) -> list:
    """deleteMatchingEntries: drop every map whose merge key is `value`."""
    remaining = [item for item in items
                 if not (isinstance(item, dict) and merge_key in item and _same(item[merge_key], value))]
    for index, item in enumerate(remaining):
        if not isinstance(item, dict):
            raise _not_a_map(index)
    return remaining


def _not_a_map(index: int) -> _MergeError:
    return _MergeError(f"value for key {index} is not a map.")


def _find_by_key(items: list, merge_key: str, value: Any) -> int | None:
    """findMapInSliceBasedOnKeyValue: the index of the map whose merge key is `value`."""
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _not_a_map(index)
        if merge_key in item and _same(item[merge_key], value):
            return index
    return None


def _merge_items(current: list, patched: list, merge_key: str, schema: Mapping[str, _Field] | None) -> list:
    merged = list(current)
    for item in patched:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        index = _find_by_key(merged, merge_key, item[merge_key])
        if index is None:
            merged.append(_as_decoded(item))
        else:
            merged[index] = _merge_map(merged[index], item, schema)
    return merged


def _partition_maps(merged: list, by: list, merge_key: str) -> tuple[list, list]:
    """Split merged items into those named in `by` and the others (server-only)."""
    named, others = [], []
    for item in merged:
        if not isinstance(item, dict):
            raise _bad_arg_type(_MAP, item)
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        found = _find_by_key(by, merge_key, item[merge_key]) is not None
        (named if found else others).append(item)
    return named, others


def _partition_primitives(merged: list, by: list) -> tuple[list, list]:
    named, others = [], []
    for item in merged:
        (named if any(_same(item, b) for b in by) else others).append(item)
    return named, others


def _normalize_order(in_patch: list, server_only: list, patch_order: list, server_order: list,
                     merge_key: str, element_kind: str) -> list:
    """Patch items in patch order, server-only items in server order, interleaved by the
    server order where both sides appear in it."""
    in_patch = _sorted_by(in_patch, patch_order, merge_key, element_kind)
    server_only = _sorted_by(server_only, server_order, merge_key, element_kind)
    result, i, j = [], 0, 0
    while i < len(server_only) and j < len(in_patch):
        left = _position(server_order, server_only[i], merge_key, element_kind)
        right = _position(server_order, in_patch[j], merge_key, element_kind)
        if 0 <= left < right:
            result.append(server_only[i])
            i += 1
        else:
            result.append(in_patch[j])
            j += 1
    return result + server_only[i:] + in_patch[j:]


def _position(items: list, item: Any, merge_key: str, element_kind: str) -> int:
    def identity(value: Any) -> Any:
        if element_kind != _MAP:
            return value
        return value.get(merge_key) if isinstance(value, dict) else None

    wanted = identity(item)
    return next((i for i, v in enumerate(items) if _same(identity(v), wanted)), -1)


def _split_deletions(items: list) -> tuple[list, list]:
    kept, deletions = [], []
    for item in items:
        if not isinstance(item, dict):
            raise _bad_arg_type(_MAP, item)
        (deletions if item.get(DIRECTIVE) == "delete" else kept).append(item)
    return kept, deletions


def _sorted_by(items: list, order: list, merge_key: str, element_kind: str) -> list:
    """normalizeSliceOrder: a stable sort by position in `order` (Go's insertion sort,
    whose comparator calls any item missing from `order` "less")."""
    deletions: list = []
    if element_kind == _MAP:
        for item in items + order:
            if not isinstance(item, dict):
                raise _bad_arg_type(_MAP, item)
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
        items, deletions = _split_deletions(items)

    def less(a: Any, b: Any) -> bool:
        a_at = _position(order, a, merge_key, element_kind)
        b_at = _position(order, b, merge_key, element_kind)
        return a_at < b_at if a_at >= 0 and b_at >= 0 else True

    items = list(items)
    for i in range(1, len(items)):
        j = i
        while j > 0 and less(items[j], items[j - 1]):
            items[j], items[j - 1] = items[j - 1], items[j]
            j -= 1
    return items + deletions
