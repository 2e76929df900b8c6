"""On-demand cProfile inside a running bot (``botctl profile --mode cprofile --pid PID``).

The first ``SIGUSR1`` starts a profiler whose output path is read from :func:`request_path`, the
second stops it and writes the file. The request file doubles as the answer channel: the bot
rewrites its ``state``, which the CLI polls.
"""

from __future__ import annotations

import cProfile
import os
import signal
import stat
from pathlib import Path
from types import FrameType
from typing import Any

from botctl.profile.shared import (
    dump_stats_atomic,
    on_loop,
    read_request,
    warn,
    write_json_atomic,
)

ON_DEMAND_SIGNAL = signal.SIGUSR1


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
        on_loop(self.toggle)

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
        warn(f"cProfile started (SIGUSR1); the next SIGUSR1 writes {self.output}")

    def stop(self, answer: bool = True) -> None:
        """Stop the profiler and write its file; a no-op when none runs."""
        profiler, output = self.profiler, self.output
        if profiler is None or output is None:
            return
        self.profiler = None
        profiler.disable()
        dump_stats_atomic(profiler, output)
        if answer:
            self._answer(WRITTEN, None)
        warn(f"cProfile written to {output}")

    def _read_trusted(self, path: Path) -> dict[str, Any] | None:
        # /tmp is shared: only a regular file of our own user (or root) may choose where we write.
        try:
            st = path.lstat()
        except FileNotFoundError:
            warn(f"SIGUSR1 without a request file {path}; ignored")
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (os.getuid(), 0):
            warn(f"{path} is not a regular file of this user; ignored")
            return None
        request = read_request(path)
        if request is None:
            warn(f"{path} is not a JSON request; ignored")
        return request

    def _answer(self, state: str, error: str | None) -> None:
        path = request_path(self.pid)
        request = read_request(path)
        if request is None:  # the CLI gave up and removed it; nobody to answer
            if error:
                warn(error)
            return
        request.update(state=state, error=error, pid=self.pid)
        if self.output is not None:
            request["output"] = str(self.output)
        try:
            write_json_atomic(path, request)
        except OSError as exc:
            warn(f"cannot answer through {path}: {exc}")
