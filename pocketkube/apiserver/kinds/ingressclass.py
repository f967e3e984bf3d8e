"""networking.k8s.io/v1 IngressClass: controller is a domain-prefixed path of at most 250
characters and immutable; generation tracks spec changes."""

from __future__ import annotations

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, too_long

MAX_CONTROLLER_LENGTH = 250


class IngressClassStrategy(Strategy):
    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, False, v.name_is_dns_subdomain)
        return errs + _validate_spec(obj.get("spec") or {})

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        errs += _validate_spec(obj.get("spec") or {})
        return errs + v.validate_immutable_field((obj.get("spec") or {}).get("controller"),
                                                 (old.get("spec") or {}).get("controller"), "spec.controller")


def _validate_spec(spec: dict) -> list[FieldError]:
    controller = spec.get("controller") or ""
    errs: list[FieldError] = []
    if len(controller) > MAX_CONTROLLER_LENGTH:
        errs.append(too_long("spec.controller", controller, MAX_CONTROLLER_LENGTH))
    return errs + v.is_domain_prefixed_path("spec.controller", controller)


INFO = KindInfo(
    group="networking.k8s.io", version="v1", kind="IngressClass", resource="ingressclasses",
    singular="ingressclass", namespaced=False, strategy=IngressClassStrategy(),
)
