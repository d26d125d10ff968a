"""One exception tree for everything that can go wrong talking to LM Studio.

::

    LMStudioError
    ├── LMStudioConnectionError        server not reachable (refused, DNS, connect timeout)
    ├── LMStudioTimeoutError           no answer within the read timeout (e.g. a very slow model load)
    ├── NoCurrentModelError            the client has no model to send to (client-side)
    ├── LMStudioRequestError           a request LM Studio would reject, caught before sending (ValueError too)
    ├── LMStudioStreamError            the stream broke or carried an error after the 200 (keeps the partial text)
    ├── AnswerFormatError              the answer is not the JSON asked for (``schema=``, ``-f json``); ValueError too
    ├── ClientClosedError              the client was closed (before the request, or while it streamed)
    ├── ModelDownloadError             a model download LM Studio ran failed (``model``, ``job_id``)
    │   └── DownloadPausedError        … or is paused: waiting for it would never end (``job``)
    ├── ToolRoundsExceededError        act(): still asking for tools after max_rounds (in act_types.py)
    └── LMStudioAPIError               the server answered with an error (status, parsed body)
        ├── AuthenticationError        401: a token is required (none sent) or was refused (``token_sent``)
        ├── ModelNotFoundError         unknown model id (lists the available ids)
        ├── NoModelLoadedError         the model is not loaded and just-in-time loading is off (``downloaded``)
        ├── ModelLoadError             the model failed to load
        ├── ContextLengthExceededError the prompt does not fit the loaded context
        ├── RateLimitError             429 (``retry_after`` seconds when the server says)
        ├── ServerBusyError            503
        ├── InvalidRequestError        400 for a parameter LM Studio rejects
        ├── ServerError                other 5xx
        └── EndpointNotSupportedError  the server does not have this route (too old, or not LM Studio)

Every error may carry ``partial`` (the :class:`~lm_notebook.client.types.ChatResult` received before it happened),
so nothing already streamed is lost. Every field an error has is set wherever it is raised, and ``str(err)`` is
``err.message``. Which error an answer from the server is: ``error_classification.py``; httpx's errors become ours
in ``transport_errors.py``. This module is stdlib only.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import TypedDict

    from typing_extensions import NotRequired, Required, Unpack

    from lm_notebook.client.types import ChatResult

    class APIErrorFields(TypedDict):
        """The fields every ``LMStudioAPIError`` has, as its subclasses pass them on."""

        status_code: Required[int]
        body: NotRequired[Any]
        server_message: NotRequired[str]
        partial: NotRequired[ChatResult | None]
        retry_after: NotRequired[float | None]

START_SERVER_HINT = "Start it in the Developer tab or with `lms server start`."


class LMStudioError(Exception):
    """Root of every error this package raises. ``str(err)`` is ``err.message``."""

    message: str
    partial: ChatResult | None

    def __init__(self, message: str, *, partial: ChatResult | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.partial = partial

    def __str__(self) -> str:
        return self.message

    @property
    def partial_content(self) -> str:
        """The answer text received before the error ("" when none)."""
        return self.partial.content if self.partial is not None else ""


class LMStudioConnectionError(LMStudioError):
    """LM Studio is not reachable at the base URL."""

    base_url: str

    def __init__(
        self, base_url: str, detail: str = "", *, partial: ChatResult | None = None, message: str | None = None
    ) -> None:
        self.base_url = base_url
        why = f" ({detail})" if detail else ""
        super().__init__(
            message or f"LM Studio is not reachable at {base_url}{why} — is the server running? {START_SERVER_HINT}",
            partial=partial,
        )


class LMStudioTimeoutError(LMStudioError):
    """The server took longer than the read timeout to answer."""


class NoCurrentModelError(LMStudioError):
    """No model was given and none is selected."""

    def __init__(self, message: str | None = None) -> None:
        """``message``: a front end's own wording of the same advice (the chat panel points at its model list)."""
        super().__init__(
            message
            or "No model selected: call set_current_model('model-id') (or pass model=...); "
            "list_models() shows the ids LM Studio has."
        )


class LMStudioRequestError(LMStudioError, ValueError):
    """A request that LM Studio would reject, refused before anything is sent."""


class ServerErrorFields:
    """What the server's error body said: its ``type``, ``code`` and ``param`` (None where it said nothing)."""

    body: Any

    def _error_field(self, name: str) -> str | None:
        err = self.body.get("error") if isinstance(self.body, dict) else None
        value = err.get(name) if isinstance(err, dict) else None
        return str(value) if value is not None else None

    @property
    def error_type(self) -> str | None:
        """The server's error ``type`` (``invalid_request``, ``model_not_found``, …), when its body had one."""
        return self._error_field("type")

    @property
    def error_code(self) -> str | None:
        """The server's error ``code``, when its body had one."""
        return self._error_field("code")

    @property
    def error_param(self) -> str | None:
        """The parameter the server's error names (``param``), when its body had one."""
        return self._error_field("param")


class LMStudioStreamError(ServerErrorFields, LMStudioError):
    """The stream ended with an error after the server had answered 200.

    ``dropped`` is True when the connection broke or the server cut the answer short (worth retrying), False when
    the server sent an error or a malformed chunk (a retry would fail the same way).
    """

    dropped: bool

    def __init__(
        self, message: str, *, partial: ChatResult | None = None, dropped: bool = False, body: Any = None
    ) -> None:
        super().__init__(message, partial=partial)
        self.dropped = dropped
        self.body = body  # the error the server sent in the stream, when it sent one (``error_type``, …)


class AnswerFormatError(LMStudioError, ValueError):
    """The answer is not in the format asked for: not valid JSON, or JSON that breaks the schema (``schema=``,
    ``%%lm -f json``).

    ``result`` is the whole answer as received (also ``partial``), ``raw`` its text; ``validation_error`` the first
    thing wrong with it ("'year' is a required property", or the JSON parser's complaint); ``path`` where in the JSON
    it failed (``"$.items[0].name"``; ``"$"`` for the whole value, None when the text is not JSON at all).
    """

    result: ChatResult
    raw: str
    validation_error: str
    path: str | None

    def __init__(
        self, message: str, result: ChatResult, *, validation_error: str = "", path: str | None = None
    ) -> None:
        super().__init__(message, partial=result)
        self.result = result
        self.raw = result.content
        self.validation_error = validation_error
        self.path = path


class ClientClosedError(LMStudioError):
    """The client was closed (``close()``, or its ``with`` block ended) before or while it was used."""

    def __init__(self, client: str, base_url: str, *, partial: ChatResult | None = None) -> None:
        kept = " The partial answer is kept (.partial)." if partial is not None and partial.content else ""
        super().__init__(
            f"This client is closed: {client}.close() was called, so it sends nothing more to {base_url}. Make a "
            f"new {client}(...) (or use the client only inside its `with` block).{kept}",
            partial=partial,
        )


class ModelDownloadError(LMStudioError):
    """A download job LM Studio ran ended ``failed`` (``model``, ``job_id``)."""

    def __init__(self, message: str, *, model: str, job_id: str | None) -> None:
        super().__init__(message)
        self.model = model
        self.job_id = job_id


class DownloadPausedError(ModelDownloadError):
    """The download is ``paused`` in LM Studio: it goes on only once resumed there. ``job`` is its last state (a
    :class:`~lm_notebook.client.downloads.DownloadJob`; ``job.wait()`` follows it again once resumed)."""

    def __init__(self, message: str, *, job: Any) -> None:
        super().__init__(message, model=job.model, job_id=job.job_id)
        self.job = job


class LMStudioAPIError(ServerErrorFields, LMStudioError):
    """The server answered with an error status (or a 200 whose body is an error).

    ``retry_after``: the seconds the server asked to wait (its ``Retry-After``), None when it did not say.
    """

    status_code: int
    body: Any
    server_message: str
    retry_after: float | None

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        server_message: str = "",
        partial: ChatResult | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, partial=partial)
        self.status_code = status_code
        self.body = body
        self.server_message = server_message
        self.retry_after = retry_after



class AuthenticationError(LMStudioAPIError):
    """LM Studio requires an API token (``token_sent`` False: none was sent), or refused the one sent (True)."""

    token_sent: bool

    def __init__(self, message: str, *, token_sent: bool = False, **fields: Unpack[APIErrorFields]) -> None:
        super().__init__(message, **fields)
        self.token_sent = token_sent


class ModelNotFoundError(LMStudioAPIError):
    """The requested model id is not one LM Studio knows: ``model`` (None when the server did not say which) and
    the ids it has, ``available`` (empty when it lists none or could not be asked)."""

    available: list[str]
    model: str | None

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        available: Sequence[str] = (),
        **fields: Unpack[APIErrorFields],
    ) -> None:
        super().__init__(message, **fields)
        self.model = model
        self.available = list(available)


class NoModelLoadedError(LMStudioAPIError):
    """The model asked for is not loaded and just-in-time loading is off: ``model`` (None when the server did not
    say which); ``downloaded`` is True when the server lists it as downloaded (``load_model(model)`` would help)."""

    model: str | None
    downloaded: bool

    def __init__(
        self, message: str, *, model: str | None = None, downloaded: bool = False, **fields: Unpack[APIErrorFields]
    ) -> None:
        super().__init__(message, **fields)
        self.model = model
        self.downloaded = downloaded


class ModelLoadError(LMStudioAPIError):
    """LM Studio tried to load the model and failed."""


class ContextLengthExceededError(LMStudioAPIError):
    """The prompt (and history) does not fit in the model's loaded context length.

    Each number is None when neither the server's answer nor its model list told it: ``model``, ``prompt_tokens``
    (the prompt's size), ``context_length`` (the loaded context), ``max_tokens`` (the answer's budget that was
    asked for), ``max_context_length`` (the most the model takes) and ``suggested_context_length`` (a context length
    that would fit prompt and answer: the next power of two above them, within the model's maximum).
    """

    model: str | None
    prompt_tokens: int | None
    context_length: int | None
    max_tokens: int | None
    max_context_length: int | None
    suggested_context_length: int | None

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        prompt_tokens: int | None = None,
        context_length: int | None = None,
        max_tokens: int | None = None,
        max_context_length: int | None = None,
        suggested_context_length: int | None = None,
        **fields: Unpack[APIErrorFields],
    ) -> None:
        super().__init__(message, **fields)
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length
        self.max_tokens = max_tokens
        self.max_context_length = max_context_length
        self.suggested_context_length = suggested_context_length


class RateLimitError(LMStudioAPIError):
    """429: too many requests; ``retry_after`` is the server's hint in seconds, if any."""


class ServerBusyError(LMStudioAPIError):
    """503: the server is busy (often loading a model); try again shortly (``retry_after``, when it says)."""


class InvalidRequestError(LMStudioAPIError):
    """400: LM Studio rejected a request parameter (e.g. an unsupported response_format)."""


class ServerError(LMStudioAPIError):
    """A 5xx answer other than 503."""


class EndpointNotSupportedError(LMStudioAPIError):
    """The server does not have this route: an older LM Studio, or another OpenAI-compatible server."""


def needs_newer_lmstudio(
    what: str, err: LMStudioAPIError, base_url: str, instead: str
) -> EndpointNotSupportedError:
    """``err`` (a route the server does not have) said as what it means for ``what``: it needs LM Studio 0.4+."""
    return EndpointNotSupportedError(
        f"{what} needs LM Studio 0.4 or newer; the server at {base_url} does not have this route "
        f"(HTTP {err.status_code}). {instead}",
        status_code=err.status_code,
        body=err.body,
        server_message=err.server_message,
        partial=err.partial,
        retry_after=err.retry_after,
    )


# --- advice about model ids ----------------------------------------------------------------------------------

def _shared_start(a: str, b: str) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def suggest_model(model: str, available: list[str]) -> str | None:
    """The closest available id to ``model`` (for "did you mean"), or None.

    Similarity, plus a bonus for a shared start: ``qwen-7b`` means ``qwen2.5-7b-instruct`` more than
    ``deepseek-r1-distill-qwen-7b``, though the latter contains it.
    """
    wanted = model.lower().strip()
    if not wanted or not available:
        return None

    def score(candidate: str) -> float:
        low = candidate.lower()
        shared = _shared_start(wanted, low)
        contains = 0.3 if (wanted in low or low in wanted) else 0.0
        return difflib.SequenceMatcher(None, wanted, low).ratio() + 0.5 * shared / len(wanted) + contains

    best = max(available, key=score)
    return best if score(best) >= 0.5 else None


def model_not_found_message(model: str | None, available: list[str], base_url: str) -> str:
    shown = ", ".join(available[:20]) + (" …" if len(available) > 20 else "")
    name = f'Model "{model}"' if model else "The requested model"
    parts = [f"{name} is not available on LM Studio at {base_url}."]
    if available:
        parts.append(f"Available: {shown}.")
        guess = suggest_model(model or "", available)
        if guess:
            parts.append(f'Did you mean "{guess}"?')
        parts.append("Pick one with set_current_model(...) or download the model in LM Studio.")
    else:
        parts.append("LM Studio lists no models: download one in LM Studio (Discover tab) or with `lms get`.")
    return " ".join(parts)


def error_text(error: BaseException) -> str:
    """The message a user can act on (the package's errors carry one)."""
    message = getattr(error, "message", None)
    if isinstance(message, str) and message:
        return message
    return f"{type(error).__name__}: {error}"
