"""``botctl profile``: profile the bot with cProfile, py-spy or a memory tracer, or show the guide.

The work is in ``botctl.profile`` (``modes`` runs each one) and the rendering in
``botctl.reporters.profile``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, cast

import typer

from botctl.console import err_console
from botctl.errors import BotctlError
from botctl.interrupts import signals_interrupt
from botctl.profile import modes
from botctl.profile.attach import check_target
from botctl.profile.memray_backend import require_memray
from botctl.profile.pyspy import PySpyFormat, PySpyOptions
from botctl.profile.request import Mode as ModeName
from botctl.profile.request import (
    ProfileRequest,
    check_output,
    default_output,
    files_written,
)
from botctl.reporters.profile import ProfileReporter, print_guide

PYSPY = "py-spy (--mode pyspy)"
MEMORY = "Memory (--mode memory)"


class Mode(StrEnum):
    cprofile = "cprofile"
    pyspy = "pyspy"
    memory = "memory"
    guide = "guide"


class Format(StrEnum):
    flamegraph = "flamegraph"
    speedscope = "speedscope"
    raw = "raw"


class Backend(StrEnum):
    tracemalloc = "tracemalloc"
    memray = "memray"


def profile(
    mode: Annotated[
        Mode,
        typer.Option(
            "--mode",
            "-m",
            metavar="MODE",
            help="cprofile: exact calls and times; pyspy: sampled, where the time goes; "
            "memory: allocations over the run; guide: which to choose and how to read them.",
            show_default=False,
        ),
    ],
    run_args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[-- RUN_OPTIONS...]",
            help="Options of [bold]botctl run[/] for the bot started here, after --, "
            "e.g. -- --rate 20 --users 10.",
            show_default=False,
        ),
    ] = None,
    duration: Annotated[
        float, typer.Option("--duration", "-d", min=0.1, help="Seconds to profile for.")
    ] = 10.0,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write; for memory, a prefix for .txt and .json. A missing folder is "
            "made. \\[default: MODE-DATE-TIME.EXT under profiles/]",
            show_default=False,
        ),
    ] = None,
    pid: Annotated[
        int | None,
        typer.Option(
            "--pid",
            "-p",
            help="Profile a running bot instead of starting one (cprofile: a `botctl run` "
            "toggled by SIGUSR1; pyspy: any Python process).",
            show_default=False,
        ),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", "-n", min=1, help="Functions or allocation sites to show.")
    ] = 15,
    fmt: Annotated[
        Format | None,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            help="Output of py-spy: flamegraph, speedscope or raw \\[default: flamegraph].",
            rich_help_panel=PYSPY,
            show_default=False,
        ),
    ] = None,
    sample_rate: Annotated[
        int | None,
        typer.Option(
            "--sample-rate",
            "-r",
            min=1,
            max=10000,
            help="Samples per second \\[default: 100; 1000 takes a core].",
            rich_help_panel=PYSPY,
            show_default=False,
        ),
    ] = None,
    old_rate: Annotated[
        int | None,
        typer.Option("--rate", min=1, max=10000, hidden=True, help="Old name of --sample-rate."),
    ] = None,
    gil: Annotated[
        bool | None,
        typer.Option(
            "--gil/--no-gil",
            help="Only samples holding the GIL, which hides the event loop's idle wait "
            "\\[default: --gil].",
            rich_help_panel=PYSPY,
            show_default=False,
        ),
    ] = None,
    idle: Annotated[
        bool,
        typer.Option("--idle", help="Keep idle threads' samples.", rich_help_panel=PYSPY),
    ] = False,
    nonblocking: Annotated[
        bool,
        typer.Option(
            "--nonblocking",
            help="Do not pause the bot to sample (cheaper, stacks may be torn).",
            rich_help_panel=PYSPY,
        ),
    ] = False,
    subprocesses: Annotated[
        bool,
        typer.Option(
            "--subprocesses",
            help="Also sample child processes (the sandbox).",
            rich_help_panel=PYSPY,
        ),
    ] = False,
    backend: Annotated[
        Backend | None,
        typer.Option(
            "--backend",
            metavar="BACKEND",
            help="tracemalloc (built in) or memray (when installed) \\[default: tracemalloc].",
            rich_help_panel=MEMORY,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Profile the bot: start it (options of [bold]botctl run[/] after --) or attach with --pid,
    profile it for --duration seconds, stop it in order and show what was written.

    [dim]botctl profile --mode cprofile --duration 5 -- --rate 20 --users 10[/]
    """
    if mode is Mode.guide:
        print_guide()
        return

    args = list(run_args or [])
    if old_rate is not None:
        if sample_rate is not None:
            raise BotctlError("--rate is the old name of --sample-rate: give one of them")
        err_console.print(
            "note: --rate is now --sample-rate (samples per second); --rate goes in a later "
            "release",
            style="yellow",
            highlight=False,
        )
        sample_rate = old_rate
    pyspy_given = [
        name
        for name, given in (
            ("--format", fmt is not None),
            ("--sample-rate", sample_rate is not None),
            ("--gil/--no-gil", gil is not None),
            ("--idle", idle),
            ("--nonblocking", nonblocking),
            ("--subprocesses", subprocesses),
        )
        if given
    ]
    if pyspy_given and mode is not Mode.pyspy:
        raise BotctlError(
            f"{', '.join(pyspy_given)} apply to --mode pyspy only "
            "(to set the bot's message rate, pass it after --: -- --rate 20)"
        )
    if backend is not None and mode is not Mode.memory:
        raise BotctlError("--backend applies to --mode memory only")
    if pid is not None:
        if mode is Mode.memory:
            raise BotctlError(
                "--mode memory cannot attach to a running bot; drop --pid and pass the bot's "
                "options after --"
            )
        if args:
            raise BotctlError(
                f"options after -- ({' '.join(args)}) are for a bot that botctl starts; "
                "drop them or drop --pid"
            )
    if backend is Backend.memray:
        require_memray()

    # The enums' values are exactly the Literals the logic is typed with.
    mode_name = cast(ModeName, mode.value)
    chosen_format: PySpyFormat = (fmt or Format.flamegraph).value
    request = ProfileRequest(
        mode=mode_name,
        duration=duration,
        output=output or default_output(mode_name, chosen_format),
        pid=pid,
        run_args=args,
        pyspy=PySpyOptions(
            format=chosen_format,
            rate=sample_rate or 100,
            gil=True if gil is None else gil,
            idle=idle,
            nonblocking=nonblocking,
            subprocesses=subprocesses,
        ),
        backend=(backend or Backend.tracemalloc).value,
        top=top,
    )
    if args:
        from botctl.commands.run import parse_args

        parse_args(args)
    check_target(request)
    for path in files_written(request):
        check_output(path)
    reporter = ProfileReporter()
    reporter.starting(request)
    # SIGTERM and SIGHUP (timeout, CI, a closed terminal) stop the bot in order as Ctrl-C does,
    # and keep what was profiled: the command then ends as after Ctrl-C, with exit code 0.
    with signals_interrupt():
        result = modes.run_profile(request)
    reporter.result(result)
