"""One model's turn in a comparison: its rows left, its breaker, and whether it is up yet (its load's progress).

A model that is not loaded gets its first request alone; the first token (or a finished answer) makes it *warm*, which
opens its other slots and ends its "loading" events. The events go out through ``put`` (the run's event queue).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lm_notebook.client.native_types import StreamProgress
from lm_notebook.comparison.progress import EventKind
from lm_notebook.comparison.retry import ModelBreaker
from lm_notebook.comparison.schedule import ModelBatch, RequestSpec


@dataclass
class BatchState:
    batch: ModelBatch
    pending: deque[RequestSpec]
    breaker: ModelBreaker
    put: Callable[[tuple[EventKind, Any]], None]
    warm: asyncio.Event = field(default_factory=asyncio.Event)
    cold_next: bool = False
    loading_since: float | None = None  # loop time the first request to a model known not to be loaded was sent
    server_load_s: float | None = None  # the load's seconds, as the server reported them at its end

    def report_load(self, progress: StreamProgress) -> None:
        """LM Studio 0.4 reports the load's progress (native route): a "loading" event with its fraction; at its end,
        the load's own seconds (the "loaded" event says them, as the row's ``load_s`` does)."""
        since = self.loading_since
        if progress.stage != "model_load" or since is None:
            return
        if progress.done:
            self.server_load_s = progress.load_time_seconds
            return
        elapsed = asyncio.get_running_loop().time() - since
        self.put(("loading", {"model": self.batch.model, "elapsed_s": elapsed, "fraction": progress.fraction}))

    def mark_warm(self) -> None:
        """The model answered: open its other slots, and end its loading (said at once, before its first row)."""
        if self.warm.is_set():
            return
        self.warm.set()
        since, self.loading_since = self.loading_since, None
        if since is not None:
            elapsed = self.server_load_s
            if elapsed is None:  # the client's wait to the first token: the load and the time to it
                elapsed = asyncio.get_running_loop().time() - since
            self.put(("loaded", {"model": self.batch.model, "elapsed_s": elapsed}))
