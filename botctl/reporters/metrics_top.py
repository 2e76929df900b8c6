"""Rendering of a ``botctl metrics top`` frame (:class:`~botctl.metrics.top.TopFrame`) with rich.

Values that come from the files (model names, error sites, run ids) are rendered as
:class:`rich.text.Text`, never parsed as console markup.
"""

from __future__ import annotations

import math
from datetime import datetime

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from botctl.console import plural
from botctl.metrics.summary import Percentiles
from botctl.metrics.top import TopFrame

_BLOCKS = "▁▂▃▄▅▆▇█"


def spark(values: list[int]) -> str:
    """Counts as block characters scaled to the largest; a zero is a blank, any event shows."""
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    return "".join(
        " " if v <= 0 else _BLOCKS[min(7, max(0, math.ceil(v * 8 / top) - 1))] for v in values
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _rate(value: float) -> str:
    return f"{value:,.2f}/s" if value < 100 else f"{value:,.0f}/s"


def _pct(part: int, whole: int) -> str:
    return "-" if not whole else f"{part * 100.0 / whole:.1f} %"


def _ago(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def _header(frame: TopFrame) -> Text:
    files = ", ".join(frame.files) or "-"
    runs = ", ".join(run or "(no run id)" for run in frame.runs)
    line = Text.assemble(("botctl metrics top ", "bold"), (files, "cyan"))
    if runs:
        line.append(f"  run {runs}" if len(frame.runs) == 1 else f"  runs {runs}")
    line.append("\n")
    if frame.missing:
        line.append(f"waiting for {', '.join(frame.missing)} …", style="yellow")
        if not frame.waiting:
            line.append("\n")
    if frame.waiting:
        if not frame.missing:
            line.append("waiting for events …", style="yellow")
    elif frame.live:
        lag = frame.lag_s or 0.0
        line.append("live", style="bold green")
        line.append(f" · newest event {_ago(lag)} ago · {_clock(frame.at)}")
    else:
        line.append("idle", style="bold yellow")
        line.append(
            f" · no event since {_clock(frame.at)}: figures are the last "
            f"{frame.window_s:.0f} s before it"
        )
    if frame.skipped:
        line.append(f" · {plural(frame.skipped, 'line')} skipped (not events)", style="dim")
    return line


def _rates(frame: TopFrame) -> Text:
    window = f"last {frame.window_s:.0f} s"
    line = Text.assemble(
        (f"Rates ({window})  ", "bold"),
        "messages ",
        (_rate(frame.messages_per_s), "cyan"),
        "   replies ",
        (_rate(frame.replies_per_s), "green"),
        "   LLM calls ",
        (_rate(frame.llm_calls_per_s), "magenta"),
    )
    if frame.replies_by_status:
        statuses = " · ".join(f"{status} {n:,}" for status, n in frame.replies_by_status.items())
        line.append(f"   replies: {statuses}", style="dim")
    return line


def _latency(frame: TopFrame) -> Table:
    table = Table(
        title=f"Latency, ms (last {frame.window_s:.0f} s)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1),
    )
    table.add_column("")
    for column in ("p50", "p95", "p99", "n"):
        table.add_column(column, justify="right")
    rows: tuple[tuple[str, Percentiles], ...] = (
        ("reply", frame.reply_latency_ms),
        ("LLM call", frame.llm_latency_ms),
        ("first token", frame.ttft_ms),
    )
    for name, p in rows:
        table.add_row(name, _ms(p.p50), _ms(p.p95), _ms(p.p99), f"{p.count:,}")
    return table


def _mechanisms(frame: TopFrame) -> Text:
    line = Text.assemble(
        ("Dedup  ", "bold"),
        f"last {frame.window_s:.0f} s: {frame.llm_saved:,} of {frame.llm_requests:,} LLM "
        "requests saved ",
        (f"({_pct(frame.llm_saved, frame.llm_requests)})", "bold"),
        f"   run: {frame.llm_saved_total:,} of {frame.llm_requests_total:,} "
        f"({_pct(frame.llm_saved_total, frame.llm_requests_total)})",
    )
    extras = []
    if frame.history_hit_rate is not None:
        extras.append(f"history hit rate {frame.history_hit_rate:.1f} %")
    if frame.buffered_events is not None:
        extras.append(f"metrics buffer {plural(frame.buffered_events, 'event')}")
    if extras:
        line.append("\n")
        line.append(" · ".join(extras) + " (last stats snapshot)", style="dim")
    return line


def _sparkline(frame: TopFrame, width: int) -> Text:
    values = frame.replies_per_second[-max(10, width - 2) :]
    peak = max(values, default=0)
    title = Text.assemble(
        (f"Replies per second, last {len(values)} s", "bold"), f"  (peak {peak:,}/s)\n"
    )
    title.append(spark(values), style="green")
    return title


def _models(frame: TopFrame) -> Table:
    table = Table(
        title=f"LLM requests by model (last {frame.window_s:.0f} s; dedup's included)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1),
    )
    table.add_column("model")
    for column in ("requests", "rate", "failed", "p50 ms", "p95 ms", "run total"):
        table.add_column(column, justify="right")
    for row in frame.models:
        table.add_row(
            Text(row.model, style="magenta"),
            f"{row.calls:,}",
            _rate(row.per_s),
            Text(f"{row.failed:,}", style="red" if row.failed else ""),
            _ms(row.latency_ms.p50),
            _ms(row.latency_ms.p95),
            f"{row.total:,}",
        )
    return table


def _errors(frame: TopFrame) -> Table:
    table = Table(
        title="Errors by where",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1),
    )
    table.add_column("where")
    table.add_column(f"last {frame.window_s:.0f} s", justify="right")
    table.add_column("run total", justify="right")
    for row in frame.errors:
        table.add_row(
            Text(row.where, style="red"),
            Text(f"{row.recent:,}", style="bold red" if row.recent else ""),
            f"{row.total:,}",
        )
    return table


def _totals(frame: TopFrame) -> Text:
    t = frame.totals
    return Text(
        f"Since the run started: {plural(frame.events, 'event')} · "
        f"{plural(t.get('message', 0), 'message')} · {plural(t.get('reply', 0), 'reply', 'replies')}"
        f" · {plural(frame.llm_requests_total - frame.llm_saved_total, 'LLM call')}"
        f" · {plural(t.get('error', 0), 'error')}",
        style="dim",
    )


def top_renderable(frame: TopFrame, *, width: int = 100, hint: bool = True) -> RenderableType:
    """The whole frame; ``width`` sizes the sparkline, ``hint`` adds the Ctrl-C line."""
    gap = Text("")
    parts: list[RenderableType] = [_header(frame), gap, _rates(frame), gap, _latency(frame), gap]
    parts += [_mechanisms(frame), gap, _sparkline(frame, width), gap]
    if frame.models:
        parts += [_models(frame), gap]
    if frame.errors:
        parts += [_errors(frame), gap]
    parts.append(_totals(frame))
    if hint:
        parts.append(Text("Ctrl-C quits", style="dim"))
    return Group(*parts)
