"""Reply chains in memory (``bot.chains``), the fold rule (``bot.context``) and the answer's text as
remembered (``bot.frontend.conversation``), without Discord."""

from __future__ import annotations

from bot.chains import GONE, Chains
from bot.context import Summaries, fold_count
from bot.frontend.conversation import answer_text


def chain_of(chains: Chains, n: int) -> None:
    """Messages 1..n, each replying to the one before, user and assistant in turn."""
    for i in range(1, n + 1):
        role = "user" if i % 2 else "assistant"
        chains.remember(i, role, f"m{i}", i - 1 if i > 1 else None)


def test_a_walk_is_oldest_first_bounded_and_names_the_first_missing_message() -> None:
    chains = Chains()
    chain_of(chains, 6)
    assert chains.walk(6, 10) == ([{"role": r, "content": f"m{i}"} for i, r in _roles(6)], None)
    messages, missing = chains.walk(6, 3)
    assert [m["content"] for m in messages] == ["m4", "m5", "m6"] and missing is None
    chains.remember(7, "user", "m7", 100)  # replies to a message never seen
    assert chains.walk(7, 10) == ([{"role": "user", "content": "m7"}], 100)
    assert chains.answer_to(1) == 2 and chains.answer_to(2) is None


def _roles(n: int) -> list[tuple[int, str]]:
    return [(i, "user" if i % 2 else "assistant") for i in range(1, n + 1)]


def test_a_deleted_message_is_stepped_over_and_counted() -> None:
    chains = Chains()
    chain_of(chains, 4)
    forgotten = chains.forget(3)
    assert forgotten is not None and forgotten.content == "m3"
    link = chains.get(3)
    assert link is not None and link.role == GONE and link.content == "" and link.parent == 2
    trace = chains.trace(4, 10)
    assert [m["content"] for m in trace.messages] == ["m1", "m2", "m4"]
    assert trace.gone == 1 and trace.missing is None and not trace.looped
    # A deletion of a message never remembered leaves nothing behind (known_only) ...
    assert chains.forget(99, known_only=True) is None and chains.get(99) is None
    # ... unless asked (a fetch that found it gone): then it is never fetched again.
    chains.remember(5, "user", "m5", 98)
    chains.forget(98)
    trace = chains.trace(5, 10)
    assert (
        trace.missing is None
        and trace.gone == 1
        and trace.messages == [{"role": "user", "content": "m5"}]
    )


def test_a_loop_is_cut_where_it_repeats() -> None:
    chains = Chains()
    chains.remember(1, "user", "a", 2)
    chains.remember(2, "user", "b", 1)
    trace = chains.trace(2, 10)
    assert [m["content"] for m in trace.messages] == ["a", "b"] and trace.looped
    chains.remember(3, "user", "c", 3)
    assert chains.trace(3, 10).looped


def test_memory_is_bounded_in_messages_and_in_characters() -> None:
    chains = Chains(capacity=4, max_chars=1000)
    chain_of(chains, 6)
    assert len(chains) == 4 and chains.get(1) is None and chains.get(2) is None
    assert chains.answer_to(1) is None  # its answer (2) was forgotten too
    chains = Chains(capacity=100, max_chars=10)
    for i in range(1, 6):
        chains.remember(i, "user", "abcd", None)
    assert len(chains) == 2  # 8 characters kept, at most 10
    chains.remember(9, "user", "x" * 50, None)  # bigger than the bound alone: kept, alone
    assert len(chains) == 1 and chains.get(9) is not None


def test_an_empty_message_adds_nothing_but_the_chain_goes_on() -> None:
    chains = Chains()
    chains.remember(1, "user", "question", None)
    chains.remember(2, "user", "", 1)  # an image alone
    chains.remember(3, "user", "and?", 2)
    assert [m["content"] for m in chains.trace(3, 10).messages] == ["question", "and?"]


def test_the_answer_is_remembered_without_the_left_out_line() -> None:
    assert answer_text("An answer.\n\n-# Left out: a.png: no model here can see images") == (
        "An answer."
    )
    assert answer_text("An answer with -# in it.") == "An answer with -# in it."


def test_a_fold_takes_the_oldest_half_in_whole_exchanges() -> None:
    assert fold_count(0) == 0
    assert fold_count(1) == 0
    assert fold_count(20) == 10
    assert fold_count(14) == 6  # half of 14 is 7: whole exchanges, so 6
    assert fold_count(2) == 2


def test_summaries_keep_the_latest_conversations() -> None:
    store = Summaries(capacity=2)
    assert len(store) == 0
    for name in "abc":
        store.set(name, name.upper())
    assert store.get("a") is None and store.get("c") == "C" and len(store) == 2
