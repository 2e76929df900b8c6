"""``botctl metrics summary --html``: one self-contained page with the summary and its plots.

Self-contained means viewable offline, forever: no script, font, stylesheet or image is fetched
(the CSS is inline, the plots are inline SVG drawn by ``botctl.reporters.svg``, the fonts are the
viewer's own). Every value from the files (paths, run ids, error names) is escaped.

Each figure of the summary sits in an element with ``data-key`` (its path in ``summary --json``,
such as ``reply_latency_ms.p95``) and ``data-value`` (its JSON value, exactly as ``--json`` prints
it), so that the page and the JSON can be checked against each other.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

import orjson

from botctl import __version__
from botctl.metrics.series import Figures
from botctl.metrics.summary import MetricsSummary
from botctl.reporters.svg import histogram_svg, timeline_svg

_CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       sans-serif; margin: 24px auto; max-width: 960px; padding: 0 16px; color: #1f2328;
       background: #ffffff; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.meta { color: #59636e; margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 14px; min-width: 150px;
        background: #f6f8fa; }
.card .v { font-size: 22px; font-weight: 600; }
.card .k { color: #59636e; font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 4px 12px; border-bottom: 1px solid #eaeef2; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { color: #59636e; font-weight: 600; }
.tables { display: flex; flex-wrap: wrap; gap: 32px; align-items: flex-start; }
svg.chart { display: block; max-width: 100%; height: auto; background: #ffffff; }
svg .bar { fill: #2da44e; }
svg .bar-bad { fill: #cf222e; }
svg .line { fill: none; stroke: #0969da; stroke-width: 2; }
svg .axis { stroke: #57606a; stroke-width: 1; }
svg .grid { stroke: #eaeef2; stroke-width: 1; }
svg .tick { font-size: 12px; fill: #57606a; }
svg .label { font-size: 13px; fill: #1f2328; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px;
               vertical-align: -1px; }
footer { color: #59636e; font-size: 13px; margin-top: 32px; }
"""


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _shown(value: Any, *, unit: str = "", percent: str | None = None) -> str:
    if value is None:
        return "–"
    if percent == "ratio":
        return f"{value * 100:.1f} %"
    if percent == "percent":
        return f"{value:.1f} %"
    if isinstance(value, float):
        return f"{value:,.1f}{unit}"
    return f"{value:,}{unit}"


def _cell(key: str, value: Any, **how: Any) -> str:
    return (
        f'<td data-key="{escape(key)}" data-value="{escape(_json(value))}">'
        f"{escape(_shown(value, **how))}</td>"
    )


def _card(label: str, key: str, value: Any, **how: Any) -> str:
    return (
        f'<div class="card"><div class="v" data-key="{escape(key)}" '
        f'data-value="{escape(_json(value))}">{escape(_shown(value, **how))}</div>'
        f'<div class="k">{escape(label)}</div></div>'
    )


def _span(summary: MetricsSummary) -> str:
    if summary.first_ts is None or summary.last_ts is None:
        return "no timestamps"
    start = datetime.fromtimestamp(summary.first_ts).strftime("%Y-%m-%d %H:%M:%S")
    end = datetime.fromtimestamp(summary.last_ts).strftime("%H:%M:%S")
    return f"{start} → {end} ({summary.span_s or 0:,.1f} s)"


def _runs(summary: MetricsSummary) -> str:
    if summary.everything:
        return f"all {summary.runs_in_files} runs"
    ids = ", ".join(run or "(no run id)" for run in summary.runs) or "–"
    label = f"run {ids}" if len(summary.runs) == 1 else f"runs {ids}"
    if summary.runs_in_files > len(summary.runs):
        label += f" (latest of {summary.runs_in_files})"
    return label


def _counts(summary: MetricsSummary) -> str:
    rows = "".join(
        f"<tr><td>{escape(kind)}</td>{_cell(f'counts.{kind}', count)}</tr>"
        for kind, count in summary.counts.items()
    )
    total = f"<tr><th>total</th>{_cell('events', summary.events)}</tr>"
    return (
        "<table><caption hidden>Events by type</caption>"
        f"<thead><tr><th>type</th><th>count</th></tr></thead><tbody>{rows}{total}</tbody></table>"
    )


def _latency(summary: MetricsSummary) -> str:
    rows = []
    for name, key, p in (
        ("reply", "reply_latency_ms", summary.reply_latency_ms),
        ("LLM call", "llm_latency_ms", summary.llm_latency_ms),
    ):
        cells = "".join(_cell(f"{key}.{q}", getattr(p, q)) for q in ("p50", "p95", "p99"))
        rows.append(f"<tr><td>{escape(name)}</td>{cells}<td>{p.count:,}</td></tr>")
    return (
        "<table><thead><tr><th>latency (ms)</th><th>p50</th><th>p95</th><th>p99</th><th>n</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _mechanisms(summary: MetricsSummary) -> str:
    rows = (
        ("LLM calls upstream", _cell("llm_calls.upstream", summary.llm_calls_upstream)),
        ("LLM calls saved by dedup", _cell("llm_calls.saved", summary.llm_calls_saved)),
        ("dedup ratio", _cell("dedup_ratio", summary.dedup_ratio, percent="ratio")),
        (
            "history hit rate",
            _cell("history_hit_rate", summary.history_hit_rate, percent="percent"),
        ),
        ("metrics flushes", _cell("flushes", summary.flushes)),
        ("events written", _cell("events_written", summary.events_written)),
        ("lines skipped (not events)", _cell("torn_lines", summary.torn_lines)),
    )
    body = "".join(f"<tr><td>{escape(name)}</td>{cell}</tr>" for name, cell in rows)
    return f"<table><thead><tr><th>mechanism</th><th>value</th></tr></thead><tbody>{body}</tbody></table>"


def _errors(summary: MetricsSummary) -> str:
    if not summary.errors and not summary.llm_errors:
        return "<p>No errors.</p>"
    rows = [
        f"<tr><td>error event</td><td>{escape(name)}</td>{_cell(f'errors.{name}', n)}</tr>"
        for name, n in summary.errors.items()
    ] + [
        f"<tr><td>failed LLM call</td><td>{escape(name)}</td>{_cell(f'llm_errors.{name}', n)}</tr>"
        for name, n in summary.llm_errors.items()
    ]
    return (
        "<table><thead><tr><th>source</th><th>class</th><th>count</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _shards(summary: MetricsSummary) -> str:
    if not summary.shards:
        return ""
    kinds = ("message", "reply", "llm_call", "error")
    head = "".join(f"<th>{kind}</th>" for kind in kinds)
    rows = "".join(
        f"<tr><td>{escape(label)}</td>"
        + "".join(_cell(f"shards.{label}.{kind}", counts.get(kind, 0)) for kind in kinds)
        + "</tr>"
        for label, counts in summary.shards.items()
    )
    return (
        f"<h2>By shard</h2><table><thead><tr><th>shards</th>{head}</tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def summary_html(summary: MetricsSummary, figures: Figures) -> str:
    """The whole page as one string."""
    files = ", ".join(summary.files) or "–"
    p_reply, p_llm = summary.reply_latency_ms, summary.llm_latency_ms
    cards = "".join(
        (
            _card("replies", "counts.reply", summary.counts.get("reply", 0)),
            _card("reply p50 (ms)", "reply_latency_ms.p50", p_reply.p50),
            _card("reply p95 (ms)", "reply_latency_ms.p95", p_reply.p95),
            _card("LLM call p95 (ms)", "llm_latency_ms.p95", p_llm.p95),
            _card("dedup ratio", "dedup_ratio", summary.dedup_ratio, percent="ratio"),
            _card(
                "history hit rate",
                "history_hit_rate",
                summary.history_hit_rate,
                percent="percent",
            ),
        )
    )
    replies_plot = timeline_svg(figures.replies, title="Replies over time")
    reply_hist = histogram_svg(
        figures.reply_latency,
        title="Reply latency: message to last part sent",
        x_label="reply latency",
        noun="replies",
    )
    llm_hist = histogram_svg(
        figures.llm_latency,
        title="LLM call latency",
        x_label="LLM call latency",
        noun="LLM calls",
    )
    legend = (
        '<p class="legend"><span style="background:#2da44e"></span>replies ok'
        '<span style="background:#cf222e"></span>replies failed'
        '<span style="background:#0969da;height:3px;vertical-align:3px"></span>messages taken</p>'
    )
    generated = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>botctl metrics — {escape(files)}</title><style>{_CSS}</style></head><body>"
        "<h1>botctl metrics summary</h1>"
        f'<p class="meta">{escape(files)}<br>{escape(_runs(summary))}<br>{escape(_span(summary))}'
        "</p>"
        f'<div class="cards">{cards}</div>'
        f"<h2>Reply latency</h2>{reply_hist}"
        f"<h2>Replies over time</h2>{replies_plot}{legend}"
        f"<h2>LLM call latency</h2>{llm_hist}"
        '<h2>Figures</h2><div class="tables">'
        f"{_counts(summary)}{_latency(summary)}{_mechanisms(summary)}</div>"
        f"{_shards(summary)}<h2>Errors</h2>{_errors(summary)}"
        f"<footer>Written by botctl {escape(__version__)} on {escape(generated)}: "
        "<code>botctl metrics summary --html</code>. Percentiles are nearest-rank, as in "
        "<code>botctl metrics summary --json</code>; this page fetches nothing.</footer>"
        "</body></html>\n"
    )
