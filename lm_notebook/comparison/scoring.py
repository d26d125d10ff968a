"""Scoring a comparison's answers with its checks, into the rows' ``check_<name>``, ``score``, ``passed`` and
``check_notes`` columns.

Plain checks run on each answered row. The checks that ask the server run after every candidate has answered:
:func:`~lm_notebook.comparison.judge.similar_to` embeds the answers and references (one batch per embedding model),
:func:`~lm_notebook.comparison.judge.judge` sends one grading request per answer, grouped by judge model so each
judge loads once, with up to its parallel slots in flight. With ``cache=`` both are stored (judges are asked at
``temperature=0``), so a re-run with an added or changed check asks the candidates nothing and the judges only what is
new. A check that fails on one row marks only its own cell (NaN, and the reason in ``check_notes``).
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from lm_notebook.client.clients import AsyncLMStudioClient
from lm_notebook.client.embeddings import choose_embedding_model, cosine
from lm_notebook.client.errors import LMStudioAPIError, LMStudioError
from lm_notebook.client.schemas import AnswerSchema
from lm_notebook.client.types import ModelInfo
from lm_notebook.comparison.cache import ResponseCache, cache_key
from lm_notebook.comparison.check_models import CheckServer, CheckServers
from lm_notebook.comparison.checks import Check, CheckError
from lm_notebook.comparison.expected import with_expected
from lm_notebook.comparison.judge import JUDGE_PARAMS, JudgeCheck, SimilarityCheck
from lm_notebook.comparison.retry import RetryPolicy, worth_retrying
from lm_notebook.comparison.schedule import DEFAULT_SLOTS, RequestSpec, order_models
from lm_notebook.comparison.scoring_columns import THRESHOLDS_ATTR

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# told as each judge model starts and after each of its grades: (judge model, graded so far, answers to grade)
OnJudging = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Verdict:
    """One row's ``score``, ``passed`` and ``check_notes``."""

    score: float | None
    passed: bool | None
    notes: str | None


def verdict(status: str, cells: Sequence[tuple[Check, Cell | None]]) -> Verdict:
    """A row's verdict from its checks' cells.

    An answered row is scored when every check scored it: ``score`` is the mean of its checks, ``passed`` whether
    each reached its threshold. A check that scored it below its threshold fails it (``passed`` False) even when
    another could not score it. When a check could not score it (an error in its cell, or a judge the Stop cut
    short) and none failed it, it has no verdict: ``passed`` is <NA>, so pass rates count only rows with a verdict;
    ``score`` is NaN whenever a check is missing. A row that got no answer (an error) failed; a cancelled row
    (never run) is not scored.
    """
    notes = []
    for check, cell in cells:
        if cell is None:
            if status == "ok":
                notes.append(f"{check.name}: not scored (the comparison was stopped first)")
        elif cell.error:
            notes.append(f"{check.name}: error: {cell.error}")
        elif cell.note:
            notes.append(f"{check.name}: {cell.note}")
    note = "; ".join(notes) or None
    if status != "ok":
        return Verdict(None, False if status == "error" else None, note)
    scores = [(check, cell.score if cell is not None else None) for check, cell in cells]
    if any(s is not None and float(s) < check.threshold for check, s in scores):
        failed = True  # a check that scored it and failed decides, whatever the others could not tell
    elif any(s is None for _, s in scores):
        return Verdict(None, None, note)
    else:
        failed = False
    known = [float(s) for _, s in scores if s is not None]
    return Verdict(sum(known) / len(known) if len(known) == len(scores) else None, not failed, note)


@dataclass
class Cell:
    """One check's result on one row."""

    score: float | None = None
    note: str | None = None
    error: str | None = None


def _error_text(exc: BaseException) -> str:
    return exc.message if isinstance(exc, LMStudioError) else (
        str(exc) if isinstance(exc, CheckError) else f"{type(exc).__name__}: {exc}")


class Scorer:
    """A comparison's checks and expected answers, and every cell scored so far."""

    def __init__(self, checks: Sequence[Check], expected: Sequence[str | None] | None, specs: Sequence[RequestSpec],
                 retry: RetryPolicy) -> None:
        self.checks = list(checks)
        self.expected = list(expected) if expected is not None else None  # per prompt; None: none given here
        self.specs = list(specs)
        self.retry = retry
        self.cells: dict[tuple[int, str], Cell] = {}
        self.judge_requests = 0  # sent to a judge (not answered by the cache)
        # where the judges and embedding models run (compare(endpoints=...)); None: the client score() is given
        self.servers: CheckServers | None = None

    # --- the frame ---------------------------------------------------------------------------------------------
    def with_expected(self, frame: pd.DataFrame) -> pd.DataFrame:
        return with_expected(frame, self.expected, [spec.prompt_index for spec in self.specs])

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the expected answers and the check columns. The plain checks are scored here for any
        answered row not scored yet (they need no model: after a Stop, every finished answer is still scored);
        a check that asks the server and did not run for a row leaves it unscored."""
        frame = self.with_expected(frame)
        if not self.checks:
            return frame
        rows = _records(frame)
        for i, row in enumerate(rows):
            if row.get("status") == "ok":
                for check in self.checks:
                    if type(check) is Check and (i, check.name) not in self.cells:
                        self.cells[(i, check.name)] = self._plain(check, row)
        columns = {}
        for check in self.checks:
            scores = [self.cells.get((i, check.name), Cell()).score for i in range(len(frame))]
            columns[f"check_{check.name}"] = pd.Series(scores, index=frame.index, dtype="float64")
        verdicts = [verdict(str(row.get("status")), [(c, self.cells.get((i, c.name))) for c in self.checks])
                    for i, row in enumerate(rows)]
        extra = pd.DataFrame({
            "score": pd.Series([v.score for v in verdicts], index=frame.index, dtype="float64"),
            "passed": pd.Series([v.passed for v in verdicts], index=frame.index, dtype="boolean"),
            "check_notes": pd.Series([v.notes for v in verdicts], index=frame.index, dtype=object),
        })
        combined: pd.DataFrame = pd.concat([frame, pd.DataFrame(columns, index=frame.index), extra], axis=1)
        # what summary() needs to tell each check's pass rate (a score alone does not say whether it passed)
        combined.attrs[THRESHOLDS_ATTR] = {f"check_{c.name}": c.threshold for c in self.checks}
        return combined

    # --- scoring -----------------------------------------------------------------------------------------------
    async def score(self, frame: pd.DataFrame, client: AsyncLMStudioClient, cache: ResponseCache | None,
                    infos: Mapping[str, ModelInfo], on_judging: OnJudging | None = None) -> None:
        """Score every answered row of ``frame`` (the rows in plan order) that is not scored yet, asking ``client``
        (whose listing is ``infos``), or with ``endpoints=`` the endpoint of each check's model (``servers``)."""
        frame = self.with_expected(frame.copy())
        rows = {i: row for i, row in enumerate(_records(frame)) if row.get("status") == "ok"}
        servers = self.servers or CheckServers.one(client, infos)
        for check in self.checks:  # (the plain checks are scored by apply(), also after a Stop)
            if isinstance(check, SimilarityCheck):
                await self._similarity(check, rows, servers, cache)
        judges = [c for c in self.checks if isinstance(c, JudgeCheck)]
        if judges:
            await self._judges(judges, rows, servers, cache, on_judging)

    def _plain(self, check: Check, row: Mapping[str, Any]) -> Cell:
        try:
            score, note = check.score(str(row.get("response") or ""), row)
        except Exception as exc:  # a check's bug costs its own cell, not the run
            return Cell(error=_error_text(exc))
        return Cell(score, note)

    async def _similarity(self, check: SimilarityCheck, rows: Mapping[int, Mapping[str, Any]],
                          servers: CheckServers, cache: ResponseCache | None) -> None:
        pairs: dict[int, tuple[str, str]] = {}
        for i, row in rows.items():
            try:
                pairs[i] = (str(row.get("response") or ""), check.reference_for(row))
            except CheckError as exc:
                self.cells[(i, check.name)] = Cell(error=str(exc))
        if not pairs:
            return
        try:
            place = servers.embedding(check)
            server, chosen, client = place.server, place.sent, place.server.client
            model = chosen or choose_embedding_model(None, None, list(server.infos.values()), client.base_url)
            texts = list(dict.fromkeys(t for pair in pairs.values() for t in pair))
            vectors = await _embedded(texts, model, client, cache)
        except LMStudioError as exc:
            for i in pairs:
                self.cells[(i, check.name)] = Cell(error=_error_text(exc))
            return
        for i, (answer, reference) in pairs.items():
            raw = cosine(vectors[answer], vectors[reference])
            if not math.isfinite(raw):  # a vector with NaN or inf in it: no similarity to speak of, not a pass
                self.cells[(i, check.name)] = Cell(error=f"the embeddings of {model} gave no similarity ({raw})")
                continue
            similarity = max(0.0, min(1.0, raw))
            note = None if similarity >= check.threshold else f"similarity {similarity:.2f} < {check.threshold:g}"
            self.cells[(i, check.name)] = Cell(similarity, note)

    async def _judges(self, judges: Sequence[JudgeCheck], rows: Mapping[int, Mapping[str, Any]],
                      servers: CheckServers, cache: ResponseCache | None, on_judging: OnJudging | None) -> None:
        # per server and judge model, one request per distinct conversation (the same prompt, answer and rubric on
        # several rows, or in several checks): sent once, its verdict shared
        by_model: dict[int, dict[str, dict[str, JudgeRequest]]] = {}
        for check in judges:
            try:
                place = servers.judge(check)
                server, model = place.server, place.sent
            except LMStudioError as exc:  # (checked before the candidates ran: only a model gone since)
                server, model, problem = servers.servers[0], None, exc.message
            else:
                problem = "no judge model: pass judge(..., model='model-id') or set the current model"
            infos = server.infos
            for i, row in rows.items():
                if model is None:
                    self.cells[(i, check.name)] = Cell(error=problem)
                    continue
                messages = check.messages(row, str(row.get("response") or ""))
                key = judge_key(check, messages, model, infos.get(model))
                asked = by_model.setdefault(servers.servers.index(server), {}).setdefault(model, {})
                asked.setdefault(key, JudgeRequest(check, messages, key, [])).cells.append((i, check.name))
        for index, models in by_model.items():
            await self._judges_of(servers.servers[index], models, cache, on_judging)

    async def _judges_of(self, server: CheckServer, by_model: Mapping[str, Mapping[str, JudgeRequest]],
                         cache: ResponseCache | None, on_judging: OnJudging | None) -> None:
        client, infos = server.client, server.infos
        loaded = await _loaded_now(client)
        # one judge after another, each loaded once; one already loaded (the last candidate, say) goes first
        for model in order_models(list(by_model), loaded):
            requests = list(by_model[model].values())
            total = sum(len(r.cells) for r in requests)
            info = infos.get(model)
            slots = JudgeSlots(info.parallel if info is not None and info.parallel else None, model not in loaded,
                               functools.partial(_parallel_now, client, model))
            def graded(count: int, model: str = model, total: int = total, so_far: list[int] = [0]) -> None:  # noqa: B006
                so_far[0] += count  # a counter of this judge's grades (the default list is made once per judge)
                if on_judging is not None:
                    on_judging(model, so_far[0], total)

            if on_judging is not None:
                on_judging(model, 0, total)
            await asyncio.gather(*(self._judge_one(request, model, client, cache, slots, graded)
                                   for request in requests))

    async def _judge_one(self, request: JudgeRequest, model: str, client: AsyncLMStudioClient,
                         cache: ResponseCache | None, slots: JudgeSlots, graded: Callable[[int], None]) -> None:
        try:
            cell = await self._grade(request, model, client, cache, slots)
            for target in request.cells:
                self.cells[target] = cell
        finally:
            graded(len(request.cells))

    async def _grade(self, request: JudgeRequest, model: str, client: AsyncLMStudioClient,
                     cache: ResponseCache | None, slots: JudgeSlots) -> Cell:
        """The request's verdict: from the cache, else asked. Only a reply that grades is cached: one with no
        score (or off the scale) is asked again on the next run, and one cached before that rule is asked again."""
        check = request.check
        record = cache.get(request.key) if cache is not None else None
        cached = record.get("response") if record is not None else None
        if isinstance(cached, str):
            try:
                return Cell(*check.grade(cached))
            except CheckError:
                pass
        try:
            async with slots:
                reply = await self._ask(client, request.messages, model, check.reply_schema())
        except LMStudioError as exc:
            return Cell(error=f"judge {model}: {_error_text(exc)}")
        try:
            score, reason = check.grade(reply)
        except CheckError as exc:
            return Cell(error=str(exc))
        if cache is not None and cache.accepts(JUDGE_PARAMS):
            cache.put(request.key, {"response": reply, "judge": True}, model=model)
        return Cell(score, reason)

    async def _ask(self, client: AsyncLMStudioClient, messages: list[dict[str, str]], model: str,
                   schema: dict[str, Any]) -> str:
        attempt = 0
        while True:
            attempt += 1
            self.judge_requests += 1
            try:
                # the schema goes as a response_format, not schema=: the reply is read by parse_grade (also when it
                # is not the JSON asked for), so no local validation, which would need the optional jsonschema
                result = await client.chat(messages, model=model, response_format=AnswerSchema("grade", schema)
                                           .response_format(), **JUDGE_PARAMS)
            except LMStudioError as err:
                if worth_retrying(err) and attempt < self.retry.attempts:
                    retry_after = err.retry_after if isinstance(err, LMStudioAPIError) else None
                    await asyncio.sleep(self.retry.delay(attempt, retry_after))
                    continue
                raise
            return result.content


@dataclass
class JudgeRequest:
    """One grading request of a run: ``check``'s conversation, its cache ``key``, and the cells (row, check name)
    its verdict fills."""

    check: JudgeCheck
    messages: list[dict[str, str]]
    key: str
    cells: list[tuple[int, str]]


def judge_key(check: JudgeCheck, messages: list[dict[str, str]], model: str, info: ModelInfo | None) -> str:
    """A grading request's cache key: two requests with one key are the same question to the same judge."""
    params = {**JUDGE_PARAMS, "schema": check.reply_schema()}
    return cache_key(model=model, messages=messages, params=params, repeat=0,
                     quantization=info.quantization if info else None, format=info.format if info else None)


class JudgeSlots:
    """A judge's requests in flight. Loaded, it takes as many as it has slots; not loaded, one until that first
    request is answered (it carries the load: the others wait for it rather than each start a load), then as many
    as the loaded model reports (``parallel``, else a default)."""

    def __init__(self, slots: int | None, cold: bool, parallel_now: Callable[[], Awaitable[int | None]]) -> None:
        self._slots = slots or DEFAULT_SLOTS
        self._cold = cold
        self._parallel_now = parallel_now
        self._free = asyncio.Semaphore(1 if cold else self._slots)

    async def __aenter__(self) -> None:
        await self._free.acquire()

    async def __aexit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if self._cold and kind is not asyncio.CancelledError:
            # the first request is over, and the model with it loaded (or not: then each request says why)
            self._cold = False
            self._slots = await self._parallel_now() or self._slots
            for _ in range(self._slots - 1):
                self._free.release()
        self._free.release()


async def _parallel_now(client: AsyncLMStudioClient, model: str) -> int | None:
    """How many requests the model takes at once now that it is loaded (None when the server does not say)."""
    try:
        return next((m.parallel for m in await client.list_models() if m.id == model), None)
    except LMStudioError:
        return None


async def _loaded_now(client: AsyncLMStudioClient) -> list[str]:
    """The models loaded now (none known when the server cannot say)."""
    try:
        return [m.id for m in await client.list_models() if m.loaded]
    except LMStudioError:
        return []


async def _embedded(texts: Sequence[str], model: str, client: AsyncLMStudioClient,
                    cache: ResponseCache | None) -> dict[str, npt.NDArray[np.float64]]:
    """Each text's vector: from the cache, else embedded in one call (batched by the client)."""
    import numpy as np

    out: dict[str, npt.NDArray[np.float64]] = {}
    keys = {t: cache_key(model=model, messages=[{"role": "embed", "content": t}], params={}, repeat=0)
            for t in texts}
    if cache is not None:
        for text, key in keys.items():
            record = cache.get(key)
            vector = record.get("embedding") if record is not None else None
            if isinstance(vector, list):
                out[text] = np.asarray(vector, dtype=np.float64)
    missing = [t for t in texts if t not in out]
    if missing:
        result = await client.embed(missing, model=model)
        for text, vector in zip(missing, result.vectors, strict=True):
            out[text] = vector
            if cache is not None:
                cache.put(keys[text], {"embedding": vector.tolist()}, model=model)
    return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as plain dicts, NA as None (what a check's ``row`` is)."""
    cleaned = frame.astype(object).where(frame.notna(), None)
    return [dict(r) for r in cleaned.to_dict(orient="records")]
