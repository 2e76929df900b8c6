"""Running the bot: build the parts from settings, connect to Discord, stop gracefully, report.

:func:`serve` is what ``botctl run`` (and the tests) call. It knows nothing of the sandbox: it is given
a token and, optionally, the REST and gateway URLs of a Discord-compatible server. Shutdown has one
owner, :meth:`ChatBot.close <bot.frontend.client.ChatBot.close>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.components import Components
from bot.frontend.client import make_bot
from bot.frontend.endpoints import configure_endpoints
from bot.frontend.errors import describe_connect_error
from bot.prometheus import MetricsPortError
from bot.settings import Settings


@dataclass(slots=True)
class ServeResult:
    """What a run did, from the engine's counters and the metrics service, after the final flush."""

    summary: dict[str, Any]
    counters: dict[str, Any]
    cancelled_replies: int = 0
    error: str | None = None
    connected: bool = False


async def serve(
    settings: Settings,
    token: str,
    stop: asyncio.Event,
    *,
    components: Components | None = None,
    on_ready: Callable[[Components], Awaitable[None]] | None = None,
    before_close: Callable[[Components], Awaitable[None]] | None = None,
    drain_timeout: float = 10.0,
    sync_commands: bool = True,
    client_options: dict[str, Any] | None = None,
    tune_gc: bool = False,
) -> ServeResult:
    """Run the bot until ``stop`` is set; return its figures once everything is flushed and closed.

    ``on_ready`` runs once the client is ready (the sandbox starts its traffic there);
    ``before_close`` runs after ``stop`` and before the bot stops taking messages (the sandbox stops
    its users there, so every message they sent is taken). ``tune_gc`` freezes the garbage
    collector's view of start-up objects, process-wide: for a process that is the bot (``botctl
    run``), not for one that embeds it (tests).
    """

    configure_endpoints(settings.discord_api, settings.discord_gateway)
    parts = components or Components(settings)
    bot = make_bot(parts, sync_commands=sync_commands, **(client_options or {}))
    result = ServeResult(summary={}, counters={})

    async def watch_ready() -> None:
        await bot.ready_event.wait()
        result.connected = True
        if tune_gc:
            _tune_gc()
        if on_ready is not None:
            await on_ready(parts)

    ready_task = asyncio.create_task(watch_ready())
    connect: asyncio.Task[None] | None = None
    try:
        await bot.login(token)
        connect = asyncio.create_task(bot.connect(reconnect=True))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({connect, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if connect in done and connect.exception() is not None:
            result.error = describe_connect_error(connect.exception(), settings)
        elif before_close is not None:
            await before_close(parts)
    except MetricsPortError as exc:  # found while starting the engine (setup_hook)
        result.error = str(exc)
    except Exception as exc:  # login refused, setup failed: reported, and everything still closes
        result.error = describe_connect_error(exc, settings)
    finally:
        ready_task.cancel()
        await bot.close(drain_timeout=drain_timeout)
        result.cancelled_replies = bot.cancelled_replies
        if connect is not None and not connect.done():
            connect.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connect
    result.summary = parts.engine.summary()
    result.counters = parts.engine.counters()
    return result


def _tune_gc() -> None:
    """Fewer, cheaper garbage collections once the bot is up.

    Everything alive at start-up (discord.py's caches, modules) is frozen out of the collector's
    scans, and the youngest generation collects less often: a streamed answer makes many small
    objects, and under load full collections took half the bot's time (bench, profiled).
    """
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(10_000, gen1, gen2)
