"""compare() on the fake LM Studio server over loopback: scheduling, shapes, failures, retries, cache, interrupt."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import lm_notebook
import lm_notebook.comparison.api as compare_module
import lm_notebook.comparison.run as run_module
from lm_notebook import AsyncLMStudioClient, LMStudioClient, set_client
from lm_notebook.comparison.api import COLUMNS, ProgressEvent, ResponseCache, RetryPolicy, acompare, compare
from lm_notebook.testing import MockLMStudioServer, ModelSpec

FAST = {"reply_tokens": 8}


def spec(model_id: str, **kw: Any) -> ModelSpec:
    return ModelSpec(model_id, **{**FAST, **kw})


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compare_module, "DEFAULT_RETRY", RetryPolicy(attempts=3, base_delay=0.05, max_delay=2.0))


@pytest.fixture
def server() -> Iterator[MockLMStudioServer]:
    models = [
        spec("alpha", arch="llama", quantization="Q4_K_M", context_length=4096, parallel=2),
        spec("beta", arch="qwen2", quantization="Q8_0", format="mlx", context_length=2048),
        spec("gamma", load_time=0.05),
        spec("thinker", reasoning="reasoning_content", reasoning_tokens=5),
    ]
    with MockLMStudioServer(models=models) as srv:
        yield srv


@pytest.fixture
def client(server: MockLMStudioServer) -> Iterator[LMStudioClient]:
    with LMStudioClient(server.url, timeout=10) as c:
        yield c


def chat_requests(server: MockLMStudioServer) -> list[Any]:
    return [r for r in server.requests if r.path == "/v1/chat/completions"]


# --- shape --------------------------------------------------------------------------------------------------------


def test_tidy_rows_with_answers_timings_metadata_and_parameters(
    server: MockLMStudioServer, client: LMStudioClient
) -> None:
    df = compare(["Say hi", "Name a colour"], ["alpha", "beta"], client=client, temperature=0, max_tokens=20,
                 seed=7, top_p=0.5, progress=False)
    assert list(df.columns) == [*COLUMNS, "top_p"]
    assert len(df) == 4
    assert list(zip(df.prompt_name, df.model, strict=True)) == [(0, "alpha"), (0, "beta"), (1, "alpha"), (1, "beta")]
    assert (df.status == "ok").all() and df.error.map(lambda e: e is None).all()
    assert (df.response.str.len() > 0).all() and (df.finish_reason == "stop").all()
    assert (df.completion_tokens == 8).all() and (df.prompt_tokens > 0).all()
    assert (df.ttft_s > 0).all() and (df.latency_s >= df.ttft_s).all() and (df.tokens_per_s > 0).all()
    assert df.set_index("model").loc["beta", "quantization"].tolist() == ["Q8_0", "Q8_0"]
    assert df.set_index("model").loc["beta", "format"].tolist() == ["mlx", "mlx"]
    assert df.set_index("model").loc["alpha", "arch"].tolist() == ["llama", "llama"]
    assert df.set_index("model").loc["alpha", "context_length"].tolist() == [4096, 4096]  # loaded, not max
    assert (df.temperature == 0).all() and (df.max_tokens == 20).all() and (df.seed == 7).all()
    assert (df.top_p == 0.5).all()
    assert (df.served_model == df.model).all()
    assert str(df.started_at.dtype).startswith("datetime64") and df.started_at.notna().all()
    assert not df.cached.any() and (df.attempts == 1).all()
    body = chat_requests(server)[0].json
    assert body["temperature"] == 0 and body["max_tokens"] == 20 and body["seed"] == 7 and body["top_p"] == 0.5
    assert body["stream"] is True


def test_dict_prompts_system_prompt_and_repeats(server: MockLMStudioServer, client: LMStudioClient) -> None:
    df = compare({"greet": "Hello", "math": "2+2?"}, "gamma", client=client, system="Be brief.", repeats=2,
                 progress=False)
    assert list(zip(df.prompt_name, df.repeat, strict=True)) == [("greet", 0), ("greet", 1), ("math", 0), ("math", 1)]
    assert (df.system == "Be brief.").all()
    for request in chat_requests(server):
        assert request.json["messages"][0] == {"role": "system", "content": "Be brief."}
        assert "temperature" not in request.json  # None is not sent: the server's default applies


def test_dataframe_with_template_keeps_the_rows_columns(server: MockLMStudioServer, client: LMStudioClient) -> None:
    inputs = pd.DataFrame({"text": ["cats purr", "dogs bark"], "label": ["c", "d"], "model": ["x", "y"]},
                          index=["r1", "r2"])
    df = compare(inputs, ["alpha"], client=client, template="Summarize: {text}", progress=False)
    assert list(df.columns[:5]) == ["prompt_name", "prompt", "text", "label", "model_input"]
    assert df.prompt.tolist() == ["Summarize: cats purr", "Summarize: dogs bark"]
    assert df.label.tolist() == ["c", "d"] and df.model_input.tolist() == ["x", "y"]
    assert df.prompt_name.tolist() == ["r1", "r2"] and (df.model == "alpha").all()
    same = compare((inputs, "Summarize: {text}"), ["alpha"], client=client, progress=False)
    assert same.prompt.tolist() == df.prompt.tolist()
    with_prompt = compare(pd.DataFrame({"prompt": ["Hi"], "k": [1]}), ["alpha"], client=client, progress=False)
    assert with_prompt.prompt.tolist() == ["Hi"] and with_prompt.k.tolist() == [1]


def test_bad_inputs_fail_before_anything_is_sent(server: MockLMStudioServer, client: LMStudioClient) -> None:
    with pytest.raises(ValueError, match="not a column"):
        compare(pd.DataFrame({"text": ["a"]}), ["alpha"], client=client, template="{nope}", progress=False)
    with pytest.raises(ValueError, match="template"):
        compare(pd.DataFrame({"text": ["a"]}), ["alpha"], client=client, progress=False)
    with pytest.raises(ValueError, match="No prompts"):
        compare([], ["alpha"], client=client, progress=False)
    with pytest.raises(ValueError, match="concurrency"):
        compare(["a"], ["alpha"], client=client, concurrency=0, progress=False)
    with pytest.raises(lm_notebook.LMStudioRequestError, match="max_tokens"):
        compare(["a"], ["alpha"], client=client, max_tokens=0, progress=False)
    with pytest.raises(lm_notebook.NoCurrentModelError):
        compare(["a"], client=client, progress=False)
    assert chat_requests(server) == []


def test_reasoning_is_kept_apart(server: MockLMStudioServer, client: LMStudioClient) -> None:
    df = compare(["Why is the sky blue?"], ["thinker"], client=client, progress=False)
    assert df.reasoning[0] and df.response[0] and df.reasoning[0] not in df.response[0]


def test_default_client_and_model_are_the_kernels(server: MockLMStudioServer) -> None:
    shared = LMStudioClient(server.url, model="beta")
    previous = set_client(shared)
    try:
        df = lm_notebook.compare(["Hi"], progress=False)
        assert df.model.tolist() == ["beta"] and df.status.tolist() == ["ok"]
    finally:
        set_client(previous)
        shared.close()


# --- scheduling -----------------------------------------------------------------------------------------------


def test_each_model_loads_once_and_slots_are_filled(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.update_model("alpha", tokens_per_second=200, reply_tokens=10)
    server.update_model("beta", tokens_per_second=200, reply_tokens=10)
    prompts = [f"question {i}" for i in range(8)]
    df = compare(prompts, ["alpha", "beta", "alpha"], client=client, progress=False)
    assert (df.status == "ok").all() and len(df) == 16
    counters = server.counters
    assert counters.model("alpha").loads == 1 and counters.model("beta").loads == 1
    # "auto": alpha's loaded instance reports 2 parallel slots, beta the default 4
    assert counters.model("alpha").max_active == 2
    assert counters.model("beta").max_active == 4
    assert counters.model("alpha").max_queued == 0 and counters.model("beta").max_queued == 0
    # exactly one cold row per model, and it is the first one sent
    cold = df[df.cold]
    assert sorted(cold.model) == ["alpha", "beta"]
    for model, rows in df.groupby("model"):
        assert rows.sort_values("started_at").cold.iloc[0], model


def test_explicit_concurrency(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.update_model("beta", tokens_per_second=300, reply_tokens=6)
    compare([f"q{i}" for i in range(4)], ["beta"], client=client, concurrency=1, progress=False)
    assert server.counters.model("beta").max_active == 1


def test_loaded_models_go_first_and_are_not_cold(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.load_model("beta")
    server.reset_counters()
    df = compare(["a", "b"], ["alpha", "beta"], client=client, progress=False)
    first = df.sort_values("started_at").model.iloc[0]
    assert first == "beta"
    assert not df[df.model == "beta"].cold.any()
    assert server.counters.model("beta").loads == 0 and server.counters.model("alpha").loads == 1


def test_cold_request_carries_the_load_time_apart(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.update_model("gamma", load_time=0.4, ttft=0.01, tokens_per_second=400)
    df = compare([f"q{i}" for i in range(5)], ["gamma"], client=client, progress=False)
    cold, warm = df[df.cold], df[~df.cold]
    assert len(cold) == 1 and len(warm) == 4
    assert cold.ttft_s.iloc[0] >= 0.4  # its first token came after the load (the server waited load_time first)
    # load_s is that wait: the cold TTFT less the model's usual one; the warm rows have none
    assert cold.load_s.iloc[0] == pytest.approx(cold.ttft_s.iloc[0] - warm.ttft_s.median())
    assert warm.load_s.isna().all()
    # the warm requests were sent once the first token showed the model was up: none of them waited for the load
    first, *rest = chat_requests(server)
    assert len(rest) == 4 and all(r.time - first.time >= 0.4 for r in rest)


# --- failures --------------------------------------------------------------------------------------------------


def test_unknown_model_marks_only_its_rows_and_sends_nothing(
    server: MockLMStudioServer, client: LMStudioClient
) -> None:
    df = compare(["a", "b"], ["alpha", "alpah"], client=client, progress=False)
    bad = df[df.model == "alpah"]
    assert (bad.status == "error").all() and (bad.error_type == "ModelNotFoundError").all()
    assert 'Did you mean "alpha"' in bad.error.iloc[0]
    assert (df[df.model == "alpha"].status == "ok").all()
    assert {r.json["model"] for r in chat_requests(server)} == {"alpha"}


def test_a_model_that_fails_to_load_costs_one_request(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.set_fault("load_failure", model="beta")
    df = compare([f"q{i}" for i in range(6)], ["beta", "gamma"], client=client, progress=False)
    beta = df[df.model == "beta"]
    assert (beta.status == "error").all() and (beta.error_type == "ModelLoadError").all()
    assert (df[df.model == "gamma"].status == "ok").all()
    assert sum(r.json["model"] == "beta" for r in chat_requests(server)) == 1


def test_a_model_answering_500_is_given_up_after_a_few(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.set_fault("500", model="alpha")
    df = compare([f"q{i}" for i in range(10)], ["alpha", "gamma"], client=client, progress=False)
    alpha = df[df.model == "alpha"]
    assert (alpha.status == "error").all() and (alpha.error_type == "ServerError").all()
    assert alpha.error.str.startswith("not sent: alpha failed 3 requests in a row").sum() == 7
    assert (df[df.model == "gamma"].status == "ok").all()
    # the model never answered, so it was probed one request at a time: three sent, seven spared
    assert sum(r.json["model"] == "alpha" for r in chat_requests(server)) == 3


def test_context_exceeded_marks_only_that_prompt(server: MockLMStudioServer, client: LMStudioClient) -> None:
    long_prompt = "word " * 2500  # over beta's 2048-token context, within alpha's 4096
    df = compare({"short": "Hi", "long": long_prompt}, ["beta", "alpha"], client=client, progress=False)
    by = df.set_index(["prompt_name", "model"])
    assert by.loc[("long", "beta"), "error_type"] == "ContextLengthExceededError"
    assert by.loc[("long", "alpha"), "status"] == "ok"
    assert by.loc[("short", "beta"), "status"] == "ok"


def test_a_stalled_answer_times_out_keeping_its_partial_text(
    server: MockLMStudioServer, client: LMStudioClient
) -> None:
    server.update_model("gamma", reply_tokens=12)
    # the stall outlasts the test: only the read timeout ends that answer (waiting it out would give an "ok" row)
    server.set_fault("stall", model="gamma", seconds=600, after_chunks=3, times=1)
    df = compare(["a", "b"], ["gamma"], client=client, timeout=1.0, progress=False)
    stalled = df[df.status == "error"]
    assert len(stalled) == 1 and stalled.error_type.iloc[0] == "LMStudioTimeoutError"
    assert stalled.response.iloc[0]  # the three tokens that came before the stall
    assert (df.status == "ok").sum() == 1


@dataclass(frozen=True)
class RecordingRetry(RetryPolicy):
    """The test's retry policy: records each wait it decides (attempt, the server's Retry-After, seconds)."""

    waits: list[tuple[int, float | None, float]] = field(default_factory=list)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        seconds = super().delay(attempt, retry_after)
        self.waits.append((attempt, retry_after, seconds))
        return seconds


def test_429_is_retried_after_retry_after(
    server: MockLMStudioServer, client: LMStudioClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = RecordingRetry(attempts=3, base_delay=0.05, max_delay=2.0)
    monkeypatch.setattr(compare_module, "DEFAULT_RETRY", policy)
    server.set_fault("429", model="gamma", times=1, retry_after=0.3)
    df = compare(["a"], ["gamma"], client=client, progress=False)
    assert df.status.tolist() == ["ok"] and df.attempts.tolist() == [2]
    assert policy.waits == [(1, 0.3, 0.3)]  # the server's Retry-After, not the (shorter) backoff
    refused, answered = chat_requests(server)
    assert answered.time - refused.time >= 0.3  # and it was waited out before asking again


def test_dropped_connection_is_retried(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.update_model("gamma", reply_tokens=10)
    server.set_fault("drop", model="gamma", times=1, after_chunks=4)
    df = compare(["a", "b"], ["gamma"], client=client, concurrency=1, progress=False)
    assert (df.status == "ok").all()
    assert sorted(df.attempts.tolist()) == [1, 2]
    assert (df.completion_tokens == 10).all()


def test_an_error_the_server_sent_is_not_retried(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.set_fault("malformed_chunk", model="gamma", after_chunks=2)
    df = compare(["a"], ["gamma"], client=client, progress=False)
    assert df.error_type.tolist() == ["LMStudioStreamError"] and df.attempts.tolist() == [1]
    assert df.response.tolist()[0]  # the partial text is kept


def test_retries_are_bounded(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.set_fault("429", model="gamma", retry_after=0.01)
    df = compare(["a"], ["gamma"], client=client, progress=False)
    assert df.error_type.tolist() == ["RateLimitError"] and df.attempts.tolist() == [3]


def test_server_gone_is_an_error_not_a_frame() -> None:
    with MockLMStudioServer() as srv:
        url = srv.url
    with LMStudioClient(url, timeout=2) as c, pytest.raises(lm_notebook.LMStudioConnectionError):
        compare(["a"], ["x"], client=c, progress=False)


# --- cache -----------------------------------------------------------------------------------------------------


def test_cache_skips_done_requests_and_says_so(
    server: MockLMStudioServer, client: LMStudioClient, tmp_path: Path
) -> None:
    path = tmp_path / "answers.sqlite"
    first = compare(["a", "b"], ["alpha", "beta"], client=client, temperature=0, cache=path, progress=False)
    assert not first.cached.any()
    sent = len(chat_requests(server))
    again = compare(["a", "b"], ["alpha", "beta"], client=client, temperature=0, cache=path, progress=False)
    assert again.cached.all() and len(chat_requests(server)) == sent
    pd.testing.assert_series_equal(first.response, again.response)
    pd.testing.assert_series_equal(first.ttft_s, again.ttft_s)  # the timings measured when it ran
    # a changed parameter is a different request
    changed = compare(["a"], ["alpha"], client=client, temperature=0, max_tokens=5, cache=path, progress=False)
    assert not changed.cached.any()


def test_sampled_requests_are_not_cached_unless_asked(
    server: MockLMStudioServer, client: LMStudioClient, tmp_path: Path
) -> None:
    path = tmp_path / "c.sqlite"
    with pytest.warns(UserWarning, match="not deterministic"):
        compare(["a"], ["gamma"], client=client, temperature=0.7, cache=path, progress=False)
    with ResponseCache(path) as cache:
        assert len(cache) == 0
    anyway = ResponseCache(path, deterministic_only=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare(["a"], ["gamma"], client=client, temperature=0.7, cache=anyway, progress=False)
        df = compare(["a"], ["gamma"], client=client, temperature=0.7, cache=anyway, progress=False)
    assert df.cached.all()
    anyway.close()


# --- progress and interrupt ------------------------------------------------------------------------------------


def test_progress_callback_sees_every_row(server: MockLMStudioServer, client: LMStudioClient) -> None:
    events: list[ProgressEvent] = []
    compare(["a", "b"], ["alpha", "nope"], client=client, progress=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    rows = [e for e in events if e.kind == "row"]
    assert len(rows) == 4 and rows[-1].done == 4 and rows[-1].total == 4 and rows[-1].errors == 2
    assert [e.model for e in events if e.kind == "model"] == ["alpha"]


def test_progress_bar_in_a_plain_process(
    server: MockLMStudioServer, client: LMStudioClient, capsys: pytest.CaptureFixture[str]
) -> None:
    server.update_model("gamma", tokens_per_second=40, reply_tokens=30)  # ~0.8 s: long enough to show the bar
    df = compare(["a", "b"], ["gamma"], client=client, progress=True)
    assert (df.status == "ok").all()
    assert "gamma 2/2" in capsys.readouterr().err


# An answer that outlasts any test (5 minutes at 20 tokens/s): a row still streaming it can only end by the interrupt.
ENDLESS = " ".join(["word"] * 6000)


def test_interrupt_from_the_progress_callback_keeps_finished_and_partial_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no safety net for a request that ignores its cancellation: were one to wait for its answer, this test would hang
    monkeypatch.setattr(run_module, "STOP_WAIT_SECONDS", None)
    models = [ModelSpec("slow", tokens_per_second=20, reply_tokens=len(ENDLESS.split()))]
    with MockLMStudioServer(models=models) as srv, LMStudioClient(srv.url) as c:
        # the first request (alone: it carries the load) streams the endless answer; of the three sent once its first
        # token is in, two are short and finish while it streams; every later answer is endless too
        srv.script("slow", ENDLESS, "Short one.", "Quick.")
        seen: list[int] = []

        def stop_after_two(event: ProgressEvent) -> None:
            if event.kind == "row":
                seen.append(event.index or 0)
                if len(seen) == 2:
                    raise KeyboardInterrupt

        path = tmp_path / "c.sqlite"
        df = compare([f"q{i}" for i in range(9)], ["slow"], client=c, temperature=0, cache=path,
                     progress=stop_after_two)
        assert len(df) == 9
        done = df[df.status == "ok"]
        assert sorted(done.index) == sorted(seen)
        assert sorted(done.response) == ["Quick.", "Short one."]
        cancelled = df[df.status == "cancelled"]
        assert len(cancelled) == 7 and cancelled.error.notna().all()
        # the first row was mid-answer: the text that had arrived is kept, marked as such
        first = df.loc[0]
        assert first.status == "cancelled" and first.response and first.response != ENDLESS
        assert ENDLESS.startswith(first.response) and "mid-answer" in first.error
        partial = cancelled[cancelled.response != ""]
        assert partial.error.str.contains("mid-answer").all()
        # the re-run skips what finished
        sent = len(chat_requests(srv))
        srv.update_model("slow", tokens_per_second=0, reply_tokens=3)
        again = compare([f"q{i}" for i in range(9)], ["slow"], client=c, temperature=0, cache=path, progress=False)
        assert again.cached.sum() == 2 and (again.status == "ok").all()
        assert len(chat_requests(srv)) == sent + 7


def test_cancelling_acompare_returns_the_rows_so_far() -> None:
    async def main(url: str) -> pd.DataFrame:
        async with AsyncLMStudioClient(url) as c:
            a_row_settled = asyncio.Event()

            def progress(event: ProgressEvent) -> None:
                if event.kind == "row":
                    a_row_settled.set()

            task = asyncio.create_task(acompare([f"q{i}" for i in range(6)], ["slow"], client=c, progress=progress))
            await a_row_settled.wait()
            task.cancel()
            df = await task
            assert not c._http.is_closed  # a client passed in is left open
            return df

    with MockLMStudioServer(models=[ModelSpec("slow", tokens_per_second=20, reply_tokens=6000)]) as srv:
        srv.script("slow", ENDLESS, "Done quickly.")  # the first (cold) request streams; a later one finishes at once
        df = asyncio.run(main(srv.url))
    assert len(df) == 6
    assert df[df.status == "ok"].response.tolist() == ["Done quickly."]
    assert (df.status == "cancelled").sum() == 5
    assert df.status[0] == "cancelled" and ENDLESS.startswith(df.response[0]) and df.response[0]


def test_compare_inside_a_running_event_loop() -> None:
    # in a child process: nest_asyncio patches asyncio for the whole process, as it does in a Jupyter kernel
    code = textwrap.dedent(
        """
        import asyncio
        from lm_notebook import LMStudioClient
        from lm_notebook.comparison.api import compare
        from lm_notebook.testing import MockLMStudioServer, ModelSpec

        async def cell():  # what a notebook cell is: code running inside the kernel's loop
            return compare(["a", "b"], ["m"], client=client, progress=False)

        with MockLMStudioServer(models=[ModelSpec("m", reply_tokens=5)]) as srv, LMStudioClient(srv.url) as client:
            df = asyncio.run(cell())
            again = asyncio.run(cell())  # twice: the kernel's loop stays usable
        print(df.status.tolist(), again.status.tolist())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "['ok', 'ok'] ['ok', 'ok']", out.stderr


SIGINT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from lm_notebook import LMStudioClient
    from lm_notebook.comparison.api import compare
    from lm_notebook.testing import MockLMStudioServer, ModelSpec

    models = [ModelSpec("slow", tokens_per_second=20, reply_tokens=6000)]  # 5 minutes each
    with MockLMStudioServer(models=models) as srv, LMStudioClient(srv.url) as c:
        # the first request (cold, alone) streams; of those sent once its first token is in, one finishes at once
        srv.script("slow", " ".join(["word"] * 6000), "Done quickly.")
        def progress(event):
            if event.kind == "row":
                print("ROW", flush=True)
        run = lambda: compare([f"q{i}" for i in range(6)], ["slow"], client=c, progress=progress)
        if sys.argv[1] == "loop":
            # like a Jupyter kernel: compare() called inside a running loop that has no SIGINT handler of its
            # own, so Ctrl-C would raise KeyboardInterrupt wherever the main thread happens to be
            import asyncio
            async def cell():
                return run()
            kernel_loop = asyncio.new_event_loop()
            df = kernel_loop.run_until_complete(cell())
            kernel_loop.run_until_complete(asyncio.sleep(0))  # a kernel's loop runs on after the cell
        else:
            df = run()
        print(json.dumps({"status": df.status.tolist(), "response": df.response.tolist()}), flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
@pytest.mark.parametrize("where", ["script", "loop"])
def test_ctrl_c_returns_the_frame(where: str) -> None:
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
    result = pd.read_json(__import__("io").StringIO(out.strip().splitlines()[-1]), typ="series")
    assert result["status"].count("ok") == 1 and result["status"].count("cancelled") == 5
    assert "Done quickly." in result["response"]
    assert result["status"][0] == "cancelled" and result["response"][0], "the answer in flight kept its partial text"
    assert "Traceback" not in err and "never retrieved" not in err and "destroyed but it is pending" not in err


COMPARE_MODULES = (
    "comparison", "comparison.api", "comparison.run", "comparison.rows", "comparison.inputs", "comparison.progress",
    "comparison.retry", "comparison.views", "magics.compare", "comparison.cache", "comparison.schedule",
)


@pytest.mark.parametrize(
    "prelude",
    [
        "",
        "import lm_notebook\nlm_notebook.compare\n",
        "import lm_notebook.comparison.api\n",
        "from lm_notebook.comparison.api import summary\n",
        "import lm_notebook.comparison.views, lm_notebook.magics.compare\n",
        "import lm_notebook.comparison.run\n",
        "import lm_notebook.magics.lm\n",
    ],
)
def test_the_public_names_are_the_functions_in_every_import_order(prelude: str) -> None:
    # no submodule is called ``compare``, so importing one can never put a module where the function should be
    code = textwrap.dedent(
        f"""
        import importlib, inspect, types
        from lm_notebook import compare, acompare, comparison_table, summary, plot_summary
        import lm_notebook
        import lm_notebook.comparison.api as module
        import lm_notebook.comparison.views as views
        for name in {COMPARE_MODULES!r}:
            importlib.import_module("lm_notebook." + name)
        assert isinstance(compare, types.FunctionType) and compare is module.compare
        assert lm_notebook.compare is module.compare
        assert inspect.iscoroutinefunction(acompare) and acompare is module.acompare
        assert summary is views.summary and comparison_table is views.comparison_table
        assert plot_summary is views.plot_summary and module.summary is views.summary
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
