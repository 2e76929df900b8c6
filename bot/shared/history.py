"""Conversations in Redis, so that another process, or this one restarted, continues them.

:class:`SharedHistory` is the in-process :class:`~bot.history.ChatHistoryManager` (every read stays
local and synchronous) whose writes are also sent to Redis behind the hot path: a list per
conversation, ``<prefix>h:<conversation>``, trimmed to the history limit (``LTRIM``) and expiring
``ttl`` after its last write (7 days by default). :meth:`SharedHistory.load`, which the engine
awaits before reading a conversation, fetches it (and its summary) from Redis when it is not here.
:class:`SharedSummaries` does the same for the summaries (``<prefix>sum:<conversation>``).

A conversation is written by one process at a time (its channel's shard), so appends are sent as
appends; a trim or a failed write sends the whole local list again. Redis down: local only, and
the conversations changed meanwhile are written again when it returns.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

from bot.context import Summaries
from bot.history import ChatHistoryManager
from bot.shared.state import SharedState, SharedUnavailable
from bot.shared.writer import Flusher

__all__ = ["SharedHistory", "SharedSummaries"]

WEEK = 7 * 24 * 3600


@dataclass(slots=True)
class _Pending:
    reset: bool = False  # cleared here: delete Redis's copy first
    rewrite: bool = False  # send the whole local list (after a trim or a failed write)
    messages: list[bytes] = field(default_factory=list)


class _HistoryWriter(Flusher[list[tuple[str, _Pending]]]):
    def __init__(self, history: SharedHistory, state: SharedState, capacity: int) -> None:
        super().__init__(state)
        self.history = history
        self.pending: OrderedDict[str, _Pending] = OrderedDict()
        self.capacity = capacity

    def get(self, conversation: str) -> _Pending:
        pending = self.pending.get(conversation)
        if pending is None:
            pending = self.pending[conversation] = _Pending()
            if len(self.pending) > self.capacity:
                # Bounded while Redis is down: the oldest change keeps Redis's older copy.
                self.pending.popitem(last=False)
        self.changed()
        return pending

    def _has_pending(self) -> bool:
        return bool(self.pending)

    def _take(self, limit: int) -> list[tuple[str, _Pending]] | None:
        if not self.pending:
            return None
        return [self.pending.popitem(last=False) for _ in range(min(limit, len(self.pending)))]

    def _write(self, pipe: Any, batch: list[tuple[str, _Pending]]) -> None:
        history, ttl, limit = self.history, self.history.ttl, self.history.limit
        for conversation, pending in batch:
            key = self.state.key("h", conversation)
            if pending.rewrite:
                messages = history.encoded(conversation)
                if messages or pending.reset:
                    pipe.delete(key)
                if messages:
                    pipe.rpush(key, *messages)
                    pipe.expire(key, ttl)
                continue
            if pending.reset:
                pipe.delete(key)
            if pending.messages:
                pipe.rpush(key, *pending.messages)
                pipe.ltrim(key, -limit, -1)
                pipe.expire(key, ttl)

    def _restore(self, batch: list[tuple[str, _Pending]]) -> None:
        for conversation, old in batch:
            newer = self.pending.get(conversation)
            reset = old.reset or (newer is not None and newer.reset)
            self.pending[conversation] = _Pending(reset=reset, rewrite=True)
            self.pending.move_to_end(conversation, last=False)


class SharedSummaries(Summaries):
    """:class:`~bot.context.Summaries` written through to Redis (a string per conversation)."""

    def __init__(self, state: SharedState, capacity: int = 1000, *, ttl: int = WEEK) -> None:
        super().__init__(capacity)
        self.state = state
        self.ttl = ttl
        self.writer = _SummaryWriter(self, state, capacity * 4)

    def set(self, conversation: str, text: str) -> None:
        super().set(conversation, text)
        self.writer.put(conversation, text)

    def clear(self, conversation: str) -> None:
        super().clear(conversation)
        self.writer.put(conversation, None)

    def loaded(self, conversation: str, text: str) -> None:
        """A summary read from Redis: kept here, not written back."""
        if super().get(conversation) is None:
            super().set(conversation, text)

    async def load(self, conversation: str) -> None:
        """Fetch the summary from Redis when it is not here (a no-op while Redis is down)."""
        if super().get(conversation) is not None or conversation in self.writer.pending:
            return
        try:
            text = await self.state.run(lambda r: r.get(self.state.key("sum", conversation)))
        except SharedUnavailable:
            return
        if isinstance(text, bytes) and conversation not in self.writer.pending:
            self.loaded(conversation, text.decode())

    async def close(self) -> None:
        await self.writer.close()


class _SummaryWriter(Flusher[list[tuple[str, str | None]]]):
    def __init__(self, summaries: SharedSummaries, state: SharedState, capacity: int) -> None:
        super().__init__(state)
        self.summaries = summaries
        self.pending: OrderedDict[str, str | None] = OrderedDict()
        self.capacity = capacity

    def put(self, conversation: str, text: str | None) -> None:
        self.pending[conversation] = text
        self.pending.move_to_end(conversation)
        if len(self.pending) > self.capacity:
            self.pending.popitem(last=False)
        self.changed()

    def _has_pending(self) -> bool:
        return bool(self.pending)

    def _take(self, limit: int) -> list[tuple[str, str | None]] | None:
        if not self.pending:
            return None
        return [self.pending.popitem(last=False) for _ in range(min(limit, len(self.pending)))]

    def _write(self, pipe: Any, batch: list[tuple[str, str | None]]) -> None:
        for conversation, text in batch:
            key = self.state.key("sum", conversation)
            if text is None:
                pipe.delete(key)
            else:
                pipe.set(key, text, ex=self.summaries.ttl)

    def _restore(self, batch: list[tuple[str, str | None]]) -> None:
        for conversation, text in batch:
            if conversation not in self.pending:
                self.pending[conversation] = text
                self.pending.move_to_end(conversation, last=False)


class SharedHistory(ChatHistoryManager):
    """:class:`~bot.history.ChatHistoryManager` written through to Redis and loaded from it.

    ``summaries`` (optional) is loaded in the same round trip as the history.
    """

    def __init__(
        self,
        state: SharedState,
        max_channels: int = 1000,
        max_messages: int = 20,
        *,
        summaries: SharedSummaries | None = None,
        ttl: int = WEEK,
    ) -> None:
        super().__init__(max_channels=max_channels, max_messages=max_messages)
        self.state = state
        self.summaries = summaries
        self.ttl = ttl
        self.limit = max_messages
        self.writer = _HistoryWriter(self, state, max_channels * 4)
        self.loads = 0
        self.loaded = 0

    def add_message(self, channel_id: str | int, role: str, content: str) -> None:
        super().add_message(channel_id, role, content)
        pending = self.writer.get(str(channel_id))
        if not pending.rewrite:
            pending.messages.append(orjson.dumps({"role": role, "content": content}))
            if len(pending.messages) > self.limit:
                del pending.messages[: -self.limit]  # LTRIM would drop them anyway

    def trim(self, channel_id: str | int, count: int, first: object) -> bool:
        trimmed = super().trim(channel_id, count, first)
        if trimmed:
            pending = self.writer.get(str(channel_id))
            pending.rewrite, pending.messages = True, []
        return trimmed

    def clear(self, channel_id: str | int) -> bool:
        existed = super().clear(channel_id)
        pending = self.writer.get(str(channel_id))
        pending.reset, pending.rewrite, pending.messages = True, False, []
        return existed

    def encoded(self, conversation: str) -> list[bytes]:
        """The conversation's local messages as stored in Redis (no hit counted)."""
        messages = self._channels.get(conversation) if conversation in self else None
        return [orjson.dumps(m) for m in messages or ()]

    async def load(self, channel_id: str | int) -> None:
        """Fill the local cache from Redis when the conversation is not here (another process
        had it, or this one restarted); a no-op when it is, or while Redis is down."""
        conversation = str(channel_id)
        if conversation in self or conversation in self.writer.pending:
            return
        summaries = self.summaries
        want_summary = summaries is not None and summaries.get(conversation) is None
        self.loads += 1
        try:
            reply = await self.state.run(lambda r: self._fetch(r, conversation, want_summary))
        except SharedUnavailable:
            return
        messages, summary = reply
        # Another task may have filled it, or written to it, while this one waited.
        if conversation in self or conversation in self.writer.pending:
            return
        if messages:
            self.loaded += 1
            for raw in messages[-self.limit :]:
                message = orjson.loads(raw)
                ChatHistoryManager.add_message(
                    self, conversation, str(message["role"]), str(message["content"])
                )
        if summaries is not None and isinstance(summary, bytes):
            summaries.loaded(conversation, summary.decode())

    async def _fetch(self, client: Any, conversation: str, summary: bool) -> tuple[Any, Any]:
        pipe = client.pipeline(transaction=False)
        pipe.lrange(self.state.key("h", conversation), 0, -1)
        if summary:
            pipe.get(self.state.key("sum", conversation))
        replies = await pipe.execute()
        return replies[0], replies[1] if summary else None

    def get_stats(self) -> dict[str, Any]:
        stats = super().get_stats()
        stats["shared_loads"] = self.loads
        stats["shared_loaded"] = self.loaded
        stats["shared_pending"] = len(self.writer.pending)
        return stats

    async def close(self) -> None:
        """Write what is pending to Redis (bounded); the summaries' own writer too."""
        await self.writer.close()
        if self.summaries is not None:
            await self.summaries.close()
