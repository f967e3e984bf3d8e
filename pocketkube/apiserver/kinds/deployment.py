"""apps/v1 Deployment: defaults (SetDefaults_Deployment), validation and strategy (generation
bumps on spec or annotation changes, as k8s pkg/registry/apps/deployment/strategy.go)."""

from __future__ import annotations

from pocketkube.apiserver.kinds import apps_common
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.core.errors import FieldError, forbidden, not_supported, required


class DeploymentStrategy(apps_common.WorkloadStrategy):
    def prepare_for_status_update(self, obj: dict, old: dict) -> None:
        """deploymentStatusStrategy: a /status write keeps the Deployment's labels as they were."""
        super().prepare_for_status_update(obj, old)
        labels = (old.get("metadata") or {}).get("labels")
        if labels is None:
            obj["metadata"].pop("labels", None)
        else:
            obj["metadata"]["labels"] = labels

    def default(self, obj: dict) -> None:
        super().default(obj)
        spec = obj["spec"]
        spec.setdefault("replicas", 1)
        strategy = spec.setdefault("strategy", {})
        if not strategy.get("type"):
            strategy["type"] = "RollingUpdate"
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)

    def spec_changed(self, obj: dict, old: dict) -> bool:
        return obj.get("spec") != old.get("spec") or \
            obj.get("metadata", {}).get("annotations") != old.get("metadata", {}).get("annotations")

    def validate_spec(self, obj: dict) -> list[FieldError]:
        spec = obj.get("spec") or {}
        errs = apps_common.validate_common_spec(spec, "deployment", "ReplicaSet")
        errs += validate_strategy(spec.get("strategy") or {}, "spec.strategy")
        return errs + apps_common.progress_deadline_errors(spec)


def validate_strategy(strategy: dict, path: str) -> list[FieldError]:
    kind = strategy.get("type") or ""
    if kind == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            return [forbidden(path + ".rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")]
        return []
    if kind == "RollingUpdate":
        if strategy.get("rollingUpdate") is None:
            return [required(path + ".rollingUpdate", "this should be defaulted and never be nil")]
        return apps_common.validate_rolling_update(strategy["rollingUpdate"], path + ".rollingUpdate")
    return [not_supported(path + ".type", kind, ["Recreate", "RollingUpdate"])]


INFO = KindInfo(
    group="apps", version="v1", kind="Deployment", resource="deployments", singular="deployment", namespaced=True,
    strategy=DeploymentStrategy(), short_names=("deploy",), categories=("all",), subresources=("status", "scale"),
)
