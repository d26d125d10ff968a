"""How every request of the clients goes out (the two clients share it, see
:class:`~lm_notebook.client.client_base.BaseClient`): one step at a time through ``_exchange``, where httpx errors
become ours; the client's own quick probes (who answers, which ids it has); a request's JSON body or its error; and,
on a server that is not LM Studio, the check that it lists the model asked for. Nothing here does I/O.
"""

from __future__ import annotations

from typing import Any

import httpx

from lm_notebook.client.client_state import ClientState, HttpT, TransportT
from lm_notebook.client.error_classification import is_error_body
from lm_notebook.client.error_explanation import explained_error, model_ids_quietly
from lm_notebook.client.errors import ModelNotFoundError, model_not_found_message
from lm_notebook.client.flows import Flow, ReadBody, Send, operation
from lm_notebook.client.routes import GREETING_PATH, is_fake_greeting, json_or_none, looks_like_lmstudio
from lm_notebook.client.stream_connection import Trace
from lm_notebook.client.transport_errors import translated

# the greeting and model-list look-ups the client makes on its own account: quick, or not at all
_PROBE_TIMEOUT = httpx.Timeout(5.0)


class RequestingClient(ClientState[HttpT, TransportT]):
    """The requests a client sends, each a flow: one exchange at a time, its probes, its JSON answers."""

    # --- steps: every request goes through _exchange -------------------------------------------------------------
    def _exchange(self, step: Send | ReadBody, *, probe: bool = False) -> Flow[httpx.Response]:
        """Ask for one piece of I/O. An httpx error it meets is thrown in here by the driver and leaves as ours.
        ``probe``: it is one of the client's own quick checks (a timeout says so)."""
        closed = self._closed_error()
        if closed is not None:
            raise closed
        request = step.request if isinstance(step, Send) else step.response.request
        # the timeout this request was sent with (a probe's is its own), else the client's
        read_timeout = request.extensions.get("timeout", {}).get("read", self.timeout.read)
        with translated(
            base_url=self.base_url, read_timeout=read_timeout, closed=self._closed_error,
            probe=request.url.path if probe else None,
        ):
            response: httpx.Response = yield step
        return response

    def _probe(self, path: str, trace: Trace | None = None) -> Flow[httpx.Response]:
        """A quick ``GET`` the client makes on its own account (who is there, which ids it has); with a stream's
        ``trace``, on a connection of its own (its Stop can shut it down)."""
        if trace is None:
            quick = self._http.build_request("GET", self._url(path), timeout=_PROBE_TIMEOUT)
            return (yield from self._exchange(Send(quick), probe=True))
        request = self._stream_http.build_request(
            "GET", self._url(path), timeout=_PROBE_TIMEOUT, extensions={"trace": trace}
        )
        response = yield from self._exchange(Send(request, stream=True), probe=True)
        return (yield from self._exchange(ReadBody(response), probe=True))

    def _json(
        self, method: str, path: str, *, json_body: Any = None, model: str | None = None, max_tokens: int | None = None
    ) -> Flow[Any]:
        """Send one request; its JSON body, or the right error (even for a 200 whose body is an error).
        ``max_tokens``: the answer's budget an error's advice counts (default: the body's)."""
        response = yield from self._exchange(Send(self._http.build_request(method, self._url(path), json=json_body)))
        body = json_or_none(response)
        if response.status_code >= 400 or body is None or is_error_body(body):
            if max_tokens is None and isinstance(json_body, dict):
                max_tokens = json_body.get("max_tokens")
            raise (yield from explained_error(self, response, model, max_tokens))
        return body

    _request = operation(_json)

    def _greeting(self, trace: Trace | None = None) -> Flow[bool]:
        """Ask who answers (``GET /lmstudio-greeting``) and remember whether it is LM Studio, and whether it is this
        project's fake server."""
        response = yield from self._probe(GREETING_PATH, trace)
        is_lmstudio = looks_like_lmstudio(response)
        self._facts.greeted(is_lmstudio, is_fake_greeting(response))
        return is_lmstudio

    def _check_model(self, model: str) -> Flow[None]:
        """On a server that is not LM Studio, refuse an id it does not list (it would answer with another model)."""
        if self._is_lmstudio is None:
            yield from self._greeting()
        if self._is_lmstudio or model in self._known_ids:
            return
        err = self._unknown_model_error(model, (yield from model_ids_quietly(self)))
        if err is not None:
            raise err

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
