"""``ChatStream.when_sent``: told once, as soon as the request has gone out and before its answer (on a real socket:
while the server still holds the answer back), before the first part on any transport; never for a request that
was not sent."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from lm_notebook import LMStudioClient
from lm_notebook.client.errors import LMStudioConnectionError


def sse(content: str, finish: str | None = None) -> bytes:
    body = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


ANSWER = sse("Hello") + sse(" world", "stop") + b"data: [DONE]\n\n"


@pytest.fixture
def holding_server() -> Iterator[tuple[str, threading.Event, list[bool]]]:
    """Reads one chat request, then holds its answer back until the event is set (or 10 s pass: ``held`` says
    whether the event came first), then answers it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    go = threading.Event()
    held: list[bool] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += conn.recv(65536)
            held.append(go.wait(10))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", go, held
    go.set()
    thread.join(15)
    listener.close()


def lmstudio_client(base_url: str, transport: httpx.BaseTransport | None = None) -> LMStudioClient:
    client = LMStudioClient(base_url, model="m", timeout=10, transport=transport, route="openai")
    client._is_lmstudio = True  # who answers is known, and the route: the stream's request is the only one
    return client


def test_told_while_the_server_still_holds_the_answer(holding_server: tuple[str, threading.Event, list[bool]]) -> None:
    url, go, held = holding_server
    told: list[str] = []
    with lmstudio_client(url) as client:
        stream = client.stream_chat("Hi")
        stream.when_sent(lambda: (told.append(stream.content), go.set()))
        assert list(stream) == ["Hello", " world"]
    assert held == [True], "told only after the answer came"
    assert told == [""]  # once, before any text


def transport(handler: object) -> httpx.MockTransport:
    return httpx.MockTransport(handler)  # type: ignore[arg-type]


def test_a_transport_that_does_not_say_it_sent_tells_it_before_the_first_part() -> None:
    told: list[str] = []
    answer = transport(lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"},
                                                      content=ANSWER))
    with lmstudio_client("http://127.0.0.1:1", answer) as client:
        stream = client.stream_chat("Hi")
        stream.when_sent(lambda: told.append(stream.content))
        assert list(stream) == ["Hello", " world"]
    assert told == [""]


def test_a_request_that_was_not_sent_tells_nothing() -> None:
    told: list[bool] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with lmstudio_client("http://127.0.0.1:1", transport(refuse)) as client:
        stream = client.stream_chat("Hi").when_sent(lambda: told.append(True))
        with pytest.raises(LMStudioConnectionError):
            list(stream)
    assert told == []
