"""core/v1 ConfigMap: ValidateConfigMap (keys, no key in both data and binaryData, 1 MiB
total) and the `immutable` rule on update."""

from __future__ import annotations

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver.kinds.secret import MAX_SECRET_SIZE, decoded_length, immutable_errors
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, invalid_value, too_long


class ConfigMapStrategy(Strategy):
    tracks_generation = False

    def validate(self, obj: dict) -> list[FieldError]:
        return validate_config_map(obj)

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        errs += immutable_errors(obj, old, ("data", "binaryData"))
        return errs + validate_config_map(obj)


def validate_config_map(obj: dict) -> list[FieldError]:
    errs = v.validate_object_meta(obj.get("metadata") or {}, True, v.name_is_dns_subdomain)
    data, binary = obj.get("data") or {}, obj.get("binaryData") or {}
    total = 0
    for key in sorted(data):
        errs += [invalid_value(f"data[{key}]", key, m) for m in v.is_config_map_key(key)]
        if key in binary:
            errs.append(invalid_value(f"data[{key}]", key, "duplicate of key present in binaryData"))
        total += len(str(data[key]).encode())
    for key in sorted(binary):
        errs += [invalid_value(f"binaryData[{key}]", key, m) for m in v.is_config_map_key(key)]
        if key in data:
            errs.append(invalid_value(f"binaryData[{key}]", key, "duplicate of key present in data"))
        total += decoded_length(binary[key] or "")
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("", "", MAX_SECRET_SIZE))
    return errs


INFO = KindInfo(
    group="", version="v1", kind="ConfigMap", resource="configmaps", singular="configmap", namespaced=True,
    strategy=ConfigMapStrategy(), short_names=("cm",),
)
