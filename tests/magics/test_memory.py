"""What ``%%lm --chat`` remembers, with plain values (no shell, no server)."""

from __future__ import annotations

from lm_notebook.client.types import ChatResult
from lm_notebook.magics.memory import ChatMemory


def answer(text: str) -> ChatResult:
    return ChatResult(content=text)


def test_a_cell_without_chat_sends_only_its_prompt() -> None:
    memory = ChatMemory()
    memory.remember([{"role": "user", "content": "q0"}], answer("a0"), keep=5)
    assert memory.prompt("q1", system=None, chat=False) == [{"role": "user", "content": "q1"}]
    assert memory.prompt("q1", system="Be brief.", chat=True) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "q0"},
        {"role": "assistant", "content": "a0"},
        {"role": "user", "content": "q1"},
    ]


def test_only_the_last_exchanges_are_kept_and_clear_says_how_many() -> None:
    memory = ChatMemory()
    for i in range(4):
        sent = memory.prompt(f"q{i}", system="sys", chat=True)
        memory.remember(sent, answer(f"a{i}"), keep=2)
    assert [m["content"] for m in memory.messages] == ["q2", "a2", "q3", "a3"]
    assert memory.exchanges == 2
    assert memory.clear() == 2 and memory.messages == [] and memory.exchanges == 0


def test_an_answer_without_text_is_not_remembered_and_keep_zero_remembers_nothing() -> None:
    memory = ChatMemory()
    memory.remember([{"role": "user", "content": "q"}], answer(""), keep=5)
    assert memory.messages == []
    memory.remember([{"role": "user", "content": "q"}], answer("a"), keep=0)
    assert memory.messages == []
