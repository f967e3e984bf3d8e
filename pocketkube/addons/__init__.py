"""Built-in add-ons: ordinary manifests applied to the cluster, as k3s ships CoreDNS and
minikube its add-ons. `ADDONS` are applied at `pocketkube up` (each can be switched off with
`up --disable NAME`); `OPTIONAL` ones (the Ingress controller) when asked for, with
`up --addons NAME` or `pocketkube addons enable NAME`, and removed with `addons disable NAME`.

A manifest is YAML with `$name` placeholders (string.Template) filled in from the cluster's
facts (API server address, cluster name, proxy mode). Applying is server-side apply with the
field manager `pocketkube-addons`, so applying again is harmless.
"""

from __future__ import annotations

import os
import string

from pocketkube.core.client import APPLY_PATCH, Client

ADDONS = ("kube-proxy", "coredns")
OPTIONAL = ("ingress",)
KNOWN = ADDONS + OPTIONAL
_DIR = os.path.dirname(os.path.abspath(__file__))
# kind -> (apiVersion, resource, namespaced), for the kinds the manifests hold
_RESOURCES = {
    "Namespace": ("v1", "namespaces", False),
    "ServiceAccount": ("v1", "serviceaccounts", True),
    "Service": ("v1", "services", True),
    "ConfigMap": ("v1", "configmaps", True),
    "Secret": ("v1", "secrets", True),
    "DaemonSet": ("apps/v1", "daemonsets", True),
    "Deployment": ("apps/v1", "deployments", True),
    "ClusterRole": ("rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings", True),
    "IngressClass": ("networking.k8s.io/v1", "ingressclasses", False),
}


def render(name: str, **params: str) -> list[dict]:
    """The objects of one add-on, placeholders filled."""
    if name not in KNOWN:
        raise ValueError(f"unknown add-on {name!r}; known: {', '.join(KNOWN)}")
    import yaml  # here: the CLI's parser imports this module, and most commands render nothing

    with open(os.path.join(_DIR, f"{name}.yaml")) as f:
        text = string.Template(f.read()).substitute(params)
    return [doc for doc in yaml.safe_load_all(text) if doc]


async def apply(client: Client, objects: list[dict]) -> None:
    """Server-side apply each object (created, or brought back to the manifest)."""
    for obj in objects:
        api_version, resource, namespaced = _RESOURCES[obj["kind"]]
        m = obj["metadata"]
        await client.patch(api_version, resource, m["name"], obj, namespace=m.get("namespace") if namespaced else None,
                           patch_type=APPLY_PATCH, field_manager="pocketkube-addons", force=True)


async def remove(client: Client, objects: list[dict]) -> list[str]:
    """Delete an add-on's objects, last first (a namespace takes what is inside it); returns
    what was deleted, as `kind/name`."""
    from pocketkube.core import errors

    deleted = []
    for obj in reversed(objects):
        api_version, resource, namespaced = _RESOURCES[obj["kind"]]
        m = obj["metadata"]
        try:
            await client.delete(api_version, resource, m["name"], namespace=m.get("namespace") if namespaced else None,
                                propagation_policy="Background")
            deleted.append(f"{obj['kind'].lower()}/{m['name']}")
        except errors.APIError as exc:
            if exc.code != 404:
                raise
    return deleted


async def workload_ready(client: Client, objects: list[dict]) -> tuple[bool, str]:
    """(enabled and ready, a short state) from the add-on's Deployments and DaemonSets."""
    from pocketkube.core import errors

    states = []
    for obj in objects:
        if obj["kind"] not in ("Deployment", "DaemonSet"):
            continue
        api_version, resource, _ = _RESOURCES[obj["kind"]]
        m = obj["metadata"]
        try:
            live = await client.get(api_version, resource, m["name"], namespace=m.get("namespace"))
        except errors.APIError as exc:
            if exc.code == 404:
                return False, "disabled"
            raise
        status = live.get("status") or {}
        if obj["kind"] == "Deployment":
            ready, wanted = status.get("availableReplicas") or 0, (live.get("spec") or {}).get("replicas", 1)
        else:
            ready, wanted = status.get("numberReady") or 0, status.get("desiredNumberScheduled") or 0
        states.append((ready >= wanted and wanted > 0, f"{ready}/{wanted} ready"))
    if not states:
        return False, "disabled"
    return all(ok for ok, _ in states), ", ".join(text for _, text in states)


async def wait_namespaces_gone(client: Client, objects: list[dict], timeout: float, only_terminating: bool = False) -> bool:
    """Wait until the add-on's namespaces no longer exist (all of them, or only those being
    deleted: a namespace that is terminating refuses new objects). False on timeout."""
    import asyncio
    import time

    from pocketkube.core import errors

    deadline = time.monotonic() + timeout
    for obj in objects:
        if obj["kind"] != "Namespace":
            continue
        while True:
            try:
                live = await client.get("v1", "namespaces", obj["metadata"]["name"])
            except errors.APIError as exc:
                if exc.code == 404:
                    break
                raise
            if only_terminating and not live["metadata"].get("deletionTimestamp"):
                break
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)
    return True
