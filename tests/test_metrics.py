"""MetricsService: batching by size and time, graceful stop, file safety, failures, summary."""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from bot.dedup import RequestDeduplicator
from bot.history import ChatHistoryManager
from bot.metrics import MetricsService


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def of_type(path: Path, event_type: str) -> list[dict[str, Any]]:
    return [e for e in read_events(path) if e["type"] == event_type]


async def wait_until(predicate: Any, limit: float = 1.5) -> None:
    """Poll a condition with a hard bound, so a broken service fails fast instead of hanging."""
    step = 0.005
    for _ in range(int(limit / step)):
        if predicate():
            return
        await asyncio.sleep(step)
    assert predicate(), f"condition not met within {limit} s"


def warnings_from(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bot.metrics" and r.levelno == logging.WARNING]


async def test_log_event_does_no_io(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    svc = MetricsService(path, batch_size=5, batch_interval=60)
    for i in range(20):
        svc.log_event("message", {"n": i})
    assert not path.exists()
    assert svc.get_batch_stats()["pending_events"] == 20
    assert await svc.flush() == 20
    assert [e["n"] for e in read_events(path)] == list(range(20))


async def test_batch_written_when_batch_size_events_wait(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    svc = MetricsService(path, batch_size=5, batch_interval=60)
    await svc.start_batch_flush_task()
    try:
        for i in range(4):
            svc.log_event("message", {"n": i})
        await asyncio.sleep(0.02)
        assert not path.exists()  # 4 < batch_size, interval far away
        svc.log_event("message", {"n": 4})
        await wait_until(lambda: len(read_events(path)) == 5)
        stats = svc.get_batch_stats()
        assert stats["flushes"] == 1 and stats["events_written"] == 5
        assert stats["pending_events"] == 0
        assert isinstance(stats["last_flush_ts"], float)
    finally:
        await svc.stop_batch_flush_task()


async def test_batch_written_when_interval_passes(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    svc = MetricsService(path, batch_size=1000, batch_interval=0.05, stats_interval=60)
    svc.start_batch_flush_task()
    try:
        for i in range(3):
            svc.log_event("message", {"n": i})
        assert not path.exists()
        await wait_until(lambda: len(read_events(path)) == 3)
        assert svc.get_batch_stats()["flushes"] == 1
    finally:
        await svc.stop_batch_flush_task()


async def test_graceful_stop_loses_no_event(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    svc = MetricsService(path, batch_size=7, batch_interval=60)
    await svc.start_batch_flush_task()
    for i in range(1000):
        svc.log_event("reply", {"n": i})
        if i % 50 == 0:
            await asyncio.sleep(0)
    await svc.stop_batch_flush_task()
    replies = of_type(path, "reply")
    assert [e["n"] for e in replies] == list(range(1000))
    stats_events = of_type(path, "stats")
    assert len(stats_events) == 1  # the final snapshot
    assert svc.get_batch_stats()["pending_events"] == 0
    assert svc.get_batch_stats()["flushes"] > 1  # batches were written along the way

    # A second stop is harmless: no new snapshot, nothing written twice.
    await svc.stop_batch_flush_task()
    assert len(read_events(path)) == 1001


async def test_stop_without_await_still_finishes(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    svc = MetricsService(path, batch_size=50, batch_interval=60)
    svc.start_batch_flush_task()
    svc.start_batch_flush_task()  # idempotent
    assert sum(t.get_name() == "metrics-batch-flush" for t in asyncio.all_tasks()) == 1
    for i in range(10):
        svc.log_event("message", {"n": i})
    svc.stop_batch_flush_task()
    # No write was under way: all of it is in the file when the call returns.
    assert len(of_type(path, "message")) == 10 and len(of_type(path, "stats")) == 1
    await wait_until(
        lambda: not any(t.get_name() == "metrics-batch-flush" for t in asyncio.all_tasks())
    )
    await svc.stop_batch_flush_task()  # the same stop, awaited: nothing written twice
    assert len(read_events(path)) == 11


def test_a_stop_never_awaited_before_the_loop_ends_loses_nothing(tmp_path: Path) -> None:
    # asyncio.run cancels the stop's task before it runs: what it had to write is written.
    path = tmp_path / "m.jsonl"

    async def main() -> None:
        svc = MetricsService(path, batch_size=50, batch_interval=60)
        svc.start_batch_flush_task()
        for i in range(10):
            svc.log_event("message", {"n": i})
        svc.stop_batch_flush_task()

    asyncio.run(main())
    events = read_events(path)
    assert [e["type"] for e in events] == ["message"] * 10 + ["stats"]
    assert events[-1]["final"] is True and events[-1]["batch"]["events_written"] == 10


async def test_stop_without_start_writes_everything(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    svc = MetricsService(path)
    svc.log_event("message", {"n": 1})
    await svc.stop_batch_flush_task()
    assert len(of_type(path, "message")) == 1


async def test_the_last_event_of_a_stop_is_stats_taken_after_the_final_flush(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.jsonl"
    svc = MetricsService(path, batch_size=50, batch_interval=60)
    svc.start_batch_flush_task()
    for i in range(3):
        svc.log_event("message", {"n": i})
    await svc.stop_batch_flush_task()
    events = read_events(path)
    assert [e["type"] for e in events] == ["message", "message", "message", "stats"]
    # Taken after the final flush: it counts the three messages as written, in one flush.
    assert events[-1]["batch"]["events_written"] == 3
    assert events[-1]["batch"]["flushes"] == 1
    assert events[-1]["batch"]["pending_events"] == 0


async def test_every_event_carries_the_run_id_and_given_fields(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    svc = MetricsService(path, run_id="abc123", fields={"shard": [0, 1]})
    other = MetricsService(path)
    svc.log_event("message", {"run": "forged", "length": 1})
    other.log_event("message")
    await svc.flush()
    await other.flush()
    first, second = read_events(path)
    assert first["run"] == "abc123" and first["shard"] == [0, 1]
    assert second["run"] == other.run_id != "abc123" and len(other.run_id) == 6


def test_start_needs_a_running_loop(tmp_path: Path) -> None:
    svc = MetricsService(tmp_path / "m.jsonl")
    with pytest.raises(RuntimeError):
        svc.start_batch_flush_task()


async def test_file_and_parents_created_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "m.jsonl"
    svc = MetricsService(path)
    svc.log_event("message", {"n": 1})
    assert await svc.flush() == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert svc.path == path
    svc.log_event("message", {"n": 2})
    await svc.flush()
    assert [e["n"] for e in read_events(path)] == [1, 2]  # appended, not overwritten


async def test_lines_are_json_with_float_ts_and_type(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    svc = MetricsService(path, clock=lambda: 1700000000.25)
    svc.log_event("llm_call", {"model": "m", "latency_ms": 12.5, "error": None, "ts": "x"})
    svc.log_event("command")
    await svc.flush()
    raw = path.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 2
    first, second = read_events(path)
    assert first == {
        "ts": 1700000000.25,
        "type": "llm_call",
        "run": svc.run_id,
        "model": "m",
        "latency_ms": 12.5,
        "error": None,
    }
    assert second == {"ts": 1700000000.25, "type": "command", "run": svc.run_id}


async def test_forbidden_keys_are_never_written(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    svc = MetricsService(path)
    secret = "s3cr3t-value"
    svc.log_event(
        "message",
        {
            "content": secret,
            "text": secret,
            "prompt": secret,
            "token": secret,
            "api_key": secret,
            "authorization": secret,
            "length": 12,
        },
    )
    await svc.flush()
    assert secret.encode() not in path.read_bytes()
    (event,) = read_events(path)
    assert set(event) == {"ts", "type", "run", "length"}


async def test_forbidden_keys_are_dropped_in_any_case_and_at_any_depth(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    svc = MetricsService(path)
    secret = "s3cr3t-value"
    svc.log_event("llm_call", {"model": "m", "nested": {"n": 1}, "items": [{"n": 2}]})
    # The same keys again (vetted by the first event), now hiding text one level down.
    svc.log_event(
        "llm_call",
        {"model": "m", "nested": {"n": 1, "Content": secret}, "items": [{"n": 2, "text": secret}]},
    )
    svc.log_event(
        "message",
        {
            "Authorization": f"Bearer {secret}",
            "API-Key": secret,
            "answer": secret,
            "question": secret,
            "preview": secret,
            "message": secret,
            "length": 12,
        },
    )
    data = {"headers": {"authorization": secret}, "length": 3}
    svc.log_event("message", data)
    assert data["headers"] == {"authorization": secret}  # the caller's dict is left alone
    await svc.flush()
    assert secret.encode() not in path.read_bytes()
    first, second, third, fourth = read_events(path)
    assert first["nested"] == second["nested"] == {"n": 1}
    assert first["items"] == second["items"] == [{"n": 2}]
    assert set(third) == {"ts", "type", "run", "length"}
    assert fourth["headers"] == {} and fourth["length"] == 3


async def test_unserialisable_value_does_not_poison_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    svc = MetricsService(path)
    svc.log_event("message", {"n": 1})
    svc.log_event("error", {"detail": object(), "codes": {1: "one"}})
    svc.log_event("message", {"n": 2})
    assert await svc.flush() == 3
    events = read_events(path)
    assert [e["type"] for e in events] == ["message", "error", "message"]
    assert events[1]["codes"] == {"1": "one"}


async def test_failing_write_is_counted_reported_once_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m.jsonl"
    path.mkdir()  # the path being a directory: every write fails
    svc = MetricsService(path, batch_size=1000, batch_interval=60)
    caplog.set_level(logging.INFO, logger="bot.metrics")
    for i in range(5):
        svc.log_event("message", {"n": i})
    assert await svc.flush() == 0
    svc.log_event("message", {"n": 5})
    assert await svc.flush() == 0
    stats = svc.get_batch_stats()
    assert stats["write_errors"] == 2
    assert stats["pending_events"] == 6  # kept, in order, for the next try
    assert stats["events_written"] == 0
    assert len(warnings_from(caplog)) == 1
    assert "\n" not in warnings_from(caplog)[0].getMessage()

    path.rmdir()  # the problem is fixed
    assert await svc.flush() == 6
    assert [e["n"] for e in read_events(path)] == list(range(6))
    assert svc.get_batch_stats()["pending_events"] == 0
    assert len(warnings_from(caplog)) == 1


async def test_background_task_retries_after_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.mkdir()
    svc = MetricsService(path, batch_size=2, batch_interval=0.05, stats_interval=60)
    svc.start_batch_flush_task()
    try:
        for i in range(4):
            svc.log_event("message", {"n": i})
        await wait_until(lambda: svc.get_batch_stats()["write_errors"] >= 1)
        for i in range(4, 8):
            svc.log_event("message", {"n": i})  # wakes do not turn into a busy retry loop
        await asyncio.sleep(0.01)
        assert svc.get_batch_stats()["write_errors"] <= 2
        path.rmdir()
        await wait_until(lambda: len(of_type(path, "message")) == 8)
    finally:
        await svc.stop_batch_flush_task()
    assert [e["n"] for e in of_type(path, "message")] == list(range(8))


async def test_max_buffer_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.mkdir()
    svc = MetricsService(path, max_buffer=10)
    for i in range(8):
        svc.log_event("message", {"n": i})
    await svc.flush()  # fails: the 8 go back to the buffer
    for i in range(8, 13):
        svc.log_event("message", {"n": i})
    stats = svc.get_batch_stats()
    assert stats["pending_events"] == 10
    assert stats["dropped_events"] == 3
    path.rmdir()
    await svc.flush()
    assert [e["n"] for e in read_events(path)] == list(range(3, 13))


async def test_periodic_stats_events(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    dedup = RequestDeduplicator()
    history = ChatHistoryManager()
    svc = MetricsService(
        path,
        batch_size=50,
        batch_interval=0.03,
        stats_interval=0.03,
        deduplicator=dedup,
        history=history,
    )
    await svc.start_batch_flush_task()
    try:
        await wait_until(lambda: len(of_type(path, "stats")) >= 2)
    finally:
        await svc.stop_batch_flush_task()
    snapshot = of_type(path, "stats")[0]
    assert snapshot["dedup"]["pending_requests"] == 0
    assert snapshot["history"]["hit_rate"] == 0.0
    assert "pending_events" in snapshot["batch"]


async def test_stats_without_components_are_empty_objects(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    svc = MetricsService(path)
    await svc.stop_batch_flush_task()
    (snapshot,) = of_type(path, "stats")
    assert snapshot["dedup"] == {} and snapshot["history"] == {}


def test_summary_shape_with_defaults(tmp_path: Path) -> None:
    svc = MetricsService(tmp_path / "m.jsonl", batch_size=10, batch_interval=5)
    svc.log_event("message")
    svc.log_event("message")
    svc.log_event("reply")
    summary = svc.get_summary()
    assert summary["cache_stats"]["deduplication"]["pending_requests"] == 0
    assert summary["cache_stats"]["history_cache"]["hit_rate"] == 0.0
    assert summary["batch_logging"]["pending_events"] == 3
    assert summary["batch_logging"]["batch_size"] == 10
    assert summary["batch_logging"]["batch_interval"] == 5.0
    assert summary["events"] == {"message": 2, "reply": 1}


def test_summary_uses_the_components_given(tmp_path: Path) -> None:
    history = ChatHistoryManager()
    history.add_message("c", "user", "x")
    history.get_history("c")
    svc = MetricsService(
        tmp_path / "m.jsonl", history=history, deduplicator=RequestDeduplicator(window=3)
    )
    cache = svc.get_summary()["cache_stats"]
    assert cache["history_cache"]["hit_rate"] == 100.0
    assert cache["history_cache"]["channels"] == 1
    assert cache["deduplication"]["window"] == 3.0


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_interval": 0}, {"max_buffer": 0}])
def test_bad_settings_are_rejected(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MetricsService(tmp_path / "m.jsonl", **kwargs)


async def test_large_batches_go_to_a_thread_and_small_ones_stay_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[int] = []
    real_to_thread = asyncio.to_thread

    async def spy(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        hops.append(len(args[1]))
        return await real_to_thread(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    path = tmp_path / "m.jsonl"
    svc = MetricsService(path, batch_size=100_000)
    for i in range(50):
        svc.log_event("message", {"n": i})
    assert await svc.flush() == 50
    assert hops == []
    for i in range(50, 3050):
        svc.log_event("message", {"n": i})
    assert await svc.flush() == 3000
    assert hops == [3000]
    assert [e["n"] for e in read_events(path)] == list(range(3050))
