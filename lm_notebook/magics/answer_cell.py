"""A ``%%lm`` cell's answer: asked for (streamed live, or at once with ``--no-stream``), shown, stored and
remembered; a stop or a failure keeps what arrived and ends in one line.

``--tools`` cells go through :mod:`~lm_notebook.magics.tool_cells` instead, which ends in :func:`deliver` too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from lm_notebook.client.clients import LMStudioClient
from lm_notebook.client.errors import AnswerFormatError, LMStudioError
from lm_notebook.client.types import ChatResult
from lm_notebook.display.answer import (
    NotebookStreamView,
    StreamView,
    TerminalStreamView,
    make_view,
    show_bundle,
    stream_into,
)
from lm_notebook.display.render import RenderedChatResult, finish_as
from lm_notebook.display.thumbnails import ThumbnailedView, thumbnails_bundle
from lm_notebook.magics.cell_request import CellRequest
from lm_notebook.magics.host import MagicsHost
from lm_notebook.magics.stopping import interrupts_held


def answer_blocking(host: MagicsHost, req: CellRequest, args: Any) -> RenderedChatResult | None:
    """``--no-stream``: the whole answer, then shown once."""
    client = req.client
    if req.params["images"]:
        show_bundle(thumbnails_bundle(req.params["images"]))
    try:
        result = client.chat(req.messages, model=req.model, **req.params)
    except AnswerFormatError as err:
        return format_failed(host, req, err, args, None, already_written=False)
    except LMStudioError as err:
        host._failed(err, args)
        raise
    except KeyboardInterrupt as err:
        with interrupts_held(host._shell):
            host._fail(err, "stopped before the answer arrived; the connection is closed.")
        raise
    host._remember(client, req.model, req.messages, result, args.chat)
    return deliver(host, req, result, args, already_written=False)


def answer_streaming(host: MagicsHost, req: CellRequest, args: Any) -> RenderedChatResult | None:
    """The answer streamed into the cell's live view, then its exact final render as the cell's value."""
    client, model, fmt = req.client, req.model, req.fmt
    interval = 1.0 / host.updates_per_second
    # a fresh client asks who answers before its first request anyway: asked now, the live footer says it too
    host._fake_server(client)
    view = make_view(host._shell, fmt, model, interval=interval, loading=host._will_load(client, model),
                     fake_server=client.server_is_fake is True)
    try:
        stream = client.stream_chat(req.messages, model=model, **req.params)
    except LMStudioError as err:
        host._failed(err, args)
        raise
    if isinstance(view, NotebookStreamView):  # it repaints a few times a second: one read per repaint or so
        view.read_from(stream)
    try:
        with footer_learns_who_answers(view, client):
            images = req.params["images"]
            shown: StreamView = ThumbnailedView(
                view, images, again_at_stop=isinstance(view, NotebookStreamView), show=show_bundle
            ) if images else view
            result = stream_into(stream, shown)
    except KeyboardInterrupt as err:
        with interrupts_held(host._shell):  # Stop pressed again does not cut this short: one line, nothing lost
            partial = stream.result()
            host._remember(client, model, req.messages, partial, args.chat)
            host._store(args.output, RenderedChatResult.of(partial, fmt, fake_server=client.server_is_fake is True))
            view.show_final(partial, fmt, note="stopped")
            host._stopped(err, args, "the partial answer is")
        raise
    except AnswerFormatError as err:
        return format_failed(host, req, err, args, view, already_written=isinstance(view, TerminalStreamView))
    except LMStudioError as err:
        received = err.partial
        if received is not None and (received.content or received.reasoning):
            fake = client.server_is_fake is True
            host._store(args.output, RenderedChatResult.of(received, fmt, fake_server=fake))
            view.show_final(received, fmt, note="incomplete (error below)")
        host._failed(err, args)
        raise
    host._remember(client, model, req.messages, result, args.chat)
    written = isinstance(view, TerminalStreamView) and view.wrote_answer
    return deliver(host, req, result, args, already_written=written, view=view)


@contextmanager
def footer_learns_who_answers(view: StreamView, client: LMStudioClient) -> Iterator[None]:
    """However the stream ends: a fresh client learns who answers with its first request, and the final footer
    says it."""
    try:
        yield
    finally:
        if isinstance(view, (NotebookStreamView, TerminalStreamView)):
            view.fake_server = client.server_is_fake is True


def deliver(
    host: MagicsHost, req: CellRequest, result: ChatResult, args: Any, *, already_written: bool, view: Any = None
) -> RenderedChatResult | None:
    """Store and return the answer; in a terminal whose text is already written, add only the footer."""
    try:
        # the answer's footer says when it is the bundled fake server's (known once the client has greeted it)
        rendered = finish_as(result, req.fmt, fake_server=req.client.server_is_fake is True)
    except AnswerFormatError as err:
        return format_failed(host, req, err, args, view, already_written=already_written)
    host._store(args.output, rendered)
    if already_written and view is not None:
        view.show_final(rendered, req.fmt, parsed=rendered.parsed)
        return None
    return rendered


def format_failed(
    host: MagicsHost, req: CellRequest, err: AnswerFormatError, args: Any, view: Any, *, already_written: bool
) -> NoReturn:
    """The answer is not the JSON asked for (-f json, --schema): show and keep its raw text, then the error."""
    kept = RenderedChatResult.of(err.result, "text", fake_server=req.client.server_is_fake is True)
    host._store(args.output, kept)
    if already_written and view is not None:
        view.show_final(kept, "text")
    else:
        show_bundle(kept._repr_mimebundle_())
    host._fail(err)
    raise err
