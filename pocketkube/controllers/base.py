"""The shape every controller has: informers feed keys into a work queue; workers call
`sync(key)`; a failed sync is retried with backoff; an optional periodic resync.

A controller subclass sets `name`, registers its informer handlers in `setup()` and
implements `sync(key)`. It reads from informers (never lists the API in a hot path) and
writes through `self.client`, as kube-controller-manager's controllers do.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from pocketkube.core.client import Client
from pocketkube.core.events import EventRecorder
from pocketkube.core.informer import InformerFactory
from pocketkube.core.tasks import cancel_and_wait
from pocketkube.core.workqueue import WorkQueue

MAX_RETRIES = 15


@dataclass
class Settings:
    """Cluster facts controllers need and cannot read from the API."""

    # Where pods and nodes reach the API server: the `kubernetes` Service's endpoint.
    apiserver_address: str = "127.0.0.1"
    apiserver_port: int = 6443
    # Resync period (seconds) for controllers that want one.
    resync_seconds: float = 300.0
    # The cluster CA (PEM), published to every namespace as kube-root-ca.crt.
    root_ca: bytes = b""
    # The cluster CA's private key (PEM): the certificate controller signs approved requests with it.
    ca_key: bytes = b""
    # The load-balancer address pool (core/lbpool.py; "" = its default), from `server --lb-range`.
    lb_range: str = ""
    extra: dict = field(default_factory=dict)


class Controller:
    name = "controller"
    workers = 2
    # Who the controller acts as (each has only its upstream rights, docs/adr/0007): by default
    # the ServiceAccount kube-system/<service_account or name>, as kube-controller-manager
    # --use-service-account-credentials runs each controller; `user` names another user.
    service_account = ""
    user = ""

    @classmethod
    def username(cls) -> str:
        return cls.user or f"system:serviceaccount:kube-system:{cls.service_account or cls.name}"

    def __init__(self, client: Client, informers: InformerFactory, settings: Settings | None = None):
        self.client = client
        self.informers = informers
        self.settings = settings or Settings()
        self.queue = WorkQueue()
        self.recorder = EventRecorder(client, self.name)
        self.log = logging.getLogger(f"pocketkube.controllers.{self.name}")
        self._tasks: list[asyncio.Task] = []

    def setup(self) -> None:
        """Register informer handlers (called before the informers start)."""

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    def enqueue(self, obj_or_key) -> None:
        from pocketkube.core.informer import object_key

        self.queue.add(obj_or_key if isinstance(obj_or_key, str) else object_key(obj_or_key))

    async def start(self) -> None:
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"{self.name}-{i}"))

    async def stop(self) -> None:
        self.queue.shutdown()
        await cancel_and_wait(*self._tasks)
        await self.recorder.flush()

    async def _worker(self) -> None:
        await self.queue.run_worker(self.sync, self.log, MAX_RETRIES)
