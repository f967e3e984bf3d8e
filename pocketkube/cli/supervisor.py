"""Starts components in dependency order and stops them in reverse (DESIGN.md: one way to
start a component: `async start()`, `async stop()`, a `ready` event)."""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Component(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Supervisor:
    def __init__(self) -> None:
        self.started: list[Component] = []

    async def start(self, component: Component) -> Component:
        """Start one component; on failure everything started so far is stopped."""
        try:
            await component.start()
        except BaseException:
            await self.stop()
            raise
        self.started.append(component)
        return component

    async def stop(self) -> None:
        while self.started:
            component = self.started.pop()
            try:
                await component.stop()
            except Exception:
                log.exception("stopping %s failed", type(component).__name__)
