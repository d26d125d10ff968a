"""When ``compare`` tries a request again, and when it stops sending to a model.

429, 503 and dropped connections are retried with bounded, jittered backoff (:class:`RetryPolicy`, honouring
``Retry-After``). A model whose errors say it cannot answer (not found, failed to load, ...) or that fails
``BREAKER_THRESHOLD`` requests in a row is given up on (:class:`ModelBreaker`): its remaining rows fail unsent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

from lm_notebook.client.errors import (
    AuthenticationError,
    EndpointNotSupportedError,
    LMStudioConnectionError,
    LMStudioError,
    LMStudioStreamError,
    LMStudioTimeoutError,
    ModelLoadError,
    ModelNotFoundError,
    NoModelLoadedError,
    RateLimitError,
    ServerBusyError,
    ServerError,
)

# Errors that condemn every request to this model: don't send the rest.
MODEL_ERRORS = (ModelNotFoundError, ModelLoadError, NoModelLoadedError, AuthenticationError, EndpointNotSupportedError)
# Errors that say the model (or server) is unwell: after this many in a row, stop sending to it.
HEALTH_ERRORS = (LMStudioTimeoutError, ServerError, LMStudioStreamError, LMStudioConnectionError)
BREAKER_THRESHOLD = 3
# Worth trying again after a pause: the server said "later", or the connection dropped.
RETRYABLE = (RateLimitError, ServerBusyError, LMStudioStreamError, LMStudioConnectionError)


def refused(err: LMStudioError) -> bool:
    """The server is not there: the connection was refused or could not be made (with several endpoints, it is
    down: its work goes to another at once, not after backoffs)."""
    return isinstance(err, LMStudioConnectionError) and isinstance(
        err.__cause__, (httpx.ConnectError, httpx.ConnectTimeout)
    )


def worth_retrying(err: LMStudioError) -> bool:
    """A stream error is retried only when the connection broke or the answer was cut (``dropped``): a malformed
    chunk or an error the server sent would come back the same, after a whole new generation."""
    if isinstance(err, LMStudioStreamError):
        return err.dropped
    return isinstance(err, RETRYABLE)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``attempts`` tries in all; waits double from ``base_delay`` up to ``max_delay``.

    A ``Retry-After`` from the server is honoured, but never beyond ``max_delay``.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 10.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        backoff = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
        return float(backoff * random.uniform(0.8, 1.0))  # jitter so parallel retries do not land together


@dataclass
class ModelBreaker:
    """One model's turn: ``failure`` is set once sending it more requests is pointless (``note`` each result)."""

    model: str
    failure: LMStudioError | None = None
    failure_note: str | None = None
    in_a_row: int = 0

    def note(self, err: LMStudioError | None) -> None:
        if err is None:
            self.in_a_row = 0
            return
        if isinstance(err, MODEL_ERRORS):
            self.failure = err
        elif isinstance(err, HEALTH_ERRORS):
            self.in_a_row += 1
            if self.in_a_row >= BREAKER_THRESHOLD and self.failure is None:
                self.failure = err
                self.failure_note = f"{self.model} failed {self.in_a_row} requests in a row"
