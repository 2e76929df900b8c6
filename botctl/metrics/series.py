"""The plots of ``botctl metrics summary --html`` as numbers: latency histograms and replies over time.

Pure: records in, :class:`Figures` out; ``botctl.reporters.metrics_html`` draws them as SVG.

- A latency histogram has equal-width bins of a round width (1, 2 or 5 times a power of ten, in
  ms) chosen so that about :data:`TARGET_BINS` cover the latencies; a long tail beyond four times
  the p99 goes to one last, open bin (``≥ X``) so that one 60 s timeout does not squash the rest.
- Replies over time are counted per 10 s, or per minute for runs longer than half an hour (per
  10 minutes beyond a day), split ok / not ok, with the messages taken in the same buckets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from botctl.metrics.events import Record, number
from botctl.metrics.summary import nearest_rank

TARGET_BINS = 30
_TAIL_FACTOR = 4.0  # values beyond this many times the p99 share the last, open bin


@dataclass(frozen=True, slots=True)
class Histogram:
    """``counts[i]`` values fall in ``[edges[i], edges[i + 1])``; with :attr:`open_ended` the
    last bin is ``[edges[-2], ∞)`` (its right edge only places the bar)."""

    edges: list[float]
    counts: list[int]
    open_ended: bool
    total: int

    @property
    def width(self) -> float:
        return self.edges[1] - self.edges[0] if len(self.edges) > 1 else 0.0


@dataclass(frozen=True, slots=True)
class TimeSeries:
    """Counts per bucket of ``step_s`` seconds, the first starting at ``start`` (Unix time)."""

    start: float
    step_s: float
    replies_ok: list[int]
    replies_failed: list[int]  # replies whose status is not "ok"
    messages: list[int]

    @property
    def buckets(self) -> int:
        return len(self.replies_ok)


@dataclass(frozen=True, slots=True)
class Figures:
    reply_latency: Histogram
    llm_latency: Histogram
    replies: TimeSeries


def nice_step(raw: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is >= ``raw`` (> 0)."""
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if factor * power >= raw * (1 - 1e-9):
            return factor * power
    return 10.0 * power  # unreachable: 10 * power >= raw always


def histogram(values: Iterable[float], target_bins: int = TARGET_BINS) -> Histogram:
    """Equal round-width bins from 0 over the values (see the module's docstring)."""
    ordered = sorted(v for v in values if v >= 0)
    if not ordered:
        return Histogram(edges=[0.0, 1.0], counts=[0], open_ended=False, total=0)
    top = ordered[-1]
    p99 = nearest_rank(ordered, 99) or top
    cap = top if top <= _TAIL_FACTOR * p99 or p99 <= 0 else _TAIL_FACTOR * p99
    width = nice_step(cap / target_bins) if cap > 0 else 1.0
    bins = max(1, math.floor(cap / width) + 1)  # the bin holding `cap` included
    open_ended = top >= bins * width
    if open_ended:
        bins += 1  # [bins * width - width ... ) becomes the open tail
    counts = [0] * bins
    for value in ordered:
        counts[min(bins - 1, int(value // width))] += 1
    edges = [i * width for i in range(bins + 1)]
    return Histogram(edges=edges, counts=counts, open_ended=open_ended, total=len(ordered))


def step_for(span_s: float) -> float:
    """10 s buckets up to half an hour, then a minute, then 10 minutes beyond a day."""
    if span_s <= 1800:
        return 10.0
    if span_s <= 86_400:
        return 60.0
    return 600.0


def replies_over_time(records: Iterable[Record]) -> TimeSeries:
    """Replies (ok, not ok) and messages per bucket, from the first to the last event's bucket."""
    points: list[tuple[float, str, bool]] = []
    for record in records:
        kind = record.event["type"]
        if kind not in ("reply", "message"):
            continue
        ts = record.ts
        if ts is not None:
            points.append((ts, kind, record.event.get("status", "ok") == "ok"))
    if not points:
        return TimeSeries(start=0.0, step_s=10.0, replies_ok=[], replies_failed=[], messages=[])
    first = min(p[0] for p in points)
    last = max(p[0] for p in points)
    step = step_for(last - first)
    start = math.floor(first / step) * step  # buckets on round clock times
    n = int((last - start) // step) + 1
    ok, failed, messages = [0] * n, [0] * n, [0] * n
    for ts, kind, fine in points:
        i = min(n - 1, int((ts - start) // step))
        if kind == "message":
            messages[i] += 1
        elif fine:
            ok[i] += 1
        else:
            failed[i] += 1
    return TimeSeries(
        start=start, step_s=step, replies_ok=ok, replies_failed=failed, messages=messages
    )


def figures(records: list[Record]) -> Figures:
    """Everything the HTML page plots, from the records of the runs chosen."""
    reply_ms: list[float] = []
    llm_ms: list[float] = []
    for record in records:
        kind = record.event["type"]
        if kind in ("reply", "llm_call"):
            value = number(record.event.get("latency_ms"))
            if value is not None:
                (reply_ms if kind == "reply" else llm_ms).append(value)
    return Figures(
        reply_latency=histogram(reply_ms),
        llm_latency=histogram(llm_ms),
        replies=replies_over_time(records),
    )
