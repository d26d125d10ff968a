"""The LM Studio client: :class:`LMStudioClient` and its async twin :class:`AsyncLMStudioClient`.

Both share :class:`_BaseClient`, which holds every piece of pure logic (URLs, auth, payloads, parsing, error
mapping); only the methods that do I/O are written twice, with the same names (``close`` / ``aclose``).

>>> client = LMStudioClient()                       # doctest: +SKIP
>>> [m.id for m in client.list_models()]            # doctest: +SKIP
>>> client.set_current_model("qwen2.5-7b-instruct")  # doctest: +SKIP
>>> for text in client.stream_chat("Tell me a joke"):  # doctest: +SKIP
...     print(text, end="")
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from lm_notebook.client.accumulator import ChatAccumulator
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
    classify_error,
    is_error_body,
    is_unexpected_endpoint,
    model_not_found_message,
    parse_error_body,
)
from lm_notebook.client.stream import AsyncChatStream, ChatStream
from lm_notebook.client.transport_errors import translate_transport_error
from lm_notebook.client.types import ChatResult, ModelInfo

DEFAULT_BASE_URL = "http://127.0.0.1:1234"
DEFAULT_CONNECT_TIMEOUT = 5.0
# A just-in-time load of a large model can take minutes and LM Studio has no server-side timeout.
DEFAULT_READ_TIMEOUT = 300.0

Messages = str | Sequence[Mapping[str, Any]]
OnToken = Callable[[str, str], object]

_MODEL_ROUTES = ("/api/v1/models", "/api/v0/models", "/v1/models")
_CHAT_PATH = "/v1/chat/completions"
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


@dataclass(frozen=True)
class LoadResult:
    """What ``POST /api/v1/models/load`` answered."""

    instance_id: str
    type: str | None = None
    load_time_seconds: float | None = None
    status: str | None = None


def normalize_base_url(url: str) -> str:
    """``http://host:1234/v1/`` → ``http://host:1234`` (a trailing ``/v1`` is optional for users)."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def resolve_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    """A number is the read timeout (connect stays short); None uses ``LMSTUDIO_TIMEOUT`` or the defaults."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if timeout is None:
        env = os.environ.get("LMSTUDIO_TIMEOUT")
        try:
            timeout = float(env) if env else None
        except ValueError:
            raise LMStudioRequestError(f"LMSTUDIO_TIMEOUT must be a number of seconds, not {env!r}.") from None
    read = DEFAULT_READ_TIMEOUT if timeout is None else float(timeout)
    if read <= 0:
        raise LMStudioRequestError("timeout must be a positive number of seconds (nothing may wait forever).")
    return httpx.Timeout(read, connect=min(DEFAULT_CONNECT_TIMEOUT, read))


def _checked_token(token: str | None) -> str | None:
    """The token as sent: surrounding whitespace (a newline from a file) dropped; never echoed back."""
    if token is None:
        return None
    token = token.strip()
    if not token:
        return None
    if not token.isprintable() or any(c.isspace() for c in token):
        raise LMStudioRequestError(
            "The API token contains spaces or control characters, so it cannot be sent in an HTTP header. Check "
            "LM_API_TOKEN (or the api_key you passed): it should look like sk-lm-XXXXXXXX:XXXXXXXXXXXXXXXXXXXX."
        )
    return token


def _token_from_env() -> str | None:
    return os.environ.get("LM_API_TOKEN") or os.environ.get("LMSTUDIO_API_TOKEN") or None


def as_messages(messages: Messages) -> list[dict[str, Any]]:
    """A bare string is one user message; a list of role/content dicts passes through (copied)."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m:
            raise LMStudioRequestError(
                f"messages[{i}] must be a dict with 'role' and 'content' (got {type(m).__name__})."
            )
        out.append(dict(m))
    return out


def _check_params(params: Mapping[str, Any]) -> None:
    fmt = params.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_object":
        raise LMStudioRequestError(
            "LM Studio rejects response_format {'type': 'json_object'}. Pass a JSON schema instead: "
            "response_format={'type': 'json_schema', 'json_schema': {'name': 'answer', 'schema': {...}}}."
        )
    mt = params.get("max_tokens")
    if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or (mt < 1 and mt != -1)):
        raise LMStudioRequestError(f"max_tokens must be a positive integer or -1 for no limit, not {mt!r}.")
    temp = params.get("temperature")
    if temp is not None and (not isinstance(temp, (int, float)) or temp < 0):
        raise LMStudioRequestError(f"temperature must be a number ≥ 0, not {temp!r}.")


def _capabilities(raw: Any) -> tuple[str, ...] | None:
    if isinstance(raw, Mapping):
        return tuple(k for k, v in raw.items() if v)
    if isinstance(raw, (list, tuple)):
        return tuple(str(c) for c in raw)
    return None


def parse_models(route: str, body: Any) -> list[ModelInfo]:
    """Models from the body of any of the three models routes."""
    if route == "/api/v1/models":
        out = []
        for m in body.get("models", []):
            instances = m.get("loaded_instances") or []
            config = (instances[0].get("config") or {}) if instances else {}
            caps = _capabilities(m.get("capabilities"))
            kind = m.get("type")
            if kind == "embedding":
                kind = "embeddings"
            elif kind == "llm" and caps and "vision" in caps:
                kind = "vlm"
            quant = m.get("quantization")
            out.append(
                ModelInfo(
                    id=m.get("key") or m.get("id", ""),
                    type=kind,
                    publisher=m.get("publisher"),
                    arch=m.get("architecture") or m.get("arch"),
                    format=m.get("format"),
                    quantization=quant.get("name") if isinstance(quant, Mapping) else quant,
                    state="loaded" if instances else "not-loaded",
                    max_context_length=m.get("max_context_length"),
                    loaded_context_length=config.get("context_length"),
                    capabilities=caps,
                    display_name=m.get("display_name"),
                    size_bytes=m.get("size_bytes"),
                    params=m.get("params_string"),
                    parallel=config.get("parallel"),
                    instance_ids=tuple(i.get("id", "") for i in instances),
                    source=route,
                )
            )
        return out
    data = body.get("data", []) if isinstance(body, Mapping) else []
    if route == "/api/v0/models":
        return [
            ModelInfo(
                id=m["id"],
                type=m.get("type"),
                publisher=m.get("publisher"),
                arch=m.get("arch"),
                format=m.get("compatibility_type"),
                quantization=m.get("quantization"),
                state=m.get("state"),
                max_context_length=m.get("max_context_length"),
                loaded_context_length=m.get("loaded_context_length"),
                capabilities=_capabilities(m.get("capabilities")),
                source=route,
            )
            for m in data
        ]
    return [ModelInfo(id=m["id"], source=route) for m in data]


class _BaseClient:
    """Everything the sync and async clients share; no I/O here."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        model: str | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url or os.environ.get("LMSTUDIO_BASE_URL") or DEFAULT_BASE_URL)
        self._api_key = _checked_token(api_key or _token_from_env())
        self.timeout = resolve_timeout(timeout)
        self._current_model = model
        self._models_route: str | None = None  # which models route this server answered
        # LM Studio checks model ids itself; other OpenAI-compatible servers (llama.cpp's) may silently answer an
        # unknown id with whatever model they have, so for them the client checks ids against /v1/models.
        self._is_lmstudio: bool | None = None
        self._known_ids: frozenset[str] = frozenset()

    # --- seed surface ----------------------------------------------------------------------------------------------
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

    def _httpx_kwargs(self, transport: Any) -> dict[str, Any]:
        # trust_env=False: a proxy from the environment must not intercept a local model server.
        return {
            "base_url": self.base_url,
            "headers": self._headers(),
            "timeout": self.timeout,
            "transport": transport,
            "trust_env": False,
        }

    def _model_for(self, model: str | None) -> str:
        chosen = model or self._current_model
        if not chosen:
            raise NoCurrentModelError()
        return chosen

    def _chat_payload(
        self, messages: Messages, model: str | None, stream: bool, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        _check_params(params)
        payload: dict[str, Any] = {"model": self._model_for(model), "messages": as_messages(messages)}
        payload.update({k: v for k, v in params.items() if v is not None})
        payload["stream"] = stream
        if stream:
            options = dict(payload.get("stream_options") or {})
            options.setdefault("include_usage", True)
            payload["stream_options"] = options
        return payload

    @staticmethod
    def _send_message_messages(prompt: str, history: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if not isinstance(prompt, str) or not prompt.strip():
            raise LMStudioRequestError("The prompt is empty: give send_message() some text to send.")
        return [*as_messages(list(history)), {"role": "user", "content": prompt}]

    @property
    def _read_timeout(self) -> float | None:
        return self.timeout.read

    def _translate(self, exc: httpx.HTTPError) -> LMStudioError:
        return translate_transport_error(exc, base_url=self.base_url, read_timeout=self._read_timeout)

    def _error_for(
        self, response: httpx.Response, text: str, *, model: str | None, available: list[str] | None = None
    ) -> LMStudioAPIError:
        body, message, code = parse_error_body(text)
        return classify_error(
            status_code=response.status_code,
            body=body,
            message=message,
            code=code,
            base_url=self.base_url,
            method=response.request.method,
            path=response.request.url.path,
            model=model,
            available=available,
            retry_after=response.headers.get("retry-after"),
        )

    @staticmethod
    def _json_or_error(response: httpx.Response) -> Any:
        """The JSON body, or None when it is not JSON."""
        try:
            return response.json()
        except ValueError:
            return None

    def _unsupported(self, what: str, err: LMStudioAPIError, instead: str) -> EndpointNotSupportedError:
        return EndpointNotSupportedError(
            f"{what} needs LM Studio 0.4 or newer; the server at {self.base_url} does not have this route "
            f"(HTTP {err.status_code}). {instead}",
            status_code=err.status_code,
            body=err.body,
            server_message=err.server_message,
        )

    @staticmethod
    def _looks_like_lmstudio(response: httpx.Response) -> bool:
        """Judge ``GET /lmstudio-greeting``: the greeting, a 401 or LM Studio's 200 "Unexpected endpoint" answer."""
        if response.status_code == 401:
            return True
        try:
            body = response.json()
        except ValueError:
            return False
        if not isinstance(body, dict):
            return False
        return bool(body.get("lmstudio")) or is_unexpected_endpoint(str(body.get("error", "")))

    def _unknown_model_error(self, model: str, ids: list[str]) -> ModelNotFoundError | None:
        self._known_ids = frozenset(ids)
        if not ids or model in self._known_ids:
            return None
        err = ModelNotFoundError(
            model_not_found_message(model, ids, self.base_url)
            + " (This server does not check model ids itself: it would have answered with another model.)",
            status_code=404,
            body=None,
        )
        err.available, err.model = ids, model
        return err

    @staticmethod
    def _probe_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
        """The same request, not streamed and one token long: cheap, and the server says what is wrong."""
        probe = {k: v for k, v in payload.items() if k not in ("stream", "stream_options")}
        probe.update(stream=False, max_tokens=1)
        return probe

    def _result_from_body(self, body: Any, started: float) -> ChatResult:
        acc = ChatAccumulator(streaming=False, started=started)
        acc.add_message(body)
        acc.finish()
        return acc.result()


class LMStudioClient(_BaseClient):
    """Talks to LM Studio's server (``LMSTUDIO_BASE_URL``, default ``http://127.0.0.1:1234``).

    ``api_key`` (else ``LM_API_TOKEN``, else ``LMSTUDIO_API_TOKEN``) is sent as a Bearer token and never shown.
    ``timeout``: seconds to wait for an answer (connect stays short), or an ``httpx.Timeout``.
    ``transport``: an httpx transport (e.g. ``httpx.MockTransport``) for tests.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.BaseTransport | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(base_url, api_key=api_key, timeout=timeout, model=model)
        self._http = httpx.Client(**self._httpx_kwargs(transport))
        # streams get a connection of their own, never pooled: see _NO_KEEPALIVE
        self._stream_http = httpx.Client(**self._httpx_kwargs(transport), limits=_NO_KEEPALIVE)

    def with_options(
        self, *, base_url: str | None = None, timeout: float | httpx.Timeout | None = None
    ) -> LMStudioClient:
        """A new client like this one (token, current model) with another base URL and/or timeout."""
        return LMStudioClient(
            base_url or self.base_url,
            api_key=self._api_key,
            timeout=self.timeout if timeout is None else timeout,
            model=self.current_model,
        )

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()
        self._stream_http.close()

    def __enter__(self) -> LMStudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- raw requests --------------------------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        model: str | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Any:
        """Send one request; return its JSON body or raise the right error (even for a 200 error body)."""
        try:
            response = self._http.request(
                method, path, json=json_body, timeout=timeout if timeout is not None else self.timeout
            )
        except httpx.HTTPError as exc:
            raise self._translate(exc) from exc
        body = self._json_or_error(response)
        if response.status_code >= 400 or body is None or is_error_body(body):
            raise self._checked_error(response, model)
        return body

    def _checked_error(self, response: httpx.Response, model: str | None) -> LMStudioAPIError:
        err = self._error_for(response, response.text, model=model)
        if isinstance(err, ModelNotFoundError):
            ids = self._model_ids_quietly()
            if ids:
                err = self._error_for(response, response.text, model=model, available=ids)
        return err

    def _model_ids_quietly(self) -> list[str]:
        try:
            body = self._http.get("/v1/models", timeout=_PROBE_TIMEOUT)
            return [m["id"] for m in body.json().get("data", [])]
        except (httpx.HTTPError, ValueError, KeyError, AttributeError, TypeError):
            return []

    # --- models --------------------------------------------------------------------------------------------------
    def fetch_models(self) -> list[dict[str, Any]]:
        """The ``data`` list of ``GET /v1/models``."""
        body = self._request("GET", "/v1/models")
        return list(body.get("data", []))

    def list_models(self) -> list[ModelInfo]:
        """Every model with its type, state, format, quantization and context lengths (the richest route)."""
        routes = (self._models_route,) if self._models_route else _MODEL_ROUTES
        last: LMStudioAPIError | None = None
        for route in routes:
            try:
                body = self._request("GET", route)
            except EndpointNotSupportedError as err:
                last = err
                continue
            self._models_route = route
            return parse_models(route, body)
        assert last is not None
        raise last

    def get_model(self, model_id: str) -> ModelInfo:
        """One model's metadata; ``ModelNotFoundError`` (listing the ids) when it is unknown."""
        models = self.list_models()
        for m in models:
            if m.id == model_id:
                return m
        ids = [m.id for m in models]
        raise ModelNotFoundError(model_not_found_message(model_id, ids, self.base_url), status_code=404, body=None)

    def is_running(self) -> bool:
        """True when a server answers at the base URL (LM Studio's greeting, or any OpenAI-compatible /v1/models)."""
        try:
            self._is_lmstudio = self._looks_like_lmstudio(self._http.get("/lmstudio-greeting", timeout=_PROBE_TIMEOUT))
            if self._is_lmstudio:
                return True
            return self._http.get("/v1/models", timeout=_PROBE_TIMEOUT).status_code in (200, 401)
        except httpx.HTTPError:
            return False

    def load_model(self, model: str, *, context_length: int | None = None, ttl: int | None = None) -> LoadResult:
        """Load a model (blocks until loaded). Needs LM Studio 0.4+."""
        payload: dict[str, Any] = {"model": model}
        if context_length is not None:
            payload["context_length"] = context_length
        if ttl is not None:
            payload["ttl"] = ttl
        try:
            body = self._request("POST", "/api/v1/models/load", json_body=payload, model=model)
        except EndpointNotSupportedError as err:
            raise self._unsupported("load_model()", err, f"Load it in LM Studio or with `lms load {model}`.") from err
        return LoadResult(
            instance_id=body.get("instance_id", model),
            type=body.get("type"),
            load_time_seconds=body.get("load_time_seconds"),
            status=body.get("status"),
        )

    def unload_model(self, instance_id: str) -> None:
        """Unload a loaded model instance. Needs LM Studio 0.4+."""
        try:
            self._request("POST", "/api/v1/models/unload", json_body={"instance_id": instance_id})
        except EndpointNotSupportedError as err:
            raise self._unsupported(
                "unload_model()", err, f"Unload it in LM Studio or with `lms unload {instance_id}`."
            ) from err

    # --- chat ----------------------------------------------------------------------------------------------------
    def chat(self, messages: Messages, *, model: str | None = None, **params: Any) -> ChatResult:
        """One answer, not streamed. ``messages``: a string or a list of role/content dicts."""
        payload = self._chat_payload(messages, model, False, params)
        started = time.perf_counter()
        self._check_model(payload["model"])
        body = self._request("POST", _CHAT_PATH, json_body=payload, model=payload["model"])
        return self._result_from_body(body, started)

    def stream_chat(self, messages: Messages, *, model: str | None = None, **params: Any) -> ChatStream:
        """A :class:`ChatStream`: iterate it for text as it arrives. The request is sent on first use."""
        payload = self._chat_payload(messages, model, True, params)
        return ChatStream(
            lambda on_socket: self._open_stream(payload, on_socket),
            base_url=self.base_url,
            read_timeout=self._read_timeout,
            model=payload["model"],
            explain_empty=lambda: self._explain_empty_stream(payload),
        )

    def _check_model(self, model: str) -> None:
        """On a server that is not LM Studio, refuse an id it does not list (it would answer with another model)."""
        if self._is_lmstudio is None:
            try:
                self._is_lmstudio = self._looks_like_lmstudio(
                    self._http.get("/lmstudio-greeting", timeout=_PROBE_TIMEOUT)
                )
            except httpx.HTTPError as exc:
                raise self._translate(exc) from exc
        if self._is_lmstudio or model in self._known_ids:
            return
        err = self._unknown_model_error(model, self._model_ids_quietly())
        if err is not None:
            raise err

    def _explain_empty_stream(self, payload: dict[str, Any]) -> None:
        """A stream that carried nothing: ask once more, unstreamed and one token long, to learn the server's reason
        (LM Studio and llama.cpp both end an over-long prompt's stream this way)."""
        try:
            self._request("POST", _CHAT_PATH, json_body=self._probe_payload(payload), model=payload["model"])
        except _EMPTY_STREAM_REASONS:
            raise
        except LMStudioError:
            pass

    def _open_stream(self, payload: dict[str, Any], on_socket: Callable[[socket.socket], None]) -> httpx.Response:
        self._check_model(payload["model"])

        def trace(event: str, info: dict[str, Any]) -> None:
            # the socket, as soon as it connects: a Stop from another thread can then wake a request that is
            # still waiting for its answer (a model load can take minutes)
            if event == "connection.connect_tcp.complete" and info.get("return_value") is not None:
                sock = info["return_value"].get_extra_info("socket")
                if sock is not None:
                    on_socket(sock)

        request = self._stream_http.build_request(
            "POST", _CHAT_PATH, json=payload, headers=_STREAM_HEADERS, extensions={"trace": trace}
        )
        try:
            response = self._stream_http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._translate(exc) from exc
        if response.status_code >= 400:
            try:
                response.read()
            except httpx.HTTPError as exc:
                raise self._translate(exc) from exc
            finally:
                response.close()
            raise self._checked_error(response, payload["model"])
        return response

    def send_message(
        self,
        prompt: str,
        *,
        conversation_history: Iterable[Mapping[str, Any]] = (),
        on_token: OnToken | None = None,
        temperature: float = 0.7,
        max_tokens: int = 2048,
        stream: bool | None = None,
        **params: Any,
    ) -> ChatResult:
        """The seed's verb: send ``prompt`` after ``conversation_history`` to the current model.

        With ``on_token(token, full_content)`` (or ``stream=True``) the answer is streamed.
        """
        messages = self._send_message_messages(prompt, conversation_history)
        model = self._model_for(None)
        if stream is None:
            stream = on_token is not None
        if not stream:
            return self.chat(messages, model=model, temperature=temperature, max_tokens=max_tokens, **params)
        full = ""
        with self.stream_chat(messages, model=model, temperature=temperature, max_tokens=max_tokens, **params) as s:
            for token in s:
                full += token
                if on_token is not None:
                    on_token(token, full)
        return s.result()


class AsyncLMStudioClient(_BaseClient):
    """The async twin of :class:`LMStudioClient`: same methods, awaited (``aclose`` instead of ``close``)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(base_url, api_key=api_key, timeout=timeout, model=model)
        self._http = httpx.AsyncClient(**self._httpx_kwargs(transport))
        self._stream_http = httpx.AsyncClient(**self._httpx_kwargs(transport), limits=_NO_KEEPALIVE)

    @classmethod
    def from_client(
        cls,
        client: _BaseClient,
        *,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> AsyncLMStudioClient:
        """An async client for the same server, token and current model as ``client`` (e.g. the shared one)."""
        twin = cls(
            client.base_url,
            api_key=client._api_key,
            timeout=client.timeout if timeout is None else timeout,
            transport=transport,
        )
        twin._current_model = client.current_model
        twin._models_route = client._models_route
        twin._is_lmstudio, twin._known_ids = client._is_lmstudio, client._known_ids
        return twin

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._stream_http.aclose()

    async def __aenter__(self) -> AsyncLMStudioClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        model: str | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Any:
        try:
            response = await self._http.request(
                method, path, json=json_body, timeout=timeout if timeout is not None else self.timeout
            )
        except httpx.HTTPError as exc:
            raise self._translate(exc) from exc
        body = self._json_or_error(response)
        if response.status_code >= 400 or body is None or is_error_body(body):
            raise await self._checked_error(response, model)
        return body

    async def _checked_error(self, response: httpx.Response, model: str | None) -> LMStudioAPIError:
        err = self._error_for(response, response.text, model=model)
        if isinstance(err, ModelNotFoundError):
            ids = await self._model_ids_quietly()
            if ids:
                err = self._error_for(response, response.text, model=model, available=ids)
        return err

    async def _model_ids_quietly(self) -> list[str]:
        try:
            body = await self._http.get("/v1/models", timeout=_PROBE_TIMEOUT)
            return [m["id"] for m in body.json().get("data", [])]
        except (httpx.HTTPError, ValueError, KeyError, AttributeError, TypeError):
            return []

    async def fetch_models(self) -> list[dict[str, Any]]:
        body = await self._request("GET", "/v1/models")
        return list(body.get("data", []))

    async def list_models(self) -> list[ModelInfo]:
        routes = (self._models_route,) if self._models_route else _MODEL_ROUTES
        last: LMStudioAPIError | None = None
        for route in routes:
            try:
                body = await self._request("GET", route)
            except EndpointNotSupportedError as err:
                last = err
                continue
            self._models_route = route
            return parse_models(route, body)
        assert last is not None
        raise last

    async def get_model(self, model_id: str) -> ModelInfo:
        models = await self.list_models()
        for m in models:
            if m.id == model_id:
                return m
        ids = [m.id for m in models]
        raise ModelNotFoundError(model_not_found_message(model_id, ids, self.base_url), status_code=404, body=None)

    async def is_running(self) -> bool:
        try:
            greeting = await self._http.get("/lmstudio-greeting", timeout=_PROBE_TIMEOUT)
            self._is_lmstudio = self._looks_like_lmstudio(greeting)
            if self._is_lmstudio:
                return True
            models = await self._http.get("/v1/models", timeout=_PROBE_TIMEOUT)
            return models.status_code in (200, 401)
        except httpx.HTTPError:
            return False

    async def load_model(self, model: str, *, context_length: int | None = None, ttl: int | None = None) -> LoadResult:
        payload: dict[str, Any] = {"model": model}
        if context_length is not None:
            payload["context_length"] = context_length
        if ttl is not None:
            payload["ttl"] = ttl
        try:
            body = await self._request("POST", "/api/v1/models/load", json_body=payload, model=model)
        except EndpointNotSupportedError as err:
            raise self._unsupported("load_model()", err, f"Load it in LM Studio or with `lms load {model}`.") from err
        return LoadResult(
            instance_id=body.get("instance_id", model),
            type=body.get("type"),
            load_time_seconds=body.get("load_time_seconds"),
            status=body.get("status"),
        )

    async def unload_model(self, instance_id: str) -> None:
        try:
            await self._request("POST", "/api/v1/models/unload", json_body={"instance_id": instance_id})
        except EndpointNotSupportedError as err:
            raise self._unsupported(
                "unload_model()", err, f"Unload it in LM Studio or with `lms unload {instance_id}`."
            ) from err

    async def chat(self, messages: Messages, *, model: str | None = None, **params: Any) -> ChatResult:
        payload = self._chat_payload(messages, model, False, params)
        started = time.perf_counter()
        await self._check_model(payload["model"])
        body = await self._request("POST", _CHAT_PATH, json_body=payload, model=payload["model"])
        return self._result_from_body(body, started)

    def stream_chat(self, messages: Messages, *, model: str | None = None, **params: Any) -> AsyncChatStream:
        payload = self._chat_payload(messages, model, True, params)
        return AsyncChatStream(
            lambda: self._open_stream(payload),
            base_url=self.base_url,
            read_timeout=self._read_timeout,
            model=payload["model"],
            explain_empty=lambda: self._explain_empty_stream(payload),
        )

    async def _check_model(self, model: str) -> None:
        if self._is_lmstudio is None:
            try:
                self._is_lmstudio = self._looks_like_lmstudio(
                    await self._http.get("/lmstudio-greeting", timeout=_PROBE_TIMEOUT)
                )
            except httpx.HTTPError as exc:
                raise self._translate(exc) from exc
        if self._is_lmstudio or model in self._known_ids:
            return
        err = self._unknown_model_error(model, await self._model_ids_quietly())
        if err is not None:
            raise err

    async def _explain_empty_stream(self, payload: dict[str, Any]) -> None:
        try:
            await self._request("POST", _CHAT_PATH, json_body=self._probe_payload(payload), model=payload["model"])
        except _EMPTY_STREAM_REASONS:
            raise
        except LMStudioError:
            pass

    async def _open_stream(self, payload: dict[str, Any]) -> httpx.Response:
        await self._check_model(payload["model"])
        request = self._stream_http.build_request("POST", _CHAT_PATH, json=payload, headers=_STREAM_HEADERS)
        try:
            response = await self._stream_http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._translate(exc) from exc
        if response.status_code >= 400:
            try:
                await response.aread()
            except httpx.HTTPError as exc:
                raise self._translate(exc) from exc
            finally:
                await response.aclose()
            raise await self._checked_error(response, payload["model"])
        return response

    async def send_message(
        self,
        prompt: str,
        *,
        conversation_history: Iterable[Mapping[str, Any]] = (),
        on_token: OnToken | None = None,
        temperature: float = 0.7,
        max_tokens: int = 2048,
        stream: bool | None = None,
        **params: Any,
    ) -> ChatResult:
        messages = self._send_message_messages(prompt, conversation_history)
        model = self._model_for(None)
        if stream is None:
            stream = on_token is not None
        if not stream:
            return await self.chat(messages, model=model, temperature=temperature, max_tokens=max_tokens, **params)
        full = ""
        async with self.stream_chat(
            messages, model=model, temperature=temperature, max_tokens=max_tokens, **params
        ) as s:
            async for token in s:
                full += token
                if on_token is not None:
                    on_token(token, full)
        return await s.result()
