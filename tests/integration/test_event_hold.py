"""EventRecorder with a Hold (core/events.py): events wait while their source is busy, then go
out in the order they were recorded, with the time they were recorded at; flush() sends what
is held at once. Against an in-process API server (the real Event kind and its validation)."""

from __future__ import annotations

import asyncio

from pocketkube.apiserver.local import LocalTransport
from pocketkube.apiserver.server import APIServer
from pocketkube.core.client import Client
from pocketkube.core.events import EventRecorder, Hold

NEVER = 3600.0


def pod_ref(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"}}


async def events_of(client: Client) -> list[dict]:
    items = (await client.list("v1", "events", namespace="default"))["items"]
    return sorted((e for e in items if e["involvedObject"]["name"].startswith("held-")),
                  key=lambda e: e["metadata"]["name"])


async def test_held_events_wait_for_the_source_then_go_in_order(tmp_path):
    server = APIServer(str(tmp_path / "server"), port=0, datastore="memory")
    await server.start()
    client = Client(LocalTransport(server.handlers), field_manager="test")
    try:
        recorder = EventRecorder(client, "default-scheduler", hold=Hold(quiet=NEVER, patience=NEVER, at_once=2))
        recorder.busy()
        for i in range(5):
            recorder.event(pod_ref(f"held-{i}"), "Normal", "Scheduled", f"Successfully assigned default/held-{i}")
        for _ in range(20):  # the loop turns; a source busy a moment ago holds its events
            await asyncio.sleep(0)
        assert await events_of(client) == []

        await recorder.flush()
        events = await events_of(client)
        assert [e["involvedObject"]["name"] for e in events] == [f"held-{i}" for i in range(5)]
        assert all(e["reason"] == "Scheduled" and e["count"] == 1 and e["source"] == {"component": "default-scheduler"}
                   for e in events)
        assert all(e["firstTimestamp"] == e["lastTimestamp"] for e in events)

        # a quiet source's events go out on their own, and the same event again is counted
        recorder.hold = Hold(quiet=0.0, patience=NEVER)
        recorder.event(pod_ref("held-0"), "Normal", "Scheduled", "Successfully assigned default/held-0")
        for _ in range(200):
            events = await events_of(client)
            if events[0]["count"] == 2:
                break
            await asyncio.sleep(0.01)
        assert events[0]["count"] == 2 and len(events) == 5
        await recorder.flush()
    finally:
        await server.stop()


async def test_without_a_hold_events_go_at_once(tmp_path):
    server = APIServer(str(tmp_path / "server"), port=0, datastore="memory")
    await server.start()
    client = Client(LocalTransport(server.handlers), field_manager="test")
    try:
        recorder = EventRecorder(client, "kubelet", host="node-1")
        recorder.busy()  # means nothing without a hold
        recorder.event(pod_ref("held-now"), "Warning", "Failed", "Error: boom")
        await recorder.flush()
        (event,) = await events_of(client)
        assert (event["type"], event["reason"], event["source"]) == ("Warning", "Failed",
                                                                    {"component": "kubelet", "host": "node-1"})
    finally:
        await server.stop()
