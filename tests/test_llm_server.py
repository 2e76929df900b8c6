"""The sandbox LLM server, spoken to over real HTTP on 127.0.0.1 with a plain aiohttp client."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest
from _llm import running_llm, wait_until

from botctl.sandbox.llm_server import (
    Fault,
    LLMServer,
    answer_for,
    cosine,
    embed_text,
    long_answer,
    make_answer,
)

pytestmark = pytest.mark.integration

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "what is a closure?"},
]


async def chat_lines(url: str, body: dict[str, Any]) -> tuple[aiohttp.ClientResponse, list[Any]]:
    async with aiohttp.ClientSession() as session, session.post(f"{url}/api/chat", json=body) as r:
        raw = await r.read()
        return r, [orjson.loads(line) for line in raw.splitlines() if line.strip()]


# --- answers -----------------------------------------------------------------------------------


def test_answers_are_deterministic_and_sized() -> None:
    assert make_answer("hello", 300) == make_answer("hello", 300)
    assert make_answer("hello", 300) != make_answer("hullo", 300)
    for size in (0, 1, 17, 300, 1000):
        assert len(make_answer("q", size)) == size
    assert answer_for(MESSAGES, 120) == make_answer("what is a closure?", 120)


def test_long_answer_has_lines_and_a_code_block_across_2000() -> None:
    text = answer_for([{"role": "user", "content": "!long 4500"}])
    assert len(text) == 4500
    assert text == long_answer(4500, "!long 4500")
    assert text.count("```") == 2
    start = text.index("```")
    end = text.index("```", start + 3)
    assert start < 2000 < end
    assert text.count("\n") > 20
    assert len(answer_for([{"role": "user", "content": "!long 50"}])) == 50


def test_echo_is_verbatim() -> None:
    text = "@everyone <@123> hi **there**\nsecond line "
    assert answer_for([{"role": "user", "content": f"!echo {text}"}]) == text
    assert answer_for([{"role": "user", "content": "!echo"}]) == ""


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "nope"})
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "status", "status": 200})
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "status", "count": 0})
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "status", "color": "red"})
    assert Fault.from_dict({"kind": "hang", "count": -1}).count == -1


# --- HTTP --------------------------------------------------------------------------------------


async def test_metadata_endpoints() -> None:
    async with running_llm() as server, aiohttp.ClientSession() as session:
        assert server.url is not None and server.url.startswith("http://127.0.0.1:")
        async with session.get(f"{server.url}/") as r:
            assert r.status == 200
            assert await r.text() == "Ollama is running"
        async with session.get(f"{server.url}/api/tags") as r:
            assert r.headers["Content-Type"] == "application/json"
            tags = await r.json()
        model = tags["models"][0]
        assert model["name"] == model["model"] == "llama3.2"
        assert {"modified_at", "size", "digest", "details"} <= set(model)
        async with session.get(f"{server.url}/api/version") as r:
            assert (await r.json())["version"]
        async with session.post(f"{server.url}/api/show", json={"model": "llama3.2"}) as r:
            assert "details" in await r.json()


async def test_streaming_chat() -> None:
    async with running_llm(answer_chars=200) as server:
        assert server.url is not None
        body = {"model": "llama3.2", "messages": MESSAGES}
        response, lines = await chat_lines(server.url, body)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    *chunks, final = lines
    assert len(chunks) == 50  # ~4 characters a token
    assert all(c["done"] is False and c["message"]["role"] == "assistant" for c in chunks)
    assert "".join(c["message"]["content"] for c in chunks) == answer_for(MESSAGES, 200)
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["eval_count"] == 50 and final["prompt_eval_count"] > 0
    for name in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[name], int)
    assert server.calls_total == 1 and server.calls_by_model["llama3.2"] == 1


async def test_non_streaming_chat() -> None:
    async with running_llm() as server:
        assert server.url is not None
        body = {"model": "m", "messages": MESSAGES, "stream": False}
        _, lines = await chat_lines(server.url, body)
    assert len(lines) == 1
    (whole,) = lines
    assert whole["done"] is True and whole["model"] == "m"
    assert whole["message"]["content"] == answer_for(MESSAGES)
    assert whole["eval_count"] == 75


async def test_latency_and_pace() -> None:
    async with (
        running_llm(latency=0.25, tokens_per_second=100, answer_chars=80) as server,
        aiohttp.ClientSession() as session,
    ):
        started = time.perf_counter()
        body = {"model": "m", "messages": MESSAGES}
        async with session.post(f"{server.url}/api/chat", json=body) as r:
            await r.content.readline()
            first = time.perf_counter() - started
            await r.read()
            total = time.perf_counter() - started
    assert 0.24 <= first < 1.0
    assert total >= 0.25 + 19 / 100 - 0.02  # 20 tokens, the first at `latency`


async def test_status_fault_over_http_and_stats() -> None:
    async with running_llm() as server, aiohttp.ClientSession() as session:
        fault = {"kind": "status", "status": 429, "count": 2, "retry_after": 1}
        async with session.post(f"{server.url}/_sandbox/fault", json=fault) as r:
            assert r.status == 200
        async with session.post(f"{server.url}/_sandbox/fault", json={"kind": "bad"}) as r:
            assert r.status == 400
        body = {"model": "m", "messages": MESSAGES}
        for _ in range(2):
            async with session.post(f"{server.url}/api/chat", json=body) as r:
                assert r.status == 429
                assert r.headers["Retry-After"] == "1"
                assert (await r.json())["error"]
        async with session.post(f"{server.url}/api/chat", json=body) as r:
            assert r.status == 200
            await r.read()
        async with session.get(f"{server.url}/_sandbox/stats") as r:
            stats = await r.json()
        assert stats["calls_total"] == 3 and stats["in_flight"] == 0 and stats["faults"] == []
        server.add_fault("status", count=-1, status=500)
        async with session.post(f"{server.url}/_sandbox/fault", json={"kind": "clear"}) as r:
            assert (await r.json())["faults"] == []
        assert server.faults == []


async def test_stream_error_and_garbage_faults() -> None:
    async with running_llm() as server:
        assert server.url is not None
        server.add_fault("stream_error", after_chunks=3)
        response, lines = await chat_lines(server.url, {"model": "m", "messages": MESSAGES})
        assert response.status == 200
        assert len(lines) == 4 and "error" in lines[-1]
        server.add_fault("garbage")
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{server.url}/api/chat", json={"model": "m", "messages": MESSAGES}) as r,
        ):
            assert r.status == 200
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads((await r.read()).splitlines()[0])


async def test_hang_is_released_by_the_client_leaving_and_by_stop() -> None:
    server = LLMServer(latency=0.0)
    url = await server.start()
    try:
        server.add_fault("hang", count=2)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await session.post(f"{url}/api/chat", json={"model": "m", "messages": []})
        # The client went away: its handler is cancelled, not left hanging.
        await wait_until(lambda: server.in_flight == 0)
        session = aiohttp.ClientSession()
        pending = asyncio.ensure_future(
            session.post(f"{url}/api/chat", json={"model": "m", "messages": []})
        )
        await wait_until(lambda: server.in_flight == 1)
    finally:
        async with asyncio.timeout(5):
            await server.stop()
    try:
        async with asyncio.timeout(5):
            response = await pending
        response.release()
        assert response.status == 503  # released by stop() before the connection closed
    except aiohttp.ClientError:
        pass  # or the connection closed first
    finally:
        await session.close()


async def test_strict_models_and_port_in_use() -> None:
    async with running_llm(strict_models=True) as server:
        assert server.url is not None
        response, lines = await chat_lines(server.url, {"model": "nope", "messages": MESSAGES})
        assert response.status == 404
        assert lines[0]["error"] == 'model "nope" not found, try pulling it first'
        with pytest.raises(OSError):
            await LLMServer(port=server.port).start()


# --- embeddings, records, limits, fault targets --------------------------------------------------


async def test_embed_single_and_batched() -> None:
    async with running_llm() as server, aiohttp.ClientSession() as session:
        url = f"{server.url}/api/embed"
        async with session.post(url, json={"model": "nomic-embed-text", "input": "hi there"}) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "application/json"
            one = await r.json()
        texts = ["reset the channel history", "channel history reset", "bananas are yellow"]
        async with session.post(url, json={"model": "nomic-embed-text", "input": texts}) as r:
            many = await r.json()
        async with session.post(url, json={"model": "m", "input": "x", "dimensions": 8}) as r:
            small = await r.json()
        async with session.post(url, json={"model": "m", "input": [1, 2]}) as r:
            assert r.status == 400 and "input" in (await r.json())["error"]
    assert one["model"] == "nomic-embed-text" and one["embeddings"] == [embed_text("hi there")]
    assert isinstance(one["prompt_eval_count"], int) and isinstance(one["total_duration"], int)
    first, second, third = many["embeddings"]
    assert cosine(first, second) > cosine(first, third)
    assert len(small["embeddings"][0]) == 8
    assert server.embed_calls_total == 3 and server.embed_inputs_total == 5
    assert server.calls_total == 0  # embeddings are not chat calls
    assert server.last_request(kind="embed") is not None
    assert server.stats()["embed_calls_by_api"] == {"ollama": 3, "openai": 0}


async def test_requests_are_recorded_with_images_and_served_over_http() -> None:
    message = {"role": "user", "content": "what is in it?", "images": ["aGVsbG8="]}
    async with running_llm() as server, aiohttp.ClientSession() as session:
        assert server.url is not None
        body = {"model": "llava", "messages": [MESSAGES[0], message], "stream": False}
        async with session.post(
            f"{server.url}/api/chat", json=body, headers={"Authorization": "Bearer secret-x"}
        ) as r:
            whole = await r.json()
        recorded = server.last_request()
        assert recorded is not None and server.last_request(api="openai") is None
        assert (recorded.api, recorded.kind, recorded.model) == ("ollama", "chat", "llava")
        assert recorded.images == ["aGVsbG8="] and recorded.stream is False
        assert recorded.authorized and recorded.text() == "be brief\nwhat is in it?"
        assert server.recent_requests[-1] == body["messages"]
        assert whole["message"]["content"].startswith("I see 1 image. ")
        async with session.get(f"{server.url}/_sandbox/requests?limit=1&kind=chat") as r:
            (listed,) = (await r.json())["requests"]
        assert listed["images"] == 1 and listed["messages"] == body["messages"]
        assert "secret-x" not in orjson.dumps(listed).decode()  # the credential is never kept
        async with session.post(f"{server.url}/_sandbox/reset") as r:
            assert (await r.json())["calls_total"] == 0
        assert not server.requests and not server.recent_requests


async def test_num_predict_cuts_the_answer() -> None:
    async with running_llm(answer_chars=200) as server:
        assert server.url is not None
        body = {"model": "m", "messages": MESSAGES, "options": {"num_predict": 7}}
        _, lines = await chat_lines(server.url, body)
        *chunks, final = lines
        assert len(chunks) == 7 and final["eval_count"] == 7 and final["done_reason"] == "length"
        body["options"] = {"num_predict": -1}
        _, lines = await chat_lines(server.url, body)
        assert lines[-1]["eval_count"] == 50 and lines[-1]["done_reason"] == "stop"


async def test_faults_can_target_a_model_and_embeddings() -> None:
    async with running_llm() as server, aiohttp.ClientSession() as session:
        server.add_fault("status", count=-1, status=503, model="big")
        server.add_fault("status", count=1, status=500, target="embed")
        small = {"model": "small", "messages": MESSAGES, "stream": False}
        async with session.post(f"{server.url}/api/chat", json=small) as r:
            assert r.status == 200
        for _ in range(2):
            async with session.post(f"{server.url}/api/chat", json={**small, "model": "big"}) as r:
                assert r.status == 503
        embed = {"model": "e", "input": "x"}
        async with session.post(f"{server.url}/api/embed", json=embed) as r:
            assert r.status == 500 and (await r.json())["error"]
        async with session.post(f"{server.url}/api/embed", json=embed) as r:
            assert r.status == 200
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "status", "target": "nope"})
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "status", "api": "grpc"})


async def test_ollama_only_server_has_no_v1() -> None:
    async with running_llm(apis=("ollama",)) as server, aiohttp.ClientSession() as session:
        body = {"model": "m", "messages": MESSAGES}
        async with session.post(f"{server.url}/v1/chat/completions", json=body) as r:
            assert r.status == 404
        async with session.get(f"{server.url}/v1/models") as r:
            assert r.status == 404
        async with session.get(f"{server.url}/api/version") as r:
            assert r.status == 200
        assert server.stats()["calls_by_api"] == {"ollama": 0}
    with pytest.raises(ValueError):
        LLMServer(apis=("grpc",))
    with pytest.raises(ValueError):
        LLMServer(apis=())
