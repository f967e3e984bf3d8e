"""core/v1 PersistentVolumeClaim and PersistentVolume: stored, defaulted and validated as
the API server does (pkg/apis/core/validation ValidatePersistentVolumeClaim / ValidatePersistentVolume,
the strategies' status handling). Nothing provisions or binds them: a claim stays `Pending`
and a volume `Pending`, as on a cluster with no volume plugin and no PV controller. They are
here so that manifests with claims apply, `kubectl get pvc,pv` answers, and clients that
clean claims up (the StatefulSet e2e framework lists and deletes them) find the resources.
"""

from __future__ import annotations

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, forbidden, not_supported, required
from pocketkube.core.objects import rfc3339

ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
VOLUME_MODES = ["Block", "Filesystem"]
RECLAIM_POLICIES = ["Delete", "Recycle", "Retain"]
# The volume sources a PersistentVolumeSpec may carry (exactly one).
PV_SOURCES = ("awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi", "fc", "flexVolume",
              "flocker", "gcePersistentDisk", "glusterfs", "hostPath", "iscsi", "local", "nfs",
              "photonPersistentDisk", "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos",
              "vsphereVolume")
CLAIM_SPEC_IMMUTABLE = ("spec is immutable after creation except resources.requests and "
                        "volumeAttributesClassName for bound claims")


def _validate_access_modes(modes: list, path: str) -> list[FieldError]:
    if not modes:
        return [required(path, "at least 1 access mode is required")]
    errs = [not_supported(path, mode, ACCESS_MODES) for mode in modes if mode not in ACCESS_MODES]
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        errs.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return errs


def _validate_volume_mode(spec: dict, path: str) -> list[FieldError]:
    mode = spec.get("volumeMode")
    return [not_supported(path, mode, VOLUME_MODES)] if mode is not None and mode not in VOLUME_MODES else []


class PersistentVolumeClaimStrategy(Strategy):
    has_status_subresource = True
    tracks_generation = False

    def default(self, obj: dict) -> None:
        obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        status = obj.setdefault("status", {})
        if not status.get("phase"):
            status["phase"] = "Pending"

    def initial_status(self, obj: dict) -> dict:
        return {"phase": "Pending"}

    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, True, v.name_is_dns_subdomain)
        spec = obj.get("spec") or {}
        errs += _validate_access_modes(spec.get("accessModes") or [], "spec.accessModes")
        if "storage" not in ((spec.get("resources") or {}).get("requests") or {}):
            errs.append(required("spec.resources[storage]"))
        return errs + _validate_volume_mode(spec, "spec.volumeMode")

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        errs += self.validate(obj)
        new_spec, old_spec = dict(obj.get("spec") or {}), dict(old.get("spec") or {})
        for key in ("resources", "volumeAttributesClassName"):
            new_spec.pop(key, None)
            old_spec.pop(key, None)
        if not old_spec.get("volumeName"):  # a claim may be bound once
            new_spec.pop("volumeName", None)
            old_spec.pop("volumeName", None)
        if new_spec != old_spec:
            errs.append(forbidden("spec", CLAIM_SPEC_IMMUTABLE))
        return errs


class PersistentVolumeStrategy(Strategy):
    has_status_subresource = True
    tracks_generation = False

    def default(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
        status = obj.setdefault("status", {})
        if not status.get("phase"):
            status["phase"] = "Pending"

    def initial_status(self, obj: dict) -> dict:
        return {"phase": "Pending", "lastPhaseTransitionTime": rfc3339()}

    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, False, v.name_is_dns_subdomain)
        spec = obj.get("spec") or {}
        errs += _validate_access_modes(spec.get("accessModes") or [], "spec.accessModes")
        if "storage" not in (spec.get("capacity") or {}):
            errs.append(required("spec.capacity", ""))
        sources = [key for key in PV_SOURCES if spec.get(key) is not None]
        if not sources:
            errs.append(required("spec", "must specify a volume type"))
        elif len(sources) > 1:
            errs.append(forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type"))
        policy = spec.get("persistentVolumeReclaimPolicy")
        if policy not in RECLAIM_POLICIES:
            errs.append(not_supported("spec.persistentVolumeReclaimPolicy", policy, RECLAIM_POLICIES))
        return errs + _validate_volume_mode(spec, "spec.volumeMode")

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        return errs + self.validate(obj)


PERSISTENT_VOLUME_CLAIM = KindInfo(
    group="", version="v1", kind="PersistentVolumeClaim", resource="persistentvolumeclaims",
    singular="persistentvolumeclaim", namespaced=True, strategy=PersistentVolumeClaimStrategy(),
    short_names=("pvc",), subresources=("status",))
PERSISTENT_VOLUME = KindInfo(
    group="", version="v1", kind="PersistentVolume", resource="persistentvolumes", singular="persistentvolume",
    namespaced=False, strategy=PersistentVolumeStrategy(), short_names=("pv",), subresources=("status",))
KINDS = [PERSISTENT_VOLUME_CLAIM, PERSISTENT_VOLUME]
