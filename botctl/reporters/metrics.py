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

from botctl.console import plural, print_json
from botctl.metrics.events import Event, Selection
from botctl.metrics.summary import MetricsSummary, Percentiles
from botctl.metrics.tune import Limits, SettingFigures, Tuning

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


def _header(summary: MetricsSummary) -> Text:
    files = ", ".join(summary.files) or "-"
    if summary.everything:
        runs = f"all {plural(summary.runs_in_files, 'run')}"
    else:
        ids = ", ".join(run or "(no run id)" for run in summary.runs) or "-"
        runs = f"run {ids}" if len(summary.runs) == 1 else f"runs {ids}"
        if summary.runs_in_files > len(summary.runs):
            runs += f" (latest of {summary.runs_in_files}; --all for every run)"
    return Text.assemble(
        ("Metrics ", "bold"), (files, "cyan"), "\n", runs, "\n", _span(summary), no_wrap=False
    )


def _shards_table(shards: dict[str, dict[str, int]]) -> Table:
    table = Table(title="By shard", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("shards")
    kinds = ("message", "reply", "llm_call", "error")
    for kind in kinds:
        table.add_column(kind, justify="right")
    for label, counts in shards.items():
        table.add_row(label, *(f"{counts.get(kind, 0):,}" for kind in kinds))
    return table


def summary_renderable(summary: MetricsSummary) -> Group:
    """The summary as rich tables: events by type (and shard), latencies, mechanisms, errors."""
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
    mechanisms.add_row("lines skipped (not events)", f"{summary.torn_lines:,}")

    parts: list[Any] = [_header(summary), counts]
    if summary.shards:
        parts.append(_shards_table(summary.shards))
    parts += [latency, mechanisms]
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


def print_skipped(console: Console, skipped: int) -> None:
    """One line on stderr when lines were skipped; nothing otherwise."""
    if skipped:
        console.print(
            f"skipped {plural(skipped, 'line')} that {'is' if skipped == 1 else 'are'} not a "
            'metrics event (a JSON object with a "type")',
            style="yellow",
            highlight=False,
            soft_wrap=True,
        )


def print_reading_notes(console: Console, selection: Selection, *, skipped: int) -> None:
    """What ``tail`` left out, on stderr: lines that are not events, older runs."""
    print_skipped(console, skipped)
    hidden = selection.runs_in_files - len(selection.runs)
    if hidden > 0 and not selection.everything:
        ids = ", ".join(run or "(no run id)" for run in selection.run_ids)
        console.print(
            f"showing run {ids}; {plural(hidden, 'older run')} in the file (--all, --run ID)",
            style="dim",
            highlight=False,
            soft_wrap=True,
        )


# --------------------------------------------------------------------------------------------------
# Tune

_SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int]) -> str:
    """Per-minute counts as block characters, tallest for the busiest minute."""
    top = max(values, default=0)
    if top == 0:
        return _SPARKS[0] * len(values)
    return "".join(_SPARKS[min(7, value * 8 // (top + 1))] for value in values)


def _figures_rows(table: Table, name: str, figures: SettingFigures, limits: Limits) -> None:
    s = figures.settings
    labels = (name, f"{plural(s.batch_size, 'event')} / {s.batch_interval:g} s")
    for label, (rate, at) in zip(
        labels, (("p50", figures.at_p50), ("p95", figures.at_p95)), strict=True
    ):
        over_writes = at.writes_per_minute > limits.max_writes_per_minute
        over_loss = at.loss_seconds > limits.max_loss_seconds
        table.add_row(
            label,
            f"{rate} {at.rate:,.1f}/s",
            Text(f"{at.writes_per_minute:,.1f}", style="red" if over_writes else ""),
            Text(
                f"{at.loss_seconds:,.1f} s ({plural(round(at.loss_events), 'event')})",
                style="red" if over_loss else "",
            ),
        )


def tuning_renderable(tuning: Tuning) -> Group:
    """The traffic measured, current and recommended settings' figures, the TOML to paste."""
    t, limits = tuning.traffic, tuning.limits
    runs = ", ".join(run or "(no run id)" for run in tuning.runs) or "-"
    minutes = len(t.per_minute)
    table = Table(
        title=f"Limits: a crash loses ≤ {limits.max_loss_seconds:g} s at p95 traffic, "
        f"≤ {limits.max_writes_per_minute:g} writes/min",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for header in ("setting", "traffic", "writes/min", "a SIGKILL loses"):
        table.add_column(header, justify="left" if header == "setting" else "right", no_wrap=True)
    if tuning.current is not None:
        _figures_rows(table, "current", tuning.current, limits)
    _figures_rows(table, "recommended", tuning.recommended, limits)
    parts: list[Any] = [
        Text.assemble(("Traffic ", "bold"), (", ".join(tuning.files), "cyan"), f"  run {runs}"),
        Text(
            f"{plural(t.events, 'event')} over {t.span_s:,.0f} s "
            f"({plural(minutes, 'minute')} measured): median {t.rate_p50:,.2f}/s, "
            f"p95 {t.rate_p95:,.2f}/s, busiest minute {t.rate_peak:,.2f}/s, busiest 10 s "
            f"{t.burst_rate:,.2f}/s; {plural(t.burst_minutes, 'minute')} over twice the median",
            no_wrap=False,
        ),
        Text(f"events per minute: {sparkline(t.per_minute)}", style="dim", overflow="fold"),
        table,
    ]
    if tuning.busiest is not None:
        parts.insert(
            1,
            Text(
                f"{tuning.writers} writers (a process or a run each, each with its own settings): "
                f"the figures are the busiest one's, {tuning.busiest}",
                no_wrap=False,
            ),
        )
    if tuning.current is None:
        parts.append(Text("current settings unknown: no stats event in this run", style="dim"))
    parts += [
        Text("Paste into the bot's TOML config (top-level keys):", style="bold"),
        Text(tuning.recommended.settings.toml()),
    ]
    return Group(*parts)


def print_tuning(console: Console, tuning: Tuning) -> None:
    console.print(tuning_renderable(tuning))
