"""Revisioned key-value stores with watch, in the etcd data model.

`base.Store` is the one interface; `memory.MemoryStore` (tests), `sqlite.SQLiteStore`
(the default, durable) and `etcd.EtcdStore` (an etcd cluster) implement it. Only the API
server imports this package. `open_store()` builds one from the server's flags;
`memory.WatchOverflow` is the error a watch ends with when its consumer falls behind.
"""

from __future__ import annotations

import os

from pocketkube.store import base, etcd, memory, sqlite

SQLITE_FILE_NAME = "state.db"


# The API server's watch cache is the one in-process watcher and consumes on the same event
# loop as the writers, so bursts of thousands of writes must not overflow its queue.
CACHE_WATCH_QUEUE_LIMIT = 1_000_000


def open_store(kind: str, data_dir: str | None, etcd_servers: list[str] | None = None,
               etcd_tls: etcd.TLSFiles = etcd.TLSFiles(), key_codec: etcd.KeyCodec | None = None) -> base.Store:
    """A new, not yet started store: "memory", "sqlite" in <data_dir>/state.db (the
    directory is created if missing), or "etcd" at etcd_servers (client URLs), its keys
    mapped by key_codec."""
    if kind == "memory":
        return memory.MemoryStore(watch_queue_limit=CACHE_WATCH_QUEUE_LIMIT)
    if kind == "sqlite":
        if data_dir is None:
            raise ValueError("the sqlite store needs a data directory")
        os.makedirs(data_dir, exist_ok=True)
        return sqlite.SQLiteStore(os.path.join(data_dir, SQLITE_FILE_NAME), watch_queue_limit=CACHE_WATCH_QUEUE_LIMIT)
    if kind == "etcd":
        if not etcd_servers:
            raise ValueError("the etcd store needs --etcd-servers")
        return etcd.EtcdStore(etcd_servers, etcd_tls, watch_queue_limit=CACHE_WATCH_QUEUE_LIMIT, key_codec=key_codec)
    raise ValueError(f"unknown store kind {kind!r}: expected 'memory', 'sqlite' or 'etcd'")
