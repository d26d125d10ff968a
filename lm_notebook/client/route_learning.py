"""Whether the server has LM Studio 0.4's native chat route, learnt once per client (``route="auto"`` needs it).

One flow asks at a time: the first request of a fresh client greets the server, then asks ``GET /api/v1/models``;
requests that come meanwhile (threads on the sync client, tasks on the async one) wait for that answer
(:class:`~lm_notebook.client.flows.Await`) instead of asking too or guessing. Once it is known no lock is taken.
Only a real answer is remembered: a list (0.4+), or LM Studio's "Unexpected endpoint" / a 404 (0.3, llama.cpp);
"nobody answered", an auth error, a timeout or a server error leave it unknown and are raised to the asker
(``route="auto"`` then goes the OpenAI way and asks again only after a while: :mod:`~lm_notebook.client.server_facts`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

from lm_notebook.client.error_classification import is_unexpected_endpoint
from lm_notebook.client.error_explanation import Explainer, explained_error
from lm_notebook.client.flows import Await, Flow
from lm_notebook.client.routes import MODEL_ROUTES, json_or_none, parse_models

if TYPE_CHECKING:
    import httpx

    from lm_notebook.client.stream_connection import Trace


class RouteLearning:
    """Who is asking the server right now: the first asker owns it, later ones get the owner's answer to wait on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asking: Future[None] | None = None

    def join(self) -> Future[None] | None:
        """None: you ask (call :meth:`done` after); else the answer of the one asking, to wait for."""
        with self._lock:
            if self._asking is None:
                self._asking = Future()
                return None
            return self._asking

    def done(self, error: BaseException | None) -> None:
        with self._lock:
            asking, self._asking = self._asking, None
        if asking is not None:
            if error is None:
                asking.set_result(None)
            else:
                asking.set_exception(error)


class RouteLearner(Explainer, Protocol):
    """What the learning needs from a client: what it knows of its server, and its greeting and probe."""

    _is_lmstudio: bool | None
    _native_chat: bool | None
    _route_learning: RouteLearning

    def _greeting(self, trace: Trace | None = None) -> Flow[bool]: ...

    def _probe(self, path: str, trace: Trace | None = None) -> Flow[httpx.Response]: ...


def native_chat_flow(
    client: RouteLearner,
    trace: Trace | None = None,
    stop: threading.Event | None = None,
    woken: threading.Event | None = None,
) -> Flow[bool]:
    """Whether the server has the native chat route; raises what kept it from knowing (see the module).

    A stream passes ``trace`` (its probes go on connections of their own, which its Stop can shut down), ``stop``
    (its Stop) and ``woken`` (set by its Stop, to end a wait for another asker): a Stop returns False at once."""
    while client._native_chat is None:
        if stop is not None and stop.is_set():
            return False
        asking = client._route_learning.join()
        if asking is not None:
            wake = woken or threading.Event()
            wake.clear()
            asking.add_done_callback(_waker(wake))
            if stop is not None and stop.is_set():
                return False
            yield Await(asking, wake)
            if asking.done() and asking.exception() is not None and client._native_chat is None:
                raise asking.exception()  # type: ignore[misc]  # the asker's failure is this request's too
            continue
        error: BaseException | None = None
        try:
            yield from _ask(client, trace)
        except BaseException as err:
            error = err
            raise
        finally:
            client._route_learning.done(error if isinstance(error, Exception) else None)
    return client._native_chat


def _ask(client: RouteLearner, trace: Trace | None) -> Flow[None]:
    if client._is_lmstudio is None:
        yield from client._greeting(trace)
    if not client._is_lmstudio:
        client._native_chat = False
        return
    response = yield from client._probe(MODEL_ROUTES[0], trace)
    body = json_or_none(response)
    if response.status_code == 200 and isinstance(body, dict) and isinstance(body.get("models"), list):
        client._models_route, client._native_chat = MODEL_ROUTES[0], True
        try:  # the list is kept, as a listing's is
            client._listed = tuple(parse_models(MODEL_ROUTES[0], body))
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # a list this client cannot read: the next request that needs it lists again
    elif response.status_code == 404 or (isinstance(body, dict) and is_unexpected_endpoint(str(body.get("error")))):
        client._native_chat = False
    else:  # a 401, a 500, a proxy's page: not an answer about the route
        raise (yield from explained_error(client, response, None, None))


def _waker(wake: threading.Event) -> Callable[[Future[None]], None]:
    return lambda _answer: wake.set()
