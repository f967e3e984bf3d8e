"""events.k8s.io/v1 Event: the strict validation of events written through events.k8s.io,
and the field mapping to and from core/v1 Event (both name the same stored events)."""

from __future__ import annotations

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver.kinds.core_event import validate_legacy_event
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, invalid_value, required

# events.k8s.io/v1 field -> core/v1 field
_RENAMES = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}


def to_core(event: dict) -> dict:
    """An events.k8s.io/v1 Event as the core/v1 Event the store holds."""
    core = {_RENAMES.get(k, k): val for k, val in event.items()}
    core["apiVersion"] = "v1"
    series = core.pop("series", None)
    if series is not None:
        core["series"] = {"count": series.get("count"), "lastObservedTime": series.get("lastObservedTime")}
    return core


def from_core(event: dict) -> dict:
    """A core/v1 Event as events.k8s.io/v1 presents it."""
    back = {core: new for new, core in _RENAMES.items()}
    converted = {back.get(k, k): val for k, val in event.items()}
    converted["apiVersion"] = "events.k8s.io/v1"
    return converted


class EventsEventStrategy(Strategy):
    tracks_generation = False

    def to_storage(self, obj: dict) -> dict:
        return to_core(obj)

    def from_storage(self, obj: dict) -> dict:
        return from_core(obj)

    def validate(self, obj: dict) -> list[FieldError]:
        core = to_core(obj)
        errs = validate_legacy_event(core, "reportingController")
        errs += v.validate_object_meta(obj.get("metadata") or {}, True, v.name_is_dns_subdomain)
        if not obj.get("eventTime"):
            errs.append(required("eventTime"))
        kind = obj.get("type") or ""
        if kind not in ("Normal", "Warning"):
            errs.append(invalid_value("type", "", f"has invalid value: {kind}"))
        for name in ("deprecatedFirstTimestamp", "deprecatedLastTimestamp"):
            if obj.get(name):
                errs.append(invalid_value(name, "", "needs to be unset"))
        if obj.get("deprecatedCount"):
            errs.append(invalid_value("deprecatedCount", "", "needs to be unset"))
        source = obj.get("deprecatedSource") or {}
        if source.get("component") or source.get("host"):
            errs.append(invalid_value("deprecatedSource", "", "needs to be unset"))
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        for name in ("regarding", "reportingController", "reportingInstance", "action", "reason", "type", "eventTime"):
            errs += v.validate_immutable_field(obj.get(name), old.get(name), name)
        return errs


INFO = KindInfo(
    group="events.k8s.io", version="v1", kind="Event", resource="events", singular="event", namespaced=True,
    strategy=EventsEventStrategy(), storage_group="",
)
