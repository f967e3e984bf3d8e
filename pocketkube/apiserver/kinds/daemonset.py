"""apps/v1 DaemonSet: defaults (SetDefaults_DaemonSet), validation and strategy, including
the `deprecated.daemonset.template.generation` annotation the real server keeps."""

from __future__ import annotations

from pocketkube.apiserver.kinds import apps_common
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.core.errors import FieldError, not_supported

TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


class DaemonSetStrategy(apps_common.WorkloadStrategy):
    def default(self, obj: dict) -> None:
        super().default(obj)
        spec = obj["spec"]
        strategy = spec.setdefault("updateStrategy", {})
        if not strategy.get("type"):
            strategy["type"] = "RollingUpdate"
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", 1)
            rolling.setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)

    def prepare_for_create(self, obj: dict) -> None:
        super().prepare_for_create(obj)
        obj["metadata"].setdefault("annotations", {})[TEMPLATE_GENERATION] = "1"

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        super().prepare_for_update(obj, old)
        old_generation = (old.get("metadata", {}).get("annotations") or {}).get(TEMPLATE_GENERATION, "1")
        generation = int(old_generation) if old_generation.isdigit() else 1
        if (obj.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
            generation += 1
        obj["metadata"].setdefault("annotations", {})[TEMPLATE_GENERATION] = str(generation)

    def validate_spec(self, obj: dict) -> list[FieldError]:
        spec = obj.get("spec") or {}
        errs = apps_common.validate_common_spec(spec, "daemonset", "DaemonSet")
        strategy = spec.get("updateStrategy") or {}
        kind = strategy.get("type") or ""
        if kind == "RollingUpdate":
            errs += apps_common.validate_rolling_update(strategy.get("rollingUpdate") or {},
                                                        "spec.updateStrategy.rollingUpdate")
        elif kind != "OnDelete":
            errs.append(not_supported("spec.updateStrategy", kind, ["OnDelete", "RollingUpdate"]))
        return errs


INFO = KindInfo(
    group="apps", version="v1", kind="DaemonSet", resource="daemonsets", singular="daemonset", namespaced=True,
    strategy=DaemonSetStrategy(), short_names=("ds",), categories=("all",), subresources=("status",),
)
