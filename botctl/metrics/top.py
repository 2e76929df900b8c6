"""``botctl metrics top`` as numbers: the figures of one dashboard frame, from the events read so far.

Pure: :class:`TopState` is fed records as they are read (:meth:`TopState.add`), and
:meth:`TopState.frame` computes a :class:`TopFrame` for a given moment, so the figures are
testable without a terminal, files or a clock. ``botctl.reporters.metrics_top`` renders a frame.

Which runs count is what ``metrics summary`` reads: by default the latest run of each file, and a
new run that starts in a file replaces the one before (its figures start from zero); ``run`` keeps
one run id; ``everything`` keeps them all.

The frame's moment is the clock's ``now`` while events are recent; when the newest event is older
than the window (a finished run, a file from yesterday) it is that event's time, so the dashboard
shows the run's last minute instead of zeros (:attr:`TopFrame.live` says which).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from botctl.metrics.events import Record, number
from botctl.metrics.summary import Percentiles

WINDOW_S = 60.0  # latency percentiles and rates cover the last minute
SPARK_S = 120  # the sparkline of replies per second covers the last two minutes
_MIN_SPAN_S = 1.0  # a run younger than this is measured over one second, not less

_SAVED = frozenset({"follower", "window"})  # dedup roles that made no upstream call


@dataclass(slots=True)
class _Sample:
    """What the frame needs of one event: compact, as a busy minute holds tens of thousands."""

    ts: float
    file: int
    kind: str
    latency_ms: float | None = None
    ttft_ms: float | None = None
    model: str | None = None
    label: str | None = (
        None  # the dedup role of an llm_call, the status of a reply, an error's where
    )
    failed: bool = False  # an llm_call with status "error"


def _sample(record: Record, ts: float) -> _Sample | None:
    event = record.event
    kind = event["type"]
    if kind == "llm_call":
        return _Sample(
            ts,
            record.file,
            kind,
            latency_ms=number(event.get("latency_ms")),
            ttft_ms=number(event.get("ttft_ms")),
            model=_text(event.get("model")),
            label=_text(event.get("dedup")),
            failed=event.get("status") == "error",
        )
    if kind == "reply":
        return _Sample(
            ts,
            record.file,
            kind,
            latency_ms=number(event.get("latency_ms")),
            label=_text(event.get("status")),
        )
    if kind == "error":
        return _Sample(ts, record.file, kind, label=_text(event.get("where")) or "unknown")
    if kind == "message":
        return _Sample(ts, record.file, kind)
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(slots=True)
class _RunTotals:
    """One file's current run since its start: counts that the window does not hold."""

    run: str | None
    first_ts: float | None = None
    events: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    llm_saved: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    model_calls: Counter[str] = field(default_factory=Counter)
    stats: dict[str, Any] | None = None  # the last `stats` event


@dataclass(frozen=True, slots=True)
class ModelRow:
    """One model's LLM calls: in the window (count, failed, latency) and since the run started."""

    model: str
    calls: int
    per_s: float
    failed: int
    latency_ms: Percentiles
    total: int


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """Error events of one ``where``: in the window and since the run started."""

    where: str
    recent: int
    total: int


@dataclass(frozen=True)
class TopFrame:
    """One dashboard frame; rates and percentiles cover ``window_s`` seconds up to ``at``."""

    at: float
    live: bool
    newest_ts: float | None
    window_s: float
    runs: list[str | None]
    events: int
    messages_per_s: float
    replies_per_s: float
    llm_calls_per_s: float  # upstream calls (dedup followers and window hits made none)
    replies_by_status: dict[str, int]
    reply_latency_ms: Percentiles
    llm_latency_ms: Percentiles
    ttft_ms: Percentiles
    llm_requests: int  # llm_call events in the window (what callers asked for)
    llm_saved: int  # of which dedup answered without an upstream call
    llm_requests_total: int
    llm_saved_total: int
    models: list[ModelRow]
    errors: list[ErrorRow]
    replies_per_second: list[int]  # per whole second, oldest first, up to `at`
    totals: dict[str, int]  # messages, replies, llm_call, error since the run(s) started
    history_hit_rate: float | None  # percent, from the last stats snapshot(s)
    buffered_events: int | None  # events the bot held unwritten at its last stats snapshot
    files: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # files that do not exist yet
    skipped: int = 0

    @property
    def waiting(self) -> bool:
        """No event has been read yet."""
        return self.newest_ts is None

    @property
    def dedup_ratio(self) -> float | None:
        return self.llm_saved / self.llm_requests if self.llm_requests else None

    @property
    def dedup_ratio_total(self) -> float | None:
        return self.llm_saved_total / self.llm_requests_total if self.llm_requests_total else None

    @property
    def lag_s(self) -> float | None:
        """Seconds between the newest event and the frame's moment (batches land late)."""
        return None if self.newest_ts is None else max(0.0, self.at - self.newest_ts)


class TopState:
    """The runs being watched and their recent events; feed with :meth:`add`, read with
    :meth:`frame`. Memory is bounded by the events of the last :data:`SPARK_S` seconds."""

    def __init__(
        self,
        *,
        run: str | None = None,
        everything: bool = False,
        window_s: float = WINDOW_S,
        spark_s: int = SPARK_S,
    ) -> None:
        self._run = run
        self._everything = everything
        self.window_s = window_s
        self.spark_s = spark_s
        self._keep_s = max(window_s, float(spark_s))
        self._samples: deque[_Sample] = deque()
        # (file, run) -> totals; by default one entry per file (its current run).
        self._totals: dict[tuple[int, str | None], _RunTotals] = {}
        self._current: dict[int, str | None] = {}
        self._left: dict[int, set[str | None]] = {}  # runs replaced, per file: stragglers ignored
        self.newest_ts: float | None = None

    def add(self, record: Record) -> None:
        """Take one event (in file order per file)."""
        run = record.run
        if self._run is not None and run != self._run:
            return
        if not self._everything and self._run is None and not self._follow_run(record.file, run):
            return
        totals = self._totals.get((record.file, run))
        if totals is None:
            totals = self._totals[(record.file, run)] = _RunTotals(run)
        event = record.event
        kind = event["type"]
        totals.events += 1
        totals.kinds[kind] += 1
        ts = record.ts
        if ts is not None:
            totals.first_ts = ts if totals.first_ts is None else min(totals.first_ts, ts)
            self.newest_ts = ts if self.newest_ts is None else max(self.newest_ts, ts)
        if kind == "stats":
            totals.stats = event
        sample = None if ts is None else _sample(record, ts)
        if kind == "llm_call":
            model = _text(event.get("model")) or "unknown"
            totals.model_calls[model] += 1
            if event.get("dedup") in _SAVED:
                totals.llm_saved += 1
        elif kind == "error":
            totals.errors[_text(event.get("where")) or "unknown"] += 1
        if sample is not None:
            self._samples.append(sample)
            self._evict()

    def _follow_run(self, file: int, run: str | None) -> bool:
        """Default mode: is ``run`` this file's current run (switching when a new one starts)?"""
        if file in self._current:
            current = self._current[file]
            if run == current:
                return True
            if run in self._left.get(file, ()):
                return False  # a late line of a run already replaced
            self._left.setdefault(file, set()).add(current)
            self._totals.pop((file, current), None)
            self._samples = deque(s for s in self._samples if s.file != file)
        self._current[file] = run
        return True

    def _evict(self) -> None:
        # Batches land out of order by up to a batch interval: evict from the left only what is
        # older than the newest event by more than the span kept (the frame filters by time too).
        if self.newest_ts is None:
            return
        horizon = self.newest_ts - self._keep_s - WINDOW_S
        samples = self._samples
        while samples and samples[0].ts < horizon:
            samples.popleft()

    def frame(
        self,
        now: float,
        *,
        files: list[str] | None = None,
        missing: list[str] | None = None,
        skipped: int = 0,
    ) -> TopFrame:
        """The figures at ``now`` (or at the newest event when nothing happened for a window);
        ``files``, ``missing`` and ``skipped`` are what the reader says, shown as they are."""
        newest = self.newest_ts
        live = newest is None or newest >= now - self.window_s
        at = now if live or newest is None else newest
        starts = [t.first_ts for t in self._totals.values() if t.first_ts is not None]
        span = at - min(starts) if starts else self.window_s
        window = min(self.window_s, max(_MIN_SPAN_S, span))
        since = at - window

        messages = replies = calls = saved = 0
        statuses: Counter[str] = Counter()
        reply_ms: list[float] = []
        llm_ms: list[float] = []
        ttft_ms: list[float] = []
        per_model: dict[str, list[_Sample]] = {}
        recent_errors: Counter[str] = Counter()
        spark = [0] * self.spark_s
        # Whole seconds: live, the last complete one (the current second is still filling);
        # idle, up to the one that holds the newest event.
        spark_start = math.floor(at) + (0 if live else 1) - self.spark_s
        for s in self._samples:
            if s.ts > at:
                continue
            if s.kind == "reply":
                slot = math.floor(s.ts) - spark_start
                if 0 <= slot < self.spark_s:
                    spark[slot] += 1
            if s.ts < since:  # the window is [since, at]: a young run's first event is in
                continue
            if s.kind == "message":
                messages += 1
            elif s.kind == "reply":
                replies += 1
                statuses[s.label or "unknown"] += 1
                if s.latency_ms is not None:
                    reply_ms.append(s.latency_ms)
            elif s.kind == "llm_call":
                calls += 1
                saved += s.label in _SAVED
                per_model.setdefault(s.model or "unknown", []).append(s)
                if s.latency_ms is not None:
                    llm_ms.append(s.latency_ms)
                if s.ttft_ms is not None:
                    ttft_ms.append(s.ttft_ms)
            elif s.kind == "error":
                recent_errors[s.label or "unknown"] += 1

        totals = list(self._totals.values())
        model_totals: Counter[str] = Counter()
        error_totals: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        for t in totals:
            model_totals.update(t.model_calls)
            error_totals.update(t.errors)
            kinds.update(t.kinds)
        models = [
            ModelRow(
                model=name,
                calls=len(per_model.get(name, ())),
                per_s=len(per_model.get(name, ())) / window,
                failed=sum(s.failed for s in per_model.get(name, ())),
                latency_ms=Percentiles.of(
                    s.latency_ms for s in per_model.get(name, ()) if s.latency_ms is not None
                ),
                total=total,
            )
            for name, total in model_totals.items()
        ]
        models.sort(key=lambda row: (-row.calls, -row.total, row.model))
        errors = [
            ErrorRow(where, recent_errors.get(where, 0), total)
            for where, total in error_totals.items()
        ]
        errors.sort(key=lambda row: (-row.recent, -row.total, row.where))
        return TopFrame(
            at=at,
            live=live,
            newest_ts=newest,
            window_s=window,
            runs=list(dict.fromkeys(t.run for t in totals)),
            events=sum(t.events for t in totals),
            messages_per_s=messages / window,
            replies_per_s=replies / window,
            llm_calls_per_s=(calls - saved) / window,  # upstream, as `summary` counts them
            replies_by_status=dict(statuses.most_common()),
            reply_latency_ms=Percentiles.of(reply_ms),
            llm_latency_ms=Percentiles.of(llm_ms),
            ttft_ms=Percentiles.of(ttft_ms),
            llm_requests=calls,
            llm_saved=saved,
            llm_requests_total=kinds["llm_call"],
            llm_saved_total=sum(t.llm_saved for t in totals),
            models=models,
            errors=errors,
            replies_per_second=spark,
            totals={kind: kinds[kind] for kind in ("message", "reply", "llm_call", "error")},
            history_hit_rate=_hit_rate(totals),
            buffered_events=_buffered(totals),
            files=list(files or []),
            missing=list(missing or []),
            skipped=skipped,
        )


def _hit_rate(totals: list[_RunTotals]) -> float | None:
    """Hits over lookups of every run's last snapshot (percent), else the mean of their rates."""
    hits = lookups = 0
    rates: list[float] = []
    for t in totals:
        history = t.stats.get("history") if t.stats else None
        if not isinstance(history, dict):
            continue
        h, m = number(history.get("hits")), number(history.get("misses"))
        if h is not None and m is not None:
            hits += int(h)
            lookups += int(h + m)
        rate = number(history.get("hit_rate"))
        if rate is not None:
            rates.append(rate)
    if lookups:
        return hits * 100.0 / lookups
    return sum(rates) / len(rates) if rates else None


def _buffered(totals: list[_RunTotals]) -> int | None:
    found = False
    pending = 0
    for t in totals:
        batch = t.stats.get("batch") if t.stats else None
        value = number(batch.get("pending_events")) if isinstance(batch, dict) else None
        if value is not None:
            found = True
            pending += int(value)
    return pending if found else None
