"""The etcd store's endpoints (store/etcd.py over gRPC): one that refuses connections is passed
over without counting as a possibly-applied write, the unreachable case is named, and etcd's own
errors are told apart from the transport's. Against a real etcd (tests/etcdproc.py)."""

from __future__ import annotations

import os

import pytest

from pocketkube.store import base, etcd
from tests.etcdproc import etcd_missing, free_port


@etcd_missing
async def test_an_endpoint_refusing_connections_is_passed_over(etcd_server, tmp_path):
    missing_socket = etcd.UNIX + os.path.join(str(tmp_path), "nobody.sock:0")
    refused = f"http://127.0.0.1:{free_port()}"
    store = etcd.EtcdStore([missing_socket, refused, etcd_server.socket_url])
    await store.start()
    try:
        assert store._current == 2
        answer, retried = await store._call_counted(etcd._RANGE, etcd.etcdwire.range_request(b"/x"))
        assert retried is False  # nothing was sent to the dead endpoints: no write is ambiguous
        created = await store.create("/registry/configmaps/default/a", b"1")
        assert await store.get("/registry/configmaps/default/a") == created
        store._current = 0  # back to a dead endpoint first: a conditional write still goes through
        updated = await store.update("/registry/configmaps/default/a", b"2", created.mod_revision)
        assert updated.value == b"2" and updated.mod_revision > created.mod_revision
        with pytest.raises(base.RevisionMismatch):  # etcd's answer, not a transport failure
            await store.update("/registry/configmaps/default/a", b"3", created.mod_revision)
    finally:
        await store.stop()


@etcd_missing
async def test_no_endpoint_answering_is_named_not_reachable(monkeypatch, tmp_path):
    monkeypatch.setattr(etcd, "START_WAIT", 0.5)
    store = etcd.EtcdStore([f"http://127.0.0.1:{free_port()}", etcd.UNIX + str(tmp_path / "none.sock:0")])
    with pytest.raises(etcd.EtcdError, match="not reachable"):
        await store.start()


@etcd_missing
async def test_etcds_own_errors_come_back_as_they_are(etcd_server):
    store = etcd.EtcdStore([etcd_server.socket_url])
    await store.start()
    try:
        with pytest.raises(ValueError, match="future revision"):
            await store.compact(store.revision + 100)
        with pytest.raises(etcd.EtcdError, match="etcdserver: .*future revision"):
            await store._call(etcd._RANGE, etcd.etcdwire.range_request(b"/x", revision=store.revision + 100))
    finally:
        await store.stop()


def test_endpoint_urls_are_checked():
    with pytest.raises(ValueError, match="expected http"):
        etcd._channel("ftp://127.0.0.1:2379", etcd.TLSFiles())
