""":class:`~bot.delivery.ReplySink` for Discord: replies to a message, and slash-command responses."""

from __future__ import annotations

from typing import Any

import discord


class MessageReplySink:
    """Every part replies to the question (no ping: the client's AllowedMentions.none())."""

    def __init__(self, message: discord.Message) -> None:
        self.message = message
        self.reference = message.to_reference(fail_if_not_exists=False)

    async def send(self, content: str) -> discord.Message:
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
