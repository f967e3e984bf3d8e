"""The in-memory store, and the watch fan-out that both stores share.

`MemoryStore` keeps the current keys in a dict (plus a sorted key list, so a prefix list
is a binary search and a slice) and every change as an `Event` in an append-only log. The
log is what watches replay from; `compact()` trims it. Nothing survives the process: it is
the store for tests and throw-away clusters.

Watches (`WatchHub` / `HubWatch`, also used by `sqlite.SQLiteStore`):

- Every store call runs on the event-loop thread and a write publishes its event to the
  hub before the awaited write returns. `watch()` is synchronous: in one step it records
  the store revision R and registers the watch, so every later write reaches the watch's
  live queue, and everything up to R is in the history. The watch first replays history in
  (after_revision, R] in batches read from the store's log, then drains the live queue:
  strict revision order, no gap, no duplicate, whatever is written during the replay.
- `Compacted` is raised by `watch()` itself when after_revision < compacted_revision, and
  by `__anext__` if a compaction overtakes a replay still in progress.
- Each watch's live queue is bounded (`watch_queue_limit`, 10,000 events by default). A
  writer never waits for a watcher: when a slow consumer lets its queue fill up, that one
  watch is dropped from the hub, its queue freed, and its next `__anext__` raises
  `WatchOverflow`. The consumer should list again and watch from the listed revision.
- `close()` ends one watch and `stop()` of the store ends them all: the next (or pending)
  `__anext__` raises StopAsyncIteration, and queued events are dropped.
- One consumer per watch: two concurrent `__anext__` calls on the same watch are not
  supported.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from typing import Callable

from pocketkube.store import base

DEFAULT_WATCH_QUEUE_LIMIT = 10_000
REPLAY_BATCH = 500

# read_history(prefix, after_revision, until_revision, limit) -> events under prefix with
# after_revision < revision <= until_revision, oldest first, at most `limit`; raises
# base.Compacted when after_revision < the compacted revision.
HistoryReader = Callable[[str, int, int, int], "list[base.Event]"]


def prefix_end(prefix: str) -> str | None:
    """The smallest string above every string that starts with prefix (None: no bound).

    Python compares str by code point and SQLite compares UTF-8 bytes, which is the same
    order, so `prefix <= key < prefix_end(prefix)` selects the prefix in both stores."""
    stripped = prefix.rstrip(chr(0x10FFFF))
    if not stripped:
        return None
    following = ord(stripped[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are not characters: skip them
        following = 0xE000
    return stripped[:-1] + chr(following)


def distinct_keys(items: list[tuple[str, bytes]]) -> list[str]:
    """The keys of a create_all, refused when one is given twice (etcd: "duplicate key given
    in txn request") or none is given."""
    keys = [key for key, _ in items]
    if not keys or len(set(keys)) != len(keys):
        raise ValueError(f"create_all needs distinct keys, got {keys!r}")
    return keys


class WatchOverflow(base.StoreError):
    """The watch's consumer fell too far behind; the watch ended. List again, then watch."""

    def __init__(self, prefix: str, limit: int):
        super().__init__(
            f"watch on {prefix!r} fell more than {limit} events behind and was closed; "
            "list again and watch from the listed revision"
        )
        self.prefix = prefix
        self.limit = limit


class HubWatch:
    """One watch: replays history, then yields live events pushed by the hub."""

    def __init__(
        self,
        hub: WatchHub,
        prefix: str,
        after_revision: int,
        replay_until: int,
        read_history: HistoryReader,
    ):
        self.prefix = prefix
        self._hub = hub
        self._read_history = read_history
        self._replay_cursor = after_revision  # history up to here has been read
        self._replay_until = replay_until
        self._live_floor = max(after_revision, replay_until)  # live events above this only
        self._replay: deque[base.Event] = deque()
        self._live: deque[base.Event] = deque()
        self._wakeup = base.Wakeup()
        self._closed = False
        self._error: base.StoreError | None = None

    def __aiter__(self) -> HubWatch:
        return self

    async def __anext__(self) -> base.Event:
        while True:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            if self._replay:
                return self._replay.popleft()
            if self._replay_cursor < self._replay_until:
                self._read_next_batch()
                await asyncio.sleep(0)  # let other tasks run between replay batches
                continue
            if self._live:
                return self._live.popleft()
            await self._wakeup.wait()

    def close(self) -> None:
        """End the watch: the next or pending __anext__ raises StopAsyncIteration."""
        self._end()

    def push(self, event: base.Event, limit: int) -> None:
        """Called by the hub for every event under this watch's prefix."""
        if event.revision <= self._live_floor:
            return
        if len(self._live) >= limit:
            self._end(WatchOverflow(self.prefix, limit))
            return
        self._live.append(event)
        self._wakeup.wake()

    def _read_next_batch(self) -> None:
        try:
            batch = self._read_history(self.prefix, self._replay_cursor, self._replay_until, REPLAY_BATCH)
        except base.Compacted as compacted:
            self._end(compacted)
            raise
        self._replay.extend(batch)
        if len(batch) < REPLAY_BATCH:
            self._replay_cursor = self._replay_until
        else:
            self._replay_cursor = batch[-1].revision

    def _end(self, error: base.StoreError | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._error = error
        self._replay.clear()
        self._live.clear()
        self._hub.discard(self)
        self._wakeup.wake()


class WatchHub:
    """Fans every committed event out to the open watches whose prefix it matches."""

    def __init__(self, queue_limit: int = DEFAULT_WATCH_QUEUE_LIMIT):
        self._queue_limit = queue_limit
        self._watches: set[HubWatch] = set()

    def open(self, prefix: str, after_revision: int, replay_until: int, read_history: HistoryReader) -> HubWatch:
        """Register a watch; the caller guarantees history up to replay_until is readable
        and every event above it will be published here."""
        watch = HubWatch(self, prefix, after_revision, replay_until, read_history)
        self._watches.add(watch)
        return watch

    def publish(self, event: base.Event) -> None:
        key = event.kv.key
        for watch in list(self._watches):
            if key.startswith(watch.prefix):
                watch.push(event, self._queue_limit)

    def discard(self, watch: HubWatch) -> None:
        self._watches.discard(watch)

    def close_all(self) -> None:
        for watch in list(self._watches):
            watch.close()


class MemoryStore:
    """base.Store in dicts; history is an event log trimmed by compact()."""

    def __init__(self, watch_queue_limit: int = DEFAULT_WATCH_QUEUE_LIMIT):
        self._current: dict[str, base.KeyValue] = {}
        self._sorted_keys: list[str] = []
        self._log: list[base.Event] = []  # _log[i].revision == _compacted + 1 + i
        self._revision = 0
        self._compacted = 0
        self._hub = WatchHub(watch_queue_limit)

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        self._hub.close_all()

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    async def get(self, key: str) -> base.KeyValue | None:
        return self._current.get(key)

    async def list(self, prefix: str) -> tuple[list[base.KeyValue], int]:
        keys = self._sorted_keys
        start = bisect.bisect_left(keys, prefix)
        end_key = prefix_end(prefix)
        end = len(keys) if end_key is None else bisect.bisect_left(keys, end_key, start)
        return [self._current[key] for key in keys[start:end]], self._revision

    async def create(self, key: str, value: bytes) -> base.KeyValue:
        if key in self._current:
            raise base.KeyExists(key)
        return self._create(key, value)

    async def create_all(self, items: list[tuple[str, bytes]]) -> list[base.KeyValue]:
        """One revision per key, in order (the log holds one event per revision)."""
        existing = [key for key in distinct_keys(items) if key in self._current]
        if existing:
            raise base.KeyExists(*existing)
        return [self._create(key, value) for key, value in items]

    def _create(self, key: str, value: bytes) -> base.KeyValue:
        revision = self._revision + 1
        kv = base.KeyValue(key, value, revision, revision)
        bisect.insort(self._sorted_keys, key)
        self._commit(base.Event("PUT", kv, None))
        return kv

    async def update(self, key: str, value: bytes, expected_mod_revision: int | None = None) -> base.KeyValue:
        prev = self._current_for_write(key, expected_mod_revision)
        kv = base.KeyValue(key, value, prev.create_revision, self._revision + 1)
        self._commit(base.Event("PUT", kv, prev))
        return kv

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> base.KeyValue:
        prev = self._current_for_write(key, expected_mod_revision)
        kv = base.KeyValue(key, prev.value, prev.create_revision, self._revision + 1)
        del self._sorted_keys[bisect.bisect_left(self._sorted_keys, key)]
        self._commit(base.Event("DELETE", kv, prev))
        return kv

    def watch(self, prefix: str, after_revision: int) -> HubWatch:
        """Raises base.Compacted at once when after_revision < compacted_revision."""
        if after_revision < self._compacted:
            raise base.Compacted(after_revision, self._compacted)
        return self._hub.open(prefix, after_revision, self._revision, self._read_history)

    async def compact(self, revision: int) -> None:
        """Drop the log at or below revision. A revision already compacted is a no-op;
        one above the store revision raises ValueError (etcd: "future revision")."""
        if revision > self._revision:
            raise ValueError(f"cannot compact to future revision {revision} (store is at {self._revision})")
        if revision <= self._compacted:
            return
        del self._log[: revision - self._compacted]
        self._compacted = revision

    def _current_for_write(self, key: str, expected_mod_revision: int | None) -> base.KeyValue:
        current = self._current.get(key)
        if current is None:
            raise base.KeyNotFound(key)
        if expected_mod_revision is not None and current.mod_revision != expected_mod_revision:
            raise base.RevisionMismatch(current)
        return current

    def _commit(self, event: base.Event) -> None:
        kv = event.kv
        if event.type == "DELETE":
            del self._current[kv.key]
        else:
            self._current[kv.key] = kv
        self._revision = kv.mod_revision
        self._log.append(event)
        self._hub.publish(event)

    def _read_history(self, prefix: str, after_revision: int, until_revision: int, limit: int) -> list[base.Event]:
        if after_revision < self._compacted:
            raise base.Compacted(after_revision, self._compacted)
        events = []
        for index in range(after_revision - self._compacted, until_revision - self._compacted):
            event = self._log[index]
            if event.kv.key.startswith(prefix):
                events.append(event)
                if len(events) == limit:
                    break
        return events
