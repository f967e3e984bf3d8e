"""apiregistration.k8s.io/v1 APIService: stored and printed as kube-aggregator serves them, so
manifests that register an aggregated API (metrics-server) apply.

pocketkube does not proxy aggregated APIs: an APIService backed by a Service is never
Available (`ServiceNotFound` while its Service is missing, else `FailedDiscoveryCheck` saying
so); the `Local` ones, one per built-in group version, created at start, always are.
"""

from __future__ import annotations

from typing import Callable

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, invalid_value, required
from pocketkube.core.objects import rfc3339

GROUP = "apiregistration.k8s.io"


class APIServiceStrategy(Strategy):
    has_status_subresource = True
    tracks_generation = False
    # (namespace, name) -> the stored Service or None; set by the server (None: not known).
    service_lookup: Callable[[str, str], dict | None] | None = None

    def default(self, obj: dict) -> None:
        service = (obj.get("spec") or {}).get("service")
        if isinstance(service, dict):
            service.setdefault("port", 443)

    def _available(self, obj: dict) -> dict:
        spec = obj.get("spec") or {}
        service = spec.get("service")
        now = rfc3339()
        if not service:
            return {"type": "Available", "status": "True", "lastTransitionTime": now, "reason": "Local",
                    "message": "Local APIServices are always available"}
        ns, name = service.get("namespace", ""), service.get("name", "")
        if self.service_lookup is not None and self.service_lookup(ns, name) is None:
            return {"type": "Available", "status": "False", "lastTransitionTime": now, "reason": "ServiceNotFound",
                    "message": f'service/{name} in "{ns}" is not present'}
        return {"type": "Available", "status": "False", "lastTransitionTime": now, "reason": "FailedDiscoveryCheck",
                "message": f"failing or missing response from https://{name}.{ns}.svc:{service.get('port', 443)}"
                           f"/apis/{spec.get('group', '')}/{spec.get('version', '')}: pocketkube does not proxy "
                           "aggregated APIs"}

    def prepare_for_create(self, obj: dict) -> None:
        super().prepare_for_create(obj)
        obj["status"] = {"conditions": [self._available(obj)]}

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        super().prepare_for_update(obj, old)
        obj["status"] = {"conditions": [self._available(obj)]}

    def validate(self, obj: dict) -> list[FieldError]:
        m = obj.get("metadata") or {}
        errs = v.validate_object_meta(m, False, lambda name, prefix: [])
        spec = obj.get("spec") or {}
        group, version = spec.get("group") or "", spec.get("version") or ""
        expected = f"{version}.{group}"
        if m.get("name") and m["name"] != expected:
            errs.append(invalid_value("metadata.name", m["name"], f'must be `spec.version+"."+spec.group`: '
                                                                  f'"{expected}"'))
        if not version:
            errs.append(required("spec.version"))
        for key, low, high in (("groupPriorityMinimum", 1, 20000), ("versionPriority", 1, 1000)):
            value = spec.get(key)
            if not isinstance(value, int) or not low <= value <= high:
                errs.append(invalid_value(f"spec.{key}", value if value is not None else 0,
                                          f"must be positive and less than {high}"))
        if spec.get("insecureSkipTLSVerify") and spec.get("caBundle"):
            errs.append(invalid_value("spec.insecureSkipTLSVerify", True,
                                      "may not be true if caBundle is present"))
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        return v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {}) + \
            self.validate(obj)


STRATEGY = APIServiceStrategy()
INFO = KindInfo(group=GROUP, version="v1", kind="APIService", resource="apiservices", singular="apiservice",
                namespaced=False, strategy=STRATEGY, categories=("api-extensions",), subresources=("status",))


def local_apiservices(groups: list[tuple[str, list[str]]]) -> list[dict]:
    """The Local APIService of every built-in group version (kube-apiserver's autoregistration)."""
    out = []
    for priority_rank, (group, versions) in enumerate(groups):
        for rank, version in enumerate(versions):
            labels = {"kube-aggregator.kubernetes.io/automanaged": "onstart"}
            out.append({"apiVersion": f"{GROUP}/v1", "kind": "APIService",
                        "metadata": {"name": f"{version}.{group}", "labels": labels},
                        "spec": {"group": group, "version": version,
                                 "groupPriorityMinimum": 18000 - 100 * priority_rank, "versionPriority": 15 - rank}})
    return out
