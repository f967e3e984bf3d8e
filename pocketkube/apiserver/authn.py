"""Authentication: who a request comes from (user.Info), and impersonation.

Identities, as kube-apiserver gives them (docs/adr/0007-identities-and-rbac.md says how each
component gets its own):

- the cluster's admin token (DATA_DIR/token, in the kubeconfig `up` writes): user
  `kubernetes-admin` in `system:masters`;
- a service account token (the TokenRequest API, `tokens.py`): `system:serviceaccount:NS:NAME`
  in `system:serviceaccounts` and `system:serviceaccounts:NS`, valid while the ServiceAccount
  exists with the token's uid;
- a user token `tokens.TokenIssuer.issue_user` minted (the node agents' `system:node:NAME` in
  `system:nodes`);
- a bootstrap token (`<id>.<secret>`, the Secret `kube-system/bootstrap-token-<id>`,
  core/bootstraptoken.py): `system:bootstrap:<id>` in `system:bootstrappers` and the token's
  extra groups, while the Secret exists, is unexpired and allows authentication;
- a client certificate signed by the cluster CA (the TLS layer verified it; a joined node's,
  from its approved CertificateSigningRequest): the subject's CN is the user, its O the groups;
- no credentials: `system:anonymous` in `system:unauthenticated` (anonymous auth is on, as in
  kube-apiserver; RBAC lets it read /healthz, /livez, /readyz and /version only);
- a credential that is present but wrong: None, which the server answers with 401.

Every authenticated user is also in `system:authenticated`. In-process callers (the
controllers) carry their UserInfo on the transport instead of a token.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from pocketkube.core import bootstraptoken, errors

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
MASTERS = "system:masters"
NODES = "system:nodes"
SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
ANONYMOUS_NAME = "system:anonymous"
ADMIN_NAME = "kubernetes-admin"
_CACHE_MAX = 4096


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False, hash=False)

    def to_api(self) -> dict:
        """authentication.k8s.io/v1 UserInfo."""
        out: dict = {"username": self.name}
        if self.uid:
            out["uid"] = self.uid
        if self.groups:
            out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


ANONYMOUS = UserInfo(ANONYMOUS_NAME, (UNAUTHENTICATED,))
ADMIN = UserInfo(ADMIN_NAME, (MASTERS, AUTHENTICATED))
# The API server's own loopback identity (in-process work it does for itself).
APISERVER = UserInfo("system:apiserver", (MASTERS, AUTHENTICATED))


def service_account_user(namespace: str, name: str, uid: str = "",
                         extra: Mapping[str, tuple[str, ...]] | None = None) -> UserInfo:
    return UserInfo(f"{SA_PREFIX}{namespace}:{name}", (SA_GROUP, f"{SA_GROUP}:{namespace}", AUTHENTICATED),
                    uid, extra or {})


def node_user(node: str) -> UserInfo:
    return UserInfo(f"system:node:{node}", (NODES, AUTHENTICATED))


def controller_identity(username: str) -> UserInfo:
    """The UserInfo of an in-process component by its user name: a service account (the
    controllers), the API server itself, or a plain user (system:kube-scheduler,
    system:kube-controller-manager)."""
    if username == APISERVER.name:
        return APISERVER
    sa = split_service_account(username)
    if sa:
        return service_account_user(*sa)
    return UserInfo(username, (AUTHENTICATED,))


def split_service_account(username: str) -> tuple[str, str] | None:
    """("NS", "NAME") of "system:serviceaccount:NS:NAME", else None."""
    if not username.startswith(SA_PREFIX):
        return None
    rest = username[len(SA_PREFIX):].split(":")
    if len(rest) != 2 or not rest[0] or not rest[1]:
        return None
    return rest[0], rest[1]


class Authenticator:
    """Bearer tokens -> UserInfo. `sa_lookup(ns, name)` gives the stored ServiceAccount or None,
    `secret_lookup(ns, name)` the stored Secret or None (bootstrap tokens)."""

    def __init__(self, admin_token: str, issuer, sa_lookup: Callable[[str, str], dict | None],
                 secret_lookup: Callable[[str, str], dict | None] | None = None):
        self.admin_token = admin_token
        self.issuer = issuer
        self.sa_lookup = sa_lookup
        self.secret_lookup = secret_lookup
        self._verified: dict[str, tuple[float, UserInfo]] = {}  # token -> (expiry, user)

    def authenticate(self, authorization: str) -> UserInfo | None:
        if not authorization:
            return ANONYMOUS
        if not authorization.startswith("Bearer "):
            return None
        token = authorization[7:].strip()
        if not token:
            return None
        if hmac.compare_digest(token, self.admin_token):
            return ADMIN
        parsed = bootstraptoken.parse(token)
        if parsed is not None:  # never cached: deleting the Secret revokes the token at once
            if self.secret_lookup is None:
                return None
            found = bootstraptoken.user_of_secret(
                token, self.secret_lookup(bootstraptoken.NAMESPACE, bootstraptoken.secret_name(parsed[0])))
            return UserInfo(found[0], found[1] + (AUTHENTICATED,)) if found else None
        cached = self._verified.get(token)
        now = time.time()
        if cached is None or cached[0] < now:
            claims = self.issuer.verify(token) if self.issuer else None
            if claims is None:
                self._verified.pop(token, None)
                return None
            user = _user_of(claims)
            if user is None:
                return None
            if len(self._verified) >= _CACHE_MAX:
                self._verified.clear()
            cached = (float(claims.get("exp", now)), user)
            self._verified[token] = cached
        user = cached[1]
        sa = split_service_account(user.name)
        if sa is not None:  # the token dies with its ServiceAccount (and a new one of the same name)
            stored = self.sa_lookup(*sa)
            if stored is None or (user.uid and stored["metadata"].get("uid") != user.uid):
                return None
        return user


def certificate_user(peercert: dict | None) -> UserInfo | None:
    """The user of a verified client certificate (`ssl` peercert form): CN the name, each O a
    group, as kube-apiserver's x509 authenticator; None without one."""
    if not peercert:
        return None
    name, groups = "", []
    for rdn in peercert.get("subject") or ():
        for key, value in rdn:
            if key == "commonName":
                name = value
            elif key == "organizationName" and value not in groups:
                groups.append(value)
    if not name:
        return None
    return UserInfo(name, tuple(g for g in groups if g != AUTHENTICATED) + (AUTHENTICATED,))


def _user_of(claims: dict) -> UserInfo | None:
    k8s = claims.get("kubernetes.io")
    if isinstance(k8s, dict):
        sa = k8s.get("serviceaccount") or {}
        extra: dict[str, tuple[str, ...]] = {}
        if claims.get("jti"):
            extra["authentication.kubernetes.io/credential-id"] = (f"JTI={claims['jti']}",)
        pod = k8s.get("pod")
        if isinstance(pod, dict):
            extra["authentication.kubernetes.io/pod-name"] = (pod.get("name", ""),)
            extra["authentication.kubernetes.io/pod-uid"] = (pod.get("uid", ""),)
        return service_account_user(k8s.get("namespace", ""), sa.get("name", ""), sa.get("uid", ""), extra)
    user = claims.get("pocketkube.io/user")
    if isinstance(user, dict) and user.get("name"):
        groups = tuple(g for g in user.get("groups") or [] if g != AUTHENTICATED) + (AUTHENTICATED,)
        return UserInfo(user["name"], groups)
    return None


# ---- impersonation ---------------------------------------------------------------------


def impersonation_requests(headers: Mapping[str, str]) -> tuple[str, list[str], str, dict] | None:
    """(user, groups, uid, extra) from Impersonate-* headers, or None when there are none."""
    if not any(k[:12].lower() == "impersonate-" for k in headers):
        return None
    getall = getattr(headers, "getall", None)
    user = headers.get("Impersonate-User", "")
    groups = list(getall("Impersonate-Group", [])) if getall else (
        [headers["Impersonate-Group"]] if headers.get("Impersonate-Group") else [])
    uid = headers.get("Impersonate-Uid", "")
    extra: dict[str, list[str]] = {}
    for key in headers:
        if key.lower().startswith("impersonate-extra-"):
            name = key[len("impersonate-extra-"):].lower()
            values = list(getall(key, [])) if getall else [headers[key]]
            extra.setdefault(name, [])
            for v in values:
                if v not in extra[name]:
                    extra[name].append(v)
    if not user and (groups or uid or extra):
        raise errors.APIError(500, "InternalError",
                              "Internal error occurred: requested " + ("groups" if groups else "uid or extra")
                              + " without impersonating a user")
    if not user:
        return None
    return user, groups, uid, extra


def impersonated(user: str, groups: list[str], uid: str, extra: dict) -> UserInfo:
    """The UserInfo the request continues as (the groups kube-apiserver adds included)."""
    sa = split_service_account(user)
    all_groups = list(groups)
    if sa is not None:
        for g in (SA_GROUP, f"{SA_GROUP}:{sa[0]}"):
            if g not in all_groups:
                all_groups.append(g)
    if user == ANONYMOUS_NAME:
        if UNAUTHENTICATED not in all_groups:
            all_groups.append(UNAUTHENTICATED)
    elif AUTHENTICATED not in all_groups:
        all_groups.append(AUTHENTICATED)
    return UserInfo(user, tuple(all_groups), uid, {k: tuple(v) for k, v in extra.items()})
