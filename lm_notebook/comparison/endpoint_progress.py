"""The progress bar of a comparison over several servers: what each server is doing, and its rows done.

The description holds one part per server (``laptop: qwen2.5-7b-instruct · gpu: gemma loading… 12 s · nas: down``);
the counts after the bar are each server's rows done and the errors so far. Any failure of the bar only turns it off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

from lm_notebook.comparison.progress import ProgressEvent, TqdmBar, errors_text


class EndpointProgressBar(TqdmBar):
    """tqdm's bar, told every :class:`ProgressEvent` of the run (each names its server in ``endpoint``)."""

    def __init__(self, total: int, endpoints: Sequence[str], *, file: IO[str] | None = None) -> None:
        self._doing = dict.fromkeys(endpoints, "…")
        self._done = dict.fromkeys(endpoints, 0)
        self._errors = 0
        super().__init__(total, desc=self._description(), unit="answer", file=file, postfix=self._counts())

    def _description(self) -> str:
        return " · ".join(f"{name}: {doing}" for name, doing in self._doing.items())

    def _counts(self) -> str:
        shown = " · ".join(f"{name} {done}" for name, done in self._done.items())
        return shown + (f" · {errors_text(self._errors)}" if self._errors else "")

    def _show(self, event: ProgressEvent) -> None:
        name, model = event.endpoint, event.model
        if event.kind == "end":
            self.close()
            return
        if event.kind == "row":
            if name is not None:
                self._done[name] = self._done.get(name, 0) + 1
            self._errors = event.errors
            self._bar.set_postfix_str(self._counts(), refresh=False)
            self._bar.update(1)
            return
        if name is None or self._doing.get(name) == "down":
            return
        if event.kind == "model" and model:
            self._doing[name] = f"{model} loading…" if event.cold else model
        elif event.kind == "loading" and model:
            self._doing[name] = f"{model} loading… {event.elapsed_s or 0:.0f} s"
        elif event.kind == "loaded" and model:
            self._doing[name] = f"{model} (loaded in {event.elapsed_s or 0:.1f} s)"
        elif event.kind == "down":
            self._doing[name] = "down"
        else:
            return
        self._bar.set_description(self._description(), refresh=True)
