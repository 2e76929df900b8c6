"""Rendering of ``botctl profile``: what was written, what it shows, how to look at it; the guide.

Results go to stdout; the start line, progress and notes to stderr.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import re
import shlex
from typing import Any

from rich import box
from rich.markdown import Markdown
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from botctl.analyze.stats import ProfileError, load_profile, profile_totals, top_functions
from botctl.console import console, err_console, plural
from botctl.errors import BotctlError
from botctl.profile.request import ProfileRequest, ProfileResult, memory_prefix
from botctl.profile.shared import format_size
from botctl.reporters.analyze import fit_path, remaining_width, short_path, top_table

_WHAT = {
    "cprofile": "cProfile",
    "pyspy": "py-spy",
    "memory": "tracemalloc",
}


def guide_text() -> str:
    try:
        return (
            importlib.resources.files("botctl.profile")
            .joinpath("guide.md")
            .read_text(encoding="utf-8")
        )
    except OSError:
        raise BotctlError(
            "the profiling guide (botctl/profile/guide.md) is missing from this installation; "
            "reinstall botctl"
        ) from None


def print_guide() -> None:
    console.print(Markdown(guide_text(), code_theme="ansi_dark", hyperlinks=False))


def bot_code_regex() -> str | None:
    """A regex matching the files of the ``bot`` package (found without importing it)."""
    spec = importlib.util.find_spec("bot")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.abspath(next(iter(spec.submodule_search_locations)))
    return "^" + re.escape(folder + os.sep)


def _quote(path: os.PathLike[str] | str) -> str:
    return shlex.quote(os.fspath(path))


class ProfileReporter:
    def starting(self, request: ProfileRequest) -> None:
        what = _WHAT[request.mode]
        if request.mode == "memory" and request.backend == "memray":
            what = "memray"
        target = f"pid {request.pid}" if request.pid is not None else "the bot"
        if request.pid is None and request.run_args:
            target += f" (botctl run {shlex.join(request.run_args)})"
        where = request.output
        if request.mode == "memory":
            where = memory_prefix(request.output).with_name(
                memory_prefix(request.output).name + ".*"
            )
        err_console.print(
            f"profiling {target} with {what} for {request.duration:g} s → {where}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )

    def result(self, result: ProfileResult) -> None:
        what = _WHAT[result.mode] if result.backend != "memray" else "memray"
        console.print(
            Text.assemble(
                ("botctl profile", "bold"),
                f" --mode {result.mode} ({what}): {result.target}, "
                f"{result.profiled_s:.1f} s profiled",
            )
        )
        self._written(result)
        self._bot(result)
        if result.mode == "cprofile":
            self._cprofile(result)
        elif result.mode == "pyspy":
            self._pyspy(result)
        elif result.mode == "memory":
            self._memory(result)
        self._next_steps(result)
        for note in result.notes:
            err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)

    # -- sections

    def _written(self, result: ProfileResult) -> None:
        table = Table(box=box.SIMPLE_HEAD, title="Written", title_justify="left")
        rows = []
        for out in result.outputs:
            try:
                size = format_size(out.path.stat().st_size)
            except OSError:
                size = "missing"
            rows.append((str(out.path), out.kind, size))
        # The paths are printed whole under "Look at it"; here they give way to the file name.
        room = remaining_width(
            console.width, [["what", *(r[1] for r in rows)], ["size", *(r[2] for r in rows)]]
        )
        table.add_column("file", overflow="fold")
        table.add_column("what", no_wrap=True)
        table.add_column("size", justify="right", no_wrap=True)
        for path, kind, size in rows:
            table.add_row(Text(fit_path(path, room), style="cyan"), kind, size)
        console.print(table)

    def _bot(self, result: ProfileResult) -> None:
        throughput = result.throughput
        lines: list[str] = []
        if throughput is not None:
            took = (
                f"the bot took {plural(throughput.messages, 'message')} and answered "
                f"{throughput.replies:,} of them"
            )
            if throughput.replies_in_window is None:
                rate = f"over its {throughput.window_s:.1f} s (start-up included)"
            else:
                rate = (
                    f"{plural(throughput.replies_in_window, 'reply', 'replies')} while the "
                    f"traffic flowed ({throughput.window_s:.1f} s from the first message to the "
                    "last)"
                )
            lines.append(
                f"{took}; {rate}: {throughput.replies_per_s:.1f} replies/s while profiled "
                f"(from {throughput.source}); compare with a plain `botctl run` of the same "
                "options to see the profiler's cost"
            )
        elif result.bot is not None:
            lines.append("the bot's throughput is unknown (no summary, no metrics of this run)")
        if result.peak_rss_kib:
            lines.append(f"peak RSS of the bot: {result.peak_rss_kib / 1024:.1f} MiB")
        for line in lines:
            console.print(line, highlight=False, soft_wrap=True)
        if result.bot is not None and result.bot.summary_text:
            console.print(Rule("the bot's own summary", align="left", style="dim"))
            console.print(result.bot.summary_text, markup=False, highlight=False)

    def _cprofile(self, result: ProfileResult) -> None:
        path = result.primary
        try:
            stats = load_profile(path)
        except ProfileError as exc:
            raise BotctlError(str(exc)) from None
        totals = profile_totals(stats)
        shown = str(path)
        console.print(
            top_table(
                top_functions(stats, "tottime", result.top),
                path=shown,
                totals=totals,
                sort="tottime",
                width=console.width,
            )
        )
        regex = bot_code_regex()
        if regex is not None:
            table = top_table(
                top_functions(stats, "cumulative", result.top, filter_regex=regex),
                path=shown,
                totals=totals,
                sort="cumulative",
                width=console.width,
            )
            table.title = "The bot's own functions (bot/), by cumulative time"
            console.print(table)

    def _pyspy(self, result: ProfileResult) -> None:
        info = result.pyspy
        if info is None:
            return
        figures = []
        if info.samples is not None:
            figures.append(f"{plural(info.samples, 'sample')}, {plural(info.errors or 0, 'error')}")
        figures.append(shlex.join(["py-spy", *info.command[1:]]))
        console.print("; ".join(figures), highlight=False, soft_wrap=True)

    def _memory(self, result: ProfileResult) -> None:
        report = result.memory
        if report is None:
            return
        if report.get("kind") == "memray":
            self._memray(report, result.top)
            return
        totals, traced = report["totals"], report["traced"]
        console.print(
            f"growth over {report['ended_at'] - report['baseline_at']:.1f} s from "
            f"{report['baseline']}: {format_size(totals['size_diff'], signed=True)} in "
            f"{totals['count_diff']:+,} block{'' if abs(totals['count_diff']) == 1 else 's'}; traced peak {format_size(traced['peak'])} "
            f"(after start-up {format_size(traced['peak_after_startup'])}); "
            f"{report['frames']} frames per traceback",
            highlight=False,
            soft_wrap=True,
        )
        table = Table(
            box=box.SIMPLE_HEAD,
            title="Top allocation sites by growth (full tracebacks in the .txt)",
            title_justify="left",
        )
        table.add_column("#", justify="right")
        table.add_column("Δ size", justify="right", no_wrap=True)
        table.add_column("Δ blocks", justify="right", no_wrap=True)
        table.add_column("now", justify="right", no_wrap=True)
        table.add_column("allocated at  (from the bot's code)", overflow="fold", ratio=1)
        regex = bot_code_regex()
        for rank, site in enumerate(report["top"][: result.top], 1):
            table.add_row(
                str(rank),
                format_size(site["size_diff"], signed=True),
                f"{site['count_diff']:+,}",
                format_size(site["size"]),
                _site_text(site["traceback"], regex),
            )
        console.print(table)

    def _memray(self, report: dict[str, Any], top: int) -> None:
        console.print(
            f"peak heap {format_size(report['peak_memory'])}; "
            f"{plural(report['total_allocations'], 'allocation')}",
            highlight=False,
        )
        table = Table(
            box=box.SIMPLE_HEAD,
            title="Largest allocation sites at the peak (full stacks in the .txt)",
            title_justify="left",
        )
        table.add_column("#", justify="right")
        table.add_column("size", justify="right", no_wrap=True)
        table.add_column("allocations", justify="right", no_wrap=True)
        table.add_column("allocated at", overflow="fold", ratio=1)
        for rank, site in enumerate(report["at_peak"][:top], 1):
            frame = site["traceback"][0] if site["traceback"] else None
            where = (
                f"{frame['function']} {short_path(frame['file'])}:{frame['line']}" if frame else "?"
            )
            table.add_row(str(rank), format_size(site["size"]), f"{site['allocations']:,}", where)
        console.print(table)

    def _next_steps(self, result: ProfileResult) -> None:
        path = _quote(result.primary)
        steps: list[str] = []
        if result.mode == "cprofile":
            steps = [
                f"botctl analyze {path}",
                f"botctl analyze {path} --filter bot/ --sort tottime",
                f"botctl analyze {path} --web    (snakeviz on 127.0.0.1)",
            ]
        elif result.mode == "pyspy":
            if result.format == "flamegraph":
                steps = [f"open {path} in a browser (self-contained SVG; click a frame to zoom)"]
            elif result.format == "speedscope":
                steps = [
                    "open https://www.speedscope.app and load the file (it is read by the "
                    f"browser, not uploaded): {path}"
                ]
            else:
                steps = [
                    f"sort -t' ' -k2 -nr {path} | head    (collapsed stacks with sample counts)",
                    "or load it into https://www.speedscope.app",
                ]
        elif result.mode == "memory":
            steps = [f"less {_quote(result.outputs[0].path)}"]
            if result.backend == "memray":
                capture = _quote(result.outputs[-1].path)
                steps += [
                    f"python -m memray summary {capture}",
                    f"python -m memray tree {capture}",
                ]
        steps.append("botctl profile --mode guide    (how to choose and read a profile)")
        console.print(Text("Look at it:", style="bold"))
        for step in steps:
            console.print(f"  {step}", highlight=False, markup=False, soft_wrap=True)


def _site_text(traceback: list[dict[str, Any]], bot_regex: str | None) -> Text:
    if not traceback:
        return Text("?")
    first = traceback[0]
    text = Text.assemble(
        (f"{short_path(first['file'])}:{first['line']}", "bold"),
        ("  " + first["code"], "dim") if first.get("code") else "",
    )
    if bot_regex is not None and not re.search(bot_regex, first["file"]):
        ours = next((f for f in traceback if re.search(bot_regex, f["file"])), None)
        if ours is not None:
            text.append(f"\n  (from {short_path(ours['file'])}:{ours['line']})", style="cyan")
    return text
