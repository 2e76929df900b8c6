"""``botctl profile`` under the signals and failures a new user meets (issue 10, defects 2 to 4):
SIGTERM/SIGHUP from ``timeout``, CI or ``kill``; a report that cannot be written; an output path that
cannot be written. Real subprocesses; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import pstats
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from botctl.profile.request import check_output

BOT = [sys.executable, "-m", "botctl"]
LOAD = ["--rate", "5", "--users", "5", "--channels", "5"]


def descendants(pid: int) -> set[int]:
    """Every live process under ``pid`` (from /proc: parent ids)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s")
        time.sleep(0.2)


class Profiling:
    """A running ``botctl profile`` and every process seen under it (to clean up after a failure:
    orphans are reparented, so they cannot be found from its pid once it is gone)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.seen: set[int] = set()

    def children(self) -> set[int]:
        found = descendants(self.proc.pid)
        self.seen |= found
        return found


@contextlib.contextmanager
def profile(*args: str, cwd: Path, env: dict[str, str]) -> Iterator[Profiling]:
    """``botctl profile ARGS`` in a session of its own; whatever it left is killed afterwards."""
    proc = subprocess.Popen(
        [*BOT, "profile", *args],
        cwd=cwd,
        env={**env, "COLUMNS": "120"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    running = Profiling(proc)
    try:
        yield running
    finally:
        running.children()
        for pid in [proc.pid, *running.seen]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_stops_the_bot_in_order_keeps_the_profile_and_leaves_no_orphan(
    tmp_path: Path, clean_env: dict[str, str], sig: signal.Signals
) -> None:
    out = tmp_path / "p.prof"
    args = ["--mode", "cprofile", "--duration", "30", "-o", str(out), "--top", "3"]
    args += ["--", *LOAD, "--metrics-file", str(tmp_path / "m.jsonl")]
    with profile(*args, cwd=tmp_path, env=clean_env) as running:
        proc = running.proc
        # The bot and, under it, the sandbox.
        wait_for(lambda: len(running.children()) >= 2, 60, "the bot and its sandbox started")
        time.sleep(3)  # something to profile
        children = running.children()
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=90)

        assert proc.returncode == 0, stderr
        assert pstats.Stats(str(out)).total_calls > 0  # type: ignore[attr-defined]
        assert "Written" in stdout and "Summary of run " in stdout
        assert f"{sig.name} after" in stderr and "stopped in order" in stderr
        wait_for(lambda: not any(alive(pid) for pid in children), 10, "no orphan left")


@pytest.mark.integration
def test_a_memory_report_that_cannot_be_written_is_one_line_and_no_hang(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    folder = tmp_path / "out"
    args = ["--mode", "memory", "--duration", "2", "-o", str(folder / "mem")]
    args += ["--", *LOAD, "--metrics-file", str(tmp_path / "m.jsonl")]
    with profile(*args, cwd=tmp_path, env=clean_env) as running:
        proc = running.proc
        wait_for(lambda: len(running.children()) >= 2, 60, "the bot and its sandbox started")
        # The folder passed the check; now a file takes its place before the report is due
        # (4 s of warm-up, then the 2 s window).
        shutil.rmtree(folder)
        folder.write_text("not a folder")
        try:
            _stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("botctl profile --mode memory hung waiting for a report it cannot get")
        assert proc.returncode == 1
        assert "Traceback" not in stderr
        last = [line for line in stderr.splitlines() if line.strip()][-1]
        assert last.startswith("error: the bot could not write"), stderr
        assert "pick a writable --output" in last


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("/etc/passwd/x.prof", "is a file, not a folder"),
        ("/proc/x.prof", "cannot write /proc/x.prof"),
    ],
)
@pytest.mark.parametrize("mode", ["cprofile", "memory", "pyspy"])
def test_an_output_that_cannot_be_written_is_refused_before_anything_starts(
    tmp_path: Path, clean_env: dict[str, str], output: str, expected: str, mode: str
) -> None:
    result = subprocess.run(
        [*BOT, "profile", "--mode", mode, "-o", output, "--duration", "1"],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr  # no "profiling the bot …": nothing started
    assert expected in lines[0]


def test_a_missing_folder_is_made_and_the_check_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.prof"
    check_output(target)
    assert target.parent.is_dir()
    assert list(target.parent.iterdir()) == []
