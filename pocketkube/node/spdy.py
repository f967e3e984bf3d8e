"""SPDY/3.1 framing, server side: what kubectl's spdystream client needs and nothing more.

Owns the frame codec (control and DATA frames, the zlib-compressed header blocks with the
SPDY/3 dictionary) and `SpdyConnection`, which serves one connection: it answers every
SYN_STREAM with a SYN_REPLY, routes DATA to streams, echoes PINGs and ignores SETTINGS and
WINDOW_UPDATE (spdystream does no flow control). The byte stream comes from any
`asyncio.StreamReader` (a raw upgraded HTTP connection, or the payloads of WebSocket
messages when kubectl tunnels SPDY over WebSocket) and goes out through an async `send`.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from dataclasses import dataclass, field
from typing import Awaitable, Callable

log = logging.getLogger(__name__)

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, NOOP, PING, GOAWAY, HEADERS, WINDOW_UPDATE = range(1, 10)
FLAG_FIN = 0x01
MAX_DATA = 32 * 1024  # bytes per DATA frame we send
MAX_FRAME = 1 << 24

# The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00 section 2.6.10.1,
# the same bytes as moby/spdystream spdy/dictionary.go): length-prefixed header names and
# values, then a run of common value fragments.
_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
    "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
    "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
)
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
SPDY3_DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS) \
    + _DICTIONARY_TAIL.encode()


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3."""


# ---- codec -----------------------------------------------------------------------------

def control_frame(frame_type: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, frame_type, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(payload)) + payload


def encode_header_block(headers: dict[str, str]) -> bytes:
    """The uncompressed name/value block: u32 count, then u32-length-prefixed names and values."""
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        n, v = name.lower().encode(), value.encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def decode_header_block(block: bytes) -> dict[str, str]:
    """Parse a decompressed name/value block; several values of one name are NUL-joined."""
    try:
        (count,) = struct.unpack_from(">I", block, 0)
        pos, headers = 4, {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
            (v,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4:pos + 4 + v].decode()
            pos += 4 + v
            headers[name.lower()] = value
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"bad header block: {exc}") from exc
    return headers


class HeaderCodec:
    """One zlib context per direction per connection, as SPDY/3 requires."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(zdict=SPDY3_DICTIONARY)
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8,
                                         zlib.Z_DEFAULT_STRATEGY, SPDY3_DICTIONARY)

    def decode(self, compressed: bytes) -> dict[str, str]:
        try:
            return decode_header_block(self._inflate.decompress(compressed))
        except zlib.error as exc:
            raise ProtocolError(f"bad compressed header block: {exc}") from exc

    def encode(self, headers: dict[str, str]) -> bytes:
        return self._deflate.compress(encode_header_block(headers)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)


# ---- connection ------------------------------------------------------------------------

@dataclass(eq=False)
class SpdyStream:
    """One client-initiated stream: its headers, the data the client sends, and a writer."""

    id: int
    headers: dict[str, str]
    conn: "SpdyConnection"
    incoming: asyncio.Queue = field(default_factory=asyncio.Queue)  # bytes; None at FIN/reset
    remote_closed: bool = False
    local_closed: bool = False

    async def read(self) -> bytes | None:
        """The next chunk the client sent, or None once it half-closed (or reset) the stream."""
        return await self.incoming.get()

    async def write(self, data: bytes) -> None:
        if self.local_closed:
            return
        for i in range(0, len(data), MAX_DATA):
            await self.conn.send(data_frame(self.id, 0, data[i:i + MAX_DATA]))

    async def close(self) -> None:
        """Half-close our side (an empty DATA frame with FIN)."""
        if not self.local_closed:
            self.local_closed = True
            await self.conn.send(data_frame(self.id, FLAG_FIN, b""))

    def _end_remote(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self.incoming.put_nowait(None)


class SpdyConnection:
    """Serves one SPDY/3.1 connection; `on_stream` is called for every new stream."""

    def __init__(self, reader: asyncio.StreamReader, send: Callable[[bytes], Awaitable[None]],
                 on_stream: Callable[[SpdyStream], None]):
        self._reader = reader
        self._send = send
        self._on_stream = on_stream
        self._codec = HeaderCodec()
        self._lock = asyncio.Lock()
        self.streams: dict[int, SpdyStream] = {}
        self.closed = asyncio.Event()
        self._last_stream = 0

    async def send(self, frame: bytes) -> None:
        if self.closed.is_set():
            return
        async with self._lock:
            try:
                await self._send(frame)
            except (ConnectionError, RuntimeError):
                self._mark_closed()

    async def serve(self) -> None:
        """Read frames until the client goes away; every stream then sees end of input."""
        try:
            while True:
                try:
                    head = await self._reader.readexactly(8)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                word, flags_len = struct.unpack(">II", head)
                flags, length = flags_len >> 24, flags_len & 0xFFFFFF
                payload = await self._reader.readexactly(length) if length else b""
                if word & 0x80000000:
                    await self._control(word >> 16 & 0x7FFF, word & 0xFFFF, flags, payload)
                else:
                    self._data(word & 0x7FFFFFFF, flags, payload)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        except ProtocolError as exc:
            log.info("closing SPDY connection: %s", exc)
        finally:
            self._mark_closed()

    async def goaway(self) -> None:
        await self.send(control_frame(GOAWAY, 0, struct.pack(">II", self._last_stream, 0)))

    def _mark_closed(self) -> None:
        self.closed.set()
        for stream in self.streams.values():
            stream._end_remote()

    async def _control(self, version: int, frame_type: int, flags: int, payload: bytes) -> None:
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        if frame_type == SYN_STREAM:
            if len(payload) < 10:
                raise ProtocolError("short SYN_STREAM")
            stream_id = struct.unpack_from(">I", payload, 0)[0] & 0x7FFFFFFF
            headers = self._codec.decode(payload[10:])
            await self._new_stream(stream_id, headers, flags)
        elif frame_type == PING:
            await self.send(control_frame(PING, 0, payload))
        elif frame_type == RST_STREAM:
            stream = self.streams.get(struct.unpack_from(">I", payload, 0)[0] & 0x7FFFFFFF)
            if stream:
                stream.local_closed = True
                stream._end_remote()
        elif frame_type == GOAWAY:
            raise asyncio.IncompleteReadError(b"", None)
        elif frame_type in (SYN_REPLY, HEADERS):
            self._codec.decode(payload[4:])  # keep the zlib context in step; nothing to do with it
        # SETTINGS, NOOP, WINDOW_UPDATE: spdystream does no flow control, neither do we

    async def _new_stream(self, stream_id: int, headers: dict[str, str], flags: int) -> None:
        stream = SpdyStream(stream_id, headers, self)
        self.streams[stream_id] = stream
        self._last_stream = max(self._last_stream, stream_id)
        if flags & FLAG_FIN:
            stream._end_remote()
        await self.send(control_frame(SYN_REPLY, 0, struct.pack(">I", stream_id) + self._codec.encode({})))
        self._on_stream(stream)

    def _data(self, stream_id: int, flags: int, payload: bytes) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.remote_closed:
            return
        if payload:
            stream.incoming.put_nowait(payload)
        if flags & FLAG_FIN:
            stream._end_remote()
