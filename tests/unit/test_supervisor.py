"""Supervisor: components start in order and stop in reverse; one whose start() fails half-way
is stopped too (it may hold a store or sockets), then those started before it."""

from __future__ import annotations

import asyncio

import pytest

from pocketkube.cli.supervisor import Supervisor


class Recorded:
    def __init__(self, name: str, log: list[str], fail_start: bool = False, fail_stop: bool = False):
        self.name, self.log, self.fail_start, self.fail_stop = name, log, fail_start, fail_stop

    async def start(self) -> None:
        self.log.append(f"start {self.name}")
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError(f"{self.name} cannot stop")


def test_a_component_failing_half_way_is_stopped_then_the_ones_before_it():
    log: list[str] = []

    async def run():
        sup = Supervisor()
        await sup.start(Recorded("store", log))
        await sup.start(Recorded("api", log, fail_stop=True))
        with pytest.raises(RuntimeError, match="agent cannot start"):
            await sup.start(Recorded("agent", log, fail_start=True))
        assert sup.started == []

    asyncio.run(run())
    assert log == ["start store", "start api", "start agent", "stop agent", "stop api", "stop store"]


def test_stop_is_in_reverse_order():
    log: list[str] = []

    async def run():
        sup = Supervisor()
        for name in ("a", "b", "c"):
            await sup.start(Recorded(name, log))
        await sup.stop()

    asyncio.run(run())
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
