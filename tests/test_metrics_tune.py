"""``botctl metrics tune``: recommendations checked against a replay of the bot's flush rule.

The replay below is written from the rule as ``bot.metrics`` applies it, independently of
``botctl.metrics.tune``: write the buffer when ``batch_size`` events are waiting, or when
``batch_interval`` seconds have passed since the last write (an empty buffer just restarts the
interval). A SIGKILL loses what is buffered: the longest an event waited before its write.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from botctl.main import app, main

runner = CliRunner()
T0 = 1_750_000_000.0
CURRENT = {"batch_size": 50, "batch_interval": 60.0}


def replay(stamps: list[float], size: int, interval: float) -> tuple[list[float], list[float]]:
    """(times of the writes, how long the first event of each write had waited)."""
    writes: list[float] = []
    waited: list[float] = []
    buffer: list[float] = []
    next_write = stamps[0] + interval
    for ts in stamps:
        while next_write <= ts:
            if buffer:
                writes.append(next_write)
                waited.append(next_write - buffer[0])
                buffer = []
            next_write += interval
        buffer.append(ts)
        if len(buffer) >= size:
            writes.append(ts)
            waited.append(ts - buffer[0])
            buffer = []
            next_write = ts + interval
    return writes, waited


def p95_writes_per_minute(writes: list[float], start: float, end: float) -> float:
    minutes = max(1, int((end - start) // 60))
    counts = [0] * minutes
    for ts in writes:
        index = int((ts - start) // 60)
        if index < minutes:
            counts[index] += 1
    ordered = sorted(counts)
    return float(ordered[math.ceil(0.95 * len(ordered)) - 1])


def events_at(stamps: list[float], run: str = "r1") -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"ts": ts, "type": "message", "run": run} for ts in stamps]
    last = stamps[-1] + 0.001
    events.append({"ts": last, "type": "stats", "run": run, "batch": dict(CURRENT)})
    return events


def steady(rate: float, minutes: int) -> list[float]:
    return [T0 + i / rate for i in range(int(rate * 60 * minutes))]


def bursty() -> list[float]:
    """1 event/s for 20 minutes, with minutes 5, 11 and 17 at 20 events/s."""
    stamps: list[float] = []
    for minute in range(20):
        rate = 20 if minute in (5, 11, 17) else 1
        stamps += [T0 + minute * 60 + i / rate for i in range(60 * rate)]
    return stamps


def idle() -> list[float]:
    return [T0 + 45.0 * i for i in range(40)]  # one event every 45 s for half an hour


def write(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def tune_json(path: Path, *args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["metrics", "tune", str(path), "--json", *args])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.mark.parametrize(
    ("stamps", "limits"),
    [
        pytest.param(steady(4, 10), (10.0, 60.0), id="steady"),
        pytest.param(steady(4, 10), (2.0, 120.0), id="steady-tight"),
        pytest.param(bursty(), (10.0, 60.0), id="bursty"),
        pytest.param(idle(), (10.0, 60.0), id="idle"),
    ],
)
def test_recommendations_meet_both_limits_and_match_a_replay(
    tmp_path: Path, stamps: list[float], limits: tuple[float, float]
) -> None:
    loss, writes_limit = limits
    events = events_at(stamps)
    path = write(tmp_path / "m.jsonl", events)
    data = tune_json(
        path, "--max-loss-seconds", str(loss), "--max-writes-per-minute", str(writes_limit)
    )
    size = data["recommended"]["batch_size"]
    interval = data["recommended"]["batch_interval"]
    expected = data["expected"]
    assert expected["max_loss_seconds"] <= loss
    assert expected["writes_per_minute"] <= writes_limit

    all_stamps = [e["ts"] for e in events]
    writes, waited = replay(all_stamps, size, interval)
    simulated_writes = p95_writes_per_minute(writes, all_stamps[0], all_stamps[-1])
    simulated_loss = max(waited)
    assert simulated_loss <= loss + 1e-6
    assert simulated_writes <= writes_limit
    assert abs(simulated_writes - expected["writes_per_minute"]) <= max(1.0, 0.1 * simulated_writes)
    assert abs(simulated_loss - expected["max_loss_seconds"]) <= max(0.5, 0.1 * simulated_loss)


def test_the_current_settings_come_from_the_runs_stats_and_the_json_keys_are_stable(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "m.jsonl", events_at(steady(4, 5)))
    data = tune_json(path)
    assert data["current"] == CURRENT
    assert set(data["recommended"]) == {"batch_size", "batch_interval"}
    assert set(data["expected"]) == {"writes_per_minute", "max_loss_seconds"}
    # The current settings' figures: 4 events/s fill 50 in 12.5 s: 4.8 writes a minute (the
    # last, partial minute also holds the final stats event: a rate a little over 4).
    current = data["figures"]["current"]["at_p95"]
    assert current["writes_per_minute"] == pytest.approx(4.8, rel=0.02)
    assert current["max_loss_seconds"] == pytest.approx(49 / 4, rel=0.02)
    assert data["figures"]["current"]["meets_limits"] is False  # 12.25 s > 10 s


def test_tune_reads_the_latest_run(tmp_path: Path) -> None:
    busy = events_at(steady(20, 3), run="old")
    calm = events_at([ts + 1000 for ts in steady(1, 3)], run="new")
    path = write(tmp_path / "m.jsonl", busy + calm)
    assert tune_json(path)["runs"] == ["new"]
    assert 10 <= tune_json(path)["recommended"]["batch_size"] <= 11  # 1 event/s for 10 s
    assert 200 <= tune_json(path, "--run", "old")["recommended"]["batch_size"] <= 202


def test_several_processes_files_are_tuned_for_the_busiest_writer(tmp_path: Path) -> None:
    # Each process writes its own file with its own settings: their events together are not one
    # writer's traffic. Two processes at 4 and 2 events/s get the 4 events/s recommendation.
    busy = write(tmp_path / "m.shard0.jsonl", events_at(steady(4, 5), run="a"))
    calm = write(tmp_path / "m.shard1.jsonl", events_at(steady(2, 5), run="b"))
    alone = tune_json(busy)
    result = runner.invoke(app, ["metrics", "tune", str(calm), str(busy), "--json"])
    assert result.exit_code == 0, result.output
    both = json.loads(result.stdout)
    assert both["recommended"] == alone["recommended"]
    assert both["expected"] == alone["expected"]
    assert both["writers"] == 2 and both["busiest_writer"] == f"{busy} (run a)"
    assert alone["writers"] == 1 and alone["busiest_writer"] is None
    text = runner.invoke(app, ["metrics", "tune", str(calm), str(busy)], env={"COLUMNS": "200"})
    assert "2 writers" in text.stdout and "the figures are the busiest one's" in text.stdout


def test_the_table_at_80_columns_and_the_toml_to_paste(tmp_path: Path) -> None:
    path = write(tmp_path / "m.jsonl", events_at(steady(4, 10)))
    result = runner.invoke(app, ["metrics", "tune", str(path)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "…" not in out
    assert "current" in out and "recommended" in out
    data = tune_json(path)
    lines = out.splitlines()
    assert f"batch_size = {data['recommended']['batch_size']}" in lines
    assert "batch_interval = 10.0" in lines


def test_limits_that_no_setting_can_meet_are_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "m.jsonl", events_at(steady(4, 5)))
    with pytest.raises(SystemExit) as exit_info:
        main(["metrics", "tune", str(path), "--max-loss-seconds", "0.5"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--max-loss-seconds 1 or more" in err


@pytest.mark.integration
@pytest.mark.parametrize("content", [b"", b"hello\nnot json\n", b'{"ts": 1, "type": "message"}\n'])
def test_nothing_to_tune_from_is_one_line_and_exit_1(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "botctl", "metrics", "tune", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "nothing to tune from" in proc.stderr
