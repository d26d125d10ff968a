"""The fake's load time in a native answer's stats: a model that loads in no time reports none, however long the
server's event loop took meanwhile (a busy machine made notebooks' footers say "loaded in 0.0 s" now and then, so
the stored outputs of strict nbval differed). A clock that moves a millisecond each time it is read stands for that
busy loop: nothing waits on wall time."""

from __future__ import annotations

import pytest

from lm_notebook import LMStudioClient
from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec


class BusyClock(ManualClock):
    """Every look at the time finds it a millisecond later."""

    def now(self) -> float:
        self.advance(0.001)
        return super().now()


@pytest.mark.parametrize("stream", [True, False])
def test_a_model_that_loads_in_no_time_reports_no_load_time(stream: bool) -> None:
    models = [ModelSpec("cold", loaded=False, load_time=0.0, reply_tokens=3)]
    with MockLMStudioServer(models=models, clock=BusyClock()) as server, \
            LMStudioClient(server.url, route="native") as client:
        if stream:
            with client.stream_chat("Hi", model="cold") as answer:
                result = answer.result()
        else:
            result = client.chat("Hi", model="cold")
    assert result.server_stats is not None and not result.server_stats.model_load_time
