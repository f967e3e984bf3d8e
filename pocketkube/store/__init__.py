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


def open_store(kind: str, data_dir: str | None) -> base.Store:
    """A new, not yet started store: "memory", or "sqlite" in <data_dir>/state.db (the
    directory is created if missing)."""
    if kind == "memory":
        return memory.MemoryStore()
    if kind == "sqlite":
        if data_dir is None:
            raise ValueError("the sqlite store needs a data directory")
        os.makedirs(data_dir, exist_ok=True)
        return sqlite.SQLiteStore(os.path.join(data_dir, SQLITE_FILE_NAME))
    raise ValueError(f"unknown store kind {kind!r}: expected 'memory' or 'sqlite'")
