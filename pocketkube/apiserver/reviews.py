"""The review APIs: create-only kinds answered at once, never stored.

- authorization.k8s.io/v1 SelfSubjectAccessReview (`kubectl auth can-i`), SelfSubjectRulesReview
  (`kubectl auth can-i --list`), SubjectAccessReview and LocalSubjectAccessReview (for another
  user: system:auth-delegator and namespace admins may ask);
- authentication.k8s.io/v1 SelfSubjectReview (`kubectl auth whoami`) and TokenReview.

Each answers with the request object plus its `status`, 201 Created, as kube-apiserver does.
"""

from __future__ import annotations

from pocketkube.apiserver import authn, authz
from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.core import errors

AUTHZ_GROUP = "authorization.k8s.io"
AUTHN_GROUP = "authentication.k8s.io"


def _info(group: str, kind: str, resource: str, namespaced: bool = False) -> KindInfo:
    return KindInfo(group=group, version="v1", kind=kind, resource=resource, singular="", namespaced=namespaced,
                    strategy=Strategy(), verbs=("create",))


SELF_SUBJECT_ACCESS_REVIEW = _info(AUTHZ_GROUP, "SelfSubjectAccessReview", "selfsubjectaccessreviews")
SELF_SUBJECT_RULES_REVIEW = _info(AUTHZ_GROUP, "SelfSubjectRulesReview", "selfsubjectrulesreviews")
SUBJECT_ACCESS_REVIEW = _info(AUTHZ_GROUP, "SubjectAccessReview", "subjectaccessreviews")
LOCAL_SUBJECT_ACCESS_REVIEW = _info(AUTHZ_GROUP, "LocalSubjectAccessReview", "localsubjectaccessreviews", True)
SELF_SUBJECT_REVIEW = _info(AUTHN_GROUP, "SelfSubjectReview", "selfsubjectreviews")
TOKEN_REVIEW = _info(AUTHN_GROUP, "TokenReview", "tokenreviews")
KINDS = [TOKEN_REVIEW, SELF_SUBJECT_REVIEW, LOCAL_SUBJECT_ACCESS_REVIEW, SELF_SUBJECT_ACCESS_REVIEW,
         SELF_SUBJECT_RULES_REVIEW, SUBJECT_ACCESS_REVIEW]
RESOURCES = {k.resource for k in KINDS}


def _attributes(spec: dict, user: authn.UserInfo, kind: str, namespace: str | None) -> authz.Attributes:
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (ra is None) == (nra is None):
        raise errors.invalid(kind, AUTHZ_GROUP, "", [errors.invalid_value(
            "spec.resourceAttributes", ra, "exactly one of nonResourceAttributes or resourceAttributes must be "
                                           "specified")])
    if nra is not None:
        return authz.Attributes(user, nra.get("verb", ""), False, path=nra.get("path", ""))
    ns = ra.get("namespace", "")
    if namespace is not None and ns != namespace:
        raise errors.invalid(kind, AUTHZ_GROUP, "", [errors.invalid_value(
            "spec.resourceAttributes.namespace", ns, "must match metadata.namespace")])
    return authz.Attributes(user, ra.get("verb", ""), True, namespace=ns, group=ra.get("group", ""),
                            version=ra.get("version", ""), resource=ra.get("resource", ""),
                            subresource=ra.get("subresource", ""), name=ra.get("name", ""))


def _access_status(authorizer: authz.RBACAuthorizer | None, a: authz.Attributes) -> dict:
    if authorizer is None:
        return {"allowed": True}
    allowed, reason = authorizer.authorize(a)
    status: dict = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return status


def answer(info: KindInfo, body: dict, user: authn.UserInfo, namespace: str | None,
           authorizer: authz.RBACAuthorizer | None, authenticator: authn.Authenticator | None) -> dict:
    """The review with its status filled in (the caller has checked the body is an object)."""
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    out = {"kind": info.kind, "apiVersion": info.api_version,
           "metadata": {**(body.get("metadata") or {}), "creationTimestamp": None}, "spec": spec}
    if info is SELF_SUBJECT_REVIEW:
        out.pop("spec")
        out["status"] = {"userInfo": user.to_api()}
    elif info is TOKEN_REVIEW:
        token = spec.get("token", "")
        if not token:
            raise errors.invalid(info.kind, AUTHN_GROUP, "", [errors.required("spec.token")])
        found = authenticator.authenticate("Bearer " + token) if authenticator else None
        if found is None or found is authn.ANONYMOUS:
            out["status"] = {"user": {}, "error": "invalid bearer token"}
        else:
            out["status"] = {"authenticated": True, "user": found.to_api(),
                             "audiences": list(spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local"])}
    elif info is SELF_SUBJECT_RULES_REVIEW:
        ns = spec.get("namespace", "")
        if authorizer is None:
            resource, non_resource = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}], [
                {"verbs": ["*"], "nonResourceURLs": ["*"]}]
        else:
            resource, non_resource = authorizer.rules_for(user, ns)
        out["status"] = {"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": False}
    elif info in (SUBJECT_ACCESS_REVIEW, LOCAL_SUBJECT_ACCESS_REVIEW):
        if not spec.get("user") and not spec.get("groups"):
            raise errors.invalid(info.kind, AUTHZ_GROUP, "", [errors.invalid_value(
                "spec.user", spec.get("user", ""), "at least one of user or group must be specified")])
        subject = authn.UserInfo(spec.get("user", ""), tuple(spec.get("groups") or ()), spec.get("uid", ""),
                                 {k: tuple(v) for k, v in (spec.get("extra") or {}).items()})
        out["status"] = _access_status(authorizer, _attributes(
            spec, subject, info.kind, namespace if info is LOCAL_SUBJECT_ACCESS_REVIEW else None))
    else:  # SelfSubjectAccessReview
        out["status"] = _access_status(authorizer, _attributes(spec, user, info.kind, None))
    if info.namespaced and namespace:
        out["metadata"]["namespace"] = namespace
    return out
