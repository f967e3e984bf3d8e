"""Cluster IP and NodePort allocations kept in the store, so that several API servers over one
datastore never hand out one value twice (ADR 0020). The same code runs on every backend.

- Cluster IPs: one IPAddress object per allocated IP, as upstream's IPAddress allocator
  (networking.k8s.io/v1 IPAddress named by the IP, parentRef the Service), key
  /registry/networking.k8s.io/ipaddresses/<ip> (etcd: /registry/ipaddresses/<ip>). Creating
  it is the claim: KeyExists means another server holds the IP. A Service create writes its
  IPs' claims in its own store write (one create_all, ADR 0025); updates, repair and the
  `kubernetes` Service claim on their own.
- NodePorts: upstream's RangeAllocation at /registry/core/ranges/servicenodeports (etcd:
  /registry/ranges/servicenodeports): the range and its bitmap (base64 of the big-endian
  integer whose bit i is port base+i), written with compare-and-swap on its mod_revision.
  One writer per server folds every waiting change into one write; when the CAS fails it
  adopts the stored bitmap, and a port it was about to write that another server wrote
  meanwhile is given back to the write that took it (which picks again or refuses).
- `repair()` (at start, then every `repair_interval` seconds, as upstream's repair
  controllers): values held by stored Services but not claimed are claimed; claims no
  Service holds (a server died between claim and write) are released once seen so in
  three repairs in a row; the server's own bitmaps take in what other servers hold and
  drop what they gave back.

The local bitmaps of allocators.py stay the fast, synchronous first pick; this module
makes a pick durable and exclusive before the Service is written.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from typing import Callable, Iterable

import orjson

from pocketkube.core.objects import new_uid, rfc3339
from pocketkube.core.tasks import cancel_and_wait
from pocketkube.store.base import KeyExists, KeyNotFound, RevisionMismatch, Store

log = logging.getLogger(__name__)

IPADDRESS_PREFIX = "/registry/networking.k8s.io/ipaddresses/"
RANGES_PREFIX = "/registry/core/ranges/"
NODE_PORT_RANGE_KEY = RANGES_PREFIX + "servicenodeports"
# Our keys -> kube-apiserver's in etcd, for store.etcd's key layout (apiserver.storage).
ETCD_KEYS = {IPADDRESS_PREFIX: "/registry/ipaddresses/", RANGES_PREFIX: "/registry/ranges/"}
REPAIR_INTERVAL = 180.0  # upstream's repair controllers run every 3 minutes
LEAK_CHECKS = 3  # numRepairsBeforeLeakCleanup
MANAGED_BY = "ipallocator.k8s.io"


# ---- the bitmap as upstream stores it -------------------------------------------------

def encode_bitmap(offsets: Iterable[int]) -> str:
    """base64 of the big-endian bytes of sum(1 << offset), no leading zero bytes (big.Int.Bytes)."""
    offsets = list(offsets)
    if not offsets:
        return ""
    size = max(offsets) // 8 + 1
    data = bytearray(size)
    for offset in offsets:
        data[size - 1 - offset // 8] |= 1 << (offset % 8)
    return base64.b64encode(bytes(data)).decode()


def decode_bitmap(text: str) -> set[int]:
    data = base64.b64decode(text or "")
    size = len(data)
    offsets: set[int] = set()
    for match in re.finditer(rb"[^\x00]", data):
        byte, index = match.group()[0], match.start()
        for bit in range(8):
            if byte >> bit & 1:
                offsets.add((size - 1 - index) * 8 + bit)
    return offsets


def range_allocation(spec: str, offsets: Iterable[int]) -> dict:
    return {"apiVersion": "v1", "kind": "RangeAllocation", "metadata": {"name": NODE_PORT_RANGE_KEY.rsplit("/", 1)[1]},
            "range": spec, "data": encode_bitmap(offsets)}


def ipaddress_object(ip: str, family: str, service: dict) -> dict:
    m = service.get("metadata") or {}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IPAddress",
            "metadata": {"name": ip, "uid": new_uid(), "creationTimestamp": m.get("creationTimestamp") or rfc3339(),
                         "labels": {"ipaddress.kubernetes.io/ip-family": family,
                                    "ipaddress.kubernetes.io/managed-by": MANAGED_BY}},
            "spec": {"parentRef": {"group": "", "resource": "services",
                                   "namespace": m.get("namespace", ""), "name": m.get("name", "")}}}


# ---- cluster IPs: one object per IP ----------------------------------------------------

class IPAddressClaims:
    """The claims as this server knows them: `claimed` is read from the store by `load()` and
    kept by this server's own claims and releases and the watch cache's events (the cache
    follows the prefix without keeping the objects: WatchCache.follow_only)."""

    def __init__(self, store: Store, family: str):
        self.store, self.family = store, family
        self.claimed: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._deleting: dict[str, asyncio.Task] = {}  # releases under way

    @staticmethod
    def key(ip: str) -> str:
        return IPADDRESS_PREFIX + ip

    def known(self, ip: str) -> bool:
        """A claim this server knows of and is not releasing (a cheap early look; the store decides)."""
        return ip in self.claimed and ip not in self._deleting

    async def load(self) -> dict[str, int]:
        """Every claim in the store: IP -> its mod_revision (start, repair)."""
        kvs, _ = await self.store.list(IPADDRESS_PREFIX)
        claims = {kv.key[len(IPADDRESS_PREFIX):]: kv.mod_revision for kv in kvs}
        self.claimed = set(claims)
        return claims

    def value(self, ip: str, service: dict) -> bytes:
        """The stored claim of `ip` for `service` (an IPAddress object)."""
        return orjson.dumps(ipaddress_object(ip, self.family, service))

    async def claim(self, ip: str, service: dict) -> bool:
        """True when this write now holds `ip`; False when another holds it."""
        value = self.value(ip, service)
        for _ in range(2):
            try:
                await self.store.create(self.key(ip), value)
                self.claimed.add(ip)
                return True
            except KeyExists:
                if await self.held_elsewhere(ip):
                    return False
        return False

    async def held_elsewhere(self, ip: str) -> bool:
        """A write found `ip`'s claim in the store: True when another holds it; False when it
        was this server's own release still under way (awaited here: claim it again)."""
        self.claimed.add(ip)
        releasing = self._deleting.get(ip)
        if releasing is None:
            return True
        await asyncio.wait([releasing])
        return False

    def release(self, ip: str, expected: int | None = None) -> None:
        """Delete the claim in the background (only at revision `expected`, when given)."""
        self._deleting[ip] = self._spawn(self._delete(ip, expected))

    async def _delete(self, ip: str, expected: int | None) -> None:
        try:
            await self.store.delete(self.key(ip), expected_mod_revision=expected)
            self.claimed.discard(ip)
        except KeyNotFound:
            self.claimed.discard(ip)
        except RevisionMismatch:
            pass
        except Exception as exc:  # the store away: the repair loop frees it later
            log.warning("could not release cluster IP %s: %s", ip, exc)
        finally:
            if self._deleting.get(ip) is asyncio.current_task():
                del self._deleting[ip]

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


# ---- nodePorts: one bitmap with compare-and-swap -------------------------------------------

class PortRangeClaims:
    """The stored RangeAllocation of the NodePort range. Offsets are port - base.

    `mine` is what this server wrote as taken: a value this server takes that the stored
    bitmap has but `mine` lacks belongs to another server, whenever that shows (before a
    write, after a failed compare-and-swap, after a repair read the range)."""

    def __init__(self, store: Store, spec: str, on_taken_elsewhere: Callable[[set[int]], None],
                 on_released: Callable[[set[int]], None]):
        self.store, self.spec = store, spec
        self._taken_elsewhere, self._released = on_taken_elsewhere, on_released
        self.revision = 0  # mod_revision of the stored range as last read or written; 0: absent
        self.stored: set[int] = set()
        self.mine: set[int] = set()
        self._takes: set[int] = set()
        self._releases: set[int] = set()
        self._waiters: list[tuple[set[int], asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    async def load(self) -> set[int]:
        """Read the stored range (start, repair); returns the offsets it holds."""
        self.adopt(await self.store.get(NODE_PORT_RANGE_KEY))
        return set(self.stored)

    def adopt(self, kv) -> None:
        if kv is None:
            self.adopt_object(None, 0)
        else:
            self.adopt_object(orjson.loads(kv.value), kv.mod_revision)

    def adopt_object(self, obj: dict | None, revision: int) -> None:
        """Take the stored range as read (or as the watch cache saw it) if it is news."""
        if obj is not None and revision <= self.revision:
            return
        stored = decode_bitmap(obj.get("data", "")) if obj is not None else set()
        gone = self.stored - stored - self.pending
        self.stored, self.revision = stored, revision
        self.mine -= gone
        if stored - self.mine:
            self._taken_elsewhere(stored - self.mine)
        if gone:
            self._released(gone)

    @property
    def pending(self) -> set[int]:
        return set(self._takes).union(*(o for o, _ in self._waiters))

    async def claim(self, offsets: set[int]) -> set[int]:
        """Write these offsets (already taken in the local bitmap) into the stored range.
        Returns the ones another server holds, and then none of them was written for us
        (claim again with what is still wanted); empty once all are written."""
        if not offsets:
            return set()
        self._takes |= offsets
        self._releases -= offsets
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((set(offsets), future))
        self._kick()
        return await future

    def release(self, offsets: set[int]) -> None:
        if offsets:
            self._releases |= offsets
            self._takes -= offsets
            self._kick()

    def _kick(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_all())

    def _settle_conflicts(self) -> None:
        theirs = self.stored - self.mine
        for offsets, future in list(self._waiters):
            lost = offsets & theirs
            if lost:
                self._waiters.remove((offsets, future))
                self._takes -= offsets
                if not future.done():
                    future.set_result(lost)

    async def _write_all(self) -> None:
        while True:
            self._settle_conflicts()
            if not (self._takes or self._releases or self._waiters):
                return
            waiters, self._waiters = self._waiters, []
            takes, releases = self._takes, self._releases
            self._takes, self._releases = set(), set()
            want = (self.stored - releases) | takes
            value = orjson.dumps(range_allocation(self.spec, want))
            try:
                if self.revision:
                    kv = await self.store.update(NODE_PORT_RANGE_KEY, value, expected_mod_revision=self.revision)
                else:
                    kv = await self.store.create(NODE_PORT_RANGE_KEY, value)
            except (RevisionMismatch, KeyExists, KeyNotFound) as exc:
                self._waiters = waiters + self._waiters
                self._takes = (self._takes | takes) - self._releases
                self._releases |= releases - self._takes
                try:
                    current = exc.current if isinstance(exc, RevisionMismatch) else await self.store.get(NODE_PORT_RANGE_KEY)
                    self.adopt(current)
                except Exception as read_exc:  # the store away, or a stored range we cannot read
                    log.warning("could not read the NodePort range: %r", read_exc)
                    self._fail(self._waiters, read_exc)
                    self._waiters, self._takes = [], set()
                continue
            except Exception as exc:  # the store away: these writes fail; what landed shows on the next CAS
                log.warning("could not write the NodePort range: %s", exc)
                self._fail(waiters, exc)
                continue
            self.stored, self.revision = want, kv.mod_revision
            self.mine = (self.mine - releases) | takes
            for _, future in waiters:
                if not future.done():
                    future.set_result(set())

    @staticmethod
    def _fail(waiters, exc: Exception) -> None:
        for _, future in waiters:
            if not future.done():
                future.set_exception(exc)

    async def stop(self) -> None:
        if self._writer is not None:
            await cancel_and_wait(self._writer)
