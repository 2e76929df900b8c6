"""Write system calls per event, counted by ``strace -c -f -e trace=write`` in a child process.

Each variant of ``botctl.bench.metrics_io`` runs in a fresh interpreter under strace, once with
N events and once with none; the difference over N is the write calls per event, whatever the
interpreter and the event loop write by themselves. Where strace is missing (or may not trace),
the row says so and the in-process count of ``botctl bench`` stands.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TIMEOUT_S = 120.0
_WRITE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(?P<calls>\d+)\s+(?:\d+\s+)?write\s*$")


def strace_binary() -> str | None:
    for candidate in ("/usr/bin/strace", shutil.which("strace")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def parse_write_calls(summary: str) -> int:
    """The ``write`` calls of a ``strace -c`` summary (0 when it made none)."""
    for line in summary.splitlines():
        match = _WRITE_ROW.match(line)
        if match:
            return int(match["calls"])
    return 0


def _count(strace: str, variant: str, events: int, directory: Path) -> int:
    out = directory / f"strace-{variant}-{events}.txt"
    data = directory / f"{variant}-{events}.jsonl"
    cmd = [strace, "-c", "-f", "-e", "trace=write", "-o", str(out)]
    cmd += [sys.executable, "-m", "botctl.bench.metrics_io", variant, str(events), str(data)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"strace exited with {proc.returncode}: {proc.stderr.strip()[-200:]}")
    return parse_write_calls(out.read_text())


def run_strace(events: int = 10_000) -> dict[str, Any]:
    strace = strace_binary()
    if strace is None:
        return {"available": False, "reason": "strace is not installed"}
    per_event: dict[str, float] = {}
    raw: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="botctl-bench-strace-") as tmp:
        directory = Path(tmp)
        for name, variant in (("batched", "batched_loop"), ("per_event", "per_event")):
            try:
                empty = _count(strace, variant, 0, directory)
                full = _count(strace, variant, events, directory)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
                return {"available": False, "reason": f"strace could not run: {exc}"}
            raw[name] = {"empty": empty, "events": full}
            per_event[name] = max(0, full - empty) / events
    return {"available": True, "events": events, "writes_per_event": per_event, "calls": raw}
