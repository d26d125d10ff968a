"""One answer's generation, with no widgets and no server: a stream whose parts the test hands over one by one.

The repaint throttle runs on a clock that stands still unless the test moves it, so what is painted live, and when, is
decided by the test, not by how busy the machine is.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest

from lm_notebook.chat.conversation import AnswerOutcome, Draft, DraftText
from lm_notebook.chat.generation import AnswerGeneration
from lm_notebook.client.clients import LMStudioClient
from lm_notebook.client.errors import LMStudioStreamError
from lm_notebook.client.stream import StreamPart
from lm_notebook.client.types import ChatResult

END = object()


class HandFedStream:
    """What the generation uses of a ChatStream; the test feeds parts (or an error, or END) through ``feed``."""

    def __init__(self) -> None:
        self.items: queue.Queue[object] = queue.Queue()
        self.closed = threading.Event()
        self.sent: list[StreamPart] = []
        self.done = False

    def feed(self, *items: object) -> None:
        for item in items:
            self.items.put(StreamPart("content", item) if isinstance(item, str) else item)

    def iter_parts(self) -> Iterator[StreamPart]:
        while True:
            item = self.items.get()
            if item is END:
                self.done = True
                return
            if self.closed.is_set():  # a closed connection: the iteration ends
                return
            if isinstance(item, Exception):
                raise item
            assert isinstance(item, StreamPart)
            self.sent.append(item)
            yield item

    def close(self) -> None:
        self.closed.set()
        self.items.put(None)  # wake the reader, as a closed socket does

    def _text(self) -> str:
        return "".join(p.text for p in self.sent if p.kind == "content")

    def result(self) -> ChatResult:
        return ChatResult(self._text(), model="m", finish_reason="stop" if self.done else None,
                          stopped=not self.done)

    def partial(self) -> ChatResult:
        return ChatResult(self._text(), model="m", stopped=True)


class FakeClient:
    """``stream_chat`` hands out the stream, after ``opened`` is set (clear it to keep the reader waiting)."""

    def __init__(self) -> None:
        self.stream = HandFedStream()
        self.opened = threading.Event()
        self.opened.set()
        self.calls: list[tuple[list[dict[str, Any]], str | None, dict[str, Any]]] = []

    def stream_chat(self, messages: list[dict[str, Any]], *, model: str | None, **params: Any) -> HandFedStream:
        self.calls.append((messages, model, params))
        self.opened.wait()
        return self.stream


class FrozenClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """The two callbacks, recording in one list (so their order shows) and signalling each call."""

    def __init__(self) -> None:
        self.events: list[tuple[str, DraftText | AnswerOutcome, str]] = []
        self.updated = threading.Semaphore(0)
        self.settled = threading.Event()

    def on_update(self, text: DraftText) -> None:
        self.events.append(("update", text, threading.current_thread().name))
        self.updated.release()

    def on_settled(self, outcome: AnswerOutcome) -> None:
        self.events.append(("settled", outcome, threading.current_thread().name))
        self.settled.set()

    def next_update(self) -> None:
        assert self.updated.acquire(timeout=10), self.events

    @property
    def updates(self) -> list[DraftText]:
        return [cast(DraftText, e[1]) for e in self.events if e[0] == "update"]

    @property
    def outcome(self) -> AnswerOutcome:
        (outcome,) = [cast(AnswerOutcome, e[1]) for e in self.events if e[0] == "settled"]
        return outcome


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


def generation(client: FakeClient, recorder: Recorder, clock: FrozenClock, **kw: Any) -> AnswerGeneration:
    return AnswerGeneration(
        cast(LMStudioClient, client), [{"role": "user", "content": "Hi"}], {"temperature": 0.5}, model="m",
        on_update=recorder.on_update, on_settled=recorder.on_settled, interval=0.5, clock=clock, **kw,
    )


def test_the_first_part_is_shown_at_once_later_ones_once_an_interval_and_the_end_last(client: FakeClient) -> None:
    recorder, clock, draft = Recorder(), FrozenClock(), Draft()
    answer = generation(client, recorder, clock, draft=draft)
    answer.start()
    client.stream.feed("Hel")
    recorder.next_update()  # the clock has not moved: the first part does not wait for an interval
    assert recorder.updates == [DraftText("Hel", "", 1)]
    client.stream.feed("lo", ",")
    clock.now = 0.5  # one interval on: what came meanwhile is shown in one repaint
    recorder.next_update()
    client.stream.feed(" world", END)  # the clock stands still: the end shows these, not a live repaint
    assert recorder.settled.wait(10) and answer.finished.wait(10)
    assert recorder.updates[0] == DraftText("Hel", "", 1) and len(recorder.updates) == 2
    assert recorder.updates[1].content in ("Hello", "Hello,")
    outcome = recorder.outcome
    assert outcome.content == "Hello, world" and outcome.error is None and outcome.parts == 4
    assert outcome.result is not None and not outcome.result.stopped
    assert recorder.events[-1][0] == "settled"  # nothing is painted after the end
    assert {name for kind, _, name in recorder.events if kind == "update"} == {"lm_notebook-chat-repaint"}
    assert recorder.events[-1][2] == "lm_notebook-chat-reader"
    assert draft.text().content == "Hello, world" and answer.repaints == 2  # the reply reads this same draft
    assert client.calls == [([{"role": "user", "content": "Hi"}], "m", {"temperature": 0.5})]


def test_stop_mid_answer_closes_the_stream_and_settles_before_it_returns(client: FakeClient) -> None:
    recorder, clock = Recorder(), FrozenClock()
    answer = generation(client, recorder, clock)
    answer.start()
    client.stream.feed("partial")
    recorder.next_update()
    answer.stop()
    assert answer.finished.is_set() and client.stream.closed.is_set()
    outcome = recorder.outcome
    assert outcome.content == "partial" and outcome.result is not None and outcome.result.stopped
    answer.stop()  # a second stop changes nothing
    assert len([e for e in recorder.events if e[0] == "settled"]) == 1


def test_stop_while_the_stream_is_still_opening_settles_at_once_with_nothing(client: FakeClient) -> None:
    recorder, clock = Recorder(), FrozenClock()
    client.opened.clear()  # e.g. LM Studio is loading the model
    answer = generation(client, recorder, clock)
    answer.start()
    answer.stop(grace=0.01)
    assert answer.finished.is_set()
    outcome = recorder.outcome
    assert outcome.content == "" and outcome.result is not None and outcome.result.stopped
    client.opened.set()  # the reader wakes later: it closes its stream and settles nothing more
    answer.reader.join(10)
    assert not answer.reader.is_alive() and client.stream.closed.is_set()
    assert [e[0] for e in recorder.events] == ["settled"]


def test_an_error_mid_stream_keeps_the_partial_answer(client: FakeClient) -> None:
    recorder, clock = Recorder(), FrozenClock()
    answer = generation(client, recorder, clock)
    answer.start()
    broken = LMStudioStreamError("the stream broke", partial=ChatResult("Hal", model="m"), dropped=True)
    client.stream.feed("Hal", broken)
    assert recorder.settled.wait(10)
    outcome = recorder.outcome
    assert outcome.error is broken and outcome.result is None and outcome.content == "Hal"


def test_a_bug_in_the_stream_is_an_error_not_a_dead_thread(client: FakeClient) -> None:
    recorder, clock = Recorder(), FrozenClock()
    answer = generation(client, recorder, clock)
    answer.start()
    client.stream.feed(RuntimeError("a bug"))
    assert recorder.settled.wait(10)
    assert isinstance(recorder.outcome.error, RuntimeError) and recorder.updates == []


def test_the_wait_for_the_first_part_is_reported_until_it_comes_and_never_after(client: FakeClient) -> None:
    recorder, clock, wait_clock = Recorder(), FrozenClock(), FrozenClock()
    reported = threading.Condition()

    def on_waiting(seconds: float) -> None:
        with reported:
            recorder.events.append(("waiting", DraftText(), f"{seconds:g}"))
            reported.notify_all()

    def wait_for_report(seconds: str) -> None:
        with reported:
            assert reported.wait_for(lambda: ("waiting", DraftText(), seconds) in recorder.events, 10), recorder.events

    client.opened.clear()  # e.g. LM Studio is loading the model: no stream yet
    answer = generation(client, recorder, clock, on_waiting=on_waiting, wait_interval=0.01, wait_clock=wait_clock)
    answer.start()
    wait_for_report("0")  # at once
    wait_clock.now = 3.0
    wait_for_report("3")  # then as the time goes by
    client.opened.set()
    client.stream.feed("Hi", END)
    assert recorder.settled.wait(10)
    kinds = [kind for kind, _, _ in recorder.events]
    first_other = next(i for i, kind in enumerate(kinds) if kind != "waiting")
    assert "waiting" not in kinds[first_other:]  # no report once the first part has come


def test_stop_ends_the_wait_reports_before_it_settles(client: FakeClient) -> None:
    recorder, clock = Recorder(), FrozenClock()
    waits: list[float] = []
    client.opened.clear()
    answer = generation(client, recorder, clock, on_waiting=waits.append, wait_interval=0.01)
    answer.start()
    answer.stop(grace=0.01)
    count = len(waits)
    assert recorder.settled.is_set()
    client.opened.set()
    answer.reader.join(10)
    assert len(waits) == count  # none after stop() returned
