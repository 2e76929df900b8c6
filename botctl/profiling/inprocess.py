"""Profilers that run inside the bot's process, switched on by ``botctl profile`` through the env.

:func:`profiling_session` is the one hook ``botctl run`` calls; it wraps the whole run.

- ``BOTCTL_PROFILE_CPROFILE=PATH``: the whole run under ``cProfile.Profile``, dumped on the stop path
  (a temporary file, then a rename, so a reader never sees half a profile).
- ``BOTCTL_PROFILE_MEMORY=PREFIX`` (``BOTCTL_PROFILE_MEMORY_FRAMES``, default 10;
  ``BOTCTL_PROFILE_MEMORY_TOP``, default 25): tracemalloc from the start; a baseline snapshot when
  start-up is done (the first ``SIGUSR2``; without it, the snapshot taken at start) and a last one
  at the end of the profiling window (the second ``SIGUSR2``, else on the stop path, when what the
  bot held is already freed), diffed by traceback and written as ``PREFIX.txt`` and
  ``PREFIX.json`` with the process's peak RSS.
- ``BOTCTL_PROFILE_PTRACER=PID``: let PID and its children (botctl profile and its py-spy) ptrace
  this process under Yama's ``ptrace_scope=1``, where only ancestors may (py-spy is a sibling).
- On-demand cProfile (``botctl profile --mode cprofile --pid PID``): the first ``SIGUSR1`` starts a
  profiler whose output path is read from :func:`request_path`, the second stops it and writes the
  file. The request file doubles as the answer channel: the bot rewrites its ``state``.

Signal handlers installed with ``signal.signal`` run in the main thread between two bytecodes, in
the middle of whatever the event loop was doing. They only hand the work to the running loop
(``call_soon_threadsafe``, which is what asyncio itself does for its signal handlers), so the
profiler starts, stops and writes from a plain loop callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import json
import linecache
import os
import resource
import signal
import stat
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

CPROFILE_ENV = "BOTCTL_PROFILE_CPROFILE"
MEMORY_ENV = "BOTCTL_PROFILE_MEMORY"
MEMORY_FRAMES_ENV = "BOTCTL_PROFILE_MEMORY_FRAMES"
MEMORY_TOP_ENV = "BOTCTL_PROFILE_MEMORY_TOP"
PTRACER_ENV = "BOTCTL_PROFILE_PTRACER"
DEFAULT_MEMORY_FRAMES = 10
DEFAULT_MEMORY_TOP = 25

ON_DEMAND_SIGNAL = signal.SIGUSR1
MEMORY_BASELINE_SIGNAL = signal.SIGUSR2

# A fixed folder, not tempfile.gettempdir(): the CLI and the bot may see different TMPDIRs.
REQUEST_DIR = Path("/tmp")

# Request states, written by the CLI (requested) and the bot (the others).
REQUESTED = "requested"
STARTED = "started"
WRITTEN = "written"
FAILED = "error"


def request_path(pid: int) -> Path:
    """Where ``botctl profile --mode cprofile --pid PID`` asks the bot for a profile."""
    return REQUEST_DIR / f"botctl-cprofile-{pid}.request"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename: readers see the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_request(path: Path) -> dict[str, Any] | None:
    """The request file's JSON object, or ``None`` when it is missing or not (yet) valid."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _dump_atomic(profiler: cProfile.Profile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    profiler.dump_stats(str(tmp))
    os.replace(tmp, path)


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _warn(message: str) -> None:
    # The bot's stderr is the user's terminal (the launcher does not capture it).
    print(f"botctl profiling: {message}", file=sys.stderr, flush=True)


def _on_loop(action: Callable[[], None]) -> None:
    """Run ``action`` from the running event loop when there is one, else right here."""
    loop = asyncio._get_running_loop()
    if loop is not None and not loop.is_closed():
        try:
            loop.call_soon_threadsafe(action)
            return
        except RuntimeError:  # closed between the check and the call: we are shutting down
            pass
    action()


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return max(minimum, int(raw))
    except ValueError:
        _warn(f"{name}={raw!r} is not an integer; using {default}")
        return default


# --------------------------------------------------------------------------------------------------
# On-demand cProfile (SIGUSR1)


class OnDemandCProfile:
    """Toggles a ``cProfile.Profile`` on each ``SIGUSR1``, as the request file asks.

    ``blocked`` holds a reason to refuse (the whole run is already under cProfile: two profilers
    would fight over ``sys.setprofile``).
    """

    def __init__(self, pid: int | None = None, blocked: str | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.blocked = blocked
        self.profiler: cProfile.Profile | None = None
        self.output: Path | None = None

    @property
    def active(self) -> bool:
        return self.profiler is not None

    def handle_signal(self, _signum: int, _frame: FrameType | None) -> None:
        _on_loop(self.toggle)

    def toggle(self) -> None:
        """Start or stop; never raises (a profiler must not take the bot down)."""
        try:
            if self.profiler is None:
                self._start()
            elif self._new_request():
                # The CLI that started this one gave up without its second signal: write what
                # was profiled where it asked, then serve the new request.
                self.stop(answer=False)
                self._start()
            else:
                self.stop()
        except Exception as exc:
            self._answer(FAILED, f"{type(exc).__name__}: {exc}")

    def _new_request(self) -> bool:
        request = read_request(request_path(self.pid))
        return (
            request is not None
            and request.get("state") == REQUESTED
            and request.get("output") != str(self.output)
        )

    def _start(self) -> None:
        path = request_path(self.pid)
        if self.blocked:
            self._answer(FAILED, self.blocked)
            return
        request = self._read_trusted(path)
        if request is None:
            return
        output = request.get("output")
        if not isinstance(output, str) or not output:
            self._answer(FAILED, f"{path} names no output file")
            return
        self.output = Path(output)
        self.profiler = cProfile.Profile()
        self.profiler.enable()
        self._answer(STARTED, None)
        _warn(f"cProfile started (SIGUSR1); the next SIGUSR1 writes {self.output}")

    def stop(self, answer: bool = True) -> None:
        """Stop the profiler and write its file; a no-op when none runs."""
        profiler, output = self.profiler, self.output
        if profiler is None or output is None:
            return
        self.profiler = None
        profiler.disable()
        _dump_atomic(profiler, output)
        if answer:
            self._answer(WRITTEN, None)
        _warn(f"cProfile written to {output}")

    def _read_trusted(self, path: Path) -> dict[str, Any] | None:
        # /tmp is shared: only a regular file of our own user (or root) may choose where we write.
        try:
            st = path.lstat()
        except FileNotFoundError:
            _warn(f"SIGUSR1 without a request file {path}; ignored")
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (os.getuid(), 0):
            _warn(f"{path} is not a regular file of this user; ignored")
            return None
        request = read_request(path)
        if request is None:
            _warn(f"{path} is not a JSON request; ignored")
        return request

    def _answer(self, state: str, error: str | None) -> None:
        path = request_path(self.pid)
        request = read_request(path)
        if request is None:  # the CLI gave up and removed it; nobody to answer
            if error:
                _warn(error)
            return
        request.update(state=state, error=error, pid=self.pid)
        if self.output is not None:
            request["output"] = str(self.output)
        try:
            write_json_atomic(path, request)
        except OSError as exc:
            _warn(f"cannot answer through {path}: {exc}")


# --------------------------------------------------------------------------------------------------
# tracemalloc


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


def format_size(size: float, signed: bool = False) -> str:
    sign = ("+" if size > 0 else "-" if size < 0 else "") if signed else ("-" if size < 0 else "")
    value = abs(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{sign}{value:.0f} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    return f"{sign}{value:.2f} GiB"


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
        _on_loop(self.next_mark)

    def next_mark(self) -> None:
        try:
            if not self.baseline_marked:
                self.mark_baseline()
            else:
                self.finish("end of the profiling window (SIGUSR2), while serving")
        except Exception as exc:  # a profiler must not take the bot down
            _warn(f"tracemalloc report failed: {type(exc).__name__}: {exc}")

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
        _write_text_atomic(self.text_path, render_text(report))
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


def allow_ptracer(pid: int) -> bool:
    """``prctl(PR_SET_PTRACER, pid)``: Yama then lets ``pid`` and its descendants attach."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    pr_set_ptracer = 0x59616D61  # "Yama"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(pr_set_ptracer, pid, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


# --------------------------------------------------------------------------------------------------
# The hook


def _install(sig: signal.Signals, handler: Callable[[int, FrameType | None], None]) -> Any:
    """Install a handler; the previous one (to restore), or ``None`` off the main thread."""
    try:
        return signal.signal(sig, handler)
    except ValueError:  # not the main thread (e.g. a test runs the bot in a thread)
        return None


@contextlib.contextmanager
def profiling_session() -> Iterator[None]:
    """Wrap the bot's run in whatever profilers the environment asks for.

    Always installs the ``SIGUSR1`` handler of on-demand cProfile, for ``--pid``; restores the
    previous handlers on the way out, after writing whatever is still being profiled.
    """
    cprofile_out = os.environ.get(CPROFILE_ENV)
    memory_prefix = os.environ.get(MEMORY_ENV)
    ptracer = os.environ.get(PTRACER_ENV)
    if ptracer and ptracer.isdigit():
        allow_ptracer(int(ptracer))  # best effort: without Yama, nothing to allow
    whole_run: cProfile.Profile | None = None
    memory: MemorySession | None = None
    on_demand = OnDemandCProfile(
        blocked=(
            f"this bot already runs under cProfile ({CPROFILE_ENV}); its profile is written "
            "when it stops"
            if cprofile_out
            else None
        )
    )
    previous_usr1 = _install(ON_DEMAND_SIGNAL, on_demand.handle_signal)
    previous_usr2 = None
    if memory_prefix:
        memory = MemorySession(
            Path(memory_prefix),
            frames=_env_int(MEMORY_FRAMES_ENV, DEFAULT_MEMORY_FRAMES, 1),
            top=_env_int(MEMORY_TOP_ENV, DEFAULT_MEMORY_TOP, 1),
        )
        memory.start()
        previous_usr2 = _install(MEMORY_BASELINE_SIGNAL, memory.handle_signal)
    if cprofile_out:
        whole_run = cProfile.Profile()
        whole_run.enable()
    try:
        yield
    finally:
        if whole_run is not None:
            whole_run.disable()
        # Restore first: a late signal must not toggle a profiler we are writing.
        if previous_usr1 is not None:
            signal.signal(ON_DEMAND_SIGNAL, previous_usr1)
        if previous_usr2 is not None:
            signal.signal(MEMORY_BASELINE_SIGNAL, previous_usr2)
        if whole_run is not None and cprofile_out:
            _dump_atomic(whole_run, Path(cprofile_out))
        if on_demand.active:
            try:
                on_demand.stop()
            except Exception as exc:
                _warn(f"the on-demand profile was not written: {exc}")
        if memory is not None:
            memory.finish("after the bot stopped (what it held was freed)")
