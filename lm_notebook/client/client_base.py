"""What the two clients share (:class:`~lm_notebook.client.clients.LMStudioClient` and its async twin): settings,
what the client has learnt about its server, and every operation, written once as a flow.

A flow is a generator that yields the I/O it needs and receives its answer (see :mod:`lm_notebook.client.flows`);
:class:`~lm_notebook.client.flows.operation` publishes it as a method that the sync client runs to its value and the
async client returns as a coroutine. Nothing here does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

from lm_notebook.client.error_classification import is_error_body
from lm_notebook.client.errors import (
    ContextLengthExceededError,
    EndpointNotSupportedError,
    LMStudioAPIError,
    LMStudioError,
    LMStudioRequestError,
    ModelLoadError,
    ModelNotFoundError,
    NoCurrentModelError,
    NoModelLoadedError,
    model_not_found_message,
    needs_newer_lmstudio,
)
from lm_notebook.client.flows import Flow, ReadBody, Send, operation
from lm_notebook.client.payloads import Messages, chat_payload, check_params, conversation, load_payload, probe_payload
from lm_notebook.client.routes import (
    CHAT_PATH,
    GREETING_PATH,
    LOAD_PATH,
    MODEL_ROUTES,
    OPENAI_MODELS_PATH,
    UNLOAD_PATH,
    LoadResult,
    error_from_response,
    json_or_none,
    load_result,
    looks_like_lmstudio,
    model_ids,
    parse_models,
    result_from_body,
)
from lm_notebook.client.settings import base_url_or_env, checked_token, resolve_timeout, token_from_env
from lm_notebook.client.stream_base import OnSocket, OnToken, ReadStream, StreamBase, socket_trace
from lm_notebook.client.transport_errors import translated
from lm_notebook.client.types import ChatResult, ModelInfo

if TYPE_CHECKING:
    from typing_extensions import Self

HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)
StreamT = TypeVar("StreamT", bound=StreamBase[Any])

# the greeting and model-list look-ups the client makes on its own account: quick, or not at all
_PROBE_TIMEOUT = httpx.Timeout(5.0)
# what a probe after an empty stream may reveal; anything else leaves the stream's own error standing
_EMPTY_STREAM_REASONS = (ContextLengthExceededError, ModelNotFoundError, NoModelLoadedError, ModelLoadError)
# A stream's connection is not reused: a server that aborts a stream (llama.cpp's server on a prompt longer than the
# context) may close the socket just after the body ends, and the next request on that pooled connection would fail
# with "connection reset". One loopback connect per stream is nothing next to a model's answer.
_STREAM_HEADERS = {"Connection": "close"}
# ... and a stream never takes a pooled connection either: a fresh one is always connected, so the client knows its
# socket from the start (a Stop from another thread can wake a request still waiting for a model to load)
_NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


class BaseClient(Generic[HttpT, TransportT, StreamT]):
    """Everything the sync and async clients share; no I/O here. The twins set ``_http_type`` (the httpx client
    class) and ``_stream_type`` (the stream class) and do the I/O of each step (``_perform``)."""

    _http_type: type[HttpT]
    _stream_type: type[StreamT]

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        transport: TransportT | None = None,
        model: str | None = None,
    ) -> None:
        self.base_url = base_url_or_env(base_url)
        self._api_key = checked_token(api_key or token_from_env())
        self.timeout = resolve_timeout(timeout)
        self._current_model = model
        self._models_route: str | None = None  # which models route this server answered
        # LM Studio checks model ids itself; other OpenAI-compatible servers (llama.cpp's) may silently answer an
        # unknown id with whatever model they have, so for them the client checks ids against /v1/models.
        self._is_lmstudio: bool | None = None
        self._known_ids: frozenset[str] = frozenset()
        # trust_env=False: a proxy from the environment must not intercept a local model server.
        options: dict[str, Any] = {"base_url": self.base_url, "headers": self._headers(), "timeout": self.timeout,
                                   "transport": transport, "trust_env": False}
        self._http: HttpT = self._http_type(**options)
        # streams get a connection of their own, never pooled: see _NO_KEEPALIVE
        self._stream_http: HttpT = self._http_type(**options, limits=_NO_KEEPALIVE)

    @classmethod
    def from_client(
        cls,
        client: BaseClient[Any, Any, Any],
        *,
        timeout: float | httpx.Timeout | None = None,
        transport: TransportT | None = None,
    ) -> Self:
        """A client of this kind for the same server, token and current model as ``client``, knowing what it learnt
        of the server: ``AsyncLMStudioClient.from_client(get_client())`` gives an async client for the shared one.

        >>> async with AsyncLMStudioClient.from_client(get_client()) as aclient:   # doctest: +SKIP
        ...     print((await aclient.chat("Hello")).content)
        """
        twin = cls(
            client.base_url,
            api_key=client._api_key,
            timeout=client.timeout if timeout is None else timeout,
            transport=transport,
            model=client.current_model,
        )
        twin._models_route = client._models_route
        twin._is_lmstudio, twin._known_ids = client._is_lmstudio, client._known_ids
        return twin

    def with_options(
        self,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        transport: TransportT | None = None,
    ) -> Self:
        """A new client of the same kind (token, current model) with another base URL, timeout and/or transport.

        >>> slow = client.with_options(timeout=900)   # doctest: +SKIP
        """
        return type(self)(
            base_url or self.base_url,
            api_key=self._api_key,
            timeout=self.timeout if timeout is None else timeout,
            transport=transport,
            model=self.current_model,
        )

    # --- the current model (the integration guide's `currentModel`) -----------------------------------------------
    @property
    def current_model(self) -> str | None:
        return self._current_model

    @current_model.setter
    def current_model(self, model_id: str | None) -> None:
        self.set_current_model(model_id)

    def set_current_model(self, model_id: str | None) -> None:
        """Select the model that requests without ``model=`` go to."""
        if model_id is not None and (not isinstance(model_id, str) or not model_id.strip()):
            raise LMStudioRequestError(f"A model id must be a non-empty string, not {model_id!r}.")
        self._current_model = model_id.strip() if model_id else None

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    def __repr__(self) -> str:
        auth = ", api_key=<set>" if self._api_key else ""
        return f"{type(self).__name__}(base_url={self.base_url!r}, current_model={self._current_model!r}{auth})"

    # --- pure helpers ----------------------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "lm_notebook"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _model_for(self, model: str | None) -> str:
        chosen = model or self._current_model
        if not chosen:
            raise NoCurrentModelError()
        return chosen

    def _chat_payload(
        self, messages: Messages, model: str | None, stream: bool, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        check_params(params)
        return chat_payload(messages, self._model_for(model), stream, params)

    def _unknown_model_error(self, model: str, ids: list[str]) -> ModelNotFoundError | None:
        self._known_ids = frozenset(ids)
        if not ids or model in self._known_ids:
            return None
        return ModelNotFoundError(
            model_not_found_message(model, ids, self.base_url)
            + " (This server does not check model ids itself: it would have answered with another model.)",
            status_code=404,
            model=model,
            available=ids,
        )

    # --- steps: every request goes through _exchange -------------------------------------------------------------
    def _exchange(self, step: Send | ReadBody) -> Flow[httpx.Response]:
        """Ask for one piece of I/O. An httpx error it meets is thrown in here by the driver and leaves as ours."""
        with translated(base_url=self.base_url, read_timeout=self.timeout.read):
            response: httpx.Response = yield step
        return response

    def _probe(self, path: str) -> Flow[httpx.Response]:
        """A quick ``GET`` the client makes on its own account (who is there, which ids it has)."""
        return self._exchange(Send(self._http.build_request("GET", path, timeout=_PROBE_TIMEOUT)))

    def _json(self, method: str, path: str, *, json_body: Any = None, model: str | None = None) -> Flow[Any]:
        """Send one request; its JSON body, or the right error (even for a 200 whose body is an error)."""
        response = yield from self._exchange(Send(self._http.build_request(method, path, json=json_body)))
        body = json_or_none(response)
        if response.status_code >= 400 or body is None or is_error_body(body):
            raise (yield from self._checked_error(response, model))
        return body

    _request = operation(_json)

    def _checked_error(self, response: httpx.Response, model: str | None) -> Flow[LMStudioAPIError]:
        """The error a response means; an unknown model's lists the ids the server has."""
        err = error_from_response(response, base_url=self.base_url, model=model)
        if isinstance(err, ModelNotFoundError):
            ids = yield from self._model_ids_quietly()
            if ids:
                err = error_from_response(response, base_url=self.base_url, model=model, available=ids)
        return err

    def _model_ids_quietly(self) -> Flow[list[str]]:
        """The ids ``/v1/models`` lists; none when it cannot say (they only ever improve a message)."""
        try:
            return model_ids((yield from self._probe(OPENAI_MODELS_PATH)).json())
        except (LMStudioError, ValueError, KeyError, AttributeError, TypeError):
            return []

    def _greeting(self) -> Flow[bool]:
        """Ask who answers (``GET /lmstudio-greeting``) and remember whether it is LM Studio."""
        self._is_lmstudio = looks_like_lmstudio((yield from self._probe(GREETING_PATH)))
        return self._is_lmstudio

    def _check_model(self, model: str) -> Flow[None]:
        """On a server that is not LM Studio, refuse an id it does not list (it would answer with another model)."""
        if self._is_lmstudio is None:
            yield from self._greeting()
        if self._is_lmstudio or model in self._known_ids:
            return
        err = self._unknown_model_error(model, (yield from self._model_ids_quietly()))
        if err is not None:
            raise err

    # --- models --------------------------------------------------------------------------------------------------
    def _fetch_models(self) -> Flow[list[dict[str, Any]]]:
        """The ``data`` list of ``GET /v1/models`` (the integration guide's ``fetchModels``)."""
        body = yield from self._json("GET", OPENAI_MODELS_PATH)
        return list(body.get("data", []))

    fetch_models = operation(_fetch_models)

    def _list_models(self) -> Flow[list[ModelInfo]]:
        """Every model with its type, state, format, quantization and context lengths (the richest route)."""
        routes = (self._models_route,) if self._models_route else MODEL_ROUTES
        last: LMStudioAPIError | None = None
        for route in routes:
            try:
                body = yield from self._json("GET", route)
            except EndpointNotSupportedError as err:
                last = err
                continue
            self._models_route = route
            return parse_models(route, body)
        assert last is not None
        raise last

    list_models = operation(_list_models)

    def _get_model(self, model_id: str) -> Flow[ModelInfo]:
        """One model's metadata; ``ModelNotFoundError`` (listing the ids) when it is unknown."""
        models = yield from self._list_models()
        for m in models:
            if m.id == model_id:
                return m
        ids = [m.id for m in models]
        raise ModelNotFoundError(
            model_not_found_message(model_id, ids, self.base_url), status_code=404, model=model_id, available=ids
        )

    get_model = operation(_get_model)

    def _is_running(self) -> Flow[bool]:
        """True when a server answers at the base URL (LM Studio's greeting, or any OpenAI-compatible /v1/models)."""
        try:
            if (yield from self._greeting()):
                return True
            return (yield from self._probe(OPENAI_MODELS_PATH)).status_code in (200, 401)
        except LMStudioError:
            return False

    is_running = operation(_is_running)

    def _load_model(self, model: str, *, context_length: int | None = None, ttl: int | None = None) -> Flow[LoadResult]:
        """Load a model (blocks until loaded). Needs LM Studio 0.4+."""
        try:
            body = yield from self._json(
                "POST", LOAD_PATH, json_body=load_payload(model, context_length, ttl), model=model
            )
        except EndpointNotSupportedError as err:
            raise needs_newer_lmstudio(
                "load_model()", err, self.base_url, f"Load it in LM Studio or with `lms load {model}`."
            ) from err
        return load_result(body, model)

    load_model = operation(_load_model)

    def _unload_model(self, instance_id: str) -> Flow[None]:
        """Unload a loaded model instance. Needs LM Studio 0.4+."""
        try:
            yield from self._json("POST", UNLOAD_PATH, json_body={"instance_id": instance_id})
        except EndpointNotSupportedError as err:
            raise needs_newer_lmstudio(
                "unload_model()", err, self.base_url, f"Unload it in LM Studio or with `lms unload {instance_id}`."
            ) from err

    unload_model = operation(_unload_model)

    # --- chat ----------------------------------------------------------------------------------------------------
    def _chat(self, /, messages: Messages, *, model: str | None = None, **params: Any) -> Flow[ChatResult]:
        """One answer, not streamed. ``messages``: a string or a list of role/content dicts."""
        payload = self._chat_payload(messages, model, False, params)
        started = time.perf_counter()
        yield from self._check_model(payload["model"])
        body = yield from self._json("POST", CHAT_PATH, json_body=payload, model=payload["model"])
        return result_from_body(body, started)

    chat = operation(_chat)

    def stream_chat(self, messages: Messages, *, model: str | None = None, **params: Any) -> StreamT:
        """The answer as a stream, sent on first use: iterate it for text as it arrives (``async for`` on the async
        client), then ``.result()``. See :class:`~lm_notebook.client.stream.ChatStream`."""
        return self._stream_type(self, self._chat_payload(messages, model, True, params))

    def _open_stream(self, payload: dict[str, Any], on_socket: OnSocket | None) -> Flow[httpx.Response]:
        """Send a stream's request; its response with the body unread, or the error it answered with.

        ``on_socket`` is told the socket as soon as it connects (the sync stream's Stop shuts it down).
        """
        yield from self._check_model(payload["model"])
        request = self._stream_http.build_request(
            "POST", CHAT_PATH, json=payload, headers=_STREAM_HEADERS,
            extensions={} if on_socket is None else {"trace": socket_trace(on_socket)},
        )
        response = yield from self._exchange(Send(request, stream=True))
        if response.status_code >= 400:
            yield from self._exchange(ReadBody(response))
            raise (yield from self._checked_error(response, payload["model"]))
        return response

    def _explain_empty_stream(self, payload: dict[str, Any]) -> Flow[None]:
        """A stream that carried nothing: ask once more, unstreamed and one token long, to learn the server's reason
        (LM Studio and llama.cpp both end an over-long prompt's stream this way)."""
        try:
            yield from self._json("POST", CHAT_PATH, json_body=probe_payload(payload), model=payload["model"])
        except _EMPTY_STREAM_REASONS:
            raise
        except LMStudioError:
            pass

    def _send_message(
        self,
        /,
        prompt: str,
        *,
        conversation_history: Iterable[Mapping[str, Any]] = (),
        on_token: OnToken | None = None,
        temperature: float = 0.7,
        max_tokens: int = 2048,
        stream: bool | None = None,
        **params: Any,
    ) -> Flow[ChatResult]:
        """The integration guide's ``sendMessage``: send ``prompt`` after ``conversation_history`` to the current
        model.

        With ``on_token(token, full_content)`` (or ``stream=True``) the answer is streamed.
        """
        messages = conversation(prompt, conversation_history)
        model = self._model_for(None)
        params = {"temperature": temperature, "max_tokens": max_tokens, **params}
        if stream is None:
            stream = on_token is not None
        if not stream:
            return (yield from self._chat(messages, model=model, **params))
        result: ChatResult = yield ReadStream(self.stream_chat(messages, model=model, **params), on_token)
        return result

    send_message = operation(_send_message)
