"""ChatEngine over a real Ollama transport and the sandbox LLM on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from _llm import RecordingMetrics, running_llm

from bot.dedup import RequestDeduplicator
from bot.engine import ChatEngine, Question
from bot.history import ChatHistoryManager
from bot.llm.errors import LLMHTTPError
from bot.llm.ollama import OllamaTransport
from bot.models import ModelSet
from bot.routing import ModelSpec, RoutingSpec
from botctl.sandbox.llm_server import LLMServer, answer_for

pytestmark = pytest.mark.integration

SYSTEM = "You are terse."


@pytest.fixture
async def server() -> AsyncIterator[LLMServer]:
    async with running_llm(latency=0.05) as llm_server:
        yield llm_server


def make_engine(server: LLMServer, tmp_path: Path, *, dedup: bool = True) -> ChatEngine:
    assert server.url is not None
    url = server.url
    metrics = RecordingMetrics(tmp_path / "metrics.jsonl")
    history = ChatHistoryManager(max_channels=10, max_messages=10)
    flights = RequestDeduplicator()
    models = ModelSet(
        {"m": ModelSpec("m", "ollama", url, "m")},
        RoutingSpec(),
        lambda spec: OllamaTransport(spec.url),
        default="m",
    )
    return ChatEngine(models, history, metrics, flights, system_prompt=SYSTEM, dedup=dedup)


@pytest.fixture
async def engine(server: LLMServer, tmp_path: Path) -> AsyncIterator[ChatEngine]:
    engine = make_engine(server, tmp_path)
    try:
        yield engine
    finally:
        await engine.models.close()


def recorded(engine: ChatEngine) -> RecordingMetrics:
    assert isinstance(engine.metrics, RecordingMetrics)
    return engine.metrics


async def text_of(engine: ChatEngine, conversation: str, text: str) -> str:
    return "".join([d async for d in engine.answer(Question(conversation, text))])


async def test_the_request_is_the_same_for_everyone(engine: ChatEngine) -> None:
    one = (await engine.plan(Question("channel-1", "what is dedup?"))).messages
    two = (await engine.plan(Question("channel-2", "what is dedup?"))).messages
    assert one == two
    assert one == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "what is dedup?"},
    ]


async def test_answer_streams_logs_and_keeps_history(engine: ChatEngine) -> None:
    question = "what is dedup?"
    deltas = [d async for d in engine.answer(Question("c1", question))]
    expected = answer_for([{"role": "user", "content": question}])
    assert "".join(deltas) == expected and all(deltas)
    (call,) = recorded(engine).of("llm_call")
    assert call["dedup"] == "leader" and call["status"] == "ok" and call["error"] is None
    assert call["model"] == "m" and call["api"] == "ollama" and call["route"] == "default"
    assert call["tokens_out"] and call["tokens_in"] and call["ttft_ms"] <= call["latency_ms"]
    follow_up = (await engine.plan(Question("c1", "and then?"))).messages
    assert follow_up == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
        {"role": "assistant", "content": expected},
        {"role": "user", "content": "and then?"},
    ]
    assert (await engine.plan(Question("c2", "and then?"))).messages[1:] == [
        {"role": "user", "content": "and then?"}
    ]
    assert engine.reset("c1") is True and engine.reset("c1") is False


async def test_same_question_in_fresh_conversations_is_one_call(
    engine: ChatEngine, server: LLMServer
) -> None:
    texts = await asyncio.gather(*(text_of(engine, f"ch{i}", "hi there") for i in range(5)))
    assert len(set(texts)) == 1 and server.calls_total == 1
    counters = engine.counters()
    assert counters["llm_upstream_answers"] == 1 and counters["llm_saved_answers"] == 4
    roles = sorted(e["dedup"] for e in recorded(engine).of("llm_call"))
    assert roles == ["follower"] * 4 + ["leader"]


async def test_dedup_off_calls_upstream_for_everyone(server: LLMServer, tmp_path: Path) -> None:
    engine = make_engine(server, tmp_path, dedup=False)
    try:
        await asyncio.gather(*(text_of(engine, f"ch{i}", "hi there") for i in range(3)))
    finally:
        await engine.models.close()
    assert server.calls_total == 3
    assert [e["dedup"] for e in recorded(engine).of("llm_call")] == ["off"] * 3


async def test_a_caller_that_leaves_does_not_stop_the_others(
    engine: ChatEngine, server: LLMServer
) -> None:
    server.tokens_per_second = 200.0  # a streamed answer of about 0.4 s
    leaving = engine.answer(Question("a", "a long one"))
    staying = asyncio.create_task(text_of(engine, "b", "a long one"))
    assert await anext(leaving)
    await leaving.aclose()
    text = await staying
    assert text == answer_for([{"role": "user", "content": "a long one"}])
    statuses = sorted(e["status"] for e in recorded(engine).of("llm_call"))
    assert statuses == ["cancelled", "ok"] and server.calls_total == 1
    assert (await engine.plan(Question("a", "x"))).messages[1:] == [
        {"role": "user", "content": "x"}
    ]  # the one who left kept no half answer


async def test_llm_failure_logs_an_error_and_reraises(
    engine: ChatEngine, server: LLMServer
) -> None:
    server.add_fault("status", status=500)
    with pytest.raises(LLMHTTPError):
        await text_of(engine, "c1", "my secret question")
    (error,) = recorded(engine).of("error")
    assert error == {
        "where": "llm",
        "error": "LLMHTTPError",
        "detail": "HTTP 500",
        "url": f"{server.url}/api/chat",
    }
    assert (await engine.plan(Question("c1", "again"))).messages == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "again"},
    ]  # nothing of the failed exchange was kept
    assert engine.counters()["llm_errors"] == 1


async def test_events_never_hold_text(engine: ChatEngine) -> None:
    engine.take_message("c1", "u1", "my secret question", source="dm")
    answer = await text_of(engine, "c1", "my secret question")
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
    await text_of(engine, "c1", "hello")
    summary = engine.summary()
    assert summary["cache_stats"]["deduplication"]["requests"] == 0  # not given to the metrics
    assert "pending_requests" in summary["cache_stats"]["deduplication"]
    assert "hit_rate" in summary["cache_stats"]["history_cache"]
    assert "pending_events" in summary["batch_logging"]
    assert summary["dedup_enabled"] is True
