"""Rendering ``botctl run``: the banner, a countdown while it runs, the chat, the summary table."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from botctl.console import console, err_console
from botctl.metrics.events import read_files, select_runs
from botctl.metrics.summary import summarize_selection
from botctl.reporters.metrics import print_summary

if TYPE_CHECKING:  # the run's modules import discord: `botctl run --help` must not
    from botctl.run.processes import ProcessesReport
    from botctl.run.report import Banner, RunReport


def _ms(values: dict[str, Any] | None, key: str) -> str:
    if not values or values.get(key) is None:
        return "–"
    return f"{values[key]:.0f} ms"


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else (words or word + 's')}"


def llm_calls(report: RunReport) -> tuple[int, int]:
    """(upstream LLM calls, calls saved by dedup) of a run."""
    dedup = report.summary.get("cache_stats", {}).get("deduplication", {})
    if report.summary.get("dedup_enabled", True):
        return int(dedup.get("leaders", 0)), int(dedup.get("saved_calls", 0))
    counters = report.counters
    return int(counters.get("llm_upstream_answers", 0)) + int(counters.get("llm_errors", 0)), 0


class RunReporter:
    def __init__(self, *, chat: bool = False) -> None:
        self.chat = chat
        self._shown = 0

    def banner(self, banner: Banner) -> None:
        console.print("[bold]botctl run[/]")
        # Values are the user's (URLs, model and config names): printed, never read as markup.
        console.print(f"  Discord : {escape(banner.discord)}", highlight=False)
        console.print(f"  LLM     : {escape(banner.llm)}", highlight=False)
        for line in banner.extras:
            console.print(f"            {escape(line)}", highlight=False)
        if banner.llm_warning:
            console.print(f"  [yellow]warning: {escape(banner.llm_warning)}[/]", highlight=False)
        console.print(
            f"  metrics : {escape(str(banner.metrics_file))} (run {banner.run_id})", highlight=False
        )
        if banner.prometheus:
            console.print(f"  scrape  : {banner.prometheus} (Prometheus)", highlight=False)
        console.print(f"  pid     : {banner.pid} (event loop: {banner.loop})", highlight=False)
        stop = f"after {banner.duration:g} s or Ctrl-C" if banner.duration else "Ctrl-C or SIGTERM"
        console.print(f"  stops   : {stop}", highlight=False)

    @contextlib.contextmanager
    def live(self, duration: float | None) -> Iterator[None]:
        """A countdown bar on a terminal while a timed run goes on (silent when piped or chatting)."""
        if not duration or self.chat or not err_console.is_terminal:
            yield
            return
        progress = Progress(
            TextColumn("running"),
            BarColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        )
        progress.add_task("run", total=duration)
        with progress:
            task = progress.tasks[0]
            progress.start_task(task.id)
            # The bar advances by itself from the task's start time (rich refreshes it).
            progress.update(task.id, completed=0)
            yield

    def prompt(self) -> None:
        if console.is_terminal:
            console.print("[bold]you>[/] ", end="")

    def note(self, text: str) -> None:
        console.print(f"[dim]{escape(text)}[/]", highlight=False)

    def chat_reply(self, text: str, done: bool, number: int | None = None) -> None:
        """Print what is new in the reply as the bot streams it; a newline once it settles.

        ``number`` is the answer's number, for ``> N text`` replies."""
        if self._shown == 0 and text:
            tag = f" [{number}]" if number is not None else ""
            console.print(f"[bold cyan]bot{escape(tag)}>[/] ", end="")
        if len(text) > self._shown:
            console.print(text[self._shown :], end="", highlight=False, markup=False)
            self._shown = len(text)
        if done:
            console.print()
            self._shown = 0

    def summary(self, report: RunReport) -> None:
        counters = report.counters
        summary = report.summary
        batch = summary.get("batch_logging", {})
        history = summary.get("cache_stats", {}).get("history_cache", {})
        latency = counters.get("reply_latency_ms")
        calls, saved = llm_calls(report)
        by_status = counters.get("replies_by_status", {})
        errors = by_status.get("error", 0)
        # Replies given: those cancelled at stop are on their own row, not counted as given.
        given = counters.get("replies", 0) - by_status.get("cancelled", 0)
        table = Table(
            title=f"Summary of run {report.run_id} ({report.elapsed_s:.1f} s)", title_justify="left"
        )
        table.add_column("figure")
        table.add_column("value", justify="right")
        rate = counters.get("messages", 0) / report.elapsed_s if report.elapsed_s else 0.0
        rows = [
            ("messages", f"{counters.get('messages', 0)}  ({rate:.1f}/s)"),
            ("replies", f"{given}  ({plural(errors, 'error')})"),
            ("LLM calls", str(calls)),
            ("calls saved by dedup", str(saved)),
            ("history hit rate", f"{history.get('hit_rate', 0.0):.1f} %"),
            (
                "metrics events written",
                f"{batch.get('events_written', 0)} in "
                f"{plural(int(batch.get('flushes', 0)), 'flush', 'flushes')}",
            ),
            ("reply latency p50", _ms(latency, "p50")),
            ("reply latency p95", _ms(latency, "p95")),
            ("reply latency p99", _ms(latency, "p99")),
        ]
        if report.cancelled_replies:
            rows.append(("replies cancelled at stop", str(report.cancelled_replies)))
        if report.sandbox:
            rows.append(("sandbox messages sent", str(report.sandbox.get("messages_sent", 0))))
            if report.sandbox.get("rate_limits"):
                rows.append(("Discord 429s met", str(report.sandbox.get("rate_limited_total", 0))))
        if report.llm_server:
            rows.append(
                ("sandbox LLM calls received", str(report.llm_server.get("calls_total", 0)))
            )
        for name, value in rows:
            table.add_row(name, value)
        console.print(table)

    def processes_summary(self, report: ProcessesReport) -> None:
        """The shard processes' figures, read from their metrics files (latest run of each)."""
        files = [path for path in report.metrics_files if path.exists()]
        if not files:
            return
        reading = read_files(files)
        selection = select_runs(reading)
        result = summarize_selection(
            selection, files=[str(p) for p in reading.files], skipped=reading.skipped
        )
        console.print(
            f"[bold]{len(report.metrics_files)} shard processes[/] ran {report.elapsed_s:.1f} s; "
            "their metrics files together:",
            highlight=False,
        )
        print_summary(console, result)
