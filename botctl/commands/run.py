"""``botctl run``: start the bot, on Discord with a token, else in the sandbox.

Its options are not written here: they are the declared fields of the bot's settings, the
sandbox's and the run's own (:mod:`botctl.options`), so a setting is declared once.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from bot.config import load_settings, read_config_file
from bot.options import SettingsError, build, declared
from bot.settings import Settings
from botctl import eventloop
from botctl.errors import BotctlError
from botctl.options import cli_values, declared_command, split_values
from botctl.reporters.run import RunReporter
from botctl.run.options import RunOptions
from botctl.sandbox.config import SandboxConfig

_CLASSES: tuple[type, ...] = (Settings, SandboxConfig, RunOptions)
_CONFIG = inspect.Parameter(
    "config",
    inspect.Parameter.KEYWORD_ONLY,
    default=None,
    annotation=Annotated[
        Path | None,
        typer.Option(
            help="TOML file of settings (flags beat env, env beats the file).", envvar="BOT_CONFIG"
        ),
    ],
)


_CONTEXT = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)


def _llm_url_source(ctx: typer.Context) -> str | None:
    """Where a given --llm-url came from, for the banner's advice."""
    source = ctx.get_parameter_source("llm_url")
    name = getattr(source, "name", None)
    if name == "ENVIRONMENT":
        return next((var for var in ("OLLAMA_URL", "OLLAMA_HOST") if os.environ.get(var)), None)
    if name == "COMMANDLINE":
        return "--llm-url"
    return None


def load(config: Path | None, given: dict[str, Any]) -> tuple[Settings, SandboxConfig, RunOptions]:
    """The three settings objects: defaults < the TOML file < env < flags."""
    file_values = read_config_file(config) if config is not None else {}
    bot_file, sandbox_file, run_file = split_values(_CLASSES, file_values, where=str(config))
    bot_cli, sandbox_cli, run_cli = split_values(_CLASSES, cli_values(_CLASSES, given), where="")
    settings = load_settings(file_values=bot_file, overrides=bot_cli)
    sandbox = build(SandboxConfig, {**sandbox_file, **sandbox_cli})
    options = build(RunOptions, {**run_file, **run_cli})
    if options.chat and not settings.sandbox:
        raise SettingsError("chat: --chat types into the sandbox; it needs no Discord token")
    return settings, sandbox, options


# Set by --processes itself for each child, or meaningless there.
_NOT_FOR_CHILDREN = frozenset(
    {"processes", "duration", "chat", "token", "shards", "shard_count", "shard_ids", "redis",
     "metrics_file", "discord_api", "discord_gateway", "llm_url"}
)  # fmt: skip


def child_args(config: Path | None, given: dict[str, Any]) -> list[str]:
    """The options given to this run, as a shard child's command line (the rest is set for it)."""
    args = ["--config", str(config)] if config is not None else []
    for cls in _CLASSES:
        for f, meta in declared(cls):
            value = given.get(f.name)
            if f.name in _NOT_FOR_CHILDREN or meta.flag == "" or value in (None, False):
                continue
            flag = meta.flag or "--" + f.name.replace("_", "-")
            args += [flag] if value is True else [flag, str(value)]
    return args


def _run(given: dict[str, Any]) -> None:
    """Start the bot: on Discord with a token, else in the [bold]sandbox[/] (no token, no LLM needed).

    Stops on Ctrl-C, SIGTERM or after --duration, flushing its metrics, and prints a summary.
    """
    # The run's own modules are imported here, not at the top: they bring discord, aiohttp and
    # redis, which `botctl run --help` must not pay for (the start-up row of `make bench`).
    from bot.kb import KBError
    from bot.shared import SharedStateError
    from botctl.profile.inprocess import profiling_session
    from botctl.run.session import run as run_bot
    from botctl.sandbox.client import SandboxError

    ctx: typer.Context = given.pop("ctx")
    config = given.pop("config")
    try:
        settings, sandbox, options = load(config, given)
    except SettingsError as exc:
        raise BotctlError(str(exc)) from None
    reporter = RunReporter(chat=options.chat)
    if options.processes and options.processes > 1:
        _run_processes(settings, sandbox, options, reporter, child_args(config, given))
        return
    _check_metrics_path(settings.metrics_file)
    if settings.metrics_port is not None:
        from bot.prometheus import MetricsPortError, check_port

        try:  # before the sandbox and the bot start, not after
            check_port(settings.metrics_port)
        except MetricsPortError as exc:
            raise BotctlError(str(exc)) from None
    try:
        with profiling_session(), reporter.live(options.duration):
            report = eventloop.run(
                run_bot(settings, sandbox, options, reporter, llm_url_source=_llm_url_source(ctx))
            )
    except SandboxError as exc:
        raise BotctlError(f"{exc}; see the lines above") from None
    except (SettingsError, KBError, SharedStateError) as exc:  # found at start-up
        raise BotctlError(str(exc)) from None
    if report.connected:
        reporter.summary(report)
    if report.error:
        raise BotctlError(report.error)


run = declared_command(_run, *_CLASSES, extra=[_CONTEXT, _CONFIG])


def parse_args(args: list[str]) -> tuple[Settings, SandboxConfig, RunOptions]:
    """``botctl run``'s options (flags, env, ``--config``) as its three settings objects, without
    running anything: bad usage raises click's usage error (exit 2, with run's usage), a bad value
    a one-line :class:`BotctlError`. ``profile`` checks the bot's options with it before starting
    one, rather than hearing of them from the child."""
    from typer.main import get_command

    loaded: list[tuple[Settings, SandboxConfig, RunOptions]] = []

    def parse(given: dict[str, Any]) -> None:
        given.pop("ctx")
        try:
            loaded.append(load(given.pop("config"), given))
        except SettingsError as exc:
            raise BotctlError(str(exc)) from None

    app = typer.Typer(add_completion=False)
    app.command(name="run")(declared_command(parse, *_CLASSES, extra=[_CONTEXT, _CONFIG]))
    get_command(app).main(args=list(args), prog_name="botctl run", standalone_mode=False)
    return loaded[0]


def _run_processes(
    settings: Settings,
    sandbox: SandboxConfig,
    options: RunOptions,
    reporter: RunReporter,
    args: list[str],
) -> None:
    from bot.shared import SharedStateError
    from botctl.run.processes import shard_metrics_file
    from botctl.run.session import run_sharded  # as in _run: not for --help
    from botctl.sandbox.client import SandboxError

    assert options.processes is not None
    if options.chat:
        raise BotctlError("--chat types into one bot: leave out --processes")
    if settings.shards or settings.shard_count or settings.shard_ids:
        raise BotctlError(
            f"--processes {options.processes} runs shards 0 to {options.processes - 1} of one "
            "bot itself: leave out --shards, --shard-count and --shard-ids"
        )
    for shard in range(options.processes):  # each child writes its own file, not this one
        _check_metrics_path(shard_metrics_file(settings.metrics_file, shard))
    try:
        report = eventloop.run(run_sharded(settings, sandbox, options, reporter, args))
    except (SettingsError, SandboxError, SharedStateError) as exc:
        raise BotctlError(str(exc)) from None
    reporter.processes_summary(report)
    if report.errors:
        raise BotctlError("; ".join(report.errors))


def _check_metrics_path(path: Path) -> None:
    """Fail before start-up, in one line, when the metrics file cannot be written.

    Opening it for append (creating it, 0600, as the bot would) is the one check that holds for
    root too: ``os.access`` says yes to root under a file or on a read-only mount.
    """
    if path.is_dir():
        raise BotctlError(
            f"metrics file {path} is a directory; pass a file path with --metrics-file"
        )
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BotctlError(
            f"cannot write the metrics file {path} ({reason}); pick another with --metrics-file"
        ) from None
    os.close(fd)
    if not existed:  # a run that fails before its first event leaves no empty file behind
        path.unlink(missing_ok=True)
