"""batch/v1 CronJob: defaults (SetDefaults_CronJob), validation (ValidateCronJob: the schedule
as robfig/cron parses it, the time zone, the policies and the job template) and strategy."""

from __future__ import annotations

from pocketkube.apiserver.kinds import apps_common, podspec
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.apiserver.kinds.job import validate_job_spec
from pocketkube.apiserver import validation as v
from pocketkube.core import cron
from pocketkube.core.errors import FieldError, invalid_value, not_supported, required

# A Job's name is the CronJob's plus "-" and up to 11 digits of its scheduled minute.
MAX_NAME_LENGTH = 52


class CronJobStrategy(apps_common.WorkloadStrategy):
    def default(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        job_spec = spec.setdefault("jobTemplate", {}).setdefault("spec", {})
        podspec.default_pod_template(job_spec.setdefault("template", {}))

    def validate(self, obj: dict) -> list[FieldError]:
        errs = super().validate(obj)
        name = obj["metadata"].get("name") or ""
        if len(name) > MAX_NAME_LENGTH:
            errs.append(invalid_value("metadata.name", name, f"must be no more than {MAX_NAME_LENGTH} characters"))
        return errs

    def validate_spec(self, obj: dict) -> list[FieldError]:
        spec = obj.get("spec") or {}
        errs: list[FieldError] = []
        schedule = spec.get("schedule") or ""
        time_zone = spec.get("timeZone")
        if not schedule:
            errs.append(required("spec.schedule"))
        else:
            try:
                cron.parse(schedule)
            except ValueError as exc:
                errs.append(invalid_value("spec.schedule", schedule, str(exc)))
            if time_zone is not None and ("TZ=" in schedule):
                errs.append(invalid_value("spec.schedule", schedule,
                                          "cannot use both timeZone field and TZ or CRON_TZ in schedule"))
        if time_zone is not None:
            try:
                cron.zone(time_zone)
            except ValueError as exc:
                errs.append(invalid_value("spec.timeZone", time_zone, str(exc)))
        policy = spec.get("concurrencyPolicy")
        if policy not in ("Allow", "Forbid", "Replace"):
            errs.append(not_supported("spec.concurrencyPolicy", policy, ["Allow", "Forbid", "Replace"]))
        for name in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
            if spec.get(name) is not None:
                errs += v.validate_nonnegative(spec[name], f"spec.{name}")
        job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        return errs + validate_job_spec(job_spec, "spec.jobTemplate.spec", None, in_cronjob=True)

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        return errs + self.validate_spec(obj)


INFO = KindInfo(
    group="batch", version="v1", kind="CronJob", resource="cronjobs", singular="cronjob", namespaced=True,
    strategy=CronJobStrategy(), short_names=("cj",), categories=("all",), subresources=("status",),
)
