"""core/v1 Endpoints: port protocol defaults and ValidateEndpoints (subsets, addresses, ports)."""

from __future__ import annotations

from pocketkube.apiserver.kinds.base import KindInfo, Strategy
from pocketkube.apiserver.kinds.podspec import SUPPORTED_PROTOCOLS
from pocketkube.apiserver import validation as v
from pocketkube.core.errors import FieldError, invalid_value, not_supported, required


class EndpointsStrategy(Strategy):
    tracks_generation = False

    def default(self, obj: dict) -> None:
        for subset in obj.get("subsets") or []:
            for port in subset.get("ports") or []:
                if not port.get("protocol"):
                    port["protocol"] = "TCP"

    def validate(self, obj: dict) -> list[FieldError]:
        errs = v.validate_object_meta(obj.get("metadata") or {}, True, v.name_is_dns_subdomain)
        return errs + validate_subsets(obj.get("subsets") or [], "subsets")

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = v.validate_object_meta_update(obj.get("metadata") or {}, old.get("metadata") or {})
        return errs + validate_subsets(obj.get("subsets") or [], "subsets")


def _validate_address(address: dict, path: str) -> list[FieldError]:
    ip = address.get("ip") or ""
    errs = v.is_valid_ip(path + ".ip", ip)
    if address.get("hostname"):
        errs += v.validate_dns1123_label(address["hostname"], path + ".hostname")
    if address.get("nodeName") is not None:
        errs += [invalid_value(path + ".nodeName", address["nodeName"], m) for m in v.validate_node_name(address["nodeName"])]
    return errs + v.validate_non_special_ip(ip, path + ".ip")


def _validate_port(port: dict, require_name: bool, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name = port.get("name") or ""
    if require_name and not name:
        errs.append(required(path + ".name"))
    elif name:
        errs += v.validate_dns1123_label(name, path + ".name")
    number = port.get("port") or 0
    errs += [invalid_value(path + ".port", number, m) for m in v.is_valid_port_num(number)]
    protocol = port.get("protocol") or ""
    if not protocol:
        errs.append(required(path + ".protocol"))
    elif protocol not in SUPPORTED_PROTOCOLS:
        errs.append(not_supported(path + ".protocol", protocol, SUPPORTED_PROTOCOLS))
    if port.get("appProtocol") is not None:
        errs += v.validate_qualified_name(port["appProtocol"], path + ".appProtocol")
    return errs


def validate_subsets(subsets: list, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, subset in enumerate(subsets):
        p = f"{path}[{i}]"
        if not subset.get("addresses") and not subset.get("notReadyAddresses"):
            errs.append(required(p, "must specify `addresses` or `notReadyAddresses`"))
        for j, address in enumerate(subset.get("addresses") or []):
            errs += _validate_address(address, f"{p}.addresses[{j}]")
        for j, address in enumerate(subset.get("notReadyAddresses") or []):
            errs += _validate_address(address, f"{p}.notReadyAddresses[{j}]")
        ports = subset.get("ports") or []
        for j, port in enumerate(ports):
            errs += _validate_port(port, len(ports) > 1, f"{p}.ports[{j}]")
    return errs


INFO = KindInfo(
    group="", version="v1", kind="Endpoints", resource="endpoints", singular="endpoints", namespaced=True,
    strategy=EndpointsStrategy(), short_names=("ep",),
)
