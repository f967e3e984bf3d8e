"""apiextensions.k8s.io/v1 CustomResourceDefinition: defaults, validation (pkg/apis/apiextensions
validation: names, group, scope, versions, one storage version, structural schemas) and the
status kube-apiserver's naming and establishing controllers write, set here at once: a CRD is
served as soon as it is stored (customresources.py turns it into kinds).
"""

from __future__ import annotations

from pocketkube.apiserver import crdschema
from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, duplicate, invalid_value, not_supported, required
from pocketkube.core.objects import rfc3339

GROUP = "apiextensions.k8s.io"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def _condition(kind: str, reason: str, message: str) -> dict:
    return {"type": kind, "status": "True", "lastTransitionTime": rfc3339(), "reason": reason, "message": message}


def storage_version(crd: dict) -> str:
    for ver in (crd.get("spec") or {}).get("versions") or []:
        if isinstance(ver, dict) and ver.get("storage"):
            return ver.get("name", "")
    return ""


class _CRDStrategy(Strategy):
    has_status_subresource = True

    def default(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        names = spec.setdefault("names", {})
        if names.get("kind"):
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", names["kind"] + "List")
        spec.setdefault("conversion", {"strategy": "None"})
        for ver in spec.get("versions") or []:
            if isinstance(ver, dict):
                for col in ver.get("additionalPrinterColumns") or []:
                    if isinstance(col, dict) and col.get("priority") is None:
                        col.pop("priority", None)

    def prepare_for_create(self, obj: dict) -> None:
        super().prepare_for_create(obj)
        obj["metadata"].setdefault("finalizers", [])
        if CLEANUP_FINALIZER not in obj["metadata"]["finalizers"]:
            obj["metadata"]["finalizers"].append(CLEANUP_FINALIZER)
        obj["status"] = self._status(obj, None)

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        super().prepare_for_update(obj, old)
        obj["status"] = self._status(obj, old.get("status"))

    def _status(self, obj: dict, old: dict | None) -> dict:
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        stored = list((old or {}).get("storedVersions") or [])
        sv = storage_version(obj)
        if sv and sv not in stored:
            stored.append(sv)
        conditions = (old or {}).get("conditions") or [
            _condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            _condition("Established", "InitialNamesAccepted", "the initial names have been accepted")]
        accepted = {k: names[k] for k in ("plural", "singular", "shortNames", "kind", "listKind", "categories")
                    if names.get(k)}
        return {"conditions": conditions, "acceptedNames": accepted, "storedVersions": stored}

    def validate(self, obj: dict) -> list[FieldError]:
        m = obj.get("metadata") or {}
        errs = v.validate_object_meta(m, False, v.name_is_dns_subdomain)
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        group = spec.get("group") or ""
        plural = names.get("plural") or ""
        if m.get("name") and m.get("name") != f"{plural}.{group}":
            errs.append(invalid_value("metadata.name", m.get("name"), 'must be spec.names.plural+"."+spec.group'))
        if not group:
            errs.append(required("spec.group"))
        else:
            errs += [invalid_value("spec.group", group, msg) for msg in v.is_dns1123_subdomain(group)]
            if "." not in group:
                errs.append(invalid_value("spec.group", group, "should be a domain with at least one dot"))
        scope = spec.get("scope")
        if scope not in ("Cluster", "Namespaced"):
            errs.append(not_supported("spec.scope", scope or "", ["Cluster", "Namespaced"]) if scope
                        else required("spec.scope"))
        for key, path in (("plural", "spec.names.plural"), ("singular", "spec.names.singular")):
            value = names.get(key) or ""
            if not value:
                errs.append(required(path))
            else:
                errs += [invalid_value(path, value, msg) for msg in v.is_dns1035_label(value)]
        kind = names.get("kind") or ""
        if not kind:
            errs.append(required("spec.names.kind"))
        for i, short in enumerate(names.get("shortNames") or []):
            errs += [invalid_value(f"spec.names.shortNames[{i}]", short, msg) for msg in v.is_dns1035_label(short)]
        versions = spec.get("versions") or []
        if not versions:
            errs.append(required("spec.versions", "must have exactly one version marked as storage version"))
        seen: set[str] = set()
        storage = 0
        for i, ver in enumerate(versions):
            path = f"spec.versions[{i}]"
            if not isinstance(ver, dict):
                continue
            name = ver.get("name") or ""
            errs += [invalid_value(f"{path}.name", name, msg) for msg in v.is_dns1035_label(name)] if name \
                else [required(f"{path}.name")]
            if name in seen:
                errs.append(duplicate(f"{path}.name", name))
            seen.add(name)
            storage += 1 if ver.get("storage") else 0
            schema = (ver.get("schema") or {}).get("openAPIV3Schema")
            if schema is None:
                errs.append(required(f"{path}.schema.openAPIV3Schema", "schemas are required"))
            else:
                errs += crdschema.structural_errors(schema, f"{path}.schema.openAPIV3Schema")
            scale = (ver.get("subresources") or {}).get("scale")
            if isinstance(scale, dict):
                for key in ("specReplicasPath", "statusReplicasPath"):
                    p = scale.get(key) or ""
                    if not p:
                        errs.append(required(f"{path}.subresources.scale.{key}"))
                    elif not p.startswith("."):
                        errs.append(invalid_value(f"{path}.subresources.scale.{key}", p,
                                                  "should be a json path under .spec" if key.startswith("spec")
                                                  else "should be a json path under .status"))
        if versions and storage != 1:
            errs.append(invalid_value("spec.versions", versions, "must have exactly one version marked as storage "
                                                                  "version"))
        if versions and not any(isinstance(ver, dict) and ver.get("served") for ver in versions):
            errs.append(invalid_value("spec.versions", versions, "must have at least one version marked as served"))
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        errs += self.validate(obj)
        for key in ("group",):
            if (obj.get("spec") or {}).get(key) != (old.get("spec") or {}).get(key):
                errs.append(invalid_value(f"spec.{key}", (obj.get("spec") or {}).get(key), "field is immutable"))
        return errs


INFO = KindInfo(group=GROUP, version="v1", kind="CustomResourceDefinition", resource="customresourcedefinitions",
                singular="customresourcedefinition", namespaced=False, strategy=_CRDStrategy(),
                short_names=("crd", "crds"), categories=("api-extensions",), subresources=("status",))
