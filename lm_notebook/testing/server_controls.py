"""The fake server's handles for a test: its models and scheduling, scripted replies, quirks and faults, the
request log and counters, and waiting on them — each run on the server's loop thread where it touches its timers.

:class:`~lm_notebook.testing.server.MockLMStudioServer` is these handles over its lifecycle and loopback serving.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal, TypeVar

from lm_notebook.testing.app import LMStudioApp
from lm_notebook.testing.catalogue import ModelSpec
from lm_notebook.testing.downloads import FakeDownloads
from lm_notebook.testing.faults import Fault, FaultKind, Quirks
from lm_notebook.testing.recording import RecordedRequest
from lm_notebook.testing.scheduler import Counters

T = TypeVar("T")


class ServerControls:
    """What a test does to (and reads from) a running fake server; the server sets the app, its loop and thread."""

    _app: LMStudioApp
    _loop: asyncio.AbstractEventLoop | None
    _thread: threading.Thread | None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _on_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop thread (it may touch asyncio timers), or here when stopped."""
        if self._loop is not None and self.running:
            return asyncio.run_coroutine_threadsafe(_run(fn), self._loop).result()
        return fn()

    # --- models and scheduling -------------------------------------------------------------------------------
    @property
    def models(self) -> dict[str, ModelSpec]:
        return self._app.models()

    def add_model(self, spec: ModelSpec) -> None:
        """Add (or replace) a downloaded model; loaded at once when ``spec.loaded``."""
        self._app.put_model(spec)
        if spec.loaded:
            self._app.scheduler.load_now(spec)

    def update_model(self, model_id: str, **changes: Any) -> ModelSpec:
        """Change a model's settings (pacing, reply_tokens, reasoning, ...); affects later requests."""
        return self._app.update_model(model_id, **changes)

    def load_model(self, model_id: str, *, context_length: int | None = None, ttl: float | None = None) -> None:
        """Load like ``lms load`` (waits the model's load time when the server is running)."""
        spec = self._app.models()[model_id]
        if not self.running:
            self._app.scheduler.load_now(spec, context_length=context_length, ttl=ttl)
            return
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(
            self._app.scheduler.ensure_loaded(spec, jit=False, context_length=context_length, ttl=ttl), self._loop
        ).result()

    def unload_model(self, model_id: str) -> bool:
        return self._on_loop(lambda: self._app.scheduler.unload(model_id))

    def unload_all(self) -> list[str]:
        return self._on_loop(self._app.scheduler.unload_all)

    def loaded_models(self) -> list[str]:
        return self._app.scheduler.loaded_ids()

    @property
    def jit_loading(self) -> bool:
        return self._app.scheduler.jit_loading

    @jit_loading.setter
    def jit_loading(self, value: bool) -> None:
        self._app.scheduler.jit_loading = value

    @property
    def auto_evict(self) -> bool:
        return self._app.scheduler.auto_evict

    @auto_evict.setter
    def auto_evict(self, value: bool) -> None:
        self._app.scheduler.auto_evict = value

    # --- replies ---------------------------------------------------------------------------------------------
    def script(self, model: str, *replies: str) -> None:
        """Queue replies for ``model``: each later request to it gets the next one instead of generated text."""
        self._app.scripts.add(model, replies)

    def script_tool_calls(self, model: str, *rounds: Sequence[tuple[str, Mapping[str, Any] | str]]) -> None:
        """Queue rounds of tool calls for ``model``: each later request to it that offers tools calls the next
        round's ``(name, arguments)`` (a dict, or raw text sent as it is), whatever the conversation.

        >>> server.script_tool_calls(QWEN, [("lookup", {"city": "Paris"})], [("f", "{bad")])  # doctest: +SKIP
        """
        self._app.tool_scripts.add(model, rounds)

    def answer(self, model: str, prompt: str, reply: str) -> None:
        """``model`` (``"*"``: any model) answers ``reply`` whenever the last user message is exactly ``prompt``
        (queued :meth:`script` replies come first); see :mod:`lm_notebook.testing.semantics`."""
        self._app.answers.set(model, prompt, reply)

    @property
    def reply_tokens(self) -> int | None:
        return self._app.settings.reply_tokens

    @reply_tokens.setter
    def reply_tokens(self, value: int | None) -> None:
        self._app.settings.reply_tokens = value

    # --- quirks and faults -----------------------------------------------------------------------------------
    def set_quirks(self, model: str | None = None, **changes: Any) -> Quirks:
        """Change quirks for every model (``model=None``) or one model; returns the quirks now in force."""
        if model is None:
            self._app.settings.quirks = replace(self._app.settings.quirks, **changes)
            return self._app.settings.quirks
        spec = self._app.models()[model]
        quirks = replace(spec.quirks or self._app.settings.quirks, **changes)
        self._app.update_model(model, quirks=quirks)
        return quirks

    @property
    def downloads(self) -> FakeDownloads:
        """The model download jobs (LM Studio 0.4): ``server.downloads.seconds`` is how long one takes on the clock."""
        return self._app.downloads

    def set_fault(
        self,
        kind: FaultKind,
        *,
        model: str | None = None,
        path: str | None = None,
        times: int | None = None,
        seconds: float = 0.0,
        after_chunks: int = 0,
        retry_after: float | None = 1.0,
        form: Literal["event", "data"] = "event",
    ) -> Fault:
        """Switch a fault on (see :mod:`lm_notebook.testing.faults` for the kinds); ``times=None`` keeps it on."""
        return self._app.faults.add(Fault(kind, model=model, path=path, times=times, seconds=seconds,
                                          after_chunks=after_chunks, retry_after=retry_after, form=form))

    def clear_faults(self, model: str | None = None) -> None:
        self._app.faults.clear(model)

    @property
    def faults(self) -> list[Fault]:
        return self._app.faults.active()

    # --- observation -----------------------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, oldest first (headers without credentials)."""
        return self._app.log.items()

    @property
    def last_request(self) -> RecordedRequest | None:
        items = self._app.log.items()
        return items[-1] if items else None

    def clear_requests(self) -> None:
        self._app.log.clear()

    def wait_for_requests(self, count: int, *, path: str | tuple[str, ...] | None = None, model: str | None = None,
                          timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until the request log holds at least ``count`` requests (to ``path``, or any of several paths, for
        ``model``, when given); returns them. A request is logged as soon as it arrives, before any work on it.
        ``path=CHAT_PATHS`` counts chat requests on either route.

        Raises ``TimeoutError`` with what did arrive when they do not come within ``timeout`` seconds.
        """
        def matching() -> list[RecordedRequest]:
            return [r for r in self._app.log.items()
                    if (path is None or r.path == path or (isinstance(path, tuple) and r.path in path))
                    and (model is None or r.model == model)]

        if not self._app.signal.wait_until(lambda: len(matching()) >= count, timeout):
            seen = [f"{r.method} {r.path}" + (f" ({r.model})" if r.model else "") for r in self._app.log.items()]
            raise TimeoutError(f"{len(matching())} of {count} requests (path={path!r}, model={model!r}) arrived in "
                               f"{timeout:g} s; the log holds: {', '.join(seen) or 'nothing'}")
        return matching()

    def wait_until(self, condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """Block until ``condition()`` is true, checking it again whenever a request arrives or a counter or a
        loaded model changes (no polling). Raises ``TimeoutError`` when it is still false after ``timeout`` s.

        >>> server.wait_until(lambda: server.counters.abandoned == 1)   # doctest: +SKIP
        """
        if not self._app.signal.wait_until(condition, timeout):
            raise TimeoutError(f"the condition is still false after {timeout:g} s (counters: {self.counters}, "
                               f"loaded: {self.loaded_models()}, {len(self.requests)} requests logged)")

    @property
    def counters(self) -> Counters:
        """Loads, evictions, expirations, requests, peaks and abandoned streams, in total and per model."""
        return self._app.scheduler.counters()

    def reset_counters(self) -> None:
        self._app.scheduler.reset_counters()


async def _run(fn: Callable[[], T]) -> T:
    return fn()
