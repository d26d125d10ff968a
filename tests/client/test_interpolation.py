"""Prompt interpolation: only stored values are read, IPython's own names are never filled, one rule for braces."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import pytest

from lm_notebook.client.interpolation import InterpolationError, fields, fill, reference_name


class Sides:
    calls = 0

    def __init__(self) -> None:
        self.stored = "kept"

    @property
    def side(self) -> str:
        Sides.calls += 1
        return "ran"


class Dynamic:
    def __getattr__(self, name: str) -> str:
        raise AssertionError(f"__getattr__ ran for {name}")


class CustomItems:
    def __getitem__(self, key: object) -> str:
        raise AssertionError("__getitem__ ran")


class Slotted:
    __slots__ = ("x",)

    def __init__(self) -> None:
        self.x = 3


@dataclass
class Point:
    x: int
    y: int


def test_a_property_is_never_run_and_the_message_says_why() -> None:
    Sides.calls = 0
    with pytest.raises(InterpolationError, match=r"\{p\.side\}: 'side' is a property of Sides, computed by code"):
        fill("{p.side}", {"p": Sides()})
    assert Sides.calls == 0
    assert fill("{p.stored}", {"p": Sides()}) == "kept"


def test_getattr_and_custom_getitem_are_never_run() -> None:
    with pytest.raises(InterpolationError, match="no stored attribute 'anything'"):
        fill("{d.anything}", {"d": Dynamic()})
    with pytest.raises(InterpolationError, match="items of a CustomItems are computed by its own code"):
        fill("{c[0]}", {"c": CustomItems()})


def test_methods_are_not_called_or_shown() -> None:
    with pytest.raises(InterpolationError, match="'upper' is a method of str"):
        fill("{s.upper}", {"s": "abc"})


def test_stored_values_of_every_plain_kind_are_read() -> None:
    pair = namedtuple("pair", "a b")(1, 2)
    import math

    ns = {"p": Point(1, 2), "s": Slotted(), "t": pair, "m": math, "d": {"k": [10, 20]}, "name": "Ada"}
    assert fill("{p.x},{s.x},{t.b},{m.pi:.2f},{d['k'][-1]},{name!r}", ns) == "1,3,2,3.14,20,'Ada'"


def test_pandas_and_numpy_items_are_read() -> None:
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({"text": ["a", "b"]})
    assert fill("{df['text'][1]} {arr[2]}", {"df": frame, "arr": np.arange(5)}) == "b 2"


@pytest.mark.parametrize("name", ["In", "Out", "_", "__", "_i", "_i3", "_3", "_oh", "exit", "get_ipython"])
def test_ipython_names_and_underscore_names_are_not_filled(name: str) -> None:
    ns = {name: ["the whole input history"]}
    assert fill(f"see {{{name}}}", ns) == f"see {{{name}}}"


def test_hidden_can_be_lifted_for_a_namespace_of_columns() -> None:
    assert fill("{_id}", {"_id": 7}, hidden=()) == "7"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{x}", "5"),
        ("{{x}}", "{x}"),
        ("{{{x}}}", "{5}"),
        ("{{{{x}}}}", "{{x}}"),
        ("{{undefined}}", "{undefined}"),
        ("{undefined}", "{undefined}"),
        ('Return {"summary": "..."} for: {x}', 'Return {"summary": "..."} for: 5'),
        ('{"a": {"b": {x}}}', '{"a": {"b": 5}}'),
        ('{"a": {"b": 1}}', '{"a": {"b": 1}}'),
        ("{name: str}", "{name: str}"),
    ],
)
def test_one_rule_for_braces(text: str, expected: str) -> None:
    assert fill(text, {"x": 5, "name": "n"}) == expected


def test_fields_and_reference_names() -> None:
    assert fields('{a} {{b}} {"k": 1} {{{c}}}') == ["a", '"k": 1', "c"]
    assert [reference_name(f) for f in ["doc[0].title:.2f", '"k": 1', "x!r"]] == ["doc", None, "x"]


def test_a_missing_key_of_a_defaultdict_is_not_inserted() -> None:
    from collections import defaultdict

    d: defaultdict[str, list[int]] = defaultdict(list)
    with pytest.raises(InterpolationError, match="KeyError"):
        fill('{d["x"]}', {"d": d})
    assert dict(d) == {}  # __missing__ never ran
    d["y"].append(1)
    assert fill('{d["y"]}', {"d": d}) == "[1]"
