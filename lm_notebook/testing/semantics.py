"""What makes the fake server useful for testing answer checks: embeddings that mean something, judge grades, and
replies keyed by prompt.

- :func:`bag_of_words_embedding`: every word is hashed into one of the vector's dimensions and counted, then the
  vector is scaled to length 1. Texts that share words are closer (higher cosine) than texts that share none, and
  equal word sets give equal vectors, so a similarity check passes and fails for the right reasons.
- :func:`judge_reply`: the answer to a grading prompt (the one ``lm_notebook.checks.judge`` sends, recognised by its
  sections): a grade from the share of the reference answer's words (less stop words like "the") that the graded
  answer contains, or, with no reference, the top grade for a short answer (50 words at most) and the lowest for a
  longer one.
- :class:`PromptReplies`: ``server.answer(model, prompt, reply)`` — a reply for one prompt, whatever order the
  requests arrive in (a comparison runs several at once).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from lm_notebook.testing.replies import embedding as random_embedding
from lm_notebook.testing.replies import last_user_text, message_text

_WORDS = re.compile(r"[a-z0-9]+")
# the sections of lm_notebook.checks.judge's prompt (comparison/judge.py); tests/checks prove the two agree
JUDGE_MARKER = "You are a judge"
_SECTION = r"{title}:\n<<<\n(.*?)\n>>>"
_SCALE = re.compile(r"an integer from (-?\d+) to (-?\d+)")
SHORT_ANSWER_WORDS = 50
# left out of the judge's word count, so "the" and "is" in any answer do not make it right
_STOP_WORDS = frozenset({"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "is",
                         "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "will", "with"})


def words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def bag_of_words_embedding(text: str, model: str, dimensions: int) -> list[float]:
    """A unit vector counting the text's words, each hashed to one dimension (deterministic)."""
    counts = [0.0] * dimensions
    found = words(text)
    if not found:
        return random_embedding(text, model, dimensions)  # no words: still a fixed unit vector
    for word in found:
        digest = hashlib.blake2b(f"{model}\0{word}".encode(), digest_size=8).digest()
        counts[int.from_bytes(digest, "big") % dimensions] += 1.0
    norm = math.sqrt(sum(c * c for c in counts))
    return [round(c / norm, 6) for c in counts]


def _section(text: str, title: str) -> str | None:
    match = re.search(_SECTION.format(title=re.escape(title)), text, re.DOTALL)
    return match.group(1) if match else None


def judge_reply(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """The fake judge's one line of JSON for a grading prompt; None for any other conversation."""
    if not any(m.get("role") == "system" and message_text(m.get("content")).startswith(JUDGE_MARKER)
               for m in messages):
        return None
    prompt = last_user_text(messages)
    answer = _section(prompt, "Answer to grade")
    if answer is None:
        return None
    scale = _SCALE.search(prompt)
    low, high = (int(scale.group(1)), int(scale.group(2))) if scale else (1, 5)
    reference = _section(prompt, "Reference answer")
    said = set(words(answer))
    if reference is not None and words(reference):
        wanted = list(dict.fromkeys(w for w in words(reference) if w not in _STOP_WORDS)) or words(reference)
        shared = [w for w in wanted if w in said]
        grade = low + round(len(shared) / len(wanted) * (high - low))
        plural = "s" if len(wanted) != 1 else ""
        reason = f"The answer has {len(shared)} of the reference answer's {len(wanted)} word{plural}."
    else:
        n = len(words(answer))
        grade = high if 0 < n <= SHORT_ANSWER_WORDS else low
        reason = f"The answer is {n} words long" + (" (short)." if grade == high else " (too long or empty).")
    return json.dumps({"score": grade, "reason": reason})


class PromptReplies:
    """Replies keyed by (model, the last user message), safe to set from a test's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replies: dict[tuple[str, str], str] = {}

    def set(self, model: str, prompt: str, reply: str) -> None:
        with self._lock:
            self._replies[(model, prompt)] = reply

    def get(self, model: str, messages: Sequence[Mapping[str, Any]]) -> str | None:
        prompt = last_user_text(messages)
        with self._lock:
            return self._replies.get((model, prompt), self._replies.get(("*", prompt)))

    def clear(self) -> None:
        with self._lock:
            self._replies.clear()
