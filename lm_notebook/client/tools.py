"""Tools the model may call: a plain Python function (sync or async) or a :class:`Tool` with a hand-written schema.

A function's JSON schema comes from its signature and type hints through pydantic's schema generation (pydantic is
the ``lm_notebook[tools]`` extra, imported here only when a tool is made, never at ``import lm_notebook.client``);
its description is the docstring's first paragraph and each parameter's description comes from the docstring's
``Args:`` / ``Parameters`` section. The model's arguments are validated against the schema before the function
runs: by the same pydantic model for a function, by ``jsonschema`` for a :class:`Tool`'s own schema.

>>> def lookup(city: str, limit: int = 3) -> list[str]:     # doctest: +SKIP
...     '''Find facts about a city.
...
...     Args:
...         city: the city's name, e.g. "Paris".
...         limit: how many facts.
...     '''
>>> as_tool(lookup).parameters["properties"]["city"]          # doctest: +SKIP
{'type': 'string', 'description': 'the city\\'s name, e.g. "Paris".'}
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lm_notebook.client.errors import LMStudioRequestError

DEFAULT_MAX_OUTPUT_CHARS = 4000  # what one call's output may take of the model's context (about 1000 tokens)
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI-style servers accept as a function name
# the sections of a docstring (Google and NumPy styles) that end the description or hold the parameters
_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns?|Yields?|Raises|Examples?|Notes?|See Also)\s*:?\s*$"
)
_PARAMETER_SECTIONS = frozenset({"Args", "Arguments", "Parameters", "Params"})
_GOOGLE_PARAM = re.compile(r"^\**(\w+)\**\s*(?:\([^)]*\))?\s*:\s*(.*)$")  # "city (str): the city's name"
_NUMPY_PARAM = re.compile(r"^(\w+)\s*(?::.*)?$")  # "city : str", its description on the lines below


class ToolArgumentsError(ValueError):
    """The model's arguments do not fit the tool's schema; ``str(err)`` says which and how (sent to the model)."""


def _require_pydantic() -> Any:
    try:
        import pydantic
    except ImportError as exc:  # pragma: no cover - the extra is installed with the test extra
        raise ImportError(
            "Tools made from functions need pydantic for their JSON schema: pip install 'lm_notebook[tools]'."
        ) from exc
    return pydantic


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its ``name``, a ``description`` for the model, the JSON schema of its
    arguments object (``parameters``), and ``fn``, called with the validated arguments as keywords.

    Write one yourself when you want to give the schema (its arguments are checked with ``jsonschema``); a plain
    function passed as a tool becomes one through :func:`as_tool`.

    ``run_in_thread=True`` (a plain ``fn``): each call runs in a worker thread (a daemon, with no event loop), so a
    slow, blocking function does not hold up the event loop (the other rows of a ``compare``) and does not hold up a
    Stop or a Ctrl-C, on either client: the act ends at once (the call's record says "stopped while it ran"; the
    finished calls and a valid conversation are kept), and the worker thread — Python cannot kill it — is abandoned:
    it runs on to its end unless the process exits first (it is not waited for), and its late result is dropped,
    never added to the conversation. So a function that must not be left halfway (it writes a file, commits to a
    database) should not opt in. The function must be thread-safe (calls of several rows run at once) and must not
    use objects bound to one thread (an ``sqlite3`` connection). By default a plain function runs in the caller's
    thread (on the async client the event loop's), where a Stop waits for it and a Ctrl-C interrupts it.

    >>> Tool("add", "Add two numbers.", {"type": "object", "properties": {"a": {"type": "number"},
    ...      "b": {"type": "number"}}, "required": ["a", "b"]}, lambda a, b: a + b)   # doctest: +SKIP
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    fn: Callable[..., Any]
    # made from a function: the pydantic model that validates (and converts) the arguments; None: jsonschema
    validator: Callable[[dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]] | None = field(
        default=None, repr=False, compare=False
    )
    # opt-in: a plain fn runs in a daemon worker thread (a slow one holds up neither the event loop, e.g. compare's
    # other rows, nor a Stop or Ctrl-C: it is abandoned, its late result dropped), so it must be thread-safe; by
    # default it runs in the caller's (the loop's) thread
    run_in_thread: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise LMStudioRequestError(
                f"A tool's name must be 1-64 letters, digits, '_' or '-' (what the server accepts), not {self.name!r}."
            )
        if not callable(self.fn):
            raise LMStudioRequestError(f"Tool {self.name!r}: fn must be callable, not {type(self.fn).__name__}.")
        if not isinstance(self.description, str):
            raise LMStudioRequestError(f"Tool {self.name!r}: description must be text, not "
                                       f"{type(self.description).__name__}.")
        if not isinstance(self.parameters, Mapping) or self.parameters.get("type") != "object":
            raise LMStudioRequestError(
                f"Tool {self.name!r}: parameters must be the JSON schema of an object "
                '({"type": "object", "properties": {...}}), not ' + repr(self.parameters)[:80] + "."
            )
        if self.validator is None:  # the user's own schema (pydantic's are valid by construction)
            _check_schema(self.name, self.parameters)

    @property
    def is_async(self) -> bool:
        """True when ``fn`` is a coroutine function (the loop awaits it)."""
        return inspect.iscoroutinefunction(self.fn) or inspect.iscoroutinefunction(type(self.fn).__call__)

    def schema(self) -> dict[str, Any]:
        """The entry of the request's ``tools`` list."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": dict(self.parameters)},
        }

    def bind(self, arguments: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The positional and keyword arguments to call ``fn`` with; raises :class:`ToolArgumentsError` when
        ``arguments`` break the schema (the message says how, for the model to correct itself).

        A property the schema does not declare is the model's mistake too (named, with the declared ones), unless
        the schema allows other properties and ``fn`` takes ``**kwargs`` (and has no parameter of that name): then
        it is passed on in ``**kwargs``."""
        takes = self._takes_undeclared()
        unexpected = [k for k in _undeclared(self.parameters, arguments) if not takes(k)]
        fitting = {k: v for k, v in arguments.items() if k not in unexpected}
        problems = []
        try:
            if self.validator is not None:
                bound = self.validator(fitting)
            else:
                _check_with_jsonschema(self.parameters, fitting)
                bound = (), fitting
        except ToolArgumentsError as exc:
            problems.append(str(exc))
        if unexpected:
            declared = ", ".join(self.parameters.get("properties") or {}) or "no arguments"
            shown = ", ".join(repr(_capped(k, 60)) for k in unexpected[:10]) + (" …" if len(unexpected) > 10 else "")
            problems.append(f"unexpected {'property' if len(unexpected) == 1 else 'properties'} {shown}: "
                            f"{self.name} takes: {declared}")
        if problems:
            raise ToolArgumentsError("; ".join(problems))
        return bound

    def _takes_undeclared(self) -> Callable[[str], bool]:
        """Whether ``fn`` may be given a property the schema does not declare: only when the schema allows other
        properties (a function's own schema never does) and ``fn`` takes ``**kwargs``. Never a named parameter the
        schema leaves out: the model must not set what the schema hides (``query(sql, db=...)`` showing only
        ``sql``)."""
        if self.validator is not None or self.parameters.get("additionalProperties", True) is False:
            return lambda name: False
        try:
            parameters = list(inspect.signature(self.fn).parameters.values())
        except (TypeError, ValueError):
            return lambda name: False
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
        hidden = {p.name for p in parameters if p.kind is not p.VAR_KEYWORD}
        return lambda name: takes_any and name not in hidden


def _jsonschema() -> Any:
    try:
        import jsonschema  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:  # pragma: no cover - the extra is installed with the test extra
        raise ImportError("A Tool's own schema is checked with jsonschema: pip install 'lm_notebook[tools]'.") from exc
    return jsonschema


def _check_schema(name: str, schema: Mapping[str, Any]) -> None:
    """The user's schema is a JSON schema (by the draft it names, else the latest) and can be sent as JSON."""
    jsonschema = _jsonschema()
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        at = ".".join(str(p) for p in exc.absolute_path)
        raise LMStudioRequestError(
            f"Tool {name!r}: parameters is not a valid JSON schema: {_capped(exc.message)}"
            + (f" (at {at})" if at else "") + ". See https://json-schema.org/understanding-json-schema/."
        ) from None
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise LMStudioRequestError(f"Tool {name!r}: parameters must be plain JSON (dicts, lists, strings, numbers, "
                                   f"booleans, None): {exc}.") from None


def _check_with_jsonschema(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> None:
    jsonschema = _jsonschema()
    validator_class = jsonschema.validators.validator_for(schema)
    problems = sorted(validator_class(schema).iter_errors(arguments), key=lambda e: list(e.absolute_path))
    if problems:
        raise ToolArgumentsError("; ".join(_where(p.absolute_path) + _capped(p.message) for p in problems[:5]))


def _undeclared(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> list[str]:
    """The argument names neither among the schema's ``properties`` nor matching its ``patternProperties``."""
    declared = schema.get("properties") or {}
    patterns = list(schema.get("patternProperties") or {})

    def matches(pattern: str, key: str) -> bool:
        try:
            return re.search(pattern, key) is not None
        except re.error:
            return False

    return [k for k in arguments if k not in declared and not any(matches(p, k) for p in patterns)]


def _capped(text: str, limit: int = 300) -> str:
    """jsonschema quotes the offending value: a huge one must not flood the model's context."""
    return text if len(text) <= limit else text[:limit] + "…"


def _where(path: Iterable[Any]) -> str:
    steps = ".".join(str(p) for p in path)
    return f"{steps}: " if steps else ""


# --- docstrings ------------------------------------------------------------------------------------------------
# Written by hand: pydantic takes descriptions but does not read docstrings' parameter sections, and a parser
# library (docstring_parser) would be one more dependency for twenty lines.
def docstring_parts(doc: str | None) -> tuple[str, dict[str, str]]:
    """A docstring's description (its first paragraph, before any section) and each parameter's description from
    its ``Args:`` (Google) or ``Parameters`` + dashes (NumPy) section; continuation lines are joined."""
    lines = inspect.cleandoc(doc or "").splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    numpy = False
    current: str | None = None
    param_indent = -1
    for i, line in enumerate(lines):
        stripped = line.strip()
        heading = _SECTION.match(line)
        rule_below = i + 1 < len(lines) and len(lines[i + 1].strip()) > 2 and set(lines[i + 1].strip()) == {"-"}
        if heading and (stripped.endswith(":") or rule_below):
            section, numpy, current, param_indent = heading.group(1), rule_below, None, -1
            continue
        if section is None:
            description.append(line)
            continue
        if section not in _PARAMETER_SECTIONS or not stripped or set(stripped) == {"-"}:
            continue
        indent = len(line) - len(line.lstrip())
        if param_indent < 0:
            param_indent = indent
        if indent == param_indent:
            found = (_NUMPY_PARAM if numpy else _GOOGLE_PARAM).match(stripped)
            if found:
                current = found.group(1)
                params[current] = "" if numpy else found.group(2).strip()
                continue
        if current is not None:
            params[current] = f"{params[current]} {stripped}".strip()
    text = "\n".join(description).strip()
    first_paragraph = text.split("\n\n")[0] if text else ""
    return " ".join(first_paragraph.split()), params


# --- functions as tools ----------------------------------------------------------------------------------------
def _strip_titles(schema: Any) -> Any:
    """pydantic titles every property ("City"): noise in a small model's context; the names say it."""
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def tool_from_function(fn: Callable[..., Any], *, name: str | None = None, description: str | None = None,
                       run_in_thread: bool = False) -> Tool:
    """A :class:`Tool` from a plain function: the schema from its signature and hints (pydantic), the descriptions
    from its docstring. ``*args`` / ``**kwargs`` are not offered to the model; a parameter without a hint takes any
    JSON value. ``run_in_thread``: see :class:`Tool`."""
    pydantic = _require_pydantic()
    tool_name: str = name or str(getattr(fn, "__name__", ""))
    summary, param_docs = docstring_parts(inspect.getdoc(fn))
    try:
        signature = inspect.signature(fn)
        hints = _type_hints(fn)
    except (TypeError, ValueError, NameError) as exc:
        raise LMStudioRequestError(
            f"Tool {tool_name!r}: its signature cannot be read ({exc}); wrap it in a Tool."
        ) from exc
    fields: dict[str, Any] = {}
    positional: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.kind is param.POSITIONAL_ONLY:
            positional.append(param.name)
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, pydantic.Field(default, description=param_docs.get(param.name)))
    try:
        model = pydantic.create_model(
            f"{tool_name}_arguments", __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
            **fields,
        )
        schema = _strip_titles(model.model_json_schema())
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
        raise LMStudioRequestError(
            f"Tool {tool_name!r}: pydantic cannot make a JSON schema of its parameters ({str(exc).splitlines()[0]}). "
            "Give them JSON types (str, int, float, bool, list, dict, Literal, a pydantic model), or wrap it in a Tool "
            "with your own schema."
        ) from exc
    schema.setdefault("properties", {})

    def validate(arguments: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        try:
            # strict, in JSON mode: what the model sent must fit the schema it was shown ("2" is not an integer),
            # while JSON's own forms still fit (an array for a tuple, an ISO string for a datetime)
            values = model.model_validate_json(json.dumps(arguments), strict=True)
        except pydantic.ValidationError as exc:
            raise ToolArgumentsError(_validation_text(exc)) from None
        given = {key: getattr(values, key) for key in fields}
        return tuple(given.pop(key) for key in positional), given

    return Tool(tool_name, description if description is not None else summary, schema, fn, validator=validate,
                run_in_thread=run_in_thread)


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn).__call__
    return typing.get_type_hints(target, include_extras=True)


def _validation_text(exc: Any) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return "; ".join(problems)


def as_tool(tool: Tool | Callable[..., Any]) -> Tool:
    """A :class:`Tool` as it is; a function (or any callable) as a tool made from its signature."""
    if isinstance(tool, Tool):
        return tool
    if not callable(tool):
        raise LMStudioRequestError(f"A tool is a function or a Tool, not {type(tool).__name__} ({tool!r:.60}).")
    return tool_from_function(tool)


def as_toolset(tools: Iterable[Tool | Callable[..., Any]]) -> dict[str, Tool]:
    """Name → tool, in order; two tools of one name are refused (the model could not tell them apart)."""
    if isinstance(tools, (str, bytes)) or not isinstance(tools, Iterable):
        raise LMStudioRequestError(f"tools must be a list of functions or Tools, not {type(tools).__name__}.")
    toolset: dict[str, Tool] = {}
    for given in tools:
        tool = as_tool(given)
        if tool.name in toolset:
            raise LMStudioRequestError(f"Two tools are named {tool.name!r}: give one another name (Tool(name=...)).")
        toolset[tool.name] = tool
    if not toolset:
        raise LMStudioRequestError("tools is empty: pass at least one function for the model to call.")
    return toolset


# --- outputs ---------------------------------------------------------------------------------------------------
class ToolOutputError(ValueError):
    """A call's return value that cannot become text (not JSON, and its ``repr`` raised); the call's error."""


def exception_text(exc: BaseException) -> str:
    """``str(exc)``, or a note when even that raises: a tool's odd exception must not end the loop."""
    try:
        return str(exc)
    except Exception as inner:
        return f"(its message cannot be shown: str() raised {type(inner).__name__})"


def output_text(value: Any, max_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> str:
    """What a call's return value tells the model: a string as it is, else JSON, else ``repr``; cut to
    ``max_chars`` with a note saying how much there was (a huge DataFrame must not flood the context).
    Raises :class:`ToolOutputError` when there is no text to be had (a ``__repr__`` that raises, a structure
    nested too deeply for either)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except Exception as not_json:  # not JSON-able, circular, too deep, a broken default
            try:
                text = repr(value)
            except Exception as exc:
                raise ToolOutputError(
                    f"returned a {type(value).__name__} that cannot be made text: it is not JSON "
                    f"({type(not_json).__name__}: {exception_text(not_json)[:200]}) and repr() raised "
                    f"{type(exc).__name__}: {exception_text(exc)[:200]}"
                ) from None
    return capped_text(text, max_chars)


def capped_text(text: str, max_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> str:
    """``text`` cut to ``max_chars`` (0: no cap) with a note saying how much there was: what goes back to the
    model as a call's output or error."""
    if max_chars > 0 and len(text) > max_chars:
        return text[:max_chars] + f"\n… [cut: the output has {len(text)} characters; the first {max_chars} are shown]"
    return text
