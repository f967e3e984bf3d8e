"""core/v1 Namespace: the kubernetes.io/metadata.name label, the `kubernetes` finalizer,
phase Active on create, DNS-1123 label names."""

from __future__ import annotations

import copy

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, invalid_value

NAME_LABEL = "kubernetes.io/metadata.name"


class NamespaceStrategy(Strategy):
    has_status_subresource = True
    tracks_generation = False

    def default(self, obj: dict) -> None:
        metadata = obj.setdefault("metadata", {})
        if metadata.get("name"):
            metadata.setdefault("labels", {})[NAME_LABEL] = metadata["name"]
        obj.setdefault("status", {}).setdefault("phase", "Active")

    def prepare_for_create(self, obj: dict) -> None:
        obj["status"] = self.initial_status(obj)
        finalizers = obj.setdefault("spec", {}).setdefault("finalizers", [])
        if "kubernetes" not in finalizers:
            finalizers.append("kubernetes")

    def initial_status(self, obj: dict) -> dict:
        return {"phase": "Active"}

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        obj["spec"] = copy.deepcopy(old.get("spec", {}))
        obj["status"] = copy.deepcopy(old.get("status", {}))

    def validate(self, obj: dict) -> list[FieldError]:
        metadata = obj.get("metadata") or {}
        errs = v.validate_object_meta(metadata, False, v.validate_namespace_name)
        return errs + _validate_finalizers(obj)

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        return errs + _validate_finalizers(obj)


def _validate_finalizers(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    for name in (obj.get("spec") or {}).get("finalizers") or []:
        if "/" not in name and name != "kubernetes":
            errs.append(invalid_value("spec.finalizers", name,
                                      "name is neither a standard finalizer name nor is it fully qualified"))
        else:
            errs += v.validate_qualified_name(name, "spec.finalizers")
    return errs


INFO = KindInfo(
    group="", version="v1", kind="Namespace", resource="namespaces", singular="namespace", namespaced=False,
    strategy=NamespaceStrategy(), short_names=("ns",), subresources=("status", "finalize"),
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
)
