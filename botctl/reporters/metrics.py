"""Rendering of metrics events and summaries: one compact line per event, rich tables, or JSON.

Event values come from a file anyone can write to, so they are rendered as :class:`rich.text.Text`
and never parsed as console markup.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import typer
from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from botctl.console import print_json
from botctl.metrics.events import Event
from botctl.metrics.summary import MetricsSummary, Percentiles

TYPE_STYLES: dict[str, str] = {
    "message": "cyan",
    "llm_call": "magenta",
    "reply": "green",
    "command": "yellow",
    "error": "bold red",
    "stats": "blue",
}
_TYPE_WIDTH = 8  # "llm_call", the longest standard type: keeps the fields in one column


def format_time(ts: Any) -> str:
    """Local wall-clock ``HH:MM:SS.mmm`` of a Unix timestamp; dashes when it is not one."""
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return "--:--:--.---"
    try:
        moment = datetime.fromtimestamp(ts)
    except (OverflowError, OSError, ValueError):
        return "--:--:--.---"
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def format_value(value: Any) -> str:
    """A field value as short text: trimmed floats, bare simple strings, JSON for the rest."""
    if isinstance(value, bool) or value is None:
        return "true" if value is True else "false" if value is False else "null"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        digits = 1 if abs(value) >= 100 else 2 if abs(value) >= 1 else 4
        return f"{value:.{digits}f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if value and not any(c.isspace() or c in '="' for c in value):
            return value
        return orjson.dumps(value).decode()
    return orjson.dumps(value).decode()


def _flatten(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def format_event(event: Event) -> Text:
    """One readable line: local time, the coloured type, then ``key=value`` fields.

    Nested objects (the ``stats`` snapshots) are flattened to dotted keys; null fields are left
    out to keep lines short (``--json`` shows everything).
    """
    kind = str(event.get("type", "?"))
    line = Text(no_wrap=False)
    line.append(format_time(event.get("ts")), style="dim")
    line.append(" ")
    line.append(kind.ljust(_TYPE_WIDTH), style=TYPE_STYLES.get(kind, "white"))
    fields = {k: v for k, v in event.items() if k not in ("ts", "type")}
    for key, value in _flatten(fields):
        if value is None:
            continue
        line.append(" ")
        line.append(f"{key}=", style="dim")
        line.append(format_value(value))
    return line


def print_event(console: Console, event: Event) -> None:
    console.print(format_event(event), soft_wrap=True, highlight=False)


def print_raw_line(line: bytes) -> None:
    """A line exactly as it is in the file (bytes, not re-encoded), then a newline, flushed."""
    typer.echo(line)


# --------------------------------------------------------------------------------------------------
# Summary


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _pct(value: float | None, *, already_percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value if already_percent else value * 100:.1f} %"


def _latency_row(table: Table, name: str, p: Percentiles) -> None:
    table.add_row(name, _ms(p.p50), _ms(p.p95), _ms(p.p99), str(p.count))


def _span(summary: MetricsSummary) -> str:
    span = summary.span_s
    if span is None or summary.first_ts is None or summary.last_ts is None:
        return "no timestamps"
    start = datetime.fromtimestamp(summary.first_ts).strftime("%Y-%m-%d %H:%M:%S")
    end = datetime.fromtimestamp(summary.last_ts).strftime("%H:%M:%S")
    return f"{start} → {end} ({span:,.1f} s)"


def summary_renderable(summary: MetricsSummary) -> Group:
    """The summary as rich tables: events by type, latencies, dedup/history/batching, errors."""
    counts = Table(title="Events", box=box.SIMPLE_HEAD, title_justify="left")
    counts.add_column("type")
    counts.add_column("count", justify="right")
    for kind, count in summary.counts.items():
        counts.add_row(Text(kind, style=TYPE_STYLES.get(kind, "")), f"{count:,}")
    counts.add_row(Text("total", style="bold"), Text(f"{summary.events:,}", style="bold"))

    latency = Table(title="Latency (ms)", box=box.SIMPLE_HEAD, title_justify="left")
    latency.add_column("")
    for column in ("p50", "p95", "p99", "n"):
        latency.add_column(column, justify="right")
    _latency_row(latency, "LLM call", summary.llm_latency_ms)
    _latency_row(latency, "reply", summary.reply_latency_ms)

    mechanisms = Table(title="Performance mechanisms", box=box.SIMPLE_HEAD, title_justify="left")
    mechanisms.add_column("")
    mechanisms.add_column("value", justify="right")
    mechanisms.add_row("LLM calls upstream", f"{summary.llm_calls_upstream:,}")
    mechanisms.add_row("LLM calls saved by dedup", f"{summary.llm_calls_saved:,}")
    mechanisms.add_row("dedup ratio", _pct(summary.dedup_ratio))
    mechanisms.add_row("history hit rate", _pct(summary.history_hit_rate, already_percent=True))
    mechanisms.add_row("flushes", "-" if summary.flushes is None else f"{summary.flushes:,}")
    mechanisms.add_row(
        "events written",
        "-" if summary.events_written is None else f"{summary.events_written:,}",
    )
    mechanisms.add_row("torn lines skipped", f"{summary.torn_lines:,}")

    parts: list[Any] = [
        Text.assemble(("Metrics ", "bold"), (summary.path or "", "cyan"), "  ", _span(summary)),
        counts,
        latency,
        mechanisms,
    ]
    if summary.errors or summary.llm_errors:
        errors = Table(title="Errors", box=box.SIMPLE_HEAD, title_justify="left")
        errors.add_column("source")
        errors.add_column("class")
        errors.add_column("count", justify="right")
        for name, count in summary.errors.items():
            errors.add_row("error event", Text(name, style="red"), f"{count:,}")
        for name, count in summary.llm_errors.items():
            errors.add_row("failed LLM call", Text(name, style="red"), f"{count:,}")
        parts.append(errors)
    return Group(*parts)


def print_summary(console: Console, summary: MetricsSummary) -> None:
    console.print(summary_renderable(summary))


def print_summary_json(summary: MetricsSummary) -> None:
    print_json(summary.to_json())
