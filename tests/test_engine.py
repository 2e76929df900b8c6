"""ChatEngine over a real OllamaService and the sandbox LLM on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from _llm import RecordingMetrics, running_llm

from bot.engine import ChatEngine
from bot.history import ChatHistoryManager
from bot.llm_errors import LLMHTTPError
from bot.ollama import OllamaService
from botctl.sandbox.llm_server import LLMServer, answer_for

pytestmark = pytest.mark.integration

SYSTEM = "You are terse."


@pytest.fixture
async def server() -> AsyncIterator[LLMServer]:
    async with running_llm(latency=0.05) as llm_server:
        yield llm_server


@pytest.fixture
async def engine(server: LLMServer, tmp_path: Path) -> AsyncIterator[ChatEngine]:
    assert server.url is not None
    metrics = RecordingMetrics(tmp_path / "metrics.jsonl")
    history = ChatHistoryManager(max_channels=10, max_messages=10)
    async with OllamaService(server.url, metrics=metrics) as llm:
        yield ChatEngine(llm, history, metrics, system_prompt=SYSTEM)


def recorded(engine: ChatEngine) -> RecordingMetrics:
    assert isinstance(engine.metrics, RecordingMetrics)
    return engine.metrics


def test_build_messages_is_the_same_for_everyone(engine: ChatEngine) -> None:
    one = engine.build_messages("channel-1", "what is dedup?")
    two = engine.build_messages("channel-2", "what is dedup?")
    assert one == two
    assert one == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "what is dedup?"},
    ]


async def test_ask_streams_deltas_and_keeps_history(engine: ChatEngine, server: LLMServer) -> None:
    question = "what is dedup?"
    answer = engine.ask("c1", question)
    deltas = [delta async for delta in answer]
    expected = answer_for([{"role": "user", "content": question}])
    assert "".join(deltas) == expected == answer.text and all(deltas)
    assert answer.role == "leader" and answer.result is not None
    follow_up = engine.build_messages("c1", "and then?")
    assert follow_up == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
        {"role": "assistant", "content": expected},
        {"role": "user", "content": "and then?"},
    ]
    assert engine.build_messages("c2", "and then?")[1:] == [
        {"role": "user", "content": "and then?"}
    ]
    assert engine.reset("c1") is True and engine.reset("c1") is False


async def test_same_question_in_fresh_channels_is_one_call(
    engine: ChatEngine, server: LLMServer
) -> None:
    texts = await asyncio.gather(*(engine.ask(f"ch{i}", "hi there").collect() for i in range(5)))
    assert len(set(texts)) == 1 and server.calls_total == 1
    counters = engine.counters()
    assert counters["llm_upstream_answers"] == 1 and counters["llm_saved_answers"] == 4


async def test_llm_failure_logs_an_error_and_reraises(
    engine: ChatEngine, server: LLMServer
) -> None:
    server.add_fault("status", status=500)
    with pytest.raises(LLMHTTPError):
        async for _ in engine.ask("c1", "my secret question"):
            pass
    (error,) = recorded(engine).of("error")
    assert error == {"where": "llm", "error": "LLMHTTPError", "detail": "HTTP 500"}
    assert engine.build_messages("c1", "again") == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "again"},
    ]  # nothing of the failed exchange was kept
    assert engine.counters()["llm_errors"] == 1


async def test_events_never_hold_text(engine: ChatEngine) -> None:
    engine.take_message("c1", "u1", "my secret question", source="dm")
    answer = await engine.ask("c1", "my secret question").collect()
    engine.log_reply("c1", latency_ms=12.5, parts=1, chars=len(answer), edits=0, status="ok")
    engine.log_command("reset", "c1", "u1")
    metrics = recorded(engine)
    assert metrics.of("message") == [
        {"channel": "c1", "user": "u1", "length": len("my secret question"), "source": "dm"}
    ]
    (reply,) = metrics.of("reply")
    assert reply["chars"] == len(answer) and reply["status"] == "ok"
    assert metrics.of("command") == [{"name": "reset", "channel": "c1", "user": "u1"}]
    dumped = orjson.dumps(metrics.events).decode()
    assert "secret" not in dumped and answer[:30] not in dumped
    counters = engine.counters()
    assert counters["messages"] == 1 and counters["replies"] == 1 and counters["commands"] == 1
    assert counters["reply_latency_ms"]["p50"] == 12.5


async def test_summary_has_the_cache_stats(engine: ChatEngine) -> None:
    await engine.ask("c1", "hello").collect()
    summary = engine.summary()
    assert summary["cache_stats"]["deduplication"]["requests"] == 1
    assert "pending_requests" in summary["cache_stats"]["deduplication"]
    assert "hit_rate" in summary["cache_stats"]["history_cache"]
    assert "pending_events" in summary["batch_logging"]
    assert summary["llm"]["dedup_enabled"] is True
