"""The models the checks ask, checked before any candidate runs: each :func:`~lm_notebook.checks.judge`'s judge and
each :func:`~lm_notebook.checks.similar_to`'s embedding model must be on the server, and of the right kind (a judge
chats, an embedding model embeds). A wrong id is said at once — with the ids the server has and the closest one —
rather than in every cell after the candidates have run.

With ``compare(endpoints=...)`` (:class:`CheckServers` of several), a check's model runs on the first endpoint up that
lists it; ``judge(model="gpu/qwen")`` (``gpu`` an endpoint's name, as for the candidates) pins it to one, however many
endpoints are given or up; an id no endpoint lists is refused naming every endpoint checked and what each has (or that
it is down). A pin that cannot work says which endpoint was pinned, whether it is up, what it lists, and where the
model is (``alpha is on a: pin it as a/alpha or leave the pin out``).

:class:`CheckModelError` carries what went wrong as fields (``check``, ``role``, ``problem``, ``model``,
``available``), so a front end (``%%lm_compare``) says it in its own words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from lm_notebook.client.clients import AsyncLMStudioClient
from lm_notebook.client.embeddings import is_embedding_model
from lm_notebook.client.errors import LMStudioError, ModelNotFoundError, suggest_model
from lm_notebook.client.types import ModelInfo
from lm_notebook.comparison.checks import Check
from lm_notebook.comparison.judge import JudgeCheck, SimilarityCheck
from lm_notebook.comparison.preflight import known_model

Role = Literal["judge", "embedding"]
# not_listed: the server has no such model; wrong_kind: a judge that embeds, or an embedding model that chats;
# none: no model given and none to default to; several: no model given and several embedding models to choose from;
# down: on an endpoint that is down (pinned to it, or, found down during the run, the only one listing the model)
Problem = Literal["not_listed", "wrong_kind", "none", "several", "down"]


class CheckModelError(ModelNotFoundError):
    """A check's model cannot do its job: ``check`` (its name), ``role`` ("judge" or "embedding"), ``problem``
    (``not_listed``, ``wrong_kind``, ``none``, ``several``, ``down``), ``model`` (None when none was given), the ids
    the server has (``available``) and, for a model pinned ``"name/model"``, the endpoint pinned (``endpoint``)."""

    check: str
    role: Role
    problem: Problem
    endpoint: str | None

    def __init__(self, message: str, *, check: str, role: Role, problem: Problem, model: str | None,
                 available: Sequence[str], endpoint: str | None = None) -> None:
        status = {"not_listed": 404, "down": 503}.get(problem, 400)
        super().__init__(message, model=model, available=available, status_code=status)
        self.check, self.role, self.problem, self.endpoint = check, role, problem, endpoint


def _shown(ids: Sequence[str]) -> str:
    return ", ".join(ids[:20]) + (" …" if len(ids) > 20 else "") if ids else "none"


def _what(role: Role) -> str:
    return "judge" if role == "judge" else "embedding model"


def _error(check: Check, role: Role, problem: Problem, model: str | None, infos: Mapping[str, ModelInfo],
           base_url: str, endpoints: str | None = None, sent: str | None = None) -> CheckModelError:
    """The error; ``endpoints``: with several, what each endpoint checked lists (``infos`` is all of them);
    ``sent``: the id without its pin."""
    ids = sorted(infos)
    embedders = sorted(i.id for i in infos.values() if is_embedding_model(i))
    fix = "judge(..., model='model-id')" if role == "judge" else "similar_to(..., model='embedding-model-id')"
    what = _what(role)
    if problem == "not_listed" and endpoints is not None:
        guess = suggest_model(model or "", ids)
        did_you_mean = f' Did you mean "{guess}"?' if guess else ""
        message = (f'The {what} of check {check.name}, "{model}", is not available on any endpoint (checked: '
                   f"{endpoints}).{did_you_mean} Fix the id in {fix} (or pin it to an endpoint: 'name/model-id'), or "
                   "download the model on one of the servers.")
    elif problem == "not_listed":
        guess = suggest_model(model or "", ids)
        did_you_mean = f' Did you mean "{guess}"?' if guess else ""
        message = (f'The {what} of check {check.name}, "{model}", is not available on LM Studio at {base_url}. '
                   f"Available: {_shown(ids)}.{did_you_mean} Fix the id in {fix}, or download the model in LM Studio.")
    elif problem == "wrong_kind" and role == "judge":
        message = (f'The judge of check {check.name}, "{model}", is an embedding model: it cannot grade answers. '
                   f"Pick a language model in {fix}.")
    elif problem == "wrong_kind":
        info = infos.get(sent or model or "")
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


@dataclass(eq=False)
class CheckServer:
    """A server the checks may ask: its endpoint's ``name`` (None: the comparison's one server), client, listing,
    and ``down``: its error when it cannot be reached (at the start, or found so since: then ``lost``)."""

    name: str | None
    client: AsyncLMStudioClient
    infos: Mapping[str, ModelInfo]
    down: LMStudioError | None = None
    lost: bool = False

    def lists(self, model: str) -> bool:
        return self.down is None and bool(self.infos) and known_model(model, self.infos)


@dataclass(frozen=True)
class Placement:
    """Where a check's model runs: its ``server``, the id ``sent`` (None: none given), whether it was ``pinned``."""

    server: CheckServer
    sent: str | None
    pinned: bool = False


class CheckServers:
    """Where each check's model runs: the comparison's one server, or the first of its endpoints up that lists it (a
    ``"name/model"`` id pins it to the endpoint ``name``, up or not)."""

    def __init__(self, servers: Sequence[CheckServer]) -> None:
        self.servers = list(servers)
        # a judge without a model: the current model of the first client that has one
        self.current = next((s.client.current_model for s in servers if s.client.current_model), None)
        self._at: dict[str, CheckServer] = {}  # check name → where its model was placed last

    def moved_from(self, check: Check, place: Placement) -> CheckServer | None:
        """Note where ``check``'s model runs now; the endpoint it left when that one was found down since (to say
        so), else None."""
        before = self._at.get(check.name)
        self._at[check.name] = place.server
        return before if before is not None and before is not place.server and before.down is not None else None

    @classmethod
    def one(cls, client: AsyncLMStudioClient, infos: Mapping[str, ModelInfo]) -> CheckServers:
        return cls([CheckServer(None, client, infos)])

    @property
    def up(self) -> list[CheckServer]:
        """The servers not known to be down (all of them when none is up: an error then comes from the first)."""
        return [s for s in self.servers if s.down is None] or self.servers

    def judge(self, check: JudgeCheck) -> Placement:
        """The judge's server and the id sent (``sent`` None: no model given and no current model)."""
        model = check.model or self.current
        place = self._place(model)
        server, sent = place.server, place.sent
        problem: Problem | None = None
        if sent is None:
            problem = "none"
        elif server.down is not None:  # (pinned, or the only endpoint that listed it: a request would be refused)
            problem = "down" if place.pinned or known_model(sent, server.infos) else "not_listed"
        elif server.infos and not known_model(sent, server.infos):
            problem = "not_listed"
        elif sent in server.infos and is_embedding_model(server.infos[sent]):
            problem = "wrong_kind"
        if problem is not None:
            raise self._error(check, "judge", problem, model, place)
        return place

    def embedding(self, check: SimilarityCheck) -> Placement:
        """``similar_to``'s server and embedding model (``sent`` None: the server's one, found when it embeds)."""
        if check.model is not None:
            place = self._place(check.model)
            server, sent = place.server, place.sent or ""
            info = server.infos.get(sent)
            problem: Problem | None = None
            if server.down is not None:
                problem = "down" if place.pinned or known_model(sent, server.infos) else "not_listed"
            elif server.infos and not known_model(sent, server.infos):
                problem = "not_listed"
            elif info is not None and info.type is not None and not is_embedding_model(info):
                problem = "wrong_kind"
            if problem is not None:
                raise self._error(check, "embedding", problem, check.model, place)
            return place
        up = [s for s in self.servers if s.down is None]
        if not up:  # every endpoint is down: none to ask
            lost = next((s for s in self.servers if s.lost), self.servers[0])
            raise self._error(check, "embedding", "down", None, Placement(lost, None))
        listed = [s for s in up if s.infos]
        if not listed:
            return Placement(up[0], None)
        embedders = {i.id: s for s in reversed(listed) for i in s.infos.values() if is_embedding_model(i)}
        if len(embedders) == 1:
            ((sent, server),) = embedders.items()
            return Placement(server, sent)
        known = any(i.type is not None for s in listed for i in s.infos.values())
        if embedders or known:
            raise self._error(check, "embedding", "several" if embedders else "none", None, Placement(listed[0], None))
        return Placement(up[0], None)

    def _place(self, model: str | None) -> Placement:
        """The server of ``model`` and the id it is sent as: a pin's endpoint (an endpoint's name, then ``/``, unless
        an endpoint up lists the whole id), else the first endpoint up listing it, else one found down since that
        listed it, else (for the error) the first up."""
        if model is None or self.servers[0].name is None:  # one server: no endpoint names, an id is an id
            return Placement(self.up[0], model)
        head, _, rest = model.partition("/")
        pinned = next((s for s in self.servers if s.name == head), None)
        if rest and pinned is not None and not any(s.lists(model) for s in self.servers):
            return Placement(pinned, rest, pinned=True)
        listing = next((s for s in self.servers if s.lists(model)), None)
        if listing is None:  # (an endpoint down from the start lists nothing)
            listing = next((s for s in self.servers if s.lost and known_model(model, s.infos)), None)
        return Placement(listing or self.up[0], model)

    def _error(self, check: Check, role: Role, problem: Problem, model: str | None,
               place: Placement) -> CheckModelError:
        server = place.server
        if problem == "down" or (place.pinned and problem == "not_listed"):
            return self._pin_error(check, role, problem, model or "", place)
        if server.name is None or problem == "wrong_kind":
            return _error(check, role, problem, model, server.infos, server.client.base_url, sent=place.sent)
        every = {i: info for s in self.servers if s.down is None for i, info in s.infos.items()}  # (a guess: up)
        checked = "; ".join(f"{s.name} at {s.client.base_url}: " + _listing(s) for s in self.servers)
        return _error(check, role, problem, model, every, server.client.base_url, endpoints=checked)

    def _pin_error(self, check: Check, role: Role, problem: Problem, model: str,
                   place: Placement) -> CheckModelError:
        """A pin that cannot work, or a model on an endpoint down: the endpoint, whether it is up, what it lists,
        where the model is."""
        server, sent = place.server, place.sent or ""
        url, what = server.client.base_url, _what(role)
        where = [s.name for s in self.servers if s is not server and s.name and s.lists(sent)]
        there = f"{sent} is on {', '.join(where)}: pin it as {where[0]}/{sent} or leave the pin out" if where else ""
        named = f'"{model}"' if model else "(the endpoint's one)"
        on = "is pinned to" if place.pinned else "is on"
        head = f"The {what} of check {check.name}, {named}, {on} endpoint {server.name} at {url}, which"
        ids = sorted(server.infos)
        if problem == "down" and not place.pinned:  # found down during the run, and no endpoint up lists it
            if any(s.down is None for s in self.servers):
                message = (f"{head} is down ({_when(server)}), and no other endpoint up lists {sent}. Start the "
                           f"server at {url}, or download {sent} on an endpoint that is up.")
            else:
                alone = ", and no other endpoint is up" if len(self.servers) > 1 else ""
                message = f"{head} is down ({_when(server)}){alone}. Start the server at {url}."
        elif problem == "down":
            message = (f"{head} is down ({_when(server)}). "
                       + (f"{there}, or start the server at {url}." if there else
                          f"Start the server at {url}, or pin the {what} to an endpoint that is up."))
        else:
            message = f"{head} does not list {sent} (it lists: {_shown(ids)})."
            if there:
                message += f" {there}."
            else:
                guess = suggest_model(sent, ids)
                message += (f' Did you mean "{server.name}/{guess}"?' if guess else "") + \
                    f" Fix the id, or download {sent} on {server.name}."
        return CheckModelError(message, check=check.name, role=role, problem=problem, model=model, available=ids,
                               endpoint=server.name)


def _listing(server: CheckServer) -> str:
    """What an endpoint lists, for an error naming every endpoint checked."""
    if server.down is None:
        return _shown(sorted(server.infos))
    return "down (stopped answering during the run)" if server.lost else "down (not reachable)"


def _when(server: CheckServer) -> str:
    """Since when an endpoint is down."""
    return "it stopped answering during the run" if server.lost else "not reachable when the comparison started"


def check_models(checks: Sequence[Check], servers: CheckServers) -> None:
    """Raise :class:`CheckModelError` for the first check whose model cannot do its job (nothing is checked against
    a server that does not list its models, but a judge with no model at all is refused)."""
    for check in checks:
        if isinstance(check, JudgeCheck):
            servers.moved_from(check, servers.judge(check))
        elif isinstance(check, SimilarityCheck):
            servers.moved_from(check, servers.embedding(check))
