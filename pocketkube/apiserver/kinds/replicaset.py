"""apps/v1 ReplicaSet: defaults (replicas 1), validation and strategy."""

from __future__ import annotations

from pocketkube.apiserver.kinds import apps_common
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.core.errors import FieldError


class ReplicaSetStrategy(apps_common.WorkloadStrategy):
    def default(self, obj: dict) -> None:
        super().default(obj)
        obj["spec"].setdefault("replicas", 1)

    def validate_spec(self, obj: dict) -> list[FieldError]:
        # Kubernetes' ReplicaSet validation reuses the Deployment wording for an empty selector.
        return apps_common.validate_common_spec(obj.get("spec") or {}, "deployment", "ReplicaSet")


INFO = KindInfo(
    group="apps", version="v1", kind="ReplicaSet", resource="replicasets", singular="replicaset", namespaced=True,
    strategy=ReplicaSetStrategy(), short_names=("rs",), categories=("all",), subresources=("status", "scale"),
)
