"""The Model list keeps the user's pick: a pick that lands while a listing refills the list (on the widget's thread,
while the listing's thread sets the options) stands over what the listing would choose."""

from __future__ import annotations

import threading
from typing import Any

from panel_page import MODEL

from lm_notebook import ChatPanel
from lm_notebook.testing import MockLMStudioServer, ModelSpec

OTHER = "google/gemma-3-4b"


def test_a_pick_made_during_a_refill_is_kept(panel: ChatPanel, lmstudio_mock: MockLMStudioServer) -> None:
    assert panel.refresh_models()[0] == MODEL and panel.model == MODEL and OTHER in panel.refresh_models()
    lmstudio_mock.add_model(ModelSpec("fresh-model"))  # the next listing changes the options
    dropdown = panel.model_dropdown
    picked = threading.Event()

    def user_picks() -> None:  # the widget's thread: the front-end's pick arrives as a value change
        dropdown.value = OTHER
        picked.set()

    def during_refill(_change: dict[str, Any]) -> None:  # on the listing's thread, the list half refilled
        if not picked.is_set():
            user = threading.Thread(target=user_picks, name="test-user-pick")
            user.start()
            user.join(10)

    dropdown.observe(during_refill, names="options")
    panel.refresh_models()  # waits for the listing
    dropdown.unobserve(during_refill, names="options")
    assert picked.is_set()
    assert panel.model == OTHER and dropdown.value == OTHER
    panel.refresh_models()  # a later listing keeps it too
    assert panel.model == OTHER and dropdown.value == OTHER
