"""Scoring a comparison's answers with its checks, into the rows' ``check_<name>``, ``score``, ``passed`` and
``check_notes`` columns.

Plain checks run on each answered row. The checks that ask the server run after every candidate has answered:
:func:`~lm_notebook.comparison.judge.similar_to` embeds the answers and references (one batch per embedding model),
:func:`~lm_notebook.comparison.judge.judge` sends one grading request per answer, grouped by judge model so each
judge loads once, with up to its parallel slots in flight (:mod:`lm_notebook.comparison.judging`). With ``cache=``
both are stored (judges are asked at ``temperature=0``), so a re-run with an added or changed check asks the
candidates nothing and the judges only what is new. A check that fails on one row marks only its own cell (NaN, and
the reason in ``check_notes``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from lm_notebook.client.clients import AsyncLMStudioClient
from lm_notebook.client.embeddings import choose_embedding_model, cosine
from lm_notebook.client.errors import LMStudioError
from lm_notebook.client.types import ModelInfo
from lm_notebook.comparison.cache import ResponseCache, cache_key
from lm_notebook.comparison.check_models import CheckServers, Placement
from lm_notebook.comparison.checks import Check, CheckError
from lm_notebook.comparison.expected import with_expected
from lm_notebook.comparison.judge import JudgeCheck, SimilarityCheck
from lm_notebook.comparison.judging import Judging, OnJudging, found_down, warn_moved
from lm_notebook.comparison.retry import RetryPolicy
from lm_notebook.comparison.schedule import RequestSpec
from lm_notebook.comparison.scoring_columns import THRESHOLDS_ATTR, Cell

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


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
            judging = Judging(self.cells, servers, cache, self.retry, on_judging)
            await judging.run(judges, rows)
            self.judge_requests += judging.requests

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
        texts = list(dict.fromkeys(t for pair in pairs.values() for t in pair))
        while True:  # an endpoint found down: the model is placed again (as a judge is)
            place: Placement | None = None
            try:
                place = servers.embedding(check)  # (never a server known down)
                server, client = place.server, place.server.client
                model = place.sent or choose_embedding_model(None, None, list(server.infos.values()), client.base_url)
                gone = servers.moved_from(check, place)
                if gone is not None:
                    warn_moved("embedding model", model, check.name, gone, server)
                vectors = await _embedded(texts, model, client, cache)
                break
            except LMStudioError as exc:
                if place is not None and found_down(place.server, exc):
                    continue
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
