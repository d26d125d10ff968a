"""A ``%%lm`` cell's first output (the "waiting for the first token…" placeholder) is shown beside the request, not
before it (issue 17, the first token): the request goes out first, the placeholder is shown while the server works,
and it is still the cell's first output. A request that cannot be sent shows its one-line error and nothing else.
(Real ``InteractiveShell``, fake server over loopback HTTP.)"""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from magic_shell import MODEL, error_line, recorder, run, shown, use

import lm_notebook.display.answer
from lm_notebook import LMStudioClient, set_client
from lm_notebook.testing import CHAT_PATHS, MockLMStudioServer


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell updates displays in place, as a Jupyter kernel does."""
    monkeypatch.setattr(lm_notebook.display.answer, "live_updates_supported", lambda shell: True)


@pytest.mark.usefixtures("live")
def test_the_placeholder_is_shown_once_the_request_has_reached_the_server(
    ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(ip)
    assert run(ip, "%%lm\nWarm up").success  # who answers and the route are known from here on
    recorder(ip).sent.clear()
    lmstudio_mock.clear_requests()
    pub = recorder(ip)
    arrived: list[bool] = []
    publish = pub.publish

    def first_waits_for_the_request(data: Any, *args: Any, **kwargs: Any) -> None:
        if not pub.sent:  # the cell's first output: has its request reached the server? (a wait on the server's log,
            # which a placeholder shown before the request is sent waits for in vain: the request comes after it)
            try:
                lmstudio_mock.wait_for_requests(1, path=CHAT_PATHS, timeout=10)
                arrived.append(True)
            except TimeoutError:
                arrived.append(False)
        publish(data, *args, **kwargs)

    monkeypatch.setattr(pub, "publish", first_waits_for_the_request)
    res = run(ip, "%%lm -o ans\nTell me about tides")
    assert res.success
    assert arrived == [True], "the placeholder was shown before the request went out"
    first = pub.sent[0]
    assert first["msg_type"] == "display_data" and "waiting for the first token…" in first["content"]["data"][
        "text/markdown"]
    # still the first output, and the saved cell holds the answer once
    assert pub.kinds()[-1] == "clear_output"
    (saved,) = shown(ip, res.result)
    assert saved["text/plain"] == ip.user_ns["ans"]._repr_mimebundle_()["text/plain"]


@pytest.mark.usefixtures("live")
def test_a_request_that_cannot_be_sent_shows_its_error_and_no_placeholder(ip: InteractiveShell) -> None:
    set_client(LMStudioClient("http://127.0.0.1:9", model=MODEL, timeout=10))  # nothing listens on port 9
    res = run(ip, "%%lm\nHi")
    assert not res.success
    assert "127.0.0.1:9" in error_line(res)
    assert recorder(ip).sent == []  # no placeholder, and no clear_output that would take the cell's prints with it
