"""What each ``botctl profile`` mode does, from a validated :class:`ProfileRequest` to a
:class:`ProfileResult` that ``botctl.reporters.profile`` renders.

Without ``--pid`` the bot is started here (``botctl.profile.launcher``) with the env that switches
on the in-process profiler of the mode (``botctl.profile.inprocess``), or under py-spy or memray,
and stopped with SIGTERM so that it writes its files itself. With ``--pid``, py-spy attaches, or
cProfile is toggled inside the bot with two SIGUSR1 and a request file.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from botctl.console import err_console
from botctl.errors import BotctlError
from botctl.interrupts import Interrupts
from botctl.profile import inprocess, memray_backend, pyspy
from botctl.profile.attach import check_pid, cprofile_attach, process_alive
from botctl.profile.launcher import BotExit, LaunchedBot, bot_command, countdown
from botctl.profile.request import OutputFile, ProfileRequest, ProfileResult, fresh, memory_prefix
from botctl.profile.tracemalloc_session import MEMORY_BASELINE_SIGNAL

# Memory mode diffs from a baseline taken once the bot serves, not at its banner: discord.py is
# imported and the gateway connected after the banner, and those allocations are not growth.
MEMORY_WARMUP_S = 4.0
REPORT_TIMEOUT = 120.0  # diffing two snapshots of 10-frame tracebacks is slow on a big heap


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
        _start(bot)
        shown = countdown(request.duration, description, alive=bot.alive, tick=bot.sample_rss)
        return bot.stop(interrupted=shown.interrupted)


def _start(bot: LaunchedBot) -> None:
    """Start the bot and wait until it is up; interrupted meanwhile, there is nothing to keep."""
    bot.start()
    try:
        bot.wait_until_up()
    except KeyboardInterrupt:
        bot.stop(interrupted=True)
        raise BotctlError(
            f"{Interrupts.describe()} before the bot was up: it was stopped, nothing was profiled"
        ) from None


def _exit_notes(ended: BotExit, duration: float) -> list[str]:
    notes = list(ended.notes)
    if ended.interrupted:
        notes.append(
            f"{Interrupts.describe()} after {ended.profiled_s:.1f} s: the bot was stopped in "
            "order and what was profiled is kept"
        )
    elif ended.profiled_s + 0.5 < duration:
        notes.append(f"the bot stopped by itself after {ended.profiled_s:.1f} s")
    if ended.returncode not in (0, None) and not ended.killed:
        notes.append(f"the bot exited with code {ended.returncode}")
    return notes


def _missing(what: Path, ended: BotExit) -> BotctlError:
    if ended.failures:
        return BotctlError(
            f"the bot could not write {what} ({ended.failures[0]}); pick a writable --output"
        )
    how = "was killed" if ended.killed else f"exited with code {ended.returncode}"
    return BotctlError(f"the bot wrote no {what} (it {how}); see its output above")


def cprofile_launch(request: ProfileRequest) -> ProfileResult:
    output = request.output.resolve()
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


def _await_report(path: Path, bot: LaunchedBot, timeout: float) -> bool:
    """Wait (bounded) until the bot writes ``path``, says it cannot, or is gone; a Ctrl-C (or
    SIGTERM) ends the wait too, and the bot is then stopped in order by the caller."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(KeyboardInterrupt), err_console.status(f"waiting for {path.name}"):
        while time.monotonic() < deadline:
            if fresh(path, bot.launched_at):
                return True
            if bot.failures or not bot.alive():
                return False
            bot.sample_rss()
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
        _start(bot)
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
    text_path = prefix.with_name(prefix.name + ".txt")
    json_path = prefix.with_name(prefix.name + ".json")
    env = {inprocess.MEMORY_ENV: str(prefix), inprocess.MEMORY_TOP_ENV: str(request.top)}
    with LaunchedBot(bot_command(request.run_args), env=env) as bot:
        _start(bot)
        shown = countdown(MEMORY_WARMUP_S, "warming up", alive=bot.alive, tick=bot.sample_rss)
        if not shown.interrupted and bot.alive():
            bot.signal(MEMORY_BASELINE_SIGNAL)
            shown = countdown(request.duration, "tracemalloc", alive=bot.alive, tick=bot.sample_rss)
            if bot.alive():
                # The end snapshot is taken while the bot still serves; its report is awaited.
                bot.signal(MEMORY_BASELINE_SIGNAL)
                _await_report(json_path, bot, REPORT_TIMEOUT)
        # Interrupted while warming up, the bot writes its report on the stop path.
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
    command = memray_backend.memray_command(capture.resolve(), request.run_args)
    with LaunchedBot(command) as bot:
        _start(bot)
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
