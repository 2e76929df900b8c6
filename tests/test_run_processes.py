"""``botctl run`` as a user runs it: ``--processes N`` (N shard processes, a redis-server of their
own and the sandbox, each process writing its own metrics file), the run's table, and what is
refused in one line before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from _redis import redis_or_skip

pytestmark = pytest.mark.integration


def botctl(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "OLLAMA_", "BOT_"))}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "botctl", "run", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_two_processes_answer_every_question_each_in_its_own_file(tmp_path: Path) -> None:
    redis_or_skip()
    metrics = tmp_path / "m.jsonl"
    proc = botctl("--processes", "2", "--guilds", "4", "--duration", "8", "--rate", "6",
                  "--duplicate-ratio", "0.5", "--metrics-file", str(metrics), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not metrics.exists()  # each process writes its own file, none writes this one
    statuses: dict[int, list[str]] = {}
    for shard in (0, 1):
        events = list(map(orjson.loads, (tmp_path / f"m.shard{shard}.jsonl").read_bytes().split()))
        assert {tuple(e["shard"]) for e in events} == {(shard,)}
        statuses[shard] = [e["status"] for e in events if e["type"] == "reply"]
    # The sandbox's users are load: no Discord cooldown holds them back, though the children
    # connect with a token (the sandbox's).
    assert all(statuses.values()), statuses
    assert {s for shard in statuses.values() for s in shard} <= {"ok", "cancelled"}, statuses


def test_an_unreachable_redis_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    metrics = tmp_path / "m.jsonl"
    proc = botctl("--processes", "2", "--redis", "redis://127.0.0.1:1/0", "--duration", "5",
                  "--metrics-file", str(metrics), cwd=tmp_path, timeout=60)  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Redis at redis://127.0.0.1:1/0" in lines[0]
    assert "Summary" not in proc.stdout and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("m*.jsonl"))


@pytest.mark.parametrize(
    "extra", [["--shards", "2"], ["--shard-count", "4", "--shard-ids", "0"]], ids=["shards", "ids"]
)
def test_processes_refuse_shard_options_of_their_own(tmp_path: Path, extra: list[str]) -> None:
    proc = botctl("--processes", "2", *extra, "--duration", "3", cwd=tmp_path, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "leave out --shards, --shard-count and --shard-ids" in lines[0]


def test_the_summary_counts_replies_given_not_those_cancelled_at_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.console import Console

    from botctl.reporters import run as reporters
    from botctl.run.report import RunReport

    out = Console(record=True, width=100)
    monkeypatch.setattr(reporters, "console", out)
    counters = {
        "messages": 10,
        "replies": 10,
        "replies_by_status": {"ok": 5, "error": 1, "cancelled": 4},
    }
    report = RunReport({}, 5.0, counters, {}, "abc123", cancelled_replies=4)
    reporters.RunReporter().summary(report)
    replies = {
        cells[0]: cells[1]
        for line in out.export_text().splitlines()
        if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 2
    }
    assert replies["replies"] == "6  (1 error)"
    assert replies["replies cancelled at stop"] == "4"


def test_a_busy_metrics_port_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = botctl("--metrics-port", str(port), "--duration", "3", cwd=tmp_path, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}: the port is in use" in lines[0]
    assert "botctl run" not in proc.stdout  # no banner: nothing was started
