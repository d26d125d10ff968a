"""compare()'s progress: the events a callback receives (a model's load paced by a ManualClock), and tqdm's bar."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lm_notebook.comparison.run as run_module
from lm_notebook import LMStudioClient
from lm_notebook.comparison.api import ProgressEvent, compare
from lm_notebook.comparison.progress import ProgressBar
from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec

LOAD = 30.0  # seconds on the fake server's clock: passes only when the test moves the clock


@pytest.fixture
def server() -> Iterator[MockLMStudioServer]:
    models = [ModelSpec("alpha", reply_tokens=4, loaded=True), ModelSpec("gamma", reply_tokens=4)]
    with MockLMStudioServer(models=models) as srv:
        yield srv


@pytest.fixture
def client(server: MockLMStudioServer) -> Iterator[LMStudioClient]:
    with LMStudioClient(server.url, timeout=10) as c:
        yield c


def test_the_callback_sees_the_start_each_model_and_every_row(
    server: MockLMStudioServer, client: LMStudioClient
) -> None:
    events: list[ProgressEvent] = []
    compare(["a", "b"], ["alpha", "nope"], client=client, progress=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and events[0].done == 0 and events[0].total == 4 and kinds[-1] == "end"
    rows = [e for e in events if e.kind == "row"]
    assert len(rows) == 4 and rows[-1].done == 4 and rows[-1].total == 4 and rows[-1].errors == 2
    assert [(e.model, e.cold) for e in events if e.kind == "model"] == [("alpha", False)]
    assert "loading" not in kinds and "loaded" not in kinds  # alpha was loaded already


def test_a_models_load_is_reported_while_it_lasts_then_never_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_module, "LOADING_TICK_SECONDS", 0.01)
    clock = ManualClock()
    events: list[ProgressEvent] = []
    three_ticks = threading.Event()

    def progress(event: ProgressEvent) -> None:  # on compare's loop: it must not block
        events.append(event)
        if event.kind == "loading" and sum(e.kind == "loading" for e in events) == 3:
            three_ticks.set()

    def end_the_load() -> None:
        # The load ends only once three "loading" events came and the server is loading: the ticks start when the
        # request is sent, so on a busy machine three can come before it reaches the server (moving the clock then
        # would leave the load due 30 s after the move, never reached).
        if three_ticks.wait(10):
            clock.wait_for_pending(1)
            clock.advance(LOAD)

    # the OpenAI route: no progress from the server, the ticks say how long the load has lasted
    with MockLMStudioServer(models=[ModelSpec("gamma", load_time=LOAD, reply_tokens=4)], clock=clock) as srv, \
            LMStudioClient(srv.url, route="openai") as c:
        mover = threading.Thread(target=end_the_load, daemon=True)
        mover.start()
        try:
            df = compare(["a", "b", "c"], ["gamma"], client=c, progress=progress)
        finally:
            three_ticks.set()
            mover.join(10)
    assert (df.status == "ok").all() and df.cold.tolist() == [True, False, False]
    kinds = [e.kind for e in events]
    assert kinds[:3] == ["start", "model", "loading"] and events[1].cold and events[1].model == "gamma"
    assert kinds.index("loaded") < kinds.index("row")  # the load is over before the first row
    loading = [e for e in events if e.kind == "loading"]
    # three or more: the ticks go on, a wall-clock interval apart, until the answer's first token is read
    assert len(loading) >= 3 and "loading" not in kinds[kinds.index("loaded"):]
    assert all(e.model == "gamma" and e.elapsed_s is not None and e.elapsed_s > 0 for e in loading)
    elapsed = [e.elapsed_s for e in loading]
    assert elapsed == sorted(elapsed)
    (loaded,) = [e for e in events if e.kind == "loaded"]
    assert loaded.model == "gamma" and loaded.elapsed_s is not None and loaded.elapsed_s >= elapsed[-1]
    assert all(e.done == 0 for e in events[: kinds.index("row")])


def test_the_load_time_said_is_the_servers_when_it_reports_one() -> None:
    # the native route reports the load's own seconds: the bar's "loaded in" says them, as the frame's load_s does
    # (not the client's wait to the first token, which adds the time to the first token to the load)
    clock = ManualClock()
    events: list[ProgressEvent] = []
    finished = threading.Event()

    def move_the_clock() -> None:  # from pause to pause of the server, until compare() is over
        while not finished.is_set():
            try:
                pending = clock.wait_for_pending(1, timeout=0.05)
            except TimeoutError:
                continue
            clock.advance_to(min(pending))

    models = [ModelSpec("gamma", load_time=LOAD, ttft=2.0, reply_tokens=4)]
    with MockLMStudioServer(models=models, clock=clock, jit_ttl=None) as srv, \
            LMStudioClient(srv.url, route="native") as c:
        mover = threading.Thread(target=move_the_clock, daemon=True)
        mover.start()
        try:
            df = compare(["a"], ["gamma"], client=c, progress=events.append)
        finally:
            finished.set()
            mover.join(10)
    (loaded,) = [e for e in events if e.kind == "loaded"]
    assert df.load_s[0] >= LOAD and loaded.elapsed_s == df.load_s[0]  # the server clock's, not the client's


def bar_text(out: io.StringIO) -> list[str]:
    """What the bar showed, one repaint each (tqdm repaints a line with a carriage return)."""
    return [s.strip() for s in re.split(r"[\r\n]", out.getvalue()) if s.strip()]


def event(kind: Any, done: int = 0, errors: int = 0, **kw: Any) -> ProgressEvent:
    return ProgressEvent(kind, done, 3, errors, 0, **kw)


def test_the_bar_shows_at_once_then_the_load_with_its_seconds_then_rows_and_errors() -> None:
    out = io.StringIO()
    bar = ProgressBar(3, ["alpha", "alpha", "gamma"], file=out)
    assert "compare" in bar_text(out)[-1] and "alpha 0/2 · gamma 0/1" in bar_text(out)[-1]  # before any row
    bar(event("start"))
    bar(event("model", model="alpha"))
    bar(event("row", 1, model="alpha", index=0, status="ok"))
    bar(event("row", 2, 1, model="alpha", index=1, status="error"))
    bar(event("model", model="gamma", cold=True))
    assert bar_text(out)[-1].startswith("gamma: loading…")
    bar(event("loading", 2, 1, model="gamma", elapsed_s=1.2))
    bar(event("loading", 2, 1, model="gamma", elapsed_s=2.3))
    assert bar_text(out)[-1].startswith("gamma: loading… 2 s")
    bar(event("loaded", 2, 1, model="gamma", elapsed_s=2.6))
    assert bar_text(out)[-1].startswith("gamma (loaded in 2.6 s)")
    bar(event("row", 3, 1, model="gamma", index=2, status="ok"))
    bar(event("end", 3, 1))
    final = bar_text(out)[-1]
    assert "loading" not in final and "3/3" in final and "alpha 2/2 · gamma 1/1 · 1 error" in final


def test_a_load_that_fails_stops_saying_loading_at_its_row() -> None:
    out = io.StringIO()
    bar = ProgressBar(1, ["gamma"], file=out)
    bar(event("model", model="gamma", cold=True))
    bar(event("loading", model="gamma", elapsed_s=1.0))
    bar(event("row", 1, 1, model="gamma", index=0, status="error"))
    bar.close()
    assert "loading" not in bar_text(out)[-1] and "gamma 1/1 · 1 error" in bar_text(out)[-1]


def test_the_bar_in_a_plain_process(
    server: MockLMStudioServer, client: LMStudioClient, capsys: pytest.CaptureFixture[str]
) -> None:
    server.update_model("gamma", load_time=0.05)
    df = compare(["a", "b"], ["gamma"], client=client, progress=True)
    assert (df.status == "ok").all()
    shown = [s.strip() for s in re.split(r"[\r\n]", capsys.readouterr().err) if s.strip()]
    assert any(s.startswith("gamma: loading…") for s in shown)
    assert "loading" not in shown[-1] and "gamma 2/2" in shown[-1]


def test_a_cached_rerun_paints_its_rows_at_once_and_the_callback_still_hears_each(
    client: LMStudioClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tqdm.auto

    updates: list[int] = []

    class CountingBar(tqdm.auto.tqdm):  # type: ignore[misc, name-defined]
        def update(self, n: float | None = 1) -> bool | None:
            updates.append(int(n or 0))
            return super().update(n)  # type: ignore[no-any-return]

    prompts = [f"question {i}" for i in range(25)]
    cache = tmp_path / "c.sqlite"
    compare(prompts, ["alpha"], client=client, temperature=0, cache=cache, progress=False)
    monkeypatch.setattr(tqdm.auto, "tqdm", CountingBar)
    df = compare(prompts, ["alpha"], client=client, temperature=0, cache=cache, progress=True)
    assert df.cached.all()
    assert updates == [25]  # one repaint for the 25 cached rows (it was one per row)
    events: list[ProgressEvent] = []
    compare(prompts, ["alpha"], client=client, temperature=0, cache=cache, progress=events.append)
    rows = [e for e in events if e.kind == "row"]
    assert [e.index for e in rows] == list(range(25)) and [e.done for e in rows] == list(range(1, 26))
    assert all(e.cached == e.done for e in rows)
