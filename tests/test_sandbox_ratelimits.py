"""Discord's rate limits in the sandbox: Discord's headers and 429s, and discord.py pacing itself on them."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import discord
import pytest
from _sandbox import connected, make_bot, sandbox, stop_bare_bot, with_bare_bot

from botctl.sandbox.discord_server import RateLimits
from botctl.sandbox.discord_server.ratelimit import RateLimiter

pytestmark = pytest.mark.integration

AUTH = {"Authorization": "Bot sandbox-token"}
BUCKET_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Reset-After",
    "X-RateLimit-Bucket",
)


async def test_a_client_that_ignores_the_headers_gets_discords_429s() -> None:
    async with sandbox() as server, aiohttp.ClientSession(headers=AUTH) as http:
        url = f"{server.api_base}/channels/{server.channel_ids[0]}/messages"
        answers = []
        for i in range(7):
            async with http.post(url, json={"content": f"m{i}"}) as response:
                answers.append((response.status, dict(response.headers), await response.json()))
        statuses = [status for status, _, _ in answers]
        assert statuses == [200] * 5 + [429] * 2
        for n, (_, headers, _) in enumerate(answers[:5]):
            assert all(name in headers for name in BUCKET_HEADERS)
            assert headers["X-RateLimit-Limit"] == "5"
            assert headers["X-RateLimit-Remaining"] == str(4 - n)
            assert 0 < float(headers["X-RateLimit-Reset-After"]) <= 5.0
            assert abs(float(headers["X-RateLimit-Reset"]) - time.time() - 5.0) < 1.0
        assert len({headers["X-RateLimit-Bucket"] for _, headers, _ in answers}) == 1
        _, headers, body = answers[5]
        assert headers["Content-Type"] == "application/json"
        assert headers["X-RateLimit-Remaining"] == "0"
        assert headers["X-RateLimit-Scope"] == "user"
        assert "X-RateLimit-Global" not in headers
        assert headers["Via"] and int(headers["Retry-After"]) >= 1
        assert body["message"] == "You are being rate limited."
        assert body["global"] is False and 0 < body["retry_after"] <= 5.0

        # Another channel has its own bucket; edits and typing have theirs.
        other = f"{server.api_base}/channels/{server.channel_ids[1]}/messages"
        async with http.post(other, json={"content": "x"}) as response:
            assert response.status == 200
            assert response.headers["X-RateLimit-Remaining"] == "4"
            mid = (await response.json())["id"]
        async with http.patch(f"{other}/{mid}", json={"content": "y"}) as response:
            assert response.status == 200
            assert response.headers["X-RateLimit-Bucket"] != headers["X-RateLimit-Bucket"]
        typing = f"{server.api_base}/channels/{server.channel_ids[0]}/typing"
        async with http.post(typing) as response:
            assert response.status == 204 and response.headers["X-RateLimit-Limit"] == "5"

        stats = server.stats()
        assert stats["rate_limits"] is True
        assert stats["rate_limited"] == {"messages.create": 2}
        assert stats["rate_limited_total"] == 2
        assert len(server.all_sends) == 6  # the refused ones were never sent


async def test_the_global_limit_is_50_requests_a_second_and_says_so() -> None:
    async with sandbox(channels=10) as server, aiohttp.ClientSession(headers=AUTH) as http:
        # 60 requests in well under a second, 6 per channel: no route bucket is near its limit.
        statuses = []
        limited: list[tuple[dict[str, str], dict[str, object]]] = []
        for i in range(60):
            url = f"{server.api_base}/channels/{server.channel_ids[i % 10]}"
            async with http.get(url) as response:
                statuses.append(response.status)
                if response.status == 429:
                    limited.append((dict(response.headers), await response.json()))
        assert statuses.count(200) == 50 and statuses.count(429) == 10
        headers, body = limited[0]
        assert headers["X-RateLimit-Global"] == "true"
        assert headers["X-RateLimit-Scope"] == "global"
        assert headers["Via"] and int(headers["Retry-After"]) >= 1
        assert body["global"] is True and 0 < float(str(body["retry_after"])) <= 1.0
        assert server.stats()["rate_limited"] == {"global": 10}
        # The limit is per bot token: another token is not limited by this one's traffic.
        async with http.get(
            f"{server.api_base}/users/@me", headers={"Authorization": "Bot other"}
        ) as response:
            assert response.status == 200


async def test_a_burst_of_30_questions_in_one_channel_is_paced_by_discord_py() -> None:
    """discord.py reads the headers and waits: every answer arrives and no 429 is ever taken."""
    async with sandbox() as server:
        stop, task = await with_bare_bot(server)
        try:
            cid = server.channel_ids[0]
            ids = [server.post_message(cid, server.user_ids[i % 5], f"q{i}") for i in range(30)]
            replies = [await server.wait_for_reply(mid, 60.0) for mid in ids]
        finally:
            # Not the bot's own count: discord.py sleeps out an exhausted bucket before its last
            # send returns, so the sandbox's record is the one that is complete now.
            await stop_bare_bot(stop, task)
        assert len(replies) == 30 and all(r.content == "ok" for r in replies)
        stats = server.stats()
        assert stats["rate_limited_total"] == 0, stats["rate_limited"]
        # Discord's rule held: 5 sends per 5-second window, windows back to back.
        at = sorted(r.at for r in replies)
        gaps = [at[i + 5] - at[i] for i in range(0, 25, 5)]
        assert min(gaps) >= 4.95, gaps
        assert at[-1] - at[0] >= 24.9


async def test_sends_edits_and_typing_are_paced_in_their_own_buckets() -> None:
    async with sandbox() as server:
        client = make_bot()
        sent: list[discord.Message] = []
        all_edited = asyncio.Event()

        async def answer(message: discord.Message) -> None:
            if client.user is None or not client.user.mentioned_in(message):
                return
            await message.channel.typing()
            reply = await message.reply("thinking", mention_author=False)
            await reply.edit(content="done")
            sent.append(reply)
            if len(sent) == 8:
                all_edited.set()

        client.add_listener(answer, "on_message")
        async with connected(client):
            cid = server.channel_ids[1]
            ids = [server.post_message(cid, server.user_ids[0], f"q{i}") for i in range(8)]
            for mid in ids:
                await server.wait_for_settled_reply(mid, 30.0, settle=0.0)
            await asyncio.wait_for(all_edited.wait(), 30.0)
        stats = server.stats()
        assert stats["rate_limited_total"] == 0, stats["rate_limited"]
        assert stats["bot_messages"] == 8 and stats["bot_edits"] == 8
        assert stats["typing_calls"] == 8
        assert [server.reply_text(mid) for mid in ids] == ["done"] * 8


async def test_no_rate_limits_means_no_headers_and_no_429() -> None:
    async with sandbox(rate_limits=False) as server, aiohttp.ClientSession(headers=AUTH) as http:
        url = f"{server.api_base}/channels/{server.channel_ids[0]}/messages"
        for i in range(12):
            async with http.post(url, json={"content": f"m{i}"}) as response:
                assert response.status == 200
                assert not any(h.startswith("X-RateLimit") for h in response.headers)
        stats = server.stats()
        assert stats["rate_limits"] is False and stats["rate_limited_total"] == 0


async def test_interaction_callbacks_are_outside_the_global_limit() -> None:
    limits = RateLimits(global_per_second=2)
    async with sandbox(rate_limits=limits) as server, aiohttp.ClientSession(headers=AUTH) as http:
        for _ in range(3):
            async with http.get(f"{server.api_base}/users/@me") as response:
                pass
        assert response.status == 429  # the bot's global limit is spent for this second
        iid = server.send_interaction(server.channel_ids[0], server.user_ids[0], "ask")
        token = server.interactions._by_id[iid].token
        callback = f"{server.api_base}/interactions/{iid}/{token}/callback"
        async with http.post(callback, json={"type": 4, "data": {"content": "hi"}}) as response:
            assert response.status == 204
        assert server.stats()["rate_limited"] == {"global": 1}


def test_windows_reset_and_memory_stays_bounded() -> None:
    limiter = RateLimiter(RateLimits(messages=1, messages_per=0.01))
    bucket = limiter.buckets["messages.create"]
    assert not limiter.check(bucket, "c1", "t").limited
    assert limiter.check(bucket, "c1", "t").limited
    time.sleep(0.02)
    assert not limiter.check(bucket, "c1", "t").limited
    for i in range(10_000):
        limiter.check(bucket, f"channel-{i}", f"token-{i % 3}")
    time.sleep(0.02)
    for _ in range(5_000):
        limiter.check(bucket, "c2", "t")
    assert len(limiter._windows) < 5_000


async def test_the_control_api_is_not_limited() -> None:
    """The control API is outside Discord's API: never limited."""
    async with sandbox() as server, aiohttp.ClientSession() as http:
        for _ in range(60):
            async with http.get(f"{server.control_url}/stats") as response:
                assert response.status == 200
        assert server.stats()["rate_limited_total"] == 0
