"""core/v1 Pod: defaults (plus the ServiceAccount, Priority and DefaultTolerationSeconds
admission defaults), validation, update immutability and the write strategy."""

from __future__ import annotations

import copy
import random

from pocketkube.apiserver.kinds import podspec
from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, forbidden, invalid_value
from pocketkube.core.objects import deep_copy

DEFAULT_TOLERATION_SECONDS = 300
_DEFAULT_TOLERATIONS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
UPDATABLE_POD_SPEC_FIELDS = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)


def _add_default_tolerations(spec: dict) -> None:
    tolerations = spec.setdefault("tolerations", [])
    for key in _DEFAULT_TOLERATIONS:
        if any(t.get("key") == key and t.get("effect") in ("NoExecute", None, "") for t in tolerations):
            continue
        tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                            "tolerationSeconds": DEFAULT_TOLERATION_SECONDS})


def _default_host_network_ports(containers: list) -> None:
    for container in containers:
        for port in container.get("ports") or []:
            port.setdefault("hostPort", port.get("containerPort"))


class PodStrategy(Strategy):
    has_status_subresource = True
    tracks_generation = False

    def default(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            podspec.default_requests_from_limits(container)
        spec.setdefault("enableServiceLinks", True)
        if spec.get("hostNetwork"):
            _default_host_network_ports((spec.get("initContainers") or []) + (spec.get("containers") or []))
        podspec.default_pod_spec(spec)

    def prepare_for_create(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        # ServiceAccount admission: the namespace's "default" account.
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = account
        spec["serviceAccount"] = account
        _mount_service_account_token(spec)
        # Priority admission: no PriorityClass means priority 0.
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        _add_default_tolerations(spec)
        obj["status"] = self.initial_status(obj)

    def initial_status(self, obj: dict) -> dict:
        return {"phase": "Pending", "qosClass": podspec.qos_class(obj.get("spec") or {})}

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        obj["status"] = copy.deepcopy(old.get("status", {}))
        spec = obj.get("spec") or {}
        # The deprecated serviceAccount mirrors serviceAccountName, as conversion does.
        if spec.get("serviceAccountName"):
            spec["serviceAccount"] = spec["serviceAccountName"]

    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, True, v.name_is_dns_subdomain)
        return errs + podspec.validate_pod_spec(obj.get("spec") or {}, "spec")

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        errs += podspec.validate_pod_spec(obj.get("spec") or {}, "spec")
        return errs + validate_pod_spec_update(obj.get("spec") or {}, old.get("spec") or {})


def validate_pod_spec_update(new: dict, old: dict) -> list[FieldError]:
    """ValidatePodUpdate: only images, activeDeadlineSeconds and added tolerations may change."""
    errs: list[FieldError] = []
    for key in ("containers", "initContainers"):
        if len(new.get(key) or []) != len(old.get(key) or []):
            return [forbidden(f"spec.{key}", "pod updates may not add or remove containers")]
    new_deadline, old_deadline = new.get("activeDeadlineSeconds"), old.get("activeDeadlineSeconds")
    if new_deadline is not None:
        if not 0 <= new_deadline <= v.MAX_INT32:
            return errs + [invalid_value("spec.activeDeadlineSeconds", new_deadline, v.inclusive_range_error(0, v.MAX_INT32))]
        if old_deadline is not None and old_deadline < new_deadline:
            return errs + [invalid_value("spec.activeDeadlineSeconds", new_deadline,
                                         "must be less than or equal to previous value")]
    elif old_deadline is not None:
        errs.append(invalid_value("spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value"))
    new_tolerations = [_without_seconds(t) for t in new.get("tolerations") or []]
    for toleration in old.get("tolerations") or []:
        if _without_seconds(toleration) not in new_tolerations:
            errs.append(forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"))
            break
    if new == old:
        return errs  # a status write, or a spec written back unchanged: nothing of it changed
    munged = deep_copy(new)
    for key in ("containers", "initContainers"):
        for container, old_container in zip(munged.get(key) or [], old.get(key) or []):
            container["image"] = old_container.get("image")
    for key in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        munged.pop(key, None)
        if key in old:
            munged[key] = old[key]
    old_grace = old.get("terminationGracePeriodSeconds")
    if old_grace is not None and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if munged != old:
        errs.append(forbidden("spec", "pod updates may not change fields other than "
                              + ",".join(UPDATABLE_POD_SPEC_FIELDS) + "\n" + _spec_diff(old, munged)))
    return errs


def _without_seconds(toleration: dict) -> dict:
    return {k: val for k, val in toleration.items() if k != "tolerationSeconds"}


def _spec_diff(old: dict, new: dict, path: str = "core.PodSpec") -> str:
    """A short `- old / + new` listing of the leaves that differ (Kubernetes prints a cmp.Diff)."""
    lines: list[str] = []

    def walk(a, b, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{where}.{key}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{where}[{i}]")
        elif a != b:
            lines.append(f"  {where}:\n  \t- {a!r}\n  \t+ {b!r}")

    walk(old, new, path)
    return "\n".join(lines)


INFO = KindInfo(
    group="", version="v1", kind="Pod", resource="pods", singular="pod", namespaced=True,
    strategy=PodStrategy(), short_names=("po",), categories=("all",),
    subresources=("status", "log", "exec", "attach", "portforward", "proxy", "binding", "eviction",
                  "ephemeralcontainers"),
)


TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def _mount_service_account_token(spec: dict) -> None:
    """ServiceAccount admission: a projected `kube-api-access-xxxxx` volume (token, ca.crt,
    namespace) mounted read-only in every container, unless automountServiceAccountToken is
    false or a container already mounts something at the token path."""
    if spec.get("automountServiceAccountToken") is False:
        return
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    if any(m.get("mountPath") == TOKEN_MOUNT_PATH for c in containers for m in c.get("volumeMounts") or []):
        return
    volumes = spec.setdefault("volumes", [])
    name = next((v["name"] for v in volumes if v.get("name", "").startswith("kube-api-access-")), None)
    if name is None:
        name = "kube-api-access-" + "".join(random.choices(_NAME_CHARS, k=5))
        volumes.append({"name": name, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}})
    for c in containers:
        c.setdefault("volumeMounts", []).append({"name": name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH})
