"""Model downloads on LM Studio 0.4 (``POST /api/v1/models/download``, ``GET …/download/status/{job_id}``): the
job's state as :class:`DownloadJob`, and the flows that start and follow it (no I/O here; see
:mod:`lm_notebook.client.flows`). ``"already_downloaded"`` is a success, not an error.

>>> job = client.download_model("ibm/granite-4-micro", wait=False)   # doctest: +SKIP
>>> job.refresh().fraction                                          # doctest: +SKIP
>>> job.wait().status                                               # doctest: +SKIP
'completed'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from lm_notebook.client.flows import Pause

DOWNLOAD_PATH = "/api/v1/models/download"
DOWNLOAD_STATUS_PATH = "/api/v1/models/download/status/"
DownloadStatus = Literal["downloading", "paused", "completed", "failed", "already_downloaded"]
FINISHED: frozenset[str] = frozenset({"completed", "failed", "already_downloaded"})
POLL_SECONDS = 0.5  # how often wait() asks how far a download has come


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class DownloadJob:
    """One model download as LM Studio last described it. ``refresh()`` asks again, ``wait()`` follows it to its end
    (on the async client both are awaited); interrupting ``wait()`` stops watching, not the download."""

    model: str
    status: str  # DownloadStatus; kept a str: later versions may add some
    job_id: str | None = None
    total_bytes: int | None = None
    downloaded_bytes: int | None = None
    bytes_per_second: float | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    estimated_completion: datetime | None = None
    _client: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_body(cls, body: Mapping[str, Any], model: str, client: Any = None) -> DownloadJob:
        speed = body.get("bytes_per_second")
        return cls(
            model=model,
            status=str(body.get("status", "downloading")),
            job_id=body.get("job_id") if isinstance(body.get("job_id"), str) else None,
            total_bytes=_int(body.get("total_size_bytes")),
            downloaded_bytes=_int(body.get("downloaded_bytes")),
            bytes_per_second=float(speed) if isinstance(speed, (int, float)) and not isinstance(speed, bool) else None,
            started_at=_when(body.get("started_at")),
            completed_at=_when(body.get("completed_at")),
            estimated_completion=_when(body.get("estimated_completion")),
            _client=client,
        )

    @property
    def done(self) -> bool:
        """The download is over (completed, failed, or there was nothing to download)."""
        return self.status in FINISHED

    @property
    def ok(self) -> bool:
        """The model is there: downloaded now, or already before."""
        return self.status in ("completed", "already_downloaded")

    @property
    def fraction(self) -> float | None:
        """How far it has come, 0–1 (1 once it is there; None while the server gives no sizes)."""
        if self.ok:
            return 1.0
        if self.total_bytes and self.downloaded_bytes is not None:
            return min(1.0, self.downloaded_bytes / self.total_bytes)
        return None

    @property
    def seconds_left(self) -> float | None:
        """The time left at the current speed, when the server says enough to tell."""
        if self.done:
            return 0.0
        if self.total_bytes and self.downloaded_bytes is not None and self.bytes_per_second:
            return max(0.0, (self.total_bytes - self.downloaded_bytes) / self.bytes_per_second)
        return None

    def refresh(self) -> DownloadJob:
        """The job as the server describes it now (``await job.refresh()`` on the async client)."""
        result: DownloadJob = self._client.download_status(self)
        return result

    def wait(self, *, poll_seconds: float = POLL_SECONDS) -> DownloadJob:
        """Follow the job to its end; the last state (``await job.wait()`` on the async client)."""
        result: DownloadJob = self._client.wait_for_download(self, poll_seconds=poll_seconds)
        return result

    def bound(self, client: Any) -> DownloadJob:
        return dataclasses.replace(self, _client=client)


def download_payload(model: str, quantization: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": model}
    if quantization is not None:
        payload["quantization"] = quantization
    return payload


def pause(seconds: float) -> Pause:
    return Pause(seconds)
