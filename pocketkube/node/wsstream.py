"""Upgraded connections on aiohttp's server side, beyond what web.WebSocketResponse does.

Owns `ws_byte_stream` (the payloads of a WebSocket's binary messages as one byte stream,
for SPDY tunnelled over WebSocket); taking over a connection after a 101 (SPDY upgrades) is
core.upgrade.hijack.
WebSocket framing itself (RFC 6455, pings, close handshake) is aiohttp's WebSocketResponse.
"""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

READ_LIMIT = 1 << 20


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
