"""The chat cog: answers mentions, DMs and configured channels, and ``/ask``, through the engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.delivery import Delivery, ReplySink, deliver
from bot.engine import Question
from bot.frontend.access import REFUSED_IN_DM, Access
from bot.frontend.attachments import Attached, read_attachments
from bot.frontend.conversation import ConversationResolver
from bot.frontend.places import Place
from bot.frontend.sinks import InteractionSink, MessageReplySink, WriteBudget, process_share
from bot.llm.errors import LLMError

if TYPE_CHECKING:
    from bot.frontend.client import ChatBotMixin

log = logging.getLogger("bot.frontend.chat")

EMPTY_QUESTION = "Ask me something after the mention, for example: @me what is a closure?"
GENERIC_FAILURE = "Sorry, something went wrong while answering; please try again."
# Answers streaming at once. Past this, new questions wait their turn: under a flood, starting
# every LLM call at once starves the sends and the bot's throughput collapses (bench: 37 replies/s
# uncapped against 250+ capped at 800 msg/s offered).
MAX_ANSWERS_IN_FLIGHT = 256


class Chat(commands.Cog):
    def __init__(self, bot: ChatBotMixin) -> None:
        self.bot = bot
        self.engine = bot.engine
        settings = bot.components.settings
        self.reply_channels = frozenset(settings.reply_channels)
        self.cooldown = bot.components.cooldown
        self.access = Access.from_settings(settings)
        self._resolver: ConversationResolver | None = None
        self._slots = asyncio.Semaphore(MAX_ANSWERS_IN_FLIGHT)
        self.budget = WriteBudget(
            pacing=settings.write_pacing,
            share=process_share(settings.shard_count, settings.shard_ids),
        )

    @property
    def resolver(self) -> ConversationResolver:
        if self._resolver is None:
            assert self.bot.user is not None
            self._resolver = ConversationResolver(
                self.bot.components.chains,
                self.engine.history,
                limit=self.bot.components.settings.history_limit,
                bot_id=self.bot.user.id,
            )
        return self._resolver

    def _source(self, message: discord.Message) -> str | None:
        """Why the bot answers this message, or None if it should not."""
        if message.author.bot or self.bot.user is None:
            return None
        if message.guild is None:
            return "dm"
        if self.bot.user in message.mentions:
            return "mention"
        if message.channel.id in self.reply_channels:
            return "channel"
        return None

    async def cog_load(self) -> None:
        self.bot.message_handler = self.on_message

    async def cog_unload(self) -> None:
        self.bot.message_handler = None

    async def on_message(self, message: discord.Message) -> None:
        """Every message, from ``ChatBot.on_message`` (in discord.py's task for the event)."""
        if not self.bot.accepting:
            return
        source = self._source(message)
        if source is None:
            return
        if not self.access.allows(message.author, message.channel):
            if source == "dm":  # a refused user hears why in private, never in a channel
                self.bot.track(self._refuse(message))
            return
        received = time.monotonic()
        text = self.resolver.text_of(message)
        channel = str(message.channel.id)
        self.engine.take_message(channel, str(message.author.id), text, source=source)
        with self.bot.tracking():  # discord.py runs each listener in a task of its own
            await self._answer(message, channel, text, received)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        if self.bot.user is not None:
            self.resolver.forget(payload.message_id)

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        if self.bot.user is not None:
            for message_id in payload.message_ids:
                self.resolver.forget(message_id)

    async def _refuse(self, message: discord.Message) -> None:
        with contextlib.suppress(discord.HTTPException):
            await message.channel.send(REFUSED_IN_DM)

    async def _answer(
        self, message: discord.Message, channel: str, text: str, received: float
    ) -> None:
        sink = MessageReplySink(message, self.budget)
        wait = await self.cooldown.check(message.author.id, received)
        if wait > 0:
            await self._notice(
                sink,
                channel,
                received,
                slow_down(wait),
                "cooldown",
            )
            return
        attached = Attached()
        place = Place.of(message.channel)
        if message.attachments:
            room = self.engine.text_room(_question("", text, place))
            attached = await read_attachments(
                self.bot.components.session,
                message.attachments,
                vision=self.engine.models.has_vision,
                max_text_chars=room,
            )
        if not text and not attached.texts and not attached.images:
            notice = EMPTY_QUESTION
            if attached.notes:
                notice += "\n-# Left out: " + "; ".join(attached.notes)
            await self._notice(sink, channel, received, notice, "empty")
            return
        context = await self.resolver.resolve(message)
        question = _question(
            context.conversation,
            "\n\n".join([text, *attached.texts]).strip(),
            place,
            context=context.chain,
            images=tuple(attached.images),
            files=tuple(attached.names),
        )
        self.resolver.remember_question(message, question.text, context.parent)
        sent = await self._stream(
            sink, channel, question, received, [*context.notes, *attached.notes]
        )
        if sent:
            self.resolver.remember_answer(sent[1], sent[0], message.id)

    async def _notice(
        self, sink: ReplySink, channel: str, received: float, content: str, status: str
    ) -> None:
        try:
            await sink.send(content)
        except discord.HTTPException as exc:
            self.engine.log_error("discord", exc, detail=f"send failed with HTTP {exc.status}")
            return
        self._log_reply(channel, received, status, parts=1, chars=len(content))

    async def _stream(
        self,
        sink: ReplySink,
        channel: str,
        question: Question,
        received: float,
        notes: list[str] | None = None,
    ) -> tuple[str, list[int]] | None:
        """Answer ``question`` into ``sink``; the text and the ids of the messages it went out in."""
        status = "ok"
        delivered = Delivery()
        try:
            async with self._slots:
                deltas = self.engine.answer(question)
                if notes:
                    deltas = _with_notes(deltas, notes)
                result = await deliver(deltas, sink, into=delivered)
        except asyncio.CancelledError:
            # Cancelled at a graceful stop past the drain bound: still one reply event per
            # message, saying what had gone out (a long answer may have been posted in part).
            shown = sum(len(text) for _, text in delivered.sent)
            self._log_reply(
                channel,
                received,
                "cancelled",
                parts=delivered.parts,
                chars=shown,
                edits=delivered.edits,
            )
            raise
        except discord.HTTPException as exc:
            # A 5xx or a refused send: logged, never a crash; the engine already logged the LLM side.
            self.engine.log_error("discord", exc, detail=f"send failed with HTTP {exc.status}")
            self._log_reply(channel, received, "error")
            return None
        parts, edits = result.parts, result.edits
        if result.error is not None:
            status = "error"
            notice = (
                result.error.user_message if isinstance(result.error, LLMError) else GENERIC_FAILURE
            )
            if not isinstance(result.error, LLMError):
                self.engine.log_error("engine", result.error)
            try:
                await sink.send(f"⚠️ {notice}")
                parts += 1
            except discord.HTTPException as exc:
                self.engine.log_error("discord", exc, detail=f"send failed with HTTP {exc.status}")
        self._log_reply(channel, received, status, parts=parts, chars=result.chars, edits=edits)
        if result.error is not None:
            return None
        return result.text, [h.id for h, _ in result.sent if isinstance(h, discord.Message)]

    def _log_reply(
        self,
        channel: str,
        received: float,
        status: str,
        *,
        parts: int = 0,
        chars: int = 0,
        edits: int = 0,
    ) -> None:
        latency_ms = (time.monotonic() - received) * 1000
        self.engine.log_reply(
            channel, latency_ms=latency_ms, parts=parts, chars=chars, edits=edits, status=status
        )

    @app_commands.command(name="ask", description="Ask the model a question")
    @app_commands.describe(question="What to ask")
    async def ask(self, interaction: discord.Interaction[Any], question: str) -> None:
        if not self.bot.accepting:
            await interaction.response.send_message("The bot is shutting down.", ephemeral=True)
            return
        if not self.access.allows(interaction.user, interaction.channel):
            await interaction.response.send_message(REFUSED_IN_DM, ephemeral=True)
            return
        received = time.monotonic()
        channel = str(interaction.channel_id)
        self.engine.log_command("ask", channel, str(interaction.user.id))
        self.engine.take_message(channel, str(interaction.user.id), question, source="slash")
        wait = await self.cooldown.check(interaction.user.id, received)
        if wait > 0:  # the same cooldown as a mention: /ask is no way around it
            notice = slow_down(wait)
            await interaction.response.send_message(notice, ephemeral=True)
            self._log_reply(channel, received, "cooldown", parts=1, chars=len(notice))
            return
        await interaction.response.defer(thinking=True)
        text = question.strip()
        sink = InteractionSink(interaction)
        place = Place.of(interaction.channel)
        if place.channel is None:
            place = Place(interaction.channel_id)
        asked = _question(channel, text, place)
        task = self.bot.track(
            self._stream(sink, channel, asked, received)
            if text
            else self._notice(sink, channel, received, EMPTY_QUESTION, "empty")
        )
        await task


def slow_down(wait: float) -> str:
    return f"Slow down a little: ask again in {wait:.0f} s."


def _question(conversation: str, text: str, place: Place, **more: Any) -> Question:
    return Question(
        conversation,
        text,
        channel=place.channel,
        channel_name=place.name,
        parent=place.parent,
        parent_name=place.parent_name,
        **more,
    )


async def _with_notes(deltas: AsyncIterator[str], notes: list[str]) -> AsyncIterator[str]:
    """The answer, then a line saying what was left out (an attachment, part of a chain)."""
    try:
        async for delta in deltas:
            yield delta
    finally:
        aclose = getattr(deltas, "aclose", None)
        if aclose is not None:
            await aclose()
    yield "\n\n-# Left out: " + "; ".join(notes)


async def setup(bot: commands.Bot) -> None:
    from bot.frontend.client import ChatBotMixin

    assert isinstance(bot, ChatBotMixin)
    await bot.add_cog(Chat(bot))
