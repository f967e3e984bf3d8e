"""`pocketkube addons list|enable|disable`: the verbs `minikube addons` taught people, over the
built-in add-on manifests (pocketkube/addons). `enable` applies an add-on to a running cluster
and waits until its workload is ready; `disable` deletes its objects; `list` shows each add-on
and its state, read from the cluster itself.
"""

from __future__ import annotations

import asyncio
import sys
import time

from pocketkube import addons
from pocketkube.cli import up
from pocketkube.cli.helptext import examples
from pocketkube.core import cluster as names

POLL_SECONDS = 0.5
NAMESPACE_WAIT = 120.0  # how long enable and disable wait for the add-on's namespace to go


def _record(name: str) -> up.ClusterRecord:
    up.require_root("addons")
    names.validate_cluster_name(name)
    record = up.ClusterRecord.load(name)
    if record is None or not up.cluster_processes(record):
        raise up.UpError(f"cluster {name!r} is not running; start it with `pocketkube up --name {name}`")
    return record


def list_addons(name: str, out=sys.stdout) -> int:
    record = _record(name)

    async def run() -> list[tuple[str, str]]:
        client = up.admin_client(record)
        try:
            rows = []
            for addon in addons.KNOWN:
                ready, state = await addons.workload_ready(client, up.addon_objects(record, addon))
                enabled = state != "disabled"
                rows.append((addon, ("enabled" if enabled else "disabled") + (f" ({state})" if enabled else "")))
            return rows
        finally:
            await client.close()

    rows = asyncio.run(run())
    width = max(len(n) for n, _ in rows) + 3
    out.write(f"{'ADDON':<{width}}STATUS\n")
    for addon, state in rows:
        out.write(f"{addon:<{width}}{state}\n")
    return 0


def ingress_service_type(objects: list[dict], service_type: str) -> list[dict]:
    """The ingress add-on with its controller Service of `service_type`. LoadBalancer is the
    layout of ingress-nginx's cloud manifest: externalTrafficPolicy Local, and the controller
    publishing the Service's address as the Ingresses' ADDRESS (--publish-service)."""
    if service_type == "NodePort":
        return objects
    for obj in objects:
        if obj["kind"] == "Service" and obj["metadata"]["name"] == "ingress-nginx-controller":
            obj["spec"]["type"] = service_type
            obj["spec"]["externalTrafficPolicy"] = "Local"
        if obj["kind"] == "Deployment":
            container = obj["spec"]["template"]["spec"]["containers"][0]
            container["args"].append("--publish-service=$(POD_NAMESPACE)/ingress-nginx-controller")
    return objects


def enable(name: str, addon: str, wait: float, service_type: str = "NodePort", out=sys.stdout) -> int:
    record = _record(name)
    objects = up.addon_objects(record, addon)
    if addon == "ingress":
        objects = ingress_service_type(objects, service_type)

    async def run() -> tuple[bool, str]:
        client = up.admin_client(record)
        try:
            if not await addons.wait_namespaces_gone(client, objects, NAMESPACE_WAIT, only_terminating=True):
                raise up.UpError(f"the add-on's namespace is still being deleted after {NAMESPACE_WAIT:.0f} s; "
                                 f"try again when `kubectl get namespaces` no longer lists it")
            await addons.apply(client, objects)
            deadline = time.monotonic() + wait
            while True:
                ready, state = await addons.workload_ready(client, objects)
                if ready or time.monotonic() > deadline:
                    return ready, state
                await asyncio.sleep(POLL_SECONDS)
        finally:
            await client.close()

    out.write(f"Enabling add-on {addon!r} in cluster {name!r}\n")
    ready, state = asyncio.run(run())
    if not ready and wait > 0:
        out.write(f"The add-on {addon!r} is applied but not ready after {wait:.0f} s ({state}); see "
                  f"`kubectl get pods -A`\n")
        return 1
    out.write(f"The add-on {addon!r} is enabled{' (' + state + ')' if wait > 0 else ''}\n")
    if addon == "ingress":
        out.write("  kubectl get pods,svc -n ingress-nginx\n"
                  "  kubectl get ingressclass            # nginx, the default class\n")
    return 0


def disable(name: str, addon: str, out=sys.stdout) -> int:
    record = _record(name)
    if addon in addons.ADDONS:
        raise up.UpError(f"{addon!r} is part of every cluster; start one without it with "
                         f"`pocketkube up --disable {addon}`")

    async def run() -> list[str]:
        client = up.admin_client(record)
        try:
            objects = up.addon_objects(record, addon)
            deleted = await addons.remove(client, objects)
            if deleted and not await addons.wait_namespaces_gone(client, objects, NAMESPACE_WAIT):
                out.write(f"(its namespace is still terminating after {NAMESPACE_WAIT:.0f} s)\n")
            return deleted
        finally:
            await client.close()

    deleted = asyncio.run(run())
    out.write(f"The add-on {addon!r} is disabled" + (f" (deleted {', '.join(deleted)})" if deleted else
                                                     " (it was not enabled)") + "\n")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("addons", help="list, enable and disable the built-in add-ons (ingress, ...)", **examples(
        "pocketkube addons list",
        "pocketkube addons enable ingress                             # NodePort Service, as the bare-metal manifest",
        "pocketkube addons enable ingress --service-type LoadBalancer # the Ingresses' ADDRESS is the LB address",
        "pocketkube addons disable ingress"))
    verbs = p.add_subparsers(dest="verb", required=True)
    cluster = {"default": names.DEFAULT_NAME, "help": "cluster name (default %(default)s)"}
    v = verbs.add_parser("list", help="each add-on and whether it is enabled")
    v.add_argument("--name", **cluster)
    v.set_defaults(func=up._cli(lambda a: list_addons(a.name)))
    v = verbs.add_parser("enable", help="apply an add-on and wait until it is ready")
    v.add_argument("addon", choices=addons.OPTIONAL)
    v.add_argument("--name", **cluster)
    v.add_argument("--wait", type=float, default=180.0, metavar="SECONDS",
                   help="how long to wait for it to be ready (0: do not wait; default %(default)s)")
    v.add_argument("--service-type", choices=("NodePort", "LoadBalancer"), default="NodePort",
                   help="ingress: the controller Service's type (default %(default)s, as the bare-metal manifest; "
                        "LoadBalancer as the cloud manifest, its address then the Ingresses' ADDRESS)")
    v.set_defaults(func=up._cli(lambda a: enable(a.name, a.addon, a.wait, a.service_type)))
    v = verbs.add_parser("disable", help="delete an add-on's objects")
    v.add_argument("addon", choices=addons.KNOWN)
    v.add_argument("--name", **cluster)
    v.set_defaults(func=up._cli(lambda a: disable(a.name, a.addon)))
