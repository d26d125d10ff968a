"""The fake LM Studio server: real HTTP on loopback, served by an event loop in a background thread.

>>> from lm_notebook.testing import MockLMStudioServer
>>> with MockLMStudioServer() as server:                    # doctest: +SKIP
...     server.script("qwen2.5-7b-instruct", "Hello!")
...     httpx.post(server.url + "/v1/chat/completions", json={...})
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import traceback
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from lm_notebook.testing.app import LMStudioApp
from lm_notebook.testing.app_models import Settings, Version
from lm_notebook.testing.catalogue import DEMO_PACING, ModelSpec, Pacing, default_models, demo_models
from lm_notebook.testing.clock import Clock
from lm_notebook.testing.cors import CorsPolicy, CorsSetting
from lm_notebook.testing.faults import Quirks
from lm_notebook.testing.scheduler import DEFAULT_JIT_TTL
from lm_notebook.testing.server_controls import ServerControls
from lm_notebook.testing.wire import BadRequest, ConnectionProtocol, read_request, write_response

log = logging.getLogger("lm_notebook.testing")


class MockLMStudioServer(ServerControls):
    """A faithful fake of LM Studio's HTTP server, for tests, demos and CI.

    Arguments:

    - ``port`` (0 = a free port), ``host`` (loopback unless told otherwise), ``models`` (a list of
      :class:`ModelSpec`; default :func:`default_models`).
    - ``version``: ``"0.4"`` (object error bodies, ``/api/v1`` routes, auth) or ``"0.3"`` (string error bodies,
      404 for unknown models, ``/api/v1`` answers "Unexpected endpoint").
    - ``auth_token``: require ``Authorization: Bearer <token>`` (401 otherwise). Never logged or recorded.
    - ``cors``: ``False`` (LM Studio's default), ``True`` (development: origin ``*``), a list of allowed origins,
      or a :class:`CorsPolicy`.
    - ``jit_loading``, ``auto_evict``, ``jit_ttl``: LM Studio's scheduling switches (on, on, 3600 s).
    - ``quirks``: server-wide :class:`Quirks` (line endings, keep-alives, split characters, error style).
    - ``reply_tokens``: make every generated reply exactly this many tokens (a model's own setting wins).
    - ``lenient_model_id``: with exactly one model loaded, serve a wrong model id with it (as LM Studio may).
    - ``clock``: what every pause of the server (load times, time to first token, token rate, stalls) and every idle
      ``ttl`` runs on. The default is real time; a :class:`~lm_notebook.testing.clock.ManualClock` stands still until
      the test advances it, so pacing is checked exactly, however busy the machine.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        models: Sequence[ModelSpec] | None = None,
        *,
        version: Version = "0.4",
        auth_token: str | None = None,
        cors: CorsSetting = False,
        jit_loading: bool = True,
        auto_evict: bool = True,
        jit_ttl: float | None = DEFAULT_JIT_TTL,
        quirks: Quirks | None = None,
        reply_tokens: int | None = None,
        lenient_model_id: bool = False,
        clock: Clock | None = None,
    ) -> None:
        if version not in ("0.3", "0.4"):
            raise ValueError(f"version must be '0.3' or '0.4', not {version!r}")
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        settings = Settings(version=version, auth_token=auth_token, cors=CorsPolicy.from_setting(cors),
                            quirks=quirks or Quirks(), reply_tokens=reply_tokens,
                            lenient_model_id=lenient_model_id)
        self._app = LMStudioApp(list(models) if models is not None else default_models(), settings,
                                {"jit_loading": jit_loading, "auto_evict": auto_evict, "jit_ttl": jit_ttl}, clock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.errors: list[str] = []  # tracebacks of bugs in the fake itself (answered with 500)

    @classmethod
    def demo(cls, port: int = 0, host: str = "127.0.0.1", pacing: Pacing = DEMO_PACING,
             **options: Any) -> MockLMStudioServer:
        """The demo profile (``make run``, ``--demo``): the default models, all unloaded, paced like a local model on a
        laptop (``pacing``, see :func:`~lm_notebook.testing.catalogue.demo_models`); ``options`` as the constructor."""
        server = cls(port, host, demo_models(pacing=pacing), **options)
        server.downloads.model_defaults.update(pacing.fields())  # a model downloaded there is paced as the others
        return server

    def __repr__(self) -> str:
        state = self.url if self.running else "stopped"
        return f"<MockLMStudioServer {state} version={self._app.settings.version}>"

    # --- lifecycle -------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not started: call start() or use it in a with block")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (a wildcard host is shown as loopback, the address clients can use)."""
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> MockLMStudioServer:
        """Bind and serve in a background thread; returns once the server is listening."""
        if self.running:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), name="MockLMStudioServer",
                                        daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close every connection, stop the loop and join its thread; the port is free afterwards."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            thread.join()
        self._thread = None

    def __enter__(self) -> MockLMStudioServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(loop.create_server(
                    lambda: ConnectionProtocol(self._connection), self.host, self._requested_port,
                    reuse_address=True))
            except BaseException as exc:
                failure.append(exc)
                return
            self._port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
        finally:
            ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task, writer in list(self._connections.items()):
            _reset(writer)
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=2)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        # a connection accepted during shutdown, or a pacing timer, must end here: a task left pending would be
        # finalized after the loop is closed ("Event loop is closed")
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=2)
        self._app.scheduler.cancel_timers()
        asyncio.get_running_loop().stop()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          client_left: asyncio.Future[None]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                try:
                    request = await read_request(reader, writer)
                except BadRequest as exc:
                    write_response(writer, 400, b'{"error":"Bad request: %s"}' % str(exc).encode(),
                                   keep_alive=False)
                    break
                if request is None:
                    break
                try:
                    keep_alive = await self._app.handle(request, writer, client_left)
                except (ConnectionError, asyncio.CancelledError):
                    raise
                except Exception:
                    # a bug in the fake: answer 500 with the reason, and keep it for the test to see
                    text = traceback.format_exc()
                    self.errors.append(text)
                    log.error("mock server error on %s %s\n%s", request.method, request.path, text)
                    if not writer.transport.is_closing():
                        write_response(writer, 500, b'{"error":"mock server bug; see server.errors"}',
                                       keep_alive=False)
                    break
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping
        finally:
            self._connections.pop(task, None)
            writer.close()

    @property
    def clock(self) -> Clock:
        """The clock the server's pauses and ttl timers run on (see the ``clock`` argument)."""
        return self._app.clock

    @property
    def auth_token(self) -> str | None:
        """The token clients must send (None when auth is off); kept out of repr, logs and the request log."""
        return self._app.settings.auth_token


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset: no FIN-WAIT or TIME-WAIT socket is left holding the port after stop()."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()

