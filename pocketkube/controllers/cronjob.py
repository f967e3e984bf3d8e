"""The CronJob controller (kube-controller-manager's "cronjob-controller"): creates a Job at each
scheduled time, in `spec.timeZone` or the controller's own zone.

At each sync it forgets finished Jobs from `status.active` (SawCompletedJob, lastSuccessfulTime),
trims the finished ones beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`, then,
unless suspended, finds the most recent scheduled time since the last one (at most 100 missed,
TooManyMissedTimes beyond), skips it when `startingDeadlineSeconds` has passed, honours
`concurrencyPolicy` (Forbid waits for the running Job, Replace deletes it), and creates
`<cronjob>-<scheduled minute since the epoch>` from `jobTemplate` with the scheduled time in the
`batch.kubernetes.io/cronjob-scheduled-timestamp` annotation. It looks again at the next
scheduled time.
"""

from __future__ import annotations

import datetime as _dt

from pocketkube.controllers import podcontrol
from pocketkube.controllers.base import Controller
from pocketkube.controllers.job import has_condition, is_finished
from pocketkube.core import cron, errors
from pocketkube.core.objects import deep_copy, parse_time, rfc3339, utc_now

API_VERSION, KIND = "batch/v1", "CronJob"
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100


def job_name(cronjob_name: str, scheduled: _dt.datetime) -> str:
    """getJobName: the CronJob's name and the scheduled time in minutes since the epoch."""
    return f"{cronjob_name}-{int(scheduled.timestamp()) // 60}"


def most_recent_time(schedule: cron.Schedule, earliest: _dt.datetime, now: _dt.datetime,
                     tz: _dt.tzinfo) -> tuple[_dt.datetime | None, int]:
    """The latest scheduled time in (earliest, now], and how many there were (capped past 100)."""
    t = schedule.next(earliest, tz)
    latest, missed = None, 0
    while t is not None and t <= now:
        latest, missed = t, missed + 1
        if missed > MAX_MISSED:
            break
        t = schedule.next(t, tz)
    return latest, missed


class CronJobController(Controller):
    name = "cronjob-controller"
    workers = 5  # --concurrent-cron-job-syncs

    def setup(self) -> None:
        self.cronjobs = self.informers.informer(API_VERSION, "cronjobs")
        self.jobs = self.informers.informer("batch/v1", "jobs")
        self.cronjobs.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), lambda cj: None)
        self.jobs.add_handlers(self._job_changed, lambda old, new: self._job_changed(new), self._job_changed)

    def _job_changed(self, job: dict) -> None:
        ref = podcontrol.controller_of(job)
        if ref is not None and ref.get("kind") == KIND:
            self.enqueue(f"{job['metadata'].get('namespace', '')}/{ref.get('name', '')}")

    async def sync(self, key: str) -> None:
        cj = self.cronjobs.get(key)
        if cj is None:
            return
        now = utc_now()
        spec, m = cj.get("spec") or {}, cj["metadata"]
        status = deep_copy(cj.get("status") or {})
        target = podcontrol.with_kind(cj, API_VERSION, KIND)
        owned = [j for j in self.jobs.list(m["namespace"])
                 if (podcontrol.controller_of(j) or {}).get("uid") == m["uid"]]
        await self._forget_finished(cj, owned, status, target)
        await self._trim_history(cj, owned, target)
        if podcontrol.is_being_deleted(cj) or spec.get("suspend"):
            await self._write_status(cj, status)
            return
        try:
            tz = cron.zone(spec["timeZone"]) if spec.get("timeZone") else _local_zone()
        except ValueError as exc:
            self.recorder.event(target, "Warning", "UnknownTimeZone", str(exc))
            return
        try:
            schedule = cron.parse(spec.get("schedule", ""))
        except ValueError as exc:
            self.recorder.event(target, "Warning", "UnparseableSchedule", f"unparseable schedule: {exc}")
            return
        earliest = parse_time(status.get("lastScheduleTime")) or parse_time(m.get("creationTimestamp")) or now
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None:
            earliest = max(earliest, now - _dt.timedelta(seconds=deadline))
        scheduled, missed = most_recent_time(schedule, earliest, now, tz)
        if missed > MAX_MISSED:
            self.recorder.event(target, "Warning", "TooManyMissedTimes",
                                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds "
                                "or check clock skew")
        if scheduled is not None:
            await self._run(cj, scheduled, tz, status, owned, target)
        await self._write_status(cj, status)
        upcoming = schedule.next(now, tz)
        if upcoming is not None:
            self.queue.add_after(key, max((upcoming - now).total_seconds(), 0.0) + 0.1)

    async def _run(self, cj: dict, scheduled: _dt.datetime, tz: _dt.tzinfo, status: dict, owned: list[dict],
                   target: dict) -> None:
        spec, m = cj["spec"], cj["metadata"]
        running = [j for j in owned if not is_finished(j)]
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and running:
            return  # the next look at the schedule comes when the running Job ends
        if policy == "Replace":
            for job in running:
                await self._delete_job(job, target)
            status["active"] = []
        template = spec.get("jobTemplate") or {}
        name = job_name(m["name"], scheduled)
        tmeta = template.get("metadata") or {}
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": name, "namespace": m["namespace"],
                            "labels": dict(tmeta.get("labels") or {}),
                            "annotations": {**(tmeta.get("annotations") or {}),
                                            SCHEDULED_ANNOTATION: rfc3339_in(scheduled, tz)},
                            "ownerReferences": [podcontrol.controller_ref(cj, API_VERSION, KIND)]},
               "spec": deep_copy(template.get("spec") or {})}
        if not job["metadata"]["labels"]:
            del job["metadata"]["labels"]
        try:
            created = await self.client.create("batch/v1", "jobs", job, namespace=m["namespace"])
        except errors.APIError as exc:
            if exc.code != 409:
                self.recorder.event(target, "Warning", "FailedCreate", f"Error creating job: {exc.message}")
                raise
            status["lastScheduleTime"] = rfc3339(scheduled)  # made at an earlier try
            return
        self.recorder.event(target, "Normal", "SuccessfulCreate", f"Created job {name}")
        status.setdefault("active", []).append(_reference(created))
        status["lastScheduleTime"] = rfc3339(scheduled)

    async def _forget_finished(self, cj: dict, owned: list[dict], status: dict, target: dict) -> None:
        by_uid = {j["metadata"]["uid"]: j for j in owned}
        active = []
        for ref in status.get("active") or []:
            job = by_uid.get(ref.get("uid"))
            if job is None:
                continue
            if is_finished(job):
                kind = "Complete" if has_condition(job, "Complete") else "Failed"
                self.recorder.event(target, "Normal", "SawCompletedJob",
                                    f"Saw completed job: {job['metadata']['name']}, condition: {kind}")
                done = parse_time((job.get("status") or {}).get("completionTime"))
                last = parse_time(status.get("lastSuccessfulTime"))
                if done is not None and (last is None or done > last):
                    status["lastSuccessfulTime"] = rfc3339(done)
                continue
            active.append(ref)
        known = {ref.get("uid") for ref in active}
        active += [_reference(j) for j in owned if not is_finished(j) and j["metadata"]["uid"] not in known]
        status["active"] = active

    async def _trim_history(self, cj: dict, owned: list[dict], target: dict) -> None:
        spec = cj.get("spec") or {}
        for kind, limit in (("Complete", spec.get("successfulJobsHistoryLimit")),
                            ("Failed", spec.get("failedJobsHistoryLimit"))):
            if limit is None:
                continue
            finished = sorted((j for j in owned if has_condition(j, kind)),
                              key=lambda j: (j.get("status") or {}).get("startTime") or j["metadata"]["creationTimestamp"])
            for job in finished[:max(len(finished) - limit, 0)]:
                await self._delete_job(job, target)

    async def _delete_job(self, job: dict, target: dict) -> None:
        m = job["metadata"]
        try:
            await self.client.delete("batch/v1", "jobs", m["name"], m["namespace"], propagation_policy="Background")
        except errors.APIError as exc:
            if exc.code != 404:
                self.recorder.event(target, "Warning", "FailedDelete", f"Deleted job: {exc.message}")
            return
        self.recorder.event(target, "Normal", "SuccessfulDelete", f"Deleted job {m['name']}")

    async def _write_status(self, cj: dict, status: dict) -> None:
        if not status.get("active"):
            status.pop("active", None)
        if status == (cj.get("status") or {}):
            return
        try:
            await self.client.update(API_VERSION, "cronjobs", {**cj, "status": status}, cj["metadata"]["namespace"],
                                     subresource="status")
        except errors.APIError as exc:
            if exc.code not in (404, 409):  # 409: a newer CronJob comes through the informer
                raise


def _reference(job: dict) -> dict:
    m = job["metadata"]
    return {"kind": "Job", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"],
            "apiVersion": "batch/v1", "resourceVersion": m.get("resourceVersion", "")}


def rfc3339_in(t: _dt.datetime, tz: _dt.tzinfo) -> str:
    """The scheduled time as Go's time.RFC3339 writes it in the schedule's zone."""
    local = t.astimezone(tz)
    offset = local.utcoffset() or _dt.timedelta(0)
    if not offset:
        return local.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = local.strftime("%Y-%m-%dT%H:%M:%S%z")
    return text[:-2] + ":" + text[-2:]


def _local_zone() -> _dt.tzinfo:
    return _dt.datetime.now().astimezone().tzinfo or _dt.timezone.utc

