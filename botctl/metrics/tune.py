"""``botctl metrics tune``: the batch size and interval that the traffic in a metrics file calls for.

The bot buffers every event and writes the buffer when ``batch_size`` events are waiting or
``batch_interval`` seconds have passed since the last write (:class:`bot.metrics.MetricsService`).
A SIGKILL loses what is buffered. At a steady rate of ``r`` events per second:

- an event waits at most ``min(interval, (size - 1) / r)`` seconds (the ``size``-th event is
  written at once), so that is what a crash loses, in seconds of traffic;
- the buffer is written every ``min(size / r, interval)`` seconds, and never more often than events
  arrive: ``60 * min(r, max(r / size, 1 / interval))`` writes a minute.

The rate is measured per minute of the run (median, p95, the busiest minute and 10 s); the
recommendation is the fewest writes that keep a crash's loss within ``max_loss_seconds`` at p95
traffic: an interval of ``max_loss_seconds`` (which bounds the loss at any rate) and a size that lets
the interval do the writing at p95 traffic while keeping the busiest minute's writes within
``max_writes_per_minute``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from botctl.errors import BotctlError
from botctl.metrics.events import Record, Selection, number
from botctl.metrics.summary import nearest_rank

MINUTE = 60.0
BURST_WINDOW_S = 10.0
# A last, partial minute shorter than this says little about a rate; it is left out.
MIN_PARTIAL_S = 30.0


@dataclass(frozen=True, slots=True)
class Traffic:
    """The event rate over the run: per-minute counts and their median, p95 and peaks."""

    events: int
    span_s: float
    per_minute: list[int]
    rate_p50: float  # events per second
    rate_p95: float
    rate_peak: float  # the busiest minute
    burst_rate: float  # the busiest 10 s
    burst_minutes: int  # minutes over twice the median

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "span_s": self.span_s,
            "per_minute": list(self.per_minute),
            "rate_per_s": {
                "p50": self.rate_p50,
                "p95": self.rate_p95,
                "peak_minute": self.rate_peak,
                "peak_10s": self.burst_rate,
            },
            "burst_minutes": self.burst_minutes,
        }


@dataclass(frozen=True, slots=True)
class BatchSettings:
    batch_size: int
    batch_interval: float

    def to_json(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "batch_interval": self.batch_interval}

    def toml(self) -> str:
        # A TOML float (10.0, not 10): the setting is seconds, fractions allowed.
        return f"batch_size = {self.batch_size}\nbatch_interval = {float(self.batch_interval)!r}"


@dataclass(frozen=True, slots=True)
class Expected:
    """What a setting does at a rate: writes a minute, and what a SIGKILL loses at worst."""

    rate: float
    writes_per_minute: float
    loss_seconds: float
    loss_events: float

    def to_json(self) -> dict[str, Any]:
        return {
            "rate_per_s": self.rate,
            "writes_per_minute": self.writes_per_minute,
            "max_loss_seconds": self.loss_seconds,
            "max_loss_events": self.loss_events,
        }


def expect(settings: BatchSettings, rate: float) -> Expected:
    """The flush rule's writes and worst-case loss at a steady ``rate`` (events per second)."""
    size, interval = settings.batch_size, settings.batch_interval
    if rate <= 0:
        return Expected(rate, 0.0, 0.0, 0.0)
    waited = min(interval, (size - 1) / rate)
    writes = MINUTE * min(rate, max(rate / size, 1 / interval))
    return Expected(rate, writes, waited, min(size - 1.0, rate * interval))


@dataclass(frozen=True, slots=True)
class Limits:
    max_loss_seconds: float = 10.0
    max_writes_per_minute: float = 60.0

    def met_by(self, expected: Expected) -> bool:
        return (
            expected.loss_seconds <= self.max_loss_seconds
            and expected.writes_per_minute <= self.max_writes_per_minute
        )


@dataclass(frozen=True, slots=True)
class SettingFigures:
    settings: BatchSettings
    at_p50: Expected
    at_p95: Expected
    meets: bool

    def to_json(self) -> dict[str, Any]:
        return {
            **self.settings.to_json(),
            "at_p50": self.at_p50.to_json(),
            "at_p95": self.at_p95.to_json(),
            "meets_limits": self.meets,
        }


@dataclass(frozen=True, slots=True)
class Tuning:
    """What ``botctl metrics tune`` reports; :meth:`to_json` is its ``--json`` object."""

    traffic: Traffic
    limits: Limits
    recommended: SettingFigures
    current: SettingFigures | None
    runs: list[str | None] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    # Each process (one file) and each run writes with its own settings: with several, the
    # figures are the busiest writer's, and that one is named.
    writers: int = 1
    busiest: str | None = None

    def to_json(self) -> dict[str, Any]:
        expected = self.recommended.at_p95
        return {
            "recommended": self.recommended.settings.to_json(),
            "current": None if self.current is None else self.current.settings.to_json(),
            "expected": {
                "writes_per_minute": expected.writes_per_minute,
                "max_loss_seconds": expected.loss_seconds,
            },
            "limits": {
                "max_loss_seconds": self.limits.max_loss_seconds,
                "max_writes_per_minute": self.limits.max_writes_per_minute,
            },
            "figures": {
                "recommended": self.recommended.to_json(),
                "current": None if self.current is None else self.current.to_json(),
            },
            "traffic": self.traffic.to_json(),
            "runs": list(self.runs),
            "files": list(self.files),
            "writers": self.writers,
            "busiest_writer": self.busiest,
        }


def measure(stamps: Sequence[float]) -> Traffic:
    """The rate of events at ``stamps`` (seconds), per minute from the first event on."""
    ordered = sorted(stamps)
    start, end = ordered[0], ordered[-1]
    span = end - start
    full = int(span // MINUTE)
    partial = span - full * MINUTE
    if full == 0:
        counts, lengths = [len(ordered)], [max(span, 1.0)]
    else:
        keep_partial = partial >= MIN_PARTIAL_S
        counts = [0] * (full + keep_partial)
        for ts in ordered:
            index = int((ts - start) // MINUTE)
            if index < len(counts):
                counts[index] += 1
        lengths = [MINUTE] * full + ([partial] if keep_partial else [])
    rates = sorted(count / length for count, length in zip(counts, lengths, strict=True))
    p50 = nearest_rank(rates, 50) or 0.0
    return Traffic(
        events=len(ordered),
        span_s=span,
        per_minute=counts,
        rate_p50=p50,
        rate_p95=nearest_rank(rates, 95) or 0.0,
        rate_peak=rates[-1],
        burst_rate=_busiest(ordered, BURST_WINDOW_S) / min(BURST_WINDOW_S, max(span, 1.0)),
        burst_minutes=sum(1 for rate in rates if p50 > 0 and rate > 2 * p50),
    )


def _busiest(ordered: Sequence[float], window: float) -> int:
    """The most events in any ``window`` seconds (two pointers over sorted stamps)."""
    best = first = 0
    for last, ts in enumerate(ordered):
        while ts - ordered[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def recommend(traffic: Traffic, limits: Limits) -> BatchSettings:
    """The fewest writes within both limits: see the module's docstring."""
    interval = limits.max_loss_seconds
    floor = MINUTE * min(traffic.rate_p95, 1 / interval)
    if floor > limits.max_writes_per_minute:
        raise BotctlError(
            f"no setting keeps both limits at this traffic (p95 {traffic.rate_p95:.2f} events/s): "
            f"writing at least every {interval:g} s is {floor:.1f} writes a minute; allow "
            f"--max-loss-seconds {MINUTE / limits.max_writes_per_minute:g} or more, or "
            f"--max-writes-per-minute {math.ceil(floor)} or more"
        )
    size = max(
        1,
        math.ceil(traffic.rate_p95 * interval - 1e-9),
        math.ceil(MINUTE * traffic.rate_peak / limits.max_writes_per_minute - 1e-9),
    )
    return BatchSettings(batch_size=size, batch_interval=interval)


def current_settings(records: Sequence[Record]) -> BatchSettings | None:
    """``batch.batch_size`` and ``batch.batch_interval`` of the last ``stats`` event that has them."""
    for record in reversed(records):
        batch = record.event.get("batch") if record.event.get("type") == "stats" else None
        if not isinstance(batch, dict):
            continue
        size, interval = number(batch.get("batch_size")), number(batch.get("batch_interval"))
        if size is not None and interval is not None and size >= 1 and interval > 0:
            return BatchSettings(int(size), interval)
    return None


def figures(settings: BatchSettings, traffic: Traffic, limits: Limits) -> SettingFigures:
    at_p95 = expect(settings, traffic.rate_p95)
    return SettingFigures(
        settings, expect(settings, traffic.rate_p50), at_p95, limits.met_by(at_p95)
    )


def tune(selection: Selection, limits: Limits, *, files: list[str], skipped: int) -> Tuning:
    """Measure the runs chosen and recommend; :class:`BotctlError` when there is nothing to measure."""
    stamps = [ts for ts in (record.ts for record in selection.records) if ts is not None]
    if len(stamps) < 2:
        found = f"{len(stamps)} timestamped event{'' if len(stamps) == 1 else 's'}"
        junk = (
            f", {skipped} line{'' if skipped == 1 else 's'} that are not events" if skipped else ""
        )
        raise BotctlError(
            f"nothing to tune from in {', '.join(files)} ({found}{junk}); run the bot "
            "(`botctl run`) and pass the metrics file it writes"
        )
    writers: dict[tuple[int, str | None], list[Record]] = {}
    for record in selection.records:
        writers.setdefault((record.file, record.run), []).append(record)
    measured = [
        (measure(times), key, records)
        for key, records in writers.items()
        if len(times := [t for t in (r.ts for r in records) if t is not None]) >= 2
    ]
    if not measured:  # no writer alone has two events: the traffic of them all, as one
        measured = [(measure(stamps), (0, None), list(selection.records))]
    traffic, (file_index, run_id), records = max(
        measured, key=lambda m: (m[0].rate_p95, m[0].rate_peak)
    )
    busiest = None
    if len(writers) > 1:
        where = files[file_index] if file_index < len(files) else "?"
        busiest = f"{where} (run {run_id or '-'})"
    recommended = recommend(traffic, limits)
    current = current_settings(records)
    return Tuning(
        traffic=traffic,
        limits=limits,
        recommended=figures(recommended, traffic, limits),
        current=None if current is None else figures(current, traffic, limits),
        runs=selection.run_ids,
        files=files,
        writers=len(writers),
        busiest=busiest,
    )
