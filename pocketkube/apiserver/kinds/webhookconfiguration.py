"""admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration and
MutatingWebhookConfiguration: defaults (SetDefaults_*Webhook, _Rule, _ServiceReference) and the
validation a user meets (names, rules, policies, side effects, timeouts, client config, review
versions), in one module since the two share all of it; and ValidatingAdmissionPolicy with its
Binding, whose match rules are the same (admissionpolicy.py evaluates them).

Stored and served as kube-apiserver serves them; webhooks.py calls the webhooks they name.
"""

from __future__ import annotations

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, duplicate, invalid_value, not_supported, required

GROUP = "admissionregistration.k8s.io"
ACCEPTED_REVIEW_VERSIONS = ("v1", "v1beta1")
OPERATIONS = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"]
SCOPES = ["*", "Cluster", "Namespaced"]


class _WebhookConfigurationStrategy(Strategy):
    mutating = False
    tracks_generation = True

    def default(self, obj: dict) -> None:
        for hook in obj.get("webhooks") or []:
            if not isinstance(hook, dict):
                continue
            hook.setdefault("failurePolicy", "Fail")
            hook.setdefault("matchPolicy", "Equivalent")
            hook.setdefault("namespaceSelector", {})
            hook.setdefault("objectSelector", {})
            hook.setdefault("timeoutSeconds", 10)
            if self.mutating:
                hook.setdefault("reinvocationPolicy", "Never")
            for rule in hook.get("rules") or []:
                if isinstance(rule, dict):
                    rule.setdefault("scope", "*")
            service = (hook.get("clientConfig") or {}).get("service")
            if isinstance(service, dict):
                service.setdefault("port", 443)

    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, False, v.name_is_dns_subdomain)
        names: set[str] = set()
        for i, hook in enumerate(obj.get("webhooks") or []):
            path = f"webhooks[{i}]"
            errs += _validate_webhook(hook or {}, path)
            errs += _validate_review_versions(hook.get("admissionReviewVersions") or [],
                                              f"{path}.admissionReviewVersions")
            name = hook.get("name") or ""
            if name and name in names:
                errs.append(duplicate(f"{path}.name", name))
            names.add(name)
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        return v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {}) + self.validate(obj)


class _MutatingStrategy(_WebhookConfigurationStrategy):
    mutating = True

    def validate(self, obj: dict) -> list[FieldError]:
        errs = super().validate(obj)
        for i, hook in enumerate(obj.get("webhooks") or []):
            policy = (hook or {}).get("reinvocationPolicy")
            if policy is not None and policy not in ("Never", "IfNeeded"):
                errs.append(not_supported(f"webhooks[{i}].reinvocationPolicy", policy, ["IfNeeded", "Never"]))
        return errs


def _validate_webhook(hook: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name = hook.get("name") or ""
    if not name:
        errs.append(required(f"{path}.name"))
    elif name.count(".") < 2 or v.is_dns1123_subdomain(name):
        detail = (v.is_dns1123_subdomain(name) or ["should be a domain with at least three segments separated by dots"])[0]
        errs.append(invalid_value(f"{path}.name", name, detail))
    for j, rule in enumerate(hook.get("rules") or []):
        errs += _validate_rule(rule or {}, f"{path}.rules[{j}]")
    if hook.get("failurePolicy") not in (None, "Fail", "Ignore"):
        errs.append(not_supported(f"{path}.failurePolicy", hook["failurePolicy"], ["Fail", "Ignore"]))
    if hook.get("matchPolicy") not in (None, "Equivalent", "Exact"):
        errs.append(not_supported(f"{path}.matchPolicy", hook["matchPolicy"], ["Equivalent", "Exact"]))
    side_effects = hook.get("sideEffects")
    if side_effects is None:
        errs.append(required(f"{path}.sideEffects", "must specify one of None, NoneOnDryRun"))
    elif side_effects not in ("None", "NoneOnDryRun"):
        errs.append(not_supported(f"{path}.sideEffects", side_effects, ["None", "NoneOnDryRun"]))
    timeout = hook.get("timeoutSeconds")
    if timeout is not None and not 1 <= timeout <= 30:
        errs.append(invalid_value(f"{path}.timeoutSeconds", timeout, "the timeout value must be between 1 and 30 seconds"))
    for key in ("namespaceSelector", "objectSelector"):
        if hook.get(key) is not None:
            errs += v.validate_label_selector(hook[key], f"{path}.{key}")
    config = hook.get("clientConfig") or {}
    if (config.get("url") is None) == (config.get("service") is None):
        errs.append(required(f"{path}.clientConfig", "exactly one of url or service is required"))
    elif config.get("url") is not None:
        url = config["url"]
        if not url.startswith("https://"):
            errs.append(invalid_value(f"{path}.clientConfig.url", url, "'https' is the only allowed URL scheme"))
    else:
        service = config["service"]
        for key in ("namespace", "name"):
            if not service.get(key):
                errs.append(required(f"{path}.clientConfig.service.{key}", f"service {key} is required"))
        port = service.get("port")
        if port is not None and not 1 <= port <= 65535:
            errs.append(invalid_value(f"{path}.clientConfig.service.port", port, "port is not valid: must be between 1 and 65535, inclusive"))
    return errs


def _validate_rule(rule: dict, path: str) -> list[FieldError]:
    """validateRuleWithOperations."""
    errs: list[FieldError] = []
    operations = rule.get("operations") or []
    if not operations:
        errs.append(required(f"{path}.operations"))
    if len(operations) > 1 and "*" in operations:
        errs.append(invalid_value(f"{path}.operations", operations, "if '*' is present, must not specify other operations"))
    for k, op in enumerate(operations):
        if op not in OPERATIONS:
            errs.append(not_supported(f"{path}.operations[{k}]", op, OPERATIONS))
    for key, what in (("apiGroups", "API groups"), ("apiVersions", "API versions")):
        values = rule.get(key) or []
        if not values:
            errs.append(required(f"{path}.{key}"))
        if len(values) > 1 and "*" in values:
            errs.append(invalid_value(f"{path}.{key}", values, f"if '*' is present, must not specify other {what}"))
    if not rule.get("resources"):
        errs.append(required(f"{path}.resources"))
    if rule.get("scope") is not None and rule["scope"] not in SCOPES:
        errs.append(not_supported(f"{path}.scope", rule["scope"], SCOPES))
    return errs


def _validate_review_versions(versions: list, path: str) -> list[FieldError]:
    if not versions:
        return [required(path, "must specify one of v1, v1beta1")]
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, version in enumerate(versions):
        if version in seen:
            errs.append(invalid_value(f"{path}[{i}]", version, "duplicate version"))
        seen.add(version)
    if not seen & set(ACCEPTED_REVIEW_VERSIONS):
        errs.append(invalid_value(path, versions, "must include at least one of v1, v1beta1"))
    return errs


VALIDATING = KindInfo(group=GROUP, version="v1", kind="ValidatingWebhookConfiguration",
                      resource="validatingwebhookconfigurations", singular="validatingwebhookconfiguration",
                      namespaced=False, strategy=_WebhookConfigurationStrategy(), categories=("api-extensions",))
MUTATING = KindInfo(group=GROUP, version="v1", kind="MutatingWebhookConfiguration",
                    resource="mutatingwebhookconfigurations", singular="mutatingwebhookconfiguration",
                    namespaced=False, strategy=_MutatingStrategy(), categories=("api-extensions",))


class _PolicyStrategy(Strategy):
    has_status_subresource = True

    def default(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("failurePolicy", "Fail")
        match = spec.setdefault("matchConstraints", {})
        match.setdefault("matchPolicy", "Equivalent")
        match.setdefault("namespaceSelector", {})
        match.setdefault("objectSelector", {})
        for rule in match.get("resourceRules") or []:
            if isinstance(rule, dict):
                rule.setdefault("scope", "*")

    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, False, v.name_is_dns_subdomain)
        spec = obj.get("spec") or {}
        validations = spec.get("validations") or []
        if not validations and not spec.get("auditAnnotations"):
            errs.append(required("spec.validations", "validations or auditAnnotations must contain at least one item"))
        for i, item in enumerate(validations):
            if not (item or {}).get("expression"):
                errs.append(required(f"spec.validations[{i}].expression"))
        if spec.get("failurePolicy") not in ("Fail", "Ignore"):
            errs.append(not_supported("spec.failurePolicy", spec.get("failurePolicy"), ["Fail", "Ignore"]))
        rules = (spec.get("matchConstraints") or {}).get("resourceRules") or []
        if not rules:
            errs.append(required("spec.matchConstraints.resourceRules"))
        for j, rule in enumerate(rules):
            errs += _validate_rule(rule or {}, f"spec.matchConstraints.resourceRules[{j}]")
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        return v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {}) + self.validate(obj)


class _PolicyBindingStrategy(Strategy):
    ACTIONS = ["Audit", "Deny", "Warn"]

    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, False, v.name_is_dns_subdomain)
        spec = obj.get("spec") or {}
        if not spec.get("policyName"):
            errs.append(required("spec.policyName"))
        actions = spec.get("validationActions") or []
        if not actions:
            errs.append(required("spec.validationActions"))
        for i, action in enumerate(actions):
            if action not in self.ACTIONS:
                errs.append(not_supported(f"spec.validationActions[{i}]", action, self.ACTIONS))
        if "Deny" in actions and "Warn" in actions:
            errs.append(invalid_value("spec.validationActions", actions, "must not contain both Deny and Warn "
                                                                        "(repeating the same validation failure "
                                                                        "information in the API response and "
                                                                        "headers serves no purpose)"))
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        return v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {}) + self.validate(obj)


POLICY = KindInfo(group=GROUP, version="v1", kind="ValidatingAdmissionPolicy", resource="validatingadmissionpolicies",
                  singular="validatingadmissionpolicy", namespaced=False, strategy=_PolicyStrategy(),
                  categories=("api-extensions",), subresources=("status",))
POLICY_BINDING = KindInfo(group=GROUP, version="v1", kind="ValidatingAdmissionPolicyBinding",
                          resource="validatingadmissionpolicybindings", singular="validatingadmissionpolicybinding",
                          namespaced=False, strategy=_PolicyBindingStrategy(), categories=("api-extensions",))
KINDS = [VALIDATING, MUTATING, POLICY, POLICY_BINDING]
