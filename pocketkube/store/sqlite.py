"""The durable store: one SQLite file, a kine-style append-only log, watches from the log.

Layout
- `log`: one row per write, never updated. revision (the INTEGER PRIMARY KEY, so the
  rowid), key, value, create_revision, prev_revision (the row this write supersedes, 0 for
  a create) and deleted (1 for a delete marker, whose value is the deleted value). A watch
  replays this table by revision; `prev` of an event is the row at prev_revision.
- `current`: key -> revision of its live row (WITHOUT ROWID, so keyed and sorted by key):
  get is one lookup, list a range scan joined to `log`. Kept in the same transaction as
  the log row.
- `meta`: the compacted revision. The store revision after a restart is
  max(max(log.revision), compacted revision): compaction can remove the newest rows
  (delete markers), never the revision they took.

Compaction to C deletes, for the rows in (previous C, C], the rows they supersede
(their prev_revision) and the delete markers. What stays at or below C is the latest
version of each key alive at C, which is exactly the `prev` of that key's next event, so
every event above C can still be replayed with its prev. It runs in transactions of
COMPACT_STEP revisions, yielding to the event loop between them; each step leaves the
store compacted to that step's end.

Durability: journal_mode=WAL, synchronous=NORMAL. A commit appends the transaction to the
WAL file with write(2) before COMMIT returns, so an acknowledged write is in the kernel's
page cache and survives the process being killed (kill -9, a crash, the OOM killer).
Only a power loss or kernel crash can lose the last commits (NORMAL skips the fsync per
commit; the database stays consistent). FULL would add an fsync per write and cost
about two orders of magnitude in write rate for a guarantee this single-machine tool
does not need.

Threading: every SQLite call runs synchronously on the event-loop thread. Measured on
the 2-core box: a create is ~15 us in-line against ~40 us through a one-thread executor
(the hop costs more than the work), a get ~3 us, a list of 10,000 keys ~12 ms. Running
in-line also serializes writes for free and lets a write publish its event before the
awaited call returns, which is what makes watch registration gap-free (see memory.py).
One process owns the file; all calls must come from the loop thread that started it.
"""

from __future__ import annotations

import asyncio
import sqlite3

from pocketkube.store import base, memory

COMPACT_STEP = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS current (
    key TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""

_SELECT_CURRENT = (
    "SELECT l.key, l.value, l.create_revision, l.revision FROM current c JOIN log l ON l.revision = c.revision"
)
_SELECT_HISTORY = (
    "SELECT l.revision, l.key, l.value, l.create_revision, l.deleted, p.value, p.create_revision, p.revision"
    " FROM log l LEFT JOIN log p ON p.revision = l.prev_revision"
    " WHERE l.revision > ? AND l.revision <= ? AND l.key >= ?"
)


class SQLiteStore:
    """base.Store in one SQLite file (WAL)."""

    def __init__(self, path: str, watch_queue_limit: int = memory.DEFAULT_WATCH_QUEUE_LIMIT):
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._revision = 0
        self._compacted = 0
        self._hub = memory.WatchHub(watch_queue_limit)

    async def start(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            conn.close()
            raise base.StoreError(f"{self.path}: SQLite refused WAL journaling (journal_mode is {mode})")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        (compacted,) = conn.execute(
            "SELECT coalesce(max(value), 0) FROM meta WHERE name = 'compacted_revision'"
        ).fetchone()
        (newest,) = conn.execute("SELECT coalesce(max(revision), 0) FROM log").fetchone()
        self._conn = conn
        self._compacted = compacted
        self._revision = max(newest, compacted)

    async def stop(self) -> None:
        self._hub.close_all()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    async def get(self, key: str) -> base.KeyValue | None:
        return self._get(key)

    async def list(self, prefix: str) -> tuple[list[base.KeyValue], int]:
        end = memory.prefix_end(prefix)
        if end is None:
            rows = self._db.execute(f"{_SELECT_CURRENT} WHERE c.key >= ? ORDER BY c.key", (prefix,))
        else:
            rows = self._db.execute(f"{_SELECT_CURRENT} WHERE c.key >= ? AND c.key < ? ORDER BY c.key", (prefix, end))
        return [base.KeyValue(*row) for row in rows], self._revision

    async def create(self, key: str, value: bytes) -> base.KeyValue:
        if self._get(key) is not None:
            raise base.KeyExists(key)
        revision = self._append(key, value, create_revision=0, prev_revision=0, deleted=False)
        kv = base.KeyValue(key, value, revision, revision)
        self._hub.publish(base.Event("PUT", kv, None))
        return kv

    async def create_all(self, items: list[tuple[str, bytes]]) -> list[base.KeyValue]:
        """One SQLite transaction; one revision per key, in order (a log row is one revision)."""
        existing = [key for key in memory.distinct_keys(items) if self._get(key) is not None]
        if existing:
            raise base.KeyExists(*existing)
        revisions = self._append_all([(key, value, 0, 0, False) for key, value in items])
        kvs = [base.KeyValue(key, value, revision, revision) for (key, value), revision in zip(items, revisions)]
        for kv in kvs:
            self._hub.publish(base.Event("PUT", kv, None))
        return kvs

    async def update(self, key: str, value: bytes, expected_mod_revision: int | None = None) -> base.KeyValue:
        prev = self._current_for_write(key, expected_mod_revision)
        revision = self._append(key, value, prev.create_revision, prev.mod_revision, deleted=False)
        kv = base.KeyValue(key, value, prev.create_revision, revision)
        self._hub.publish(base.Event("PUT", kv, prev))
        return kv

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> base.KeyValue:
        prev = self._current_for_write(key, expected_mod_revision)
        revision = self._append(key, prev.value, prev.create_revision, prev.mod_revision, deleted=True)
        kv = base.KeyValue(key, prev.value, prev.create_revision, revision)
        self._hub.publish(base.Event("DELETE", kv, prev))
        return kv

    def watch(self, prefix: str, after_revision: int) -> memory.HubWatch:
        """Raises base.Compacted at once when after_revision < compacted_revision."""
        if after_revision < self._compacted:
            raise base.Compacted(after_revision, self._compacted)
        return self._hub.open(prefix, after_revision, self._revision, self._read_history)

    async def compact(self, revision: int) -> None:
        """Delete superseded rows and delete markers at or below revision. A revision
        already compacted is a no-op; one above the store revision raises ValueError."""
        if revision > self._revision:
            raise ValueError(f"cannot compact to future revision {revision} (store is at {self._revision})")
        while self._compacted < revision:
            high = min(revision, self._compacted + COMPACT_STEP)
            self._compact_step(self._compacted, high)
            if high < revision:
                await asyncio.sleep(0)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise base.StoreError(f"{self.path}: the store is not started")
        return self._conn

    def _get(self, key: str) -> base.KeyValue | None:
        row = self._db.execute(f"{_SELECT_CURRENT} WHERE c.key = ?", (key,)).fetchone()
        return None if row is None else base.KeyValue(*row)

    def _current_for_write(self, key: str, expected_mod_revision: int | None) -> base.KeyValue:
        current = self._get(key)
        if current is None:
            raise base.KeyNotFound(key)
        if expected_mod_revision is not None and current.mod_revision != expected_mod_revision:
            raise base.RevisionMismatch(current)
        return current

    def _append(self, key: str, value: bytes, create_revision: int, prev_revision: int, deleted: bool) -> int:
        """Commit one log row (create_revision 0: this row creates the key); returns its revision."""
        return self._append_all([(key, value, create_revision, prev_revision, deleted)])[0]

    def _append_all(self, writes: list[tuple[str, bytes, int, int, bool]]) -> list[int]:
        """Commit log rows (key, value, create_revision, prev_revision, deleted) in one
        transaction, at consecutive revisions; returns them."""
        statements: list[tuple[str, tuple]] = []
        revision = self._revision
        for key, value, create_revision, prev_revision, deleted in writes:
            revision += 1
            row = (revision, key, value, create_revision or revision, prev_revision, int(deleted))
            statements.append(("INSERT INTO log VALUES (?, ?, ?, ?, ?, ?)", row))
            statements.append(
                ("DELETE FROM current WHERE key = ?", (key,))
                if deleted
                else (
                    "INSERT INTO current VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET revision = excluded.revision",
                    (key, revision),
                )
            )
        self._transaction(*statements)
        self._revision = revision
        return list(range(self._revision - len(writes) + 1, self._revision + 1))

    def _compact_step(self, low: int, high: int) -> None:
        self._transaction(
            (
                "DELETE FROM log WHERE revision IN"
                " (SELECT prev_revision FROM log WHERE revision > ? AND revision <= ? AND prev_revision > 0)",
                (low, high),
            ),
            ("DELETE FROM log WHERE revision > ? AND revision <= ? AND deleted = 1", (low, high)),
            (
                "INSERT INTO meta VALUES ('compacted_revision', ?)"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (high,),
            ),
        )
        self._compacted = high

    def _transaction(self, *statements: tuple[str, tuple]) -> None:
        conn = self._db
        conn.execute("BEGIN")
        try:
            for sql, params in statements:
                conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _read_history(self, prefix: str, after_revision: int, until_revision: int, limit: int) -> list[base.Event]:
        if after_revision < self._compacted:
            raise base.Compacted(after_revision, self._compacted)
        end = memory.prefix_end(prefix)
        if end is None:
            sql = f"{_SELECT_HISTORY} ORDER BY l.revision LIMIT ?"
            params = (after_revision, until_revision, prefix, limit)
        else:
            sql = f"{_SELECT_HISTORY} AND l.key < ? ORDER BY l.revision LIMIT ?"
            params = (after_revision, until_revision, prefix, end, limit)
        return [_event(*row) for row in self._db.execute(sql, params)]


def _event(
    revision: int,
    key: str,
    value: bytes,
    create_revision: int,
    deleted: int,
    prev_value: bytes | None,
    prev_create_revision: int | None,
    prev_revision: int | None,
) -> base.Event:
    kv = base.KeyValue(key, value, create_revision, revision)
    prev = None if prev_revision is None else base.KeyValue(key, prev_value, prev_create_revision, prev_revision)
    return base.Event("DELETE" if deleted else "PUT", kv, prev)
