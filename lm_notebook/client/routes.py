"""The server's routes and how to read their answers: OpenAI-style ``/v1``, LM Studio's native ``/api/v0`` and
``/api/v1`` (models, load, unload) and the greeting (pure; no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from lm_notebook.client.accumulator import ChatAccumulator
from lm_notebook.client.error_classification import classify_error, is_unexpected_endpoint, parse_error_body
from lm_notebook.client.errors import LMStudioAPIError
from lm_notebook.client.types import ChatResult, ModelInfo

CHAT_PATH = "/v1/chat/completions"
GREETING_PATH = "/lmstudio-greeting"
OPENAI_MODELS_PATH = "/v1/models"
LOAD_PATH = "/api/v1/models/load"
UNLOAD_PATH = "/api/v1/models/unload"
# the richest first; the client remembers the first one a server has
MODEL_ROUTES = ("/api/v1/models", "/api/v0/models", OPENAI_MODELS_PATH)


@dataclass(frozen=True)
class LoadResult:
    """What ``POST /api/v1/models/load`` answered."""

    instance_id: str
    type: str | None = None
    load_time_seconds: float | None = None
    status: str | None = None


def load_result(body: Mapping[str, Any], model: str) -> LoadResult:
    return LoadResult(
        instance_id=body.get("instance_id", model),
        type=body.get("type"),
        load_time_seconds=body.get("load_time_seconds"),
        status=body.get("status"),
    )


def json_or_none(response: httpx.Response) -> Any:
    """The JSON body, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def error_from_response(
    response: httpx.Response,
    *,
    base_url: str,
    model: str | None,
    available: list[str] | None = None,
    max_tokens: int | None = None,
) -> LMStudioAPIError:
    """The error an answer with an error status (or an error body) means; see ``classify_error``. ``max_tokens``:
    what the request asked for."""
    body, message, code = parse_error_body(response.text)
    return classify_error(
        status_code=response.status_code,
        body=body,
        message=message,
        code=code,
        base_url=base_url,
        method=response.request.method,
        path=response.request.url.path,
        model=model,
        available=available,
        retry_after=response.headers.get("retry-after"),
        max_tokens=max_tokens,
        token_sent=token_sent(response.request),
    )


def token_sent(request: httpx.Request) -> bool:
    """Whether ``request`` carried an API token (a Bearer header; a URL's user and password are not one)."""
    return str(request.headers.get("authorization", "")).lower().startswith("bearer ")


def looks_like_lmstudio(response: httpx.Response) -> bool:
    """Judge ``GET /lmstudio-greeting``: the greeting, a 401 or LM Studio's 200 "Unexpected endpoint" answer."""
    if response.status_code == 401:
        return True
    body = json_or_none(response)
    if not isinstance(body, dict):
        return False
    return bool(body.get("lmstudio")) or is_unexpected_endpoint(str(body.get("error", "")))


def is_fake_greeting(response: httpx.Response) -> bool:
    """Whether ``GET /lmstudio-greeting`` came from this project's fake server (it says ``"lm_notebook_fake":
    true``)."""
    body = json_or_none(response)
    return isinstance(body, dict) and body.get("lm_notebook_fake") is True


def result_from_body(body: Any, started: float) -> ChatResult:
    """A whole (not streamed) chat answer; ``started`` is when the request was sent (``time.perf_counter()``)."""
    acc = ChatAccumulator(streaming=False, started=started)
    acc.add_message(body)
    acc.finish()
    return acc.result()


def _capabilities(raw: Any) -> tuple[str, ...] | None:
    if isinstance(raw, Mapping):
        return tuple(k for k, v in raw.items() if v)
    if isinstance(raw, (list, tuple)):
        return tuple(str(c) for c in raw)
    return None


def _native_v1_model(m: Mapping[str, Any], route: str) -> ModelInfo:
    instances = m.get("loaded_instances") or []
    config = (instances[0].get("config") or {}) if instances else {}
    raw_caps = m.get("capabilities")
    caps = _capabilities(raw_caps)
    kind = m.get("type")
    if kind == "embedding":
        kind = "embeddings"
    elif kind == "llm" and caps and "vision" in caps:
        kind = "vlm"
    quant = m.get("quantization")
    return ModelInfo(
        id=m.get("key") or m.get("id", ""),
        type=kind,
        publisher=m.get("publisher"),
        arch=m.get("architecture") or m.get("arch"),
        format=m.get("format"),
        quantization=quant.get("name") if isinstance(quant, Mapping) else quant,
        state="loaded" if instances else "not-loaded",
        max_context_length=m.get("max_context_length"),
        loaded_context_length=config.get("context_length"),
        capabilities=caps,
        display_name=m.get("display_name"),
        size_bytes=m.get("size_bytes"),
        params=m.get("params_string"),
        parallel=config.get("parallel"),
        instance_ids=tuple(i.get("id", "") for i in instances),
        source=route,
        vision=_flag(raw_caps, "vision") if m.get("type") != "embedding" else False,
        trained_for_tool_use=_flag(raw_caps, "trained_for_tool_use") if m.get("type") != "embedding" else False,
    )


def _flag(raw: Any, name: str) -> bool | None:
    """One capability of ``/api/v1/models``'s ``capabilities`` object (False when the object leaves it out)."""
    if isinstance(raw, Mapping):
        return bool(raw.get(name))
    return None


def _native_v0_model(m: Mapping[str, Any], route: str) -> ModelInfo:
    return ModelInfo(
        id=m["id"],
        type=m.get("type"),
        publisher=m.get("publisher"),
        arch=m.get("arch"),
        format=m.get("compatibility_type"),
        quantization=m.get("quantization"),
        state=m.get("state"),
        max_context_length=m.get("max_context_length"),
        loaded_context_length=m.get("loaded_context_length"),
        capabilities=_capabilities(m.get("capabilities")),
        source=route,
        # /api/v0 says vision by type ("vlm") and tool use in its capabilities list (0.3.16+)
        vision=m.get("type") == "vlm" if m.get("type") else None,
        trained_for_tool_use=("tool_use" in m["capabilities"]) if isinstance(m.get("capabilities"), list) else None,
    )


def parse_models(route: str, body: Any) -> list[ModelInfo]:
    """Models from the body of any of the three models routes."""
    if route == "/api/v1/models":
        return [_native_v1_model(m, route) for m in body.get("models", [])]
    data = body.get("data", []) if isinstance(body, Mapping) else []
    if route == "/api/v0/models":
        return [_native_v0_model(m, route) for m in data]
    return [ModelInfo(id=m["id"], source=route) for m in data]


def model_ids(body: Any) -> list[str]:
    """The ids in a ``GET /v1/models`` body (raises on a body of another shape)."""
    return [m["id"] for m in body.get("data", [])]
