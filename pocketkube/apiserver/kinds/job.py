"""batch/v1 Job: defaults (SetDefaults_Job), the generated selector and pod labels, validation
(ValidateJob / ValidateJobUpdate, the parts a user meets) and the strategy."""

from __future__ import annotations

import copy

from pocketkube.apiserver.kinds import apps_common, podspec
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import OMIT, FieldError, duplicate, invalid_value, not_supported, required, too_many

CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"
MAX_INT32 = 2147483647
MAX_PARALLELISM_FOR_INDEXED = 100_000
MAX_FAILED_INDEXES = 100_000
COMPLETIONS_SOFT_LIMIT = 100_000
PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS = 10_000
MAX_FAILED_INDEXES_FOR_HIGH_COMPLETIONS = 10_000
MAX_POD_FAILURE_POLICY_RULES = 20
MAX_EXIT_CODE_VALUES = 255
MAX_CONDITION_PATTERNS = 20
POD_FAILURE_POLICY_ACTIONS = ["Count", "FailIndex", "FailJob", "Ignore"]
EXIT_CODE_OPERATORS = ["In", "NotIn"]
CONDITION_STATUSES = ["False", "True", "Unknown"]


class JobStrategy(apps_common.WorkloadStrategy):
    # Deleting a Job through the API without a policy leaves its pods (batch/v1's legacy default).
    default_gc_policy = "Orphan"

    def default(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        template = spec.setdefault("template", {})
        podspec.default_pod_template(template)
        if spec.get("completions") is None and spec.get("parallelism") is None:
            spec["completions"] = 1
            spec["parallelism"] = 1
        spec.setdefault("parallelism", 1)
        if spec.get("backoffLimit") is None:
            spec["backoffLimit"] = MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
        for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
            for pattern in rule.get("onPodConditions") or []:
                if not pattern.get("status"):
                    pattern["status"] = "True"
        if spec.get("manualSelector") is None:
            spec.pop("manualSelector", None)

    def prepare_for_create(self, obj: dict) -> None:
        super().prepare_for_create(obj)
        if not obj["spec"].get("manualSelector"):
            generate_selector(obj)

    def spec_changed(self, obj: dict, old: dict) -> bool:
        return obj.get("spec") != old.get("spec")

    def validate_spec(self, obj: dict) -> list[FieldError]:
        return validate_job_spec(obj.get("spec") or {}, "spec", obj["metadata"].get("uid"), in_cronjob=False)

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        errs += self.validate_spec(obj)
        spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
        for name in ("selector", "completionMode", "completions", "manualSelector", "podFailurePolicy",
                     "backoffLimitPerIndex", "managedBy"):
            if name == "completions" and spec.get("completionMode") == "Indexed" and \
                    spec.get("completions") == spec.get("parallelism"):
                continue  # elastic Indexed Jobs scale completions with parallelism
            if spec.get(name) != old_spec.get(name):
                rendered = v.go_label_selector(spec[name]) if name == "selector" and spec.get(name) else \
                    repr(spec.get(name))
                errs.append(v.invalid_go(f"spec.{name}", rendered, v.FIELD_IMMUTABLE_ERROR_MSG))
        if spec.get("template") != old_spec.get("template") and not old_spec.get("suspend"):
            errs.append(v.invalid_go("spec.template", "core.PodTemplateSpec{...}", v.FIELD_IMMUTABLE_ERROR_MSG))
        return errs


def validate_job_spec(spec: dict, path: str, uid: str | None, in_cronjob: bool) -> list[FieldError]:
    """validateJobSpec for a Job (its selector is required and, unless manual, generated) or a
    CronJob's jobTemplate (`in_cronjob`: the selector comes with each Job, defaults too)."""
    errs: list[FieldError] = []
    for name in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished", "backoffLimitPerIndex"):
        if spec.get(name) is not None:
            errs += v.validate_nonnegative(spec[name], f"{path}.{name}")
    if spec.get("maxFailedIndexes") is not None:
        errs += v.validate_nonnegative(spec["maxFailedIndexes"], f"{path}.maxFailedIndexes")
        if spec.get("backoffLimitPerIndex") is None:
            errs.append(required(f"{path}.backoffLimitPerIndex", "when maxFailedIndexes is specified"))
    if spec.get("activeDeadlineSeconds") is not None and spec["activeDeadlineSeconds"] <= 0:
        errs.append(invalid_value(f"{path}.activeDeadlineSeconds", spec["activeDeadlineSeconds"],
                                  "must be greater than 0"))
    mode = spec.get("completionMode", "NonIndexed" if in_cronjob else None)
    if mode not in ("NonIndexed", "Indexed"):
        errs.append(not_supported(f"{path}.completionMode", mode, ["NonIndexed", "Indexed"]))
    completions, max_failed = spec.get("completions"), spec.get("maxFailedIndexes")
    if mode == "Indexed":
        if completions is None:
            errs.append(required(f"{path}.completions", "when completion mode is Indexed"))
        if (spec.get("parallelism") or 0) > MAX_PARALLELISM_FOR_INDEXED:
            errs.append(invalid_value(f"{path}.parallelism", spec["parallelism"],
                                      f"must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED} "
                                      "when completion mode is Indexed"))
        if completions is not None and max_failed is not None and max_failed > completions:
            errs.append(invalid_value(f"{path}.maxFailedIndexes", max_failed, "must be less than or equal to completions"))
        if max_failed is not None and max_failed > MAX_FAILED_INDEXES:
            errs.append(invalid_value(f"{path}.maxFailedIndexes", max_failed,
                                      f"must be less than or equal to {MAX_FAILED_INDEXES}"))
        if completions is not None and completions > COMPLETIONS_SOFT_LIMIT and spec.get("backoffLimitPerIndex") is not None:
            high = f"when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index"
            if max_failed is None:
                errs.append(required(f"{path}.maxFailedIndexes",
                                     f"must be specified when completions is above {COMPLETIONS_SOFT_LIMIT}"))
            if (spec.get("parallelism") or 0) > PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS:
                errs.append(invalid_value(f"{path}.parallelism", spec["parallelism"],
                                          f"must be less than or equal to {PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS} {high}"))
            if max_failed is not None and max_failed > MAX_FAILED_INDEXES_FOR_HIGH_COMPLETIONS:
                errs.append(invalid_value(f"{path}.maxFailedIndexes", max_failed,
                                          f"must be less than or equal to {MAX_FAILED_INDEXES_FOR_HIGH_COMPLETIONS} {high}"))
    elif mode in ("NonIndexed", None):
        for name in ("backoffLimitPerIndex", "maxFailedIndexes"):
            if spec.get(name) is not None:
                errs.append(invalid_value(f"{path}.{name}", spec[name], "requires indexed completion mode"))
    if spec.get("podFailurePolicy") is not None:
        errs += validate_pod_failure_policy(spec, f"{path}.podFailurePolicy")
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None:
        allowed = ["Failed"] if spec.get("podFailurePolicy") is not None else ["Failed", "TerminatingOrFailed"]
        if replacement not in allowed:
            errs.append(not_supported(f"{path}.podReplacementPolicy", replacement, allowed))
    selector = spec.get("selector")
    if selector is None:
        if not in_cronjob:
            errs.append(required(f"{path}.selector"))
    else:
        errs += v.validate_label_selector(selector, f"{path}.selector")
        if not spec.get("manualSelector") and uid and (selector.get("matchLabels") or {}).get(CONTROLLER_UID) != uid:
            errs.append(v.invalid_go(f"{path}.selector", v.go_label_selector(selector), "`selector` not auto-generated"))
    template = spec.get("template")
    labels = ((template or {}).get("metadata") or {}).get("labels")
    if selector is not None and not v.selector_is_empty(selector) and not v.selector_matches(selector, labels):
        errs.append(v.invalid_go(f"{path}.template.metadata.labels", v.go_string_map(labels),
                                 "`selector` does not match template `labels`"))
    errs += podspec.validate_pod_template(template or {}, f"{path}.template")
    restart = ((template or {}).get("spec") or {}).get("restartPolicy") or ""
    if restart not in ("OnFailure", "Never"):
        errs.append(not_supported(f"{path}.template.spec.restartPolicy", restart, ["OnFailure", "Never"]))
    elif spec.get("podFailurePolicy") is not None and restart != "Never":
        errs.append(invalid_value(f"{path}.template.spec.restartPolicy", restart,
                                  'only "Never" is supported when podFailurePolicy is specified'))
    return errs


def validate_pod_failure_policy(spec: dict, path: str) -> list[FieldError]:
    """validatePodFailurePolicy: at most 20 rules, each with a known action and exactly one of
    onExitCodes (a known operator, 1-255 ordered unique values, no 0 for In, a container of the
    template) and onPodConditions (qualified condition types, a status True/False/Unknown)."""
    errs: list[FieldError] = []
    rules = (spec.get("podFailurePolicy") or {}).get("rules") or []
    if len(rules) > MAX_POD_FAILURE_POLICY_RULES:
        errs.append(too_many(f"{path}.rules", len(rules), MAX_POD_FAILURE_POLICY_RULES))
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    names = {c.get("name") for c in (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or [])}
    for i, rule in enumerate(rules):
        rule_path = f"{path}.rules[{i}]"
        action = rule.get("action") or ""
        if not action:
            errs.append(required(f"{rule_path}.action", "valid values: " + _quoted_list(POD_FAILURE_POLICY_ACTIONS)))
        elif action == "FailIndex":
            if spec.get("backoffLimitPerIndex") is None:
                errs.append(invalid_value(f"{rule_path}.action", action, "requires the backoffLimitPerIndex to be set"))
        elif action not in POD_FAILURE_POLICY_ACTIONS:
            errs.append(not_supported(f"{rule_path}.action", action, POD_FAILURE_POLICY_ACTIONS))
        on_codes, on_conditions = rule.get("onExitCodes"), rule.get("onPodConditions") or []
        if on_codes is not None:
            errs += _validate_on_exit_codes(on_codes, f"{rule_path}.onExitCodes", names)
        if on_conditions:
            errs += _validate_on_pod_conditions(on_conditions, f"{rule_path}.onPodConditions")
        if on_codes is not None and on_conditions:
            errs.append(invalid_value(rule_path, OMIT, "specifying both OnExitCodes and OnPodConditions is not supported"))
        if on_codes is None and not on_conditions:
            errs.append(invalid_value(rule_path, OMIT, "specifying one of OnExitCodes and OnPodConditions is required"))
    return errs


def _validate_on_exit_codes(requirement: dict, path: str, names: set) -> list[FieldError]:
    errs: list[FieldError] = []
    operator = requirement.get("operator") or ""
    if not operator:
        errs.append(required(f"{path}.operator", "valid values: " + _quoted_list(EXIT_CODE_OPERATORS)))
    elif operator not in EXIT_CODE_OPERATORS:
        errs.append(not_supported(f"{path}.operator", operator, EXIT_CODE_OPERATORS))
    name = requirement.get("containerName")
    if name is not None and name not in names:
        errs.append(invalid_value(f"{path}.containerName", name,
                                  "must be one of the container or initContainer names in the pod template"))
    values = requirement.get("values")
    if not values:
        errs.append(v.invalid_go(f"{path}.values", _go_int32s(values), "at least one value is required"))
    elif len(values) > MAX_EXIT_CODE_VALUES:
        errs.append(too_many(f"{path}.values", len(values), MAX_EXIT_CODE_VALUES))
    seen: set[int] = set()
    for j, value in enumerate(values or []):
        if operator == "In" and value == 0:
            errs.append(invalid_value(f"{path}.values[{j}]", value, "must not be 0 for the In operator"))
        if value in seen:
            errs.append(duplicate(f"{path}.values[{j}]", value))
        seen.add(value)
    if any(a > b for a, b in zip(values or [], (values or [])[1:])):
        errs.append(v.invalid_go(f"{path}.values", _go_int32s(values), "must be ordered"))
    return errs


def _validate_on_pod_conditions(patterns: list[dict], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if len(patterns) > MAX_CONDITION_PATTERNS:
        errs.append(too_many(path, len(patterns), MAX_CONDITION_PATTERNS))
    for j, pattern in enumerate(patterns):
        errs += v.validate_qualified_name(pattern.get("type") or "", f"{path}[{j}].type")
        status = pattern.get("status") or ""
        if not status:
            errs.append(required(f"{path}[{j}].status", "valid values: " + _quoted_list(CONDITION_STATUSES)))
        elif status not in CONDITION_STATUSES:
            errs.append(not_supported(f"{path}[{j}].status", status, CONDITION_STATUSES))
    return errs


def _quoted_list(items: list[str]) -> str:
    """%q of a []string: ["a" "b"]."""
    return "[" + " ".join(f'"{i}"' for i in items) + "]"


def _go_int32s(values: list | None) -> str:
    if values is None:
        return "[]int32(nil)"
    return "[]int32{" + ", ".join(str(x) for x in values) + "}"


def generate_selector(job: dict) -> None:
    """The labels that tie a Job's pods to it: on the template, and the selector that matches them."""
    m = job["metadata"]
    uid, name = m["uid"], m.get("name", "")
    labels = job["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {}) or {}
    job["spec"]["template"]["metadata"]["labels"] = labels
    for key, value in ((CONTROLLER_UID, uid), (JOB_NAME, name), (LEGACY_CONTROLLER_UID, uid),
                       (LEGACY_JOB_NAME, name)):
        labels.setdefault(key, value)
    if job["spec"].get("selector") is None:
        job["spec"]["selector"] = {"matchLabels": {CONTROLLER_UID: uid}}
    job["spec"]["selector"] = copy.deepcopy(job["spec"]["selector"])


INFO = KindInfo(
    group="batch", version="v1", kind="Job", resource="jobs", singular="job", namespaced=True,
    strategy=JobStrategy(), categories=("all",), subresources=("status",),
)
