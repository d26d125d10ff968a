"""lm_notebook: local language models served by LM Studio, in Jupyter.

``from lm_notebook import LMStudioClient`` for the client; ``%load_ext lm_notebook`` for the magics.
Heavier parts (compare, the chat panel) are imported on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lm_notebook.client import (
    ActInterrupted,
    ActPart,
    ActResult,
    ActStream,
    AnswerFormatError,
    AsyncActStream,
    AsyncChatStream,
    AsyncLMStudioClient,
    AuthenticationError,
    ChatResult,
    ChatStream,
    ClientClosedError,
    ContextLengthExceededError,
    Embeddings,
    EndpointNotSupportedError,
    InvalidRequestError,
    LMStudioAPIError,
    LMStudioClient,
    LMStudioConnectionError,
    LMStudioError,
    LMStudioRequestError,
    LMStudioStreamError,
    LMStudioTimeoutError,
    LoadResult,
    ModelInfo,
    ModelLoadError,
    ModelNotFoundError,
    NoCurrentModelError,
    NoModelLoadedError,
    RateLimitError,
    SentImage,
    ServerBusyError,
    ServerError,
    ServerStats,
    StreamPart,
    StreamProgress,
    Timings,
    Tool,
    ToolCall,
    ToolCallRecord,
    ToolEvent,
    ToolRoundsExceededError,
    Usage,
    embed,
    get_client,
    set_client,
)

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    # the lazy names, typed for users' type checkers (``reveal_type(compare)`` is the function, not Any)
    from lm_notebook.chat.panel import ChatPanel
    from lm_notebook.comparison.api import acompare, compare
    from lm_notebook.comparison.benchmark import BenchmarkInterrupted, benchmark, last_benchmark
    from lm_notebook.comparison.benchmark_views import benchmark_summary, plot_benchmark
    from lm_notebook.comparison.interrupt import ComparisonInterrupted, last_comparison
    from lm_notebook.comparison.views import comparison_table, plot_summary, summary

__version__ = "0.1.0"

# name → module for the parts that import pandas / ipywidgets
_LAZY = {
    "compare": "lm_notebook.comparison.api",
    "acompare": "lm_notebook.comparison.api",
    "comparison_table": "lm_notebook.comparison.views",
    "summary": "lm_notebook.comparison.views",
    "plot_summary": "lm_notebook.comparison.views",
    "benchmark": "lm_notebook.comparison.benchmark",
    "BenchmarkInterrupted": "lm_notebook.comparison.benchmark",
    "last_benchmark": "lm_notebook.comparison.benchmark",
    "benchmark_summary": "lm_notebook.comparison.benchmark_views",
    "plot_benchmark": "lm_notebook.comparison.benchmark_views",
    "ChatPanel": "lm_notebook.chat.panel",
    "ComparisonInterrupted": "lm_notebook.comparison.interrupt",
    "last_comparison": "lm_notebook.comparison.interrupt",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lm_notebook' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next look-up is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext lm_notebook``: register the magics (loading twice is harmless)."""
    from lm_notebook.magics import register

    register(ipython)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    from lm_notebook.magics import unregister

    unregister(ipython)


__all__ = [
    "ActInterrupted",
    "ActPart",
    "ActResult",
    "ActStream",
    "AnswerFormatError",
    "AsyncActStream",
    "AsyncChatStream",
    "AsyncLMStudioClient",
    "AuthenticationError",
    "BenchmarkInterrupted",
    "ChatPanel",
    "ChatResult",
    "ChatStream",
    "ClientClosedError",
    "ComparisonInterrupted",
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
    "acompare",
    "benchmark",
    "benchmark_summary",
    "compare",
    "comparison_table",
    "embed",
    "get_client",
    "last_benchmark",
    "last_comparison",
    "plot_benchmark",
    "plot_summary",
    "set_client",
    "summary",
]
