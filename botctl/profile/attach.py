"""``botctl profile --pid PID``: checks on a process given by pid, and on-demand cProfile in it.

cProfile is toggled inside a running ``botctl run`` with two ``SIGUSR1`` and a request file (see
:mod:`botctl.profile.on_demand`); SIGUSR1 kills a process that does not handle it, so the target is
checked first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from botctl.errors import BotctlError
from botctl.profile import on_demand
from botctl.profile.launcher import countdown
from botctl.profile.request import OutputFile, ProfileRequest, ProfileResult, fresh
from botctl.profile.shared import read_request, write_json_atomic

ANSWER_TIMEOUT = 10.0  # the bot answers SIGUSR1 from its event loop: quick unless it is stuck
WRITE_TIMEOUT = 60.0  # writing a long profile takes a while on a slow machine


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


def process_alive(pid: int) -> bool:
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
    if catches_signal(pid, on_demand.ON_DEMAND_SIGNAL) is False:
        raise BotctlError(
            f"pid {pid} does not handle SIGUSR1 (a wrapper such as `timeout`, a bot still "
            "starting, or an older botctl); pass the pid of the Python process of `botctl run`"
        )


def cprofile_attach(request: ProfileRequest) -> ProfileResult:
    """The signal method: request file, SIGUSR1 (start), countdown, SIGUSR1 (stop and write)."""
    assert request.pid is not None
    pid = request.pid
    check_target(request)
    output = request.output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    path = on_demand.request_path(pid)
    started = time.time()
    write_json_atomic(
        path, {"output": str(output), "state": on_demand.REQUESTED, "by": os.getpid()}
    )
    running = False
    try:
        os.kill(pid, signal.SIGUSR1)
        _await_state(path, pid, (on_demand.STARTED,), ANSWER_TIMEOUT, "start cProfile")
        running = True
        shown = countdown(
            request.duration, f"cProfile, pid {pid}", alive=lambda: process_alive(pid)
        )
        if process_alive(pid):
            os.kill(pid, signal.SIGUSR1)
        running = False
        _await_state(path, pid, (on_demand.WRITTEN,), WRITE_TIMEOUT, "write the profile")
    finally:
        if running and process_alive(pid):
            # Leaving on an error: do not leave the bot paying for a profiler nobody reads.
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGUSR1)
        path.unlink(missing_ok=True)
    if not fresh(output, started):
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
        answer = read_request(path) or {}
        state = answer.get("state")
        if state in wanted:
            return answer
        if state == on_demand.FAILED:
            raise BotctlError(f"pid {pid} could not {doing}: {answer.get('error')}")
        if time.monotonic() > deadline:
            raise BotctlError(
                f"pid {pid} did not {doing} within {timeout:.0f} s of SIGUSR1; is it a "
                "`botctl run` of this version, and is it still serving?"
            )
        if not process_alive(pid) and state != on_demand.STARTED:
            raise BotctlError(f"pid {pid} exited before it could {doing}")
        time.sleep(0.05)
