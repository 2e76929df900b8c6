"""``botctl run`` as logic: choose the LLM and the Discord, run the bot, stop it in order, report.

The command parses options into settings and hands them to :func:`run`, which returns a
:class:`RunReport` for the reporter. Stop order on SIGINT, SIGTERM or ``--duration``: the sandbox
users stop posting; the bot takes what they already sent, stops taking messages, finishes (or, past
a bound, cancels) the replies in flight, flushes its metrics and closes its sessions
(``ChatBot.close``); then the sandbox stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator

from bot.frontend.app import serve
from bot.settings import DEFAULT_MODEL, Settings
from bot.shared import SharedState
from botctl.run.llm import choose_llm, make_components
from botctl.run.options import RunOptions
from botctl.run.processes import ProcessesReport, run_processes
from botctl.run.report import RunHooks, RunReport, make_banner
from botctl.run.sandboxed import run_in_sandbox
from botctl.sandbox.config import SandboxConfig
from botctl.sandbox.local_model import LocalModelProcess

__all__ = ["run", "run_sharded"]


async def run(
    settings: Settings,
    sandbox: SandboxConfig,
    options: RunOptions,
    hooks: RunHooks,
    *,
    llm_url_source: str | None = None,
) -> RunReport:
    """Run the bot (with the sandbox when there is no token) until a signal or ``duration``."""
    started = time.monotonic()
    with stop_on_signals(options.duration) as stop:
        async with contextlib.AsyncExitStack() as stack:
            shared: SharedState | None = None
            if settings.redis is not None:
                shared = await SharedState.connect(settings.redis)
                stack.push_async_callback(shared.close)  # the components close it first
            if options.local_model:
                model = await stack.enter_async_context(LocalModelProcess())
                name = model.model if settings.model == DEFAULT_MODEL else settings.model
                settings = settings.with_changes(llm_url=model.url, llm_api="openai", model=name)
                llm_url_source = "--local-model"
            return await _run(
                settings, sandbox, options, hooks, stop, started, llm_url_source, shared
            )


@contextlib.contextmanager
def stop_on_signals(duration: float | None) -> Iterator[asyncio.Event]:
    """An event set by SIGINT, SIGTERM or the end of ``duration`` (the handlers undone after)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    timer = loop.call_later(duration, stop.set) if duration else None
    try:
        yield stop
    finally:
        if timer is not None:
            timer.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run(
    settings: Settings,
    sandbox: SandboxConfig,
    options: RunOptions,
    hooks: RunHooks,
    stop: asyncio.Event,
    started: float,
    llm_url_source: str | None,
    shared: SharedState | None,
) -> RunReport:
    llm = await choose_llm(settings, url_source=llm_url_source)
    if settings.sandbox:
        return await run_in_sandbox(settings, sandbox, options, llm, stop, started, hooks, shared)
    assert settings.token is not None
    components = make_components(settings, llm, llm.url, shared)
    discord_name = (
        f"Discord-compatible server at {settings.discord_api}"
        if settings.discord_api
        else "Discord"
    )
    hooks.banner(make_banner(settings, options, discord_name, llm, components.metrics.run_id))
    result = await serve(settings, settings.token, stop, components=components, tune_gc=True)
    return RunReport(
        settings=settings.redacted(),
        elapsed_s=time.monotonic() - started,
        counters=result.counters,
        summary=result.summary,
        run_id=components.metrics.run_id,
        connected=result.connected,
        error=result.error,
        cancelled_replies=result.cancelled_replies,
    )


async def run_sharded(
    settings: Settings,
    sandbox: SandboxConfig,
    options: RunOptions,
    hooks: RunHooks,
    child_args: list[str],
) -> ProcessesReport:
    """``--processes N``: N shard processes sharing a Redis, until a signal or ``duration``."""
    assert options.processes is not None
    if settings.redis is not None:
        # Unreachable (or too old) is one line before anything starts, as in one process.
        await (await SharedState.connect(settings.redis)).close()
    with stop_on_signals(options.duration) as stop:
        llm = await choose_llm(settings)
        hooks.note(
            f"{options.processes} shard processes over "
            f"{'the sandbox' if settings.sandbox else 'Discord'}; LLM: {llm.description}; "
            f"Redis: {'a redis-server of its own' if settings.redis is None else 'as given'}; "
            "Ctrl-C stops them"
        )
        return await run_processes(
            settings, sandbox, options.processes, child_args, llm, stop, hooks.note
        )
