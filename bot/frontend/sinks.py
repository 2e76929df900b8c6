""":class:`~bot.delivery.ReplySink` for Discord: replies to a message, and slash-command responses."""

from __future__ import annotations

import asyncio
from typing import Any

import discord


class MessageReplySink:
    """Every part replies to the question (no ping: the client's AllowedMentions.none())."""

    def __init__(self, message: discord.Message) -> None:
        self.message = message
        self.reference = message.to_reference(fail_if_not_exists=False)

    async def send(self, content: str) -> discord.Message:
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
