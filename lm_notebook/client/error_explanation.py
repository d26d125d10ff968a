"""An error answer explained with what the server can tell about it, as flows (see :mod:`lm_notebook.client.flows`):
an unknown model lists the ids the server has; a model it does not serve but lists as downloaded is "downloaded but
not loaded" (just-in-time loading is off); a context overflow gets the loaded context and the model's maximum from
the model list when its answer did not say. Each look-up is a quick probe; when it fails the error stands as it was.
"""

from __future__ import annotations

from typing import Protocol

import httpx

from lm_notebook.client.error_classification import context_overflow_error, is_error_body, not_loaded_error
from lm_notebook.client.errors import (
    ContextLengthExceededError,
    LMStudioAPIError,
    LMStudioError,
    ModelNotFoundError,
    NoModelLoadedError,
)
from lm_notebook.client.flows import Flow
from lm_notebook.client.routes import MODEL_ROUTES, OPENAI_MODELS_PATH, error_from_response, model_ids, parse_models
from lm_notebook.client.types import ModelInfo

# what a look-up may meet in a body of an unexpected shape; it then says nothing
_SHAPE_ERRORS = (ValueError, KeyError, AttributeError, TypeError)


class Explainer(Protocol):
    """What the explanation needs from a client: where it talks to, what it learnt, and its quick probe."""

    base_url: str
    _models_route: str | None
    _listed: tuple[ModelInfo, ...] | None

    def _probe(self, path: str) -> Flow[httpx.Response]: ...


def model_ids_quietly(client: Explainer) -> Flow[list[str]]:
    """The ids ``/v1/models`` lists; none when it cannot say (they only ever improve a message)."""
    try:
        return model_ids((yield from client._probe(OPENAI_MODELS_PATH)).json())
    except (LMStudioError, *_SHAPE_ERRORS):
        return []


def model_info_quietly(client: Explainer, model: str) -> Flow[ModelInfo | None]:
    """What LM Studio's own model list says of ``model`` (its state, contexts); None when it is not listed or the
    server has only ``/v1/models`` (ids alone say nothing of what is loaded)."""
    routes = (client._models_route,) if client._models_route else MODEL_ROUTES
    for route in routes:
        if route == OPENAI_MODELS_PATH:
            return None
        try:
            response = yield from client._probe(route)
            body = response.json()
            if response.status_code >= 400 or is_error_body(body):
                continue  # an older LM Studio: the next route
            models = parse_models(route, body)
        except (LMStudioError, *_SHAPE_ERRORS):
            return None
        client._models_route = route
        return next((m for m in models if m.id == model), None)
    return None


def explained_error(
    client: Explainer, response: httpx.Response, model: str | None, max_tokens: int | None
) -> Flow[LMStudioAPIError]:
    """The error ``response`` means, with what the server's lists add to it."""
    err = error_from_response(response, base_url=client.base_url, model=model, max_tokens=max_tokens)
    if isinstance(err, ModelNotFoundError):
        client._listed = None  # the models changed since the client last listed them (vision is read from it)
    if model is not None and isinstance(err, (ModelNotFoundError, NoModelLoadedError)):
        not_loaded = yield from as_not_loaded(client, err, model)
        if not_loaded is not None:
            return not_loaded
    if isinstance(err, ModelNotFoundError):
        ids = yield from model_ids_quietly(client)
        if ids:
            err = error_from_response(
                response, base_url=client.base_url, model=model, available=ids, max_tokens=max_tokens
            )
    elif isinstance(err, ContextLengthExceededError):
        err = yield from overflow_with_model_facts(client, err, model)
    return err


def as_not_loaded(client: Explainer, err: LMStudioAPIError, model: str) -> Flow[NoModelLoadedError | None]:
    """``err`` (an unknown model, none loaded) said as "downloaded but not loaded" when the model list says so of
    ``model``; None when it does not (or cannot say)."""
    info = yield from model_info_quietly(client, model)
    if info is not None and info.state not in (None, "loaded"):
        return not_loaded_error(err, model, client.base_url)
    return None


def overflow_with_model_facts(
    client: Explainer, err: ContextLengthExceededError, model: str | None
) -> Flow[ContextLengthExceededError]:
    """``err`` with what the model list says of ``model`` (its loaded and largest contexts): without the largest,
    the advice could name a context the model cannot load. Unchanged when the list cannot say."""
    if model is None:
        return err
    info = yield from model_info_quietly(client, model)
    return err if info is None else with_model_facts(err, info)


def with_model_facts(err: ContextLengthExceededError, info: ModelInfo) -> ContextLengthExceededError:
    """``err`` with the loaded context and the model's maximum from the model list, where the answer lacked them."""
    return context_overflow_error(
        model=err.model or info.id,
        prompt_tokens=err.prompt_tokens,
        context_length=err.context_length if err.context_length is not None else info.loaded_context_length,
        max_tokens=err.max_tokens,
        max_context_length=info.max_context_length,
        status_code=err.status_code,
        body=err.body,
        server_message=err.server_message,
        partial=err.partial,
        retry_after=err.retry_after,
    )
