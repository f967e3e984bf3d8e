"""Upgraded connections on aiohttp's server side, beyond what web.WebSocketResponse does.

Owns `hijack` (answer 101 and take over the raw byte stream of the connection, for the
SPDY/3.1 upgrades aiohttp does not know) and `ws_byte_stream` (the payloads of a
WebSocket's binary messages as one byte stream, for SPDY tunnelled over WebSocket).
WebSocket framing itself (RFC 6455, pings, close handshake) is aiohttp's WebSocketResponse.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Mapping

from aiohttp import WSMsgType, web

READ_LIMIT = 1 << 20


class _Feed:
    """What aiohttp's protocol calls with the bytes that follow an accepted upgrade."""

    def __init__(self, reader: asyncio.StreamReader):
        self._reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self._reader.feed_eof()


async def hijack(request: web.Request, headers: Mapping[str, str]
                 ) -> tuple[asyncio.StreamReader, Callable[[bytes], Awaitable[None]], web.StreamResponse]:
    """Send `101 Switching Protocols` with `headers`, then own the connection's bytes.

    Returns (reader of what the client sends next, async send, the response to return from
    the handler once done: aiohttp then closes the connection)."""
    resp = web.StreamResponse(status=101, headers=headers)
    resp.force_close()
    await resp.prepare(request)
    reader = asyncio.StreamReader(limit=READ_LIMIT)
    if request.transport is not None:
        reader.set_transport(request.transport)
    request.protocol.set_parser(_Feed(reader))  # type: ignore[arg-type]
    return reader, resp.write, resp


def ws_byte_stream(ws: web.WebSocketResponse) -> tuple[asyncio.StreamReader, asyncio.Task]:
    """Concatenate the binary messages a WebSocket receives into a StreamReader."""
    reader = asyncio.StreamReader(limit=READ_LIMIT)

    async def pump() -> None:
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    reader.feed_data(msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        finally:
            reader.feed_eof()

    return reader, asyncio.create_task(pump())
