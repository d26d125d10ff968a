"""lm_notebook: local language models served by LM Studio, in Jupyter.

``from lm_notebook import LMStudioClient`` for the client; ``%load_ext lm_notebook`` for the magics.
Heavier parts (compare, the chat panel) are imported on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lm_notebook.client import AsyncLMStudioClient, LMStudioClient, LoadResult
from lm_notebook.errors import (
    AuthenticationError,
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
from lm_notebook.session import get_client, set_client
from lm_notebook.stream import AsyncChatStream, ChatStream, StreamPart
from lm_notebook.types import ChatResult, ModelInfo, Timings, ToolCall, Usage

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__version__ = "0.1.0"

# name → module for the parts that import pandas / ipywidgets
_LAZY = {
    "compare": "lm_notebook.comparison",
    "acompare": "lm_notebook.comparison",
    "comparison_table": "lm_notebook.compare_views",
    "summary": "lm_notebook.compare_views",
    "plot_summary": "lm_notebook.compare_views",
    "ChatPanel": "lm_notebook.chat",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lm_notebook' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext lm_notebook``: register the magics (loading twice is harmless)."""
    from lm_notebook.magics import register

    register(ipython)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    from lm_notebook.magics import unregister

    unregister(ipython)


__all__ = [
    "AsyncChatStream",
    "AsyncLMStudioClient",
    "AuthenticationError",
    "ChatResult",
    "ChatStream",
    "ContextLengthExceededError",
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
    "ServerBusyError",
    "ServerError",
    "StreamPart",
    "Timings",
    "ToolCall",
    "Usage",
    "get_client",
    "set_client",
]
