"""What each ``botctl profile`` mode does, from a validated :class:`ProfileRequest` to a
:class:`ProfileResult` that ``botctl.reporters.profile`` renders.

Without ``--pid`` the bot is started here (``botctl.profile.launcher``) with the env that switches
on the in-process profiler of the mode (``botctl.profile.inprocess``), or under py-spy or memray,
and stopped with SIGTERM so that it writes its files itself. With ``--pid``, py-spy attaches, or
cProfile is toggled inside the bot with two SIGUSR1 and a request file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botctl.console import err_console
from botctl.errors import BotctlError
from botctl.profile import inprocess, memray_backend, pyspy
from botctl.profile.attach import check_pid, cprofile_attach, process_alive
from botctl.profile.launcher import BotExit, LaunchedBot, bot_command, countdown
from botctl.profile.request import OutputFile, ProfileRequest, ProfileResult, fresh, memory_prefix
from botctl.profile.tracemalloc_session import MEMORY_BASELINE_SIGNAL

# Memory mode diffs from a baseline taken once the bot serves, not at its banner: discord.py is
# imported and the gateway connected after the banner, and those allocations are not growth.
MEMORY_WARMUP_S = 4.0
REPORT_TIMEOUT = 120.0  # diffing two snapshots of 10-frame tracebacks is slow on a big heap


# --------------------------------------------------------------------------------------------------
# Paths


# --------------------------------------------------------------------------------------------------
# Targets given by --pid


# --------------------------------------------------------------------------------------------------
# Modes


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
    if not fresh(output, ended.launched_at):
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


def _await_file(
    path: Path, since: float, alive: Callable[[], bool], timeout: float, tick: Callable[[], None]
) -> bool:
    """Wait (bounded) until ``path`` is written by this run or the process is gone."""
    deadline = time.monotonic() + timeout
    with err_console.status(f"waiting for {path.name}"):
        while time.monotonic() < deadline:
            if fresh(path, since):
                return True
            if not alive():
                return False
            tick()
            time.sleep(0.1)
    return False


def pyspy_profile(request: ProfileRequest) -> ProfileResult:
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
            pid, output, request.duration, request.pyspy, alive=lambda: process_alive(pid)
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
            bot.signal(MEMORY_BASELINE_SIGNAL)
            shown = countdown(request.duration, "tracemalloc", alive=bot.alive, tick=bot.sample_rss)
        if bot.alive():
            # The end snapshot is taken while the bot still serves; its report is awaited.
            bot.signal(MEMORY_BASELINE_SIGNAL)
            _await_file(json_path, bot.launched_at, bot.alive, REPORT_TIMEOUT, bot.sample_rss)
        ended = bot.stop(interrupted=shown.interrupted)
    if not fresh(json_path, ended.launched_at):
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
    if not fresh(capture, ended.launched_at):
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
