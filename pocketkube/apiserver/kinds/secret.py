"""core/v1 Secret: type Opaque, stringData folded into data, ValidateSecret (keys, 1 MiB,
per-type required keys) and ValidateSecretUpdate (type, immutable)."""

from __future__ import annotations

import base64
import binascii

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, forbidden, invalid_value, required, too_long

MAX_SECRET_SIZE = 1024 * 1024
_REQUIRED_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
}


def decoded_length(value: str) -> int:
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return len(value)


class SecretStrategy(Strategy):
    tracks_generation = False

    def default(self, obj: dict) -> None:
        if not obj.get("type"):
            obj["type"] = "Opaque"
        string_data = obj.pop("stringData", None) or {}
        if string_data:
            data = obj.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()

    def validate(self, obj: dict) -> list[FieldError]:
        return validate_secret(obj)

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        errs += v.validate_immutable_field(obj.get("type"), old.get("type"), "type")
        errs += immutable_errors(obj, old, ("data",))
        return errs + validate_secret(obj)


def immutable_errors(obj: dict, old: dict, fields: tuple[str, ...]) -> list[FieldError]:
    """The `immutable: true` rule shared by Secret and ConfigMap."""
    if old.get("immutable") is not True:
        return []
    errs = []
    if obj.get("immutable") is not True:
        errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for name in fields:
        if (obj.get(name) or {}) != (old.get(name) or {}):
            errs.append(forbidden(name, "field is immutable when `immutable` is set"))
    return errs


def validate_secret(obj: dict) -> list[FieldError]:
    errs = v.validate_object_meta(obj.get("metadata") or {}, True, v.name_is_dns_subdomain)
    data = obj.get("data") or {}
    total = 0
    for key in sorted(data):
        errs += [invalid_value(f"data[{key}]", key, m) for m in v.is_config_map_key(key)]
        total += decoded_length(data[key] or "")
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("data", "", MAX_SECRET_SIZE))
    kind = obj.get("type") or ""
    if kind == "kubernetes.io/service-account-token":
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            errs.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    elif kind == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            errs += [required("data[username]"), required("data[password]")]
    elif kind == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            errs.append(required("data[ssh-privatekey]"))
    else:
        for key in _REQUIRED_KEYS.get(kind, ()):
            if key not in data:
                errs.append(required(f"data[{key}]"))
    return errs


INFO = KindInfo(
    group="", version="v1", kind="Secret", resource="secrets", singular="secret", namespaced=True,
    strategy=SecretStrategy(),
)
