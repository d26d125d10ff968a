"""What the two clients share (:class:`~lm_notebook.client.clients.LMStudioClient` and its async twin): every
operation, written once as a flow, over the client's settings and state (:mod:`lm_notebook.client.client_state`).

A flow is a generator that yields the I/O it needs and receives its answer (see :mod:`lm_notebook.client.flows`);
:class:`~lm_notebook.client.flows.operation` publishes it as a method that the sync client runs to its value and the
async client returns as a coroutine. Nothing here does I/O. Below it: how each request goes out
(:mod:`~lm_notebook.client.client_requests`) and which route a chat takes (:mod:`~lm_notebook.client.client_routing`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

import httpx

from lm_notebook.client.client_routing import RoutingClient
from lm_notebook.client.client_state import HttpT, TransportT
from lm_notebook.client.embeddings import embed_flow
from lm_notebook.client.error_explanation import explained_error
from lm_notebook.client.errors import (
    ClientClosedError,
    ContextLengthExceededError,
    EndpointNotSupportedError,
    LMStudioAPIError,
    LMStudioError,
    ModelLoadError,
    ModelNotFoundError,
    NoModelLoadedError,
    model_not_found_message,
    needs_newer_lmstudio,
)
from lm_notebook.client.flows import Flow, ReadBody, Send, operation
from lm_notebook.client.images import DEFAULT_MAX_IMAGE_EDGE, ImageInput, images_in
from lm_notebook.client.native_events import result_from_native_body
from lm_notebook.client.native_route import chat_path, is_native_payload, native_images
from lm_notebook.client.payloads import Messages, conversation, load_payload, probe_payload
from lm_notebook.client.request_parts import RequestParts, refuses_json_schema, vision_refusal
from lm_notebook.client.routes import (
    CHAT_PATH,
    LOAD_PATH,
    MODEL_ROUTES,
    OPENAI_MODELS_PATH,
    UNLOAD_PATH,
    LoadResult,
    load_result,
    parse_models,
    result_from_body,
)
from lm_notebook.client.schemas import json_object_form
from lm_notebook.client.stream_base import OnToken, ReadStream, StreamBase
from lm_notebook.client.stream_connection import Trace
from lm_notebook.client.types import ChatResult, ModelInfo

StreamT = TypeVar("StreamT", bound=StreamBase[Any])

# what a probe after an empty stream may reveal; anything else leaves the stream's own error standing
_EMPTY_STREAM_REASONS = (ContextLengthExceededError, ModelNotFoundError, NoModelLoadedError, ModelLoadError)
class BaseClient(RoutingClient[HttpT, TransportT], Generic[HttpT, TransportT, StreamT]):
    """Every operation the sync and async clients share, each a flow; no I/O here. The twins set ``_http_type``
    (the httpx client class) and ``_stream_type`` (the stream class) and do the I/O of each step (``_perform``)."""

    _stream_type: type[StreamT]

    def _check_vision(self, payload: Mapping[str, Any]) -> Flow[None]:
        """Refuse images for a model the server lists without vision (naming those that have it); when the server
        does not say, send, and its own error answers."""
        count = images_in(payload.get("messages") or ()) or native_images(payload)
        if not count:
            return
        models = self._listed
        if models is None or all(m.id != payload["model"] for m in models):
            try:
                models = tuple((yield from self._list_models()))
            except ClientClosedError:
                raise
            except LMStudioError:
                return
        refusal = vision_refusal(payload["model"], models, count, self.base_url)
        if refusal is not None:
            raise refusal

    def _server_form(self, payload: dict[str, Any]) -> None:
        """Put a JSON-schema ``response_format`` in the form this server takes (llama.cpp's, once it refused ours)."""
        fmt = payload.get("response_format")
        if self._wants_json_object and isinstance(fmt, Mapping):
            payload["response_format"] = json_object_form(fmt) or fmt

    def _json_schema_refused(self, err: LMStudioAPIError, payload: dict[str, Any]) -> bool:
        """Whether ``err`` is a server refusing LM Studio's JSON-schema form; if so the payload now has the other."""
        fmt = payload.get("response_format")
        if self._is_lmstudio or not isinstance(fmt, Mapping) or not refuses_json_schema(err):
            return False
        other = json_object_form(fmt)
        if other is None:
            return False
        self._wants_json_object = True
        payload["response_format"] = other
        return True

    def _chat_body(self, payload: dict[str, Any]) -> Flow[Any]:
        """Send a chat request, unstreamed; its body."""
        self._server_form(payload)
        try:
            return (yield from self._json("POST", CHAT_PATH, json_body=payload, model=payload["model"]))
        except LMStudioAPIError as err:
            if not self._json_schema_refused(err, payload):
                raise
        return (yield from self._json("POST", CHAT_PATH, json_body=payload, model=payload["model"]))

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
            self._native_chat = route == MODEL_ROUTES[0]  # /api/v1/models answers on 0.4+, which has /api/v1/chat
            models = parse_models(route, body)
            self._listed = tuple(models)
            return models
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
        except ClientClosedError:
            raise
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

    # --- embeddings (the flow: client/embeddings.py) -------------------------------------------------------------
    embed = operation(embed_flow)

    # --- chat ----------------------------------------------------------------------------------------------------
    def _chat(
        self,
        /,
        messages: Messages,
        *,
        model: str | None = None,
        images: Iterable[ImageInput] | None = None,
        schema: object = None,
        max_image_edge: int | None = DEFAULT_MAX_IMAGE_EDGE,
        **params: Any,
    ) -> Flow[ChatResult]:
        """One answer, not streamed. ``messages``: a string or a list of role/content dicts.

        ``images``: pictures for a vision model, sent with the last user message (paths, bytes, PIL images, numpy
        arrays, matplotlib figures, ``IPython.display.Image``; longer sides than ``max_image_edge`` are
        downscaled). ``schema``: a pydantic model class or a JSON-schema dict the answer must follow; the result's
        ``.parsed`` is the object (``AnswerFormatError`` when the answer breaks it).
        """
        parts = RequestParts.of(images, schema, max_image_edge)
        payload = yield from self._routed(*self._chat_payloads(messages, model, False, params, parts))
        started = time.perf_counter()
        yield from self._check_model(payload["model"])
        yield from self._check_vision(payload)
        if not is_native_payload(payload):
            body = yield from self._chat_body(payload)
            return parts.finish(result_from_body(body, started))
        try:
            body = yield from self._json("POST", chat_path(payload), json_body=payload, model=payload["model"],
                                         max_tokens=payload.get("max_output_tokens"))
        except EndpointNotSupportedError as err:
            raise self._native_refused(err, payload) from err
        self._native_chat = True
        return parts.finish(result_from_native_body(body, started, payload.get("max_output_tokens")))

    chat = operation(_chat)

    def stream_chat(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        images: Iterable[ImageInput] | None = None,
        schema: object = None,
        max_image_edge: int | None = DEFAULT_MAX_IMAGE_EDGE,
        **params: Any,
    ) -> StreamT:
        """The answer as a stream, sent on first use: iterate it for text as it arrives (``async for`` on the async
        client), then ``.result()``. See :class:`~lm_notebook.client.stream.ChatStream`. ``images`` and ``schema``
        as for ``chat()``: with a schema, the text is the JSON as it grows and ``.result().parsed`` the object."""
        parts = RequestParts.of(images, schema, max_image_edge)
        payload, native = self._chat_payloads(messages, model, True, params, parts)
        stream = self._stream_type(self, payload, parts)
        stream._native_once_known = native  # the route is settled when the stream opens (see _routed)
        return stream

    def _open_stream(self, payload: dict[str, Any], trace: Trace | None) -> Flow[httpx.Response]:
        """Send a stream's request; its response with the body unread, or the error it answered with.

        ``trace`` goes with the request (a stream's :func:`~lm_notebook.client.stream_base.connect_trace`: told the
        network stream as soon as it connects, so the body is read through it and the sync stream's Stop can shut its
        socket down; and when the request has gone out).
        """
        yield from self._check_model(payload["model"])
        yield from self._check_vision(payload)
        if is_native_payload(payload):
            answer = yield from self._sent_stream(payload, trace, payload.get("max_output_tokens"))
            if isinstance(answer, EndpointNotSupportedError):
                raise self._native_refused(answer, payload) from answer
            if isinstance(answer, LMStudioAPIError):
                raise answer
            return answer
        self._server_form(payload)
        answer = yield from self._sent_stream(payload, trace, payload.get("max_tokens"))
        if isinstance(answer, LMStudioAPIError) and self._json_schema_refused(answer, payload):
            answer = yield from self._sent_stream(payload, trace, payload.get("max_tokens"))  # llama.cpp's form
        if isinstance(answer, LMStudioAPIError):
            raise answer
        return answer

    def _sent_stream(
        self, payload: dict[str, Any], trace: Trace | None, max_tokens: int | None
    ) -> Flow[httpx.Response | LMStudioAPIError]:
        """Send a stream's request on its route: its response with the body unread, or the error it answered."""
        request = self._stream_http.build_request(
            "POST", self._url(chat_path(payload)), json=payload,
            extensions={} if trace is None else {"trace": trace},
        )
        response = yield from self._exchange(Send(request, stream=True))
        if response.status_code < 400:
            return response
        yield from self._exchange(ReadBody(response))
        return (yield from explained_error(self, response, payload["model"], max_tokens))

    def _explain_empty_stream(self, payload: dict[str, Any]) -> Flow[None]:
        """A stream that carried nothing: ask once more, unstreamed and one token long, to learn the server's reason
        (LM Studio and llama.cpp both end an over-long prompt's stream this way)."""
        try:
            yield from self._json(
                "POST", CHAT_PATH, json_body=probe_payload(payload), model=payload["model"],
                max_tokens=payload.get("max_tokens"),
            )
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
        images: Iterable[ImageInput] | None = None,
        temperature: float = 0.7,
        max_tokens: int = 2048,
        stream: bool | None = None,
        **params: Any,
    ) -> Flow[ChatResult]:
        """The integration guide's ``sendMessage``: send ``prompt`` after ``conversation_history`` to the current
        model.

        With ``on_token(token, full_content)`` (or ``stream=True``) the answer is streamed. ``images`` go with
        ``prompt`` (see ``chat()``).
        """
        messages = conversation(prompt, conversation_history)
        model = self._model_for(None)
        params = {"temperature": temperature, "max_tokens": max_tokens, "images": images, **params}
        if stream is None:
            stream = on_token is not None
        if not stream:
            return (yield from self._chat(messages, model=model, **params))
        result: ChatResult = yield ReadStream(self.stream_chat(messages, model=model, **params), on_token)
        return result

    send_message = operation(_send_message)
