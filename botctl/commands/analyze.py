"""``botctl analyze FILE.prof``: top functions of a cProfile profile, a diff against a baseline, or
the profile served with snakeviz.

The pstats logic is in ``botctl.analyze``, the rendering in ``botctl.reporters.analyze``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from botctl.analyze.stats import (
    DEFAULT_FOLDER,
    ProfileError,
    as_sort_key,
    diff_profiles,
    latest_profile,
    load_profile,
    profile_totals,
    top_functions,
)
from botctl.analyze.web import ServeError, SnakevizServer
from botctl.console import console, err_console, print_json
from botctl.errors import BotctlError
from botctl.interrupts import signals_interrupt
from botctl.reporters import analyze as report


class Sort(StrEnum):
    cumulative = "cumulative"
    tottime = "tottime"
    ncalls = "ncalls"


def analyze(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="A pstats profile (.prof), e.g. from [bold]botctl profile --mode cprofile[/].",
            show_default=False,
            metavar="FILE.prof",
        ),
    ] = None,
    latest: Annotated[
        bool,
        typer.Option(
            "--latest",
            help="The newest profiles/cprofile-*.prof (what `botctl profile --mode cprofile` "
            "wrote last), instead of FILE.",
        ),
    ] = False,
    sort: Annotated[
        Sort,
        typer.Option("--sort", "-s", help="Order by cumulative time, own time or call count."),
    ] = Sort.cumulative,
    limit: Annotated[
        int, typer.Option("--limit", "-l", "-n", min=0, help="Show at most N rows (0: all).")
    ] = 25,
    filter_regex: Annotated[
        str | None,
        typer.Option(
            "--filter",
            "-k",
            metavar="REGEX",
            help="Only functions whose file or name matches REGEX (re.search), e.g. 'bot/'.",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object only (rows with full paths).")
    ] = False,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            "-b",
            metavar="OLD.prof",
            help="Show the difference per file and function against this older profile.",
            show_default=False,
        ),
    ] = None,
    web: Annotated[
        bool,
        typer.Option(
            "--web", help="Serve the profile with snakeviz on 127.0.0.1 and print its address."
        ),
    ] = False,
    port: Annotated[
        int,
        typer.Option("--port", "-p", min=0, max=65535, help="Port for --web (0: a free one)."),
    ] = 0,
) -> None:
    """Show the top functions of a cProfile profile, or its difference from a baseline.

    [dim]botctl analyze --latest --filter bot/ --sort tottime[/]
    """
    if latest == (file is not None):
        raise typer.BadParameter(
            "give FILE.prof or --latest (one of them)", param_hint="FILE.prof / --latest"
        )
    if file is None:
        file = latest_profile(DEFAULT_FOLDER)
    if web and (json_output or baseline is not None):
        raise typer.BadParameter(
            "--web serves one profile; use it without --json and --baseline", param_hint="--web"
        )
    try:
        regex = re.compile(filter_regex) if filter_regex is not None else None
    except re.error as exc:
        raise BotctlError(
            f"--filter {filter_regex!r} is not a valid regular expression ({exc})"
        ) from None

    try:
        stats = load_profile(file)
        old = load_profile(baseline) if baseline is not None else None
    except ProfileError as exc:
        raise BotctlError(f"{exc}; pass a .prof file written by cProfile") from None

    if web:
        _serve(file, port)
        return

    sort_key = as_sort_key(sort.value)
    path, old_path = str(file), str(baseline)
    if old is not None and baseline is not None:
        diff = diff_profiles(stats, old, sort=sort_key, limit=limit, filter_regex=regex)
        if json_output:
            print_json(report.diff_json(diff, path=path, baseline=old_path, sort=sort_key))
        else:
            report.print_diff(console, diff, path=path, baseline=old_path, sort=sort_key)
        return

    rows = top_functions(stats, sort=sort_key, limit=limit, filter_regex=regex)
    totals = profile_totals(stats)
    if json_output:
        print_json(report.top_json(rows, path=path, totals=totals, sort=sort_key))
    else:
        report.print_top(console, rows, path=path, totals=totals, sort=sort_key)


def _serve(file: Path, port: int) -> None:
    # SIGTERM takes the Ctrl-C path so that snakeviz, in its own session, is not left behind.
    try:
        with signals_interrupt(), SnakevizServer(file, port=port) as server:
            try:
                url = server.start()
            except ServeError as exc:
                raise BotctlError(f"{exc}; check that snakeviz is installed") from None
            if port and server.port != port:
                err_console.print(f"port {port} is taken; snakeviz chose {server.port}")
            report.serving_message(console, path=str(file), url=url)
            status = server.wait()
            raise BotctlError(f"snakeviz stopped by itself (exit status {status})")
    except KeyboardInterrupt:
        return
