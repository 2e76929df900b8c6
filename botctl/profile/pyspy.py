"""py-spy record against a running bot (``--pid``): the sampling profiler, outside the process.

py-spy is run as ``py-spy record --pid PID --duration D`` only; its launch mode (``py-spy record
-- cmd``) kills the target uncatchably when the duration ends, and then the bot flushes nothing.
The output folder is made first: py-spy checks it only after sampling, losing every sample.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from botctl.errors import BotctlError
from botctl.profile.launcher import countdown

PySpyFormat = Literal["flamegraph", "speedscope", "raw"]
FORMATS: tuple[PySpyFormat, ...] = ("flamegraph", "speedscope", "raw")
EXTENSIONS: dict[str, str] = {
    "flamegraph": ".svg",
    "speedscope": ".speedscope.json",
    "raw": ".txt",
}
# py-spy needs a moment to attach and, at the end, to write the file.
ATTACH_GRACE = 30.0

PERMISSION_HINT = (
    "py-spy may not attach to pid {pid} (no permission to ptrace it): run botctl as the bot's "
    "user or as root, grant CAP_SYS_PTRACE (docker: --cap-add SYS_PTRACE), or allow it with "
    "`sysctl kernel.yama.ptrace_scope=0`"
)
_PERMISSION = re.compile(r"permission denied|operation not permitted|ptrace|SYS_PTRACE", re.I)
_SAMPLES = re.compile(r"Samples:\s*(?P<samples>\d+)\s+Errors:\s*(?P<errors>\d+)")


@dataclass(frozen=True, slots=True)
class PySpyOptions:
    format: PySpyFormat = "flamegraph"
    rate: int = 100
    gil: bool = True
    idle: bool = False
    nonblocking: bool = False
    subprocesses: bool = False


@dataclass(slots=True)
class PySpyResult:
    output: Path
    command: list[str]
    samples: int | None
    errors: int | None
    elapsed_s: float
    interrupted: bool
    stderr: str


def pyspy_binary() -> str:
    """py-spy on PATH, else next to this interpreter (a venv not activated)."""
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).with_name("py-spy")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise BotctlError("py-spy is not installed; install it with `pip install py-spy`")


def build_command(
    binary: str, pid: int, output: Path, duration: float, options: PySpyOptions
) -> list[str]:
    # py-spy takes whole seconds.
    seconds = max(1, math.ceil(duration))
    command = [binary, "record", "--pid", str(pid), "-o", str(output)]
    command += ["--format", options.format, "--rate", str(options.rate)]
    command += ["--duration", str(seconds)]
    if options.gil:
        command.append("--gil")
    if options.idle:
        command.append("--idle")
    if options.nonblocking:
        command.append("--nonblocking")
    if options.subprocesses:
        command.append("--subprocesses")
    return command


def parse_failure(stderr: str, pid: int) -> str:
    """py-spy's error output as one line that says what to do."""
    if _PERMISSION.search(stderr):
        return PERMISSION_HINT.format(pid=pid)
    if "no stack counts" in stderr.lower() or "no samples" in stderr.lower():
        return (
            f"py-spy took no samples of pid {pid}: the bot was idle (--gil keeps only samples "
            "holding the GIL); give it traffic (-- --rate 20) or pass --no-gil"
        )
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("Error:"):
            detail = line.removeprefix("Error:").strip()
            return f"py-spy could not profile pid {pid}: {detail}"
    last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "no output")
    return f"py-spy could not profile pid {pid}: {last}"


def parse_samples(output: str) -> tuple[int | None, int | None]:
    match = _SAMPLES.search(output)
    if match is None:
        return None, None
    return int(match["samples"]), int(match["errors"])


def record(
    pid: int,
    output: Path,
    duration: float,
    options: PySpyOptions,
    *,
    alive: Callable[[], bool] | None = None,
    tick: Callable[[], None] | None = None,
) -> PySpyResult:
    """Sample ``pid`` for ``duration`` s into ``output``; :class:`BotctlError` when py-spy fails.

    Ctrl-C is passed on to py-spy as SIGINT, on which it writes what it has sampled.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    command = build_command(pyspy_binary(), pid, output, duration, options)
    chunks: list[str] = []
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # our Ctrl-C is forwarded on purpose, once
    )
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: chunks.extend(process.stdout or ()), daemon=True)
    reader.start()

    def sampling() -> bool:
        return process.poll() is None and (alive is None or alive())

    started = time.monotonic()
    try:
        shown = countdown(
            math.ceil(duration), f"py-spy {options.rate} Hz, pid {pid}", alive=sampling, tick=tick
        )
        if shown.interrupted:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=ATTACH_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
            raise BotctlError(
                f"py-spy did not finish within {ATTACH_GRACE:.0f} s of the end of sampling"
            ) from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        reader.join(timeout=5)
    text = "".join(chunks)
    if process.returncode != 0 or not output.exists():
        raise BotctlError(parse_failure(text, pid))
    samples, errors = parse_samples(text)
    return PySpyResult(
        output=output,
        command=command,
        samples=samples,
        errors=errors,
        elapsed_s=time.monotonic() - started,
        interrupted=shown.interrupted,
        stderr=text,
    )
