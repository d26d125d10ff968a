"""The fake server's models: their metadata, pacing and behaviour, and the three listing shapes LM Studio serves."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lm_notebook.testing.faults import Quirks

ModelType = Literal["llm", "vlm", "embeddings"]
ReasoningForm = Literal["reasoning_content", "reasoning", "think_tags"]


@dataclass(frozen=True)
class ModelSpec:
    """One downloaded model of the fake server.

    Metadata fields mirror ``/api/v0/models`` and ``/api/v1/models``. Behaviour:

    - ``loaded``: loaded when the server starts (with ``context_length`` and ``parallel`` slots).
    - ``ttft`` / ``tokens_per_second`` / ``load_time``: pacing in seconds (``tokens_per_second=0`` = no pacing).
    - ``reply_tokens``: every generated reply has exactly this many tokens (overrides the server's setting).
    - ``reasoning``: how thinking is sent (``"reasoning_content"``, ``"reasoning"`` or ``"think_tags"``);
      ``reasoning_tokens`` is its length.
    - ``quirks``: replaces the server's quirks for this model.
    - ``constrained``: its engine holds answers to a ``response_format`` JSON schema; False answers in prose around
      JSON that misses a required field, as a model whose engine ignores the schema does (early MLX builds).

    >>> ModelSpec("my-model", context_length=2048, tokens_per_second=50)  # doctest: +ELLIPSIS
    ModelSpec(id='my-model', ...)
    """

    id: str
    type: ModelType = "llm"
    publisher: str = "lmstudio-community"
    arch: str = "llama"
    format: Literal["gguf", "mlx"] = "gguf"
    quantization: str = "Q4_K_M"
    bits_per_weight: float = 4
    max_context_length: int = 32768
    context_length: int = 4096
    loaded: bool = False
    parallel: int = 4
    capabilities: tuple[str, ...] = ()
    display_name: str | None = None
    size_bytes: int = 4_000_000_000
    params_string: str | None = "7B"
    ttft: float = 0.0
    tokens_per_second: float = 0.0
    load_time: float = 0.0
    reply_tokens: int | None = None
    reasoning: ReasoningForm | None = None
    reasoning_tokens: int = 24
    embedding_dimensions: int = 768
    quirks: Quirks | None = None
    constrained: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Build from a JSON object whose keys are field names (``quirks`` a nested object)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model field(s) {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        if "capabilities" in values:
            values["capabilities"] = tuple(values["capabilities"])
        if isinstance(values.get("quirks"), Mapping):
            values["quirks"] = Quirks(**values["quirks"])
        return cls(**values)

    @property
    def is_embedding(self) -> bool:
        return self.type == "embeddings"

    @property
    def title(self) -> str:
        return self.display_name or self.id.rsplit("/", 1)[-1]


def default_models() -> list[ModelSpec]:
    """A small catalogue: an llm loaded at start, a vlm, two thinking models (two forms), and an embedding model."""
    return [
        ModelSpec(
            "qwen2.5-7b-instruct", arch="qwen2", max_context_length=32768, context_length=4096, loaded=True,
            capabilities=("tool_use",), display_name="Qwen2.5 7B Instruct", size_bytes=4_683_073_888,
        ),
        ModelSpec(
            "google/gemma-3-4b", type="vlm", publisher="google", arch="gemma3", max_context_length=131072,
            capabilities=("vision",), display_name="Gemma 3 4B", size_bytes=3_340_000_000, params_string="4B",
        ),
        ModelSpec(
            "openai/gpt-oss-20b", publisher="openai", arch="gpt-oss", quantization="MXFP4", max_context_length=131072,
            context_length=8192, capabilities=("tool_use", "reasoning"), display_name="gpt-oss 20B",
            size_bytes=12_109_565_632, params_string="20B", reasoning="reasoning",
        ),
        ModelSpec(
            "deepseek-r1-distill-qwen-7b", publisher="mlx-community", arch="qwen2", format="mlx", quantization="4bit",
            max_context_length=131072, capabilities=("reasoning",), display_name="DeepSeek R1 Distill Qwen 7B",
            size_bytes=4_300_000_000, reasoning="think_tags", constrained=False,
        ),
        ModelSpec(
            "text-embedding-nomic-embed-text-v1.5", type="embeddings", publisher="nomic-ai", arch="nomic-bert",
            max_context_length=2048, context_length=2048, display_name="Nomic Embed Text v1.5",
            size_bytes=84_106_624, params_string=None,
        ),
    ]


@dataclass(frozen=True)
class Pacing:
    """How long the fake server takes, in seconds: to load a model, to the first token, and per token."""

    load_time: float
    ttft: float
    tokens_per_second: float

    def fields(self) -> dict[str, float]:
        """As :class:`ModelSpec` fields."""
        return {"load_time": self.load_time, "ttft": self.ttft, "tokens_per_second": self.tokens_per_second}

    def describe(self) -> str:
        return (f"a {self.load_time:g} s load on a model's first use, then {self.ttft:g} s to the first token and "
                f"{self.tokens_per_second:g} tokens/s")


# a 7B model on a laptop: slow enough that the load, the wait for the first token and the stream are all visible
DEMO_PACING = Pacing(load_time=2.0, ttft=0.4, tokens_per_second=30.0)


def demo_models(models: Iterable[ModelSpec] | None = None, pacing: Pacing = DEMO_PACING) -> list[ModelSpec]:
    """The demo profile: ``models`` (default :func:`default_models`) all unloaded and paced with ``pacing``, so the
    first use of a model waits for a just-in-time load and answers stream like a local model's."""
    return [dataclasses.replace(m, loaded=False, load_time=pacing.load_time, ttft=pacing.ttft,
                                tokens_per_second=pacing.tokens_per_second)
            for m in (default_models() if models is None else models)]


def load_models_file(path: str | Path) -> list[ModelSpec]:
    """Read a JSON list of model objects (see :meth:`ModelSpec.from_dict`)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        kind = {dict: "an object", str: "a string", bool: "a boolean"}.get(type(data), "a number or null")
        raise ValueError(f"expected a JSON list of model objects, not {kind}")
    return [ModelSpec.from_dict(item) for item in data]


# --- the three listing shapes -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedView:
    """What a listing needs to know about a loaded (or loading) instance."""

    context_length: int
    parallel: int
    state: Literal["loaded", "loading"]
    load_started: float | None = None  # on the server's clock, while it loads


def openai_listing(models: Iterable[ModelSpec]) -> dict[str, Any]:
    """``GET /v1/models``: ids only."""
    return {
        "object": "list",
        "data": [{"id": m.id, "object": "model", "owned_by": "organization_owner"} for m in models],
    }


def v0_model(model: ModelSpec, loaded: LoadedView | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": model.id,
        "object": "model",
        "type": model.type,
        "publisher": model.publisher,
        "arch": model.arch,
        "compatibility_type": model.format,
        "quantization": model.quantization,
        "state": loaded.state if loaded else "not-loaded",
        "max_context_length": model.max_context_length,
    }
    if loaded is not None and loaded.state == "loaded":
        entry["loaded_context_length"] = loaded.context_length
    if model.type != "embeddings":
        entry["capabilities"] = [c for c in model.capabilities if c == "tool_use"]
    return entry


def v1_model(model: ModelSpec, loaded: LoadedView | None) -> dict[str, Any]:
    instances = (
        [{"id": model.id, "config": {"context_length": loaded.context_length, "parallel": loaded.parallel}}]
        if loaded is not None and loaded.state == "loaded"
        else []
    )
    entry: dict[str, Any] = {
        "type": "embedding" if model.is_embedding else "llm",
        "publisher": model.publisher,
        "key": model.id,
        "display_name": model.title,
        "architecture": model.arch,
        "quantization": {"name": model.quantization, "bits_per_weight": model.bits_per_weight},
        "size_bytes": model.size_bytes,
        "params_string": model.params_string,
        "loaded_instances": instances,
        "max_context_length": model.max_context_length,
        "format": model.format,
    }
    if not model.is_embedding:
        entry["capabilities"] = {
            "vision": model.type == "vlm" or "vision" in model.capabilities,
            "trained_for_tool_use": "tool_use" in model.capabilities,
        }
    return entry
