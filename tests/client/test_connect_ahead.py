"""A stream's connection opened ahead (issue 17, the first token): when a stream ends the sync client connects the
next one's socket, so the next request goes out without a connect on its way — and only a young, open spare is used.

Against a raw loopback server that notes each connection it accepts and the requests that came on it."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from lm_notebook import LMStudioClient

WAIT = 30  # seconds an event may take on a busy machine (never reached when things work)
ANSWER = (
    b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)
MODELS = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()


@dataclass
class Connection:
    number: int
    requests: list[str] = field(default_factory=list)
    closed_by_client: threading.Event = field(default_factory=threading.Event)


class NotingServer:
    """Answers the greeting, the model list and streamed chats; notes every connection and what came on it.
    ``drop_new``: close connections as soon as they are accepted (a server dropping idle ones) — set once a chat has
    been answered, with ``drop_after_chat``; ``hold_chat``:
    answer no chat (a model that takes its time), until released."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[Connection] = []
        self.changed = threading.Condition()
        self.drop_new = False
        self.drop_after_chat = False
        self.write_to_new = b""  # sent on each connection as soon as it is accepted, once drop_new is set
        self.dropped = threading.Event()
        self.idle_kept: list[socket.socket] = []
        self.hold_chat = threading.Event()
        self.hang_up_on: set[int] = set()  # connections whose chat request is read and then hung up on, unanswered
        self.release = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for(self, predicate: object) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, WAIT), [c.requests for c in self.connections]  # type: ignore[arg-type]

    def chat_connections(self) -> list[Connection]:
        return [c for c in self.connections if any(r.startswith("POST") for r in c.requests)]

    def idle_connections(self) -> list[Connection]:
        return [c for c in self.connections if not c.requests and not c.closed_by_client.is_set()]

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.changed:
                noted = Connection(len(self.connections))
                self.connections.append(noted)
                self.changed.notify_all()
            if self.drop_new:
                if self.write_to_new:  # what a server says to a connection that sent nothing for too long
                    conn.sendall(self.write_to_new)
                    self.idle_kept.append(conn)
                else:
                    conn.close()
                self.dropped.set()
                continue
            threading.Thread(target=self._serve, args=(conn, noted), daemon=True).start()

    def _serve(self, conn: socket.socket, noted: Connection) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        with self.changed:
                            noted.closed_by_client.set()
                            self.changed.notify_all()
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                fields = (line.partition(":") for line in lines[1:])
                length = next((int(v) for k, _, v in fields if k.lower() == "content-length"), 0)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                with self.changed:
                    noted.requests.append(lines[0])
                    self.changed.notify_all()
                if lines[0].startswith("GET /lmstudio-greeting"):
                    conn.sendall(_json(b'{"lmstudio": true}'))
                elif lines[0].startswith("GET"):
                    conn.sendall(_json(MODELS))
                else:
                    if noted.number in self.hang_up_on:  # the server dropped it just as the request came
                        return
                    if self.hold_chat.is_set():
                        self.release.wait(WAIT)
                        return
                    if self.drop_after_chat:
                        self.drop_new = True
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))
                    return

    def close(self) -> None:
        self.release.set()
        self.listener.close()


def _json(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


@pytest.fixture
def server() -> Iterator[NotingServer]:
    s = NotingServer()
    yield s
    s.close()


def stream_text(client: LMStudioClient) -> str:
    with client.stream_chat("Hello", model="m") as stream:
        return "".join(stream)


def test_the_next_stream_goes_out_on_a_connection_opened_when_the_last_one_ended(server: NotingServer) -> None:
    with LMStudioClient(server.url, route="openai") as client:
        assert stream_text(client) == "Hi"
        # the stream has ended: a connection is already open for the next one, and nothing has come on it yet
        server.wait_for(lambda: len(server.idle_connections()) == 1)
        spare = server.idle_connections()[0]
        assert stream_text(client) == "Hi"
        chats = server.chat_connections()
        assert [c.requests for c in chats] == [["POST /v1/chat/completions HTTP/1.1"]] * 2
        assert chats[1] is spare  # the second request went out on the connection opened ahead
        # and the second stream's end opened the next one
        server.wait_for(lambda: len(server.idle_connections()) == 1)


@pytest.fixture(params=["tcp_info", "select"])
def liveness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a spare is checked: Linux's TCP_INFO, and select() (other systems)."""
    if request.param == "select":
        monkeypatch.setattr("lm_notebook.client.connect_ahead._TCP_INFO", None)
    elif not sys.platform.startswith("linux"):
        pytest.skip("TCP_INFO is read on Linux only")
    return str(request.param)


@pytest.mark.parametrize("server_says", [b"", b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n"])
def test_a_spare_the_server_dropped_or_answered_is_passed_over(
    server: NotingServer, liveness: str, server_says: bytes
) -> None:
    """A server that drops idle connections (closes them, or answers 408 first): the next stream connects afresh
    instead of failing with "Server disconnected" or reading the 408 as its answer."""
    with LMStudioClient(server.url, route="openai") as client:
        server.write_to_new = server_says
        server.drop_after_chat = True  # the spare opened when this stream ends is dropped at once
        assert stream_text(client) == "Hi"
        assert server.dropped.wait(WAIT)
        server.drop_new = server.drop_after_chat = False  # (on loopback what it sent has arrived by now)
        assert stream_text(client) == "Hi"
        chats = server.chat_connections()
        assert len(chats) == 2 and chats[1].number > chats[0].number + 1  # a connection of its own, after the spare


def test_a_request_the_server_hung_up_on_a_spare_is_sent_again_on_a_fresh_connection(server: NotingServer) -> None:
    """The server drops the spare just as the request goes out (an idle timeout landing then): the request never
    reached it, so it is sent once more, on a connection of its own, and the stream answers."""
    with LMStudioClient(server.url, route="openai") as client:
        assert stream_text(client) == "Hi"
        server.wait_for(lambda: len(server.idle_connections()) == 1)
        spare = server.idle_connections()[0]
        server.hang_up_on.add(spare.number)
        assert stream_text(client) == "Hi"
        chats = server.chat_connections()
        assert len(chats) == 3 and chats[1] is spare and chats[2].number > spare.number
        assert [len(c.requests) for c in chats] == [1, 1, 1]


def test_a_spare_past_its_age_is_closed_and_not_used(server: NotingServer) -> None:
    with LMStudioClient(server.url, route="openai") as client:
        assert client._spares is not None
        client._spares.max_age = 0.0  # every spare is already too old (a server may have dropped it)
        assert stream_text(client) == "Hi"
        server.wait_for(lambda: len(server.connections) >= 3)  # greeting, chat, spare
        spare = server.connections[-1]
        assert stream_text(client) == "Hi"
        server.wait_for(lambda: spare.closed_by_client.is_set())  # closed, unused
        assert spare.requests == []
        assert len(server.chat_connections()) == 2


def test_a_stop_wakes_a_stream_waiting_on_a_spare_connection(server: NotingServer) -> None:
    with LMStudioClient(server.url, route="openai") as client:
        assert stream_text(client) == "Hi"
        server.wait_for(lambda: len(server.idle_connections()) == 1)
        spare = server.idle_connections()[0]
        server.hold_chat.set()  # the next answer takes its time (a model loading)
        stream = client.stream_chat("Hello", model="m")
        done = threading.Event()

        def read() -> None:
            with stream:
                for _ in stream:
                    pass
            done.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        server.wait_for(lambda: len(server.chat_connections()) == 2)
        assert server.chat_connections()[1] is spare  # it waits on the spare
        stream.close()  # a Stop from another thread
        assert done.wait(WAIT), "the Stop did not wake the stream waiting on its spare connection"
        assert stream.result().stopped
        # the Stop is not taken for a dropped spare: the request is not sent again
        assert sum(len(c.requests) for c in server.chat_connections()) == 2


def test_closing_the_client_closes_its_spare(server: NotingServer) -> None:
    client = LMStudioClient(server.url, route="openai")
    assert stream_text(client) == "Hi"
    server.wait_for(lambda: len(server.idle_connections()) == 1)
    spare = server.idle_connections()[0]
    client.close()
    server.wait_for(lambda: spare.closed_by_client.is_set())
