"""``botctl metrics top``: the pure frame computation on synthetic events with known rates and
percentiles, its rendering, and one frame through the CLI (piped: no terminal)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from botctl.main import app
from botctl.metrics.events import Record
from botctl.metrics.top import TopFrame, TopState
from botctl.reporters.metrics_top import spark, top_renderable

T0 = 1_750_000_000.0
runner = CliRunner()


def rec(event: dict[str, Any], file: int = 0) -> Record:
    return Record(event, json.dumps(event).encode(), file)


def two_minutes(run: str = "r1") -> list[dict[str, Any]]:
    """120 s of traffic from T0: the first minute quiet, the second busier, all known numbers.

    Last minute (T0+60 .. T0+120): 60 messages, 120 replies (latencies 1..120 ms, 3 of them
    errors), 30 LLM calls (20 `fast`, 10 `coder`; 10 answered by dedup; 2 failed), 3 errors at
    `llm`. First minute: 60 replies (1 a second, 1000 ms), 1 error at `discord`.
    """
    events: list[dict[str, Any]] = []
    for i in range(60):
        events.append({"ts": T0 + i + 0.5, "type": "reply", "latency_ms": 1000.0, "status": "ok"})
    events.append({"ts": T0 + 10, "type": "error", "where": "discord", "error": "HTTPException"})
    latency = 0
    for i in range(60, 120):
        events.append({"ts": T0 + i + 0.25, "type": "message", "channel": "c", "user": "u"})
        for half in (0.5, 0.75):
            latency += 1
            status = "error" if latency in (7, 8, 9) else "ok"
            events.append(
                {"ts": T0 + i + half, "type": "reply", "latency_ms": float(latency)}
                | {"status": status}
            )
        if i % 2 == 0:
            n = (i - 60) // 2  # 0..29
            events.append(
                {
                    "ts": T0 + i + 0.3,
                    "type": "llm_call",
                    "model": "fast" if n < 20 else "coder",
                    "latency_ms": 100.0 * (n + 1),
                    "ttft_ms": 10.0 * (n + 1),
                    "dedup": "follower" if n % 3 == 0 else "leader",
                    "status": "error" if n in (20, 21) else "ok",
                }
            )
    for i in (100, 101, 102):
        events.append({"ts": T0 + i + 0.9, "type": "error", "where": "llm", "error": "LLMError"})
    events.append(
        {
            "ts": T0 + 119.95,
            "type": "stats",
            "history": {"hits": 30, "misses": 10, "hit_rate": 75.0},
            "batch": {"pending_events": 4},
        }
    )
    for event in events:
        event["run"] = run
    events.sort(key=lambda e: e["ts"])
    return events


def state_of(events: list[dict[str, Any]], **kwargs: Any) -> TopState:
    state = TopState(**kwargs)
    for event in events:
        state.add(rec(event))
    return state


def test_rates_percentiles_dedup_models_errors_over_the_last_minute() -> None:
    frame = state_of(two_minutes()).frame(T0 + 120.0)
    assert frame.live and frame.at == T0 + 120.0
    assert frame.window_s == 60.0
    assert frame.runs == ["r1"]
    assert frame.messages_per_s == pytest.approx(1.0)
    assert frame.replies_per_s == pytest.approx(2.0)
    assert frame.llm_calls_per_s == pytest.approx(20 / 60)  # upstream: 30 asked, 10 by dedup
    assert frame.replies_by_status == {"ok": 117, "error": 3}
    # Nearest rank over 1..120 ms: p50 the 60th, p95 the 114th, p99 the 119th.
    reply = frame.reply_latency_ms
    assert (reply.p50, reply.p95, reply.p99, reply.count) == (60.0, 114.0, 119.0, 120)
    llm = frame.llm_latency_ms  # 100..3000 ms
    assert (llm.p50, llm.p95, llm.p99, llm.count) == (1500.0, 2900.0, 3000.0, 30)
    assert frame.ttft_ms.p50 == 150.0
    assert (frame.llm_requests, frame.llm_saved) == (30, 10)
    assert frame.dedup_ratio == pytest.approx(1 / 3)
    assert (frame.llm_requests_total, frame.llm_saved_total) == (30, 10)
    by_model = {row.model: row for row in frame.models}
    assert [row.model for row in frame.models] == ["fast", "coder"]  # busiest first
    assert (by_model["fast"].calls, by_model["fast"].failed, by_model["fast"].total) == (20, 0, 20)
    assert by_model["fast"].per_s == pytest.approx(20 / 60)
    assert by_model["coder"].failed == 2
    assert by_model["coder"].latency_ms.p50 == 2500.0  # 2100..3000: the 5th of 10
    assert [(e.where, e.recent, e.total) for e in frame.errors] == [
        ("llm", 3, 3),
        ("discord", 0, 1),
    ]
    # Replies per whole second over two minutes: 1 a second, then 2 a second.
    assert frame.replies_per_second == [1] * 60 + [2] * 60
    assert frame.totals == {"message": 60, "reply": 180, "llm_call": 30, "error": 4}
    assert frame.events == len(two_minutes())
    assert frame.history_hit_rate == 75.0
    assert frame.buffered_events == 4


def test_the_current_second_is_left_out_of_the_sparkline_while_it_fills() -> None:
    events = two_minutes()
    events.append({"ts": T0 + 120.2, "type": "reply", "latency_ms": 5.0, "run": "r1"})
    frame = state_of(events).frame(T0 + 120.5)
    assert frame.replies_per_second[-1] == 2  # the second T0+119, complete
    assert sum(frame.replies_per_second) == 180


def test_a_young_run_is_measured_over_its_age_not_a_full_minute() -> None:
    events = [e for e in two_minutes() if e["ts"] >= T0 + 110]
    frame = state_of(events).frame(T0 + 120.0)
    assert frame.window_s == pytest.approx(120.0 - 110.25)
    assert frame.messages_per_s == pytest.approx(10 / frame.window_s)


def test_an_idle_file_shows_the_minute_before_its_last_event() -> None:
    frame = state_of(two_minutes()).frame(T0 + 3600.0)
    assert not frame.live
    assert frame.at == T0 + 119.95
    assert frame.replies_per_s == pytest.approx(120 / 60)
    assert frame.replies_per_second[-1] == 2  # the newest second is in, as nothing fills it
    assert frame.lag_s == 0.0


def test_nothing_yet_is_a_waiting_frame() -> None:
    frame = TopState().frame(T0, files=["m.jsonl"], missing=["m.jsonl"])
    assert frame.waiting and frame.live
    assert frame.messages_per_s == 0 and frame.reply_latency_ms.p50 is None
    assert frame.replies_per_second == [0] * 120
    text = render(frame)
    assert "waiting for m.jsonl" in text


def test_a_new_run_in_a_file_replaces_the_old_one_and_its_stragglers_are_ignored() -> None:
    state = state_of(two_minutes("old"))
    state.add(rec({"ts": T0 + 130, "type": "message", "run": "new"}))
    state.add(rec({"ts": T0 + 119.99, "type": "reply", "latency_ms": 1.0, "run": "old"}))
    frame = state.frame(T0 + 131)
    assert frame.runs == ["new"]
    assert frame.totals == {"message": 1, "reply": 0, "llm_call": 0, "error": 0}
    assert frame.replies_per_second == [0] * 120
    assert frame.history_hit_rate is None


def test_run_and_all_choose_like_summary() -> None:
    events = [*two_minutes("old"), {"ts": T0 + 130, "type": "message", "run": "new"}]
    only_old = state_of(events, run="old").frame(T0 + 131)
    assert only_old.runs == ["old"] and only_old.totals["reply"] == 180
    both = state_of(events, everything=True).frame(T0 + 131)
    assert both.runs == ["old", "new"] and both.totals["message"] == 61


def test_several_files_add_up_each_with_its_own_run() -> None:
    state = TopState()
    for event in two_minutes("shard0"):
        state.add(rec(event, file=0))
    for event in two_minutes("shard1"):
        state.add(rec(event, file=1))
    frame = state.frame(T0 + 120.0)
    assert frame.runs == ["shard0", "shard1"]
    assert frame.replies_per_s == pytest.approx(4.0)
    assert frame.replies_per_second == [2] * 60 + [4] * 60
    assert frame.history_hit_rate == 75.0  # 60 hits of 80 lookups


def test_memory_holds_only_the_recent_events() -> None:
    state = TopState()
    for i in range(20_000):
        state.add(rec({"ts": T0 + i * 0.1 + 0.05, "type": "message", "run": "r"}))
    assert len(state._samples) <= 3_000  # 2000 s of events, ~240 s kept
    frame = state.frame(T0 + 2000)
    assert frame.messages_per_s == pytest.approx(10.0)
    assert frame.totals["message"] == 20_000


def render(frame: TopFrame, width: int = 120) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(top_renderable(frame, width=width))
    return console.export_text()


def test_the_frame_renders_its_figures() -> None:
    frame = state_of(two_minutes()).frame(T0 + 120.0, files=["profiles/metrics.jsonl"])
    text = render(frame)
    for needle in (
        "profiles/metrics.jsonl",
        "run r1",
        "live",
        "messages 1.00/s",
        "replies 2.00/s",
        "LLM calls 0.33/s",
        "10 of 30 LLM requests saved (33.3 %)",
        "history hit rate 75.0 %",
        "peak 2/s",
        "Ctrl-C quits",
    ):
        assert needle in text, needle
    reply_row = next(line for line in text.splitlines() if line.strip().startswith("reply "))
    assert reply_row.split()[1:] == ["60.0", "114", "119", "120"]
    assert any(line.split()[:3] == ["coder", "10", "0.17/s"] for line in text.splitlines())
    assert any(line.split() == ["llm", "3", "3"] for line in text.splitlines())
    # 1 then 2 replies a second, scaled to the peak (118 seconds fit in 120 columns).
    assert "\n" + "▄" * 58 + "█" * 60 + "\n" in text


def test_spark_scales_to_the_peak_and_keeps_zeros_blank() -> None:
    assert spark([0, 1, 2, 4, 8]) == " ▁▂▄█"
    assert spark([0, 0]) == "  "
    assert spark([]) == ""


def write(path: Path, events: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")


def test_piped_it_prints_one_frame_of_the_latest_run(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    write(path, two_minutes("old") + two_minutes("latest"))
    result = runner.invoke(app, ["metrics", "top", str(path)], env={"COLUMNS": "140"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "run latest" in out and "old" not in out
    assert "idle" in out  # T0 is long past: the run's last minute is shown
    assert "replies 2.00/s" in out
    assert "Ctrl-C" not in out

    result = runner.invoke(
        app, ["metrics", "top", str(path), "--all", "--once"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "runs old, latest" in result.stdout


def test_piped_errors_are_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["metrics", "top", str(tmp_path / "absent.jsonl")])
    assert result.exit_code == 1
    path = tmp_path / "m.jsonl"
    write(path, two_minutes())
    result = runner.invoke(app, ["metrics", "top", str(path), "--run", "nope"])
    assert result.exit_code == 1
    result = runner.invoke(app, ["metrics", "top", str(path), "--run", "r1", "--all"])
    assert result.exit_code == 2
