"""Authorization: request attributes, the RBAC authorizer, escalation checks, Forbidden errors.

As kube-apiserver with `--authorization-mode=RBAC` (k8s.io/apiserver endpoints/request
RequestInfoFactory, plugin/pkg/auth/authorizer/rbac, pkg/registry/rbac/validation):

- `attributes(method, path, query, user)` turns a request into what is authorized: a verb
  (get, list, watch, create, update, patch, delete, deletecollection) on a resource
  (group, resource, subresource, namespace, name), or an HTTP verb on a non-resource path.
- `RBACAuthorizer` reads Roles, ClusterRoles and their bindings from the watch cache. The
  rules that apply to a (user, groups, namespace) are resolved once per change of any RBAC
  object and cached, so a request costs a dict look-up and a few rule matches. Members of
  `system:masters` are allowed everything before RBAC is asked, as kube-apiserver's
  privileged-group authorizer does.
- `forbidden(attrs, reason)` is the 403 Status with kube-apiserver's message.
- `check_no_escalation` refuses a Role or binding that grants what its author does not hold
  (unless the author may `escalate` / `bind`), with the upstream message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

from pocketkube.apiserver.authn import MASTERS, UserInfo, split_service_account
from pocketkube.core import errors
from pocketkube.core.query import query_bool

log = logging.getLogger(__name__)

GROUP = "rbac.authorization.k8s.io"
RBAC_PREFIXES = tuple(f"/registry/{GROUP}/{r}/" for r in ("roles", "clusterroles", "rolebindings",
                                                          "clusterrolebindings"))
RBAC_GROUP_PREFIX = f"/registry/{GROUP}/"
_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(slots=True)
class Attributes:
    user: UserInfo
    verb: str
    resource_request: bool
    path: str = ""
    namespace: str = ""
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


def attributes(method: str, path: str, query, user: UserInfo) -> Attributes:
    """RequestInfoFactory.NewRequestInfo, for the paths this server serves."""
    parts = path.strip("/").split("/")  # splitPath, as upstream: an empty segment stays one
    n = len(parts)
    if n >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif n >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Attributes(user, "get" if method == "HEAD" else method.lower(), False, path=path)
    verb = _VERBS.get(method) or method.lower()
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    n = len(rest)
    name = rest[1] if n > 1 else ""
    if verb == "get":
        if "watch" in query and query_bool(query, "watch"):
            verb = "watch"
        elif not name:
            verb = "list"
    elif verb == "delete" and not name:
        verb = "deletecollection"
    return Attributes(user, verb, True, path, namespace, group, version, rest[0], rest[2] if n > 2 else "", name)


# ---- rules -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """A PolicyRule, compiled: sets for the look-ups."""

    verbs: frozenset
    groups: frozenset
    resources: frozenset
    names: frozenset
    urls: tuple
    raw: dict

    @staticmethod
    def of(rule: dict) -> "Rule":
        return Rule(frozenset(rule.get("verbs") or ()), frozenset(rule.get("apiGroups") or ()),
                    frozenset(rule.get("resources") or ()), frozenset(rule.get("resourceNames") or ()),
                    tuple(rule.get("nonResourceURLs") or ()), rule)

    def allows(self, a: Attributes) -> bool:
        """RuleAllows."""
        if "*" not in self.verbs and a.verb not in self.verbs:
            return False
        if not a.resource_request:
            return any(u == "*" or u == a.path or (u.endswith("*") and a.path.startswith(u[:-1]))
                       for u in self.urls)
        if "*" not in self.groups and a.group not in self.groups:
            return False
        if "*" not in self.resources:
            if a.subresource:
                full = f"{a.resource}/{a.subresource}"
                if full not in self.resources and f"*/{a.subresource}" not in self.resources:
                    return False
            elif a.resource not in self.resources:
                return False
        return not self.names or a.name in self.names


@dataclass(frozen=True, slots=True)
class Grant:
    """The rules one binding gives one subject, and how SubjectAccessReview names it."""

    source: str
    rules: tuple[Rule, ...]


def describe_subject(subject: dict, binding_namespace: str) -> str:
    kind, name = subject.get("kind", ""), subject.get("name", "")
    if kind == "ServiceAccount":
        return f'{kind} "{name}/{subject.get("namespace") or binding_namespace}"'
    return f"{kind} {errors.go_quote(name)}"


def _subject_keys(subject: dict, binding_namespace: str) -> tuple | None:
    kind = subject.get("kind")
    if kind == "User":
        sa = split_service_account(subject.get("name", ""))
        return ("sa", *sa) if sa else ("user", subject.get("name", ""))
    if kind == "Group":
        return ("group", subject.get("name", ""))
    if kind == "ServiceAccount":
        return ("sa", subject.get("namespace") or binding_namespace, subject.get("name", ""))
    return None


def _user_keys(user: UserInfo) -> list[tuple]:
    keys: list[tuple] = [("user", user.name)]
    sa = split_service_account(user.name)
    if sa:
        keys.append(("sa", *sa))
    keys += [("group", g) for g in user.groups]
    return keys


class _Index:
    """Every binding's grants by subject, built from one revision of the RBAC objects."""

    def __init__(self, cache):
        roles = {(r["metadata"].get("namespace", ""), r["metadata"]["name"]): r
                 for r in cache.list(RBAC_PREFIXES[0])}
        cluster_roles = {r["metadata"]["name"]: r for r in cache.list(RBAC_PREFIXES[1])}
        compiled: dict[tuple, tuple[Rule, ...]] = {}

        def rules_of(kind: str, namespace: str, name: str) -> tuple[Rule, ...] | str:
            key = (kind, namespace, name)
            if key not in compiled:
                role = cluster_roles.get(name) if kind == "ClusterRole" else roles.get((namespace, name))
                if role is None:
                    what = "clusterrole" if kind == "ClusterRole" else "role"
                    return f'{what}.{GROUP} "{name}" not found'
                compiled[key] = tuple(Rule.of(r) for r in role.get("rules") or [] if isinstance(r, dict))
            return compiled[key]

        self.cluster: dict[tuple, list[Grant | str]] = {}
        self.namespaced: dict[str, dict[tuple, list[Grant | str]]] = {}
        for b in cache.list(RBAC_PREFIXES[3]):
            ref = b.get("roleRef") or {}
            rules = rules_of("ClusterRole", "", ref.get("name", ""))
            for subject in b.get("subjects") or []:
                key = _subject_keys(subject, "")
                if key is None:
                    continue
                grant = rules if isinstance(rules, str) else Grant(
                    f'ClusterRoleBinding {errors.go_quote(b["metadata"]["name"])} of ClusterRole '
                    f'{errors.go_quote(ref.get("name", ""))} to {describe_subject(subject, "")}', rules)
                self.cluster.setdefault(key, []).append(grant)
        for b in cache.list(RBAC_PREFIXES[2]):
            ns = b["metadata"].get("namespace", "")
            ref = b.get("roleRef") or {}
            kind = ref.get("kind", "")
            rules = rules_of(kind, "" if kind == "ClusterRole" else ns, ref.get("name", ""))
            for subject in b.get("subjects") or []:
                key = _subject_keys(subject, ns)
                if key is None:
                    continue
                grant = rules if isinstance(rules, str) else Grant(
                    f'RoleBinding {errors.go_quote(b["metadata"]["name"] + "/" + ns)} of {kind} '
                    f'{errors.go_quote(ref.get("name", ""))} to {describe_subject(subject, ns)}', rules)
                self.namespaced.setdefault(ns, {}).setdefault(key, []).append(grant)

    def grants(self, user: UserInfo, namespace: str) -> tuple[list[Grant], list[str]]:
        keys = _user_keys(user)
        grants: list[Grant] = []
        problems: list[str] = []
        tables = [self.cluster]
        if namespace:
            tables.append(self.namespaced.get(namespace, {}))
        for table in tables:
            for key in keys:
                for g in table.get(key, ()):
                    if isinstance(g, str):
                        if g not in problems:
                            problems.append(g)
                    else:
                        grants.append(g)
        return grants, problems


class RBACAuthorizer:
    def __init__(self, cache):
        self.cache = cache
        self._revision = -1
        self._index: _Index | None = None
        self._resolved: dict[tuple, tuple[list[Grant], list[str]]] = {}
        self._decisions: dict[tuple, tuple[bool, str]] = {}

    def _current(self) -> _Index:
        rev = self.cache.prefix_revision(RBAC_GROUP_PREFIX)
        if self._index is None or rev != self._revision:
            self._index = _Index(self.cache)
            self._revision = rev
            self._resolved = {}
            self._decisions = {}
        return self._index

    def grants(self, user: UserInfo, namespace: str) -> tuple[list[Grant], list[str]]:
        """The grants (and broken role references) that apply to `user` in `namespace`."""
        index = self._current()
        key = (user.name, user.groups, namespace)
        found = self._resolved.get(key)
        if found is None:
            if len(self._resolved) > 10_000:
                self._resolved.clear()
            found = self._resolved[key] = index.grants(user, namespace)
        return found

    def authorize(self, a: Attributes) -> tuple[bool, str]:
        """(allowed, reason) as the union of the privileged-group and RBAC authorizers gives."""
        if MASTERS in a.user.groups:
            return True, ""
        self._current()
        key = (a.user.name, a.user.groups, a.verb, a.resource_request, a.path if not a.resource_request else "",
               a.namespace, a.group, a.resource, a.subresource, a.name)
        found = self._decisions.get(key)
        if found is None:
            if len(self._decisions) > 50_000:
                self._decisions.clear()
            found = self._decisions[key] = self._decide(a)
        return found

    def _decide(self, a: Attributes) -> tuple[bool, str]:
        grants, problems = self.grants(a.user, a.namespace if a.resource_request else "")
        for g in grants:
            for rule in g.rules:
                if rule.allows(a):
                    return True, f"RBAC: allowed by {g.source}"
        if problems:
            return False, "RBAC: " + (problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]")
        return False, ""

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[dict], list[dict]]:
        """(resourceRules, nonResourceRules) for SelfSubjectRulesReview."""
        grants, _ = self.grants(user, namespace)
        resource: list[dict] = []
        non_resource: list[dict] = []
        seen: set = set()
        for g in grants:
            for rule in g.rules:
                raw = rule.raw
                if rule.urls:
                    entry = {"verbs": list(raw.get("verbs") or []), "nonResourceURLs": list(rule.urls)}
                    target = non_resource
                else:
                    entry = {"verbs": list(raw.get("verbs") or []), "apiGroups": list(raw.get("apiGroups") or []),
                             "resources": list(raw.get("resources") or [])}
                    if raw.get("resourceNames"):
                        entry["resourceNames"] = list(raw["resourceNames"])
                    target = resource
                key = repr(sorted(entry.items()))
                if key not in seen:
                    seen.add(key)
                    target.append(entry)
        return resource, non_resource

    def owner_rules(self, user: UserInfo, namespace: str) -> list[Rule]:
        return [r for g in self.grants(user, namespace)[0] for r in g.rules]


# ---- errors ----------------------------------------------------------------------------


def forbidden_message(a: Attributes) -> str:
    name = errors.go_quote(a.user.name)
    if not a.resource_request:
        return f"User {name} cannot {a.verb} path {errors.go_quote(a.path)}"
    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    where = f"in the namespace {errors.go_quote(a.namespace)}" if a.namespace else "at the cluster scope"
    return (f"User {name} cannot {a.verb} resource {errors.go_quote(resource)} in API group "
            f"{errors.go_quote(a.group)} {where}")


def forbidden(a: Attributes, reason: str = "") -> errors.APIError:
    """responsewriters.Forbidden: apierrors.NewForbidden(group resource, name, message[: reason])."""
    msg = forbidden_message(a)
    if reason:
        msg = f"{msg}: {reason}"
    return forbidden_error(a.group, a.resource if a.resource_request else "", a.name, msg)


def forbidden_error(group: str, resource: str, name: str, msg: str) -> errors.APIError:
    qualified = f"{resource}.{group}" if group and resource else resource
    details: dict = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if resource:
        details["kind"] = resource
    if not qualified:
        message = f"forbidden: {msg}"
    elif name:
        message = f"{qualified} {errors.go_quote(name)} is forbidden: {msg}"
    else:
        message = f"{qualified} is forbidden: {msg}"
    return errors.APIError(403, "Forbidden", message, details)


# ---- escalation ------------------------------------------------------------------------


def _covers(owner: list[Rule], requested: dict) -> bool:
    """Whether the owner's rules hold every permission of one requested rule (Covers)."""
    verbs = requested.get("verbs") or []
    urls = requested.get("nonResourceURLs") or []
    if urls:
        return all(any(_url_covered(o, v, u) for o in owner) for v in verbs for u in urls)
    names = requested.get("resourceNames") or [""]
    for verb in verbs:
        for group in requested.get("apiGroups") or []:
            for resource in requested.get("resources") or []:
                for name in names:
                    if not any(_resource_covered(o, verb, group, resource, name) for o in owner):
                        return False
    return True


def _url_covered(o: Rule, verb: str, url: str) -> bool:
    if "*" not in o.verbs and verb not in o.verbs:
        return False
    return any(u == "*" or u == url or (u.endswith("*") and url.startswith(u[:-1])) for u in o.urls)


def _resource_covered(o: Rule, verb: str, group: str, resource: str, name: str) -> bool:
    if o.urls:
        return False
    if "*" not in o.verbs and verb not in o.verbs:
        return False
    if "*" not in o.groups and group not in o.groups:
        return False
    if "*" not in o.resources and resource not in o.resources:
        sub = resource.split("/", 1)[1] if "/" in resource else ""
        if not sub or f"*/{sub}" not in o.resources:
            return False
    if o.names:
        return bool(name) and name in o.names
    return True


def compact_rule(rule: dict) -> str:
    """rbacv1helpers.CompactString: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`."""
    parts = []
    for label, key in (("APIGroups", "apiGroups"), ("Resources", "resources"), ("NonResourceURLs", "nonResourceURLs"),
                       ("ResourceNames", "resourceNames"), ("Verbs", "verbs")):
        values = rule.get(key)
        if values:
            parts.append(f"{label}:[" + " ".join(errors.go_quote(v) for v in values) + "]")
    return "{" + ", ".join(parts) + "}"


def _split_rule(rule: dict) -> Iterable[dict]:
    """BreakdownRule: one rule per group, resource, name and verb, for the message."""
    if rule.get("nonResourceURLs"):
        for url in rule["nonResourceURLs"]:
            for verb in rule.get("verbs") or []:
                yield {"nonResourceURLs": [url], "verbs": [verb]}
        return
    for group in rule.get("apiGroups") or []:
        for resource in rule.get("resources") or []:
            for name in rule.get("resourceNames") or [None]:
                for verb in rule.get("verbs") or []:
                    out = {"apiGroups": [group], "resources": [resource], "verbs": [verb]}
                    if name is not None:
                        out["resourceNames"] = [name]
                    yield out


def check_no_escalation(authz: RBACAuthorizer, user: UserInfo, namespace: str, rules: list[dict],
                        group: str, resource: str, name: str) -> None:
    """ConfirmNoEscalation: 403 listing the permissions `rules` grant that `user` lacks."""
    if MASTERS in user.groups:
        return
    owner = authz.owner_rules(user, namespace)
    missing: list[dict] = []
    for rule in rules:
        for atom in _split_rule(rule):
            if not _covers(owner, atom) and atom not in missing:
                missing.append(atom)
    if not missing:
        return
    merged: dict[str, dict] = {}  # CompactRules: one rule per group, resource and name, its verbs together
    for atom in missing:
        key = repr({k: v for k, v in atom.items() if k != "verbs"})
        if key in merged:
            merged[key]["verbs"] = merged[key]["verbs"] + atom["verbs"]
        else:
            merged[key] = dict(atom)
    described = sorted(compact_rule(m) for m in merged.values())
    groups = "[" + " ".join(errors.go_quote(g) for g in user.groups) + "]"
    msg = (f"user {errors.go_quote(user.name)} (groups={groups}) is attempting to grant RBAC permissions not "
           f"currently held:\n" + "\n".join(described))
    raise forbidden_error(group, resource, name, msg)
