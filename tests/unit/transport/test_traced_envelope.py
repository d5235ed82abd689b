"""Trace context in the envelope: a seventh element, checked strictly."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from taskmesh.errors import InvalidMessage, MessageTooLarge
from taskmesh.transport.envelope import (
    ASK,
    PING,
    TELL,
    decode_frame,
    encode_envelope,
    encode_traced_envelope,
    frame_prefix,
    join_frame,
    trace_headers,
)

PARENT = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def test_traced_and_plain_envelopes_share_a_frame_and_keep_their_fields() -> None:
    envelopes = [
        encode_envelope(TELL, "a", 0, None, "plain", 1 << 20),
        encode_traced_envelope(TELL, "a", 0, None, "told", 1 << 20, None, PARENT),
        encode_traced_envelope(ASK, "b", 7, 1500, {"x": 1}, 1 << 20, "order-42", PARENT),
    ]
    frame = decode_frame(join_frame(frame_prefix("tcp://h:1"), envelopes))
    assert frame[2] == [TELL, "a", 0, None, "plain"]
    assert frame[3] == [TELL, "a", 0, None, "told", None, PARENT]
    assert frame[4] == [ASK, "b", 7, 1500, {"x": 1}, "order-42", PARENT]
    assert trace_headers(frame[3]) == PARENT
    assert trace_headers(frame[4]) == PARENT


def test_a_traced_envelope_fails_at_the_sender_like_a_plain_one() -> None:
    with pytest.raises(InvalidMessage):
        encode_traced_envelope(TELL, "a", 0, None, {1, 2}, 1 << 20, None, PARENT)
    with pytest.raises(MessageTooLarge):
        encode_traced_envelope(TELL, "a", 0, None, "x" * 200, 128, None, PARENT)


@pytest.mark.parametrize(
    "envelope",
    [
        [TELL, "a", 0, None, "x", "key", PARENT],  # a tell has no idempotency key
        [ASK, "a", 1, None, "x", 42, PARENT],  # a key is a string
        [PING, None, 0, None, None, None, PARENT],  # only tells and asks are traced
        [TELL, "a", 0, None, "x", None, "00-abc"],  # headers are a map
        [TELL, "a", 0, None, "x", None, {"traceparent": 1}],  # of strings
        [TELL, "a", 0, None, "x", None, {1: "x"}],
        [TELL, "a", 0, None, "x", None, {f"h{i}": "v" for i in range(5)}],  # a few
        [TELL, "a", 0, None, "x", None, {"tracestate": "x" * 2000}],  # of bounded size
    ],
)
def test_a_malformed_trace_element_makes_the_envelope_malformed(envelope: list[Any]) -> None:
    decoded = msgpack.unpackb(msgpack.packb(envelope), strict_map_key=False)
    assert trace_headers(decoded) is None
