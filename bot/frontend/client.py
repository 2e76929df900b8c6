"""The Discord front end: a thin ``commands.Bot`` over the transport-free :class:`~bot.engine.ChatEngine`.

``setup_hook`` opens the engine's resources (the one ``aiohttp.ClientSession`` of the LLM client and the
metrics flush task), loads one cog per file and syncs the slash commands; :meth:`ChatBot.close` stops
taking messages, lets in-flight replies finish within a bound (then cancels them), closes the Discord
connection, the LLM client and the metrics (which writes everything still buffered), in that order,
each step even when an earlier one failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.components import Components

log = logging.getLogger("bot.frontend")

EXTENSIONS: tuple[str, ...] = ("bot.frontend.cogs.chat", "bot.frontend.cogs.admin")


def make_intents(*, reply_channels: Iterable[int]) -> discord.Intents:
    """Default intents; message content only when the bot must read un-mentioned channel messages.

    Message content is privileged: asking for it without enabling it in the developer portal makes
    Discord refuse the connection, and mentions and DMs carry their content without it.
    """
    intents = discord.Intents.default()
    intents.message_content = bool(tuple(reply_channels))
    return intents


if TYPE_CHECKING:
    _Base = commands.Bot
else:
    _Base = object


class ChatBotMixin(_Base):
    """The bot. ``components`` holds the engine and everything it owns. Mixed into discord.py's
    ``Bot`` (one connection) or ``AutoShardedBot`` (several shards in this process)."""

    def __init__(
        self, components: Components, *, sync_commands: bool = True, **options: Any
    ) -> None:
        settings = components.settings
        options.setdefault("intents", make_intents(reply_channels=settings.reply_channels))
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            **options,
        )
        self.components = components
        components.in_flight = lambda: len(self.inflight)
        self.engine = components.engine
        self.sync_commands = sync_commands
        self.accepting = True
        self.inflight: set[asyncio.Task[Any]] = set()
        self.ready_event = asyncio.Event()
        self.started_at = time.monotonic()
        self.cancelled_replies = 0
        # Set by the chat cog when it loads (on_message hands every message to it).
        self.message_handler: Callable[[discord.Message], Awaitable[None]] | None = None
        self._closing = False

    async def setup_hook(self) -> None:
        await self.components.start()
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.sync_commands:
            try:
                await self.tree.sync()
            except discord.HTTPException as exc:
                # Slash commands are a convenience: mentions and DMs still work without them.
                log.warning("could not sync slash commands (%s); mentions still work", exc.status)

    async def on_message(self, message: discord.Message, /) -> None:
        """Handed to the chat cog's handler in this same task: no prefix commands to look up, and
        no second task per message (a cog listener would be scheduled as one of its own)."""
        handler = self.message_handler
        if handler is not None:
            await handler(message)

    async def on_ready(self) -> None:
        self.ready_event.set()

    def track(self, coro: Any) -> asyncio.Task[Any]:
        """Run a reply as a task that a graceful stop waits for."""
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
        return task

    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        """Count the current task (discord.py's own, running a listener) as a reply in flight:
        no second task per message, and a graceful stop still waits for it."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self.inflight.add(task)
        try:
            yield
        finally:
            self.inflight.discard(task)

    async def drain(self, timeout: float) -> int:
        """Stop taking messages; wait up to ``timeout`` s for replies in flight, then cancel the rest.

        Returns how many replies were cancelled.
        """
        self.accepting = False
        pending = set(self.inflight)
        if not pending:
            return 0
        _done, still = await asyncio.wait(pending, timeout=timeout)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=2.0)
        return len(still)

    async def close(self, *, drain_timeout: float = 10.0) -> None:
        """The one shutdown: drain replies, close Discord, close the engine (flushing metrics).

        Each step runs even when an earlier one failed; a second call does nothing.
        """
        if self._closing:
            return
        self._closing = True
        try:
            self.cancelled_replies = await self.drain(drain_timeout)
        except Exception:
            log.exception("close: draining replies failed; closing the rest")
        try:
            await super().close()
        except Exception:
            log.exception("close: closing the Discord connection failed; closing the rest")
        try:
            await self.components.close()
        except Exception:
            log.exception("close: closing the engine failed")


class ChatBot(ChatBotMixin, commands.Bot):
    """The bot on one gateway connection."""


class ShardedChatBot(ChatBotMixin, commands.AutoShardedBot):
    """The bot running several shards in this process (``shard_count``, ``shard_ids``)."""

    _identify_concurrency: int | None = None

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Discord lets ``max_concurrency`` shards identify together, then the next round 5 s
        later; discord.py's default waits 5 s before every shard but the first."""
        if initial:
            return
        if self._identify_concurrency is None:
            try:
                limits = await self.fetch_session_start_limits()
                self._identify_concurrency = max(1, limits.max_concurrency)
            except (discord.HTTPException, OSError):
                self._identify_concurrency = 1
        concurrency = self._identify_concurrency
        if shard_id is None or shard_id % concurrency == 0:
            await asyncio.sleep(5.0)


def make_bot(components: Components, **options: Any) -> ChatBotMixin:
    """A sharded bot when the settings ask for shards, else a plain one."""
    settings = components.settings
    if settings.shards or settings.shard_count:
        options.setdefault("shard_count", settings.shards or settings.shard_count)
        if settings.shard_ids:
            options.setdefault("shard_ids", list(settings.shard_ids))
        return ShardedChatBot(components, **options)
    return ChatBot(components, **options)
