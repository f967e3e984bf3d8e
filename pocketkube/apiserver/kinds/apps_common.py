"""What the apps/v1 workload kinds share: spec validation pieces (replicas, selector,
template, rolling-update numbers) and the generation rule, per pkg/apis/apps/validation."""

from __future__ import annotations

import copy

from pocketkube.apiserver.kinds import podspec
from pocketkube.apiserver.kinds.base import Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, invalid_value, required


def validate_selector(selector: dict | None, path: str, owner: str) -> list[FieldError]:
    """Selector required, valid, and not empty ("empty selector is invalid for <owner>")."""
    if selector is None:
        return [required(path)]
    errs = v.validate_label_selector(selector, path)
    if v.selector_is_empty(selector):
        errs.append(v.invalid_go(path, v.go_label_selector(selector), f"empty selector is invalid for {owner}"))
    return errs


def validate_int_or_percent(value, path: str) -> list[FieldError]:
    """ValidatePositiveIntOrPercent."""
    if isinstance(value, str):
        return [v.invalid_go(path, v.go_int_or_string(value), m) for m in v.is_valid_percent(value)]
    if isinstance(value, int):
        return v.validate_nonnegative(value, path)
    return []


def int_or_percent_value(value) -> int:
    if isinstance(value, str):
        return int(value[:-1]) if v.is_valid_percent(value) == [] else 0
    return int(value or 0)


def validate_not_more_than_100_percent(value, path: str) -> list[FieldError]:
    if isinstance(value, str) and not v.is_valid_percent(value) and int(value[:-1]) > 100:
        return [v.invalid_go(path, v.go_int_or_string(value), "must not be greater than 100%")]
    return []


def validate_rolling_update(rolling: dict, path: str) -> list[FieldError]:
    """maxUnavailable / maxSurge: each a non-negative int or percent, not both 0, maxUnavailable <= 100%."""
    unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    errs = validate_int_or_percent(unavailable, path + ".maxUnavailable")
    errs += validate_int_or_percent(surge, path + ".maxSurge")
    if int_or_percent_value(unavailable) == 0 and int_or_percent_value(surge) == 0:
        errs.append(v.invalid_go(path + ".maxUnavailable", v.go_int_or_string(unavailable),
                                 "may not be 0 when `maxSurge` is 0"))
    return errs + validate_not_more_than_100_percent(unavailable, path + ".maxUnavailable")


def validate_common_spec(spec: dict, owner: str, kind: str) -> list[FieldError]:
    """replicas >= 0, selector, template matching it, minReadySeconds, revisionHistoryLimit."""
    errs: list[FieldError] = []
    if "replicas" in spec or kind != "DaemonSet":
        errs += v.validate_nonnegative(spec.get("replicas") or 0, "spec.replicas")
    selector = spec.get("selector")
    errs += validate_selector(selector, "spec.selector", owner)
    errs += podspec.validate_controller_template(spec.get("template"), selector, "spec.template", kind)
    errs += v.validate_nonnegative(spec.get("minReadySeconds") or 0, "spec.minReadySeconds")
    if spec.get("revisionHistoryLimit") is not None:
        errs += v.validate_nonnegative(spec["revisionHistoryLimit"], "spec.revisionHistoryLimit")
    return errs


def validate_selector_immutable(new_spec: dict, old_spec: dict) -> list[FieldError]:
    """apps/v1 forbids changing spec.selector."""
    new, old = new_spec.get("selector"), old_spec.get("selector")
    if new == old:
        return []
    rendered = v.go_label_selector(new) if isinstance(new, dict) else "null"
    return [v.invalid_go("spec.selector", rendered, v.FIELD_IMMUTABLE_ERROR_MSG)]


class WorkloadStrategy(Strategy):
    """Status only through /status; generation 1 on create, +1 on every spec change."""

    has_status_subresource = True

    def default(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        podspec.default_pod_template(spec.setdefault("template", {}))

    def prepare_for_create(self, obj: dict) -> None:
        obj["status"] = {}
        obj["metadata"]["generation"] = 1

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        obj["status"] = copy.deepcopy(old.get("status", {}))
        generation = old.get("metadata", {}).get("generation") or 1
        if self.spec_changed(obj, old):
            generation += 1
        obj["metadata"]["generation"] = generation

    def spec_changed(self, obj: dict, old: dict) -> bool:
        return obj.get("spec") != old.get("spec")

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        errs += self.validate_spec(obj)
        return errs + validate_selector_immutable(obj.get("spec") or {}, old.get("spec") or {})

    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, True, v.name_is_dns_subdomain)
        return errs + self.validate_spec(obj)

    def validate_spec(self, obj: dict) -> list[FieldError]:
        raise NotImplementedError


def progress_deadline_errors(spec: dict) -> list[FieldError]:
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is None:
        return []
    errs = v.validate_nonnegative(deadline, "spec.progressDeadlineSeconds")
    if deadline <= (spec.get("minReadySeconds") or 0):
        errs.append(invalid_value("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    return errs
