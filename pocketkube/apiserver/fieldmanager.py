"""Field ownership: metadata.managedFields on every write, and server-side apply.

This module owns what Kubernetes' field manager does for the API server
(k8s.io/apimachinery pkg/util/managedfields, built on sigs.k8s.io/structured-merge-diff):

- `update_managed_fields()` records who changed what on create, update, patch and
  subresource writes ("Update" entries);
- `apply()` is server-side apply (`kubectl apply --server-side`): it merges the applied
  configuration into the live object, removes what the applier stopped applying,
  detects conflicts with other managers (409 with the exact Kubernetes message) and
  records the "Apply" entry;
- `fields_v1()` gives the FieldsV1 trie of an object, as an apply of it would own it.

Objects are plain dicts in their JSON form. Field sets are Python sets of paths; a path
is a tuple of path elements: ("f", name) for a field, ("k", ((key, value), ...)) for an
item of an associative list, ("v", json) for an item of a set, ("i", n) for a position.

Per-kind knowledge comes from the real API types: the list types (+listType/+listMapKey,
falling back to the strategic-merge patch strategy as Kubernetes' schema conversion
does), atomic structs and maps (+structType/+mapType=atomic), the composite fields a
zero Go object always carries (they decide where "." appears in Update entries), and the
fields each strategy resets (GetResetFields), which a writer never owns.
"""

from __future__ import annotations

import copy
import json
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Iterator

from pocketkube.core.errors import APIError, bad_request, go_quote
from pocketkube.core.objects import without_nulls

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

Path = tuple
FieldSet = set

_ABSENT = object()  # a field that is not there at all (null is a value)

# ---------------------------------------------------------------------------------------
# Schema: list types, atomic structs and maps, per kind.

_ATOMIC = ("atomic",)
_SET = ("set",)
_TCP_DEFAULT = {"protocol": "TCP"}


def _assoc(*keys: str, defaults: dict | None = None) -> tuple:
    """An associative list (+listType=map) keyed by `keys`; `defaults` are +default values."""
    return ("map", keys, defaults or {})


def _under(prefix: tuple, table: dict) -> dict:
    return {prefix + path: rel for path, rel in table.items()}


_OBJECT_META = {
    ("ownerReferences",): _assoc("uid"),
    ("ownerReferences", "*"): _ATOMIC,  # OwnerReference is +structType=atomic
    ("finalizers",): _SET,
}

_CONTAINER = {
    ("ports",): _assoc("containerPort", "protocol", defaults=_TCP_DEFAULT),
    ("env",): _assoc("name"),
    ("env", "*", "valueFrom", "configMapKeyRef"): _ATOMIC,
    ("env", "*", "valueFrom", "secretKeyRef"): _ATOMIC,
    ("env", "*", "valueFrom", "fieldRef"): _ATOMIC,
    ("env", "*", "valueFrom", "resourceFieldRef"): _ATOMIC,
    ("volumeMounts",): _assoc("mountPath"),
    ("volumeDevices",): _assoc("devicePath"),
    ("resources", "claims"): _assoc("name"),
}

_POD_SPEC = {
    ("volumes",): _assoc("name"),
    ("containers",): _assoc("name"),
    ("initContainers",): _assoc("name"),
    ("ephemeralContainers",): _assoc("name"),
    ("imagePullSecrets",): _assoc("name"),
    ("imagePullSecrets", "*"): _ATOMIC,  # LocalObjectReference is atomic
    ("hostAliases",): _assoc("ip"),
    ("topologySpreadConstraints",): _assoc("topologyKey", "whenUnsatisfiable"),
    ("topologySpreadConstraints", "*", "labelSelector"): _ATOMIC,
    ("schedulingGates",): _assoc("name"),
    ("resourceClaims",): _assoc("name"),
    ("nodeSelector",): _ATOMIC,
    ("affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution"): _ATOMIC,
    **_under(("containers", "*"), _CONTAINER),
    **_under(("initContainers", "*"), _CONTAINER),
    **_under(("ephemeralContainers", "*"), _CONTAINER),
}

_CONDITIONS = {("conditions",): _assoc("type")}

_POD_STATUS = {
    **_CONDITIONS,
    ("podIPs",): _assoc("ip"),
    ("resourceClaimStatuses",): _assoc("name"),
}

_WORKLOAD = {
    ("spec", "selector"): _ATOMIC,  # LabelSelector is +structType=atomic
    **_under(("spec", "template", "metadata"), _OBJECT_META),
    **_under(("spec", "template", "spec"), _POD_SPEC),
    **_under(("status",), _CONDITIONS),
}

_META = _under(("metadata",), _OBJECT_META)

# Lists not named here are atomic; maps not named here merge key by key.
_KIND_TABLES: dict[str, dict] = {
    "Pod": {**_META, **_under(("spec",), _POD_SPEC), **_under(("status",), _POD_STATUS)},
    "Service": {
        **_META,
        ("spec", "ports"): _assoc("port", "protocol", defaults=_TCP_DEFAULT),
        ("spec", "selector"): _ATOMIC,
        **_under(("status",), _CONDITIONS),
    },
    "Namespace": {**_META, **_under(("status",), _CONDITIONS)},
    "Node": {
        **_META,
        ("spec", "podCIDRs"): _SET,
        ("status", "conditions"): _assoc("type"),
        ("status", "addresses"): _assoc("type"),
    },
    "ServiceAccount": {**_META, ("secrets",): _assoc("name"), ("secrets", "*"): _ATOMIC},
    "Event": {**_META, ("involvedObject",): _ATOMIC, ("related",): _ATOMIC},
    "Deployment": {**_META, **_WORKLOAD},
    "ReplicaSet": {**_META, **_WORKLOAD},
    # Its selector is a plain map, merged key by key (apps/v1's LabelSelector is atomic).
    "ReplicationController": {**_META, **{k: t for k, t in _WORKLOAD.items() if k != ("spec", "selector")}},
    "StatefulSet": {**_META, **_WORKLOAD},
    "DaemonSet": {**_META, **_WORKLOAD},
    "Job": {**_META, **_WORKLOAD},
    "CronJob": {**_META, **_under(("spec", "jobTemplate", "metadata"), _OBJECT_META),
                **_under(("spec", "jobTemplate", "spec"), _WORKLOAD)},
    "Ingress": {**_META, ("spec", "defaultBackend", "resource"): _ATOMIC},
    "ValidatingWebhookConfiguration": {**_META, ("webhooks",): _assoc("name")},
    "MutatingWebhookConfiguration": {**_META, ("webhooks",): _assoc("name")},
}

# Composite fields a zero Go object of the kind serializes anyway (structs, and slices or
# pointers without omitempty). A field present in the old object is not "added", so it
# gets no "." in an Update entry: Deployment's f:strategy has none, f:rollingUpdate has.
_POD_TEMPLATE_ZERO = {"metadata": {}, "spec": {"containers": None}}
_ZERO_OBJECTS: dict[str, dict] = {
    "Pod": {"spec": {"containers": None}, "status": {}},
    "Service": {"spec": {}, "status": {"loadBalancer": {}}},
    "Namespace": {"spec": {}, "status": {}},
    "Node": {"spec": {}, "status": {"daemonEndpoints": {"kubeletEndpoint": {}}, "nodeInfo": {}}},
    "Event": {"involvedObject": {}, "source": {}},
    "Deployment": {"spec": {"template": _POD_TEMPLATE_ZERO, "strategy": {}}, "status": {}},
    "ReplicaSet": {"spec": {"template": _POD_TEMPLATE_ZERO}, "status": {}},
    "ReplicationController": {"spec": {}, "status": {}},
    "StatefulSet": {"spec": {"template": _POD_TEMPLATE_ZERO, "updateStrategy": {}}, "status": {}},
    "DaemonSet": {"spec": {"template": _POD_TEMPLATE_ZERO, "updateStrategy": {}}, "status": {}},
    "Job": {"spec": {"template": _POD_TEMPLATE_ZERO}, "status": {}},
    "CronJob": {"spec": {"jobTemplate": {"metadata": {}, "spec": {"template": _POD_TEMPLATE_ZERO}}}, "status": {}},
    "Ingress": {"spec": {}, "status": {"loadBalancer": {}}},
    "IngressClass": {"spec": {}},
    "Lease": {"spec": {}},
}

_STATUS = (("f", "status"),)
_SPEC = (("f", "spec"),)
# The strategies' GetResetFields, by (kind, subresource): never owned by such a write.
_RESET_FIELDS: dict[tuple[str, str], frozenset] = {
    **{(kind, ""): frozenset({_STATUS}) for kind in (
        "Pod", "Service", "Namespace", "Node", "Deployment", "ReplicaSet", "StatefulSet",
        "DaemonSet", "Ingress", "ReplicationController", "Job", "CronJob")},
    **{(kind, "status"): frozenset({_SPEC}) for kind in (
        "Service", "Namespace", "Node", "ReplicaSet", "StatefulSet", "DaemonSet", "Ingress",
        "ReplicationController", "Job", "CronJob")},
    ("Pod", "status"): frozenset({
        _SPEC, (("f", "metadata"), ("f", "deletionTimestamp")),
        (("f", "metadata"), ("f", "ownerReferences"))}),
    ("Deployment", "status"): frozenset({_SPEC, (("f", "metadata"), ("f", "labels"))}),
}

# Never part of anyone's field set (the strip-meta manager).
_STRIPPED: frozenset = frozenset(
    {(("f", "apiVersion"),), (("f", "kind"),), (("f", "metadata"),)}
    | {(("f", "metadata"), ("f", name)) for name in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
        "generation", "managedFields", "resourceVersion")}
)


def _table(kind: str) -> dict:
    return _KIND_TABLES.get(kind, _META)


class _SchemaError(Exception):
    """An object that does not fit its schema (duplicate or key-less list items)."""

    def __init__(self, path: Path, message: str):
        super().__init__(f"{path_string(path)}: {message}")


# ---------------------------------------------------------------------------------------
# Path elements: identity, order, text.

def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _freeze(value: Any) -> Any:
    """A key value as a hashable: scalars stay, anything else becomes its JSON text."""
    return _canonical(value) if isinstance(value, (dict, list)) else value


def _item_element(rel: tuple, item: Any, index: int, list_path: Path, strict: bool) -> tuple:
    """The path element naming one list item: k:{keys} for associative lists, v:value for sets."""
    if rel[0] == "set":
        return ("v", _canonical(item))
    keys, defaults = rel[1], rel[2]
    if not isinstance(item, dict):
        if strict:
            raise _SchemaError(list_path, f"element {index}: associative list with keys may not have non-map elements")
        return ("i", index)
    fields = []
    for key in sorted(keys):
        if item.get(key) is not None:
            fields.append((key, _freeze(item[key])))
        elif key in defaults:
            fields.append((key, defaults[key]))
        elif strict:
            raise _SchemaError(list_path, f"element {index}: associative list with keys has an element that "
                                          f"omits key field {go_quote(key)} (and doesn't have default value)")
        else:
            fields.append((key, None))
    return ("k", tuple(fields))


def _value_order(value: Any) -> tuple:
    """structured-merge-diff's value order: numbers, strings, booleans, then the rest."""
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (3, _canonical(value))


def _element_order(pe: tuple) -> tuple:
    kind, payload = pe
    if kind == "f":
        return (0, payload)
    if kind == "k":
        return (1, tuple((name, _value_order(value)) for name, value in payload))
    if kind == "v":
        return (2, _value_order(json.loads(payload)))
    return (3, payload)


def _element_text(pe: tuple) -> str:
    """The FieldsV1 key of an element: f:name, k:{"name":"web"}, v:"x", i:0."""
    kind, payload = pe
    if kind == "f":
        return "f:" + payload
    if kind == "k":
        return "k:" + json.dumps(dict(payload), separators=(",", ":"), ensure_ascii=False)
    if kind == "v":
        return "v:" + payload
    return f"i:{payload}"


def _parse_element(text: str) -> tuple:
    prefix, rest = text[:2], text[2:]
    if prefix == "f:":
        return ("f", rest)
    if prefix == "k:":
        keys = json.loads(rest)
        if not isinstance(keys, dict):
            raise ValueError(f"invalid key element {text!r}")
        return ("k", tuple(sorted((name, _freeze(value)) for name, value in keys.items())))
    if prefix == "v:":
        return ("v", _canonical(json.loads(rest)))
    if prefix == "i:":
        return ("i", int(rest))
    raise ValueError(f"unknown path element {text!r}")


def _go_value(value: Any) -> str:
    """structured-merge-diff's value.ToString."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return go_quote(value)
    return str(value)


def path_string(path: Path) -> str:
    """A path as Kubernetes prints it: .spec.template.spec.containers[name="web"].image"""
    parts = []
    for kind, payload in path:
        if kind == "f":
            parts.append("." + payload)
        elif kind == "k":
            parts.append("[" + ",".join(f"{name}={_go_value(value)}" for name, value in payload) + "]")
        elif kind == "v":
            parts.append(f"[={_go_value(json.loads(payload))}]")
        else:
            parts.append(f"[{payload}]")
    return "".join(parts)


# ---------------------------------------------------------------------------------------
# FieldsV1 <-> field sets.

def _trie(paths: Iterable[Path]) -> dict:
    """element -> [is_member, children]"""
    root: dict = {}
    for path in paths:
        children = root
        for depth, pe in enumerate(path):
            node = children.setdefault(pe, [False, {}])
            if depth == len(path) - 1:
                node[0] = True
            children = node[1]
    return root


def _encode_trie(children: dict) -> dict:
    out: dict = {}
    for pe in sorted(children, key=_element_order):
        member, sub = children[pe]
        body: dict = {}
        if sub:
            if member:
                body["."] = {}
            body.update(_encode_trie(sub))
        out[_element_text(pe)] = body
    return out


def encode_fields(paths: Iterable[Path]) -> dict:
    """A field set as the FieldsV1 trie ("." first, then elements in their order)."""
    return _encode_trie(_trie(paths))


def decode_fields(fields_v1: dict, prefix: Path = ()) -> FieldSet:
    """A FieldsV1 trie as a field set."""
    if not isinstance(fields_v1, dict):
        raise ValueError("FieldsV1 must be an object")
    out: FieldSet = set()
    for text, sub in fields_v1.items():
        if text == ".":
            out.add(prefix)
            continue
        path = prefix + (_parse_element(text),)
        if sub:
            out |= decode_fields(sub, path)
        else:
            out.add(path)
    return out


def _iterate_ordered(paths: Iterable[Path]) -> Iterator[Path]:
    """Set order as structured-merge-diff iterates it: a level's members, then its children."""
    def walk(children: dict, prefix: Path) -> Iterator[Path]:
        ordered = sorted(children, key=_element_order)
        for pe in ordered:
            if children[pe][0]:
                yield prefix + (pe,)
        for pe in ordered:
            if children[pe][1]:
                yield from walk(children[pe][1], prefix + (pe,))
    return walk(_trie(paths), ())


# ---------------------------------------------------------------------------------------
# Walks over objects: field set, comparison, merge, removal.

def _is_granular_list(rel: tuple | None) -> bool:
    return rel is not None and rel[0] in ("map", "set")


def _index_items(items: list, rel: tuple, list_path: Path, strict: bool) -> tuple[list, dict]:
    """Item elements in order and element -> item; later duplicates are ignored (or refused)."""
    order: list = []
    by_element: dict = {}
    for index, item in enumerate(items):
        pe = _item_element(rel, item, index, list_path, strict)
        if pe in by_element:
            if strict:
                raise _SchemaError(list_path, f"duplicate entries for key {path_string((pe,))}")
            continue
        by_element[pe] = item
        order.append(pe)
    return order, by_element


class _TypedObjectErrors(Exception):
    """Every schema error of an applied configuration, worded as structured-merge-diff does."""

    def __init__(self, errors: list[_SchemaError]):
        text = str(errors[0]) if len(errors) == 1 else "errors:\n  " + "\n  ".join(str(e) for e in errors)
        super().__init__(text)


def _field_set(value: Any, table: dict, strict: bool = False) -> FieldSet:
    """Every leaf and list item the value sets (structured-merge-diff ToFieldSet)."""
    out: FieldSet = set()
    errors: list[_SchemaError] = []

    def walk(node: Any, path: Path, spath: tuple) -> None:
        rel = table.get(spath)
        if isinstance(node, dict):
            if rel == _ATOMIC:
                out.add(path)
                return
            for name, child in node.items():
                walk(child, path + (("f", name),), spath + (name,))
            return
        if isinstance(node, list):
            if not _is_granular_list(rel):
                out.add(path)
                return
            try:
                order, by_element = _index_items(node, rel, path, strict)
            except _SchemaError as err:
                errors.append(err)
                return
            for pe in order:
                walk(by_element[pe], path + (pe,), spath + ("*",))
                out.add(path + (pe,))
            return
        out.add(path)

    walk(value, (), ())
    if errors:
        raise _TypedObjectErrors(errors)
    return out


def _same(a: Any, b: Any) -> bool:
    """JSON equality that does not take true for 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return a == b


@dataclass
class _Comparison:
    added: FieldSet = field(default_factory=set)
    modified: FieldSet = field(default_factory=set)
    removed: FieldSet = field(default_factory=set)

    def filtered(self, reset: frozenset) -> "_Comparison":
        return _Comparison(_without_reset(self.added, reset), _without_reset(self.modified, reset),
                           _without_reset(self.removed, reset))

    def changed(self) -> FieldSet:
        return self.added | self.modified


def _compare(old: Any, new: Any, table: dict, skip: frozenset = frozenset()) -> _Comparison:
    """What `new` added, modified and removed relative to `old` (structured-merge-diff Compare).

    A map or list node counts itself (the "." of FieldsV1) only when it appears or
    disappears as a whole; two empty or null containers compare as one leaf. Paths in
    `skip` (and all below them) are not compared: the caller drops them anyway (a status
    write never walks the pod's spec).
    """
    result = _Comparison()

    def leaf(lhs: Any, rhs: Any, path: Path) -> None:
        if lhs is _ABSENT:
            result.added.add(path)
        elif rhs is _ABSENT:
            result.removed.add(path)
        elif not _same(lhs, rhs):
            result.modified.add(path)

    def whole(lhs: Any, rhs: Any, path: Path) -> None:
        if lhs is _ABSENT:
            result.added.add(path)
        elif rhs is _ABSENT:
            result.removed.add(path)

    def walk(lhs: Any, rhs: Any, path: Path, spath: tuple) -> None:
        if path in skip:
            return
        rel = table.get(spath)
        if (isinstance(lhs, dict) or isinstance(rhs, dict)) and rel != _ATOMIC:
            lmap = lhs if isinstance(lhs, dict) else {}
            rmap = rhs if isinstance(rhs, dict) else {}
            if not lmap and not rmap:
                leaf(lhs, rhs, path)
                return
            for name in list(lmap) + [k for k in rmap if k not in lmap]:
                walk(lmap.get(name, _ABSENT), rmap.get(name, _ABSENT), path + (("f", name),), spath + (name,))
            whole(lhs, rhs, path)
            return
        if (isinstance(lhs, list) or isinstance(rhs, list)) and _is_granular_list(rel):
            llist = lhs if isinstance(lhs, list) else []
            rlist = rhs if isinstance(rhs, list) else []
            if not llist and not rlist:
                leaf(lhs, rhs, path)
                return
            lorder, litems = _index_items(llist, rel, path, strict=False)
            rorder, ritems = _index_items(rlist, rel, path, strict=False)
            for pe in lorder + [pe for pe in rorder if pe not in litems]:
                walk(litems.get(pe, _ABSENT), ritems.get(pe, _ABSENT), path + (pe,), spath + ("*",))
            whole(lhs, rhs, path)
            return
        leaf(lhs, rhs, path)

    walk(old, new, (), ())
    return result


def _merge(live: Any, config: Any, table: dict) -> Any:
    """The applied configuration merged into the live object (config wins on leaves)."""

    def merge(lhs: Any, rhs: Any, spath: tuple) -> Any:
        rel = table.get(spath)
        if isinstance(rhs, dict) and rel != _ATOMIC:
            base = lhs if isinstance(lhs, dict) else {}
            out = dict(base)
            for name, value in rhs.items():
                if value is None:  # an applied null clears the field
                    out.pop(name, None)
                else:
                    out[name] = merge(base.get(name, _ABSENT), value, spath + (name,))
            return out
        if isinstance(rhs, list) and _is_granular_list(rel):
            base = lhs if isinstance(lhs, list) else []
            return merge_list(base, rhs, rel, spath)
        return copy.deepcopy(rhs)

    def merge_list(lhs: list, rhs: list, rel: tuple, spath: tuple) -> list:
        # Keeps the live order, except that items the config names follow the config's order.
        lorder, litems = _index_items(lhs, rel, (), strict=False)
        rorder, ritems = _index_items(rhs, rel, (), strict=False)
        shared = deque(pe for pe in rorder if pe in litems)
        next_shared = shared.popleft() if shared else None
        out: list = []
        li = ri = 0

        def item(pe: tuple) -> Any:
            return merge(litems.get(pe, _ABSENT), ritems[pe], spath + ("*",))

        while li < len(lorder) or ri < len(rorder):
            if li < len(lorder) and ri < len(rorder):
                pe = lorder[li]
                if pe == rorder[ri]:
                    out.append(item(pe))
                    li, ri = li + 1, ri + 1
                    next_shared = shared.popleft() if shared else None
                    continue
                if pe in ritems and next_shared is not None and next_shared != pe:
                    li += 1  # the config places this item later
                    continue
            if li < len(lorder) and lorder[li] not in ritems:
                out.append(copy.deepcopy(litems[lorder[li]]))
                li += 1
                continue
            if ri < len(rorder):
                pe = rorder[ri]
                out.append(item(pe))
                ri += 1
                if next_shared is not None and next_shared == pe:
                    next_shared = shared.popleft() if shared else None
        return out

    return merge(live, config, ())


def _remove(obj: dict, path: Path, table: dict) -> None:
    """Remove the field or list item at `path`; containers emptied by it go too."""

    def walk(node: Any, rest: Path, spath: tuple, list_path: Path) -> bool:
        pe = rest[0]
        if pe[0] == "f":
            if not isinstance(node, dict) or pe[1] not in node:
                return False
            if len(rest) == 1 or walk(node[pe[1]], rest[1:], spath + (pe[1],), list_path + (pe,)):
                del node[pe[1]]
            return not node
        rel = table.get(spath)
        if not isinstance(node, list) or not _is_granular_list(rel):
            return False
        for index, item in enumerate(node):
            if _item_element(rel, item, index, list_path, strict=False) == pe:
                if len(rest) == 1 or walk(item, rest[1:], spath + ("*",), list_path + (pe,)):
                    del node[index]
                return not node
        return False

    walk(obj, path, (), ())


def _fill_zero(node: dict, zero: dict) -> None:
    for name, value in zero.items():
        if name not in node:
            node[name] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(node[name], dict):
            _fill_zero(node[name], value)


def _typed_view(obj: dict | None, kind: str, skip: frozenset = frozenset()) -> dict:
    """The object as the Go type serializes it: nulls dropped, always-present fields there.
    Top-level fields whose paths are in `skip` are left as they are, not copied (a comparison
    that skips them never reads them: a status write does not copy the pod's spec twice)."""
    if obj and skip:
        view = {k: v if (("f", k),) in skip else without_nulls(v) for k, v in obj.items() if v is not None}
    else:
        view = without_nulls(obj) if obj else {}
    metadata = view.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
    zero = {"metadata": {}, **_ZERO_OBJECTS.get(kind, {})}
    _fill_zero(view, {k: v for k, v in zero.items() if (("f", k),) not in skip} if skip else zero)
    return view


def _without_reset(paths: FieldSet, reset: frozenset) -> FieldSet:
    """Drop the reset paths and everything under them (RecursiveDifference)."""
    if not reset:
        return set(paths)
    return {p for p in paths if not any(p[:n] in reset for n in range(1, len(p) + 1))}


# ---------------------------------------------------------------------------------------
# managedFields entries.

@dataclass
class _Owner:
    """One managedFields entry, decoded."""

    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str | None
    fields: FieldSet
    original: dict | None = None
    original_fields: FieldSet | None = None

    def identity(self) -> str:
        """Kubernetes' manager identifier: the entry without time and fields, as JSON."""
        ident: dict[str, str] = {"manager": self.manager, "operation": self.operation}
        if self.operation == "Update":
            ident["apiVersion"] = self.api_version
        if self.subresource:
            ident["subresource"] = self.subresource
        return json.dumps(ident, separators=(",", ":"), ensure_ascii=False)

    def printed(self) -> str:
        """How a conflict message names this manager."""
        text = go_quote(self.manager)
        if self.subresource:
            text += f" with subresource {go_quote(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def encode(self) -> dict:
        if (self.original is not None and self.original_fields == self.fields
                and self.original.get("apiVersion") == self.api_version):
            entry = dict(self.original)
            if self.time is not None:
                entry["time"] = self.time
            return entry
        entry = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version}
        if self.time is not None:
            entry["time"] = self.time
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = encode_fields(self.fields)
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def _decode_entries(entries: Any) -> dict[str, _Owner]:
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    owners: dict[str, _Owner] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"managed fields entry {index} is not an object")
        if entry.get("operation") not in ("Apply", "Update"):
            raise ValueError("operation must be `Apply` or `Update`")
        if not entry.get("apiVersion"):
            raise ValueError("apiVersion must not be empty")
        if entry.get("fieldsType") != "FieldsV1":
            if not entry.get("fieldsType"):
                raise ValueError(f"missing fieldsType in managed fields entry {index}")
            raise ValueError(f"invalid fieldsType {go_quote(str(entry['fieldsType']))} in managed fields entry {index}")
        fields = decode_fields(entry.get("fieldsV1") or {})
        owner = _Owner(entry.get("manager", ""), entry["operation"], entry["apiVersion"],
                       entry.get("subresource", ""), entry.get("time"), fields, entry, set(fields))
        owners[owner.identity()] = owner
    return owners


def _seconds(time: str | None) -> float:
    if not time:
        return 0.0
    return datetime.fromisoformat(time.replace("Z", "+00:00")).timestamp()


def _encode_entries(owners: dict[str, _Owner]) -> list[dict]:
    """Entries in Kubernetes' order: Apply before Update, then by time, manager, version."""
    entries = [owner.encode() for owner in owners.values()]
    entries.sort(key=lambda e: (e["operation"], int(_seconds(e.get("time"))), e.get("manager", ""),
                                e["apiVersion"], e.get("subresource", "")))
    return entries


def _managed_entries(obj: dict | None) -> Any:
    return ((obj or {}).get("metadata") or {}).get("managedFields")


def _is_reset_request(entries: Any) -> bool:
    """`managedFields: []` or `[{}]` in a request clears the field ownership."""
    return isinstance(entries, list) and (entries == [] or entries == [{}])


def _starting_owners(old: dict | None, new: dict, subresource: str) -> dict[str, _Owner]:
    """The request's managedFields when it carries valid ones (main resource only), else the live ones."""
    if not subresource:
        requested = _managed_entries(new)
        if _is_reset_request(requested):
            return {}
        if requested:
            try:
                return _decode_entries(requested)
            except (ValueError, TypeError):
                pass
    live = _managed_entries(old)
    if not live:
        return {}
    try:
        return _decode_entries(live)
    except (ValueError, TypeError):
        return {}


def _drop_from_others(owners: dict[str, _Owner], skip: str, comparison: _Comparison,
                      take: bool) -> dict[str, FieldSet]:
    """Remove removed fields from every other owner; returns their conflicts (changed fields
    they own). With `take`, the conflicting fields are taken from them too."""
    conflicts: dict[str, FieldSet] = {}
    changed = comparison.changed()
    for ident, owner in owners.items():
        if ident == skip:
            continue
        clash = owner.fields & changed
        if clash:
            conflicts[ident] = clash
    if conflicts and not take:
        return conflicts
    for ident, owner in list(owners.items()):
        if ident == skip:
            continue
        owner.fields = owner.fields - conflicts.get(ident, set()) - comparison.removed
        if not owner.fields:
            del owners[ident]
    return conflicts


# ---------------------------------------------------------------------------------------
# Public API.

def update_managed_fields(old: dict | None, new: dict, manager: str, operation: str, api_version: str,
                          now: str, subresource: str = "") -> list[dict]:
    """managedFields after a create, update, patch or subresource write by `manager`.

    `old` is the live object (None on create), `new` the object about to be stored, as
    decoded and defaulted but before the registry's own allocations (Kubernetes runs its
    field manager there: clusterIP or nodePort allocations are nobody's). The fields that
    changed become `manager`'s (its Update entry for `api_version` and `subresource`, time
    `now`) and leave the other entries; entries left empty disappear. Fields the kind's
    strategy resets for this write (status on the main resource, spec on /status) are
    never owned. An empty list means: omit metadata.managedFields.

    `new`'s own metadata.managedFields, when the request carried valid ones on the main
    resource, replace the live ones as the starting point (`[]` or `[{}]` clears them), as
    in Kubernetes. For /scale pass the parent objects and subresource="scale".
    """
    if operation != "Update":
        raise ValueError(f"update_managed_fields records Update operations, not {operation!r}; use apply()")
    kind = new.get("kind") or (old or {}).get("kind", "")
    table = _table(kind)
    reset = _RESET_FIELDS.get((kind, subresource), frozenset())
    owners = _starting_owners(old, new, subresource)

    comparison = _compare(_typed_view(old, kind, reset), _typed_view(new, kind, reset), table,
                          skip=reset).filtered(reset)
    _drop_from_others(owners, "", comparison, take=True)

    current = _without_reset(comparison.changed() - comparison.removed, reset) - _STRIPPED
    if current:
        mine = _Owner(manager, "Update", api_version, subresource, now, set(current))
        previous = owners.get(mine.identity())
        if previous is not None:
            mine.fields |= previous.fields
            mine.original, mine.original_fields = previous.original, previous.original_fields
        owners[mine.identity()] = mine
    return _encode_entries(owners)


def fields_v1(obj: dict, kind: str = "") -> dict:
    """The FieldsV1 trie of what `obj` sets, as an apply of it would own it."""
    kind = kind or obj.get("kind", "")
    return encode_fields(_field_set(obj, _table(kind)) - _STRIPPED)


def _gvk_string(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={kind}"


def _check_applied(applied: Any, api_version: str, kind: str) -> None:
    if not isinstance(applied, dict):
        raise bad_request("error decoding YAML: the apply patch must be an object")
    applied_version = applied.get("apiVersion") or ""
    applied_kind = applied.get("kind") or ""
    if applied_version != api_version or applied_kind != kind:
        raise bad_request(f"invalid object type: {_gvk_string(applied_version, applied_kind)}")
    metadata = applied.get("metadata")
    if isinstance(metadata, dict) and metadata.get("managedFields") is not None:
        raise bad_request("metadata.managedFields must be nil")


def _typed_patch_error(applied: dict, api_version: str, kind: str, err: Exception) -> APIError:
    metadata = applied.get("metadata") or {}
    where = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}; {_gvk_string(api_version, kind)}"
    # Kubernetes 1.32 returns this as a plain (non-Status) error: 500, reason Unknown.
    return APIError(500, "Unknown", f"failed to create typed patch object ({where}): {err}")


def _conflict_error(owners: dict[str, _Owner], conflicts: dict[str, FieldSet]) -> APIError:
    ordered = [(ident, path) for ident in sorted(conflicts) for path in _iterate_ordered(conflicts[ident])]
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {owners[ident].printed()}",
               "field": path_string(path)} for ident, path in ordered]
    if len(ordered) == 1:
        ident, path = ordered[0]
        message = f"Apply failed with 1 conflict: conflict with {owners[ident].printed()}: {path_string(path)}"
    else:
        lines = []
        for ident in sorted(conflicts):
            lines.append(f"conflicts with {owners[ident].printed()}:")
            lines.extend(f"- {path_string(path)}" for path in _iterate_ordered(conflicts[ident]))
        message = f"Apply failed with {len(ordered)} conflicts: " + "\n".join(lines)
    return APIError(409, "Conflict", message, {"causes": causes})


def _allowed_by_last_applied(live: dict | None, live_view: dict, api_version: str, table: dict) -> FieldSet:
    """Fields kubectl's client-side apply last applied with the value they still have: moving
    them to server-side apply as manager "kubectl" is no conflict."""
    annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    text = annotations.get(LAST_APPLIED_ANNOTATION)
    if not text:
        return set()
    try:
        last = json.loads(text)
        if not isinstance(last, dict) or last.get("apiVersion") != api_version:
            return set()
        last_fields = _field_set(last, table)
    except (ValueError, _TypedObjectErrors):
        return set()
    comparison = _compare(last, live_view, table)
    return last_fields - comparison.modified - comparison.added - comparison.removed


def _go_json(value: Any) -> str:
    """Go's json.Encoder output: sorted keys, HTML-safe escapes, a trailing newline."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text + "\n"


def _sync_last_applied(result: dict, applied: dict, manager: str) -> None:
    """`kubectl apply --server-side` keeps an existing client-side apply annotation current."""
    annotations = (result.get("metadata") or {}).get("annotations") or {}
    if manager != "kubectl" or not annotations.get(LAST_APPLIED_ANNOTATION):
        return
    config = copy.deepcopy(applied)
    config_annotations = (config.get("metadata") or {}).get("annotations")
    if isinstance(config_annotations, dict):
        config_annotations.pop(LAST_APPLIED_ANNOTATION, None)
    annotations[LAST_APPLIED_ANNOTATION] = _go_json(config)


def apply(live: dict | None, applied: dict, manager: str, force: bool, api_version: str, now: str,
          kind: str | None = None, subresource: str = "") -> dict:
    """Server-side apply of `applied` (the parsed apply patch) onto `live` (None: create).

    Fields in `applied` are set; maps merge key by key; lists merge by their type
    (associative lists by their keys, sets by value, the rest replaced whole); a null
    clears a field. Fields `manager` applied last time and no longer applies are removed,
    unless another manager owns them. Changing a field another manager owns raises 409
    Conflict with Kubernetes' message and causes, unless `force` (then `manager` takes it).
    `kind` is the kind the endpoint serves (defaults to the live or applied kind).

    Returns the new object with its managedFields (the Apply entry of `manager`, time
    `now` when the object changed). The object is not defaulted, validated or prepared:
    the caller runs the kind's defaulting and strategy on it (a removed `replicas` comes
    back as its default there), and on create fills name, uid and the rest.
    """
    kind = kind or (live or {}).get("kind") or (applied.get("kind") if isinstance(applied, dict) else "") or ""
    _check_applied(applied, api_version, kind)
    table = _table(kind)
    reset = _RESET_FIELDS.get((kind, subresource), frozenset())
    try:
        owners = _decode_entries(_managed_entries(live) or [])
    except (ValueError, TypeError) as err:
        raise APIError(500, "Unknown", f"failed to decode managed fields: {err}") from err
    try:
        applied_fields = _without_reset(_field_set(applied, table, strict=True), reset)
    except _TypedObjectErrors as err:
        raise _typed_patch_error(applied, api_version, kind, err) from err

    mine = _Owner(manager, "Apply", api_version, subresource, None, applied_fields)
    previous = owners.get(mine.identity())
    if previous is not None:
        mine.time, mine.original, mine.original_fields = previous.time, previous.original, previous.original_fields
    owners[mine.identity()] = mine

    base = copy.deepcopy(live) if live else {}
    base.get("metadata", {}).pop("managedFields", None)
    merged = _merge(base, applied, table)
    if previous is not None:
        _prune(merged, previous.fields, owners, table)

    live_view = _typed_view(live, kind)
    merged_view = _typed_view(merged, kind)
    comparison = _compare(live_view, merged_view, table).filtered(reset)
    conflicts = _drop_from_others(owners, mine.identity(), comparison, take=force)
    if conflicts and not force:
        allowed = _allowed_by_last_applied(live, live_view, api_version, table) if manager == "kubectl" else set()
        remaining = {ident: paths - allowed for ident, paths in conflicts.items() if paths - allowed}
        if remaining:
            raise _conflict_error(owners, remaining)
        _drop_from_others(owners, mine.identity(), comparison, take=True)

    mine.fields = mine.fields - _STRIPPED
    if not mine.fields:
        del owners[mine.identity()]
    if live is not None and _same(live_view, merged_view):
        result = copy.deepcopy(live)
    else:
        result = merged
        mine.time = now
    _sync_last_applied(result, applied, manager)
    entries = _encode_entries(owners)
    metadata = result.setdefault("metadata", {})
    if entries:
        metadata["managedFields"] = entries
    else:
        metadata.pop("managedFields", None)
    return result


def _prune(merged: dict, last_applied: FieldSet, owners: dict[str, _Owner], table: dict) -> None:
    """Remove what the applier applied last time, applies no more and nobody else owns.

    A struct field stays while anyone owns something under it; a list item goes whole.
    """
    owned: FieldSet = set()
    for owner in owners.values():
        owned |= owner.fields
    kept = set(owned)
    for path in owned:
        for n in range(1, len(path)):
            if path[n - 1][0] == "f":
                kept.add(path[:n])
    for path in sorted(last_applied - kept, key=len):
        _remove(merged, path, table)
