"""Per-channel chat history: an LRU over channels, each holding a bounded deque of messages.

An ``OrderedDict`` keeps channels in recency order, so a lookup (``move_to_end``) and an eviction
of the least recently used channel (``popitem(last=False)``) are O(1), where a list-based LRU pays
O(channels) per operation. Each channel keeps at most ``max_messages`` messages; the oldest fall
off the deque by themselves.

Messages are stored as the ``{"role", "content"}`` dicts an LLM request needs, built once, so a
lookup copies no message: the list handed out is new, the dicts in it are shared (read-only).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

__all__ = ["ChatHistoryManager"]

# Stored as the dicts the LLM request needs, built once: a lookup copies no message.
_Message = dict[str, str]


class ChatHistoryManager:
    """Bounded chat histories for at most ``max_channels`` channels, least recently used evicted.

    Channel ids are normalised with ``str()``: ``123`` and ``"123"`` are the same channel.
    """

    __slots__ = ("_channels", "_evictions", "_hits", "_max_channels", "_max_messages", "_misses")

    def __init__(self, max_channels: int = 1000, max_messages: int = 20) -> None:
        if max_channels < 1:
            raise ValueError(f"max_channels must be >= 1, got {max_channels!r}")
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages!r}")
        self._max_channels = max_channels
        self._max_messages = max_messages
        self._channels: OrderedDict[str, deque[_Message]] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    def get_history(self, channel_id: str | int) -> list[dict[str, str]]:
        """The channel's messages, oldest first; a miss returns ``[]`` and creates nothing.

        The list is new; the message dicts are the stored ones, shared to keep lookups O(1) in
        the message size: treat them as read-only.
        """
        key = channel_id if type(channel_id) is str else str(channel_id)
        channels = self._channels
        messages = channels.get(key)
        if messages is None:
            self._misses += 1
            return []
        self._hits += 1
        channels.move_to_end(key)
        return list(messages)

    def add_message(self, channel_id: str | int, role: str, content: str) -> None:
        """Append a message, creating the channel (and evicting the LRU one) if needed."""
        key = channel_id if type(channel_id) is str else str(channel_id)
        channels = self._channels
        messages = channels.get(key)
        if messages is None:
            messages = channels[key] = deque(maxlen=self._max_messages)
            if len(channels) > self._max_channels:
                channels.popitem(last=False)
                self._evictions += 1
        else:
            channels.move_to_end(key)
        messages.append({"role": role, "content": content})

    async def load(self, channel_id: str | int) -> None:
        """Make sure the channel's history is here (a shared store fetches it; this one has it)."""

    def trim(self, channel_id: str | int, count: int, first: object) -> bool:
        """Drop the ``count`` oldest messages if the oldest is still ``first`` (the very dict a
        lookup returned): two answers folding the same turns at once drop them once."""
        messages = self._channels.get(str(channel_id))
        if not messages or messages[0] is not first:
            return False
        for _ in range(min(count, len(messages))):
            messages.popleft()
        return True

    def clear(self, channel_id: str | int) -> bool:
        """Forget a channel's history; ``True`` if it existed."""
        return self._channels.pop(str(channel_id), None) is not None

    def __len__(self) -> int:
        return len(self._channels)

    def __contains__(self, channel_id: object) -> bool:
        # Membership is a peek: no hit/miss counted and no reordering.
        return str(channel_id) in self._channels

    def get_stats(self) -> dict[str, Any]:
        """Size and hit/miss counters; ``hit_rate`` is a percentage (0.0 before any lookup)."""
        lookups = self._hits + self._misses
        return {
            "channels": len(self._channels),
            "capacity": self._max_channels,
            "max_messages": self._max_messages,
            "hits": self._hits,
            "misses": self._misses,
            "evictions": self._evictions,
            "hit_rate": self._hits * 100.0 / lookups if lookups else 0.0,
        }
