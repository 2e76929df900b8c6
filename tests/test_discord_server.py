"""The sandbox Discord server against the real discord.py 2.7.1 client, in-process on 127.0.0.1.

Every wait is bounded and every client is closed in ``finally``: a broken server must fail a test,
never hang it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import discord
import pytest
from _sandbox import (
    WAIT,
    Inbox,
    QuietBot,
    QuietShardedBot,
    connected,
    make_bot,
    sandbox,
    stop_bare_bot,
    with_bare_bot,
)
from discord import app_commands
from discord.ext import commands

from bot.frontend.endpoints import configure_endpoints, current_endpoints, reset_endpoints
from botctl.sandbox.discord_server import DiscordServer, RecordedEdit, RecordedMessage
from botctl.sandbox.users import TrafficGenerator, plan_counts, plan_traffic

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- endpoints


def test_configure_endpoints_sets_and_resets() -> None:
    default_api, default_gateway = current_endpoints()
    try:
        configure_endpoints("http://127.0.0.1:8080/api/v10/", "ws://127.0.0.1:8080/gateway")
        assert current_endpoints() == (
            "http://127.0.0.1:8080/api/v10",
            "ws://127.0.0.1:8080/gateway",
        )
        assert (
            discord.http.Route("GET", "/users/@me").url == "http://127.0.0.1:8080/api/v10/users/@me"
        )
    finally:
        reset_endpoints()
    assert current_endpoints() == (default_api, default_gateway)


@pytest.mark.parametrize(
    ("api", "gateway"),
    [
        ("ftp://127.0.0.1/api/v10", None),
        ("127.0.0.1:8080/api/v10", None),
        ("http://", None),
        (None, "http://127.0.0.1:8080/gateway"),
        (None, "ws://127.0.0.1:8080/gateway?v=10"),
    ],
)
def test_configure_endpoints_rejects_bad_urls(api: str | None, gateway: str | None) -> None:
    before = current_endpoints()
    with pytest.raises(ValueError) as info:
        configure_endpoints(api, gateway)
    assert "\n" not in str(info.value)
    assert current_endpoints() == before


# --------------------------------------------------------------------------- REST basics


async def test_rest_answers_plain_application_json() -> None:
    async with sandbox() as server, aiohttp.ClientSession() as http:
        async with http.get(f"{server.api_base}/users/@me") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json"
            me = await response.json()
        assert me["id"] == server.bot_user_id and me["bot"] is True
        async with http.get(f"{server.api_base}/gateway/bot") as response:
            assert response.headers["Content-Type"] == "application/json"
            gateway = await response.json()
        assert gateway["url"] == server.gateway_url and gateway["shards"] == 1
        async with http.get(f"{server.api_base}/nowhere") as response:
            assert response.status == 404
            assert response.headers["Content-Type"] == "application/json"
        url = f"{server.api_base}/channels/{server.channel_ids[0]}/messages"
        async with http.post(
            url, data=b"{not json", headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 400
            assert (await response.json())["code"] == 50109
        async with http.post(
            f"{server.api_base}/channels/1/messages", json={"content": "x"}
        ) as response:
            assert response.status == 404
            assert (await response.json())["code"] == 10003


# --------------------------------------------------------------------------- gateway and messages


async def test_client_gets_ready_with_the_guild() -> None:
    async with sandbox(channels=4, users=5, guild_name="testing") as server:
        intents = discord.Intents.default()
        intents.members = True
        client = make_bot(intents=intents)
        async with connected(client):
            guild = client.get_guild(int(server.guild_id))
            assert guild is not None
            assert guild.name == "testing"
            assert [c.id for c in guild.text_channels] == [int(c) for c in server.channel_ids]
            # 5 users, the bot, the guild's owner and its moderator.
            assert guild.member_count == 8 and len(guild.members) == 8 and guild.chunked
            assert guild.owner_id == int(server.owner_id)
            assert guild.default_role.id == guild.id
            assert client.user is not None and client.user.id == int(server.bot_user_id)
            assert client.application_id == int(server.application_id)
            me = guild.me
            assert me is not None
            assert guild.text_channels[0].permissions_for(me).send_messages
        assert server.stats()["identifies"] == 1


async def test_mention_reply_edit_and_typing_are_recorded() -> None:
    async with sandbox() as server:
        client = make_bot()
        inbox = Inbox()
        client.add_listener(inbox.on_message, "on_message")
        async with connected(client):
            channel, user = server.channel_ids[2], server.user_ids[3]
            mid = server.post_message(channel, user, "what is 2+2?")
            (message,) = await inbox.wait_for(1)
            assert client.user is not None
            assert message.id == int(mid)
            assert message.content == f"<@{server.bot_user_id}> what is 2+2?"
            assert client.user.mentioned_in(message)
            assert message.author.id == int(user) and message.channel.id == int(channel)

            await message.channel.typing()
            reply = await message.reply("four", mention_author=False)
            assert reply.reference is not None and reply.reference.message_id == int(mid)
            await reply.edit(content="4")

            (sent,) = server.replies_to(mid)
            assert sent.id == str(reply.id)
            assert sent.content == "4" and sent.original_content == "four"
            assert str(sent.message_reference and sent.message_reference["message_id"]) == mid
            # The client's AllowedMentions.none() plus mention_author=False.
            assert sent.allowed_mentions == {"parse": [], "replied_user": False}
            (edit,) = server.all_edits
            assert edit.message_id == sent.id and edit.content == "4"
            assert edit.allowed_mentions == {"parse": []}
            assert edit.at >= sent.at
            assert [t.channel_id for t in server.typing_calls] == [channel]
            assert server.reply_text(mid) == "4"
            parts = await server.wait_for_settled_reply(mid, WAIT, settle=0.05)
            assert [p.content for p in parts] == ["4"]
            stats = server.stats()
            assert (stats["bot_messages"], stats["bot_edits"], stats["typing_calls"]) == (1, 1, 1)


async def test_listeners_see_sends_and_edits() -> None:
    async with sandbox() as server:
        seen: list[tuple[str, bool]] = []

        def listener(message: RecordedMessage, edit: RecordedEdit | None) -> None:
            seen.append((message.content, edit is not None))

        server.add_listener(listener)
        client = make_bot()
        async with connected(client):
            channel = client.get_channel(int(server.channel_ids[0]))
            assert isinstance(channel, discord.TextChannel)
            sent = await channel.send("one")
            await sent.edit(content="two")
        assert seen == [("one", False), ("two", True)]
        assert server.all_sends[0].reply_to is None


async def test_fresh_channel_and_dm_reach_the_client() -> None:
    async with sandbox() as server:
        client = make_bot()
        inbox = Inbox()
        client.add_listener(inbox.on_message, "on_message")
        created: list[discord.abc.GuildChannel] = []

        async def on_channel(channel: discord.abc.GuildChannel) -> None:
            created.append(channel)

        client.add_listener(on_channel, "on_guild_channel_create")
        async with connected(client):
            fresh = server.create_channel("fresh-one")
            server.post_message(fresh, server.user_ids[0], "hello there")
            dm_id = server.post_dm(server.user_ids[1], "a private question")
            first, second = await inbox.wait_for(2)
            assert [c.id for c in created] == [int(fresh)]
            assert isinstance(first.channel, discord.TextChannel)
            assert first.channel.name == "fresh-one"
            assert second.guild is None and isinstance(second.channel, discord.DMChannel)
            assert second.content == "a private question"
            await second.reply("private answer", mention_author=False)
            (reply,) = server.replies_to(dm_id)
            assert reply.content == "private answer" and reply.channel_id == str(second.channel.id)


# --------------------------------------------------------------------------- slash commands


class SlashBot(QuietBot):
    def __init__(self, *, guild_id: int | None = None) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=discord.Intents.default(),
            allowed_mentions=discord.AllowedMentions.none(),
            guild_ready_timeout=0.1,
        )
        self.guild_id = guild_id
        self.synced: list[app_commands.AppCommand] = []

        @app_commands.command(name="ask", description="Ask a question")
        async def ask(interaction: discord.Interaction, question: str, count: int = 1) -> None:
            await interaction.response.send_message(f"answer to {question} x{count}")

        @app_commands.command(name="slow", description="A deferred answer")
        async def slow(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.edit_original_response(content="part 1")
            await interaction.followup.send("part 2", wait=True)

        self.tree.add_command(ask)
        self.tree.add_command(slow)

    async def setup_hook(self) -> None:
        if self.guild_id is None:
            self.synced = await self.tree.sync()
        else:
            guild = discord.Object(id=self.guild_id)
            self.tree.copy_global_to(guild=guild)
            self.synced = await self.tree.sync(guild=guild)


@pytest.mark.parametrize("scope", ["global", "guild"])
async def test_slash_commands_run_and_their_responses_are_recorded(scope: str) -> None:
    async with sandbox() as server:
        client = SlashBot(guild_id=int(server.guild_id) if scope == "guild" else None)
        async with connected(client):
            assert sorted(c.name for c in client.synced) == ["ask", "slow"]
            assert all(c.id for c in client.synced)
            if scope == "guild":
                assert all(c.guild_id == int(server.guild_id) for c in client.synced)

            channel, user = server.channel_ids[1], server.user_ids[2]
            iid = server.send_interaction(channel, user, "ask", {"question": "life", "count": 42})
            first = await server.wait_for_reply(iid, WAIT)
            assert first.content == "answer to life x42"
            assert first.interaction_id == iid and first.channel_id == channel
            assert first.allowed_mentions == {"parse": []}

            iid2 = server.send_interaction(channel, user, "slow")
            parts = await server.wait_for_settled_reply(iid2, WAIT, settle=0.3)
            assert [p.content for p in parts] == ["part 1", "part 2"]
            assert [r.type for r in server.interaction_responses] == [4, 5]

        async with aiohttp.ClientSession() as http:
            path = "commands" if scope == "global" else f"guilds/{server.guild_id}/commands"
            url = f"{server.api_base}/applications/{server.application_id}/{path}"
            async with http.get(url) as response:
                listed = await response.json()
        assert sorted(c["name"] for c in listed) == ["ask", "slow"]


# --------------------------------------------------------------------------- faults


async def test_rest_429_is_retried_after_retry_after() -> None:
    async with sandbox() as server:
        client = make_bot()
        async with connected(client):
            channel = client.get_channel(int(server.channel_ids[0]))
            assert isinstance(channel, discord.TextChannel)
            server.inject_rest_429(1, retry_after=0.3, route_prefix="/channels")
            started = time.monotonic()
            sent = await asyncio.wait_for(channel.send("after the limit"), WAIT)
            assert time.monotonic() - started >= 0.3
            assert [m.id for m in server.all_sends] == [str(sent.id)]
            assert server.stats()["rest_faults_injected"] == 1


async def test_rest_500_is_retried() -> None:
    async with sandbox() as server:
        client = make_bot()
        async with connected(client):
            channel = client.get_channel(int(server.channel_ids[0]))
            assert isinstance(channel, discord.TextChannel)
            server.inject_rest_5xx(1, status=502)
            sent = await asyncio.wait_for(channel.send("after the outage"), WAIT)
            assert [m.id for m in server.all_sends] == [str(sent.id)]
            server.inject_rest_5xx(1, status=503)
            with pytest.raises(discord.DiscordServerError):
                await asyncio.wait_for(channel.send("not retried"), WAIT)


async def test_too_long_or_empty_messages_are_refused() -> None:
    async with sandbox() as server:
        client = make_bot()
        async with connected(client):
            channel = client.get_channel(int(server.channel_ids[0]))
            assert isinstance(channel, discord.TextChannel)
            with pytest.raises(discord.HTTPException) as info:
                await channel.send("x" * 2001)
            assert info.value.code == 50035
            await channel.send("x" * 2000)
        assert len(server.all_sends) == 1


@pytest.mark.parametrize("code", [4000, 1006])
async def test_dropped_gateway_resumes_and_delivers_exactly_once(code: int) -> None:
    async with sandbox() as server:
        client = make_bot()
        inbox = Inbox()
        client.add_listener(inbox.on_message, "on_message")
        async with connected(client):
            server.post_message(server.channel_ids[0], server.user_ids[0], "before")
            await inbox.wait_for(1)
            resumed = asyncio.ensure_future(client.wait_for("resumed", timeout=WAIT))
            assert server.drop_gateway(code) == 1
            # Posted while the bot is disconnected: kept for the session, replayed on RESUME.
            server.post_message(server.channel_ids[1], server.user_ids[1], "during")
            await resumed
            server.post_message(server.channel_ids[2], server.user_ids[2], "after")
            await inbox.wait_for(3)
            await asyncio.sleep(0.2)  # room for a duplicate to show up
            contents = [m.content.split("> ", 1)[1] for m in inbox.messages]
            assert contents == ["before", "during", "after"]
            stats = server.stats()
            assert stats["resumes"] == 1 and stats["identifies"] == 1
            assert stats["gateway_connections"] == 2


async def test_unresumable_drop_makes_the_client_identify_again() -> None:
    async with sandbox() as server:
        client = make_bot()
        inbox = Inbox()
        client.add_listener(inbox.on_message, "on_message")
        async with connected(client):
            ready_again = asyncio.ensure_future(client.wait_for("ready", timeout=WAIT))
            assert server.drop_gateway(resumable=False) == 1
            await ready_again
            server.post_message(server.channel_ids[0], server.user_ids[0], "after")
            (message,) = await inbox.wait_for(1)
            assert message.content.endswith("after")
            stats = server.stats()
            assert stats["identifies"] == 2 and stats["resumes"] == 0


async def test_autosharded_bot_finds_the_gateway_itself() -> None:
    async with sandbox() as server:
        # Only the REST base points here: the gateway comes from GET /gateway/bot.
        configure_endpoints(server.api_base, None)
        client = QuietShardedBot(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            guild_ready_timeout=0.1,
        )
        inbox = Inbox()
        client.add_listener(inbox.on_message, "on_message")
        async with connected(client):
            assert client.shard_count == 1
            server.post_message(server.channel_ids[0], server.user_ids[0], "sharded")
            (message,) = await inbox.wait_for(1)
            assert message.guild is not None and message.guild.shard_id == 0


# --------------------------------------------------------------------------- bare bot and users


async def test_bare_bot_answers_50_messages() -> None:
    async with sandbox(rate_limits=False) as server:
        stop, task = await with_bare_bot(server)
        try:
            ids = [
                server.post_message(
                    server.channel_ids[i % len(server.channel_ids)],
                    server.user_ids[i % len(server.user_ids)],
                    f"question {i}",
                )
                for i in range(50)
            ]
            server.post_message(
                server.channel_ids[0], server.user_ids[0], "no mention", mention_bot=False
            )
            replies = [await server.wait_for_reply(mid, WAIT) for mid in ids]
        finally:
            answered = await stop_bare_bot(stop, task)
        assert answered == 50
        assert all(r.content == "ok" for r in replies)
        assert all(r.allowed_mentions == {"parse": [], "replied_user": False} for r in replies)
        assert len(server.all_sends) == 50 and not server.all_edits and not server.typing_calls


async def test_traffic_generator_posts_the_planned_messages_and_duplicates() -> None:
    async with sandbox(channels=5, users=8) as server:
        traffic = TrafficGenerator(
            server, rate=2000.0, duplicate_ratio=0.3, seed=7, max_messages=120
        )
        traffic.start()
        await traffic.wait_finished(WAIT)
        await traffic.stop()
        stats = traffic.stats()
        expected = plan_counts(seed=7, duplicate_ratio=0.3, messages=120)
        assert (stats["messages_sent"], stats["duplicates_sent"]) == expected
        assert stats["duplicates_sent"] > 0
        assert server.stats()["messages_posted"] == 120
        # Each burst went to fresh channels: one per asker, all with the same question.
        assert len(server.channel_ids) == 5 + stats["fresh_channels"]
        fresh = server.channel_ids[5:]
        by_channel: dict[str, list[dict[str, Any]]] = {}
        for mid in server.posted_at:
            message = server.message(mid)
            assert message is not None
            by_channel.setdefault(message["channel_id"], []).append(message)
        assert all(len(by_channel[c]) == 1 for c in fresh)
        duplicates = len(fresh) - stats["bursts"]
        assert duplicates == stats["duplicates_sent"]

        # Same seed: the same questions from the same users in the same order.
        def posts(on: DiscordServer) -> list[tuple[str, str]]:
            result = []
            for mid in on.posted_at:
                message = on.message(mid) or {}
                text = str(message["content"]).split("> ", 1)[1]
                result.append((text, str(message["author"]["username"])))
            return result

        async with sandbox(channels=5, users=8) as other:
            replay = TrafficGenerator(
                other, rate=2000.0, duplicate_ratio=0.3, seed=7, max_messages=120
            )
            replay.start()
            await replay.wait_finished(WAIT)
            await replay.stop()
            assert posts(other) == posts(server)


def test_traffic_plan_meets_the_duplicate_ratio() -> None:
    for ratio in (0.0, 0.1, 0.3, 0.5, 0.7):
        sent, duplicates = plan_counts(seed=3, duplicate_ratio=ratio, messages=30_000)
        assert sent == 30_000
        assert abs(duplicates / sent - ratio) < 0.02, ratio
    _, capped = plan_counts(seed=3, duplicate_ratio=1.0, messages=10_000)
    assert abs(capped / 10_000 - 0.75) < 0.01
    bursts = plan_traffic(seed=5, rate=10.0, duplicate_ratio=0.3)
    delays = [next(bursts).delay for _ in range(20_000)]
    assert all(d >= 0 for d in delays)
    with pytest.raises(ValueError):
        plan_counts(seed=0, duplicate_ratio=1.5, messages=1)
    with pytest.raises(ValueError):
        next(plan_traffic(seed=0, rate=0.0, duplicate_ratio=0.3))


async def test_users_read_the_bare_bots_replies() -> None:
    async with sandbox(channels=3, users=10, rate_limits=False) as server:
        stop, task = await with_bare_bot(server)
        try:
            traffic = TrafficGenerator(
                server, rate=200.0, duplicate_ratio=0.5, seed=1, max_messages=40
            )
            traffic.start()
            await traffic.wait_finished(WAIT)
            await traffic.stop()
            asks = list(server.posted_at)
            for mid in asks:
                await server.wait_for_reply(mid, WAIT)
        finally:
            answered = await stop_bare_bot(stop, task)
        stats = traffic.stats()
        assert answered == 40 == stats["replies_received"]
        assert stats["unanswered"] == 0
        assert 0 < stats["first_reply_p50_ms"] <= stats["first_reply_p99_ms"] < WAIT * 1000
        assert stats["last_reply_p50_ms"] >= stats["first_reply_p50_ms"]
        # Settling old questions into arrays (what a long run does) keeps the figures.
        traffic._compact(time.monotonic() + 1.0)
        assert traffic.stats() == stats


async def test_records_stay_bounded_while_counters_stay_exact() -> None:
    async with sandbox(max_records=10) as server:
        for i in range(2048):
            server.post_message(server.channel_ids[0], server.user_ids[0], f"q{i}")
        assert server.stats()["messages_posted"] == 2048
        assert len(server.posted_at) == 10
        last = list(server.posted_at)[-1]
        assert server.message(last) is not None


# --------------------------------------------------------------------------- HTTP control


async def test_http_control_say_wait_reply_faults_and_traffic() -> None:
    async with sandbox(settle_seconds=0.2) as server, aiohttp.ClientSession() as http:
        base = server.base_url
        stop, task = await with_bare_bot(server)
        try:
            async with http.post(f"{base}/_sandbox/say", json={"content": "hello"}) as response:
                assert response.status == 200
                mid = (await response.json())["message_id"]
            url = f"{base}/_sandbox/wait_reply?message_id={mid}&timeout=5"
            async with http.get(url) as response:
                assert response.headers["Content-Type"] == "application/json"
                reply = await response.json()
            assert reply["content"] == "ok" and reply["parts"] == 1 and reply["settled"]

            fault = {"kind": "rest_429", "count": 1, "retry_after": 0.05}
            async with http.post(f"{base}/_sandbox/fault", json=fault) as response:
                assert response.status == 200
            async with http.post(f"{base}/_sandbox/fault", json={"kind": "nope"}) as response:
                assert response.status == 400
            async with http.post(
                f"{base}/_sandbox/fault", json={"kind": "drop_gateway"}
            ) as response:
                assert (await response.json())["dropped"] == 1

            # An attached generator starts as it is; parameters start a new one instead.
            attached = TrafficGenerator(server, rate=500.0, seed=2, max_messages=5)
            server.attach_traffic(attached)
            async with http.post(f"{server.control_url}/traffic/start") as response:
                assert response.status == 200
            await attached.wait_finished(WAIT)
            async with http.post(f"{base}/_sandbox/traffic/stop") as response:
                assert (await response.json())["messages_sent"] == 5
            start = {"rate": 500, "duplicate_ratio": 0.3, "seed": 2, "max_messages": 5}
            async with http.post(f"{base}/_sandbox/traffic/start", json=start) as response:
                assert response.status == 200
            assert server.traffic is not None and server.traffic is not attached
            await server.traffic.wait_finished(WAIT)
            async with http.get(f"{base}/_sandbox/traffic") as response:
                assert (await response.json())["messages_sent"] == 5
            async with http.post(f"{base}/_sandbox/traffic/stop") as response:
                assert response.status == 200
            async with http.get(f"{base}/_sandbox/llm") as response:
                assert await response.json() is None
            for mid in list(server.posted_at):
                await server.wait_for_reply(mid, WAIT)

            async with http.get(f"{base}/_sandbox/wait_reply?message_id=1&timeout=0.1") as response:
                assert response.status == 504
            async with http.get(f"{base}/_sandbox/stats") as response:
                stats = await response.json()
        finally:
            answered = await stop_bare_bot(stop, task)
        assert answered == 11
        assert stats["messages_posted"] == 11 and stats["bot_messages"] == 11
        assert stats["rest_faults_injected"] == 1 and stats["resumes"] == 1
