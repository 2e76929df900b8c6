"""ChatHistoryManager: LRU order and eviction, bounded messages, hit rate, a model-based check."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.history import ChatHistoryManager


def test_history_is_oldest_first_and_bounded_per_channel() -> None:
    history = ChatHistoryManager(max_channels=10, max_messages=3)
    for i in range(5):
        history.add_message("c", "user", f"m{i}")
    assert history.get_history("c") == [
        {"role": "user", "content": "m2"},
        {"role": "user", "content": "m3"},
        {"role": "user", "content": "m4"},
    ]


def test_a_question_then_its_answer_keep_their_roles() -> None:
    history = ChatHistoryManager()
    history.add_message(7, "user", "what is 2+2?")
    history.add_message(7, "assistant", "4")
    assert history.get_history("7") == [
        {"role": "user", "content": "what is 2+2?"},
        {"role": "assistant", "content": "4"},
    ]


def test_channel_ids_are_normalised_with_str() -> None:
    history = ChatHistoryManager()
    history.add_message(123, "user", "hi")
    assert "123" in history and 123 in history
    assert history.get_history("123") == history.get_history(123)
    assert len(history) == 1


def test_least_recently_used_channel_is_evicted() -> None:
    history = ChatHistoryManager(max_channels=3)
    for channel in ("a", "b", "c"):
        history.add_message(channel, "user", channel)
    history.get_history("a")  # a becomes the most recent: b is now the oldest
    history.add_message("d", "user", "d")
    assert "b" not in history
    assert all(channel in history for channel in ("a", "c", "d"))
    history.add_message("c", "user", "again")  # writing also counts as use
    history.add_message("e", "user", "e")
    assert "a" not in history and "c" in history
    assert history.get_stats()["evictions"] == 2
    assert len(history) == 3


def test_contains_does_not_count_or_reorder() -> None:
    history = ChatHistoryManager(max_channels=2)
    history.add_message("a", "user", "1")
    history.add_message("b", "user", "2")
    assert "a" in history and "zzz" not in history
    history.add_message("c", "user", "3")  # a is still the least recently used
    assert "a" not in history
    stats = history.get_stats()
    assert stats["hits"] == 0 and stats["misses"] == 0


def test_miss_returns_empty_and_creates_nothing() -> None:
    history = ChatHistoryManager()
    assert history.get_history("nope") == []
    assert "nope" not in history and len(history) == 0


def test_hit_rate_is_a_percentage() -> None:
    history = ChatHistoryManager()
    assert history.get_stats()["hit_rate"] == 0.0
    history.add_message("a", "user", "x")
    history.get_history("a")
    history.get_history("a")
    history.get_history("a")
    history.get_history("missing")
    stats = history.get_stats()
    assert (stats["hits"], stats["misses"]) == (3, 1)
    assert stats["hit_rate"] == pytest.approx(75.0)


def test_clear_removes_one_channel() -> None:
    history = ChatHistoryManager()
    history.add_message("a", "user", "x")
    history.add_message("b", "user", "y")
    assert history.clear("a") is True
    assert history.clear("a") is False
    assert "a" not in history and "b" in history
    assert history.get_history("a") == []


def test_returned_history_list_is_a_copy() -> None:
    # The list is new (the caller appends to it); the message dicts are shared, read-only.
    history = ChatHistoryManager()
    history.add_message("a", "user", "x")
    got = history.get_history("a")
    got.append({"role": "user", "content": "extra"})
    got.pop(0)
    assert history.get_history("a") == [{"role": "user", "content": "x"}]


def test_stats_shape() -> None:
    stats = ChatHistoryManager(max_channels=5, max_messages=4).get_stats()
    assert stats == {
        "channels": 0,
        "capacity": 5,
        "max_messages": 4,
        "hits": 0,
        "misses": 0,
        "evictions": 0,
        "hit_rate": 0.0,
    }


@pytest.mark.parametrize("kwargs", [{"max_channels": 0}, {"max_messages": 0}])
def test_bad_sizes_are_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ChatHistoryManager(**kwargs)


class ListLRU:
    """The obvious reference: a list of [channel, messages] pairs, most recent last."""

    def __init__(self, max_channels: int, max_messages: int) -> None:
        self.max_channels = max_channels
        self.max_messages = max_messages
        self.items: list[list[Any]] = []
        self.hits = self.misses = self.evictions = 0

    def _find(self, key: str) -> int | None:
        for i, (k, _) in enumerate(self.items):
            if k == key:
                return i
        return None

    def get(self, key: str) -> list[dict[str, str]]:
        i = self._find(key)
        if i is None:
            self.misses += 1
            return []
        self.hits += 1
        item = self.items.pop(i)
        self.items.append(item)
        return [dict(m) for m in item[1]]

    def add(self, key: str, role: str, content: str) -> None:
        i = self._find(key)
        if i is None:
            item: list[Any] = [key, []]
            self.items.append(item)
            if len(self.items) > self.max_channels:
                self.items.pop(0)
                self.evictions += 1
        else:
            item = self.items.pop(i)
            self.items.append(item)
        item[1].append({"role": role, "content": content})
        del item[1][: -self.max_messages]

    def clear(self, key: str) -> bool:
        i = self._find(key)
        if i is None:
            return False
        self.items.pop(i)
        return True


channels = st.sampled_from(["1", "2", "3", "4", "5", "6"]) | st.integers(1, 6)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("get"), channels),
        st.tuples(
            st.just("add"), channels, st.sampled_from(["user", "assistant"]), st.text(max_size=3)
        ),
        st.tuples(st.just("clear"), channels),
        st.tuples(st.just("contains"), channels),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, database=None)
@given(ops=operations, max_channels=st.integers(1, 4), max_messages=st.integers(1, 3))
def test_matches_a_list_based_lru(
    ops: list[tuple[Any, ...]], max_channels: int, max_messages: int
) -> None:
    real = ChatHistoryManager(max_channels=max_channels, max_messages=max_messages)
    model = ListLRU(max_channels, max_messages)
    for op in ops:
        name, channel = op[0], op[1]
        key = str(channel)
        if name == "get":
            assert real.get_history(channel) == model.get(key)
        elif name == "add":
            real.add_message(channel, op[2], op[3])
            model.add(key, op[2], op[3])
        elif name == "clear":
            assert real.clear(channel) == model.clear(key)
        else:
            assert (channel in real) == (model._find(key) is not None)
        assert len(real) == len(model.items)
    stats = real.get_stats()
    assert (stats["hits"], stats["misses"], stats["evictions"]) == (
        model.hits,
        model.misses,
        model.evictions,
    )
    # Same recency order: fresh channels push the survivors out oldest first.
    survivors = [k for k, _ in model.items]
    for i in range(1, max_channels + 1):
        real.add_message(f"fresh-{i}", "user", "x")
        gone = max(0, len(survivors) + i - max_channels)
        assert not any(k in real for k in survivors[:gone])
        assert all(k in real for k in survivors[gone:])
