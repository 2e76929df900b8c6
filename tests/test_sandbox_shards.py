"""Shards and guilds in the sandbox: each guild's events on shard ``(guild_id >> 22) % count`` only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from _sandbox import WAIT, Inbox, connected, sandbox
from discord.ext import commands

from bot.frontend.endpoints import configure_endpoints
from botctl.sandbox.client import SandboxProcess
from botctl.sandbox.config import SandboxConfig
from botctl.sandbox.discord_server import DiscordServer
from botctl.sandbox.discord_server.common import shard_of
from botctl.sandbox.users import TrafficGenerator

pytestmark = pytest.mark.integration


class _NoIdentifyWait:
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # discord.py waits 5 s before every identify but the first; nothing to pace


class ShardedBot(_NoIdentifyWait, commands.AutoShardedBot):
    async def on_message(self, message: discord.Message, /) -> None:
        return None


class ShardBot(_NoIdentifyWait, commands.Bot):
    async def on_message(self, message: discord.Message, /) -> None:
        return None


def _options(**extra: Any) -> dict[str, Any]:
    return {
        "command_prefix": commands.when_mentioned,
        "intents": discord.Intents.default(),
        "guild_ready_timeout": 0.1,
        **extra,
    }


def _by_shard(server: DiscordServer, count: int) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {n: set() for n in range(count)}
    for gid in server.guild_ids:
        out[shard_of(gid, count)].add(int(gid))
    return out


def test_guild_ids_spread_evenly_over_any_shard_count() -> None:
    server = DiscordServer(guilds=12, channels=12, users=2)
    for count in (1, 2, 3, 4, 6):
        assert {len(ids) for ids in _by_shard(server, count).values()} == {12 // count}
    # Channels are spread over the guilds too.
    per_guild = [len(g.channel_ids) for g in server.world.guilds.values()]
    assert per_guild == [1] * 12


async def test_gateway_bot_gives_the_shard_count() -> None:
    async with sandbox(shards=3) as server, aiohttp.ClientSession() as http:
        async with http.get(f"{server.api_base}/gateway/bot") as response:
            body = await response.json()
        assert body["shards"] == 3 and body["url"] == server.gateway_url
        # All shards may identify together: a sharded run is ready at once.
        assert body["session_start_limit"]["max_concurrency"] == 3


async def test_an_autosharded_bot_gets_each_guild_on_its_shard() -> None:
    async with sandbox(guilds=4, channels=8, shards=2) as server:
        configure_endpoints(server.api_base, None)  # the gateway comes from GET /gateway/bot
        client = ShardedBot(**_options())
        inbox = Inbox()
        client.add_listener(inbox.on_message, "on_message")
        async with connected(client):
            assert client.shard_count == 2
            assert {g.id for g in client.guilds} == {int(g) for g in server.guild_ids}
            expected = _by_shard(server, 2)
            assert all(len(ids) == 2 for ids in expected.values())
            for guild in client.guilds:
                assert guild.id in expected[guild.shard_id]
                assert [c.id for c in guild.text_channels] == [
                    int(c) for c in server.world.guilds[str(guild.id)].channel_ids
                ]
            for gid in server.guild_ids:
                cid = server.world.guilds[gid].channel_ids[0]
                server.post_message(cid, server.user_ids[0], f"in {gid}")
            messages = await inbox.wait_for(4)
            for message in messages:
                assert message.guild is not None
                assert message.content.endswith(f"in {message.guild.id}")
                assert message.guild.shard_id == shard_of(message.guild.id, 2)
            await asyncio.sleep(0.2)
            assert len(inbox.messages) == 4  # each message once, on its guild's shard only
        stats = server.stats()
        assert stats["identifies"] == 2 and stats["shards"] == 2 and stats["guilds"] == 4


@contextlib.asynccontextmanager
async def two_shard_clients(server: DiscordServer) -> AsyncIterator[list[tuple[ShardBot, Inbox]]]:
    configure_endpoints(server.api_base, server.gateway_url)
    clients = []
    for shard_id in (0, 1):
        client = ShardBot(**_options(shard_id=shard_id, shard_count=2))
        inbox = Inbox()
        client.add_listener(inbox.on_message, "on_message")
        clients.append((client, inbox))
    async with connected(clients[0][0]), connected(clients[1][0]):
        await server.wait_for_bot(WAIT)
        yield clients


async def test_two_processes_style_clients_each_see_only_their_guilds() -> None:
    async with sandbox(guilds=4, channels=4, users=3) as server:
        expected = _by_shard(server, 2)
        async with two_shard_clients(server) as clients:
            for shard_id, (client, _) in enumerate(clients):
                assert {g.id for g in client.guilds} == expected[shard_id]
            for gid in server.guild_ids:
                cid = server.world.guilds[gid].channel_ids[0]
                server.post_message(cid, server.user_ids[1], f"in {gid}")
            server.post_dm(server.user_ids[2], "a DM goes to shard 0")
            zero = await clients[0][1].wait_for(3)
            one = await clients[1][1].wait_for(2)
            await asyncio.sleep(0.2)
            assert len(zero) == 3 and len(one) == 2
            assert {m.guild.id for m in zero if m.guild} == expected[0]
            assert {m.guild.id for m in one if m.guild} == expected[1]
            assert any(m.guild is None and m.content == "a DM goes to shard 0" for m in zero)

            # A channel made in a guild is announced on that guild's shard only.
            gid = sorted(expected[1])[0]
            created = asyncio.ensure_future(
                clients[1][0].wait_for("guild_channel_create", timeout=WAIT)
            )
            cid = server.create_channel("late", str(gid))
            assert (await created).id == int(cid)
            assert clients[0][0].get_channel(int(cid)) is None


async def test_simulated_users_post_across_guilds() -> None:
    async with sandbox(guilds=3, channels=6, users=10) as server:
        traffic = TrafficGenerator(
            server, rate=2000.0, duplicate_ratio=0.3, seed=4, max_messages=90
        )
        traffic.start()
        await traffic.wait_finished(WAIT)
        await traffic.stop()
        guilds = set()
        for mid in server.posted_at:
            message = server.message(mid)
            assert message is not None
            guilds.add(message["guild_id"])
        assert guilds == set(server.guild_ids)


async def test_an_invalid_shard_is_refused() -> None:
    async with (
        sandbox() as server,
        aiohttp.ClientSession() as http,
        http.ws_connect(server.gateway_url) as ws,
    ):
        hello = await ws.receive_json()
        assert hello["op"] == 10
        await ws.send_json({"op": 2, "d": {"token": "t", "shard": [2, 2], "intents": 0}})
        closed = await ws.receive()
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 4010


async def test_the_sandbox_process_takes_guilds_and_shards_from_its_config() -> None:
    config = SandboxConfig(guilds=3, gateway_shards=2, channels=6, users=2, llm=False)
    async with SandboxProcess(config) as process, aiohttp.ClientSession() as http:
        world = await process.world()
        assert len(world["guilds"]) == 3
        assert [len(g["channel_ids"]) for g in world["guilds"]] == [2, 2, 2]
        assert process.endpoints is not None
        async with http.get(f"{process.endpoints.api_base}/gateway/bot") as response:
            assert (await response.json())["shards"] == 2
        stats = await process.stats()
        assert stats["guilds"] == 3 and stats["shards"] == 2
