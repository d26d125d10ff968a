"""The fake server's LM Studio 0.4 native chat: ``POST /api/v1/chat``, streamed (named events) and not.

Every event type comes in the documented order: ``chat.start``; ``model_load.start/progress/end`` only when the
model was not loaded (the progress paced by its load time, on the server's clock; a request joining a load under
way hears where that load is, and its load time); ``prompt_processing.*`` for
prompts of at least :data:`PROMPT_PROCESSING_TOKENS` tokens (paced by the model's ``ttft``); ``reasoning.*`` for
reasoning models; ``tool_call.*`` for each MCP integration asked for (a fake tool, ``mcp/failing`` fails);
``message.*``; then ``chat.end`` with the whole answer, ``stats`` consistent with the pacing. Faults (an unknown model,
a load failure, a context overflow, a ``stream_error``) come as ``error`` then ``chat.end``. Chats are stored unless
``"store": false`` and chained by ``previous_response_id``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lm_notebook.testing import error_bodies as errors
from lm_notebook.testing.catalogue import LoadedView, ModelSpec
from lm_notebook.testing.faults import Fault
from lm_notebook.testing.generation import Generation, plan_chat
from lm_notebook.testing.native_request import (
    NativeChats,
    NativeFailure,
    Plan,
    input_text,
    integration_label,
    native_error,
)
from lm_notebook.testing.replies import prompt_tokens
from lm_notebook.testing.semantics import judge_reply
from lm_notebook.testing.streaming import Event, Framing, StreamWriter, pause
from lm_notebook.testing.vision import ImageRefused, images_seen, seen_note
from lm_notebook.testing.wire import ChunkedBody, dump_json, write_response

if TYPE_CHECKING:
    from lm_notebook.testing.scheduler import Instance

PATH = "/api/v1/chat"
PROMPT_PROCESSING_TOKENS = 256  # prompts this long report their processing
LOAD_PROGRESS_STEPS = 5  # model_load.progress events over a load (paced by its load time)
_REASONING = {"off": "none", "on": "medium"}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class NativeChat:
    """Answers ``POST /api/v1/chat`` for one :class:`~lm_notebook.testing.app.LMStudioApp`."""

    def __init__(self, app: Any) -> None:
        self.app = app  # the LMStudioApp (not imported: it imports this module)
        self.chats = NativeChats()

    # --- the request ------------------------------------------------------------------------------------------
    def _plan(self, body: Any) -> Plan:
        app = self.app
        if not isinstance(body, dict) or "input" not in body:
            raise NativeFailure(400, {"type": "invalid_request", "message": "'input' is required", "param": "input"})
        text, parts = input_text(body["input"])
        history: list[dict[str, Any]] = []
        previous = body.get("previous_response_id")
        if previous is not None:
            stored = self.chats.get(str(previous))
            if stored is None:
                raise NativeFailure(400, {"type": "invalid_request", "param": "previous_response_id",
                                          "message": f"No stored response with id {previous!r}."})
            history = list(stored.messages)
        elif isinstance(body.get("system_prompt"), str):
            history = [{"role": "system", "content": body["system_prompt"]}]
        user = {"role": "user", "content": text if len(parts) == 1 else parts}
        messages = [*history, user]
        try:
            spec = app._resolve(body, PATH, want_embedding=False)
        except Exception as exc:  # a Reply: the OpenAI route's words, said natively
            reply = getattr(exc, "reply", None)
            if reply is None:
                raise
            raise native_error(reply) from None
        effort = body.get("reasoning")
        openai_body: dict[str, Any] = {
            "temperature": body.get("temperature"), "seed": None,
            "max_tokens": body.get("max_output_tokens"),
            "reasoning_effort": _REASONING.get(effort, effort) if isinstance(effort, str) else None,
        }
        thinking = replace(spec, reasoning="reasoning") if spec.reasoning is not None else spec
        # a scripted reply, else one set for this prompt, else a grade for a judge's prompt (as on /v1)
        scripted = app.scripts.pop(spec.id)
        if scripted is None:
            scripted = app.answers.get(spec.id, messages) or judge_reply(messages)
        try:
            seen = images_seen(spec, messages, app.style(spec))  # what a vision model sees, as on /v1
        except ImageRefused as refused:
            raise native_error(refused.reply) from None
        gen = plan_chat(thinking, openai_body, messages, scripted=scripted, reply_tokens=app.settings.reply_tokens,
                        seen=seen_note(seen) if seen else "")
        raw = body.get("integrations") or []
        integrations = [label for label in map(integration_label, raw if isinstance(raw, list) else [])
                        if label is not None]
        return Plan(spec, messages, gen, integrations, body.get("store", True) is not False, body.get("stream") is True)

    async def _loaded(self, spec: ModelSpec, body: Mapping[str, Any]) -> asyncio.Future[Instance]:
        """Start getting the model's instance (loading it just in time); a failure becomes a native error."""
        async def get() -> Instance:
            try:
                inst: Instance = await self.app._instance(spec, PATH, body.get("ttl"))
                return inst
            except Exception as exc:
                reply = getattr(exc, "reply", None)
                if reply is None:
                    raise
                raise native_error(reply) from None

        task = asyncio.ensure_future(get())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # never "exception was never retrieved"
        return task

    def _check_context(self, plan: Plan, inst: Instance) -> int:
        n_prompt = prompt_tokens(plan.messages)
        if n_prompt > inst.context_length:
            message = errors.context_overflow_event(n_prompt, inst.context_length)["message"]
            raise NativeFailure(400, {"type": "invalid_request", "message": message, "code": "context_length_exceeded"})
        return n_prompt

    # --- the answer -------------------------------------------------------------------------------------------
    def _output(self, plan: Plan) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        reasoning = "".join(t for name, t in plan.gen.deltas if name != "content")
        if reasoning:
            out.append({"type": "reasoning", "content": reasoning})
        out.extend(self._tool_item(label, plan) for label in plan.integrations)
        out.append({"type": "message", "content": plan.gen.text("content")})
        return out

    @staticmethod
    def _tool_item(label: str, plan: Plan) -> dict[str, Any]:
        query = str(plan.messages[-1].get("content"))[:40]
        provider = {"type": "plugin", "plugin_id": f"mcp/{label}"}
        if label == "failing":
            return {"type": "invalid_tool_call", "reason": f"mcp/{label} is not reachable (fake failure)",
                    "metadata": {"type": "invalid_name", "tool_name": f"{label}_search"}}
        return {"type": "tool_call", "tool": f"{label}_search", "arguments": {"query": query},
                "output": f"[fake {label} result for {query!r}]", "provider_info": provider}

    def _result(self, plan: Plan, inst: Instance, n_prompt: int, *, ttft: float, generating: float,
                load_time: float | None) -> dict[str, Any]:
        gen, spec = plan.gen, plan.spec
        tokens = gen.completion_tokens
        tps = spec.tokens_per_second if spec.tokens_per_second > 0 else (
            round(tokens / generating, 2) if generating > 0 else 1000.0)
        stats: dict[str, Any] = {
            "input_tokens": n_prompt, "total_output_tokens": tokens, "reasoning_output_tokens": gen.reasoning_count,
            "tokens_per_second": tps, "time_to_first_token_seconds": round(ttft, 3),
        }
        if load_time is not None:
            stats["model_load_time_seconds"] = round(load_time, 3)
        result: dict[str, Any] = {"model_instance_id": inst.model_id, "output": self._output(plan), "stats": stats}
        if plan.store:
            answer = {"role": "assistant", "content": gen.text("content")}
            result["response_id"] = self.chats.put([*plan.messages, answer])
        return result

    def _events(self, plan: Plan, result: Mapping[str, Any], framing: Framing) -> Iterator[Event]:
        """The events after the prompt was read: reasoning, tools, message (one token event per token), chat.end.
        The events between tokens ride with the next token (the stream's pacing and faults count token events;
        an event that is not a token is taken as the end)."""
        pending: list[bytes] = []

        def event(name: str, payload: Mapping[str, Any]) -> None:
            pending.append(framing.event(name, _dumps({"type": name, **payload})))

        def token(name: str, text: str) -> Event:
            event(name, {"content": text})
            data = b"".join(pending)
            pending.clear()
            return True, data

        thinking = [t for name, t in plan.gen.deltas if name != "content"]
        answer = [t for name, t in plan.gen.deltas if name == "content"]
        if thinking:
            event("reasoning.start", {})
            for text in thinking:
                yield token("reasoning.delta", text)
            event("reasoning.end", {})
        for item in result["output"]:
            if item["type"] == "tool_call":
                info = {"tool": item["tool"], "provider_info": item["provider_info"]}
                event("tool_call.start", info)
                event("tool_call.arguments", {**info, "arguments": item["arguments"]})
                event("tool_call.success", {**info, "arguments": item["arguments"], "output": item["output"]})
            elif item["type"] == "invalid_tool_call":
                event("tool_call.failure", {"reason": item["reason"], "metadata": item["metadata"]})
        event("message.start", {})
        for text in answer:
            yield token("message.delta", text)
        event("message.end", {})
        event("chat.end", {"result": result})
        yield False, b"".join(pending)

    async def handle(self, body: Any, writer: asyncio.StreamWriter, extra: list[tuple[str, str]], keep_alive: bool,
                     client_left: asyncio.Future[None]) -> None:
        stream = isinstance(body, dict) and body.get("stream") is True
        if not stream:
            try:
                data = await self._whole(body, client_left)
            except NativeFailure as failure:
                write_response(writer, failure.status, dump_json({"error": failure.error}), headers=extra,
                               keep_alive=keep_alive)
                return
            if data is not None:
                write_response(writer, 200, dump_json(data), headers=extra, keep_alive=keep_alive)
            return
        framing = Framing(b"\n")
        try:
            plan = self._plan(body)
        except NativeFailure as failure:  # an unknown model, a bad input: error then chat.end, in the stream
            await NativeStream(self, ChunkedBody.start(writer, 200, "text/event-stream", extra), framing,
                               client_left).fail(failure)
            return
        # a 500 or 429 fault answers with its status before any work (a Reply the app writes)
        faults = await self.app._generation_faults(plan.spec, PATH)
        chunked = ChunkedBody.start(writer, 200, "text/event-stream", extra)
        await NativeStream(self, chunked, framing, client_left).run(plan, faults, body)

    async def _whole(self, body: Any, client_left: asyncio.Future[None]) -> dict[str, Any] | None:
        app = self.app
        plan = self._plan(body)
        faults = await app._generation_faults(plan.spec, PATH)
        view = app.scheduler.view(plan.spec.id)
        started = _load_began(view, app.clock.now())
        inst = await (await self._loaded(plan.spec, body))
        was_loaded = view is not None and view.state == "loaded"
        load_time = None if was_loaded else _load_seconds(plan.spec, app.clock.now() - started)
        n_prompt = self._check_context(plan, inst)
        spec = plan.spec
        gen_time = plan.gen.completion_tokens / spec.tokens_per_second if spec.tokens_per_second else 0.0
        async with app.scheduler.slot(inst):
            if any(f.kind in ("drop", "stall") for f in faults) or (
                    spec.ttft + gen_time > 0 and not await pause(app.clock, spec.ttft + gen_time, client_left)):
                app.scheduler.count_abandoned(spec.id)
                return None
        return self._result(plan, inst, n_prompt, ttft=spec.ttft, generating=gen_time, load_time=load_time)


class NativeStream:
    """One streamed native answer, event by event, paced on the server's clock."""

    def __init__(self, chat: NativeChat, body: ChunkedBody, framing: Framing, client_left: asyncio.Future[None]):
        self.chat = chat
        self.app = chat.app
        self.body = body
        self.framing = framing
        self.client_left = client_left
        self.instance: str | None = None

    def _write(self, name: str, payload: Mapping[str, Any]) -> None:
        self.body.write(self.framing.event(name, _dumps({"type": name, **payload})))

    async def _flush(self) -> bool:
        try:
            await self.body.flush()
        except ConnectionError:
            return False
        return not (self.body.closed or self.client_left.done())

    async def fail(self, failure: NativeFailure) -> None:
        self._write("error", {"error": failure.error})
        self._write("chat.end", {"result": {"model_instance_id": self.instance, "output": [], "stats": {}}})
        if await self._flush():
            await self.body.finish()

    async def run(self, plan: Plan, faults: list[Fault], body: Mapping[str, Any]) -> None:
        app = self.app
        spec = plan.spec
        self.instance = spec.id
        self._write("chat.start", {"model_instance_id": spec.id})
        view = app.scheduler.view(spec.id)
        started = _load_began(view, app.clock.now())  # a load under way (another request's): its own start
        task = await self.chat._loaded(spec, body)
        load_time: float | None = None
        try:
            if view is None or view.state != "loaded":
                joined = view is not None and view.state == "loading"
                if not await self._load_progress(spec, task, started, joined):
                    return
                inst = await task
                load_time = _load_seconds(spec, app.clock.now() - started)
                self._write("model_load.end", {"model_instance_id": spec.id, "load_time_seconds": round(load_time, 3)})
            else:
                inst = await task
            n_prompt = self.chat._check_context(plan, inst)
        except NativeFailure as failure:
            await self.fail(failure)
            return
        async with app.scheduler.slot(inst):
            ttft = spec.ttft
            if n_prompt >= PROMPT_PROCESSING_TOKENS:
                if not await self._stage("prompt_processing", spec.ttft):
                    app.scheduler.count_abandoned(spec.id)
                    return
                ttft = 0.0
            if any(f.kind == "empty_stream" for f in faults):
                plan.gen = Generation([], "stop", "eosFound")
            gen_time = plan.gen.completion_tokens / spec.tokens_per_second if spec.tokens_per_second else 0.0
            result = self.chat._result(plan, inst, n_prompt, ttft=spec.ttft, generating=gen_time,
                                       load_time=load_time)
            sender = StreamWriter(self.body, ttft=ttft, tokens_per_second=spec.tokens_per_second,
                                  quirks=app.quirks_for(spec), framing=self.framing,
                                  faults=[f for f in faults if f.kind != "empty_stream"],
                                  error_payload=_stream_fault, clock=app.clock, client_left=self.client_left,
                                  after_error=lambda sent: self._partial_end(plan, result, sent))
            await sender.send(self.chat._events(plan, result, self.framing))
            if sender.client_gone:
                app.scheduler.count_abandoned(spec.id)

    def _partial_end(self, plan: Plan, result: Mapping[str, Any], tokens_sent: int) -> bytes:
        """``chat.end`` after an in-stream error: the answer as far as it went (LM Studio always ends with it)."""
        deltas = plan.gen.deltas
        sent = ([d for d in deltas if d[0] != "content"] + [d for d in deltas if d[0] == "content"])[:tokens_sent]
        text = "".join(t for name, t in sent if name == "content")
        partial = {**result, "output": [{"type": "message", "content": text}] if text else [],
                   "stats": {**result["stats"], "total_output_tokens": tokens_sent}}
        return self.framing.event("chat.end", _dumps({"type": "chat.end", "result": partial}))

    async def _load_progress(self, spec: ModelSpec, task: asyncio.Future[Instance], started: float,
                             joined: bool = False) -> bool:
        """``model_load.start`` and ``.progress`` while the load runs (paced by its load time); False when the
        client left.

        Every step is reported, in order, whatever the machine's load, each when it is due (``started`` plus its
        share of the load time; at once when that has passed): a busy event loop may let the load's own timer fire
        before the last steps' pauses end, and stopping there made the number of progress events (and the lines a
        notebook printed) vary from run to run. The stream's load ends after its last step. A request that joins a
        load under way (``started`` is the load's start) hears where the load is now, then the steps still to come."""
        self._write("model_load.start", {"model_instance_id": spec.id})
        if spec.load_time > 0:
            clock, step = self.app.clock, spec.load_time / LOAD_PROGRESS_STEPS
            first = 1
            if joined and clock.now() - started >= step:  # where the load is, not the steps it passed before
                first = min(LOAD_PROGRESS_STEPS, int((clock.now() - started) / step) + 1)
                fraction = min(1.0, (clock.now() - started) / spec.load_time)
                self._write("model_load.progress", {"model_instance_id": spec.id, "progress": round(fraction, 3)})
            for i in range(first, LOAD_PROGRESS_STEPS):
                if not await self._flush():
                    return False
                wait = started + i * step - clock.now()
                if wait > 0 and not await pause(clock, wait, self.client_left):
                    return False
                # where the load was when this report was due (a late event loop does not change what it says)
                fraction = i / LOAD_PROGRESS_STEPS
                self._write("model_load.progress", {"model_instance_id": spec.id, "progress": round(fraction, 3)})
        if not await self._flush():
            return False
        done, _ = await asyncio.wait((task, self.client_left), return_when=asyncio.FIRST_COMPLETED)
        return task in done or not self.client_left.done()

    async def _stage(self, stage: str, seconds: float) -> bool:
        """A stage before the answer (``prompt_processing``) with its progress over ``seconds``."""
        self._write(f"{stage}.start", {})
        steps = 4
        for i in range(1, steps):
            if seconds > 0 and (not await self._flush() or not await pause(self.app.clock, seconds / steps,
                                                                             self.client_left)):
                return False
            self._write(f"{stage}.progress", {"progress": i / steps})
        if seconds > 0 and not await pause(self.app.clock, seconds / steps, self.client_left):
            return False
        self._write(f"{stage}.end", {})
        return await self._flush()


def _stream_fault() -> dict[str, Any]:
    message = errors.stream_fault_event()["message"]
    return {"type": "error", "error": {"type": "internal_error", "message": message}}


def _load_began(view: LoadedView | None, now: float) -> float:
    """When the load a request waits for began: a load under way (another request's, or %lm_load's) began before
    it; else it begins now."""
    if view is not None and view.state == "loading" and view.load_started is not None:
        return view.load_started
    return now


def _load_seconds(spec: ModelSpec, waited: float) -> float:
    """How long the answer waited for its model's load: none for a model that loads in no time (what the server's
    event loop took meanwhile is no load: reported, it made a footer say "loaded in 0.0 s" on a busy machine only)."""
    return waited if spec.load_time > 0 else 0.0
