"""Kinds that charts and `kubectl describe namespace` expect to exist, served and stored with
their basic validation: core/v1 ResourceQuota (enforced by apiserver/quota.py, its status kept
by the resource quota controller), and LimitRange and networking.k8s.io/v1 NetworkPolicy,
which nothing enforces yet."""

from __future__ import annotations

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.core import validation as v
from pocketkube.core.errors import FieldError, not_supported, required

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


RESOURCE_QUOTA = KindInfo(group="", version="v1", kind="ResourceQuota", resource="resourcequotas",
                          singular="resourcequota", namespaced=True, strategy=ResourceQuotaStrategy(),
                          short_names=("quota",), subresources=("status",))
LIMIT_RANGE = KindInfo(group="", version="v1", kind="LimitRange", resource="limitranges", singular="limitrange",
                       namespaced=True, strategy=LimitRangeStrategy(), short_names=("limits",))
NETWORK_POLICY = KindInfo(group="networking.k8s.io", version="v1", kind="NetworkPolicy", resource="networkpolicies",
                          singular="networkpolicy", namespaced=True, strategy=NetworkPolicyStrategy(),
                          short_names=("netpol",))
KINDS = [RESOURCE_QUOTA, LIMIT_RANGE, NETWORK_POLICY]
