""":class:`~bot.delivery.ReplySink` for Discord: replies to a message, and slash-command responses."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import discord

_T = TypeVar("_T")


class WriteBudget:
    """The bot's message writes against Discord's documented limits: 5 per channel per 5 s (sends
    and edits each) and 50 requests a second for the whole bot.

    ``spare()`` tells an intermediate edit to stand aside; ``acquire()`` makes a post or a final
    edit wait for its turn (when ``pacing`` is on) and ``release()`` counts it once Discord has
    answered, so the bot never meets a 429 it could see coming: discord.py learns a bucket from
    the headers of the answers, but releases everything queued the moment a window resets, which
    bursts past the global limit.
    """

    WINDOW = 5.0
    LIMIT = 5
    # An intermediate edit leaves these writes free: the final text and the next reply's post.
    RESERVE = 2
    # Discord allows 50 requests a second a bot; the margin is for discord.py's own calls.
    GLOBAL_RATE = 45.0
    # How often a writer waiting on writes still in flight looks again.
    POLL = 0.05

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        pacing: bool = True,
        share: float = 1.0,
    ) -> None:
        """``share``: this process's part of the bot's global rate, when several processes run
        one bot (each paces alone; a channel's writes all come from the process of its shard)."""
        self._clock = clock
        self.pacing = pacing
        self.global_rate = self.GLOBAL_RATE * min(max(share, 0.01), 1.0)
        self._writes: dict[tuple[int, str], deque[float]] = {}
        self._in_flight: Counter[tuple[int, str]] = Counter()
        self._next_global = 0.0

    async def acquire(self, channel: int, kind: str) -> None:
        """Wait for room for a write of ``kind`` in ``channel`` (when pacing); then write, then
        :meth:`release`. Without pacing the write is only counted."""
        if not self.pacing:
            self.record(channel, kind)
            return
        key = (channel, kind)
        times = self._recent(channel, kind)
        while len(times) + self._in_flight[key] >= self.LIMIT:
            # Writes count from when Discord answered them (discord.py may hold a request back
            # after we let it go), so no 5 s window of Discord's can see more than LIMIT.
            wait = times[0] + self.WINDOW - self._clock() if times else self.POLL
            await asyncio.sleep(min(max(wait, 0.0), self.WINDOW) + 0.01)
            times = self._recent(channel, kind)
        self._in_flight[key] += 1
        now = self._clock()
        slot = max(now, self._next_global)
        self._next_global = slot + 1.0 / self.global_rate
        if slot > now:
            await asyncio.sleep(slot - now)

    def release(self, channel: int, kind: str) -> None:
        """The write :meth:`acquire` let go has been answered (or failed): it counts from now."""
        if not self.pacing:
            return
        key = (channel, kind)
        self._in_flight[key] -= 1
        if self._in_flight[key] <= 0:
            del self._in_flight[key]
        self.record(channel, kind)

    def _recent(self, channel: int, kind: str) -> deque[float]:
        key = (channel, kind)
        times = self._writes.get(key)
        if times is None:
            if len(self._writes) > 10_000:  # bounded: forget channels with no recent write
                self._writes = {k: v for k, v in self._writes.items() if v}
            times = self._writes[key] = deque()
        horizon = self._clock() - self.WINDOW
        while times and times[0] <= horizon:
            times.popleft()
        return times

    def record(self, channel: int, kind: str) -> None:
        self._recent(channel, kind).append(self._clock())

    def spare(self, channel: int, kind: str = "edit") -> bool:
        used = len(self._recent(channel, kind)) + self._in_flight[(channel, kind)]
        return used < self.LIMIT - self.RESERVE


def process_share(shard_count: int | None, shard_ids: tuple[int, ...]) -> float:
    """The part of the bot's shards this process runs (1.0 when it runs them all)."""
    if not shard_count or not shard_ids:
        return 1.0
    return len(set(shard_ids)) / shard_count


class MessageReplySink:
    """Every part replies to the question (no ping: the client's AllowedMentions.none())."""

    def __init__(self, message: discord.Message, budget: WriteBudget | None = None) -> None:
        self.message = message
        self.reference = message.to_reference(fail_if_not_exists=False)
        self.budget = budget
        self.channel_id = message.channel.id

    def spare(self) -> bool:
        return self.budget is None or self.budget.spare(self.channel_id)

    async def send(self, content: str) -> discord.Message:
        try:
            return await self._paced("send", partial(self._send, content))
        except discord.DiscordServerError:
            # discord.py retries 500/502/504 itself but not 503; one more try saves the reply.
            await asyncio.sleep(1.0)
            return await self._paced("send", partial(self._send, content))

    async def _send(self, content: str) -> discord.Message:
        return await self.message.channel.send(
            content, reference=self.reference, mention_author=False
        )

    async def edit(self, handle: Any, content: str) -> None:
        await self._paced("edit", partial(handle.edit, content=content))

    async def _paced(self, kind: str, write: Callable[[], Awaitable[_T]]) -> _T:
        budget = self.budget
        if budget is None:
            return await write()
        await budget.acquire(self.channel_id, kind)
        try:
            return await write()
        finally:
            budget.release(self.channel_id, kind)

    async def typing(self) -> None:
        await self.message.channel.typing()


class InteractionSink:
    """A deferred slash command: the first part replaces "thinking…", the rest are follow-ups."""

    _ORIGINAL = object()

    def __init__(self, interaction: discord.Interaction[Any]) -> None:
        self.interaction = interaction
        self._first_sent = False

    async def send(self, content: str) -> Any:
        if not self._first_sent:
            self._first_sent = True
            await self.interaction.edit_original_response(content=content)
            return self._ORIGINAL
        return await self.interaction.followup.send(content, wait=True)

    async def edit(self, handle: Any, content: str) -> None:
        if handle is self._ORIGINAL:
            await self.interaction.edit_original_response(content=content)
        else:
            await handle.edit(content=content)

    async def typing(self) -> None:
        """A deferred interaction already shows "thinking…"."""
