"""The running totals behind the bot's Prometheus metrics, and the collector that exposes them.

:class:`Tallies` is fed one metrics event at a time (``PrometheusExporter.observe``, on the bot's
hot path) and only adds to plain ``dict``/``list`` tallies: no lock, no ``labels()`` lookup, no
object per sample. :class:`TallyCollector` builds prometheus_client's metric families from them
when a scrape asks, never before. Both run on the event loop's thread, so nothing needs a lock.

Label values are bounded: model names, statuses, dedup roles, error sites and command names come
from the bot's code and config; never a user or a channel id. Each label keeps at most
:data:`MAX_LABEL_VALUES` distinct values (later ones are counted as ``other``) so a bug upstream
cannot blow up the series count.
"""

from __future__ import annotations

import contextlib
import logging
import math
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = ["LATENCY_BUCKETS", "MAX_LABEL_VALUES", "Tallies", "TallyCollector"]

logger = logging.getLogger("bot.prometheus")

# Seconds. A chat answer's useful range: a cached/deduplicated answer in tens of ms, a small local
# model's first token at ~0.2 s, a long streamed answer in tens of seconds, the LLM timeout beyond.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    45.0,
    60.0,
)
# As prometheus_client spells `le` ("1.0", "+Inf"), so our series look like its own histograms'.
_BUCKET_LABELS = (*(repr(b) for b in LATENCY_BUCKETS), "+Inf")
# The same bounds in milliseconds, the unit of the events: no division per sample.
_BOUNDS_MS = tuple(round(b * 1000.0, 6) for b in LATENCY_BUCKETS)
_INF = math.inf

MAX_LABEL_VALUES = 64
_OTHER = "other"
_UNKNOWN = "unknown"
_MAX_LABEL_LENGTH = 128

# Gauges read at scrape time: (key in the gauges mapping, metric name, help, factor).
_GAUGES: tuple[tuple[str, str, str, float], ...] = (
    ("answers_in_flight", "botctl_answers_in_flight", "Answers being generated or sent now.", 1.0),
    (
        "history_hit_rate",
        "botctl_history_hit_ratio",
        "Chat history cache hits over lookups since start (0-1).",
        0.01,  # the bot reports a percent; Prometheus wants ratios
    ),
    (
        "metrics_pending_events",
        "botctl_metrics_buffer_events",
        "Metrics events buffered, not yet written to the metrics file.",
        1.0,
    ),
    (
        "dedup_pending_requests",
        "botctl_dedup_pending_requests",
        "Distinct LLM requests in flight in the deduplicator.",
        1.0,
    ),
)


class _Labels:
    """Bounded label values for one label: the first :data:`MAX_LABEL_VALUES` seen, then ``other``."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, value: Any) -> str:
        if value.__class__ is not str:
            return _UNKNOWN if value is None else _OTHER
        if value in self.seen:
            return value
        if not value:
            return _UNKNOWN
        if len(self.seen) >= MAX_LABEL_VALUES or len(value) > _MAX_LABEL_LENGTH:
            return _OTHER
        self.seen.add(value)
        return value


class _Histogram:
    """Per-bucket counts (not cumulative: one increment per sample) and the sum of the samples."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BOUNDS_MS) + 1)
        self.total = 0.0

    def buckets(self) -> list[tuple[str, float]]:
        running = 0
        out: list[tuple[str, float]] = []
        for label, count in zip(_BUCKET_LABELS, self.counts, strict=True):
            running += count
            out.append((label, float(running)))
        return out


class _Model:
    """One model's histograms and token counts."""

    __slots__ = ("latency", "tokens_in", "tokens_out", "ttft")

    def __init__(self) -> None:
        self.latency = _Histogram()
        self.ttft = _Histogram()
        self.tokens_in = 0
        self.tokens_out = 0


class _Calls:
    """One ``(model, dedup, status)`` series of ``botctl_llm_calls_total``."""

    __slots__ = ("count", "model", "upstream")

    def __init__(self, model: _Model, upstream: bool) -> None:
        self.count = 0
        self.model = model
        # Tokens the model processed: a follower or a window hit shares its leader's answer, and
        # its event repeats the leader's counts, which cost nothing a second time.
        self.upstream = upstream


# Distinct raw (model, dedup, status) triples remembered; beyond it (junk values) each event takes
# the slower path through the label bounds, still counted correctly.
_MAX_CACHED_KEYS = 4096


class Tallies:
    """The running totals behind every counter and histogram, one handler per event type."""

    def __init__(self) -> None:
        self.messages = 0
        self.replies: dict[str, int] = {}
        self.reply_latency = _Histogram()
        self.models: dict[str, _Model] = {}
        self.calls: dict[tuple[str, str, str], _Calls] = {}
        self.errors: dict[str, int] = {}
        self.commands: dict[str, int] = {}
        self._calls_by_raw: dict[tuple[Any, Any, Any], _Calls] = {}
        self.model = _Labels()
        self.status = _Labels()
        self.dedup = _Labels()
        self.where = _Labels()
        self.command = _Labels()
        self.failures = 0

    def observe(self, event: Mapping[str, Any]) -> None:
        """Count one metrics event; never raises (it runs inside the bot's ``log_event``).

        One function with the three per-answer types inlined, most of their work on locals: a
        method call or an attribute lookup saved is ~50-100 ns on a path every event takes.
        """
        try:
            kind = event.get("type")
            if kind == "llm_call":
                # One dict lookup finds the series from the raw field values, so labels are
                # bounded once per distinct triple, not per event.
                raw = (event.get("model"), event.get("dedup"), event.get("status"))
                try:
                    calls = self._calls_by_raw.get(raw)
                except TypeError:  # an unhashable value: not cacheable
                    calls = None
                if calls is None:
                    calls = self._series(raw)
                calls.count += 1
                model = calls.model
                value: Any = event.get("latency_ms")
                cls = value.__class__
                if (cls is float or cls is int) and 0.0 <= value < _INF:
                    histogram = model.latency
                    histogram.counts[bisect_left(_BOUNDS_MS, value)] += 1
                    histogram.total += value
                value = event.get("ttft_ms")
                cls = value.__class__
                if (cls is float or cls is int) and 0.0 <= value < _INF:
                    histogram = model.ttft
                    histogram.counts[bisect_left(_BOUNDS_MS, value)] += 1
                    histogram.total += value
                if calls.upstream:
                    value = event.get("tokens_in")
                    if value.__class__ is int and value > 0:
                        model.tokens_in += value
                    value = event.get("tokens_out")
                    if value.__class__ is int and value > 0:
                        model.tokens_out += value
            elif kind == "message":
                self.messages += 1
            elif kind == "reply":
                status: Any = event.get("status")
                if status.__class__ is not str or status not in self.status.seen:
                    status = self.status(status)  # the slow path, once per new value
                replies = self.replies
                replies[status] = replies.get(status, 0) + 1
                value = event.get("latency_ms")
                cls = value.__class__
                if (cls is float or cls is int) and 0.0 <= value < _INF and status != "cancelled":
                    histogram = self.reply_latency
                    histogram.counts[bisect_left(_BOUNDS_MS, value)] += 1
                    histogram.total += value
            elif kind == "error":
                where = self.where(event.get("where"))
                self.errors[where] = self.errors.get(where, 0) + 1
            elif kind == "command":
                name = self.command(event.get("name"))
                self.commands[name] = self.commands.get(name, 0) + 1
            # stats, retrieval and unknown types have no counter
        except Exception:
            # Never the bot's problem: an odd event is skipped, and said once per burst.
            if not self.failures:
                logger.exception("a metrics event could not be counted for Prometheus")
            self.failures += 1

    def _series(self, raw: tuple[Any, Any, Any]) -> _Calls:
        key = (self.model(raw[0]), self.dedup(raw[1]), self.status(raw[2]))
        calls = self.calls.get(key)
        if calls is None:
            model = self.models.get(key[0])
            if model is None:
                model = self.models[key[0]] = _Model()
            calls = self.calls[key] = _Calls(model, key[1] in ("leader", "off"))
        if len(self._calls_by_raw) < _MAX_CACHED_KEYS:
            with contextlib.suppress(TypeError):  # unhashable: the slow path each time
                self._calls_by_raw[raw] = calls
        return calls


class TallyCollector:
    """Builds the metric families from the tallies and the gauges, at scrape time only."""

    def __init__(self, tallies: Tallies, gauges: Callable[[], Mapping[str, float]] | None) -> None:
        self._t = tallies
        self._gauges = gauges
        self._gauge_failures = 0

    def collect(self) -> Iterator[Metric]:
        t = self._t
        yield CounterMetricFamily(
            "botctl_messages", "User messages taken by the bot.", value=t.messages
        )
        replies = CounterMetricFamily("botctl_replies", "Replies by status.", labels=["status"])
        for status, n in sorted(t.replies.items()):
            replies.add_metric([status], n)
        yield replies
        calls = CounterMetricFamily(
            "botctl_llm_calls",
            "LLM calls by model, dedup role (leader and off went upstream; follower and window "
            "were saved) and status.",
            labels=["model", "dedup", "status"],
        )
        for key, series in sorted(t.calls.items()):
            calls.add_metric(list(key), series.count)
        yield calls
        tokens = CounterMetricFamily(
            "botctl_llm_tokens",
            "Tokens the LLM processed (upstream calls only), by model and direction (in, out).",
            labels=["model", "direction"],
        )
        for name, model in sorted(t.models.items()):
            tokens.add_metric([name, "in"], model.tokens_in)
            tokens.add_metric([name, "out"], model.tokens_out)
        yield tokens
        yield self._by_one_label(
            "botctl_errors", "Error events by where they happened.", "where", t.errors
        )
        yield self._by_one_label("botctl_commands", "Commands run, by name.", "name", t.commands)
        reply = HistogramMetricFamily(
            "botctl_reply_latency_seconds",
            "Time from a user's message to the last part of its reply sent.",
        )
        reply.add_metric([], t.reply_latency.buckets(), t.reply_latency.total / 1000.0)
        yield reply
        yield self._per_model(
            "botctl_llm_latency_seconds",
            "LLM call duration, to the stream's end.",
            {name: model.latency for name, model in t.models.items()},
        )
        yield self._per_model(
            "botctl_llm_time_to_first_token_seconds",
            "Time from an LLM call's start to its first token.",
            {name: model.ttft for name, model in t.models.items()},
        )
        yield from self._gauge_families()

    @staticmethod
    def _by_one_label(name: str, doc: str, label: str, counts: dict[str, int]) -> Metric:
        family = CounterMetricFamily(name, doc, labels=[label])
        for value, n in sorted(counts.items()):
            family.add_metric([value], n)
        return family

    @staticmethod
    def _per_model(name: str, doc: str, histograms: dict[str, _Histogram]) -> Metric:
        family = HistogramMetricFamily(name, doc, labels=["model"])
        for model, histogram in sorted(histograms.items()):
            family.add_metric([model], histogram.buckets(), histogram.total / 1000.0)
        return family

    def _gauge_families(self) -> Iterator[Metric]:
        if self._gauges is None:
            return
        try:
            values = dict(self._gauges())
        except Exception:
            # A scrape must still answer with the counters; say it once per run of failures.
            if not self._gauge_failures:
                logger.exception("reading the gauges for /metrics failed")
            self._gauge_failures += 1
            return
        self._gauge_failures = 0
        for key, name, doc, factor in _GAUGES:
            value = values.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                yield GaugeMetricFamily(name, doc, value=float(value) * factor)
