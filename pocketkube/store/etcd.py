"""The etcd store: base.Store over etcd v3's gRPC API (KV Range/Txn/Compact, Watch).

Why gRPC and how: see docs/adr/0026-etcd-over-grpc.md (it replaced ADR 0016's JSON gateway).
Every call is one gRPC call on a grpcio asyncio channel per endpoint, with raw bytes: the
requests and answers are etcd's protobuf messages, written and read by store/etcdwire.py. An
endpoint is http(s)://HOST:PORT (TLS with the client certificate of `TLSFiles` for https) or
unix://PATH, a member's unix socket listener (no TLS: what `pocketkube up` gives the server,
ADR 0016's amendment).

Mapping to the store contract
- Revisions are etcd's: a key's `mod_revision`/`create_revision` are etcd's, so an object's
  resourceVersion is the etcd revision `etcdctl get -w json` shows. A fresh etcd starts at
  revision 1, so its first write is revision 2 (not 1 as in the other stores).
- create/update/delete are single transactions: compare (create_revision == 0, version > 0,
  or mod_revision == expected), then put/delete with prev_kv; on failure the same transaction
  reads the key, which tells KeyNotFound from RevisionMismatch without a second round trip.
  create_all is create's transaction over several keys: one revision for all of them.
- `list(prefix)` reads in pages of LIST_PAGE keys, every page at the revision of the first,
  so a long list is one consistent snapshot; `list_at()` reads at a given older revision
  (what a `continue` token of a paginated list needs) and raises Compacted when it is gone.
- `revision` is the highest revision any response or watch event of this client has shown:
  every write this process acknowledged is at or below it (read-your-writes for the watch
  cache). `compacted_revision` is what this client compacted or learned from etcd refusing
  a watch; a new client starts from 0 and learns it on the first refused watch.
- Each `watch()` is one etcd Watch stream (start_revision = after + 1, prev_kv), read by its
  own task into a bounded queue, with the same endings as memory.HubWatch: Compacted (etcd
  cancelled the watch, or this client compacted past the next queued event), WatchOverflow
  (the consumer fell `watch_queue_limit` events behind), StopAsyncIteration after close()
  or the store's stop().
- Failures: a call goes to the endpoint in use, then to the next ones; etcd's transient
  answers (a member died, a leader is being elected) are retried for RETRY_FOR seconds. A call
  that may have been applied before its answer was lost (connection dropped after sending,
  timeout, etcd's "request timed out") makes a conditional write check whether it finds its
  own success.

Keys: the store is given the API server's keys; an optional `KeyCodec` turns them into the
keys kept in etcd and back (the API server passes kube-apiserver's layout, see
apiserver/storage.py), so etcdctl shows upstream's paths. Lists come back in etcd key order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pocketkube.store import base, etcdwire, memory

if TYPE_CHECKING:
    import grpc
# grpcio is imported where it is used, not here: a server on SQLite or memory, which imports this
# module for TLSFiles, does not load it (~20 MB of RSS).

LIST_PAGE = 1000
CALL_TIMEOUT = 30.0
START_WAIT = 30.0  # start() waits this long for an etcd that does not answer yet
_COMPACTED_MESSAGE = "required revision has been compacted"
_FUTURE_MESSAGE = "required revision is a future revision"
RETRY_FOR = 10.0  # how long a call is retried while etcd elects a leader or its members are away
# How long a call that reached no endpoint is tried again before "not reachable": a channel whose
# member was away fails calls at once until its next connection attempt (within ~1.2 s, below),
# so a member that is back is used after up to that long.
CONNECT_GRACE = 2.0
# etcd's answers while a member's death is being dealt with: worth a retry. A timed-out
# request may still be applied ("request timed out" is ambiguous, as a dropped connection).
_AMBIGUOUS = "request timed out"
_TRANSIENT = ("no leader", "leader changed", "not capable", "too many requests", _AMBIGUOUS)
_ETCD_SAYS = "etcdserver: "  # how every error etcd itself answers begins (else it is gRPC's, about the transport)
_NEVER_CONNECTED = "failed to connect"  # gRPC's UNAVAILABLE before anything was sent
UNIX = "unix://"  # an endpoint unix://PATH: etcd's unix socket listener (no TLS; see docs/adr/0016)
_RANGE = "/etcdserverpb.KV/Range"
_TXN = "/etcdserverpb.KV/Txn"
_COMPACT = "/etcdserverpb.KV/Compact"
_WATCH = "/etcdserverpb.Watch/Watch"
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),  # a page of LIST_PAGE objects of up to 1.5 MiB each
    ("grpc.max_send_message_length", -1),  # etcd's own --max-request-bytes is the limit
    # A member that comes back is dialled again within ~1.2 s (1 s and gRPC's 20% jitter; its
    # default backoff grows to 120 s). Until then its channel fails calls at once: CONNECT_GRACE.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class KeyCodec(Protocol):
    """The store's keys (and key prefixes) <-> the keys in etcd; each the other's inverse."""

    def to_etcd(self, key: str) -> str: ...
    def from_etcd(self, key: str) -> str: ...


class IdentityCodec:
    def to_etcd(self, key: str) -> str:
        return key

    def from_etcd(self, key: str) -> str:
        return key


@dataclass(frozen=True)
class TLSFiles:
    """Client TLS to etcd, as kube-apiserver's --etcd-cafile/--etcd-certfile/--etcd-keyfile."""

    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        import grpc

        def read(path: str | None) -> bytes | None:
            if not path:
                return None
            with open(path, "rb") as f:
                return f.read()
        if not self.certfile:  # server checked, no client certificate
            return grpc.ssl_channel_credentials(read(self.cafile))
        # The key in its own file, or (no keyfile) in the certificate's, as ssl's load_cert_chain reads them.
        return grpc.ssl_channel_credentials(read(self.cafile), read(self.keyfile or self.certfile),
                                            read(self.certfile))


class EtcdError(base.StoreError):
    """etcd answered with an error, or could not be reached on any endpoint."""


class _Unanswered(Exception):
    """No endpoint answered; `sent`: one of them got the request before its connection dropped."""

    def __init__(self, message: str, sent: bool):
        super().__init__(message)
        self.sent = sent


def _range_end(prefix: bytes) -> bytes:
    """etcd's prefix range end: the prefix with its last byte below 0xff incremented
    (b"\\0": to the end of the keyspace)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _channel(url: str, tls: TLSFiles) -> grpc.aio.Channel:
    """The channel for one endpoint URL."""
    import grpc

    if url.startswith(UNIX):
        return grpc.aio.insecure_channel("unix:" + url[len(UNIX):], options=_CHANNEL_OPTIONS)
    scheme, _, address = url.partition("://")
    if not address or scheme not in ("http", "https"):
        raise ValueError(f"etcd endpoint {url!r}: expected http(s)://HOST:PORT or unix://PATH")
    address = address.split("/", 1)[0]
    if scheme == "https":
        return grpc.aio.secure_channel(address, tls.credentials(), options=_CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)


class EtcdStore:
    """base.Store in etcd (one cluster, reached at any of `endpoints`)."""

    def __init__(self, endpoints: list[str], tls: TLSFiles = TLSFiles(),
                 watch_queue_limit: int = memory.DEFAULT_WATCH_QUEUE_LIMIT, key_codec: KeyCodec | None = None):
        if not endpoints:
            raise ValueError("the etcd store needs at least one endpoint URL")
        self.endpoints = [url.rstrip("/") for url in endpoints]
        self.tls = tls
        self.codec = key_codec or IdentityCodec()
        self._queue_limit = watch_queue_limit
        self._channels: list[grpc.aio.Channel] = []  # one per endpoint
        self._current = 0  # index into endpoints of the one in use
        self._revision = 0
        self._compacted = 0
        self._watches: set[EtcdWatch] = set()

    async def start(self) -> None:
        self._channels = [_channel(url, self.tls) for url in self.endpoints]
        try:
            deadline = asyncio.get_running_loop().time() + START_WAIT
            while True:  # etcd may be starting beside us (`pocketkube up`): wait for it, as kube-apiserver does
                try:
                    await self._call(_RANGE, etcdwire.range_request(b"\0", b"\0", count_only=True))
                    break
                except EtcdError as error:
                    if "not reachable" not in str(error) or asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        except BaseException:
            await self._close_channels()
            raise

    async def stop(self) -> None:
        watches = list(self._watches)
        for watch in watches:
            watch.close()
        await asyncio.gather(*(watch._task for watch in watches), return_exceptions=True)
        await self._close_channels()

    async def _close_channels(self) -> None:
        channels, self._channels = self._channels, []
        for channel in channels:
            await channel.close()

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    # ---- reads -------------------------------------------------------------------------

    async def get(self, key: str) -> base.KeyValue | None:
        answer = etcdwire.range_response(
            await self._call(_RANGE, etcdwire.range_request(self.codec.to_etcd(key).encode())))
        return self._kv(answer.kvs[0]) if answer.kvs else None

    async def list(self, prefix: str) -> tuple[list[base.KeyValue], int]:
        return await self._list(prefix, 0)

    async def list_at(self, prefix: str, revision: int) -> tuple[list[base.KeyValue], int]:
        """Every key under the prefix as it was at `revision`. Raises Compacted."""
        return await self._list(prefix, revision)

    async def _list(self, prefix: str, revision: int) -> tuple[list[base.KeyValue], int]:
        start = self.codec.to_etcd(prefix).encode() if prefix else b"\0"
        end = _range_end(start) if prefix else b"\0"
        items: list[base.KeyValue] = []
        while True:
            try:
                answer = etcdwire.range_response(
                    await self._call(_RANGE, etcdwire.range_request(start, end, LIST_PAGE, revision)))
            except EtcdError as error:
                if _COMPACTED_MESSAGE in str(error):
                    raise base.Compacted(revision, max(self._compacted, revision)) from None
                raise
            revision = revision or answer.revision
            items.extend(self._kv(kv) for kv in answer.kvs)
            if not answer.more or not answer.kvs:
                return items, revision
            start = answer.kvs[-1].key + b"\0"

    # ---- writes ------------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> base.KeyValue:
        return (await self.create_all([(key, value)]))[0]

    async def create_all(self, items: list[tuple[str, bytes]]) -> list[base.KeyValue]:
        """One transaction: compare every key's create_revision == 0, put them all (so they
        share its revision); on failure the same transaction reads them all, naming those
        that exist without a second round trip."""
        keys = memory.distinct_keys(items)
        ekeys = [self.codec.to_etcd(key).encode() for key in keys]
        answer, retried = await self._call_counted(_TXN, etcdwire.txn_request(
            [etcdwire.compare(etcdwire.CREATE, etcdwire.EQUAL, ekey, 0) for ekey in ekeys],
            [(etcdwire.PUT, etcdwire.put_request(ekey, value)) for ekey, (_, value) in zip(ekeys, items)],
            [(etcdwire.RANGE, etcdwire.range_request(ekey)) for ekey in ekeys]))
        txn = etcdwire.txn_response(answer)
        if not txn.succeeded:
            found = [kvs[0] if kvs else None for _, kvs in txn.responses]
            stored = [self._kv(raw) for raw in found if raw is not None]
            if retried and len(stored) == len(items) and [kv.value for kv in stored] == [v for _, v in items] \
                    and len({kv.mod_revision for kv in stored}) == 1:
                return stored  # our own first attempt was stored before its connection dropped
            raise base.KeyExists(*(key for key, raw in zip(keys, found) if raw is not None))
        return [base.KeyValue(key, value, txn.revision, txn.revision) for key, value in items]

    async def update(self, key: str, value: bytes, expected_mod_revision: int | None = None) -> base.KeyValue:
        ekey = self.codec.to_etcd(key).encode()
        put = (etcdwire.PUT, etcdwire.put_request(ekey, value, prev_kv=True))
        prev, revision = await self._conditional(key, ekey, expected_mod_revision, put, value)
        return base.KeyValue(key, value, prev.create_revision, revision)

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> base.KeyValue:
        ekey = self.codec.to_etcd(key).encode()
        remove = (etcdwire.DELETE_RANGE, etcdwire.delete_range_request(ekey, prev_kv=True))
        prev, revision = await self._conditional(key, ekey, expected_mod_revision, remove)
        return base.KeyValue(key, prev.value, prev.create_revision, revision)

    async def _conditional(self, key: str, ekey: bytes, expected: int | None, operation: tuple[int, bytes],
                           written: bytes | None = None) -> tuple[base.KeyValue, int]:
        """Run `operation` if the key exists (with mod_revision `expected` when given); returns
        (the value it replaced, the write's revision). A call retried after its connection
        dropped may find its own first attempt done: an update finds the key holding exactly
        `written` at a later revision, a delete finds the key gone; both count as success."""
        if expected is None:
            compare = etcdwire.compare(etcdwire.VERSION, etcdwire.GREATER, ekey, 0)
        else:
            compare = etcdwire.compare(etcdwire.MOD, etcdwire.EQUAL, ekey, expected)
        answer, retried = await self._call_counted(_TXN, etcdwire.txn_request(
            [compare], [operation], [(etcdwire.RANGE, etcdwire.range_request(ekey))]))
        txn = etcdwire.txn_response(answer)
        kvs = txn.responses[0][1] if txn.responses else []
        if not txn.succeeded:
            current = self._kv(kvs[0]) if kvs else None
            if retried and expected is not None:
                if written is not None and current is not None and current.value == written \
                        and current.mod_revision > expected:
                    return current, current.mod_revision
                if written is None and current is None:
                    before = await self._at(ekey, expected)
                    if before is not None:
                        return before, txn.revision
            if current is None:
                raise base.KeyNotFound(key)
            raise base.RevisionMismatch(current)
        if not kvs:  # deleted between compare and write: cannot happen in one transaction
            raise base.KeyNotFound(key)
        return self._kv(kvs[0]), txn.revision

    async def _at(self, ekey: bytes, revision: int) -> base.KeyValue | None:
        """The key as it was at `revision` (None when that was compacted or it did not exist)."""
        try:
            answer = etcdwire.range_response(await self._call(_RANGE, etcdwire.range_request(ekey, revision=revision)))
        except EtcdError:
            return None
        kvs = answer.kvs
        return self._kv(kvs[0]) if kvs and kvs[0].mod_revision == revision else None

    async def compact(self, revision: int) -> None:
        """etcd's compaction (physical: it returns once the old revisions are gone). A revision
        already compacted is a no-op; one above the store revision raises ValueError."""
        if revision <= self._compacted:
            return
        try:
            await self._call(_COMPACT, etcdwire.compaction_request(revision, physical=True))
        except EtcdError as error:
            if _FUTURE_MESSAGE in str(error):
                raise ValueError(f"cannot compact to future revision {revision} "
                                 f"(store is at {self._revision})") from None
            if _COMPACTED_MESSAGE not in str(error):
                raise
        self._compacted = max(self._compacted, revision)

    # ---- watches -----------------------------------------------------------------------

    def watch(self, prefix: str, after_revision: int) -> EtcdWatch:
        """Raises base.Compacted at once when after_revision < compacted_revision (as known
        here); otherwise on iteration when etcd refuses the start revision."""
        if after_revision < self._compacted:
            raise base.Compacted(after_revision, self._compacted)
        watch = EtcdWatch(self, prefix, after_revision)
        self._watches.add(watch)
        return watch

    # ---- plumbing ----------------------------------------------------------------------

    def _kv(self, raw: etcdwire.KV) -> base.KeyValue:
        return base.KeyValue(self.codec.from_etcd(raw.key.decode()), raw.value, raw.create_revision, raw.mod_revision)

    def _saw(self, revision: int) -> None:
        if revision > self._revision:
            self._revision = revision

    async def _call(self, method: str, request: bytes) -> bytes:
        return (await self._call_counted(method, request))[0]

    async def _call_counted(self, method: str, request: bytes) -> tuple[bytes, bool]:
        """Call the endpoint in use; on a connection failure, the next one; again while the
        cluster is electing a leader (a member died), for up to RETRY_FOR seconds.
        Returns (answer, retried): retried is True when an earlier attempt may have been
        applied (sent, then its connection dropped or etcd timed it out), which a conditional
        write then checks, as it may find its own success."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_FOR
        connect_deadline = loop.time() + CONNECT_GRACE
        retried = False
        while True:
            try:
                answer, dropped = await self._call_once(method, request)
            except _Unanswered as error:
                retried = retried or error.sent
                if loop.time() > (deadline if retried else connect_deadline):
                    raise EtcdError(f"etcd is not reachable at {', '.join(self.endpoints)}: {error}") from None
            else:
                retried = retried or dropped
                if not isinstance(answer, EtcdError):
                    return answer, retried
                if not any(text in str(answer) for text in _TRANSIENT) or loop.time() > deadline:
                    raise answer
                retried = retried or _AMBIGUOUS in str(answer)
            await asyncio.sleep(0.1)

    async def _call_once(self, method: str, request: bytes) -> tuple[bytes | EtcdError, bool]:
        """One try on each endpoint until one answers: (the answer, or etcd's error answer;
        whether a try before it was sent and lost its connection: a member killed under a write,
        the next one answering "no leader", must still count that write as possibly applied)."""
        import grpc

        if not self._channels:
            raise base.StoreError("the etcd store is not started")
        last = ""
        sent = False
        for attempt in range(len(self.endpoints)):
            index = (self._current + attempt) % len(self.endpoints)
            try:
                answer = await self._channels[index].unary_unary(method)(request, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as error:
                details = error.details() or str(error.code())
                if details.startswith(_ETCD_SAYS):  # etcd answered: no other endpoint would say otherwise
                    self._current = index
                    return EtcdError(f"etcd {method}: {details}"), sent
                last = details
                if not (error.code() == grpc.StatusCode.UNAVAILABLE and _NEVER_CONNECTED in details):
                    sent = True  # sent, answer lost (connection dropped, timed out): it may have been applied
                continue
            self._current = index
            self._saw(etcdwire.response_revision(answer))
            return answer, sent
        raise _Unanswered(last, sent)


class EtcdWatch:
    """One etcd watch stream, read by its own task into a bounded queue."""

    def __init__(self, store: EtcdStore, prefix: str, after_revision: int):
        self.prefix = prefix
        self._store = store
        self._after = after_revision
        self._queue: deque[base.Event] = deque()
        self._wakeup = base.Wakeup()
        self._closed = False
        self._error: base.StoreError | None = None
        self._task = asyncio.get_running_loop().create_task(self._read(), name=f"etcd-watch {prefix}")

    def __aiter__(self) -> EtcdWatch:
        return self

    async def __anext__(self) -> base.Event:
        while True:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            if self._queue:
                event = self._queue[0]
                compacted = self._store.compacted_revision
                if event.revision <= compacted:  # history not yet consumed was compacted away
                    self._end(base.Compacted(event.revision - 1, compacted))
                    continue
                return self._queue.popleft()
            await self._wakeup.wait()

    def close(self) -> None:
        self._end()

    async def _read(self) -> None:
        import grpc

        store = self._store
        if not store._channels:
            self._end(base.StoreError("the etcd store is not started"))
            return
        prefix = store.codec.to_etcd(self.prefix).encode() if self.prefix else b"\0"
        call = None
        try:
            call = store._channels[store._current].stream_stream(_WATCH)()
            # The request side stays open (no done_writing), as etcd's own client keeps it.
            await call.write(etcdwire.watch_create_request(
                prefix, _range_end(prefix) if self.prefix else b"\0", self._after + 1, prev_kv=True))
            while (message := await call.read()) is not grpc.aio.EOF:
                self._take(etcdwire.watch_response(message))
                if self._closed:
                    return
        except asyncio.CancelledError:
            raise
        except base.StoreError as error:
            self._end(error)
            return
        except Exception as error:  # the stream failed (AioRpcError), or its call did, or a message was unreadable
            if not self._closed:
                details = error.details() if isinstance(error, grpc.aio.AioRpcError) else repr(error)
                self._end(EtcdError(f"etcd watch on {self.prefix!r} broke: {details}"))
            return
        finally:
            if call is not None:
                call.cancel()
        # The stream ended without close(): etcd went away (the consumer re-lists and re-watches).
        self._end(EtcdError(f"etcd ended the watch on {self.prefix!r}"))

    def _take(self, message: etcdwire.WatchResponse) -> None:
        if message.compact_revision:
            self._store._compacted = max(self._store._compacted, message.compact_revision)
            raise base.Compacted(self._after, message.compact_revision)
        if message.canceled:
            raise EtcdError(f"etcd cancelled the watch on {self.prefix!r}: {message.cancel_reason}")
        self._store._saw(message.revision)
        for raw in message.events:
            if len(self._queue) >= self._store._queue_limit:
                raise memory.WatchOverflow(self.prefix, self._store._queue_limit)
            self._queue.append(self._event(raw))
        if self._queue:
            self._wakeup.wake()

    def _event(self, raw: etcdwire.Event) -> base.Event:
        store = self._store
        kv = store._kv(raw.kv)
        prev = store._kv(raw.prev_kv) if raw.prev_kv is not None else None
        if raw.delete:
            if prev is not None:
                kv = base.KeyValue(kv.key, prev.value, prev.create_revision, kv.mod_revision)
            return base.Event("DELETE", kv, prev)
        return base.Event("PUT", kv, prev)

    def _end(self, error: base.StoreError | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._error = error
        self._queue.clear()
        self._store._watches.discard(self)
        if self._task is not asyncio.current_task():
            self._task.cancel()
        self._wakeup.wake()
