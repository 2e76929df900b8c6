"""Batched metrics: events go to an in-memory buffer and reach a JSON Lines file in batches.

:meth:`MetricsService.log_event` only builds a dict and appends it to a bounded deque: no I/O and
no serialisation on the caller's path. A background task writes a batch when ``batch_size`` events
wait or ``batch_interval`` seconds have passed since the last write, whichever comes first, and
logs a ``stats`` snapshot every ``stats_interval`` seconds. A graceful stop writes what is left.

One batch is one ``write()`` of concatenated orjson lines, to a file opened per batch in append mode
(so rotation or removal of the file needs no special handling, and a reader never sees a batch
interleaved with another writer's). Large batches are serialised and written in a worker thread so
the event loop is never blocked for long; small ones are cheaper inline than the thread hop.

A failing write is counted, reported once per outage on the ``bot.metrics`` logger, and retried
later with backoff; the events stay buffered (up to ``max_buffer``, beyond which the oldest are
dropped and counted) so nothing is lost to a transient problem.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.metrics_io import Outcome, write_events
from bot.redaction import FORBIDDEN_KEYS, forbidden

if TYPE_CHECKING:
    from bot.dedup import RequestDeduplicator
    from bot.history import ChatHistoryManager

__all__ = ["FORBIDDEN_KEYS", "MetricsService"]

logger = logging.getLogger("bot.metrics")

# `ts`, `type` and `run` are the service's own; data cannot override them.
_OWN_KEYS = frozenset({"ts", "type", "run"})
# Keys already found safe (the bot's handful): the common event is one C-level superset check.
_VETTED_MAX = 4096

# Up to this many events a batch is serialised and written inline. Measured on this machine: the
# hop to a worker thread costs the loop ~0.1-0.13 ms of CPU by itself, a 50-event batch ~0.06 ms
# inline and a 256-event one ~0.2 ms, so the crossover is about here.
_INLINE_MAX_EVENTS = 200
# Distinct event types counted; beyond it they are lumped together so the map stays bounded.
_MAX_EVENT_TYPES = 1024
_OTHER_TYPES = "_other"
# First retry after a failed write; doubles per consecutive failure, capped by batch_interval.
_RETRY_BASE = 0.5
_RETRY_MAX_DOUBLINGS = 6

_DEDUP_DEFAULTS: dict[str, Any] = {
    "requests": 0,
    "leaders": 0,
    "followers": 0,
    "window_hits": 0,
    "saved_calls": 0,
    "errors": 0,
    "pending_requests": 0,
    "window_entries": 0,
    "window": 0.0,
    "dedup_ratio": 0.0,
}
_HISTORY_DEFAULTS: dict[str, Any] = {
    "channels": 0,
    "capacity": 0,
    "max_messages": 0,
    "hits": 0,
    "misses": 0,
    "evictions": 0,
    "hit_rate": 0.0,
}


class MetricsService:
    """Buffers events and writes them to ``path`` (JSON Lines) in batches from a background task."""

    def __init__(
        self,
        path: str | os.PathLike[str] = "profiles/metrics.jsonl",
        batch_size: int = 50,
        batch_interval: float = 60.0,
        *,
        max_buffer: int = 100_000,
        fsync: bool = False,
        stats_interval: float | None = None,
        deduplicator: RequestDeduplicator | None = None,
        history: ChatHistoryManager | None = None,
        run_id: str | None = None,
        fields: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if not batch_interval > 0:
            raise ValueError(f"batch_interval must be > 0 seconds, got {batch_interval!r}")
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be >= 1, got {max_buffer!r}")
        if stats_interval is not None and not stats_interval > 0:
            raise ValueError(f"stats_interval must be > 0 seconds, got {stats_interval!r}")
        self._path = Path(path)
        self._batch_size = batch_size
        self._batch_interval = float(batch_interval)
        self._max_buffer = max_buffer
        self._fsync = fsync
        self._stats_interval = float(batch_interval if stats_interval is None else stats_interval)
        self._dedup = deduplicator
        self._history = history
        self._clock = clock
        # Every event says which run wrote it (and, from botctl, which shards): `metrics summary`
        # reads one run at a time, so appended runs never mix.
        self.run_id = run_id or secrets.token_hex(3)
        self._fields = {"run": self.run_id, **(fields or {})}
        self._vetted: set[Any] = set()
        self._final_logged = False
        self._observers: list[Callable[[dict[str, Any]], None]] = []

        self._buffer: deque[dict[str, Any]] = deque(maxlen=max_buffer)
        self._counts: dict[str, int] = {}
        self._events_written = 0
        self._flushes = 0
        self._last_flush_ts: float | None = None
        self._write_errors = 0
        self._dropped = 0
        self._failures = 0  # consecutive failed writes; > 0 means an outage is being reported
        self._retry_at: float | None = None
        self._next_flush = time.monotonic() + self._batch_interval

        self._wake = asyncio.Event()  # enough events wait: write now
        self._stop_evt = asyncio.Event()  # also wakes the task during a retry backoff
        self._task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        # Flushes run shielded in their own tasks; hold them so they are not collected mid-write.
        self._writes: set[asyncio.Task[int]] = set()

    @property
    def path(self) -> Path:
        return self._path

    # -- the hot path ------------------------------------------------------------------------

    def log_event(self, event_type: str, data: Mapping[str, Any] | None = None) -> None:
        """Buffer one event; no I/O. Forbidden keys (message text, secrets) are dropped."""
        event: dict[str, Any] = {"ts": self._clock(), "type": event_type, **self._fields}
        if data:
            # Top-level keys are checked here (the common event: one C-level superset check);
            # keys nested in values are dropped when the batch is written (bot.redaction).
            vetted = self._vetted
            if vetted.issuperset(data):
                event.update(data)
            else:
                for key, value in data.items():
                    if key in _OWN_KEYS or forbidden(key):
                        continue
                    if len(vetted) < _VETTED_MAX:
                        vetted.add(key)
                    event[key] = value
        buffer = self._buffer
        if len(buffer) == self._max_buffer:
            self._dropped += 1  # the deque's maxlen pushes the oldest out
        buffer.append(event)
        counts = self._counts
        count = counts.get(event_type)
        if count is not None:
            counts[event_type] = count + 1
        elif len(counts) < _MAX_EVENT_TYPES:
            counts[event_type] = 1
        else:
            counts[_OTHER_TYPES] = counts.get(_OTHER_TYPES, 0) + 1
        if len(buffer) >= self._batch_size and not self._wake.is_set():
            self._wake.set()
        for observe in self._observers:
            observe(event)

    def add_observer(self, observe: Callable[[dict[str, Any]], None]) -> None:
        """Call ``observe(event)`` with every event as it is logged (a live view, an exporter);
        the event is the dict written to the file: read it, never change it."""
        self._observers.append(observe)

    # -- writing -----------------------------------------------------------------------------

    def _take(self) -> list[dict[str, Any]]:
        batch = list(self._buffer)
        self._buffer.clear()
        return batch

    def _settle(self, batch: list[dict[str, Any]], outcome: Outcome) -> int:
        """Book-keeping after a write attempt; on failure the batch goes back in front."""
        if outcome.error is None:
            self._events_written += outcome.written
            self._dropped += outcome.unserialisable
            self._flushes += 1
            self._last_flush_ts = self._clock()
            self._next_flush = time.monotonic() + self._batch_interval
            if self._failures:
                logger.info("metrics writes to %s work again", self._path)
            self._failures = 0
            self._retry_at = None
            return outcome.written
        self._write_errors += 1
        if not self._failures:
            exc = outcome.error
            logger.warning(
                "cannot write metrics to %s (%s: %s); keeping events buffered and retrying",
                self._path,
                type(exc).__name__,
                getattr(exc, "strerror", None) or exc,
            )
        self._failures += 1
        delay = _RETRY_BASE * 2 ** min(self._failures - 1, _RETRY_MAX_DOUBLINGS)
        self._retry_at = time.monotonic() + min(delay, self._batch_interval)
        self._requeue(batch)
        return 0

    def _requeue(self, batch: Iterable[dict[str, Any]]) -> None:
        # Older events go back in front of newer ones; if that overflows, the oldest drop.
        merged: deque[dict[str, Any]] = deque(batch, maxlen=self._max_buffer)
        before = len(merged) + len(self._buffer)
        merged.extend(self._buffer)
        self._dropped += before - len(merged)
        self._buffer = merged

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

    async def _flush_locked(self) -> int:
        async with self._get_lock():
            if not self._buffer:
                return 0
            batch = self._take()
            try:
                if len(batch) <= _INLINE_MAX_EVENTS:
                    outcome = write_events(self._path, batch, self._fsync)
                else:
                    outcome = await asyncio.to_thread(write_events, self._path, batch, self._fsync)
            except BaseException:
                # Cancelled (loop teardown): better written twice than lost.
                self._requeue(batch)
                raise
            return self._settle(batch, outcome)

    async def flush(self) -> int:
        """Write everything buffered now; returns the number of events written."""
        # Shielded: a caller that gives up does not abort a write (and its book-keeping) midway.
        task = asyncio.get_running_loop().create_task(self._flush_locked())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return await asyncio.shield(task)

    # -- statistics --------------------------------------------------------------------------

    def _log_stats(self, *, final: bool = False) -> None:
        data: dict[str, Any] = {
            "dedup": self._dedup.get_stats() if self._dedup is not None else {},
            "history": self._history.get_stats() if self._history is not None else {},
            "batch": self.get_batch_stats(),
        }
        if final:
            # The stop's last snapshot, written by one more flush with what is pending (itself
            # included): a reader adds those to make the run's totals its own (metrics summary).
            data["final"] = True
            self._final_logged = True
        self.log_event("stats", data)

    def get_batch_stats(self) -> dict[str, Any]:
        return {
            "pending_events": len(self._buffer),
            "events_written": self._events_written,
            "flushes": self._flushes,
            "last_flush_ts": self._last_flush_ts,
            "write_errors": self._write_errors,
            "dropped_events": self._dropped,
            "batch_size": self._batch_size,
            "batch_interval": self._batch_interval,
            "path": str(self._path),
        }

    def get_summary(self) -> dict[str, Any]:
        """Cache and batching statistics plus the count of each event type logged since start."""
        dedup = dict(_DEDUP_DEFAULTS)
        if self._dedup is not None:
            dedup.update(self._dedup.get_stats())
        history = dict(_HISTORY_DEFAULTS)
        if self._history is not None:
            history.update(self._history.get_stats())
        return {
            "cache_stats": {"deduplication": dedup, "history_cache": history},
            "batch_logging": self.get_batch_stats(),
            "events": dict(self._counts),
        }

    # -- the background task -----------------------------------------------------------------

    def start_batch_flush_task(self) -> Awaitable[None]:
        """Start the background writer (idempotent). Needs a running loop; awaiting is optional."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._stopping = False
            self._stop_task = None
            self._final_logged = False
            # Fresh events: the old ones may be bound to a loop that no longer runs.
            self._wake = asyncio.Event()
            self._stop_evt = asyncio.Event()
            if len(self._buffer) >= self._batch_size:
                self._wake.set()
            self._next_flush = time.monotonic() + self._batch_interval
            self._task = loop.create_task(self._run(), name="metrics-batch-flush")
        done: asyncio.Future[None] = loop.create_future()
        done.set_result(None)
        return done

    async def _run(self) -> None:
        monotonic = time.monotonic
        next_stats = monotonic() + self._stats_interval
        try:
            while not self._stopping:
                now = monotonic()
                if now >= next_stats:
                    self._log_stats()
                    next_stats = now + self._stats_interval
                retry_at = self._retry_at
                backoff = retry_at is not None and now < retry_at
                due = len(self._buffer) >= self._batch_size or now >= self._next_flush
                if due and not backoff:
                    if self._buffer:
                        await self.flush()
                        continue
                    self._next_flush = now + self._batch_interval
                deadline = retry_at if backoff and retry_at is not None else self._next_flush
                wake_at = min(next_stats, deadline)
                # No await between the checks above and this wait, so no event can slip by.
                event = self._stop_evt if backoff else self._wake
                event.clear()
                if self._stopping:
                    break
                try:
                    async with asyncio.timeout(max(0.0, wake_at - monotonic())):
                        await event.wait()
                except TimeoutError:
                    pass
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("the metrics writer stopped unexpectedly")

    def stop_batch_flush_task(self) -> Awaitable[None]:
        """Stop the writer, write everything buffered, then a final ``stats`` snapshot.

        Returns the task doing it (awaiting it is optional; calling again returns the same task).
        When no write is under way, everything is written before this returns, so nothing is lost
        if the task never runs. The snapshot is taken after the final flush and marked ``final``:
        with the one write that carries it, it holds the run's complete figures.
        """
        loop = asyncio.get_running_loop()
        if self._stop_task is None:
            self._stopping = True
            lock = self._lock
            if lock is None or self._lock_loop is not loop or not lock.locked():
                # No write under way: everything is written here, in this call, so a caller that
                # never awaits (or a loop closed before the task runs) loses nothing.
                self._write_now()
                self._log_stats(final=True)
                self._write_now()
            self._stop_task = loop.create_task(self._stop(loop), name="metrics-batch-stop")
        return self._stop_task

    def _write_now(self) -> None:
        if self._buffer:
            batch = self._take()
            self._settle(batch, write_events(self._path, batch, self._fsync))

    async def _stop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None and not task.done() and task.get_loop() is loop:
            self._wake.set()
            self._stop_evt.set()
            await task
        await self.flush()
        if not self._final_logged:
            self._log_stats(final=True)
            await self.flush()
