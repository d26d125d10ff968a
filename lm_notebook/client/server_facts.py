"""What a client has learnt about its server (who answers, which routes it has), kept in one :class:`ServerFacts` that
the client's :meth:`~lm_notebook.client.client_state.ClientState.with_options` copies for the same server share: a
copy knows what the others learnt, and one probe serves them all. No I/O here.

A route probe that failed (a 500, a timeout, a proxy's page: no answer about the route) is remembered for
:data:`PROBE_RETRY_SECONDS`, so ``route="auto"`` requests meanwhile go the OpenAI way without paying a probe each;
the greeting answering otherwise than before, or the route being learnt another way (a model listing, a native
answer), ends it sooner. ``supports_native_chat()`` always asks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from lm_notebook.client.route_learning import RouteLearning

PROBE_RETRY_SECONDS = 30.0  # how long a failed route probe keeps route="auto" from asking again
clock: Callable[[], float] = time.monotonic  # what that is counted on

T = TypeVar("T")


class ServerFacts:
    """Who answers at a base URL and which routes it has; the route probe under way; a recent failed probe."""

    __slots__ = ("is_lmstudio", "models_route", "native_chat", "probe_failed_at", "route_learning", "server_is_fake")

    def __init__(self) -> None:
        self.is_lmstudio: bool | None = None
        self.server_is_fake: bool | None = None
        self.models_route: str | None = None  # which models route the server answered
        self.native_chat: bool | None = None  # whether it has LM Studio 0.4's native chat route (None: not known)
        self.route_learning = RouteLearning()  # one request asks the route at a time; the others wait for its answer
        self.probe_failed_at: float | None = None

    def probe_failed(self) -> None:
        self.probe_failed_at = clock()

    def probe_failed_recently(self) -> bool:
        """A route probe failed less than :data:`PROBE_RETRY_SECONDS` ago (and nothing was learnt since)."""
        if self.probe_failed_at is None or self.native_chat is not None:
            return False
        if clock() - self.probe_failed_at < PROBE_RETRY_SECONDS:
            return True
        self.probe_failed_at = None
        return False

    def greeted(self, is_lmstudio: bool, is_fake: bool) -> None:
        """The greeting's answer; one unlike the last ends a failed probe's memory (another server may answer)."""
        if (is_lmstudio, is_fake) != (self.is_lmstudio, self.server_is_fake):
            self.probe_failed_at = None
        self.is_lmstudio, self.server_is_fake = is_lmstudio, is_fake


class Fact(Generic[T]):
    """A client attribute kept on its :class:`ServerFacts` (``client._facts``), shared with its copies."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name.lstrip("_")

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Fact[T]: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> T: ...
    def __get__(self, obj: object | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj._facts, self._name)  # type: ignore[attr-defined]

    def __set__(self, obj: object, value: T) -> None:
        setattr(obj._facts, self._name, value)  # type: ignore[attr-defined]
