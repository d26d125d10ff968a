"""Model downloads (LM Studio 0.4) over real loopback HTTP with the fake server, both twins."""

from __future__ import annotations

import asyncio

import pytest

from lm_notebook import AsyncLMStudioClient, EndpointNotSupportedError, LMStudioClient
from lm_notebook.client.downloads import DownloadJob
from lm_notebook.client.errors import DownloadPausedError, ModelDownloadError
from lm_notebook.testing import ManualClock, MockLMStudioServer

NEW = "ibm/granite-4-micro"


def test_a_download_is_followed_to_its_end_and_the_model_joins_the_list(server: MockLMStudioServer) -> None:
    server.downloads.seconds = 0.05
    seen: list[DownloadJob] = []
    with LMStudioClient(server.url) as client:
        job = client.download_model(NEW, poll_seconds=0.01, on_progress=seen.append)
        assert job.status == "completed" and job.ok and job.fraction == 1.0 and job.done
        assert job.total_bytes == server.downloads.size_bytes == job.downloaded_bytes
        assert job.started_at is not None and job.completed_at is not None and job.completed_at >= job.started_at
        assert seen[0].status == "downloading" and seen[-1].status == "completed"
        assert NEW in [m.id for m in client.list_models()]
        again = client.download_model(NEW)
        assert again.status == "already_downloaded" and again.ok and again.job_id is None  # a success, not an error
    bodies = [r.json for r in server.requests if r.path == "/api/v1/models/download"]
    assert bodies == [{"model": NEW}, {"model": NEW}]


def test_wait_false_returns_at_once_and_refresh_and_wait_follow_it() -> None:
    clock = ManualClock()
    with MockLMStudioServer(clock=clock) as server, LMStudioClient(server.url) as client:
        server.downloads.seconds = 10.0
        job = client.download_model(NEW, quantization="Q4_K_M", wait=False)
        assert job.status == "downloading" and job.job_id and job.downloaded_bytes is None
        clock.advance(4.0)
        now = job.refresh()
        assert now.status == "downloading" and now.fraction == pytest.approx(0.4)
        assert now.bytes_per_second and now.seconds_left == pytest.approx(6.0)
        clock.advance(6.0)
        assert now.wait(poll_seconds=0.01).status == "completed"
    assert server.requests[0].json == {"model": NEW, "quantization": "Q4_K_M"}


def test_a_failed_download_raises_with_the_job(server: MockLMStudioServer) -> None:
    server.downloads.seconds = 0.02
    server.set_fault("download_failure", times=1)
    with LMStudioClient(server.url) as client, pytest.raises(ModelDownloadError) as info:
        client.download_model(NEW, poll_seconds=0.01)
    assert info.value.model == NEW and info.value.job_id and "could not download" in info.value.message


def test_the_async_twin_downloads_too(server: MockLMStudioServer) -> None:
    server.downloads.seconds = 0.02

    async def run() -> tuple[str, str]:
        async with AsyncLMStudioClient(server.url) as client:
            job = await client.download_model(NEW, wait=False)
            done = await client.wait_for_download(job, poll_seconds=0.01)
            return job.status, done.status

    assert asyncio.run(run()) == ("downloading", "completed")


@pytest.mark.lmstudio_mock(version="0.3")
def test_on_0_3_a_download_says_it_needs_0_4(lmstudio_mock: MockLMStudioServer) -> None:
    with LMStudioClient(lmstudio_mock.url) as client, pytest.raises(EndpointNotSupportedError) as info:
        client.download_model(NEW)
    assert "download_model() needs LM Studio 0.4" in info.value.message and f"lms get {NEW}" in info.value.message


def test_loaded_models_and_unload_all(server: MockLMStudioServer) -> None:
    with LMStudioClient(server.url) as client:
        loaded = client.loaded_models()
        assert [m.id for m in loaded] == server.loaded_models() and loaded[0].parallel == 4
        assert client.unload_all() == server.loaded_models() or not server.loaded_models()
        assert client.loaded_models() == []


@pytest.mark.lmstudio_mock(version="0.3")
def test_on_0_3_unload_all_says_it_needs_0_4_and_loaded_models_answers(lmstudio_mock: MockLMStudioServer) -> None:
    with LMStudioClient(lmstudio_mock.url) as client:
        assert [m.id for m in client.loaded_models()] == lmstudio_mock.loaded_models()  # /api/v0 says what is loaded
        with pytest.raises(EndpointNotSupportedError) as info:
            client.unload_all()
    assert info.value.message.startswith("unload_all() needs LM Studio 0.4 or newer"), info.value.message
    assert "lms unload --all" in info.value.message
    assert lmstudio_mock.loaded_models()  # nothing was unloaded


def test_waiting_on_a_paused_download_says_it_is_paused_instead_of_polling_forever() -> None:
    clock = ManualClock()
    with MockLMStudioServer(clock=clock) as server, LMStudioClient(server.url) as client:
        server.downloads.seconds = 10.0
        job = client.download_model(NEW, wait=False)
        clock.advance(4.0)
        server.downloads.pause()
        with pytest.raises(DownloadPausedError) as info:
            job.wait(poll_seconds=0.01)
        paused = info.value.job
        assert paused.status == "paused" and paused.fraction == pytest.approx(0.4) and not paused.done
        assert paused.bytes_per_second is None and paused.seconds_left is None  # as LM Studio says it: no speed
        assert isinstance(info.value, ModelDownloadError) and info.value.job_id == job.job_id
        assert f"The download of {NEW} is paused in LM Studio at {server.url}" in info.value.message
        assert "40 %" in info.value.message and "resumed there" in info.value.message
        server.downloads.resume()
        clock.advance(6.0)
        assert paused.wait(poll_seconds=0.01).status == "completed"  # an old paused state is asked about again


def test_a_download_paused_while_it_is_watched_ends_the_wait(server: MockLMStudioServer) -> None:
    server.downloads.seconds = 600.0
    seen: list[str] = []

    def progress(state: DownloadJob) -> None:
        seen.append(state.status)
        if state.status == "downloading":
            server.downloads.pause()

    async def run() -> str:
        async with AsyncLMStudioClient(server.url) as client:
            with pytest.raises(DownloadPausedError) as info:
                await client.download_model(NEW, poll_seconds=0.01, on_progress=progress)
            return str(info.value.job.status)

    assert asyncio.run(run()) == "paused" and seen == ["downloading", "paused"]
