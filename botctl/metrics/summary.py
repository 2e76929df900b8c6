"""``botctl metrics summary`` as numbers: counts per type, latency percentiles, dedup, batching.

:func:`summarize` reduces events to a :class:`MetricsSummary`; ``botctl.reporters.metrics`` renders
it as tables or JSON.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botctl.metrics.events import Event, iter_events


def nearest_rank(sorted_values: list[float], q: float) -> float | None:
    """The project's one percentile (``bot.percentile``): nearest rank, ``None`` when empty."""
    # Imported here: bot's package __init__ loads aiohttp (~150 ms), and `botctl metrics --help`,
    # which imports this module, must not pay for it.
    from bot.percentile import percentile

    return percentile(sorted_values, q)


@dataclass(frozen=True)
class Percentiles:
    """p50/p95/p99 of a latency in milliseconds (nearest rank) and the number of samples."""

    p50: float | None
    p95: float | None
    p99: float | None
    count: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Percentiles:
        ordered = sorted(values)
        return cls(
            p50=nearest_rank(ordered, 50),
            p95=nearest_rank(ordered, 95),
            p99=nearest_rank(ordered, 99),
            count=len(ordered),
        )

    def to_json(self) -> dict[str, float | None]:
        return {"p50": self.p50, "p95": self.p95, "p99": self.p99}


@dataclass(frozen=True)
class MetricsSummary:
    """What ``botctl metrics summary`` reports; :meth:`to_json` is its ``--json`` shape."""

    events: int
    torn_lines: int
    counts: dict[str, int]
    llm_latency_ms: Percentiles
    reply_latency_ms: Percentiles
    llm_calls_upstream: int
    llm_calls_saved: int
    dedup_ratio: float | None
    history_hit_rate: float | None
    flushes: int | None
    events_written: int | None
    errors: dict[str, int]
    llm_errors: dict[str, int]
    first_ts: float | None
    last_ts: float | None
    path: str | None = None

    @property
    def span_s(self) -> float | None:
        if self.first_ts is None or self.last_ts is None:
            return None
        return self.last_ts - self.first_ts

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "events": self.events,
            "torn_lines": self.torn_lines,
            "counts": dict(self.counts),
            "llm_latency_ms": self.llm_latency_ms.to_json(),
            "reply_latency_ms": self.reply_latency_ms.to_json(),
            "llm_calls": {"upstream": self.llm_calls_upstream, "saved": self.llm_calls_saved},
            "dedup_ratio": self.dedup_ratio,
            "history_hit_rate": self.history_hit_rate,
            "flushes": self.flushes,
            "events_written": self.events_written,
            "errors": dict(self.errors),
            "llm_errors": dict(self.llm_errors),
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "span_s": self.span_s,
        }


def _number(value: Any) -> float | None:
    # bool is an int subclass; a True latency is a bug upstream, not a 1 ms call.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


# The batch statistics' name for "events written" is owned by bot.metrics; accept the likely ones.
_WRITTEN_KEYS = ("events_written", "written", "total_written", "total_events")


def summarize(events: Iterable[Event], *, torn_lines: int = 0) -> MetricsSummary:
    """Reduce events to a :class:`MetricsSummary` in one pass.

    Upstream LLM calls are ``llm_call`` events with ``dedup`` ``leader`` or ``off``; saved ones
    have ``follower`` or ``window``; the dedup ratio is saved / all ``llm_call`` events. History
    hit rate, flushes and events written come from the last ``stats`` event (running totals).
    Percentiles use the nearest-rank method (see :func:`percentile`).
    """
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    llm_errors: Counter[str] = Counter()
    llm_latencies: list[float] = []
    reply_latencies: list[float] = []
    upstream = saved = 0
    last_stats: Event | None = None
    first_ts: float | None = None
    last_ts: float | None = None

    for event in events:
        kind = event["type"]
        counts[kind] += 1
        ts = _number(event.get("ts"))
        if ts is not None:
            # Batches from concurrent tasks may land slightly out of order: take min/max.
            first_ts = ts if first_ts is None else min(first_ts, ts)
            last_ts = ts if last_ts is None else max(last_ts, ts)
        if kind == "llm_call":
            latency = _number(event.get("latency_ms"))
            if latency is not None:
                llm_latencies.append(latency)
            mode = event.get("dedup")
            if mode in ("leader", "off"):
                upstream += 1
            elif mode in ("follower", "window"):
                saved += 1
            if event.get("status") == "error":
                llm_errors[str(event.get("error") or "unknown")] += 1
        elif kind == "reply":
            latency = _number(event.get("latency_ms"))
            if latency is not None:
                reply_latencies.append(latency)
        elif kind == "error":
            errors[str(event.get("error") or "unknown")] += 1
        elif kind == "stats":
            last_stats = event

    hit_rate: float | None = None
    flushes: int | None = None
    written: int | None = None
    if last_stats is not None:
        history = last_stats.get("history")
        if isinstance(history, dict):
            hit_rate = _number(history.get("hit_rate"))
        batch = last_stats.get("batch")
        if isinstance(batch, dict):
            flushes = _int(batch.get("flushes"))
            for key in _WRITTEN_KEYS:
                written = _int(batch.get(key))
                if written is not None:
                    break

    llm_total = counts["llm_call"]
    return MetricsSummary(
        events=sum(counts.values()),
        torn_lines=torn_lines,
        counts=dict(sorted(counts.items())),
        llm_latency_ms=Percentiles.of(llm_latencies),
        reply_latency_ms=Percentiles.of(reply_latencies),
        llm_calls_upstream=upstream,
        llm_calls_saved=saved,
        dedup_ratio=(saved / llm_total) if llm_total else None,
        history_hit_rate=hit_rate,
        flushes=flushes,
        events_written=written,
        errors=dict(errors.most_common()),
        llm_errors=dict(llm_errors.most_common()),
        first_ts=first_ts,
        last_ts=last_ts,
    )


def summarize_file(path: str | os.PathLike[str]) -> MetricsSummary:
    """:func:`summarize` over a file, with its torn lines counted. Raises ``FileNotFoundError``."""
    stream = iter_events(path)
    summary = summarize(stream)
    return dataclasses.replace(summary, torn_lines=stream.torn, path=str(path))
