"""The store contract (pocketkube/store/base.py), run against MemoryStore and SQLiteStore.

Covered: create/get/list/update/delete results and errors, revision numbering,
expected_mod_revision conflicts, prefix lists, watch replay + live events (order, prefix,
prev, writes during the replay, future revisions), close/stop, slow watchers
(WatchOverflow), compaction (Compacted, what survives, on-disk rows), reopening the SQLite
file, and a random-operations comparison of the two stores. Durability under kill -9 is in
test_store_durability.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketkube import store as store_pkg
from pocketkube.store import base, etcd, memory, sqlite
from tests.etcdproc import etcd_missing

KINDS = ["memory", "sqlite"]  # compared by the random-operations test; etcd runs the rest


@pytest.fixture(params=[*KINDS, pytest.param("etcd", marks=etcd_missing)])
async def make_store(request, tmp_path):
    """Build started stores of the parametrized kind (options go to the constructor). For
    etcd, a throwaway etcd process serves the test (tests/etcdproc.py)."""
    opened = []
    # etcd over its unix socket, as `pocketkube up` gives it to the API server (HTTPS: test_store_durability)
    endpoint = request.getfixturevalue("etcd_server").socket_url if request.param == "etcd" else ""

    async def make(**options):
        if request.param == "memory":
            store = memory.MemoryStore(**options)
        elif request.param == "etcd":
            store = etcd.EtcdStore([endpoint], **options)
        else:
            store = sqlite.SQLiteStore(str(tmp_path / "state.db"), **options)
        await store.start()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.stop()


@pytest.fixture
async def store(make_store):
    return await make_store()


@pytest.fixture
def r0(store):
    """The revision of the empty store: 0, but 1 for etcd (whose first write is revision 2).
    Tests write revisions as r0 + N."""
    return store.revision


def kv(key: str, value: bytes, create: int, mod: int, r0: int) -> base.KeyValue:
    return base.KeyValue(key, value, r0 + create, r0 + mod)


async def take(watch, count: int) -> list[base.Event]:
    async def collect():
        return [await watch.__anext__() for _ in range(count)]

    return await asyncio.wait_for(collect(), timeout=10)


async def next_outcome(watch):
    """The next event, or the exception class __anext__ ends with."""
    try:
        return await asyncio.wait_for(watch.__anext__(), timeout=10)
    except (StopAsyncIteration, base.StoreError) as error:
        return type(error)


# --- create / get / update / delete -------------------------------------------------------


async def test_create_get_update_delete_cycle(store, r0):
    created = await store.create("/registry/pods/default/a", b"v1")
    assert created == kv("/registry/pods/default/a", b"v1", 1, 1, r0)
    assert await store.get("/registry/pods/default/a") == created
    assert await store.get("/registry/pods/default/missing") is None

    updated = await store.update("/registry/pods/default/a", b"v2")
    assert updated == kv("/registry/pods/default/a", b"v2", 1, 2, r0)
    assert await store.get("/registry/pods/default/a") == updated

    deleted = await store.delete("/registry/pods/default/a")
    assert deleted == kv("/registry/pods/default/a", b"v2", 1, 3, r0)
    assert await store.get("/registry/pods/default/a") is None
    assert store.revision == r0 + 3

    recreated = await store.create("/registry/pods/default/a", b"v3")
    assert recreated == kv("/registry/pods/default/a", b"v3", 4, 4, r0)


async def test_revisions_are_global_and_create_revision_is_kept(store, r0):
    assert r0 in (0, 1)
    a = await store.create("/a", b"1")
    b = await store.create("/b", b"1")
    a2 = await store.update("/a", b"2")
    b2 = await store.update("/b", b"2")
    a3 = await store.update("/a", b"3")
    assert [kv.mod_revision - r0 for kv in (a, b, a2, b2, a3)] == [1, 2, 3, 4, 5]
    assert (a3.create_revision - r0, b2.create_revision - r0) == (1, 2)
    assert store.revision == r0 + 5


@pytest.mark.parametrize(
    "operation, error",
    [
        pytest.param(lambda s, r0: s.create("/k", b"new"), base.KeyExists, id="create-existing"),
        pytest.param(lambda s, r0: s.update("/missing", b"x"), base.KeyNotFound, id="update-missing"),
        pytest.param(lambda s, r0: s.update("/missing", b"x", r0 + 2), base.KeyNotFound,
                     id="update-missing-with-revision"),
        pytest.param(lambda s, r0: s.delete("/missing"), base.KeyNotFound, id="delete-missing"),
        pytest.param(lambda s, r0: s.update("/k", b"x", expected_mod_revision=r0 + 1), base.RevisionMismatch,
                     id="update-stale"),
        pytest.param(lambda s, r0: s.delete("/k", expected_mod_revision=r0 + 1), base.RevisionMismatch,
                     id="delete-stale"),
        pytest.param(lambda s, r0: s.update("/k", b"x", r0 + 9), base.RevisionMismatch, id="update-future"),
    ],
)
async def test_failed_writes_raise_and_change_nothing(store, r0, operation, error):
    await store.create("/k", b"v1")
    current = await store.update("/k", b"v2")
    with pytest.raises(error) as raised:
        await operation(store, r0)
    if error is base.RevisionMismatch:
        assert raised.value.current == current
    assert store.revision == r0 + 2
    assert await store.get("/k") == current
    assert await store.list("") == ([current], r0 + 2)


async def test_writes_with_the_current_mod_revision_succeed(store, r0):
    created = await store.create("/k", b"v1")
    updated = await store.update("/k", b"v2", expected_mod_revision=created.mod_revision)
    deleted = await store.delete("/k", expected_mod_revision=updated.mod_revision)
    assert deleted.mod_revision == r0 + 3
    assert await store.get("/k") is None


# --- create_all: several keys in one atomic write (docs/adr/0025) ----------------------------

ITEMS = [("/registry/core/services/default/s", b"svc"), ("/registry/networking.k8s.io/ipaddresses/10.96.0.7", b"ip"),
         ("/registry/z", b"z")]


async def test_create_all_creates_every_key_in_one_write(store, r0):
    created = await store.create_all(ITEMS)
    assert [(c.key, c.value) for c in created] == ITEMS
    assert all(c.create_revision == c.mod_revision for c in created)
    # etcd: one transaction, one revision; memory and SQLite: one revision per key, in order.
    shared = isinstance(store, etcd.EtcdStore)
    assert [c.mod_revision - r0 for c in created] == ([1, 1, 1] if shared else [1, 2, 3])
    assert store.revision == created[-1].mod_revision
    assert [await store.get(key) for key, _ in ITEMS] == created
    after = await store.create("/registry/after", b"a")
    assert after.mod_revision == created[-1].mod_revision + 1


async def test_create_all_refused_names_every_existing_key_and_stores_nothing(store, r0):
    held = await store.create(ITEMS[1][0], b"another server's")
    with pytest.raises(base.KeyExists) as one:
        await store.create_all(ITEMS)
    assert one.value.keys == {ITEMS[1][0]}
    await store.create(ITEMS[0][0], b"an older one")
    with pytest.raises(base.KeyExists) as two:
        await store.create_all(ITEMS)
    assert two.value.keys == {ITEMS[0][0], ITEMS[1][0]}
    assert store.revision == r0 + 2
    assert await store.get(ITEMS[1][0]) == held
    assert await store.get(ITEMS[2][0]) is None
    with pytest.raises(ValueError, match="distinct keys"):
        await store.create_all([ITEMS[2], ITEMS[2]])
    with pytest.raises(ValueError, match="distinct keys"):
        await store.create_all([])


async def test_create_all_is_watched_in_order_and_resumable_after_it(store, r0):
    live = store.watch("/registry/", store.revision)
    created = await store.create_all(ITEMS)
    later = await store.create("/registry/later", b"l")
    expected = [base.Event("PUT", c, None) for c in created] + [base.Event("PUT", later, None)]
    assert await take(live, 4) == expected
    assert await take(store.watch("/registry/", r0), 4) == expected  # replayed from history
    assert await take(store.watch("/registry/networking.k8s.io/", r0), 1) == expected[1:2]
    # A watch resumed at the write's (last) revision sees none of it again.
    assert await take(store.watch("/registry/", created[-1].mod_revision), 1) == expected[3:]


# --- list ---------------------------------------------------------------------------------

KEYS = [
    "/registry/services/specs/kube-system/kube-dns",
    "/registry/pods/default/web-1",
    "/registry/services/specs/default/web",
    "/registry/services/specs/default/api",
    "/registry/services/specsx/default/odd",
    "/registry/pods/default/web-0",
]


@pytest.mark.parametrize(
    "prefix, expected",
    [
        pytest.param("", sorted(KEYS), id="everything"),
        pytest.param(
            "/registry/services/specs/",
            [
                "/registry/services/specs/default/api",
                "/registry/services/specs/default/web",
                "/registry/services/specs/kube-system/kube-dns",
            ],
            id="kind",
        ),
        pytest.param("/registry/pods/default/web-1", ["/registry/pods/default/web-1"], id="one-key"),
        pytest.param("/registry/services/specs", sorted(KEYS)[2:], id="plain-string-prefix"),
        pytest.param("/registry/secrets/", [], id="nothing"),
    ],
)
async def test_list_is_sorted_by_key_under_a_plain_string_prefix(store, r0, prefix, expected):
    for index, key in enumerate(KEYS):
        await store.create(key, f"value-{index}".encode())
    items, revision = await store.list(prefix)
    assert [kv.key for kv in items] == expected
    assert revision == r0 + len(KEYS)
    for item in items:
        assert item.value == f"value-{KEYS.index(item.key)}".encode()
        assert item.mod_revision == r0 + KEYS.index(item.key) + 1


async def test_list_shows_updates_and_hides_deleted_keys(store, r0):
    await store.create("/p/a", b"1")
    await store.create("/p/b", b"1")
    await store.create("/p/c", b"1")
    await store.update("/p/b", b"2")
    await store.delete("/p/c")
    items, revision = await store.list("/p/")
    assert items == [kv("/p/a", b"1", 1, 1, r0), kv("/p/b", b"2", 2, 4, r0)]
    assert revision == r0 + 5


@pytest.mark.parametrize(
    "prefix, end",
    [
        pytest.param("/registry/pods/", "/registry/pods0", id="slash"),
        pytest.param("", None, id="empty"),
        pytest.param("a\U0010ffff", "b", id="max-code-point"),
        pytest.param("\U0010ffff", None, id="only-max-code-point"),
        pytest.param("x\ud7ff", "x\ue000", id="skips-surrogates"),
    ],
)
def test_prefix_end(prefix, end):
    assert memory.prefix_end(prefix) == end


# --- watch --------------------------------------------------------------------------------


async def write_history(store):
    """Revisions 1..6 over two prefixes, with an update and a delete."""
    await store.create("/registry/pods/a", b"a1")  # 1
    await store.create("/registry/services/s", b"s1")  # 2
    await store.update("/registry/pods/a", b"a2")  # 3
    await store.create("/registry/pods/b", b"b1")  # 4
    await store.delete("/registry/pods/a")  # 5
    await store.update("/registry/services/s", b"s2")  # 6


def pod_events(r0: int) -> list[base.Event]:
    """The events write_history makes under /registry/pods/."""
    return [
        base.Event("PUT", kv("/registry/pods/a", b"a1", 1, 1, r0), None),
        base.Event("PUT", kv("/registry/pods/a", b"a2", 1, 3, r0), kv("/registry/pods/a", b"a1", 1, 1, r0)),
        base.Event("PUT", kv("/registry/pods/b", b"b1", 4, 4, r0), None),
        base.Event("DELETE", kv("/registry/pods/a", b"a2", 1, 5, r0), kv("/registry/pods/a", b"a2", 1, 3, r0)),
    ]


async def test_watch_from_zero_replays_everything_in_order(store, r0):
    await write_history(store)
    events = await take(store.watch("", 0), 6)
    assert [event.revision - r0 for event in events] == [1, 2, 3, 4, 5, 6]
    assert [event.type for event in events] == ["PUT", "PUT", "PUT", "PUT", "DELETE", "PUT"]


async def test_watch_by_prefix_sees_only_its_keys_with_prev(store, r0):
    await write_history(store)
    watch = store.watch("/registry/pods/", 0)
    assert await take(watch, 4) == pod_events(r0)
    await store.create("/registry/services/t", b"t1")
    await store.update("/registry/pods/b", b"b2")
    [live] = await take(watch, 1)
    assert live == base.Event("PUT", kv("/registry/pods/b", b"b2", 4, 8, r0), kv("/registry/pods/b", b"b1", 4, 4, r0))


async def test_watch_from_a_middle_revision(store, r0):
    await write_history(store)
    assert await take(store.watch("/registry/pods/", r0 + 3), 2) == pod_events(r0)[2:]
    assert await take(store.watch("", r0 + 4), 2) == [
        pod_events(r0)[3],
        base.Event("PUT", kv("/registry/services/s", b"s2", 2, 6, r0), kv("/registry/services/s", b"s1", 2, 2, r0)),
    ]


async def test_live_delete_event_carries_prev(store, r0):
    await store.create("/k", b"v1")
    watch = store.watch("/k", store.revision)
    await store.delete("/k")
    assert await take(watch, 1) == [base.Event("DELETE", kv("/k", b"v1", 1, 2, r0), kv("/k", b"v1", 1, 1, r0))]


async def test_watch_from_a_future_revision_skips_events_up_to_it(store, r0):
    await store.create("/k", b"1")
    watch = store.watch("/k", r0 + 3)
    for value in (b"2", b"3", b"4"):
        await store.update("/k", value)
    assert [(event.revision - r0, event.kv.value) for event in await take(watch, 1)] == [(4, b"4")]


async def test_writes_during_replay_are_delivered_once_in_order(store, r0):
    """1,200 events of history (more than two replay batches) and writes while replaying."""
    for index in range(600):
        await store.create(f"/w/{index}", b"0")
        await store.update(f"/w/{index}", b"1")
    watch = store.watch("/w/", 0)
    expected = list(range(r0 + 1, r0 + 1201))
    revisions = []
    while len(revisions) < len(expected):
        [event] = await take(watch, 1)
        revisions.append(event.revision)
        if len(revisions) % 100 == 0 and len(revisions) <= 1200:
            expected.append((await store.create(f"/w/late-{len(revisions)}", b"x")).mod_revision)
            await store.create(f"/other/{len(revisions)}", b"x")  # not under the prefix
    assert revisions == expected
    final = await store.create("/w/final", b"x")
    assert await take(watch, 1) == [base.Event("PUT", final, None)]


async def test_close_ends_a_pending_iteration(store):
    watch = store.watch("", 0)
    pending = asyncio.ensure_future(next_outcome(watch))
    await asyncio.sleep(0)
    watch.close()
    assert await pending is StopAsyncIteration
    await store.create("/k", b"1")
    assert await next_outcome(watch) is StopAsyncIteration


async def test_stop_ends_every_watch(make_store):
    store = await make_store()
    await store.create("/k", b"1")
    idle = store.watch("", 1)
    replaying = store.watch("", 0)
    pending = asyncio.ensure_future(next_outcome(idle))
    await asyncio.sleep(0)
    await store.stop()
    assert await pending is StopAsyncIteration
    assert await next_outcome(replaying) is StopAsyncIteration


async def test_slow_watcher_overflows_without_blocking_writers(make_store):
    store = await make_store(watch_queue_limit=5)
    r0 = store.revision
    slow = store.watch("/k/", 0)
    fast = store.watch("/k/", 0)
    fast_revisions = []
    for index in range(8):
        await store.create(f"/k/{index}", b"x")
        fast_revisions.extend(event.revision for event in await take(fast, 1))
    assert store.revision == r0 + 8
    assert fast_revisions == list(range(r0 + 1, r0 + 9))
    # The slow watch gives at most its queue's worth of events (none for the stores that
    # drop the queue at once; an etcd watch's reader may not have seen the sixth yet), then ends.
    outcomes = [await next_outcome(slow) for _ in range(7)]
    ended = outcomes.index(memory.WatchOverflow)
    assert ended <= 5 and all(isinstance(o, base.Event) for o in outcomes[:ended])
    assert outcomes[ended + 1] is memory.WatchOverflow
    await store.stop()


async def test_overflow_error_tells_the_consumer_to_relist(make_store):
    store = await make_store(watch_queue_limit=1)
    watch = store.watch("/k/", 0)
    await store.create("/k/a", b"x")
    await store.create("/k/b", b"x")
    with pytest.raises(memory.WatchOverflow, match="list again"):
        async for _ in watch:  # at most one event before the overflow
            pass
    await store.stop()


# --- compaction ---------------------------------------------------------------------------


async def test_compaction_forbids_older_watches_and_keeps_current_state(store, r0):
    await write_history(store)
    before = await store.list("")
    await store.compact(r0 + 4)
    assert store.compacted_revision == r0 + 4
    with pytest.raises(base.Compacted) as raised:
        store.watch("/registry/pods/", r0 + 3)
    assert (raised.value.requested, raised.value.compacted) == (r0 + 3, r0 + 4)
    assert await store.list("") == before
    assert await store.get("/registry/services/s") == kv("/registry/services/s", b"s2", 2, 6, r0)
    # Events above the compacted revision replay with their prev, even when the prev is at or below it.
    assert await take(store.watch("/registry/pods/", r0 + 4), 1) == pod_events(r0)[3:]
    assert [event.prev for event in await take(store.watch("/registry/services/", r0 + 4), 1)] == [
        kv("/registry/services/s", b"s1", 2, 2, r0)
    ]


async def test_compaction_bounds(store, r0):
    await write_history(store)
    await store.compact(r0 + 4)
    await store.compact(r0 + 2)
    assert store.compacted_revision == r0 + 4
    with pytest.raises(ValueError, match="future revision"):
        await store.compact(r0 + 7)
    await store.compact(r0 + 6)
    assert store.compacted_revision == r0 + 6
    await store.create("/registry/pods/a", b"again")
    assert [event.kv.value for event in await take(store.watch("", r0 + 6), 1)] == [b"again"]


async def test_compaction_overtaking_a_replay_raises_compacted(store):
    for index in range(1200):
        await store.create(f"/c/{index}", b"x")
    watch = store.watch("/c/", 0)
    await take(watch, 1)
    await store.compact(store.revision - 200)
    with pytest.raises(base.Compacted):
        async for _ in watch:
            pass


# --- SQLite specifics ---------------------------------------------------------------------


async def test_sqlite_reopen_keeps_data_revision_and_compaction(tmp_path):
    path = str(tmp_path / "state.db")
    first = sqlite.SQLiteStore(path)
    await first.start()
    await write_history(first)
    await first.compact(3)
    listed = await first.list("")
    history = await take(first.watch("", 3), 3)
    await first.stop()

    second = sqlite.SQLiteStore(path)
    await second.start()
    assert (second.revision, second.compacted_revision) == (6, 3)
    assert await second.list("") == listed
    assert await take(second.watch("", 3), 3) == history
    with pytest.raises(base.Compacted):
        second.watch("", 2)
    assert await second.update("/registry/pods/b", b"b2") == base.KeyValue("/registry/pods/b", b"b2", 4, 7)
    await second.stop()


async def test_sqlite_revision_survives_compacting_away_the_newest_rows(tmp_path):
    path = str(tmp_path / "state.db")
    first = sqlite.SQLiteStore(path)
    await first.start()
    await first.create("/k", b"1")
    await first.delete("/k")
    await first.compact(2)
    await first.stop()

    second = sqlite.SQLiteStore(path)
    await second.start()
    assert (second.revision, second.compacted_revision) == (2, 2)
    assert (await second.create("/k", b"2")).mod_revision == 3
    await second.stop()


async def test_sqlite_compaction_deletes_superseded_rows_and_delete_markers(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite, "COMPACT_STEP", 2)  # several compaction transactions
    path = str(tmp_path / "state.db")
    store = sqlite.SQLiteStore(path)
    await store.start()
    await write_history(store)
    await store.update("/registry/pods/b", b"b2")  # 7
    await store.compact(6)
    await store.stop()
    with sqlite3.connect(path) as conn:
        kept = [row[0] for row in conn.execute("SELECT revision FROM log ORDER BY revision")]
    # 1 and 3 are superseded pod a versions, 5 its delete marker, 2 superseded by 6.
    assert kept == [4, 6, 7]


def test_open_store_kinds(tmp_path):
    assert isinstance(store_pkg.open_store("memory", None), memory.MemoryStore)
    opened = store_pkg.open_store("sqlite", str(tmp_path / "data"))
    assert isinstance(opened, sqlite.SQLiteStore)
    assert opened.path == str(tmp_path / "data" / "state.db")
    assert (tmp_path / "data").is_dir()
    with pytest.raises(ValueError, match="needs a data directory"):
        store_pkg.open_store("sqlite", None)
    with pytest.raises(ValueError, match="unknown store kind 'etcd3'"):
        store_pkg.open_store("etcd3", None)
    on_etcd = store_pkg.open_store("etcd", None, ["https://127.0.0.1:2379/", "https://127.0.0.2:2379"])
    assert isinstance(on_etcd, etcd.EtcdStore)
    assert on_etcd.endpoints == ["https://127.0.0.1:2379", "https://127.0.0.2:2379"]
    with pytest.raises(ValueError, match="needs --etcd-servers"):
        store_pkg.open_store("etcd", None)


# --- the two stores agree -----------------------------------------------------------------

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["create", "create_all", "update", "delete", "compact"]),
        st.sampled_from(["/a/1", "/a/2", "/a/10", "/b/1"]),
        st.binary(max_size=4),
        st.one_of(st.none(), st.integers(min_value=0, max_value=12)),
    ),
    max_size=30,
)


async def apply(store, operations):
    outcomes = []
    for name, key, value, revision in operations:
        try:
            if name == "create":
                outcomes.append(await store.create(key, value))
            elif name == "create_all":
                outcomes.append(await store.create_all([(key + "/x", value), (key, value)]))
            elif name == "update":
                outcomes.append(await store.update(key, value, revision))
            elif name == "delete":
                outcomes.append(await store.delete(key, revision))
            else:
                outcomes.append(await store.compact(min(revision or 0, store.revision)))
        except base.StoreError as error:
            outcomes.append(type(error))
    replay = await take(store.watch("", store.compacted_revision), store.revision - store.compacted_revision)
    return outcomes, await store.list(""), await store.list("/a/1"), store.revision, replay


@settings(max_examples=40, deadline=None)
@given(OPERATIONS)
def test_memory_and_sqlite_agree(operations):
    async def run():
        with tempfile.TemporaryDirectory() as data_dir:
            results = []
            for kind in KINDS:
                store = store_pkg.open_store(kind, data_dir)
                await store.start()
                results.append(await apply(store, operations))
                await store.stop()
            return results

    in_memory, on_disk = asyncio.run(run())
    assert in_memory == on_disk


async def test_large_values_are_stored_listed_and_watched(store):
    """Values up to etcd's default request limit (1.5 MiB; a Kubernetes object may be 1 MiB):
    a watch delivers them whole, in one event each."""
    watch = store.watch("/big/", store.revision)
    values = [bytes([65 + index]) * (1024 * 1024) for index in range(3)]
    created = [await store.create(f"/big/{index}", value) for index, value in enumerate(values)]
    assert await take(watch, 3) == [base.Event("PUT", kv, None) for kv in created]
    assert [kv.value for kv in (await store.list("/big/"))[0]] == values
