"""The judges of a comparison's :func:`~lm_notebook.comparison.judge.judge` checks, asked after every candidate has
answered (see :mod:`lm_notebook.comparison.scoring`): one grading request per distinct conversation, grouped by
server and judge model so each judge loads once, with up to its parallel slots in flight; from the cache when it
has the verdict.

With ``compare(endpoints=...)``, an endpoint found down when its judges start (its listing refused) or while they
run (a request refused) is marked down, like a candidate's endpoint: a judge not pinned to it moves to the next
endpoint up that lists it (said once, in a warning), and its grades left are asked there; a pinned judge stays, its
cells carrying why they have no grade. With one server, a refused request is retried and then its cell says why.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lm_notebook.client.clients import AsyncLMStudioClient
from lm_notebook.client.errors import LMStudioAPIError, LMStudioConnectionError, LMStudioError
from lm_notebook.client.schemas import AnswerSchema
from lm_notebook.client.types import ModelInfo
from lm_notebook.comparison.cache import ResponseCache, cache_key
from lm_notebook.comparison.check_models import CheckServer, CheckServers, Placement
from lm_notebook.comparison.checks import CheckError
from lm_notebook.comparison.judge import JUDGE_PARAMS, JudgeCheck
from lm_notebook.comparison.retry import RetryPolicy, refused, worth_retrying
from lm_notebook.comparison.schedule import DEFAULT_SLOTS, order_models
from lm_notebook.comparison.scoring_columns import Cell
from lm_notebook.comparison.user_warnings import warn_at_user_line

# told as each judge model starts and after each of its grades: (judge model, graded so far, answers to grade)
OnJudging = Callable[[str, int, int], None]
# one cell to grade: its check, where its judge runs, the judge's conversation, the cell (row, check name)
Ask = tuple[JudgeCheck, Placement, list[dict[str, str]], tuple[int, str]]


def warn_moved(what: str, model: str, check: str, server: CheckServer, to: CheckServer) -> None:
    """Say (once per run, by the caller) that a check's model left an endpoint found down for another."""
    warn_at_user_line(f"compare(): endpoint {server.name} ({server.client.base_url}) stopped answering: the {what} "
                      f"{model} (check {check}) runs on {to.name} instead.")


def found_down(server: CheckServer, err: LMStudioError) -> bool:
    """Whether ``err`` shows an endpoint (not the one server) is down, newly: then it is marked so."""
    if server.name is not None and server.down is None and refused(err):
        server.down, server.lost = err, True
        return True
    return False


class Judging:
    """One scoring's judges: fills ``cells`` (row, check name) → :class:`Cell`; ``requests`` counts those sent."""

    def __init__(self, cells: dict[tuple[int, str], Cell], servers: CheckServers, cache: ResponseCache | None,
                 retry: RetryPolicy, on_judging: OnJudging | None) -> None:
        self.cells, self.servers, self.cache, self.retry, self.on_judging = cells, servers, cache, retry, on_judging
        self.requests = 0
        # per judge model, across servers (its grades left move with it): answers graded so far, and to grade
        self._graded: dict[str, int] = {}
        self._to_grade: dict[str, int] = {}

    async def run(self, judges: Sequence[JudgeCheck], rows: Mapping[int, Mapping[str, Any]]) -> None:
        asks: list[Ask] = []
        for check in judges:
            try:
                place = self.servers.judge(check)
            except LMStudioError as exc:  # (checked before the candidates ran: only a model gone since)
                self._fail(check, rows, exc.message)
                continue
            if place.sent is None:
                self._fail(check, rows, "no judge model: pass judge(..., model='model-id') or set the current model")
                continue
            self._say_moved(check, place)  # (an endpoint an earlier check found down)
            self._to_grade[place.sent] = self._to_grade.get(place.sent, 0) + len(rows)
            for i, row in rows.items():
                asks.append((check, place, check.messages(row, str(row.get("response") or "")), (i, check.name)))
        while asks:  # server by server; what a server found down could not grade goes on to another
            server = asks[0][1].server
            here = [a for a in asks if a[1].server is server]
            asks = [a for a in asks if a[1].server is not server] + await self._judges_of(server, here)

    def _fail(self, check: JudgeCheck, rows: Mapping[int, Mapping[str, Any]], error: str) -> None:
        for i in rows:
            self.cells[(i, check.name)] = Cell(error=error)

    async def _judges_of(self, server: CheckServer, asks: Sequence[Ask]) -> list[Ask]:
        """Grade ``asks`` on ``server``; return those to ask elsewhere (its endpoint was found down)."""
        # per judge model, one request per distinct conversation (the same prompt, answer and rubric on several
        # rows, or in several checks): sent once, its verdict shared
        by_model: dict[str, dict[str, JudgeRequest]] = {}
        for check, place, messages, cell in asks:
            model = place.sent or ""
            key = judge_key(check, messages, model, server.infos.get(model))
            request = by_model.setdefault(model, {}).setdefault(key, JudgeRequest(check, messages, key, []))
            request.cells.append(cell)
        client, infos = server.client, server.infos
        loaded = await self._loaded_now(server)
        left: list[JudgeRequest] = []
        # one judge after another, each loaded once; one already loaded (the last candidate, say) goes first
        for model in order_models(list(by_model), loaded):
            requests = list(by_model[model].values())
            info = infos.get(model)
            slots = JudgeSlots(info.parallel if info is not None and info.parallel else None, model not in loaded,
                               functools.partial(_parallel_now, client, model))
            self._graded_more(model, 0)  # (a judge that moved goes on from its count so far)
            await asyncio.gather(*(self._judge_one(request, model, server, slots, left) for request in requests))
        return self._elsewhere(server, asks, {cell for r in left for cell in r.cells})

    async def _loaded_now(self, server: CheckServer) -> list[str]:
        """The models loaded now (none known when the server cannot say); an endpoint that refuses is down."""
        try:
            return [m.id for m in await server.client.list_models() if m.loaded]
        except LMStudioError as exc:
            found_down(server, exc)
            return []

    def _elsewhere(self, server: CheckServer, asks: Sequence[Ask], left: set[tuple[int, str]]) -> list[Ask]:
        """The cells ``server`` did not grade (it is down), each placed again: a judge not pinned moves to the next
        endpoint up that lists it; a pinned one, or one no endpoint up lists, gets the error (which names the
        endpoint down)."""
        out: list[Ask] = []
        placed: dict[str, Placement | str] = {}  # check name → its new place, or its cells' error
        for check, place, messages, cell in asks:
            if cell not in left:
                continue
            if check.name not in placed:
                try:
                    placed[check.name] = moved = self.servers.judge(check)  # (never a server known down)
                except LMStudioError as exc:
                    placed[check.name] = exc.message
                else:
                    self._say_moved(check, moved)
            where = placed[check.name]
            if isinstance(where, str):
                self.cells[cell] = Cell(error=where)
                self._graded_more(place.sent or "", 1)  # (done: its cell says why)
            else:
                out.append((check, where, messages, cell))
        return out

    def _say_moved(self, check: JudgeCheck, place: Placement) -> None:
        """Say (once per move) that a judge left an endpoint found down since it was placed."""
        gone = self.servers.moved_from(check, place)
        if gone is not None:
            warn_moved("judge", place.sent or "", check.name, gone, place.server)

    def _graded_more(self, model: str, count: int) -> None:
        self._graded[model] = done = self._graded.get(model, 0) + count
        if self.on_judging is not None:
            self.on_judging(model, done, self._to_grade.get(model, done))

    async def _judge_one(self, request: JudgeRequest, model: str, server: CheckServer, slots: JudgeSlots,
                         left: list[JudgeRequest]) -> None:
        cell = None
        try:
            cell = await self._grade(request, model, server, slots)
            if cell is None:
                left.append(request)  # its endpoint is down: asked elsewhere, or the cell says why
            else:
                for target in request.cells:
                    self.cells[target] = cell
        finally:
            if cell is not None:
                self._graded_more(model, len(request.cells))

    async def _grade(self, request: JudgeRequest, model: str, server: CheckServer, slots: JudgeSlots) -> Cell | None:
        """The request's verdict: from the cache, else asked (None: the endpoint is down). Only a reply that grades
        is cached: one with no score (or off the scale) is asked again on the next run, and one cached before that
        rule is asked again."""
        check, cache = request.check, self.cache
        record = cache.get(request.key) if cache is not None else None
        cached = record.get("response") if record is not None else None
        if isinstance(cached, str):
            try:
                return Cell(*check.grade(cached))
            except CheckError:
                pass
        try:
            async with slots:
                if server.down is not None:
                    return None
                reply = await self._ask(server, request.messages, model, check.reply_schema())
        except LMStudioError as exc:
            found_down(server, exc)
            return None if server.down is not None else Cell(error=f"judge {model}: {exc.message}")
        try:
            score, reason = check.grade(reply)
        except CheckError as exc:
            return Cell(error=str(exc))
        if cache is not None and cache.accepts(JUDGE_PARAMS):
            cache.put(request.key, {"response": reply, "judge": True}, model=model)
        return Cell(score, reason)

    async def _ask(self, server: CheckServer, messages: list[dict[str, str]], model: str,
                   schema: dict[str, Any]) -> str:
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            try:
                # the schema goes as a response_format, not schema=: the reply is read by parse_grade (also when it
                # is not the JSON asked for), so no local validation, which would need the optional jsonschema
                result = await server.client.chat(messages, model=model, response_format=AnswerSchema(
                    "grade", schema).response_format(), **JUDGE_PARAMS)
            except LMStudioError as err:
                # an endpoint that refuses is down at once (as for the candidates); one server is tried again
                if worth_retrying(err) and not await self._gone(server, err) and attempt < self.retry.attempts:
                    retry_after = err.retry_after if isinstance(err, LMStudioAPIError) else None
                    await asyncio.sleep(self.retry.delay(attempt, retry_after))
                    continue
                raise
            return result.content

    async def _gone(self, server: CheckServer, err: LMStudioError) -> bool:
        """Whether an endpoint (not the one server) is down: refused, known so, or, its connection cut, no longer
        running (then marked so): its grades move at once, with no backoff first."""
        if server.name is None:
            return False
        if server.down is None and not refused(err) and not await server.client.is_running():
            server.down, server.lost = LMStudioConnectionError(
                server.client.base_url, message=f"{server.name} ({server.client.base_url}) stopped answering: "
                f"{err.message}"), True
        return server.down is not None or refused(err)


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


