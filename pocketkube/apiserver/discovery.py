"""API discovery: aggregated (apidiscovery.k8s.io/v2) and legacy documents, and /version.

Built once from the kind registry, so two identical requests get the same bytes; every
document is pre-encoded since kubectl fetches them on each cold start. A group version is
listed only where it serves a resource (autoscaling/v1 holds just the Scale subresource's kind
here: it has an OpenAPI document, not a discovery entry). The aggregated documents carry the
ETag kube-apiserver gives them (the SHA-512 of the document, upper-case hex, quoted).
"""

from __future__ import annotations

import hashlib

from pocketkube import __version__
from pocketkube.apiserver.kinds import registry
from pocketkube.apiserver.kinds.base import KindInfo

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

# subresource -> (group, version, kind or None for the parent's kind, verbs)
SUBRESOURCES = {
    "status": ("", "", None, ["get", "patch", "update"]),
    "approval": ("", "", None, ["get", "patch", "update"]),  # certificatesigningrequests
    "scale": ("autoscaling", "v1", "Scale", ["get", "patch", "update"]),
    "log": ("", "", "Pod", ["get"]),
    "exec": ("", "", "PodExecOptions", ["create", "get"]),
    "attach": ("", "", "PodAttachOptions", ["create", "get"]),
    "portforward": ("", "", "PodPortForwardOptions", ["create", "get"]),
    "binding": ("", "", "Binding", ["create"]),
    "eviction": ("policy", "v1", "Eviction", ["create"]),
    "ephemeralcontainers": ("", "", None, ["get", "patch", "update"]),
    "finalize": ("", "", None, ["update"]),
    "proxy": ("", "", None, ["create", "delete", "get", "patch", "update"]),
    "token": ("authentication.k8s.io", "v1", "TokenRequest", ["create"]),
}
PROXY_KINDS = {"pods": "PodProxyOptions", "services": "ServiceProxyOptions", "nodes": "NodeProxyOptions"}


def version_info() -> dict:
    return {
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0+pocketkube",
        "gitCommit": __version__,
        "gitTreeState": "clean",
        "buildDate": "2026-11-21T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _sub_kind(info: KindInfo, sub: str) -> tuple[str, str, str, list[str]]:
    group, version, kind, verbs = SUBRESOURCES[sub]
    if sub == "proxy":
        kind = PROXY_KINDS.get(info.resource, "ProxyOptions")
    return group, version, kind or info.kind, verbs


def _served(info: KindInfo) -> bool:
    return info.resource != "scale"


def served_groups() -> list[tuple[str, list[str]]]:
    """(group, [versions]) that serve at least one resource, in the registry's order."""
    out = []
    for group, versions in registry.groups():
        versions = [v for v in versions
                    if any(i.group == group and i.version == v and _served(i) for i in registry.ALL_KINDS)]
        if versions:
            out.append((group, versions))
    return out


def aggregated_content_type(accept: str) -> str | None:
    """The aggregated form the client asks for first (v2 or v2beta1), or None for the legacy one."""
    for entry in accept.split(","):
        params = dict(p.strip().split("=", 1) for p in entry.split(";")[1:] if "=" in p)
        if params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList":
            if params.get("v") == "v2":
                return AGGREGATED_CONTENT_TYPE
            if params.get("v") == "v2beta1":
                return AGGREGATED_V2BETA1_CONTENT_TYPE
    return None


def etag(document: bytes) -> str:
    """The aggregated discovery ETag (calculateETag: SHA-512 of the JSON, %X), quoted."""
    return '"' + hashlib.sha512(document).hexdigest().upper() + '"'


def aggregated(core: bool) -> dict:
    """The APIGroupDiscoveryList for /api (core=True) or /apis."""
    items = []
    for group, versions in served_groups():
        if (group == "") != core:
            continue
        vers = []
        for version in versions:
            resources = []
            for info in registry.ALL_KINDS:
                if info.group != group or info.version != version or not _served(info):
                    continue
                entry = {
                    "resource": info.resource,
                    "responseKind": {"group": "", "version": "", "kind": info.kind},
                    "scope": "Namespaced" if info.namespaced else "Cluster",
                    "singularResource": info.singular,
                    "verbs": list(info.verbs),
                }
                if info.short_names:
                    entry["shortNames"] = list(info.short_names)
                if info.categories:
                    entry["categories"] = list(info.categories)
                subs = []
                for sub in info.subresources:
                    g, v, k, verbs = _sub_kind(info, sub)
                    subs.append({"subresource": sub,
                                 "responseKind": {"group": g if g != group else "",
                                                  "version": v if g != group else "", "kind": k},
                                 "verbs": verbs})
                if subs:
                    entry["subresources"] = subs
                resources.append(entry)
            if resources:
                vers.append({"version": version, "resources": resources, "freshness": "Current"})
        if vers:
            items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": vers})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {}, "items": items}


def legacy_api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_entry(group: str, versions: list[str]) -> dict:
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": vs, "preferredVersion": vs[0]}


def legacy_groups() -> dict:
    groups = [_group_entry(g, vs) for g, vs in served_groups() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def legacy_group(group: str) -> dict | None:
    for g, vs in served_groups():
        if g == group and g:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(g, vs)}
    return None


def legacy_resources(group: str, version: str) -> dict | None:
    if not any(g == group and version in vs for g, vs in served_groups()):
        return None
    gv = f"{group}/{version}" if group else version
    resources = []
    for info in registry.ALL_KINDS:
        if info.group != group or info.version != version or not _served(info):
            continue
        entry = {"name": info.resource, "singularName": info.singular, "namespaced": info.namespaced,
                 "kind": info.kind, "verbs": list(info.verbs)}
        if info.short_names:
            entry["shortNames"] = list(info.short_names)
        if info.categories:
            entry["categories"] = list(info.categories)
        resources.append(entry)
        for sub in info.subresources:
            g, v, k, verbs = _sub_kind(info, sub)
            sub_entry = {"name": f"{info.resource}/{sub}", "singularName": "", "namespaced": info.namespaced,
                         "kind": k, "verbs": verbs}
            if g != group:
                sub_entry["group"], sub_entry["version"] = g, v
            resources.append(sub_entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
