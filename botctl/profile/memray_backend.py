"""``botctl profile --mode memory --backend memray``: the bot's whole process under memray.

memray has to wrap the process from its first line, so the bot is launched as ``python -m memray
run --aggregate -o CAPTURE.bin -m botctl run ARGS`` (memray runs the module in the same process,
which still gets SIGTERM and stops in order). The capture is then read with memray's own
``FileReader``, in this process, into a text and a JSON report. memray's HTML reports are never made:
they load their scripts from the internet and are blank offline.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botctl.errors import BotctlError
from botctl.profile.shared import format_size, write_json_atomic

STACK_DEPTH = 10


def memray_available() -> bool:
    return importlib.util.find_spec("memray") is not None


def require_memray() -> None:
    if not memray_available():
        raise BotctlError(
            "memray is not installed in this environment; install it with `pip install memray` "
            "(or use --backend tracemalloc)"
        )


def memray_command(
    capture: Path, run_args: Sequence[str], python: str = sys.executable
) -> list[str]:
    # --force: the capture path was chosen by botctl (or the user) for this run.
    return [
        *(python, "-m", "memray", "run", "--aggregate", "--force", "-o", str(capture)),
        *("-m", "botctl", "run", *run_args),
    ]


@dataclass(slots=True)
class MemrayReport:
    capture: Path
    pid: int | None
    duration_s: float | None
    peak_memory: int
    total_allocations: int
    at_peak: list[dict[str, Any]]
    at_exit: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "memray",
            "capture": str(self.capture),
            "pid": self.pid,
            "duration_s": self.duration_s,
            "peak_memory": self.peak_memory,
            "total_allocations": self.total_allocations,
            "at_peak": self.at_peak,
            "at_exit": self.at_exit,
        }


def _importing(stack: Sequence[tuple[str, str, int]]) -> bool:
    return any(file.startswith("<frozen importlib") for _function, file, _line in stack)


def _sites(records: Iterable[Any], top: int) -> list[dict[str, Any]]:
    """Records merged by Python stack (they come split by allocator), largest first.

    Allocations made while importing (code objects, module dicts) are left out: they dominate a
    short run's peak and say nothing about what the bot does while it serves.
    """
    merged: dict[tuple[tuple[str, str, int], ...], list[int]] = {}
    for record in records:
        stack = tuple(record.stack_trace(max_stacks=STACK_DEPTH))
        if _importing(stack):
            continue
        sums = merged.setdefault(stack, [0, 0])
        sums[0] += int(record.size)
        sums[1] += int(record.n_allocations)
    ranked = sorted(merged.items(), key=lambda item: item[1][0], reverse=True)[:top]
    return [
        {
            "size": size,
            "allocations": count,
            # memray gives the allocating frame first already.
            "traceback": [
                {"function": function, "file": file, "line": line} for function, file, line in stack
            ],
        }
        for stack, (size, count) in ranked
    ]


def read_capture(capture: Path, top: int) -> MemrayReport:
    """Summarise a memray capture: its peak, and the largest sites at the peak and at exit."""
    require_memray()
    import memray

    try:
        reader = memray.FileReader(str(capture))
    except (OSError, ValueError) as exc:
        raise BotctlError(f"cannot read the memray capture {capture}: {exc}") from None
    try:
        meta = reader.metadata
        duration = (
            (meta.end_time - meta.start_time).total_seconds()
            if meta.start_time and meta.end_time
            else None
        )
        return MemrayReport(
            capture=capture,
            pid=getattr(meta, "pid", None),
            duration_s=duration,
            peak_memory=int(meta.peak_memory),
            total_allocations=int(meta.total_allocations),
            at_peak=_sites(reader.get_high_watermark_allocation_records(merge_threads=True), top),
            at_exit=_sites(reader.get_leaked_allocation_records(merge_threads=True), top),
        )
    finally:
        reader.close()


def render_text(report: MemrayReport) -> str:
    lines = [
        f"memray capture {report.capture} (pid {report.pid})",
        f"peak heap: {format_size(report.peak_memory)}; "
        f"{report.total_allocations:,} allocations"
        + (f" over {report.duration_s:.1f} s" if report.duration_s is not None else ""),
    ]
    for title, sites in (
        ("Largest allocation sites at the peak", report.at_peak),
        ("Largest allocation sites still allocated at exit", report.at_exit),
    ):
        lines += ["", f"{title}, imports left out (most recent frame first):"]
        for rank, site in enumerate(sites, 1):
            lines.append("")
            lines.append(
                f"#{rank}: {format_size(site['size'])} in {site['allocations']:,} allocations"
            )
            for frame in site["traceback"]:
                lines.append(f"    {frame['function']} at {frame['file']}:{frame['line']}")
    return "\n".join(lines) + "\n"


def write_reports(prefix: Path, report: MemrayReport) -> tuple[Path, Path]:
    """``PREFIX.txt`` and ``PREFIX.json``."""
    text_path = prefix.with_name(prefix.name + ".txt")
    json_path = prefix.with_name(prefix.name + ".json")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    text_path.write_text(render_text(report), encoding="utf-8")
    write_json_atomic(json_path, report.to_json())
    return text_path, json_path
