"""The sandbox LLM server's OpenAI-compatible API, spoken to over real HTTP on 127.0.0.1 with a
plain aiohttp client (no ``openai`` package), and compared with its Ollama API."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from typing import Any

import aiohttp
import orjson
import pytest
from _llm import running_llm, wait_until

from botctl.sandbox.llm_server import LLMServer, answer_for, embed_text

pytestmark = pytest.mark.integration

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "what is a closure?"},
]


def sse_events(raw: bytes) -> list[Any]:
    """The ``data:`` payloads of an SSE body, parsed (``[DONE]`` kept as the string)."""
    assert raw.endswith(b"\n\n"), "an SSE body ends with a blank line"
    events: list[Any] = []
    for block in raw.split(b"\n\n"):
        if not block:
            continue
        assert block.startswith(b"data: "), block
        data = block[len(b"data: ") :]
        events.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return events


async def post(url: str, body: dict[str, Any], **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body, **kwargs) as r:
        return r.status, dict(r.headers), await r.read()


async def completions(server: LLMServer, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return await post(f"{server.url}/v1/chat/completions", body)


# --- chat --------------------------------------------------------------------------------------


async def test_non_streamed_completion() -> None:
    async with running_llm(answer_chars=200) as server:
        status, headers, raw = await completions(server, {"model": "m", "messages": MESSAGES})
    assert status == 200 and headers["Content-Type"] == "application/json"
    body = orjson.loads(raw)
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "m" and isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"] == {"role": "assistant", "content": answer_for(MESSAGES, 200)}
    usage = body["usage"]
    assert usage["completion_tokens"] == 50 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert server.calls_total == 1 and server.calls_by_api == {"openai": 1}


async def test_streamed_completion_without_and_with_usage() -> None:
    async with running_llm(answer_chars=200) as server:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        status, headers, raw = await completions(server, body)
        with_usage = {**body, "stream_options": {"include_usage": True}}
        _, _, raw_usage = await completions(server, with_usage)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    *chunks, finish, done = sse_events(raw)
    assert done == "[DONE]" and len(chunks) == 50
    assert len({c["id"] for c in [*chunks, finish]}) == 1
    for chunk in [*chunks, finish]:
        assert chunk["object"] == "chat.completion.chunk" and chunk["model"] == "m"
        assert isinstance(chunk["created"], int) and "usage" not in chunk
        assert chunk["choices"][0]["index"] == 0
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
    assert text == answer_for(MESSAGES, 200)
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["choices"][0]["delta"] == {}

    *chunks, finish, usage, done = sse_events(raw_usage)
    assert done == "[DONE]" and usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 50 and usage["usage"]["prompt_tokens"] > 0
    assert all(c["usage"] is None for c in [*chunks, finish])  # as OpenAI sends them


async def test_both_protocols_give_the_same_answer_and_counts() -> None:
    messages = [
        *MESSAGES,
        {"role": "assistant", "content": "a function with its scope"},
        {"role": "user", "content": "!cite and a generator? [1] notes.md:1-3"},
    ]
    async with running_llm() as server:
        _, _, ollama_raw = await post(
            f"{server.url}/api/chat", {"model": "m", "messages": messages, "stream": False}
        )
        body = {"model": "m", "messages": messages, "stream": True}
        body["stream_options"] = {"include_usage": True}
        _, _, openai_raw = await completions(server, body)
        stats = server.stats()
    ollama = orjson.loads(ollama_raw)
    *chunks, _, usage, _ = sse_events(openai_raw)
    openai_text = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
    assert openai_text == ollama["message"]["content"] == answer_for(messages)
    assert usage["usage"]["prompt_tokens"] == ollama["prompt_eval_count"]
    assert usage["usage"]["completion_tokens"] == ollama["eval_count"]
    assert stats["calls_total"] == 2 and stats["calls_by_api"] == {"ollama": 1, "openai": 1}


async def test_multimodal_parts_are_recorded_and_answered() -> None:
    url = "data:image/png;base64,aGVsbG8="
    parts = [
        {"type": "text", "text": "what is in these?"},
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
    ]
    body = {"model": "vision", "messages": [{"role": "user", "content": parts}]}
    async with running_llm() as server:
        _, _, raw = await completions(server, body)
        recorded = server.last_request(api="openai")
    answer = orjson.loads(raw)["choices"][0]["message"]["content"]
    assert answer.startswith("I see 2 images. ")
    assert recorded is not None and recorded.images == [url, url]
    assert recorded.text() == "what is in these?" and not recorded.authorized
    assert server.recent_requests[-1] == body["messages"]


async def test_max_tokens_cuts_the_answer() -> None:
    async with running_llm(answer_chars=200) as server:
        body = {"model": "m", "messages": MESSAGES, "max_tokens": 5, "stream": True}
        _, _, raw = await completions(server, body)
        _, _, whole = await completions(
            server, {"model": "m", "messages": MESSAGES, "max_completion_tokens": 3}
        )
    *chunks, finish, _ = sse_events(raw)
    assert len(chunks) == 5 and finish["choices"][0]["finish_reason"] == "length"
    choice = orjson.loads(whole)["choices"][0]
    assert choice["finish_reason"] == "length" and len(choice["message"]["content"]) == 12


async def test_first_token_waits_for_the_latency() -> None:
    # A lower bound only: a loaded machine may be slower, never faster.
    async with (
        running_llm(latency=0.25, tokens_per_second=100, answer_chars=80) as server,
        aiohttp.ClientSession() as session,
    ):
        started = time.perf_counter()
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        async with session.post(f"{server.url}/v1/chat/completions", json=body) as r:
            await r.content.readline()
            first = time.perf_counter() - started
            await r.read()
            total = time.perf_counter() - started
    assert first >= 0.24
    assert total >= 0.25 + 19 / 100 - 0.02  # 20 tokens, the first at `latency`


# --- errors and faults -------------------------------------------------------------------------


def assert_openai_error(raw: bytes) -> dict[str, Any]:
    error = orjson.loads(raw)["error"]
    assert {"message", "type", "code"} <= set(error) and isinstance(error["message"], str)
    return dict(error)


async def test_bad_requests_and_unknown_models_in_openai_shape() -> None:
    async with running_llm(strict_models=True) as server:
        status, _, raw = await completions(server, {"messages": MESSAGES})
        assert status == 400 and assert_openai_error(raw)["type"] == "invalid_request_error"
        status, _, raw = await completions(server, {"model": "llama3.2", "messages": []})
        assert status == 400 and "messages" in assert_openai_error(raw)["message"]
        status, _, raw = await post(f"{server.url}/v1/chat/completions", None, data=b"{nope")
        assert status == 400 and assert_openai_error(raw)
        status, _, raw = await completions(server, {"model": "nope", "messages": MESSAGES})
        error = assert_openai_error(raw)
        assert status == 404 and error["code"] == "model_not_found" and "nope" in error["message"]


async def test_status_fault_with_retry_after() -> None:
    async with running_llm() as server:
        server.add_fault("status", count=1, status=429, retry_after=2, api="openai")
        server.add_fault("status", count=1, status=503, api="ollama")
        status, headers, raw = await completions(server, {"model": "m", "messages": MESSAGES})
        assert status == 429 and headers["Retry-After"] == "2"
        error = assert_openai_error(raw)
        assert error["code"] == "rate_limit_exceeded" and "try again" in error["message"]
        status, _, _ = await completions(server, {"model": "m", "messages": MESSAGES})
        assert status == 200  # the 503 waits for an Ollama request
        assert len(server.faults) == 1 and server.calls_total == 2


async def test_error_mid_stream_is_an_sse_error_event() -> None:
    async with running_llm() as server:
        server.add_fault("stream_error", after_chunks=3)
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        status, _, raw = await completions(server, body)
        server.add_fault("stream_error")
        whole_status, _, whole = await completions(server, {**body, "stream": False})
    assert status == 200
    events = sse_events(raw)
    assert len(events) == 4 and "[DONE]" not in events
    assert all("choices" in e for e in events[:3])
    assert events[-1]["error"]["message"] and events[-1]["error"]["type"] == "server_error"
    assert whole_status == 500 and assert_openai_error(whole)


async def test_garbage_and_hang_faults() -> None:
    server = LLMServer(latency=0.0, tokens_per_second=0.0)
    url = await server.start()
    session = aiohttp.ClientSession()
    try:
        server.add_fault("garbage")
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        async with session.post(f"{url}/v1/chat/completions", json=body) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
            assert not (await r.read()).startswith(b"data: ")
        server.add_fault("hang")
        pending = asyncio.ensure_future(session.post(f"{url}/v1/chat/completions", json=body))
        await wait_until(lambda: server.in_flight == 1)
    finally:
        async with asyncio.timeout(5):
            await server.stop()
    try:
        async with asyncio.timeout(5):
            response = await pending
        assert response.status == 503  # released by stop() before the connection closed
        assert_openai_error(await response.read())
    except aiohttp.ClientError:
        pass  # or the connection closed first
    finally:
        await session.close()


async def test_api_key_is_required_when_set() -> None:
    async with running_llm(api_key="sk-test-123") as server:
        body = {"model": "m", "messages": MESSAGES}
        status, _, raw = await completions(server, body)
        assert status == 401 and "API key" in assert_openai_error(raw)["message"]
        status, _, raw = await post(
            f"{server.url}/v1/chat/completions", body, headers={"Authorization": "Bearer nope"}
        )
        assert status == 401 and "sk-test-123" not in raw.decode()
        status, _, _ = await post(
            f"{server.url}/v1/chat/completions",
            body,
            headers={"Authorization": "Bearer sk-test-123"},
        )
        assert status == 200
        recorded = server.last_request()
        assert recorded is not None and recorded.authorized
        assert "sk-test-123" not in orjson.dumps(recorded.to_dict()).decode()
        assert server.calls_total == 1  # refused requests never reached the model


# --- models, embeddings, one protocol only ----------------------------------------------------


async def test_models_list() -> None:
    async with (
        running_llm(models=["llama3.2", "qwen"], embed_models=["nomic-embed-text"]) as server,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(f"{server.url}/v1/models") as r:
            assert r.headers["Content-Type"] == "application/json"
            listing = await r.json()
        async with session.get(f"{server.url}/v1/models/qwen") as r:
            one = await r.json()
        async with session.get(f"{server.url}/api/tags") as r:
            tags = await r.json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["llama3.2", "qwen", "nomic-embed-text"]
    for model in listing["data"]:
        assert model["object"] == "model" and isinstance(model["created"], int)
        assert model["owned_by"]
    assert one["id"] == "qwen"
    assert [m["name"] for m in tags["models"]] == ["llama3.2", "qwen", "nomic-embed-text"]


async def test_embeddings_float_and_base64() -> None:
    async with running_llm() as server:
        texts = ["reset the channel history", "bananas"]
        url = f"{server.url}/v1/embeddings"
        status, _, raw = await post(url, {"model": "e", "input": texts})
        _, _, raw64 = await post(url, {"model": "e", "input": "x", "encoding_format": "base64"})
        bad, _, raw_bad = await post(url, {"model": "e", "input": []})
        stats = server.stats()
    assert status == 200
    body = orjson.loads(raw)
    assert body["object"] == "list" and body["model"] == "e"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(d["object"] == "embedding" for d in body["data"])
    assert body["data"][0]["embedding"] == embed_text(texts[0])
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    packed = base64.b64decode(orjson.loads(raw64)["data"][0]["embedding"])
    assert len(struct.unpack("<64f", packed)) == 64
    assert bad == 400 and assert_openai_error(raw_bad)
    assert stats["embed_calls_by_api"] == {"ollama": 0, "openai": 2}


async def test_openai_only_server_looks_like_llama_cpp() -> None:
    async with running_llm(apis=("openai",)) as server, aiohttp.ClientSession() as session:
        for path in ("/api/version", "/api/tags"):
            async with session.get(f"{server.url}{path}") as r:
                assert r.status == 404
                assert (await r.json())["error"]["message"] == "File Not Found"
        async with session.post(f"{server.url}/api/chat", json={"model": "m"}) as r:
            assert r.status == 404
        async with session.get(f"{server.url}/") as r:
            # A web page: a 200 here proves nothing about the API.
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
        async with session.get(f"{server.url}/v1/models") as r:
            assert r.status == 200
        assert server.stats()["calls_by_api"] == {"openai": 0}
