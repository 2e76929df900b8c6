"""Starting the bot to profile it, and stopping it so that it flushes: the profiler's life cycle.

The bot runs as ``python -m botctl run ARGS`` (or under a wrapper such as ``memray run``) in a
session of its own, so a Ctrl-C in the terminal reaches ``botctl profile`` only, which then stops
the bot in order. The bot is up once its banner line is on stdout; it is stopped with SIGTERM,
which it handles like Ctrl-C (stop taking messages, flush, write the profile), and only past a bound
is its process group killed. py-spy's launch mode is never used: it kills the target with a signal
it cannot catch, and then nothing is flushed.

The bot's stdout (banner and summary) is captured for the report; its stderr stays on the
terminal, where its errors belong.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from botctl.console import err_console
from botctl.errors import BotctlError
from botctl.interrupts import Interrupts
from botctl.profile.shared import FAILURE_PREFIX
from botctl.profile.throughput import SUMMARY_TITLE, Throughput, throughput

BANNER_PREFIX = "botctl run"
STARTUP_TIMEOUT = 90.0
STOP_TIMEOUT = 45.0
KILL_WAIT = 5.0
POLL = 0.1

_METRICS_LINE = re.compile(r"^\s*metrics\s*:\s*(?P<path>\S.*?)\s*$")
_TABLE_CHARS = frozenset("+|-=" + "".join(chr(c) for c in range(0x2500, 0x2580)))


def bot_command(run_args: Sequence[str], python: str = sys.executable) -> list[str]:
    """The bot as ``botctl run`` started by this very interpreter."""
    return [python, "-m", "botctl", "run", *run_args]


def read_peak_rss_kib(pid: int) -> int | None:
    """``VmHWM`` (peak RSS, KiB) of a live process from ``/proc``; ``None`` when unavailable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(slots=True)
class BotExit:
    """What the launched bot did: its exit, its captured stdout and figures read from it."""

    command: list[str]
    pid: int
    returncode: int | None
    killed: bool
    stdout: str
    launched_at: float
    profiled_s: float
    peak_rss_kib: int | None
    metrics_file: Path | None
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def summary_text(self) -> str:
        """The bot's own summary table (from its title line on), or ``""``."""
        lines = self.stdout.splitlines()
        for i, line in enumerate(lines):
            if SUMMARY_TITLE.search(line):
                table = [line]
                # The table ends at its last border; a wrapper (memray) may print after it.
                for row in lines[i + 1 :]:
                    if not row[:1] or row[0] not in _TABLE_CHARS:
                        break
                    table.append(row)
                return "\n".join(table).rstrip()
        return ""

    def throughput(self) -> Throughput | None:
        """Counts from the bot's summary, the rate from this run's metrics events."""
        return throughput(self.stdout, self.metrics_file, since=self.launched_at)


@dataclass(slots=True)
class Countdown:
    elapsed_s: float
    interrupted: bool
    ended_early: bool


def countdown(
    duration: float,
    description: str,
    *,
    alive: Callable[[], bool],
    tick: Callable[[], None] | None = None,
) -> Countdown:
    """Wait ``duration`` s with a progress bar on stderr; early when ``alive()`` turns false or
    on Ctrl-C (which is then swallowed: the caller stops the bot in order)."""
    started = time.monotonic()
    interrupted = ended_early = False
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:>4.0f}/{task.total:.0f} s"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    with progress:
        task = progress.add_task(description, total=duration)
        try:
            while (elapsed := time.monotonic() - started) < duration:
                if not alive():
                    ended_early = True
                    break
                if tick is not None:
                    tick()
                progress.update(task, completed=elapsed)
                time.sleep(min(POLL, duration - elapsed))
        except KeyboardInterrupt:
            interrupted = True
    return Countdown(time.monotonic() - started, interrupted, ended_early)


class LaunchedBot:
    """A bot process to profile: :meth:`start`, :meth:`wait_until_up`, :meth:`stop`.

    As a context manager it guarantees the process is gone on the way out, error or not.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self.command = list(command)
        self.env_overrides = dict(env or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.launched_at = 0.0
        self.up_at: float | None = None
        self.peak_rss_kib: int | None = None
        self.metrics_file: Path | None = None
        self.failures: list[str] = []  # profiles the bot said it could not write
        self._process: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._banner = threading.Event()
        self._reader: threading.Thread | None = None
        self._exit: BotExit | None = None

    # -- life cycle

    def __enter__(self) -> LaunchedBot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None and self._exit is None:
            # An error or a second Ctrl-C on the way: still stop in order if we can.
            with contextlib.suppress(Exception, KeyboardInterrupt):
                self.stop()
            if self._process.poll() is None:
                self._kill_group()

    @property
    def pid(self) -> int:
        assert self._process is not None, "start() first"
        return self._process.pid

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> int:
        """Spawn the bot; its pid."""
        env = dict(os.environ)
        env.update(self.env_overrides)
        # Banner lines must reach us as they are printed, not when a pipe buffer fills.
        env["PYTHONUNBUFFERED"] = "1"
        # Rich wraps at 80 columns on a pipe, which would cut the banner's metrics path in two.
        env["COLUMNS"] = "200"
        self.launched_at = time.time()
        try:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=None,
                env=env,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                start_new_session=True,
            )
        except OSError as exc:
            raise BotctlError(f"cannot start the bot ({self.command[0]}): {exc}") from None
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        return self._process.pid

    def _read_stdout(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        with contextlib.suppress(OSError, ValueError):
            for line in self._process.stdout:
                with self._lock:
                    self._lines.append(line)
                stripped = line.strip()
                if stripped.startswith(BANNER_PREFIX):
                    self._banner.set()
                if self.metrics_file is None and (match := _METRICS_LINE.match(line)):
                    self.metrics_file = Path(match["path"])
                if stripped.startswith(FAILURE_PREFIX):
                    self.failures.append(stripped.removeprefix(FAILURE_PREFIX))

    def stdout(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def wait_until_up(self) -> float:
        """Block until the banner is out (bounded); the seconds it took."""
        assert self._process is not None
        started = time.monotonic()
        deadline = started + self.startup_timeout
        while not self._banner.wait(POLL):
            code = self._process.poll()
            if code is not None:
                self._finish_reader()
                self._echo_output()
                raise BotctlError(
                    f"the bot exited before it was up (exit code {code}); see its output above"
                )
            if time.monotonic() > deadline:
                self._kill_group()
                self._echo_output()
                raise BotctlError(
                    f"the bot printed no banner within {self.startup_timeout:.0f} s; "
                    "see its output above"
                )
        self.up_at = time.monotonic()
        self.sample_rss()
        return self.up_at - started

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def sample_rss(self) -> None:
        if self._process is None:
            return
        value = read_peak_rss_kib(self._process.pid)
        if value is not None:
            self.peak_rss_kib = max(self.peak_rss_kib or 0, value)

    def stop(self, *, interrupted: bool = False) -> BotExit:
        """SIGTERM, wait (bounded) while it flushes, else SIGKILL its group and say so."""
        assert self._process is not None
        if self._exit is not None:
            return self._exit
        profiled = time.monotonic() - self.up_at if self.up_at is not None else 0.0
        notes: list[str] = []
        killed = False
        self.sample_rss()
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        try:
            while self._process.poll() is None and time.monotonic() < deadline:
                self.sample_rss()  # writing a profile can grow the bot at the very end
                time.sleep(POLL)
        except KeyboardInterrupt:
            # A second Ctrl-C (or SIGTERM) while the bot stops: the user will not wait more.
            notes.append(f"{Interrupts.describe()} during the stop: the bot was not waited for")
        if self._process.poll() is None:
            self._kill_group()
            killed = True
            notes.append(
                f"the bot did not stop within {self.stop_timeout:.0f} s of SIGTERM, or was "
                "not waited for; its process group was killed (SIGKILL), so what it had not "
                "written is lost"
            )
        self._finish_reader()
        self._exit = BotExit(
            command=self.command,
            pid=self._process.pid,
            returncode=self._process.returncode,
            killed=killed,
            stdout=self.stdout(),
            launched_at=self.launched_at,
            profiled_s=profiled,
            peak_rss_kib=self.peak_rss_kib,
            metrics_file=self.metrics_file,
            interrupted=interrupted,
            notes=notes,
            failures=list(self.failures),
        )
        return self._exit

    def _kill_group(self) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=KILL_WAIT)

    def _finish_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=KILL_WAIT)

    def _echo_output(self) -> None:
        text = self.stdout().rstrip()
        if text:
            err_console.print(text, markup=False, highlight=False)
