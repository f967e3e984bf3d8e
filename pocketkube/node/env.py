"""What a container sees of the cluster: its environment and its volume files.

`EnvResolver` is the kubelet's part that turns a pod spec into concrete values: service
environment variables (`MY_NGINX_SERVICE_HOST`, `KUBERNETES_SERVICE_HOST`, ...), `env` with
`valueFrom` (downward API, ConfigMap and Secret keys), `envFrom`, `$(VAR)` expansion, and
the files of configMap, secret, downwardAPI and projected volumes (the service account
token comes from the TokenRequest API, ca.crt from the kube-root-ca.crt ConfigMap).

ConfigMaps the agent watches (kube-root-ca.crt, in every pod's token volume) are read
from its watch cache, as the kubelet's watch-based ConfigMap manager does; others through
the API. A service account token is requested for each pod and bound to it (boundObjectRef),
as the kubelet requests it, and reused for the pod's containers and restarts until 80% of its
lifetime has passed; then the pod's worker writes its token volumes again with a new one
(`token_renew_at`), and the pod's tokens are dropped when it leaves the node (`forget_pod`).
Tokens are not shared between pods: a token names its ServiceAccount's UID, so one minted
before the account was deleted and made again would be refused (401).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from typing import Any

from pocketkube.core import errors
from pocketkube.core.client import Client
from pocketkube.core.informer import Informer

_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")
TOKEN_SECONDS = 3607  # what kubelet asks for the projected service account token
TOKEN_REFRESH_FRACTION = 0.8  # a cached token is renewed after 80% of its lifetime, as the kubelet does


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known variables are replaced, unknown ones kept, $$ escapes."""
    def repl(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR_REF.sub(repl, text)


def service_env(services: list[dict]) -> dict[str, str]:
    """Docker-link style variables for each Service with a cluster IP (kubelet's
    getServiceEnvVarMap / envvars.FromServices)."""
    env: dict[str, str] = {}
    for svc in sorted(services, key=lambda s: s["metadata"]["name"]):
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None" or spec.get("type") == "ExternalName":
            continue
        ports = spec.get("ports") or []
        if not ports:
            continue
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for p in ports:
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
        first = ports[0]
        proto0 = (first.get("protocol") or "TCP").lower()
        env[f"{prefix}_PORT"] = f"{proto0}://{ip}:{first['port']}"
        for p in ports:
            proto = (p.get("protocol") or "TCP")
            base = f"{prefix}_PORT_{p['port']}_{proto.upper()}"
            env[base] = f"{proto.lower()}://{ip}:{p['port']}"
            env[f"{base}_PROTO"] = proto.lower()
            env[f"{base}_PORT"] = str(p["port"])
            env[f"{base}_ADDR"] = ip
    return env


def field_ref(pod: dict, path: str) -> str:
    """The downward API's fieldRef values."""
    m = pod.get("metadata") or {}
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": m.get("name", ""), "metadata.namespace": m.get("namespace", ""),
        "metadata.uid": m.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", ""), "status.podIP": status.get("podIP", ""),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
    }
    if path in simple:
        return simple[path]
    got = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if got:
        return (m.get(got.group(1)) or {}).get(got.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = m.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ValueError(f"unsupported fieldRef {path!r}")


def resource_ref(pod: dict, container: dict, resource: str, divisor: str | None) -> str:
    """resourceFieldRef: requests/limits of a container; limits default to the node's capacity
    (here: a large number, as pocketkube sets no limits)."""
    kind, _, name = resource.partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(name)
    if value is None:
        value = {"cpu": "2", "memory": str(24 * 1024 ** 3), "ephemeral-storage": str(100 * 1024 ** 3)}.get(name, "0")
    return str(value) if not divisor else str(value)


class EnvResolver:
    """Resolves env and volume files for pods on this node, reading Services from an
    informer and ConfigMaps/Secrets through the API (as the kubelet's managers do)."""

    def __init__(self, client: Client, services: Informer, configmaps: Informer | None = None):
        self.client = client
        self.services = services
        self.configmaps = configmaps  # a watch-fed cache of some ConfigMaps (kube-root-ca.crt); others are read
        self._tokens: dict[tuple, tuple[float, asyncio.Future]] = {}  # key -> (renew at, token)

    async def _object(self, resource: str, namespace: str, name: str, optional: bool) -> dict | None:
        try:
            return await self.client.get("v1", resource, name, namespace)
        except errors.APIError as exc:
            if exc.code == 404 and optional:
                return None
            if exc.code == 404:
                kind = "configmap" if resource == "configmaps" else "secret"
                raise EnvError("CreateContainerConfigError", f'{kind} "{name}" not found') from None
            raise

    async def _key(self, resource: str, namespace: str, ref: dict) -> str | None:
        optional = bool(ref.get("optional"))
        obj = await self._object(resource, namespace, ref["name"], optional)
        if obj is None:
            return None
        if resource == "secrets":
            data = obj.get("data") or {}
            if ref["key"] in data:
                return base64.b64decode(data[ref["key"]]).decode(errors="replace")
        else:
            data = obj.get("data") or {}
            if ref["key"] in data:
                return data[ref["key"]]
        if optional:
            return None
        kind = "configmap" if resource == "configmaps" else "secret"
        raise EnvError("CreateContainerConfigError", f"couldn't find key {ref['key']} in {kind.title()} "
                                                     f"{namespace}/{ref['name']}")

    async def container_env(self, pod: dict, container: dict, pod_ip: str | None = None) -> dict[str, str]:
        """The environment of one container, in Kubernetes' order: service links, envFrom,
        env (each $(VAR) expanded against what came before)."""
        if pod_ip:
            pod = {**pod, "status": {**(pod.get("status") or {}), "podIP": pod_ip,
                                     "podIPs": [{"ip": pod_ip}]}}
        ns = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        spec = pod.get("spec") or {}
        services = [s for s in self.services.list(ns)]
        if spec.get("enableServiceLinks", True) is False:
            services = []
        # the master service is always there (KUBERNETES_SERVICE_HOST), from `default`
        services += [s for s in self.services.list("default") if s["metadata"]["name"] == "kubernetes"
                     and ns != "default"]
        env.update(service_env(services))
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                ref = source["configMapRef"]
                obj = await self._object("configmaps", ns, ref["name"], bool(ref.get("optional")))
                for k, v in ((obj or {}).get("data") or {}).items():
                    env[prefix + k] = v
            elif "secretRef" in source:
                ref = source["secretRef"]
                obj = await self._object("secrets", ns, ref["name"], bool(ref.get("optional")))
                for k, v in ((obj or {}).get("data") or {}).items():
                    env[prefix + k] = base64.b64decode(v).decode(errors="replace")
        for var in container.get("env") or []:
            name = var["name"]
            if "value" in var or "valueFrom" not in var:
                env[name] = expand(var.get("value", ""), env)
                continue
            src = var["valueFrom"]
            if "fieldRef" in src:
                env[name] = field_ref(pod, src["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in src:
                r = src["resourceFieldRef"]
                target = next((c for c in spec.get("containers", []) if c["name"] == r.get("containerName")),
                              container)
                env[name] = resource_ref(pod, target, r["resource"], r.get("divisor"))
            elif "configMapKeyRef" in src:
                value = await self._key("configmaps", ns, src["configMapKeyRef"])
                if value is not None:
                    env[name] = value
            elif "secretKeyRef" in src:
                value = await self._key("secrets", ns, src["secretKeyRef"])
                if value is not None:
                    env[name] = value
        return env

    async def volume_files(self, pod: dict, volume: dict) -> dict[str, bytes]:
        """Files (relative path -> content) of a configMap, secret, downwardAPI or projected
        volume. Other volume types return {} (emptyDir, hostPath are the runtime's)."""
        ns = pod["metadata"]["namespace"]
        if "configMap" in volume:
            return await self._configmap_files(ns, volume["configMap"])
        if "secret" in volume:
            src = volume["secret"]
            return await self._secret_files(ns, {**src, "name": src.get("secretName")})
        if "downwardAPI" in volume:
            return self._downward_files(pod, volume["downwardAPI"].get("items") or [])
        if "projected" in volume:
            files: dict[str, bytes] = {}
            for source in volume["projected"].get("sources") or []:
                if "serviceAccountToken" in source:
                    files.update(await self._token_file(pod, source["serviceAccountToken"]))
                elif "configMap" in source:
                    files.update(await self._configmap_files(ns, source["configMap"]))
                elif "secret" in source:
                    files.update(await self._secret_files(ns, source["secret"]))
                elif "downwardAPI" in source:
                    files.update(self._downward_files(pod, source["downwardAPI"].get("items") or []))
            return files
        return {}

    async def _configmap_files(self, ns: str, src: dict) -> dict[str, bytes]:
        name = src.get("name", "")
        obj = self.configmaps.get(f"{ns}/{name}") if self.configmaps is not None else None
        if obj is None:  # not cached (or not there yet): ask the API, as the kubelet's manager does
            obj = await self._object("configmaps", ns, name, bool(src.get("optional")))
        if obj is None:
            return {}
        data = dict(obj.get("data") or {})
        data.update({k: base64.b64decode(v).decode(errors="replace")
                     for k, v in (obj.get("binaryData") or {}).items()})
        return _select(data, src.get("items"), lambda v: v.encode())

    async def _secret_files(self, ns: str, src: dict) -> dict[str, bytes]:
        obj = await self._object("secrets", ns, src.get("name", ""), bool(src.get("optional")))
        if obj is None:
            return {}
        return _select(obj.get("data") or {}, src.get("items"), base64.b64decode)

    def _downward_files(self, pod: dict, items: list[dict]) -> dict[str, bytes]:
        files = {}
        for item in items:
            if "fieldRef" in item:
                files[item["path"]] = field_ref(pod, item["fieldRef"]["fieldPath"]).encode()
        return files

    async def _token_file(self, pod: dict, src: dict) -> dict[str, bytes]:
        namespace = pod["metadata"]["namespace"]
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        audiences = (src["audience"],) if src.get("audience") else ()
        seconds = src.get("expirationSeconds", TOKEN_SECONDS)
        uid = pod["metadata"].get("uid", "")
        key = (uid, namespace, sa, audiences, seconds)
        cached = self._tokens.get(key)
        if cached is None or time.monotonic() >= cached[0]:
            future = asyncio.get_running_loop().create_future()
            self._tokens[key] = (time.monotonic() + seconds * TOKEN_REFRESH_FRACTION, future)
            try:
                future.set_result(await self._request_token(namespace, sa, list(audiences), seconds, pod))
            except BaseException as exc:
                self._tokens.pop(key, None)
                future.set_exception(exc if isinstance(exc, Exception)
                                     else RuntimeError("the token request was cancelled"))
                future.exception()  # retrieved here: waiters get it too
                raise
            cached = (0.0, future)
        token = await asyncio.shield(cached[1])
        return {src.get("path", "token"): token.encode()}

    def token_renew_at(self, uid: str) -> float | None:
        """When (time.monotonic()) the first cached token of pod `uid` is due for renewal: its
        token volumes are then written again (PodWorker), as the kubelet rotates them. None
        when the pod has no token."""
        due = [renew for key, (renew, _) in self._tokens.items() if key[0] == uid]
        return min(due) if due else None

    def forget_pod(self, uid: str) -> None:
        """The pod is gone from the node: its tokens are dropped."""
        for key in [key for key in self._tokens if key[0] == uid]:
            del self._tokens[key]

    async def _request_token(self, namespace: str, sa: str, audiences: list[str], seconds: int, pod: dict) -> str:
        bound = {"kind": "Pod", "apiVersion": "v1", "name": pod["metadata"].get("name", ""),
                 "uid": pod["metadata"].get("uid", "")}
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": bound}}
        resp = await self.client.create("v1", "serviceaccounts", request, namespace=namespace,
                                        name=sa, subresource="token")
        return resp["status"]["token"]


def _select(data: dict[str, Any], items: list[dict] | None, convert) -> dict[str, bytes]:
    if not items:
        return {k: convert(v) for k, v in data.items()}
    return {item["path"]: convert(data[item["key"]]) for item in items if item["key"] in data}


class EnvError(Exception):
    """A container cannot start because its configuration cannot be resolved
    (kubelet's CreateContainerConfigError)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message
