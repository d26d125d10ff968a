"""A chat stream's errors: in-band errors (an ``error`` event, an error chunk, an error body with a 200) mapped to
ours with the partial answer kept and explained with the model list as an error answer is, and the checks that a
body which ended had finished the answer.
"""

from __future__ import annotations

import json
from typing import Any

from lm_notebook.client.error_classification import classify_error, error_message_and_code
from lm_notebook.client.error_explanation import as_not_loaded, overflow_with_model_facts
from lm_notebook.client.errors import (
    ContextLengthExceededError,
    EndpointNotSupportedError,
    LMStudioAPIError,
    LMStudioError,
    LMStudioStreamError,
    ModelNotFoundError,
    NoModelLoadedError,
)
from lm_notebook.client.flows import Flow
from lm_notebook.client.routes import token_sent
from lm_notebook.client.stream_state import G, StreamState
from lm_notebook.client.types import ChatResult

# errors a stream may carry in band that the model list explains further (see StreamErrors._explained)
EXPLAINED_IN_BAND = (ContextLengthExceededError, ModelNotFoundError, NoModelLoadedError)


class StreamErrors(StreamState[G]):
    """In-band errors and the end-of-body checks of a stream (no I/O)."""

    def _explained(self, err: LMStudioAPIError) -> Flow[LMStudioAPIError]:
        """An error the server sent with its 200 (in the stream, or as the whole body) with what the model list
        adds, as ``chat()`` gets it: an overflow's contexts (else its advice could name a context larger than the
        model's largest); a model the list says is downloaded but not loaded (the native route's ``error`` event)."""
        model = getattr(err, "model", None) or self._model
        if isinstance(err, ContextLengthExceededError):
            return (yield from overflow_with_model_facts(self._source, err, model))
        if model is not None and isinstance(err, (ModelNotFoundError, NoModelLoadedError)):
            return (yield from as_not_loaded(self._source, err, model)) or err
        return err

    def _in_band_error(self, data: str) -> LMStudioError:
        try:
            body: Any = json.loads(data)
        except ValueError:
            body = data
        return self._in_band_error_body(body)

    def _in_band_error_body(self, body: Any) -> LMStudioError:
        message, code = error_message_and_code(body)
        if not message and isinstance(body, dict):
            message = str(body.get("message", ""))
        partial = self.partial()
        err = self._classified(body, message, code, partial)
        if type(err) is not LMStudioAPIError:
            return err
        if self._native is not None and not partial.content and not partial.reasoning:
            return err  # refused before any answer (a bad previous_response_id): as chat() says it
        return LMStudioStreamError(
            f"LM Studio reported an error mid-answer after {len(partial.content)} characters: "
            f"{message.rstrip().rstrip('.')}. "
            "The partial answer is kept (.partial).",
            partial=partial,
            body=body,
        )

    def _classified(self, body: Any, message: str, code: str | None, partial: ChatResult | None) -> LMStudioAPIError:
        """An error the server sent with its 200 (in the stream, or as the whole body)."""
        err = classify_error(
            status_code=200,
            body=body,
            message=message,
            code=code,
            base_url=self._base_url,
            method="POST",
            path=self._path,
            model=self._model,
            partial=partial,
            max_tokens=self._payload.get("max_tokens", self._payload.get("max_output_tokens")),
            token_sent=self._response is not None and token_sent(self._response.request),
        )
        if self._native is not None and isinstance(err, EndpointNotSupportedError):
            return self._source._native_refused(err, self._payload)
        return err

    def _check_finished(self) -> None:
        """The body ended (at ``[DONE]`` or not): fine after a finish_reason, else the answer was cut or broken."""
        self._decoder.flush()
        if self._acc.finish_reason is not None:
            self._done = True
            return
        saw_done, self._done = self._done, False
        if saw_done:
            # OpenAI-style servers say why an answer ended before [DONE]; without it the answer was cut short
            raise LMStudioStreamError(
                f"The server ended the answer after {self._acc.content_chars} characters without saying why (no "
                "finish_reason before [DONE]): it was cut short. llama.cpp's server does this to serve a waiting "
                "request unless started with --interrupt_requests False. The partial answer is kept (.partial); "
                "retry the request.",
                partial=self.partial(),
                dropped=True,
            )
        if self._acc.id is None and self._acc.deltas == 0:  # no chunk: it failed before generating; a retry won't help
            raise LMStudioStreamError(
                f"The server at {self._base_url} accepted the request but ended the stream without sending anything. "
                "llama.cpp's server does this when the prompt does not fit in the model's context (its log says "
                '"exceed context window"): shorten the prompt or conversation, or check the server\'s log.',
                partial=self.partial(),
            )
        raise LMStudioStreamError(
            f"LM Studio closed the stream after {self._acc.content_chars} characters without finishing the answer. "
            "The partial answer is kept (.partial); retry the request.",
            partial=self.partial(),
        )

    def _check_native_finished(self) -> None:
        """A native stream's body ended: fine after ``chat.end``; an ``error`` without it is raised now."""
        self._decoder.flush()
        native = self._native
        assert native is not None
        if native.error is not None:
            raise self._in_band_error_body(native.error)
        if native.ended:
            self._done = True
            return
        raise LMStudioStreamError(
            f"LM Studio closed the native stream after {self._acc.content_chars} characters without its chat.end "
            "event: the answer was cut short. The partial answer is kept (.partial); retry the request.",
            partial=self.partial(),
        )
