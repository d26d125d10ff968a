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
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from lm_notebook.client.clients import AsyncLMStudioClient
from lm_notebook.client.embeddings import choose_embedding_model, cosine
from lm_notebook.client.errors import AnswerFormatError, LMStudioAPIError, LMStudioError
from lm_notebook.client.types import ModelInfo
from lm_notebook.comparison.cache import ResponseCache, cache_key
from lm_notebook.comparison.checks import Check, CheckError
from lm_notebook.comparison.judge import JUDGE_PARAMS, JudgeCheck, SimilarityCheck
from lm_notebook.comparison.retry import RetryPolicy, worth_retrying
from lm_notebook.comparison.schedule import DEFAULT_SLOTS, PromptItem, RequestSpec, order_models

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

EXPECTED = "expected"
# told as each judge model starts and after each of its grades: (judge model, graded so far, answers to grade)
OnJudging = Callable[[str, int, int], None]


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

    # --- the frame ---------------------------------------------------------------------------------------------
    def with_expected(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.expected is None or EXPECTED in frame.columns:
            return frame
        values = [self.expected[spec.prompt_index] for spec in self.specs]
        frame.insert(list(frame.columns).index("model"), EXPECTED, values)
        return frame

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the expected answers and the check columns."""
        frame = self.with_expected(frame)
        if not self.checks:
            return frame
        columns = {}
        passed, notes = [], []
        for i, status in enumerate(frame["status"]):
            row_notes = []
            ok = status == "ok"
            for check in self.checks:
                cell = self.cells.get((i, check.name))
                ok = ok and cell is not None and cell.score is not None and cell.score >= check.threshold
                if cell is not None and (cell.error or cell.note):
                    row_notes.append(f"{check.name}: " + (f"error: {cell.error}" if cell.error else str(cell.note)))
            passed.append(bool(ok))
            notes.append("; ".join(row_notes) or None)
        for check in self.checks:
            scores = [self.cells.get((i, check.name), Cell()).score for i in range(len(frame))]
            columns[f"check_{check.name}"] = pd.Series(scores, index=frame.index, dtype="float64")
        scored = pd.DataFrame(columns, index=frame.index)
        extra = pd.DataFrame(
            {"score": scored.mean(axis=1, skipna=True), "passed": passed, "check_notes": notes}, index=frame.index
        )
        extra["check_notes"] = extra["check_notes"].astype(object).where(extra["check_notes"].notna(), None)
        combined: pd.DataFrame = pd.concat([frame, scored, extra], axis=1)
        return combined

    # --- scoring -----------------------------------------------------------------------------------------------
    async def score(self, frame: pd.DataFrame, client: AsyncLMStudioClient, cache: ResponseCache | None,
                    infos: Mapping[str, ModelInfo], on_judging: OnJudging | None = None) -> None:
        """Score every answered row of ``frame`` (the rows in plan order) that is not scored yet."""
        frame = self.with_expected(frame.copy())
        rows = {i: row for i, row in enumerate(_records(frame)) if row.get("status") == "ok"}
        for check in self.checks:
            if type(check) is Check:
                for i, row in rows.items():
                    self.cells[(i, check.name)] = self._plain(check, row)
        for check in self.checks:
            if isinstance(check, SimilarityCheck):
                await self._similarity(check, rows, client, cache, infos)
        judges = [c for c in self.checks if isinstance(c, JudgeCheck)]
        if judges:
            await self._judges(judges, rows, client, cache, infos, on_judging)

    def _plain(self, check: Check, row: Mapping[str, Any]) -> Cell:
        try:
            score, note = check.score(str(row.get("response") or ""), row)
        except Exception as exc:  # a check's bug costs its own cell, not the run
            return Cell(error=_error_text(exc))
        return Cell(score, note)

    async def _similarity(self, check: SimilarityCheck, rows: Mapping[int, Mapping[str, Any]],
                          client: AsyncLMStudioClient, cache: ResponseCache | None,
                          infos: Mapping[str, ModelInfo]) -> None:
        pairs: dict[int, tuple[str, str]] = {}
        for i, row in rows.items():
            try:
                pairs[i] = (str(row.get("response") or ""), check.reference_for(row))
            except CheckError as exc:
                self.cells[(i, check.name)] = Cell(error=str(exc))
        if not pairs:
            return
        try:
            model = check.model or choose_embedding_model(None, None, list(infos.values()), client.base_url)
            texts = list(dict.fromkeys(t for pair in pairs.values() for t in pair))
            vectors = await _embedded(texts, model, client, cache)
        except LMStudioError as exc:
            for i in pairs:
                self.cells[(i, check.name)] = Cell(error=_error_text(exc))
            return
        for i, (answer, reference) in pairs.items():
            similarity = max(0.0, min(1.0, cosine(vectors[answer], vectors[reference])))
            note = None if similarity >= check.threshold else f"similarity {similarity:.2f} < {check.threshold:g}"
            self.cells[(i, check.name)] = Cell(similarity, note)

    async def _judges(self, judges: Sequence[JudgeCheck], rows: Mapping[int, Mapping[str, Any]],
                      client: AsyncLMStudioClient, cache: ResponseCache | None,
                      infos: Mapping[str, ModelInfo], on_judging: OnJudging | None) -> None:
        by_model: dict[str, list[tuple[int, JudgeCheck, list[dict[str, str]]]]] = {}
        for check in judges:
            model = check.model or client.current_model
            for i, row in rows.items():
                if model is None:
                    self.cells[(i, check.name)] = Cell(
                        error="no judge model: pass judge(..., model='model-id') or set the current model")
                    continue
                by_model.setdefault(model, []).append((i, check, check.messages(row, str(row.get("response") or ""))))
        loaded = await _loaded_now(client)
        # one judge after another, each loaded once; one already loaded (the last candidate, say) goes first
        for model in order_models(list(by_model), loaded):
            requests = by_model[model]
            info = infos.get(model)
            slots = asyncio.Semaphore(info.parallel if info is not None and info.parallel else DEFAULT_SLOTS)
            def one_more(model: str = model, total: int = len(requests), graded: list[int] = [0]) -> None:  # noqa: B006
                graded[0] += 1  # a counter of this judge's grades (the default list is made once per judge)
                if on_judging is not None:
                    on_judging(model, graded[0], total)

            if on_judging is not None:
                on_judging(model, 0, len(requests))
            await asyncio.gather(*(self._judge_one(i, check, messages, model, client, cache, infos, slots, one_more)
                                   for i, check, messages in requests))

    async def _judge_one(self, i: int, check: JudgeCheck, messages: list[dict[str, str]], model: str,
                         client: AsyncLMStudioClient, cache: ResponseCache | None, infos: Mapping[str, ModelInfo],
                         slots: asyncio.Semaphore, graded: Callable[[], None]) -> None:
        try:
            await self._grade(i, check, messages, model, client, cache, infos, slots)
        finally:
            graded()

    async def _grade(self, i: int, check: JudgeCheck, messages: list[dict[str, str]], model: str,
                     client: AsyncLMStudioClient, cache: ResponseCache | None, infos: Mapping[str, ModelInfo],
                     slots: asyncio.Semaphore) -> None:
        info = infos.get(model)
        params = {**JUDGE_PARAMS, "schema": check.reply_schema()}
        key = cache_key(model=model, messages=messages, params=params, repeat=0,
                        quantization=info.quantization if info else None, format=info.format if info else None)
        record = cache.get(key) if cache is not None else None
        reply = record.get("response") if record is not None else None
        if not isinstance(reply, str):
            try:
                async with slots:
                    reply = await self._ask(client, messages, model, check.reply_schema())
            except LMStudioError as exc:
                self.cells[(i, check.name)] = Cell(error=f"judge {model}: {_error_text(exc)}")
                return
            if cache is not None and cache.accepts(JUDGE_PARAMS):
                cache.put(key, {"response": reply, "judge": True}, model=model)
        try:
            score, reason = check.grade(reply)
        except CheckError as exc:
            self.cells[(i, check.name)] = Cell(error=str(exc))
            return
        self.cells[(i, check.name)] = Cell(score, reason)

    async def _ask(self, client: AsyncLMStudioClient, messages: list[dict[str, str]], model: str,
                   schema: dict[str, Any]) -> str:
        attempt = 0
        while True:
            attempt += 1
            self.judge_requests += 1
            try:
                result = await client.chat(messages, model=model, schema=schema, **JUDGE_PARAMS)
            except AnswerFormatError as err:
                return err.raw  # not the JSON asked for: what it said is still read for a grade (or why there is none)
            except LMStudioError as err:
                if worth_retrying(err) and attempt < self.retry.attempts:
                    retry_after = err.retry_after if isinstance(err, LMStudioAPIError) else None
                    await asyncio.sleep(self.retry.delay(attempt, retry_after))
                    continue
                raise
            return result.content


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


# --- expected answers ---------------------------------------------------------------------------------------------


def expected_answers(expected: object, items: Sequence[PromptItem]) -> list[str | None] | None:
    """``compare(expected=...)`` as one reference per prompt (None where a prompt has none), or None when nothing was
    given (the prompts' own ``expected`` column or field, if any, is then used as it is).

    A dict keyed like the prompts; a Series (a DataFrame column, keyed by the DataFrame's index); a list, one per
    prompt; the name of a column of the prompts' DataFrame (or a field of dict prompts); or one string for all."""
    if expected is None:
        return None
    names = [item.name for item in items]
    if isinstance(expected, str):
        if any(item.columns and expected in item.columns for item in items):
            return [_text((item.columns or {}).get(expected)) for item in items]
        return [expected] * len(items)
    if isinstance(expected, pd.Series):
        return [_text(expected.get(name)) for name in names]
    if isinstance(expected, Mapping):
        unknown = [k for k in expected if k not in set(names)]
        if unknown:
            raise ValueError(
                f"expected= has keys that name no prompt: {unknown[:5]}; the prompts are {names[:10]}."
            )
        return [_text(expected.get(name)) for name in names]
    if isinstance(expected, Sequence):
        if len(expected) != len(names):
            raise ValueError(f"expected= lists {len(expected)} answers for {len(names)} prompts: give one per prompt.")
        return [_text(v) for v in expected]
    raise TypeError(
        "expected= is a dict keyed like the prompts, a Series (a DataFrame column), a list (one per prompt), a column "
        f"name, or one string for all, not {type(expected).__name__}."
    )


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
