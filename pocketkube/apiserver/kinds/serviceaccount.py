"""core/v1 ServiceAccount: DNS-subdomain names and valid secret references."""

from __future__ import annotations

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, required


class ServiceAccountStrategy(Strategy):
    tracks_generation = False

    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, True, v.name_is_dns_subdomain)
        return errs + _validate_references(obj)

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        return errs + _validate_references(obj)


def _validate_references(obj: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    for field in ("secrets", "imagePullSecrets"):
        for i, ref in enumerate(obj.get(field) or []):
            if field == "imagePullSecrets" and not ref.get("name"):
                errs.append(required(f"{field}[{i}].name"))
    return errs


INFO = KindInfo(
    group="", version="v1", kind="ServiceAccount", resource="serviceaccounts", singular="serviceaccount",
    namespaced=True, strategy=ServiceAccountStrategy(), short_names=("sa",), subresources=("token",),
)
