"""The core: HTTP, server-sent events, streams, errors and result types. Imports only the standard library and httpx.

``import lm_notebook.client`` works in a plain Python process (no IPython, ipywidgets or pandas) and stays cheap.

>>> from lm_notebook.client import LMStudioClient   # doctest: +SKIP
>>> with LMStudioClient() as client:                 # doctest: +SKIP
...     print(client.chat("Hello", model="qwen2.5-7b-instruct").content)
"""

from __future__ import annotations

from lm_notebook.client.act_stream import ActStream, AsyncActStream
from lm_notebook.client.act_types import (
    ActInterrupted,
    ActPart,
    ActResult,
    ToolCallRecord,
    ToolRoundsExceededError,
)
from lm_notebook.client.clients import AsyncLMStudioClient, LMStudioClient
from lm_notebook.client.embeddings import Embeddings
from lm_notebook.client.errors import (
    AnswerFormatError,
    AuthenticationError,
    ClientClosedError,
    ContextLengthExceededError,
    EndpointNotSupportedError,
    InvalidRequestError,
    LMStudioAPIError,
    LMStudioConnectionError,
    LMStudioError,
    LMStudioRequestError,
    LMStudioStreamError,
    LMStudioTimeoutError,
    ModelLoadError,
    ModelNotFoundError,
    NoCurrentModelError,
    NoModelLoadedError,
    RateLimitError,
    ServerBusyError,
    ServerError,
)
from lm_notebook.client.native_types import ServerStats, StreamProgress, ToolEvent
from lm_notebook.client.routes import LoadResult
from lm_notebook.client.session import embed, get_client, set_client
from lm_notebook.client.settings import DEFAULT_BASE_URL, normalize_base_url, resolve_timeout
from lm_notebook.client.stream import AsyncChatStream, ChatStream, StreamPart
from lm_notebook.client.tools import Tool
from lm_notebook.client.types import ChatResult, ModelInfo, SentImage, Timings, ToolCall, Usage

__all__ = [
    "DEFAULT_BASE_URL",
    "ActInterrupted",
    "ActPart",
    "ActResult",
    "ActStream",
    "AnswerFormatError",
    "AsyncActStream",
    "AsyncChatStream",
    "AsyncLMStudioClient",
    "AuthenticationError",
    "ChatResult",
    "ChatStream",
    "ClientClosedError",
    "ContextLengthExceededError",
    "Embeddings",
    "EndpointNotSupportedError",
    "InvalidRequestError",
    "LMStudioAPIError",
    "LMStudioClient",
    "LMStudioConnectionError",
    "LMStudioError",
    "LMStudioRequestError",
    "LMStudioStreamError",
    "LMStudioTimeoutError",
    "LoadResult",
    "ModelInfo",
    "ModelLoadError",
    "ModelNotFoundError",
    "NoCurrentModelError",
    "NoModelLoadedError",
    "RateLimitError",
    "SentImage",
    "ServerBusyError",
    "ServerError",
    "ServerStats",
    "StreamPart",
    "StreamProgress",
    "Timings",
    "Tool",
    "ToolCall",
    "ToolCallRecord",
    "ToolEvent",
    "ToolRoundsExceededError",
    "Usage",
    "embed",
    "get_client",
    "normalize_base_url",
    "resolve_timeout",
    "set_client",
]
