"""``benchmark``: how fast is a model on this server with 1, 2, 4, 8 requests at once?

>>> from lm_notebook import benchmark, benchmark_summary, plot_benchmark
>>> df = benchmark("qwen2.5-7b-instruct", concurrency=(1, 2, 4, 8))   # doctest: +SKIP
>>> benchmark_summary(df)   # per level: aggregate and per-stream tokens/s, TTFT and latency p50/p90, errors
>>> plot_benchmark(df)      # throughput and TTFT against concurrency                       # doctest: +SKIP

Each level is one run of compare's executor (:class:`~lm_notebook.comparison.run.ComparisonRun`) with the same prompt
``requests`` times and exactly ``concurrency`` requests in flight, without retries (a failure is a measurement). The
model is warmed first (``warmup`` requests, one at a time): when it was not loaded, the first of them carries the load,
which is reported apart (``load_s``) and kept out of every statistic. Stopped (Ctrl-C, the Stop button), it raises
:class:`BenchmarkInterrupted` with every row so far, as ``compare`` does. The tidy frame's columns are
:data:`BENCH_COLUMNS`; the views are in :mod:`lm_notebook.comparison.benchmark_views`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from lm_notebook.client.clients import AsyncLMStudioClient, LMStudioClient
from lm_notebook.comparison.benchmark_progress import BenchmarkProgress
from lm_notebook.comparison.inputs import PromptInputs, chat_messages
from lm_notebook.comparison.interrupt import run_to_end
from lm_notebook.comparison.preflight import model_infos, refusal
from lm_notebook.comparison.retry import RetryPolicy
from lm_notebook.comparison.run import ComparisonRun
from lm_notebook.comparison.schedule import PromptItem, plan_requests
from lm_notebook.comparison.user_warnings import warn_at_user_line

if TYPE_CHECKING:
    from lm_notebook.client.types import ModelInfo

# One row per request, in this order.
BENCH_COLUMNS = (
    "model", "endpoint", "phase", "concurrency", "request", "status", "ttft_s", "latency_s", "tokens_per_s",
    "output_tokens", "prompt_tokens", "completion_tokens", "cold", "load_s", "start_s", "end_s", "finish_reason",
    "error", "error_type", "slots", "max_tokens", "started_at",
)
DEFAULT_PROMPT = (
    "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle. Describe the sea, the "
    "weather and the keeper's thoughts at length."
)
# a rough rule for English text: about four characters per token (the rows record the server's own count)
CHARS_PER_TOKEN = 4
_FILLER = (
    "The committee reviewed the quarterly figures, compared them with the forecasts from the spring, and noted that "
    "shipping costs, staffing and the weather had each played a part in the results. "
)
# no retries: a failed request is part of the measurement, and a retry would hide a latency
NO_RETRY = RetryPolicy(attempts=1)

Endpoint = str | LMStudioClient | AsyncLMStudioClient

_last: pd.DataFrame | None = None


def last_benchmark() -> pd.DataFrame | None:
    """The DataFrame of the latest :func:`benchmark` in this process (also after a Stop; None before the first)."""
    return _last


class BenchmarkInterrupted(KeyboardInterrupt):
    """``benchmark()`` was stopped (Ctrl-C, the notebook's Stop): ``frame`` holds every request so far (finished rows
    complete, the ones cut short ``status == "cancelled"``), also :func:`last_benchmark`. A ``KeyboardInterrupt``, so
    the cell ends."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.total = len(frame)
        self.finished = int((frame["status"] != "cancelled").sum()) if len(frame) else 0
        self.message = (
            f"benchmark() stopped: {self.finished} of {self.total} requests so far finished (levels not reached are "
            "not in the frame); every row is in lm_notebook.last_benchmark() (and this exception's .frame); "
            "benchmark_summary() of it shows the levels that ran."
        )
        super().__init__(self.message)

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self.message}"]


def benchmark_prompt(prompt: str | None, prompt_tokens: int | None) -> str:
    """The prompt sent: ``prompt`` (default :data:`DEFAULT_PROMPT`), after filler text making it about
    ``prompt_tokens`` tokens long when that is given."""
    text = DEFAULT_PROMPT if prompt is None else prompt
    if not isinstance(text, str) or not text.strip():
        raise ValueError("prompt must be a non-empty string (or None for the built-in one).")
    if prompt_tokens is None:
        return text
    if isinstance(prompt_tokens, bool) or not isinstance(prompt_tokens, int) or prompt_tokens < 1:
        raise ValueError(f"prompt_tokens must be a positive number of tokens, not {prompt_tokens!r}.")
    room = prompt_tokens * CHARS_PER_TOKEN - len(text) - 2
    if room <= 0:
        return text
    filler = (_FILLER * (room // len(_FILLER) + 1))[:room]
    return filler.rsplit(" ", 1)[0] + "\n\n" + text


def concurrency_levels(concurrency: int | Sequence[int]) -> list[int]:
    levels = [concurrency] if isinstance(concurrency, int) else list(concurrency)
    if not levels:
        raise ValueError("concurrency needs at least one level, e.g. concurrency=(1, 2, 4, 8).")
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, int) or level < 1:
            raise ValueError(f"Each concurrency level must be a positive integer, not {level!r}.")
    if len(set(levels)) != len(levels):
        raise ValueError(f"concurrency lists a level twice: {levels}.")
    return levels


def requests_per_level(requests: int | None, level: int) -> int:
    """``requests`` when given, else two waves of the level (at least 4 requests)."""
    if requests is None:
        return max(4, 2 * level)
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise ValueError(f"requests must be a positive number per level, not {requests!r}.")
    return requests


@dataclass
class _Bench:
    """One benchmark's state: the client, the levels run so far, the run in progress."""

    model: str
    client: AsyncLMStudioClient
    owns_client: bool
    text: str
    max_tokens: int
    frames: list[pd.DataFrame] = field(default_factory=list)
    current: ComparisonRun | None = None
    current_meta: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False
    slots: int | None = None
    loaded_at_start: bool | None = None
    answered: bool = False  # a request of this benchmark was answered: the model is up (whatever the server says)

    def level_run(self, n: int, concurrency: int, progress: BenchmarkProgress) -> ComparisonRun:
        item = PromptItem(0, self.text)
        run = ComparisonRun(
            specs=plan_requests([item], [self.model], repeats=n), inputs=PromptInputs([item], []),
            messages=[chat_messages(self.text, None)], params={"max_tokens": self.max_tokens}, extra_params={},
            system=None, client=self.client, owns_client=False, cache=None, owns_cache=False, concurrency=concurrency,
            retry=NO_RETRY, progress=progress.callback,
        )
        if self.answered:
            # a server that does not report state (llama.cpp, vLLM) looks cold at every level: the model answered
            # already, so each level starts all its requests at once
            run.warm_models.add(self.model)
        return run

    async def run_level(self, phase: str, concurrency: int, n: int, progress: BenchmarkProgress) -> bool:
        """Run one level; False when it was stopped."""
        run = self.level_run(n, concurrency, progress)
        self.current, self.current_meta = run, {"phase": phase, "concurrency": concurrency}
        progress.level(phase, concurrency, n, self.slots)
        run.loop, run.main_task = asyncio.get_running_loop(), asyncio.current_task()
        try:
            await run.prepare()
        except BaseException:
            self.current = None
            raise
        frame = await run.execute()
        self.answered = self.answered or bool((frame["status"] == "ok").any())
        self.keep(run, frame)
        if phase == "warmup":
            info = {**run.infos, **run._seen_loaded}.get(self.model)
            self.slots = info.parallel if info is not None else None
        return run.stopped_by is None

    def keep(self, run: ComparisonRun, frame: pd.DataFrame) -> None:
        self.frames.append(level_rows(frame, model=self.model, endpoint=self.client.base_url,
                                      slots=self.slots, max_tokens=self.max_tokens, **self.current_meta))
        self.current = None

    def frame(self) -> pd.DataFrame:
        rows = [f for f in self.frames if len(f)]
        df = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(BENCH_COLUMNS))
        return with_load(df)

    def recover(self) -> pd.DataFrame:
        """After a KeyboardInterrupt escaped the loop: the level in progress, stopped, then every row."""
        run = self.current
        if run is not None:
            self.keep(run, run.recover())
        self.stopped = True
        return self.frame()


def level_rows(frame: pd.DataFrame, *, model: str, endpoint: str, phase: str, concurrency: int, slots: int | None,
               max_tokens: int) -> pd.DataFrame:
    """compare's rows of one level → the benchmark's: start and end in seconds from the level's first request."""
    started = frame["started_at"]
    origin = started.min()
    start_s = (started - origin).dt.total_seconds() if pd.notna(origin) else pd.Series(float("nan"), frame.index)
    ttft, latency, tps = frame["ttft_s"], frame["latency_s"], frame["tokens_per_s"]
    estimate = (tps * (latency - ttft)).round() + 1  # the client's rate is of the tokens after the first
    output = frame["completion_tokens"].astype("Float64").fillna(estimate.astype("Float64"))
    out = pd.DataFrame({
        "model": model, "endpoint": endpoint, "phase": phase, "concurrency": concurrency,
        "request": frame["repeat"].astype(int), "status": frame["status"], "ttft_s": ttft, "latency_s": latency,
        "tokens_per_s": tps, "output_tokens": output.where(frame["status"] == "ok").round().astype("Int64"),
        "prompt_tokens": frame["prompt_tokens"], "completion_tokens": frame["completion_tokens"],
        "cold": frame["cold"].astype(bool), "load_s": float("nan"), "start_s": start_s, "end_s": start_s + latency,
        "finish_reason": frame["finish_reason"], "error": frame["error"], "error_type": frame["error_type"],
        "slots": pd.array([slots] * len(frame), dtype="Int64"), "max_tokens": max_tokens,
        "started_at": started,
    })
    ordered: pd.DataFrame = out[list(BENCH_COLUMNS)]
    return ordered


def with_load(df: pd.DataFrame) -> pd.DataFrame:
    """A cold row's ``load_s``: its TTFT less the usual TTFT of warm one-at-a-time requests (the model's load)."""
    if not len(df):
        return df
    warm = df[(df["status"] == "ok") & ~df["cold"].astype(bool)]
    lone = warm[warm["concurrency"] == warm["concurrency"].min()]["ttft_s"].dropna() if len(warm) else warm["ttft_s"]
    usual = float(lone.median()) if len(lone) else 0.0
    cold = df["cold"].astype(bool) & df["ttft_s"].notna()
    df.loc[cold, "load_s"] = (df.loc[cold, "ttft_s"] - usual).clip(lower=0.0)
    return df


def _client(endpoint: Endpoint | None) -> tuple[AsyncLMStudioClient, bool]:
    if endpoint is None:
        from lm_notebook.client.session import get_client

        endpoint = get_client()
    if isinstance(endpoint, str):
        return AsyncLMStudioClient(endpoint), True
    if isinstance(endpoint, (LMStudioClient, AsyncLMStudioClient)):
        return AsyncLMStudioClient.from_client(endpoint), True
    raise TypeError(f"endpoint must be a base URL or a client, not {type(endpoint).__name__}.")


def _queue_note(model: str, base_url: str, slots: int, levels: list[int]) -> str:
    beyond = ", ".join(str(c) for c in levels if c > slots)
    return (
        f"benchmark(): {model} is loaded with {slots} parallel slot{'s' if slots != 1 else ''} on {base_url}, so at "
        f"concurrency {beyond} the requests beyond {slots} only queue (their TTFT grows; throughput does not). Load "
        f"it with more parallel predictions to measure beyond {slots}."
    )


async def _run(bench: _Bench, levels: list[int], requests: int | None, warmup: int, progress: BenchmarkProgress,
               box: list[_Bench]) -> pd.DataFrame:
    box.append(bench)
    try:
        infos = await model_infos(bench.client)
        refused = refusal(bench.model, infos, bench.client.base_url)
        if refused is not None:
            raise refused
        info: ModelInfo | None = infos.get(bench.model)
        bench.loaded_at_start = info.loaded if info is not None and info.state is not None else None
        bench.slots = info.parallel if info is not None else None
        if warmup and not await bench.run_level("warmup", 1, warmup, progress):
            bench.stopped = True
            return bench.frame()
        if bench.slots is not None and any(c > bench.slots for c in levels):
            warn_at_user_line(_queue_note(bench.model, bench.client.base_url, bench.slots, levels))
        for level in levels:
            if not await bench.run_level("measure", level, requests_per_level(requests, level), progress):
                bench.stopped = True
                break
        return bench.frame()
    finally:
        progress.close()
        if bench.owns_client:
            try:
                await bench.client.aclose()
            except Exception:
                pass


def _setup(model: str, concurrency: int | Sequence[int], requests: int | None, prompt: str | None,
           prompt_tokens: int | None, max_tokens: int, endpoint: Endpoint | None, warmup: int,
           progress: bool) -> tuple[_Bench, list[int], BenchmarkProgress]:
    if not isinstance(model, str) or not model:
        raise TypeError("benchmark() needs a model id, e.g. benchmark('qwen2.5-7b-instruct').")
    levels = concurrency_levels(concurrency)
    for level in levels:
        requests_per_level(requests, level)  # validated before anything is sent
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive number of tokens, not {max_tokens!r}.")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be 0 or more requests, not {warmup!r}.")
    text = benchmark_prompt(prompt, prompt_tokens)
    client, owns = _client(endpoint)
    total = warmup + sum(requests_per_level(requests, c) for c in levels)
    return _Bench(model, client, owns, text, max_tokens), levels, BenchmarkProgress(model, total, enabled=progress)


def benchmark(
    model: str,
    *,
    concurrency: int | Sequence[int] = (1, 2, 4, 8),
    requests: int | None = None,
    prompt: str | None = None,
    prompt_tokens: int | None = None,
    max_tokens: int = 128,
    endpoint: Endpoint | None = None,
    warmup: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Measure ``model`` at each ``concurrency`` level: one row per request (see :data:`BENCH_COLUMNS`).

    - ``requests``: requests per level (default two waves: ``max(4, 2 × level)``), each the same ``prompt``
      (default a request for a long story), answered in up to ``max_tokens`` tokens; ``prompt_tokens`` pads the
      prompt with filler text to about that many tokens (to measure prompt processing too).
    - ``endpoint``: a base URL or a client (default the kernel's shared client).
    - ``warmup``: requests sent first, one at a time, not measured (``phase == "warmup"``); when the model was not
      loaded, the first carries the load: its ``load_s`` is the load, kept out of the statistics.

    When a level is beyond the parallel slots the server reports for the loaded model, a warning says those requests
    only queue. :func:`benchmark_summary` gives the numbers per level, :func:`plot_benchmark` the curves.
    """
    global _last
    bench, levels, bar = _setup(model, concurrency, requests, prompt, prompt_tokens, max_tokens, endpoint, warmup,
                                progress)
    box: list[_Bench] = []
    try:
        frame = run_to_end(_run(bench, levels, requests, warmup, bar, box))
    except KeyboardInterrupt:
        if not box:
            raise
        frame = box[0].recover()
    _last = frame
    if bench.stopped:
        raise BenchmarkInterrupted(frame)
    return frame


__all__ = [
    "BENCH_COLUMNS",
    "BenchmarkInterrupted",
    "benchmark",
    "last_benchmark",
]
