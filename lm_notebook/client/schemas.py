"""Structured answers: ``schema=`` (a pydantic model class or a JSON-schema dict) as a request part, and the answer
checked against it (pure; no I/O).

The schema goes to LM Studio as ``response_format: {"type": "json_schema", "json_schema": {"name", "strict": true,
"schema"}}``; the answer is parsed and validated, by pydantic for a model class and by ``jsonschema`` for a dict
(both imported only when a schema is used: the client needs neither). An answer that is not JSON, or breaks the
schema, raises :class:`~lm_notebook.client.errors.AnswerFormatError` with the raw text, the first error and where in
the JSON it is.

>>> from pydantic import BaseModel                                 # doctest: +SKIP
>>> class City(BaseModel):                                         # doctest: +SKIP
...     name: str
...     population: int
>>> client.chat("The largest city in France?", schema=City).parsed  # doctest: +SKIP
City(name='Paris', population=2102650)
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lm_notebook.client.errors import AnswerFormatError, LMStudioRequestError
from lm_notebook.client.types import ChatResult

# a pydantic model class, or a JSON-schema dict
Schema = type | Mapping[str, Any]

ACCEPTED_SCHEMAS = (
    "Pass a pydantic model class (class City(BaseModel): name: str) or a JSON-schema dict "
    '({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}).'
)
JSON_EXTRA = "pip install 'lm_notebook[json]'"
_FENCED = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n(.*?)^ {0,3}\1[ \t]*$", re.DOTALL | re.MULTILINE)
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def parse_json_answer(text: str) -> Any:
    """The JSON value of an answer; JSON in a ```json fence (with words around it) is allowed. Raises
    ``ValueError``."""
    candidate = text.strip()
    fenced = _FENCED.search(candidate)
    if fenced is not None and not candidate.startswith(("{", "[")):
        candidate = fenced.group(2)
    return json.loads(candidate)


def json_path(path: Sequence[Any]) -> str:
    """``("items", 0, "name")`` as ``$.items[0].name``."""
    out = "$"
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else f".{key}"
    return out


def _is_pydantic_model(schema: object) -> bool:
    return isinstance(schema, type) and callable(getattr(schema, "model_json_schema", None)) and callable(
        getattr(schema, "model_validate", None)
    )


@dataclass(frozen=True)
class AnswerSchema:
    """What ``schema=`` asked for: a ``name`` (as LM Studio wants it), the JSON schema, and the pydantic model
    class it came from (None for a dict)."""

    name: str
    json_schema: dict[str, Any]
    model: type | None = None

    @classmethod
    def of(cls, schema: object) -> AnswerSchema:
        """Check ``schema`` before anything is sent: a pydantic model class, or a JSON-schema dict that is itself a
        valid schema (and ``jsonschema`` installed to check answers against it)."""
        if isinstance(schema, AnswerSchema):
            return schema
        if _is_pydantic_model(schema):
            assert isinstance(schema, type)
            generated: dict[str, Any] = schema.model_json_schema()  # type: ignore[attr-defined]
            return cls(_name(schema.__name__), generated, schema)
        if isinstance(schema, type):
            raise LMStudioRequestError(
                f"schema={schema.__name__} is a class but not a pydantic model (it has no model_json_schema()). "
                + ACCEPTED_SCHEMAS
            )
        if not isinstance(schema, Mapping):
            raise LMStudioRequestError(f"schema={_shown(schema)} ({type(schema).__name__}) is not a schema. "
                                       + ACCEPTED_SCHEMAS)
        as_dict = dict(schema)
        validator_class = _validator_class(as_dict)
        try:
            validator_class.check_schema(as_dict)
        except Exception as exc:  # jsonschema.SchemaError; its message names the bad part
            message = getattr(exc, "message", str(exc))
            raise LMStudioRequestError(f"schema= is not a valid JSON schema: {message}. " + ACCEPTED_SCHEMAS) from exc
        return cls(_name(str(as_dict.get("title") or "answer")), as_dict)

    def response_format(self) -> dict[str, Any]:
        """LM Studio's (and OpenAI's) ``response_format`` for this schema."""
        return {"type": "json_schema", "json_schema": {"name": self.name, "strict": True, "schema": self.json_schema}}

    def parsed(self, result: ChatResult) -> ChatResult:
        """``result`` with ``.parsed`` set: the model instance (pydantic) or the validated value (dict schema).
        Raises :class:`AnswerFormatError` when the answer is not JSON or breaks the schema."""
        try:
            value = parse_json_answer(result.content)
        except ValueError as exc:
            raise AnswerFormatError(
                f"The answer is not valid JSON ({exc}), so it does not follow the schema {self.name}."
                f"{_cut_note(result)} The raw text is kept in .raw.",
                result, validation_error=str(exc),
            ) from exc
        if self.model is not None:
            return self._with_model(result, value)
        validator = _validator_class(self.json_schema)(self.json_schema)
        import jsonschema  # type: ignore[import-untyped, unused-ignore]  # present: _validator_class checked

        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            raise self._broken(result, error.message, json_path(list(error.absolute_path)))
        return dataclasses.replace(result, parsed=value)

    def _with_model(self, result: ChatResult, value: Any) -> ChatResult:
        assert self.model is not None
        try:
            instance = self.model.model_validate(value)  # type: ignore[attr-defined]
        except Exception as exc:  # pydantic.ValidationError (pydantic is the user's, imported by them)
            listed = getattr(exc, "errors", None)
            errors: list[dict[str, Any]] = listed() if callable(listed) else []
            if not errors:
                raise
            first = errors[0]
            raise self._broken(result, str(first.get("msg", exc)), json_path(tuple(first.get("loc", ())))) from exc
        return dataclasses.replace(result, parsed=instance)

    def _broken(self, result: ChatResult, problem: str, path: str) -> AnswerFormatError:
        return AnswerFormatError(
            f"The answer is JSON but breaks the schema {self.name} at {path}: {problem}.{_cut_note(result)} The raw "
            "text is kept in .raw.",
            result, validation_error=problem, path=path,
        )


def _validator_class(schema: dict[str, Any]) -> Any:
    try:
        import jsonschema  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        raise LMStudioRequestError(
            f"schema= with a JSON-schema dict checks answers with the jsonschema library, which is not installed: "
            f"{JSON_EXTRA} (or pass a pydantic model class)."
        ) from exc
    return jsonschema.validators.validator_for(schema)


def _cut_note(result: ChatResult) -> str:
    if result.finish_reason == "length":
        return " The answer was cut at max_tokens before the JSON ended: raise max_tokens."
    return ""


def _name(raw: str) -> str:
    return _NAME_CHARS.sub("_", raw).strip("_")[:64] or "answer"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def with_schema(params: Mapping[str, Any], schema: AnswerSchema | None) -> dict[str, Any]:
    """``params`` with the schema's ``response_format``; both given is refused (which one would win?)."""
    out = dict(params)
    if schema is None:
        return out
    if out.get("response_format") is not None:
        raise LMStudioRequestError(
            "Pass schema= or response_format=, not both: schema= sends its own response_format (json_schema)."
        )
    out["response_format"] = schema.response_format()
    return out


def json_object_form(response_format: Mapping[str, Any]) -> dict[str, Any] | None:
    """A ``json_schema`` response format in llama.cpp's form ``{"type": "json_object", "schema": ...}``, for a
    server that refuses LM Studio's (llama-cpp-python's; see LMSTUDIO_API.md). None for any other format."""
    if response_format.get("type") != "json_schema":
        return None
    inner = response_format.get("json_schema")
    schema = inner.get("schema") if isinstance(inner, Mapping) else None
    return {"type": "json_object", "schema": schema} if isinstance(schema, Mapping) else None
