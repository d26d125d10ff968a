"""Client operations written once, as flows: generators that yield the I/O they need and receive its answer.

This is the pattern of httpx's auth flows (``Auth.auth_flow``, run by ``Client._send_handling_auth`` and by its
async twin). An operation (list the models, chat, open a stream) is one generator on the shared base. Each piece of
I/O it needs is a :class:`Step` it yields: :class:`Send` a request, :class:`ReadBody` of a streamed response, read a
chat stream to its end. A driver performs the step and sends the answer back in: :func:`run_flow` for the sync
client, :func:`arun_flow` for the async one. The drivers and each twin's ``_perform`` are the only code written
twice. An httpx error met while performing a step is thrown into the flow at its ``yield``, where
:func:`~lm_notebook.client.transport_errors.translated` turns it into ours.

:class:`operation` publishes a flow as a client method: on ``LMStudioClient`` a call runs it to its value, on
``AsyncLMStudioClient`` it returns a coroutine to await.

>>> def greeted(client) -> Flow[bool]:                       # doctest: +SKIP
...     response = yield Send(client._http.build_request("GET", "/lmstudio-greeting"))
...     return response.status_code == 200
>>> greeting = operation(greeted)  # in a client class body  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import threading
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

import httpx

T = TypeVar("T")
P = ParamSpec("P")


class Step:
    """One piece of I/O a flow asks its driver for."""

    __slots__ = ()


# yields steps, receives each step's answer, returns the operation's value
Flow = Generator[Step, Any, T]


@dataclass(frozen=True, slots=True)
class Send(Step):
    """Send ``request``; the answer is its response, read. ``stream``: leave the body unread, on a connection of
    its own (see the clients' ``_stream_http``)."""

    request: httpx.Request
    stream: bool = False


@dataclass(frozen=True, slots=True)
class ReadBody(Step):
    """Read the rest of a streamed ``response`` and close it; the answer is the response."""

    response: httpx.Response


@dataclass(frozen=True, slots=True)
class Pause(Step):
    """Wait ``seconds`` (between two polls of a download); the answer is None. The sync driver sleeps, the async
    one awaits ``asyncio.sleep``: a Ctrl-C or a cancellation lands here."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Await(Step):
    """Wait for ``answer``: another thread's or task's flow doing the same work (learning the route); the answer is
    None. The sync driver waits for ``woken`` (set once ``answer`` is, or by a stream's Stop), the async one for
    ``answer`` itself (a cancellation lands here)."""

    answer: Future[None]
    woken: threading.Event


class FlowRun(Generic[T]):
    """A flow on its way: ``step`` is the step it waits for, None once it has returned ``value``.

    A driver performs ``step`` inside ``with run:`` and puts the answer in ``reply``. Leaving the block sends the
    reply into the flow, or throws in the httpx error the step raised (the flow translates it); a Ctrl-C is thrown in
    too (a flow may raise what it kept instead) and ends the flow; any other exception (a cancelled task) closes the
    flow and goes on.
    """

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self.step: Step | None = None
        self.reply: object = None
        self.value: T
        self._resume(flow.send, None)

    def _resume(self, resume: Callable[[Any], Step], argument: object) -> None:
        try:
            self.step = resume(argument)
        except StopIteration as stop:
            self.step = None
            self.value = stop.value

    def __enter__(self) -> FlowRun[T]:
        self.reply = None
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None:
            self._resume(self._flow.send, self.reply)
        elif isinstance(exc, httpx.HTTPError):
            self._resume(self._flow.throw, exc)
            return True
        elif isinstance(exc, KeyboardInterrupt) and self.step is not None:
            # thrown in too, so a flow can say what it kept (act: ActInterrupted); it ends the flow either way
            self._resume(self._flow.throw, exc)
            self._flow.close()
        else:
            self._flow.close()
        return False


def run_flow(flow: Flow[T], perform: Callable[[Step], object]) -> T:
    """Run ``flow`` to its value, doing each step with the sync client's ``perform``."""
    run = FlowRun(flow)
    while run.step is not None:
        with run:
            run.reply = perform(run.step)
    return run.value


async def arun_flow(flow: Flow[T], perform: Callable[[Step], Awaitable[object]]) -> T:
    """Run ``flow`` to its value, doing each step with the async client's ``perform``."""
    run = FlowRun(flow)
    while run.step is not None:
        with run:
            run.reply = await perform(run.step)
    return run.value


class SyncDriven(Protocol):
    """A client whose ``_drive`` runs a flow to its value (``LMStudioClient``)."""

    def _drive(self, flow: Flow[T], /) -> T: ...


class AsyncDriven(Protocol):
    """A client whose ``_drive`` returns a coroutine that runs a flow (``AsyncLMStudioClient``)."""

    def _drive(self, flow: Flow[T], /) -> Coroutine[Any, Any, T]: ...


class operation(Generic[P, T]):  # lower case: it is used like ``property``
    """A client method written once, as a flow: ``chat = operation(_chat)`` in the shared base.

    On a sync client the method runs the flow to its value; on an async client it is an ``async def`` (a coroutine
    function, as ``inspect`` sees it) that runs the flow.
    ``help()`` and IPython's ``?`` show the flow's parameters and docstring.
    """

    def __init__(self, flow: Callable[Concatenate[Any, P], Flow[T]]) -> None:
        self._flow = flow
        self.__doc__ = flow.__doc__

        def call(client: Any, /, *args: Any, **kwargs: Any) -> Any:
            return client._drive(flow(client, *args, **kwargs))

        # the async client's method is an ``async def`` of its own: inspect.iscoroutinefunction (tenacity,
        # unittest.mock.create_autospec) must see a coroutine function, as before operations were flows
        async def acall(client: Any, /, *args: Any, **kwargs: Any) -> Any:
            return await client._drive(flow(client, *args, **kwargs))

        # what help() shows: the flow's parameters; what it returns, the docstring says
        signature = inspect.signature(flow).replace(return_annotation=inspect.Signature.empty)
        for method in (call, acall):
            method.__signature__ = signature  # type: ignore[union-attr]
            method.__doc__ = flow.__doc__
        self._call = call
        self._acall = acall
        self._drives_async: dict[type, bool] = {}  # per client class: is its ``_drive`` a coroutine function?

    def __set_name__(self, owner: type, name: str) -> None:
        for method in (self._call, self._acall):
            method.__name__ = name
            method.__qualname__ = f"{owner.__qualname__}.{name}"

    def _method_for(self, owner: type) -> Callable[..., Any]:
        drives_async = self._drives_async.get(owner)
        if drives_async is None:
            drives_async = self._drives_async[owner] = inspect.iscoroutinefunction(getattr(owner, "_drive", None))
        return self._acall if drives_async else self._call

    @overload
    def __get__(self, client: None, owner: type | None = None) -> Callable[..., object]: ...

    @overload
    def __get__(self, client: SyncDriven, owner: type | None = None) -> Callable[P, T]: ...

    @overload
    def __get__(self, client: AsyncDriven, owner: type | None = None) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, client: object, owner: type | None = None) -> Callable[..., object]:
        method = self._method_for(owner if owner is not None else type(client))
        if client is None:
            return method
        return types.MethodType(method, client)
