"""``botctl metrics``: the bot's JSON Lines metrics file — ``tail`` (``-f``) and ``summary``.

The reading is in ``botctl.metrics``, the rendering in ``botctl.reporters.metrics``.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Annotated

import typer

from botctl.console import console, err_console
from botctl.errors import BotctlError
from botctl.metrics.events import Event, default_metrics_path, iter_lines, parse_line
from botctl.metrics.follow import Follower
from botctl.metrics.summary import summarize_file
from botctl.reporters.metrics import print_event, print_raw_line, print_summary, print_summary_json

app = typer.Typer(
    name="metrics",
    help="Read the bot's metrics file (JSON Lines): follow it live or summarise it.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    no_args_is_help=True,
)

FileArgument = Annotated[
    Path | None,
    typer.Argument(
        help="Metrics file. Default: [bold]$BOT_METRICS_FILE[/], else profiles/metrics.jsonl.",
        show_default=False,
        dir_okay=False,
        metavar="FILE",
    ),
]


def _resolve(file: Path | None) -> Path:
    return file if file is not None else default_metrics_path()


def _missing(path: Path) -> Exception:
    return BotctlError(f"no metrics file at {path}; run `botctl run` first or pass a FILE")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise _missing(path)
    if path.is_dir():
        raise BotctlError(f"{path} is a directory; pass the metrics .jsonl FILE inside it")
    if not os.access(path, os.R_OK):
        raise BotctlError(f"cannot read {path}: permission denied; check the file's permissions")


@app.command()
def tail(
    file: FileArgument = None,
    lines: Annotated[
        int,
        typer.Option("--lines", "-n", min=0, help="Show the last N events first (0: none)."),
    ] = 10,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep reading as batches land; waits for the file, survives truncation and "
            "rotation. Ctrl-C stops.",
        ),
    ] = False,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            "-t",
            help="Only events of this type (repeat for several): message, llm_call, reply, "
            "command, error, stats.",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print the raw JSON lines as in the file, and nothing else."),
    ] = False,
) -> None:
    """Show the last metrics events as readable lines; [bold]-f[/] keeps following the file."""
    path = _resolve(file)
    wanted = frozenset(types or ())

    def matching(raw_lines: list[bytes] | deque[bytes]) -> list[tuple[bytes, Event]]:
        selected = []
        for raw in raw_lines:
            event = parse_line(raw)
            if event is not None and (not wanted or event["type"] in wanted):
                selected.append((raw, event))
        return selected

    def emit(raw: bytes, event: Event) -> None:
        if json_output:
            print_raw_line(raw)
        else:
            print_event(console, event)

    def emit_last(raw_lines: list[bytes]) -> None:
        if lines == 0:
            return
        for raw, event in deque(matching(raw_lines), maxlen=lines):
            emit(raw, event)

    try:
        if not follow:
            _check_readable(path)
            emit_last(list(iter_lines(path)))
            return
        if path.is_dir():
            _check_readable(path)
        with Follower(path) as follower:
            if not path.exists():
                # stderr: with --json, stdout carries only the file's lines.
                err_console.print(f"waiting for {path} …", style="dim", highlight=False)
            emit_last(follower.poll())
            for raw in follower.follow():
                for line, event in matching([raw]):
                    emit(line, event)
    except KeyboardInterrupt:
        return
    except BrokenPipeError:
        _silence_stdout()


def _silence_stdout() -> None:
    # The reader (`| head`) went away: point stdout at /dev/null so the interpreter's final
    # flush does not print a second BrokenPipeError.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
    except OSError:
        pass


@app.command()
def summary(
    file: FileArgument = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON object (counts per type, latencies, ratios) only."
        ),
    ] = False,
) -> None:
    """Counts per event type, LLM and reply latency p50/p95/p99, dedup ratio, history hit rate."""
    path = _resolve(file)
    _check_readable(path)
    try:
        result = summarize_file(path)
    except FileNotFoundError:
        raise _missing(path) from None
    if json_output:
        print_summary_json(result)
    else:
        print_summary(console, result)
