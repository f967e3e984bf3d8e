"""The etcd store: base.Store over etcd v3, through etcd's JSON gateway (/v3/kv/*, /v3/watch).

Why the gateway and not gRPC: see docs/adr/0016-etcd-datastore.md. Every call is one HTTP POST
(aiohttp, kept-alive connections) whose body is the JSON form of the etcd v3 protobuf
message: bytes are base64, int64 are decimal strings. An endpoint is http(s)://HOST:PORT or
unix://PATH, a member's unix socket listener (plain HTTP, no TLS on this hop nor on etcd's
gateway's own: what `pocketkube up` gives the server, ADR 0016's amendment).

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
- Each `watch()` is one etcd watch stream (start_revision = after + 1, prev_kv), read by its
  own task into a bounded queue, with the same endings as memory.HubWatch: Compacted (etcd
  cancelled the watch, or this client compacted past the next queued event), WatchOverflow
  (the consumer fell `watch_queue_limit` events behind), StopAsyncIteration after close()
  or the store's stop().

Keys: the store is given the API server's keys; an optional `KeyCodec` turns them into the
keys kept in etcd and back (the API server passes kube-apiserver's layout, see
apiserver/storage.py), so etcdctl shows upstream's paths. Lists come back in etcd key order.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from pocketkube.store import base, memory

LIST_PAGE = 1000
CALL_TIMEOUT = 30.0
START_WAIT = 30.0  # start() waits this long for an etcd that does not answer yet
_COMPACTED_MESSAGE = "required revision has been compacted"
_FUTURE_MESSAGE = "required revision is a future revision"
RETRY_FOR = 10.0  # how long a call is retried while etcd elects a leader or its members are away
# etcd's answers while a member's death is being dealt with: worth a retry. A timed-out
# request may still be applied ("request timed out" is ambiguous, as a dropped connection).
_AMBIGUOUS = "request timed out"
_TRANSIENT = ("no leader", "leader changed", "not capable", "too many requests", _AMBIGUOUS)
# Made once: a call's body goes out as orjson's bytes (aiohttp's json= would encode it again).
_JSON = {"Content-Type": "application/json"}
_CALL = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
_STREAM = aiohttp.ClientTimeout(total=None, sock_connect=CALL_TIMEOUT)
UNIX = "unix://"  # an endpoint unix://PATH: etcd's unix socket listener (plain HTTP; see docs/adr/0016)
_HOST_OF_SOCKET = "http://localhost"


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

    def context(self) -> ssl.SSLContext | None:
        if not (self.cafile or self.certfile):
            return None
        context = ssl.create_default_context(cafile=self.cafile)
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context


class EtcdError(base.StoreError):
    """etcd answered with an error, or could not be reached on any endpoint."""


class _Unanswered(Exception):
    """No endpoint answered; `sent`: one of them got the request before its connection dropped."""

    def __init__(self, message: str, sent: bool):
        super().__init__(message)
        self.sent = sent


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _range_end(prefix: bytes) -> bytes:
    """etcd's prefix range end: the prefix with its last byte below 0xff incremented
    (b"\\0": to the end of the keyspace)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


class EtcdStore:
    """base.Store in etcd (one cluster, reached at any of `endpoints`)."""

    def __init__(self, endpoints: list[str], tls: TLSFiles = TLSFiles(),
                 watch_queue_limit: int = memory.DEFAULT_WATCH_QUEUE_LIMIT, key_codec: KeyCodec | None = None):
        if not endpoints:
            raise ValueError("the etcd store needs at least one endpoint URL")
        self.endpoints = [url.rstrip("/") for url in endpoints]
        # Where each endpoint's requests go: its URL, or for unix://PATH http://localhost through
        # a session of its own bound to that socket (etcd's unix:// listener speaks plain HTTP).
        self._bases = [_HOST_OF_SOCKET if url.startswith(UNIX) else url for url in self.endpoints]
        self.tls = tls
        self.codec = key_codec or IdentityCodec()
        self._queue_limit = watch_queue_limit
        self._sessions: list[aiohttp.ClientSession] = []  # one per endpoint (TCP endpoints share one)
        self._current = 0  # index into endpoints of the one in use
        self._revision = 0
        self._compacted = 0
        self._watches: set[EtcdWatch] = set()

    async def start(self) -> None:
        tcp: aiohttp.ClientSession | None = None
        for url in self.endpoints:
            if url.startswith(UNIX):
                self._sessions.append(aiohttp.ClientSession(connector=aiohttp.UnixConnector(url[len(UNIX):], limit=0)))
            else:
                if tcp is None:
                    tcp = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ssl=self.tls.context() or False))
                self._sessions.append(tcp)
        try:
            deadline = asyncio.get_running_loop().time() + START_WAIT
            while True:  # etcd may be starting beside us (`pocketkube up`): wait for it, as kube-apiserver does
                try:
                    await self._call("/v3/kv/range", {"key": _b64("\0"), "range_end": _b64("\0"), "count_only": True})
                    break
                except EtcdError as error:
                    if "not reachable" not in str(error) or asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        except BaseException:
            await self._close_sessions()
            raise

    async def stop(self) -> None:
        watches = list(self._watches)
        for watch in watches:
            watch.close()
        await asyncio.gather(*(watch._task for watch in watches), return_exceptions=True)
        await self._close_sessions()

    async def _close_sessions(self) -> None:
        sessions, self._sessions = self._sessions, []
        for session in set(sessions):
            await session.close()

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    # ---- reads -------------------------------------------------------------------------

    async def get(self, key: str) -> base.KeyValue | None:
        answer = await self._call("/v3/kv/range", {"key": _b64(self.codec.to_etcd(key))})
        kvs = answer.get("kvs") or []
        return self._kv(kvs[0]) if kvs else None

    async def list(self, prefix: str) -> tuple[list[base.KeyValue], int]:
        return await self._list(prefix, 0)

    async def list_at(self, prefix: str, revision: int) -> tuple[list[base.KeyValue], int]:
        """Every key under the prefix as it was at `revision`. Raises Compacted."""
        return await self._list(prefix, revision)

    async def _list(self, prefix: str, revision: int) -> tuple[list[base.KeyValue], int]:
        start = self.codec.to_etcd(prefix).encode() if prefix else b"\0"
        end = base64.b64encode(_range_end(start) if prefix else b"\0").decode()
        items: list[base.KeyValue] = []
        while True:
            request = {"key": base64.b64encode(start).decode(), "range_end": end, "limit": LIST_PAGE}
            if revision:
                request["revision"] = revision
            try:
                answer = await self._call("/v3/kv/range", request)
            except EtcdError as error:
                if _COMPACTED_MESSAGE in str(error):
                    raise base.Compacted(revision, max(self._compacted, revision)) from None
                raise
            revision = revision or int(answer["header"]["revision"])
            kvs = answer.get("kvs") or []
            items.extend(self._kv(kv) for kv in kvs)
            if not answer.get("more") or not kvs:
                return items, revision
            start = base64.b64decode(kvs[-1]["key"]) + b"\0"

    # ---- writes ------------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> base.KeyValue:
        return (await self.create_all([(key, value)]))[0]

    async def create_all(self, items: list[tuple[str, bytes]]) -> list[base.KeyValue]:
        """One transaction: compare every key's create_revision == 0, put them all (so they
        share its revision); on failure the same transaction reads them all, naming those
        that exist without a second round trip."""
        keys = memory.distinct_keys(items)
        ekeys = [_b64(self.codec.to_etcd(key)) for key in keys]
        answer, retried = await self._call_counted("/v3/kv/txn", {
            "compare": [{"target": "CREATE", "key": ekey, "result": "EQUAL", "create_revision": 0} for ekey in ekeys],
            "success": [{"request_put": {"key": ekey, "value": base64.b64encode(value).decode()}}
                        for ekey, (_, value) in zip(ekeys, items)],
            "failure": [{"request_range": {"key": ekey}} for ekey in ekeys],
        })
        if not answer.get("succeeded"):
            found = [(response["response_range"].get("kvs") or [None])[0] for response in answer["responses"]]
            stored = [self._kv(raw) for raw in found if raw is not None]
            if retried and len(stored) == len(items) and [kv.value for kv in stored] == [v for _, v in items] \
                    and len({kv.mod_revision for kv in stored}) == 1:
                return stored  # our own first attempt was stored before its connection dropped
            raise base.KeyExists(*(key for key, raw in zip(keys, found) if raw is not None))
        revision = int(answer["header"]["revision"])
        return [base.KeyValue(key, value, revision, revision) for key, value in items]

    async def update(self, key: str, value: bytes, expected_mod_revision: int | None = None) -> base.KeyValue:
        ekey = _b64(self.codec.to_etcd(key))
        put = {"request_put": {"key": ekey, "value": base64.b64encode(value).decode(), "prev_kv": True}}
        prev, revision = await self._conditional(key, ekey, expected_mod_revision, put, "response_put", value)
        return base.KeyValue(key, value, prev.create_revision, revision)

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> base.KeyValue:
        ekey = _b64(self.codec.to_etcd(key))
        remove = {"request_delete_range": {"key": ekey, "prev_kv": True}}
        prev, revision = await self._conditional(key, ekey, expected_mod_revision, remove, "response_delete_range")
        return base.KeyValue(key, prev.value, prev.create_revision, revision)

    async def _conditional(self, key: str, ekey: str, expected: int | None, operation: dict,
                           response_name: str, written: bytes | None = None) -> tuple[base.KeyValue, int]:
        """Run `operation` if the key exists (with mod_revision `expected` when given); returns
        (the value it replaced, the write's revision). A call retried after its connection
        dropped may find its own first attempt done: an update finds the key holding exactly
        `written` at a later revision, a delete finds the key gone; both count as success."""
        if expected is None:
            compare = {"target": "VERSION", "key": ekey, "result": "GREATER", "version": 0}
        else:
            compare = {"target": "MOD", "key": ekey, "result": "EQUAL", "mod_revision": expected}
        answer, retried = await self._call_counted("/v3/kv/txn", {
            "compare": [compare], "success": [operation], "failure": [{"request_range": {"key": ekey}}],
        })
        response = answer["responses"][0]
        if not answer.get("succeeded"):
            kvs = response["response_range"].get("kvs") or []
            current = self._kv(kvs[0]) if kvs else None
            if retried and expected is not None:
                if written is not None and current is not None and current.value == written \
                        and current.mod_revision > expected:
                    return current, current.mod_revision
                if written is None and current is None:
                    before = await self._at(ekey, expected)
                    if before is not None:
                        return before, int(answer["header"]["revision"])
            if current is None:
                raise base.KeyNotFound(key)
            raise base.RevisionMismatch(current)
        result = response[response_name]
        prev = result.get("prev_kv") or (result.get("prev_kvs") or [None])[0]
        if prev is None:  # deleted between compare and write: cannot happen in one transaction
            raise base.KeyNotFound(key)
        return self._kv(prev), int(answer["header"]["revision"])

    async def _at(self, ekey: str, revision: int) -> base.KeyValue | None:
        """The key as it was at `revision` (None when that was compacted or it did not exist)."""
        try:
            answer = await self._call("/v3/kv/range", {"key": ekey, "revision": revision})
        except EtcdError:
            return None
        kvs = answer.get("kvs") or []
        return self._kv(kvs[0]) if kvs and int(kvs[0].get("mod_revision", 0)) == revision else None

    async def compact(self, revision: int) -> None:
        """etcd's compaction (physical: it returns once the old revisions are gone). A revision
        already compacted is a no-op; one above the store revision raises ValueError."""
        if revision <= self._compacted:
            return
        try:
            await self._call("/v3/kv/compaction", {"revision": revision, "physical": True})
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

    def _kv(self, raw: dict) -> base.KeyValue:
        key = self.codec.from_etcd(base64.b64decode(raw["key"]).decode())
        return base.KeyValue(key, base64.b64decode(raw.get("value", "")),
                             int(raw.get("create_revision", 0)), int(raw.get("mod_revision", 0)))

    def _saw(self, header: dict | None) -> None:
        if header and "revision" in header:
            self._revision = max(self._revision, int(header["revision"]))

    def _post(self, index: int, path: str, body: dict, timeout: aiohttp.ClientTimeout) -> Any:
        """POST `body` to endpoint `index` (aiohttp's request context manager)."""
        if not self._sessions:
            raise base.StoreError("the etcd store is not started")
        return self._sessions[index].post(self._bases[index] + path, data=orjson.dumps(body), headers=_JSON,
                                          timeout=timeout)

    async def _call(self, path: str, body: dict) -> dict:
        return (await self._call_counted(path, body))[0]

    async def _call_counted(self, path: str, body: dict) -> tuple[dict, bool]:
        """POST to the endpoint in use; on a connection failure, to the next one; again while
        the cluster is electing a leader (a member died), for up to RETRY_FOR seconds.
        Returns (answer, retried): retried is True when an earlier attempt may have been
        applied (sent, then its connection dropped or etcd timed it out), which a conditional
        write then checks, as it may find its own success."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_FOR
        retried = False
        while True:
            try:
                answer, dropped = await self._call_once(path, body)
                return answer, retried or dropped
            except _Unanswered as error:
                retried = retried or error.sent
                if not error.sent or loop.time() > deadline:
                    raise EtcdError(f"etcd is not reachable at {', '.join(self.endpoints)}: {error}") from None
            except EtcdError as error:
                if not any(text in str(error) for text in _TRANSIENT) or loop.time() > deadline:
                    raise
                retried = retried or _AMBIGUOUS in str(error)
            await asyncio.sleep(0.1)

    async def _call_once(self, path: str, body: dict) -> tuple[dict, bool]:
        """One try on each endpoint until one answers: (answer, whether a try before it was
        sent and lost its connection)."""
        last: Exception | None = None
        sent = False
        for attempt in range(len(self.endpoints)):
            try:
                async with self._post((self._current + attempt) % len(self.endpoints), path, body, _CALL) as reply:
                    answer = orjson.loads(await reply.read())
            except aiohttp.ClientConnectorError as error:  # never connected: nothing was sent
                last = error
                continue
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as error:
                last, sent = error, True  # sent, answer lost: it may have been applied
                continue
            self._current = (self._current + attempt) % len(self.endpoints)
            if "error" in answer or reply.status != 200:
                raise EtcdError(f"etcd {path}: {answer.get('message') or answer.get('error') or reply.status}")
            self._saw(answer.get("header"))
            return answer, sent
        raise _Unanswered(str(last), sent)

    def _open_stream(self, body: dict) -> Any:
        return self._post(self._current, "/v3/watch", body, _STREAM)


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
        store = self._store
        prefix = store.codec.to_etcd(self.prefix).encode() if self.prefix else b"\0"
        request = {"create_request": {
            "key": base64.b64encode(prefix).decode(),
            "range_end": base64.b64encode(_range_end(prefix) if self.prefix else b"\0").decode(),
            "start_revision": self._after + 1, "prev_kv": True}}
        try:
            async with store._open_stream(request) as reply:
                if reply.status != 200:
                    raise EtcdError(f"etcd watch: HTTP {reply.status}: {(await reply.read())[:200]!r}")
                # One JSON message per line, of any length (aiohttp's own line reader stops at
                # 128 KiB; one event can hold a 1.5 MiB object).
                pending = bytearray()
                async for chunk in reply.content.iter_any():
                    searched = len(pending)
                    pending += chunk
                    start = 0
                    while (end := pending.find(b"\n", searched)) >= 0:
                        if end > start:
                            self._take(orjson.loads(bytes(pending[start:end])))
                        start = searched = end + 1
                    del pending[:start]
                    if self._closed:
                        return
        except asyncio.CancelledError:
            raise
        except base.StoreError as error:
            self._end(error)
            return
        except (aiohttp.ClientError, ValueError, OSError) as error:
            if not self._closed:
                self._end(EtcdError(f"etcd watch on {self.prefix!r} broke: {error}"))
            return
        # The stream ended without close(): etcd went away (the consumer re-lists and re-watches).
        self._end(EtcdError(f"etcd ended the watch on {self.prefix!r}"))

    def _take(self, message: dict) -> None:
        if "error" in message:
            raise EtcdError(f"etcd watch: {message['error'].get('message', message['error'])}")
        result = message.get("result") or {}
        compact_revision = int(result.get("compact_revision", 0))
        if compact_revision:
            self._store._compacted = max(self._store._compacted, compact_revision)
            raise base.Compacted(self._after, compact_revision)
        if result.get("canceled"):
            raise EtcdError(f"etcd cancelled the watch on {self.prefix!r}: {result.get('cancel_reason', '')}")
        self._store._saw(result.get("header"))
        for raw in result.get("events") or []:
            if len(self._queue) >= self._store._queue_limit:
                raise memory.WatchOverflow(self.prefix, self._store._queue_limit)
            self._queue.append(self._event(raw))
        if self._queue:
            self._wakeup.wake()

    def _event(self, raw: dict) -> base.Event:
        store = self._store
        kv = store._kv(raw["kv"])
        prev = store._kv(raw["prev_kv"]) if raw.get("prev_kv") else None
        if raw.get("type") == "DELETE":
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

