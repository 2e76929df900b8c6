"""``botctl metrics``: the bot's JSON Lines metrics files — ``tail`` (``-f``), ``top``, ``summary``
(``--html``), ``tune``.

Each command reads the latest run of each file by default (``--run ID`` one run, ``--all`` every
run). The reading is in ``botctl.metrics``, the rendering in ``botctl.reporters``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from botctl.console import console, err_console, print_json
from botctl.errors import BotctlError
from botctl.metrics.events import (
    KNOWN_TYPES,
    Reading,
    Record,
    Selection,
    check_readable,
    expand_paths,
    merge,
    parse_line,
    read_files,
    select_runs,
)
from botctl.metrics.feed import Feed
from botctl.metrics.follow import Follower, follow_many
from botctl.metrics.summary import summarize_selection
from botctl.metrics.top import TopState
from botctl.metrics.tune import Limits, tune
from botctl.reporters import metrics as report
from botctl.reporters.metrics_top import top_renderable

app = typer.Typer(
    name="metrics",
    help="Read the bot's metrics files (JSON Lines): follow them live, watch a dashboard, "
    "summarise a run (or a web page of it), tune its batching.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    no_args_is_help=True,
)

FilesArgument = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Metrics files or a quoted glob ('profiles/*.jsonl'); several are merged by time. "
        "Default: [bold]$BOT_METRICS_FILE[/], else profiles/metrics.jsonl.",
        show_default=False,
        metavar="FILE",
    ),
]
RunOption = Annotated[
    str | None,
    typer.Option(
        "--run",
        metavar="ID",
        help="Only the run with this id (shown in the banner of `botctl run`). Default: the "
        "latest run of each file.",
        show_default=False,
    ),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every run in the files, not the latest.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")]


def _check_runs(run: str | None, everything: bool) -> None:
    if run is not None and everything:
        raise typer.BadParameter(
            "--run picks one run, --all every run: use one", param_hint="--run"
        )


def _selected(
    files: list[Path] | None, run: str | None, everything: bool
) -> tuple[Reading, Selection]:
    _check_runs(run, everything)
    paths = expand_paths(files or [])
    for path in paths:
        check_readable(path)
    reading = read_files(paths)
    return reading, select_runs(reading, run, everything)


def _check_types(types: list[str] | None) -> frozenset[str]:
    unknown = sorted(set(types or ()) - set(KNOWN_TYPES))
    if unknown:
        raise BotctlError(
            f"unknown --type {', '.join(unknown)}; the types are {', '.join(KNOWN_TYPES)}"
        )
    return frozenset(types or ())


@app.command()
def tail(
    files: FilesArgument = None,
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
            metavar="TYPE",
            help=f"Only events of this type (repeat for several): {', '.join(KNOWN_TYPES)}.",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print the raw JSON lines as in the file, and nothing else."),
    ] = False,
    run: RunOption = None,
    everything: AllOption = False,
) -> None:
    """Show the last metrics events as readable lines; [bold]-f[/] keeps following the files."""
    wanted = _check_types(types)

    def matches(record: Record) -> bool:
        return not wanted or record.event["type"] in wanted

    def emit(record: Record) -> None:
        if json_output:
            report.print_raw_line(record.raw)
        else:
            report.print_event(console, record.event)

    try:
        if follow:
            _follow(files or [], lines, run, everything, matches, emit)
            return
        reading, selection = _selected(files, run, everything)
        matching = [record for record in selection.records if matches(record)]
        for record in deque(matching, maxlen=lines) if lines else ():
            emit(record)
        report.print_reading_notes(err_console, selection, skipped=reading.skipped)
    except BrokenPipeError:
        _silence_stdout()


def _follow(
    files: list[Path],
    lines: int,
    run: str | None,
    everything: bool,
    matches: Callable[[Record], bool],
    emit: Callable[[Record], None],
) -> None:
    paths = expand_paths(files)
    for path in paths:
        if path.is_dir():
            check_readable(path)
    followers = [Follower(path) for path in paths]
    skipped = 0
    try:
        per_file: list[list[Record]] = []
        for index, follower in enumerate(followers):
            if not follower.path.exists():
                # stderr: with --json, stdout carries only the files' lines.
                err_console.print(f"waiting for {follower.path} …", style="dim", highlight=False)
            per_file.append([])
            for raw in follower.poll():
                event = parse_line(raw)
                if event is None:
                    skipped += 1
                else:
                    per_file[-1].append(Record(event, raw, index))
        reading = Reading(paths, merge(per_file), 0)
        # What is there already: the last lines of the run asked for (none yet is not an error).
        if reading.records and (run is None or any(r.run == run for r in reading.records)):
            selection = select_runs(reading, run, everything)
            matching = [record for record in selection.records if matches(record)]
            for record in matching[-lines:] if lines else ():
                emit(record)
        # New lines belong to the run being written now: shown unless --run names another.
        for index, raw in follow_many(followers):
            event = parse_line(raw)
            if event is None:
                skipped += 1
                continue
            record = Record(event, raw, index)
            if (run is None or record.run == run) and matches(record):
                emit(record)
    except KeyboardInterrupt:
        return
    finally:
        for follower in followers:
            follower.close()
        report.print_skipped(err_console, skipped)


def _silence_stdout() -> None:
    # The reader (`| head`) went away: point stdout at /dev/null so the interpreter's final
    # flush does not print a second BrokenPipeError.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
    except OSError:
        pass


@app.command()
def top(
    files: FilesArgument = None,
    run: RunOption = None,
    everything: AllOption = False,
    once: Annotated[
        bool, typer.Option("--once", help="Print one frame and exit (what a pipe always gets).")
    ] = False,
    refresh: Annotated[
        float, typer.Option("--refresh", min=0.2, max=60.0, help="Seconds between frames.")
    ] = 1.0,
) -> None:
    """A live dashboard of the metrics files; Ctrl-C quits.

    Rates, reply and LLM latency p50/p95/p99 over the last minute, dedup savings, LLM calls per
    model, errors, and a sparkline of replies per second, refreshed every second. It waits for the
    files, survives truncation and rotation, and follows a new run when one starts (the latest run
    of each file; [bold]--run[/] one run, [bold]--all[/] every run). Piped, it prints one frame."""
    if once or not console.is_terminal:
        reading, selection = _selected(files, run, everything)
        state = TopState(everything=True)  # the runs are chosen already
        for record in selection.records:
            state.add(record)
        frame = state.frame(
            time.time(), files=[str(p) for p in reading.files], skipped=reading.skipped
        )
        console.print(top_renderable(frame, width=console.width, hint=False))
        return
    _check_runs(run, everything)
    paths = expand_paths(files or [])
    for path in paths:
        if path.is_dir():
            check_readable(path)
    try:
        _top_live(paths, TopState(run=run, everything=everything), run, everything, refresh)
    except KeyboardInterrupt:
        return  # Ctrl-C: the screen is restored by Live's exit, and that is a normal end


def _top_live(
    paths: list[Path], state: TopState, run: str | None, everything: bool, refresh: float
) -> None:
    from rich.live import Live  # only the live view needs it

    names = [str(p) for p in paths]
    with Feed(paths) as feed:
        for record in feed.first(run, everything):
            state.add(record)
        with Live(console=console, screen=True, auto_refresh=False) as live:
            while True:
                started = time.monotonic()
                for record in feed.poll():
                    state.add(record)
                missing = [str(p) for p in feed.missing()]
                frame = state.frame(time.time(), files=names, missing=missing, skipped=feed.skipped)
                live.update(top_renderable(frame, width=console.width), refresh=True)
                time.sleep(max(0.05, refresh - (time.monotonic() - started)))


@app.command()
def summary(
    files: FilesArgument = None,
    json_output: JsonOption = False,
    run: RunOption = None,
    everything: AllOption = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="OUT.html",
            help="Also write one self-contained web page (no network needed to view it) with "
            "the summary and its plots: reply latency histogram, replies over time.",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Counts per event type (and per shard), LLM and reply latency p50/p95/p99, dedup ratio,
    history hit rate and flushes of the latest run.

    [bold]--html OUT.html[/] also writes them as one web page that needs no network, with the
    reply latency histogram and replies over time drawn in it."""
    reading, selection = _selected(files, run, everything)
    if not reading.records and reading.skipped:
        # Lines, and not one event among them: not a metrics file (an empty one is a run that
        # wrote nothing yet, summarised as zeros).
        raise BotctlError(
            f"no metrics events in {', '.join(str(p) for p in reading.files)} "
            f"({reading.skipped:,} line{'' if reading.skipped == 1 else 's'} that are not events); "
            "pass the file `botctl run` writes (--metrics-file, default profiles/metrics.jsonl)"
        )
    result = summarize_selection(
        selection, files=[str(p) for p in reading.files], skipped=reading.skipped
    )
    if html is not None:
        from botctl.metrics.series import figures
        from botctl.reporters.metrics_html import summary_html

        _write_atomically(html, summary_html(result, figures(selection.records)))
    if json_output:
        print_json(result.to_json())
    else:
        report.print_summary(console, result)
    if html is not None:
        err_console.print(f"wrote {html}", style="dim", highlight=False, soft_wrap=True)


def _write_atomically(path: Path, text: str) -> None:
    """Through a temporary file beside ``path`` and a rename: a reader never sees half a page.
    What the OS refuses is a one-line :class:`BotctlError`."""
    import tempfile

    where = path.parent if str(path.parent) else Path(".")
    tmp: str | None = None
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "it is a directory")
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=where, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as f:
            tmp = f.name
            f.write(text)
        os.chmod(tmp, 0o644)  # a page to share, not mkstemp's 0600
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise BotctlError(f"cannot write {path}: {reason}; choose another --html path") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@app.command("tune")
def tune_command(
    files: FilesArgument = None,
    max_loss_seconds: Annotated[
        float,
        typer.Option(
            "--max-loss-seconds",
            min=0.1,
            help="Seconds of events a crash (SIGKILL) may lose at p95 traffic.",
        ),
    ] = 10.0,
    max_writes_per_minute: Annotated[
        float,
        typer.Option("--max-writes-per-minute", min=0.1, help="Metrics writes a minute at most."),
    ] = 60.0,
    json_output: JsonOption = False,
    run: RunOption = None,
    everything: AllOption = False,
) -> None:
    """Recommend [bold]batch_size[/] and [bold]batch_interval[/] from the traffic of the latest
    run: its rate per minute, the current settings' figures beside the recommended ones, and the
    TOML lines to paste."""
    if not (math.isfinite(max_loss_seconds) and math.isfinite(max_writes_per_minute)):
        raise BotctlError("--max-loss-seconds and --max-writes-per-minute must be finite numbers")
    reading, selection = _selected(files, run, everything)
    limits = Limits(max_loss_seconds, max_writes_per_minute)
    result = tune(selection, limits, files=[str(p) for p in reading.files], skipped=reading.skipped)
    if json_output:
        print_json(result.to_json())
    else:
        report.print_tuning(console, result)
