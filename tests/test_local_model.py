"""The real local model: llama.cpp's server (xllamacpp) with SmolLM2, in its own child process.

Structure only, never the model's words. Needs ``make local-model`` (CI runs it) and skips without
it; what happens without it is tested in ``test_local_model_missing.py``, which runs everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _local_model import (
    chat_body,
    child,
    needs_model,
    read_line,
    stop_child,
    stream_chat,
    write_fake_gguf,
)

from botctl.sandbox.local_model import LocalModelError, LocalModelProcess

pytestmark = [pytest.mark.integration, *needs_model]


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, Any]]:
    """One child for the module's read-only tests: its ready line."""
    with child("--port", "0") as proc:
        yield read_line(proc)
        stop_child(proc)


# --- the child process and llama.cpp's API -----------------------------------------------------


def test_ready_line_says_where_and_what(served: dict[str, Any]) -> None:
    assert served["url"] == served["base_url"] + "/v1"
    assert served["base_url"].startswith("http://127.0.0.1:")
    assert served["model"] == "smollm2" and served["gguf"].endswith(".gguf")
    assert (served["threads"], served["parallel"], served["ctx"], served["predict"]) == (
        1,
        2,
        4096,
        128,
    )


async def test_models_lists_smollm2_and_only_openai_routes(served: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{served['url']}/models") as response:
            assert response.status == 200
            models = await response.json()
        async with session.get(f"{served['base_url']}/health") as response:
            assert response.status == 200
        # llama.cpp's server speaks OpenAI's API only: Ollama's routes are 404.
        async with session.get(f"{served['base_url']}/api/tags") as response:
            assert response.status == 404
    assert "smollm2" in [model["id"] for model in models["data"]]


async def test_streamed_answer_has_content_finish_usage_and_timings(
    served: dict[str, Any],
) -> None:
    async with aiohttp.ClientSession() as session:
        events = await stream_chat(session, served["url"], chat_body(max_tokens=6))
    assert events[-1] == "[DONE]"
    chunks = [event for event in events[:-1] if event["choices"]]
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    assert text.strip(), "the answer is empty"
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]]
    assert finish in (["length"], ["stop"])
    # include_usage: a last chunk with no choices, the token counts and llama.cpp's own timings.
    (last,) = [event for event in events[:-1] if not event["choices"]]
    usage = last["usage"]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 6
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    timings = last["timings"]
    assert timings["prompt_ms"] >= 0 and timings["predicted_per_second"] > 0
    assert timings["predicted_n"] == usage["completion_tokens"]


async def test_same_seeded_question_gives_the_same_answer(served: dict[str, Any]) -> None:
    """Temperature 0 and a seed make answers repeatable: what dedup and tests rely on."""
    texts = []
    for _ in range(2):
        async with aiohttp.ClientSession() as session:
            events = await stream_chat(session, served["url"], chat_body(max_tokens=4))
        texts.append(
            "".join(
                e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"]
            )
        )
    assert texts[0] == texts[1]


# --- the connection llama.cpp closes after every stream ----------------------------------------


async def test_server_closes_the_connection_after_a_stream_despite_keep_alive(
    served: dict[str, Any],
) -> None:
    """The cause of the trap, seen on a raw socket: `Keep-Alive` promised, then EOF."""
    host, port = served["base_url"].removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        body = json.dumps(chat_body(max_tokens=2)).encode()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nConnection: keep-alive\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (host.encode(), len(body), body)
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert b"Keep-Alive: timeout=" in head and b"Connection: close" not in head
        rest = await asyncio.wait_for(reader.read(), 30)  # returns only at EOF: it closed
        assert rest.endswith(b"0\r\n\r\n") and b"data: [DONE]" in rest
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_pooled_connection_fails_the_next_request(served: dict[str, Any]) -> None:
    """The trap: a naive client reuses the closed connection and the next request fails."""
    failures: list[str] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(3):  # a few pairs: once is the rule here, but the race is the server's
            await stream_chat(session, served["url"], chat_body(max_tokens=1))
            try:
                await stream_chat(session, served["url"], chat_body(max_tokens=1))
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                failures.append(type(exc).__name__)
    assert failures, "llama.cpp kept the connection: the client's retry is no longer needed"


async def _stream_retrying(session: aiohttp.ClientSession, url: str) -> list[Any]:
    """What the bot's transport does (bot/llm/http.py): a connection the server closed behind our
    back is retried once, on a fresh one, before any byte of the answer."""
    for attempt in (0, 1):
        try:
            return await stream_chat(session, url, chat_body(max_tokens=2))
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            if attempt == 1:
                raise
    raise AssertionError("unreachable")


async def test_two_streams_in_a_row_on_one_session_succeed_with_one_retry(
    served: dict[str, Any],
) -> None:
    async with aiohttp.ClientSession() as session:
        first = await _stream_retrying(session, served["url"])
        second = await _stream_retrying(session, served["url"])
    assert first[-1] == second[-1] == "[DONE]"


# --- stopping ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["sigterm", "sigint", "stdin-closed"])
def test_child_stops_within_a_bound(how: str) -> None:
    with child("--port", "0") as proc:
        read_line(proc)
        started = time.monotonic()
        if how == "stdin-closed":  # the parent died: its end of the pipe closes
            assert proc.stdin is not None
            proc.stdin.close()
        else:
            proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
        code = proc.wait(5)
        elapsed = time.monotonic() - started
    assert code == 0 and elapsed < 5


def test_sigterm_with_a_stream_in_flight_stops_it() -> None:
    """The bot stopping mid-answer: llama.cpp's own shutdown can hang then; the child must not."""
    with child("--port", "0") as proc:
        url = read_line(proc)["url"]

        async def long_answer() -> None:
            async with aiohttp.ClientSession() as session:
                with contextlib.suppress(aiohttp.ClientError):
                    await stream_chat(session, url, chat_body(max_tokens=2000))

        async def stop_mid_stream() -> tuple[int, float]:
            task = asyncio.create_task(long_answer())
            await asyncio.sleep(0.5)
            result = await asyncio.to_thread(stop_child, proc)
            await asyncio.wait_for(task, 5)
            return result

        code, elapsed = asyncio.run(stop_mid_stream())
    assert code == 0 and elapsed < 5


# --- the async context manager the bot uses ------------------------------------------------------


async def test_process_serves_then_stops() -> None:
    async with LocalModelProcess() as model:
        assert model.url.startswith("http://127.0.0.1:") and model.url.endswith("/v1")
        assert model.model == "smollm2" and model.returncode is None
        async with aiohttp.ClientSession() as session:
            events = await stream_chat(session, model.url)
        assert events[-1] == "[DONE]"
    assert model.returncode == 0


async def test_process_reports_a_crash_of_the_child() -> None:
    async with LocalModelProcess() as model:
        assert model.pid is not None
        os.kill(model.pid, signal.SIGKILL)  # llama.cpp dying under the bot
        assert await asyncio.wait_for(model.wait(), 5) == -signal.SIGKILL
        assert model.exit_reason().startswith("the local model stopped (signal 9)")


async def test_process_bad_gguf_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError) as caught:
        await LocalModelProcess(gguf=write_fake_gguf(tmp_path / "broken.gguf")).start()
    message = caught.value.message
    assert message.startswith("llama.cpp's server could not load broken.gguf: ")
    assert "\n" not in message
