"""``botctl metrics top`` in a real terminal: the CLI as a subprocess on a pseudo-terminal, a writer
appending batches as the bot does, the file rotated to a new run, then Ctrl-C."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

# CSI sequences (cursor moves, colours, the alternate screen) and charset selections.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


class Terminal:
    """The CLI on a pty (rows x columns); :attr:`text` is everything it drew, escapes removed."""

    def __init__(self, args: list[str], rows: int = 50, columns: int = 140) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns)}
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "botctl", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,  # our Ctrl-C goes to it alone, by send_signal
        )
        os.close(slave)
        self._master = master
        self._raw = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            with self._lock:
                self._raw += chunk

    @property
    def text(self) -> str:
        with self._lock:
            raw = bytes(self._raw)
        return _ANSI.sub("", raw.decode("utf-8", "replace")).replace("\r", "")

    def since(self, mark: int) -> str:
        return self.text[mark:]

    def wait_for(self, found: Callable[[str], bool], timeout: float, since: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.since(since)
            if found(text):
                return text
            assert self.proc.poll() is None, f"top exited early:\n{self.text[-3000:]}"
            time.sleep(0.1)
        raise AssertionError(f"not drawn within {timeout} s; last output:\n{self.text[-3000:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._thread.join(timeout=5)
        os.close(self._master)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def open_(*args: str) -> Terminal:
        opened.append(Terminal(list(args)))
        return opened[-1]

    yield open_
    for term in opened:
        term.close()


def batch(run: str, now: float) -> str:
    """One metrics batch as the bot appends it: two answers' events."""
    events: list[dict[str, Any]] = []
    for n in range(2):
        ts = now - 0.1 + n * 0.01
        events += [
            {"ts": ts, "type": "message", "run": run, "channel": "c", "user": "u", "length": 5},
            {
                "ts": ts + 0.001,
                "type": "llm_call",
                "run": run,
                "model": "pty-model",
                "latency_ms": 400.0,
                "ttft_ms": 120.0,
                "dedup": "leader" if n == 0 else "follower",
                "status": "ok",
            },
            {"ts": ts + 0.002, "type": "reply", "run": run, "latency_ms": 250.0, "status": "ok"},
        ]
    return "".join(json.dumps(e) + "\n" for e in events)


class Writer:
    """Appends a batch every 0.2 s on a thread, as a running bot does, to whatever file is at
    ``path`` now (a rotation makes it write the new file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run = "first"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(batch(self.run, time.time()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_top_draws_live_frames_follows_rotation_to_a_new_run_and_exits_0_on_ctrl_c(
    terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    path = tmp_path / "metrics.jsonl"  # not there yet
    term = terminal("metrics", "top", str(path), "--refresh", "0.3")
    term.wait_for(lambda text: f"waiting for {path}" in text, timeout=30)

    writer = Writer(path)
    try:
        reply_row = re.compile(r"reply\s+250\s+250\s+250\s+\d+")

        def first_run_drawn(text: str) -> bool:
            return (
                "run first" in text
                and "live" in text
                and bool(reply_row.search(text))
                and "pty-model" in text
                and "LLM requests saved (50.0 %)" in text
            )

        text = term.wait_for(first_run_drawn, timeout=30)
        rates = [float(x) for x in re.findall(r"replies (\d+\.\d+)/s", text)]
        assert rates and max(rates) > 0
        assert re.search(r"Replies per second, last \d+ s\s+\(peak \d+/s\)", text)
        assert "Ctrl-C quits" in text

        # Rotation, as logrotate does it, and a new bot run in the new file.
        mark = len(term.text)
        path.rename(tmp_path / "metrics.jsonl.1")
        writer.run = "second"
        term.wait_for(lambda text: "run second" in text, timeout=30, since=mark)
    finally:
        writer.stop()

    frames_before = term.text.count("botctl metrics top")
    time.sleep(1.0)
    assert term.text.count("botctl metrics top") > frames_before  # it keeps refreshing

    started = time.monotonic()
    term.proc.send_signal(signal.SIGINT)
    assert term.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert "Traceback" not in term.text


_IMPORTS = """
import contextlib, io, json, sys
from botctl.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(["metrics", "--help"])
    except SystemExit:
        pass
print(json.dumps({"help": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def test_metrics_help_lists_top_and_stays_cheap() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTS],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    for command in ("tail", "top", "summary", "tune"):
        assert f" {command} " in result["help"]
    heavy = {
        "aiohttp",
        "discord",
        "prometheus_client",
        "rich.live",
        "botctl.reporters.metrics_html",
        "botctl.reporters.svg",
    }
    assert not heavy & set(result["modules"])
