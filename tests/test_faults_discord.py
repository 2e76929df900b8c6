"""Discord faults at the bot level: a dropped gateway, REST rate limits and 5xx answers.

The real bot (``bot.frontend.app.serve`` + discord.py) against the sandbox Discord server in-process; the
server's fault injection plays Discord misbehaving. Nothing may be answered twice, nothing may
crash the bot, and what could not be sent is logged as an ``error`` event.
"""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import pytest
from _faults import WARNING, BotRun, running_bot

from bot.frontend.client import ChatBot
from botctl.sandbox.llm_server import answer_for
from botctl.sandbox.users import TrafficGenerator

pytestmark = pytest.mark.integration


def expected(question: str) -> str:
    return answer_for([{"role": "user", "content": question}], 300)


async def all_replies(run: BotRun, mids: list[str], timeout: float = 15.0) -> None:
    await asyncio.gather(*(run.server.wait_for_reply(mid, timeout) for mid in mids))
    await asyncio.sleep(0.3)  # room for a duplicate answer to show up


async def check_recovers(run: BotRun) -> None:
    assert run.alive()
    if run.llm is not None:
        run.llm.tokens_per_second = 0.0  # a whole answer at once: it settles quickly
    question = f"still up {time.monotonic_ns()}"
    assert await run.ask(question) == expected(question)


# --------------------------------------------------------------------------- gateway


@pytest.mark.parametrize("code", [4000, 1006])
async def test_dropped_gateway_under_traffic_resumes_and_answers_each_message_once(
    tmp_path: Path, code: int
) -> None:
    async with running_bot(tmp_path, llm_options={"latency": 0.2}) as run:
        server = run.server
        traffic = TrafficGenerator(server, rate=40.0, duplicate_ratio=0.3, seed=3, max_messages=60)
        traffic.start()
        await asyncio.sleep(0.5)
        assert server.drop_gateway(code) == 1
        await traffic.wait_finished(10.0)
        await traffic.stop()
        posted = list(server.posted_at)
        assert len(posted) == 60
        await all_replies(run, posted)
        for mid in posted:
            # One short answer per question: exactly one message, never a second answer.
            assert len(server.replies_to(mid)) == 1, mid
        stats = server.stats()
        assert stats["resumes"] >= 1 and stats["identifies"] == 1
        assert stats["bot_messages"] == 60
        assert len(await run.events("message")) == 60
        assert len(await run.events("reply")) == 60
        await check_recovers(run)


async def test_gateway_dropped_twice_in_a_row(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as run:
        server = run.server
        before = run.post("before the drops")
        await run.reply(before)
        mids = []
        for i in range(2):
            assert server.drop_gateway(4000) == 1
            mids.append(run.post(f"while away {i}"))  # replayed on RESUME
            await asyncio.sleep(0.2)
        await all_replies(run, mids)
        for i, mid in enumerate(mids):
            assert [p.content for p in server.replies_to(mid)] == [expected(f"while away {i}")]
        assert server.stats()["identifies"] == 1
        await check_recovers(run)


# --------------------------------------------------------------------------- REST 429


async def test_rest_429_delays_the_reply_but_it_arrives(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as run:
        run.server.inject_rest_429(2, retry_after=0.4, route_prefix="/channels")
        started = time.monotonic()
        answer = await run.ask("rate limited?")
        assert answer == expected("rate limited?")
        assert time.monotonic() - started >= 0.8  # two 429s, each honoured
        assert run.server.stats()["rest_faults_injected"] == 2
        assert await run.events("error") == []
        (reply,) = await run.events("reply")
        assert reply["status"] == "ok"


async def test_rest_429_on_the_edits_of_a_streamed_answer(tmp_path: Path) -> None:
    """A long answer is posted, then edited: a 429 on an edit only delays it."""
    async with running_bot(
        tmp_path, llm_options={"tokens_per_second": 60.0}, llm_timeout=15.0
    ) as run:
        mid = run.post("!echo " + "word " * 80)
        await run.server.wait_for_reply(mid, 5.0)
        (first,) = run.server.replies_to(mid)
        run.server.inject_rest_429(1, retry_after=0.3, route_prefix=f"/channels/{first.channel_id}")
        parts = await run.reply(mid, 15.0, settle=1.5)
        assert "\n".join(p.content for p in parts) == ("word " * 80).strip()
        assert first.edits, "the streamed answer was never edited"
        assert await run.events("error") == []


# --------------------------------------------------------------------------- REST 5xx


async def test_one_503_on_send_is_retried_once_and_the_reply_arrives(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as run:
        # discord.py does not retry 503; the sink tries once more after a second.
        run.server.inject_rest_5xx(1, status=503, route_prefix="/channels")
        answer = await run.ask("after a 503", timeout=10.0)
        assert answer == expected("after a 503")
        assert await run.events("error") == []


async def test_5xx_on_send_is_logged_and_the_bot_keeps_going(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as run:
        # Two 503s in a row: the retry fails too; the reply is lost and says so in the metrics.
        run.server.inject_rest_5xx(2, status=503, route_prefix="/channels")
        mid = run.post("lost to a 503")
        (error,) = await run.wait_events("error")
        assert run.server.replies_to(mid) == []
        assert error["where"] == "discord" and error["error"] == "DiscordServerError"
        assert "503" in error["detail"]
        (reply,) = await run.events("reply")
        assert reply["status"] == "error"
        await check_recovers(run)


async def test_500_on_send_is_retried_and_the_reply_arrives(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as run:
        run.server.inject_rest_5xx(1, status=500, route_prefix="/channels")
        answer = await run.ask("after a 500", timeout=10.0)
        assert answer == expected("after a 500")
        assert await run.events("error") == []


async def test_5xx_on_the_error_notice_after_an_llm_failure(tmp_path: Path) -> None:
    """Both sides fail at once: the LLM and then Discord. Both are logged; the bot stays up."""
    async with running_bot(tmp_path) as run:
        assert run.llm is not None
        run.llm.add_fault("status", count=1, status=500)
        run.server.inject_rest_5xx(2, status=503, route_prefix="/channels")
        mid = run.post("double trouble")
        errors = await run.wait_events("error", 2)
        assert run.server.replies_to(mid) == []
        assert sorted(e["where"] for e in errors) == ["discord", "llm"]
        await check_recovers(run)


async def test_5xx_on_an_edit_mid_stream_is_logged(tmp_path: Path) -> None:
    async with running_bot(
        tmp_path, llm_options={"tokens_per_second": 60.0}, llm_timeout=15.0
    ) as run:
        mid = run.post("!echo " + "token " * 80)
        await run.server.wait_for_reply(mid, 5.0)
        (first,) = run.server.replies_to(mid)
        run.server.inject_rest_5xx(1, status=503, route_prefix=f"/channels/{first.channel_id}")
        await run.reply(mid, 10.0, settle=1.5)
        errors = await run.events("error")
        assert [e["where"] for e in errors] == ["discord"]
        (reply,) = await run.events("reply")
        assert reply["status"] == "error"
        await check_recovers(run)
        assert run.components.flights.get_stats()["pending_requests"] == 0


async def test_5xx_on_the_typing_indicator_does_not_cost_the_answer(tmp_path: Path) -> None:
    """Typing is a hint: when Discord refuses it, the answer still goes out."""
    async with running_bot(tmp_path, llm_options={"latency": 0.8}) as run:
        channel = run.server.create_channel()
        run.server.inject_rest_5xx(1, status=503, route_prefix=f"/channels/{channel}/typing")
        answer = await run.ask("slow and no typing", channel=channel)
        assert answer == expected("slow and no typing")
        assert WARNING not in answer
        assert run.server.stats()["rest_faults_injected"] == 1


# --------------------------------------------------------------------------- channel churn


async def test_deleted_channels_are_forgotten_and_the_bot_keeps_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulated users delete their bursts' fresh channels; the bot's client forgets them
    (what keeps a long run's memory flat) and a reply to a deleted channel is logged, not fatal."""
    import botctl.sandbox.users as users

    monkeypatch.setattr(users, "FRESH_CHANNEL_TTL", 0.3)
    async with running_bot(tmp_path, llm_options={"latency": 0.05}) as run:
        (client,) = [o for o in gc.get_objects() if isinstance(o, ChatBot) and not o.is_closed()]
        guild = client.get_guild(int(run.server.guild_id))
        assert guild is not None
        traffic = TrafficGenerator(
            run.server, rate=50.0, duplicate_ratio=0.6, seed=5, max_messages=80
        )
        traffic.start()
        await traffic.wait_finished(10.0)
        await traffic.stop()
        stats = traffic.stats()
        assert stats["fresh_channels"] > 20
        await asyncio.sleep(0.2)
        # Only the last bursts' channels are still there, on both sides.
        live = len(run.server.channel_ids) - len(run.server.guild_channel_ids)
        assert live < stats["fresh_channels"] / 2
        assert len(guild.text_channels) == len(run.server.channel_ids)
        # A reply racing its channel's deletion is a logged Discord error, never a crash.
        channel = run.server.create_channel()
        mid = run.post("!echo too late", channel=channel)
        run.server.delete_channel(channel)
        errors = await run.wait_events("error")
        assert run.server.replies_to(mid) == []
        assert [(e["where"], e["error"]) for e in errors] == [("discord", "NotFound")]
        await check_recovers(run)
