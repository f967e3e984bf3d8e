"""store/etcdwire.py: etcd's protobuf messages written and read by hand, against known bytes
(etcd 3.4's own answers and the encodings protobuf's rules give) and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pocketkube.store import etcdwire as wire


def tag(field: int, wire_type: int) -> bytes:
    return wire.varint(field << 3 | wire_type)


def length(field: int, data: bytes) -> bytes:
    return tag(field, 2) + wire.varint(len(data)) + data


def number(field: int, value: int) -> bytes:
    return tag(field, 0) + wire.varint(value)


def kv(key: bytes, value: bytes, create: int, mod: int, version: int = 1) -> bytes:
    """An mvccpb.KeyValue as etcd writes it (field order 1..5)."""
    return length(1, key) + number(2, create) + number(3, mod) + number(4, version) + length(5, value)


def header(revision: int) -> bytes:
    return length(1, number(1, 0x2D5D19A00AC54012) + number(2, 1) + number(3, revision) + number(4, 2))


# ---- writing -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "encoded"), [
    (0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
    (-1, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),  # int64 -1: ten bytes, as protobuf writes it
])
def test_varint_known_bytes(value, encoded):
    assert wire.varint(value) == encoded


def test_range_request_is_the_bytes_etcdctl_sends():
    # `etcdctl get "" --from-key --count-only`'s RangeRequest: key "\0", range_end "\0", count_only.
    assert wire.range_request(b"\0", b"\0", count_only=True) == b"\x0a\x01\x00\x12\x01\x00\x48\x01"
    # Defaults are left out; limit (3) and revision (4) are varints.
    assert wire.range_request(b"/a") == b"\x0a\x02/a"
    assert wire.range_request(b"/a", b"/b", 1000, 7) == b"\x0a\x02/a\x12\x02/b\x18\xe8\x07\x20\x07"


def test_compare_writes_its_oneof_value_even_when_zero():
    # target CREATE (1), result EQUAL (0: left out), key, create_revision (field 5) = 0 written.
    assert wire.compare(wire.CREATE, wire.EQUAL, b"k", 0) == b"\x10\x01\x1a\x01k\x28\x00"
    # result GREATER (1), target VERSION (0: left out), version (field 4) = 0.
    assert wire.compare(wire.VERSION, wire.GREATER, b"k", 0) == b"\x08\x01\x1a\x01k\x20\x00"
    # target MOD (2), mod_revision (field 6).
    assert wire.compare(wire.MOD, wire.EQUAL, b"k", 300) == b"\x10\x02\x1a\x01k\x30\xac\x02"


def test_txn_request_nests_each_operation_in_a_request_op():
    put = wire.put_request(b"k", b"v", prev_kv=True)
    assert put == b"\x0a\x01k\x12\x01v\x20\x01"
    get = wire.range_request(b"k")
    compare = wire.compare(wire.CREATE, wire.EQUAL, b"k", 0)
    assert wire.txn_request([compare], [(wire.PUT, put)], [(wire.RANGE, get)]) == (
        length(1, compare) + length(2, length(2, put)) + length(3, length(1, get)))


def test_delete_compaction_and_watch_requests():
    assert wire.delete_range_request(b"k", prev_kv=True) == b"\x0a\x01k\x18\x01"
    assert wire.compaction_request(5, physical=True) == b"\x08\x05\x10\x01"
    create = b"\x0a\x01/\x12\x010\x18\x03\x30\x01"  # key "/", range_end "0", start_revision 3, prev_kv
    assert wire.watch_create_request(b"/", b"0", 3, prev_kv=True) == b"\x0a" + bytes([len(create)]) + create


# ---- reading -----------------------------------------------------------------------------------

def test_reads_etcds_own_range_answer():
    # etcd 3.4.23's answer to the count-only request above on a fresh member: only its header
    # (cluster_id, member_id, revision 1, raft_term 2); count 0 is left out.
    answer = (b"\n\x19\x08\x92\x80\x95\xc5\x80\xcd\xd5\x87-\x10\xe1\xee\xab\xd2\xdd\xc8\xad\x9f\xfe\x01"
              b"\x18\x01 \x02")
    assert wire.response_revision(answer) == 1
    assert wire.range_response(answer) == wire.RangeResponse(1, [], False, 0)


def test_range_response_with_keys_and_more():
    answer = header(9) + length(2, kv(b"/a", b"x", 2, 3)) + length(2, kv(b"/b", b"", 4, 9)) + number(3, 1)
    assert wire.range_response(answer) == wire.RangeResponse(
        9, [wire.KV(b"/a", b"x", 2, 3), wire.KV(b"/b", b"", 4, 9)], True, 0)


def test_txn_response_gives_each_operations_key_values():
    put = length(2, header(7) + length(2, kv(b"k", b"old", 2, 5)))  # ResponseOp.response_put with prev_kv
    delete = length(3, header(7) + number(2, 1) + length(3, kv(b"d", b"gone", 3, 3)))
    empty_range = length(1, header(7))
    answer = header(7) + number(2, 1) + length(3, put) + length(3, delete) + length(3, empty_range)
    assert wire.txn_response(answer) == wire.TxnResponse(7, True, [
        (wire.PUT, [wire.KV(b"k", b"old", 2, 5)]),
        (wire.DELETE_RANGE, [wire.KV(b"d", b"gone", 3, 3)]),
        (wire.RANGE, []),
    ])
    assert wire.txn_response(header(8)) == wire.TxnResponse(8, False, [])


def test_watch_response_events():
    put = number(1, 0) + length(2, kv(b"/a", b"2", 2, 6)) + length(3, kv(b"/a", b"1", 2, 4))
    delete = number(1, wire.EVENT_DELETE) + length(2, length(1, b"/b") + number(3, 6))
    answer = header(6) + number(2, 0) + length(11, put) + length(11, delete)
    response = wire.watch_response(answer)
    assert (response.revision, response.created, response.canceled, response.compact_revision) == (6, False, False, 0)
    assert response.events == [
        wire.Event(False, wire.KV(b"/a", b"2", 2, 6), wire.KV(b"/a", b"1", 2, 4)),
        wire.Event(True, wire.KV(b"/b", b"", 0, 6), None),
    ]
    cancelled = wire.watch_response(header(9) + number(2, 1) + number(4, 1) + number(5, 5)
                                    + length(6, b"mvcc: required revision has been compacted"))
    assert (cancelled.watch_id, cancelled.canceled, cancelled.compact_revision, cancelled.cancel_reason) == \
        (1, True, 5, "mvcc: required revision has been compacted")


def test_unknown_fields_of_every_wire_type_are_skipped():
    fixed64 = tag(20, 1) + b"\x01" * 8
    fixed32 = tag(21, 5) + b"\x02" * 4
    answer = fixed64 + header(3) + fixed32 + length(22, b"later field") + number(23, 1) + length(2, kv(b"k", b"v", 2, 3))
    assert wire.range_response(answer) == wire.RangeResponse(3, [wire.KV(b"k", b"v", 2, 3)], False, 0)


@pytest.mark.parametrize("broken", [
    b"\x0a\x05ab",  # a length past the end
    b"\x08",  # a varint cut short
    b"\x08" + b"\xff" * 11,  # a varint of more than 64 bits
    b"\x0b",  # wire type 3 (groups): not in etcd's messages
    b"\x00\x01",  # field 0
    b"\x09\x01\x02",  # a fixed64 cut short
])
def test_malformed_messages_raise(broken):
    with pytest.raises(wire.WireError):
        wire.fields(broken)


@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_int64_round_trip(value):
    assert wire.fields(number(4, value)) == [(4, value)]


@given(st.binary(), st.binary(max_size=3000), st.integers(0, (1 << 63) - 1), st.integers(0, (1 << 63) - 1))
def test_key_value_round_trip(key, value, create, mod):
    assert wire.key_value(kv(key, value, create, mod)) == wire.KV(key, value, create, mod)


@given(st.binary(min_size=1), st.binary(), st.integers(0, 10**6), st.integers(0, 10**9))
def test_range_request_round_trip(key, range_end, limit, revision):
    assert dict(wire.fields(wire.range_request(key, range_end, limit, revision))) == {
        field: item for field, item in ((1, key), (2, range_end), (3, limit), (4, revision)) if item}
