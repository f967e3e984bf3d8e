"""batch/v1 Job: defaults (SetDefaults_Job), the generated selector and pod labels, validation
(ValidateJob / ValidateJobUpdate, the parts a user meets) and the strategy."""

from __future__ import annotations

import copy

from pocketkube.apiserver.kinds import apps_common, podspec
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, invalid_value, not_supported, required

CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"
MAX_INT32 = 2147483647
MAX_PARALLELISM_FOR_INDEXED = 100_000


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
    for name in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        if spec.get(name) is not None:
            errs += v.validate_nonnegative(spec[name], f"{path}.{name}")
    if spec.get("activeDeadlineSeconds") is not None and spec["activeDeadlineSeconds"] <= 0:
        errs.append(invalid_value(f"{path}.activeDeadlineSeconds", spec["activeDeadlineSeconds"],
                                  "must be greater than 0"))
    mode = spec.get("completionMode", "NonIndexed" if in_cronjob else None)
    if mode not in ("NonIndexed", "Indexed"):
        errs.append(not_supported(f"{path}.completionMode", mode, ["NonIndexed", "Indexed"]))
    if mode == "Indexed":
        if spec.get("completions") is None:
            errs.append(required(f"{path}.completions", "when completion mode is Indexed"))
        if (spec.get("parallelism") or 0) > MAX_PARALLELISM_FOR_INDEXED:
            errs.append(invalid_value(f"{path}.parallelism", spec["parallelism"],
                                      f"must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED} "
                                      "when completion mode is Indexed"))
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
    return errs


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
