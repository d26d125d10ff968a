"""The collector's pause is one switch for the process: concurrent ``acompare`` calls and threads share it, counted."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import lm_notebook.comparison.run as run_module
from lm_notebook import LMStudioClient, acompare, compare
from lm_notebook.comparison.collector import gc_paused


@pytest.fixture(params=[True, False], ids=["collector-on", "collector-off"])
def collector(request: pytest.FixtureRequest) -> Iterator[bool]:
    """The collector as the user left it before the calls (on, or turned off on purpose); put back after."""
    was = gc.isenabled()
    gc.enable() if request.param else gc.disable()
    try:
        yield bool(request.param)
    finally:
        gc.enable() if was else gc.disable()


class HeldSetUp:
    """``ComparisonRun.prepare`` of the run whose first prompt is ``held`` waits for the test, then fails as told
    (an exception while it is set up); every other run prepares as it does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, held: str) -> None:
        self.entered = asyncio.Event()
        self.go_on = asyncio.Event()
        self.failure: BaseException = RuntimeError("the listing broke mid-setup")
        prepare = run_module.ComparisonRun.prepare

        async def preparing(run: Any) -> None:
            if run.inputs.items[0].text != held:
                return await prepare(run)
            self.entered.set()
            await self.go_on.wait()
            raise self.failure

        monkeypatch.setattr(run_module.ComparisonRun, "prepare", preparing)


def test_a_cached_call_ending_does_not_turn_the_collector_on_under_a_call_still_setting_up(
    client: LMStudioClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector: bool
) -> None:
    path = tmp_path / "c.sqlite"
    first = compare(["a", "b"], ["alpha"], client=client, temperature=0, cache=path, progress=False)
    held = HeldSetUp(monkeypatch, "held")

    async def calls() -> tuple[pd.DataFrame, bool, bool]:
        cached = asyncio.create_task(
            acompare(["a", "b"], ["alpha"], client=client, temperature=0, cache=path, progress=False))
        await asyncio.sleep(0)  # the cached call begins first (and pauses the collector)
        failing = asyncio.create_task(
            acompare(["held"], ["alpha"], client=client, temperature=0, cache=path, progress=False))
        await held.entered.wait()
        frame = await cached  # done, while the other is still being set up
        during = gc.isenabled()
        held.go_on.set()
        with pytest.raises(RuntimeError, match="mid-setup"):
            await failing
        return frame, during, gc.isenabled()

    frame, during, after = asyncio.run(calls())
    assert frame.cached.all() and list(frame.response) == list(first.response)
    assert during is False  # the call still setting up holds it off: the one that ended did not turn it on
    assert after is collector  # and once both are out, it is as the user had it
    assert gc.isenabled() is collector


@pytest.mark.parametrize("how", ["cancelled", "KeyboardInterrupt"])
def test_a_call_cancelled_or_interrupted_while_setting_up_gives_its_hold_back(
    client: LMStudioClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector: bool, how: str
) -> None:
    held = HeldSetUp(monkeypatch, "held")
    held.failure = KeyboardInterrupt()

    async def call() -> bool:
        task = asyncio.create_task(
            acompare(["held"], ["alpha"], client=client, temperature=0, cache=tmp_path / "c.sqlite", progress=False))
        await held.entered.wait()
        paused = not gc.isenabled()
        if how == "cancelled":
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            held.go_on.set()
            with pytest.raises(KeyboardInterrupt):
                await task
        return paused

    if how == "cancelled":
        assert asyncio.run(call())
    else:
        with pytest.raises(KeyboardInterrupt):  # asyncio.run passes Ctrl-C on, out of the loop
            asyncio.run(call())
    assert gc.isenabled() is collector


def test_holds_from_threads_are_counted_and_the_last_one_out_restores(collector: bool) -> None:
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with gc_paused():
            first_in.set()
            second_in.wait()
        first_out.set()

    def second() -> None:
        first_in.wait()
        with gc_paused():
            second_in.set()
            first_out.wait()
            seen["after the first left"] = gc.isenabled()
        seen["after both left"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"after the first left": False, "after both left": collector}


def test_a_hold_given_back_early_is_given_back_once(collector: bool) -> None:
    with gc_paused():
        with gc_paused() as inner:
            inner.release()
            inner.release()  # twice: still one hold, the outer one keeps the collector off
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled() is collector
