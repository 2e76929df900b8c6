"""The channel LRU: :class:`~bot.history.ChatHistoryManager` against the "before" and lru-dict.

Three LRUs over channels with one API and the same payload work, so the only difference is how
each keeps recency:

- ``ours``: :class:`~bot.history.ChatHistoryManager` itself (an ``OrderedDict``);
- ``list``: the "before" — a list of channel ids kept in recency order with ``remove`` +
  ``append`` (O(channels) per operation) and a dict of histories;
- ``lru-dict``: the C extension ``lru.LRU`` (the ``bench`` extra), when installed.

Every history holds one message and every lookup hands back fresh message dicts (as
``ChatHistoryManager.get_history`` does), so the figure is the cost of the LRU, not of copying
long histories (which every variant would pay alike, and which would only shrink the ratios).

The workload: 90 % lookups and 10 % appends over channel ids drawn with Zipf popularity (s = 1)
from a working set twice the capacity, so lookups miss and appends evict as in a busy bot. All
three are exact LRUs of the same capacity, so the same operations give the same hits and
evictions; that is checked. Each variant starts from the same steady state, loaded in O(n) (the
list LRU would take minutes to warm itself up at 100k channels), and the list LRU runs fewer
operations at large sizes, since it is O(n) per operation.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from botctl.bench.common import ZipfSampler, gc_paused, median, ratio, rotated

__all__ = [
    "LRUDictHistory",
    "ListLRUHistory",
    "make_ops",
    "run_history_bench",
    "steady_state",
]

MAX_MESSAGES = 1
GET_SHARE = 0.9
_MESSAGE = ("user", "how do I reverse a list in Python?")


class HistoryLike(Protocol):
    def get_history(self, channel_id: str) -> list[dict[str, str]]: ...

    def add_message(self, channel_id: str, role: str, content: str) -> None: ...


class ListLRUHistory:
    """The "before": recency as a list of channel ids (``remove`` + ``append``), O(n) per op."""

    def __init__(self, max_channels: int, max_messages: int = MAX_MESSAGES) -> None:
        self.max_channels = max_channels
        self.max_messages = max_messages
        self.order: list[str] = []  # least recently used first
        self.histories: dict[str, deque[tuple[str, str]]] = {}
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def load(self, channels: Sequence[str]) -> None:
        """Bulk state: ``channels`` least recently used first, one message each."""
        self.order = list(channels)
        self.histories = {c: deque([_MESSAGE], maxlen=self.max_messages) for c in channels}

    def get_history(self, channel_id: str) -> list[dict[str, str]]:
        messages = self.histories.get(channel_id)
        if messages is None:
            self.misses += 1
            return []
        self.hits += 1
        self.order.remove(channel_id)
        self.order.append(channel_id)
        return [{"role": role, "content": content} for role, content in messages]

    def add_message(self, channel_id: str, role: str, content: str) -> None:
        messages = self.histories.get(channel_id)
        if messages is None:
            messages = deque(maxlen=self.max_messages)
            self.histories[channel_id] = messages
            self.order.append(channel_id)
            if len(self.order) > self.max_channels:
                del self.histories[self.order.pop(0)]
                self.evictions += 1
        else:
            self.order.remove(channel_id)
            self.order.append(channel_id)
        messages.append((role, content))

    def __len__(self) -> int:
        return len(self.histories)


class LRUDictHistory:
    """The same API over ``lru.LRU`` (C): recency and eviction are the extension's."""

    def __init__(self, max_channels: int, max_messages: int = MAX_MESSAGES) -> None:
        from lru import LRU

        self.max_messages = max_messages
        self.evictions = 0
        self.hits = 0
        self.misses = 0
        self._lru: Any = LRU(max_channels, callback=self._evicted)

    def _evicted(self, _key: object, _value: object) -> None:
        self.evictions += 1

    def load(self, channels: Sequence[str]) -> None:
        for channel in channels:
            self._lru[channel] = deque([_MESSAGE], maxlen=self.max_messages)

    def get_history(self, channel_id: str) -> list[dict[str, str]]:
        messages = self._lru.get(channel_id)  # a lookup that also marks it most recent
        if messages is None:
            self.misses += 1
            return []
        self.hits += 1
        return [{"role": role, "content": content} for role, content in messages]

    def add_message(self, channel_id: str, role: str, content: str) -> None:
        messages = self._lru.get(channel_id)
        if messages is None:
            messages = deque(maxlen=self.max_messages)
            self._lru[channel_id] = messages
        messages.append((role, content))

    def __len__(self) -> int:
        return len(self._lru)


def lru_dict_available() -> bool:
    try:
        import lru  # noqa: F401
    except ImportError:
        return False
    return True


def channel_ids(n: int, seed: int = 0) -> list[str]:
    """``n`` snowflake-like ids; rank ``k`` (Zipf popularity) maps to ``ids[k]``, shuffled so that
    popular channels are not neighbours in any order an implementation might keep."""
    rng = random.Random(seed)
    ids = [str(1_100_000_000_000_000_000 + i * 7919) for i in range(n)]
    rng.shuffle(ids)
    return ids


Op = tuple[bool, str]  # (is a lookup, channel id)
FloorOp = tuple[bool, str, str | None]  # ... and the channel an LRU evicts then


def make_ops(capacity: int, count: int, seed: int = 0) -> list[Op]:
    """``count`` operations: 90 % lookups, 10 % appends, Zipf over twice the capacity.

    The rank -> channel mapping is fixed per capacity, so streams drawn with different seeds (the
    warm-up and the measured one) agree on which channels are popular.
    """
    ids = channel_ids(2 * capacity)
    ranks = ZipfSampler(2 * capacity, 1.0, seed + 1).sample(count)
    rng = random.Random(seed + 2)
    return [(rng.random() < GET_SHARE, ids[k]) for k in ranks]


def steady_state(capacity: int, ops: Sequence[Op]) -> list[str]:
    """The LRU's content (least recent first) after ``ops``, starting full with the ``capacity``
    most popular channels; simulated with an ``OrderedDict`` in O(len(ops))."""
    popular = channel_ids(2 * capacity)[:capacity]
    state: OrderedDict[str, None] = OrderedDict((c, None) for c in reversed(popular))
    for is_get, channel in ops:
        if channel in state:
            state.move_to_end(channel)
        elif not is_get:
            state[channel] = None
            if len(state) > capacity:
                state.popitem(last=False)
    return list(state)


def floor_ops(capacity: int, state: Sequence[str], ops: Sequence[Op]) -> list[FloorOp]:
    """``ops`` with, for each append that creates a channel, the channel an LRU evicts then."""
    lru: OrderedDict[str, None] = OrderedDict((c, None) for c in state)
    out: list[FloorOp] = []
    for is_get, channel in ops:
        victim: str | None = None
        if channel in lru:
            lru.move_to_end(channel)
        elif not is_get:
            lru[channel] = None
            if len(lru) > capacity:
                victim = lru.popitem(last=False)[0]
        out.append((is_get, channel, victim))
    return out


class DictFloor:
    """The work every variant shares and no LRU needs: a dict lookup and the copy of a history.

    It keeps no recency: it is told which channel to evict (by :func:`floor_ops`), so it holds the
    same channels and serves the same hits as the LRUs. Subtracting its time from a variant's
    leaves what that variant's recency keeping costs.
    """

    def __init__(self, max_messages: int = MAX_MESSAGES) -> None:
        self.max_messages = max_messages
        self.histories: dict[str, deque[tuple[str, str]]] = {}
        self.hits = 0

    def load(self, channels: Sequence[str]) -> None:
        self.histories = {c: deque([_MESSAGE], maxlen=self.max_messages) for c in channels}

    def get_history(self, channel_id: str) -> list[dict[str, str]]:
        messages = self.histories.get(channel_id)
        if messages is None:
            return []
        self.hits += 1
        return [{"role": role, "content": content} for role, content in messages]

    def add_message(self, channel_id: str, role: str, content: str, victim: str | None) -> None:
        messages = self.histories.get(channel_id)
        if messages is None:
            messages = deque(maxlen=self.max_messages)
            self.histories[channel_id] = messages
            if victim is not None:
                del self.histories[victim]
        messages.append((role, content))


def _ours(capacity: int) -> Any:
    from bot.history import ChatHistoryManager

    return ChatHistoryManager(max_channels=capacity, max_messages=MAX_MESSAGES)


def build_variant(kind: str, capacity: int, state: Sequence[str]) -> Any:
    if kind == "ours":
        history = _ours(capacity)
        for channel in state:  # oldest first: the last added is the most recent
            history.add_message(channel, *_MESSAGE)
        return history
    if kind == "floor":
        floor = DictFloor()
        floor.load(state)
        return floor
    history = ListLRUHistory(capacity) if kind == "list" else LRUDictHistory(capacity)
    history.load(state)
    return history


def _time_ops(history: Any, ops: Sequence[FloorOp], *, floor: bool = False) -> float:
    """Nanoseconds per operation (loop overhead included, alike for every variant)."""
    get, add = history.get_history, history.add_message
    role, content = _MESSAGE
    with gc_paused():
        if floor:
            start = time.perf_counter_ns()
            for is_get, channel, victim in ops:
                if is_get:
                    get(channel)
                else:
                    add(channel, role, content, victim)
            elapsed = time.perf_counter_ns() - start
        else:
            start = time.perf_counter_ns()
            for is_get, channel, _victim in ops:
                if is_get:
                    get(channel)
                else:
                    add(channel, role, content)
            elapsed = time.perf_counter_ns() - start
    return elapsed / len(ops)


def _hits(history: Any) -> int:
    stats = getattr(history, "get_stats", None)
    return int(stats()["hits"]) if stats is not None else int(history.hits)


def list_ops_for(capacity: int, budget_ops: int) -> int:
    """Operations for the O(n) list LRU: fewer as it grows, so 100k channels stay bounded."""
    if capacity <= 1_000:
        return budget_ops
    # About constant time: ops x capacity held near budget_ops x 1k, never below 50.
    return max(50, budget_ops * 1_000 // capacity)


def run_history_bench(
    sizes: Sequence[int] = (100, 1_000, 10_000, 100_000),
    *,
    rounds: int = 5,
    ops: int = 50_000,
    list_ops: int = 5_000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """ns per operation of each variant at each size; medians over interleaved rounds."""
    have_lru = lru_dict_available()
    kinds = ["ours", "list", "floor", *(["lru-dict"] if have_lru else [])]
    rows: list[dict[str, Any]] = []
    for capacity in sizes:
        if progress is not None:
            progress(f"history LRU: {capacity:,} channels")
        state = steady_state(capacity, make_ops(capacity, 4 * capacity + 10_000, seed))
        measured = floor_ops(capacity, state, make_ops(capacity, ops, seed + 100))
        n_list = min(ops, list_ops_for(capacity, list_ops))
        counts = {kind: (n_list if kind == "list" else ops) for kind in kinds}
        samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        hits: dict[str, set[int]] = {kind: set() for kind in kinds}
        for r in range(rounds):
            for kind in rotated(kinds, r):
                history = build_variant(kind, capacity, state)
                before = _hits(history)
                samples[kind].append(
                    _time_ops(history, measured[: counts[kind]], floor=kind == "floor")
                )
                hits[kind].add(_hits(history) - before)
        ns = {kind: median(values) for kind, values in samples.items()}
        floor = ns["floor"]
        # The LRU's own cost: what a variant spends beyond the shared lookup-and-copy floor.
        # Clamped at a few ns so that noise around the floor cannot make a ratio explode.
        net = {kind: max(ns[kind] - floor, 5.0) for kind in kinds if kind != "floor"}
        same = len({next(iter(v)) if len(v) == 1 else None for k, v in hits.items() if k != "list"})
        rows.append(
            {
                "channels": capacity,
                "ns_per_op": {kind: round(value, 1) for kind, value in ns.items()},
                "lru_ns_per_op": {kind: round(value, 1) for kind, value in net.items()},
                "ops": counts,
                "speedup_vs_list": ratio(ns["list"], ns["ours"]),
                "lru_speedup_vs_list": ratio(net["list"], net["ours"]),
                "vs_lru_dict": ratio(ns["ours"], ns["lru-dict"]) if have_lru else None,
                "hit_rate": _hit_rate(hits["ours"], measured),
                "filled": len(state),
                "same_hits": same == 1 and _same_hits(capacity, state, measured[:n_list], kinds),
            }
        )
    return {
        "rounds": rounds,
        "workload": "90/10 get/put, Zipf s=1 over 2x capacity, 1-message histories",
        "lru_dict": have_lru,
        "rows": rows,
    }


def _hit_rate(hits: set[int], measured: Sequence[FloorOp]) -> float | None:
    gets = sum(1 for op in measured if op[0])
    if len(hits) != 1 or not gets:
        return None
    return 100.0 * next(iter(hits)) / gets


def _same_hits(
    capacity: int, state: Sequence[str], ops: Sequence[FloorOp], kinds: Sequence[str]
) -> bool:
    """Every variant, run over the same operations, serves the same hits and keeps as many."""
    found = set()
    for kind in kinds:
        history = build_variant(kind, capacity, state)
        before = _hits(history)
        for is_get, channel, victim in ops:
            if is_get:
                history.get_history(channel)
            elif kind == "floor":
                history.add_message(channel, *_MESSAGE, victim)
            else:
                history.add_message(channel, *_MESSAGE)
        size = len(history.histories) if kind == "floor" else len(history)
        found.add((_hits(history) - before, size))
    return len(found) == 1
