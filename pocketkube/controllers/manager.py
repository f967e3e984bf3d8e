"""Runs every controller in one place, over shared informers (kube-controller-manager).

A component in the DESIGN.md shape: `await start()` builds the controllers, starts the
shared informers, waits for them to sync, then starts the workers; `ready` is set then.
With `client_for(username)`, each controller gets a client acting as its own identity
(`Controller.username()`) while the shared informers use `client` (the controller manager's
own, which may list and watch everything).
"""

from __future__ import annotations

import asyncio
import logging

from typing import Callable

from pocketkube.controllers.base import Controller, Settings
from pocketkube.core.client import Client
from pocketkube.core.informer import InformerFactory

log = logging.getLogger(__name__)


def default_controllers() -> list[type[Controller]]:
    """Every controller pocketkube runs, in start order."""
    from pocketkube.controllers import registry

    return registry.CONTROLLERS


class ControllerManager:
    def __init__(self, client: Client, controllers: list[type[Controller]] | None = None,
                 settings: Settings | None = None, client_for: Callable[[str], Client] | None = None):
        self.client = client
        self.client_for = client_for
        self.settings = settings or Settings()
        self.informers = InformerFactory(client)
        self.controller_classes = controllers if controllers is not None else default_controllers()
        self.controllers: list[Controller] = []
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self.controllers = [cls(self.client_for(cls.username()) if self.client_for else self.client, self.informers,
                                self.settings) for cls in self.controller_classes]
        for c in self.controllers:
            c.setup()
        await self.informers.start()
        await self.informers.wait_synced()
        for c in self.controllers:
            await c.start()
        self.ready.set()
        log.info("controllers running: %s", ", ".join(c.name for c in self.controllers))

    async def stop(self) -> None:
        for c in reversed(self.controllers):
            await c.stop()
        await self.informers.stop()
