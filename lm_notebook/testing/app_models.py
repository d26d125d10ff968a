"""The fake server's models, as its request handler keeps them: configured from any thread (added, changed, their
quirks), listed as LM Studio lists them, a request's model resolved (or refused as LM Studio refuses it), and loaded
just in time or on request."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from lm_notebook.testing import error_bodies as errors
from lm_notebook.testing.catalogue import ModelSpec
from lm_notebook.testing.cors import CorsPolicy
from lm_notebook.testing.faults import ErrorStyle, FaultBook, Quirks
from lm_notebook.testing.scheduler import Instance, LoadFailed, Scheduler

Version = Literal["0.3", "0.4"]


class Reply(Exception):
    """Answer now with this error (raised from deep inside a handler)."""

    def __init__(self, reply: errors.ErrorReply) -> None:
        super().__init__(reply.status)
        self.reply = reply


@dataclass
class Settings:
    """Server-wide behaviour; see :class:`~lm_notebook.testing.server.MockLMStudioServer`."""

    version: Version = "0.4"
    auth_token: str | None = field(default=None, repr=False)  # a secret: never in a repr or an assertion diff
    cors: CorsPolicy | None = None
    quirks: Quirks = field(default_factory=Quirks)
    reply_tokens: int | None = None
    lenient_model_id: bool = False


class AppModels:
    """The models part of :class:`~lm_notebook.testing.app.LMStudioApp` (which sets these attributes)."""

    settings: Settings
    scheduler: Scheduler
    faults: FaultBook
    _models_lock: threading.Lock
    _models: dict[str, ModelSpec]

    # --- configuration (any thread) ----------------------------------------------------------------------------
    def models(self) -> dict[str, ModelSpec]:
        with self._models_lock:
            return dict(self._models)

    def put_model(self, spec: ModelSpec) -> None:
        with self._models_lock:
            self._models[spec.id] = spec

    def update_model(self, model_id: str, **changes: Any) -> ModelSpec:
        with self._models_lock:
            spec = replace(self._require(model_id), **changes)
            self._models[model_id] = spec
            return spec

    def _require(self, model_id: str) -> ModelSpec:
        if model_id not in self._models:
            raise KeyError(f"no model {model_id!r}; known: {', '.join(self._models)}")
        return self._models[model_id]

    def quirks_for(self, spec: ModelSpec | None) -> Quirks:
        quirks = spec.quirks if spec is not None and spec.quirks is not None else self.settings.quirks
        return quirks if quirks.error_style is not None else replace(quirks, error_style=self.settings.version)

    def style(self, spec: ModelSpec | None = None) -> ErrorStyle:
        return self.quirks_for(spec).error_style or self.settings.version

    # --- models ------------------------------------------------------------------------------------------------
    def _listed_models(self) -> list[ModelSpec]:
        """``/v1/models`` lists every downloaded model with JIT loading on, only the loaded ones with it off."""
        models = self.models()
        if self.scheduler.jit_loading:
            return list(models.values())
        return [models[m] for m in self.scheduler.loaded_ids() if m in models]

    def _available_ids(self) -> list[str]:
        return [m.id for m in self._listed_models()]

    def _resolve(self, body: Mapping[str, Any], path: str, *, want_embedding: bool) -> ModelSpec:
        models = self.models()
        model_id = body.get("model")
        loaded = self.scheduler.loaded_ids()
        if not isinstance(model_id, str) or not model_id:
            if not loaded:
                raise Reply(errors.no_models_loaded(self.style()))
            model_id = loaded[0]  # LM Studio answers with the loaded model when none is named
        spec = models.get(model_id)
        if spec is None and self.settings.lenient_model_id and len(loaded) == 1:
            spec = models.get(loaded[0])  # the quirk: a wrong id silently served by the only loaded model
        if spec is None:
            raise Reply(errors.unknown_model(model_id, self._available_ids(), self.style()))
        if spec.is_embedding != want_embedding:
            raise Reply(errors.wrong_model_type(spec.id, "an embedding" if want_embedding else "an llm",
                                                self.style(spec)))
        return spec

    async def _instance(self, spec: ModelSpec, path: str, ttl: Any = None) -> Instance:
        """The loaded instance for a request, loading it just in time when allowed."""
        view = self.scheduler.view(spec.id)
        if view is None and not self.scheduler.jit_loading:
            if not self.scheduler.loaded_ids():
                raise Reply(errors.no_models_loaded(self.style(spec)))
            raise Reply(errors.unknown_model(spec.id, self._available_ids(), self.style(spec)))
        fail = bool(self.faults.take(frozenset({"load_failure"}), model=spec.id, path=path, generation=True)) \
            if view is None or view.state == "loading" else False
        ttl_s = float(ttl) if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and ttl > 0 else None
        try:
            inst, _ = await self.scheduler.ensure_loaded(spec, jit=True, ttl=ttl_s, fail=fail)
        except LoadFailed:
            raise Reply(errors.load_failed(spec.id)) from None
        return inst

    async def _load(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise Reply(errors.bad_request("'model' is required", self.style()))
        spec = self.models().get(body["model"])
        if spec is None:
            raise Reply(errors.unknown_model(body["model"], [m.id for m in self.models().values()], self.style()))
        fail = bool(self.faults.take(frozenset({"load_failure"}), model=spec.id, path="/api/v1/models/load",
                                     generation=True))
        context = body.get("context_length")
        ttl = body.get("ttl")
        try:
            _, seconds = await self.scheduler.ensure_loaded(
                spec, jit=False, context_length=context if isinstance(context, int) else None,
                ttl=float(ttl) if isinstance(ttl, (int, float)) else None, fail=fail,
            )
        except LoadFailed:
            raise Reply(errors.load_failed(spec.id)) from None
        return {"type": "embedding" if spec.is_embedding else "llm", "instance_id": spec.id,
                "load_time_seconds": round(seconds, 3), "status": "loaded"}
