"""core/v1 Node: allocatable defaults to capacity; ValidateNode / ValidateNodeUpdate basics
(podCIDRs, taints, providerID); status written by the node agent is kept on create."""

from __future__ import annotations

import copy

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, duplicate, forbidden, invalid_value, not_supported, required

TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]


class NodeStrategy(Strategy):
    has_status_subresource = True
    tracks_generation = False

    def default(self, obj: dict) -> None:
        status = obj.get("status") or {}
        if status.get("capacity") and status.get("allocatable") is None:
            status["allocatable"] = dict(status["capacity"])

    def prepare_for_create(self, obj: dict) -> None:
        """Nodes register with their status; create keeps it."""

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        obj["status"] = copy.deepcopy(old.get("status", {}))

    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, False, v.validate_node_name)
        return errs + _validate_spec(obj.get("spec") or {})

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        errs += _validate_spec(obj.get("spec") or {})
        spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
        if old_spec.get("podCIDRs") and spec.get("podCIDRs") != old_spec["podCIDRs"]:
            errs.append(forbidden("spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid'))
        if old_spec.get("providerID") and spec.get("providerID") != old_spec["providerID"]:
            errs.append(forbidden("spec.providerID", 'node updates may not change providerID except from "" to valid'))
        return errs


def _validate_spec(spec: dict) -> list[FieldError]:
    # Kubernetes reports taints under metadata.taints (its field path starts from metadata).
    errs = _validate_taints(spec.get("taints") or [], "metadata.taints")
    cidrs = spec.get("podCIDRs") or []
    for i, cidr in enumerate(cidrs):
        errs += v.is_valid_cidr(f"spec.podCIDRs[{i}]", cidr)
    if len(cidrs) > 1 and not errs:
        families = {v.parse_cidr_sloppy(c).version for c in cidrs}
        if len(cidrs) > 2 or len(families) != len(cidrs):
            errs.append(invalid_value("spec.podCIDRs", cidrs, "may specify no more than one CIDR for each IP family"))
    return errs


def _validate_taints(taints: list, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[tuple] = set()
    for i, taint in enumerate(taints):
        p = f"{path}[{i}]"
        errs += v.validate_label_name(taint.get("key") or "", p + ".key")
        value = taint.get("value") or ""
        msgs = v.is_label_value(value)
        if msgs:
            errs.append(invalid_value(p + ".value", value, ";".join(msgs)))
        effect = taint.get("effect") or ""
        if not effect:
            errs.append(required(p + ".effect"))
        elif effect not in TAINT_EFFECTS:
            errs.append(not_supported(p + ".effect", effect, TAINT_EFFECTS))
        key = (effect, taint.get("key"))
        if key in seen:
            error = duplicate(p, f"{taint.get('key')}={value}:{effect}")
            error.detail = "taints must be unique by key and effect pair"
            errs.append(error)
            continue
        seen.add(key)
    return errs


INFO = KindInfo(
    group="", version="v1", kind="Node", resource="nodes", singular="node", namespaced=False,
    strategy=NodeStrategy(), short_names=("no",), subresources=("status",),
)
