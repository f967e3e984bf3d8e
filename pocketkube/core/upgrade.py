"""Taking over an HTTP connection on aiohttp's server side after answering 101: for the
SPDY/3.1 upgrades aiohttp does not know (the agent's exec, attach and port-forward) and for
the API server relaying an upgrade to the agent. WebSocket upgrades stay aiohttp's own.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Mapping

from aiohttp import web


class _Feed:
    """What aiohttp's protocol calls with the bytes that follow an accepted upgrade."""

    def __init__(self, reader: asyncio.StreamReader):
        self._reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self._reader.feed_eof()


async def hijack(request: web.Request, headers: Mapping[str, str], limit: int
                 ) -> tuple[asyncio.StreamReader, Callable[[bytes], Awaitable[None]], web.StreamResponse]:
    """Send `101 Switching Protocols` with `headers`, then own the connection's bytes.

    Returns (reader of what the client sends next, buffered up to `limit`, async send, the
    response to return from the handler once done: aiohttp then closes the connection)."""
    resp = web.StreamResponse(status=101, headers=headers)
    resp.force_close()
    await resp.prepare(request)
    reader = asyncio.StreamReader(limit=limit)
    if request.transport is not None:
        reader.set_transport(request.transport)
    request.protocol.set_parser(_Feed(reader))  # type: ignore[arg-type]
    return reader, resp.write, resp
