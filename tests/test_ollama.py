"""OllamaService against the sandbox LLM over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from _llm import RecordingMetrics, running_llm
from aiohttp import web

from bot.dedup import RequestDeduplicator
from bot.llm_errors import (
    LLMError,
    LLMHTTPError,
    LLMResponseError,
    LLMStreamError,
    LLMTimeoutError,
    LLMUnreachableError,
)
from bot.ollama import ChatChunk, ChatResult, ChatStream, OllamaService
from botctl.profiles import free_port
from botctl.sandbox.llm_server import answer_for

pytestmark = pytest.mark.integration

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "what is a closure?"},
]
EXPECTED = answer_for(MESSAGES, 300)


@pytest.fixture
def metrics(tmp_path: Path) -> RecordingMetrics:
    return RecordingMetrics(tmp_path / "metrics.jsonl")


# --- plain answers -----------------------------------------------------------------------------


async def test_chat_returns_the_whole_answer(metrics: RecordingMetrics) -> None:
    async with running_llm() as server:
        assert server.url is not None
        async with OllamaService(server.url, metrics=metrics) as llm:
            result = await llm.chat(MESSAGES)
    assert isinstance(result, ChatResult)
    assert result.content == EXPECTED == str(result)
    assert result["message"] == {"role": "assistant", "content": EXPECTED} == result.message
    assert result["done"] is True and result["model"] == "llama3.2"
    assert result.done_reason == "stop" and result.eval_count == 75
    assert result.prompt_eval_count and result.total_duration is not None
    assert result.dedup == "leader" and result.latency_ms > 0 and result.ttft_ms is not None
    with pytest.raises(KeyError):
        result["nope"]
    assert server.calls_total == 1


async def test_chat_stream_yields_chunks_then_a_result() -> None:
    async with running_llm(latency=0.05, tokens_per_second=500) as server:
        assert server.url is not None
        async with OllamaService(server.url) as llm:
            stream = llm.chat_stream(MESSAGES)
            assert stream.role == "leader" and stream.result is None
            chunks = [chunk async for chunk in stream]
            also = await llm.chat(MESSAGES, stream=True, model="other")
            assert isinstance(also, ChatStream)
            other = await also.collect()
    assert all(isinstance(c, ChatChunk) for c in chunks)
    # Lines that arrive in one read are merged into one chunk: how many depends on the network.
    assert 2 <= len(chunks) <= 76 and chunks[-1].done and not any(c.done for c in chunks[:-1])
    assert "".join(c.content for c in chunks) == EXPECTED
    assert chunks[-1].eval_count == 75 and chunks[-1].done_reason == "stop"
    assert stream.result is not None and stream.result.content == EXPECTED
    assert other.model == "other" and server.calls_by_model["other"] == 1


async def test_lines_split_anywhere_across_tcp_chunks() -> None:
    lines = [
        {"model": "m", "message": {"role": "assistant", "content": "Hé"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "llo"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": "stop", "eval_count": 2, "prompt_eval_count": 3},
    ]  # fmt: skip
    body = b"\n".join(orjson.dumps(line) for line in lines)  # and no newline at the very end

    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for i in range(0, len(body), 7):  # 7 bytes at a time: splits lines and a UTF-8 character
            await response.write(body[i : i + 7])
            await asyncio.sleep(0.001)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/api/chat", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with OllamaService(f"http://bob:pw@127.0.0.1:{port}", dedup=False) as llm:
            result = await llm.chat([{"role": "user", "content": "x"}])
    finally:
        await runner.cleanup()
    assert result.content == "Héllo" and result.eval_count == 2 and result.dedup == "off"
    assert seen == ["Basic Ym9iOnB3"]  # credentials in the URL become a Basic header


# --- errors ------------------------------------------------------------------------------------


async def test_error_line_mid_stream() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("stream_error", after_chunks=3, message="out of memory")
        async with OllamaService(server.url) as llm:
            stream = llm.chat_stream(MESSAGES)
            received: list[str] = []
            with pytest.raises(LLMStreamError) as caught:
                async for chunk in stream:
                    received.append(chunk.content)
    # The text before the error line (3 tokens, in however many reads) reached the caller.
    partial = "".join(received)
    assert partial and EXPECTED.startswith(partial) and len(partial) < len(EXPECTED)
    assert caught.value.error == "out of memory"
    assert "out of memory" in caught.value.user_message


@pytest.mark.parametrize(
    ("status", "strict", "text"),
    [
        (500, False, "llama runner process has terminated: exit status 2"),
        (404, True, 'model "llama3.2" not found, try pulling it first'),
    ],
)
async def test_http_error_carries_ollamas_message(status: int, strict: bool, text: str) -> None:
    async with running_llm(strict_models=strict, models=["other"]) as server:
        assert server.url is not None
        if not strict:
            server.add_fault("status", status=status)
        async with OllamaService(server.url) as llm:
            with pytest.raises(LLMHTTPError) as caught:
                await llm.chat(MESSAGES)
    assert caught.value.status == status and caught.value.error == text
    assert text in caught.value.user_message
    assert server.calls_total == 1  # 500 and 404 are not retried


async def test_429_with_retry_after_is_retried() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("status", status=429, retry_after=0.3)
        async with OllamaService(server.url) as llm:
            started = time.perf_counter()
            result = await llm.chat(MESSAGES)
            elapsed = time.perf_counter() - started
    assert result.content == EXPECTED
    assert server.calls_total == 2 and elapsed >= 0.29


async def test_503_retries_are_bounded() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("status", status=503, count=-1)
        async with OllamaService(server.url, max_retries=2) as llm:
            with pytest.raises(LLMHTTPError) as caught:
                await llm.chat(MESSAGES)
        assert caught.value.status == 503 and server.calls_total == 3
        # A Retry-After beyond the total timeout is not waited for.
        server.clear_faults()
        server.add_fault("status", status=429, retry_after=30)
        async with OllamaService(server.url, timeout=1.0) as llm:
            started = time.perf_counter()
            with pytest.raises(LLMHTTPError):
                await llm.chat(MESSAGES)
        assert time.perf_counter() - started < 0.5


async def test_hang_times_out_on_the_first_byte() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("hang", count=-1)
        async with OllamaService(server.url, first_byte_timeout=0.3) as llm:
            started = time.perf_counter()
            with pytest.raises(LLMTimeoutError) as caught:
                await llm.chat(MESSAGES)
            assert 0.25 < time.perf_counter() - started < 2.0
        assert caught.value.phase == "first_byte" and caught.value.seconds == 0.3
        assert "0.3 s" in caught.value.user_message
        async with OllamaService(server.url, timeout=0.3) as llm:
            with pytest.raises(LLMTimeoutError) as caught:
                await llm.chat(MESSAGES)
        assert caught.value.phase == "total"


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs to a full queue")
async def test_a_connect_that_never_completes_times_out_on_connect() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:  # fill the accept queue: further SYNs get no answer
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
            await asyncio.sleep(0.05)
            async with OllamaService(f"http://127.0.0.1:{port}", connect_timeout=0.2) as llm:
                with pytest.raises(LLMTimeoutError) as caught:
                    await llm.chat(MESSAGES)
        finally:
            for filler in fillers:
                filler.close()
    assert caught.value.phase == "connect" and caught.value.seconds == 0.2


async def test_slow_stream_hits_the_total_timeout() -> None:
    async with running_llm(tokens_per_second=20) as server:
        assert server.url is not None
        async with OllamaService(server.url, timeout=0.4, first_byte_timeout=0.2) as llm:
            chunks = 0
            with pytest.raises(LLMTimeoutError) as caught:
                async for _ in llm.chat_stream(MESSAGES):
                    chunks += 1
    assert caught.value.phase == "total" and chunks > 1


async def test_closed_port_is_unreachable(metrics: RecordingMetrics) -> None:
    url = f"http://alice:s3cret-pw@127.0.0.1:{free_port()}"
    async with OllamaService(url, metrics=metrics) as llm:
        with pytest.raises(LLMUnreachableError) as caught:
            await llm.chat(MESSAGES)
        assert await llm.ping(0.3) is False
    error = caught.value
    assert error.url == f"{llm.base_url}/api/chat" and "@" not in error.url
    texts = [str(error), error.user_message, error.detail, repr(error), llm.base_url]
    texts.append(orjson.dumps(metrics.events).decode())
    assert not any("s3cret" in text or "alice" in text for text in texts)
    assert "unreachable" in error.user_message
    (event,) = metrics.of("llm_call")
    assert event["status"] == "error" and event["error"] == "LLMUnreachableError"


async def test_garbage_body_is_a_response_error() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("garbage")
        async with OllamaService(server.url) as llm:
            with pytest.raises(LLMResponseError):
                await llm.chat(MESSAGES)


# --- deduplication -----------------------------------------------------------------------------


async def test_20_identical_chats_make_one_call(metrics: RecordingMetrics) -> None:
    async with running_llm(latency=0.1, tokens_per_second=1000) as server:
        assert server.url is not None
        async with OllamaService(server.url, metrics=metrics) as llm:
            results = await asyncio.gather(*(llm.chat(MESSAGES) for _ in range(20)))
            stats = llm.get_cache_stats()
    assert server.calls_total == 1
    assert all(r.content == EXPECTED for r in results)
    assert sorted(r.dedup for r in results) == ["follower"] * 19 + ["leader"]
    assert stats["dedup_enabled"] is True
    assert stats["deduplication"]["followers"] == 19
    assert stats["deduplication"]["pending_requests"] == 0
    assert len(metrics.of("llm_call")) == 20


async def test_20_identical_streams_make_one_call() -> None:
    async with running_llm(latency=0.1, tokens_per_second=1000) as server:
        assert server.url is not None
        async with OllamaService(server.url) as llm:

            async def read() -> str:
                return "".join([chunk.content async for chunk in llm.chat_stream(MESSAGES)])

            texts = await asyncio.gather(*(read() for _ in range(19)), llm.chat(MESSAGES))
    assert server.calls_total == 1
    assert texts[:19] == [EXPECTED] * 19 and texts[19].content == EXPECTED


async def test_the_window_reuses_a_finished_answer() -> None:
    now = [1000.0]
    dedup = RequestDeduplicator(window=5.0, clock=lambda: now[0])
    async with running_llm() as server:
        assert server.url is not None
        async with OllamaService(server.url, deduplicator=dedup) as llm:
            first = await llm.chat(MESSAGES)
            now[0] += 4.0
            second = await llm.chat(MESSAGES)
            assert (first.dedup, second.dedup, server.calls_total) == ("leader", "window", 1)
            assert second.content == first.content
            assert second.eval_count == first.eval_count
            now[0] += 2.0
            third = await llm.chat(MESSAGES)
    assert third.dedup == "leader" and server.calls_total == 2


async def test_dedup_off_calls_upstream_every_time() -> None:
    async with running_llm(latency=0.05) as server:
        assert server.url is not None
        async with OllamaService(server.url, dedup=False) as llm:
            results = await asyncio.gather(*(llm.chat(MESSAGES) for _ in range(3)))
            stats = llm.get_cache_stats()
    assert [r.dedup for r in results] == ["off"] * 3 and server.calls_total == 3
    assert stats["dedup_enabled"] is False and stats["deduplication"]["requests"] == 0


async def test_an_error_is_shared_then_forgotten() -> None:
    async with running_llm(latency=0.1) as server:
        assert server.url is not None
        server.add_fault("status", status=500)
        async with OllamaService(server.url) as llm:
            outcomes = await asyncio.gather(
                *(llm.chat(MESSAGES) for _ in range(5)), return_exceptions=True
            )
            assert server.calls_total == 1
            assert all(isinstance(o, LLMHTTPError) and o.status == 500 for o in outcomes)
            result = await llm.chat(MESSAGES)
    assert result.content == EXPECTED and result.dedup == "leader"
    assert server.calls_total == 2


async def test_a_cancelled_waiter_does_not_stop_the_others(metrics: RecordingMetrics) -> None:
    async with running_llm(latency=0.3) as server:
        assert server.url is not None
        async with OllamaService(server.url, metrics=metrics) as llm:
            tasks = [asyncio.create_task(llm.chat(MESSAGES)) for _ in range(3)]
            await asyncio.sleep(0.1)
            tasks[0].cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[0], asyncio.CancelledError)
    assert [r.content for r in done[1:] if isinstance(r, ChatResult)] == [EXPECTED, EXPECTED]
    assert server.calls_total == 1
    outcomes = sorted((e["status"], e["error"]) for e in metrics.of("llm_call"))
    assert outcomes == [("error", "CancelledError"), ("ok", None), ("ok", None)]


# --- metrics, lifecycle, other endpoints -------------------------------------------------------


async def test_llm_call_events_carry_counts_and_no_content(metrics: RecordingMetrics) -> None:
    async with running_llm(latency=0.05) as server:
        assert server.url is not None
        async with OllamaService(server.url, metrics=metrics) as llm:
            await asyncio.gather(llm.chat(MESSAGES), llm.chat_stream(MESSAGES).collect())
    events = metrics.of("llm_call")
    assert len(events) == 2
    assert sorted(e["dedup"] for e in events) == ["follower", "leader"]
    assert sorted(e["stream"] for e in events) == [False, True]
    for event in events:
        assert set(event) == {
            "model", "latency_ms", "ttft_ms", "tokens_in", "tokens_out", "dedup", "status",
            "error", "stream",
        }  # fmt: skip
        assert event["tokens_out"] == 75 and event["tokens_in"] > 0
        assert event["status"] == "ok" and event["error"] is None
        assert event["latency_ms"] >= event["ttft_ms"] > 0
    dumped = orjson.dumps(metrics.events).decode()
    assert EXPECTED[:20] not in dumped and "closure" not in dumped


async def test_sessions_are_opened_lazily_and_closed_once() -> None:
    async with running_llm() as server:
        assert server.url is not None
        llm = OllamaService(server.url + "/")
        assert (await llm.chat(MESSAGES)).content == EXPECTED  # no start(): opened lazily
        await llm.close()
        await llm.close()
        async with aiohttp.ClientSession() as session:
            async with OllamaService(server.url, session=session) as shared:
                assert await shared.ping()
                assert [m["name"] for m in await shared.list_models()] == ["llama3.2"]
                assert await shared.version()
            assert not session.closed  # an injected session belongs to its owner


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        OllamaService(timeout=0)
    with pytest.raises(ValueError):
        OllamaService(max_retries=-1)
    assert OllamaService("localhost").base_url == "http://localhost:11434"


def test_error_tree() -> None:
    errors: list[Any] = [
        LLMUnreachableError(url="http://u:p@h:1/x?key=secret"),
        LLMTimeoutError("connect", 5, url="http://h:1"),
        LLMHTTPError(404, "model 'x' not found"),
        LLMStreamError("boom"),
        LLMResponseError("a chunk has no 'done' field"),
    ]
    for error in errors:
        assert isinstance(error, LLMError)
        assert error.user_message and "\n" not in error.user_message
        assert "secret" not in str(error) and ":p@" not in str(error)
    assert errors[0].url == "http://h:1/x"
    assert errors[2].user_message.endswith("model 'x' not found")
