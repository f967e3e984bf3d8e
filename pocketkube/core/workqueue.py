"""A work queue of keys, as client-go's rate-limited queue behaves.

A key is any hashable value: a "namespace/name" string, or a small frozen dataclass when a
component queues several kinds of work (the node agent: sync a pod, write its status, stop an
orphan), so two kinds never share a key.

A key is queued at most once at a time; a key being processed that is added again is
processed again after `done()`. Failed keys come back with per-key exponential backoff
(`add_rate_limited`), and `forget` resets it after a success. Workers never run the same
key concurrently.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Hashable


class WorkQueue:
    def __init__(self, base_delay: float = 0.005, max_delay: float = 30.0):
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self.shutting_down = False

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: Hashable) -> None:
        if self.shutting_down:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        old = self._timers.pop(key, None)
        loop = asyncio.get_running_loop()
        if old is not None:
            # keep the earlier of the two deadlines
            if old.when() <= loop.time() + delay:
                self._timers[key] = old
                return
            old.cancel()
        self._timers[key] = loop.call_later(delay, self._fire_timer, key)

    def _fire_timer(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: Hashable) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self.add_after(key, min(self.base_delay * (2 ** n), self.max_delay))

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def retries(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> Hashable:
        key = await self._queue.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def shutdown(self) -> None:
        self.shutting_down = True
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()

    async def run_worker(self, sync: Callable[[Hashable], Awaitable[None]], log: logging.Logger,
                         max_retries: int | None = None) -> None:
        """Take keys forever and `sync` them: success forgets the key's failures, failure
        puts it back with back-off (dropped after `max_retries`, when given)."""
        from pocketkube.core import errors

        while True:
            key = await self.get()
            try:
                await sync(key)
                self.forget(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                what = (f"{exc.code} {exc.reason}: {exc.message}" if isinstance(exc, errors.APIError)
                        else f"{exc.__class__.__name__}: {exc}")
                if max_retries is not None and self.retries(key) >= max_retries:
                    log.error("sync %s failed %d times, dropping: %s", key, max_retries, what)
                    self.forget(key)
                else:
                    conflict = isinstance(exc, errors.APIError) and exc.code == 409
                    log.log(logging.DEBUG if conflict else logging.INFO, "sync %s failed (will retry): %s",
                            key, what)
                    self.add_rate_limited(key)
            finally:
                self.done(key)
