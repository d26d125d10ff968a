"""Stop means stop: an interrupted compare()/acompare() raises ComparisonInterrupted with every row so far.

Over loopback HTTP against the fake server; Ctrl-C is a real SIGINT (to this process, from a progress callback, or to
a child process running a script or a kernel-like loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import lm_notebook.comparison.run as run_module
from lm_notebook import AsyncLMStudioClient, LMStudioClient
from lm_notebook.client import AsyncChatStream
from lm_notebook.comparison import ComparisonInterrupted, last_comparison
from lm_notebook.comparison.api import ProgressEvent, acompare, compare
from lm_notebook.testing import MockLMStudioServer, ModelSpec

# An answer that outlasts any test (5 minutes at 20 tokens/s): a row still streaming it can only end by the interrupt.
ENDLESS = " ".join(["word"] * 6000)
SLOW = [ModelSpec("slow", tokens_per_second=20, reply_tokens=6000)]


@pytest.fixture(autouse=True)
def no_stop_safety_net(monkeypatch: pytest.MonkeyPatch) -> None:
    # were a request to ignore its cancellation and wait for its (endless) answer, the test would hang, not pass
    monkeypatch.setattr(run_module, "STOP_WAIT_SECONDS", None)


def chat_requests(server: MockLMStudioServer) -> int:
    return sum(r.is_chat for r in server.requests)


def stop_after(rows: int, seen: list[int] | None = None, *, how: str = "raise") -> object:
    """A progress callback that interrupts once ``rows`` rows have settled: by raising KeyboardInterrupt, or by a real
    SIGINT to this process (``how="sigint"``: what Ctrl-C and Jupyter's Stop button send)."""
    settled: list[int] = [] if seen is None else seen

    def progress(event: ProgressEvent) -> None:
        if event.kind == "row":
            settled.append(event.index or 0)
            if len(settled) == rows:
                if how == "sigint":
                    signal.raise_signal(signal.SIGINT)
                else:
                    raise KeyboardInterrupt

    return progress


def test_an_interrupt_raises_with_finished_and_partial_rows_and_a_rerun_resumes(tmp_path: Path) -> None:
    models = [ModelSpec("slow", tokens_per_second=20, reply_tokens=len(ENDLESS.split()))]
    with MockLMStudioServer(models=models) as srv, LMStudioClient(srv.url) as c:
        # the first request (alone: it carries the load) streams the endless answer; of the three sent once its first
        # token is in, two are short and finish while it streams; every later answer is endless too
        srv.script("slow", ENDLESS, "Short one.", "Quick.")
        seen: list[int] = []
        path = tmp_path / "c.sqlite"
        with pytest.raises(ComparisonInterrupted) as stopped:
            compare([f"q{i}" for i in range(9)], ["slow"], client=c, temperature=0, cache=path,
                    progress=stop_after(2, seen))
        err = stopped.value
        assert isinstance(err, KeyboardInterrupt)  # a loop of comparisons, or "Run all", stops here
        df = err.frame
        assert last_comparison() is df  # kept for the user
        assert len(df) == 9 and (err.finished, err.total, err.resumable) == (2, 9, True)
        done = df[df.status == "ok"]
        assert sorted(done.index) == sorted(seen)
        assert sorted(done.response) == ["Quick.", "Short one."]
        cancelled = df[df.status == "cancelled"]
        assert len(cancelled) == 7 and cancelled.error.notna().all()
        # the first row was mid-answer: the text that had arrived is kept, marked as such
        first = df.loc[0]
        assert first.status == "cancelled" and first.response and first.response != ENDLESS
        assert ENDLESS.startswith(first.response) and "mid-answer" in first.error
        assert cancelled[cancelled.response != ""].error.str.contains("mid-answer").all()
        # one line: how many finished, where the rows are, and that a re-run with the cache resumes
        assert "2 of 9 rows finished" in err.message and "lm_notebook.last_comparison()" in err.message
        assert ".frame" in err.message and "same cache= resumes" in err.message and str(err) == err.message
        assert err._render_traceback_() == [f"\x1b[0;31mComparisonInterrupted\x1b[0m: {err.message}"]
        # the re-run skips what finished
        sent = chat_requests(srv)
        srv.update_model("slow", tokens_per_second=0, reply_tokens=3)
        again = compare([f"q{i}" for i in range(9)], ["slow"], client=c, temperature=0, cache=path, progress=False)
        assert again.cached.sum() == 2 and (again.status == "ok").all()
        assert chat_requests(srv) == sent + 7
        assert last_comparison() is again


@pytest.mark.parametrize(("cache", "temperature"), [(False, 0), (True, 0.7)])
def test_the_note_offers_a_resume_only_when_the_answers_are_cached(
    tmp_path: Path, cache: bool, temperature: float
) -> None:
    with MockLMStudioServer(models=SLOW) as srv, LMStudioClient(srv.url) as c:
        srv.script("slow", ENDLESS, "Done quickly.")
        not_cached = pytest.warns(UserWarning, match="not deterministic") if cache else contextlib.nullcontext()
        with pytest.raises(ComparisonInterrupted) as stopped, not_cached:
            compare([f"q{i}" for i in range(4)], ["slow"], client=c, temperature=temperature,
                    cache=tmp_path / "c.sqlite" if cache else None, progress=stop_after(1))
    err = stopped.value
    assert err.finished == 1 and not err.resumable
    assert "1 of 4 rows finished" in err.message and "cache=" not in err.message


def test_a_sigint_in_the_loop_of_acompare_raises_comparison_interrupted() -> None:
    # asyncio.run turns Ctrl-C into a cancellation of the task running acompare: that one is a Stop
    async def main(url: str) -> None:
        async with AsyncLMStudioClient(url) as c:
            await acompare([f"q{i}" for i in range(6)], ["slow"], client=c, progress=stop_after(1, how="sigint"))

    with MockLMStudioServer(models=SLOW) as srv:
        srv.script("slow", ENDLESS, "Done quickly.")
        with pytest.raises(ComparisonInterrupted) as stopped:
            asyncio.run(main(srv.url))
        srv.wait_until(lambda: srv.counters.abandoned >= 1)  # the answer in flight was left, not read to its end
    df = stopped.value.frame
    assert df[df.status == "ok"].response.tolist() == ["Done quickly."]
    assert (df.status == "cancelled").sum() == 5 and df.response[0] and ENDLESS.startswith(df.response[0])
    assert "acompare() stopped: 1 of 6 rows finished" in stopped.value.message
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers in force are put back


def test_a_keyboard_interrupt_in_acompare_raises_comparison_interrupted() -> None:
    async def main(url: str) -> None:
        async with AsyncLMStudioClient(url) as c:
            await acompare([f"q{i}" for i in range(6)], ["slow"], client=c, progress=stop_after(1))

    with MockLMStudioServer(models=SLOW) as srv:
        srv.script("slow", ENDLESS, "Done quickly.")
        with pytest.raises(ComparisonInterrupted) as stopped:
            asyncio.run(main(srv.url))
    assert (stopped.value.finished, stopped.value.total) == (1, 6)


def test_cancelling_acompare_by_code_is_a_cancellation_and_keeps_the_rows() -> None:
    # a timeout, a TaskGroup, task.cancel(): asyncio's CancelledError goes on (a KeyboardInterrupt would escape the
    # loop), and the rows so far are in last_comparison()
    async def main(url: str) -> None:
        async with AsyncLMStudioClient(url) as c:
            a_row_settled = asyncio.Event()

            def progress(event: ProgressEvent) -> None:
                if event.kind == "row":
                    a_row_settled.set()

            task = asyncio.create_task(acompare([f"q{i}" for i in range(6)], ["slow"], client=c, progress=progress))
            await a_row_settled.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not c._http.is_closed  # a client passed in is left open

    with MockLMStudioServer(models=SLOW) as srv:
        srv.script("slow", ENDLESS, "Done quickly.")  # the first (cold) request streams; a later one finishes at once
        asyncio.run(main(srv.url))
    df = last_comparison()
    assert df is not None and len(df) == 6
    assert df[df.status == "ok"].response.tolist() == ["Done quickly."]
    assert (df.status == "cancelled").sum() == 5
    assert df.status[0] == "cancelled" and ENDLESS.startswith(df.response[0]) and df.response[0]


def test_a_timeout_around_acompare_is_a_timeout() -> None:
    async def main(url: str) -> None:
        async with AsyncLMStudioClient(url) as c:
            settled = asyncio.Event()
            run = asyncio.ensure_future(acompare(["a", "b"], ["slow"], client=c,
                                                 progress=lambda e: settled.set() if e.kind == "row" else None))
            await settled.wait()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(run, timeout=0)

    with MockLMStudioServer(models=SLOW) as srv:
        srv.script("slow", ENDLESS, "Done quickly.")
        asyncio.run(main(srv.url))


RUNNING_LOOP_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, signal
    from lm_notebook import LMStudioClient
    from lm_notebook.comparison import ComparisonInterrupted, last_comparison
    from lm_notebook.comparison.api import compare
    from lm_notebook.testing import MockLMStudioServer, ModelSpec

    returned = []
    def progress(event):
        if event.kind == "row":
            signal.raise_signal(signal.SIGINT)  # Ctrl-C, landing in the middle of the run's own code
            returned.append(True)  # reached: the SIGINT cancelled the run instead of raising here

    async def cell():  # what a notebook cell is: code running inside the kernel's loop (IPython catches inside)
        try:
            compare(["a", "b", "c"], ["slow"], client=client, progress=progress)
        except ComparisonInterrupted as err:
            return err

    models = [ModelSpec("slow", tokens_per_second=20, reply_tokens=6000)]
    with MockLMStudioServer(models=models) as srv, LMStudioClient(srv.url) as client:
        srv.script("slow", " ".join(["word"] * 6000), "Done quickly.")
        err = asyncio.run(cell())
        srv.script("slow", " ".join(["word"] * 6000), "Done quickly.")
        after = asyncio.run(cell())  # the kernel's loop stays usable, and Ctrl-C is Ctrl-C again
        print(json.dumps({"returned": returned, "status": err.frame.status.tolist(),
                          "last": last_comparison() is after.frame,
                          "handler": signal.getsignal(signal.SIGINT) is signal.default_int_handler}))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_ctrl_c_inside_a_running_loop_cancels_the_run_where_it_lands() -> None:
    # Left to Python's default handler, Ctrl-C raises wherever the main thread is, and inside httpx's connection
    # set-up it can be lost (the run went on to its end, about one Ctrl-C in eight): here it must cancel the run
    out = subprocess.run([sys.executable, "-c", RUNNING_LOOP_SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["returned"] == [True, True]
    assert result["status"].count("ok") == 1 and result["status"].count("cancelled") == 2
    assert result["last"] and result["handler"]


SIGINT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from lm_notebook import LMStudioClient
    from lm_notebook.comparison import ComparisonInterrupted, last_comparison
    from lm_notebook.comparison.api import compare
    from lm_notebook.testing import MockLMStudioServer, ModelSpec

    models = [ModelSpec("slow", tokens_per_second=20, reply_tokens=6000)]  # 5 minutes each
    with MockLMStudioServer(models=models) as srv, LMStudioClient(srv.url) as c:
        # the first request (cold, alone) streams; of those sent once its first token is in, one finishes at once
        srv.script("slow", " ".join(["word"] * 6000), "Done quickly.")
        def progress(event):
            if event.kind == "row":
                print("ROW", flush=True)
        started = []
        def three_comparisons():  # a loop of three: Stop during the first must end the loop
            try:
                for i in range(3):
                    started.append(i)
                    compare([f"q{i}" for i in range(6)], ["slow"], client=c, progress=progress)
            except ComparisonInterrupted as err:  # where IPython catches it, inside the cell
                return err
        if sys.argv[1] == "loop":
            # like a Jupyter kernel: compare() called inside a running loop that has no SIGINT handler of its
            # own, so Ctrl-C would raise KeyboardInterrupt wherever the main thread happens to be
            import asyncio
            async def cell():
                return three_comparisons()
            kernel_loop = asyncio.new_event_loop()
            err = kernel_loop.run_until_complete(cell())
            kernel_loop.run_until_complete(asyncio.sleep(0))  # a kernel's loop runs on after the cell
        else:
            err = three_comparisons()
        df = err.frame
        print(json.dumps({"status": df.status.tolist(), "response": df.response.tolist(), "started": started,
                          "last": last_comparison() is df, "note": err.message}), flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
@pytest.mark.parametrize("where", ["script", "loop"])
def test_ctrl_c_stops_a_loop_of_comparisons_with_the_rows_so_far(where: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", SIGINT_SCRIPT, where], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        # the short answer finished, so the first request is mid-answer (its first token came before it was sent)
        assert child.stdout.readline().strip() == "ROW"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=20)
    finally:
        child.kill()
    assert child.returncode == 0, err
    result = pd.read_json(io.StringIO(out.strip().splitlines()[-1]), typ="series")
    assert result["started"] == [0], "the loop went on after Stop"
    assert result["status"].count("ok") == 1 and result["status"].count("cancelled") == 5
    assert "Done quickly." in result["response"]
    assert result["status"][0] == "cancelled" and result["response"][0], "the answer in flight kept its partial text"
    assert result["last"] and "1 of 6 rows finished" in result["note"]
    assert "Traceback" not in err and "never retrieved" not in err and "destroyed but it is pending" not in err


@pytest.fixture
def no_asyncgen_hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every ``asyncio.run`` once nest_asyncio has patched asyncio in the process (a notebook's compare() does): its
    ``run_until_complete`` installs no async-generator hooks, so an async generator left open is finalised by the
    garbage collector, outside any task (where httpcore's closing cannot run)."""
    before = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=None, finalizer=None)  # type: ignore[arg-type]
    monkeypatch.setattr(sys, "set_asyncgen_hooks", lambda *args, **kwargs: None)
    try:
        yield
    finally:
        monkeypatch.undo()
        sys.set_asyncgen_hooks(*before)


@pytest.mark.usefixtures("no_asyncgen_hooks")
def test_interrupted_runs_leave_nothing_to_finalise_later(capfd: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # every stream in flight is closed on its own task while the loop runs: nothing is left for the garbage
    # collector ("Exception ignored … cancel scope in a different task" / "no running event loop" on stderr)
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # to stderr, as outside pytest
    with MockLMStudioServer(models=SLOW) as srv, LMStudioClient(srv.url) as c:
        for _ in range(3):
            srv.script("slow", ENDLESS, "Short one.", "Quick.", ENDLESS, ENDLESS)
            with pytest.raises(ComparisonInterrupted) as stopped:
                compare([f"q{i}" for i in range(6)], ["slow"], client=c, temperature=0, concurrency=4,
                        progress=stop_after(2))
            assert stopped.value.finished == 2
            gc.collect()
    gc.collect()
    err = capfd.readouterr().err
    assert "Exception ignored" not in err and "cancel scope" not in err and "running event loop" not in err, err


def test_a_stop_while_a_finished_answer_closes_keeps_the_row_finished(monkeypatch: pytest.MonkeyPatch) -> None:
    # forced, not by luck: the Stop lands exactly while the stream of the finished answer is being closed
    original = AsyncChatStream.aclose
    closing: list[str] = []

    async def main(url: str) -> None:
        async with AsyncLMStudioClient(url) as c:
            run = asyncio.current_task()
            assert run is not None

            async def stop_while_closing(stream: AsyncChatStream) -> None:
                closing.append(stream.partial().content)
                try:
                    if len(closing) == 1:
                        run.cancel()  # the Stop (acompare's task is the run's)
                        await asyncio.Event().wait()  # only the Stop's cancellation of this row ends the wait
                finally:
                    await original(stream)

            monkeypatch.setattr(AsyncChatStream, "aclose", stop_while_closing)
            await acompare(["q"], ["m"], client=c, temperature=0, progress=False)

    with MockLMStudioServer(models=[ModelSpec("m", tokens_per_second=0)]) as srv:
        srv.script("m", "Done quickly.")
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(main(srv.url))
    assert closing == ["Done quickly."]  # the Stop came while the finished answer's stream was closing
    df = last_comparison()
    assert df is not None and df.status.tolist() == ["ok"] and df.response.tolist() == ["Done quickly."]


def test_a_run_in_a_script_never_reprs_its_result() -> None:
    # asyncio.run's SIGINT handler holds the run's task; putting the handler back reprs it, result and all — for
    # compare, a whole DataFrame's repr (a third of a cached 1,000-row re-run)
    from lm_notebook.comparison.interrupt import run_to_end

    shown: list[str] = []

    class Result:
        def __repr__(self) -> str:
            shown.append("repr")
            return "Result()"

    async def run() -> Result:
        return Result()

    assert isinstance(run_to_end(run()), Result)
    assert shown == []
