"""Sending a comparison's rows: a worker takes one model's rows in turn and sends each, retrying what is worth it.

A row's attempt streams its answer (an act when ``tools=`` are given); a failure worth retrying (429, 503, a dropped
connection) is sent again after the policy's backoff, anything else settles the row as an error and feeds the
model's breaker. A Stop that lands while a finished answer's stream closes keeps the answer.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import httpx

from lm_notebook.client.errors import LMStudioAPIError, LMStudioConnectionError, LMStudioError
from lm_notebook.client.native_types import StreamProgress
from lm_notebook.client.types import ChatResult
from lm_notebook.comparison.model_batch import BatchState
from lm_notebook.comparison.retry import worth_retrying
from lm_notebook.comparison.rows import Outcome
from lm_notebook.comparison.run_state import RunState
from lm_notebook.comparison.schedule import RequestSpec
from lm_notebook.comparison.tool_rows import ActRowStream, counted, open_row


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class RowSender(RunState):
    """The state, plus sending rows: :meth:`_worker` is one of a model's slots."""

    async def _worker(self, state: BatchState) -> None:
        while state.pending and state.breaker.failure is None and not self.interrupted and self.server_down is None:
            spec = state.pending.popleft()
            cold, state.cold_next = state.cold_next, False
            await self._run_one(spec, state, cold)

    def _worth_retrying(self, err: LMStudioError) -> bool:
        """Whether to send the row again to this server (with several servers, a refused connection goes elsewhere)."""
        return worth_retrying(err)

    async def _not_retried(self, err: LMStudioError, spec: RequestSpec) -> str | None:
        """What the row's error adds when a failure worth retrying is not sent again (None: nothing)."""
        if self.retry.attempts <= 1:
            return "It was not sent again: retries are off."
        return None

    async def _run_one(self, spec: RequestSpec, state: BatchState, cold: bool) -> None:
        messages = self.messages[spec.prompt_index]
        attempts = 0
        partial: ChatResult | None = None
        started_at = _now()
        try:
            while True:
                attempts += 1
                started_at = _now()
                self._begun[spec.index] = (started_at, attempts, cold)
                stream = open_row(self.client, messages, spec.model, self.send, self.tools)
                self._live[spec.index] = stream
                try:
                    async for part in stream.iter_parts():
                        detail = getattr(part, "detail", None)  # an act's parts have none
                        if isinstance(detail, StreamProgress):  # the server's load / prompt progress
                            state.report_load(detail)
                        else:
                            state.mark_warm()
                    result = await stream.result()
                    self._results[spec.index] = result  # finished: a Stop from here on keeps it (see interrupt)
                except LMStudioError as err:
                    partial = err.partial
                    retryable = self._worth_retrying(err)
                    if (
                        retryable
                        and attempts < self.retry.attempts
                        and not self.interrupted
                        and state.breaker.failure is None
                    ):
                        self._live.pop(spec.index, None)
                        await stream.aclose()
                        retry_after = err.retry_after if isinstance(err, LMStudioAPIError) else None
                        await asyncio.sleep(self.retry.delay(attempts, retry_after))
                        continue
                    note = await self._not_retried(err, spec) if retryable and not self.interrupted else None
                    outcome = counted(Outcome.from_error(err, started_at=started_at, attempts=attempts, cold=cold,
                                                         message=None if note is None else f"{err.message} {note}"),
                                      stream, err)
                    if isinstance(err, LMStudioConnectionError) and isinstance(
                        err.__cause__, (httpx.ConnectError, httpx.ConnectTimeout)
                    ):
                        self.server_down = err
                    # no warm.set(): until one answer starts, the model is probed one request at a time
                    state.breaker.note(err)
                    self._finish(spec.index, outcome)
                    return
                except Exception as err:  # a bug must cost one row, not the run
                    self._finish(
                        spec.index, Outcome.from_error(err, started_at=started_at, attempts=attempts, cold=cold)
                    )
                    return
                finally:
                    if self._live.get(spec.index) is stream:
                        partial = stream.partial() if partial is None else partial
                        del self._live[spec.index]
                        await stream.aclose()
                state.breaker.note(None)
                state.mark_warm()
                if not (result.content or result.reasoning or result.tool_calls):
                    await self._refresh(spec.model)  # the context it is loaded with, for the empty answer's message
                if isinstance(stream, ActRowStream):
                    self._acts[spec.index] = stream  # its tool counts, for the row
                self._answered(spec.index)
                return
        except asyncio.CancelledError:
            if spec.index in self._results:
                self._answered(spec.index)
            elif self.outcomes[spec.index] is None:
                self.outcomes[spec.index] = Outcome.cancelled(
                    partial, started_at=started_at, attempts=attempts, cold=cold
                )
            raise
