"""Tools from plain functions (pydantic's schema, docstring descriptions), Tool with its own schema, argument
checks, and how outputs become text."""

from __future__ import annotations

import subprocess
import sys
from typing import Literal

import pytest
from pydantic import BaseModel

from lm_notebook.client.errors import LMStudioRequestError
from lm_notebook.client.tools import (
    Tool,
    ToolArgumentsError,
    ToolOutputError,
    as_tool,
    as_toolset,
    docstring_parts,
    output_text,
    tool_from_function,
)


def lookup(city: str, limit: int = 3, unit: Literal["km", "mi"] = "km") -> list[str]:
    """Find facts about a city.

    More detail that the model need not read.

    Args:
        city: the city's name, e.g. "Paris".
        limit (int): how many facts
            to return.
        unit: distance unit.

    Returns:
        The facts.
    """
    return [city] * limit


class Opaque:
    pass


class Point(BaseModel):
    x: float
    y: float


def test_schema_from_signature_hints_and_docstring() -> None:
    tool = as_tool(lookup)
    assert tool.name == "lookup" and tool.description == "Find facts about a city."
    params = tool.parameters
    assert params["type"] == "object" and params["required"] == ["city"]
    assert params["additionalProperties"] is False
    assert params["properties"]["city"] == {"type": "string", "description": 'the city\'s name, e.g. "Paris".'}
    limit = {"type": "integer", "default": 3, "description": "how many facts to return."}
    assert params["properties"]["limit"] == limit
    assert params["properties"]["unit"]["enum"] == ["km", "mi"]
    assert tool.schema()["function"]["name"] == "lookup" and not tool.is_async


def test_numpy_docstring_and_nested_models() -> None:
    def plot_it(points: list[Point], title: str = "") -> str:
        """Plot points.

        Parameters
        ----------
        points : list of Point
            The points to draw.
        title : str
            A title.
        """
        return title

    tool = as_tool(plot_it)
    assert tool.parameters["properties"]["points"]["description"] == "The points to draw."
    assert "Point" in tool.parameters["$defs"]
    args, kwargs = tool.bind({"points": [{"x": 1, "y": 2.5}]})
    assert args == () and kwargs["points"] == [Point(x=1, y=2.5)] and kwargs["title"] == ""


def test_docstring_parts_without_sections() -> None:
    assert docstring_parts(None) == ("", {})
    assert docstring_parts("One line.\n\nSecond paragraph.") == ("One line.", {})


def test_arguments_are_validated_and_converted() -> None:
    tool = as_tool(lookup)
    assert tool.bind({"city": "Paris", "limit": 2}) == ((), {"city": "Paris", "limit": 2, "unit": "km"})
    # the schema says integer: a string that looks like one breaks it, and goes back to the model as an error
    with pytest.raises(ToolArgumentsError, match="limit: Input should be a valid integer"):
        tool.bind({"city": "Paris", "limit": "2"})
    with pytest.raises(ToolArgumentsError, match="city: Input should be a valid string"):
        tool.bind({"city": 7})

    def span(points: tuple[int, int], scale: float) -> float:
        return (points[1] - points[0]) * scale

    # JSON's own forms still fit: an array for a tuple, an integer for a number
    assert as_tool(span).bind({"points": [1, 3], "scale": 2}) == ((), {"points": (1, 3), "scale": 2.0})
    with pytest.raises(ToolArgumentsError, match="city: Field required"):
        tool.bind({})
    with pytest.raises(ToolArgumentsError, match=r"limit: Input should be a valid integer; unexpected property "
                                                 r"'extra': lookup takes: city, limit, unit"):
        tool.bind({"city": "Paris", "limit": "many", "extra": 1})


def test_positional_only_async_and_callable_objects() -> None:
    async def fetch(url: str, /, *args: int, retries: int = 1, **kwargs: str) -> str:
        return url

    tool = as_tool(fetch)
    assert tool.is_async and set(tool.parameters["properties"]) == {"url", "retries"}
    assert tool.bind({"url": "x"}) == (("x",), {"retries": 1})

    class Adder:
        def __call__(self, a: int, b: int) -> int:
            """Add."""
            return a + b

    adder = tool_from_function(Adder(), name="add")
    assert adder.name == "add" and adder.bind({"a": 1, "b": 2}) == ((), {"a": 1, "b": 2})


def test_tool_with_its_own_schema_is_checked_by_jsonschema() -> None:
    tool = Tool("add", "Add two numbers.", {"type": "object", "properties": {"a": {"type": "number"},
                "b": {"type": "number"}}, "required": ["a", "b"]}, lambda a, b: a + b)
    assert as_tool(tool) is tool and tool.bind({"a": 1, "b": 2}) == ((), {"a": 1, "b": 2})
    with pytest.raises(ToolArgumentsError, match="'b' is a required property"):
        tool.bind({"a": 1})
    with pytest.raises(ToolArgumentsError, match="a: 'x' is not of type 'number'"):
        tool.bind({"a": "x", "b": 1})


def test_bad_tools_are_refused_in_one_line() -> None:
    with pytest.raises(LMStudioRequestError, match="1-64 letters"):
        Tool("no spaces", "", {"type": "object"}, print)
    with pytest.raises(LMStudioRequestError, match="JSON schema of an object"):
        Tool("f", "", {"type": "string"}, print)
    with pytest.raises(LMStudioRequestError, match="must be callable"):
        Tool("f", "", {"type": "object"}, "print")  # type: ignore[arg-type]
    with pytest.raises(LMStudioRequestError, match="a function or a Tool"):
        as_tool(42)  # type: ignore[arg-type]
    with pytest.raises(LMStudioRequestError, match="Two tools are named 'lookup'"):
        as_toolset([lookup, lookup])
    with pytest.raises(LMStudioRequestError, match="tools is empty"):
        as_toolset([])
    with pytest.raises(LMStudioRequestError, match="a list of functions"):
        as_toolset("lookup")

    def takes(thing: Opaque) -> None: ...

    # an arbitrary class has no JSON schema: said, with what to do
    with pytest.raises(LMStudioRequestError, match=r"cannot make a JSON schema.*wrap it in a Tool"):
        as_tool(takes)


def test_outputs_become_text_and_are_capped() -> None:
    assert output_text("as is") == "as is"
    assert output_text({"a": [1, 2]}) == '{"a": [1, 2]}'
    assert output_text(None) == "null"
    assert output_text({1, 2}).startswith("{1, 2}")  # not JSON: repr
    cut = output_text("x" * 50, max_chars=10)
    assert cut.startswith("x" * 10 + "\n… [cut: the output has 50 characters; the first 10 are shown]")
    assert output_text("x" * 50, max_chars=0) == "x" * 50


def test_the_client_does_not_import_pydantic() -> None:
    code = "import sys, lm_notebook.client; print('pydantic' in sys.modules, 'jsonschema' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_an_output_that_cannot_become_text_says_so() -> None:
    looped: list[object] = []
    looped.append(looped)
    assert output_text(looped) == "[[...]]"  # JSON refuses the cycle; repr shows it
    with pytest.raises(ToolOutputError, match=r"returned a Unprintable.*repr\(\) raised RuntimeError: no repr for you"):
        output_text(Unprintable())
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ToolOutputError, match=r"returned a list.*RecursionError"):
        output_text(deep)


@pytest.mark.parametrize(("name", "words"), [
    ("lookup\n", "1-64 letters"),  # a regex's $ would let the newline through
    ("x" * 65, "1-64 letters"),
    ("", "1-64 letters"),
    ("naïve", "1-64 letters"),
])
def test_a_tools_name_follows_the_servers_rule(name: str, words: str) -> None:
    with pytest.raises(LMStudioRequestError, match=words):
        Tool(name, "", {"type": "object"}, print)
    assert Tool("a-b_C9" + "x" * 58, "", {"type": "object"}, print).name.startswith("a-b_C9")


@pytest.mark.parametrize(("schema", "words"), [
    ({"type": "object", "properties": {"a": {"type": "numbr"}}},
     r"not a valid JSON schema: 'numbr' is not valid under any of the given schemas \(at properties.a.type\)"),
    ({"type": "object", "required": "a"}, r"not a valid JSON schema: 'a' is not of type 'array' \(at required\)"),
    ({"type": "object", "properties": {"a": {"type": int}}}, "not a valid JSON schema"),
    ({"properties": {"a": {"type": "string"}}}, 'JSON schema of an object .*"type": "object"'),
    ({"type": ["object", "null"]}, "JSON schema of an object"),
    ("{}", "JSON schema of an object"),
])
def test_a_tools_own_schema_is_checked_when_it_is_made(schema: object, words: str) -> None:
    with pytest.raises(LMStudioRequestError, match=words) as caught:
        Tool("f", "", schema, print)  # type: ignore[arg-type]
    assert "Tool 'f'" in caught.value.message and "\n" not in caught.value.message
