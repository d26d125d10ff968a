"""Model management the LM Studio 0.4 way, mixed into both clients and written once as flows: download a model and
follow the job, and what is loaded (``ps``). Loading and unloading are in
:mod:`~lm_notebook.client.client_base`.

>>> job = client.download_model("ibm/granite-4-micro")            # doctest: +SKIP
>>> job.status, job.total_bytes                                   # doctest: +SKIP
('completed', 2279145003)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lm_notebook.client.downloads import (
    DOWNLOAD_PATH,
    DOWNLOAD_STATUS_PATH,
    POLL_SECONDS,
    DownloadJob,
    download_payload,
)
from lm_notebook.client.errors import (
    DownloadPausedError,
    EndpointNotSupportedError,
    ModelDownloadError,
    needs_newer_lmstudio,
)
from lm_notebook.client.flows import Flow, Pause, operation
from lm_notebook.client.routes import MODEL_ROUTES, OPENAI_MODELS_PATH
from lm_notebook.client.types import ModelInfo

NATIVE_MODELS_PATH = MODEL_ROUTES[0]  # /api/v1/models: LM Studio 0.4+

OnDownload = Callable[[DownloadJob], object]


class ModelOperations:
    """``download_model``, ``download_status``, ``wait_for_download``, ``loaded_models`` and ``unload_all``, for
    both clients (the base's ``_json``, ``_list_models`` and ``_unload_model`` do the requests)."""

    def _download_model(
        self, model: str, *, quantization: str | None = None, wait: bool = True, poll_seconds: float = POLL_SECONDS,
        on_progress: OnDownload | None = None,
    ) -> Flow[DownloadJob]:
        """Download ``model`` (an LM Studio key, or a Hugging Face link with ``quantization``); a
        :class:`~lm_notebook.client.downloads.DownloadJob`. ``wait``: follow it to its end (``ModelDownloadError``
        when it fails); else return at once (``job.refresh()``, ``job.wait()``). A model already downloaded is a
        success (status ``"already_downloaded"``). Needs LM Studio 0.4+."""
        source: Any = self  # mixed into a client
        try:
            body = yield from source._json("POST", DOWNLOAD_PATH, json_body=download_payload(model, quantization),
                                           model=model)
        except EndpointNotSupportedError as err:
            raise needs_newer_lmstudio(
                "download_model()", err, source.base_url, f"Download it in LM Studio or with `lms get {model}`."
            ) from err
        job = DownloadJob.from_body(body, model, self)
        if on_progress is not None:
            on_progress(job)
        if wait:
            job = yield from self._wait_for_download(job, poll_seconds=poll_seconds, on_progress=on_progress)
        return job

    download_model = operation(_download_model)

    def _download_status(self, job: DownloadJob) -> Flow[DownloadJob]:
        """``job`` as the server describes it now."""
        source: Any = self
        if job.job_id is None or job.status == "already_downloaded":
            return job
        body = yield from source._json("GET", DOWNLOAD_STATUS_PATH + job.job_id, model=job.model)
        return DownloadJob.from_body(body, job.model, self)

    download_status = operation(_download_status)

    def _wait_for_download(
        self, job: DownloadJob, *, poll_seconds: float = POLL_SECONDS, on_progress: OnDownload | None = None
    ) -> Flow[DownloadJob]:
        """Follow ``job`` to its end, asking every ``poll_seconds`` and telling ``on_progress`` each state; the last
        one. A failed download raises ``ModelDownloadError``; a paused one ``DownloadPausedError`` (it would never
        end: LM Studio goes on only once it is resumed there); interrupting stops watching, not the download."""
        source: Any = self
        fresh = False  # a job passed in may be an old state: a paused one is asked about again before it counts
        while not job.done:
            if job.status == "paused" and fresh:
                raise DownloadPausedError(_paused_message(job, source.base_url), job=job)
            if job.status != "paused":
                yield Pause(poll_seconds)
            job, fresh = (yield from self._download_status(job)), True
            if on_progress is not None:
                on_progress(job)
        if job.status == "failed":
            raise ModelDownloadError(
                f"LM Studio at {source.base_url} could not download {job.model} (job {job.job_id}, "
                f"{job.downloaded_bytes or 0} of {job.total_bytes or '?'} bytes). Check the disk space and the "
                f"network, then try again (`lms get {job.model}` shows LM Studio's own message).",
                model=job.model, job_id=job.job_id,
            )
        return job

    wait_for_download = operation(_wait_for_download)

    def _loaded_models(self) -> Flow[list[ModelInfo]]:
        """What is loaded (``lms ps``): the models with loaded instances, with their context and parallel slots.
        Needs LM Studio (``/api/v0`` or ``/api/v1``): a server listing only ``/v1/models`` does not say."""
        source: Any = self
        models: list[ModelInfo] = yield from source._list_models()
        if source._models_route == OPENAI_MODELS_PATH:
            raise _not_lmstudio(
                "loaded_models()", "LM Studio", source.base_url,
                "lists its models only on /v1/models (as llama.cpp's server does), which does not say which are loaded",
            )
        return [m for m in models if m.loaded]

    loaded_models = operation(_loaded_models)

    def _unload_all(self) -> Flow[list[str]]:
        """Unload every loaded instance (``lms unload --all``); the instance ids unloaded. Needs LM Studio 0.4+."""
        source: Any = self
        models: list[ModelInfo] = yield from source._list_models()
        if source._models_route != NATIVE_MODELS_PATH:  # 0.4's model list, from the server with its unload route
            raise _not_lmstudio(
                "unload_all()", "LM Studio 0.4 or newer", source.base_url,
                "is an older LM Studio or another OpenAI-compatible server (llama.cpp's): it has no unload route",
                instead="Unload them in LM Studio or with `lms unload --all`.",
            )
        gone: list[str] = []
        for model in models:
            if not model.loaded:
                continue
            for instance in model.instance_ids or (model.id,):
                yield from source._unload_model(instance)
                gone.append(instance)
        return gone

    unload_all = operation(_unload_all)


def _paused_message(job: DownloadJob, base_url: str) -> str:
    done = f"{job.downloaded_bytes or 0} of {job.total_bytes or '?'} bytes"
    if job.fraction is not None:
        done = f"{round(job.fraction * 100)} %, {done}"
    return (f"The download of {job.model} is paused in LM Studio at {base_url} (job {job.job_id}, {done}): it goes on "
            "only once resumed there (LM Studio's downloads panel). Then job.wait() (or %lm_download "
            f"{job.model} again) follows it to its end.")


def _not_lmstudio(what: str, needs: str, base_url: str, why: str, *, instead: str = "") -> EndpointNotSupportedError:
    """``what`` refused on a server without the LM Studio routes it needs. Its model list already came from an older
    route, so nothing more is asked: the status is the 404 that route would get."""
    return EndpointNotSupportedError(f"{what} needs {needs}; the server at {base_url} {why}. {instead}".rstrip(),
                                     status_code=404)
