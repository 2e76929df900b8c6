"""``botctl run``: start the bot, on Discord with a token, else in the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from botctl.errors import BotctlError

SANDBOX = "Sandbox (used when no token is given)"
LLM = "LLM"
METRICS = "Metrics"


def run(
    token: Annotated[
        str | None,
        typer.Option(
            help="Discord bot token (prefer the env var: a flag shows in ps). Without one the bot runs in the sandbox.",
            envvar="DISCORD_TOKEN",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="TOML file of settings (flags beat env, env beats the file).",
            envvar="BOT_CONFIG",
        ),
    ] = None,
    llm_url: Annotated[
        str | None,
        typer.Option(
            help="Ollama URL (default http://127.0.0.1:11434).",
            envvar=["OLLAMA_URL", "OLLAMA_HOST"],
            rich_help_panel=LLM,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model name (default llama3.2).", envvar="OLLAMA_MODEL", rich_help_panel=LLM
        ),
    ] = None,
    llm_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds before an LLM call is given up (default 120).",
            envvar="BOT_LLM_TIMEOUT",
            rich_help_panel=LLM,
        ),
    ] = None,
    system_prompt: Annotated[
        str | None,
        typer.Option(
            help="System prompt sent first in every request.",
            envvar="BOT_SYSTEM_PROMPT",
            rich_help_panel=LLM,
        ),
    ] = None,
    dedup_window: Annotated[
        float | None,
        typer.Option(
            help="Seconds a finished answer is reused for an identical request (0 = in flight only) (default 5).",
            envvar="BOT_DEDUP_WINDOW",
            rich_help_panel=LLM,
        ),
    ] = None,
    no_dedup: Annotated[
        bool,
        typer.Option(
            "--no-dedup",
            help="Send every request upstream (no deduplication).",
            envvar="BOT_NO_DEDUP",
            rich_help_panel=LLM,
        ),
    ] = False,
    history_limit: Annotated[
        int | None,
        typer.Option(help="Messages kept per channel (default 20).", envvar="BOT_HISTORY_LIMIT"),
    ] = None,
    history_channels: Annotated[
        int | None,
        typer.Option(
            help="Channels kept in the history LRU (default 1000).", envvar="BOT_HISTORY_CHANNELS"
        ),
    ] = None,
    cooldown: Annotated[
        float | None,
        typer.Option(
            help="Seconds between two questions of one user (default 2 on Discord, 0 in the sandbox).",
            envvar="BOT_COOLDOWN",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(help="Stop by itself after this many seconds.", envvar="BOT_DURATION"),
    ] = None,
    discord_api: Annotated[
        str | None,
        typer.Option(
            help="REST base of a Discord-compatible server, such as http://127.0.0.1:8080/api/v10.",
            envvar="DISCORD_API_BASE",
        ),
    ] = None,
    discord_gateway: Annotated[
        str | None,
        typer.Option(
            help="Gateway URL of a Discord-compatible server, such as ws://127.0.0.1:8080/gateway.",
            envvar="DISCORD_GATEWAY_URL",
        ),
    ] = None,
    metrics_file: Annotated[
        Path | None,
        typer.Option(
            help="JSON Lines metrics file (default profiles/metrics.jsonl).",
            envvar="BOT_METRICS_FILE",
            rich_help_panel=METRICS,
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Write metrics every N events (default 50).",
            envvar="BOT_BATCH_SIZE",
            rich_help_panel=METRICS,
        ),
    ] = None,
    batch_interval: Annotated[
        float | None,
        typer.Option(
            help="... or every N seconds, whichever comes first (default 60).",
            envvar="BOT_BATCH_INTERVAL",
            rich_help_panel=METRICS,
        ),
    ] = None,
    users: Annotated[
        int | None, typer.Option(help="Simulated users (default 20).", rich_help_panel=SANDBOX)
    ] = None,
    channels: Annotated[
        int | None, typer.Option(help="Channels (default 10).", rich_help_panel=SANDBOX)
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(help="Messages per second (default 5).", rich_help_panel=SANDBOX),
    ] = None,
    duplicate_ratio: Annotated[
        float | None,
        typer.Option(
            help="Share of messages that repeat a question another user is asking at the same time (default 0.3).",
            rich_help_panel=SANDBOX,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Random seed of the simulated traffic (default 0).", rich_help_panel=SANDBOX
        ),
    ] = None,
    chat: Annotated[
        bool,
        typer.Option(
            "--chat",
            help="Type messages yourself instead of simulated users.",
            rich_help_panel=SANDBOX,
        ),
    ] = False,
) -> None:
    """Start the bot: on Discord with a token, else in the [bold]sandbox[/] (no token, no Ollama needed).

    Stops on Ctrl-C, SIGTERM or after --duration, flushing its metrics, and prints a summary.
    """
    import asyncio

    from bot.settings import SettingsError, load_settings
    from botctl.reporters.run import RunReporter

    overrides = {
        "token": token,
        "llm_url": llm_url,
        "model": model,
        "llm_timeout": llm_timeout,
        "system_prompt": system_prompt,
        "dedup_window": dedup_window,
        "dedup": False if no_dedup else None,
        "history_limit": history_limit,
        "history_channels": history_channels,
        "cooldown": cooldown,
        "duration": duration,
        "discord_api": discord_api,
        "discord_gateway": discord_gateway,
        "metrics_file": metrics_file,
        "batch_size": batch_size,
        "batch_interval": batch_interval,
        "users": users,
        "channels": channels,
        "rate": rate,
        "duplicate_ratio": duplicate_ratio,
        "seed": seed,
        "chat": True if chat else None,
    }
    try:
        settings = load_settings(config, overrides)
    except SettingsError as exc:
        raise BotctlError(str(exc)) from None
    _check_metrics_path(settings.metrics_file)
    reporter = RunReporter()
    from botctl.profiling.inprocess import profiling_session
    from botctl.runner import run as run_bot
    from botctl.sandbox.client import SandboxError

    try:
        with profiling_session():
            report = asyncio.run(
                run_bot(
                    settings,
                    on_banner=reporter.banner,
                    chat_input=reporter.chat_input if settings.chat else None,
                    on_chat_reply=reporter.chat_reply,
                )
            )
    except SandboxError as exc:
        raise BotctlError(f"{exc}; see the lines above") from None
    reporter.summary(report)
    if report.error:
        raise BotctlError(report.error)


def _check_metrics_path(path: Path) -> None:
    """Fail before start-up, in one line, when the metrics file cannot be written.

    Opening it for append (creating it, 0600, as the bot would) is the one check that holds for
    root too: ``os.access`` says yes to root under a file or on a read-only mount.
    """
    import os

    if path.is_dir():
        raise BotctlError(
            f"metrics file {path} is a directory; pass a file path with --metrics-file"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BotctlError(
            f"cannot write the metrics file {path} ({reason}); pick another with --metrics-file"
        ) from None
    os.close(fd)
