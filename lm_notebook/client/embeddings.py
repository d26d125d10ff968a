"""Embeddings: ``client.embed(texts)`` → :class:`Embeddings`, one flow for both clients (``POST /v1/embeddings``).

>>> with LMStudioClient() as client:                                           # doctest: +SKIP
...     result = client.embed(["a cat", "a dog"], model="text-embedding-nomic-embed-text-v1.5")
...     result.vectors.shape                                                    # (2, 768)

numpy is imported when an answer is assembled, never when this module is: the core stays stdlib + httpx.
Without ``model``, the server's one embedding model is used (or the current model, when it is one). An embedding
model with no pooling (llama.cpp serving a causal LM with ``--embedding``) answers one vector per *token*: those are
averaged into one vector per text, and ``pooled_tokens`` says so; such a server is sent one text per request, as
its batched per-token answers are wrong for every text but the first (llama-cpp-python 0.3.36, measured).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from lm_notebook.client.errors import LMStudioAPIError, LMStudioRequestError
from lm_notebook.client.flows import Flow
from lm_notebook.client.types import ModelInfo, Usage

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

EMBEDDINGS_PATH = "/v1/embeddings"
DEFAULT_BATCH_SIZE = 64
# The most texts one request may carry (OpenAI's limit for one embeddings request; LM Studio takes no more).
MAX_BATCH_SIZE = 2048
EMBEDDING_TYPES = frozenset({"embeddings", "embedding"})


class _Embedder(Protocol):
    """What the flow needs of a client (the shared base has it)."""

    @property
    def base_url(self) -> str: ...

    @property
    def current_model(self) -> str | None: ...

    def _list_models(self) -> Flow[list[ModelInfo]]: ...

    def _json(self, method: str, path: str, *, json_body: Any = None, model: str | None = None,
              max_tokens: int | None = None) -> Flow[Any]: ...


@dataclass(frozen=True)
class Embeddings:
    """What :meth:`~lm_notebook.client.LMStudioClient.embed` returns: ``vectors`` (a numpy array, one row a text),
    the ``model`` that made them, the token ``usage`` when the server reported any, and ``pooled_tokens`` (True when
    the server sent one vector per token and the client averaged them)."""

    vectors: npt.NDArray[np.float64]
    model: str
    texts: tuple[str, ...]
    usage: Usage | None = None
    pooled_tokens: bool = False

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.vectors.shape)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> npt.NDArray[Any]:
        return self.vectors if dtype is None else self.vectors.astype(dtype)

    def similarity(self, i: int, j: int) -> float:
        """The cosine similarity of text ``i`` and text ``j``."""
        return cosine(self.vectors[i], self.vectors[j])


def cosine(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    """Cosine similarity of two vectors (0.0 when either is all zeros)."""
    import numpy as np

    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm else 0.0


def is_embedding_model(info: ModelInfo) -> bool:
    return info.type in EMBEDDING_TYPES


def _texts(texts: str | Sequence[str]) -> list[str]:
    items = [texts] if isinstance(texts, str) else list(texts)
    if not items:
        raise LMStudioRequestError("embed() got no texts: pass a string or a non-empty list of strings.")
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise LMStudioRequestError(f"embed() takes strings; text {i} is a {type(text).__name__}.")
    return items


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise LMStudioRequestError(
            f"embed(batch_size={batch_size!r}): one request carries 1 to {MAX_BATCH_SIZE} texts. Pass a batch_size "
            f"in that range (default {DEFAULT_BATCH_SIZE}); longer lists are sent in several requests."
        )


def choose_embedding_model(model: str | None, current: str | None, infos: Sequence[ModelInfo], base_url: str) -> str:
    """The model to embed with: ``model`` (refused when the server's listing calls it a language model), else the
    current model when it is an embedding model, else the server's one embedding model."""
    by_id = {i.id: i for i in infos}
    embedders = sorted(i.id for i in infos if is_embedding_model(i))
    if model is not None:
        info = by_id.get(model)
        if info is not None and info.type is not None and not is_embedding_model(info):
            others = f" The embedding models here: {', '.join(embedders)}." if embedders else (
                " This server lists no embedding model: download one in LM Studio (e.g. nomic-embed-text-v1.5).")
            raise LMStudioRequestError(
                f'"{model}" is a language model ({info.type}), not an embedding model: it cannot embed text.{others}'
            )
        return model
    if current is not None and current in by_id and is_embedding_model(by_id[current]):
        return current
    if len(embedders) == 1:
        return embedders[0]
    if not embedders:
        known = any(i.type is not None for i in infos)
        why = "lists no embedding model" if known else "does not say which of its models embed"
        raise LMStudioRequestError(
            f"embed() needs an embedding model and the server at {base_url} {why}: pass model='...' (an embedding "
            "model's id), or download one in LM Studio (e.g. nomic-embed-text-v1.5)."
        )
    raise LMStudioRequestError(
        f"embed() has {len(embedders)} embedding models to choose from ({', '.join(embedders)}): pass model='...'."
    )


def _vectors(body: Any, count: int, model: str) -> tuple[list[list[float]], bool]:
    """One vector per text from an embeddings answer, in input order; per-token output averaged."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != count:
        got = len(data) if isinstance(data, list) else "no"
        raise LMStudioRequestError(f"{model} answered {got} embeddings for {count} texts; the answer is not usable.")
    ordered = sorted(data, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
    out: list[list[float]] = []
    pooled = False
    for item in ordered:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, list) and vector and isinstance(vector[0], list):
            pooled = True  # one vector per token: the mean is the text's vector
            width = len(vector[0])
            vector = [sum(row[k] for row in vector) / len(vector) for k in range(width)]
        if not isinstance(vector, list) or not vector:
            raise LMStudioRequestError(f"{model} answered an embedding that is not a list of numbers.")
        out.append([float(v) for v in vector])
    return out, pooled


def _usage(bodies: Sequence[Any]) -> Usage | None:
    prompt = total = 0
    seen = False
    for body in bodies:
        usage = body.get("usage") if isinstance(body, dict) else None
        if isinstance(usage, dict) and (usage.get("prompt_tokens") or usage.get("total_tokens")):
            seen = True
            prompt += int(usage.get("prompt_tokens") or 0)
            total += int(usage.get("total_tokens") or 0)
    return Usage(prompt_tokens=prompt, total_tokens=total) if seen else None  # LM Studio always reports 0: none


def embed_flow(
    client: _Embedder,
    /,
    texts: str | Sequence[str],
    *,
    model: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Flow[Embeddings]:
    """Embed ``texts`` (a string or a list) with an embedding model: an :class:`Embeddings` (``.vectors``, a numpy
    array with one row per text). ``model``: default the server's one embedding model; ``batch_size``: texts per
    request (1 to 2048)."""
    items = _texts(texts)
    _check_batch_size(batch_size)
    try:
        infos = yield from client._list_models()
    except LMStudioAPIError:
        infos = []  # a server that lists nothing: the model must be named, and is checked by the server
    chosen = choose_embedding_model(model, client.current_model, infos, client.base_url)
    rows: list[list[float]] = []
    bodies: list[Any] = []
    pooled = False
    start = 0
    while start < len(items):
        chunk = items[start:start + (1 if pooled else batch_size)]
        body = yield from client._json("POST", EMBEDDINGS_PATH, json_body={"model": chosen, "input": chunk},
                                       model=chosen)
        vectors, chunk_pooled = _vectors(body, len(chunk), chosen)
        if chunk_pooled and not pooled and len(chunk) > 1:
            # Per-token vectors for several texts in one request are not to be trusted: llama-cpp-python 0.3.36
            # answers the first text right and the others with unrelated vectors (the same text twice in one
            # batch came back at cosine 0.00). Such a server gets one text per request from here on.
            pooled = True
            continue
        pooled = pooled or chunk_pooled
        rows.extend(vectors)
        bodies.append(body)
        start += len(chunk)
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise LMStudioRequestError(f"{chosen} answered vectors of different lengths ({sorted(widths)}).")
    import numpy as np

    served = next((b.get("model") for b in bodies if isinstance(b, dict) and isinstance(b.get("model"), str)), None)
    return Embeddings(np.asarray(rows, dtype=np.float64), served or chosen, tuple(items), _usage(bodies), pooled)
