"""Built-in add-ons: ordinary manifests applied to the cluster at `pocketkube up`, as k3s
ships CoreDNS and its service load balancer. Users see them with `kubectl get -n
kube-system`; each one can be switched off (`up --disable NAME`).

A manifest is YAML with `$name` placeholders (string.Template) filled in from the cluster's
facts (API server address, cluster name, proxy mode). Applying is server-side apply with the
field manager `pocketkube-addons`, so applying again is harmless.
"""

from __future__ import annotations

import os
import string

import yaml

from pocketkube.core.client import APPLY_PATCH, Client

ADDONS = ("kube-proxy", "coredns")
_DIR = os.path.dirname(os.path.abspath(__file__))
# kind -> (apiVersion, resource, namespaced), for the kinds the manifests hold
_RESOURCES = {
    "ServiceAccount": ("v1", "serviceaccounts", True),
    "Service": ("v1", "services", True),
    "ConfigMap": ("v1", "configmaps", True),
    "DaemonSet": ("apps/v1", "daemonsets", True),
    "Deployment": ("apps/v1", "deployments", True),
    "ClusterRole": ("rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
}


def render(name: str, **params: str) -> list[dict]:
    """The objects of one add-on, placeholders filled."""
    if name not in ADDONS:
        raise ValueError(f"unknown add-on {name!r}; known: {', '.join(ADDONS)}")
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
