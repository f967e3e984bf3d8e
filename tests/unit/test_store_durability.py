"""An acknowledged SQLiteStore write survives kill -9 of the writing process; an acknowledged
EtcdStore write survives kill -9 of etcd.

A child process creates keys in a loop and prints each key once its create() returned.
After a few hundred acknowledgements the test kills it with SIGKILL (by its PID), reopens
the file and checks that every acknowledged key is there with its value, and that the
revision continues from the last write that reached the file.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest

import pocketkube
from pocketkube.store import etcd, sqlite
from tests.etcdproc import etcd_missing

ACKNOWLEDGED_BEFORE_KILL = 300

WRITER = r"""
import asyncio, sys
from pocketkube.store import sqlite

async def main(path):
    store = sqlite.SQLiteStore(path)
    await store.start()
    index = 0
    while True:
        key = f"/registry/configmaps/default/cm-{index}"
        kv = await store.create(key, f"value-{index}".encode())
        if index % 3 == 0:
            kv = await store.update(key, f"updated-{index}".encode(), kv.mod_revision)
        sys.stdout.write(f"{key} {kv.mod_revision}\n")
        sys.stdout.flush()
        index += 1

asyncio.run(main(sys.argv[1]))
"""


def expected_value(key: str) -> bytes:
    index = int(key.rsplit("-", 1)[1])
    return (f"updated-{index}" if index % 3 == 0 else f"value-{index}").encode()


async def test_acknowledged_writes_survive_sigkill(tmp_path):
    path = str(tmp_path / "state.db")
    repo_root = str(pathlib.Path(pocketkube.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": repo_root}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    acknowledged: dict[str, int] = {}
    try:
        while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL:
            line = writer.stdout.readline()
            assert line, f"writer exited early: {writer.stderr.read()}"
            key, revision = line.split()
            acknowledged[key] = int(revision)
        os.kill(writer.pid, signal.SIGKILL)
        remaining, _ = writer.communicate(timeout=30)
    finally:
        if writer.poll() is None:
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait()
    assert writer.returncode == -signal.SIGKILL
    for line in remaining.splitlines(keepends=True):  # printed before the kill landed
        if not line.endswith("\n"):
            break  # cut by the kill: cannot be parsed reliably
        key, revision = line.split()
        acknowledged[key] = int(revision)

    store = sqlite.SQLiteStore(path)
    await store.start()
    try:
        for key, revision in acknowledged.items():
            kv = await store.get(key)
            assert kv is not None, f"acknowledged {key} was lost"
            assert (kv.value, kv.mod_revision) == (expected_value(key), revision)
        last_acknowledged = max(acknowledged.values())
        assert store.revision >= last_acknowledged
        next_write = await store.create("/registry/configmaps/default/after-restart", b"x")
        assert next_write.mod_revision == store.revision > last_acknowledged
    finally:
        await store.stop()


@etcd_missing
async def test_acknowledged_etcd_writes_survive_sigkill_of_etcd(etcd_server):
    """The etcd store: etcd is killed (SIGKILL, by PID) under a stream of acknowledged writes;
    after a restart on the same data every acknowledged write is there, writes go on above the
    last revision, and the store's watch of the keys reports the failure instead of hanging."""
    store = etcd.EtcdStore([etcd_server.socket_url])  # the socket is made again by the restarted etcd
    await store.start()
    watch = store.watch("/registry/configmaps/", store.revision)
    acknowledged: dict[str, tuple[bytes, int]] = {}
    try:
        for index in range(ACKNOWLEDGED_BEFORE_KILL):
            key = f"/registry/configmaps/default/cm-{index}"
            kv = await store.create(key, f"value-{index}".encode())
            acknowledged[key] = (kv.value, kv.mod_revision)
        etcd_server.kill()
        with pytest.raises(etcd.EtcdError, match="not reachable"):
            await store.create("/registry/configmaps/default/while-down", b"x")
        events = []
        with pytest.raises(etcd.EtcdError):
            async for event in watch:
                events.append(event.kv.key)
        assert set(events) <= set(acknowledged)
        etcd_server.start()
        for key, (value, revision) in acknowledged.items():
            kv = await store.get(key)
            assert kv is not None, f"acknowledged {key} was lost"
            assert (kv.value, kv.mod_revision) == (value, revision)
        last = max(revision for _, revision in acknowledged.values())
        after = await store.create("/registry/configmaps/default/after-restart", b"x")
        assert after.mod_revision > last
    finally:
        await store.stop()


@etcd_missing
async def test_etcd_store_over_tls_with_a_client_certificate(tmp_path, monkeypatch):
    """etcd as `pocketkube up` runs it: HTTPS, client certificates required (certs.make_etcd_pki).
    The store works with the API server's client certificate; without one etcd refuses it."""
    from pocketkube.apiserver import certs
    from tests.etcdproc import EtcdProcess

    pki = certs.make_etcd_pki(str(tmp_path / "pki"), ["127.0.0.1", "localhost"])
    server = EtcdProcess(str(tmp_path / "etcd"), pki=pki)
    try:
        store = etcd.EtcdStore([server.url], etcd.TLSFiles(pki.ca_cert, pki.client_cert, pki.client_key))
        await store.start()
        try:
            watch = store.watch("/registry/", store.revision)
            created = await store.create("/registry/secrets/default/s", b"x")
            assert (await watch.__anext__()).kv == created
            assert await store.get("/registry/secrets/default/s") == created
        finally:
            await store.stop()
        monkeypatch.setattr(etcd, "START_WAIT", 1.0)  # a refused handshake looks like an etcd still starting
        anonymous = etcd.EtcdStore([server.url], etcd.TLSFiles(pki.ca_cert))
        with pytest.raises(etcd.EtcdError):
            await anonymous.start()
    finally:
        server.stop()
