"""Tests of ``botctl.metrics``: parsing, the summary's arithmetic and the ``tail -F`` engine."""

from __future__ import annotations

import json
import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from bot.percentile import percentile
from botctl.metrics.events import (
    default_metrics_path,
    parse_line,
    read_files,
    read_records,
    select_runs,
)
from botctl.metrics.follow import Follower, follow_many
from botctl.metrics.summary import MetricsSummary, Percentiles, summarize, summarize_selection

T0 = 1_750_000_000.0


def summarize_file(path: Path) -> MetricsSummary:
    """Every run of one file, as `botctl metrics summary FILE --all` reads it."""
    reading = read_files([path])
    return summarize_selection(
        select_runs(reading, everything=True), files=[str(path)], skipped=reading.skipped
    )


def line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def known_events() -> list[dict[str, Any]]:
    """10 LLM calls (latency 10..100 ms), 20 replies (1..20 ms), 2 stats, 3 errors."""
    events: list[dict[str, Any]] = []
    modes = [
        "leader",
        "follower",
        "window",
        "off",
        "leader",
        "follower",
        "leader",
        "off",
        "x",
        None,
    ]
    for i in range(10):
        events.append({"ts": T0 + i, "type": "message", "channel": "c", "user": "u", "length": 5})
        events.append(
            {
                "ts": T0 + i + 0.5,
                "type": "llm_call",
                "model": "m",
                "latency_ms": float(10 * (i + 1)),
                "dedup": modes[i],
                "status": "error" if i == 3 else "ok",
                "error": "LLMTimeout" if i == 3 else None,
            }
        )
    for i in range(20):
        events.append({"ts": T0 + 20 + i, "type": "reply", "latency_ms": i + 1, "parts": 1})
    events.append(
        {
            "ts": T0 + 50,
            "type": "stats",
            "history": {"hit_rate": 10.0},
            "batch": {"flushes": 1, "events_written": 10},
        }
    )
    events.append(
        {
            "ts": T0 + 60,
            "type": "stats",
            "history": {"hit_rate": 87.5},
            "batch": {"flushes": 7, "events_written": 345},
        }
    )
    for name in ("ConnectionError", "ConnectionError", "HTTPException"):
        events.append({"ts": T0 + 30, "type": "error", "where": "discord", "error": name})
    events.append({"ts": T0 + 31, "type": "command", "name": "ask"})
    return events


def write_file(path: Path, events: list[dict[str, Any]], tail: bytes = b"") -> None:
    path.write_bytes(b"".join(line(e) + b"\n" for e in events) + tail)


# --------------------------------------------------------------------------------------------------
# Parsing and summary


def test_parse_line_accepts_objects_with_a_type_only() -> None:
    assert parse_line(b'{"ts": 1.5, "type": "reply"}') == {"ts": 1.5, "type": "reply"}
    assert parse_line(b'{"ts": 1.5, "type": "rep') is None
    assert parse_line(b"[1, 2]") is None
    assert parse_line(b'{"ts": 1.5}') is None
    assert parse_line(b'{"type": 3}') is None
    assert parse_line(b"\xff\xfe") is None


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    # Nearest rank on 10 values: p50 is the 5th, p95 and p99 the 10th.
    ten = [float(v) for v in range(10, 101, 10)]
    assert Percentiles.of(ten) == Percentiles(p50=50.0, p95=100.0, p99=100.0, count=10)


def test_summary_of_a_known_file_with_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    write_file(path, known_events(), tail=b'{"ts": 1750000099.0, "type": "mess')
    summary = summarize_file(path)
    assert summary.path == str(path)

    assert summary.counts == {
        "command": 1,
        "error": 3,
        "llm_call": 10,
        "message": 10,
        "reply": 20,
        "stats": 2,
    }
    assert summary.events == 46
    assert summary.torn_lines == 1
    assert summary.llm_latency_ms == Percentiles(p50=50.0, p95=100.0, p99=100.0, count=10)
    assert summary.reply_latency_ms == Percentiles(p50=10.0, p95=19.0, p99=20.0, count=20)
    assert (summary.llm_calls_upstream, summary.llm_calls_saved) == (5, 3)
    assert summary.dedup_ratio == pytest.approx(3 / 10)
    assert summary.history_hit_rate == 87.5  # the last stats event wins
    assert summary.flushes == 7
    assert summary.events_written == 345
    assert summary.errors == {"ConnectionError": 2, "HTTPException": 1}
    assert summary.llm_errors == {"LLMTimeout": 1}
    assert summary.first_ts == T0
    assert summary.last_ts == T0 + 60
    assert summary.span_s == 60

    data = summary.to_json()
    assert data["counts"]["reply"] == 20
    assert data["llm_calls"] == {"upstream": 5, "saved": 3}
    assert data["llm_latency_ms"] == {"p50": 50.0, "p95": 100.0, "p99": 100.0}
    json.dumps(data)  # plain JSON types only


def test_invalid_lines_anywhere_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(
        b'{"ts": 1, "type": "message"}\n'
        b"not json\n"
        b"\n"
        b'{"ts": 2, "type": "reply", "latency_ms": 5}\r\n'
        b'{"ts": 3, "typ'
        b"\n"
        b'{"ts": 4, "type": "reply", "latency_ms": 9}'  # complete, newline not yet written
    )
    records, skipped = read_records(path)
    assert [r.event["ts"] for r in records] == [1, 2, 4]
    assert [r.raw for r in records][1] == b'{"ts": 2, "type": "reply", "latency_ms": 5}'
    assert skipped == 2


def test_summary_of_nothing() -> None:
    summary = summarize([])
    assert summary.events == 0
    assert summary.dedup_ratio is None
    assert summary.llm_latency_ms.p50 is None
    assert summary.history_hit_rate is None
    assert summary.span_s is None


def test_default_path_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOT_METRICS_FILE", raising=False)
    assert default_metrics_path() == Path("profiles/metrics.jsonl")
    monkeypatch.setenv("BOT_METRICS_FILE", "/tmp/x.jsonl")
    assert default_metrics_path() == Path("/tmp/x.jsonl")


# --------------------------------------------------------------------------------------------------
# Follower


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_follower_waits_for_the_file(tmp_path: Path) -> None:
    path = tmp_path / "later.jsonl"
    with Follower(path) as follower:
        assert follower.poll() == []
        assert follower.poll() == []
        append(path, b"a\nb\n")
        assert follower.poll() == [b"a", b"b"]
        assert follower.poll() == []


def test_follower_holds_a_partial_line_until_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    append(path, b'{"n": 1}\n{"n": ')
    with Follower(path) as follower:
        assert follower.poll() == [b'{"n": 1}']
        assert follower.poll() == []
        append(path, b"2")
        assert follower.poll() == []
        append(path, b'}\n{"n": 3}\n\n')
        assert follower.poll() == [b'{"n": 2}', b'{"n": 3}']


def test_follower_rereads_a_truncated_file_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    append(path, b"one\ntwo\nthree\n")
    with Follower(path) as follower:
        assert follower.poll() == [b"one", b"two", b"three"]
        path.write_bytes(b"")
        assert follower.poll() == []
        append(path, b"four\n")
        assert follower.poll() == [b"four"]
        # Truncated and rewritten shorter between two polls.
        path.write_bytes(b"5\n")
        assert follower.poll() == [b"5"]


def test_follower_survives_rotation_by_rename(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    append(path, b"old1\n")
    with Follower(path) as follower:
        assert follower.poll() == [b"old1"]
        append(path, b"old2\n")
        path.rename(tmp_path / "m.jsonl.1")
        # Renamed away, nothing new yet: the old file keeps being read.
        assert follower.poll() == [b"old2"]
        append(tmp_path / "m.jsonl.1", b"old3\n")
        append(path, b"new1\nnew2\n")
        assert follower.poll() == [b"old3", b"new1", b"new2"]
        append(path, b"new3\n")
        assert follower.poll() == [b"new3"]


def test_follower_survives_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    append(path, b"a\nb\n")
    with Follower(path) as follower:
        assert follower.poll() == [b"a", b"b"]
        replacement = tmp_path / "tmp.jsonl"
        replacement.write_bytes(b"c\n")
        os.replace(replacement, path)  # same size class, new inode
        assert follower.poll() == [b"c"]


def test_follower_abandons_the_fragment_left_in_a_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    append(path, b"a\npartial")
    with Follower(path) as follower:
        assert follower.poll() == [b"a"]
        path.rename(tmp_path / "old")
        append(path, b"b\n")
        assert follower.poll() == [b"b"]
        assert follower.dropped == 1


def test_follow_generator_stops_on_event_or_idleness(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    append(path, b"x\ny\n")
    with Follower(path, poll_interval=0.05) as follower:
        assert list(follower.follow(idle_timeout=0.2)) == [b"x", b"y"]
    stop = threading.Event()
    stop.set()
    with Follower(path, poll_interval=0.05) as follower:
        assert list(follower.follow(stop)) == []


def test_following_several_files_tags_each_line_with_its_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    append(a, b"a1\n")
    followers = [Follower(a), Follower(b)]  # b does not exist yet
    try:
        seen = []
        for item in follow_many(followers, idle_timeout=0.3, poll_interval=0.05):
            seen.append(item)
            if item == (0, b"a1"):
                append(b, b"b1\n")
                append(a, b"a2\n")
        assert sorted(seen) == [(0, b"a1"), (0, b"a2"), (1, b"b1")]
    finally:
        for follower in followers:
            follower.close()


def test_follower_against_a_concurrent_writer_cutting_lines_anywhere(tmp_path: Path) -> None:
    """A writer thread appends batches in random-sized pieces: every line arrives once, whole."""
    path = tmp_path / "m.jsonl"
    expected = [
        line({"ts": T0 + i, "type": "message", "n": i, "pad": "x" * (i % 37)}) for i in range(400)
    ]
    payload = b"".join(e + b"\n" for e in expected)
    rng = random.Random(7)
    done = threading.Event()

    def writer() -> None:
        offset = 0
        while offset < len(payload):
            size = rng.randint(1, 300)
            append(path, payload[offset : offset + size])
            offset += size
            done.wait(0.002)
        done.set()

    thread = threading.Thread(target=writer)
    received: list[bytes] = []
    with Follower(path, poll_interval=0.01) as follower:
        thread.start()
        for _ in range(5000):
            received += follower.poll()
            if done.is_set() and len(received) >= len(expected):
                break
            done.wait(0.002)
        received += follower.poll()
    thread.join(timeout=10)
    assert received == expected
