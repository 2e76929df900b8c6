"""The OpenAI-compatible client over real HTTP on 127.0.0.1: :class:`OpenAITransport` (SSE to
``[DONE]``, usage and llama.cpp timings, error events and bodies, retries, deadlines, options and
images as OpenAI spells them, keys) against the sandbox LLM's ``/v1`` and small in-test servers for
what the sandbox cannot send; and :func:`bot.llm.probe.probe` telling llama.cpp from a web page."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from _llm import running_llm
from aiohttp import web

from bot.llm.errors import (
    LLMError,
    LLMHTTPError,
    LLMResponseError,
    LLMStreamError,
    LLMTimeoutError,
    LLMUnreachableError,
)
from bot.llm.http import HTTPTransport
from bot.llm.ollama import OllamaTransport
from bot.llm.openai import OpenAITransport
from bot.llm.probe import probe as probe_url
from bot.llm.types import ChatRequest, Done
from botctl.analyze.web import free_port
from botctl.sandbox.llm_server import CHARS_PER_TOKEN, answer_for, embed_text

pytestmark = pytest.mark.integration

MODEL = "llama3.2"
MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "what is a closure?"},
]
REQUEST = ChatRequest(MODEL, MESSAGES)
EXPECTED = answer_for(MESSAGES, 300)
PROMPT_TOKENS = sum(len(m["content"]) for m in MESSAGES) // CHARS_PER_TOKEN
CHAT_PATH = "/v1/chat/completions"
# Every await in a test is bounded by this (pytest-timeout is the last resort).
LIMIT = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Chunks = list[str | Done]
E = TypeVar("E", bound=LLMError)
T = TypeVar("T", bound=HTTPTransport)


def _png_1x1() -> bytes:
    """A real 1x1 grey PNG (signature, IHDR, IDAT, IEND with their CRCs)."""

    def part(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + part(b"IHDR", header)
        + part(b"IDAT", zlib.compress(b"\x00\x80"))
        + part(b"IEND", b"")
    )


PNG_B64 = base64.b64encode(_png_1x1()).decode("ascii")
JPEG_B64 = base64.b64encode(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01").decode()


@contextlib.asynccontextmanager
async def opened(transport: T) -> AsyncIterator[T]:
    try:
        yield transport
    finally:
        await transport.close()


async def collect(transport: HTTPTransport, request: ChatRequest = REQUEST) -> Chunks:
    """Every chunk of one streamed answer, the whole call bounded."""
    async with asyncio.timeout(LIMIT):
        return [chunk async for chunk in transport.stream(request)]


async def collect_to_error(
    transport: OpenAITransport, kind: type[E], request: ChatRequest = REQUEST
) -> tuple[Chunks, E]:
    """The chunks that arrived before the stream failed with ``kind``, and that error."""
    received: Chunks = []
    with pytest.raises(kind) as caught:
        async with asyncio.timeout(LIMIT):
            async for chunk in transport.stream(request):
                received.append(chunk)
    return received, caught.value


def split(chunks: Chunks) -> tuple[list[str], Done]:
    """The text deltas and the final Done, checking that Done comes last and only there."""
    *texts, final = chunks
    assert isinstance(final, Done)
    assert all(type(text) is str and text for text in texts)
    return [text for text in texts if isinstance(text, str)], final


@contextlib.asynccontextmanager
async def serving(handler: Handler, path: str = CHAT_PATH) -> AsyncIterator[str]:
    """A one-route aiohttp server on 127.0.0.1; yields its root URL (the API is at ``/v1``)."""
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


def event(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as OpenAI streams it."""
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return {**head, "choices": [choice], **extra}


USAGE = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "m",
    "choices": [],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}
DONE_MARK = b"data: [DONE]\n\n"
HELLO = event(chunk("Hel")) + event(chunk("lo")) + event(chunk(None, "stop")) + event(USAGE)


def sse(body: bytes, *, piece: int = 0, seen: list[Any] | None = None) -> Handler:
    """A handler streaming ``body`` as SSE (``piece`` bytes a write, else at once); the request
    bodies it gets go to ``seen``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if seen is not None:
            seen.append(await request.json())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        step = piece or len(body)
        for i in range(0, len(body), step):
            await response.write(body[i : i + step])
            if piece:
                await asyncio.sleep(0.001)
        await response.write_eof()
        return response

    return handler


def words_only(error: LLMHTTPError | LLMStreamError) -> None:
    """The server's message reaches the error and the user as words: no JSON, no repr."""
    for shown in (error.error, error.user_message, str(error)):
        assert "{" not in shown and "}" not in shown and "'message'" not in shown
        assert "None" not in shown


# --- the protocol -------------------------------------------------------------------------------


async def test_stream_yields_text_deltas_then_one_done() -> None:
    async with running_llm(latency=0.05, tokens_per_second=500) as server:
        assert server.url is not None
        async with opened(OpenAITransport(f"{server.url}/v1")) as transport:
            texts, final = split(await collect(transport))
        recorded = server.last_request(api="openai")
    # Events that arrive in one read are merged into one delta: how many depends on the network.
    assert 1 <= len(texts) <= 75 and "".join(texts) == EXPECTED
    assert final.tokens_out == 75 and final.tokens_in == PROMPT_TOKENS  # from the usage chunk
    assert final.reason == "stop" and final.model == MODEL
    assert final.server_prompt_ms is None and final.server_total_ms is None  # no timings sent
    assert recorded is not None and recorded.stream is True
    assert recorded.body["stream"] is True
    assert recorded.body["stream_options"] == {"include_usage": True}
    assert recorded.body["model"] == MODEL and recorded.body["messages"] == MESSAGES
    assert server.calls_by_api == {"openai": 1}


@pytest.mark.parametrize(
    "messages",
    [
        MESSAGES,
        [{"role": "user", "content": "what is this?", "images": [PNG_B64]}],
    ],
    ids=["text", "image"],
)
async def test_both_protocols_give_the_same_answer(messages: list[dict[str, Any]]) -> None:
    request = ChatRequest(MODEL, messages)
    async with running_llm() as server:
        assert server.url is not None
        async with (
            opened(OpenAITransport(f"{server.url}/v1")) as openai,
            opened(OllamaTransport(server.url)) as ollama,
        ):
            over_openai, openai_done = split(await collect(openai, request))
            over_ollama, ollama_done = split(await collect(ollama, request))
    assert "".join(over_openai) == "".join(over_ollama) == answer_for(messages)
    assert openai_done.tokens_in == ollama_done.tokens_in and openai_done.tokens_in
    assert openai_done.tokens_out == ollama_done.tokens_out == 75
    assert openai_done.reason == ollama_done.reason == "stop"
    assert server.calls_by_api == {"ollama": 1, "openai": 1}


async def test_llama_cpp_timings_fill_the_server_times() -> None:
    """llama.cpp's last chunk carries ``usage`` and ``timings`` (ms) with the finish reason; its
    first chunk has the role and a null content."""
    timings = {
        "prompt_n": 9,
        "prompt_ms": 12.5,
        "prompt_per_token_ms": 1.39,
        "predicted_n": 2,
        "predicted_ms": 30.25,
        "predicted_per_token_ms": 15.1,
    }
    first = chunk()
    first["choices"][0]["delta"] = {"role": "assistant", "content": None}
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    body = (
        event(first)
        + event(chunk("Hel"))
        + event(chunk("lo"))
        + event(chunk(None, "stop", usage=usage, timings=timings))
        + DONE_MARK
    )
    async with serving(sse(body)) as url, opened(OpenAITransport(f"{url}/v1")) as transport:
        texts, final = split(await collect(transport))
    assert "".join(texts) == "Hello" and final.reason == "stop"
    assert (final.tokens_in, final.tokens_out) == (9, 2)
    assert final.server_prompt_ms == pytest.approx(12.5)
    assert final.server_total_ms == pytest.approx(42.75)


async def test_a_json_answer_to_a_streamed_request_is_read() -> None:
    """A server (or a buffering proxy) that ignores ``stream`` answers one chat.completion."""
    seen: list[Any] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(await request.json())
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello whole answer"},
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async with serving(handler) as url, opened(OpenAITransport(f"{url}/v1")) as transport:
        texts, final = split(await collect(transport))
    assert texts == ["Hello whole answer"]
    assert (final.tokens_in, final.tokens_out, final.reason, final.model) == (4, 3, "length", "m")
    assert seen[0]["stream"] is True  # asked to stream all the same


async def test_a_200_that_is_neither_sse_nor_json_is_a_response_error() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"<html><body>hello</body></html>", content_type="text/html")

    async with serving(handler) as url, opened(OpenAITransport(f"{url}/v1")) as transport:
        received, error = await collect_to_error(transport, LLMResponseError)
    assert received == [] and "neither SSE nor JSON" in str(error)


async def test_a_finish_reason_without_done_marker_is_accepted() -> None:
    async with (
        serving(sse(HELLO)) as url,  # usage chunk, then the body ends: no [DONE]
        opened(OpenAITransport(f"{url}/v1")) as transport,
    ):
        texts, final = split(await collect(transport))
    assert "".join(texts) == "Hello" and final.reason == "stop"
    assert (final.tokens_in, final.tokens_out) == (3, 2)


@pytest.mark.parametrize("ending", ["clean", "abrupt"])
async def test_a_stream_with_neither_finish_nor_done_is_a_response_error(ending: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(event(chunk("cut")))
        if ending == "clean":
            await response.write_eof()
        else:  # the connection drops in the middle of the body
            await asyncio.sleep(0.1)
            assert request.transport is not None
            request.transport.close()
        return response

    async with serving(handler) as url, opened(OpenAITransport(f"{url}/v1")) as transport:
        received, error = await collect_to_error(transport, LLMResponseError)
    if ending == "clean":
        assert received == ["cut"] and "final chunk" in str(error)
    else:
        assert received in ([], ["cut"]) and "cut off" in str(error)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
async def test_comments_event_lines_and_blank_lines_are_ignored(newline: bytes) -> None:
    body = (
        b": ping\n\n"
        + b"event: message\n"
        + event(chunk("Hel"))
        + b"\n\n: keep-alive\n"
        + b"data:"  # no space after the colon: still a data line
        + orjson.dumps(chunk("lo"))
        + b"\n\n"
        + b"id: 7\nretry: 1000\n\n"
        + event(chunk(None, "stop"))
        + b": ping\n"
        + event(USAGE)
        + DONE_MARK
    ).replace(b"\n", newline)
    async with serving(sse(body)) as url, opened(OpenAITransport(f"{url}/v1")) as transport:
        texts, final = split(await collect(transport))
    assert "".join(texts) == "Hello" and final.reason == "stop" and final.tokens_out == 2


async def test_events_split_anywhere_across_tcp_chunks() -> None:
    body = event(chunk("Hé")) + event(chunk("llo")) + event(chunk(None, "stop")) + event(USAGE)
    body += DONE_MARK.rstrip(b"\n")  # no newline after the last line either
    async with (
        serving(sse(body, piece=5)) as url,  # 5 bytes a write: lines and the "é" cut in two
        opened(OpenAITransport(f"{url}/v1")) as transport,
    ):
        texts, final = split(await collect(transport))
    assert "".join(texts) == "Héllo" and final.tokens_out == 2 and final.reason == "stop"


async def test_an_error_event_mid_stream() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("stream_error", after_chunks=3, message="out of memory", api="openai")
        async with opened(OpenAITransport(f"{server.url}/v1")) as transport:
            received, error = await collect_to_error(transport, LLMStreamError)
    # The text before the error event (3 tokens, in however many reads) reached the caller.
    assert all(type(chunk) is str for chunk in received)
    partial = "".join(chunk for chunk in received if isinstance(chunk, str))
    assert partial == EXPECTED[: 3 * CHARS_PER_TOKEN]
    assert error.error == "out of memory"
    assert error.user_message == "The model stopped in the middle of its answer: out of memory"
    words_only(error)


async def test_an_error_event_without_a_message_is_not_called_none() -> None:
    body = event(chunk("Hel")) + event({"error": {"code": 500, "type": "server_error"}})
    async with serving(sse(body)) as url, opened(OpenAITransport(f"{url}/v1")) as transport:
        received, error = await collect_to_error(transport, LLMStreamError)
    assert received == ["Hel"]
    words_only(error)


# --- HTTP errors, retries, deadlines ------------------------------------------------------------


async def test_http_error_in_openais_shape_is_read_as_words() -> None:
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        body = b'{"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}}'
        return web.Response(status=404, body=body, content_type="application/json")

    async with serving(handler) as url, opened(OpenAITransport(f"{url}/v1")) as transport:
        _, error = await collect_to_error(transport, LLMHTTPError)
    assert error.status == 404 and error.error == "File Not Found"
    assert error.user_message == "The model server refused the request: File Not Found"
    assert "not_found_error" not in str(error) and "not_found_error" not in error.user_message
    assert error.url == f"{url}/v1/chat/completions"
    words_only(error)
    assert calls == 1  # a 404 is not retried


@pytest.mark.parametrize(
    ("settings", "key", "status", "text"),
    [
        (
            {"api_key": "sk-the-right-one"},
            None,
            401,
            "You didn't provide an API key. Provide it in an Authorization header "
            "(Authorization: Bearer YOUR_KEY).",
        ),
        ({"api_key": "sk-the-right-one"}, "sk-a-wrong-one", 401, "Incorrect API key provided."),
        (
            {"strict_models": True, "models": ["other"]},
            None,
            404,
            f"The model `{MODEL}` does not exist or you do not have access to it.",
        ),
    ],
    ids=["401-no-key", "401-wrong-key", "404-unknown-model"],
)
async def test_the_sandboxs_http_errors(
    settings: dict[str, Any], key: str | None, status: int, text: str
) -> None:
    async with running_llm(**settings) as server:
        assert server.url is not None
        async with opened(OpenAITransport(f"{server.url}/v1", api_key=key)) as transport:
            _, error = await collect_to_error(transport, LLMHTTPError)
    assert error.status == status and error.error == text
    assert error.user_message == f"The model server refused the request: {text}"
    for shown in (error.error, error.user_message, str(error)):
        assert "invalid_request_error" not in shown and "model_not_found" not in shown
    words_only(error)


async def test_429_with_retry_after_is_retried() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("status", status=429, retry_after=0.3, api="openai")
        async with opened(OpenAITransport(f"{server.url}/v1")) as transport:
            started = time.perf_counter()
            texts, _ = split(await collect(transport))
            elapsed = time.perf_counter() - started
    assert "".join(texts) == EXPECTED
    assert server.calls_by_api == {"openai": 2} and elapsed >= 0.29


async def test_503_retries_are_bounded() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("status", status=503, count=-1, api="openai")
        async with opened(OpenAITransport(f"{server.url}/v1", max_retries=2)) as transport:
            _, error = await collect_to_error(transport, LLMHTTPError)
        assert error.status == 503 and server.calls_by_api["openai"] == 3  # 1 + 2 retries
        assert "maximum pending requests" in error.error
        words_only(error)
        # A Retry-After beyond the call's deadline is not waited for.
        server.clear_faults()
        server.add_fault("status", status=429, retry_after=30, api="openai")
        async with opened(OpenAITransport(f"{server.url}/v1", timeout=1.0)) as transport:
            started = time.perf_counter()
            _, error = await collect_to_error(transport, LLMHTTPError)
        assert time.perf_counter() - started < 0.5
        assert error.status == 429 and server.calls_by_api["openai"] == 4


async def test_hang_times_out_on_the_first_byte() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("hang", count=-1, api="openai")
        transport = OpenAITransport(f"{server.url}/v1", first_byte_timeout=0.3)
        async with opened(transport):
            started = time.perf_counter()
            _, error = await collect_to_error(transport, LLMTimeoutError)
            assert 0.25 < time.perf_counter() - started < 2.0
    assert error.phase == "first_byte" and error.seconds == 0.3
    assert "0.3 s" in error.user_message


async def test_garbage_is_a_response_error() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("garbage", api="openai")  # an HTML page, served as text/event-stream
        async with opened(OpenAITransport(f"{server.url}/v1")) as transport:
            received, _ = await collect_to_error(transport, LLMResponseError)
    assert received == []


# --- what is sent: options, images, the key -----------------------------------------------------


async def test_options_are_renamed_and_ollama_only_ones_dropped() -> None:
    options = {"num_predict": 5, "temperature": 0, "num_ctx": 4096}
    async with running_llm() as server:
        assert server.url is not None
        async with opened(OpenAITransport(f"{server.url}/v1")) as transport:
            texts, final = split(await collect(transport, ChatRequest(MODEL, MESSAGES, options)))
        recorded = server.last_request(api="openai")
    assert recorded is not None
    body = recorded.body
    assert body["max_tokens"] == 5 and body["temperature"] == 0
    assert "num_ctx" not in body and "num_predict" not in body and "options" not in body
    # The server honoured the cap: five tokens, cut for length.
    assert "".join(texts) == EXPECTED[: 5 * CHARS_PER_TOKEN]
    assert final.tokens_out == 5 and final.reason == "length"
    assert options == {"num_predict": 5, "temperature": 0, "num_ctx": 4096}  # not changed


async def test_ollamas_unlimited_num_predict_sets_no_max_tokens() -> None:
    seen: list[Any] = []
    body = event(chunk("ok", "stop")) + DONE_MARK
    async with (
        serving(sse(body, seen=seen)) as url,
        opened(OpenAITransport(f"{url}/v1")) as transport,
    ):
        split(await collect(transport, ChatRequest(MODEL, MESSAGES, {"num_predict": -1})))
    assert "max_tokens" not in seen[0]


async def test_images_become_image_url_parts() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is this?", "images": [PNG_B64, JPEG_B64]},
    ]
    async with running_llm() as server:
        assert server.url is not None
        async with opened(OpenAITransport(f"{server.url}/v1")) as transport:
            texts, _ = split(await collect(transport, ChatRequest(MODEL, messages)))
        recorded = server.last_request(api="openai")
    assert recorded is not None
    sent = recorded.body["messages"]
    assert sent[0] == {"role": "system", "content": "be brief"}  # no images: as it was
    assert sent[1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
            {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPEG_B64}"}},
        ],
    }
    answer = "".join(texts)
    assert answer.startswith("I see 2 images. ") and answer == answer_for(messages)
    assert messages[1]["images"] == [PNG_B64, JPEG_B64]  # the caller's messages untouched


async def test_the_api_key_is_sent_as_bearer_and_never_shown() -> None:
    key = "sk-test-0123456789abcdef"
    headers: list[tuple[str, str | None]] = []

    async def anything(request: web.Request) -> web.StreamResponse:
        headers.append((request.path, request.headers.get("Authorization")))
        if request.path.endswith("/models"):
            return web.json_response({"object": "list", "data": [{"id": "m"}]})
        if request.path.endswith("/embeddings"):
            return web.json_response({"data": [{"index": 0, "embedding": [1.0]}]})
        return await sse(event(chunk("ok", "stop")) + DONE_MARK)(request)

    async with serving(anything, "/{tail:.*}") as url:
        async with opened(OpenAITransport(f"{url}/v1", api_key=key)) as transport:
            texts, _ = split(await collect(transport))
            async with asyncio.timeout(LIMIT):
                assert await transport.models() == ["m"]
                assert await transport.embed("e", ["x"]) == [[1.0]]
        assert texts == ["ok"]
        assert headers == [
            ("/v1/chat/completions", f"Bearer {key}"),
            ("/v1/models", f"Bearer {key}"),
            ("/v1/embeddings", f"Bearer {key}"),
        ]

    errors: list[LLMError] = []
    async with running_llm(api_key=key) as server:
        assert server.url is not None
        base = f"{server.url}/v1"
        async with opened(OpenAITransport(base, api_key=key)) as transport:
            texts, _ = split(await collect(transport))  # the sandbox checks the Bearer key
            assert "".join(texts) == EXPECTED
            recorded = server.last_request(api="openai")
            assert recorded is not None and recorded.authorized
            server.add_fault("stream_error", after_chunks=1, message="out of memory")
            errors.append((await collect_to_error(transport, LLMStreamError))[1])
            server.add_fault("status", status=500)
            errors.append((await collect_to_error(transport, LLMHTTPError))[1])
        async with opened(OpenAITransport(base, api_key=key + "-wrong")) as transport:
            errors.append((await collect_to_error(transport, LLMHTTPError))[1])
        server.add_fault("hang")
        transport = OpenAITransport(base, api_key=key, first_byte_timeout=0.2)
        async with opened(transport):
            errors.append((await collect_to_error(transport, LLMTimeoutError))[1])
    transport = OpenAITransport(f"http://127.0.0.1:{free_port()}/v1", api_key=key)
    async with opened(transport):
        errors.append((await collect_to_error(transport, LLMUnreachableError))[1])
    assert [type(error) for error in errors] == [
        LLMStreamError,
        LLMHTTPError,
        LLMHTTPError,
        LLMTimeoutError,
        LLMUnreachableError,
    ]
    for error in errors:
        for shown in (str(error), repr(error), error.detail, error.user_message, error.url):
            assert "sk-test" not in shown and "0123456789abcdef" not in shown
    assert key not in repr(transport)


# --- other endpoints: models, probe, embeddings -------------------------------------------------


async def test_models_and_probe() -> None:
    async with running_llm(models=[MODEL, "qwen2.5:0.5b"], embed_models=["nomic"]) as server:
        assert server.url is not None
        base = f"{server.url}/v1"
        async with opened(OpenAITransport(base)) as transport, asyncio.timeout(LIMIT):
            assert await transport.models() == [MODEL, "qwen2.5:0.5b", "nomic"]
            assert await transport.probe() == f"OpenAI-compatible server at {base}"
    assert server.calls_total == 0


@pytest.mark.parametrize("path", ["/", "/{tail:.*}"], ids=["root-only", "every-path"])
async def test_a_web_page_is_no_openai_server(path: str) -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"<!doctype html><title>chat</title>", content_type="text/html")

    async with serving(page, path) as url, opened(OpenAITransport(f"{url}/v1")) as transport:
        async with asyncio.timeout(LIMIT):
            assert await transport.models() is None
            assert await transport.probe() is None


async def test_embed_returns_one_vector_per_text_in_order() -> None:
    texts = ["a cat sat", "the dog barked", "quantum chromodynamics"]
    async with running_llm() as server:
        assert server.url is not None
        async with opened(OpenAITransport(f"{server.url}/v1")) as transport:
            async with asyncio.timeout(LIMIT):
                vectors = await transport.embed("nomic-embed-text", texts, timeout=5.0)
        recorded = server.last_request(api="openai", kind="embed")
    assert recorded is not None and recorded.inputs == texts
    assert len(vectors) == 3
    for vector, text in zip(vectors, texts, strict=True):
        assert vector == pytest.approx(embed_text(text))

    async def shuffled(request: web.Request) -> web.StreamResponse:
        data = [{"object": "embedding", "index": i, "embedding": [float(i)]} for i in (2, 0, 1)]
        return web.json_response({"object": "list", "data": data})

    async with (
        serving(shuffled, "/v1/embeddings") as url,
        opened(OpenAITransport(f"{url}/v1")) as transport,
        asyncio.timeout(LIMIT),
    ):
        assert await transport.embed("e", texts) == [[0.0], [1.0], [2.0]]
        with pytest.raises(LLMResponseError):  # three vectors for two texts
            await transport.embed("e", texts[:2])


@pytest.mark.parametrize(
    "items", [[{"index": 0}], [[0.5]]], ids=["no-embedding-field", "item-not-an-object"]
)
async def test_malformed_embeddings_are_a_response_error(items: list[Any]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": items})

    async with (
        serving(handler, "/v1/embeddings") as url,
        opened(OpenAITransport(f"{url}/v1")) as transport,
        asyncio.timeout(LIMIT),
    ):
        with pytest.raises(LLMResponseError):
            await transport.embed("e", ["x"])


async def test_probe_finds_openai_at_v1_behind_a_web_page() -> None:
    """llama.cpp's server: a web page on ``/``, ``/api/*`` a 404, the API at ``/v1``; the user
    gives the server's URL without ``/v1``."""
    async with running_llm(apis=("openai",), models=["qwen"]) as server:
        assert server.url is not None
        async with asyncio.timeout(LIMIT):
            found = await probe_url(server.url)
            with_v1 = await probe_url(f"{server.url}/v1/")
            as_ollama = await probe_url(server.url, "ollama")
    assert found.api == "openai" and found.base_url == f"{server.url}/v1"
    assert found.models == ("qwen",) and found.reachable
    assert found.description == f"OpenAI-compatible server at {server.url}/v1 (models: qwen)"
    assert with_v1.api == "openai" and with_v1.base_url == f"{server.url}/v1"
    assert as_ollama.api is None and as_ollama.reachable
    assert as_ollama.description == f"{server.url} answers, but not with Ollama's API"
    assert server.calls_total == 0


async def test_probe_of_a_plain_web_page() -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"<!doctype html><title>hi</title>", content_type="text/html")

    async with serving(page, "/") as url, asyncio.timeout(LIMIT):
        found = await probe_url(url)
    assert found.api is None and found.reachable and found.models == ()
    assert found.description == f"{url} answers, but not with Ollama's API or OpenAI's"


# --- connections --------------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["after-eof", "without-eof"])
async def test_a_server_that_closes_after_every_stream(ending: str) -> None:
    """Like llama.cpp: says keep-alive (no ``Connection: close``), then closes after the body
    (``without-eof``: before even the chunked body's terminator)."""
    connections: set[object] = set()
    said: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        connections.add(request.transport)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(HELLO)
        await response.write(DONE_MARK)
        if ending == "after-eof":
            await response.write_eof()
        assert request.transport is not None
        request.transport.close()
        return response

    async def on_request_end(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        said.append(params.response.headers.get("Connection"))

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    async with (
        serving(handler) as url,
        aiohttp.ClientSession(trace_configs=[trace]) as session,
        opened(OpenAITransport(f"{url}/v1", session=session)) as transport,
    ):
        for _ in range(3):
            texts, final = split(await collect(transport))
            assert "".join(texts) == "Hello" and final.tokens_out == 2
    assert len(connections) == 3
    assert said and all(value is None or value.lower() != "close" for value in said)
