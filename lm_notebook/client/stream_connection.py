"""How a stream reaches its connection: an httpx ``trace`` that hands over the network stream as soon as it connects
(a Stop from another thread can then wake a request still waiting), and the shutdown that wakes a blocked read."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

import httpx

OnConnect = Callable[[Any], None]  # told the httpcore network stream of a stream's connection
Trace = Callable[[str, dict[str, Any]], Any]  # an httpx ``trace`` extension (a coroutine function for async)


def connect_trace(
    on_connect: OnConnect, on_sent: Callable[[], None] | None = None, *, asynchronous: bool = False
) -> Trace:
    """An httpx ``trace`` extension that tells ``on_connect`` the connection's network stream as soon as it connects
    (and again, the TLS one, after a TLS handshake): a Stop from another thread can then wake a request still
    waiting for its answer (a model load can take minutes), and the stream reads its body through it. ``on_sent`` is
    told when the request has gone out (its body written), before its answer is waited for. The async client's
    transport awaits its trace: ``asynchronous`` makes it a coroutine function."""

    def trace(event: str, info: dict[str, Any]) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            network = info.get("return_value")
            if network is not None:
                on_connect(network)
        elif on_sent is not None and event.endswith(".send_request_body.complete"):
            on_sent()

    if not asynchronous:
        return trace

    async def atrace(event: str, info: dict[str, Any]) -> None:
        trace(event, info)

    return atrace


def shut_down(sock: socket.socket | None, response: httpx.Response | None) -> None:
    """Shut down ``sock``, else the socket ``response`` reads from: the server sees the client leave now, and a read
    blocked on it (in another thread, or awaited later) wakes at once."""
    if sock is None and response is not None:
        network = response.extensions.get("network_stream")
        sock = network.get_extra_info("socket") if network is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
