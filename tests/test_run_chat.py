"""``botctl run --chat`` in a pseudo-terminal: typing, and stops that never wait for Enter."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

STOP_BOUND = 20.0  # seconds a stop may take, sandbox included, on a loaded machine


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "OLLAMA_", "BOT_"))}
    out.update({"COLUMNS": "120", "TERM": "dumb"})
    return out


@contextmanager
def chat(tmp_path: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``botctl run --chat`` with a terminal as its stdin, stdout and stderr."""
    master, slave = pty.openpty()
    args = [sys.executable, "-m", "botctl", "run", "--chat"]
    args += ["--metrics-file", str(tmp_path / "m.jsonl"), *extra]
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env())
    os.close(slave)
    try:
        yield proc, master
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)


def read_until(master: int, needle: bytes, limit: float) -> bytes:
    """What the terminal shows until ``needle`` appears (fails after ``limit`` seconds)."""
    seen = b""
    deadline = time.monotonic() + limit
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not shown within {limit} s; saw: {seen[-2000:]!r}"
        ready, _, _ = select.select([master], [], [], min(left, 0.5))
        if ready:
            try:
                seen += os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
    return seen


def drain(master: int, proc: subprocess.Popen[bytes], limit: float) -> bytes:
    """Everything shown until the process ends (it must end within ``limit``)."""
    seen = b""
    deadline = time.monotonic() + limit
    while proc.poll() is None or select.select([master], [], [], 0)[0]:
        assert time.monotonic() < deadline, f"still running after {limit} s: {seen[-2000:]!r}"
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    proc.wait(5)
    return seen


def test_typing_gets_an_answer_and_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    with chat(tmp_path) as (proc, master):
        read_until(master, b"you>", 60)
        os.write(master, b"!echo hello from the terminal\n")
        read_until(master, b"hello from the terminal", 30)
        read_until(master, b"you>", 10)
        # Ctrl-C while the prompt waits for a line: no Enter pressed.
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        shown = drain(master, proc, STOP_BOUND)
        took = time.monotonic() - started
    assert proc.returncode == 0, shown[-2000:]
    assert b"Summary of run" in shown and b"Traceback" not in shown
    assert took < STOP_BOUND


def test_duration_ends_a_chat_nobody_types_in(tmp_path: Path) -> None:
    with chat(tmp_path, "--duration", "3") as (proc, master):
        read_until(master, b"you>", 60)
        shown = drain(master, proc, STOP_BOUND)
    assert proc.returncode == 0, shown[-2000:]
    assert b"Summary of run" in shown


def test_end_of_input_ends_the_run(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "botctl", "run", "--chat"]
    args += ["--metrics-file", str(tmp_path / "m.jsonl")]
    proc = subprocess.run(
        args, input="!echo piped\n", capture_output=True, text=True, timeout=90, env=env()
    )
    assert proc.returncode == 0, proc.stderr
    assert "piped" in proc.stdout and "Summary of run" in proc.stdout


def test_replies_files_and_slash_commands_from_the_terminal(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("the launch code is 0000\n")
    typed = "\n".join(
        [
            "!echo first answer",
            "> 1 !echo a reply to the first",
            "> 9 no such answer",
            f"/file {notes} !echo read it",
            "/stats",
            "/reset",
            "/nope",
            "",
        ]
    )
    args = [sys.executable, "-m", "botctl", "run", "--chat"]
    args += ["--metrics-file", str(tmp_path / "m.jsonl")]
    proc = subprocess.run(args, input=typed, capture_output=True, text=True, timeout=120, env=env())
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "bot [1]> first answer" in out and "bot [2]> a reply to the first" in out
    assert "no answer 9 to reply to" in out
    assert "read it" in out  # the question that came with the file was answered
    assert "LLM requests" in out  # /stats answered as the command, not as a question
    assert "History cleared." in out or "There was no history here." in out
    assert "unknown command /nope" in out
