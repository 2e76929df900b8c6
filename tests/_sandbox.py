"""Helpers for the sandbox's tests: a server on 127.0.0.1, discord.py clients connected to it, the bare bot.

Every wait is bounded and every client is closed in ``finally``: a broken server must fail a test,
never hang it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import discord
from discord.ext import commands

from bot.frontend.endpoints import configure_endpoints, reset_endpoints
from botctl.bench.bare_bot import run_bare_bot
from botctl.sandbox.discord_server import DiscordServer

TOKEN = "sandbox-token"
READY_TIMEOUT = 10.0
WAIT = 10.0


@contextlib.asynccontextmanager
async def sandbox(**options: Any) -> AsyncIterator[DiscordServer]:
    server = DiscordServer(**options)
    await server.start()
    configure_endpoints(server.api_base, server.gateway_url)
    try:
        yield server
    finally:
        reset_endpoints()
        await asyncio.wait_for(server.stop(), WAIT)


@contextlib.asynccontextmanager
async def connected(client: discord.Client) -> AsyncIterator[discord.Client]:
    """Log in, connect and wait for on_ready; close the client whatever happens."""
    connect: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(client.login(TOKEN), WAIT)
        ready = asyncio.ensure_future(client.wait_for("ready", timeout=READY_TIMEOUT))
        connect = asyncio.create_task(client.connect(reconnect=True))
        done, _ = await asyncio.wait(
            {ready, connect}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if connect in done:
                connect.result()
            raise AssertionError("the client never became ready")
        ready.result()
        yield client
    finally:
        await asyncio.wait_for(client.close(), WAIT)
        if connect is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(connect, WAIT)


class QuietBot(commands.Bot):
    """A Bot whose on_message does not treat a mention as a command prefix (no CommandNotFound)."""

    async def on_message(self, message: discord.Message, /) -> None:
        return None

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py sleeps 5 s before every identify but the first; nothing to pace here.
        return None


class QuietShardedBot(commands.AutoShardedBot):
    async def on_message(self, message: discord.Message, /) -> None:
        return None


def make_bot(**options: Any) -> commands.Bot:
    options.setdefault("intents", discord.Intents.default())
    return QuietBot(
        command_prefix=commands.when_mentioned,
        help_command=None,
        allowed_mentions=discord.AllowedMentions.none(),
        guild_ready_timeout=0.1,
        **options,
    )


class Inbox:
    """Collects on_message calls and lets a test wait for the n-th one."""

    def __init__(self) -> None:
        self.messages: list[discord.Message] = []
        self._changed = asyncio.Event()

    async def on_message(self, message: discord.Message) -> None:
        self.messages.append(message)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = WAIT) -> list[discord.Message]:
        async def until() -> None:
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.messages


async def with_bare_bot(server: DiscordServer) -> tuple[asyncio.Event, asyncio.Task[int]]:
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        run_bare_bot(server.api_base, server.gateway_url, stop=stop, ready=ready)
    )
    done, _ = await asyncio.wait(
        {task, asyncio.ensure_future(ready.wait())},
        timeout=READY_TIMEOUT,
        return_when=asyncio.FIRST_COMPLETED,
    )
    if task in done:
        task.result()
    assert ready.is_set(), "the bare bot never became ready"
    return stop, task


async def stop_bare_bot(stop: asyncio.Event, task: asyncio.Task[int]) -> int:
    stop.set()
    return await asyncio.wait_for(task, WAIT)
