"""``botctl run`` as logic: choose the LLM and the Discord, run the bot, stop it in order, report.

The command parses options into :class:`~bot.settings.Settings` and hands them to :func:`run`, which
returns a :class:`RunReport` for the reporter. Stop order on SIGINT, SIGTERM or ``--duration``: the
sandbox users stop posting; the bot takes what they already sent, stops taking messages, finishes (or,
past a bound, cancels) the replies in flight, flushes its metrics and closes its sessions; then the
sandbox stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.settings import DEFAULT_LLM_URL, Settings, strip_credentials, with_overrides

SANDBOX_TOKEN = "sandbox-token"  # the sandbox accepts any token; this one is not a secret
TAKE_TIMEOUT = 3.0
CHAT_REPLY_TIMEOUT = 180.0


@dataclass(slots=True)
class Banner:
    discord: str
    llm: str
    llm_warning: str | None
    metrics_file: str
    duration: float | None
    extras: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RunReport:
    """The figures of the summary table, and where they come from."""

    settings: dict[str, Any]
    elapsed_s: float
    counters: dict[str, Any]
    summary: dict[str, Any]
    sandbox: dict[str, Any] | None = None
    llm_server: dict[str, Any] | None = None
    error: str | None = None
    cancelled_replies: int = 0


async def llm_answers(url: str, timeout: float = 1.0) -> bool:
    """True if an Ollama-compatible server answers at ``url`` (with its credentials, if any)."""
    from bot.ollama import OllamaService

    async with OllamaService(url) as llm:
        return await llm.ping(timeout)


async def choose_llm(settings: Settings) -> tuple[str | None, str | None]:
    """(URL to use or None for the sandbox LLM, a warning for the banner or None)."""
    shown = strip_credentials(settings.llm_url)
    if await llm_answers(settings.llm_url):
        return settings.llm_url, None
    if settings.llm_url_given:
        return settings.llm_url, (
            f"no LLM answers at {shown} yet; each question gets an error reply until it does"
        )
    if settings.sandbox:
        return None, None
    return settings.llm_url, (
        f"no Ollama answers at {DEFAULT_LLM_URL}; start it (`ollama serve`) or pass --llm-url"
    )


async def run(
    settings: Settings,
    *,
    on_banner: Callable[[Banner], None],
    chat_input: Callable[[], Awaitable[str | None]] | None = None,
    on_chat_reply: Callable[[str, bool], None] | None = None,
) -> RunReport:
    """Run the bot (with the sandbox when there is no token) until a signal or ``duration``."""
    from bot.app import serve

    started = time.monotonic()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    timer = loop.call_later(settings.duration, stop.set) if settings.duration else None
    llm_url, warning = await choose_llm(settings)
    try:
        if not settings.sandbox:
            assert settings.token is not None
            discord_name = (
                f"Discord-compatible server at {settings.discord_api}"
                if settings.discord_api
                else "Discord"
            )
            on_banner(_banner(settings, discord_name, llm_url, warning))
            result = await serve(settings, settings.token, stop, tune_gc=True)
            return RunReport(
                settings=settings.redacted(),
                elapsed_s=time.monotonic() - started,
                counters=result.counters,
                summary=result.summary,
                error=result.error,
                cancelled_replies=result.cancelled_replies,
            )
        return await _run_sandbox(
            settings, stop, llm_url, warning, started, on_banner, chat_input, on_chat_reply
        )
    finally:
        if timer is not None:
            timer.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _banner(
    settings: Settings, discord_name: str, llm_url: str | None, warning: str | None
) -> Banner:
    llm = (
        f"Ollama at {strip_credentials(llm_url)} (model {settings.model})"
        if llm_url
        else "the sandbox LLM (no Ollama answered at the default address)"
    )
    return Banner(
        discord=discord_name,
        llm=llm,
        llm_warning=warning,
        metrics_file=str(settings.metrics_file),
        duration=settings.duration,
    )


async def _run_sandbox(
    settings: Settings,
    stop: asyncio.Event,
    llm_url: str | None,
    warning: str | None,
    started: float,
    on_banner: Callable[[Banner], None],
    chat_input: Callable[[], Awaitable[str | None]] | None,
    on_chat_reply: Callable[[str, bool], None] | None,
) -> RunReport:
    from bot.app import serve
    from bot.components import Components
    from botctl.sandbox.client import SandboxProcess
    from botctl.sandbox.process import SandboxConfig

    config = SandboxConfig(
        channels=settings.channels,
        users=settings.users,
        rate=settings.rate,
        duplicate_ratio=settings.duplicate_ratio,
        seed=settings.seed,
        llm=llm_url is None,
    )
    async with SandboxProcess(config) as sandbox:
        endpoints = sandbox.endpoints
        assert endpoints is not None
        bot_settings = with_overrides(
            settings,
            discord_api=endpoints.api_base,
            discord_gateway=endpoints.gateway_url,
            llm_url=llm_url or endpoints.llm_url,
        )
        host = endpoints.api_base.split("/api")[0]
        mode = (
            "you type (--chat)"
            if settings.chat
            else (
                f"{settings.users} simulated users, {settings.channels} channels, "
                f"{settings.rate:g} msg/s, {settings.duplicate_ratio:.0%} duplicates"
            )
        )
        banner = _banner(settings, f"the sandbox at {host} ({mode})", llm_url, warning)
        on_banner(banner)
        chat_task: asyncio.Task[None] | None = None
        sandbox_stats: dict[str, Any] | None = None

        async def on_ready(_components: Components) -> None:
            nonlocal chat_task
            if settings.chat and chat_input is not None:
                chat_task = asyncio.create_task(
                    _chat_loop(sandbox, stop, chat_input, on_chat_reply or (lambda _s, _d: None))
                )
            else:
                await sandbox.start_traffic()

        async def before_close(components: Components) -> None:
            nonlocal sandbox_stats
            if chat_task is not None:
                chat_task.cancel()
            with contextlib.suppress(Exception):
                traffic = await sandbox.stop_traffic()
                sent = int(traffic.get("messages_sent", 0))
                # Everything the users sent is taken before the bot stops taking messages.
                deadline = time.monotonic() + TAKE_TIMEOUT
                while components.engine.counters().get("messages", 0) < sent:
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.02)

        result = await serve(
            bot_settings,
            SANDBOX_TOKEN,
            stop,
            on_ready=on_ready,
            before_close=before_close,
            # The sandbox sends its one guild at once; discord.py's 2 s wait for more is idle time.
            client_options={"guild_ready_timeout": 0.2},
            tune_gc=True,
        )
        with contextlib.suppress(Exception):
            sandbox_stats = await sandbox.traffic_stats()
        llm_stats = None
        if llm_url is None:
            with contextlib.suppress(Exception):
                llm_stats = await sandbox.llm_stats()
    return RunReport(
        settings=bot_settings.redacted(),
        elapsed_s=time.monotonic() - started,
        counters=result.counters,
        summary=result.summary,
        sandbox=sandbox_stats,
        llm_server=llm_stats,
        error=result.error,
        cancelled_replies=result.cancelled_replies,
    )


async def _chat_loop(
    sandbox: Any,
    stop: asyncio.Event,
    chat_input: Callable[[], Awaitable[str | None]],
    on_reply: Callable[[str, bool], None],
) -> None:
    """--chat: each line typed is posted as a sandbox user; the bot's reply is printed."""
    while not stop.is_set():
        line = await chat_input()
        if line is None:  # end of input
            stop.set()
            return
        if not line.strip():
            continue
        message_id = await sandbox.say(line)
        # Stream the reply as the bot edits it: peek every quarter second until it settles.
        deadline = time.monotonic() + CHAT_REPLY_TIMEOUT
        while time.monotonic() < deadline and not stop.is_set():
            await asyncio.sleep(0.25)
            try:
                reply = await sandbox.wait_reply(message_id, timeout=0.0, settle=0.0)
            except Exception:  # no part yet (504): keep waiting
                continue
            settled = bool(reply.get("settled"))
            on_reply(str(reply.get("content", "")), settled)
            if settled:
                break
