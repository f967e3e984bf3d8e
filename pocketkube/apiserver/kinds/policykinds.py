"""Kinds that charts and `kubectl describe namespace` expect to exist, served and stored with
their defaults and basic validation: core/v1 ResourceQuota (enforced by apiserver/quota.py, its
status kept by the resource quota controller); policy/v1 PodDisruptionBudget (its status kept by
the disruption controller, read by the eviction subresource); LimitRange, networking.k8s.io/v1
NetworkPolicy, scheduling.k8s.io/v1 PriorityClass (with the two system classes every cluster has)
and autoscaling/v2 HorizontalPodAutoscaler, which nothing enforces or acts on yet. PersistentVolumeClaims and PersistentVolumes are volume.py's."""

from __future__ import annotations

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, forbidden, invalid_value, not_supported, required

LIMIT_TYPES = ["Container", "Pod", "PersistentVolumeClaim"]
POLICY_TYPES = ["Ingress", "Egress"]


class _StoredStrategy(Strategy):
    """ObjectMeta validation (a DNS subdomain name) and the kind's own `validate_body`."""

    namespaced = True

    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, self.namespaced, v.name_is_dns_subdomain)
        return errs + self.validate_body(obj)

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        return v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {}) + self.validate(obj)

    def validate_body(self, obj: dict) -> list[FieldError]:
        return []


class ResourceQuotaStrategy(_StoredStrategy):
    has_status_subresource = True
    tracks_generation = False

    def validate_body(self, obj: dict) -> list[FieldError]:
        errs: list[FieldError] = []
        for scope in (obj.get("spec") or {}).get("scopes") or []:
            allowed = ["BestEffort", "CrossNamespacePodAffinity", "NotBestEffort", "NotTerminating",
                       "PriorityClass", "Terminating"]
            if scope not in allowed:
                errs.append(not_supported("spec.scopes", scope, allowed))
        return errs


class LimitRangeStrategy(_StoredStrategy):
    tracks_generation = False

    def validate_body(self, obj: dict) -> list[FieldError]:
        errs: list[FieldError] = []
        for i, item in enumerate((obj.get("spec") or {}).get("limits") or []):
            kind = (item or {}).get("type")
            if not kind:
                errs.append(required(f"spec.limits[{i}].type"))
            elif kind not in LIMIT_TYPES:
                errs.append(not_supported(f"spec.limits[{i}].type", kind, LIMIT_TYPES))
        return errs


class NetworkPolicyStrategy(_StoredStrategy):
    def default(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("podSelector", {})
        if not spec.get("policyTypes"):
            # SetDefaults_NetworkPolicy: Ingress always, Egress when egress rules are given.
            spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
        for rules in (spec.get("ingress") or [], spec.get("egress") or []):
            for rule in rules:
                for port in (rule or {}).get("ports") or []:
                    if isinstance(port, dict):
                        port.setdefault("protocol", "TCP")

    def validate_body(self, obj: dict) -> list[FieldError]:
        spec = obj.get("spec") or {}
        errs = v.validate_label_selector(spec.get("podSelector") or {}, "spec.podSelector")
        for i, kind in enumerate(spec.get("policyTypes") or []):
            if kind not in POLICY_TYPES:
                errs.append(not_supported(f"spec.policyTypes[{i}]", kind, POLICY_TYPES))
        return errs


class PodDisruptionBudgetStrategy(_StoredStrategy):
    has_status_subresource = True

    def initial_status(self, obj: dict) -> dict:
        return {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}

    def prepare_for_create(self, obj: dict) -> None:
        super().prepare_for_create(obj)
        obj["status"] = self.initial_status(obj)

    def validate_body(self, obj: dict) -> list[FieldError]:
        spec = obj.get("spec") or {}
        errs: list[FieldError] = []
        if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
            errs.append(invalid_value("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
        for key in ("minAvailable", "maxUnavailable"):
            value = spec.get(key)
            if isinstance(value, int) and value < 0:
                errs.append(invalid_value(f"spec.{key}", value, "must be greater than or equal to 0"))
        if spec.get("selector") is not None:
            errs += v.validate_label_selector(spec["selector"], "spec.selector")
        return errs


class PriorityClassStrategy(_StoredStrategy):
    namespaced = False
    tracks_generation = False
    SYSTEM = ("system-cluster-critical", "system-node-critical")

    def default(self, obj: dict) -> None:
        obj.setdefault("preemptionPolicy", "PreemptLowerPriority")

    def validate_body(self, obj: dict) -> list[FieldError]:
        name = (obj.get("metadata") or {}).get("name") or ""
        errs: list[FieldError] = []
        if name.startswith("system-") and name not in self.SYSTEM:
            errs.append(forbidden("metadata.name", "priority class names with 'system-' prefix are reserved for "
                                                   "system use only"))
        if obj.get("value") is None:
            errs.append(required("value"))
        elif isinstance(obj["value"], int) and obj["value"] > 1_000_000_000 and name not in self.SYSTEM:
            errs.append(forbidden("value", "maximum allowed value of a user defined priority is 1000000000"))
        policies = ["Never", "PreemptLowerPriority"]
        if obj.get("preemptionPolicy") not in policies:
            errs.append(not_supported("preemptionPolicy", obj.get("preemptionPolicy"), policies))
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = super().validate_update(obj, old)
        if obj.get("value") != old.get("value"):
            errs.append(forbidden("value", "may not be changed in an update."))
        return errs


class HorizontalPodAutoscalerStrategy(_StoredStrategy):
    has_status_subresource = True

    def default(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("minReplicas", 1)
        if not spec.get("metrics"):
            spec["metrics"] = [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]

    def initial_status(self, obj: dict) -> dict:
        return {"currentReplicas": 0, "desiredReplicas": 0}

    def prepare_for_create(self, obj: dict) -> None:
        super().prepare_for_create(obj)
        obj["status"] = self.initial_status(obj)

    def validate_body(self, obj: dict) -> list[FieldError]:
        spec = obj.get("spec") or {}
        errs: list[FieldError] = []
        ref = spec.get("scaleTargetRef") or {}
        if not ref.get("kind"):
            errs.append(required("spec.scaleTargetRef.kind"))
        if not ref.get("name"):
            errs.append(required("spec.scaleTargetRef.name"))
        low, high = spec.get("minReplicas"), spec.get("maxReplicas")
        if isinstance(low, int) and low < 1:
            errs.append(invalid_value("spec.minReplicas", low, "must be greater than or equal to 1"))
        if not isinstance(high, int) or high < 1:
            errs.append(invalid_value("spec.maxReplicas", high if high is not None else 0,
                                      "must be greater than or equal to 1"))
        elif isinstance(low, int) and high < low:
            errs.append(invalid_value("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`"))
        return errs


class HorizontalPodAutoscalerV1Strategy(HorizontalPodAutoscalerStrategy):
    """autoscaling/v1, stored as autoscaling/v2 (its CPU target is v2's Resource cpu metric)."""

    def default(self, obj: dict) -> None:
        obj.setdefault("spec", {}).setdefault("minReplicas", 1)

    def initial_status(self, obj: dict) -> dict:
        return {"currentReplicas": 0, "desiredReplicas": 0}

    def to_storage(self, obj: dict) -> dict:
        spec = dict(obj.get("spec") or {})
        target = spec.pop("targetCPUUtilizationPercentage", None)
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 80 if target is None else target}}}]
        status = dict(obj.get("status") or {})
        current = status.pop("currentCPUUtilizationPercentage", None)
        if current is not None:
            status["currentMetrics"] = [{"type": "Resource", "resource": {
                "name": "cpu", "current": {"averageUtilization": current}}}]
        out = {**obj, "apiVersion": "autoscaling/v2", "spec": spec}
        if "status" in obj:
            out["status"] = status
        return out

    def from_storage(self, obj: dict) -> dict:
        spec = {k: val for k, val in (obj.get("spec") or {}).items() if k not in ("metrics", "behavior")}
        for m in (obj.get("spec") or {}).get("metrics") or []:
            res = m.get("resource") or {}
            if m.get("type") == "Resource" and res.get("name") == "cpu" and \
                    (res.get("target") or {}).get("averageUtilization") is not None:
                spec["targetCPUUtilizationPercentage"] = res["target"]["averageUtilization"]
                break
        status = {k: val for k, val in (obj.get("status") or {}).items()
                  if k in ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas")}
        for m in (obj.get("status") or {}).get("currentMetrics") or []:
            res = m.get("resource") or {}
            if m.get("type") == "Resource" and res.get("name") == "cpu":
                current = (res.get("current") or {}).get("averageUtilization")
                if current is not None:
                    status["currentCPUUtilizationPercentage"] = current
        out = {**obj, "apiVersion": "autoscaling/v1", "spec": spec}
        if "status" in obj:
            out["status"] = status
        return out


RESOURCE_QUOTA = KindInfo(group="", version="v1", kind="ResourceQuota", resource="resourcequotas",
                          singular="resourcequota", namespaced=True, strategy=ResourceQuotaStrategy(),
                          short_names=("quota",), subresources=("status",))
LIMIT_RANGE = KindInfo(group="", version="v1", kind="LimitRange", resource="limitranges", singular="limitrange",
                       namespaced=True, strategy=LimitRangeStrategy(), short_names=("limits",))
NETWORK_POLICY = KindInfo(group="networking.k8s.io", version="v1", kind="NetworkPolicy", resource="networkpolicies",
                          singular="networkpolicy", namespaced=True, strategy=NetworkPolicyStrategy(),
                          short_names=("netpol",))
POD_DISRUPTION_BUDGET = KindInfo(group="policy", version="v1", kind="PodDisruptionBudget",
                                 resource="poddisruptionbudgets", singular="poddisruptionbudget", namespaced=True,
                                 strategy=PodDisruptionBudgetStrategy(), short_names=("pdb",),
                                 subresources=("status",))
PRIORITY_CLASS = KindInfo(group="scheduling.k8s.io", version="v1", kind="PriorityClass", resource="priorityclasses",
                          singular="priorityclass", namespaced=False, strategy=PriorityClassStrategy(),
                          short_names=("pc",))
HORIZONTAL_POD_AUTOSCALER = KindInfo(group="autoscaling", version="v2", kind="HorizontalPodAutoscaler",
                                     resource="horizontalpodautoscalers", singular="horizontalpodautoscaler",
                                     namespaced=True, strategy=HorizontalPodAutoscalerStrategy(),
                                     short_names=("hpa",), categories=("all",), subresources=("status",))
HORIZONTAL_POD_AUTOSCALER_V1 = KindInfo(group="autoscaling", version="v1", kind="HorizontalPodAutoscaler",
                                        resource="horizontalpodautoscalers", singular="horizontalpodautoscaler",
                                        namespaced=True, strategy=HorizontalPodAutoscalerV1Strategy(),
                                        short_names=("hpa",), categories=("all",), subresources=("status",),
                                        storage_group="autoscaling")
KINDS = [RESOURCE_QUOTA, LIMIT_RANGE, NETWORK_POLICY, POD_DISRUPTION_BUDGET, PRIORITY_CLASS, HORIZONTAL_POD_AUTOSCALER,
         HORIZONTAL_POD_AUTOSCALER_V1]

# scheduling's post-start hook: the classes every cluster has
SYSTEM_PRIORITY_CLASSES = [
    {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "system-node-critical"},
     "value": 2000001000, "description": "Used for system critical pods that must not be moved from their current "
                                         "node."},
    {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "system-cluster-critical"},
     "value": 2000000000, "description": "Used for system critical pods that must run in the cluster, but can be "
                                         "moved to another node if necessary."},
]
