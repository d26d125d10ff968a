"""Which route a chat request takes: the OpenAI-style ``/v1`` or LM Studio 0.4's native ``/api/v1`` (see
:func:`~lm_notebook.client.native_route.choose_route`), its body on that route, and, for ``route="auto"``, whether
the server has the native one (learnt once per client, :mod:`~lm_notebook.client.route_learning`). No I/O here.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from lm_notebook.client.client_requests import RequestingClient
from lm_notebook.client.client_state import HttpT, TransportT
from lm_notebook.client.errors import ClientClosedError, EndpointNotSupportedError, LMStudioError
from lm_notebook.client.flows import Flow, operation
from lm_notebook.client.native_route import (
    checked_route,
    choose_route,
    native_payload,
    native_unsupported,
    openai_only,
    with_integrations_checked,
)
from lm_notebook.client.payloads import Messages, as_messages, chat_payload, check_params
from lm_notebook.client.request_parts import NO_PARTS, RequestParts
from lm_notebook.client.route_learning import native_chat_flow
from lm_notebook.client.stream_connection import Trace


class RoutingClient(RequestingClient[HttpT, TransportT]):
    """A client choosing each chat request's route, and learning which routes its server has (flows)."""

    def _chat_payload(
        self, messages: Messages, model: str | None, stream: bool, params: Mapping[str, Any],
        parts: RequestParts = NO_PARTS,
    ) -> dict[str, Any]:
        """The request's body on the route it takes (see :func:`~lm_notebook.client.native_route.choose_route`);
        ``params`` may carry ``route=`` for this call."""
        return self._chat_payloads(messages, model, stream, params, parts)[0]

    def _chat_payloads(
        self, messages: Messages, model: str | None, stream: bool, params: Mapping[str, Any],
        parts: RequestParts = NO_PARTS,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The request's body on the route it takes, and, when that choice waits on what the server is
        (``route="auto"`` before the client knows whether the server has the native route), the native body to send
        instead if it turns out to (see :meth:`_routed`)."""
        params = dict(params)
        route = checked_route(params.pop("route", None) or self._route)
        check_params(params)
        params = with_integrations_checked(params)
        checked = as_messages(messages)  # a wrong message is the first thing to hear of, before a missing model
        chosen = self._model_for(model)
        checked, full = parts.messages(checked), parts.params(params)
        if choose_route(route, native_available=self._native_chat, messages=checked, params=full) == "native":
            return native_payload(checked, chosen, stream, full), None
        payload = chat_payload(checked, chosen, stream, openai_only(full))
        if self._native_chat is None and choose_route(
            route, native_available=True, messages=checked, params=full
        ) == "native":
            return payload, native_payload(checked, chosen, stream, full)
        return payload, None

    def _routed(self, payload: dict[str, Any], native: dict[str, Any] | None) -> Flow[dict[str, Any]]:
        """The body to send: ``native`` (when given) once the server is known to have LM Studio 0.4's native route,
        else ``payload``. A client's first such request learns it (who answers, then ``/api/v1/models``: quick
        probes, once per client); every later one decides without a round trip."""
        if native is not None and (yield from self._takes_native()):
            return native
        return payload

    def _native_refused(self, err: EndpointNotSupportedError, payload: dict[str, Any]) -> EndpointNotSupportedError:
        """The server has no native chat route after all: remember it, and say it for the native ``payload``."""
        learnt, self._native_chat = self._native_chat, False  # True: route="auto" took it, known to be there
        return native_unsupported(err, self.base_url, payload, "auto" if learnt and self._route == "auto" else "native")

    def _supports_native_chat(
        self, trace: Trace | None = None, stop: threading.Event | None = None, woken: threading.Event | None = None
    ) -> Flow[bool]:
        """Whether the server has LM Studio 0.4's native chat route (``/api/v1/chat``). A fresh client asks once (who
        answers, then ``GET /api/v1/models``: quick probes; concurrent callers wait for that one answer); it raises
        what kept it from knowing (nobody answers, an auth error, a server error), and asks again next time."""
        return (yield from native_chat_flow(self, trace, stop, woken))

    def _takes_native(
        self, trace: Trace | None = None, stop: threading.Event | None = None, woken: threading.Event | None = None
    ) -> Flow[bool]:
        """For ``route="auto"``: whether this request goes the native way. When the server could not say, it goes the
        OpenAI way, and so do the requests of the next :data:`~lm_notebook.client.server_facts.PROBE_RETRY_SECONDS`
        without asking (see :mod:`~lm_notebook.client.server_facts`); the one after asks again. Nobody answering the
        greeting is this request's error already (asked once, not twice)."""
        if self._facts.probe_failed_recently():
            return False
        try:
            return (yield from self._supports_native_chat(trace, stop, woken))
        except ClientClosedError:
            raise
        except LMStudioError:
            if self._is_lmstudio is None:
                raise
            self._facts.probe_failed()
            return False

    supports_native_chat = operation(_supports_native_chat)
