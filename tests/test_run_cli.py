"""``botctl run`` as a real subprocess: the sandbox end to end, the summary, and a graceful stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.integration


def run_args(metrics: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "botctl", "run",
        "--metrics-file", str(metrics), "--rate", "8", "--users", "6", "--channels", "4", *extra,
    ]  # fmt: skip


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "OLLAMA_", "BOT_"))}
    out["COLUMNS"] = "120"
    # A closed port as the default Ollama would be too slow to detect here; the sandbox LLM is
    # chosen when nothing answers at the default address, as on a fresh machine.
    return out


def count(metrics: Path, kind: str) -> int:
    lines = metrics.read_bytes().splitlines()
    return sum(1 for line in lines if orjson.loads(line)["type"] == kind)


def sandbox_sent(stdout: str) -> int:
    match = re.search(r"sandbox messages sent\s*│\s*(\d+)", stdout)
    assert match, stdout
    return int(match.group(1))


def test_run_with_duration_prints_banner_and_summary(tmp_path: Path) -> None:
    metrics = tmp_path / "m.jsonl"
    proc = subprocess.run(
        run_args(metrics, "--duration", "6"), capture_output=True, text=True, timeout=90, env=env()
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Discord : the sandbox" in out
    assert "LLM" in out and "metrics : " + str(metrics) in out.replace("\n", "")
    for row in ("messages", "replies", "LLM calls", "calls saved by dedup", "history hit rate",
                "metrics events written", "reply latency p50", "reply latency p95", "reply latency p99"):  # fmt: skip
        assert row in out
    sent = sandbox_sent(out)
    assert sent > 10
    assert count(metrics, "message") == sent
    assert "Traceback" not in proc.stderr
    assert (metrics.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_gracefully_and_loses_no_message(tmp_path: Path, sig: signal.Signals) -> None:
    metrics = tmp_path / "m.jsonl"
    proc = subprocess.Popen(
        run_args(metrics, "--batch-size", "1000", "--batch-interval", "600"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
    )  # fmt: skip
    try:
        time.sleep(7)
        proc.send_signal(sig)
        started = time.monotonic()
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    sent = sandbox_sent(out)
    assert sent > 5
    # batch-size 1000 / interval 600: every event was still buffered at the signal.
    assert count(metrics, "message") == sent
    assert count(metrics, "stats") >= 1


def test_chat_mode_streams_the_reply_to_the_terminal(tmp_path: Path) -> None:
    metrics = tmp_path / "m.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "botctl", "run", "--chat", "--metrics-file", str(metrics)],
        input="!echo hello from the terminal\n",
        capture_output=True, text=True, timeout=90, env=env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "bot [1]> hello from the terminal" in proc.stdout
    assert count(metrics, "message") == 1  # end of input stops the bot gracefully
