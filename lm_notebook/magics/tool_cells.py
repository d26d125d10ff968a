"""``%%lm --tools f,g``: the cell's prompt goes through ``act`` with the notebook's functions ``f`` and ``g``.

Each call shows as a collapsible block (function, arguments, result, time) above the streamed answer; the answer is
the cell's value, and ``-o NAME`` keeps the :class:`~lm_notebook.client.act_types.ActResult` (every round and call).
A bad call from the model is that call's error, sent back to it, never a crash; Ctrl-C stops the loop and keeps what
there was.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from IPython.core.error import UsageError

from lm_notebook.client.act_types import ActInterrupted, ActResult, ToolRoundsExceededError
from lm_notebook.client.errors import LMStudioError, LMStudioRequestError
from lm_notebook.client.tools import Tool, as_toolset
from lm_notebook.display.act_view import ToolCallsView, act_into, block_of
from lm_notebook.display.answer import TerminalStreamView, make_view, show_bundle
from lm_notebook.display.render import RenderedChatResult
from lm_notebook.display.tool_blocks import tool_blocks_bundle
from lm_notebook.magics.answer_cell import deliver, footer_learns_who_answers
from lm_notebook.magics.cell_request import CellRequest
from lm_notebook.magics.host import MagicsHost
from lm_notebook.magics.stopping import interrupts_held


def tools_from_namespace(spec: str, namespace: Mapping[str, Any]) -> list[Tool]:
    """``"f, g"`` → the tools made from the namespace's functions ``f`` and ``g``; a UsageError names what is wrong."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise UsageError("--tools needs the names of your functions, separated by commas: --tools lookup,plot_it")
    found: list[Callable[..., Any] | Tool] = []
    for name in names:
        if name not in namespace:
            raise UsageError(f"--tools: there is no {name!r} in the notebook. Define it first (def {name}(...): ...); "
                             "separate several names with commas, no spaces: --tools lookup,plot_it")
        value = namespace[name]
        if not callable(value) and not isinstance(value, Tool):
            raise UsageError(f"--tools: {name} is not a function (it is {type(value).__name__} {value!r:.40}).")
        found.append(value)
    try:
        return list(as_toolset(found).values())
    except LMStudioRequestError as err:
        raise UsageError(str(err)) from None


def _without_output(args: Any) -> Any:
    """The arguments with ``-o`` taken off: the cell stores the ActResult there itself."""
    return argparse.Namespace(**{**vars(args), "output": None})


def tools_cell(host: MagicsHost, req: CellRequest, args: Any) -> RenderedChatResult | None:
    """Run the cell's ``act``: blocks and answer shown, the ActResult stored with ``-o``."""
    client, messages, model, params, fmt = req.client, req.messages, req.model, req.params, req.fmt
    tools = tools_from_namespace(args.tools, host._shell.user_ns)
    fake = client.server_is_fake is True
    if args.no_stream:
        try:
            done = client.act(messages, tools, model=model, **params)
        except ActInterrupted as err:  # Ctrl-C in a call or while the model was asked: kept, said as streamed
            with interrupts_held(host._shell):  # Stop pressed again does not cut this short: one line, nothing lost
                host._store(args.output, err.act_result)
                if err.act_result.calls:
                    show_bundle(tool_blocks_bundle([block_of(c) for c in err.act_result.calls]))
                    host._stopped(err, args, "the calls are")
                else:  # stopped before any call: only the prompt to keep
                    host._fail(err, "stopped before the answer arrived; the connection is closed.")
            raise
        except KeyboardInterrupt as err:  # Ctrl-C outside act()'s requests and calls
            with interrupts_held(host._shell):
                host._fail(err, "stopped before the answer arrived; the connection is closed.")
            raise
        except ToolRoundsExceededError as err:
            show_bundle(tool_blocks_bundle([block_of(c) for c in err.act_result.calls]))
            host._store(args.output, err.act_result)
            host._failed(err, args)
            raise
        except LMStudioError as err:
            host._failed(err, args)
            raise
        if done.calls:
            show_bundle(tool_blocks_bundle([block_of(c) for c in done.calls]))
        return _finish(host, req, done, args, view=None)
    view = make_view(host._shell, fmt, model, interval=1.0 / host.updates_per_second,
                     loading=host._will_load(client, model), fake_server=fake)
    tool_view = ToolCallsView(view)
    stream = client.stream_act(messages, tools, model=model, **params)
    try:
        with footer_learns_who_answers(view, client):
            result = act_into(stream, tool_view)
    except KeyboardInterrupt as err:
        with interrupts_held(host._shell):
            partial = stream.result()
            host._store(args.output, partial)
            tool_view.show_blocks()
            view.show_final(partial.result, fmt, note="stopped")
            host._stopped(err, args, "the calls and the partial answer are")
        raise
    except ToolRoundsExceededError as err:
        host._store(args.output, err.act_result)
        tool_view.show_blocks()
        host._failed(err, args)
        raise
    except LMStudioError as err:
        host._store(args.output, stream.partial())
        tool_view.show_blocks()
        received = err.partial
        if received is not None and (received.content or received.reasoning):
            view.show_final(received, fmt, note="incomplete (error below)")
        host._failed(err, args)
        raise
    tool_view.show_blocks()
    return _finish(host, req, result, args, view=view)


def _finish(host: MagicsHost, req: CellRequest, done: ActResult, args: Any, *, view: Any) -> RenderedChatResult | None:
    host._remember(req.client, req.model, req.messages, done.result, args.chat)
    host._store(args.output, done)
    written = isinstance(view, TerminalStreamView) and view.wrote_answer
    return deliver(host, req, done.result, _without_output(args), already_written=written, view=view)
