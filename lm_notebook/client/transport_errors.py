"""The one place where httpx's exceptions become ours: :func:`translated` (``raise ... from exc``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from lm_notebook.client.errors import (
    LMStudioConnectionError,
    LMStudioError,
    LMStudioStreamError,
    LMStudioTimeoutError,
)
from lm_notebook.client.types import ChatResult


def translate_transport_error(
    exc: httpx.HTTPError,
    *,
    base_url: str,
    read_timeout: float | None,
    partial: ChatResult | None = None,
    streaming: bool = False,
    probe: str | None = None,
) -> LMStudioError:
    """Our exception for a transport-level failure, with what to do about it. ``probe``: the path of the quick check
    the client made on its own account (its timeout is its own: raising the client's would not help)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return LMStudioConnectionError(base_url, "no answer while connecting", partial=partial)
    if isinstance(exc, httpx.ConnectError):
        detail = "connection refused" if "refused" in str(exc).lower() else str(exc) or type(exc).__name__
        return LMStudioConnectionError(base_url, detail, partial=partial)
    if isinstance(exc, httpx.LocalProtocolError):
        # raised before anything is sent, e.g. for an illegal header value: its text may quote the header (a token)
        return LMStudioError(
            f"The request to LM Studio at {base_url} could not be sent: it is malformed on our side "
            f"({type(exc).__name__}). Check the API token and the base URL.",
            partial=partial,
        )
    if isinstance(exc, httpx.TimeoutException) and probe is not None:
        wait = f"{read_timeout:g} s " if read_timeout else ""
        return LMStudioTimeoutError(
            f"LM Studio at {base_url} did not answer a quick {wait}check (GET {probe}) the client makes before its "
            "request: the server is stalled or too busy to answer. Check that it responds (LM Studio's Developer tab "
            "shows its log), or restart it.",
            partial=partial,
        )
    if isinstance(exc, httpx.TimeoutException):
        got = f" after {len(partial.content)} characters" if partial and partial.content else ""
        wait = f"{read_timeout:g} s" if read_timeout else "the timeout"
        return LMStudioTimeoutError(
            f"LM Studio at {base_url} sent nothing for {wait}{got}. A large model may still be loading, or the "
            "server is stalled: raise the timeout (LMStudioClient(timeout=600) or the LMSTUDIO_TIMEOUT variable), "
            "or load the model first (`lms load <model>`).",
            partial=partial,
        )
    if streaming and partial is not None:
        return LMStudioStreamError(
            f"The connection to LM Studio at {base_url} broke mid-answer after {len(partial.content)} characters "
            f"({type(exc).__name__}). The partial answer is kept (.partial); retry the request.",
            partial=partial,
            dropped=True,
        )
    if isinstance(exc, httpx.RemoteProtocolError):
        # it accepted the connection, so it is running: it hung up before answering
        return LMStudioConnectionError(
            base_url,
            partial=partial,
            message=f"LM Studio at {base_url} closed the connection without answering ({exc}). It may have crashed "
            "or restarted: retry, and check the server log in LM Studio's Developer tab.",
        )
    if isinstance(exc, httpx.TransportError):
        return LMStudioConnectionError(base_url, f"{type(exc).__name__}: {exc}" if str(exc) else "", partial=partial)
    return LMStudioError(f"Request to LM Studio at {base_url} failed: {type(exc).__name__}: {exc}", partial=partial)


@contextmanager
def translated(
    *,
    base_url: str,
    read_timeout: float | None,
    partial: Callable[[], ChatResult] | None = None,
    unless: threading.Event | None = None,
    closed: Callable[[ChatResult | None], LMStudioError | None] | None = None,
    probe: str | None = None,
) -> Iterator[None]:
    """An httpx error raised in the block leaves it as ours (:func:`translate_transport_error`).

    ``partial``: a stream's answer so far (the error keeps it). ``unless``: while this event is set (a Stop shut the
    socket down) the error is the stop itself, and is dropped. ``closed``: the client's "this client is closed"
    error once it is closed (closing it broke the connection: that is no network fault to retry), else None.
    ``probe``: the path, when the request is one of the client's own quick checks.
    """
    try:
        yield
    except httpx.HTTPError as exc:
        if unless is not None and unless.is_set():
            return
        kept = None if partial is None else partial()
        closed_error = None if closed is None else closed(kept)
        if closed_error is not None:
            raise closed_error from exc
        raise translate_transport_error(
            exc,
            base_url=base_url,
            read_timeout=read_timeout,
            partial=kept,
            streaming=partial is not None,
            probe=probe,
        ) from exc
