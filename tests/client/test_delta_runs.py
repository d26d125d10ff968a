"""Runs of plain text events read in one go (issue 17): a stream reads the same answer, parts and errors as it does
event by event, whatever the stream holds and wherever its reads are cut.

A stream's reading is pure (bytes in, parts out), so random streams are fed to it twice: as it reads them (runs of a
learned template at once) and with learning turned off (every event on its own, the way it always read them). Then,
over real loopback HTTP with the fake server: a coalesced stream hands its reader one piece of text a read, and
counts the tokens.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_chunk_merging import cut

from lm_notebook import LMStudioClient
from lm_notebook.client.accumulator import CONTENT, StreamPart
from lm_notebook.client.delta_runs import DeltaTemplate, RunReader
from lm_notebook.client.errors import LMStudioStreamError
from lm_notebook.client.sse import ServerSentEvent, SSEDecoder
from lm_notebook.client.stream_base import StreamBase
from lm_notebook.testing import MockLMStudioServer, ModelSpec

MOST = [7, 150, 2000, 40000]  # the longest read, in bytes
TEXTS = ["Hello", " world", ".", "\n\n", "## Why", ' "quoted"', " back\\slash", " é", "😀", "\u2028", " \t", "",
         "</think>", "}]}", '"},"x":1', "data: ", "\\n"]


class Source:
    base_url = "http://127.0.0.1:1"
    timeout = httpx.Timeout(5.0)


class NeverLearns(RunReader):
    """Reads every event on its own: the way streams read before runs."""

    def learn(self, data: str, text: str, chunk: Any) -> None:
        pass


def stream(*, learns: bool, native: bool = False, merge: bool = False) -> StreamBase[Any]:
    payload: dict[str, Any] = {"model": "m", "messages": []}
    if native:
        payload = {"model": "m", "input": "Hi", "stream": True}
    reader = StreamBase(Source(), payload)  # type: ignore[arg-type]
    if not learns:
        runs = reader._runs
        reader._runs = NeverLearns(reader._acc, lambda: reader._done, runs._head, runs._with_text)
    reader._content_only = False
    reader._merge = merge
    return reader


def chunk_event(meta: dict[str, Any], delta: dict[str, Any], *, ascii_only: bool, eol: str = "\n") -> bytes:
    body = {**meta, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
    return f"data: {json.dumps(body, ensure_ascii=ascii_only, separators=(',', ':'))}{eol}{eol}".encode()


def random_stream(rng: random.Random) -> bytes:
    """An OpenAI-style stream: a role chunk, text chunks (and now and then thinking, a tool call's piece, a
    keep-alive, a changed fixed field), the finish and usage chunks, [DONE]."""
    ascii_only = rng.random() < 0.3
    eol = "\r\n" if rng.random() < 0.1 else "\n"
    meta = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [chunk_event(meta, {"role": "assistant", "content": ""}, ascii_only=ascii_only, eol=eol)]
    for _ in range(rng.randint(1, 300)):
        roll = rng.random()
        if roll < 0.02:
            events.append(f": keep-alive{eol}{eol}".encode())
        elif roll < 0.04:
            meta = {**meta, "created": meta["created"] + 1}  # llama.cpp's server: the time, once a second
        elif roll < 0.05:
            events.append(chunk_event(meta, {"reasoning_content": "hmm"}, ascii_only=ascii_only, eol=eol))
        elif roll < 0.06:
            piece = {"index": 0, "function": {"arguments": '{"a"'}}
            events.append(chunk_event(meta, {"tool_calls": [piece]}, ascii_only=ascii_only, eol=eol))
        else:
            text = "".join(rng.choice(TEXTS) for _ in range(rng.randint(1, 3)))
            events.append(chunk_event(meta, {"content": text}, ascii_only=ascii_only, eol=eol))
    finish = {**meta, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    events.append(f"data: {json.dumps(finish)}{eol}{eol}".encode())
    events.append(f"data: {json.dumps({**meta, 'choices': [], 'usage': {'completion_tokens': 9}})}{eol}{eol}".encode())
    events.append(f"data: [DONE]{eol}{eol}".encode())
    return b"".join(events)


def read(reader: StreamBase[Any], reads: list[bytes]) -> list[StreamPart]:
    take = reader._events if reader._native is None else reader._native_events
    parts: list[StreamPart] = []
    for raw in reads:
        parts.extend(take(raw))
        if reader.done:
            break
    return parts


def joined(parts: list[StreamPart]) -> list[StreamPart]:
    """Each stretch of answer text as one part."""
    out: list[StreamPart] = []
    for part in parts:
        if part.kind is CONTENT and out and out[-1].kind is CONTENT:
            out[-1] = StreamPart(CONTENT, out[-1].text + part.text)
        else:
            out.append(part)
    return out


def outcome(reader: StreamBase[Any]) -> tuple[Any, ...]:
    acc = reader._acc
    return acc.content, acc.reasoning, acc.deltas, acc.finish_reason, acc.tool_calls(), reader.done


@pytest.mark.parametrize("seed", range(60))
def test_runs_read_the_same_parts_and_answer_as_event_by_event(seed: int) -> None:
    rng = random.Random(seed)
    reads = cut(random_stream(rng), rng, rng.choice(MOST))
    by_event, by_runs = stream(learns=False), stream(learns=True)
    expected, got = read(by_event, reads), read(by_runs, reads)
    assert got == expected  # the same parts, one a token
    assert outcome(by_runs) == outcome(by_event)
    merged = stream(learns=True, merge=True)
    got_merged = read(merged, reads)
    assert joined(got_merged) == joined(expected) and outcome(merged) == outcome(by_event)
    # a read's text comes as one piece (split only where another part comes between)
    others = sum(1 for p in expected if p.kind is not CONTENT)
    assert sum(1 for p in got_merged if p.kind is CONTENT) <= len(reads) + others
    assert all(p.text for p in got_merged if p.kind is CONTENT)


class CountingDecoder(SSEDecoder):
    __slots__ = ("fed",)

    def __init__(self) -> None:
        super().__init__()
        self.fed = 0  # bytes read the general way

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        self.fed += len(chunk)
        return super().feed(chunk)


def test_a_long_stream_in_few_reads_is_read_as_runs() -> None:
    meta = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [chunk_event(meta, {"role": "assistant", "content": ""}, ascii_only=False)]
    for i in range(2000):
        if i == 1000:
            meta = {**meta, "created": 2}  # a fixed field changes: learned again
        events.append(chunk_event(meta, {"content": TEXTS[i % len(TEXTS)]}, ascii_only=False))
    events.append(b"data: [DONE]\n\n")
    data = b"".join(events)
    reads = [data[i : i + 30000] for i in range(0, len(data), 30000)]
    by_runs, by_event = stream(learns=True), stream(learns=False)
    decoder = by_runs._decoder = CountingDecoder()
    assert read(by_runs, reads) == read(by_event, reads)
    assert outcome(by_runs) == outcome(by_event) and by_runs.done
    # the general way read only what is not a run: the first read (nothing learned before it), the ends of reads,
    # the change, [DONE]
    assert decoder.fed - len(reads[0]) < len(data) / 50


def test_native_message_deltas_are_read_as_runs_too() -> None:
    rng = random.Random(5)
    events = [b'event: chat.start\ndata: {"type":"chat.start","model_instance_id":"m"}\n\n']
    for _ in range(200):
        text = json.dumps({"type": "message.delta", "content": rng.choice(TEXTS) or "x"}, ensure_ascii=False)
        events.append(b"event: message.delta\ndata: " + text.encode() + b"\n\n")
    stats = {"total_output_tokens": 200}
    end = {"type": "chat.end", "result": {"model_instance_id": "m", "output": [], "stats": stats}}
    events.append(b"event: chat.end\ndata: " + json.dumps(end).encode() + b"\n\n")
    data = b"".join(events)
    reads = cut(data, rng, 150)
    by_event, by_runs = stream(learns=False, native=True), stream(learns=True, native=True)
    assert read(by_runs, reads) == read(by_event, reads)
    assert outcome(by_runs) == outcome(by_event) and by_runs.done
    assert by_runs._runs.template is not None


@pytest.mark.parametrize(
    "bad",
    [
        [b'"a', b'","b"'],  # one string cut in two: joined, they would read as two good ones
        [b'"a"\n\n:x\n\ndata: "b"'],
        [b'"a" , "b"'],
        [b'"\\x"'],  # an escape JSON refuses
        [b'"a"x'],
        [b'"\xff"'],  # not UTF-8: the general way reads it as U+FFFD, the run does not decode it
    ],
)
def test_what_only_looks_like_the_template_is_read_as_ever(bad: list[bytes]) -> None:
    meta = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    good = [chunk_event(meta, {"content": t}, ascii_only=False) for t in ("Hi", " there", "!")]
    template = good[1].split(b'" there"')
    data = b"".join([*good, *(template[0] + b + template[1] for b in bad), *good[1:]])
    results = []
    for learns in (False, True):
        reader = stream(learns=learns)
        try:
            parts = read(reader, [b"".join(good[:2]), data[len(good[0]) + len(good[1]) :]])
            results.append(("parts", parts, outcome(reader)))
        except LMStudioStreamError as err:
            assert err.partial is not None
            results.append(("error", str(err), err.partial.content))
    assert results[1] == results[0]


def test_a_template_is_learned_only_where_the_text_is() -> None:
    def with_text(text: str) -> dict[str, Any]:
        return {"model": "Hi", "choices": [{"delta": {"content": text}}], "x": {"content": "Hi"}}

    data = '{"model":"Hi","choices":[{"delta":{"content":"Hi"}}],"x":{"content":"Hi"}}'
    template = DeltaTemplate.learn(b"data: ", data, "Hi", with_text)
    assert template is not None  # the text's own place, not the later "content" that holds the same string
    assert template.prefix == b'data: {"model":"Hi","choices":[{"delta":{"content":'
    assert DeltaTemplate.learn(b"data: ", data, "Hi", lambda text: {"other": text}) is None


# --- over real loopback HTTP ------------------------------------------------------------------------------------
TOKENS = 3000


@pytest.fixture(scope="module")
def server() -> Iterator[MockLMStudioServer]:
    models = [ModelSpec("m", loaded=True, reply_tokens=TOKENS),
              ModelSpec("thinker", loaded=True, reply_tokens=TOKENS, reasoning="reasoning_content")]
    with MockLMStudioServer(models=models) as fake:
        yield fake


def test_a_coalesced_stream_gives_a_piece_of_text_a_read_and_counts_the_tokens(server: MockLMStudioServer) -> None:
    with LMStudioClient(server.url) as client:
        with client.stream_chat("Hi", model="m") as plain:
            one_by_one = list(plain.iter_parts())
        with client.stream_chat("Hi", model="m") as stream:
            stream.coalesce_reads(0.05, clock=lambda: 100.0, wait=lambda seconds: None)
            parts = list(stream.iter_parts())
    assert "".join(p.text for p in parts) == stream.result().content == plain.result().content
    assert len(one_by_one) == TOKENS and stream.deltas == plain.deltas == TOKENS
    assert 1 <= len(parts) <= stream.reads + 1 < TOKENS  # the headers' read may bring the first token


def test_thinking_then_the_answer_keep_their_order_when_merged(server: MockLMStudioServer) -> None:
    with LMStudioClient(server.url) as client, client.stream_chat("Hi", model="thinker") as stream:
        stream.coalesce_reads(0.05, clock=lambda: 100.0, wait=lambda seconds: None)
        parts = list(stream.iter_parts())
    kinds = [p.kind for p in parts]
    first_answer = kinds.index(CONTENT)
    assert set(kinds[:first_answer]) == {"reasoning"} and set(kinds[first_answer:]) == {CONTENT}
    result = stream.result()
    assert "".join(p.text for p in parts if p.kind is CONTENT) == result.content
    assert "".join(p.text for p in parts if p.kind == "reasoning").strip() == result.reasoning
