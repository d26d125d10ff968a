"""Fixtures for the browser tests: a fake LM Studio, JupyterLab on loopback, and Debian's Chromium driven by Playwright.

Chromium comes from Debian (``scripts/setup_browser.sh`` installs it); Playwright's own browser download cannot work
here, so Playwright's Python package is pointed at ``/usr/bin/chromium``. Without a browser the tests are skipped on a
developer's machine, and fail when ``CI=true``: in CI they must run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lab_start import LAB_START_LIMIT, start_lab, wait_until_up

from lm_notebook.testing import MockLMStudioServer

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "chat_panel.ipynb"
CHROMIUM = Path(os.environ.get("LMNB_CHROMIUM", "/usr/bin/chromium"))
# as root, in a closed network: no sandbox, and no background calls home (they are refused, many at a time)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]


def require(condition: bool, why: str) -> None:
    """Skip when something the browser test needs is missing, except in CI, where that is a failure."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why} — CI=true, so the browser test must run: run scripts/setup_browser.sh", pytrace=False)
    pytest.skip(why)


@dataclass(frozen=True)
class Lab:
    url: str
    token: str
    root: Path
    log: Path

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}&reset"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def fake_lmstudio() -> Iterator[MockLMStudioServer]:
    """The fake LM Studio the notebook's kernel talks to (tests change its pacing as they go)."""
    with MockLMStudioServer() as server:
        yield server


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, fake_lmstudio: MockLMStudioServer) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 (a token, a free port), serving a temporary root dir holding the chat notebook."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    settings = base / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no "get news?" toast over the page, and no calls home
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    token = secrets.token_hex(16)
    port = _free_port()
    env = {
        **os.environ,
        "LMSTUDIO_BASE_URL": fake_lmstudio.url,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "IPYTHONDIR": str(base / "ipython"),
        "LANGUAGE": "en",  # its "is running at" line, which the start-up wait keys on, is translated otherwise
    }
    log = base / "jupyterlab.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--expose-app-in-browser",
        "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    process, output = start_lab(command, env=env, cwd=root, log=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, output, f"{url}/api/status?token={token}")
        yield Lab(url=url, token=token, root=root, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright."""
    require(CHROMIUM.exists(), f"no Chromium at {CHROMIUM} (scripts/setup_browser.sh installs Debian's)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "Playwright's Python package is not installed (pip install playwright)")
        raise
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A browser test may be the one that starts JupyterLab (minutes on a loaded machine): its time limit (the
    suite's 300 s) leaves room for that start, so a slow start fails with what JupyterLab printed, not a timeout."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(300 + LAB_START_LIMIT))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser: Any, lab: Lab, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh browser tab; on failure, a screenshot of it and the end of JupyterLab's log are kept and shown."""
    context = browser.new_context(viewport={"width": 1280, "height": 1100}, device_scale_factor=1)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    try:
        yield page
    finally:
        if request.node.stash.get(_CALL_FAILED, False):
            shot = tmp_path / "failure.png"
            try:
                page.screenshot(path=str(shot), full_page=True)
            except Exception as exc:  # the page may be gone; the log still helps
                shot = Path(f"(no screenshot: {exc})")
            sys.stderr.write(
                f"\n--- browser test failed; page screenshot: {shot}\n--- browser console (last 30):\n"
                + "\n".join(console[-30:])
                + f"\n--- JupyterLab log (end):\n{lab.log.read_text(errors='replace')[-3000:]}\n"
            )
        context.close()
