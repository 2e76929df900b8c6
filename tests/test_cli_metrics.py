"""``botctl metrics tail`` and ``botctl metrics summary``, in-process and as real subprocesses."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from typer.testing import CliRunner

from botctl.errors import BotctlError
from botctl.main import app, main

T0 = 1_750_000_000.0
runner = CliRunner()


def jl(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))


def sample_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(12):
        events.append({"ts": T0 + i, "type": "message", "channel": "c1", "user": "u", "length": i})
        events.append(
            {
                "ts": T0 + i + 0.25,
                "type": "llm_call",
                "model": "tiny",
                "latency_ms": 100.0 + i,
                "dedup": "leader" if i % 3 else "follower",
                "status": "ok",
                "error": None,
            }
        )
        events.append({"ts": T0 + i + 0.5, "type": "reply", "latency_ms": 200.0 + i, "parts": 1})
    events.append(
        {"ts": T0 + 20, "type": "stats", "history": {"hit_rate": 50.0}, "batch": {"flushes": 3}}
    )
    return events


@pytest.fixture
def metrics_file(tmp_path: Path) -> Path:
    path = tmp_path / "metrics.jsonl"
    body = "".join(jl(e) + "\n" for e in sample_events())
    path.write_text(body + '{"ts": 1750000030.0, "type": "rep', encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# In-process


def test_summary_table(metrics_file: Path) -> None:
    result = runner.invoke(app, ["metrics", "summary", str(metrics_file)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for needle in ("llm_call", "message", "reply", "p50", "p95", "p99", "dedup ratio"):
        assert needle in out
    assert "50.0 %" in out  # history hit rate (percent in the stats event)


def test_summary_json_is_one_object(metrics_file: Path) -> None:
    result = runner.invoke(app, ["metrics", "summary", str(metrics_file), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # the whole of stdout is the document
    assert data["counts"] == {"llm_call": 12, "message": 12, "reply": 12, "stats": 1}
    assert data["torn_lines"] == 1
    assert data["events"] == 37
    assert data["llm_latency_ms"] == {"p50": 105.0, "p95": 111.0, "p99": 111.0}
    assert data["reply_latency_ms"]["p50"] == 205.0
    assert data["llm_calls"] == {"upstream": 8, "saved": 4}
    assert data["dedup_ratio"] == pytest.approx(4 / 12)
    assert data["history_hit_rate"] == 50.0
    assert data["flushes"] == 3
    assert data["errors"] == {}


def test_summary_uses_the_environment_default(
    metrics_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOT_METRICS_FILE", str(metrics_file))
    result = runner.invoke(app, ["metrics", "summary", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["path"] == str(metrics_file)


def test_tail_last_n_readable(metrics_file: Path) -> None:
    result = runner.invoke(app, ["metrics", "tail", str(metrics_file), "-n", "3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert "llm_call" in lines[0] and "latency_ms=111" in lines[0]
    assert "reply" in lines[1] and "latency_ms=211" in lines[1]
    assert "stats" in lines[2] and "history.hit_rate=50" in lines[2]
    # Local wall-clock time first.
    stamp = time.strftime("%H:%M:%S", time.localtime(T0 + 20))
    assert lines[2].startswith(stamp + ".000 ")
    assert "error=" not in lines[0]  # null fields are left out


def test_tail_default_is_ten(metrics_file: Path) -> None:
    result = runner.invoke(app, ["metrics", "tail", str(metrics_file)])
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 10


def test_tail_type_filter_and_json_raw_lines(metrics_file: Path) -> None:
    result = runner.invoke(
        app,
        ["metrics", "tail", str(metrics_file), "--type", "reply", "--type", "stats", "-n", "4"],
    )
    assert result.exit_code == 0, result.output
    kinds = [line.split()[1] for line in result.stdout.splitlines()]
    assert kinds == ["reply", "reply", "reply", "stats"]

    result = runner.invoke(app, ["metrics", "tail", str(metrics_file), "--json", "-t", "reply"])
    assert result.exit_code == 0
    raw = [jl(e) for e in sample_events() if e["type"] == "reply"][-10:]
    assert result.stdout.splitlines() == raw  # exactly the file's bytes, nothing else
    assert all(json.loads(x)["type"] == "reply" for x in result.stdout.splitlines())


def test_tail_json_keeps_the_bytes_exactly(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    original = '{ "type" : "message",  "ts": 1.0, "note": "é" }'
    path.write_text(original + "\n", encoding="utf-8")
    result = runner.invoke(app, ["metrics", "tail", str(path), "--json"])
    assert result.stdout_bytes == original.encode() + b"\n"


def test_missing_file_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    result = runner.invoke(app, ["metrics", "tail", str(missing)])
    assert isinstance(result.exception, BotctlError)
    result = runner.invoke(app, ["metrics", "summary", str(missing)])
    assert isinstance(result.exception, BotctlError)

    with pytest.raises(SystemExit) as exit_info:
        main(["metrics", "summary", str(missing)])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert f"no metrics file at {missing}" in captured.err
    assert "botctl run" in captured.err


def test_help_works_with_h() -> None:
    for args in (["metrics", "-h"], ["metrics", "tail", "-h"], ["metrics", "summary", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0
        assert "Usage" in result.stdout


# --------------------------------------------------------------------------------------------------
# Subprocesses


def botctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "botctl", *args]


class LineReader:
    """Reads a pipe on a thread so that tests can wait for lines with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: IO[str]) -> None:
        for text in stream:
            self.lines.put(text.rstrip("\n"))

    def take(self, count: int, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        got: list[str] = []
        while len(got) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"expected {count} lines within {timeout} s, got {got!r}")
            try:
                got.append(self.lines.get(timeout=remaining))
            except queue.Empty:
                continue
        return got

    def quiet_for(self, seconds: float) -> list[str]:
        time.sleep(seconds)
        extra: list[str] = []
        while not self.lines.empty():
            extra.append(self.lines.get_nowait())
        return extra

    def join(self) -> None:
        self._thread.join(timeout=5)


@pytest.fixture
def spawn() -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        proc = subprocess.Popen(
            botctl(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def interrupt(proc: subprocess.Popen[str]) -> int:
    """Ctrl-C as a terminal sends it; the exit status."""
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=10)


@pytest.mark.integration
def test_summary_json_subprocess(metrics_file: Path) -> None:
    done = subprocess.run(
        botctl("metrics", "summary", str(metrics_file), "--json"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"]["message"] == 12


@pytest.mark.integration
def test_missing_file_subprocess(tmp_path: Path) -> None:
    done = subprocess.run(
        botctl("metrics", "tail", str(tmp_path / "absent.jsonl")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "no metrics file at" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_tail_follow_json_waits_truncation_rotation_and_ctrl_c(spawn: Any, tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    proc = spawn("metrics", "tail", str(path), "-f", "--json")
    out = LineReader(proc.stdout)
    err = LineReader(proc.stderr)
    assert "waiting for" in err.take(1)[0]  # the file does not exist yet

    def ev(n: int, kind: str = "message") -> str:
        return jl({"ts": T0 + n, "type": kind, "n": n})

    # 1. The file appears with a first batch.
    batch = [ev(1), ev(2, "reply"), ev(3)]
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(x + "\n" for x in batch))
    assert out.take(3) == batch

    # 2. A torn line is not printed until its newline lands.
    whole = ev(4, "llm_call")
    with open(path, "a", encoding="utf-8") as f:
        f.write(whole[:15])
    assert out.quiet_for(0.8) == []
    with open(path, "a", encoding="utf-8") as f:
        f.write(whole[15:] + "\n" + ev(5) + "\n")
    assert out.take(2) == [whole, ev(5)]

    # 3. Truncated and rewritten shorter: read again from the start.
    path.write_text(ev(6) + "\n", encoding="utf-8")
    assert out.take(1) == [ev(6)]

    # 4. Rotated: the old file's last lines, then the new file from its start.
    with open(path, "a", encoding="utf-8") as f:
        f.write(ev(7) + "\n")
    path.rename(tmp_path / "metrics.jsonl.1")
    path.write_text(ev(8) + "\n" + ev(9) + "\n", encoding="utf-8")
    assert out.take(3) == [ev(7), ev(8), ev(9)]

    # 5. Lines that are not events are not printed with --json.
    with open(path, "a", encoding="utf-8") as f:
        f.write("garbage\n" + ev(10) + "\n")
    assert out.take(1) == [ev(10)]

    code = interrupt(proc)
    out.join()
    err.join()
    assert code == 0
    leftover = []
    while not err.lines.empty():
        leftover.append(err.lines.get_nowait())
    assert not any("Traceback" in x for x in leftover)
    assert out.lines.empty()


@pytest.mark.integration
def test_tail_follow_readable_with_last_n_and_type_filter(spawn: Any, tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(jl(e) + "\n" for e in sample_events()), encoding="utf-8")
    proc = spawn("metrics", "tail", str(path), "-f", "-n", "2", "--type", "llm_call")
    out = LineReader(proc.stdout)
    first = out.take(2)
    assert all(" llm_call " in x for x in first)
    assert "latency_ms=110" in first[0] and "latency_ms=111" in first[1]

    stop = threading.Event()

    def writer() -> None:
        # Batches as MetricsService writes them: several lines per write, a pause between.
        for batch in range(3):
            events = [
                {"ts": T0 + 100 + batch, "type": "message", "channel": "c", "user": "u"},
                {"ts": T0 + 100 + batch, "type": "llm_call", "latency_ms": 1000 + batch},
            ]
            with open(path, "a", encoding="utf-8") as f:
                f.write("".join(jl(e) + "\n" for e in events))
            if stop.wait(0.3):
                return

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        follow = out.take(3)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert [x.split("latency_ms=")[1] for x in follow] == ["1000", "1001", "1002"]

    code = interrupt(proc)
    out.join()
    assert code == 0
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()
