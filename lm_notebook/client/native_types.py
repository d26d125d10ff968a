"""Plain data of LM Studio 0.4's native API: the server's own stats, a stream's progress, the MCP tool calls the
server ran, and a model download job's state (stdlib only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Route = Literal["auto", "openai", "native"]
ROUTES: tuple[Route, ...] = ("auto", "openai", "native")
ProgressStage = Literal["model_load", "prompt_processing"]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ServerStats:
    """What the server itself measured for one answer (``ChatResult.server_stats``); the client's own measurements
    stay in ``ChatResult.timings``, so both can be compared. Fields the server did not report are None."""

    tokens_per_second: float | None = None
    time_to_first_token: float | None = None  # seconds
    model_load_time: float | None = None  # seconds; only when the model was loaded for this request
    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    stop_reason: str | None = None  # /api/v0's, when reported

    @classmethod
    def from_native(cls, data: Any) -> ServerStats | None:
        """``stats`` of ``/api/v1/chat`` (None when absent or empty)."""
        if not isinstance(data, Mapping) or not data:
            return None
        return cls(
            tokens_per_second=_number(data.get("tokens_per_second")),
            time_to_first_token=_number(data.get("time_to_first_token_seconds")),
            model_load_time=_number(data.get("model_load_time_seconds")),
            input_tokens=_count(data.get("input_tokens")),
            output_tokens=_count(data.get("total_output_tokens")),
            reasoning_tokens=_count(data.get("reasoning_output_tokens")),
        )

    @classmethod
    def from_v0(cls, data: Any) -> ServerStats | None:
        """``stats`` of ``/api/v0/chat/completions`` (None when absent or empty)."""
        if not isinstance(data, Mapping) or not data:
            return None
        stats = cls(
            tokens_per_second=_number(data.get("tokens_per_second")),
            time_to_first_token=_number(data.get("time_to_first_token")),
            stop_reason=data.get("stop_reason") if isinstance(data.get("stop_reason"), str) else None,
        )
        return None if stats == cls() else stats


@dataclass(frozen=True)
class StreamProgress:
    """How far a stage before the answer has come: ``stage`` ``"model_load"`` or ``"prompt_processing"``,
    ``fraction`` 0–1, the model ``instance`` (when the server named it) and, at a load's end, its seconds."""

    stage: ProgressStage
    fraction: float
    instance: str | None = None
    done: bool = False
    load_time_seconds: float | None = None


@dataclass(frozen=True)
class ToolEvent:
    """One tool call the server ran for an MCP integration: the tool, its arguments, and its output or why it
    failed (``ok`` False). ``provider`` is the integration that served it (``provider_info``'s label or id)."""

    tool: str
    arguments: Mapping[str, Any] | None = None
    output: str | None = None
    ok: bool = True
    reason: str | None = None
    provider: str | None = None

    @property
    def arguments_text(self) -> str:
        import json

        return json.dumps(dict(self.arguments), ensure_ascii=False) if self.arguments is not None else ""


def provider_label(info: Any) -> str | None:
    """A short name for ``provider_info`` (``{"type": "ephemeral_mcp", "server_label": "huggingface"}``)."""
    if not isinstance(info, Mapping):
        return None
    for key in ("server_label", "plugin_id", "id", "label"):
        if isinstance(info.get(key), str):
            return str(info[key])
    kind = info.get("type")
    return str(kind) if isinstance(kind, str) else None
