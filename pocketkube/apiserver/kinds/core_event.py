"""core/v1 Event: the legacy validation core/v1 writes get (namespace agreement, and the
reporting fields once eventTime is set), plus name presence."""

from __future__ import annotations

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, invalid_value, required

FIELD_LIMIT = 128
NOTE_LIMIT = 1024


class CoreEventStrategy(Strategy):
    tracks_generation = False

    def validate(self, obj: dict) -> list[FieldError]:
        return validate_legacy_event(obj, "reportingComponent")

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        return validate_legacy_event(obj, "reportingComponent")


def validate_legacy_event(event: dict, reporting_field: str) -> list[FieldError]:
    """legacyValidateEvent of k8s pkg/apis/core/validation/events.go."""
    metadata = event.get("metadata") or {}
    namespace = metadata.get("namespace") or ""
    involved_ns = (event.get("involvedObject") or {}).get("namespace") or ""
    errs: list[FieldError] = []
    if not metadata.get("name"):
        errs.append(required("metadata.name", "name or generateName is required"))
    mismatch = invalid_value("involvedObject.namespace", involved_ns, "does not match event.namespace")
    if not event.get("eventTime"):
        if not involved_ns:
            if namespace not in ("", "default"):
                errs.append(mismatch)
        elif namespace != involved_ns:
            errs.append(mismatch)
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            errs.append(mismatch)
        controller = event.get("reportingComponent") or ""
        if not controller:
            errs.append(required(reporting_field))
        errs += v.validate_qualified_name(controller, reporting_field)
        for key, limit in (("reportingInstance", FIELD_LIMIT), ("action", FIELD_LIMIT), ("reason", FIELD_LIMIT)):
            value = event.get(key) or ""
            if not value:
                errs.append(required(key))
            if len(value) > limit:
                errs.append(invalid_value(key, "", f"can have at most {limit} characters"))
        if len(event.get("message") or "") > NOTE_LIMIT:
            errs.append(invalid_value("message", "", f"can have at most {NOTE_LIMIT} characters"))
    errs += [invalid_value("namespace", namespace, m) for m in v.is_dns1123_subdomain(namespace)]
    return errs


INFO = KindInfo(
    group="", version="v1", kind="Event", resource="events", singular="event", namespaced=True,
    strategy=CoreEventStrategy(), short_names=("ev",),
)
