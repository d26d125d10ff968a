"""The progress bar of :func:`~lm_notebook.comparison.benchmark.benchmark`: one tqdm bar over every level.

The description says the level running (``concurrency 4``, or ``warm-up``), and while the model loads for the first
request, how long it has been loading; the counts after the bar are the requests done and the errors so far. Any
failure of the bar only turns it off.
"""

from __future__ import annotations

from typing import IO

from lm_notebook.comparison.progress import ProgressEvent, TqdmBar, errors_text


class BenchmarkProgress(TqdmBar):
    """Told each level as it starts (:meth:`level`) and every event of its run (:meth:`callback`)."""

    def __init__(self, model: str, total: int, *, enabled: bool = True, file: IO[str] | None = None) -> None:
        self.model = model
        self.total = total
        self.done = 0
        self.errors = 0
        self._label = model
        super().__init__(total, desc=f"benchmark {model}", unit="request", file=file, enabled=enabled)

    def level(self, phase: str, concurrency: int, requests: int, slots: int | None) -> None:
        beyond = f" (> {slots} slots: queues)" if slots is not None and concurrency > slots else ""
        name = "warm-up" if phase == "warmup" else f"concurrency {concurrency}{beyond}"
        self._label = f"{self.model} · {name}"
        self._paint(lambda: self._bar.set_description(self._label, refresh=True))

    def callback(self, event: ProgressEvent) -> None:
        if event.kind == "row":  # counted with the bar off too
            self.done += 1
            self.errors += event.status == "error"
        self(event)

    def _show(self, event: ProgressEvent) -> None:
        if event.kind == "loading":
            self._bar.set_description(f"{self._label}: loading… {event.elapsed_s or 0:.0f} s", refresh=True)
        elif event.kind == "loaded":
            self._bar.set_description(f"{self._label} (loaded in {event.elapsed_s or 0:.1f} s)", refresh=True)
        elif event.kind == "row":
            self._bar.set_postfix_str(errors_text(self.errors), refresh=False)
            self._bar.update(1)
