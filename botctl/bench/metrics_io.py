"""Batched metrics against the usual per-event logger: events per second and writes per event.

Variants, timed in interleaved rounds:

- ``log_event``: the caller's side of :class:`~bot.metrics.MetricsService`, ``log_event`` alone
  (no I/O is on that path; the budget compares this with the per-event logger);
- ``per_event``: what a logger without batching does for each event: ``json.dumps`` (stdlib), write
  the line, flush the file;
- ``batched_loop``: the service as the bot runs it (``batch_size`` 50, its own writer task), one
  event per event-loop turn, until a graceful stop has written everything; minus ``loop_only``
  (the same loop turns with nothing logged) this is the all-in cost: ``log_event`` plus its share
  of serialising and writing the batches.

Write syscalls per event are counted with the kernel's own counter (``syscw`` in
``/proc/self/io``) around a run of each variant, less an empty run of it; where that file does not
exist, by wrapping ``os.write`` and the file object. (``benchmarks/`` also counts them with
``strace -c -f -e trace=write`` in a child process.)
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from botctl.bench.common import gc_paused, median, ratio, rotated

__all__ = ["EVENT", "PROC_IO", "count_writes", "run_metrics_bench", "run_variant"]

PROC_IO = Path("/proc/self/io")
BATCH_SIZE = 50
# A typical event: what OllamaService logs per LLM call.
EVENT: dict[str, Any] = {
    "model": "llama3.2",
    "latency_ms": 812.5,
    "ttft_ms": 201.0,
    "tokens_in": 412,
    "tokens_out": 96,
    "dedup": "leader",
    "status": "ok",
    "error": None,
    "stream": True,
}


def syscw() -> int | None:
    """Write-class syscalls made by this process so far (all threads), or None if unknown."""
    try:
        with PROC_IO.open("rb") as f:
            for line in f:
                if line.startswith(b"syscw:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _log_event(path: Path, events: int) -> None:
    """The caller's side: ``log_event`` alone (the writer never runs: a batch never fills)."""
    from bot.metrics import MetricsService

    service = MetricsService(path, batch_size=events + 1, max_buffer=events + 1)
    log_event, data = service.log_event, EVENT
    for _ in range(events):
        log_event("llm_call", data)


def _per_event(path: Path, events: int) -> None:
    """The usual logger: serialise with stdlib json, write the line and flush, every event."""
    clock, dumps, data = time.time, json.dumps, EVENT
    with path.open("a", encoding="utf-8") as f:
        write, flush = f.write, f.flush
        for _ in range(events):
            write(dumps({"ts": clock(), "type": "llm_call", **data}) + "\n")
            flush()


async def _batched_loop(path: Path, events: int) -> None:
    """The service as the bot runs it: one event per loop turn, its own writer task, a stop."""
    from bot.metrics import MetricsService

    service = MetricsService(path, batch_size=BATCH_SIZE, batch_interval=60.0)
    service.start_batch_flush_task()
    log_event, data, turn = service.log_event, EVENT, asyncio.sleep
    for _ in range(events):
        log_event("llm_call", data)
        await turn(0)
    await service.stop_batch_flush_task()


async def _loop_only(path: Path, events: int) -> None:
    """The loop turns alone, to take them out of the batched figure."""
    turn = asyncio.sleep
    for _ in range(events):
        await turn(0)


SYNC: dict[str, Callable[[Path, int], None]] = {"log_event": _log_event, "per_event": _per_event}
ASYNC: dict[str, Callable[[Path, int], Any]] = {
    "batched_loop": _batched_loop,
    "loop_only": _loop_only,
}
VARIANTS = [*SYNC, *ASYNC]


def run_variant(name: str, path: Path, events: int) -> float:
    """Seconds to log ``events`` events with variant ``name`` (an event loop per async run)."""
    if name in SYNC:
        with gc_paused():
            start = time.perf_counter()
            SYNC[name](path, events)
            return time.perf_counter() - start
    body = ASYNC[name]

    async def timed() -> float:
        with gc_paused():
            start = time.perf_counter()
            await body(path, events)
            return time.perf_counter() - start

    return asyncio.run(timed())


class _CountingFile:
    """A text file whose flushes that reach the OS are counted (fallback without /proc)."""

    def __init__(self, inner: TextIO, counter: list[int]) -> None:
        self._inner = inner
        self._counter = counter

    def write(self, text: str) -> int:
        return self._inner.write(text)

    def flush(self) -> None:
        self._counter[0] += 1
        self._inner.flush()

    def __enter__(self) -> _CountingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()


@contextmanager
def _wrapped_writes(counter: list[int]) -> Iterator[None]:
    real_write = os.write
    real_open = Path.open

    def write(fd: int, data: Any) -> int:
        counter[0] += 1
        return real_write(fd, data)

    def open_(self: Path, *args: Any, **kwargs: Any) -> Any:
        return _CountingFile(real_open(self, *args, **kwargs), counter)

    os.write = write
    Path.open = open_  # type: ignore[method-assign]
    try:
        yield
    finally:
        os.write = real_write
        Path.open = real_open  # type: ignore[method-assign]


def count_writes(name: str, directory: Path, events: int) -> tuple[float, str]:
    """(write syscalls per event, how they were counted) for variant ``name``."""
    path = directory / f"count-{name}.jsonl"
    before = syscw()
    if before is not None:
        # An empty run of the same variant counts what the loop and the stop write by
        # themselves, so the figure is per event only.
        empty = directory / f"count-{name}-0.jsonl"
        s0 = syscw()
        run_variant(name, empty, 0)
        s1 = syscw()
        run_variant(name, path, events)
        s2 = syscw()
        if s0 is not None and s1 is not None and s2 is not None:
            return max(0, (s2 - s1) - (s1 - s0)) / events, "kernel counter (/proc/self/io syscw)"
    counter = [0]
    with _wrapped_writes(counter):
        run_variant(name, path, events)
    return counter[0] / events, "wrapped os.write and file flushes"


def run_metrics_bench(
    *,
    events: int = 20_000,
    rounds: int = 5,
    count_events: int = 10_000,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Events per second of each variant (medians of interleaved rounds) and writes per event."""
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="botctl-bench-metrics-") as tmp:
        directory = Path(tmp)
        if progress is not None:
            progress("metrics: events per second, batched and per event")
        for r in range(rounds):
            for name in rotated(VARIANTS, r):
                path = directory / f"{name}-{r}.jsonl"
                seconds[name].append(run_variant(name, path, events))
                path.unlink(missing_ok=True)
        if progress is not None:
            progress("metrics: write syscalls per event")
        # One event per loop turn, as in the bot: the writer sees the batch fill as it happens.
        writes = {
            "batched": count_writes("batched_loop", directory, count_events),
            "per_event": count_writes("per_event", directory, count_events),
        }
    us = {name: median(values) / events * 1e6 for name, values in seconds.items()}
    # All-in: log_event plus its share of the background writes, without the loop turns.
    all_in = max(us["batched_loop"] - us["loop_only"], 0.01)
    return {
        "events": events,
        "rounds": rounds,
        "batch_size": BATCH_SIZE,
        "us_per_event": {name: round(value, 3) for name, value in us.items()},
        "events_per_s": {
            "log_event": round(1e6 / us["log_event"]),
            "batched_all_in": round(1e6 / all_in),
            "per_event": round(1e6 / us["per_event"]),
        },
        "speedup": ratio(us["per_event"], us["log_event"]),
        "speedup_all_in": ratio(us["per_event"], all_in),
        "writes_per_event": {name: round(value, 4) for name, (value, _) in writes.items()},
        "writes_counted_by": writes["batched"][1],
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m botctl.bench.metrics_io VARIANT EVENTS PATH``: one run of a variant, for
    counting its system calls from outside (``strace``); prints nothing."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in VARIANTS:
        sys.stderr.write(f"usage: VARIANT EVENTS PATH (VARIANT: {', '.join(VARIANTS)})\n")
        return 2
    run_variant(args[0], Path(args[2]), int(args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
