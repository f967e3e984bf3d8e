"""The Ingress controller process (what the ingress-nginx controller image runs here): informers
for Ingresses, IngressClasses, Services, EndpointSlices, Secrets and its ConfigMap; on any
change, after a short batching delay, it rebuilds the routes, renders nginx.conf and reloads
nginx if the text changed (nginx.py). It records ingress-nginx's Events (`Sync` on each
Ingress it takes, Warnings for what the routes found wrong, `RELOAD` on its own pod), writes
the Ingresses' status.loadBalancer (ADDRESS) while it holds the election Lease, and serves
/healthz on the health port, as the real controller does.

Addresses, as ingress-nginx: `--publish-status-address`, else `--publish-service`'s addresses
(a LoadBalancer Service's status, a NodePort or ClusterIP Service's clusterIP or externalIPs),
else the nodes running ready controller pods (their ExternalIP, else InternalIP).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field

from pocketkube.core import errors
from pocketkube.core.client import Client
from pocketkube.core.events import EventRecorder
from pocketkube.core.informer import Informer
from pocketkube.core.objects import parse_time, rfc3339_micro
from pocketkube.ingress import routes
from pocketkube.ingress.nginx import ConfigRejected, Nginx
from pocketkube.ingress.nginxconf import Layout, render

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.01           # changes arriving together make one reload
STATUS_INTERVAL = 30.0
LEASE_SECONDS = 30
RENEW_SECONDS = 5.0
COMPONENT = "nginx-ingress-controller"
NOT_YET_CREATED = "9999-12-31T23:59:59Z"


@dataclass
class Options:
    controller_class: str = routes.CONTROLLER_CLASS
    ingress_class: str = routes.INGRESS_CLASS
    watch_without_class: bool = False
    configmap: str = ""                  # "namespace/name"
    election_id: str = "ingress-nginx-leader"
    publish_service: str = ""
    publish_status_address: list[str] = field(default_factory=list)
    update_status: bool = True
    update_status_on_shutdown: bool = True
    pod_name: str = ""
    pod_namespace: str = "default"
    work_dir: str = "/etc/nginx"
    http_port: int = 80
    https_port: int = 443
    healthz_port: int = 10254
    default_server_port: int = 8181
    validating_webhook: str = ""         # ":8443": serve the admission webhook there (HTTPS)
    webhook_certificate: str = ""
    webhook_key: str = ""
    nginx_binary: str = "/usr/sbin/nginx"
    worker_processes: str = "auto"


def settings_from(options: Options, config: dict) -> routes.Settings:
    """The routing settings: flags, and the ConfigMap's options (ingress-nginx's names)."""
    def flag(name: str, default: bool) -> bool:
        value = str(config.get(name, "")).strip().lower()
        return default if value not in ("true", "false") else value == "true"

    code = str(config.get("http-redirect-code", "308"))
    return routes.Settings(controller_class=options.controller_class, ingress_class=options.ingress_class,
                           watch_without_class=options.watch_without_class,
                           ssl_redirect=flag("ssl-redirect", True),
                           redirect_code=int(code) if code in ("301", "302", "307", "308") else 308,
                           proxy_body_size=str(config.get("proxy-body-size", "1m")))


def address_entries(addresses: list[str]) -> list[dict]:
    out = []
    for a in addresses:
        entry = {"ip": a} if _is_ip(a) else {"hostname": a}
        if entry not in out:
            out.append(entry)
    return sorted(out, key=lambda e: (e.get("hostname", ""), e.get("ip", "")))


def _is_ip(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except OSError:
            pass
    return False


def service_addresses(svc: dict) -> list[str]:
    """statusAddressFromService."""
    spec = svc.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    if kind == "ExternalName":
        return [spec.get("externalName", "")]
    if kind == "LoadBalancer":
        found = [i.get("ip") or i.get("hostname") for i in (svc.get("status") or {}).get("loadBalancer", {})
                 .get("ingress") or [] if i.get("ip") or i.get("hostname")]
        return found + [ip for ip in spec.get("externalIPs") or [] if ip not in found]
    if kind == "NodePort" and spec.get("externalIPs"):
        return list(spec["externalIPs"])
    return [spec.get("clusterIP", "")] if spec.get("clusterIP") not in (None, "", "None") else []


def node_address(node: dict) -> str:
    """GetNodeIPOrName: the ExternalIP, else the InternalIP, else the node's name."""
    addresses = (node.get("status") or {}).get("addresses") or []
    for kind in ("ExternalIP", "InternalIP"):
        for a in addresses:
            if a.get("type") == kind and a.get("address"):
                return a["address"]
    return (node.get("metadata") or {}).get("name", "")


def pod_ready(pod: dict) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


class IngressController:
    def __init__(self, client: Client, options: Options):
        self.client = client
        self.options = options
        self.layout = Layout(options.work_dir, options.http_port, options.https_port, options.worker_processes,
                             default_server_port=options.default_server_port)
        self.nginx = Nginx(self.layout, options.nginx_binary)
        self.recorder = EventRecorder(client, COMPONENT, host=socket.gethostname())
        self.identity = options.pod_name or socket.gethostname()
        self.informers = {
            "ingresses": Informer(client, "networking.k8s.io/v1", "ingresses"),
            "ingressclasses": Informer(client, "networking.k8s.io/v1", "ingressclasses"),
            "services": Informer(client, "v1", "services"),
            "endpointslices": Informer(client, "discovery.k8s.io/v1", "endpointslices"),
            "secrets": Informer(client, "v1", "secrets", field_selector="type=kubernetes.io/tls"),
        }
        if options.configmap:
            ns, _, name = options.configmap.partition("/")
            self.informers["configmap"] = Informer(client, "v1", "configmaps", namespace=ns,
                                                   field_selector=f"metadata.name={name}")
        self.model: routes.Model | None = None
        self.leader = False
        self.ready = asyncio.Event()
        self.syncs = 0
        self.last_sync = 0.0
        self._dirty = asyncio.Event()
        self._status_due = asyncio.Event()
        self._reported: set[routes.Problem] = set()
        self._good_versions: dict[str, str] = {}   # Ingress key -> resourceVersion in the running config
        self._tasks: list[asyncio.Task] = []
        self._health = None
        self._webhook = None
        self._addresses: list[dict] | None = None

    # ---- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self.nginx.prepare()
        for name, informer in self.informers.items():
            informer.add_handlers(self._on_add, self._on_update, self._on_delete)
            if name == "ingresses":
                informer.add_handlers(self._on_ingress_add, self._on_ingress_update)
            await informer.start()
        for name, informer in self.informers.items():
            try:
                await informer.wait_synced(60)
            except asyncio.TimeoutError:
                raise RuntimeError(f"the {name} informer did not sync in 60 s (can the service account list "
                                   f"and watch them?)") from None
        log.info("informers synced (%d Ingresses, %d Services)", len(self.informers["ingresses"].store),
                 len(self.informers["services"].store))
        await self._start_health()
        await self._start_webhook()
        await self.sync()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._sync_loop(), name="ingress-sync"),
                       loop.create_task(self._lead(), name="ingress-leader"),
                       loop.create_task(self._status_loop(), name="ingress-status")]
        self.ready.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.leader and self.options.update_status and self.options.update_status_on_shutdown:
            try:
                if not await self._other_controllers_running():
                    await self._write_status([])
            except errors.APIError as exc:
                log.warning("could not clear the Ingresses' status: %s", exc)
        await self.recorder.flush()
        for informer in self.informers.values():
            await informer.stop()
        await self.nginx.stop()
        for runner in (self._health, self._webhook):
            if runner is not None:
                await runner.cleanup()

    # ---- events from the informers -------------------------------------------------------

    def _on_add(self, obj: dict) -> None:
        self._dirty.set()

    def _on_update(self, old: dict, new: dict) -> None:
        self._dirty.set()

    def _on_delete(self, obj: dict) -> None:
        self._dirty.set()

    def _ours(self, ing: dict) -> bool:
        classes = {(c.get("metadata") or {}).get("name", ""): c for c in self.informers["ingressclasses"].list()}
        return routes.class_decision(ing, classes, self._settings())[0]

    def _on_ingress_add(self, obj: dict) -> None:
        if self._ours(obj):
            self.recorder.event(obj, "Normal", "Sync", "Scheduled for sync")

    def _on_ingress_update(self, old: dict, new: dict) -> None:
        if (old.get("spec") != new.get("spec") or (old.get("metadata") or {}).get("annotations")
                != (new.get("metadata") or {}).get("annotations")) and self._ours(new):
            self.recorder.event(new, "Normal", "Sync", "Scheduled for sync")

    # ---- syncing -------------------------------------------------------------------------

    def _config(self) -> dict:
        informer = self.informers.get("configmap")
        if informer is None:
            return {}
        found = informer.list()
        return dict((found[0].get("data") or {})) if found else {}

    def _settings(self) -> routes.Settings:
        return settings_from(self.options, self._config())

    async def _sync_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(BATCH_SECONDS)
            self._dirty.clear()
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ingress sync failed")

    def build_model(self, settings: routes.Settings, ingresses: list[dict] | None = None) -> routes.Model:
        """The routes from the informers' objects (or these `ingresses` in place of theirs)."""
        i = self.informers
        return routes.build(i["ingresses"].list() if ingresses is None else ingresses, i["ingressclasses"].list(),
                            i["services"].list(), i["endpointslices"].list(), i["secrets"].list(), settings)

    async def sync(self) -> None:
        settings = self._settings()
        model = self.build_model(settings)
        text, files = render(model, self.layout, proxy_body_size=settings.proxy_body_size)
        ingresses = {routes.ingress_key(o): o for o in self.informers["ingresses"].list()}
        try:
            changed = await self.nginx.apply(text, files)
        except ConfigRejected as exc:
            self._report_rejection(model, ingresses, str(exc))
            return
        self.model = model
        self.syncs += 1
        self.last_sync = time.monotonic()
        self._good_versions = {k: (ingresses[k].get("metadata") or {}).get("resourceVersion", "")
                               for k in model.ingresses if k in ingresses}
        if changed:
            log.info("Backend successfully reloaded (%d servers, %d upstreams)", len(model.servers),
                     len(model.upstreams))
            self._pod_event("Normal", "RELOAD", "NGINX reload triggered due to a change in configuration")
        current = set(model.problems)
        for problem in current - self._reported:
            ing = ingresses.get(problem.ingress)
            if ing is not None:
                self.recorder.event(ing, problem.type, problem.reason, problem.message)
        self._reported = current
        self._status_due.set()  # written by _status_loop, so a sync never waits on 1,000 status writes

    def _report_rejection(self, model: routes.Model, ingresses: dict[str, dict], message: str) -> None:
        changed = [k for k in model.ingresses if k in ingresses and
                   self._good_versions.get(k) != (ingresses[k].get("metadata") or {}).get("resourceVersion", "")]
        log.error("nginx rejected the new configuration, keeping the last good one: %s", message)
        for key in changed or model.ingresses:
            self.recorder.event(ingresses[key], "Warning", "RejectedConfiguration",
                                f"nginx rejected the configuration with this Ingress, the previous configuration "
                                f"keeps running: {message}")

    def _pod_event(self, type_: str, reason: str, message: str) -> None:
        if not self.options.pod_name:
            return
        pod = {"kind": "Pod", "apiVersion": "v1",
               "metadata": {"name": self.options.pod_name, "namespace": self.options.pod_namespace}}
        self.recorder.event(pod, type_, reason, message)

    # ---- status (ADDRESS) ----------------------------------------------------------------

    async def running_addresses(self) -> list[dict]:
        o = self.options
        if o.publish_status_address:
            return address_entries(o.publish_status_address)
        if o.publish_service:
            ns, _, name = o.publish_service.partition("/")
            svc = self.informers["services"].get(f"{ns}/{name}")
            if svc is None:
                return []
            return address_entries(service_addresses(svc))
        pods = await self._controller_pods()
        found = []
        for pod in pods:
            if not pod_ready(pod):
                continue
            node_name = (pod.get("spec") or {}).get("nodeName")
            if not node_name:
                continue
            try:
                node = await self.client.get("v1", "nodes", node_name)
            except errors.APIError:
                found.append(node_name)
                continue
            found.append(node_address(node))
        return address_entries(found)

    async def _controller_pods(self) -> list[dict]:
        if not self.options.pod_name:
            return []
        try:
            me = await self.client.get("v1", "pods", self.options.pod_name, namespace=self.options.pod_namespace)
        except errors.APIError:
            return []
        labels = (me.get("metadata") or {}).get("labels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "pod-template-hash")
        found = await self.client.list("v1", "pods", namespace=self.options.pod_namespace, label_selector=selector)
        return found.get("items") or []

    async def _other_controllers_running(self) -> bool:
        return len(await self._controller_pods()) > 1

    async def _status_loop(self) -> None:
        while True:
            await self._status_due.wait()
            self._status_due.clear()
            if self.leader:
                try:
                    await self._update_status()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("updating the Ingresses' status failed")

    async def _update_status(self) -> None:
        if not self.options.update_status:
            return
        try:
            addresses = await self.running_addresses()
        except errors.APIError as exc:
            log.warning("cannot work out the controller's addresses: %s", exc)
            return
        await self._write_status(addresses)

    async def _write_status(self, addresses: list[dict]) -> None:
        model = self.model
        if model is None:
            return
        for key in model.ingresses:
            ing = self.informers["ingresses"].get(key)
            if ing is None:
                continue
            current = ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if sorted(current, key=lambda e: (e.get("hostname", ""), e.get("ip", ""))) == addresses:
                continue
            ns, _, name = key.partition("/")
            try:
                fresh = await self.client.get("networking.k8s.io/v1", "ingresses", name, namespace=ns)
                fresh.setdefault("status", {})["loadBalancer"] = {"ingress": addresses} if addresses else {}
                await self.client.update("networking.k8s.io/v1", "ingresses", fresh, namespace=ns,
                                         subresource="status")
                log.info("updated Ingress %s status to %s", key, addresses)
            except errors.APIError as exc:
                log.warning("error updating Ingress %s status: %s", key, exc)

    # ---- leader election -----------------------------------------------------------------

    async def _lead(self) -> None:
        """Hold the Lease named by --election-id; only the holder writes status."""
        last_status = 0.0
        while True:
            try:
                was = self.leader
                self.leader = await self._acquire_or_renew()
                if self.leader and not was:
                    log.info("new leader elected: %s", self.identity)
                if self.leader and (not was or time.monotonic() - last_status > STATUS_INTERVAL):
                    last_status = time.monotonic()
                    self._status_due.set()
            except errors.APIError as exc:
                log.warning("leader election: %s", exc)
                self.leader = False
            await asyncio.sleep(RENEW_SECONDS)

    async def _acquire_or_renew(self) -> bool:
        if not self.options.pod_name:
            return True  # outside a pod: the only controller
        ns, name = self.options.pod_namespace, self.options.election_id
        now = rfc3339_micro()
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now}
        try:
            lease = await self.client.get("coordination.k8s.io/v1", "leases", name, namespace=ns)
        except errors.APIError as exc:
            if exc.code != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {**spec, "acquireTime": now, "leaseTransitions": 0}}
            try:
                await self.client.create("coordination.k8s.io/v1", "leases", body, namespace=ns)
                return True
            except errors.APIError:
                return False
        held = lease.get("spec") or {}
        if held.get("holderIdentity") not in (None, "", self.identity) and not _expired(held):
            return False
        new_spec = dict(held)
        new_spec.update(spec)
        if held.get("holderIdentity") != self.identity:
            new_spec["acquireTime"] = now
            new_spec["leaseTransitions"] = int(held.get("leaseTransitions") or 0) + 1
        lease["spec"] = new_spec
        try:
            await self.client.update("coordination.k8s.io/v1", "leases", lease, namespace=ns)
            return True
        except errors.APIError as exc:
            if exc.code == 409:
                return False
            raise

    # ---- /healthz ------------------------------------------------------------------------

    async def _start_health(self) -> None:
        if not self.options.healthz_port:
            return
        from aiohttp import web

        async def healthz(request: web.Request) -> web.Response:
            if self.nginx.alive:
                return web.Response(text="ok")
            return web.Response(status=500, text="nginx is not running")

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", self.options.healthz_port).start()
        self._health = runner


    # ---- the validating admission webhook ------------------------------------------------

    async def _start_webhook(self) -> None:
        o = self.options
        if not o.validating_webhook:
            return
        import ssl

        from aiohttp import web

        host, _, port = o.validating_webhook.rpartition(":")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(o.webhook_certificate, o.webhook_key)

        async def handle(request: web.Request) -> web.Response:
            try:
                review = await request.json()
            except ValueError:
                return web.json_response({"error": "the body is not an AdmissionReview"}, status=400)
            return web.json_response(await self.review(review))

        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host or "0.0.0.0", int(port), ssl_context=context).start()
        self._webhook = runner
        log.info("admission webhook serving on %s", o.validating_webhook)

    async def review(self, review: dict) -> dict:
        """An AdmissionReview's answer: an Ingress of this controller is refused when its host and
        path are already another Ingress's, or when nginx would refuse the configuration."""
        request = review.get("request") or {}
        allowed, message = await self.validate(request.get("object") or {}, request.get("namespace") or "")
        response: dict = {"uid": request.get("uid", ""), "allowed": allowed}
        if not allowed:
            # AdmissionResponse.Result is "status" in JSON (a metav1.Status)
            response["status"] = {"status": "Failure", "message": message, "reason": "BadRequest", "code": 400}
        return {"apiVersion": review.get("apiVersion") or "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": response}

    async def validate(self, ing: dict, namespace: str) -> tuple[bool, str]:
        if ing.get("kind") != "Ingress" or not self._ours(ing):
            return True, ""
        candidate = dict(ing)
        meta = dict(candidate.get("metadata") or {})
        meta.setdefault("namespace", namespace)
        meta.setdefault("creationTimestamp", NOT_YET_CREATED)  # a new Ingress is newer than any stored
        candidate["metadata"] = meta
        key = routes.ingress_key(candidate)
        others = [o for o in self.informers["ingresses"].list() if routes.ingress_key(o) != key]
        settings = self._settings()
        model = self.build_model(settings, others + [candidate])
        conflicts = [p.message for p in model.problems if p.ingress == key and p.reason in ("Conflict", "Path")]
        if conflicts:
            return False, "; ".join(conflicts)
        text, files = render(model, self.layout, proxy_body_size=settings.proxy_body_size)
        try:
            await self.nginx.check(text, files, name="webhook")
        except ConfigRejected as exc:
            return False, f"nginx would refuse the configuration: {exc}"
        return True, ""


def _expired(spec: dict) -> bool:
    try:
        renewed = parse_time(spec.get("renewTime"))
    except ValueError:
        return True
    if renewed is None:
        return True
    return time.time() > renewed.timestamp() + int(spec.get("leaseDurationSeconds") or LEASE_SECONDS)


def options_from_env(options: Options) -> Options:
    options.pod_name = options.pod_name or os.environ.get("POD_NAME", "")
    options.pod_namespace = os.environ.get("POD_NAMESPACE", options.pod_namespace)
    return options
