"""The Ollama client over real HTTP on 127.0.0.1: :class:`OllamaTransport` (protocol, deadlines,
retries, error bodies) against the sandbox LLM and small in-test servers, and the public
:class:`OllamaService` facade (Ollama-shaped dicts, deduplication)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from _llm import running_llm
from aiohttp import web

from bot.dedup import RequestDeduplicator
from bot.llm.errors import (
    LLMError,
    LLMHTTPError,
    LLMResponseError,
    LLMStreamError,
    LLMTimeoutError,
    LLMUnreachableError,
)
from bot.llm.ollama import OllamaTransport
from bot.llm.service import OllamaService
from bot.llm.types import ChatRequest, Done
from botctl.analyze.web import free_port
from botctl.sandbox.llm_server import OLLAMA_VERSION, answer_for

pytestmark = pytest.mark.integration

MODEL = "llama3.2"
MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "what is a closure?"},
]
REQUEST = ChatRequest(MODEL, MESSAGES)
EXPECTED = answer_for(MESSAGES, 300)
# Every await in a test is bounded by this (pytest-timeout is the last resort).
LIMIT = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def opened(transport: OllamaTransport) -> AsyncIterator[OllamaTransport]:
    try:
        yield transport
    finally:
        await transport.close()


async def collect(transport: OllamaTransport, request: ChatRequest = REQUEST) -> list[str | Done]:
    """Every chunk of one streamed answer, the whole call bounded."""
    async with asyncio.timeout(LIMIT):
        return [chunk async for chunk in transport.stream(request)]


def split(chunks: list[str | Done]) -> tuple[list[str], Done]:
    """The text deltas and the final Done, checking that Done comes last and only there."""
    *texts, final = chunks
    assert isinstance(final, Done)
    assert all(type(text) is str and text for text in texts)
    return [text for text in texts if isinstance(text, str)], final


@contextlib.asynccontextmanager
async def serving(handler: Handler, path: str = "/api/chat") -> AsyncIterator[str]:
    """A one-route aiohttp server on 127.0.0.1; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def ndjson_line(content: str, *, done: bool = False, **extra: Any) -> bytes:
    line = {"model": "m", "message": {"role": "assistant", "content": content}, "done": done}
    return orjson.dumps({**line, **extra}) + b"\n"


FINAL = ndjson_line("", done=True, done_reason="stop", eval_count=2, prompt_eval_count=3)


# --- the transport: the protocol ----------------------------------------------------------------


async def test_stream_yields_text_deltas_then_one_done() -> None:
    async with running_llm(latency=0.05, tokens_per_second=500) as server:
        assert server.url is not None
        async with opened(OllamaTransport(server.url)) as transport:
            texts, final = split(await collect(transport))
            other, _ = split(await collect(transport, ChatRequest("other", MESSAGES)))
    # Lines that arrive in one read are merged into one delta: how many depends on the network.
    assert 1 <= len(texts) <= 75 and "".join(texts) == EXPECTED
    assert final.tokens_out == 75 and final.tokens_in and final.reason == "stop"
    assert final.model == MODEL and final.server_total_ms is not None
    assert final.server_prompt_ms == pytest.approx(50.0)
    assert "".join(other) == EXPECTED and server.calls_by_model == {MODEL: 1, "other": 1}


async def test_lines_split_anywhere_across_tcp_chunks() -> None:
    body = ndjson_line("Hé") + ndjson_line("llo") + FINAL.rstrip(b"\n")  # no newline at the end
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for i in range(0, len(body), 7):  # 7 bytes at a time: splits lines and the "é"
            await response.write(body[i : i + 7])
            await asyncio.sleep(0.001)
        await response.write_eof()
        return response

    assert (body.index("é".encode()) + 1) % 7 == 0  # the "é" really is cut in two by a write
    async with serving(handler) as url:
        transport = OllamaTransport(url.replace("//", "//bob:pw@"))
        async with opened(transport):
            texts, final = split(await collect(transport))
    assert "".join(texts) == "Héllo" and final.tokens_out == 2 and final.tokens_in == 3
    assert seen == ["Basic Ym9iOnB3"]  # credentials in the URL become a Basic header


async def test_error_line_mid_stream() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("stream_error", after_chunks=3, message="out of memory")
        received: list[str | Done] = []
        async with opened(OllamaTransport(server.url)) as transport:
            with pytest.raises(LLMStreamError) as caught:
                async with asyncio.timeout(LIMIT):
                    async for chunk in transport.stream(REQUEST):
                        received.append(chunk)
    # The text before the error line (3 tokens, in however many reads) reached the caller.
    assert all(type(chunk) is str for chunk in received)
    partial = "".join(chunk for chunk in received if isinstance(chunk, str))
    assert partial and EXPECTED.startswith(partial) and len(partial) < len(EXPECTED)
    assert caught.value.error == "out of memory"
    assert "out of memory" in caught.value.user_message


async def test_garbage_body_is_a_response_error() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("garbage")
        async with opened(OllamaTransport(server.url)) as transport:
            with pytest.raises(LLMResponseError):
                await collect(transport)


async def test_a_stream_without_its_final_line_is_a_response_error() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=ndjson_line("cut"), content_type="application/x-ndjson")

    async with serving(handler) as url, opened(OllamaTransport(url)) as transport:
        received: list[str | Done] = []
        with pytest.raises(LLMResponseError, match="final chunk"):
            async with asyncio.timeout(LIMIT):
                async for chunk in transport.stream(REQUEST):
                    received.append(chunk)
    assert received == ["cut"]


async def test_text_on_the_final_line_and_tool_calls_are_kept() -> None:
    """A server that ignores ``stream`` sends the whole answer on its done line; tool calls come
    on a line of their own with empty content."""
    call = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}

    async def handler(request: web.Request) -> web.StreamResponse:
        body = orjson.dumps(
            {"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [call]},
             "done": False}
        ) + b"\n" + ndjson_line("Hello whole answer", done=True, done_reason="stop")  # fmt: skip
        return web.Response(body=body, content_type="application/x-ndjson")

    async with serving(handler) as url, opened(OllamaTransport(url)) as transport:
        texts, final = split(await collect(transport))
        async with OllamaService(url, transport=transport) as llm:
            answer = await llm.chat(MESSAGES)
    assert texts == ["Hello whole answer"] and final.tool_calls == (call,)
    assert answer["message"] == {
        "role": "assistant",
        "content": "Hello whole answer",
        "tool_calls": [call],
    }


async def test_the_request_is_serialised_when_asked_not_when_read() -> None:
    seen: list[Any] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((await request.json())["messages"][0]["content"])
        return web.Response(body=ndjson_line("ok") + FINAL, content_type="application/x-ndjson")

    messages = [{"role": "user", "content": "as asked"}]
    async with serving(handler) as url, opened(OllamaTransport(url)) as transport:
        stream = transport.stream(ChatRequest(MODEL, messages))
        messages[0]["content"] = "changed afterwards"
        async with asyncio.timeout(LIMIT):
            _ = [chunk async for chunk in stream]
    assert seen == ["as asked"]


# --- the transport: HTTP errors, retries --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "strict", "text"),
    [
        (500, False, "llama runner process has terminated: exit status 2"),
        (404, True, f'model "{MODEL}" not found, try pulling it first'),
    ],
)
async def test_http_error_carries_ollamas_message(status: int, strict: bool, text: str) -> None:
    async with running_llm(strict_models=strict, models=["other"]) as server:
        assert server.url is not None
        if not strict:
            server.add_fault("status", status=status)
        async with opened(OllamaTransport(server.url)) as transport:
            with pytest.raises(LLMHTTPError) as caught:
                await collect(transport)
    assert caught.value.status == status and caught.value.error == text
    assert caught.value.user_message == f"The model server refused the request: {text}"
    assert server.calls_total == 1  # 500 and 404 are not retried


@pytest.mark.parametrize(
    ("status", "body", "content_type", "text"),
    [
        (
            404,
            b'{"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}}',
            "application/json",
            "File Not Found",
        ),
        (
            502,
            b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
            b"<body><h1>Bad Gateway</h1><p>nginx</p></body></html>\n",
            "text/html",
            "Bad Gateway",  # no markup: the reason phrase instead
        ),
        (500, b"  plain\n  words  ", "text/plain", "plain words"),
    ],
    ids=["openai-json", "html-page", "plain-text"],
)
async def test_http_error_bodies_are_read_as_words(
    status: int, body: bytes, content_type: str, text: str
) -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=status, body=body, content_type=content_type)

    async with serving(handler) as url, opened(OllamaTransport(url)) as transport:
        with pytest.raises(LLMHTTPError) as caught:
            await collect(transport)
    error = caught.value
    assert error.status == status and error.error == text
    assert error.user_message == f"The model server refused the request: {text}"
    for shown in (error.error, error.user_message, str(error)):
        assert "{" not in shown and "<" not in shown and "not_found_error" not in shown
    assert calls == 1


async def test_429_with_retry_after_is_retried() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("status", status=429, retry_after=0.3)
        async with opened(OllamaTransport(server.url)) as transport:
            started = time.perf_counter()
            texts, _ = split(await collect(transport))
            elapsed = time.perf_counter() - started
    assert "".join(texts) == EXPECTED
    assert server.calls_total == 2 and elapsed >= 0.29


async def test_503_retries_are_bounded() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("status", status=503, count=-1)
        async with opened(OllamaTransport(server.url, max_retries=2)) as transport:
            with pytest.raises(LLMHTTPError) as caught:
                await collect(transport)
        assert caught.value.status == 503 and server.calls_total == 3
        assert "maximum pending requests" in caught.value.error
        # A Retry-After beyond the call's deadline is not waited for.
        server.clear_faults()
        server.add_fault("status", status=429, retry_after=30)
        async with opened(OllamaTransport(server.url, timeout=1.0)) as transport:
            started = time.perf_counter()
            with pytest.raises(LLMHTTPError) as caught:
                await collect(transport)
        assert time.perf_counter() - started < 0.5
        assert caught.value.status == 429 and server.calls_total == 4


# --- the transport: deadlines, unreachable servers ----------------------------------------------


async def test_hang_times_out_on_the_first_byte() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("hang", count=-1)
        async with opened(OllamaTransport(server.url, first_byte_timeout=0.3)) as transport:
            started = time.perf_counter()
            with pytest.raises(LLMTimeoutError) as caught:
                await collect(transport)
            assert 0.25 < time.perf_counter() - started < 2.0
        assert caught.value.phase == "first_byte" and caught.value.seconds == 0.3
        assert "0.3 s" in caught.value.user_message
        async with opened(OllamaTransport(server.url, timeout=0.3)) as transport:
            with pytest.raises(LLMTimeoutError) as caught:
                await collect(transport)
        assert caught.value.phase == "total" and caught.value.seconds == 0.3


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
            transport = OllamaTransport(f"http://127.0.0.1:{port}", connect_timeout=0.2)
            async with opened(transport):
                started = time.perf_counter()
                with pytest.raises(LLMTimeoutError) as caught:
                    await collect(transport)
                assert time.perf_counter() - started < 2.0
        finally:
            for filler in fillers:
                filler.close()
    assert caught.value.phase == "connect" and caught.value.seconds == 0.2
    assert "connect" in caught.value.user_message


async def test_slow_stream_hits_the_total_timeout() -> None:
    async with running_llm(tokens_per_second=20) as server:
        assert server.url is not None
        transport = OllamaTransport(server.url, timeout=0.4, first_byte_timeout=0.2)
        async with opened(transport):
            texts: list[str] = []
            started = time.perf_counter()
            with pytest.raises(LLMTimeoutError) as caught:
                async with asyncio.timeout(LIMIT):
                    async for chunk in transport.stream(REQUEST):
                        assert isinstance(chunk, str)
                        texts.append(chunk)
            assert time.perf_counter() - started < 2.0
    assert caught.value.phase == "total" and caught.value.seconds == 0.4 and len(texts) > 1
    assert EXPECTED.startswith("".join(texts))


async def test_closed_port_is_unreachable() -> None:
    port = free_port()
    transport = OllamaTransport(f"http://alice:s3cret-pw@127.0.0.1:{port}")
    async with opened(transport):
        with pytest.raises(LLMUnreachableError) as caught:
            await collect(transport)
        async with asyncio.timeout(LIMIT):
            assert await transport.probe(0.3) is None
            assert await transport.models(0.3) is None
    error = caught.value
    assert transport.base_url == f"http://127.0.0.1:{port}"
    assert error.url == f"{transport.base_url}/api/chat"
    texts = [str(error), error.user_message, error.detail, repr(error), repr(transport), error.url]
    assert not any("s3cret" in text or "alice" in text or "@" in text for text in texts)
    assert "unreachable" in error.user_message
    # The chat user is not told where the model runs.
    assert "127.0.0.1" not in error.user_message and str(port) not in error.user_message


# --- the transport: connections and sessions ----------------------------------------------------


async def test_a_server_that_closes_after_every_stream() -> None:
    """Like llama.cpp: says keep-alive (no ``Connection: close``), then closes after the body."""
    connections: set[object] = set()

    async def handler(request: web.Request) -> web.StreamResponse:
        connections.add(request.transport)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(ndjson_line("Hel") + ndjson_line("lo"))
        await response.write(FINAL)
        await response.write_eof()
        assert request.transport is not None
        request.transport.close()
        return response

    async with serving(handler) as url, opened(OllamaTransport(url)) as transport:
        for _ in range(3):
            texts, final = split(await collect(transport))
            assert "".join(texts) == "Hello" and final.tokens_out == 2
    assert len(connections) == 3


async def test_a_stale_pooled_connection_is_retried_once_afresh() -> None:
    """The server drops a kept-alive connection when the next request arrives on it: the request
    is sent again on a new connection, once."""
    served: dict[object, int] = {}
    always_drop = False

    async def handler(request: web.Request) -> web.StreamResponse:
        connection = request.transport
        assert connection is not None
        served[connection] = served.get(connection, 0) + 1
        if always_drop or served[connection] > 1:
            connection.close()  # closed behind the client's back, no answer
            raise ConnectionResetError
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(ndjson_line("ok") + FINAL)
        await response.write_eof()
        return response

    async with serving(handler) as url, opened(OllamaTransport(url)) as transport:
        for _ in range(2):
            texts, _ = split(await collect(transport))
            assert texts == ["ok"]
        # 1st: one request; 2nd: the pooled connection dropped, then one fresh connection.
        assert sorted(served.values()) == [1, 2]
        always_drop = True
        with pytest.raises(LLMUnreachableError):  # retried once, not forever
            await collect(transport)
        assert sum(served.values()) == 3 + 2


async def test_sessions_are_opened_lazily_and_closed_once() -> None:
    async with running_llm() as server:
        assert server.url is not None
        transport = OllamaTransport(server.url + "/")
        assert transport.base_url == server.url
        assert transport._session is None  # nothing opened before it is needed
        texts, _ = split(await collect(transport))  # no start(): opened lazily
        assert "".join(texts) == EXPECTED
        session = transport._session
        assert session is not None and not session.closed
        await transport.close()
        assert session.closed
        await transport.close()  # idempotent
        async with opened(transport):  # usable again: a new session, opened lazily
            assert "".join(split(await collect(transport))[0]) == EXPECTED
            assert transport._session is not session

        sent: list[str] = []

        async def on_request_start(
            session: aiohttp.ClientSession,
            context: Any,
            params: aiohttp.TraceRequestStartParams,
        ) -> None:
            sent.append(params.url.path)

        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(on_request_start)
        async with aiohttp.ClientSession(trace_configs=[trace]) as injected:
            shared = OllamaTransport(server.url, session=injected)
            await shared.start()
            assert "".join(split(await collect(shared))[0]) == EXPECTED
            async with asyncio.timeout(LIMIT):
                assert await shared.probe() == f"Ollama {OLLAMA_VERSION}"
                assert await shared.models() == [MODEL]
            await shared.close()
            await shared.close()
            assert not injected.closed  # an injected session belongs to its owner
            assert sent == ["/api/chat", "/api/version", "/api/tags"]  # and it was the one used


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        OllamaTransport("http://127.0.0.1:1", timeout=0)
    with pytest.raises(ValueError):
        OllamaTransport("http://127.0.0.1:1", connect_timeout=-1)
    with pytest.raises(ValueError):
        OllamaService("http://127.0.0.1:1", timeout=0)
    assert OllamaTransport("127.0.0.1:11434").base_url == "http://127.0.0.1:11434"


# --- the transport: other endpoints -------------------------------------------------------------


async def test_probe_and_models() -> None:
    async with running_llm(models=[MODEL, "qwen2.5:0.5b"]) as server:
        assert server.url is not None
        async with opened(OllamaTransport(server.url)) as transport, asyncio.timeout(LIMIT):
            assert await transport.probe() == f"Ollama {OLLAMA_VERSION}"
            assert await transport.models() == [MODEL, "qwen2.5:0.5b"]
    assert server.calls_total == 0


async def test_a_server_that_is_not_ollama_probes_as_none() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    async with serving(handler, "/api/version") as url, opened(OllamaTransport(url)) as transport:
        async with asyncio.timeout(LIMIT):
            assert await transport.probe() is None


async def test_embed() -> None:
    async with running_llm() as server:
        assert server.url is not None
        async with opened(OllamaTransport(server.url)) as transport, asyncio.timeout(LIMIT):
            try:
                vectors = await transport.embed(MODEL, ["a", "b"], timeout=5.0)
            except LLMHTTPError as exc:
                if exc.status != 404:
                    raise
                pytest.skip("the sandbox LLM does not serve /api/embed yet (HTTP 404)")
    assert len(vectors) == 2 and all(v and isinstance(v[0], float) for v in vectors)


# --- the facade: Ollama-shaped answers ----------------------------------------------------------


async def test_chat_returns_ollamas_json() -> None:
    async with running_llm() as server:
        assert server.url is not None
        async with OllamaService(server.url, MODEL) as llm, asyncio.timeout(LIMIT):
            result = await llm.chat(MESSAGES)
    assert result == {
        "message": {"role": "assistant", "content": EXPECTED},
        "model": MODEL,
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": result["prompt_eval_count"],
        "eval_count": 75,
    }
    assert isinstance(result["prompt_eval_count"], int) and result["prompt_eval_count"] > 0
    assert server.calls_total == 1


async def test_chat_stream_yields_ollamas_lines() -> None:
    async with running_llm(latency=0.05, tokens_per_second=500) as server:
        assert server.url is not None
        async with OllamaService(server.url, MODEL) as llm, asyncio.timeout(LIMIT):
            lines = [line async for line in await llm.chat(MESSAGES, stream=True)]
            other = [line async for line in await llm.chat(MESSAGES, stream=True, model="other")]
    *parts, final = lines
    assert parts
    for line in parts:
        assert set(line) == {"model", "message", "done"} and line["done"] is False
        assert line["model"] == MODEL and set(line["message"]) == {"role", "content"}
        assert line["message"]["role"] == "assistant" and line["message"]["content"]
    assert "".join(line["message"]["content"] for line in parts) == EXPECTED
    assert final["done"] is True and final["message"] == {"role": "assistant", "content": ""}
    assert final["eval_count"] == 75 and final["done_reason"] == "stop"
    assert final["model"] == MODEL and final["prompt_eval_count"] > 0
    assert other[-1]["model"] == "other" and server.calls_by_model["other"] == 1


async def test_chat_errors_are_llm_errors() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("stream_error", after_chunks=2, message="out of memory")
        async with OllamaService(server.url, MODEL) as llm, asyncio.timeout(LIMIT):
            with pytest.raises(LLMStreamError):
                await llm.chat(MESSAGES)
            server.add_fault("stream_error", after_chunks=2, message="out of memory")
            lines: list[dict[str, Any]] = []
            with pytest.raises(LLMStreamError):
                async for line in await llm.chat(MESSAGES, stream=True):
                    lines.append(line)
    # Streamed, the text before the error still arrives.
    assert lines and all(line["done"] is False for line in lines)
    assert EXPECTED.startswith("".join(line["message"]["content"] for line in lines))


# --- the facade: deduplication ------------------------------------------------------------------


async def test_20_identical_chats_make_one_call() -> None:
    async with running_llm(latency=0.1, tokens_per_second=1000) as server:
        assert server.url is not None
        async with OllamaService(server.url, MODEL) as llm, asyncio.timeout(LIMIT):
            results = await asyncio.gather(*(llm.chat(MESSAGES) for _ in range(20)))
            stats = llm.get_cache_stats()
    assert server.calls_total == 1
    assert all(r["message"]["content"] == EXPECTED and r["eval_count"] == 75 for r in results)
    assert stats["dedup_enabled"] is True
    dedup = stats["deduplication"]
    assert (dedup["requests"], dedup["leaders"], dedup["followers"]) == (20, 1, 19)
    assert dedup["saved_calls"] == 19 and dedup["pending_requests"] == 0


async def test_20_identical_streams_make_one_call() -> None:
    async with running_llm(latency=0.1, tokens_per_second=1000) as server:
        assert server.url is not None
        async with OllamaService(server.url, MODEL) as llm, asyncio.timeout(LIMIT):

            async def read() -> str:
                lines = [line async for line in await llm.chat(MESSAGES, stream=True)]
                assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 75
                return "".join(line["message"]["content"] for line in lines)

            async def whole() -> str:
                result = await llm.chat(MESSAGES)
                return str(result["message"]["content"])

            texts = await asyncio.gather(*(read() for _ in range(19)), whole())
    assert server.calls_total == 1 and texts == [EXPECTED] * 20


async def test_the_window_reuses_a_finished_answer() -> None:
    now = [1000.0]
    dedup = RequestDeduplicator(window=5.0, clock=lambda: now[0])
    async with running_llm() as server:
        assert server.url is not None
        async with (
            OllamaService(server.url, MODEL, deduplicator=dedup) as llm,
            asyncio.timeout(LIMIT),
        ):
            first = await llm.chat(MESSAGES)
            now[0] += 4.0
            second = await llm.chat(MESSAGES)
            assert second == first and server.calls_total == 1
            assert llm.get_cache_stats()["deduplication"]["window_hits"] == 1
            now[0] += 2.0
            third = await llm.chat(MESSAGES)
    assert third == first and server.calls_total == 2


async def test_dedup_off_calls_upstream_every_time() -> None:
    async with running_llm(latency=0.05) as server:
        assert server.url is not None
        async with OllamaService(server.url, MODEL, dedup=False) as llm, asyncio.timeout(LIMIT):
            results = await asyncio.gather(*(llm.chat(MESSAGES) for _ in range(3)))
            await llm.chat(MESSAGES)
            stats = llm.get_cache_stats()
    assert all(r["message"]["content"] == EXPECTED for r in results)
    assert server.calls_total == 4 and server.max_in_flight == 3
    assert stats["dedup_enabled"] is False and stats["deduplication"]["requests"] == 0


async def test_an_error_is_shared_then_forgotten() -> None:
    async with running_llm(latency=0.1) as server:
        assert server.url is not None
        server.add_fault("status", status=500)
        async with OllamaService(server.url, MODEL) as llm, asyncio.timeout(LIMIT):
            outcomes = await asyncio.gather(
                *(llm.chat(MESSAGES) for _ in range(5)), return_exceptions=True
            )
            assert server.calls_total == 1
            assert all(isinstance(o, LLMHTTPError) and o.status == 500 for o in outcomes)
            assert len({id(o) for o in outcomes}) == 1  # the very same error for every caller
            result = await llm.chat(MESSAGES)
            stats = llm.get_cache_stats()["deduplication"]
    assert result["message"]["content"] == EXPECTED and server.calls_total == 2
    assert (stats["leaders"], stats["errors"], stats["window_hits"]) == (2, 1, 0)


async def test_a_cancelled_waiter_does_not_stop_the_others() -> None:
    async with running_llm(latency=0.3) as server:
        assert server.url is not None
        async with OllamaService(server.url, MODEL) as llm, asyncio.timeout(LIMIT):
            tasks = [asyncio.create_task(llm.chat(MESSAGES)) for _ in range(3)]
            await asyncio.sleep(0.1)
            tasks[0].cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[0], asyncio.CancelledError)
    assert [r["message"]["content"] for r in done[1:] if isinstance(r, dict)] == [EXPECTED] * 2
    assert server.calls_total == 1


async def test_every_caller_leaving_cancels_the_upstream_call() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("hang")
        async with OllamaService(server.url, MODEL) as llm, asyncio.timeout(LIMIT):
            task = asyncio.create_task(llm.chat(MESSAGES))
            while server.in_flight == 0:  # noqa: ASYNC110 - bounded by the timeout above
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            while server.in_flight:  # noqa: ASYNC110 - the server sees the client go away
                await asyncio.sleep(0.01)
            assert llm.get_cache_stats()["deduplication"]["pending_requests"] == 0
            assert (await llm.chat(MESSAGES))["message"]["content"] == EXPECTED


# --- errors -------------------------------------------------------------------------------------


def test_error_tree() -> None:
    errors: list[LLMError] = [
        LLMUnreachableError(url="http://u:p@h:1/x?key=secret"),
        LLMTimeoutError("connect", 5, url="http://u:p@h:1"),
        LLMTimeoutError("first_byte", 0.5, url="http://h:1"),
        LLMTimeoutError("total", 120, url="http://h:1"),
        LLMHTTPError(404, "model 'x' not found", url="http://h:1/api/chat"),
        LLMHTTPError(502, "", url="http://h:1/api/chat"),
        LLMStreamError("boom", url="http://h:1"),
        LLMResponseError("a chunk has no 'done' field", url="http://h:1"),
    ]
    for error in errors:
        assert isinstance(error, LLMError)
        assert error.user_message and "\n" not in error.user_message
        assert "secret" not in str(error) and ":p@" not in str(error)
        assert "h:1" not in error.user_message and "http" not in error.user_message
        assert "h:1" not in error.detail
    assert errors[0].url == "http://h:1/x"
    assert errors[4].user_message.endswith("model 'x' not found")
    assert "HTTP 502" in errors[5].user_message
