"""Ending asyncio tasks a component started: cancel, then wait until each has really ended."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(*tasks: asyncio.Task | None) -> None:
    """Cancel every task given (None is skipped), then await each; what they raise on the way
    out (the cancellation, or an error of their own) is theirs and is not passed on."""
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    for task in live:
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
