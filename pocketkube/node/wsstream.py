"""Upgraded connections on aiohttp's server side, beyond what web.WebSocketResponse does.

Owns `ws_byte_stream` (the payloads of a WebSocket's binary messages as one byte stream,
for SPDY tunnelled over WebSocket) and `ChannelCodec`, the framing of the channel
subprotocols (k8s.io/apiserver wsstream): `[channel byte][payload]`, or for the base64 forms
`['0'+channel][base64 payload]` in text messages; taking over a connection after a 101
(SPDY upgrades) is core.upgrade.hijack.
WebSocket framing itself (RFC 6455, pings, close handshake) is aiohttp's WebSocketResponse.
"""

from __future__ import annotations

import asyncio
import base64
import binascii

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


class ChannelCodec:
    """One WebSocket's channel framing, chosen by the negotiated subprotocol.

    As the kubelet's wsstream.Conn: a client message may be text or binary either way, a
    message for a channel out of range or badly encoded is dropped."""

    def __init__(self, protocol: str | None):
        self.base64 = "base64." in (protocol or "")

    def decode(self, msg) -> tuple[int, bytes] | None:
        """(channel, payload) of a received message, or None for one to ignore."""
        if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT) or not msg.data:
            return None
        data = msg.data.encode() if isinstance(msg.data, str) else msg.data
        if not self.base64:
            return data[0], data[1:]
        try:
            return data[0] - ord("0"), base64.b64decode(data[1:], validate=True)
        except (binascii.Error, ValueError):
            return None

    async def send(self, ws: web.WebSocketResponse, channel: int, data: bytes) -> None:
        if self.base64:
            await ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode())
        else:
            await ws.send_bytes(bytes([channel]) + data)
