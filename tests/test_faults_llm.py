"""LLM faults at the bot level: the user gets a clear reply in time, the bot stays up, the next
question is answered, an ``error`` event is logged, and dedup never shares a failure beyond its flight.

The bot is the real one (``bot.frontend.app.serve`` with discord.py) against the sandbox Discord server and
the sandbox LLM's fault injection, in-process on 127.0.0.1, with ``--llm-timeout 2``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from _faults import WARNING, BotRun, running_bot

from botctl.analyze.web import free_port
from botctl.sandbox.llm_server import LLMServer, answer_for

pytestmark = pytest.mark.integration

TIMEOUT = 2.0  # --llm-timeout
REPLY_BUDGET = TIMEOUT + 5.0  # what the issue allows for the error reply


def expected(question: str, llm: LLMServer | None) -> str:
    """The sandbox LLM's answer to ``question`` asked in a fresh channel."""
    chars = llm.answer_chars if llm is not None else 300
    return answer_for([{"role": "user", "content": question}], chars)


async def ask_burst(run: BotRun, question: str, size: int = 3) -> tuple[list[str], float]:
    """``question`` asked at the same moment in ``size`` fresh channels (identical LLM requests);
    the text of each reply and the seconds until the last one settled."""
    channels = [run.server.create_channel() for _ in range(size)]
    started = time.monotonic()
    mids = [run.post(question, channel=c) for c in channels]  # no await between: one burst
    replies = await asyncio.gather(*(run.reply(mid, REPLY_BUDGET + 3) for mid in mids))
    elapsed = time.monotonic() - started
    texts = ["\n".join(p.content for p in parts) for parts in replies]
    return texts, elapsed


async def check_recovers(run: BotRun) -> None:
    """The bot is still up and answers the next question normally."""
    assert run.alive()
    question = f"are you still there {time.monotonic_ns()}?"
    answer = await run.ask(question)
    assert answer == expected(question, run.llm)


async def check_failed_flight(
    run: BotRun, question: str, texts: list[str], *, error_class: str
) -> None:
    """Every caller of the failed flight got an error reply; the events say so; the next identical
    request starts a fresh flight (errors are never reused)."""
    assert all(WARNING in text for text in texts), texts
    calls = [e for e in await run.events("llm_call") if e["status"] == "error"]
    assert len(calls) == len(texts)
    assert {e["error"] for e in calls} == {error_class}
    roles = sorted(e["dedup"] for e in calls)
    # One flight: one leader; every caller that joined it (a follower) got the same error.
    assert roles.count("leader") == 1 and roles.count("follower") == len(texts) - 1, roles
    errors = await run.events("error")
    assert [e["where"] for e in errors] == ["llm"] * len(texts)
    assert {e["error"] for e in errors} == {error_class}
    replies = await run.events("reply")
    assert sum(e["status"] == "error" for e in replies) == len(texts)
    # The same question again: a fresh upstream call, answered normally.
    assert run.llm is not None
    before = run.llm.calls_total
    again = await run.ask(question)
    assert again == expected(question, run.llm)
    assert run.llm.calls_total == before + 1


def user_text(texts: list[str]) -> str:
    """The warning line of the first reply (what the user reads)."""
    return next(line for line in texts[0].splitlines() if WARNING in line)


# --------------------------------------------------------------------------- status errors


@pytest.mark.parametrize(
    ("status", "count", "error_class", "says"),
    [
        (500, 1, "LLMHTTPError", "llama runner process has terminated"),
        (429, -1, "LLMHTTPError", "too many requests"),
        (503, -1, "LLMHTTPError", "server busy"),
    ],
)
async def test_error_status_gives_a_clear_reply_and_the_bot_recovers(
    tmp_path: Path, status: int, count: int, error_class: str, says: str
) -> None:
    async with running_bot(tmp_path) as run:
        assert run.llm is not None
        run.llm.add_fault("status", count=count, status=status)
        question = f"status {status}?"
        texts, elapsed = await ask_burst(run, question)
        assert elapsed < REPLY_BUDGET
        notice = user_text(texts)
        assert says in notice and "\n" not in notice
        upstream = run.llm.calls_total
        if status in (429, 503):
            # Retried with backoff and jitter inside the deadline, then given up.
            assert upstream > 1
            assert elapsed < TIMEOUT + 1.0
        else:
            assert upstream == 1  # a 500 is not retried
        run.llm.clear_faults()
        await check_failed_flight(run, question, texts, error_class=error_class)
        await check_recovers(run)


@pytest.mark.parametrize("status", [429, 503])
async def test_429_and_503_are_retried_honouring_retry_after(tmp_path: Path, status: int) -> None:
    async with running_bot(tmp_path) as run:
        assert run.llm is not None
        run.llm.add_fault("status", count=1, status=status, retry_after=0.6)
        question = f"retry {status}"
        started = time.monotonic()
        texts, _ = await ask_burst(run, question)
        first_wait = time.monotonic() - started
        # Every caller gets the real answer after one retry; the wait honoured Retry-After.
        assert texts == [expected(question, run.llm)] * 3
        assert run.llm.calls_total == 2
        assert first_wait >= 0.6
        assert await run.events("error") == []
        calls = await run.events("llm_call")
        assert {e["status"] for e in calls} == {"ok"}


async def test_retry_after_beyond_the_deadline_fails_at_once(tmp_path: Path) -> None:
    """A Retry-After longer than the time left is not slept through: the user hears at once."""
    async with running_bot(tmp_path) as run:
        assert run.llm is not None
        run.llm.add_fault("status", count=1, status=503, retry_after=30)
        started = time.monotonic()
        text = await run.ask("busy?")
        assert time.monotonic() - started < TIMEOUT
        assert WARNING in text and "server busy" in text
        assert run.llm.calls_total == 1
        await check_recovers(run)


# --------------------------------------------------------------------------- broken answers


async def test_error_line_mid_stream(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as run:
        assert run.llm is not None
        run.llm.add_fault("stream_error", count=1, after_chunks=3)
        question = "stream then fail"
        texts, elapsed = await ask_burst(run, question)
        assert elapsed < REPLY_BUDGET
        notice = user_text(texts)
        assert "stopped in the middle of its answer" in notice
        await check_failed_flight(run, question, texts, error_class="LLMStreamError")
        await check_recovers(run)


async def test_body_that_is_not_ndjson(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as run:
        assert run.llm is not None
        run.llm.add_fault("garbage", count=1)
        question = "garbage please"
        texts, elapsed = await ask_burst(run, question)
        assert elapsed < REPLY_BUDGET
        assert "could not be understood" in user_text(texts)
        await check_failed_flight(run, question, texts, error_class="LLMResponseError")
        await check_recovers(run)


async def test_hang_past_the_llm_timeout(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as run:
        assert run.llm is not None
        run.llm.add_fault("hang", count=1)
        question = "hang on"
        texts, elapsed = await ask_burst(run, question)
        assert TIMEOUT <= elapsed < REPLY_BUDGET
        notice = user_text(texts)
        # Says what happened and after how long ("did not finish its answer within 2 s").
        assert f"{TIMEOUT:g} s" in notice and ("no answer" in notice or "did not finish" in notice)
        await check_failed_flight(run, question, texts, error_class="LLMTimeoutError")
        # The typing indicator showed while the user waited.
        assert run.server.typing_calls
        await check_recovers(run)


# --------------------------------------------------------------------------- unreachable


async def test_connection_refused_then_the_server_comes_up(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with running_bot(tmp_path, llm=False, llm_url=url) as run:
        question = "anyone home?"
        texts, elapsed = await ask_burst(run, question)
        assert elapsed < REPLY_BUDGET
        notice = user_text(texts)
        # The user learns the kind of failure; where the model runs is the operator's business.
        assert "unreachable" in notice and str(port) not in notice
        calls = await run.events("llm_call")
        assert {e["error"] for e in calls} == {"LLMUnreachableError"}
        assert sorted(e["dedup"] for e in calls).count("leader") == 1
        errors = await run.events("error")
        assert [e["where"] for e in errors] == ["llm"] * 3
        assert {e["url"] for e in errors} == {f"{url}/api/chat"}
        assert run.alive()
        # The server comes up on that port: the next question is answered, no restart needed.
        server = LLMServer(port=port, latency=0.0, tokens_per_second=0.0)
        await server.start()
        try:
            answer = await run.ask(question)
            assert answer == expected(question, server)
            assert server.calls_total == 1
        finally:
            await server.stop()


# --------------------------------------------------------------------------- dedup


async def test_a_follower_joining_a_failing_flight_gets_its_error(tmp_path: Path) -> None:
    """Followers that join while the leader waits get the leader's error, not a second call."""
    async with running_bot(tmp_path, llm_options={"latency": 0.3}) as run:
        assert run.llm is not None
        run.llm.add_fault("stream_error", count=1, after_chunks=0)
        question = "joiners"
        first = run.post(question)
        await asyncio.sleep(0.1)  # the leader's call is in flight
        joiners = [run.post(question) for _ in range(2)]
        replies = await asyncio.gather(*(run.reply(m, REPLY_BUDGET) for m in [first, *joiners]))
        assert all(parts and WARNING in parts[-1].content for parts in replies)
        assert run.llm.calls_total == 1
        calls = await run.events("llm_call")
        assert sorted(e["dedup"] for e in calls) == ["follower", "follower", "leader"]
        # Errors are never reused: the same question right after is a new flight.
        assert await run.ask(question) == expected(question, run.llm)
        assert run.llm.calls_total == 2
        stats: dict[str, Any] = run.components.flights.get_stats()
        assert stats["pending_requests"] == 0 and stats["errors"] == 1
