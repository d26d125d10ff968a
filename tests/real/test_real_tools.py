"""act() against llama.cpp's server and SmolLM2 135M: a real model calling a Python function.

llama-cpp-python answers a request whose ``tool_choice`` names a function with a grammar-constrained call of it (its
arguments fit the schema's JSON shape); left to itself (``"auto"``) SmolLM2 rarely calls. So the first round is
forced — act() forces only the first round — and the test asserts the loop on what the model produces: a call whose
arguments validate runs the function (its output goes back, and the model then answers); a call whose arguments do
not validate is a well-reported invalid call, sent back as its error. Either way the kernel never sees an exception.
"""

from __future__ import annotations

from real_server import SMOLLM2

from lm_notebook import LMStudioClient
from lm_notebook.client.act_types import ToolRoundsExceededError

ran: list[tuple[int, int]] = []


def add(a: int, b: int) -> int:
    """Add two whole numbers.

    Args:
        a: the first number.
        b: the second number.
    """
    ran.append((a, b))
    return a + b


def test_smollm2_calls_a_python_function_through_act(real_client: LMStudioClient) -> None:
    ran.clear()
    forced = {"type": "function", "function": {"name": "add"}}
    try:
        result = real_client.act("What is 2 plus 3? Use the add tool.", [add], model=SMOLLM2, tool_choice=forced,
                                 temperature=0, seed=1, max_tokens=64, max_rounds=3)
    except ToolRoundsExceededError as err:  # it may keep calling: the rounds are kept
        result = err.act_result
    first = result.calls[0]
    assert first.name == "add" and first.round == 1
    if first.ok:
        assert isinstance(first.arguments, dict) and ran[0] == (first.arguments["a"], first.arguments["b"])
        assert first.output == str(sum(ran[0]))
    else:  # the model's arguments did not fit: reported, and the function never ran
        assert first.invalid and first.error and ran == []
    assert result.rounds >= 2  # the result (or the error) went back to the model for another turn
    print(f"SmolLM2: {first.name}({first.arguments}) -> {first.output or first.error}; answer: {result.content!r}")


def test_smollm2_streamed_act_shows_the_call_and_its_result(real_client: LMStudioClient) -> None:
    forced = {"type": "function", "function": {"name": "add"}}
    with real_client.stream_act("Add 4 and 5 with the add tool.", [add], model=SMOLLM2, tool_choice=forced,
                                temperature=0, seed=1, max_tokens=64, max_rounds=2) as stream:
        try:
            kinds = [part.kind for part in stream]
        except ToolRoundsExceededError:
            kinds = []
    result = stream.partial()
    assert result.calls and result.calls[0].name == "add"
    if kinds:
        assert kinds.index("tool_call") < kinds.index("tool_result")
