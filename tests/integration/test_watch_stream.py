"""A watch stream over real HTTPS to an in-process API server: bookmarks arrive in line with
the events (a bookmark's resourceVersion is never ahead of an event sent after it),
timeoutSeconds ends the stream after the events it had to send, and watchers of one event each
get the form they asked for."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import orjson
import pytest

from pocketkube.apiserver import handlers
from pocketkube.apiserver.server import APIServer


@pytest.fixture
def api(tmp_path, monkeypatch):
    monkeypatch.setattr(handlers, "BOOKMARK_INTERVAL", 0.05)
    loop = asyncio.new_event_loop()
    server = APIServer(str(tmp_path), port=0, datastore="memory")
    loop.run_until_complete(server.start())
    try:
        yield loop, server
    finally:
        loop.run_until_complete(server.stop())
        loop.close()


async def _session(server: APIServer) -> aiohttp.ClientSession:
    ctx = ssl.create_default_context(cafile=server.pki.ca_cert)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx),
                                 headers={"Authorization": f"Bearer {server.token}"})


async def _create(s: aiohttp.ClientSession, url: str, name: str) -> None:
    async with s.post(f"{url}/api/v1/namespaces/default/configmaps",
                      data=orjson.dumps({"metadata": {"name": name}}),
                      headers={"Content-Type": "application/json"}) as r:
        assert r.status == 201, await r.text()


def test_bookmarks_come_in_line_with_the_events(api):
    loop, server = api

    async def run() -> list[dict]:
        async with await _session(server) as s:
            url = f"{server.url}/api/v1/namespaces/default/configmaps?watch=true&allowWatchBookmarks=true"
            seen: list[dict] = []
            async with s.get(url) as r:
                assert r.status == 200

                async def writer():
                    for i in range(40):
                        await _create(s, server.url, f"c{i}")
                        await asyncio.sleep(0.01)

                task = asyncio.create_task(writer())
                async for line in r.content:
                    seen.append(orjson.loads(line))
                    added = sum(ev["type"] == "ADDED" for ev in seen)
                    if added == 40 and seen[-1]["type"] == "BOOKMARK":
                        break
                await task
            return seen

    events = loop.run_until_complete(asyncio.wait_for(run(), 60))
    bookmarks = [ev for ev in events if ev["type"] == "BOOKMARK"]
    assert bookmarks, "no BOOKMARK in the stream"
    for ev in bookmarks:
        assert ev["object"]["kind"] == "ConfigMap" and ev["object"]["apiVersion"] == "v1"
    newest = 0
    for ev in events:
        rv = int(ev["object"]["metadata"]["resourceVersion"])
        if ev["type"] == "ADDED":
            assert rv > newest, f"an event at {rv} after a bookmark or event at {newest}"
        else:
            assert rv >= newest, f"a bookmark at {rv} behind what was sent ({newest})"
        newest = rv
    last_added = max(int(ev["object"]["metadata"]["resourceVersion"]) for ev in events if ev["type"] == "ADDED")
    assert int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) >= last_added


def test_timeout_seconds_ends_the_stream(api):
    loop, server = api

    async def run() -> list[dict]:
        async with await _session(server) as s:
            await _create(s, server.url, "before")
            url = f"{server.url}/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1&resourceVersion=0"
            async with s.get(url) as r:
                return [orjson.loads(line) async for line in r.content]  # ends when the server ends it

    events = loop.run_until_complete(asyncio.wait_for(run(), 60))
    assert [(ev["type"], ev["object"]["metadata"]["name"]) for ev in events] == [("ADDED", "before")]


def test_watchers_of_one_event_each_get_their_own_form(api):
    """Watchers of one event each get it in the form they asked for: two plain v1 watchers the
    same lines, an events.k8s.io/v1 watcher the converted Event, a field-selected watcher an
    ADDED when the object starts matching, a Table watcher rows."""
    loop, server = api
    core = f"{server.url}/api/v1/namespaces/default/events?watch=true&resourceVersion=1"
    group = f"{server.url}/apis/events.k8s.io/v1/namespaces/default/events?watch=true&resourceVersion=1"
    selected = f"{server.url}/api/v1/namespaces/default/events?watch=true&resourceVersion=1&fieldSelector=reason%3DLater"
    event = {"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
             "reason": "First", "message": "m", "type": "Normal"}

    async def lines(s: aiohttp.ClientSession, url: str, want: int, headers=None) -> list[dict]:
        out = []
        async with s.get(url, headers=headers or {}) as r:
            assert r.status == 200
            async for line in r.content:
                out.append(orjson.loads(line))
                if len(out) == want:
                    return out
        return out

    async def run():
        async with await _session(server) as s:
            watches = [asyncio.create_task(lines(s, core, 2)), asyncio.create_task(lines(s, core, 2)),
                       asyncio.create_task(lines(s, group, 2)), asyncio.create_task(lines(s, selected, 1)),
                       asyncio.create_task(lines(s, core, 2, {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}))]
            await asyncio.sleep(0.3)
            async with s.post(f"{server.url}/api/v1/namespaces/default/events", data=orjson.dumps(event),
                              headers={"Content-Type": "application/json"}) as r:
                assert r.status == 201, await r.text()
            async with s.patch(f"{server.url}/api/v1/namespaces/default/events/e1",
                               data=orjson.dumps({"reason": "Later"}),
                               headers={"Content-Type": "application/merge-patch+json"}) as r:
                assert r.status == 200, await r.text()
            return await asyncio.wait_for(asyncio.gather(*watches), 30)

    first, second, grouped, picked, table = loop.run_until_complete(run())
    assert first == second
    assert [ev["type"] for ev in first] == ["ADDED", "MODIFIED"]
    assert all(ev["object"]["apiVersion"] == "v1" and ev["object"]["kind"] == "Event" for ev in first)
    assert [ev["object"]["reason"] for ev in first] == ["First", "Later"]
    assert [ev["type"] for ev in grouped] == ["ADDED", "MODIFIED"]
    assert all(ev["object"]["apiVersion"] == "events.k8s.io/v1" for ev in grouped)
    assert grouped[1]["object"]["reason"] == "Later" and "involvedObject" not in grouped[1]["object"]
    assert grouped[1]["object"]["regarding"]["name"] == "p"
    assert [ev["type"] for ev in picked] == ["ADDED"] and picked[0]["object"]["reason"] == "Later"
    assert [ev["object"]["kind"] for ev in table] == ["Table", "Table"]
