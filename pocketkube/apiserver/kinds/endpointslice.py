"""discovery.k8s.io/v1 EndpointSlice: port protocol default, ValidateEndpointSlice (address
type, at most 1000 endpoints / 100 addresses / 100 ports, addresses per type) and the
strategy (generation bumps when anything but metadata, or the labels, change)."""

from __future__ import annotations

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver.kinds.podspec import SUPPORTED_PROTOCOLS
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, duplicate, invalid_value, not_supported, required, too_many

ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]
MAX_ENDPOINTS = 1000
MAX_ADDRESSES = 100
MAX_PORTS = 100
MAX_TOPOLOGY_LABELS = 16


class EndpointSliceStrategy(Strategy):
    def default(self, obj: dict) -> None:
        for port in obj.get("ports") or []:
            if port.get("protocol") is None:
                port["protocol"] = "TCP"

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        generation = old.get("metadata", {}).get("generation") or 1
        content = {k: val for k, val in obj.items() if k != "metadata"}
        old_content = {k: val for k, val in old.items() if k != "metadata"}
        if content != old_content or obj["metadata"].get("labels") != old.get("metadata", {}).get("labels"):
            generation += 1
        obj["metadata"]["generation"] = generation

    def validate(self, obj: dict) -> list[FieldError]:
        return validate_endpoint_slice(obj, ADDRESS_TYPES)

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        errs += validate_endpoint_slice(obj, ADDRESS_TYPES + ["IP"])
        return errs + v.validate_immutable_field(obj.get("addressType"), old.get("addressType"), "addressType")


def validate_endpoint_slice(obj: dict, address_types: list[str]) -> list[FieldError]:
    errs = v.validate_object_meta(obj.get("metadata") or {}, True, v.name_is_dns_subdomain)
    address_type = obj.get("addressType") or ""
    if not address_type:
        errs.append(required("addressType"))
    elif address_type not in address_types:
        errs.append(not_supported("addressType", address_type, sorted(address_types)))
    errs += _validate_endpoints(obj.get("endpoints") or [], address_type)
    return errs + _validate_ports(obj.get("ports") or [])


def _validate_endpoints(endpoints: list, address_type: str) -> list[FieldError]:
    if len(endpoints) > MAX_ENDPOINTS:
        return [too_many("endpoints", len(endpoints), MAX_ENDPOINTS)]
    errs: list[FieldError] = []
    for i, endpoint in enumerate(endpoints):
        path = f"endpoints[{i}]"
        addresses = endpoint.get("addresses") or []
        if not addresses:
            errs.append(required(path + ".addresses", "must contain at least 1 address"))
        elif len(addresses) > MAX_ADDRESSES:
            errs.append(too_many(path + ".addresses", len(addresses), MAX_ADDRESSES))
        for j, address in enumerate(addresses):
            address_path = f"{path}.addresses[{j}]"
            if address_type == "IPv4":
                errs += v.is_valid_ipv4_address(address_path, address) + v.validate_non_special_ip(address, address_path)
            elif address_type == "IPv6":
                errs += v.is_valid_ipv6_address(address_path, address) + v.validate_non_special_ip(address, address_path)
            elif address_type == "FQDN":
                errs += v.is_fully_qualified_domain_name(address_path, address)
        if endpoint.get("nodeName") is not None:
            errs += [invalid_value(path + ".nodeName", endpoint["nodeName"], m)
                     for m in v.validate_node_name(endpoint["nodeName"])]
        topology = endpoint.get("deprecatedTopology") or {}
        if len(topology) > MAX_TOPOLOGY_LABELS:
            errs.append(too_many(path + ".deprecatedTopology", len(topology), MAX_TOPOLOGY_LABELS))
        errs += v.validate_labels(topology, path + ".deprecatedTopology")
        if endpoint.get("hostname") is not None:
            errs += v.validate_dns1123_label(endpoint["hostname"], path + ".hostname")
    return errs


def _validate_ports(ports: list) -> list[FieldError]:
    if len(ports) > MAX_PORTS:
        return [too_many("ports", len(ports), MAX_PORTS)]
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        path = f"ports[{i}]"
        name = port.get("name") or ""
        if name:
            errs += v.validate_dns1123_label(name, path + ".name")
        if name in names:
            errs.append(duplicate(path + ".name", name))
        names.add(name)
        if port.get("port") is not None:
            errs += [invalid_value(path + ".port", port["port"], m) for m in v.is_valid_port_num(port["port"])]
        protocol = port.get("protocol")
        if protocol is None:
            errs.append(required(path + ".protocol"))
        elif protocol not in SUPPORTED_PROTOCOLS:
            errs.append(not_supported(path + ".protocol", protocol, SUPPORTED_PROTOCOLS))
        if port.get("appProtocol") is not None:
            errs += v.validate_qualified_name(port["appProtocol"], path + ".appProtocol")
    return errs


INFO = KindInfo(
    group="discovery.k8s.io", version="v1", kind="EndpointSlice", resource="endpointslices",
    singular="endpointslice", namespaced=True, strategy=EndpointSliceStrategy(),
)
