"""The Job controller (kube-controller-manager's "job-controller"), with the TTL-after-finished
clean-up folded in: runs a Job's pods to completion.

- `spec.parallelism` pods at a time until `spec.completions` have succeeded (with no completions,
  a work queue: the first success ends the creation of pods and the Job completes when none is
  left running); `completionMode: Indexed` gives each pod an index (annotation and label
  `batch.kubernetes.io/job-completion-index`, hostname `<job>-<index>`, name `<job>-<index>-xxxxx`,
  the env `JOB_COMPLETION_INDEX`) and runs each index until it succeeds once.
- Failures: pods that failed count against `backoffLimit` (restartPolicy Never), and so do the
  container restarts of running pods (OnFailure); a replacement waits an exponential back-off
  (10 s doubling, at most 6 minutes) after the last failure. `activeDeadlineSeconds` ends a
  running Job. Either ends it with FailureTarget then Failed (BackoffLimitExceeded /
  DeadlineExceeded) and its running pods deleted.
- `podFailurePolicy` (podfailurepolicy.py judges each failed pod): FailJob ends the Job at once
  (reason PodFailurePolicy, the rule's message), Ignore leaves the failure uncounted, Count and
  FailIndex count it. With it, `podReplacementPolicy: Failed` (its default) waits for a deleted
  pod to finish before replacing it.
- `backoffLimitPerIndex` (Indexed Jobs): each index has its own count of failures and back-off
  (`batch.kubernetes.io/job-index-failure-count` on each new pod); an index whose failures pass
  the limit, or whose pod matched a FailIndex rule, fails (`status.failedIndexes`) and is not
  retried; past `maxFailedIndexes` the Job fails (MaxFailedIndexesExceeded), and once every
  index has succeeded or failed with some failed, it fails (FailedIndexes).
- Success: SuccessCriteriaMet then Complete (CompletionsReached), completionTime.
- `suspend`: running pods are deleted and startTime cleared (Suspended=True, JobSuspended);
  resuming starts the clock again (Suspended=False, JobResumed).
- `ttlSecondsAfterFinished`: the finished Job is deleted, its pods with it, once that long has
  passed (the ttl-after-finished controller's job).
- A Job whose `managedBy` names another controller is left alone.

Counting follows the pods that exist (the controller before pod-tracking finalizers): a pod
deleted before the controller saw it finish is not counted, and `failed` never decreases.
"""

from __future__ import annotations

import asyncio
import datetime as _dt

from pocketkube.controllers import podcontrol
from pocketkube.controllers.podfailurepolicy import FAIL_INDEX, judge
from pocketkube.controllers.base import Controller
from pocketkube.core import errors
from pocketkube.core.informer import object_key
from pocketkube.core.objects import deep_copy, parse_time, rfc3339, utc_now

API_VERSION, KIND = "batch/v1", "Job"
MANAGED_BY_US = "kubernetes.io/job-controller"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_ENV = "JOB_COMPLETION_INDEX"
INDEX_FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
INDEX_IGNORED_FAILURE_COUNT = "batch.kubernetes.io/job-index-ignored-failure-count"
BACKOFF_BASE_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 360.0
BURST = 500

COMPLETED_MESSAGE = "Reached expected number of succeeded pods"
BACKOFF_MESSAGE = "Job has reached the specified backoff limit"
DEADLINE_MESSAGE = "Job was active longer than specified deadline"
MAX_FAILED_INDEXES_MESSAGE = "Job has exceeded the specified maximal number of failed indexes"
FAILED_INDEXES_MESSAGE = "Job has failed indexes"


def has_condition(job: dict, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def is_finished(job: dict) -> bool:
    return has_condition(job, "Complete") or has_condition(job, "Failed")


def pod_index(pod: dict) -> int | None:
    value = (pod["metadata"].get("annotations") or {}).get(INDEX_ANNOTATION)
    return int(value) if value is not None and value.isdigit() else None


def format_indexes(indexes: set[int]) -> str:
    """completedIndexes: "1,3-5,7" (runs of three or more joined by a hyphen)."""
    out, ordered, i = [], sorted(indexes), 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            out.append(f"{ordered[i]}-{ordered[j]}")
        else:
            out.extend(str(n) for n in ordered[i:j + 1])
        i = j + 1
    return ",".join(out)


def backoff_delay(failures: int) -> float:
    """The wait before a replacement after `failures` failures in a row."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_BASE_SECONDS * 2 ** (failures - 1), BACKOFF_MAX_SECONDS)


def _finished_at(pod: dict) -> _dt.datetime | None:
    times = [parse_time(((s.get("state") or {}).get("terminated") or {}).get("finishedAt"))
             for s in (pod.get("status") or {}).get("containerStatuses") or []]
    times = [t for t in times if t is not None]
    return max(times) if times else None


def _restarts(pod: dict) -> int:
    return sum(s.get("restartCount") or 0 for s in (pod.get("status") or {}).get("containerStatuses") or [])


class JobController(Controller):
    name = "job-controller"
    workers = 5  # --concurrent-job-syncs

    def setup(self) -> None:
        self.expectations = podcontrol.Expectations()
        self.jobs = self.informers.informer(API_VERSION, "jobs")
        self.pods = self.informers.informer("v1", "pods")
        self.pod_index = podcontrol.OwnerIndex(self.pods)
        self.jobs.add_handlers(self.enqueue, lambda old, new: self.enqueue(new), self._job_deleted)
        self.pods.add_handlers(self._pod_changed, lambda old, new: self._pod_changed(new, old), self._pod_deleted)

    def _job_deleted(self, job: dict) -> None:
        self.expectations.forget(object_key(job))

    def _owner_key(self, pod: dict) -> str | None:
        ref = podcontrol.controller_of(pod)
        if ref is None or ref.get("kind") != KIND or not str(ref.get("apiVersion", "")).startswith("batch/"):
            return None
        return f"{pod['metadata'].get('namespace', '')}/{ref.get('name', '')}"

    def _pod_changed(self, pod: dict, old: dict | None = None) -> None:
        key = self._owner_key(pod)
        if key is not None:
            if old is None:
                self.expectations.creation_observed(key)
            self.enqueue(key)
            return
        if podcontrol.controller_of(pod) is not None:
            return  # another controller's pod: no Job may adopt it
        for job in self.jobs.list(pod["metadata"].get("namespace", "")):
            try:
                if podcontrol.label_selector(job["spec"].get("selector")).matches(pod["metadata"].get("labels") or {}):
                    self.enqueue(job)
            except ValueError:
                continue

    def _pod_deleted(self, pod: dict) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.deletion_observed(key, object_key(pod))
            self.enqueue(key)

    # ---- sync ----------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None:
            self.expectations.forget(key)
            return
        spec = job.get("spec") or {}
        if spec.get("managedBy", MANAGED_BY_US) != MANAGED_BY_US:
            return
        if is_finished(job):
            return  # TTLAfterFinishedController's now
        selector = podcontrol.label_selector(spec.get("selector"))
        manager = podcontrol.RefManager(self.client, job, API_VERSION, KIND, "jobs", selector, "v1", "pods")
        pods = await manager.claim(self.pod_index.candidates(job))
        now = utc_now()
        status = deep_copy(job.get("status") or {})
        conditions = list(status.get("conditions") or [])
        active = [p for p in pods if podcontrol.is_pod_active(p)]
        terminating = [p for p in pods if podcontrol.is_being_deleted(p)
                       and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        succeeded_pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
        failed_pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        completed_indexes = {i for p in succeeded_pods if (i := pod_index(p)) is not None
                             and i < (completions or 0)} if indexed else set()
        succeeded = len(completed_indexes) if indexed else len(succeeded_pods)
        verdicts = {p["metadata"].get("uid") or p["metadata"]["name"]: judge(spec.get("podFailurePolicy"), p)
                    for p in failed_pods}
        counted_failures = [p for p in failed_pods if _verdict(verdicts, p).counts]
        failed = max(status.get("failed") or 0, len(counted_failures))
        per_index = _IndexFailures(job, failed_pods, verdicts, completed_indexes) \
            if indexed and spec.get("backoffLimitPerIndex") is not None else None
        target = podcontrol.with_kind(job, API_VERSION, KIND)
        suspended = bool(spec.get("suspend"))

        failure: tuple[str, str] | None = None
        fail_job = next((m for p in sorted(failed_pods, key=_finished_sort_key)
                         if (m := _verdict(verdicts, p).message)), None)
        if has_condition(job, "FailureTarget"):
            c = next(c for c in conditions if c.get("type") == "FailureTarget")
            failure = (c.get("reason", ""), c.get("message", ""))
        elif fail_job is not None:
            failure = ("PodFailurePolicy", fail_job)
        elif not suspended and self._past_deadline(job, now):
            failure = ("DeadlineExceeded", DEADLINE_MESSAGE)
        elif failed + (sum(_restarts(p) for p in active)
                       if _restart_policy(job) == "OnFailure" else 0) > spec.get("backoffLimit", 6):
            failure = ("BackoffLimitExceeded", BACKOFF_MESSAGE)
        elif per_index is not None and spec.get("maxFailedIndexes") is not None and \
                len(per_index.failed) > spec["maxFailedIndexes"]:
            failure = ("MaxFailedIndexesExceeded", MAX_FAILED_INDEXES_MESSAGE)
        elif per_index is not None and per_index.failed and \
                len(per_index.failed) + len(completed_indexes) >= (completions or 0):
            failure = ("FailedIndexes", FAILED_INDEXES_MESSAGE)
        complete = (succeeded >= completions) if completions is not None else (succeeded > 0 and not active)
        if per_index is not None:
            status["failedIndexes"] = format_indexes(per_index.failed)
            # A failed index runs no more: its pods still running are stopped.
            doomed = [p for p in active if pod_index(p) in per_index.failed]
            if doomed and failure is None:
                await self._delete_pods(key, job, doomed, target)
                active = [p for p in active if p not in doomed]
        # podReplacementPolicy Failed: a pod being deleted is replaced only once it has finished.
        waiting = terminating if spec.get("podReplacementPolicy") == "Failed" else []

        manage_error: Exception | None = None
        if failure is not None:
            conditions = _set_condition(conditions, "FailureTarget", "True", failure[0], failure[1], now)
            await self._delete_pods(key, job, active, target)
            if not active and not terminating:
                conditions = _set_condition(conditions, "Failed", "True", failure[0], failure[1], now)
                self.recorder.event(target, "Warning", failure[0], failure[1])
            active = []
        elif complete:
            conditions = _set_condition(conditions, "SuccessCriteriaMet", "True", "CompletionsReached",
                                        COMPLETED_MESSAGE, now)
            if active:
                await self._delete_pods(key, job, active, target)
                active = []
            if not terminating:
                conditions = _set_condition(conditions, "Complete", "True", "CompletionsReached", COMPLETED_MESSAGE, now)
                status["completionTime"] = rfc3339(now)
                self.recorder.event(target, "Normal", "Completed", "Job completed")
        elif suspended:
            if active:
                await self._delete_pods(key, job, active, target)
                active = []
            if not has_condition(job, "Suspended"):
                conditions = _set_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", now)
                self.recorder.event(target, "Normal", "Suspended", "Job suspended")
            status.pop("startTime", None)
        else:
            if has_condition(job, "Suspended"):
                conditions = _set_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", now)
                self.recorder.event(target, "Normal", "Resumed", "Job resumed")
            if not status.get("startTime"):
                status["startTime"] = rfc3339(now)
                if spec.get("activeDeadlineSeconds"):
                    self.queue.add_after(key, spec["activeDeadlineSeconds"])
            if self.expectations.satisfied(key):
                if per_index is not None:
                    created, manage_error = await self._manage_per_index(key, job, active + waiting, per_index, now)
                    active = active + created
                else:
                    wait = self._backoff_remaining(counted_failures, failed, now)
                    if wait > 0:
                        self.queue.add_after(key, wait)
                    else:
                        created, manage_error = await self._manage(key, job, active, waiting,
                                                                   completed_indexes, succeeded)
                        active = active + created

        status.update(active=len(active), succeeded=succeeded, failed=failed, conditions=conditions,
                      ready=sum(1 for p in active if podcontrol.is_pod_ready(p)),
                      terminating=len(terminating), uncountedTerminatedPods=status.get("uncountedTerminatedPods") or {})
        if indexed:
            status["completedIndexes"] = format_indexes(completed_indexes)
        await self._write_status(job, status)
        if manage_error is not None:
            raise manage_error

    def _past_deadline(self, job: dict, now: _dt.datetime) -> bool:
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        start = parse_time((job.get("status") or {}).get("startTime"))
        return bool(deadline) and start is not None and (now - start).total_seconds() >= deadline

    @staticmethod
    def _backoff_remaining(failed_pods: list[dict], failed: int, now: _dt.datetime) -> float:
        last = max((t for p in failed_pods if (t := _finished_at(p)) is not None), default=None)
        if last is None:
            return 0.0
        return backoff_delay(failed) - (now - last).total_seconds()

    async def _manage(self, key: str, job: dict, active: list[dict], waiting: list[dict], completed: set[int],
                      succeeded: int) -> tuple[list[dict], Exception | None]:
        """Create the pods the Job lacks (or delete what is over parallelism). `waiting`: pods
        being deleted that hold their place until they finish (podReplacementPolicy Failed)."""
        spec = job["spec"]
        parallelism = spec.get("parallelism") or 0
        completions = spec.get("completions")
        if spec.get("completionMode") == "Indexed":
            busy = {pod_index(p) for p in active + waiting}
            missing = [i for i in range(completions or 0) if i not in completed and i not in busy]
            want = max(0, min(parallelism - len(active) - len(waiting), len(missing)))
            return await self._create_pods(key, job, list(missing[:want]))
        remaining = (completions - succeeded) if completions is not None else (0 if succeeded else parallelism)
        wanted = min(parallelism, max(remaining, 0))
        if len(active) > wanted:
            surplus = sorted(active, key=lambda p: podcontrol.is_pod_ready(p))[: len(active) - wanted]
            await self._delete_pods(key, job, surplus, podcontrol.with_kind(job, API_VERSION, KIND))
            return [], None
        return await self._create_pods(key, job, [None] * max(0, wanted - len(active) - len(waiting)))

    async def _manage_per_index(self, key: str, job: dict, running: list[dict], per_index: "_IndexFailures",
                                now: _dt.datetime) -> tuple[list[dict], Exception | None]:
        """backoffLimitPerIndex: start the indexes that are neither done, failed nor running, each
        once its own back-off has passed, with its failure counts on the new pod."""
        spec = job["spec"]
        busy = {pod_index(p) for p in running}
        ready, soonest = [], None
        for i in range(spec.get("completions") or 0):
            if i in per_index.completed or i in per_index.failed or i in busy:
                continue
            wait = per_index.backoff_remaining(i, now)
            if wait > 0:
                soonest = wait if soonest is None else min(soonest, wait)
            else:
                ready.append(i)
        if soonest is not None:
            self.queue.add_after(key, soonest)
        want = max(0, min((spec.get("parallelism") or 0) - len(running), len(ready)))
        return await self._create_pods(key, job, ready[:want], per_index)

    async def _create_pods(self, key: str, job: dict, indexes: list[int | None],
                           per_index: "_IndexFailures | None" = None) -> tuple[list[dict], Exception | None]:
        indexes = indexes[:BURST]
        if not indexes:
            return [], None
        self.expectations.expect_creations(key, len(indexes))
        created: list[dict] = []
        target = podcontrol.with_kind(job, API_VERSION, KIND)

        async def create(index: int | None) -> None:
            pod = self._pod_for(job, index)
            if per_index is not None and index is not None:
                annotations = pod["metadata"].setdefault("annotations", {})
                annotations[INDEX_FAILURE_COUNT] = str(per_index.counted.get(index, 0))
                if per_index.ignored.get(index):
                    annotations[INDEX_IGNORED_FAILURE_COUNT] = str(per_index.ignored[index])
            try:
                made = await self.client.create("v1", "pods", pod, namespace=job["metadata"]["namespace"])
            except errors.APIError as exc:
                self.expectations.creation_observed(key)
                if not errors.namespace_terminating(exc):
                    self.recorder.event(target, "Warning", "FailedCreate", f"Error creating: {exc.message}")
                raise
            created.append(made)
            self.recorder.event(target, "Normal", "SuccessfulCreate", f"Created pod: {made['metadata']['name']}")

        results = await asyncio.gather(*(create(i) for i in indexes), return_exceptions=True)
        error = next((r for r in results if isinstance(r, Exception)), None)
        if isinstance(error, errors.APIError) and errors.namespace_terminating(error):
            error = None
        return created, error

    def _pod_for(self, job: dict, index: int | None) -> dict:
        ref = podcontrol.controller_ref(job, API_VERSION, KIND)
        name = job["metadata"]["name"]
        if index is None:
            return podcontrol.pod_from_template(job["spec"].get("template") or {}, job, ref)
        pod = podcontrol.pod_from_template(job["spec"].get("template") or {}, job, ref,
                                           podcontrol.pod_name_prefix(f"{name}-{index}"))
        m = pod["metadata"]
        m.setdefault("annotations", {})[INDEX_ANNOTATION] = str(index)
        m.setdefault("labels", {})[INDEX_ANNOTATION] = str(index)
        pod["spec"].setdefault("hostname", f"{name}-{index}"[:63])
        env = {"name": INDEX_ENV, "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}}
        for container in pod["spec"].get("initContainers", []) + pod["spec"].get("containers", []):
            if not any(e.get("name") == INDEX_ENV for e in container.get("env") or []):
                container["env"] = [*(container.get("env") or []), env]
        return pod

    async def _delete_pods(self, key: str, job: dict, pods: list[dict], target: dict) -> None:
        if not pods:
            return
        self.expectations.expect_deletions(key, [object_key(p) for p in pods])

        async def delete(pod: dict) -> None:
            m = pod["metadata"]
            try:
                await self.client.delete("v1", "pods", m["name"], m["namespace"])
            except errors.APIError as exc:
                self.expectations.deletion_observed(key, object_key(pod))
                if exc.code != 404:
                    self.recorder.event(target, "Warning", "FailedDelete", f"Error deleting: {exc.message}")
                return
            self.recorder.event(target, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")

        await asyncio.gather(*(delete(p) for p in pods))

    async def _write_status(self, job: dict, status: dict) -> None:
        current = job.get("status") or {}
        if _without_zeros(current) == _without_zeros(status):
            return
        body = {**job, "status": status}
        try:
            await self.client.update(API_VERSION, "jobs", body, job["metadata"]["namespace"], subresource="status")
        except errors.APIError as exc:
            # 409: the informer's Job was stale; the newer one arrives through it and syncs again.
            if exc.code not in (404, 409):
                raise



class TTLAfterFinishedController(Controller):
    """ttlSecondsAfterFinished: a finished Job is deleted (its pods with it) once that long has
    passed, as kube-controller-manager's ttl-after-finished controller does, with its identity."""

    name = "ttl-after-finished-controller"
    workers = 1

    def setup(self) -> None:
        self.jobs = self.informers.informer(API_VERSION, "jobs")
        self.jobs.add_handlers(self._changed, lambda old, new: self._changed(new))

    def _changed(self, job: dict) -> None:
        if is_finished(job) and (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None:
            self.enqueue(job)

    async def sync(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None:
            return
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None or podcontrol.is_being_deleted(job):
            return
        finished = max((t for c in (job.get("status") or {}).get("conditions") or []
                        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                        and (t := parse_time(c.get("lastTransitionTime"))) is not None), default=None)
        if finished is None:
            return
        left = ttl - (utc_now() - finished).total_seconds()
        if left > 0:
            self.queue.add_after(key, left)
            return
        m = job["metadata"]
        try:
            await self.client.delete(API_VERSION, "jobs", m["name"], m["namespace"],
                                     propagation_policy="Foreground", preconditions={"uid": m["uid"]})
        except errors.APIError as exc:
            if exc.code not in (404, 409):
                raise


class _IndexFailures:
    """backoffLimitPerIndex: per index, the failures that count and those ignored (carried from pod
    to pod in annotations, so a deleted failed pod is not forgotten), when it last failed, and
    the indexes failed for good (past the limit, or a FailIndex rule)."""

    def __init__(self, job: dict, failed_pods: list[dict], verdicts: dict, completed: set[int]):
        limit = job["spec"]["backoffLimitPerIndex"]
        completions = job["spec"].get("completions") or 0
        self.completed = completed
        self.counted: dict[int, int] = {}
        self.ignored: dict[int, int] = {}
        self.last: dict[int, _dt.datetime] = {}
        self.failed: set[int] = set()
        for pod in failed_pods:
            index = pod_index(pod)
            if index is None or index >= completions or index in completed:
                continue
            verdict = _verdict(verdicts, pod)
            annotations = pod["metadata"].get("annotations") or {}
            counted = _int(annotations.get(INDEX_FAILURE_COUNT)) + (1 if verdict.counts else 0)
            ignored = _int(annotations.get(INDEX_IGNORED_FAILURE_COUNT)) + (0 if verdict.counts else 1)
            self.counted[index] = max(self.counted.get(index, 0), counted)
            self.ignored[index] = max(self.ignored.get(index, 0), ignored)
            if verdict.action == FAIL_INDEX or (verdict.counts and counted > limit):
                self.failed.add(index)
            finished = _finished_at(pod)
            if finished is not None and (index not in self.last or finished > self.last[index]):
                self.last[index] = finished

    def backoff_remaining(self, index: int, now: _dt.datetime) -> float:
        last = self.last.get(index)
        if last is None:
            return 0.0
        return backoff_delay(self.counted.get(index, 0)) - (now - last).total_seconds()


def _verdict(verdicts: dict, pod: dict):
    return verdicts[pod["metadata"].get("uid") or pod["metadata"]["name"]]


def _finished_sort_key(pod: dict) -> tuple:
    finished = _finished_at(pod)
    return (finished is None, finished or _dt.datetime.min.replace(tzinfo=_dt.timezone.utc),
            pod["metadata"].get("name", ""))


def _int(value: str | None) -> int:
    return int(value) if value is not None and str(value).isdigit() else 0


def _restart_policy(job: dict) -> str:
    return (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("restartPolicy", "")


def _set_condition(conditions: list[dict], kind: str, status: str, reason: str, message: str,
                   now: _dt.datetime) -> list[dict]:
    """Add or update a condition; its transition time moves only when its status changes."""
    stamp = rfc3339(now)
    out, found = [], False
    for c in conditions:
        if c.get("type") == kind:
            found = True
            if c.get("status") != status:
                c = {**c, "status": status, "lastTransitionTime": stamp}
            c = {**c, "reason": reason, "message": message, "lastProbeTime": stamp}
        out.append(c)
    if not found:
        out.append({"type": kind, "status": status, "lastProbeTime": stamp, "lastTransitionTime": stamp,
                    "reason": reason, "message": message})
    return out


def _without_zeros(status: dict) -> dict:
    return {k: v for k, v in status.items()
            if v not in (0, None, [], {}, "") and k != "conditions"} | {
        "conditions": [{k: v for k, v in c.items() if k != "lastProbeTime"} for c in status.get("conditions") or []]}
