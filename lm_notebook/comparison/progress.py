"""Progress of a comparison: the events a ``progress=`` callback receives, and tqdm's bar.

:class:`ProgressReporter` counts the rows as they settle and tells both the bar (``progress=True``) and a callback.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal, NamedTuple, Protocol

EventKind = Literal["start", "model", "loading", "loaded", "row", "judging", "down", "end"]


@dataclass(frozen=True)
class ProgressEvent:
    """What a ``progress=`` callback receives, in this order:

    - ``"start"``: at once, before anything is sent (rows found in the cache or refused follow as ``"row"``s);
    - ``"model"``: a model's turn begins; ``cold`` when it is not loaded (its first request carries the load);
    - ``"loading"``: about once a second while that first request waits for the model, ``elapsed_s`` so far (and,
      where the server reports the load's progress, LM Studio 0.4, at each report with its ``fraction`` 0–1);
    - ``"loaded"``: its first token came, ``elapsed_s`` after the request (none when the request failed first);
    - ``"row"``: after each row settles, ``index`` its position in the result, ``status`` its status;
    - ``"judging"``: with ``checks=[judge(...)]``, as a judge ``model`` starts and after each grade: ``judged`` of
      ``to_judge`` answers graded by it;
    - ``"down"``: (several servers) ``endpoint`` stopped answering; its rows in flight go to another server;
    - ``"end"``: the run is over (not sent when it was interrupted).

    With ``compare(endpoints=...)`` every event of one server's work names it in ``endpoint``.
    """

    kind: EventKind
    done: int
    total: int
    errors: int
    cached: int
    model: str | None = None
    index: int | None = None
    status: str | None = None
    cold: bool = False
    elapsed_s: float | None = None
    judged: int | None = None
    to_judge: int | None = None
    endpoint: str | None = None
    fraction: float | None = None  # how far a load has come, when the server says (LM Studio 0.4)


ProgressCallback = Callable[[ProgressEvent], object]


class SettledRow(NamedTuple):
    """A row that settled, as the progress hears of it (``row``: its index in the result)."""

    row: int
    model: str
    status: str
    cached: bool
    cold: bool
    endpoint: str | None = None


class Bar(Protocol):
    """What shows the progress: told every event, closed at the end."""

    def __call__(self, event: ProgressEvent) -> None: ...

    def rows(self, events: Sequence[ProgressEvent]) -> None:
        """Many "row" events at once (rows settled before the run: cache hits, refused models)."""

    def close(self) -> None: ...


class TqdmBar:
    """tqdm's bar (the widget in a notebook, text in a terminal), told every event; any failure of the bar only turns
    it off — a bar never costs the run. Subclasses say what an event shows (:meth:`_show`) and the first counts."""

    def __init__(
        self, total: int, *, desc: str, unit: str, file: IO[str] | None, enabled: bool = True,
        postfix: str | None = None,
    ) -> None:
        self._bar: Any = None
        if not enabled:
            return
        try:
            tqdm = importlib.import_module("tqdm.auto").tqdm
            # delay=0: shown at once, so a model's load is never a blank wait
            self._bar = tqdm(total=total, desc=desc, unit=unit, delay=0, leave=True, dynamic_ncols=True, file=file)
            if postfix is not None:
                self._bar.set_postfix_str(postfix, refresh=True)
        except Exception:
            self._bar = None

    def __call__(self, event: ProgressEvent) -> None:
        self._paint(lambda: self._show(event))

    def rows(self, events: Sequence[ProgressEvent]) -> None:
        for event in events:
            self(event)

    def _paint(self, paint: Callable[[], object]) -> None:
        """Change the bar (when it is on); a failure turns it off."""
        if self._bar is None:
            return
        try:
            paint()
        except Exception:
            self._bar = None

    def _show(self, event: ProgressEvent) -> None:
        raise NotImplementedError

    def close(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            try:
                bar.close()
            except Exception:
                pass


def errors_text(errors: int) -> str:
    """The errors so far, as the bars show them after their counts ("" when none)."""
    return f"{errors} error{'s' if errors != 1 else ''}" if errors else ""


class ProgressBar(TqdmBar):
    """compare's bar. Shown from the start: the description says which model is loading and for how long, then the
    model whose rows are running; the counts after the bar are each model's rows done and the errors so far.
    """

    def __init__(self, total: int, models: Sequence[str], *, file: IO[str] | None = None) -> None:
        self._counts = {m: [0, 0] for m in models}  # model → [done, total]
        for m in models:
            self._counts[m][1] += 1
        self._errors = 0
        self._loading: str | None = None  # the model whose load the description shows
        self._fraction: float | None = None  # how far its load has come, when the server reports it
        super().__init__(total, desc="compare", unit="answer", file=file, postfix=self._counts_text())

    def _counts_text(self) -> str:
        shown = " · ".join(f"{m} {d}/{t}" for m, (d, t) in self._counts.items())
        return shown + (f" · {errors_text(self._errors)}" if self._errors else "")

    def rows(self, events: Sequence[ProgressEvent]) -> None:
        """Counted, then painted once (a cached re-run's 1,000 rows: one repaint, not 1,000)."""
        def paint() -> None:
            counted = [event for event in events if event.kind == "row" and event.model]
            for event in counted:
                self._count(event)
            if counted:
                self._bar.set_postfix_str(self._counts_text(), refresh=False)
                self._bar.update(len(counted))
        self._paint(paint)

    def _count(self, event: ProgressEvent) -> None:
        model = event.model
        assert model is not None
        if model == self._loading:  # its first request ended without a token: the load is over all the same
            self._loading = None
            self._bar.set_description(model, refresh=False)
        self._counts.setdefault(model, [0, 0])[0] += 1
        self._errors = event.errors

    def _show(self, event: ProgressEvent) -> None:
        model = event.model
        if event.kind == "model" and model:
            self._loading = model if event.cold else None
            self._fraction = None
            self._bar.set_description(f"{model}: loading…" if event.cold else model, refresh=True)
        elif event.kind == "loading" and model and model == self._loading:
            if event.fraction is not None:
                self._fraction = event.fraction
            done = f" {round(self._fraction * 100)} %" if self._fraction is not None else ""
            self._bar.set_description(f"{model}: loading…{done} {event.elapsed_s or 0:.0f} s", refresh=True)
        elif event.kind == "loaded" and model:
            self._loading = None
            self._bar.set_description(f"{model} (loaded in {event.elapsed_s or 0:.1f} s)", refresh=True)
        elif event.kind == "row" and model:
            self._count(event)
            self._bar.set_postfix_str(self._counts_text(), refresh=False)
            self._bar.update(1)
        elif event.kind == "judging" and model:
            self._bar.set_description(f"judging with {model}: {event.judged}/{event.to_judge}", refresh=True)
        elif event.kind == "end":
            self.close()


class ProgressReporter:
    """What ``compare(progress=...)`` asked for: a bar (``True``), nothing (``False``), or a callable per event."""

    def __init__(
        self, progress: bool | ProgressCallback, models: Sequence[str], *, bar: Callable[[], Bar] | None = None
    ) -> None:
        """``models``: each row's model, in order; ``bar``: makes the bar shown for ``progress=True`` (default
        :class:`ProgressBar`)."""
        self.total = len(models)
        self._done = self._errors = self._cached = 0
        self._callback: ProgressCallback | None = progress if callable(progress) else None
        self._bar: Bar | None = None
        if progress is True:
            self._bar = bar() if bar is not None else ProgressBar(self.total, models)

    @property
    def listening(self) -> bool:
        """Whether anyone hears the events (a bar or a callback); with ``progress=False`` nobody does."""
        return self._bar is not None or self._callback is not None

    def event(self, kind: EventKind, **kw: Any) -> ProgressEvent:
        return ProgressEvent(kind, self._done, self.total, self._errors, self._cached, **kw)

    def row(self, row: SettledRow) -> None:
        """One more row settled (answered, failed, cancelled, or found in the cache)."""
        self.rows([row])

    def rows(self, rows: Sequence[SettledRow]) -> None:
        """Rows settled together (before the run: cache hits, refused models): the callback hears each, the bar
        repaints once."""
        listening = self.listening
        events = []
        for row in rows:
            self._done += 1
            self._errors += row.status == "error"
            self._cached += row.cached
            if listening:  # nobody to tell (progress=False): no event made per row
                events.append(self.event("row", model=row.model, index=row.row, status=row.status, cold=row.cold,
                                         endpoint=row.endpoint))
        if self._bar is not None:
            self._bar(events[0]) if len(events) == 1 else self._bar.rows(events)
        if self._callback is not None:
            for event in events:
                self._callback(event)

    def report(self, event: ProgressEvent) -> None:
        if self._bar is not None:
            self._bar(event)
        if self._callback is not None:
            self._callback(event)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
