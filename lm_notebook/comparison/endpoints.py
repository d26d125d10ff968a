"""Several servers for one comparison: naming them, making their clients, and which model runs where.

``endpoints`` is a list of base URLs or clients, or a dict ``{name: url_or_client}`` (a client brings its own token and
timeout). A list names each server by its host and port (``"192.168.1.20:1234"``), and its path prefix if it has
one (``"http://gpu:1234/lmstudio/v1"`` is ``"gpu:1234_lmstudio"``). Models are found per server:
``models=None`` is every chat model of every server; a model id runs on every server that lists it (its rows shared
between them); ``"name/model"`` — when ``name`` is a server's name — or a ``(name, model)`` pair pins a model to one
server (then the result's ``model`` is ``"name/model"``, so the same model on two machines can be compared).

>>> entries = model_entries(["qwen", ("gpu", "qwen"), "laptop/gemma"], ["laptop", "gpu"])
>>> [(e.label, e.model, e.pinned) for e in entries]
[('qwen', 'qwen', None), ('gpu/qwen', 'qwen', 'gpu'), ('laptop/gemma', 'gemma', 'laptop')]
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from lm_notebook.client.clients import AsyncLMStudioClient, LMStudioClient, resolve_timeout
from lm_notebook.client.errors import LMStudioConnectionError, LMStudioRequestError, ModelNotFoundError, suggest_model
from lm_notebook.client.settings import parse_base_url
from lm_notebook.client.types import ModelInfo
from lm_notebook.comparison.preflight import known_model, model_infos

EndpointValue: TypeAlias = "str | LMStudioClient | AsyncLMStudioClient"
Endpoints: TypeAlias = "Sequence[str | LMStudioClient | AsyncLMStudioClient] | Mapping[str, str | LMStudioClient | AsyncLMStudioClient]"  # noqa: E501
ModelArg: TypeAlias = "str | tuple[str, str]"


@dataclass
class Endpoint:
    """One server of the comparison: its name, the async client used, whether we made it (and close it)."""

    name: str
    client: AsyncLMStudioClient
    owns_client: bool
    infos: dict[str, ModelInfo]
    down: LMStudioConnectionError | None = None  # could not be reached when the comparison started

    @property
    def base_url(self) -> str:
        return self.client.base_url


@dataclass(frozen=True)
class ModelEntry:
    """One model of the comparison: ``label`` (the result's ``model``), the id sent, the server it is pinned to."""

    label: str
    model: str
    pinned: str | None


def endpoint_name(value: EndpointValue) -> str:
    """A list entry's name: the host and port of its URL, then its path prefix, if any, with ``_`` for ``/``
    (``http://gpu:1234/lmstudio/v1`` is ``gpu:1234_lmstudio``): a name pins models as ``name/model``."""
    url = value if isinstance(value, str) else value.base_url
    base = parse_base_url(url).base_url
    host, _, path = base.split("://", 1)[-1].partition("/")
    path = path.strip("/")
    return f"{host}_{path.replace('/', '_')}" if path else host


def _address_checked(where: str, value: EndpointValue) -> None:
    """A URL given as an endpoint is one (the client would refuse it later, without saying which endpoint)."""
    if isinstance(value, str):
        try:
            parse_base_url(value)
        except LMStudioRequestError as err:
            raise LMStudioRequestError(f"{where} is not a server's address: {err.message}") from None


def named_endpoints(endpoints: Endpoints) -> list[tuple[str, EndpointValue]]:
    """``endpoints`` as ``(name, url_or_client)`` pairs, checked: at least one, names unique and without ``/``."""
    if isinstance(endpoints, (str, LMStudioClient, AsyncLMStudioClient)):
        raise TypeError("endpoints takes a list of base URLs or clients, or a dict {name: url_or_client}: "
                        f"endpoints=[{endpoints!r}] for one.")
    if isinstance(endpoints, Mapping):
        for name, value in endpoints.items():
            _address_checked(f"endpoints[{name!r}]", value)
        pairs = [(str(name), value) for name, value in endpoints.items()]
    elif isinstance(endpoints, Sequence):
        for i, value in enumerate(endpoints):
            _address_checked(f"endpoints[{i}]", value)
        pairs = [(endpoint_name(value) if _valid(value) else "", value) for value in endpoints]
    else:
        raise TypeError(f"endpoints must be a list or a dict, not {type(endpoints).__name__}.")
    if not pairs:
        raise ValueError("endpoints is empty: give at least one base URL or client, e.g. "
                         "endpoints=['http://127.0.0.1:1234', 'http://192.168.1.20:1234'].")
    seen: set[str] = set()
    for name, value in pairs:
        if not _valid(value):
            raise TypeError(f"Each endpoint is a base URL or a client, not {type(value).__name__}.")
        if not name or "/" in name:
            raise ValueError(f"An endpoint's name must be non-empty and without '/', not {name!r} (it pins models "
                             "as 'name/model').")
        if name in seen:
            raise ValueError(f"endpoints lists {name!r} twice: give each server once (a dict names them).")
        seen.add(name)
    return pairs


def _valid(value: object) -> bool:
    return isinstance(value, (str, LMStudioClient, AsyncLMStudioClient))


def make_client(value: EndpointValue, timeout: float | None, *, reuse_async: bool) -> tuple[AsyncLMStudioClient, bool]:
    """The async client for one endpoint, and whether we made it. ``timeout`` (when given) applies to every one."""
    chosen = None if timeout is None else resolve_timeout(timeout)
    if isinstance(value, str):
        return AsyncLMStudioClient(value, timeout=chosen), True
    if isinstance(value, AsyncLMStudioClient) and reuse_async and chosen is None:
        return value, False
    return AsyncLMStudioClient.from_client(value, timeout=chosen), True


async def open_endpoints(
    pairs: Sequence[tuple[str, EndpointValue]], timeout: float | None, *, reuse_async: bool
) -> list[Endpoint]:
    """Clients for every endpoint, and each one's models (listed at once). A server that cannot be reached is kept
    with ``down`` set; when none can be, its error is raised."""
    made = [(name, *make_client(value, timeout, reuse_async=reuse_async)) for name, value in pairs]
    found = await asyncio.gather(*(model_infos(client) for _, client, _ in made), return_exceptions=True)
    out: list[Endpoint] = []
    for (name, client, owns), infos in zip(made, found, strict=True):
        if isinstance(infos, LMStudioConnectionError):
            out.append(Endpoint(name, client, owns, {}, down=infos))
        elif isinstance(infos, BaseException):
            for _, c, o in made:
                if o:
                    await c.aclose()
            raise infos
        else:
            out.append(Endpoint(name, client, owns, infos))
    if all(e.down is not None for e in out):
        for e in out:
            if e.owns_client:
                await e.client.aclose()
        raise out[0].down  # type: ignore[misc]
    return out


def model_entries(models: str | Sequence[ModelArg] | None, names: Sequence[str]) -> list[ModelEntry]:
    """The models as given (``None`` is resolved later from the listings): pins recognised, duplicates refused."""
    if models is None:
        return []
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",")] if "," in models else [models]
    out: list[ModelEntry] = []
    for item in models:
        if isinstance(item, tuple):
            if len(item) != 2 or not all(isinstance(x, str) for x in item):
                raise TypeError(f"A pinned model is a (endpoint name, model id) pair, not {item!r}.")
            name, model = item
            if name not in names:
                raise ValueError(f"{item!r} pins to {name!r}, which is not an endpoint; the endpoints are "
                                 f"{list(names)}.")
            out.append(ModelEntry(f"{name}/{model}", model, name))
        elif isinstance(item, str):
            if not item:
                continue
            head, _, rest = item.partition("/")
            if rest and head in names:
                out.append(ModelEntry(item, rest, head))
            else:
                out.append(ModelEntry(item, item, None))
        else:
            raise TypeError(f"Model ids must be strings or (endpoint, model) pairs, not {type(item).__name__}.")
    if not out:
        raise ValueError("No models given: pass model ids, e.g. compare(prompts, ['model-a', 'model-b'], "
                         "endpoints=[...]), or models=None for every model of every endpoint.")
    labels = [e.label for e in out]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ValueError(f"models lists {', '.join(map(repr, twice))} more than once: give each model once (for "
                         "several answers per prompt, pass repeats=N).")
    return out


def every_chat_model(endpoints: Sequence[Endpoint]) -> list[ModelEntry]:
    """``models=None``: every chat model (not embeddings) any endpoint lists, in the endpoints' order."""
    seen: dict[str, ModelEntry] = {}
    for endpoint in endpoints:
        for info in endpoint.infos.values():
            if info.type != "embeddings" and info.id not in seen:
                seen[info.id] = ModelEntry(info.id, info.id, None)
    if not seen:
        listed = ", ".join(f"{e.name} at {e.base_url}" for e in endpoints)
        raise ModelNotFoundError(f"No endpoint lists a chat model ({listed}): load or download one, or pass "
                                 "models=[...].", status_code=404, model=None, available=[])
    return list(seen.values())


def servers_of(entry: ModelEntry, endpoints: Sequence[Endpoint]) -> list[str]:
    """The endpoints able to run ``entry``: its pin, or every one that lists it (up or not)."""
    if entry.pinned is not None:
        return [entry.pinned]
    return [e.name for e in endpoints if e.infos and known_model(entry.model, e.infos)]


def not_anywhere(entry: ModelEntry, endpoints: Sequence[Endpoint]) -> ModelNotFoundError:
    """The error of a model no endpoint lists (its rows fail unsent)."""
    ids = sorted({i for e in endpoints for i in e.infos})
    listed = "; ".join(f"{e.name}: {', '.join(sorted(e.infos)[:10]) or 'nothing'}" for e in endpoints if e.down is None)
    guess = suggest_model(entry.model, ids)
    hint = f' Did you mean "{guess}"?' if guess else ""
    return ModelNotFoundError(
        f'Model "{entry.model}" is not available on any endpoint ({listed}).{hint} Fix the id in models, or '
        "download the model on one of the servers.", status_code=404, model=entry.model, available=ids,
    )


def endpoint_models(endpoints: Endpoints, *, timeout: float | None = None) -> dict[str, list[ModelInfo]]:
    """Every endpoint's models, by endpoint name (what ``%lm_models --all`` shows); an endpoint that cannot be
    reached raises its error."""
    out: dict[str, list[ModelInfo]] = {}
    for name, value in named_endpoints(endpoints):
        client = LMStudioClient(value, timeout=timeout) if isinstance(value, str) else value
        if isinstance(client, AsyncLMStudioClient):
            client = LMStudioClient.from_client(client)
        try:
            out[name] = client.list_models()
        finally:
            if client is not value:
                client.close()
    return out
