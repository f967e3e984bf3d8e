"""etcd's v3 protobuf messages on the wire, for the handful of calls the etcd store makes.

The etcd store (store/etcd.py) calls etcd's gRPC API with raw bytes (grpcio, no serializers);
this module writes the requests and reads the answers, so neither the `protobuf` package nor
generated code is needed (docs/adr/0026). Field numbers are etcd's api/etcdserverpb/rpc.proto
and api/mvccpb/kv.proto.

The protobuf wire format used here: a message is a sequence of fields, each a varint tag
(field number << 3 | wire type) then its value: wire type 0 a varint (int64 in two's complement
over 64 bits, bool as 0/1, enums), wire type 2 a varint length then that many bytes (bytes,
strings, nested messages). Writers leave out proto3 defaults (0, False, b"") except inside a
oneof, where the field is the choice and is written even when zero. Readers skip fields they do
not know (wire types 1 and 5 are fixed 8 and 4 bytes), as protobuf readers do.
"""

from __future__ import annotations

from typing import NamedTuple

_VARINT = 0
_FIXED64 = 1
_LENGTH = 2
_FIXED32 = 5
_U64 = 1 << 64
_I64_SIGN = 1 << 63

# Compare.CompareTarget and Compare.CompareResult
VERSION = 0
CREATE = 1
MOD = 2
EQUAL = 0
GREATER = 1
# Compare's target_union field for each target
_COMPARE_VALUE_FIELD = {VERSION: 4, CREATE: 5, MOD: 6}
# RequestOp / ResponseOp oneof fields
RANGE = 1
PUT = 2
DELETE_RANGE = 3
# mvccpb.Event.EventType
EVENT_DELETE = 1


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


# ---- writing -------------------------------------------------------------------------------

_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if value < 0:
        value += _U64  # int64 in two's complement: ten bytes
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def _length(field: int, data: bytes) -> bytes:
    return b"".join((varint(field << 3 | _LENGTH), varint(len(data)), data))


def _message(*fields: tuple[int, int | bool | bytes]) -> bytes:
    """A message from (field number, value) pairs, proto3 defaults left out."""
    parts = []
    for field, value in fields:
        if not value:
            continue
        if isinstance(value, bytes):
            parts += (varint(field << 3 | _LENGTH), varint(len(value)), value)
        else:
            parts += (varint(field << 3 | _VARINT), varint(int(value)))
    return b"".join(parts)


def range_request(key: bytes, range_end: bytes = b"", limit: int = 0, revision: int = 0,
                  count_only: bool = False) -> bytes:
    return _message((1, key), (2, range_end), (3, limit), (4, revision), (9, count_only))


def put_request(key: bytes, value: bytes, prev_kv: bool = False) -> bytes:
    return _message((1, key), (2, value), (4, prev_kv))


def delete_range_request(key: bytes, range_end: bytes = b"", prev_kv: bool = False) -> bytes:
    return _message((1, key), (2, range_end), (3, prev_kv))


def compare(target: int, result: int, key: bytes, value: int) -> bytes:
    """A Compare of key's `target` (VERSION, CREATE or MOD) against `value` by `result`
    (EQUAL, GREATER); the value is target_union's choice, written even when 0."""
    field = _COMPARE_VALUE_FIELD[target]
    return b"".join((_message((1, result), (2, target), (3, key)), varint(field << 3 | _VARINT), varint(value)))


def txn_request(compares: list[bytes], success: list[tuple[int, bytes]], failure: list[tuple[int, bytes]]) -> bytes:
    """A TxnRequest; success and failure are (RANGE, PUT or DELETE_RANGE, that request) pairs."""
    parts = []
    for item in compares:
        parts += (b"\x0a", varint(len(item)), item)
    for field, operations in ((2, success), (3, failure)):
        for kind, request in operations:  # RequestOp{kind: request}, written without copying the request twice
            head = b"".join((varint(kind << 3 | _LENGTH), varint(len(request))))
            parts += (varint(field << 3 | _LENGTH), varint(len(head) + len(request)), head, request)
    return b"".join(parts)


def compaction_request(revision: int, physical: bool = False) -> bytes:
    return _message((1, revision), (2, physical))


def watch_create_request(key: bytes, range_end: bytes, start_revision: int, prev_kv: bool = False) -> bytes:
    """A WatchRequest holding a WatchCreateRequest."""
    return _length(1, _message((1, key), (2, range_end), (3, start_revision), (6, prev_kv)))


# ---- reading -------------------------------------------------------------------------------

def fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """Every (field number, value) of a message in order: an int for varints (int64 read as
    signed), bytes for length-delimited fields; fixed-width fields are skipped. (One loop with
    one-byte fast paths: this runs for every key-value etcd sends.)"""
    out: list[tuple[int, int | bytes]] = []
    append = out.append
    position, end = 0, len(data)
    while position < end:
        key = data[position]
        if key < 0x80:
            position += 1
        else:
            key, position = _read_varint(data, position)
        field, wire_type = key >> 3, key & 7
        if field == 0:
            raise WireError("field number 0")
        if wire_type == _LENGTH:
            if position < end and data[position] < 0x80:
                size = data[position]
                position += 1
            else:
                size, position = _read_varint(data, position)
            if position + size > end:
                raise WireError("a length-delimited field runs past the message's end")
            append((field, data[position:position + size]))
            position += size
        elif wire_type == _VARINT:
            if position < end and data[position] < 0x80:
                append((field, data[position]))
                position += 1
            else:
                value, position = _read_varint(data, position)
                append((field, value - _U64 if value & _I64_SIGN else value))
        elif wire_type == _FIXED64 or wire_type == _FIXED32:
            position += 8 if wire_type == _FIXED64 else 4
            if position > end:
                raise WireError("a fixed-width field runs past the message's end")
        else:
            raise WireError(f"unsupported wire type {wire_type} (field {field})")
    return out


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


class KV(NamedTuple):
    """mvccpb.KeyValue, the fields the store uses."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int


def key_value(data: bytes) -> KV:
    key = value = b""
    create_revision = mod_revision = 0
    for field, item in fields(data):
        if field == 1:
            key = item
        elif field == 2:
            create_revision = item
        elif field == 3:
            mod_revision = item
        elif field == 5:
            value = item
    return KV(key, value, create_revision, mod_revision)


def header_revision(data: bytes) -> int:
    """ResponseHeader.revision."""
    for field, item in fields(data):
        if field == 3:
            return item
    return 0


def response_revision(data: bytes) -> int:
    """The header revision of any response (every etcd response's field 1 is its header, which
    etcd writes first: then the rest is not read)."""
    if len(data) > 2 and data[0] == 0x0A and data[1] < 0x80:  # field 1, length-delimited, short
        return header_revision(data[2:2 + data[1]])
    for field, item in fields(data):
        if field == 1:
            return header_revision(item)
    return 0


class RangeResponse(NamedTuple):
    revision: int
    kvs: list[KV]
    more: bool
    count: int


def range_response(data: bytes) -> RangeResponse:
    revision = count = 0
    kvs: list[KV] = []
    more = False
    for field, item in fields(data):
        if field == 1:
            revision = header_revision(item)
        elif field == 2:
            kvs.append(key_value(item))
        elif field == 3:
            more = bool(item)
        elif field == 4:
            count = item
    return RangeResponse(revision, kvs, more, count)


class TxnResponse(NamedTuple):
    """`responses`: per operation, (RANGE, PUT or DELETE_RANGE, the key-values it answered:
    a range's kvs, a put's prev_kv, a delete's prev_kvs; empty when there were none)."""

    revision: int
    succeeded: bool
    responses: list[tuple[int, list[KV]]]


_KVS_FIELD = {RANGE: 2, PUT: 2, DELETE_RANGE: 3}  # RangeResponse.kvs, PutResponse.prev_kv, DeleteRangeResponse.prev_kvs


def txn_response(data: bytes) -> TxnResponse:
    revision = 0
    succeeded = False
    responses: list[tuple[int, list[KV]]] = []
    for field, item in fields(data):
        if field == 1:
            revision = header_revision(item)
        elif field == 2:
            succeeded = bool(item)
        elif field == 3:
            for kind, response in fields(item):
                wanted = _KVS_FIELD.get(kind)
                if wanted is not None:
                    responses.append((kind, [key_value(kv) for number, kv in fields(response)
                                             if number == wanted]))
    return TxnResponse(revision, succeeded, responses)


class Event(NamedTuple):
    """mvccpb.Event: `delete` for a DELETE (else a PUT); prev_kv when the watch asked for it."""

    delete: bool
    kv: KV
    prev_kv: KV | None


class WatchResponse(NamedTuple):
    revision: int
    watch_id: int
    created: bool
    canceled: bool
    compact_revision: int
    cancel_reason: str
    events: list[Event]


def watch_response(data: bytes) -> WatchResponse:
    revision = watch_id = compact_revision = 0
    created = canceled = False
    cancel_reason = ""
    events: list[Event] = []
    for field, item in fields(data):
        if field == 1:
            revision = header_revision(item)
        elif field == 2:
            watch_id = item
        elif field == 3:
            created = bool(item)
        elif field == 4:
            canceled = bool(item)
        elif field == 5:
            compact_revision = item
        elif field == 6:
            cancel_reason = bytes(item).decode(errors="replace")
        elif field == 11:
            events.append(_event(item))
    return WatchResponse(revision, watch_id, created, canceled, compact_revision, cancel_reason, events)


def _event(data: bytes) -> Event:
    delete = False
    kv = KV(b"", b"", 0, 0)
    prev: KV | None = None
    for field, item in fields(data):
        if field == 1:
            delete = item == EVENT_DELETE
        elif field == 2:
            kv = key_value(item)
        elif field == 3:
            prev = key_value(item)
    return Event(delete, kv, prev)
