"""benchmark() on the fake LM Studio server over loopback: rows per level, exactly N in flight (proved on a
ManualClock), the warm-up and its load apart, the slots note, errors as data, Stop, the summary and the chart."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import warnings

import pandas as pd
import pytest

import lm_notebook
from lm_notebook import LMStudioClient
from lm_notebook.comparison.benchmark import BENCH_COLUMNS, BenchmarkInterrupted, benchmark, benchmark_prompt
from lm_notebook.comparison.benchmark_views import SUMMARY_COLUMNS, benchmark_summary, plot_benchmark
from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec


def test_rows_per_level_with_warmup_and_the_public_names() -> None:
    with MockLMStudioServer(models=[ModelSpec("m", reply_tokens=12, loaded=True, parallel=8)]) as server:
        df = lm_notebook.benchmark("m", concurrency=(1, 3), requests=5, endpoint=server.url, progress=False,
                                   max_tokens=40)
        bodies = [r.chat_body for r in server.requests if r.is_chat]
    assert list(df.columns) == list(BENCH_COLUMNS)
    assert len(df) == 1 + 5 + 5 and len(bodies) == 11
    assert df.phase.tolist() == ["warmup"] + ["measure"] * 10
    assert df.concurrency.tolist() == [1] * 6 + [3] * 5
    assert df[df.phase == "measure"].request.tolist() == [0, 1, 2, 3, 4] * 2
    assert (df.status == "ok").all() and (df.output_tokens == 12).all() and (df.completion_tokens == 12).all()
    assert (df.endpoint == server.url).all() and (df.model == "m").all() and (df.max_tokens == 40).all()
    assert (df.slots.iloc[1:] == 8).all() and not df.cold.any() and df.load_s.isna().all()
    assert all(b["max_tokens"] == 40 and b["stream"] is True for b in bodies)
    assert len({b["messages"][0]["content"] for b in bodies}) == 1  # the same prompt every time
    assert (df.end_s >= df.start_s).all()
    assert lm_notebook.last_benchmark() is df
    summary = lm_notebook.benchmark_summary(df)
    assert list(summary.columns) == list(SUMMARY_COLUMNS) and summary.index.tolist() == [1, 3]
    assert summary.requests.tolist() == [5, 5] and summary.errors.tolist() == [0, 0]
    assert (summary.output_tokens_per_s > 0).all() and not summary.queued.any()


def test_each_level_keeps_exactly_that_many_requests_in_flight() -> None:
    clock = ManualClock()
    spec = ModelSpec("m", reply_tokens=4, loaded=True, parallel=8, ttft=1.0)
    with MockLMStudioServer(models=[spec], clock=clock) as server:
        failures: list[BaseException] = []

        def drive() -> None:
            try:
                for in_flight in (1, 3, 3):  # the warm-up, then two waves of three
                    clock.wait_for_pending(in_flight)
                    assert len(clock.pending()) == in_flight  # no more than the level
                    clock.advance(1.0)
            except BaseException as exc:
                failures.append(exc)

        driver = threading.Thread(target=drive)
        driver.start()
        df = benchmark("m", concurrency=3, requests=6, endpoint=server.url, progress=False)
        driver.join()
        assert not failures, failures
        assert server.counters.max_active == 3
    assert (df.status == "ok").all() and len(df) == 7


def test_the_load_is_reported_apart_and_kept_out_of_the_statistics() -> None:
    spec = ModelSpec("m", reply_tokens=6, load_time=0.2, parallel=4)
    with MockLMStudioServer(models=[spec]) as server:
        df = benchmark("m", concurrency=(1, 2), requests=2, endpoint=server.url, progress=False)
        assert server.counters.loads == 1
    warm = df[df.phase == "warmup"]
    assert warm.cold.tolist() == [True] and warm.load_s.iloc[0] > 0
    assert not df[df.phase == "measure"].cold.any() and df[df.phase == "measure"].load_s.isna().all()
    summary = benchmark_summary(df)
    assert summary.attrs["load_s"] == warm.load_s.iloc[0] and summary.attrs["model"] == "m"
    assert (summary.ttft_p90_s < warm.ttft_s.iloc[0]).all()  # the load is in no level's TTFT


def test_without_warmup_the_first_request_is_cold_and_left_out() -> None:
    with MockLMStudioServer(models=[ModelSpec("m", reply_tokens=6, load_time=0.1)]) as server:
        df = benchmark("m", concurrency=1, requests=3, endpoint=server.url, warmup=0, progress=False)
    assert df.cold.tolist() == [True, False, False] and df.phase.eq("measure").all()
    assert benchmark_summary(df).ttft_p90_s.iloc[0] < df.ttft_s.iloc[0]


def test_concurrency_beyond_the_slots_is_said_to_only_queue() -> None:
    spec = ModelSpec("m", reply_tokens=4, loaded=True, parallel=2)
    with MockLMStudioServer(models=[spec]) as server, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = benchmark("m", concurrency=(1, 2, 4), requests=4, endpoint=server.url, progress=False)
    notes = [str(w.message) for w in caught]
    assert len(notes) == 1 and "2 parallel slots" in notes[0] and "concurrency 4" in notes[0]
    assert "only queue" in notes[0] and caught[0].filename == __file__  # pointed at the caller's line
    assert benchmark_summary(df).queued.tolist() == [False, False, True]


def test_a_failed_request_is_an_error_row_not_retried() -> None:
    with MockLMStudioServer(models=[ModelSpec("m", reply_tokens=4, loaded=True)]) as server:
        server.set_fault("500", model="m", times=1)
        df = benchmark("m", concurrency=1, requests=3, endpoint=server.url, warmup=0, progress=False)
        assert sum(r.is_chat for r in server.requests) == 3
    assert df.status.tolist() == ["error", "ok", "ok"] and df.error_type.iloc[0] == "ServerError"
    summary = benchmark_summary(df)
    assert summary.errors.tolist() == [1] and summary.ok.tolist() == [2]


def test_an_unknown_model_and_bad_arguments_fail_before_sending() -> None:
    with MockLMStudioServer(models=[ModelSpec("m")]) as server:
        with pytest.raises(lm_notebook.ModelNotFoundError) as missing:
            benchmark("nope", endpoint=server.url, progress=False)
        assert missing.value.model == "nope" and missing.value.available == ["m"]
        for bad in ({"concurrency": ()}, {"concurrency": (1, 0)}, {"concurrency": (2, 2)}, {"requests": 0},
                    {"max_tokens": 0}, {"warmup": -1}, {"prompt": " "}, {"prompt_tokens": 0}):
            with pytest.raises(ValueError):
                benchmark("m", endpoint=server.url, progress=False, **bad)  # type: ignore[arg-type]
        assert not [r for r in server.requests if r.is_chat]


def test_prompt_tokens_pads_the_prompt() -> None:
    assert benchmark_prompt("Go.", None) == "Go."
    padded = benchmark_prompt("Go.", 500)
    assert padded.endswith("\n\nGo.") and 1800 < len(padded) <= 2000


def test_a_client_endpoint_and_the_shared_client() -> None:
    spec = ModelSpec("m", reply_tokens=4, loaded=True)
    with MockLMStudioServer(models=[spec]) as server, LMStudioClient(server.url) as client:
        df = benchmark("m", concurrency=1, requests=1, endpoint=client, warmup=0, progress=False)
        previous = lm_notebook.set_client(client, close_previous=False)
        try:
            shared = benchmark("m", concurrency=1, requests=1, warmup=0, progress=False)
        finally:
            lm_notebook.set_client(previous, close_previous=False)
    assert df.status.tolist() == ["ok"] and shared.endpoint.tolist() == [server.url]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_ctrl_c_raises_with_the_rows_so_far() -> None:
    clock = ManualClock()
    with MockLMStudioServer(models=[ModelSpec("m", reply_tokens=4, loaded=True, ttft=1.0)], clock=clock) as server:

        def drive() -> None:
            for _ in range(3):  # the warm-up and level 1's two requests, one at a time
                clock.wait_for_pending(1)
                clock.advance(1.0)
            clock.wait_for_pending(2)  # level 2: both requests waiting for their first token
            os.kill(os.getpid(), signal.SIGINT)

        driver = threading.Thread(target=drive)
        driver.start()
        with pytest.raises(BenchmarkInterrupted) as stopped:
            benchmark("m", concurrency=(1, 2, 4), requests=2, endpoint=server.url, progress=False)
        driver.join()
        server.wait_until(lambda: server.counters.abandoned == 2)
    frame = stopped.value.frame
    assert isinstance(stopped.value, KeyboardInterrupt) and lm_notebook.last_benchmark() is frame
    assert frame.concurrency.tolist() == [1, 1, 1, 2, 2]  # level 4 never ran
    assert frame.status.tolist() == ["ok"] * 3 + ["cancelled"] * 2
    assert "benchmark() stopped: 3 of 5" in stopped.value.message and stopped.value.finished == 3


def test_the_chart_has_throughput_and_ttft_against_concurrency() -> None:
    pytest.importorskip("matplotlib")
    spec = ModelSpec("m", reply_tokens=4, loaded=True, parallel=2)
    with MockLMStudioServer(models=[spec]) as server, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = benchmark("m", concurrency=(1, 2, 4), requests=2, endpoint=server.url, progress=False)
    fig = plot_benchmark(df)
    speed, ttft = fig.axes
    assert "tokens" in speed.get_title() and "first token" in ttft.get_title()
    assert [list(line.get_xdata()) for line in speed.lines[:2]] == [[1, 2, 4], [1, 2, 4]]
    with pytest.raises(ValueError, match="benchmark\\(\\) returns"):
        benchmark_summary(pd.DataFrame({"x": [1]}))


def test_a_server_that_does_not_report_state_is_warm_after_its_first_answer() -> None:
    # llama.cpp and vLLM list ids only: once the warm-up answered, each level starts all its requests at once (the
    # first no longer runs alone until its first token)
    clock = ManualClock()
    spec = ModelSpec("m", reply_tokens=4, loaded=True, parallel=8, ttft=1.0)
    with MockLMStudioServer(models=[spec], clock=clock) as server:
        for path in ("/api/v1/models", "/api/v0/models"):
            server.set_fault("500", path=path)
        failures: list[BaseException] = []

        def drive() -> None:
            try:
                for in_flight in (1, 2, 2, 3, 3):  # the warm-up, then each level's waves, all requests together
                    clock.wait_for_pending(in_flight)
                    assert len(clock.pending()) == in_flight
                    clock.advance(1.0)
            except BaseException as exc:
                failures.append(exc)
                with contextlib.suppress(TimeoutError):
                    while True:  # let the benchmark end
                        clock.wait_for_pending(1, timeout=2.0)
                        clock.advance(100.0)

        driver = threading.Thread(target=drive)
        driver.start()
        df = benchmark("m", concurrency=(2, 3), endpoint=server.url, progress=False)
        driver.join()
        assert not failures, failures
    assert (df.status == "ok").all() and len(df) == 1 + 4 + 6


def test_the_numbers_follow_the_fake_servers_pacing() -> None:
    # 50 tokens/s per stream, 2 slots: a stream runs near 50 tokens/s, c=2 about doubles the aggregate, c=4 only
    # queues (about the same aggregate as c=2, a longer TTFT). Ratios, generous: busy CPUs only slow the fake down.
    spec = ModelSpec("m", reply_tokens=20, loaded=True, parallel=2, tokens_per_second=50.0)
    with MockLMStudioServer(models=[spec]) as server, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the note that c=4 only queues
        df = benchmark("m", concurrency=(1, 2, 4), requests=4, endpoint=server.url, progress=False)
    stats = benchmark_summary(df)
    assert (df.status == "ok").all() and (df.output_tokens == 20).all()
    per_stream = stats.loc[1, "per_stream_tokens_per_s"]
    assert 50.0 / 3 < per_stream < 50.0 * 1.5, stats
    one, two, four = (stats.loc[c, "output_tokens_per_s"] for c in (1, 2, 4))
    assert one < 50.0 * 1.5 and two / one > 1.4, stats  # two slots: twice the work at once
    assert four / two < 1.4, stats  # beyond the slots the requests only queue
    assert stats.loc[4, "ttft_p90_s"] > stats.loc[2, "ttft_p90_s"] and stats.loc[4, "queued"], stats
