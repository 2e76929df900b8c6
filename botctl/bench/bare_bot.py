"""The ceiling: a bare discord.py bot that answers every mention with "ok", one send and nothing else.

Benchmarks measure the real bot against this one through the same sandbox server: whatever the bare
bot cannot exceed is discord.py's (and the loopback server's) cost, not the bot's.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import discord
from discord.ext import commands

from bot.frontend.endpoints import configure_endpoints

__all__ = ["BareBot", "run_bare_bot"]


class BareBot(commands.Bot):
    """Replies "ok" to every mention (and DM) from a non-bot; counts the replies sent."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("intents", discord.Intents.default())
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            **options,
        )
        self.replies = 0
        self.failures = 0
        self.ready = asyncio.Event()

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_message(self, message: discord.Message, /) -> None:
        # Overrides Bot.on_message: no command processing, only the one send.
        if message.author.bot:
            return
        me = self.user
        if me is None:
            return
        if message.guild is not None and not me.mentioned_in(message):
            return
        try:
            await message.reply("ok", mention_author=False)
        except discord.HTTPException:
            self.failures += 1
        else:
            self.replies += 1


async def run_bare_bot(
    api_base: str,
    gateway_url: str,
    token: str = "sandbox-token",
    *,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    guild_ready_timeout: float = 0.5,
) -> int:
    """Run :class:`BareBot` against ``api_base``/``gateway_url`` until ``stop`` is set.

    Sets ``ready`` (if given) on the client's on_ready, and returns the number of replies sent.
    Raises what the connection raised if it ended before ``stop`` (a bad URL, a refused login).
    """
    configure_endpoints(api_base, gateway_url)
    bot = BareBot(guild_ready_timeout=guild_ready_timeout)

    async def relay_ready() -> None:
        await bot.ready.wait()
        if ready is not None:
            ready.set()

    relay = asyncio.create_task(relay_ready())
    stopper = asyncio.create_task(stop.wait())
    connect: asyncio.Task[None] | None = None
    try:
        await bot.login(token)
        connect = asyncio.create_task(bot.connect(reconnect=True))
        await asyncio.wait({connect, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if connect.done() and not stop.is_set():
            connect.result()  # raises the connection's error
    finally:
        await bot.close()
        for task in (relay, stopper, connect):
            if task is not None and not task.done():
                task.cancel()
        for task in (relay, stopper, connect):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    return bot.replies
