"""Bootstrap tokens, as kubeadm makes them and kube-apiserver reads them (pure: no I/O).

A token is `<id>.<secret>` (`[a-z0-9]{6}.[a-z0-9]{16}`), kept as the Secret
`kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` with the keys
`token-id`, `token-secret`, `expiration` (RFC 3339), `usage-bootstrap-authentication`,
`usage-bootstrap-signing`, `auth-extra-groups` and `description`. The API server authenticates
one as `system:bootstrap:<id>` in `system:bootstrappers` and its extra groups
(`user_of_secret`); `join` checks the server's CA against `--discovery-token-ca-cert-hash
sha256:<hex of the CA's SubjectPublicKeyInfo>` (`ca_cert_hash`).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from datetime import datetime, timezone

SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
NAMESPACE = "kube-system"
USER_PREFIX = "system:bootstrap:"
GROUP = "system:bootstrappers"
DEFAULT_NODE_GROUP = "system:bootstrappers:kubeadm:default-node-token"  # kubeadm's extra group for joining nodes
DEFAULT_TTL_SECONDS = 24 * 3600  # kubeadm's --ttl default
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
EXTRA_GROUP_RE = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def generate() -> str:
    """A new random token (kubeadm's GenerateBootstrapToken shape)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(6)) + "." + \
        "".join(secrets.choice(_ALPHABET) for _ in range(16))


def parse(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    match = TOKEN_RE.match(token or "")
    return (match.group(1), match.group(2)) if match else None


def secret_name(token_id: str) -> str:
    return SECRET_PREFIX + token_id


def secret_for(token: str, ttl_seconds: int = DEFAULT_TTL_SECONDS, description: str = "",
               extra_groups: tuple[str, ...] = (DEFAULT_NODE_GROUP,), now: float | None = None) -> dict:
    """The Secret that holds `token`, as `kubeadm token create` writes it (authentication and
    signing usages; `ttl_seconds` 0: no expiration)."""
    parsed = parse(token)
    if parsed is None:
        raise ValueError(f"the bootstrap token {token!r} was not of the form {TOKEN_RE.pattern!r}")
    token_id, token_secret = parsed
    data = {"token-id": token_id, "token-secret": token_secret,
            "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
            "auth-extra-groups": ",".join(extra_groups)}
    if description:
        data["description"] = description
    if ttl_seconds:
        expires = (now if now is not None else time.time()) + ttl_seconds
        data["expiration"] = datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
            "metadata": {"name": secret_name(token_id), "namespace": NAMESPACE},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def _data(secret: dict, key: str) -> str:
    value = (secret.get("data") or {}).get(key)
    if value is None:
        return ""
    try:
        return base64.b64decode(value).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def expired(secret: dict, now: float | None = None) -> bool:
    """Whether the Secret's `expiration` has passed (an unparsable one counts as passed)."""
    text = _data(secret, "expiration")
    if not text:
        return False
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return True
    return when.timestamp() < (now if now is not None else time.time())


def list_row(secret: dict, now: float | None = None) -> list[str] | None:
    """The row `kubeadm token list` prints for a token's Secret: TOKEN, TTL, EXPIRES, USAGES,
    DESCRIPTION, EXTRA GROUPS (None for a Secret that holds no well-formed token)."""
    token = f"{_data(secret, 'token-id')}.{_data(secret, 'token-secret')}"
    if parse(token) is None:
        return None
    ttl, expires = "<forever>", "<never>"
    text = _data(secret, "expiration")
    if text:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        ttl = short_human_duration(when.timestamp() - (now if now is not None else time.time()))
        expires = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    usages = sorted(key[len("usage-bootstrap-"):] for key in (secret.get("data") or {})
                    if key.startswith("usage-bootstrap-") and _data(secret, key) == "true")
    groups = _data(secret, "auth-extra-groups")
    return [token, ttl, expires, ",".join(usages), _data(secret, "description") or "<none>", groups or "<none>"]


def short_human_duration(seconds: float) -> str:
    """apimachinery's duration.ShortHumanDuration."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 24 * 3600:
        return f"{int(seconds // 3600)}h"
    if seconds < 365 * 24 * 3600:
        return f"{int(seconds // 86400)}d"
    return f"{int(seconds // (365 * 86400))}y"


def user_of_secret(token: str, secret: dict | None, now: float | None = None) -> tuple[str, tuple[str, ...]] | None:
    """(user name, groups) `token` authenticates as, given the Secret its id names (or None),
    with the checks of kube-apiserver's bootstrap token authenticator: not being deleted, the
    type, the secret (constant-time), the id, the expiration, the authentication usage, and
    extra groups of the `system:bootstrappers:` form. None when any fails."""
    parsed = parse(token)
    if parsed is None or secret is None:
        return None
    token_id, token_secret = parsed
    if (secret.get("metadata") or {}).get("deletionTimestamp") or secret.get("type") != SECRET_TYPE:
        return None
    if not secrets.compare_digest(_data(secret, "token-secret").encode(), token_secret.encode()):
        return None
    if _data(secret, "token-id") != token_id or expired(secret, now):
        return None
    if _data(secret, "usage-bootstrap-authentication") != "true":
        return None
    groups = [GROUP]
    for group in filter(None, (g.strip() for g in _data(secret, "auth-extra-groups").split(","))):
        if not EXTRA_GROUP_RE.match(group):
            return None
        if group not in groups:
            groups.append(group)
    return USER_PREFIX + token_id, tuple(groups)


def ca_cert_hash(ca_pem: bytes) -> str:
    """`sha256:<hex>` of the CA certificate's SubjectPublicKeyInfo (kubeadm's pubkeypin)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()
