"""The progress bar of :func:`~lm_notebook.comparison.benchmark.benchmark`: one tqdm bar over every level.

The description says the level running (``concurrency 4``, or ``warm-up``), and while the model loads for the first
request, how long it has been loading; the counts after the bar are the requests done and the errors so far. Any
failure of the bar only turns it off.
"""

from __future__ import annotations

import importlib
from typing import IO, Any

from lm_notebook.comparison.progress import ProgressEvent


class BenchmarkProgress:
    """Told each level as it starts (:meth:`level`) and every event of its run (:meth:`callback`)."""

    def __init__(self, model: str, total: int, *, enabled: bool = True, file: IO[str] | None = None) -> None:
        self.model = model
        self.total = total
        self.done = 0
        self.errors = 0
        self._label = model
        self._bar: Any = None
        if not enabled:
            return
        try:
            tqdm = importlib.import_module("tqdm.auto").tqdm
            self._bar = tqdm(total=total, desc=f"benchmark {model}", unit="request", delay=0, leave=True,
                             dynamic_ncols=True, file=file)
        except Exception:
            self._bar = None

    def level(self, phase: str, concurrency: int, requests: int, slots: int | None) -> None:
        beyond = f" (> {slots} slots: queues)" if slots is not None and concurrency > slots else ""
        name = "warm-up" if phase == "warmup" else f"concurrency {concurrency}{beyond}"
        self._label = f"{self.model} · {name}"
        self._show(lambda bar: bar.set_description(self._label, refresh=True))

    def callback(self, event: ProgressEvent) -> None:
        if event.kind == "loading":
            text = f"{self._label}: loading… {event.elapsed_s or 0:.0f} s"
            self._show(lambda bar: bar.set_description(text, refresh=True))
        elif event.kind == "loaded":
            text = f"{self._label} (loaded in {event.elapsed_s or 0:.1f} s)"
            self._show(lambda bar: bar.set_description(text, refresh=True))
        elif event.kind == "row":
            self.done += 1
            self.errors += event.status == "error"
            note = f"{self.errors} error{'s' if self.errors != 1 else ''}" if self.errors else ""
            self._show(lambda bar: (bar.set_postfix_str(note, refresh=False), bar.update(1)))

    def _show(self, paint: Any) -> None:
        if self._bar is None:
            return
        try:
            paint(self._bar)
        except Exception:
            self._bar = None

    def close(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            try:
                bar.close()
            except Exception:
                pass
