"""Reading the bot's JSON Lines metrics file: parsing, summarising, following it like ``tail -F``.

The file is appended in batches by ``bot.metrics.MetricsService`` while we read it, so a reader can
always meet a last line whose newline has not landed yet, a file that does not exist yet, a file
truncated to zero, or a file rotated away (renamed and recreated). Nothing here is fatal on bad
input: lines that are not JSON objects with a string ``type`` are skipped and counted.

This module has no terminal code: :func:`summarize` returns a :class:`MetricsSummary` and
:class:`Follower` returns raw lines, and ``botctl.reporters.metrics`` renders them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from bot.percentile import percentile

Event = dict[str, Any]

DEFAULT_METRICS_FILE = "profiles/metrics.jsonl"
METRICS_FILE_ENV = "BOT_METRICS_FILE"

# Between 0.1 and 0.25 s: quick enough to feel live, slow enough to cost nothing on 2 cores.
DEFAULT_POLL_INTERVAL = 0.2

_READ_CHUNK = 1 << 20


def default_metrics_path() -> Path:
    """The bot's default metrics file: ``$BOT_METRICS_FILE`` or ``profiles/metrics.jsonl``."""
    return Path(os.environ.get(METRICS_FILE_ENV) or DEFAULT_METRICS_FILE)


def parse_line(line: bytes) -> Event | None:
    """One metrics line as an event; ``None`` unless it is a JSON object with a string ``type``.

    A line cut short by a writer that has not finished is never valid JSON (an object ends with its
    closing brace), so this also tells a torn line from a complete one.
    """
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    return value


def iter_lines(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The non-blank lines of a file, without their line ending; the last one may lack a newline."""
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield line


class EventStream:
    """Iterates over the events of a metrics file; :attr:`torn` counts the lines it skipped.

    Iterate once; the count is final when the iteration ends. Opening the file happens on the
    first ``next()``, so a missing file raises ``FileNotFoundError`` there.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.torn = 0

    def __iter__(self) -> Iterator[Event]:
        for line in iter_lines(self.path):
            event = parse_line(line)
            if event is None:
                self.torn += 1
                continue
            yield event


def iter_events(path: str | os.PathLike[str]) -> EventStream:
    """The valid events of ``path`` in file order, skipping (counting in ``.torn``) bad lines."""
    return EventStream(path)


# --------------------------------------------------------------------------------------------------
# Summary


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
            p50=percentile(ordered, 50),
            p95=percentile(ordered, 95),
            p99=percentile(ordered, 99),
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


# --------------------------------------------------------------------------------------------------
# Following


@dataclass
class _Open:
    file: BinaryIO
    ident: tuple[int, int]  # (st_dev, st_ino): what "the same file" means across a rename
    position: int = 0
    partial: bytes = b""


class Follower:
    """Follows a file by name, like ``tail -F``, yielding only complete lines.

    - The file may not exist yet: :meth:`poll` returns nothing until it appears.
    - A last line without its newline stays buffered until the newline arrives.
    - Truncation (size below our position) reopens from the start.
    - Rotation (the path now names another inode or device, or is a new file that replaced it)
      reads what the old file still holds, then the new file from its start. A path that vanished
      without a replacement keeps the old file open, as a writer may still append to it.

    Truncation followed by a rewrite past our position before the next poll cannot be seen by
    size alone; ``tail -F`` has the same blind spot.

    Lines come back without their ``\\n`` (a ``\\r`` before it is kept: that is the raw content)
    and blank lines are dropped. :attr:`dropped` counts unterminated fragments abandoned by a
    truncation or a rotation.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> None:
        self.path = Path(path)
        self.poll_interval = poll_interval
        self.dropped = 0
        self._open: _Open | None = None

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._open is not None:
            self._open.file.close()
            self._open = None

    @property
    def position(self) -> int:
        """Bytes consumed from the current file (complete lines plus the buffered partial one)."""
        return 0 if self._open is None else self._open.position

    def poll(self) -> list[bytes]:
        """One pass: the complete lines that arrived since the last call (possibly none)."""
        lines: list[bytes] = []
        current = self._open
        if current is None:
            current = self._try_open()
            if current is None:
                return lines
        if os.fstat(current.file.fileno()).st_size < current.position:
            self._restart(current)
        lines += self._read(current)

        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return lines  # renamed away and not recreated yet: keep the old file
        if (st.st_dev, st.st_ino) != current.ident:
            # Rotated: whatever the writer put in the old file before switching comes first.
            lines += self._read(current)
            if current.partial:
                self.dropped += 1
            self.close()
            fresh = self._try_open()
            if fresh is not None:
                lines += self._read(fresh)
        return lines

    def follow(
        self, stop: threading.Event | None = None, *, idle_timeout: float | None = None
    ) -> Iterator[bytes]:
        """Yield complete lines forever, sleeping :attr:`poll_interval` when nothing is new.

        Ends when ``stop`` is set, or after ``idle_timeout`` seconds without a new line (for tests
        and scripts); Ctrl-C surfaces as ``KeyboardInterrupt`` from the sleep.
        """
        idle_since = time.monotonic()
        while stop is None or not stop.is_set():
            lines = self.poll()
            if lines:
                idle_since = time.monotonic()
                yield from lines
                continue
            if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                return
            if stop is not None:
                stop.wait(self.poll_interval)
            else:
                time.sleep(self.poll_interval)

    def _try_open(self) -> _Open | None:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - kept open across polls, closed in close()
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            return None
        st = os.fstat(f.fileno())
        self._open = _Open(file=f, ident=(st.st_dev, st.st_ino))
        return self._open

    def _restart(self, current: _Open) -> None:
        if current.partial:
            self.dropped += 1
        current.file.seek(0)
        current.position = 0
        current.partial = b""

    @staticmethod
    def _read(current: _Open) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            chunk = current.file.read(_READ_CHUNK)
            if not chunk:
                break
            current.position += len(chunk)
            pieces = (current.partial + chunk).split(b"\n")
            current.partial = pieces.pop()
            lines.extend(piece for piece in pieces if piece.strip())
        return lines
