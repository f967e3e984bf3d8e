"""The watch cache: every object of the store in memory, plus a window of recent events.

Like the apiserver's Cacher, it lists the store once, then follows the store's watch, so
that lists, gets and watches never touch the database. Watchers subscribe per resource
(key prefix) and may start from any revision still in the event window; older ones get
410 Expired and re-list, as Kubernetes clients do.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from dataclasses import dataclass
from typing import Callable

import orjson

from pocketkube.core import errors
from pocketkube.core.tasks import cancel_and_wait
from pocketkube.store.base import Event as StoreEvent
from pocketkube.store.base import Store

log = logging.getLogger(__name__)

ROOT = "/registry/"


def resource_prefix(key: str) -> str:
    """"/registry/core/pods/ns/name" -> "/registry/core/pods/"."""
    parts = key.split("/", 5)
    return "/".join(parts[:4]) + "/"


@dataclass(slots=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED; BOOKMARK (no object) when Watcher.bookmark_due asked
    key: str
    obj: dict
    prev: dict | None
    revision: int


class Watcher:
    """One subscriber: a bounded queue of events under a key prefix.

    `match(obj)` decides visibility; an object that stops matching is sent as DELETED and
    one that starts matching as ADDED, as the apiserver's cacher does. When the queue
    overflows the watcher is closed and its consumer ends, to re-list."""

    def __init__(self, cache: "WatchCache", rprefix: str, key_prefix: str,
                 match: Callable[[dict], bool] | None, max_queue: int):
        self.cache = cache
        self.rprefix = rprefix
        self.key_prefix = key_prefix
        self.match = match
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue(max_queue)
        self.closed = False

    def offer(self, ev: WatchEvent) -> None:
        if self.closed or not ev.key.startswith(self.key_prefix):
            return
        out = ev
        if self.match is not None:
            now = self.match(ev.obj)
            before = ev.prev is not None and self.match(ev.prev)
            if ev.type == "DELETED":
                if not now:
                    return
            elif now and not before and ev.type == "MODIFIED":
                out = WatchEvent("ADDED", ev.key, ev.obj, ev.prev, ev.revision)
            elif not now and before:
                out = WatchEvent("DELETED", ev.key, ev.obj, ev.prev, ev.revision)
            elif not now:
                return
        try:
            self.queue.put_nowait(out)
        except asyncio.QueueFull:
            log.warning("watcher on %s fell behind; closing it", self.key_prefix)
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.cache._unsubscribe(self)
        # Wake the consumer even when the queue is full.
        while True:
            try:
                self.queue.put_nowait(None)
                break
            except asyncio.QueueFull:
                self.queue.get_nowait()

    def bookmark_due(self) -> None:
        """Queue a BOOKMARK at the revision the cache has reached, behind every event up to it
        (none when the queue is full: the events will tell the revision)."""
        if not self.closed and not self.queue.full():
            self.queue.put_nowait(WatchEvent("BOOKMARK", "", {}, None, self.cache.revision))

    async def next(self) -> WatchEvent | None:
        """The next event, or None once closed. It runs once per event for every watcher, so
        it sets no timer: the watch's end and its bookmarks are timers of their own that
        close() the watcher or queue a BOOKMARK (bookmark_due)."""
        return await self.queue.get()


class WatchCache:
    def __init__(self, store: Store, window: int = 50_000, max_watch_queue: int = 10_000):
        self.store = store
        self.window = window
        self.max_watch_queue = max_watch_queue
        self.revision = 0
        self.objects: dict[str, dict[str, dict]] = {}  # resource prefix -> key -> object
        self._log_revs: list[int] = []
        self._log: list[WatchEvent] = []
        self._oldest = 0  # watches may start at revisions >= this
        self._watchers: dict[str, set[Watcher]] = {}
        # Synchronous callbacks per resource prefix, called with each event as it is applied
        # (the shared allocations follow other servers' claims this way: allocators.Shared).
        self.listeners: dict[str, list[Callable[[WatchEvent], None]]] = {}
        self._unkept: set[str] = set()  # resource prefixes only passed to listeners (follow_only)
        self._prefix_revs: dict[str, int] = {}  # resource prefix -> revision of its last change
        self._listed_at = 0
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._task: asyncio.Task | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        await self._relist()
        self._task = asyncio.create_task(self._follow(), name="watch-cache")
        self.ready.set()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        for ws in list(self._watchers.values()):
            for w in list(ws):
                w.close()

    def follow_only(self, rprefix: str, listener: Callable[[WatchEvent], None]) -> None:
        """Pass the events under a resource prefix to `listener`, and neither keep nor log nor
        serve its objects (the allocations' claims: one per Service, read only by their owner)."""
        self._unkept.add(rprefix)
        self.objects.pop(rprefix, None)
        self.listeners.setdefault(rprefix, []).append(listener)

    async def _relist(self) -> None:
        kvs, rev = await self.store.list(ROOT)
        objects: dict[str, dict[str, dict]] = {}
        for kv in kvs:
            rprefix = resource_prefix(kv.key)
            if rprefix in self._unkept:
                continue
            obj = _decode(kv.value, kv.mod_revision)
            objects.setdefault(rprefix, {})[kv.key] = obj
        self.objects = objects
        self.revision = rev
        self._prefix_revs.clear()
        self._listed_at = rev
        self._log_revs.clear()
        self._log.clear()
        self._oldest = rev
        # A write acknowledged while the watch was down is in this list: its readers go on.
        self._wake_waiters()

    async def _follow(self) -> None:
        while True:
            try:
                async for sev in self.store.watch(ROOT, self.revision):
                    self._apply(sev)
                return  # the store stopped
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # compaction, overflow, etcd away: start again from a fresh list
                log.warning("watch cache lost the store's watch (%s); re-listing", exc)
                for ws in list(self._watchers.values()):
                    for w in list(ws):
                        w.close()
                await self._relist_until_it_works()

    async def _relist_until_it_works(self) -> None:
        """Re-list, retrying with backoff while the store cannot answer (an etcd restarting)."""
        delay = 0.1
        while True:
            try:
                await self._relist()
                return
            except Exception as exc:
                log.warning("watch cache cannot list the store (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _apply(self, sev: StoreEvent) -> None:
        key = sev.kv.key
        rprefix = resource_prefix(key)
        if rprefix in self._unkept:
            self.revision = sev.kv.mod_revision
            etype = "DELETED" if sev.type == "DELETE" else "MODIFIED" if sev.prev is not None else "ADDED"
            self._notify(rprefix, WatchEvent(etype, key, _decode(sev.kv.value, sev.kv.mod_revision), None,
                                             sev.kv.mod_revision))
            return
        bucket = self.objects.setdefault(rprefix, {})
        prev = bucket.get(key)
        obj = _decode(sev.kv.value, sev.kv.mod_revision)
        if sev.type == "DELETE":
            bucket.pop(key, None)
            etype = "DELETED"
        else:
            bucket[key] = obj
            etype = "MODIFIED" if prev is not None else "ADDED"
        ev = WatchEvent(etype, key, obj, prev, sev.kv.mod_revision)
        self.revision = sev.kv.mod_revision
        self._prefix_revs[rprefix] = self._prefix_revs[rprefix[:rprefix.index("/", 10) + 1]] = self.revision
        self._log_revs.append(ev.revision)
        self._log.append(ev)
        if len(self._log) > self.window * 2:
            cut = len(self._log) - self.window
            self._oldest = self._log_revs[cut - 1]
            del self._log[:cut]
            del self._log_revs[:cut]
        self._notify(rprefix, ev)
        for w in list(self._watchers.get(rprefix, ())):
            w.offer(ev)

    def _notify(self, rprefix: str, ev: WatchEvent) -> None:
        for listener in self.listeners.get(rprefix, ()):
            try:
                listener(ev)
            except Exception:  # a listener's bug (or a value it cannot read) must not stop the cache
                log.exception("watch cache listener on %s failed", rprefix)
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        """Release the wait_for() callers whose revision the cache has reached."""
        if self._waiters:
            still = []
            for rev, fut in self._waiters:
                if rev <= self.revision:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((rev, fut))
            self._waiters = still

    async def wait_for(self, revision: int, timeout: float = 3.0) -> None:
        """Return once the cache has seen `revision` (504 Timeout after `timeout` s)."""
        if revision <= self.revision:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise errors.timeout(
                f"Too large resource version: {revision}, current: {self.revision}") from None

    async def wait_fresh(self) -> None:
        """Read-your-writes: wait until the cache holds every write the store acknowledged."""
        await self.wait_for(self.store.revision)

    def prefix_revision(self, rprefix: str) -> int:
        """The revision of the last change under a resource prefix ("/registry/GROUP/RESOURCE/")
        or a group's ("/registry/GROUP/"): what caches built from them, like the RBAC
        authorizer's, compare to know they are stale."""
        return self._prefix_revs.get(rprefix, self._listed_at)

    def get(self, key: str) -> dict | None:
        return self.objects.get(resource_prefix(key), {}).get(key)

    def list(self, key_prefix: str) -> list[dict]:
        """Objects under key_prefix (a resource prefix or deeper), sorted by key."""
        bucket = self.objects.get(resource_prefix(key_prefix + "x"), {})
        if key_prefix.count("/") <= 4:
            keys = sorted(bucket)
        else:
            keys = sorted(k for k in bucket if k.startswith(key_prefix))
        return [bucket[k] for k in keys]

    def count(self, key_prefix: str) -> int:
        bucket = self.objects.get(resource_prefix(key_prefix + "x"), {})
        return sum(1 for k in bucket if k.startswith(key_prefix))

    def watch(self, key_prefix: str, after_revision: int | None,
              match: Callable[[dict], bool] | None = None) -> tuple[Watcher, list[WatchEvent]]:
        """Subscribe. With after_revision None: synthetic ADDED events for every current
        object (matching), then live ones. Otherwise every event after that revision.
        Returns the watcher and the backlog to send first."""
        rprefix = resource_prefix(key_prefix + "x")
        if after_revision is None:
            backlog = [WatchEvent("ADDED", k, o, None, self.revision)
                       for k, o in sorted(self.objects.get(rprefix, {}).items())
                       if k.startswith(key_prefix) and (match is None or match(o))]
        else:
            if after_revision < self._oldest:
                raise errors.expired(f"too old resource version: {after_revision} ({self._oldest})")
            start = bisect.bisect_right(self._log_revs, after_revision)
            w = Watcher(self, rprefix, key_prefix, match, self.max_watch_queue + len(self._log) - start)
            for ev in self._log[start:]:
                if ev.key.startswith(rprefix):
                    w.offer(ev)
            self._watchers.setdefault(rprefix, set()).add(w)
            return w, []
        w = Watcher(self, rprefix, key_prefix, match, self.max_watch_queue)
        self._watchers.setdefault(rprefix, set()).add(w)
        return w, backlog

    def _unsubscribe(self, w: Watcher) -> None:
        ws = self._watchers.get(w.rprefix)
        if ws:
            ws.discard(w)


def _decode(value: bytes, revision: int) -> dict:
    obj = orjson.loads(value)
    meta = obj.setdefault("metadata", {})
    meta["resourceVersion"] = str(revision)
    for entry in meta.get("managedFields") or ():
        fields = entry.get("fieldsV1") if isinstance(entry, dict) else None
        if isinstance(fields, dict):
            _share_empty_leaves(fields)
    return obj


class _SharedEmpty(dict):
    """The one empty member of every cached FieldsV1 trie: a Service's trie has ~17 `{}` leaves
    of 64 bytes each, a fifth of the object in memory (10 MB at 10,000 Services). Read-only, as
    every cached object is meant to be (a write here would change them all); its copies are
    plain dicts, so a patch's copy of an object can be written as before."""

    __slots__ = ()

    def _read_only(self, *args, **kwargs):
        raise TypeError("a cached FieldsV1 leaf is shared and read-only; copy the object first")

    __setitem__ = __delitem__ = __ior__ = setdefault = update = pop = popitem = clear = _read_only

    def __copy__(self) -> dict:
        return {}

    def __deepcopy__(self, memo) -> dict:
        return {}

    def __reduce__(self):
        return (dict, ())


SHARED_EMPTY = _SharedEmpty()


def _share_empty_leaves(trie: dict) -> None:
    for key, sub in trie.items():
        if type(sub) is dict:
            if sub:
                _share_empty_leaves(sub)
            else:
                trie[key] = SHARED_EMPTY  # a value replaced, not a key added: iterating stays valid
