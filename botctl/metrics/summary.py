"""``botctl metrics summary`` as numbers: counts per type, latency percentiles, dedup, batching.

:func:`summarize` reduces the events of the runs chosen (:func:`~botctl.metrics.events.select_runs`)
to a :class:`MetricsSummary`; ``botctl.reporters.metrics`` renders it as tables or JSON.

A run's figures are its own: counts and percentiles come from its events, and the running totals
(flushes, events written, history hits) from its LAST ``stats`` event, which the bot writes after
its final flush. Several runs (``--all``, or one file per process) add their totals up.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from botctl.metrics.events import Event, Record, Selection, number


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
    files: list[str] = field(default_factory=list)
    runs: list[str | None] = field(default_factory=list)
    runs_in_files: int = 0
    everything: bool = False
    shards: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def path(self) -> str | None:
        return self.files[0] if len(self.files) == 1 else None

    @property
    def span_s(self) -> float | None:
        if self.first_ts is None or self.last_ts is None:
            return None
        return self.last_ts - self.first_ts

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "files": list(self.files),
            "runs": list(self.runs),
            "runs_in_files": self.runs_in_files,
            "all_runs": self.everything,
            "events": self.events,
            "torn_lines": self.torn_lines,
            "counts": dict(self.counts),
            "shards": {key: dict(value) for key, value in self.shards.items()},
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


def _int(value: Any) -> int | None:
    found = number(value)
    return None if found is None else int(found)


def shard_label(event: Event) -> str | None:
    """The ``shard`` field (a list of shard ids, or one id) as a key such as ``"0,1"``."""
    shard = event.get("shard")
    if isinstance(shard, list) and shard:
        return ",".join(str(s) for s in shard)
    if isinstance(shard, int | str) and not isinstance(shard, bool):
        return str(shard)
    return None


# The batch statistics' name for "events written" is owned by bot.metrics; accept the likely ones.
_WRITTEN_KEYS = ("events_written", "written", "total_written", "total_events")


@dataclass
class _Totals:
    """The running totals of several runs' last ``stats`` events, added up."""

    flushes: int | None = None
    written: int | None = None
    hits: int = 0
    lookups: int = 0
    rates: list[float] = field(default_factory=list)

    def add(self, stats: Event) -> None:
        batch = stats.get("batch")
        if isinstance(batch, dict):
            # A stop's final snapshot was written by one more flush, with what was pending then
            # (itself included): counted, so the totals match what the run's own summary said.
            final = stats.get("final") is True
            flushes = _int(batch.get("flushes"))
            if flushes is not None:
                self.flushes = (self.flushes or 0) + flushes + (1 if final else 0)
            written = next(
                (w for w in (_int(batch.get(k)) for k in _WRITTEN_KEYS) if w is not None), None
            )
            if written is not None:
                pending = (_int(batch.get("pending_events")) or 0) + 1 if final else 0
                self.written = (self.written or 0) + written + pending
        history = stats.get("history")
        if isinstance(history, dict):
            hits, misses = _int(history.get("hits")), _int(history.get("misses"))
            if hits is not None and misses is not None:
                self.hits += hits
                self.lookups += hits + misses
            rate = number(history.get("hit_rate"))
            if rate is not None:
                self.rates.append(rate)

    @property
    def hit_rate(self) -> float | None:
        if self.lookups:
            return self.hits * 100.0 / self.lookups
        if self.rates:
            return sum(self.rates) / len(self.rates)
        return None


def summarize(records: Iterable[Record], *, torn_lines: int = 0) -> MetricsSummary:
    """Reduce records to a :class:`MetricsSummary` in one pass.

    Upstream LLM calls are ``llm_call`` events with ``dedup`` ``leader`` or ``off``; saved ones
    have ``follower`` or ``window``; the dedup ratio is saved / all ``llm_call`` events.
    Percentiles use the nearest-rank method.
    """
    counts: Counter[str] = Counter()
    shards: dict[str, Counter[str]] = {}
    errors: Counter[str] = Counter()
    llm_errors: Counter[str] = Counter()
    llm_latencies: list[float] = []
    reply_latencies: list[float] = []
    upstream = saved = 0
    last_stats: dict[tuple[int, str | None], Event] = {}
    first_ts: float | None = None
    last_ts: float | None = None

    for record in records:
        event = record.event
        kind = event["type"]
        counts[kind] += 1
        shard = shard_label(event)
        if shard is not None:
            shards.setdefault(shard, Counter())[kind] += 1
        ts = record.ts
        if ts is not None:
            # Batches from concurrent tasks may land slightly out of order: take min/max.
            first_ts = ts if first_ts is None else min(first_ts, ts)
            last_ts = ts if last_ts is None else max(last_ts, ts)
        if kind == "llm_call":
            latency = number(event.get("latency_ms"))
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
            latency = number(event.get("latency_ms"))
            # A reply cancelled at a stop was cut short: its time is not a reply's latency.
            if latency is not None and event.get("status") != "cancelled":
                reply_latencies.append(latency)
        elif kind == "error":
            errors[str(event.get("error") or "unknown")] += 1
        elif kind == "stats":
            last_stats[(record.file, record.run)] = event

    totals = _Totals()
    for stats in last_stats.values():
        totals.add(stats)
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
        history_hit_rate=totals.hit_rate,
        flushes=totals.flushes,
        events_written=totals.written,
        errors=dict(errors.most_common()),
        llm_errors=dict(llm_errors.most_common()),
        first_ts=first_ts,
        last_ts=last_ts,
        shards={key: dict(sorted(value.items())) for key, value in sorted(shards.items())},
    )


def summarize_selection(selection: Selection, *, files: list[str], skipped: int) -> MetricsSummary:
    """:func:`summarize` over the runs chosen, with where they came from."""
    return dataclasses.replace(
        summarize(selection.records, torn_lines=skipped),
        files=files,
        runs=selection.run_ids,
        runs_in_files=selection.runs_in_files,
        everything=selection.everything,
    )
