"""coordination.k8s.io/v1 Lease: ValidateLease (durations and transitions)."""

from __future__ import annotations

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, invalid_value


class LeaseStrategy(Strategy):
    tracks_generation = False

    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, True, v.name_is_dns_subdomain)
        return errs + _validate_spec(obj.get("spec") or {})

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        return errs + _validate_spec(obj.get("spec") or {})


def _validate_spec(spec: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        errs.append(invalid_value("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        errs.append(invalid_value("spec.leaseTransitions", transitions, v.IS_NEGATIVE_ERROR_MSG))
    return errs


INFO = KindInfo(
    group="coordination.k8s.io", version="v1", kind="Lease", resource="leases", singular="lease", namespaced=True,
    strategy=LeaseStrategy(),
)
