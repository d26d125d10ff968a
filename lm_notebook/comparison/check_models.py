"""The models the checks ask, checked before any candidate runs: each :func:`~lm_notebook.checks.judge`'s judge and
each :func:`~lm_notebook.checks.similar_to`'s embedding model must be on the server, and of the right kind (a judge
chats, an embedding model embeds). A wrong id is said at once — with the ids the server has and the closest one —
rather than in every cell after the candidates have run.

With ``compare(endpoints=...)`` (:class:`CheckServers` of several), a check's model runs on the first endpoint that
lists it; ``judge(model="gpu/qwen")`` (``gpu`` an endpoint's name, as for the candidates) pins it to one; an id no
endpoint lists is refused naming every endpoint checked and what each has.

:class:`CheckModelError` carries what went wrong as fields (``check``, ``role``, ``problem``, ``model``,
``available``), so a front end (``%%lm_compare``) says it in its own words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from lm_notebook.client.clients import AsyncLMStudioClient
from lm_notebook.client.embeddings import is_embedding_model
from lm_notebook.client.errors import ModelNotFoundError, suggest_model
from lm_notebook.client.types import ModelInfo
from lm_notebook.comparison.checks import Check
from lm_notebook.comparison.judge import JudgeCheck, SimilarityCheck
from lm_notebook.comparison.preflight import known_model

Role = Literal["judge", "embedding"]
# not_listed: the server has no such model; wrong_kind: a judge that embeds, or an embedding model that chats;
# none: no model given and none to default to; several: no model given and several embedding models to choose from
Problem = Literal["not_listed", "wrong_kind", "none", "several"]


class CheckModelError(ModelNotFoundError):
    """A check's model cannot do its job: ``check`` (its name), ``role`` ("judge" or "embedding"), ``problem``
    (``not_listed``, ``wrong_kind``, ``none``, ``several``), ``model`` (None when none was given) and the ids the
    server has (``available``)."""

    check: str
    role: Role
    problem: Problem

    def __init__(self, message: str, *, check: str, role: Role, problem: Problem, model: str | None,
                 available: Sequence[str]) -> None:
        super().__init__(message, model=model, available=available, status_code=404 if problem == "not_listed" else 400)
        self.check, self.role, self.problem = check, role, problem


def _shown(ids: Sequence[str]) -> str:
    return ", ".join(ids[:20]) + (" …" if len(ids) > 20 else "") if ids else "none"


def _error(check: Check, role: Role, problem: Problem, model: str | None, infos: Mapping[str, ModelInfo],
           base_url: str, endpoints: str | None = None) -> CheckModelError:
    """The error; ``endpoints``: with several, what each endpoint checked lists (``infos`` is all of them)."""
    ids = sorted(infos)
    embedders = sorted(i.id for i in infos.values() if is_embedding_model(i))
    fix = "judge(..., model='model-id')" if role == "judge" else "similar_to(..., model='embedding-model-id')"
    if problem == "not_listed" and endpoints is not None:
        guess = suggest_model(model or "", ids)
        did_you_mean = f' Did you mean "{guess}"?' if guess else ""
        what = "judge" if role == "judge" else "embedding model"
        message = (f'The {what} of check {check.name}, "{model}", is not available on any endpoint (checked: '
                   f"{endpoints}).{did_you_mean} Fix the id in {fix} (or pin it to an endpoint: 'name/model-id'), or "
                   "download the model on one of the servers.")
    elif problem == "not_listed":
        guess = suggest_model(model or "", ids)
        did_you_mean = f' Did you mean "{guess}"?' if guess else ""
        what = "judge" if role == "judge" else "embedding model"
        message = (f'The {what} of check {check.name}, "{model}", is not available on LM Studio at {base_url}. '
                   f"Available: {_shown(ids)}.{did_you_mean} Fix the id in {fix}, or download the model in LM Studio.")
    elif problem == "wrong_kind" and role == "judge":
        message = (f'The judge of check {check.name}, "{model}", is an embedding model: it cannot grade answers. '
                   f"Pick a language model in {fix}.")
    elif problem == "wrong_kind":
        info = infos.get(model or "")
        message = (f'The embedding model of check {check.name}, "{model}", is a language model '
                   f"({info.type if info else 'llm'}), not an embedding model: it cannot embed text. The embedding "
                   f"models here: {_shown(embedders)}. Pick one in {fix}.")
    elif problem == "none" and role == "judge":
        message = (f"Check {check.name} has no judge: pass {fix}, or choose a current model "
                   "(client.set_current_model(...), %lm_use MODEL).")
    elif problem == "none":
        where = f"no endpoint lists one (checked: {endpoints})" if endpoints else f"the server at {base_url} lists none"
        message = (f"Check {check.name} needs an embedding model and {where}: download one in LM Studio (e.g. "
                   f"nomic-embed-text-v1.5), or name one in {fix}.")
    else:
        message = (f"Check {check.name} has {len(embedders)} embedding models to choose from "
                   f"({_shown(embedders)}): name one in {fix}.")
    return CheckModelError(message, check=check.name, role=role, problem=problem, model=model, available=ids)


@dataclass(frozen=True)
class CheckServer:
    """A server the checks may ask: its endpoint's ``name`` (None: the comparison's one server), client, listing."""

    name: str | None
    client: AsyncLMStudioClient
    infos: Mapping[str, ModelInfo]


class CheckServers:
    """Where each check's model runs: the comparison's one server, or the first of its endpoints that lists it (a
    ``"name/model"`` id pins it to the endpoint ``name``)."""

    def __init__(self, servers: Sequence[CheckServer]) -> None:
        self.servers = list(servers)
        # a judge without a model: the current model of the first client that has one
        self.current = next((s.client.current_model for s in servers if s.client.current_model), None)

    @classmethod
    def one(cls, client: AsyncLMStudioClient, infos: Mapping[str, ModelInfo]) -> CheckServers:
        return cls([CheckServer(None, client, infos)])

    def judge(self, check: JudgeCheck) -> tuple[CheckServer, str | None]:
        """The judge's server and the id sent (None: no model given and no current model)."""
        model = check.model or self.current
        server, sent = self._place(model)
        problem: Problem | None = None
        if sent is None:
            problem = "none"
        elif server.infos and not known_model(sent, server.infos):
            problem = "not_listed"
        elif sent in server.infos and is_embedding_model(server.infos[sent]):
            problem = "wrong_kind"
        if problem is not None:
            raise self._error(check, "judge", problem, model, server)
        return server, sent

    def embedding(self, check: SimilarityCheck) -> tuple[CheckServer, str | None]:
        """``similar_to``'s server and embedding model (None: the server's one, found when it embeds)."""
        if check.model is not None:
            server, sent = self._place(check.model)
            info = server.infos.get(sent or "")
            problem: Problem | None = None
            if server.infos and not known_model(sent or "", server.infos):
                problem = "not_listed"
            elif info is not None and info.type is not None and not is_embedding_model(info):
                problem = "wrong_kind"
            if problem is not None:
                raise self._error(check, "embedding", problem, check.model, server)
            return server, sent
        listed = [s for s in self.servers if s.infos]
        if not listed:
            return self.servers[0], None
        embedders = {i.id: s for s in reversed(listed) for i in s.infos.values() if is_embedding_model(i)}
        if len(embedders) == 1:
            ((sent, server),) = embedders.items()
            return server, sent
        known = any(i.type is not None for s in listed for i in s.infos.values())
        if embedders or known:
            raise self._error(check, "embedding", "several" if embedders else "none", None, listed[0])
        return self.servers[0], None

    def _place(self, model: str | None) -> tuple[CheckServer, str | None]:
        """The server of ``model`` and the id it is sent as: a pin's endpoint, else the first endpoint listing it,
        else (for the error) the first one."""
        if model is None or len(self.servers) == 1:
            return self.servers[0], model
        head, _, rest = model.partition("/")
        pinned = next((s for s in self.servers if s.name == head), None)
        if rest and pinned is not None and not any(known_model(model, s.infos) for s in self.servers):
            return pinned, rest
        listing = next((s for s in self.servers if s.infos and known_model(model, s.infos)), None)
        return (listing or self.servers[0]), model

    def _error(self, check: Check, role: Role, problem: Problem, model: str | None,
               server: CheckServer) -> CheckModelError:
        if len(self.servers) == 1 or problem == "wrong_kind":
            return _error(check, role, problem, model, server.infos, server.client.base_url)
        every = {i: info for s in self.servers for i, info in s.infos.items()}
        checked = "; ".join(f"{s.name} at {s.client.base_url}: {_shown(sorted(s.infos))}" for s in self.servers)
        return _error(check, role, problem, model, every, server.client.base_url, endpoints=checked)


def check_models(checks: Sequence[Check], servers: CheckServers) -> None:
    """Raise :class:`CheckModelError` for the first check whose model cannot do its job (nothing is checked against
    a server that does not list its models, but a judge with no model at all is refused)."""
    for check in checks:
        if isinstance(check, JudgeCheck):
            servers.judge(check)
        elif isinstance(check, SimilarityCheck):
            servers.embedding(check)
