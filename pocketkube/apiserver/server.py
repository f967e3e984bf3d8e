"""The API server as a component: store, watch cache, HTTPS listener, token, kubeconfig.

`APIServer(data_dir, ...)` follows the component shape of DESIGN.md: `await start()`,
`await stop()`, and a `ready` event. It writes DATA_DIR/kubeconfig (context
`pocketkube`) so the real kubectl and the `kubernetes` client can reach it.

Every request is authenticated (authn.py: the admin token, service account and node tokens,
else anonymous) and, with `authorization_mode="RBAC"` (the default), authorized by RBAC
(authz.py) against the bootstrap policy reconciled at start (bootstrappolicy.py).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import os
import secrets
import ssl

import yaml
from aiohttp import web

from pocketkube.apiserver import (
    admissionpolicy, allocators, authn, authz, bootstrappolicy, certs, customresources, discovery, proxy, quota,
    streaming, tokens, webhooks,
)
from pocketkube.apiserver.cache import WatchCache
from pocketkube.apiserver.handlers import USER_KEY, Handlers, status_response
from pocketkube.apiserver.kinds import apiservice, policykinds, registry
from pocketkube.apiserver.kinds import ingress as ingress_kind, ingressclass as ingressclass_kind
from pocketkube.apiserver.storage import Storage, WriteOptions, collection_prefix, etcd_key_layout
from pocketkube.core import errors
from pocketkube.core.linux import write_atomic
from pocketkube.core.objects import deep_copy
from pocketkube.store import open_store
from pocketkube.store.etcd import TLSFiles

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
CERT_HOSTS = ["127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
              "kubernetes.default.svc.cluster.local"]  # and the service range's first address


class APIServer:
    def __init__(self, data_dir: str, port: int = 6443, datastore: str = "sqlite",
                 bind: str = "127.0.0.1", extra_addresses: tuple[str, ...] = (), tls: bool = True,
                 authorization_mode: str = "RBAC", etcd_servers: tuple[str, ...] = (),
                 etcd_cafile: str | None = None, etcd_certfile: str | None = None, etcd_keyfile: str | None = None,
                 advertise_address: str = "", service_cidr: str = allocators.SERVICE_CIDR, advertise_port: int = 0):
        self.data_dir = os.path.abspath(data_dir)
        self.service_cidr = service_cidr  # kube-apiserver's --service-cluster-ip-range
        self.port = port
        self.datastore = datastore
        self.etcd_servers = list(etcd_servers)
        self.etcd_tls = TLSFiles(etcd_cafile, etcd_certfile, etcd_keyfile)
        self.bind = bind
        self.extra_addresses = tuple(extra_addresses)
        self.advertise = (advertise_address,) if advertise_address else ()  # named in the serving certificate
        self.advertise_port = advertise_port  # the `kubernetes` Service's target port (a front's, several servers)
        self.tls = tls
        if authorization_mode not in ("RBAC", "AlwaysAllow"):
            raise ValueError(f"unknown authorization mode {authorization_mode!r}: RBAC or AlwaysAllow")
        self.authorization_mode = authorization_mode
        self.ready = asyncio.Event()
        self.store = None
        self.cache: WatchCache | None = None
        self.storage: Storage | None = None
        self.handlers: Handlers | None = None
        self._runner: web.AppRunner | None = None
        self.token = ""
        self.kubeconfig_path = os.path.join(self.data_dir, "kubeconfig")

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        self.store = open_store(self.datastore, self.data_dir, self.etcd_servers, self.etcd_tls, etcd_key_layout())
        await self.store.start()
        self.cache = WatchCache(self.store)
        await self.cache.start()
        self.storage = Storage(self.store, self.cache)
        self.service_allocators = allocators.install(self.storage, self.service_cidr)  # ClusterIPs and NodePorts, from the stored Services
        await self.service_allocators.shared.start()  # claimed in the store: shared with other API servers
        self.storage.admission.append(ingress_kind.default_class_admission(
            lambda: self.cache.list(collection_prefix(ingressclass_kind.INFO, None))))
        quota.install(self.storage)  # ResourceQuota admission
        await self._bootstrap()
        self.token = self._load_token()
        app = web.Application(client_max_size=8 * 1024 * 1024, middlewares=[self._auth])
        self.tokens = tokens.TokenIssuer(os.path.join(self.data_dir, "sa.key"))
        self.handlers = Handlers(self.storage, self.cache, f"127.0.0.1:{self.port}", self.tokens)
        self.authenticator = authn.Authenticator(
            self.token, self.tokens, lambda ns, name: self.cache.get(f"/registry/core/serviceaccounts/{ns}/{name}"),
            lambda ns, name: self.cache.get(f"/registry/core/secrets/{ns}/{name}"))
        self.handlers.authenticator = self.authenticator
        if self.authorization_mode == "RBAC":
            self.handlers.authorizer = authz.RBACAuthorizer(self.cache)
        self.handlers.webhooks = webhooks.Dispatcher(self.cache)
        self.handlers.policies = admissionpolicy.Policies(self.cache)
        self.handlers.custom_resources = customresources.CustomResources(self.cache, self.storage)
        agent_token = self._kubelet_client_token()
        streaming.install(self.handlers, self.storage, agent_token=agent_token)
        proxy.install(self.handlers, self.storage, agent_token=agent_token)
        app.router.add_route("*", r"/{tail:[\s\S]*}", self.handlers.handle)  # a path may hold %0A
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        ssl_ctx = self._ssl_context() if self.tls else None
        hosts = [self.bind, *self.extra_addresses]
        for host in hosts:
            site = web.TCPSite(self._runner, host, self.port, ssl_context=ssl_ctx, reuse_address=True)
            await site.start()
        if self.port == 0:  # tests: learn the port the OS chose
            self.port = self._runner.addresses[0][1]
            self.handlers.server_address = f"127.0.0.1:{self.port}"
        await allocators.ensure_kubernetes_service(self.storage, self.service_allocators,
                                                   self.advertise_port or self.port)
        self._write_kubeconfig()
        self.ready.set()
        log.info("API server listening on %s", self.url)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        if self.storage is not None and self.service_allocators.shared is not None:
            await self.service_allocators.shared.stop()
        if self.handlers is not None and self.handlers.webhooks is not None:
            await self.handlers.webhooks.close()
        if self.cache:
            await self.cache.stop()
        if self.store:
            await self.store.stop()

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        header = request.headers.get("Authorization", "")
        user = None if header or request.transport is None else \
            authn.certificate_user(request.transport.get_extra_info("peercert"))
        user = user or self.authenticator.authenticate(header)
        if user is None:
            return status_response(errors.unauthorized())
        request[USER_KEY] = user
        return await handler(request)

    def _kubelet_client_token(self) -> str:
        """What the server presents to node agents for exec, logs and port-forward: the secret
        `up` shares with the agents (DATA_DIR/kubelet-client-token), else the admin token."""
        try:
            with open(os.path.join(self.data_dir, "kubelet-client-token")) as f:
                return f.read().strip() or self.token
        except FileNotFoundError:
            return self.token

    async def _bootstrap(self) -> None:
        """The namespaces every cluster has, and the RBAC bootstrap policy."""
        ns_info = registry.by_resource("", "v1", "namespaces")
        for name in SYSTEM_NAMESPACES:
            if self.cache.get(f"/registry/core/namespaces/{name}") is None:
                try:
                    await self.storage.create(ns_info, "", {"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": name}},
                                              WriteOptions(field_manager="kube-apiserver"))
                except errors.APIError as exc:
                    if exc.code != 409:
                        raise
        await bootstrappolicy.reconcile(self.storage, registry, WriteOptions(field_manager="kube-apiserver"))
        apiservice.STRATEGY.service_lookup = lambda ns, name: self.cache.get(f"/registry/core/services/{ns}/{name}")
        for resource, objects in (("priorityclasses", policykinds.SYSTEM_PRIORITY_CLASSES),
                                  ("apiservices", apiservice.local_apiservices(discovery.served_groups()))):
            info = next(k for k in registry.ALL_KINDS if k.resource == resource)
            for obj in objects:
                if self.cache.get(f"/registry/{info.group}/{resource}/{obj['metadata']['name']}") is None:
                    try:
                        await self.storage.create(info, "", deep_copy(obj), WriteOptions(field_manager="kube-apiserver"))
                    except errors.APIError as exc:
                        if exc.code != 409:
                            raise

    def _load_token(self) -> str:
        path = os.path.join(self.data_dir, "token")
        if os.path.exists(path):
            with open(path) as f:
                token = f.read().strip()
            if token:
                return token
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token

    def _ssl_context(self) -> ssl.SSLContext:
        kubernetes_ip = str(ipaddress.ip_network(self.service_cidr, strict=False).network_address + 1)
        hosts = CERT_HOSTS + [a for a in dict.fromkeys((kubernetes_ip, self.bind, *self.extra_addresses, *self.advertise))
                              if a and a not in CERT_HOSTS]
        pki = certs.ensure_pki(os.path.join(self.data_dir, "pki"), hosts)
        self.pki = pki
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki.server_cert, pki.server_key)
        # client certificates of the cluster CA are one way to authenticate (a joined node's)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(pki.ca_cert)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def _write_kubeconfig(self) -> None:
        cluster: dict = {"server": self.url}
        if self.tls:
            with open(self.pki.ca_cert, "rb") as f:
                cluster["certificate-authority-data"] = base64.b64encode(f.read()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "pocketkube", "cluster": cluster}],
            "users": [{"name": "pocketkube-admin", "user": {"token": self.token}}],
            "contexts": [{"name": "pocketkube", "context": {"cluster": "pocketkube", "user": "pocketkube-admin",
                                                             "namespace": "default"}}],
            "current-context": "pocketkube",
            "preferences": {},
        }
        write_atomic(self.kubeconfig_path, yaml.safe_dump(config, default_flow_style=False, sort_keys=False), 0o600)
