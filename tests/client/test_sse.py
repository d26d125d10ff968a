"""The SSE decoder against real LM Studio frames, cut at every byte, with every line ending."""

from __future__ import annotations

import json

import pytest

from lm_notebook.client.sse import ServerSentEvent, SSEDecoder

# Frames as LM Studio sends them (see shared/LMSTUDIO_API.md), including a multi-byte character.
CHUNK_1 = (
    '{"id":"chatcmpl-um3b","object":"chat.completion.chunk","created":1747835957,"model":"m",'
    '"system_fingerprint":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Héllo 👋"},'
    '"logprobs":null,"finish_reason":null}]}'
)
CHUNK_2 = (
    '{"id":"chatcmpl-um3b","object":"chat.completion.chunk","created":1747835957,"model":"m",'
    '"system_fingerprint":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}'
)
ERROR_DATA = '{"error":{"message":"Input does not fit in context length."},"message":"Input does not fit"}'


def frames(eol: str) -> bytes:
    text = (
        f"data: {CHUNK_1}{eol}{eol}"
        f": keep-alive{eol}{eol}"
        f"data: {CHUNK_2}{eol}{eol}"
        f"event: error{eol}data: {ERROR_DATA}{eol}{eol}"
        f"data: [DONE]{eol}{eol}"
    )
    return text.encode("utf-8")


EXPECTED = [
    ServerSentEvent("message", CHUNK_1),
    ServerSentEvent("message", CHUNK_2),
    ServerSentEvent("error", ERROR_DATA),
    ServerSentEvent("message", "[DONE]"),
]


def decode_all(pieces: list[bytes]) -> list[ServerSentEvent]:
    dec = SSEDecoder()
    out: list[ServerSentEvent] = []
    for p in pieces:
        out.extend(dec.feed(p))
    out.extend(dec.flush())
    return out


@pytest.mark.parametrize("eol", ["\n", "\r", "\r\n"], ids=["LF", "CR", "CRLF"])
def test_every_single_cut_point(eol: str) -> None:
    raw = frames(eol)
    for cut in range(len(raw) + 1):
        assert decode_all([raw[:cut], raw[cut:]]) == EXPECTED, f"cut at byte {cut}"


@pytest.mark.parametrize("eol", ["\n", "\r", "\r\n"], ids=["LF", "CR", "CRLF"])
def test_byte_by_byte(eol: str) -> None:
    raw = frames(eol)
    assert decode_all([raw[i : i + 1] for i in range(len(raw))]) == EXPECTED


def test_two_cuts_everywhere_in_one_frame() -> None:
    raw = f"data: {CHUNK_1}\r\n\r\n".encode()
    for a in range(0, len(raw), 3):
        for b in range(a, len(raw), 7):
            assert decode_all([raw[:a], raw[a:b], raw[b:]]) == EXPECTED[:1]


def test_multibyte_character_split_between_chunks() -> None:
    raw = 'data: {"c":"日本👋"}\n\n'.encode()
    emoji_at = raw.index("👋".encode())
    events = decode_all([raw[: emoji_at + 2], raw[emoji_at + 2 :]])
    assert json.loads(events[0].data) == {"c": "日本👋"}


def test_multiline_data_is_joined_with_newlines() -> None:
    assert decode_all([b"data: first\ndata:second\ndata:  third\n\n"]) == [
        ServerSentEvent("message", "first\nsecond\n third")
    ]


def test_fields_without_space_colonless_lines_and_unknown_fields() -> None:
    events = decode_all([b"event:ping\nid: 7\nretry: 1500\nfoo: bar\ndata\n\n"])
    assert events == [ServerSentEvent("ping", "", "7", 1500)]


def test_event_name_resets_after_dispatch() -> None:
    events = decode_all([b"event: error\ndata: x\n\ndata: y\n\n"])
    assert [e.event for e in events] == ["error", "message"]


def test_blank_lines_and_comments_alone_dispatch_nothing() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"\n\n: keep-alive\n\n:\n\n") == []
    assert dec.comments == 2


def test_bom_is_dropped_even_when_split() -> None:
    raw = b"\xef\xbb\xbfdata: a\n\n"
    assert decode_all([raw[:1], raw[1:2], raw[2:]]) == [ServerSentEvent("message", "a")]


def test_unterminated_event_at_end_is_dropped() -> None:
    # the spec: an event is only dispatched by a blank line
    assert decode_all([b"data: complete\n\ndata: cut off"]) == [ServerSentEvent("message", "complete")]


def test_cr_at_chunk_end_then_lf_is_one_line_end() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: a\r") == []
    assert dec.feed(b"\n\r") == [ServerSentEvent("message", "a")]
    assert dec.feed(b"\ndata: b\n\n") == [ServerSentEvent("message", "b")]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    events = decode_all([b"data: \xff\xfe ok\n\n"])
    assert events[0].data.endswith(" ok")


def test_id_with_nul_is_ignored_and_retry_must_be_digits() -> None:
    events = decode_all([b"id: a\x00b\nretry: 10s\ndata: x\n\n"])
    assert events == [ServerSentEvent("message", "x", None, None)]
