"""Model management in ``lms``'s own words, LM Studio 0.4's way: ``%lm_download``, ``%lm_load``, ``%lm_unload``,
``%lm_ps``. Each refuses clearly, in one line, on LM Studio 0.3 or llama.cpp's server (no such routes there).

``lm_notebook.magics.register`` calls :func:`register`.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from lm_notebook.client.clients import LMStudioClient
from lm_notebook.client.downloads import DownloadJob
from lm_notebook.client.errors import DownloadPausedError, LMStudioAPIError, LMStudioError
from lm_notebook.display.progress import download_text
from lm_notebook.magics.arguments import argument, magic_arguments, parse_argstring
from lm_notebook.magics.lm import LMMagics, lm_magics_of, magics_client
from lm_notebook.magics.registry import remove_magics

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

_T = TypeVar("_T")
DOWNLOAD_POLL_SECONDS = 0.5
LOAD_TICK_SECONDS = 1.0  # how often %lm_load's line counts the seconds of a load
load_clock: Callable[[], float] = time.monotonic  # what it counts them on


def _bundle(text: str) -> dict[str, str]:
    return {"text/plain": text, "text/html": f"<pre>{html.escape(text)}</pre>"}


@magics_class
class ModelMagics(Magics):
    """``%lm_download``, ``%lm_load``, ``%lm_unload``, ``%lm_ps``."""

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        # downloads whose watch was interrupted, by (server, model, quantization): %lm_download again follows them
        self._unfinished: dict[tuple[str, str, str | None], DownloadJob] = {}

    def _lm(self) -> LMMagics | None:
        return lm_magics_of(self.shell)

    def _client(self) -> LMStudioClient:
        """The client %%lm uses (it follows %config LMMagics.base_url), else the shared one."""
        return magics_client(self.shell)

    def _needs_0_4(self, client: LMStudioClient, what: str, instead: str) -> None:
        # only the server's own answer means 0.3 or llama.cpp: nobody there, an auth error, a 500 are said as such
        if not self._run(client.supports_native_chat):
            raise UsageError(
                f"{what} needs LM Studio 0.4 or newer; the server at {client.base_url} is an older LM Studio or "
                f"another OpenAI-compatible server (llama.cpp's). {instead}"
            )

    def _run(self, action: Callable[[], _T], explain: Callable[[LMStudioError], str | None] | None = None) -> _T:
        """An error from the server as the magics' one line (kept for %lm_last_error); ``explain``: the line for an
        error the magic can say better (None: the usual one)."""
        try:
            return action()
        except LMStudioError as err:
            text = explain(err) if explain is not None else None
            magics = self._lm()
            if magics is not None:
                raise magics._fail(err, text) from None
            raise UsageError(text or err.message) from None

    @staticmethod
    def _show(text: str, handle: Any = None) -> Any:
        from IPython.display import display

        if handle is not None:
            handle.update(_bundle(text), raw=True)
            return handle
        return display(_bundle(text), raw=True, display_id=True)  # type: ignore[no-untyped-call]

    @magic_arguments()
    @argument("model", help="An LM Studio model key (ibm/granite-4-micro) or a Hugging Face link.")
    @argument("--quantization", metavar="Q", help="Which quantization of a Hugging Face link (Q4_K_M).")
    @line_magic
    def lm_download(self, line: str = "") -> DownloadJob | None:
        """Download a model into LM Studio, with a progress bar (bytes, speed, time left).

        Interrupting stops watching, not the download: LM Studio goes on, and %lm_download again shows it.
        """
        args = parse_argstring(ModelMagics.lm_download, line)
        client = self._client()
        self._needs_0_4(client, "%lm_download", f"Download it in LM Studio or with `lms get {args.model}`.")
        key = (client.base_url, args.model, args.quantization)
        # a Hugging Face link: LM Studio lists the model under its own key, the one id the download adds
        before = self._model_ids(client) if _is_link(args.model) else None
        job = self._watched_job(client, key) or self._run(
            lambda: client.download_model(args.model, quantization=args.quantization, wait=False))
        painted = [download_text(job)]
        handle = self._show(painted[0])

        def paint(state: DownloadJob, text: str | None = None) -> None:  # each state once
            text = text or download_text(state)
            if text != painted[0]:
                painted[0] = text
                self._show(text, handle)

        def progress(state: DownloadJob) -> None:  # the end is painted once it is known what to load
            if not state.done:
                paint(state)

        def follow() -> DownloadJob:  # a paused download is said on its line, not raised
            try:
                return client.wait_for_download(job, poll_seconds=DOWNLOAD_POLL_SECONDS, on_progress=progress)
            except DownloadPausedError as paused:
                return paused.job  # type: ignore[no-any-return]

        try:
            job = self._run(follow)
        except KeyboardInterrupt:
            self._unfinished[key] = job  # %lm_download again follows this job: a second request could start anew
            raise UsageError(
                f"Stopped watching the download of {args.model}; LM Studio goes on downloading it (job {job.job_id}). "
                f"%lm_download {args.model} again shows how far it has come."
            ) from None
        if job.status == "paused":
            self._unfinished[key] = job  # %lm_download again follows it once it is resumed
            paint(job, f"{download_text(job)}. Resume it in LM Studio (its downloads panel), then "
                       f"%lm_download {args.model} again follows it.")
            return None
        after = self._model_ids(client) if before is not None and job.status == "completed" else None
        added = sorted(after - before) if after is not None and before is not None else []
        paint(job, download_text(job, added[0] if len(added) == 1 else None))  # the end, once
        return None

    def _model_ids(self, client: LMStudioClient) -> set[str] | None:
        """The ids the server lists now; None when it cannot say (the download's line then names the link)."""
        try:
            return {m.id for m in client.list_models()}
        except LMStudioError:
            return None

    def _watched_job(self, client: LMStudioClient, key: tuple[str, str, str | None]) -> DownloadJob | None:
        """The download of an earlier, interrupted %lm_download of the same model, as LM Studio describes it now;
        None when there is none to follow (never watched, over, failed, or unknown to the server now)."""
        job = self._unfinished.pop(key, None)
        if job is None:
            return None
        try:
            job = client.download_status(job)
        except LMStudioError:
            return None  # the server forgot it (restarted?): a new request starts it again
        return None if job.status == "failed" else job

    @magic_arguments()
    @argument("model", help="The model to load (%%lm_models lists them).")
    @argument("--context-length", type=int, metavar="N", help="Context length to load it with.")
    @line_magic
    def lm_load(self, line: str = "") -> None:
        """Load a model (LM Studio 0.4); it says how long the load took."""
        args = parse_argstring(ModelMagics.lm_load, line)
        if args.context_length is not None and args.context_length < 1:
            raise UsageError(f"--context-length must be a positive number of tokens, not {args.context_length}.")
        client = self._client()
        self._needs_0_4(client, "%lm_load", f"Load it in LM Studio or with `lms load {args.model}`.")
        # LM Studio's load route answers once loaded and streams no progress (only the native chat route does, for a
        # load just in time, which LM Studio may evict again): the line counts the seconds while it waits
        from lm_notebook.chat.generation import WaitReport

        handle = self._show(f"Loading {args.model}… 0 s (LM Studio answers once it is loaded)")
        ticking = WaitReport(
            lambda waited: self._show(f"Loading {args.model}… {int(waited)} s (LM Studio answers once it is loaded)",
                                      handle),
            interval=LOAD_TICK_SECONDS, clock=load_clock,
        )
        started = load_clock()
        ticking.start()
        ended: str | None = None  # what the line says when the load did not end with a model
        try:
            loaded = self._run(lambda: client.load_model(args.model, context_length=args.context_length))
        except KeyboardInterrupt:
            ended = (f"Stopped waiting for {args.model} after {int(load_clock() - started)} s; LM Studio may go on "
                     "loading it (%lm_ps shows what is loaded).")
            # one line, as an interrupted %lm_download or %%lm: the request was stopped, not LM Studio's load
            raise UsageError(f"Stopped waiting for {args.model}: LM Studio may go on loading it; %lm_ps shows "
                             "what is loaded.") from None
        except BaseException:
            ended = f"Could not load {args.model}: LM Studio's answer is below."
            raise
        finally:
            ticking.stop()  # returns once no report is being shown: none comes after the end
            if ended is not None:
                self._show(ended, handle)
        seconds = loaded.load_time_seconds if loaded.load_time_seconds is not None else load_clock() - started
        context = f" with a context of {args.context_length} tokens" if args.context_length else ""
        self._show(f"Loaded {args.model} in {seconds:.1f} s{context} (instance {loaded.instance_id}).", handle)

    @magic_arguments()
    @argument("model", nargs="?", help="The instance to unload (%%lm_ps lists them).")
    @argument("--all", action="store_true", help="Unload every loaded model.")
    @line_magic
    def lm_unload(self, line: str = "") -> None:
        """Unload a model, or all of them (--all), as `lms unload` does."""
        args = parse_argstring(ModelMagics.lm_unload, line)
        if bool(args.model) == bool(args.all):
            raise UsageError("Name the model to unload (%lm_ps lists them), or pass --all, not both.")
        client = self._client()
        self._needs_0_4(client, "%lm_unload", "Unload it in LM Studio or with `lms unload`.")
        if args.all:
            gone = self._run(client.unload_all)
            self._show(f"Unloaded {', '.join(gone)}." if gone else "Nothing was loaded.")
            return
        self._run(lambda: client.unload_model(args.model), lambda err: _not_loaded(client, args.model, err))
        self._show(f"Unloaded {args.model}.")

    @line_magic
    def lm_ps(self, line: str = "") -> None:
        """What is loaded, as `lms ps` shows it: instance, context length and parallel slots."""
        if line.strip():
            raise UsageError(f"%lm_ps takes no arguments, not {line.strip()!r}.")
        client = self._client()
        self._needs_0_4(client, "%lm_ps", "`lms ps` shows what is loaded.")
        models = self._run(client.loaded_models)
        if not models:
            self._show(f"No model is loaded on LM Studio at {client.base_url}. %lm_load MODEL loads one.")
            return
        rows = [("instance", "model", "context", "slots")]
        for m in models:
            for instance in m.instance_ids or (m.id,):
                rows.append((instance, m.id, str(m.loaded_context_length or "—"),
                             str(m.parallel) if m.parallel is not None else "—"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
        self._show(text)


def _not_loaded(client: LMStudioClient, model: str, err: LMStudioError) -> str | None:
    """The line for unloading ``model`` when LM Studio refused it because it is not loaded (None for other errors):
    what is loaded, by instance id, and %lm_ps."""
    if not isinstance(err, LMStudioAPIError) or err.status_code not in (400, 404):
        return None
    try:
        loaded = client.loaded_models()
    except LMStudioError:
        return None  # it cannot say what is loaded: LM Studio's own answer is the line
    instances = {m.id: list(m.instance_ids or (m.id,)) for m in loaded}
    if any(model in ids for ids in instances.values()):
        return None  # it is loaded: the refusal was about something else
    where = f"on LM Studio at {client.base_url}"
    if model in instances:  # a model key loaded under other instance ids (name:2)
        ids = ", ".join(instances[model])
        return f"{model} is not an instance id {where}: it is loaded as {ids}; %lm_unload one of them (%lm_ps " \
               "lists what is loaded)."
    now = ", ".join(i for ids in instances.values() for i in ids)
    return f"{model} is not loaded {where} (loaded: {now or 'nothing'}); %lm_ps shows what is loaded."


def _is_link(model: str) -> bool:
    return model.startswith(("https://", "http://"))


def register(ipython: InteractiveShell) -> None:
    """Register :class:`ModelMagics` with ``ipython`` (a second call does nothing)."""
    if "ModelMagics" not in ipython.magics_manager.registry:
        ipython.register_magics(ModelMagics(shell=ipython))


def unregister(ipython: InteractiveShell) -> None:
    remove_magics(ipython, "ModelMagics")
