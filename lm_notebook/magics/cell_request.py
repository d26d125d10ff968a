"""What a ``%%lm`` cell asks for, read from its line and its text before anything is sent: the messages (prompt
interpolated, system prompt, ``--chat`` memory), the model, the sampling settings, images, schema and the format.

Every problem is a ``UsageError`` line here, so a bad cell never reaches the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError

from lm_notebook.client.clients import LMStudioClient
from lm_notebook.client.errors import LMStudioRequestError
from lm_notebook.client.interpolation import InterpolationError, fill
from lm_notebook.display.render import AnswerFormat
from lm_notebook.magics.cell_inputs import cell_images, cell_schema
from lm_notebook.magics.host import MagicsHost
from lm_notebook.magics.settings import checked_max_tokens, checked_temperature


@dataclass(frozen=True)
class CellRequest:
    """One ``%%lm`` cell's request: for ``client.chat(messages, model=model, **params)`` and its kin."""

    client: LMStudioClient
    messages: list[dict[str, Any]]
    model: str
    params: dict[str, Any]
    fmt: AnswerFormat


def read_cell(host: MagicsHost, args: Any, cell: str) -> CellRequest:
    """The request of a cell whose line parsed to ``args``; a ``UsageError`` for what is wrong with it."""
    try:
        temperature = checked_temperature(args.temperature, "-t/--temperature", unset="")
        max_tokens = checked_max_tokens(args.max_tokens, "--max-tokens", unset="")
    except LMStudioRequestError as err:
        raise UsageError(str(err)) from None
    prompt = cell.strip("\n")
    if not prompt.strip():
        raise UsageError("The %%lm cell is empty: write the prompt on the lines below %%lm.")
    user_ns = host._shell.user_ns
    if not args.no_interpolate:
        try:
            prompt = fill(prompt, user_ns)
        except InterpolationError as err:
            host.last_error = err
            raise UsageError(str(err)) from err
    fmt: AnswerFormat = args.format or host.default_format
    client = host.client
    model = args.model or client.current_model
    if not model:
        raise UsageError("No model selected: choose one with %lm_use MODEL (%lm_models lists them) or pass -m MODEL.")
    system = args.system if args.system is not None else host.system
    images = cell_images(args.images, user_ns, args.max_image_edge)
    schema = cell_schema(args.schema, user_ns)
    if schema is not None and args.format is None:
        fmt = "json"  # the JSON grows live, then the parsed object shows
    params = {
        "temperature": host.temperature if temperature is None else temperature,
        "max_tokens": host.max_tokens if max_tokens is None else max_tokens,
        "seed": args.seed,
        "images": images or None,
        "schema": schema,
        "integrations": list(args.integration) if args.integration else None,
    }
    messages = host.memory.prompt(prompt, system=system, chat=args.chat)
    return CellRequest(client, messages, model, params, fmt)
