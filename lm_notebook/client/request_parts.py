"""What ``images=`` and ``schema=`` add to a chat request, and to its result (pure; no I/O).

:class:`RequestParts` is built (and every input checked) before anything is sent; it puts the images into the last
user message and the schema into ``response_format``, and finishes the result: the images it carried, and the
parsed answer (or :class:`~lm_notebook.client.errors.AnswerFormatError`). The rules the client applies around the
request live here too: which models can see images, and a server that wants llama.cpp's form of a JSON schema.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lm_notebook.client.errors import LMStudioAPIError, LMStudioRequestError
from lm_notebook.client.images import DEFAULT_MAX_IMAGE_EDGE, ImageInput, prepare_images, with_images
from lm_notebook.client.schemas import AnswerSchema, with_schema
from lm_notebook.client.types import ChatResult, ModelInfo, SentImage


@dataclass(frozen=True)
class RequestParts:
    """The images (as sent) and the answer's schema of one chat request."""

    images: tuple[SentImage, ...] = ()
    schema: AnswerSchema | None = None

    @classmethod
    def of(cls, images: Iterable[ImageInput] | None = None, schema: object = None,
           max_image_edge: int | None = DEFAULT_MAX_IMAGE_EDGE) -> RequestParts:
        """Check and encode everything now: a bad image or schema is refused before anything is sent."""
        return cls(prepare_images(images, max_image_edge), None if schema is None else AnswerSchema.of(schema))

    def params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return with_schema(params, self.schema)

    def messages(self, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return with_images(messages, self.images)

    def finish(self, result: ChatResult) -> ChatResult:
        """The result with the images it carried and, with a schema, the parsed answer. A stopped answer is not
        parsed (it is cut short by the user, not wrong); one that ended otherwise must follow the schema."""
        if self.images:
            result = dataclasses.replace(result, images=self.images)
        if self.schema is not None and not result.stopped:
            result = self.schema.parsed(result)
        return result


NO_PARTS = RequestParts()


def model_vision(model: ModelInfo) -> bool | None:
    """Whether ``model`` takes images: from ``/api/v1/models``' ``capabilities.vision`` or ``/api/v0``'s ``type ==
    "vlm"``; None when the server does not say (``/v1/models`` lists ids only)."""
    vision = getattr(model, "vision", None)  # ModelInfo.vision, where the native route's parsing sets it
    if isinstance(vision, bool):
        return vision
    if model.type == "vlm" or (model.capabilities is not None and "vision" in model.capabilities):
        return True
    if model.source == "/v1/models" or model.type is None:
        return None
    return False


def vision_refusal(model: str, models: Sequence[ModelInfo], count: int, base_url: str) -> LMStudioRequestError | None:
    """The refusal to send ``count`` images to ``model``, when the server says it has no vision; else None."""
    info = next((m for m in models if m.id == model), None)
    if info is None or model_vision(info) is not False:
        return None
    seeing = [m.id for m in models if model_vision(m)]
    images = "an image" if count == 1 else f"{count} images"
    if seeing:
        instead = (f"Vision models on this server: {', '.join(seeing)}. Pass model=\"{seeing[0]}\" or pick one "
                   "with set_current_model().")
    else:
        instead = ("This server has no vision model: download one in LM Studio (e.g. google/gemma-3-4b or "
                   "qwen/qwen2.5-vl-7b) and use it.")
    return LMStudioRequestError(f'Model "{model}" on {base_url} cannot see images ({info.source} lists it without '
                                f"vision), so {images} were not sent. {instead}")


def refuses_json_schema(err: LMStudioAPIError) -> bool:
    """llama-cpp-python's server refuses LM Studio's ``response_format`` (500, pydantic's "Input should be 'text'
    or 'json_object'"); it takes ``{"type": "json_object", "schema": ...}`` instead."""
    text = f"{err.server_message} {err.body}"
    return err.status_code in (400, 422, 500) and "json_object" in text and "response_format" in text

