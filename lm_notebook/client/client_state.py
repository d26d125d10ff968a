"""What a client is, apart from what it does: where it talks to and how (base URL, token, a URL's user and password,
timeouts, its two httpx clients), its current model, whether it is closed, what it has learnt about its server, and
copies of it for the same server (:meth:`ClientState.from_client`, :meth:`ClientState.with_options`). No I/O here.
"""

from __future__ import annotations

import functools
import ssl
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

from lm_notebook.client.connect_ahead import AheadTransport, Spares
from lm_notebook.client.errors import ClientClosedError, LMStudioRequestError, NoCurrentModelError
from lm_notebook.client.native_route import checked_route
from lm_notebook.client.native_types import Route
from lm_notebook.client.route_learning import RouteLearning
from lm_notebook.client.server_facts import Fact, ServerFacts
from lm_notebook.client.settings import (
    base_url_or_env,
    checked_token,
    resolve_timeout,
    token_from_env,
    twin_url,
    with_credentials,
)
from lm_notebook.client.types import ChatResult, ModelInfo

if TYPE_CHECKING:
    from typing_extensions import Self

HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)

# A stream never takes a pooled connection (nor leaves one): a fresh one is always connected, so the client knows its
# socket from the start (a Stop from another thread can wake a request still waiting for a model load); and a server
# that aborts a stream (llama.cpp's server on a prompt longer than the context) may close the socket just after the
# body ends, when the next request on a pooled connection would fail with "connection reset". The sync client opens
# that fresh connection ahead, when the stream before ends (see connect_ahead).
_NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)
_URLS_KEPT = 64  # absolute URLs a client keeps worked out (see ClientState._url)


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every client of the process: httpx makes one per client by default, and loading the CA
    bundle takes 20–50 ms each time (two per client) — most of the start of a comparison over several servers."""
    return httpx.create_ssl_context(trust_env=False)


class ClientState(Generic[HttpT, TransportT]):
    """A client's settings and what it learnt about its server; no I/O here. The twins set ``_http_type`` (the
    httpx client class)."""

    _http_type: type[HttpT]
    _connects_ahead = False  # the sync twin opens each stream's connection ahead (see connect_ahead)

    # what the client learnt of its server, kept on self._facts (see server_facts.py). LM Studio checks model ids
    # itself; other OpenAI-compatible servers (llama.cpp's) may silently answer an unknown id with whatever model they
    # have, so for them the client checks ids against /v1/models.
    _is_lmstudio: Fact[bool | None] = Fact()
    _server_is_fake: Fact[bool | None] = Fact()
    _models_route: Fact[str | None] = Fact()  # which models route this server answered
    # whether the server has LM Studio 0.4's native chat route (None: not known yet; learnt from the model list)
    _native_chat: Fact[bool | None] = Fact()
    _route_learning: Fact[RouteLearning] = Fact()  # one request asks it at a time; the others wait for its answer

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        transport: TransportT | None = None,
        model: str | None = None,
        route: Route = "auto",
    ) -> None:
        self._route: Route = checked_route(route)
        address = base_url_or_env(base_url)
        self.base_url = address.base_url  # never holds a password: safe to show
        self._api_key = checked_token(api_key or token_from_env())
        # a user and password in the URL (a proxy in front of LM Studio) are sent as HTTP Basic auth, never shown
        self._address = address
        if address.credentials is not None and self._api_key is not None:
            raise LMStudioRequestError(
                "The base URL carries a user and password (sent as HTTP Basic auth) and an API token is set too "
                "(api_key, LM_API_TOKEN or LMSTUDIO_API_TOKEN): both go in the Authorization header, so only one "
                "can be sent. Drop the user and password from the URL, or the token."
            )
        self.timeout = resolve_timeout(timeout)
        self._current_model = model
        self._closed = False
        # who answers and which routes it has (_is_lmstudio, _models_route, _native_chat, ...: the Facts below),
        # shared with this client's with_options copies for the same server
        self._facts = ServerFacts()
        self._transport: TransportT | None = transport  # with_options copies share the facts only through it
        self._known_ids: frozenset[str] = frozenset()
        # the last model list: image requests read vision from it instead of listing again (every listing renews it,
        # and an unknown-model error lists again)
        self._listed: tuple[ModelInfo, ...] | None = None
        self._wants_json_object = False  # the server refused LM Studio's JSON-schema form (llama-cpp-python's)
        # trust_env=False: a proxy from the environment must not intercept a local model server.
        options: dict[str, Any] = {"base_url": self.base_url, "headers": self._headers(), "timeout": self.timeout,
                                   "transport": transport, "trust_env": False, "verify": shared_ssl_context()}
        if address.credentials is not None:
            options["auth"] = httpx.BasicAuth(*address.credentials)
        self._http: HttpT = self._http_type(**options)
        # streams get a connection of their own, never pooled (see _NO_KEEPALIVE), and tell the server so; the sync
        # twin's is opened ahead, when the stream before ends (a transport given for tests is used as it is)
        options["headers"] = {**options["headers"], "Connection": "close"}
        self._spares: Spares | None = None
        if transport is None and self._connects_ahead:
            self._spares = Spares()
            options["transport"] = AheadTransport(self._spares, ssl_context=options["verify"], limits=_NO_KEEPALIVE)
        self._stream_http: HttpT = self._http_type(**options, limits=_NO_KEEPALIVE)
        self._urls: dict[str, httpx.URL] = {}  # see _url

    def _connect_ahead(self) -> None:
        """A stream has ended: open the next one's connection now (see :mod:`~lm_notebook.client.connect_ahead`)."""
        if self._spares is not None and not self._closed:
            url = self._stream_http.base_url
            self._spares.open(url.host, url.port or (443 if url.scheme == "https" else 80))

    def _url(self, path: str) -> httpx.URL:
        """``path`` on this server as the absolute URL httpx would send it to, worked out once: httpx parses a
        relative URL and joins it to the base URL on every request (a tenth of a millisecond here, on the way to a
        stream's first token). Both httpx clients share the base URL."""
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= _URLS_KEPT:  # paths with ids in them (a download's job) would pile up
                self._urls.clear()
            url = self._urls[path] = self._http.build_request("GET", path).url
        return url

    @classmethod
    def from_client(
        cls,
        client: ClientState[Any, Any],
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
            with_credentials(client._address),
            api_key=client._api_key,
            timeout=client.timeout if timeout is None else timeout,
            transport=transport,
            model=client.current_model,
            route=client.route,
        )
        twin._models_route, twin._native_chat = client._models_route, client._native_chat
        twin._is_lmstudio, twin._known_ids = client._is_lmstudio, client._known_ids
        twin._server_is_fake, twin._listed = client._server_is_fake, client._listed
        return twin

    def with_options(
        self,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        transport: TransportT | None = None,
    ) -> Self:
        """A new client of the same kind (token, current model) with another base URL, timeout and/or transport.
        A user and password in this client's URL go along only to the same server. A copy for the same server (the
        same base URL through the same transport: the same object, or neither given one) shares what this client
        learnt of it (who answers, which routes it has): the copies ask once, not once each. Through another
        transport the same URL may reach another server: that copy learns on its own.

        >>> slow = client.with_options(timeout=900)   # doctest: +SKIP
        """
        copy = type(self)(
            twin_url(self._address, base_url),
            api_key=self._api_key,
            timeout=self.timeout if timeout is None else timeout,
            transport=transport,
            model=self.current_model,
            route=self.route,
        )
        if copy.base_url == self.base_url and transport is self._transport:
            copy._facts = self._facts
        return copy

    @property
    def route(self) -> Route:
        """Which chat route requests take: ``"auto"`` (LM Studio 0.4's native ``/api/v1/chat`` when the server is
        known to have it and the request can be said there, else ``/v1/chat/completions``), ``"openai"`` or
        ``"native"``; a call's ``route=`` overrides it."""
        return self._route

    @route.setter
    def route(self, value: Route) -> None:
        self._route = checked_route(value)

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

    @property
    def is_closed(self) -> bool:
        """True once ``close()`` (``aclose()``) was called: the client sends nothing more."""
        return self._closed

    @property
    def server_is_fake(self) -> bool | None:
        """True when the server is this project's bundled fake (``lm_notebook.testing``), False when it is not;
        None until the client has asked who answers (``GET /lmstudio-greeting``: ``is_running()``, and the first
        ``chat``, ``stream_chat`` or ``send_message`` ask)."""
        return self._server_is_fake

    def __repr__(self) -> str:
        auth = ", api_key=<set>" if self._api_key else ""
        if self._address.credentials is not None:
            auth += ", basic_auth=<set>"
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

    def _closed_error(self, partial: ChatResult | None = None) -> ClientClosedError | None:
        """The error for using this client once it is closed; None while it is open."""
        return ClientClosedError(type(self).__name__, self.base_url, partial=partial) if self._closed else None
