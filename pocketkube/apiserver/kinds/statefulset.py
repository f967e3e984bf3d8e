"""apps/v1 StatefulSet: defaults (SetDefaults_StatefulSet), validation (including the 1.32
rule on which spec fields an update may change) and strategy."""

from __future__ import annotations

import copy

from pocketkube.apiserver.kinds import apps_common
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, forbidden, invalid_value, not_supported, required

_UPDATABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
              "minReadySeconds")


class StatefulSetStrategy(apps_common.WorkloadStrategy):
    def default(self, obj: dict) -> None:
        super().default(obj)
        spec = obj["spec"]
        if not spec.get("podManagementPolicy"):
            spec["podManagementPolicy"] = "OrderedReady"
        strategy = spec.setdefault("updateStrategy", {})
        if not strategy.get("type"):
            strategy["type"] = "RollingUpdate"
        if strategy["type"] == "RollingUpdate":
            strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
        retention = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
        retention.setdefault("whenDeleted", "Retain")
        retention.setdefault("whenScaled", "Retain")
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        for claim in spec.get("volumeClaimTemplates") or []:
            claim.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
            claim.setdefault("status", {}).setdefault("phase", "Pending")

    def validate_spec(self, obj: dict) -> list[FieldError]:
        spec = obj.get("spec") or {}
        errs: list[FieldError] = []
        policy = spec.get("podManagementPolicy") or ""
        if not policy:
            errs.append(required("spec.podManagementPolicy"))
        elif policy not in ("OrderedReady", "Parallel"):
            errs.append(invalid_value("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'"))
        errs += _validate_update_strategy(spec.get("updateStrategy") or {})
        return errs + apps_common.validate_common_spec(spec, "statefulset", "StatefulSet")

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        errs += self.validate_spec(obj)
        new_spec, old_spec = copy.deepcopy(obj.get("spec") or {}), copy.deepcopy(old.get("spec") or {})
        for key in _UPDATABLE:
            new_spec.pop(key, None)
            old_spec.pop(key, None)
        if new_spec != old_spec:
            errs.append(forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                                  "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                                  "'minReadySeconds' are forbidden"))
        return errs


def _validate_update_strategy(strategy: dict) -> list[FieldError]:
    path = "spec.updateStrategy"
    kind = strategy.get("type") or ""
    if not kind:
        return [required(path)]
    if kind == "OnDelete":
        if strategy.get("rollingUpdate") is not None:
            return [v.invalid_go(path + ".rollingUpdate", "apps.RollingUpdateStatefulSetStrategy{...}",
                                 "only allowed for updateStrategy 'RollingUpdate'")]
        return []
    if kind == "RollingUpdate":
        rolling = strategy.get("rollingUpdate") or {}
        errs = v.validate_nonnegative(rolling.get("partition") or 0, path + ".rollingUpdate.partition")
        if rolling.get("maxUnavailable") is not None:
            errs += apps_common.validate_int_or_percent(rolling["maxUnavailable"], path + ".rollingUpdate.maxUnavailable")
        return errs
    return [not_supported(path + ".type", kind, ["OnDelete", "RollingUpdate"])]


INFO = KindInfo(
    group="apps", version="v1", kind="StatefulSet", resource="statefulsets", singular="statefulset", namespaced=True,
    strategy=StatefulSetStrategy(), short_names=("sts",), categories=("all",), subresources=("status", "scale"),
)
