"""Profilers that run inside the bot's process, switched on by ``botctl profile`` through the env.

:func:`profiling_session` is the one hook ``botctl run`` calls; it wraps the whole run.

- ``BOTCTL_PROFILE_CPROFILE=PATH``: the whole run under ``cProfile.Profile``, dumped on the stop path
  (a temporary file, then a rename, so a reader never sees half a profile).
- ``BOTCTL_PROFILE_MEMORY=PREFIX`` (``BOTCTL_PROFILE_MEMORY_FRAMES``, default 10;
  ``BOTCTL_PROFILE_MEMORY_TOP``, default 25): tracemalloc from the start; a baseline snapshot when
  start-up is done (the first ``SIGUSR2``; without it, the snapshot taken at start) and a last one
  at the end of the profiling window (the second ``SIGUSR2``, else on the stop path, when what the
  bot held is already freed); see :mod:`botctl.profile.tracemalloc_session`.
- ``BOTCTL_PROFILE_PTRACER=PID``: let PID and its children (botctl profile and its py-spy) ptrace
  this process under Yama's ``ptrace_scope=1``, where only ancestors may (py-spy is a sibling).
- On-demand cProfile (``botctl profile --mode cprofile --pid PID``): two ``SIGUSR1``; see
  :mod:`botctl.profile.on_demand`.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from botctl.profile.on_demand import ON_DEMAND_SIGNAL, OnDemandCProfile
from botctl.profile.shared import dump_stats_atomic, report_failure, warn
from botctl.profile.tracemalloc_session import MEMORY_BASELINE_SIGNAL, MemorySession

CPROFILE_ENV = "BOTCTL_PROFILE_CPROFILE"


MEMORY_ENV = "BOTCTL_PROFILE_MEMORY"


MEMORY_FRAMES_ENV = "BOTCTL_PROFILE_MEMORY_FRAMES"


MEMORY_TOP_ENV = "BOTCTL_PROFILE_MEMORY_TOP"


PTRACER_ENV = "BOTCTL_PROFILE_PTRACER"


DEFAULT_MEMORY_FRAMES = 10


DEFAULT_MEMORY_TOP = 25


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return max(minimum, int(raw))
    except ValueError:
        warn(f"{name}={raw!r} is not an integer; using {default}")
        return default


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
        # Each write may fail (a full disk, a folder gone): said, never a traceback at the exit.
        if whole_run is not None and cprofile_out:
            try:
                dump_stats_atomic(whole_run, Path(cprofile_out))
            except Exception as exc:
                report_failure("cProfile profile", exc)
        if on_demand.active:
            try:
                on_demand.stop()
            except Exception as exc:
                report_failure("on-demand cProfile profile", exc)
        if memory is not None:
            try:
                memory.finish("after the bot stopped (what it held was freed)")
            except Exception as exc:
                report_failure("tracemalloc report", exc)
