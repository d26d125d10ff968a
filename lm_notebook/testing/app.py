"""LM Studio's HTTP API as one request handler: routing, auth, CORS, models, and generation.

Everything here runs on the server's event loop; configuration that tests change from their own thread
(models, quirks, faults, scripts) is read through thread-safe holders. Every pause (pacing, stalls, loading) is taken
on the scheduler's clock.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import string
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from lm_notebook.testing import error_bodies as errors
from lm_notebook.testing.answers import answer_body, usage_body
from lm_notebook.testing.app_models import AppModels, Reply, Settings
from lm_notebook.testing.catalogue import ModelSpec, openai_listing, v0_model, v1_model
from lm_notebook.testing.clock import Clock
from lm_notebook.testing.downloads import FakeDownloads
from lm_notebook.testing.faults import STREAM_FAULTS, Fault, FaultBook
from lm_notebook.testing.generation import Generation, plan_chat, plan_completion
from lm_notebook.testing.native_chat import NativeChat
from lm_notebook.testing.recording import ChangeSignal, RecordedRequest, RequestLog, ScriptBook, safe_headers
from lm_notebook.testing.replies import prompt_tokens
from lm_notebook.testing.scheduler import Scheduler
from lm_notebook.testing.semantics import PromptReplies, bag_of_words_embedding, judge_reply
from lm_notebook.testing.streaming import Framing, StreamWriter, chat_events, pause
from lm_notebook.testing.tool_calls import (
    TOOL_FAULTS,
    ToolScriptBook,
    faulted,
    offered_tools,
    plan_tool_calls,
    tool_answer,
)
from lm_notebook.testing.vision import ImageRefused, images_seen, seen_note
from lm_notebook.testing.wire import ChunkedBody, Request, dump_json, write_response

_ID_CHARS = string.ascii_lowercase + string.digits
_ids = random.Random()  # ids need not be reproducible, only unique-looking
_GENERATION_PATHS = frozenset({"/v1/chat/completions", "/api/v0/chat/completions", "/v1/completions",
                               "/v1/embeddings", "/api/v1/chat"})


class Dropped(Exception):
    """The connection was cut on purpose (a ``drop`` fault): no answer, close."""


class LMStudioApp(AppModels):
    """LM Studio's HTTP API: :meth:`handle` answers one request (its models: :class:`AppModels`)."""

    def __init__(self, models: Sequence[ModelSpec], settings: Settings, scheduler_options: Mapping[str, Any],
                 clock: Clock | None = None) -> None:
        self.settings = settings
        self._models_lock = threading.Lock()
        self._models: dict[str, ModelSpec] = {m.id: m for m in models}
        self.signal = ChangeSignal()
        self.scheduler = Scheduler(self.models, clock=clock, signal=self.signal, **scheduler_options)
        self.clock: Clock = self.scheduler.clock
        self.faults = FaultBook()
        self.log = RequestLog(self.signal)
        self.scripts = ScriptBook()
        self.tool_scripts = ToolScriptBook()
        self.answers = PromptReplies()
        self.native = NativeChat(self)  # LM Studio 0.4's POST /api/v1/chat (testing/native_chat.py)
        self.downloads = FakeDownloads(self)  # LM Studio 0.4's model downloads (testing/downloads.py)

    # --- entry point (event loop) ------------------------------------------------------------------------------
    async def handle(self, request: Request, writer: asyncio.StreamWriter,
                     client_left: asyncio.Future[None] | None = None) -> bool:
        """Answer one request; False when the connection must close afterwards. ``client_left`` is done once the
        client has gone away (a paced answer then ends at once)."""
        body_json = _parse_json(request.body)
        self.log.add(RecordedRequest(request.method, request.path, request.query, safe_headers(request.headers),
                                     body_json, time.time()))
        keep_alive = request.keep_alive
        path = request.path.rstrip("/") or "/"  # Express routes ignore a trailing slash
        origin = request.headers.get("origin")
        cors = self.settings.cors
        if request.method == "OPTIONS" and cors is not None:
            write_response(writer, 204, b"", content_type=None, headers=cors.headers_for(origin, preflight=True),
                           keep_alive=keep_alive)
            return keep_alive
        extra = cors.headers_for(origin, preflight=False) if cors is not None and origin else []
        try:
            # the greeting says who answers (and nothing else), with or without a token: a client that lacks it
            # still learns this is the fake, so its advice and footers name the fake server
            if path != "/lmstudio-greeting" and not self._authorized(request):
                raise Reply(errors.unauthorized())
            await self._path_faults(path, body_json)
            handled = await self._route(request.method, path, body_json, writer, extra, keep_alive,
                                        client_left or asyncio.get_running_loop().create_future())
            if handled is None:
                raise Reply(errors.unexpected_endpoint(request.method, request.path))
            return keep_alive
        except Reply as answer:
            reply = answer.reply
            write_response(writer, reply.status, reply.body, content_type=reply.content_type,
                           headers=reply.headers + extra, keep_alive=keep_alive)
            return keep_alive
        except Dropped:
            writer.transport.abort()
            return False

    def _authorized(self, request: Request) -> bool:
        token = self.settings.auth_token
        if token is None or self.settings.version == "0.3":  # auth arrived in 0.4
            return True
        sent = request.headers.get("authorization", "")
        scheme, _, value = sent.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())

    async def _path_faults(self, path: str, body: Any) -> None:
        if path in _GENERATION_PATHS:
            return  # a fault aimed at a generation route is applied there, where streams can break mid-way
        model = body.get("model") if isinstance(body, dict) else None
        for fault in self.faults.take(frozenset({"500", "429", "stall", "drop"}), model=model, path=path,
                                      generation=False):
            await self._pre_fault(fault)

    async def _route(self, method: str, path: str, body: Any, writer: asyncio.StreamWriter,
                     extra: list[tuple[str, str]], keep_alive: bool, client_left: asyncio.Future[None]) -> bool | None:
        def send(payload: Any, status: int = 200) -> bool:
            write_response(writer, status, dump_json(payload), headers=extra, keep_alive=keep_alive)
            return True

        v04 = self.settings.version == "0.4"
        if method == "GET":
            if path == "/lmstudio-greeting":
                # LM Studio's answer, plus the one field that tells a client this is the bundled fake server
                return send({"lmstudio": True, "lm_notebook_fake": True})
            if path == "/v1/models":
                return send(openai_listing(self._listed_models()))
            if path == "/api/v0/models":
                return send({"object": "list", "data": [v0_model(m, self.scheduler.view(m.id))
                                                        for m in self.models().values()]})
            if path.startswith("/api/v0/models/"):
                model_id = path[len("/api/v0/models/"):]
                spec = self.models().get(model_id)
                if spec is None:
                    raise Reply(errors.unknown_model(model_id, self._available_ids(), self.style()))
                return send(v0_model(spec, self.scheduler.view(model_id)))
            if path.startswith("/api/v1/models/download/status/") and v04:
                state = self.downloads.status(path.rsplit("/", 1)[-1])
                if state is None:
                    raise Reply(errors.bad_request(f"No download job with id {path.rsplit('/', 1)[-1]!r}",
                                                   self.style()))
                return send(state)
            if path == "/api/v1/models" and v04:
                return send({"models": [v1_model(m, self.scheduler.view(m.id)) for m in self.models().values()]})
            return None
        if method != "POST":
            return None
        if path in ("/v1/chat/completions", "/api/v0/chat/completions"):
            await self._chat(path, body, writer, extra, keep_alive, client_left, completion=False)
            return True
        if path == "/v1/completions":
            await self._chat(path, body, writer, extra, keep_alive, client_left, completion=True)
            return True
        if path == "/api/v1/models/download" and v04:
            job = self.downloads.start(body)
            if job is None:
                raise Reply(errors.bad_request("'model' is required", self.style()))
            return send(job)
        if path == "/api/v1/chat" and v04:
            await self.native.handle(body, writer, extra, keep_alive, client_left)
            return True
        if path == "/v1/embeddings":
            return send(await self._embeddings(path, body))
        if path == "/api/v1/models/load" and v04:
            return send(await self._load(body))
        if path == "/api/v1/models/unload" and v04:
            instance_id = body.get("instance_id") if isinstance(body, dict) else None
            if not isinstance(instance_id, str) or not self.scheduler.unload(instance_id):
                raise Reply(errors.not_found_instance(str(instance_id), self.style()))
            return send({"instance_id": instance_id})
        return None

    # --- generation --------------------------------------------------------------------------------------------
    async def _pre_fault(self, fault: Fault) -> None:
        """A fault that strikes before any work: an error status, a pause, or a cut connection."""
        if fault.kind == "500":
            raise Reply(errors.server_error())
        if fault.kind == "429":
            raise Reply(errors.rate_limited(fault.retry_after))
        if fault.kind == "stall":
            await self.clock.sleep(fault.seconds)
        if fault.kind == "drop":
            raise Dropped

    async def _generation_faults(self, spec: ModelSpec, path: str) -> list[Fault]:
        for fault in self.faults.take(frozenset({"500", "429"}), model=spec.id, path=path, generation=True):
            await self._pre_fault(fault)
        return self.faults.take(STREAM_FAULTS, model=spec.id, path=path, generation=True)

    async def _embeddings(self, path: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise Reply(errors.bad_request("Request body must be a JSON object", self.style()))
        spec = self._resolve(body, path, want_embedding=True)
        await self._generation_faults(spec, path)
        inst = await self._instance(spec, path, body.get("ttl"))
        raw = body.get("input", "")
        texts = [raw] if isinstance(raw, str) else [str(t) for t in raw or []]
        async with self.scheduler.slot(inst):
            data = [{"object": "embedding", "embedding": bag_of_words_embedding(t, spec.id, spec.embedding_dimensions),
                     "index": i} for i, t in enumerate(texts)]
        return {"object": "list", "data": data, "model": spec.id, "usage": {"prompt_tokens": 0, "total_tokens": 0}}

    async def _chat(self, path: str, body: Any, writer: asyncio.StreamWriter, extra: list[tuple[str, str]],
                    keep_alive: bool, client_left: asyncio.Future[None], *, completion: bool) -> None:
        if not isinstance(body, dict):
            raise Reply(errors.bad_request("Request body must be a JSON object", self.style()))
        if completion:
            prompt = body.get("prompt")
            messages: list[dict[str, Any]] = [{"role": "user", "content": prompt if isinstance(prompt, str)
                                               else " ".join(map(str, prompt or []))}]
        else:
            raw_messages = body.get("messages")
            if not isinstance(raw_messages, list) or not all(isinstance(m, dict) for m in raw_messages):
                raise Reply(errors.bad_request("'messages' must be an array of message objects", self.style()))
            messages = raw_messages
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") not in (None, "json_schema", "text"):
            raise Reply(errors.json_object_rejected())
        spec = self._resolve(body, path, want_embedding=False)
        try:
            seen = images_seen(spec, messages, self.style(spec))
        except ImageRefused as refused:
            raise Reply(refused.reply) from None
        faults = await self._generation_faults(spec, path)
        inst = await self._instance(spec, path, body.get("ttl"))
        quirks = self.quirks_for(spec)
        framing = Framing(quirks.line_ending.encode())
        stream = body.get("stream") is True
        n_prompt = prompt_tokens(messages)
        if n_prompt > inst.context_length:
            if not stream:
                raise Reply(errors.context_overflow(n_prompt, inst.context_length))
            chunked = ChunkedBody.start(writer, 200, "text/event-stream", extra)
            chunked.write(framing.event("error", dump_json(errors.context_overflow_event(n_prompt,
                                                                                          inst.context_length))))
            await chunked.finish()
            return
        tool_round = self.tool_scripts.pop(spec.id) if not completion and offered_tools(body) else None
        scripted = None if tool_round is not None else self.scripts.pop(spec.id)
        if scripted is None and tool_round is None and not completion and not offered_tools(body):
            # a reply set for this prompt, else a grade for a judge's prompt
            scripted = self.answers.get(spec.id, messages) or judge_reply(messages)
        reply_tokens = self.settings.reply_tokens
        if completion:
            gen = plan_completion(spec, body, scripted=scripted, reply_tokens=reply_tokens)
        else:
            plans = plan_tool_calls(body, messages, tool_round) if scripted is None else []
            if plans:
                kinds = [f.kind for f in self.faults.take(TOOL_FAULTS, model=spec.id, path=path, generation=True)]
                plans = faulted(plans, kinds, body)
            gen = plan_chat(spec, body, messages, scripted=scripted, reply_tokens=reply_tokens, tool_plans=plans,
                            tool_text=tool_answer(messages) if offered_tools(body) else None,
                            seen=seen_note(seen) if seen else "",
                            break_schema=any(f.kind == "break_schema" for f in faults))
        if any(f.kind == "empty_stream" for f in faults):
            gen = Generation([], "stop", "eosFound")
        faults = [f for f in faults if f.kind not in ("empty_stream", "break_schema")]
        chunk_id = ("cmpl-" if completion else "chatcmpl-") + "".join(_ids.choices(_ID_CHARS, k=18))
        created = int(time.time())
        usage = usage_body(n_prompt, gen, quirks.extended_fields)
        async with self.scheduler.slot(inst):
            if stream:
                options = body.get("stream_options")
                with_usage = isinstance(options, dict) and options.get("include_usage") is True
                chunked = ChunkedBody.start(writer, 200, "text/event-stream", extra)
                events = chat_events(gen, chunk_id=chunk_id, created=created, model=spec.id, framing=framing,
                                     usage=usage if with_usage else None, completion=completion,
                                     keep_alive_every=quirks.keep_alive_every)
                sender = StreamWriter(chunked, ttft=spec.ttft, tokens_per_second=spec.tokens_per_second,
                                      quirks=quirks, framing=framing, faults=faults,
                                      error_payload=errors.stream_fault_event, clock=self.clock,
                                      client_left=client_left)
                await sender.send(events)
                if sender.client_gone:
                    self.scheduler.count_abandoned(spec.id)
                if not chunked.finished:
                    raise Dropped
                return
            started = self.clock.now()
            pace = spec.ttft + (gen.completion_tokens / spec.tokens_per_second if spec.tokens_per_second else 0)
            for fault in faults:
                if fault.kind == "drop":
                    raise Dropped
                if fault.kind == "stall" and not await pause(self.clock, fault.seconds, client_left):
                    self.scheduler.count_abandoned(spec.id)
                    raise Dropped
            if pace > 0 and not await pause(self.clock, pace, client_left):
                self.scheduler.count_abandoned(spec.id)
                raise Dropped  # the client gave up waiting: nobody to answer
            elapsed = self.clock.now() - started
            answer = answer_body(spec, gen, path=path, chunk_id=chunk_id, created=created, usage=usage,
                                 quirks=quirks, elapsed=elapsed, completion=completion,
                                 context_length=inst.context_length)
            data = dump_json(answer)
            if any(f.kind == "malformed_chunk" for f in faults):
                data = data[: len(data) // 2]
            write_response(writer, 200, data, headers=extra, keep_alive=keep_alive)


def _parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
