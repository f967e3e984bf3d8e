"""v1 ReplicationController: defaults (SetDefaults_ReplicationController), validation
(ValidateReplicationController) and strategy. The ReplicaSet's ancestor: an equality-only
selector (a map of labels) that may change, and an optional template."""

from __future__ import annotations

import copy

from pocketkube.apiserver.kinds import podspec
from pocketkube.apiserver.kinds.apps_common import WorkloadStrategy
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, required


class ReplicationControllerStrategy(WorkloadStrategy):
    def default(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        template = spec.get("template")
        if isinstance(template, dict):
            podspec.default_pod_template(template)
            labels = (template.get("metadata") or {}).get("labels")
            if labels is not None:
                # The template's labels stand in for an empty selector and empty object labels.
                if not spec.get("selector"):
                    spec["selector"] = copy.deepcopy(labels)
                if not obj["metadata"].get("labels"):
                    obj["metadata"]["labels"] = copy.deepcopy(labels)
        spec.setdefault("replicas", 1)

    def prepare_for_create(self, obj: dict) -> None:
        super().prepare_for_create(obj)
        obj["status"] = {"replicas": 0}  # a non-omitempty int32

    def validate_spec(self, obj: dict) -> list[FieldError]:
        spec = obj.get("spec") or {}
        errs = v.validate_nonnegative(spec.get("minReadySeconds") or 0, "spec.minReadySeconds")
        selector = spec.get("selector") or {}
        if not selector:
            errs.append(required("spec.selector"))
        errs += v.validate_nonnegative(spec.get("replicas") or 0, "spec.replicas")
        return errs + podspec.validate_controller_template(
            spec.get("template"), {"matchLabels": selector}, "spec.template", "ReplicationController")

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        # Unlike apps/v1, the selector may change.
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        return errs + self.validate_spec(obj)


INFO = KindInfo(
    group="", version="v1", kind="ReplicationController", resource="replicationcontrollers",
    singular="replicationcontroller", namespaced=True, strategy=ReplicationControllerStrategy(),
    short_names=("rc",), categories=("all",), subresources=("status", "scale"),
)
