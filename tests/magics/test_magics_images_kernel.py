"""``%%lm -i fig`` in a real kernel (through jupyter_client) against the fake server: the figure of the previous cell
reaches a vision model, and what a notebook saves is its thumbnail above the answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kernel_driver import Kernel, kernel_for

from lm_notebook.display.frontend import CellOutputs
from lm_notebook.testing import MockLMStudioServer

VISION = "google/gemma-3-4b"


@pytest.fixture(scope="module")
def kernel() -> Iterator[tuple[Kernel, MockLMStudioServer]]:
    with MockLMStudioServer() as server, kernel_for(server.url) as k:
        assert k.run(f"%load_ext lm_notebook\n%lm_use {VISION}").status == "ok"
        yield k, server


def test_a_figure_from_the_previous_cell_goes_to_the_vision_model_under_its_thumbnail(
    kernel: tuple[Kernel, MockLMStudioServer],
) -> None:
    k, server = kernel
    made = k.run("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                 "fig, ax = plt.subplots(figsize=(4, 3), dpi=50)\nax.plot([1, 3, 2])\nplt.close(fig)")
    assert made.status == "ok"
    run = k.run("%%lm -i fig -o ans\nWhat does this chart show?")
    assert run.status == "ok"
    saved = CellOutputs()
    for message in run.messages:
        saved.add(message)
    outputs = saved.outputs()
    assert [o["output_type"] for o in outputs] == ["display_data", "execute_result"]
    assert outputs[0]["data"]["text/plain"] == "[image: matplotlib Figure: 200×150 PNG]"
    assert outputs[0]["data"]["text/html"].startswith('<div class="lm-notebook-images"><img src="data:image/png;')
    assert "I see an image of 200×150 pixels (PNG)." in outputs[1]["data"]["text/markdown"]
    parts = server.last_request.chat_body["messages"][-1]["content"]  # type: ignore[union-attr]
    assert [p["type"] for p in parts] == ["text", "image_url"]
    assert k.run("assert ans.images[0].width == 200 and not ans.images[0].downscaled").status == "ok"
