"""Revisioned key-value stores with watch, in the etcd data model.

`base.Store` is the one interface; `memory.MemoryStore` (tests), `sqlite.SQLiteStore`
(the default, durable) and later `etcd.EtcdStore` implement it. Only the API server
imports this package. `open_store()` builds one from the server's flags;
`memory.WatchOverflow` is the error a watch ends with when its consumer falls behind.
"""

from __future__ import annotations

import os

from pocketkube.store import base, memory, sqlite

SQLITE_FILE_NAME = "state.db"


# The API server's watch cache is the one in-process watcher and consumes on the same event
# loop as the writers, so bursts of thousands of writes must not overflow its queue.
CACHE_WATCH_QUEUE_LIMIT = 1_000_000


def open_store(kind: str, data_dir: str | None) -> base.Store:
    """A new, not yet started store: "memory", or "sqlite" in <data_dir>/state.db (the
    directory is created if missing)."""
    if kind == "memory":
        return memory.MemoryStore(watch_queue_limit=CACHE_WATCH_QUEUE_LIMIT)
    if kind == "sqlite":
        if data_dir is None:
            raise ValueError("the sqlite store needs a data directory")
        os.makedirs(data_dir, exist_ok=True)
        return sqlite.SQLiteStore(os.path.join(data_dir, SQLITE_FILE_NAME), watch_queue_limit=CACHE_WATCH_QUEUE_LIMIT)
    raise ValueError(f"unknown store kind {kind!r}: expected 'memory' or 'sqlite'")
