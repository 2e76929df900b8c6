""":class:`~bot.delivery.ReplySink` for Discord: replies to a message, and slash-command responses."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import discord


class WriteBudget:
    """The bot's recent message writes per channel, against Discord's limit of 5 per 5 s (sends
    and edits each): enough to tell an intermediate edit to stand aside before it meets a 429."""

    WINDOW = 5.0
    LIMIT = 5
    # An intermediate edit leaves these writes free: the final text and the next reply's post.
    RESERVE = 2

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._writes: dict[tuple[int, str], deque[float]] = {}

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
            self.budget.record(self.channel_id, "send")
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
            self.budget.record(self.channel_id, "edit")
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
