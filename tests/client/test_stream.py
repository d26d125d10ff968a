"""ChatStream on real loopback sockets: stopping from another thread, early exits; the accumulator's pieces."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from lm_notebook import LMStudioClient, StreamPart
from lm_notebook.client.accumulator import ChatAccumulator, TextBuffer
from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec


def sse(content: str, role: bool = False) -> bytes:
    delta = {"role": "assistant", "content": content} if role else {"content": content}
    body = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


@pytest.fixture
def stalling_server() -> Iterator[tuple[str, threading.Event]]:
    """Answers one chat request with two chunks, then sends nothing until the client hangs up (the event is set
    then); the test's end lets it go."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    disconnected = threading.Event()
    open_connections: list[socket.socket] = []

    def serve() -> None:
        conn, _ = listener.accept()
        while conn.recv(65536).startswith(b"GET /lmstudio-greeting"):  # the client asks who it talks to first
            body = b'{"lmstudio":true}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            conn.close()
            conn, _ = listener.accept()
        open_connections.append(conn)
        with conn:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (sse("Hello", True), sse(" world")):
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            try:
                # the client hanging up shows as EOF here; until then, nothing is sent
                while conn.recv(1024):
                    pass
            except OSError:
                pass
            disconnected.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", disconnected
    for conn in open_connections:  # a client that never hung up must not keep the server thread waiting
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
    listener.close()
    thread.join(timeout=30)


def test_close_from_another_thread_wakes_a_stalled_read(stalling_server: tuple[str, threading.Event]) -> None:
    url, disconnected = stalling_server
    client = LMStudioClient(url, timeout=600, route="openai")  # no timeout ends the read: only the Stop can
    stream = client.stream_chat("hi", model="m")
    got: list[str] = []
    both = threading.Event()
    finished = threading.Event()

    def read() -> None:
        for text in stream:
            got.append(text)
            if len(got) == 2:
                both.set()  # the reader goes back to a socket that sends nothing more
        finished.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert both.wait(30)
    stream.close()
    # the server sends nothing and keeps the connection open, so the reader ends only because the Stop woke it
    assert finished.wait(30), "the reader was not woken by close()"
    assert disconnected.wait(30), "the server never saw the connection close"
    reader.join(30)
    result = stream.result()
    assert result.content == "Hello world" and result.stopped and stream.stopped
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
    # the server's clock stands still: the model's load never finishes, so no answer ever comes
    clock = ManualClock()
    with MockLMStudioServer(models=[ModelSpec("slow-load", loaded=False, load_time=3.0)], clock=clock) as server:
        stream = LMStudioClient(server.url, route="openai").stream_chat("hi", model="slow-load")
        finished = threading.Event()
        got: list[str] = []

        def read() -> None:
            got.extend(stream)
            finished.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert len(clock.wait_for_pending(timeout=30)) == 1  # the request is in, waiting on its model's load
        stream.close()
        assert finished.wait(30), "Stop was not heard while the model loaded"
        reader.join(30)
        assert got == [] and stream.result().stopped
        assert len(server.wait_for_requests(1, path="/v1/chat/completions")) == 1  # sent once, not retried
        assert "slow-load" not in server.loaded_models()


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
