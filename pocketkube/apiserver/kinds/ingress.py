"""networking.k8s.io/v1 Ingress: ValidateIngress of 1.32 (rules, hosts and wildcards, paths
and pathType, backends, TLS, defaultBackend) and the strategy (status through /status,
generation on spec changes). pathType has no default in v1."""

from __future__ import annotations

import copy

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, invalid_value, not_supported, required

PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]
_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")


class IngressStrategy(Strategy):
    has_status_subresource = True

    def prepare_for_create(self, obj: dict) -> None:
        obj["status"] = self.initial_status(obj)
        obj["metadata"]["generation"] = 1

    def initial_status(self, obj: dict) -> dict:
        return {"loadBalancer": {}}

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        super().prepare_for_update(obj, old)
        obj["status"] = copy.deepcopy(old.get("status") or {"loadBalancer": {}})

    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, True, v.name_is_dns_subdomain)
        return errs + validate_ingress_spec(obj.get("spec") or {}, "spec")

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        return errs + validate_ingress_spec(obj.get("spec") or {}, "spec")


def validate_ingress_spec(spec: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    rules = spec.get("rules") or []
    if not rules and spec.get("defaultBackend") is None:
        errs.append(v.invalid_go(path, "[]networking.IngressRule(nil)", "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        errs += validate_backend(spec["defaultBackend"], path + ".defaultBackend")
    for i, rule in enumerate(rules):
        errs += _validate_rule(rule, f"{path}.rules[{i}]")
    for i, tls in enumerate(spec.get("tls") or []):
        for j, host in enumerate(tls.get("hosts") or []):
            msgs = v.is_wildcard_dns1123_subdomain(host) if "*" in host else v.is_dns1123_subdomain(host)
            errs += [invalid_value(f"{path}.tls[{i}].hosts[{j}]", host, m) for m in msgs]
        secret = tls.get("secretName") or ""
        if secret:
            errs += [invalid_value(f"{path}.tls[{i}].secretName", secret, m) for m in v.name_is_dns_subdomain(secret)]
    if spec.get("ingressClassName") is not None:
        name = spec["ingressClassName"]
        errs += [invalid_value(path + ".ingressClassName", name, m) for m in v.name_is_dns_subdomain(name)]
    return errs


def _validate_rule(rule: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    host = rule.get("host") or ""
    if host:
        if v.parse_ip_sloppy(host) is not None:
            errs.append(invalid_value(path + ".host", host, "must be a DNS name, not an IP address"))
        msgs = v.is_wildcard_dns1123_subdomain(host) if "*" in host else v.is_dns1123_subdomain(host)
        errs += [invalid_value(path + ".host", host, m) for m in msgs]
    http = rule.get("http")
    if http is not None:
        paths = http.get("paths") or []
        if not paths:
            errs.append(required(path + ".http.paths"))
        for i, http_path in enumerate(paths):
            errs += _validate_path(http_path, f"{path}.http.paths[{i}]")
    return errs


def _validate_path(http_path: dict, path: str) -> list[FieldError]:
    path_type = http_path.get("pathType")
    if path_type is None:
        return [required(path + ".pathType", "pathType must be specified")]
    value = http_path.get("path") or ""
    errs: list[FieldError] = []
    if path_type in ("Exact", "Prefix"):
        if not value.startswith("/"):
            errs.append(invalid_value(path + ".path", value, "must be an absolute path"))
        if value:
            for sequence in _INVALID_PATH_SEQUENCES:
                if sequence in value:
                    errs.append(invalid_value(path + ".path", value, f"must not contain '{sequence}'"))
            for suffix in _INVALID_PATH_SUFFIXES:
                if value.endswith(suffix):
                    errs.append(invalid_value(path + ".path", value, f"cannot end with '{suffix}'"))
    elif path_type == "ImplementationSpecific":
        if value and not value.startswith("/"):
            errs.append(invalid_value(path + ".path", value, "must be an absolute path"))
    else:
        errs.append(not_supported(path + ".pathType", path_type, PATH_TYPES))
    return errs + validate_backend(http_path.get("backend") or {}, path + ".backend")


def validate_backend(backend: dict, path: str) -> list[FieldError]:
    resource, service = backend.get("resource"), backend.get("service")
    if resource is not None and service is not None:
        return [invalid_value(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        errs = [] if resource.get("kind") else [required(path + ".resource.kind")]
        return errs + ([] if resource.get("name") else [required(path + ".resource.name")])
    if service is None:
        return [invalid_value(path, "", "resource or service backend is required")]
    errs: list[FieldError] = []
    name = service.get("name") or ""
    if not name:
        errs.append(required(path + ".service.name"))
    else:
        errs += [invalid_value(path + ".service.name", name, m) for m in v.name_is_dns1035_label(name)]
    port = service.get("port") or {}
    port_name, port_number = port.get("name") or "", port.get("number") or 0
    if port_name and port_number:
        errs.append(invalid_value(path, "", "cannot set both port name & port number"))
    elif port_name:
        errs += [invalid_value(path + ".service.port.name", port_name, m) for m in v.is_valid_port_name(port_name)]
    elif port_number:
        errs += [invalid_value(path + ".service.port.number", port_number, m) for m in v.is_valid_port_num(port_number)]
    else:
        errs.append(required(path, "port name or number is required"))
    return errs


INFO = KindInfo(
    group="networking.k8s.io", version="v1", kind="Ingress", resource="ingresses", singular="ingress",
    namespaced=True, strategy=IngressStrategy(), short_names=("ing",), subresources=("status",),
)


DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"


def default_class_admission(list_classes):
    """The DefaultIngressClass admission plugin: a new Ingress without a class (neither
    spec.ingressClassName nor the legacy annotation) gets the IngressClass marked
    `ingressclass.kubernetes.io/is-default-class: "true"` (the newest, if several are).
    `list_classes()` returns the stored IngressClasses."""
    def admit(operation: str, info: KindInfo, obj: dict, old: dict | None) -> None:
        if operation != "CREATE" or info is not INFO:
            return
        spec = obj.setdefault("spec", {})
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if spec.get("ingressClassName") is not None or LEGACY_CLASS_ANNOTATION in annotations:
            return
        defaults = [c for c in list_classes()
                    if ((c.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"]
        if defaults:
            newest = max(defaults, key=lambda c: (c["metadata"].get("creationTimestamp", ""), c["metadata"]["name"]))
            spec["ingressClassName"] = newest["metadata"]["name"]
    return admit
