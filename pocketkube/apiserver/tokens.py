"""Service account tokens: the TokenRequest API and their verification.

Tokens are JWTs as Kubernetes issues them (iss, sub `system:serviceaccount:NS:NAME`, aud,
exp, iat, nbf and the `kubernetes.io` claim with the namespace, service account and bound
pod), signed with HMAC-SHA256 by a key kept in the data dir (Kubernetes signs with RSA;
nothing outside the API server verifies these, so a shared secret is enough). `issue_user`
signs tokens for the node agents' identities the same way (authn.py reads both).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time

import orjson

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_SECONDS = 3600
MIN_SECONDS = 600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenIssuer:
    def __init__(self, key_path: str):
        if os.path.exists(key_path):
            with open(key_path, "rb") as f:
                self.key = f.read()
        else:
            self.key = secrets.token_bytes(32)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(self.key)
        self.key_id = hashlib.sha256(self.key).hexdigest()[:16]

    def issue(self, namespace: str, sa: dict, audiences: list[str], seconds: int,
              bound: dict | None = None) -> tuple[str, int]:
        now = int(time.time())
        exp = now + seconds
        claims = {
            "aud": audiences or [ISSUER], "exp": exp, "iat": now, "nbf": now, "iss": ISSUER,
            "jti": secrets.token_hex(16),
            "kubernetes.io": {"namespace": namespace,
                              "serviceaccount": {"name": sa["metadata"]["name"], "uid": sa["metadata"].get("uid", "")}},
            "sub": f"system:serviceaccount:{namespace}:{sa['metadata']['name']}",
        }
        if bound and bound.get("kind") == "Pod":
            claims["kubernetes.io"]["pod"] = {"name": bound.get("name", ""), "uid": bound.get("uid", "")}
        return self._sign(claims), exp

    def issue_user(self, name: str, groups: list[str], seconds: int) -> str:
        """A token for a user that is not a service account (a node agent's `system:node:NAME`):
        the same signed JWT, with the identity in the `pocketkube.io/user` claim."""
        now = int(time.time())
        claims = {"aud": [ISSUER], "exp": now + seconds, "iat": now, "nbf": now, "iss": ISSUER,
                  "jti": secrets.token_hex(16), "sub": name,
                  "pocketkube.io/user": {"name": name, "groups": list(groups)}}
        return self._sign(claims)

    def _sign(self, claims: dict) -> str:
        header = _b64(orjson.dumps({"alg": "HS256", "kid": self.key_id}))
        payload = _b64(orjson.dumps(claims))
        signature = _b64(hmac.new(self.key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}"

    def verify(self, token: str) -> dict | None:
        """The claims of a valid, unexpired token this server issued; None otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = _b64(hmac.new(self.key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return None
        try:
            claims = orjson.loads(_unb64(parts[1]))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(claims, dict) or claims.get("exp", 0) < time.time():
            return None
        return claims
