"""``botctl run`` without a token: the bot against the sandbox process, its users or your typing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from typing import Any

from bot.components import Components
from bot.frontend.app import serve
from bot.settings import Settings
from bot.shared import SharedState
from botctl.run.chat import StdinLines, chat_loop
from botctl.run.llm import LLMChoice, make_components
from botctl.run.options import RunOptions
from botctl.run.report import RunHooks, RunReport, make_banner
from botctl.sandbox.client import SandboxProcess
from botctl.sandbox.config import SandboxConfig

SANDBOX_TOKEN = "sandbox-token"  # the sandbox accepts any token; this one is not a secret
TAKE_TIMEOUT = 3.0


async def run_in_sandbox(
    settings: Settings,
    config: SandboxConfig,
    options: RunOptions,
    llm: LLMChoice,
    stop: asyncio.Event,
    started: float,
    hooks: RunHooks,
    shared: SharedState | None = None,
) -> RunReport:
    shards = settings.shards or settings.shard_count or config.gateway_shards
    config = replace(config, llm=llm.url is None and llm.needed, gateway_shards=shards)
    async with SandboxProcess(config) as sandbox:
        endpoints = sandbox.endpoints
        assert endpoints is not None
        url = llm.url or endpoints.llm_url
        bot_settings = settings.with_changes(
            discord_api=endpoints.api_base, discord_gateway=endpoints.gateway_url
        )
        if not config.rate_limits:  # a raw load test: the sandbox answers every write at once
            bot_settings = bot_settings.with_changes(write_pacing=False)
        components = make_components(bot_settings, llm, url, shared)
        host = endpoints.api_base.split("/api")[0]
        mode = (
            "you type (--chat)"
            if options.chat
            else (
                f"{config.users} simulated users, {config.channels} channels, "
                f"{config.rate:g} msg/s, {config.duplicate_ratio:.0%} duplicates"
            )
        )
        hooks.banner(
            make_banner(
                settings, options, f"the sandbox at {host} ({mode})", llm, components.metrics.run_id
            )
        )
        chat_task: asyncio.Task[None] | None = None

        async def on_ready(_components: Components) -> None:
            nonlocal chat_task
            if options.chat:
                chat_task = asyncio.create_task(
                    chat_loop(
                        sandbox, stop, StdinLines(), hooks.prompt, hooks.chat_reply, hooks.note
                    )
                )
            else:
                await sandbox.start_traffic()

        async def before_close(parts: Components) -> None:
            if chat_task is not None:
                chat_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await chat_task
            with contextlib.suppress(Exception):
                traffic = await sandbox.stop_traffic()
                sent = int(traffic.get("messages_sent", 0))
                # Everything the users sent is taken before the bot stops taking messages.
                deadline = time.monotonic() + TAKE_TIMEOUT
                # Polling: the engine's message count has no event to wait on.
                while parts.engine.counters()["messages"] < sent and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)

        result = await serve(
            bot_settings,
            SANDBOX_TOKEN,
            stop,
            components=components,
            on_ready=on_ready,
            before_close=before_close,
            # The sandbox sends its one guild at once; discord.py's 2 s wait for more is idle time.
            client_options={"guild_ready_timeout": 0.2},
            tune_gc=True,
        )
        sandbox_stats: dict[str, Any] | None = None
        llm_stats: dict[str, Any] | None = None
        with contextlib.suppress(Exception):
            sandbox_stats = await sandbox.traffic_stats()
            discord_stats = await sandbox.stats()
            sandbox_stats["rate_limited_total"] = discord_stats.get("rate_limited_total", 0)
            sandbox_stats["rate_limits"] = discord_stats.get("rate_limits", False)
        if llm.url is None:
            with contextlib.suppress(Exception):
                llm_stats = await sandbox.llm_stats()
    return RunReport(
        settings=bot_settings.redacted(),
        elapsed_s=time.monotonic() - started,
        counters=result.counters,
        summary=result.summary,
        run_id=components.metrics.run_id,
        connected=result.connected,
        sandbox=sandbox_stats,
        llm_server=llm_stats,
        error=result.error,
        cancelled_replies=result.cancelled_replies,
    )
