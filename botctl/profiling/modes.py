"""What each ``botctl profile`` mode does, from a validated :class:`ProfileRequest` to a
:class:`ProfileResult` that ``botctl.reporters.profile`` renders.

Without ``--pid`` the bot is started here (``botctl.profiling.launcher``) with the env that switches
on the in-process profiler of the mode (``botctl.profiling.inprocess``), or under py-spy or memray,
and stopped with SIGTERM so that it writes its files itself. With ``--pid``, py-spy attaches, or
cProfile is toggled inside the bot with two SIGUSR1 and a request file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from botctl.errors import BotctlError
from botctl.profiling import inprocess
from botctl.profiling.launcher import BotExit, LaunchedBot, Throughput, bot_command, countdown
from botctl.profiling.pyspy import EXTENSIONS, PySpyOptions, PySpyResult

Mode = Literal["cprofile", "pyspy", "memory", "guide"]
Backend = Literal["tracemalloc", "memray"]

# Memory mode diffs from a baseline taken once the bot serves, not at its banner: discord.py is
# imported and the gateway connected after the banner, and those allocations are not growth.
MEMORY_WARMUP_S = 4.0
ANSWER_TIMEOUT = 10.0  # the bot answers SIGUSR1 from its event loop: quick unless it is stuck
WRITE_TIMEOUT = 60.0  # writing a long profile takes a while on a slow machine
REPORT_TIMEOUT = 120.0  # diffing two snapshots of 10-frame tracebacks is slow on a big heap


@dataclass(slots=True)
class ProfileRequest:
    mode: Mode
    duration: float
    output: Path
    pid: int | None = None
    run_args: list[str] = field(default_factory=list)
    pyspy: PySpyOptions = field(default_factory=PySpyOptions)
    backend: Backend = "tracemalloc"
    top: int = 15


@dataclass(slots=True)
class OutputFile:
    path: Path
    kind: str


@dataclass(slots=True)
class ProfileResult:
    """Everything the reporter shows; ``None`` where a mode has nothing to say."""

    mode: Mode
    target: str
    pid: int
    outputs: list[OutputFile]
    profiled_s: float
    top: int
    backend: Backend | None = None
    format: str | None = None
    bot: BotExit | None = None
    pyspy: PySpyResult | None = None
    memory: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def primary(self) -> Path:
        return self.outputs[0].path

    @property
    def throughput(self) -> Throughput | None:
        return self.bot.throughput() if self.bot is not None else None

    @property
    def peak_rss_kib(self) -> int | None:
        if self.memory is not None and self.memory.get("peak_rss_kib"):
            return int(self.memory["peak_rss_kib"])
        return self.bot.peak_rss_kib if self.bot is not None else None


# --------------------------------------------------------------------------------------------------
# Paths


def extension(mode: Mode, fmt: str = "flamegraph") -> str:
    """The output's extension; memory outputs are a prefix (``.txt``/``.json`` are added)."""
    if mode == "cprofile":
        return ".prof"
    if mode == "pyspy":
        return EXTENSIONS[fmt]
    return ""


def default_output(mode: Mode, fmt: str = "flamegraph", now: datetime | None = None) -> Path:
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path("profiles") / f"{mode}-{stamp}{extension(mode, fmt)}"


def memory_prefix(path: Path) -> Path:
    """A memory report's prefix: ``x.txt``, ``x.json`` and ``x.bin`` all name prefix ``x``."""
    if path.suffix in (".txt", ".json", ".bin"):
        return path.with_suffix("")
    return path


def _fresh(path: Path, since: float) -> bool:
    """Written by this run (an older file at the same path does not count)."""
    try:
        return path.stat().st_mtime >= since - 1.0
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# Targets given by --pid


def check_pid(pid: int) -> None:
    """:class:`BotctlError` unless ``pid`` is a live process we may signal."""
    if pid <= 0:
        raise BotctlError(f"--pid must be a process id (a positive number), not {pid}")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise BotctlError(
            f"no process with pid {pid}; start the bot with `botctl run` and pass its pid"
        ) from None
    except PermissionError:
        raise BotctlError(
            f"pid {pid} belongs to another user; run botctl as that user or as root"
        ) from None


def is_botctl_run(pid: int) -> bool | None:
    """Whether ``pid``'s command line is ``botctl run``; ``None`` when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    args = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    return any(
        os.path.basename(arg) == "botctl" and args[i + 1 : i + 2] == ["run"]
        for i, arg in enumerate(args)
    )


def catches_signal(pid: int, sig: signal.Signals) -> bool | None:
    """Whether ``pid`` has a handler for ``sig`` (``SigCgt`` in ``/proc``); ``None`` if unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is no longer running.
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return status != "Z"


# --------------------------------------------------------------------------------------------------
# Modes


def check_target(request: ProfileRequest) -> None:
    """Refuse, before anything starts, a ``--pid`` that cannot be profiled in this mode."""
    if request.pid is None:
        return
    pid = request.pid
    check_pid(pid)
    if request.mode != "cprofile":
        return
    # SIGUSR1 kills a process that does not handle it: only signal a bot that catches it.
    if is_botctl_run(pid) is False:
        raise BotctlError(
            f"pid {pid} is not `botctl run`; cProfile attaches only to a bot started with "
            "`botctl run` (use --mode pyspy for any Python process)"
        )
    if catches_signal(pid, inprocess.ON_DEMAND_SIGNAL) is False:
        raise BotctlError(
            f"pid {pid} does not handle SIGUSR1 (a wrapper such as `timeout`, a bot still "
            "starting, or an older botctl); pass the pid of the Python process of `botctl run`"
        )


def run_profile(request: ProfileRequest) -> ProfileResult:
    if request.mode == "cprofile":
        if request.pid is not None:
            return cprofile_attach(request)
        return cprofile_launch(request)
    if request.mode == "pyspy":
        return pyspy_profile(request)
    if request.mode == "memory":
        if request.backend == "memray":
            return memray_launch(request)
        return tracemalloc_launch(request)
    raise ValueError(f"mode {request.mode!r} profiles nothing")


def _launch(
    request: ProfileRequest, description: str, env: dict[str, str] | None = None
) -> BotExit:
    """Start the bot, wait until it is up, count ``duration`` down, stop it in order."""
    with LaunchedBot(bot_command(request.run_args), env=env) as bot:
        bot.start()
        bot.wait_until_up()
        shown = countdown(request.duration, description, alive=bot.alive, tick=bot.sample_rss)
        return bot.stop(interrupted=shown.interrupted)


def _exit_notes(ended: BotExit, duration: float) -> list[str]:
    notes = list(ended.notes)
    if ended.interrupted:
        notes.append(f"interrupted after {ended.profiled_s:.1f} s; the bot was stopped in order")
    elif ended.profiled_s + 0.5 < duration:
        notes.append(f"the bot stopped by itself after {ended.profiled_s:.1f} s")
    if ended.returncode not in (0, None) and not ended.killed:
        notes.append(f"the bot exited with code {ended.returncode}")
    return notes


def _missing(what: Path, ended: BotExit) -> BotctlError:
    how = "was killed" if ended.killed else f"exited with code {ended.returncode}"
    return BotctlError(f"the bot wrote no {what} (it {how}); see its output above")


def cprofile_launch(request: ProfileRequest) -> ProfileResult:
    output = request.output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    ended = _launch(request, "cProfile", env={inprocess.CPROFILE_ENV: str(output)})
    if not _fresh(output, ended.launched_at):
        raise _missing(output, ended)
    return ProfileResult(
        mode="cprofile",
        target=f"the bot started by botctl (pid {ended.pid})",
        pid=ended.pid,
        outputs=[OutputFile(request.output, "cProfile profile (pstats)")],
        profiled_s=ended.profiled_s,
        top=request.top,
        bot=ended,
        notes=_exit_notes(ended, request.duration),
    )


def cprofile_attach(request: ProfileRequest) -> ProfileResult:
    """The signal method: request file, SIGUSR1 (start), countdown, SIGUSR1 (stop and write)."""
    assert request.pid is not None
    pid = request.pid
    check_target(request)
    output = request.output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    path = inprocess.request_path(pid)
    started = time.time()
    inprocess.write_json_atomic(
        path, {"output": str(output), "state": inprocess.REQUESTED, "by": os.getpid()}
    )
    running = False
    try:
        os.kill(pid, signal.SIGUSR1)
        _await_state(path, pid, (inprocess.STARTED,), ANSWER_TIMEOUT, "start cProfile")
        running = True
        shown = countdown(request.duration, f"cProfile, pid {pid}", alive=lambda: _alive(pid))
        if _alive(pid):
            os.kill(pid, signal.SIGUSR1)
        running = False
        _await_state(path, pid, (inprocess.WRITTEN,), WRITE_TIMEOUT, "write the profile")
    finally:
        if running and _alive(pid):
            # Leaving on an error: do not leave the bot paying for a profiler nobody reads.
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGUSR1)
        path.unlink(missing_ok=True)
    if not _fresh(output, started):
        raise BotctlError(f"pid {pid} wrote no profile to {output}")
    notes = []
    if shown.interrupted:
        notes.append(f"interrupted after {shown.elapsed_s:.1f} s")
    elif shown.ended_early:
        notes.append(f"pid {pid} stopped after {shown.elapsed_s:.1f} s; it wrote what it had")
    return ProfileResult(
        mode="cprofile",
        target=f"pid {pid} (SIGUSR1)",
        pid=pid,
        outputs=[OutputFile(request.output, "cProfile profile (pstats)")],
        profiled_s=shown.elapsed_s,
        top=request.top,
        notes=notes,
    )


def _await_state(
    path: Path, pid: int, wanted: tuple[str, ...], timeout: float, doing: str
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = inprocess.read_request(path) or {}
        state = answer.get("state")
        if state in wanted:
            return answer
        if state == inprocess.FAILED:
            raise BotctlError(f"pid {pid} could not {doing}: {answer.get('error')}")
        if time.monotonic() > deadline:
            raise BotctlError(
                f"pid {pid} did not {doing} within {timeout:.0f} s of SIGUSR1; is it a "
                "`botctl run` of this version, and is it still serving?"
            )
        if not _alive(pid) and state != inprocess.STARTED:
            raise BotctlError(f"pid {pid} exited before it could {doing}")
        time.sleep(0.05)


def _await_file(
    path: Path, since: float, alive: Callable[[], bool], timeout: float, tick: Callable[[], None]
) -> bool:
    """Wait (bounded) until ``path`` is written by this run or the process is gone."""
    from botctl.console import err_console

    deadline = time.monotonic() + timeout
    with err_console.status(f"waiting for {path.name}"):
        while time.monotonic() < deadline:
            if _fresh(path, since):
                return True
            if not alive():
                return False
            tick()
            time.sleep(0.1)
    return False


def pyspy_profile(request: ProfileRequest) -> ProfileResult:
    from botctl.profiling import pyspy

    output = request.output
    fmt = request.pyspy.format
    kind = {
        "flamegraph": "flamegraph (SVG)",
        "speedscope": "speedscope profile (JSON)",
        "raw": "collapsed stacks (text)",
    }[fmt]
    if request.pid is not None:
        pid = request.pid
        check_pid(pid)
        result = pyspy.record(
            pid, output, request.duration, request.pyspy, alive=lambda: _alive(pid)
        )
        return ProfileResult(
            mode="pyspy",
            target=f"pid {pid} (attached)",
            pid=pid,
            outputs=[OutputFile(output, kind)],
            profiled_s=result.elapsed_s,
            top=request.top,
            format=fmt,
            pyspy=result,
            notes=["interrupted; py-spy wrote what it had"] if result.interrupted else [],
        )
    pyspy.pyspy_binary()  # fail before starting the bot when py-spy is missing
    # py-spy is the bot's sibling, not its ancestor: under ptrace_scope=1 the bot must allow it.
    env = {inprocess.PTRACER_ENV: str(os.getpid())}
    with LaunchedBot(bot_command(request.run_args), env=env) as bot:
        bot.start()
        bot.wait_until_up()
        result = pyspy.record(
            bot.pid, output, request.duration, request.pyspy, alive=bot.alive, tick=bot.sample_rss
        )
        ended = bot.stop(interrupted=result.interrupted)
    return ProfileResult(
        mode="pyspy",
        target=f"the bot started by botctl (pid {ended.pid})",
        pid=ended.pid,
        outputs=[OutputFile(output, kind)],
        profiled_s=ended.profiled_s,
        top=request.top,
        format=fmt,
        bot=ended,
        pyspy=result,
        notes=_exit_notes(ended, request.duration),
    )


def tracemalloc_launch(request: ProfileRequest) -> ProfileResult:
    prefix = memory_prefix(request.output).resolve()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    text_path = prefix.with_name(prefix.name + ".txt")
    json_path = prefix.with_name(prefix.name + ".json")
    env = {inprocess.MEMORY_ENV: str(prefix), inprocess.MEMORY_TOP_ENV: str(request.top)}
    with LaunchedBot(bot_command(request.run_args), env=env) as bot:
        bot.start()
        bot.wait_until_up()
        shown = countdown(MEMORY_WARMUP_S, "warming up", alive=bot.alive, tick=bot.sample_rss)
        if not shown.interrupted and bot.alive():
            bot.signal(inprocess.MEMORY_BASELINE_SIGNAL)
            shown = countdown(request.duration, "tracemalloc", alive=bot.alive, tick=bot.sample_rss)
        if bot.alive():
            # The end snapshot is taken while the bot still serves; its report is awaited.
            bot.signal(inprocess.MEMORY_BASELINE_SIGNAL)
            _await_file(json_path, bot.launched_at, bot.alive, REPORT_TIMEOUT, bot.sample_rss)
        ended = bot.stop(interrupted=shown.interrupted)
    if not _fresh(json_path, ended.launched_at):
        raise _missing(json_path, ended)
    report: dict[str, Any] = json.loads(json_path.read_text(encoding="utf-8"))
    shown_prefix = memory_prefix(request.output)
    return ProfileResult(
        mode="memory",
        target=f"the bot started by botctl (pid {ended.pid})",
        pid=ended.pid,
        outputs=[
            OutputFile(shown_prefix.with_name(shown_prefix.name + ".txt"), "allocation report"),
            OutputFile(
                shown_prefix.with_name(shown_prefix.name + ".json"), "allocation report (JSON)"
            ),
        ],
        profiled_s=report["ended_at"] - report["baseline_at"],
        top=request.top,
        backend="tracemalloc",
        bot=ended,
        memory=report,
        notes=_exit_notes(ended, request.duration + MEMORY_WARMUP_S)
        + ([] if text_path.exists() else [f"{text_path} is missing"]),
    )


def memray_launch(request: ProfileRequest) -> ProfileResult:
    from botctl.profiling import memray_backend

    memray_backend.require_memray()
    prefix = memory_prefix(request.output)
    capture = prefix.with_name(prefix.name + ".bin")
    capture.parent.mkdir(parents=True, exist_ok=True)
    command = memray_backend.memray_command(capture.resolve(), request.run_args)
    with LaunchedBot(command) as bot:
        bot.start()
        bot.wait_until_up()
        shown = countdown(request.duration, "memray", alive=bot.alive, tick=bot.sample_rss)
        ended = bot.stop(interrupted=shown.interrupted)
    if not _fresh(capture, ended.launched_at):
        raise _missing(capture, ended)
    report = memray_backend.read_capture(capture, request.top)
    text_path, json_path = memray_backend.write_reports(prefix, report)
    data = report.to_json()
    data["peak_rss_kib"] = ended.peak_rss_kib
    return ProfileResult(
        mode="memory",
        target=f"the bot started by botctl under memray (pid {ended.pid})",
        pid=ended.pid,
        outputs=[
            OutputFile(text_path, "allocation report"),
            OutputFile(json_path, "allocation report (JSON)"),
            OutputFile(capture, "memray capture"),
        ],
        profiled_s=ended.profiled_s,
        top=request.top,
        backend="memray",
        bot=ended,
        memory=data,
        notes=_exit_notes(ended, request.duration),
    )
