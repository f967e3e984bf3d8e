"""rbac.authorization.k8s.io/v1 Role, ClusterRole, RoleBinding and ClusterRoleBinding: their
defaults (the roleRef's and subjects' apiGroup) and validation (pkg/apis/rbac/validation: policy
rules, role references, subjects), in one module because the four share them.

Stored and served as kube-apiserver serves them; what they grant is not enforced yet.
"""

from __future__ import annotations

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, invalid_value, not_supported, required

GROUP = "rbac.authorization.k8s.io"


def _path_segment_errors(name: str, path: str) -> list[FieldError]:
    """ValidatePathSegmentName: role and binding names may not be "." or ".." nor hold / or %."""
    if name in (".", ".."):
        return [invalid_value(path, name, f"may not be '{name}'")]
    for bad in ("/", "%"):
        if bad in name:
            return [invalid_value(path, name, f"may not contain '{bad}'")]
    return []


def validate_rule(rule: dict, path: str, namespaced: bool) -> list[FieldError]:
    """ValidatePolicyRule."""
    errs: list[FieldError] = []
    if not rule.get("verbs"):
        errs.append(required(f"{path}.verbs", "verbs must contain at least one value"))
    urls = rule.get("nonResourceURLs") or []
    if urls:
        if namespaced:
            errs.append(invalid_value(f"{path}.nonResourceURLs", urls,
                                      "namespaced rules cannot apply to non-resource URLs"))
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            errs.append(invalid_value(f"{path}.nonResourceURLs", urls,
                                      "rules cannot apply to both regular resources and non-resource URLs"))
        return errs
    if not rule.get("apiGroups"):
        errs.append(required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
    if not rule.get("resources"):
        errs.append(required(f"{path}.resources", "resource rules must supply at least one resource"))
    return errs


def _default_subjects(obj: dict) -> None:
    ref = obj.setdefault("roleRef", {})
    if not ref.get("apiGroup"):
        ref["apiGroup"] = GROUP
    for subject in obj.get("subjects") or []:
        if not subject.get("apiGroup") and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = GROUP


def _validate_subject(subject: dict, path: str, namespaced: bool) -> list[FieldError]:
    """ValidateRoleBindingSubject."""
    errs: list[FieldError] = []
    name = subject.get("name") or ""
    if not name:
        errs.append(required(f"{path}.name"))
    kind, group = subject.get("kind"), subject.get("apiGroup") or ""
    if kind == "ServiceAccount":
        if name:
            errs += [invalid_value(f"{path}.name", name, m) for m in v.is_dns1123_subdomain(name)]
        if group:
            errs.append(not_supported(f"{path}.apiGroup", group, [""]))
        if not namespaced and not subject.get("namespace"):
            errs.append(required(f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if group != GROUP:
            errs.append(not_supported(f"{path}.apiGroup", group, [GROUP]))
        if kind == "Group" and not name:
            pass  # reported above
    else:
        errs.append(not_supported(f"{path}.kind", kind, ["ServiceAccount", "User", "Group"]))
    return errs


class _RoleStrategy(Strategy):
    namespaced = True

    def validate(self, obj: dict) -> list[FieldError]:
        m = obj.get("metadata") or {}
        errs = v.validate_object_meta(m, self.namespaced, lambda name, prefix: [])
        errs += _path_segment_errors(m.get("name") or "", "metadata.name")
        for i, rule in enumerate(obj.get("rules") or []):
            errs += validate_rule(rule or {}, f"rules[{i}]", self.namespaced)
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        return v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {}) + self.validate(obj)


class _ClusterRoleStrategy(_RoleStrategy):
    namespaced = False

    def validate(self, obj: dict) -> list[FieldError]:
        errs = super().validate(obj)
        aggregation = obj.get("aggregationRule")
        if aggregation is not None:
            selectors = aggregation.get("clusterRoleSelectors") or []
            if not selectors:
                errs.append(required("aggregationRule.clusterRoleSelectors",
                                     "at least one clusterRoleSelector required if aggregationRule is non-nil"))
            for i, selector in enumerate(selectors):
                errs += v.validate_label_selector(selector or {}, f"aggregationRule.clusterRoleSelectors[{i}]")
        return errs


class _BindingStrategy(Strategy):
    namespaced = True

    def default(self, obj: dict) -> None:
        _default_subjects(obj)

    def validate(self, obj: dict) -> list[FieldError]:
        m = obj.get("metadata") or {}
        errs = v.validate_object_meta(m, self.namespaced, lambda name, prefix: [])
        errs += _path_segment_errors(m.get("name") or "", "metadata.name")
        ref = obj.get("roleRef") or {}
        if ref.get("apiGroup") != GROUP:
            errs.append(not_supported("roleRef.apiGroup", ref.get("apiGroup") or "", [GROUP]))
        kinds = ["Role", "ClusterRole"] if self.namespaced else ["ClusterRole"]
        if ref.get("kind") not in kinds:
            errs.append(not_supported("roleRef.kind", ref.get("kind") or "", kinds))
        if not ref.get("name"):
            errs.append(required("roleRef.name"))
        else:
            errs += _path_segment_errors(ref["name"], "roleRef.name")
        for i, subject in enumerate(obj.get("subjects") or []):
            errs += _validate_subject(subject or {}, f"subjects[{i}]", self.namespaced)
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        errs += self.validate(obj)
        if obj.get("roleRef") != old.get("roleRef"):
            errs.append(invalid_value("roleRef", obj.get("roleRef"), "cannot change roleRef"))
        return errs


class _ClusterBindingStrategy(_BindingStrategy):
    namespaced = False


ROLE = KindInfo(group=GROUP, version="v1", kind="Role", resource="roles", singular="role", namespaced=True,
                strategy=_RoleStrategy())
CLUSTER_ROLE = KindInfo(group=GROUP, version="v1", kind="ClusterRole", resource="clusterroles",
                        singular="clusterrole", namespaced=False, strategy=_ClusterRoleStrategy())
ROLE_BINDING = KindInfo(group=GROUP, version="v1", kind="RoleBinding", resource="rolebindings",
                        singular="rolebinding", namespaced=True, strategy=_BindingStrategy())
CLUSTER_ROLE_BINDING = KindInfo(group=GROUP, version="v1", kind="ClusterRoleBinding", resource="clusterrolebindings",
                                singular="clusterrolebinding", namespaced=False, strategy=_ClusterBindingStrategy())
KINDS = [ROLE, CLUSTER_ROLE, ROLE_BINDING, CLUSTER_ROLE_BINDING]
