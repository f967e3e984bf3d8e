"""ValidatingAdmissionPolicy: CEL validations of writes, declared in the API
(admissionregistration.k8s.io/v1, k8s.io/apiserver pkg/admission/plugin/policy/validating).

A ValidatingAdmissionPolicyBinding names a policy; the pair applies to a request when the
policy's `matchConstraints` (resource rules, namespace and object selectors, matchPolicy: the
webhooks' matching, webhooks.select) and the binding's `matchResources` select it and every
`matchConditions` expression is true. Each of the policy's `validations` is then evaluated with
`object`, `oldObject`, `request`, `namespaceObject` and `variables` (the policy's named
`variables`); one that is false gives, per the binding's `validationActions`:

- Deny: the request is refused: `ValidatingAdmissionPolicy 'P' with binding 'B' denied request:
  MESSAGE` (the validation's `message`, or `failed expression: EXPR`), with the code of its
  `reason` (Invalid 422 by default, Forbidden 403, Unauthorized 401, RequestEntityTooLarge 413);
- Warn: a warning `Validation failed for ValidatingAdmissionPolicy 'P' with binding 'B': MESSAGE`;
- Audit: nothing visible (there is no audit log).

An expression that cannot be evaluated (celrules.py: a Kubernetes CEL function cel-python lacks)
is a failure, which the policy's `failurePolicy` decides: Fail refuses the request, Ignore lets
it through. Parameter resources (`paramKind`) are not supported: a binding that needs them is
skipped with a log line.
"""

from __future__ import annotations

import logging
from typing import Any

from pocketkube.apiserver import authn, celrules, webhooks
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.core import errors

log = logging.getLogger(__name__)

GROUP = webhooks.GROUP
POLICY_PREFIX = f"/registry/{GROUP}/validatingadmissionpolicies/"
BINDING_PREFIX = f"/registry/{GROUP}/validatingadmissionpolicybindings/"
_CODES = {"Unauthorized": 401, "Forbidden": 403, "Invalid": 422, "RequestEntityTooLarge": 413}


class Policies:
    def __init__(self, cache):
        self.cache = cache

    def active(self) -> bool:
        return bool(self.cache.list(BINDING_PREFIX))

    def admit(self, operation: str, info: KindInfo, sub: str, namespace: str, name: str, obj: dict | None,
              old: dict | None, user: authn.UserInfo, dry_run: bool, warnings: list[str]) -> None:
        if info.group == GROUP:
            return
        policies = {p["metadata"]["name"]: p for p in self.cache.list(POLICY_PREFIX)}
        for binding in self.cache.list(BINDING_PREFIX):
            bspec = binding.get("spec") or {}
            policy = policies.get(bspec.get("policyName", ""))
            if policy is None:
                continue
            spec = policy.get("spec") or {}
            match = spec.get("matchConstraints") or {}
            if webhooks.select(self.cache, match, match.get("resourceRules") or [], operation, info, sub, namespace,
                               obj, old) is None:
                continue
            bmatch = bspec.get("matchResources")
            if bmatch and bmatch.get("resourceRules") and webhooks.select(
                    self.cache, bmatch, bmatch["resourceRules"], operation, info, sub, namespace, obj, old) is None:
                continue
            if bmatch and not bmatch.get("resourceRules") and webhooks.select(
                    self.cache, bmatch, [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                                          "resources": ["*", "*/*"]}], operation, info, sub, namespace, obj,
                    old) is None:
                continue
            if spec.get("paramKind"):
                log.warning("ValidatingAdmissionPolicy %s needs parameters, which pocketkube does not support: "
                            "skipped", policy["metadata"]["name"])
                continue
            self._apply(policy, binding, operation, info, sub, namespace, name, obj, old, user, dry_run, warnings)

    def _apply(self, policy: dict, binding: dict, operation: str, info: KindInfo, sub: str, namespace: str,
               name: str, obj: dict | None, old: dict | None, user: authn.UserInfo, dry_run: bool,
               warnings: list[str]) -> None:
        spec = policy.get("spec") or {}
        pname, bname = policy["metadata"]["name"], binding["metadata"]["name"]
        actions = (binding.get("spec") or {}).get("validationActions") or []
        request = webhooks.cel_request(operation, info, sub, namespace, name, user, dry_run)
        ns_obj = self.cache.get(f"/registry/core/namespaces/{namespace}") if namespace else None
        activation: dict[str, Any] = {"object": obj, "oldObject": old, "request": request,
                                      "namespaceObject": ns_obj, "params": None}
        try:
            variables: dict[str, Any] = {}
            for var in spec.get("variables") or []:
                activation["variables"] = variables
                variables[var.get("name", "")] = _json(celrules.evaluate(var.get("expression", ""), activation))
            activation["variables"] = variables
            for cond in spec.get("matchConditions") or []:
                if not bool(celrules.evaluate(cond.get("expression", ""), activation)):
                    return
            failures = []
            for item in spec.get("validations") or []:
                if not bool(celrules.evaluate(item.get("expression", ""), activation)):
                    failures.append(item)
        except celrules.NotEvaluated as exc:
            if spec.get("failurePolicy", "Fail") == "Ignore":
                return
            raise errors.APIError(500, "InternalError", f"ValidatingAdmissionPolicy '{pname}' with binding "
                                                        f"'{bname}' denied request: expression not evaluated: {exc}")
        for item in failures:
            message = item.get("message") or f"failed expression: {item.get('expression', '').strip()}"
            if "Deny" in actions:
                reason = item.get("reason") or "Invalid"
                raise errors.APIError(_CODES.get(reason, 422), reason,
                                      f"ValidatingAdmissionPolicy '{pname}' with binding '{bname}' denied request: "
                                      f"{message}")
            if "Warn" in actions:
                warnings.append(f"Validation failed for ValidatingAdmissionPolicy '{pname}' with binding '{bname}': "
                                f"{message}")


def _json(value: Any) -> Any:
    """A CEL value back as JSON-like Python (for variables used by later expressions)."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value
