"""Inline SVG charts for self-contained HTML pages: a histogram and a timeline of counts.

Plain strings, no dependency and no script: axes with round ticks, labelled, each bar with a
``<title>`` (the browser's tooltip). Every text that goes in is escaped here. The markup is HTML's
inline SVG (no XML namespace needed), styled by the page's CSS classes ``bar``, ``bar-bad``,
``line``, ``axis``, ``grid``, ``tick`` and ``label``.
"""

from __future__ import annotations

import math
from datetime import datetime
from html import escape

from botctl.metrics.series import Histogram, TimeSeries, nice_step

WIDTH = 900
HEIGHT = 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 40, 30, 56  # room for the tick labels at both ends
_PLOT_W = WIDTH - _LEFT - _RIGHT
_PLOT_H = HEIGHT - _TOP - _BOTTOM


def _num(value: float) -> str:
    """Coordinates with two decimals at most (smaller markup, same picture)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def format_ms(value: float) -> str:
    """A latency bound for a tick: ``250 ms``, ``1.5 s``."""
    if value < 1000:
        return f"{value:g} ms"
    return f"{value / 1000:g} s"


def _y_axis(top_count: int, unit: str) -> tuple[float, list[str]]:
    """The y scale's maximum (a round number) and the grid lines with their labels."""
    step = nice_step(max(1, top_count) / 5)
    step = max(1.0, step)
    y_max = math.ceil(max(1, top_count) / step) * step
    parts: list[str] = []
    ticks = round(y_max / step)
    for i in range(ticks + 1):
        value = i * step
        y = _TOP + _PLOT_H - value / y_max * _PLOT_H
        parts.append(
            f'<line class="grid" x1="{_LEFT}" y1="{_num(y)}" x2="{_LEFT + _PLOT_W}" '
            f'y2="{_num(y)}"/>'
        )
        parts.append(
            f'<text class="tick" x="{_LEFT - 6}" y="{_num(y + 4)}" text-anchor="end">'
            f"{value:,.0f}</text>"
        )
    parts.append(
        f'<text class="label" transform="translate(16 {_TOP + _PLOT_H / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(unit)}</text>'
    )
    return y_max, parts


def _frame(title: str, x_label: str, body: list[str], *, kind: str) -> str:
    axes = (
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP + _PLOT_H}" x2="{_LEFT + _PLOT_W}" '
        f'y2="{_TOP + _PLOT_H}"/>'
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + _PLOT_H}"/>'
    )
    return (
        f'<svg class="chart" data-chart="{escape(kind)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        + "".join(body)
        + axes
        + f'<text class="label" x="{_LEFT + _PLOT_W / 2}" y="{HEIGHT - 10}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
        "</svg>"
    )


def histogram_svg(hist: Histogram, *, title: str, x_label: str, noun: str) -> str:
    """Bars for the bins of ``hist`` (latencies in ms), x ticks at round bounds."""
    y_max, body = _y_axis(max(hist.counts, default=0), f"{noun} per bin")
    bins = len(hist.counts)
    slot = _PLOT_W / bins
    for i, count in enumerate(hist.counts):
        low = hist.edges[i]
        last_open = hist.open_ended and i == bins - 1
        span = (
            f"≥ {format_ms(low)}"
            if last_open
            else f"{format_ms(low)} – {format_ms(low + hist.width)}"
        )
        height = count / y_max * _PLOT_H
        x = _LEFT + i * slot + 0.5
        body.append(
            f'<rect class="{"bar-bad" if last_open else "bar"}" x="{_num(x)}" '
            f'y="{_num(_TOP + _PLOT_H - height)}" width="{_num(max(0.5, slot - 1))}" '
            f'height="{_num(height)}"><title>{escape(span)}: {count:,} {escape(noun)}</title>'
            "</rect>"
        )
    # About eight labelled bounds, on whole bins.
    every = max(1, math.ceil(bins / 8))
    for i in range(0, bins + 1, every):
        if hist.open_ended and i == bins:
            break
        x = _LEFT + i * slot
        label = format_ms(hist.edges[i])
        if hist.open_ended and i == bins - 1:
            label = "≥ " + label
        body.append(
            f'<line class="axis" x1="{_num(x)}" y1="{_TOP + _PLOT_H}" x2="{_num(x)}" '
            f'y2="{_TOP + _PLOT_H + 5}"/>'
            f'<text class="tick" x="{_num(x)}" y="{_TOP + _PLOT_H + 18}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    return _frame(title, x_label, body, kind="histogram")


def _clock(ts: float, step_s: float) -> str:
    moment = datetime.fromtimestamp(ts)
    return moment.strftime("%H:%M:%S" if step_s < 60 else "%H:%M")


def timeline_svg(series: TimeSeries, *, title: str) -> str:
    """Stacked bars of replies per bucket (ok, then not ok) and the messages taken as a line."""
    n = series.buckets
    per = f"{series.step_s:g} s" if series.step_s < 60 else f"{series.step_s / 60:g} min"
    totals = [ok + bad for ok, bad in zip(series.replies_ok, series.replies_failed, strict=True)]
    y_max, body = _y_axis(max(totals + series.messages, default=0), f"per {per}")
    slot = _PLOT_W / max(1, n)
    base = _TOP + _PLOT_H
    for i in range(n):
        ok, bad = series.replies_ok[i], series.replies_failed[i]
        x = _LEFT + i * slot + 0.5
        width = _num(max(0.5, slot - 1))
        start = _clock(series.start + i * series.step_s, series.step_s)
        ok_h = ok / y_max * _PLOT_H
        bad_h = bad / y_max * _PLOT_H
        tip = (
            f"{start} (+{per}): {ok:,} replies ok, {bad:,} failed, {series.messages[i]:,} messages"
        )
        body.append(
            f'<rect class="bar" x="{_num(x)}" y="{_num(base - ok_h)}" width="{width}" '
            f'height="{_num(ok_h)}"><title>{escape(tip)}</title></rect>'
        )
        if bad:
            body.append(
                f'<rect class="bar-bad" x="{_num(x)}" y="{_num(base - ok_h - bad_h)}" '
                f'width="{width}" height="{_num(bad_h)}"><title>{escape(tip)}</title></rect>'
            )
    if n:
        points = " ".join(
            f"{'M' if i == 0 else 'L'}{_num(_LEFT + (i + 0.5) * slot)} "
            f"{_num(base - count / y_max * _PLOT_H)}"
            for i, count in enumerate(series.messages)
        )
        body.append(f'<path class="line" d="{points}"><title>messages taken</title></path>')
    every = max(1, math.ceil(n / 8))
    for i in range(0, n + 1, every):
        x = _LEFT + i * slot
        body.append(
            f'<line class="axis" x1="{_num(x)}" y1="{base}" x2="{_num(x)}" y2="{base + 5}"/>'
            f'<text class="tick" x="{_num(x)}" y="{base + 18}" text-anchor="middle">'
            f"{escape(_clock(series.start + i * series.step_s, series.step_s))}</text>"
        )
    return _frame(title, f"local time, per {per}", body, kind="timeline")
