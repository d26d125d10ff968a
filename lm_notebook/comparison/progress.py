"""Progress of a comparison: the events a ``progress=`` callback receives, and tqdm's bar.

:class:`ProgressReporter` counts the rows as they settle and tells both the bar (``progress=True``) and a callback.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

EventKind = Literal["start", "model", "row", "end"]


@dataclass(frozen=True)
class ProgressEvent:
    """What a ``progress=`` callback receives: at the start, when a model's turn begins, after each row, at the end.

    ``kind``: ``"start" | "model" | "row" | "end"``; ``index`` is the row's position in the result.
    """

    kind: Literal["start", "model", "row", "end"]
    done: int
    total: int
    errors: int
    cached: int
    model: str | None = None
    index: int | None = None
    status: str | None = None
    cold: bool = False


ProgressCallback = Callable[[ProgressEvent], object]


class ProgressBar:
    """tqdm's bar (the widget in a notebook, text in a terminal); any failure of the bar only turns it off."""

    def __init__(self, total: int, models: Sequence[str]) -> None:
        self._counts = {m: [0, 0] for m in models}  # model → [done, total]
        self._bar: Any = None
        try:
            tqdm = importlib.import_module("tqdm.auto").tqdm
            # delay: a comparison that is over in a moment shows no bar at all
            self._bar = tqdm(total=total, desc="compare", unit="answer", delay=0.5, leave=True, dynamic_ncols=True)
        except Exception:
            self._bar = None

    def set_totals(self, totals: Mapping[str, int]) -> None:
        for m, n in totals.items():
            self._counts.setdefault(m, [0, 0])[1] = n

    def __call__(self, event: ProgressEvent) -> None:
        if self._bar is None:
            return
        try:
            if event.kind == "model" and event.model:
                self._bar.set_description(f"{event.model}{' (loading)' if event.cold else ''}", refresh=False)
            if event.kind == "row" and event.model:
                self._counts.setdefault(event.model, [0, 0])[0] += 1
                shown = " · ".join(f"{m} {d}/{t}" for m, (d, t) in self._counts.items())
                errors = f" · {event.errors} error{'s' if event.errors != 1 else ''}" if event.errors else ""
                self._bar.set_postfix_str(shown + errors, refresh=False)
                self._bar.update(1)
            if event.kind == "end":
                self.close()
        except Exception:
            self._bar = None

    def close(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            try:
                bar.close()
            except Exception:
                pass


class ProgressReporter:
    """What ``compare(progress=...)`` asked for: a bar (``True``), nothing (``False``), or a callable per event."""

    def __init__(self, progress: bool | ProgressCallback, totals: Mapping[str, int]) -> None:
        self.total = sum(totals.values())
        self._done = self._errors = self._cached = 0
        self._callback: ProgressCallback | None = progress if callable(progress) else None
        self._bar: ProgressBar | None = None
        if progress is True:
            self._bar = ProgressBar(self.total, list(totals))
            self._bar.set_totals(totals)

    def event(self, kind: EventKind, **kw: Any) -> ProgressEvent:
        return ProgressEvent(kind, self._done, self.total, self._errors, self._cached, **kw)

    def row(self, *, index: int, model: str, status: str, cached: bool, cold: bool) -> None:
        """One more row settled (answered, failed, cancelled, or found in the cache)."""
        self._done += 1
        self._errors += status == "error"
        self._cached += cached
        self.report(self.event("row", model=model, index=index, status=status, cold=cold))

    def report(self, event: ProgressEvent) -> None:
        if self._bar is not None:
            self._bar(event)
        if self._callback is not None:
            self._callback(event)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
