"""A stream's connection opened ahead: when a stream ends, the sync client connects the next one's socket, so the
next stream's request goes out without waiting for a connect (issue 17: nothing but the request on the way to the
first token).

In a Jupyter kernel a connect is several system calls, and at each one the kernel's other threads (its IO thread is
busy right as a cell starts) may take the GIL first: measured, a connect cost a ``%%lm`` cell 2 ms before its request
went out on a busy machine, against 0.5 ms for everything else. A stream still gets a connection of its own, never
one that carried an answer (see ``client_state._NO_KEEPALIVE``): the spare is a fresh socket nobody has used.

A spare is used only while it is young enough (:data:`SPARE_MAX_AGE`) and still open (one the server closed, or
wrote to, is closed and left); otherwise the stream connects as ever. A server may still drop it at the moment the
request goes out (an idle timeout): a request that fails on a spare before any answer came is sent once more, on a
fresh connection (the server never read it). Nothing here ever fails a request: a spare that cannot be opened is
simply not there. The async client connects as before.

httpx does not take a network backend; :class:`AheadTransport` is httpx's own transport with its connection pool
made over :class:`AheadBackend` (httpcore's documented extension point), settings as httpx would make them.
"""

from __future__ import annotations

import errno
import ipaddress
import select
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx
from httpcore._backends.sync import SyncStream  # the stream httpcore's SyncBackend returns: its errors mapped

SPARE_MAX_AGE = 60.0  # seconds a spare waits for the next stream (a notebook's next cell), then it is left

Address = tuple[str, int]
_CONNECTING = {0, errno.EINPROGRESS, errno.EWOULDBLOCK, 10035}  # what a non-blocking connect_ex gives (10035: Windows)


class Spares:
    """At most one connection opened ahead per server address, for the next stream. Thread-safe."""

    def __init__(self, *, max_age: float = SPARE_MAX_AGE, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.opened = 0  # spares opened (tests and benchmarks read these)
        self.used = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._spares: dict[Address, tuple[socket.socket, float]] = {}
        self._closed = False
        # a client dropped unclosed (the shared one at exit) closes its spare too, without a ResourceWarning
        weakref.finalize(self, _close_all, self._spares)

    def open(self, host: str, port: int) -> None:
        """Start connecting a spare to ``host:port`` (without waiting for it: the handshake completes meanwhile);
        an older one there is closed. Only an IP address or ``localhost`` (no name to look up on the way); fails
        silently: the next stream then connects as ever."""
        address = _address(host, port)
        if address is None:
            return
        family, sockaddr = address
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            if sock.connect_ex(sockaddr) not in _CONNECTING:
                sock.close()
                return
        except OSError:
            sock.close()
            return
        with self._lock:
            if self._closed:
                sock.close()
                return
            old = self._spares.pop((host, port), None)
            self._spares[(host, port)] = (sock, self._clock())
            self.opened += 1
        if old is not None:
            old[0].close()

    def take(self, host: str, port: int) -> socket.socket | None:
        """The spare for ``host:port``, connected and blocking, if one is young and still open; else None."""
        with self._lock:
            spare = self._spares.pop((host, port), None)
        if spare is None:
            return None
        sock, opened_at = spare
        if self._clock() - opened_at > self.max_age or not _usable(sock):
            sock.close()
            return None
        sock.setblocking(True)
        with self._lock:
            self.used += 1
        return sock

    def close(self) -> None:
        """Close every spare; none is opened after this."""
        with self._lock:
            self._closed = True
            _close_all(self._spares)


def _close_all(spares: dict[Address, tuple[socket.socket, float]]) -> None:
    for sock, _ in list(spares.values()):
        sock.close()
    spares.clear()


def _address(host: str, port: int) -> tuple[socket.AddressFamily, Any] | None:
    """Where a spare for ``host`` connects: an IP address as it is, ``localhost`` as it resolves first (from the
    hosts file); None for any other name (a look-up could take seconds)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host.lower() != "localhost":
            return None
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        except (OSError, IndexError):
            return None
        return family, sockaddr
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), (host, port)


def _usable(sock: socket.socket) -> bool:
    """Connected, and nothing came from the server: one it closed (or wrote to: an error, a 408) is not used.

    On Linux the kernel's TCP_INFO says it (state ESTABLISHED, no byte received) without a call that releases the
    GIL (in a kernel, each such call lets the IO thread in first, just as a cell starts); elsewhere ``poll`` (``select``
    where there is no ``poll``)."""
    try:
        if _TCP_INFO is not None:
            info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_SIZE)
            if len(info) >= _TCP_INFO_SIZE:
                received = int.from_bytes(info[_BYTES_RECEIVED:_TCP_INFO_SIZE], sys.byteorder)
                return info[0] == _TCP_ESTABLISHED and received == 0
        if hasattr(select, "poll"):  # any descriptor number (select() refuses those past FD_SETSIZE)
            poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLOUT)
            events = poller.poll(0)
            ready = events[0][1] if events else 0
            healthy = ready == select.POLLOUT
        else:
            readable, writable, failed = select.select([sock], [sock], [sock], 0)
            healthy = not readable and not failed and bool(writable)
        return healthy and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    except (OSError, ValueError):
        return False


# Linux's struct tcp_info: the state is its first byte; tcpi_bytes_received (a u64, since Linux 4.1) ends at 136
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None) if sys.platform.startswith("linux") else None
_TCP_ESTABLISHED = 1
_BYTES_RECEIVED, _TCP_INFO_SIZE = 128, 136


class AheadBackend(httpcore.SyncBackend):
    """httpcore's sync network backend, taking a spare when one is there for the address."""

    def __init__(self, spares: Spares) -> None:
        self.spares = spares
        self._took = threading.local()  # whether this thread's request went out on a spare (see AheadTransport)

    def took_spare(self) -> bool:
        """The last connection this thread connected was a spare."""
        return bool(getattr(self._took, "spare", False))

    def forget(self) -> None:
        self._took.spare = False

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        sock = self.spares.take(host, port) if local_address is None else None
        self._took.spare = sock is not None
        if sock is None:
            return super().connect_tcp(host, port, timeout, local_address, socket_options)
        for option in socket_options or ():
            sock.setsockopt(*option)
        return SyncStream(sock)


# what a request meets on a connection the server has dropped (before any answer: the request is sent once more)
_DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class AheadTransport(httpx.HTTPTransport):
    """httpx's transport, its pool connecting through :class:`AheadBackend`; a request that failed on a spare before
    any answer is sent once more, on a fresh connection."""

    def __init__(self, spares: Spares, *, ssl_context: Any, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context, limits=limits, trust_env=False)
        self._backend = AheadBackend(spares)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=self._backend,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._backend.forget()
        try:
            return super().handle_request(request)
        except _DROPPED:
            # (a Stop shuts the socket down too: the stream's connect hook then shuts the fresh one at once, so the
            # request is not sent again)
            if not self._backend.took_spare():
                raise
        self._backend.forget()
        return super().handle_request(request)
