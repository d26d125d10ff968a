"""``compare(endpoints=...)``: one comparison over several servers, each scheduled as ``compare`` schedules one.

Each server gets an :class:`EndpointRun` — compare's own executor (:class:`~lm_notebook.comparison.run.ComparisonRun`)
for that server's client: model by model, up to its slots, a model that is not loaded probed with one request first.
All of them run at once on one event loop. Which model a server takes next comes from the shared
:class:`~lm_notebook.comparison.work_stealing.WorkPool`: a model several servers have is one deque of rows that each
of them takes from (work-stealing), so two servers finish about twice as fast. A server that stops answering (a refused
connection) stops at once: its rows in flight go back to the front of their model's deque for another server that has
the model, or fail with the error when none has; nothing finished is lost.

:class:`MultiEndpointRun` is the comparison as a whole (its rows, progress, Stop): the same interface as
``ComparisonRun``, so ``compare`` and ``acompare`` treat both alike. Rows gain ``endpoint``: the server that answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lm_notebook.client.errors import LMStudioConnectionError, LMStudioError
from lm_notebook.comparison.cache import ResponseCache, open_cache
from lm_notebook.comparison.check_models import CheckServer, CheckServers
from lm_notebook.comparison.endpoint_progress import EndpointProgressBar
from lm_notebook.comparison.endpoints import (
    Endpoint,
    Endpoints,
    ModelArg,
    ModelEntry,
    every_chat_model,
    model_entries,
    named_endpoints,
    not_anywhere,
    open_endpoints,
    servers_of,
)
from lm_notebook.comparison.inputs import PromptInputs, chat_messages
from lm_notebook.comparison.model_batch import BatchState
from lm_notebook.comparison.preflight import cache_hits
from lm_notebook.comparison.progress import ProgressCallback, ProgressReporter, SettledRow
from lm_notebook.comparison.retry import RetryPolicy, refused
from lm_notebook.comparison.rows import Outcome, build_frame
from lm_notebook.comparison.run import ComparisonRun
from lm_notebook.comparison.schedule import Concurrency, ModelBatch, RequestSpec, plan_requests, resolve_slots
from lm_notebook.comparison.work_stealing import Lane, WorkPool

# a row that failed this way on a server that went down is sent again elsewhere
_CONNECTION_ERRORS = frozenset({"LMStudioConnectionError", "LMStudioStreamError", "LMStudioTimeoutError"})


class EndpointRun(ComparisonRun):
    """compare's executor on one server, taking its work from the shared pool (``specs`` carry the ids sent)."""

    def __init__(self, *, endpoint: Endpoint, pool: WorkPool, labels: Sequence[str], **kw: Any) -> None:
        super().__init__(client=endpoint.client, owns_client=endpoint.owns_client, progress=False, **kw)
        self.name = endpoint.name
        self.pool = pool
        self.labels = labels  # row index → its lane
        self.infos = dict(endpoint.infos)
        self.server_down = endpoint.down

    async def serve(self) -> None:
        """Take lanes from the pool until no work can come to this server; then, if it went down, hand back."""
        while not self.interrupted and self.server_down is None:
            lane = self.pool.next_lane(self.name)
            if lane is None:
                if not self.pool.may_get_work(self.name):
                    break
                await self.pool.changed()
                continue
            info = self.infos.get(lane.model)
            loaded = info is not None and info.loaded
            slots, known = resolve_slots(self.concurrency, info.parallel if loaded and info else None)
            self.pool.join(lane, self.name, slots)
            try:
                await self._run_batch(ModelBatch(lane.model, (), slots, not loaded, known), lane.pending)
            finally:
                # what is loaded here now (a just-in-time load may have evicted another model), as last listed
                self.pool.loaded[self.name] = {i.id for i in self.infos.values() if i.loaded or i.state is None}
                self.pool.leave(lane, self.name)
        if self.server_down is not None and not self.interrupted:
            self._put(("down", {}))
            for label, specs in self.pool.endpoint_down(self.name).items():
                note = f"{self.name} ({self.client.base_url}) stopped answering and no other endpoint has {label}"
                self._fail_rest(specs, self.server_down, note)

    def _worth_retrying(self, err: LMStudioError) -> bool:
        if isinstance(err, LMStudioConnectionError) and refused(err):
            self.server_down = err  # down: its rows go to another server at once, not after backoffs
            return False
        return super()._worth_retrying(err)

    async def _not_retried(self, err: LMStudioError, spec: RequestSpec) -> str | None:
        """A stream cut (or a connection dropped) with no retry left: when this server no longer answers, it is down
        (the row goes to another server that has the model, see :meth:`_finish`), else as for one server."""
        if self.server_down is None and not await self.client.is_running():
            self.server_down = LMStudioConnectionError(
                self.client.base_url, message=f"{self.name} ({self.client.base_url}) stopped answering: {err.message}")
        if self.server_down is not None:
            label = self.labels[spec.index]
            if not self.pool.others_serve(label, self.name):
                return f"{self.name} ({self.client.base_url}) stopped answering and no other endpoint has {label}."
            return None  # moved: this outcome is not kept
        return await super()._not_retried(err, spec)

    def _give_up(self, state: BatchState) -> None:
        label = self.labels[state.pending[0].index]
        orphans = self.pool.drop_server(label, self.name)
        if orphans:
            failure = state.breaker.failure
            assert failure is not None
            self._fail_rest(orphans, failure, state.breaker.failure_note)

    def _finish(self, index: int, outcome: Outcome) -> None:
        if self.outcomes[index] is not None:
            return
        label = self.labels[index]
        if (
            self.server_down is not None
            and outcome.status == "error"
            and outcome.error_type in _CONNECTION_ERRORS
            and self.pool.others_serve(label, self.name)
        ):
            self._begun.pop(index, None)
            self.pool.requeue(label, self.specs[index], outcome.attempts)
            return
        outcome.attempts += self.pool.attempts.pop(index, 0)
        if outcome.status == "ok":
            loaded = self._seen_loaded.get(self.specs[index].model)
            if loaded is not None:
                self.infos[loaded.id] = loaded
        self.pool.settled(label, self.name, index, outcome)
        super()._finish(index, outcome)

    def _put(self, event: tuple[Any, Any]) -> None:
        kind, payload = event
        if kind != "row":
            event = (kind, {**payload, "endpoint": self.name})
        super()._put(event)

    def cancel_own(self) -> None:
        """Stop: this server's rows in flight keep their partial text (before any run marks the rest not run)."""
        for index, (started_at, attempts, cold) in list(self._begun.items()):
            if self.outcomes[index] is None and index in self._results:
                self._answered(index)  # its answer finished: it stays finished
            elif self.outcomes[index] is None:
                stream = self._live.get(index)
                self.outcomes[index] = Outcome.cancelled(
                    stream.partial() if stream is not None else None, started_at=started_at, attempts=attempts,
                    cold=cold,
                )
                self.pool.endpoint_of[index] = self.name


class MultiEndpointRun(ComparisonRun):
    """The comparison over every server: its rows (labels as the user gave them), progress and Stop."""

    def __init__(
        self, *, endpoints: list[Endpoint], entries: list[ModelEntry], specs: list[RequestSpec], inputs: PromptInputs,
        messages: list[list[dict[str, Any]]], params: dict[str, Any], extra_params: dict[str, Any],
        system: str | None, cache: ResponseCache | None, owns_cache: bool, concurrency: Concurrency,
        retry: RetryPolicy, progress: bool | ProgressCallback,
    ) -> None:
        super().__init__(
            specs=specs, inputs=inputs, messages=messages, params=params, extra_params=extra_params, system=system,
            client=endpoints[0].client, owns_client=False, cache=cache, owns_cache=owns_cache,
            concurrency=concurrency, retry=retry, progress=False,
        )
        self.endpoints = endpoints
        self.infos = dict(endpoints[0].infos)
        self.entries = {e.label: e for e in entries}
        self._progress = ProgressReporter(
            progress, [s.model for s in specs], bar=lambda: EndpointProgressBar(len(specs), [e.name for e in endpoints])
        )
        self.sent = [dataclasses.replace(s, model=self.entries[s.model].model) for s in specs]  # the ids sent
        labels = [s.model for s in specs]
        lanes = []
        for order, entry in enumerate(entries):
            servers = [n for n in servers_of(entry, endpoints) if self._up(n)]
            lanes.append(Lane(entry.label, entry.model, deque(), servers, order))
        # a server that does not say (llama.cpp's, vLLM, a proxy) serves the models it lists: loaded, for stealing
        loaded = {e.name: {i.id for i in e.infos.values() if i.loaded or i.state is None} for e in endpoints}
        self.pool = WorkPool(lanes, loaded)
        self.runs = [
            EndpointRun(endpoint=e, pool=self.pool, labels=labels, specs=self.sent, inputs=inputs, messages=messages,
                        params=params, extra_params=extra_params, system=system, cache=cache, owns_cache=False,
                        concurrency=concurrency, retry=retry)
            for e in endpoints
        ]
        for run in self.runs:
            run.outcomes, run.keys = self.outcomes, self.keys  # one set of rows

    def check_servers(self) -> CheckServers:
        """Where the checks' judges and embedding models run: each model on the first endpoint up listing it, or on
        the endpoint it is pinned to (one that is down is kept, to say so)."""
        return CheckServers([CheckServer(e.name, e.client, e.infos, e.down) for e in self.endpoints])

    def _up(self, name: str) -> bool:
        return any(e.name == name and e.down is None for e in self.endpoints)

    async def prepare(self) -> None:
        """Rows settled before sending: models no endpoint has (or whose endpoint is down), and cache hits."""
        for spec in self.specs:
            entry = self.entries[spec.model]
            lane = self.pool.lanes[entry.label]
            if lane.servers:
                continue
            down = next((e.down for e in self.endpoints if e.name in servers_of(entry, self.endpoints) and e.down),
                        None)
            err: LMStudioError = down if down is not None else not_anywhere(entry, self.endpoints)
            self.outcomes[spec.index] = Outcome.from_error(err, started_at=None, attempts=0, cold=False)
        if self.cache is not None and self.cache.accepts(self.send):
            infos = {i.id: i for e in reversed(self.endpoints) for i in e.infos.values()}
            keyed = list(self.sent)
            for spec in self.specs:
                entry = self.entries[spec.model]
                if entry.pinned is not None:
                    # a pinned copy is a row of its own: the same model on two machines must not share answers
                    keyed[spec.index] = dataclasses.replace(self.sent[spec.index], model=entry.label)
                    pinned = next(e for e in self.endpoints if e.name == entry.pinned)
                    if entry.model in pinned.infos:
                        infos[entry.label] = pinned.infos[entry.model]
            keys, hits = cache_hits(keyed, self.messages, self.send, infos, self.cache, self.outcomes)
            self.keys[:] = keys  # the same list the servers' runs hold
            for index, outcome in hits.items():
                self.outcomes[index] = outcome
        for spec in self.specs:
            if self.outcomes[spec.index] is None:
                self.pool.lanes[spec.model].pending.append(self.sent[spec.index])

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for run in self.runs:
                run._events, run.loop, run.main_task = self._events, loop, self.main_task
            for run in self.runs:
                if run.server_down is not None:  # not reachable when the comparison started
                    run._put(("down", {}))
            tasks = [run._spawn(run.serve()) for run in self.runs if run.server_down is None]
            if tasks:
                await asyncio.wait(tasks)
        finally:
            if self._events is not None:
                self._events.put_nowait(None)

    def interrupt(self) -> None:
        for run in self.runs:
            run.cancel_own()
        for run in self.runs:
            run.interrupt()
        super().interrupt()

    async def _drain(self) -> None:
        for run in self.runs:
            await run._drain()
        await super()._drain()

    async def _close(self) -> None:
        for run in self.runs:
            await run._close()
        await super()._close()

    def _settled_row(self, index: int) -> SettledRow:
        return super()._settled_row(index)._replace(endpoint=self.pool.endpoint_of.get(index))

    def _answers(self) -> pd.DataFrame:
        """compare's rows, plus ``endpoint`` (after ``model``), each row's metadata from the server that ran it (the
        checks' columns are added to this by ``frame()``)."""
        df = build_frame(self.specs, self.outcomes, items=self.inputs.items, input_columns=self.inputs.input_columns,
                         infos={}, system=self.system, params=self.params, extra_params=self.extra_params)
        where = [self.pool.endpoint_of.get(i) for i in range(len(self.specs))]
        df.insert(list(df.columns).index("model") + 1, "endpoint", pd.Series(where, dtype=object))
        runs = {run.name: run for run in self.runs}
        for i, name in enumerate(where):
            run = runs.get(name) if name is not None else None
            infos = {**run.infos, **run._seen_loaded} if run is not None else _first_listing(self.endpoints)
            info = infos.get(self.sent[i].model)
            if info is not None:
                df.loc[i, ["format", "quantization", "arch"]] = [info.format, info.quantization, info.arch]
                df.loc[i, "context_length"] = info.context_length
        df["load_s"] = _load_seconds(df)
        return df


def _first_listing(endpoints: Sequence[Endpoint]) -> Mapping[str, Any]:
    return {i.id: i for e in reversed(endpoints) for i in e.infos.values()}


def _load_seconds(df: pd.DataFrame) -> pd.Series[float]:
    """For each cold row, its wait for the model to load: its TTFT less the model's usual TTFT on that server."""
    out: pd.Series[float] = pd.Series(float("nan"), index=df.index)
    ok = df[(df["status"] == "ok") & ~df["cold"]]
    for index, row in df[df["cold"] & df["ttft_s"].notna()].iterrows():
        warm = ok[(ok["model"] == row["model"]) & (ok["endpoint"] == row["endpoint"])]["ttft_s"].dropna()
        usual = statistics.median(warm) if len(warm) else 0.0
        out[index] = max(float(row["ttft_s"]) - usual, 0.0)
    return out


async def multi_endpoint_run(
    *, inputs: PromptInputs, models: str | Sequence[ModelArg] | None, endpoints: Endpoints, system: str | None,
    repeats: int, params: dict[str, Any], extra_params: dict[str, Any], concurrency: Concurrency,
    cache: bool | str | Any, progress: bool | ProgressCallback, timeout: float | None, retry: RetryPolicy,
    reuse_async: bool,
) -> MultiEndpointRun:
    """The run of ``compare(..., endpoints=...)``: endpoints named and listed (at once), models resolved per
    endpoint, the request checked, the cache opened. What is given wrong fails before anything is sent."""
    pairs = named_endpoints(endpoints)
    entries = model_entries(models, [name for name, _ in pairs])
    opened = await open_endpoints(pairs, timeout, reuse_async=reuse_async)
    try:
        entries = entries or every_chat_model(opened)
        specs = plan_requests(inputs.items, [e.label for e in entries], repeats=repeats)
        messages = [chat_messages(item.text, system, item.images) for item in inputs.items]
        send = {k: v for k, v in params.items() if v is not None}
        opened[0].client._chat_payload(messages[0], entries[0].model, True, send)  # refuses what LM Studio would
        rcache, owns_cache = open_cache(cache, params)  # none (and no file) when it would cache nothing
    except BaseException:
        for endpoint in opened:
            if endpoint.owns_client:
                await endpoint.client.aclose()
        raise
    return MultiEndpointRun(
        endpoints=opened, entries=entries, specs=specs, inputs=inputs, messages=messages, params=params,
        extra_params=extra_params, system=system, cache=rcache, owns_cache=owns_cache, concurrency=concurrency,
        retry=retry, progress=progress,
    )
