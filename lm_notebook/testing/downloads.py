"""The fake server's model downloads (LM Studio 0.4): ``POST /api/v1/models/download`` starts a job,
``GET /api/v1/models/download/status/{job_id}`` says how far it has come.

A job takes :attr:`FakeDownloads.seconds` on the server's clock for :attr:`FakeDownloads.size_bytes` bytes; a model
already in the catalogue is ``already_downloaded``; a finished one joins the catalogue (not loaded). The
``download_failure`` fault makes a job fail halfway; :meth:`FakeDownloads.pause` and :meth:`FakeDownloads.resume` do
what LM Studio's downloads panel does (a paused job says ``paused`` with its bytes so far, no speed, no time left).
:attr:`FakeDownloads.model_defaults` are the downloaded models' :class:`ModelSpec` fields (their pacing: the demo
profile and the command line's ``--load-time`` set it, so a new model loads and streams as the others do).
"""

from __future__ import annotations

import random
import string
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from lm_notebook.testing.catalogue import ModelSpec

_ids = random.Random()


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Job:
    job_id: str
    model: str
    started: float  # on the server's clock
    started_at: datetime
    size: int
    seconds: float
    fails: bool
    added: bool = False
    paused_at: float | None = None  # on the server's clock, while paused
    paused_for: float = 0.0  # the seconds it spent paused before

    def elapsed(self, now: float) -> float:
        """The seconds it has been downloading (its pauses left out)."""
        until = self.paused_at if self.paused_at is not None else now
        return max(0.0, until - self.started - self.paused_for)


class FakeDownloads:
    """The download jobs of one fake server (thread-safe: tests read them from their own thread)."""

    def __init__(self, app: Any, *, seconds: float = 2.0, size_bytes: int = 2_279_145_003) -> None:
        self.app = app
        self.seconds = seconds
        self.size_bytes = size_bytes
        self.model_defaults: dict[str, Any] = {}  # ModelSpec fields of the models downloaded (load_time, ttft, ...)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def start(self, body: Any) -> dict[str, Any] | None:
        """A new job's first state; None when the body names no model (the caller answers 400)."""
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or not model:
            return None
        key = model.rstrip("/").rsplit("/", 2)[-2:] if model.startswith("http") else [model]
        model_id = "/".join(key).lower().removesuffix("-gguf") if model.startswith("http") else model
        if model_id in self.app.models():
            return {"status": "already_downloaded"}
        fails = bool(self.app.faults.take(frozenset({"download_failure"}), model=model_id,
                                          path="/api/v1/models/download", generation=True))
        job = Job("job_" + "".join(_ids.choices(string.hexdigits.lower()[:16], k=10)), model_id,
                  self.app.clock.now(), datetime.now(timezone.utc), self.size_bytes, self.seconds, fails)
        with self._lock:
            self._jobs[job.job_id] = job
        return {"job_id": job.job_id, "status": "downloading", "total_size_bytes": job.size,
                "started_at": _iso(job.started_at)}

    def _job(self, job_id: str | None) -> Job:
        with self._lock:
            if job_id is None:  # the latest
                return list(self._jobs.values())[-1]
            return self._jobs[job_id]

    def pause(self, job_id: str | None = None) -> None:
        """Pause a job (the latest by default), as LM Studio's downloads panel does."""
        job = self._job(job_id)
        if job.paused_at is None:
            job.paused_at = self.app.clock.now()

    def resume(self, job_id: str | None = None) -> None:
        """Resume a paused job (the latest by default)."""
        job = self._job(job_id)
        if job.paused_at is not None:
            job.paused_for += self.app.clock.now() - job.paused_at
            job.paused_at = None

    def status(self, job_id: str) -> dict[str, Any] | None:
        """The job's state now; None for an unknown job."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            return None
        elapsed = job.elapsed(self.app.clock.now())
        fraction = min(1.0, elapsed / job.seconds) if job.seconds > 0 else 1.0
        state: dict[str, Any] = {"job_id": job.job_id, "total_size_bytes": job.size,
                                 "started_at": _iso(job.started_at)}
        speed = job.size / job.seconds if job.seconds > 0 else float(job.size)
        if job.fails and fraction >= 0.5:
            state.update(status="failed", downloaded_bytes=job.size // 2)
            return state
        if fraction >= 1.0:
            self._add(job)
            state.update(status="completed", downloaded_bytes=job.size,
                         completed_at=_iso(job.started_at + timedelta(seconds=job.seconds)))
            return state
        if job.paused_at is not None:
            state.update(status="paused", downloaded_bytes=int(job.size * fraction))
            return state
        left = job.seconds - elapsed
        state.update(status="downloading", downloaded_bytes=int(job.size * fraction), bytes_per_second=speed,
                     estimated_completion=_iso(datetime.now(timezone.utc) + timedelta(seconds=left)))
        return state

    def _add(self, job: Job) -> None:
        with self._lock:
            if job.added:
                return
            job.added = True
        if job.model not in self.app.models():
            publisher = job.model.split("/", 1)[0] if "/" in job.model else "lmstudio-community"
            fields = {"publisher": publisher, "size_bytes": job.size, **self.model_defaults}
            self.app.put_model(ModelSpec(job.model, **fields))
            self.app.signal.notify()
