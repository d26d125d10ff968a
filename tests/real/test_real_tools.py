"""act() against llama.cpp's server and SmolLM2 135M: a real model calling a Python function.

llama-cpp-python answers a request whose ``tool_choice`` names a function with a grammar-constrained call of it (its
arguments have the schema's JSON shape); left to itself (``"auto"``) SmolLM2 rarely calls. So the first round is
forced — act() forces only the first round. With ``temperature=0`` and a seed the model's call is the same every
run, so each test says exactly which outcome it proves:

- a valid call: SmolLM2 calls ``add(a=2, b=3)``, the function runs, ``5`` goes back and the model answers;
- a well-reported invalid call: the schema asks for what the grammar cannot enforce (``multipleOf``), the model's
  arguments break it, the function never runs and the error goes back to the model as the call's result.
"""

from __future__ import annotations

from real_server import SMOLLM2

from lm_notebook import LMStudioClient
from lm_notebook.client.tools import Tool

ran: list[tuple[int, int]] = []
FORCED = {"type": "function", "function": {"name": "add"}}
SETTINGS = {"model": SMOLLM2, "tool_choice": FORCED, "temperature": 0, "seed": 1, "max_tokens": 64}


def add(a: int, b: int) -> int:
    """Add two whole numbers.

    Args:
        a: the first number.
        b: the second number.
    """
    ran.append((a, b))
    return a + b


def test_smollm2_makes_a_valid_call_to_a_python_function(real_client: LMStudioClient) -> None:
    ran.clear()
    result = real_client.act("What is 2 plus 3? Use the add tool.", [add], max_rounds=3, **SETTINGS)
    (call,) = result.calls
    assert (call.name, call.round, call.failure, call.error) == ("add", 1, None, None)
    assert call.arguments == {"a": 2, "b": 3} and ran == [(2, 3)] and call.output == "5"
    assert result.rounds == 2 and not result.stopped and result.result.finish_reason == "stop"
    assert "5" in result.content  # the model answered with what the function returned
    print(f"SmolLM2: add({call.arguments}) -> {call.output}; answer: {result.content!r}")


def test_smollm2s_invalid_call_is_reported_and_sent_back(real_client: LMStudioClient) -> None:
    ran.clear()
    strict = Tool("add", "Add two multiples of 1000.", {
        "type": "object", "required": ["a", "b"],
        "properties": {"a": {"type": "integer", "multipleOf": 1000}, "b": {"type": "integer", "multipleOf": 1000}},
    }, lambda a, b: ran.append((a, b)) or a + b)
    result = real_client.act("What is 2 plus 3? Use the add tool.", [strict], max_rounds=2, **SETTINGS)
    first = result.calls[0]
    assert first.name == "add" and first.failure == "invalid_arguments" and first.output is None
    assert "do not fit add's schema" in (first.error or "") and "is not a multiple of 1000" in (first.error or "")
    assert ran == [] and result.tool_errors >= 1 and result.rounds == 2  # the error went back for another turn
    print(f"SmolLM2: add({first.arguments}) -> {first.error}; then: {result.content!r}")


def test_smollm2_streamed_act_shows_the_call_and_its_result(real_client: LMStudioClient) -> None:
    ran.clear()
    with real_client.stream_act("Add 4 and 5 with the add tool.", [add], max_rounds=2, **SETTINGS) as stream:
        kinds = [part.kind for part in stream]
    result = stream.result()
    (call,) = result.calls
    assert call.ok and call.arguments == {"a": 4, "b": 5} and call.output == "9" and ran == [(4, 5)]
    assert kinds.index("tool_call") < kinds.index("tool_result") < len(kinds) - 1  # the answer streams after
    assert result.rounds == 2 and result.content
