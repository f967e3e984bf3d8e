"""SPDY/3.1 server framing: the dictionary, header blocks, and a connection driven frame by frame."""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from pocketkube.node import spdy


class Client:
    """The client's half of the header compression, and frame helpers."""

    def __init__(self) -> None:
        self.deflate = zlib.compressobj(zdict=spdy.SPDY3_DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=spdy.SPDY3_DICTIONARY)

    def syn_stream(self, stream_id: int, headers: dict[str, str], flags: int = 0) -> bytes:
        block = self.deflate.compress(spdy.encode_header_block(headers)) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        return spdy.control_frame(spdy.SYN_STREAM, flags, struct.pack(">IIBB", stream_id, 0, 0, 0) + block)


def parse_frames(data: bytes) -> list[tuple]:
    """(control?, type or stream id, flags, payload) for each frame in data."""
    frames, pos = [], 0
    while pos < len(data):
        word, flags_len = struct.unpack_from(">II", data, pos)
        length = flags_len & 0xFFFFFF
        payload = data[pos + 8:pos + 8 + length]
        if word & 0x80000000:
            frames.append((True, word & 0xFFFF, flags_len >> 24, payload))
        else:
            frames.append((False, word, flags_len >> 24, payload))
        pos += 8 + length
    return frames


def test_dictionary_is_the_spdy3_one():
    d = spdy.SPDY3_DICTIONARY
    assert len(d) == 1423
    assert d.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post")
    assert b"\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url" in d
    assert d.endswith(b"charset=utf-8charset=iso-8859-1,utf-,*,enq=0.")


@pytest.mark.parametrize("headers", [
    {},
    {"streamtype": "error", "port": "8080", "requestid": "0"},
    {"streamtype": "data", "x": "a\x00b"},
])
def test_header_blocks_round_trip_across_one_zlib_context(headers):
    server, client = spdy.HeaderCodec(), Client()
    for _ in range(3):  # the context carries over from block to block
        frame = client.syn_stream(1, headers)
        assert server.decode(frame[18:]) == headers


def test_corrupt_header_block_is_a_protocol_error():
    with pytest.raises(spdy.ProtocolError):
        spdy.HeaderCodec().decode(b"not zlib at all")


async def serve(frames: bytes):
    """Run a connection over the given client bytes; returns (sent frames, streams)."""
    reader = asyncio.StreamReader()
    reader.feed_data(frames)
    reader.feed_eof()
    sent = bytearray()
    streams: list[spdy.SpdyStream] = []

    async def send(data: bytes) -> None:
        sent.extend(data)

    conn = spdy.SpdyConnection(reader, send, streams.append)
    await conn.serve()
    return parse_frames(bytes(sent)), streams


async def test_streams_are_replied_and_get_their_data():
    c = Client()
    frames, streams = await serve(
        c.syn_stream(1, {"streamtype": "error", "requestid": "7"}, flags=spdy.FLAG_FIN)
        + c.syn_stream(3, {"streamtype": "data", "requestid": "7", "port": "80"})
        + spdy.data_frame(3, 0, b"GET / ") + spdy.data_frame(3, spdy.FLAG_FIN, b"HTTP/1.1"))
    assert [s.headers["streamtype"] for s in streams] == ["error", "data"]
    replies = [f for f in frames if f[0] and f[1] == spdy.SYN_REPLY]
    assert [struct.unpack(">I", r[3][:4])[0] for r in replies] == [1, 3]
    for reply in replies:  # an empty header block, compressed in the server's own context
        assert spdy.decode_header_block(c.inflate.decompress(reply[3][4:])) == {}
    assert await streams[0].read() is None  # FIN on SYN_STREAM: the client sends nothing
    assert [await streams[1].read() for _ in range(3)] == [b"GET / ", b"HTTP/1.1", None]


async def test_ping_is_echoed_and_settings_ignored():
    frames, _ = await serve(spdy.control_frame(spdy.SETTINGS, 0, struct.pack(">I", 0))
                            + spdy.control_frame(spdy.PING, 0, struct.pack(">I", 5)))
    assert frames == [(True, spdy.PING, 0, struct.pack(">I", 5))]


async def test_reset_and_connection_end_close_streams():
    c = Client()
    _, streams = await serve(c.syn_stream(1, {"streamtype": "stdin"}) + c.syn_stream(3, {"streamtype": "stdout"})
                             + spdy.control_frame(spdy.RST_STREAM, 0, struct.pack(">II", 1, 5)))
    assert await streams[0].read() is None
    assert streams[0].local_closed
    assert await streams[1].read() is None  # the connection ended under it


async def test_stream_writes_are_data_frames_and_close_is_fin():
    c = Client()
    reader = asyncio.StreamReader()
    sent = bytearray()

    async def send(data: bytes) -> None:
        sent.extend(data)

    streams: list[spdy.SpdyStream] = []
    conn = spdy.SpdyConnection(reader, send, streams.append)
    serving = asyncio.create_task(conn.serve())
    reader.feed_data(c.syn_stream(1, {"streamtype": "stdout"}))
    while not streams:
        await asyncio.sleep(0)
    sent.clear()
    await streams[0].write(b"x" * (spdy.MAX_DATA + 1))
    await streams[0].close()
    await streams[0].write(b"late")  # after close: dropped
    reader.feed_eof()
    await serving
    await streams[0].conn.send(spdy.data_frame(1, 0, b"after the end"))  # the connection is gone: dropped
    frames = parse_frames(bytes(sent))
    assert [(f[1], f[2], len(f[3])) for f in frames] == [(1, 0, spdy.MAX_DATA), (1, 0, 1), (1, spdy.FLAG_FIN, 0)]


async def test_wrong_version_ends_the_connection():
    bad = struct.pack(">HHI", 0x8000 | 2, spdy.PING, 4) + struct.pack(">I", 1)
    frames, _ = await serve(bad)
    assert frames == []
