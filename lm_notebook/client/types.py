"""Plain data the client returns: models, chat results, usage and timings (stdlib only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lm_notebook.client.native_types import ServerStats, ToolEvent


@dataclass(frozen=True)
class ModelInfo:
    """One model LM Studio knows, from whichever models route the server has.

    Fields the server does not report are ``None`` (``/v1/models`` only gives ids).
    """

    id: str
    type: str | None = None  # "llm" | "vlm" | "embeddings"
    publisher: str | None = None
    arch: str | None = None
    format: str | None = None  # "gguf" | "mlx"
    quantization: str | None = None
    state: str | None = None  # "loaded" | "not-loaded" | "loading"
    max_context_length: int | None = None
    loaded_context_length: int | None = None
    capabilities: tuple[str, ...] | None = None
    display_name: str | None = None
    size_bytes: int | None = None
    params: str | None = None
    parallel: int | None = None  # parallel prediction slots of the loaded instance, when reported
    instance_ids: tuple[str, ...] = ()
    source: str = "/v1/models"  # which route described it
    vision: bool | None = None  # takes images (None: the route did not say)
    trained_for_tool_use: bool | None = None  # trained to call tools (None: the route did not say)

    @property
    def loaded(self) -> bool:
        return self.state == "loaded"

    @property
    def context_length(self) -> int | None:
        """The loaded context length when loaded, else the model's maximum."""
        return self.loaded_context_length or self.max_context_length


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    reasoning_tokens: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Usage | None:
        if not data:
            return None
        details = data.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=data.get("prompt_tokens"),
            completion_tokens=data.get("completion_tokens"),
            total_tokens=data.get("total_tokens"),
            reasoning_tokens=details.get("reasoning_tokens") if isinstance(details, Mapping) else None,
        )


@dataclass(frozen=True)
class Timings:
    """Measured by the client: seconds from sending the request."""

    time_to_first_token: float | None = None
    total: float | None = None
    tokens_per_second: float | None = None

    @property
    def generation_time(self) -> float | None:
        if self.total is None or self.time_to_first_token is None:
            return None
        return max(0.0, self.total - self.time_to_first_token)


@dataclass(frozen=True)
class ToolCall:
    id: str | None
    name: str
    arguments: str
    type: str = "function"
    index: int = 0

    def as_message_part(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class SentImage:
    """One image as it was sent: where it came from, its type and size (and the size it had before being
    downscaled), its byte count, a short hash of what was sent, and the data URL itself."""

    source: str
    mime: str
    width: int
    height: int
    original_width: int
    original_height: int
    size_bytes: int
    sha256: str
    data_url: str = field(repr=False, compare=False)

    @property
    def downscaled(self) -> bool:
        return (self.width, self.height) != (self.original_width, self.original_height)

    @property
    def note(self) -> str:
        """``"chart.png: 640×480 PNG"``, or what downscaling did."""
        kind = self.mime.removeprefix("image/").upper()
        if self.downscaled:
            return (f"{self.source}: downscaled from {self.original_width}×{self.original_height} to "
                    f"{self.width}×{self.height} {kind}")
        return f"{self.source}: {self.width}×{self.height} {kind}"

    def as_part(self) -> dict[str, Any]:
        """The ``image_url`` content part of ``/v1/chat/completions``."""
        return {"type": "image_url", "image_url": {"url": self.data_url}}


@dataclass(frozen=True)
class ChatResult:
    """A finished (or stopped) chat answer.

    ``content`` is the answer without any thinking; ``reasoning`` holds the thinking, whichever form the server used.
    ``stopped`` is True when the stream was closed before the server finished. ``parsed``: with ``schema=``, the
    answer as the pydantic model's instance (or the validated value of a JSON-schema dict). ``images``: what was
    sent with ``images=`` (size, and whether it was downscaled).
    """

    content: str
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    timings: Timings = field(default_factory=Timings)
    streaming: bool = False
    id: str | None = None
    stopped: bool = False
    stats: Mapping[str, Any] | None = None  # LM Studio's /api/v0 stats, when the server sent them
    parsed: Any = field(default=None, compare=False)
    images: tuple[SentImage, ...] = ()
    server_stats: ServerStats | None = None  # what the server measured (native /api/v1/chat, or /api/v0's stats)
    response_id: str | None = None  # the stored chat's id (native route, store=True): previous_response_id= continues
    tool_events: tuple[ToolEvent, ...] = ()  # MCP tool calls the server ran (native route, integrations=)
    route: str | None = None  # "native" or "openai": which chat route answered

    def __str__(self) -> str:
        return self.content

    @property
    def prompt_tokens(self) -> int | None:
        return self.usage.prompt_tokens if self.usage else None

    @property
    def completion_tokens(self) -> int | None:
        return self.usage.completion_tokens if self.usage else None

    @property
    def finish_note(self) -> str | None:
        """A short human note when the answer did not end normally, else None."""
        if self.stopped:
            return "stopped"
        return {
            "length": "cut at max tokens",
            "tool_calls": "asked for a tool call",
            "content_filter": "filtered",
        }.get(self.finish_reason or "")

    def as_message(self) -> dict[str, Any]:
        """The assistant message to append to a conversation history."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [t.as_message_part() for t in self.tool_calls]
        return msg
