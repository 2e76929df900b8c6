""":class:`~bot.delivery.ReplySink` for Discord: replies to a message, and slash-command responses."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import discord


class WriteBudget:
    """The bot's message writes against Discord's documented limits: 5 per channel per 5 s (sends
    and edits each) and 50 requests a second for the whole bot.

    ``spare()`` tells an intermediate edit to stand aside; ``acquire()`` makes a post or a final
    edit wait for its turn (when ``pacing`` is on), so the bot never meets a 429 it could see
    coming: discord.py learns a bucket from the headers of the answers, but releases everything
    queued the moment a window resets, which bursts past the global limit.
    """

    WINDOW = 5.0
    LIMIT = 5
    # An intermediate edit leaves these writes free: the final text and the next reply's post.
    RESERVE = 2
    # Discord allows 50 requests a second a bot; the margin is for discord.py's own calls.
    GLOBAL_RATE = 45.0

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, pacing: bool = True) -> None:
        self._clock = clock
        self.pacing = pacing
        self._writes: dict[tuple[int, str], deque[float]] = {}
        self._next_global = 0.0

    async def acquire(self, channel: int, kind: str) -> None:
        """Count a write of ``kind`` in ``channel``, first waiting for room when pacing."""
        if not self.pacing:
            self.record(channel, kind)
            return
        times = self._recent(channel, kind)
        while len(times) >= self.LIMIT:
            # A sliding window of LIMIT writes never exceeds Discord's fixed one.
            await asyncio.sleep(max(0.0, times[0] + self.WINDOW - self._clock()) + 0.01)
            times = self._recent(channel, kind)
        now = self._clock()
        slot = max(now, self._next_global)
        self._next_global = slot + 1.0 / self.GLOBAL_RATE
        times.append(slot)
        if slot > now:
            await asyncio.sleep(slot - now)

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
        return len(self._recent(channel, kind)) < self.LIMIT - self.RESERVE


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
        if self.budget is not None:
            await self.budget.acquire(self.channel_id, "send")
        try:
            return await self._send(content)
        except discord.DiscordServerError:
            # discord.py retries 500/502/504 itself but not 503; one more try saves the reply.
            await asyncio.sleep(1.0)
            return await self._send(content)

    async def _send(self, content: str) -> discord.Message:
        return await self.message.channel.send(
            content, reference=self.reference, mention_author=False
        )

    async def edit(self, handle: Any, content: str) -> None:
        if self.budget is not None:
            await self.budget.acquire(self.channel_id, "edit")
        await handle.edit(content=content)

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
