"""Informers: a local, always-current copy of one resource, fed by list + watch.

The reflector pattern of client-go: list, then watch from the list's resourceVersion
(with bookmarks), and list again when the watch ends with 410 Expired or breaks.
Handlers are plain callables run on every add, update and delete (also the synthetic
ones a re-list produces), usually to put a key on a work queue.

An optional transform (client-go's SetTransform) rewrites each object as it arrives, before it
is stored or handed to a handler: a component that needs a few fields of many objects (the
DNS server's view of Services and EndpointSlices) strips the rest so the cache stays small.
The transform must keep metadata.name, metadata.namespace and metadata.resourceVersion (the
store's key and the re-list's change check).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from pocketkube.core import errors
from pocketkube.core.client import Client
from pocketkube.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Handler = Callable[..., None]
Transform = Callable[[dict], dict]


def object_key(obj: dict) -> str:
    """"namespace/name", or "name" for cluster-scoped objects (client-go's MetaNamespaceKeyFunc)."""
    m = obj.get("metadata") or {}
    ns = m.get("namespace")
    return f"{ns}/{m.get('name', '')}" if ns else m.get("name", "")


def split_key(key: str) -> tuple[str | None, str]:
    if "/" in key:
        ns, name = key.split("/", 1)
        return ns, name
    return None, key


class Informer:
    def __init__(self, client: Client, api_version: str, resource: str, namespace: str | None = None,
                 label_selector: str = "", field_selector: str = "", resync_seconds: float = 0,
                 transform: Transform | None = None):
        self.client = client
        self.api_version = api_version
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_seconds = resync_seconds
        self.transform = transform
        self.store: dict[str, dict] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self._on_add: list[Handler] = []
        self._on_update: list[Handler] = []
        self._on_delete: list[Handler] = []
        self._task: asyncio.Task | None = None
        self._resync_task: asyncio.Task | None = None

    def add_handlers(self, on_add: Handler | None = None, on_update: Handler | None = None,
                     on_delete: Handler | None = None) -> None:
        """on_add(obj), on_update(old, new), on_delete(obj)."""
        if on_add:
            self._on_add.append(on_add)
        if on_update:
            self._on_update.append(on_update)
        if on_delete:
            self._on_delete.append(on_delete)

    def set_transform(self, transform: Transform | None) -> None:
        """Rewrite every object before it is stored (module docstring); only before start(),
        as client-go allows it only before the informer runs."""
        if self._task is not None:
            raise RuntimeError(f"informer {self.resource}: the transform must be set before it starts")
        self.transform = transform

    def get(self, key: str) -> dict | None:
        return self.store.get(key)

    def list(self, namespace: str | None = None) -> list[dict]:
        if namespace is None:
            return list(self.store.values())
        prefix = namespace + "/"
        return [o for k, o in self.store.items() if k.startswith(prefix)]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"informer-{self.resource}")
        if self.resync_seconds:
            self._resync_task = asyncio.create_task(self._resync(), name=f"resync-{self.resource}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task, self._resync_task)

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.synced.wait(), timeout)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                if not self.resource_version:
                    await self._relist()
                await self._watch()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except errors.APIError as exc:
                if exc.code == 410:
                    self.resource_version = ""  # too old: list again at once
                    continue
                log.warning("informer %s: %s; retrying", self.resource, exc.message)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:
                log.warning("informer %s: %s; re-listing", self.resource, exc)
                self.resource_version = ""
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _relist(self) -> None:
        result = await self.client.list(self.api_version, self.resource, self.namespace,
                                        self.label_selector, self.field_selector)
        fresh = {}
        transform = self.transform
        for item in result.get("items", []):
            item.setdefault("apiVersion", self.api_version)
            if transform is not None:
                item = transform(item)
            fresh[object_key(item)] = item
        old = self.store
        self.store = fresh
        self.resource_version = result["metadata"]["resourceVersion"]
        for key, obj in fresh.items():
            prev = old.get(key)
            if prev is None:
                self._fire(self._on_add, obj)
            elif prev["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._fire(self._on_update, prev, obj)
        for key, obj in old.items():
            if key not in fresh:
                self._fire(self._on_delete, obj)
        self.synced.set()

    async def _watch(self) -> None:
        async for etype, obj in self.client.watch(self.api_version, self.resource, self.namespace,
                                                  self.resource_version, self.label_selector,
                                                  self.field_selector):
            rv = obj.get("metadata", {}).get("resourceVersion")
            if rv:
                self.resource_version = rv
            if etype == "BOOKMARK":
                continue
            if self.transform is not None:
                obj = self.transform(obj)
            key = object_key(obj)
            if etype == "DELETED":
                prev = self.store.pop(key, None)
                self._fire(self._on_delete, prev or obj)
            else:
                prev = self.store.get(key)
                self.store[key] = obj
                if prev is None:
                    self._fire(self._on_add, obj)
                else:
                    self._fire(self._on_update, prev, obj)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            for obj in list(self.store.values()):
                self._fire(self._on_update, obj, obj)

    def _fire(self, handlers: list[Handler], *args) -> None:
        for h in handlers:
            try:
                h(*args)
            except Exception:
                log.exception("informer %s: handler failed", self.resource)


class InformerFactory:
    """One shared informer per (apiVersion, resource), as client-go's SharedInformerFactory:
    every controller that watches pods shares one list and one watch."""

    def __init__(self, client: Client):
        self.client = client
        self._informers: dict[tuple[str, str], Informer] = {}
        self._started: set[tuple[str, str]] = set()

    def informer(self, api_version: str, resource: str, transform: Transform | None = None) -> Informer:
        """The shared informer of a resource; `transform` (when given) is set on it, which
        is allowed only before it starts."""
        key = (api_version, resource)
        if key not in self._informers:
            self._informers[key] = Informer(self.client, api_version, resource)
        inf = self._informers[key]
        if transform is not None and inf.transform is not transform:
            inf.set_transform(transform)
        return inf

    async def start(self) -> None:
        for key, inf in self._informers.items():
            if key not in self._started:
                self._started.add(key)
                await inf.start()

    async def wait_synced(self, timeout: float = 30.0) -> None:
        await asyncio.gather(*(inf.wait_synced(timeout) for inf in self._informers.values()))

    async def stop(self) -> None:
        for inf in self._informers.values():
            await inf.stop()
