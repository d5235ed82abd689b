"""The wire format: encoding at the sender, strict decoding at the receiver."""

from __future__ import annotations

import msgpack
import pytest

from taskmesh.errors import (
    ActorNotFound,
    AskTimeout,
    InvalidMessage,
    MailboxFull,
    MalformedFrame,
    MessageTooLarge,
    PeerUnreachable,
    RemoteError,
)
from taskmesh.transport.envelope import (
    ASK,
    PROTOCOL_VERSION,
    TELL,
    decode_frame,
    encode_envelope,
    encode_failure,
    error_from_failure,
    frame_prefix,
    join_frame,
)


def test_a_batch_of_envelopes_round_trips_through_one_frame() -> None:
    envelopes = [encode_envelope(TELL, "a", 0, None, {"i": i}, 1 << 20) for i in range(40)]
    envelopes.append(encode_envelope(ASK, "b", 7, 1500, [b"\x00", 1.5, None], 1 << 20))
    frame = decode_frame(join_frame(frame_prefix("tcp://h:1"), envelopes))
    assert frame[:2] == [PROTOCOL_VERSION, "tcp://h:1"]
    assert frame[2] == [TELL, "a", 0, None, {"i": 0}]
    assert frame[-1] == [ASK, "b", 7, 1500, [b"\x00", 1.5, None]]
    assert len(frame) == 43


@pytest.mark.parametrize("count", [0, 13, 14, 65_533, 65_534, 70_000])
def test_frame_headers_are_valid_msgpack_at_every_size(count: int) -> None:
    envelope = encode_envelope(TELL, "a", 0, None, 1, 1 << 20)
    frame = decode_frame(join_frame(frame_prefix("s"), [envelope] * count))
    assert len(frame) == count + 2


@pytest.mark.parametrize(
    "value", [{1, 2}, object(), 2**70, {"nested": [b"ok", {"deep": object()}]}]
)
def test_a_value_msgpack_cannot_encode_fails_at_the_sender(value: object) -> None:
    with pytest.raises(InvalidMessage):
        encode_envelope(TELL, "a", 0, None, value, 1 << 20)


def test_a_message_over_the_cap_fails_at_the_sender() -> None:
    encode_envelope(TELL, "a", 0, None, b"x" * 900, 1000)
    with pytest.raises(MessageTooLarge):
        encode_envelope(TELL, "a", 0, None, b"x" * 1000, 1000)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        msgpack.packb([1]),  # no sender
        msgpack.packb({"a": 1}),
        msgpack.packb([2, "s"]),  # unknown version
        msgpack.packb(["1", "s"]),
        msgpack.packb([True, "s"]),
        msgpack.packb([1, b"s"]),  # sender not a str
        msgpack.packb([1, "s"])[:-1],  # truncated
        msgpack.packb([1, "s"]) + b"\x00",  # trailing bytes
        b"\xdd\xff\xff\xff\xff",  # 4 G elements declared
        b"\x92\x01\xdb\xff\xff\xff\xff",  # 4 GB string declared
        b"\x92\x01\xc7\x01\x05a",  # extension type
        b"\x92\x01\xa2\xff\xfe",  # invalid UTF-8
    ],
)
def test_malformed_frames_raise_malformed_frame(data: bytes) -> None:
    with pytest.raises(MalformedFrame):
        decode_frame(data)


@pytest.mark.parametrize("error", [ActorNotFound, MailboxFull, AskTimeout, PeerUnreachable])
def test_known_errors_are_raised_as_the_same_type_at_the_asker(error: type[Exception]) -> None:
    envelope = decode_frame(
        join_frame(frame_prefix("s"), [encode_failure(3, error("why"), 1 << 20)])
    )
    rebuilt = error_from_failure(envelope[2][4])
    assert type(rebuilt) is error
    assert str(rebuilt) == "why"


def test_other_errors_arrive_as_remote_error_with_type_message_and_traceback() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        data = encode_failure(3, exc, 1 << 20)
    body = decode_frame(join_frame(frame_prefix("s"), [data]))[2][4]
    rebuilt = error_from_failure(body)
    assert isinstance(rebuilt, RemoteError)
    assert rebuilt.type_name == "KeyError"
    assert rebuilt.message == "'missing'"
    assert 'raise KeyError("missing")' in rebuilt.traceback


def test_an_unreadable_error_body_is_still_a_remote_error() -> None:
    assert isinstance(error_from_failure("garbage"), RemoteError)


def test_an_ask_with_an_idempotency_key_carries_it_as_a_sixth_element() -> None:
    data = encode_envelope(ASK, "b", 7, 1500, "pay", 1 << 20, "order-42")
    frame = decode_frame(join_frame(frame_prefix("s"), [data]))
    assert frame[2] == [ASK, "b", 7, 1500, "pay", "order-42"]
