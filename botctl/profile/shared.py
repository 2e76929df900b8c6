"""What the in-process profilers and their reports share: atomic writes, the hand-off from a signal
handler to the event loop, the process's peak RSS, and sizes as text.

Signal handlers installed with ``signal.signal`` run in the main thread between two bytecodes, in
the middle of whatever the event loop was doing. They only hand the work to the running loop
(``call_soon_threadsafe``, which is what asyncio itself does for its signal handlers), so the
profilers start, stop and write from a plain loop callback.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def dump_stats_atomic(profiler: cProfile.Profile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    profiler.dump_stats(str(tmp))
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# A profile that could not be written is said on stdout too, with this prefix: `botctl profile`
# reads the bot's stdout and stops waiting for the file (its stderr goes to the terminal unread).
FAILURE_PREFIX = "botctl profiling failed: "


def warn(message: str) -> None:
    # The bot's stderr is the user's terminal (the launcher does not capture it).
    print(f"botctl profiling: {message}", file=sys.stderr, flush=True)


def report_failure(what: str, exc: BaseException) -> None:
    """A profile was not written: say why to the user (stderr) and to the launcher (stdout)."""
    reason = f"{what}: {type(exc).__name__}: {exc}"
    warn(reason)
    print(FAILURE_PREFIX + reason.replace("\n", " "), flush=True)


def on_loop(action: Callable[[], None]) -> None:
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


def format_size(size: float, signed: bool = False) -> str:
    sign = ("+" if size > 0 else "-" if size < 0 else "") if signed else ("-" if size < 0 else "")
    value = abs(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{sign}{value:.0f} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    return f"{sign}{value:.2f} GiB"
