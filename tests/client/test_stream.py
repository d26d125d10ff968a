"""ChatStream on real loopback sockets: stopping from another thread, early exits; the accumulator's pieces."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from lm_notebook import LMStudioClient, StreamPart
from lm_notebook.client.accumulator import ChatAccumulator, TextBuffer


def sse(content: str, role: bool = False) -> bytes:
    delta = {"role": "assistant", "content": content} if role else {"content": content}
    body = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


@pytest.fixture
def stalling_server() -> Iterator[tuple[str, threading.Event]]:
    """Answers one chat request with two chunks, then sends nothing for up to 10 s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    disconnected = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        while conn.recv(65536).startswith(b"GET /lmstudio-greeting"):  # the client asks who it talks to first
            body = b'{"lmstudio":true}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            conn.close()
            conn, _ = listener.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (sse("Hello", True), sse(" world")):
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.settimeout(10)
            try:
                # the client hanging up shows as EOF here
                while conn.recv(1024):
                    pass
            except OSError:
                pass
            disconnected.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", disconnected
    listener.close()
    thread.join(timeout=12)


def test_close_from_another_thread_wakes_a_stalled_read(stalling_server: tuple[str, threading.Event]) -> None:
    url, disconnected = stalling_server
    client = LMStudioClient(url, timeout=30)
    stream = client.stream_chat("hi", model="m")
    got: list[str] = []
    first = threading.Event()
    finished = threading.Event()

    def read() -> None:
        for text in stream:
            got.append(text)
            if len(got) == 2:
                first.set()
        finished.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert first.wait(5)
    time.sleep(0.2)  # the reader is now blocked on a socket that sends nothing
    stopped_at = time.perf_counter()
    stream.close()
    assert finished.wait(5)
    assert time.perf_counter() - stopped_at < 0.5
    reader.join(1)
    result = stream.result()
    assert result.content == "Hello world" and result.stopped
    assert disconnected.wait(5), "the server never saw the connection close"
    client.close()


def test_text_buffer_keeps_text_and_compacts() -> None:
    buf = TextBuffer()
    for i in range(2000):
        buf.write(str(i % 10))
    assert buf.chars == 2000
    assert buf.getvalue() == "".join(str(i % 10) for i in range(2000))
    buf.write("!")
    assert buf.getvalue().endswith("9!") and len(buf.getvalue()) == 2001


def test_accumulator_parts_in_order() -> None:
    acc = ChatAccumulator(streaming=True)
    parts = []
    for delta in ({"role": "assistant", "content": "  <think>"}, {"content": "a</think>"}, {"content": "  B"},
                  {"content": " c"}):
        parts += acc.add_chunk({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    assert parts == [StreamPart("reasoning", "a"), StreamPart("content", "B"), StreamPart("content", " c")]
    acc.finish()
    assert (acc.reasoning, acc.content) == ("a", "B c")


def test_unclosed_think_tag_counts_as_reasoning() -> None:
    acc = ChatAccumulator(streaming=True)
    acc.add_chunk({"choices": [{"index": 0, "delta": {"content": "<think>still thinking</thi"}}]})
    acc.finish()
    assert (acc.reasoning, acc.content) == ("still thinking</thi", "")


def test_literal_think_tag_later_in_an_answer_stays_text() -> None:
    acc = ChatAccumulator(streaming=True)
    acc.add_chunk({"choices": [{"index": 0, "delta": {"content": "Use <think> tags"}}]})
    acc.finish()
    assert acc.content == "Use <think> tags" and acc.reasoning == ""


def test_close_from_another_thread_while_the_model_is_still_loading() -> None:
    from lm_notebook.testing import MockLMStudioServer, ModelSpec

    # a model that is not loaded: the request waits for its 3 s load before any answer comes
    with MockLMStudioServer(models=[ModelSpec("slow-load", loaded=False, load_time=3.0)]) as server:
        stream = LMStudioClient(server.url).stream_chat("hi", model="slow-load")
        finished = threading.Event()
        got: list[str] = []

        def read() -> None:
            got.extend(stream)
            finished.set()

        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(0.5)  # the request is sent and waiting for its headers
        stopped_at = time.perf_counter()
        stream.close()
        assert finished.wait(2), "Stop was not heard while the model loaded"
        assert time.perf_counter() - stopped_at < 0.5
        reader.join(1)
        assert got == [] and stream.result().stopped


def test_reading_the_text_from_another_thread_never_loses_any() -> None:
    buf = TextBuffer()
    done = threading.Event()
    bad: list[int] = []

    def poll() -> None:
        last = 0
        while not done.is_set():
            value = buf.getvalue()
            if len(value) < last or value != "x" * len(value):
                bad.append(len(value))
            last = len(value)

    reader = threading.Thread(target=poll)
    reader.start()
    for _ in range(100_000):
        buf.write("x")
    done.set()
    reader.join()
    assert bad == [] and buf.getvalue() == "x" * 100_000
