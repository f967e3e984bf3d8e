"""The store interface: keys, values and revisions as etcd has them.

- Every successful write (create, update, delete) takes the next revision of the whole
  store, a strictly increasing integer starting at 1. A key's `mod_revision` is the
  revision of its last write and `create_revision` the one that created it.
- `watch(prefix, after)` yields every event with revision > `after` for keys under the
  prefix, in revision order, then live ones. Asking for history older than the last
  compaction raises `Compacted`.
- Values are opaque bytes (the API server stores JSON).
- `create_all(items)` creates several keys in one atomic write, all or none (the API server
  stores a Service and its cluster IP's claim so: docs/adr/0025). etcd gives every key of the
  write the same revision (one transaction, one revision); memory and SQLite give them
  consecutive revisions in the order given (their logs hold one key per revision). Either
  way the store revision after it is the highest, a watch delivers the keys' events in the
  order given, and nothing of a refused write is stored.
- Optional: a store whose history stays readable (etcd) also has
  `list_at(prefix, revision)`, the keys as they were at that revision (raises `Compacted`);
  the API server uses it for `continue` tokens, and falls back to the current state without it.
"""

from __future__ import annotations

import asyncio

from dataclasses import dataclass
from typing import AsyncIterator, Protocol


class StoreError(Exception):
    """Base of the store's own errors."""


class KeyExists(StoreError):
    """create() or create_all() of a key that is already there; `keys`: every key of the
    write that was (create_all reports all of them, so a caller tells which claim lost)."""

    def __init__(self, *keys: str):
        super().__init__(", ".join(keys))
        self.keys = frozenset(keys)


class KeyNotFound(StoreError):
    """update() or delete() of a key that is not there."""


class RevisionMismatch(StoreError):
    """update() or delete() whose expected mod_revision is not the key's current one."""

    def __init__(self, current: "KeyValue"):
        super().__init__(f"mod_revision is {current.mod_revision}")
        self.current = current


class Compacted(StoreError):
    """watch() from a revision whose history was compacted away."""

    def __init__(self, requested: int, compacted: int):
        super().__init__(f"required revision {requested} has been compacted (compacted to {compacted})")
        self.requested = requested
        self.compacted = compacted


class Wakeup:
    """A watch's wake-up signal: `await wait()` returns once `wake()` is called; a wake with
    nobody waiting is dropped (the waiter looks at its queue before it waits)."""

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        self._future = asyncio.get_running_loop().create_future()
        try:
            await self._future
        finally:
            self._future = None

    def wake(self) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(None)


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    """One change. `type` is "PUT" or "DELETE". For a DELETE, `kv` holds the last value
    with `mod_revision` set to the deletion's revision; `prev` is the value before."""

    type: str
    kv: KeyValue
    prev: KeyValue | None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


class Watch(Protocol):
    """An async iterator of events that can be cancelled."""

    def __aiter__(self) -> AsyncIterator[Event]: ...
    async def __anext__(self) -> Event: ...
    def close(self) -> None: ...


class Store(Protocol):
    async def start(self) -> None:
        """Open files or connections; after this, reads and writes work."""

    async def stop(self) -> None:
        """Close everything; open watches end."""

    @property
    def revision(self) -> int:
        """The revision of the last write (0 for an empty store)."""

    @property
    def compacted_revision(self) -> int:
        """History at or below this revision is gone (0 when nothing was compacted)."""

    async def get(self, key: str) -> KeyValue | None: ...

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under the prefix, sorted by key, and the store revision read at."""

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Raises KeyExists."""

    async def create_all(self, items: list[tuple[str, bytes]]) -> list[KeyValue]:
        """Create every (key, value) in one atomic write, or none: raises KeyExists naming
        every key that exists. Returns the new KeyValues in the order given (revisions: see
        the module docstring)."""

    async def update(self, key: str, value: bytes, expected_mod_revision: int | None = None) -> KeyValue:
        """Raises KeyNotFound, RevisionMismatch (when expected_mod_revision is given)."""

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> KeyValue:
        """Returns the deleted value with mod_revision = the deletion's revision.
        Raises KeyNotFound, RevisionMismatch."""

    def watch(self, prefix: str, after_revision: int) -> Watch:
        """Events with revision > after_revision under prefix. Raises Compacted (at once or
        on first iteration) when after_revision < compacted_revision."""

    async def compact(self, revision: int) -> None:
        """Forget history (old versions and delete markers) at or below revision."""
