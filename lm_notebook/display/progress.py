"""What a stage before the answer looks like while it runs (pure): a model loading, the prompt being read; and a
model download.

LM Studio 0.4's native chat reports both (:class:`~lm_notebook.client.native_types.StreamProgress`); the cell, the
panel's status line and the compare bar show the same words.

>>> progress_text(StreamProgress("model_load", 0.65, "google/gemma-3-4b"), 4.2)
'Loading google/gemma-3-4b ▓▓▓▓▓▓▓░░░ 65 % · 4.2 s'
>>> progress_text(StreamProgress("prompt_processing", 0.4), None)
'Reading the prompt ▓▓▓▓░░░░░░ 40 %'
"""

from __future__ import annotations

from lm_notebook.client.downloads import DownloadJob
from lm_notebook.client.native_types import StreamProgress

BAR_CELLS = 10
_FULL, _EMPTY = "▓", "░"


def progress_bar(fraction: float, cells: int = BAR_CELLS) -> str:
    """``fraction`` (0–1) as a bar of ``cells`` characters."""
    filled = round(max(0.0, min(1.0, fraction)) * cells)
    return _FULL * filled + _EMPTY * (cells - filled)


def progress_text(progress: StreamProgress, seconds: float | None, *, model: str | None = None) -> str:
    """One line for a stage in progress: what, a bar, the percentage and (for a load) the seconds so far.
    ``model`` names the model when the server did not."""
    percent = f"{round(progress.fraction * 100):d} %"
    bar = progress_bar(progress.fraction)
    if progress.stage == "model_load":
        name = progress.instance or model or "the model"
        if progress.done:
            took = progress.load_time_seconds if progress.load_time_seconds is not None else seconds
            return f"Loaded {name}" + (f" in {took:.1f} s" if took is not None else "")
        line = f"Loading {name} {bar} {percent}"
        return line + (f" · {seconds:.1f} s" if seconds is not None else "")
    if progress.done:
        return "Read the prompt"
    return f"Reading the prompt {bar} {percent}"


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def download_text(job: DownloadJob, key: str | None = None) -> str:
    """One line for a model download: a bar, bytes done of the total, speed and time left; or how it ended.
    ``key``: the id LM Studio lists the downloaded model under, when it is not what was asked for (a link)."""
    if job.status == "already_downloaded":
        return f"{job.model} is already downloaded."
    if job.status == "completed":
        size = f" ({_size(job.total_bytes)})" if job.total_bytes else ""
        if key is None or key == job.model:
            return f"Downloaded {job.model}{size}: load it with %lm_load {job.model}, or just use it."
        return f"Downloaded {job.model}{size} as {key}: load it with %lm_load {key}, or just use it."
    if job.status == "failed":
        return f"The download of {job.model} failed."
    fraction = job.fraction or 0.0
    facts = [f"{'Paused' if job.status == 'paused' else 'Downloading'} {job.model} {progress_bar(fraction)} "
             f"{round(fraction * 100):d} %"]
    if job.total_bytes:
        facts.append(f"{_size(job.downloaded_bytes or 0)} of {_size(job.total_bytes)}")
    if job.bytes_per_second:
        facts.append(f"{_size(job.bytes_per_second)}/s")
    left = job.seconds_left
    if left is not None and job.status == "downloading":
        facts.append(f"{left:.0f} s left")
    return " · ".join(facts)
