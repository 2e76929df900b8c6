"""tracemalloc over the bot's run, inside its process: snapshots diffed into a growth report.

The report is written as ``PREFIX.txt`` (tracebacks, newest frame first) and ``PREFIX.json`` (what
``botctl profile`` renders), text first: the JSON is what the CLI waits for, so it lands last.
"""

from __future__ import annotations

import linecache
import os
import signal
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from botctl.profile.shared import (
    format_size,
    on_loop,
    peak_rss_kib,
    report_failure,
    write_json_atomic,
    write_text_atomic,
)

MEMORY_BASELINE_SIGNAL = signal.SIGUSR2


def _filters() -> list[tracemalloc.Filter]:
    # Import machinery and the profiler's own bookkeeping are noise for "what grew while serving".
    return [
        tracemalloc.Filter(False, "<frozen *>"),
        tracemalloc.Filter(False, "<unknown>"),
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, __file__),
    ]


@dataclass(slots=True)
class MemoryReport:
    """What :class:`MemorySession` writes, as one JSON-able object (see :meth:`to_json`)."""

    pid: int
    frames: int
    started_at: float
    baseline_at: float
    baseline: str
    ended_at: float
    end: str
    totals: dict[str, int]
    traced: dict[str, int]
    peak_rss_kib: int
    top: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "tracemalloc",
            "pid": self.pid,
            "frames": self.frames,
            "started_at": self.started_at,
            "baseline_at": self.baseline_at,
            "baseline": self.baseline,
            "ended_at": self.ended_at,
            "end": self.end,
            "totals": self.totals,
            "traced": self.traced,
            "peak_rss_kib": self.peak_rss_kib,
            "top": self.top,
        }


class MemorySession:
    """tracemalloc over the run: start, baseline (start-up done), end; diff and write the report.

    Each ``SIGUSR2`` marks the next point: the first one the baseline, the second one the end, when
    the report is written while the bot still serves (its caches and histories are still alive).
    Without a second one the report is written on the stop path, after the bot's objects are gone.
    """

    def __init__(self, prefix: Path, frames: int, top: int) -> None:
        self.prefix = prefix
        self.frames = frames
        self.top = top
        self.started_at = 0.0
        self.baseline_at = 0.0
        self.baseline_reason = "tracemalloc start (no start-up signal came)"
        self.baseline_marked = False
        self.report: MemoryReport | None = None
        self._baseline: tracemalloc.Snapshot | None = None
        self._startup_peak = 0

    @property
    def json_path(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".json")

    @property
    def text_path(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".txt")

    def start(self) -> None:
        tracemalloc.start(self.frames)
        self.started_at = self.baseline_at = time.time()
        self._baseline = tracemalloc.take_snapshot()

    def handle_signal(self, _signum: int, _frame: FrameType | None) -> None:
        on_loop(self.next_mark)

    def next_mark(self) -> None:
        try:
            if not self.baseline_marked:
                self.mark_baseline()
            else:
                self.finish("end of the profiling window (SIGUSR2), while serving")
        except Exception as exc:  # a profiler must not take the bot down
            report_failure("tracemalloc report", exc)

    def mark_baseline(self) -> None:
        """Start-up is done: diff from here, and count the peak from here too."""
        if not tracemalloc.is_tracing():
            return
        self._startup_peak = max(self._startup_peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.reset_peak()
        self._baseline = tracemalloc.take_snapshot()
        self.baseline_at = time.time()
        self.baseline_reason = "start-up done (SIGUSR2)"
        self.baseline_marked = True

    def finish(self, end_reason: str) -> MemoryReport | None:
        """Take the last snapshot, stop tracing, write ``PREFIX.txt`` and ``PREFIX.json``; once."""
        if self.report is not None or not tracemalloc.is_tracing():
            return self.report
        end = tracemalloc.take_snapshot()
        current, run_peak = tracemalloc.get_traced_memory()
        ended_at = time.time()
        # Stopped before diffing: the rest of the run (shutdown included) goes at full speed.
        tracemalloc.stop()
        assert self._baseline is not None
        filters = _filters()
        diffs = end.filter_traces(filters).compare_to(
            self._baseline.filter_traces(filters), "traceback"
        )
        growth = sorted(diffs, key=lambda d: (d.size_diff, d.count_diff), reverse=True)
        report = MemoryReport(
            pid=os.getpid(),
            frames=self.frames,
            started_at=self.started_at,
            baseline_at=self.baseline_at,
            baseline=self.baseline_reason,
            ended_at=ended_at,
            end=end_reason,
            totals={
                "size_diff": sum(d.size_diff for d in diffs),
                "count_diff": sum(d.count_diff for d in diffs),
                "size": sum(d.size for d in diffs),
                "count": sum(d.count for d in diffs),
                "sites": len(diffs),
            },
            traced={
                "current": current,
                "peak": max(self._startup_peak, run_peak),
                "peak_after_startup": run_peak,
            },
            peak_rss_kib=peak_rss_kib(),
            top=[_site(d) for d in growth[: self.top]],
        )
        # Text first: the JSON is what the launcher waits for, so it lands last.
        write_text_atomic(self.text_path, render_text(report))
        write_json_atomic(self.json_path, report.to_json())
        self.report = report
        return report


def _site(diff: tracemalloc.StatisticDiff) -> dict[str, Any]:
    # tracemalloc stores frames oldest first; a reader wants the allocating line first.
    frames = [
        {
            "file": frame.filename,
            "line": frame.lineno,
            "code": linecache.getline(frame.filename, frame.lineno).strip(),
        }
        for frame in reversed(diff.traceback)
    ]
    return {
        "size_diff": diff.size_diff,
        "count_diff": diff.count_diff,
        "size": diff.size,
        "count": diff.count,
        "traceback": frames,
    }


def render_text(report: MemoryReport) -> str:
    """The report as plain text: totals, then each site with its traceback, newest frame first."""
    totals, traced = report.totals, report.traced
    window = report.ended_at - report.baseline_at
    lines = [
        f"tracemalloc report for pid {report.pid} ({report.frames} frames per traceback)",
        f"baseline: {report.baseline}",
        f"end: {report.end}; diffed over {window:.1f} s",
        f"growth: {format_size(totals['size_diff'], signed=True)} in "
        f"{totals['count_diff']:+,} blocks over {totals['sites']:,} sites; "
        f"traced now {format_size(totals['size'])} in {totals['count']:,} blocks",
        f"traced peak: {format_size(traced['peak'])} "
        f"(after start-up: {format_size(traced['peak_after_startup'])})",
        f"peak RSS: {report.peak_rss_kib:,} KiB",
        "",
        f"Top {len(report.top)} allocation sites by growth (most recent frame first):",
    ]
    for rank, site in enumerate(report.top, 1):
        lines.append("")
        lines.append(
            f"#{rank}: {format_size(site['size_diff'], signed=True)} "
            f"({site['count_diff']:+,} blocks); now {format_size(site['size'])} "
            f"in {site['count']:,} blocks"
        )
        for frame in site["traceback"]:
            lines.append(f"    {frame['file']}:{frame['line']}")
            if frame["code"]:
                lines.append(f"        {frame['code']}")
    return "\n".join(lines) + "\n"
