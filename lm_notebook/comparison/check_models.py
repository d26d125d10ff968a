"""The models the checks ask, checked before any candidate runs: each :func:`~lm_notebook.checks.judge`'s judge and
each :func:`~lm_notebook.checks.similar_to`'s embedding model must be on the server, and of the right kind (a judge
chats, an embedding model embeds). A wrong id is said at once — with the ids the server has and the closest one —
rather than in every cell after the candidates have run.

:class:`CheckModelError` carries what went wrong as fields (``check``, ``role``, ``problem``, ``model``,
``available``), so a front end (``%%lm_compare``) says it in its own words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

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
           base_url: str) -> CheckModelError:
    ids = sorted(infos)
    embedders = sorted(i.id for i in infos.values() if is_embedding_model(i))
    fix = "judge(..., model='model-id')" if role == "judge" else "similar_to(..., model='embedding-model-id')"
    if problem == "not_listed":
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
        message = (f"Check {check.name} needs an embedding model and the server at {base_url} lists none: download "
                   f"one in LM Studio (e.g. nomic-embed-text-v1.5), or name one in {fix}.")
    else:
        message = (f"Check {check.name} has {len(embedders)} embedding models to choose from "
                   f"({_shown(embedders)}): name one in {fix}.")
    return CheckModelError(message, check=check.name, role=role, problem=problem, model=model, available=ids)


def check_models(checks: Sequence[Check], infos: Mapping[str, ModelInfo], current: str | None,
                 base_url: str) -> None:
    """Raise :class:`CheckModelError` for the first check whose model cannot do its job (nothing is checked against
    a server that does not list its models, but a judge with no model at all is refused)."""
    for check in checks:
        problem: Problem | None = None
        if isinstance(check, JudgeCheck):
            model = check.model or current
            role: Role = "judge"
            if model is None:
                problem = "none"
            elif infos and not known_model(model, infos):
                problem = "not_listed"
            elif model in infos and is_embedding_model(infos[model]):
                problem = "wrong_kind"
        elif isinstance(check, SimilarityCheck):
            model, role = check.model, "embedding"
            if not infos:
                continue
            if model is None:
                embedders = [i for i in infos.values() if is_embedding_model(i)]
                known = any(i.type is not None for i in infos.values())
                problem = "several" if len(embedders) > 1 else "none" if not embedders and known else None
            elif not known_model(model, infos):
                problem = "not_listed"
            elif model in infos and infos[model].type is not None and not is_embedding_model(infos[model]):
                problem = "wrong_kind"
        else:
            continue
        if problem is not None:
            raise _error(check, role, problem, model, infos, base_url)
