"""``botctl metrics summary``/``tail`` over runs and files: the latest run by default, ``--run``,
``--all``, several files merged by time with their shards, and lines that are not events."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from botctl.main import app, main

runner = CliRunner()
T0 = 1_750_000_000.0


def jl(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))


def run_events(
    run: str | None,
    start: float,
    messages: int,
    *,
    hit_rate: float,
    flushes: int,
    latency: float,
    shard: list[int] | None = None,
) -> list[dict[str, Any]]:
    """A run as the bot writes it: messages and replies, a stats event mid-way (stale by the end)
    and a last stats event after the final flush."""
    extra: dict[str, Any] = {} if run is None else {"run": run}
    if shard is not None:
        extra["shard"] = shard
    events: list[dict[str, Any]] = []
    for i in range(messages):
        events.append({"ts": start + i, "type": "message", "channel": "c", **extra})
        events.append({"ts": start + i + 0.5, "type": "reply", "latency_ms": latency, **extra})
    middle = {"history": {"hit_rate": 1.0, "hits": 1, "misses": 99}, "batch": {"flushes": 0}}
    events.insert(2, {"ts": start + 1.9, "type": "stats", **middle, **extra})
    last = {
        "history": {"hit_rate": hit_rate, "hits": int(hit_rate), "misses": 100 - int(hit_rate)},
        "batch": {"flushes": flushes, "events_written": 2 * messages + 1},
    }
    events.append({"ts": start + messages + 1, "type": "stats", **last, **extra})
    return events


def write(path: Path, events: list[dict[str, Any]], tail: str = "") -> Path:
    path.write_text("".join(jl(e) + "\n" for e in events) + tail, encoding="utf-8")
    return path


@pytest.fixture
def two_runs(tmp_path: Path) -> Path:
    old = run_events("aaa111", T0, 12, hit_rate=10.0, flushes=9, latency=500.0)
    new = run_events("bbb222", T0 + 100, 3, hit_rate=60.0, flushes=2, latency=100.0)
    return write(tmp_path / "metrics.jsonl", old + new)


def summary_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["metrics", "summary", *args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_summary_defaults_to_the_latest_run_with_its_own_figures(two_runs: Path) -> None:
    data = summary_json(str(two_runs))
    assert data["runs"] == ["bbb222"]
    assert data["runs_in_files"] == 2
    assert data["counts"] == {"message": 3, "reply": 3, "stats": 2}
    assert data["reply_latency_ms"]["p99"] == 100.0  # nothing of the older, slower run
    # From the run's LAST stats event, not the one taken before its final flush.
    assert data["history_hit_rate"] == 60.0
    assert data["flushes"] == 2
    assert data["events_written"] == 7


def test_summary_run_and_all(two_runs: Path) -> None:
    old = summary_json(str(two_runs), "--run", "aaa111")
    assert old["counts"]["message"] == 12
    assert old["flushes"] == 9
    everything = summary_json(str(two_runs), "--all")
    assert everything["counts"]["message"] == 15
    assert everything["flushes"] == 11  # each run's totals, added up
    assert everything["events_written"] == 25 + 7
    assert everything["history_hit_rate"] == pytest.approx(70 * 100 / 200)


def test_summary_table_says_which_run_it_shows(two_runs: Path) -> None:
    result = runner.invoke(app, ["metrics", "summary", str(two_runs)], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "run bbb222 (latest of 2; --all for every run)" in result.stdout


def test_an_unknown_run_is_a_one_line_error_listing_the_runs(
    two_runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["metrics", "summary", str(two_runs), "--run", "zzz"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no run zzz" in err and "aaa111, bbb222" in err


def test_lines_without_a_run_read_as_one_run_before_the_runs_with_ids(tmp_path: Path) -> None:
    legacy = run_events(None, T0, 4, hit_rate=20.0, flushes=5, latency=300.0)
    path = write(tmp_path / "m.jsonl", legacy)
    assert summary_json(str(path))["counts"]["message"] == 4  # an old file: all of it
    write(path, legacy + run_events("ccc333", T0 + 50, 2, hit_rate=50.0, flushes=1, latency=1.0))
    assert summary_json(str(path))["counts"]["message"] == 2
    assert summary_json(str(path), "--all")["runs"] == [None, "ccc333"]


def test_tail_shows_the_latest_run_and_says_so(two_runs: Path) -> None:
    result = runner.invoke(app, ["metrics", "tail", str(two_runs), "-n", "50", "--json"])
    assert result.exit_code == 0, result.output
    runs = {json.loads(line)["run"] for line in result.stdout.splitlines()}
    assert runs == {"bbb222"}
    assert "1 older run" in result.stderr
    result = runner.invoke(app, ["metrics", "tail", str(two_runs), "-n", "100", "--all", "--json"])
    assert len(result.stdout.splitlines()) == len(two_runs.read_text().splitlines())


def test_several_files_merge_by_time_with_per_shard_counts(tmp_path: Path) -> None:
    a = write(
        tmp_path / "a.jsonl",
        run_events("p1", T0, 5, hit_rate=50, flushes=1, latency=10, shard=[0, 1]),
    )
    b = write(
        tmp_path / "b.jsonl",
        run_events("p2", T0 + 0.25, 3, hit_rate=50, flushes=4, latency=20, shard=[2]),
    )
    data = summary_json(str(a), str(b))
    assert data["files"] == [str(a), str(b)]
    assert data["runs"] == ["p1", "p2"]  # the latest run of each file
    assert data["counts"]["message"] == 8
    assert data["flushes"] == 5
    assert data["shards"]["0,1"]["message"] == 5
    assert data["shards"]["2"] == {"message": 3, "reply": 3, "stats": 2}
    # A quoted glob names the same files.
    assert summary_json(str(tmp_path / "*.jsonl"))["counts"] == data["counts"]

    result = runner.invoke(app, ["metrics", "tail", str(a), str(b), "-n", "6", "--json"])
    stamps = [json.loads(line)["ts"] for line in result.stdout.splitlines()]
    assert stamps == sorted(stamps)
    assert {json.loads(line)["run"] for line in result.stdout.splitlines()} == {"p1", "p2"}

    table = runner.invoke(app, ["metrics", "summary", str(a), str(b)], env={"COLUMNS": "100"})
    assert "By shard" in table.stdout


def test_a_glob_that_matches_nothing_is_a_user_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["metrics", "summary", str(tmp_path / "*.jsonl")])
    assert result.exit_code == 1
    assert "no metrics file matches" in str(result.exception)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(Path(__file__).read_bytes(), id="python source"),
        pytest.param(bytes(range(256)) * 40 + b"\n\xff\xfe{}\n", id="random bytes"),
    ],
)
def test_tail_on_a_file_that_is_not_metrics_says_how_many_lines_it_skipped(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "junk"
    path.write_bytes(content)
    result = runner.invoke(app, ["metrics", "tail", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("skipped ")
    count = int(lines[0].split()[1].replace(",", ""))
    assert count == sum(1 for line in content.split(b"\n") if line.strip())


def test_summary_of_a_file_that_is_not_metrics_is_one_line_and_exit_1(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("garbage\nnot json {\n")
    for args in ([], ["--json"]):
        result = runner.invoke(app, ["metrics", "summary", str(junk), *args])
        assert result.exit_code == 1
        message = str(result.exception)
        assert "no metrics events in" in message and "(2 lines that are not events)" in message
    # An empty file is a run that wrote nothing yet: zeros, not an error.
    empty = tmp_path / "m.jsonl"
    empty.write_bytes(b"")
    result = runner.invoke(app, ["metrics", "summary", str(empty), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["counts"] == {}
    # A torn last line among events is skipped, the rest summarised.
    path = write(tmp_path / "torn.jsonl", [{"ts": T0, "type": "message"}], tail='{"ts": 1, "ty')
    result = runner.invoke(app, ["metrics", "summary", str(path), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["counts"] == {"message": 1}


def test_tail_prints_what_it_can_around_a_torn_line(tmp_path: Path) -> None:
    good = [{"ts": T0 + i, "type": "message"} for i in range(3)]
    path = write(tmp_path / "m.jsonl", good, tail='{"ts": 1, "ty')
    result = runner.invoke(app, ["metrics", "tail", str(path), "--json"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [jl(e) for e in good]  # stdout: raw lines only
    assert result.stderr.startswith("skipped 1 line that is not a metrics event")


def test_an_unknown_type_is_refused_with_the_known_ones(
    two_runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["metrics", "tail", str(two_runs), "--type", "bogus"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    for kind in ("message", "llm_call", "reply", "command", "error", "stats", "retrieval"):
        assert kind in err


@pytest.mark.integration
def test_tail_on_the_readme_as_a_subprocess(tmp_path: Path) -> None:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    proc = subprocess.run(
        [sys.executable, "-m", "botctl", "metrics", "tail", str(readme)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("skipped ") and proc.stderr.count("\n") == 1


async def test_summary_totals_match_what_the_service_itself_counted(tmp_path: Path) -> None:
    # The final stats snapshot is written by one more flush: summary counts that write and the
    # events it carried, so `metrics summary` says what `botctl run`'s own table said.
    from bot.metrics import MetricsService

    path = tmp_path / "m.jsonl"
    svc = MetricsService(path, batch_size=5, batch_interval=60)
    svc.start_batch_flush_task()
    for i in range(12):
        svc.log_event("message", {"n": i})
        await asyncio.sleep(0)
    await svc.stop_batch_flush_task()
    own = svc.get_batch_stats()
    result = runner.invoke(app, ["metrics", "summary", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["flushes"], data["events_written"]) == (own["flushes"], own["events_written"])
    assert data["events_written"] == len(path.read_bytes().splitlines()) == 13


def test_a_reply_cancelled_at_a_stop_is_no_latency_figure(tmp_path: Path) -> None:
    events = [
        {"ts": T0, "type": "reply", "status": "ok", "latency_ms": 100.0},
        {"ts": T0 + 1, "type": "reply", "status": "cancelled", "latency_ms": 13000.0},
    ]
    path = write(tmp_path / "m.jsonl", events)
    result = runner.invoke(app, ["metrics", "summary", str(path), "--json"])
    data = json.loads(result.stdout)
    assert data["counts"]["reply"] == 2
    assert data["reply_latency_ms"]["p99"] == 100.0
