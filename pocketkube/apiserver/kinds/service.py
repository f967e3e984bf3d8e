"""core/v1 Service: defaults (SetDefaults_Service), the registry's clusterIP/clusterIPs
normalisation and type-change clean-up, IP-family defaults, validation (ValidateService,
ValidateServiceUpdate of 1.32) and the write strategy.

Order as in Kubernetes: `default` (decode), then `prepare_for_create`/`prepare_for_update`
(which mirror clusterIP into clusterIPs), then `validate`/`validate_update`.
IP and nodePort allocation is not done here.
"""

from __future__ import annotations

import copy

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver.kinds.podspec import SUPPORTED_PROTOCOLS
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, duplicate, forbidden, invalid_value, not_supported, required

SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
SESSION_AFFINITIES = ["ClientIP", "None"]
DEFAULT_CLIENT_IP_TIMEOUT = 10800
MAX_CLIENT_IP_TIMEOUT = 86400


def externally_accessible(spec: dict) -> bool:
    kind = spec.get("type")
    return kind in ("LoadBalancer", "NodePort") or (kind == "ClusterIP" and bool(spec.get("externalIPs")))


def needs_cluster_ip(spec: dict) -> bool:
    return spec.get("type") != "ExternalName"


def needs_node_port(spec: dict) -> bool:
    kind = spec.get("type")
    return kind == "NodePort" or (kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False)


def needs_health_check(spec: dict) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def is_headless(spec: dict) -> bool:
    return spec.get("clusterIPs") == ["None"]


def default_service(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        client_ip = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        if client_ip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_TIMEOUT}}
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    for port in spec.get("ports") or []:
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port") or 0  # Go: FromInt32(sp.Port), 0 when unset
    if externally_accessible(spec) and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and spec["type"] in ("ClusterIP", "NodePort", "LoadBalancer"):
        spec["internalTrafficPolicy"] = "Cluster"
    if spec["type"] == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    if spec["type"] == "LoadBalancer":
        for ingress in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
            if ingress.get("ip") and not ingress.get("ipMode"):
                ingress["ipMode"] = "VIP"


def default_ip_families(spec: dict) -> None:
    """What the allocator sets on every Service that has (or asks for) a cluster IP."""
    if not needs_cluster_ip(spec):
        return
    if not spec.get("ipFamilyPolicy"):
        spec["ipFamilyPolicy"] = "SingleStack"
    if not spec.get("ipFamilies"):
        first = next((ip for ip in spec.get("clusterIPs") or [] if ip != "None"), "")
        spec["ipFamilies"] = ["IPv6" if v.is_ipv6_string(first) else "IPv4"]


def _normalize_cluster_ips_on_update(spec: dict, old: dict) -> None:
    """normalizeClusterIPs of the Service registry, for an update."""
    if old.get("clusterIPs") and not spec.get("clusterIPs") and old.get("clusterIP") == spec.get("clusterIP"):
        spec["clusterIPs"] = copy.deepcopy(old["clusterIPs"])
    if old.get("clusterIP", "") != spec.get("clusterIP", ""):
        same = spec.get("clusterIPs") == old.get("clusterIPs")
        if old.get("clusterIP") and not spec.get("clusterIP"):
            if same:
                spec.pop("clusterIPs", None)
        elif same:
            spec["clusterIPs"] = [spec.get("clusterIP")]


def _patch_allocated_values(spec: dict, old: dict) -> None:
    """patchAllocatedValues: a write that omits allocated values keeps them."""
    if needs_cluster_ip(old) and needs_cluster_ip(spec):
        if not spec.get("clusterIP") and old.get("clusterIP"):
            spec["clusterIP"] = old["clusterIP"]
        if not spec.get("clusterIPs") and old.get("clusterIPs"):
            spec["clusterIPs"] = copy.deepcopy(old["clusterIPs"])
    if needs_node_port(old) and needs_node_port(spec):
        old_ports = {(p.get("port"), p.get("protocol")): p.get("nodePort") for p in old.get("ports") or []}
        for port in spec.get("ports") or []:
            if not port.get("nodePort") and old_ports.get((port.get("port"), port.get("protocol"))):
                port["nodePort"] = old_ports[(port.get("port"), port.get("protocol"))]
    if needs_health_check(old) and needs_health_check(spec) and not spec.get("healthCheckNodePort"):
        if old.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = old["healthCheckNodePort"]


def _drop_type_dependent_fields(obj: dict, spec: dict, old: dict) -> None:
    """dropTypeDependentFields: wipe what no longer applies, unless the user changed it too."""
    if needs_cluster_ip(old) and not needs_cluster_ip(spec):
        if spec.get("clusterIP", "") == old.get("clusterIP", "") and spec.get("clusterIPs") == old.get("clusterIPs"):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        for key in ("ipFamilies", "ipFamilyPolicy"):
            if spec.get(key) == old.get(key):
                spec.pop(key, None)
    if needs_node_port(old) and not needs_node_port(spec):
        if [p.get("nodePort") for p in spec.get("ports") or []] == [p.get("nodePort") for p in old.get("ports") or []]:
            for port in spec.get("ports") or []:
                port.pop("nodePort", None)
    if needs_health_check(old) and not needs_health_check(spec):
        if spec.get("healthCheckNodePort") == old.get("healthCheckNodePort"):
            spec.pop("healthCheckNodePort", None)
    if old.get("allocateLoadBalancerNodePorts") is not None and spec.get("type") != "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts") == old.get("allocateLoadBalancerNodePorts"):
            spec.pop("allocateLoadBalancerNodePorts", None)
    if old.get("type") == "LoadBalancer" and spec.get("type") != "LoadBalancer":
        if spec.get("loadBalancerClass") == old.get("loadBalancerClass"):
            spec.pop("loadBalancerClass", None)
    if externally_accessible(old) and not externally_accessible(spec):
        if spec.get("externalTrafficPolicy") == old.get("externalTrafficPolicy"):
            spec.pop("externalTrafficPolicy", None)
    if spec.get("type") != "LoadBalancer":
        obj.setdefault("status", {})["loadBalancer"] = {}


class ServiceStrategy(Strategy):
    has_status_subresource = True
    tracks_generation = False

    def default(self, obj: dict) -> None:
        default_service(obj)

    def prepare_for_create(self, obj: dict) -> None:
        obj["status"] = self.initial_status(obj)
        spec = obj.setdefault("spec", {})
        if spec.get("clusterIP") and not spec.get("clusterIPs"):
            spec["clusterIPs"] = [spec["clusterIP"]]
        default_ip_families(spec)

    def initial_status(self, obj: dict) -> dict:
        return {"loadBalancer": {}}

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        obj["status"] = copy.deepcopy(old.get("status") or {"loadBalancer": {}})
        spec, old_spec = obj.setdefault("spec", {}), old.get("spec") or {}
        _patch_allocated_values(spec, old_spec)
        _normalize_cluster_ips_on_update(spec, old_spec)
        _drop_type_dependent_fields(obj, spec, old_spec)
        if spec.get("clusterIP") and not spec.get("clusterIPs") and not old_spec.get("clusterIPs"):
            spec["clusterIPs"] = [spec["clusterIP"]]
        if spec.get("clusterIPs") or not needs_cluster_ip(old_spec):
            default_ip_families(spec)

    def validate(self, obj: dict) -> list[FieldError]:
        return validate_service(obj)

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
        errs += _validate_cluster_ips_update(spec, old_spec)
        errs += _validate_ip_families_update(spec, old_spec)
        if old_spec.get("type") == "LoadBalancer" and spec.get("type") == "LoadBalancer":
            if spec.get("loadBalancerClass") != old_spec.get("loadBalancerClass"):
                errs.append(invalid_value("spec.loadBalancerClass", spec.get("loadBalancerClass"), "may not change once set"))
        if needs_health_check(old_spec) and needs_health_check(spec):
            if spec.get("healthCheckNodePort") != old_spec.get("healthCheckNodePort"):
                errs.append(forbidden("spec.healthCheckNodePort", "field is immutable"))
        return errs + validate_service(obj)


def _validate_cluster_ips_update(spec: dict, old: dict) -> list[FieldError]:
    if not needs_cluster_ip(spec) or not needs_cluster_ip(old) or (is_headless(spec) and is_headless(old)):
        return []
    new_ips, old_ips = spec.get("clusterIPs") or [], old.get("clusterIPs") or []
    shown = spec.get("clusterIPs")
    errs: list[FieldError] = []
    if len(old_ips) == len(new_ips):
        for i, ip in enumerate(old_ips):
            if ip != new_ips[i]:
                errs.append(invalid_value(f"spec.clusterIPs[{i}]", shown, "may not change once set"))
    elif len(old_ips) > len(new_ips):
        if not new_ips:
            errs.append(v.invalid_go("spec.clusterIPs[0]", v.go_string_slice(shown), "primary clusterIP can not be unset"))
        elif new_ips[0] != old_ips[0]:
            errs.append(invalid_value("spec.clusterIPs[0]", shown, "may not change once set"))
        if len(new_ips) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
            errs.append(_policy_error("must be set to 'SingleStack' when releasing the secondary clusterIP", spec))
    elif old_ips and new_ips[0] != old_ips[0]:
        errs.append(invalid_value("spec.clusterIPs[0]", shown, "may not change once set"))
    return errs


def _policy_error(detail: str, spec: dict) -> FieldError:
    policy = spec.get("ipFamilyPolicy")
    return invalid_value("spec.ipFamilyPolicy", policy, detail) if policy else v.invalid_go(
        "spec.ipFamilyPolicy", "null", detail)


def _validate_ip_families_update(spec: dict, old: dict) -> list[FieldError]:
    if not needs_cluster_ip(spec) or not needs_cluster_ip(old) or is_headless(spec) or is_headless(old):
        return []
    new_families, old_families = spec.get("ipFamilies") or [], old.get("ipFamilies") or []
    errs: list[FieldError] = []
    if len(new_families) == len(old_families):
        for i, family in enumerate(old_families):
            if family != new_families[i]:
                errs.append(invalid_value("spec.ipFamilies[0]", new_families, "may not change once set"))
    elif len(old_families) > len(new_families):
        if not spec.get("clusterIPs"):
            errs.append(invalid_value("spec.ipFamilies[0]", new_families, "primary ipFamily can not be unset"))
        if new_families and new_families[0] != old_families[0]:
            errs.append(invalid_value("spec.ipFamilies[0]", spec.get("clusterIPs") or [], "may not change once set"))
        if len(new_families) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
            errs.append(_policy_error("must be set to 'SingleStack' when releasing the secondary ipFamily", spec))
    elif old_families and new_families[0] != old_families[0]:
        errs.append(invalid_value("spec.ipFamilies[0]", spec.get("clusterIPs") or [], "may not change once set"))
    return errs


def _go_service_port_key(port: dict) -> str:
    return (f"core.ServicePort{{Name:\"\", Protocol:{v.go_quote(port.get('protocol') or '')}, "
            f"AppProtocol:(*string)(nil), Port:{port.get('port') or 0}, "
            f"TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}")


def _validate_service_port(port: dict, require_name: bool, names: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name = port.get("name") or ""
    if require_name and not name:
        errs.append(required(path + ".name"))
    elif name:
        errs += v.validate_dns1123_label(name, path + ".name")
        if name in names:
            errs.append(duplicate(path + ".name", name))
        names.add(name)
    number = port.get("port") or 0
    errs += [invalid_value(path + ".port", number, m) for m in v.is_valid_port_num(number)]
    protocol = port.get("protocol") or ""
    if not protocol:
        errs.append(required(path + ".protocol"))
    elif protocol not in SUPPORTED_PROTOCOLS:
        errs.append(not_supported(path + ".protocol", protocol, SUPPORTED_PROTOCOLS))
    errs += v.validate_port_num_or_name(port.get("targetPort"), path + ".targetPort")
    if port.get("appProtocol") is not None:
        errs += v.validate_qualified_name(port["appProtocol"], path + ".appProtocol")
    return errs


def _validate_cluster_ips(spec: dict) -> list[FieldError]:
    """ValidateServiceClusterIPsRelatedFields."""
    if spec.get("type") == "ExternalName":
        return []
    errs: list[FieldError] = []
    cluster_ip, cluster_ips = spec.get("clusterIP") or "", spec.get("clusterIPs") or []
    if cluster_ip:
        if not cluster_ips:
            errs.append(required("spec.clusterIPs"))
        elif cluster_ips[0] != cluster_ip:
            errs.append(invalid_value("spec.clusterIPs", cluster_ips, "first value must match `clusterIP`"))
    elif cluster_ips:
        errs.append(invalid_value("spec.clusterIPs", cluster_ips, "must be empty when `clusterIP` is not specified"))
    seen: set[str] = set()
    for i, family in enumerate(spec.get("ipFamilies") or []):
        if family not in ("IPv4", "IPv6"):
            errs.append(not_supported(f"spec.ipFamilies[{i}]", family, ["IPv4", "IPv6"]))
        if family in seen:
            errs.append(duplicate(f"spec.ipFamilies[{i}]", family))
        seen.add(family)
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in ("PreferDualStack", "RequireDualStack", "SingleStack"):
        errs.append(not_supported("spec.ipFamilyPolicy", policy, ["PreferDualStack", "RequireDualStack", "SingleStack"]))
    invalid_ips = False
    for i, ip in enumerate(cluster_ips):
        if i == 0 and ip == "None":
            if len(cluster_ips) > 1:
                invalid_ips = True
                errs.append(invalid_value("spec.clusterIPs", cluster_ips, "'None' must be the first and only value"))
            continue
        ip_errs = v.is_valid_ip(f"spec.clusterIPs[{i}]", ip)
        invalid_ips = invalid_ips or bool(ip_errs)
        errs += ip_errs
    if len(cluster_ips) > 2:
        errs.append(invalid_value("spec.clusterIPs", cluster_ips, "may only hold up to 2 values"))
    if invalid_ips:
        return errs
    if len(cluster_ips) > 1 and len({v.is_ipv6_string(ip) for ip in cluster_ips}) != len(cluster_ips):
        errs.append(invalid_value("spec.clusterIPs", cluster_ips, "may specify no more than one IP for each IP family"))
    if not is_headless(spec):
        for i, (ip, family) in enumerate(zip(cluster_ips, spec.get("ipFamilies") or [])):
            if family == "IPv4" and v.is_ipv6_string(ip):
                errs.append(invalid_value(f"spec.clusterIPs[{i}]", ip, f"expected an IPv4 value as indicated by `ipFamilies[{i}]`"))
            if family == "IPv6" and not v.is_ipv6_string(ip):
                errs.append(invalid_value(f"spec.clusterIPs[{i}]", ip, f"expected an IPv6 value as indicated by `ipFamilies[{i}]`"))
    return errs


def validate_service(obj: dict) -> list[FieldError]:
    """ValidateService of 1.32, check by check in Kubernetes' order."""
    metadata, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    errs = v.validate_object_meta(metadata, True, v.name_is_dns1035_label)
    kind = spec.get("type") or ""
    ports = spec.get("ports") or []
    if not ports and not is_headless(spec) and kind != "ExternalName":
        errs.append(required("spec.ports"))
    if kind in ("LoadBalancer", "NodePort") and is_headless(spec):
        errs.append(invalid_value("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {kind} services"))
    elif kind == "ExternalName":
        if spec.get("clusterIPs"):
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        if spec.get("ipFamilies"):
            errs.append(forbidden("spec.ipFamilies", "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
        cname = (spec.get("externalName") or "").removesuffix(".")
        if cname:
            errs += v.validate_dns1123_subdomain(cname, "spec.externalName")
        else:
            errs.append(required("spec.externalName"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        errs += _validate_service_port(port, len(ports) > 1, names, f"spec.ports[{i}]")
    if spec.get("selector") is not None:
        errs += v.validate_labels(spec["selector"], "spec.selector")
    affinity = spec.get("sessionAffinity") or ""
    if not affinity:
        errs.append(required("spec.sessionAffinity"))
    elif affinity not in SESSION_AFFINITIES:
        errs.append(not_supported("spec.sessionAffinity", affinity, SESSION_AFFINITIES))
    if affinity == "ClientIP":
        errs += _validate_client_ip_config(spec.get("sessionAffinityConfig"))
    elif affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        errs.append(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"))
    errs += _validate_cluster_ips(spec)
    for i, ip in enumerate(spec.get("externalIPs") or []):
        ip_errs = v.is_valid_ip(f"spec.externalIPs[{i}]", ip)
        errs += ip_errs or v.validate_non_special_ip(ip, f"spec.externalIPs[{i}]")
    if not kind:
        errs.append(required("spec.type"))
    elif kind not in SERVICE_TYPES:
        errs.append(not_supported("spec.type", kind, SERVICE_TYPES))
    if kind == "ClusterIP":
        for i, port in enumerate(ports):
            if port.get("nodePort"):
                errs.append(forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"))
    seen_node_ports: set[tuple] = set()
    for i, port in enumerate(ports):
        if not port.get("nodePort"):
            continue
        key = (port.get("protocol"), port["nodePort"])
        if key in seen_node_ports:
            errs.append(duplicate(f"spec.ports[{i}].nodePort", port["nodePort"]))
        seen_node_ports.add(key)
    seen_ports: set[tuple] = set()
    for i, port in enumerate(ports):
        key = (port.get("protocol"), port.get("port"))
        if key in seen_ports:
            errs.append(v.duplicate_go(f"spec.ports[{i}]", _go_service_port_key(port)))
        seen_ports.add(key)
    errs += _validate_source_ranges(spec, kind)
    if spec.get("allocateLoadBalancerNodePorts") is not None and kind != "LoadBalancer":
        errs.append(forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'"))
    if kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        errs.append(required("allocateLoadBalancerNodePorts"))
    if kind == "LoadBalancer":
        if spec.get("loadBalancerClass") is not None:
            errs += v.validate_qualified_name(spec["loadBalancerClass"], "spec.loadBalancerClass")
    elif spec.get("loadBalancerClass") is not None:
        errs.append(forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"))
    errs += _validate_traffic_policies(spec)
    return errs


def _validate_client_ip_config(config: dict | None) -> list[FieldError]:
    path = "spec.sessionAffinityConfig"
    if not config:
        return [required(path, "when session affinity type is ClientIP")]
    if not config.get("clientIP"):
        return [required(path + ".clientIP", "when session affinity type is ClientIP")]
    timeout = config["clientIP"].get("timeoutSeconds")
    if timeout is None:
        return [required(path + ".clientIP.timeoutSeconds", "when session affinity type is ClientIP")]
    if not 0 < timeout <= MAX_CLIENT_IP_TIMEOUT:
        return [invalid_value(path + ".clientIP.timeoutSeconds", timeout,
                              f"must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT}")]
    return []


def _validate_source_ranges(spec: dict, kind: str) -> list[FieldError]:
    ranges = spec.get("loadBalancerSourceRanges") or []
    if not ranges:
        return []
    errs: list[FieldError] = []
    if kind != "LoadBalancer":
        errs.append(forbidden("spec.LoadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'"))
    for i, cidr in enumerate(ranges):
        errs += v.is_valid_cidr(f"spec.LoadBalancerSourceRanges[{i}]", cidr.strip())
    return errs


def _validate_traffic_policies(spec: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    policy = spec.get("externalTrafficPolicy") or ""
    if not externally_accessible(spec):
        if policy:
            errs.append(invalid_value("spec.externalTrafficPolicy", policy, "may only be set for externally-accessible services"))
    elif not policy:
        errs.append(required("spec.externalTrafficPolicy"))
    elif policy not in ("Cluster", "Local"):
        errs.append(not_supported("spec.externalTrafficPolicy", policy, ["Cluster", "Local"]))
    health = spec.get("healthCheckNodePort") or 0
    if not needs_health_check(spec):
        if health:
            errs.append(invalid_value("spec.healthCheckNodePort", health,
                                      "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    elif health:
        errs += [invalid_value("spec.healthCheckNodePort", health, m) for m in v.is_valid_port_num(health)]
    internal = spec.get("internalTrafficPolicy")
    if internal is None and spec.get("type") in ("ClusterIP", "NodePort", "LoadBalancer"):
        errs.append(required("spec.internalTrafficPolicy"))
    if internal is not None and internal not in ("Cluster", "Local"):
        errs.append(not_supported("spec.internalTrafficPolicy", internal, ["Cluster", "Local"]))
    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution != "PreferClose":
        errs.append(not_supported("spec.trafficDistribution", distribution, ["PreferClose"]))
    return errs


INFO = KindInfo(
    group="", version="v1", kind="Service", resource="services", singular="service", namespaced=True,
    strategy=ServiceStrategy(), short_names=("svc",), categories=("all",), subresources=("status", "proxy"),
)
