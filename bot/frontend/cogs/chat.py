"""The chat cog: answers mentions, DMs and configured channels, and ``/ask``, through the engine."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.delivery import ReplySink, deliver
from bot.engine import Question
from bot.frontend.sinks import InteractionSink, MessageReplySink
from bot.llm.errors import LLMError

if TYPE_CHECKING:
    from bot.frontend.client import ChatBot

log = logging.getLogger("bot.frontend.chat")

EMPTY_QUESTION = "Ask me something after the mention, for example: @me what is a closure?"
GENERIC_FAILURE = "Sorry, something went wrong while answering; please try again."
_COOLDOWN_KEEP = 10_000
# Answers streaming at once. Past this, new questions wait their turn: under a flood, starting
# every LLM call at once starves the sends and the bot's throughput collapses (bench: 37 replies/s
# uncapped against 250+ capped at 800 msg/s offered).
MAX_ANSWERS_IN_FLIGHT = 256


class Cooldown:
    """Per-user cooldown; remembers at most ``_COOLDOWN_KEEP`` users (oldest forgotten first)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: OrderedDict[int, float] = OrderedDict()

    def retry_after(self, user_id: int, now: float) -> float:
        """0 if the user may ask now (and records it), else the seconds left."""
        if self.seconds <= 0:
            return 0.0
        last = self._last.get(user_id)
        if last is not None and now - last < self.seconds:
            return self.seconds - (now - last)
        self._last[user_id] = now
        self._last.move_to_end(user_id)
        if len(self._last) > _COOLDOWN_KEEP:
            self._last.popitem(last=False)
        return 0.0


class Chat(commands.Cog):
    def __init__(self, bot: ChatBot) -> None:
        self.bot = bot
        self.engine = bot.engine
        settings = bot.components.settings
        self.reply_channels = frozenset(settings.reply_channels)
        self.cooldown = Cooldown(settings.effective_cooldown)
        self._mention_re: re.Pattern[str] | None = None
        self._slots = asyncio.Semaphore(MAX_ANSWERS_IN_FLIGHT)

    def _strip_mention(self, content: str) -> str:
        if self._mention_re is None:
            assert self.bot.user is not None
            self._mention_re = re.compile(rf"<@!?{self.bot.user.id}>")
        return self._mention_re.sub("", content).strip()

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

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if not self.bot.accepting:
            return
        source = self._source(message)
        if source is None:
            return
        received = time.monotonic()
        text = self._strip_mention(message.content)
        channel = str(message.channel.id)
        self.engine.take_message(channel, str(message.author.id), text, source=source)
        self.bot.track(self._answer(message, channel, text, received))

    async def _answer(
        self, message: discord.Message, channel: str, text: str, received: float
    ) -> None:
        sink = MessageReplySink(message)
        wait = self.cooldown.retry_after(message.author.id, received)
        if wait > 0:
            await self._notice(
                sink,
                channel,
                received,
                f"Slow down a little: ask again in {wait:.0f} s.",
                "cooldown",
            )
            return
        if not text:
            await self._notice(sink, channel, received, EMPTY_QUESTION, "empty")
            return
        await self._stream(sink, channel, text, received)

    async def _notice(
        self, sink: ReplySink, channel: str, received: float, content: str, status: str
    ) -> None:
        try:
            await sink.send(content)
        except discord.HTTPException as exc:
            self.engine.log_error("discord", exc, detail=f"send failed with HTTP {exc.status}")
            return
        self._log_reply(channel, received, status, parts=1, chars=len(content))

    async def _stream(self, sink: ReplySink, channel: str, text: str, received: float) -> None:
        status = "ok"
        try:
            async with self._slots:
                question = Question(channel, text, channel=int(channel))
                result = await deliver(self.engine.answer(question), sink)
        except asyncio.CancelledError:
            # Cancelled at a graceful stop past the drain bound: still one reply event per message.
            self._log_reply(channel, received, "cancelled")
            raise
        except discord.HTTPException as exc:
            # A 5xx or a refused send: logged, never a crash; the engine already logged the LLM side.
            self.engine.log_error("discord", exc, detail=f"send failed with HTTP {exc.status}")
            self._log_reply(channel, received, "error")
            return
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
        received = time.monotonic()
        channel = str(interaction.channel_id)
        self.engine.log_command("ask", channel, str(interaction.user.id))
        self.engine.take_message(channel, str(interaction.user.id), question, source="slash")
        await interaction.response.defer(thinking=True)
        text = question.strip()
        sink = InteractionSink(interaction)
        task = self.bot.track(
            self._stream(sink, channel, text, received)
            if text
            else self._notice(sink, channel, received, EMPTY_QUESTION, "empty")
        )
        await task


async def setup(bot: commands.Bot) -> None:
    from bot.frontend.client import ChatBot

    assert isinstance(bot, ChatBot)
    await bot.add_cog(Chat(bot))
